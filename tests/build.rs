//! Builds every Wasm guest the tests use, once per test build (like wasmtime's test-programs):
//! the Rust examples and misbehaving programs with cargo for wasm32-wasip2, the Python example
//! with componentize-py, the JavaScript examples with componentize-qjs (QuickJS) and
//! componentize-js (StarlingMonkey), the C examples with clang + wasi-libc and the `wasm-c`
//! crate. Emits `$OUT_DIR/guests.rs` with a path constant per component.
//!
//! Tools come from env vars exported by scripts/test.sh (COMPONENTIZE_PY, COMPONENTIZE_QJS,
//! COMPONENTIZE_JS, WAFER_CLANG) or the places it installs them (.venv-tools, .tools). A missing
//! tool makes that guest's constant `None` (with a warning), and its tests fail with a fix-it
//! message.

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

    // The non-Rust guests are independent of the cargo builds: build them on other threads
    // meanwhile (the JS builds are single-threaded).
    let tools = Tools::find(&root);
    let jobs: Vec<Job> = jobs(&root, &target_dir, &tools);
    let results: Vec<(&'static str, Option<PathBuf>)> = std::thread::scope(|s| {
        let handles: Vec<_> = jobs.into_iter().map(|job| s.spawn(move || (job.name, job.run()))).collect();
        for ws in ["guest-examples", "tests/programs"] {
            cargo_wasm(&root.join(ws), &target_dir);
            watch(&root.join(ws));
        }
        handles.into_iter().map(|h| h.join().expect("guest build thread panicked")).collect()
    });
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

    for (name, path) in results {
        let v = match path {
            Some(p) => format!("Some({:?})", p.display().to_string()),
            None => "None".to_string(),
        };
        writeln!(consts, "pub const {name}: Option<&str> = {v};").unwrap();
    }
    // The tools themselves, for tests that build scaffolded projects (`wafer new`).
    for (name, tool) in
        [("TOOL_COMPONENTIZE_PY", &tools.componentize_py), ("TOOL_COMPONENTIZE_QJS", &tools.componentize_qjs)]
    {
        let v = tool.as_ref().map_or("None".to_string(), |p| format!("Some({:?})", p.display().to_string()));
        writeln!(consts, "pub const {name}: Option<&str> = {v};").unwrap();
    }
    writeln!(consts, "pub const WAFER_ROOT: &str = {:?};", root.display().to_string()).unwrap();
    std::fs::write(out.join("guests.rs"), consts).unwrap();
    for var in ["COMPONENTIZE_PY", "COMPONENTIZE_QJS", "COMPONENTIZE_JS", "WAFER_CLANG"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
}

/// Where the guest toolchains are (None: not installed).
struct Tools {
    componentize_py: Option<PathBuf>,
    componentize_qjs: Option<PathBuf>,
    componentize_js: Option<PathBuf>,
    clang: bool,
}

impl Tools {
    fn find(root: &Path) -> Self {
        Self {
            componentize_py: find_tool(
                "COMPONENTIZE_PY",
                &root.join(".venv-tools/bin/componentize-py"),
                "componentize-py",
            ),
            componentize_qjs: find_tool(
                "COMPONENTIZE_QJS",
                &root.join(".tools/js-qjs/node_modules/.bin/componentize-qjs"),
                "componentize-qjs",
            ),
            componentize_js: find_tool(
                "COMPONENTIZE_JS",
                &root.join(".tools/js-sm/node_modules/.bin/componentize-js"),
                "componentize-js",
            ),
            clang: wasm_c::Compiler::find().is_ok(),
        }
    }
}

/// One guest to build: a constant name and how to make it.
struct Job {
    name: &'static str,
    build: Box<dyn FnOnce() -> Option<PathBuf> + Send>,
}

impl Job {
    fn run(self) -> Option<PathBuf> {
        (self.build)()
    }
}

