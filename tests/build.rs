//! Builds every Wasm guest the tests use, once per test build (like wasmtime's test-programs):
//! the Rust examples and misbehaving programs with cargo for wasm32-wasip2, the Python example
//! with componentize-py. Emits `$OUT_DIR/guests.rs` with a path constant per component.

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap());
    // <target>/<profile>/build/<pkg>/out → <target>/wasm-guests (shared, so rebuilds are incremental).
    let target_dir = out.ancestors().nth(4).unwrap().join("wasm-guests");
    let mut consts = String::new();

    for ws in ["guest-examples", "tests/programs"] {
        cargo_wasm(&root.join(ws), &target_dir);
        watch(&root.join(ws));
    }
    watch(&root.join("sdk"));
    watch(&root.join("wit"));
    let wasm_dir = target_dir.join("wasm32-wasip2/release");
    for (name, file) in [
        ("RUST_CARD_TXN", "card_txn.wasm"),
        ("RUST_TXN_RISK", "txn_risk.wasm"),
        ("MISBEHAVE", "misbehave.wasm"),
        ("REQUEST_MISBEHAVE", "request_misbehave.wasm"),
        ("TXN_SCORE", "txn_score.wasm"),
        ("NOT_A_TRANSFORM", "not-a-transform.wasm"),
        ("FORBIDDEN_IMPORT", "forbidden_import.wasm"),
    ] {
        let p = wasm_dir.join(file);
        assert!(p.exists(), "expected guest {} to be built", p.display());
        writeln!(consts, "pub const {name}: &str = {:?};", p.display().to_string()).unwrap();
    }

    // Python: componentize-py (installed by scripts/test.sh into .venv-tools).
    let py_out = target_dir.join("python");
    std::fs::create_dir_all(&py_out).unwrap();
    let py = match find_componentize_py(&root) {
        Some(tool) => {
            let app = root.join("guest-examples/python-card-txn");
            watch(&app);
            let dst = py_out.join("card_txn_py.wasm");
            let status = Command::new(&tool)
                .args(["-d"])
                .arg(root.join("wit"))
                .args(["-w", "stream-transform", "componentize", "app", "-o"])
                .arg(&dst)
                .current_dir(&app)
                .status()
                .unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
            assert!(status.success(), "componentize-py failed for {}", app.display());
            format!("Some({:?})", dst.display().to_string())
        }
        None => {
            println!("cargo:warning=componentize-py not found: Python guest tests will fail (run scripts/test.sh, or pip install componentize-py==0.25.1)");
            "None".to_string()
        }
    };
    writeln!(consts, "pub const PYTHON_CARD_TXN: Option<&str> = {py};").unwrap();
    writeln!(consts, "pub const WAFER_ROOT: &str = {:?};", root.display().to_string()).unwrap();
    std::fs::write(out.join("guests.rs"), consts).unwrap();
    println!("cargo:rerun-if-env-changed=COMPONENTIZE_PY");
}

fn cargo_wasm(workspace: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(target_dir)
        .current_dir(workspace);
    // Don't leak the host build's flags into the guest build.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_BUILD_RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_PROFILE_RELEASE_DEBUG", "RUSTC_WORKSPACE_WRAPPER"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("running cargo for {}: {e}", workspace.display()));
    assert!(status.success(), "building the guests in {} failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)", workspace.display());
}

fn find_componentize_py(root: &Path) -> Option<PathBuf> {
    if let Some(p) = env::var_os("COMPONENTIZE_PY") {
        return Some(PathBuf::from(p));
    }
    let venv = root.join(".venv-tools/bin/componentize-py");
    if venv.exists() {
        return Some(venv);
    }
    env::var_os("PATH").and_then(|paths| env::split_paths(&paths).map(|d| d.join("componentize-py")).find(|p| p.exists()))
}

/// Rerun when sources change (skipping build outputs).
fn watch(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name == "target" || name.starts_with('.') || name == "__pycache__" {
            continue;
        }
        if p.is_dir() {
            watch(&p);
        } else {
            println!("cargo:rerun-if-changed={}", p.display());
        }
    }
}
