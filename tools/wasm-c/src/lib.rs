//! Build Wafer transforms written in C into components, with nothing but Debian's clang, lld and
//! wasi-libc installed: the WIT bindings come from the `wit-bindgen-c` crate and the component
//! step from the `wit-component` crate, so CI needs no `cargo install wit-bindgen-cli wasm-tools`.
//!
//! Three steps, each usable alone (see the `wasm-c` binary):
//! 1. [`bindgen`]: `wit/` + world → `<world>.c`, `<world>.h`, `<world>_component_type.o`.
//! 2. [`compile`]: clang `--target=wasm32-wasi -mexec-model=reactor` → a core module.
//! 3. [`componentize`]: core module → component (validated).
//!
//! [`build`] runs all three.

mod bindgen;
mod compile;
mod component;

use std::path::PathBuf;

pub use bindgen::{Bindings, bindgen};
pub use compile::{Compiler, compile};
pub use component::componentize;

/// Why a C transform could not be built.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the WIT package at {path}: {detail}")]
    Wit { path: PathBuf, detail: String },
    #[error("world `{world}` not found in {path}: {detail}")]
    World { world: String, path: PathBuf, detail: String },
    #[error("generating C bindings: {0}")]
    Bindgen(String),
    #[error(
        "no C compiler for wasm32 found (tried {tried}); install Debian's clang, lld and wasi-libc: apt-get install clang lld wasi-libc libclang-rt-19-dev-wasm32, or set WAFER_CLANG"
    )]
    NoCompiler { tried: String },
    #[error("running {compiler}: {source}")]
    Spawn { compiler: String, source: std::io::Error },
    #[error("{compiler} failed ({status}); see the compiler's messages above")]
    CompileFailed { compiler: String, status: std::process::ExitStatus },
    #[error("making the component: {0}")]
    Component(String),
    #[error("{what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
}

/// Everything [`build`] needs.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The WIT package directory (Wafer's `wit/`).
    pub wit: PathBuf,
    /// `stream-transform` or `request-transform`.
    pub world: String,
    /// The transform's C sources.
    pub sources: Vec<PathBuf>,
    /// Extra include directories.
    pub include: Vec<PathBuf>,
    /// Where the generated bindings and the core module go.
    pub work_dir: PathBuf,
    /// The component to write.
    pub output: PathBuf,
}

/// Bindings, compile and component step in one go. Returns the component's size in bytes.
pub fn build(opts: &BuildOptions) -> Result<usize, Error> {
    let gen_dir = opts.work_dir.join("gen");
    let bindings = bindgen(&opts.wit, &opts.world, &gen_dir)?;
    let compiler = Compiler::find()?;
    let core = opts.work_dir.join(format!("{}.core.wasm", bindings.stem));
    let mut sources = opts.sources.clone();
    sources.push(bindings.c.clone());
    let mut include = opts.include.clone();
    include.push(gen_dir.clone());
    compile(&compiler, &sources, std::slice::from_ref(&bindings.object), &include, &core)?;
    let bytes = read(&core)?;
    let component = componentize(&bytes)?;
    std::fs::write(&opts.output, &component).map_err(|source| Error::Io {
        what: "writing",
        path: opts.output.clone(),
        source,
    })?;
    Ok(component.len())
}

fn read(path: &std::path::Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::Io { what: "reading", path: path.to_path_buf(), source })
}