fn jobs(root: &Path, target_dir: &Path, tools: &Tools) -> Vec<Job> {
    let wit = root.join("wit");
    let mut jobs = Vec::new();
    let examples = root.join("guest-examples");

    // Python: componentize-py.
    let out = target_dir.join("python");
    let app = examples.join("python-card-txn");
    watch(&app);
    jobs.push(tool_job(
        "PYTHON_CARD_TXN",
        tools.componentize_py.clone(),
        "componentize-py (pip install componentize-py==0.25.1)",
        {
            let (wit, out) = (wit.clone(), out.clone());
            move |tool: PathBuf| {
                let dst = out.join("card_txn_py.wasm");
                let mut c = Command::new(tool);
                c.arg("-d")
                    .arg(&wit)
                    .args(["-w", "stream-transform", "componentize", "app", "-o"])
                    .arg(&dst)
                    .current_dir(&app);
                (c, dst)
            }
        },
    ));

    // JavaScript: the same source with both engines.
    let js_out = target_dir.join("js");
    for (name, dir, world, file) in [
        ("CARD_TXN", "js-card-txn", "stream-transform", "card_txn"),
        ("TXN_RISK", "js-txn-risk", "request-transform", "txn_risk"),
    ] {
        let app = examples.join(dir);
        watch(&app);
        let (wit2, out2, app2) = (wit.clone(), js_out.clone(), app.clone());
        jobs.push(tool_job(
            leak(format!("JS_QJS_{name}")),
            tools.componentize_qjs.clone(),
            "componentize-qjs (npm install componentize-qjs@0.4.5)",
            move |tool: PathBuf| {
                let dst = out2.join(format!("{file}_qjs.wasm"));
                let mut c = Command::new(tool);
                c.arg("--wit")
                    .arg(&wit2)
                    .args(["--js", "app.js", "-n", world, "--sync", "-o"])
                    .arg(&dst)
                    .current_dir(&app2);
                (c, dst)
            },
        ));
        let (wit2, out2) = (wit.clone(), js_out.clone());
        jobs.push(tool_job(
            leak(format!("JS_SM_{name}")),
            tools.componentize_js.clone(),
            "componentize-js (npm install @bytecodealliance/componentize-js@0.23.0)",
            move |tool: PathBuf| {
                let dst = out2.join(format!("{file}_sm.wasm"));
                let mut c = Command::new(tool);
                c.arg("--wit")
                    .arg(&wit2)
                    .args(["--world-name", world, "-d", "stdio", "random", "clocks", "http", "fetch-event", "-o"])
                    .arg(&dst)
                    .arg("app.js")
                    .current_dir(&app);
                (c, dst)
            },
        ));
    }

    // C: clang + wasi-libc, bindings and component step by the wasm-c crate.
    watch(&root.join("sdk/c"));
    for (name, dir, world, file) in [
        ("C_CARD_TXN", "c-card-txn", "stream-transform", "card_txn_c"),
        ("C_TXN_RISK", "c-txn-risk", "request-transform", "txn_risk_c"),
    ] {
        let app = examples.join(dir);
        watch(&app);
        let work_dir = target_dir.join("c").join(dir);
        let opts = wasm_c::BuildOptions {
            wit: wit.clone(),
            world: world.to_string(),
            sources: vec![app.join("app.c")],
            include: vec![root.join("sdk/c")],
            output: target_dir.join("c").join(format!("{file}.wasm")),
            work_dir,
        };
        let clang = tools.clang;
        jobs.push(Job {
            name,
            build: Box::new(move || {
                if !clang {
                    println!("cargo:warning=no clang for wasm32-wasi: C guest tests will fail (run scripts/test.sh, or apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32)");
                    return None;
                }
                std::fs::create_dir_all(&opts.work_dir).unwrap();
                if let Err(e) = wasm_c::build(&opts) {
                    panic!("building the C guest {}: {e}", dir);
                }
                Some(opts.output)
            }),
        });
    }
    jobs
}

/// A job that runs an external tool; `None` (with a warning) when the tool is not installed.
fn tool_job(
    name: &'static str,
    tool: Option<PathBuf>,
    install: &'static str,
    command: impl FnOnce(PathBuf) -> (Command, PathBuf) + Send + 'static,
) -> Job {
    Job {
        name,
        build: Box::new(move || {
            let Some(tool) = tool else {
                println!("cargo:warning={name}: {install} not found; its tests will fail (run scripts/test.sh)");
                return None;
            };
            let (mut cmd, dst) = command(tool.clone());
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            let output = cmd.output().unwrap_or_else(|e| panic!("running {}: {e}", tool.display()));
            assert!(
                output.status.success(),
                "{} failed building {name}:\n{}{}",
                tool.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            Some(dst)
        }),
    }
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn cargo_wasm(workspace: &Path, target_dir: &Path) {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", "wasm32-wasip2", "--target-dir"])
        .arg(target_dir)
        .current_dir(workspace);
    // Don't leak the host build's flags into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_PROFILE_RELEASE_DEBUG",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("running cargo for {}: {e}", workspace.display()));
    assert!(
        status.success(),
        "building the guests in {} failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)",
        workspace.display()
    );
}

/// `$var`, else `installed` if it exists, else `name` on PATH.
fn find_tool(var: &str, installed: &Path, name: &str) -> Option<PathBuf> {
    if let Some(p) = env::var_os(var) {
        return Some(PathBuf::from(p));
    }
    if installed.exists() {
        return Some(installed.to_path_buf());
    }
    env::var_os("PATH").and_then(|paths| env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.exists()))
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
