//! C → core Wasm module with Debian's clang, lld and wasi-libc (wasm32-wasi, reactor model).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Error;

/// A clang that can target wasm32-wasi.
#[derive(Debug, Clone)]
pub struct Compiler {
    pub path: PathBuf,
}

/// Tried in order when `WAFER_CLANG` is not set.
const CANDIDATES: &[&str] = &["clang-19", "clang"];

impl Compiler {
    /// `$WAFER_CLANG`, else the first of `CANDIDATES` on `PATH`.
    pub fn find() -> Result<Self, Error> {
        if let Some(p) = std::env::var_os("WAFER_CLANG") {
            return Ok(Self { path: PathBuf::from(p) });
        }
        let paths = std::env::var_os("PATH").unwrap_or_default();
        for name in CANDIDATES {
            if let Some(p) = std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()) {
                return Ok(Self { path: p });
            }
        }
        Err(Error::NoCompiler { tried: format!("$WAFER_CLANG, {}", CANDIDATES.join(", ")) })
    }
}

/// Compile and link `sources` (plus prebuilt `objects`) into a core module at `output`.
pub fn compile(
    compiler: &Compiler,
    sources: &[PathBuf],
    objects: &[PathBuf],
    include: &[PathBuf],
    output: &Path,
) -> Result<(), Error> {
    let mut cmd = Command::new(&compiler.path);
    cmd.args([
        "--target=wasm32-wasi",
        "-mexec-model=reactor",
        "-O2",
        "-std=c11",
        "-Wall",
        "-Werror=implicit-function-declaration",
    ])
    .args(["-Wl,--strip-debug"]);
    for dir in include {
        cmd.arg("-I").arg(dir);
    }
    cmd.args(sources).args(objects).arg("-o").arg(output);
    let name = compiler.path.display().to_string();
    let status = cmd.status().map_err(|source| Error::Spawn { compiler: name.clone(), source })?;
    if !status.success() {
        return Err(Error::CompileFailed { compiler: name, status });
    }
    Ok(())
}
