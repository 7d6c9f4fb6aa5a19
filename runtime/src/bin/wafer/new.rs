//! `wafer new`: scaffold a transform project in Rust, Python, JavaScript or C.
//!
//! Every project has the same shape, whatever the language: the source, `wit/transform.wit`,
//! `build.sh` (→ `<name>.wasm`), a sample input (`events.jsonl` or `requests.jsonl`, the last line
//! bad on purpose), `test.sh` (`wafer run` over the sample) and a README. The templates are
//! embedded in the binary (templates/). The sample is dated when the project is made (events a
//! minute apart, the last a minute before now), so features read at now over the pushed sample
//! are in their windows, not `expired`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Python,
    Js,
    C,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    /// Events in, feature rows out (`stream-transform`).
    Stream,
    /// Request params and stored features in, features out (`request-transform`).
    Request,
}

#[derive(Args)]
pub struct NewArgs {
    /// The transform's language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// Stream or request transform.
    #[arg(long, value_enum, default_value = "stream")]
    kind: Kind,
    /// Transform name (lowercase letters, digits, `_` and `-`); also the directory name.
    name: String,
    /// Create the project here instead of ./NAME.
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

const WIT: &str = include_str!("../../../../wit/transform.wit");
const WAFER_JSON_H: &str = include_str!("../../../../sdk/c/wafer_json.h");
/// The Python package's authoring module (`@wafer.stream_transform`, `wafer.build`): standard
/// library only, so a scaffolded project builds without installing the package.
const PYTHON_AUTHORING: &str = include_str!("../../../../python/wafer/authoring.py");

/// (path in the project, template) pairs for one language and kind.
fn files(lang: Lang, kind: Kind) -> Vec<(&'static str, &'static str)> {
    let stream = kind == Kind::Stream;
    let mut f = vec![
        ("wit/transform.wit", WIT),
        ("README.md", include_str!("templates/common/README.md")),
        ("test.sh", include_str!("templates/common/test.sh")),
        if stream {
            ("events.jsonl", include_str!("templates/common/events.jsonl"))
        } else {
            ("requests.jsonl", include_str!("templates/common/requests.jsonl"))
        },
    ];
    match lang {
        Lang::Rust => f.extend([
            ("Cargo.toml", include_str!("templates/rust/Cargo.toml")),
            ("build.sh", include_str!("templates/rust/build.sh")),
            (
                "src/lib.rs",
                if stream {
                    include_str!("templates/rust/stream.rs")
                } else {
                    include_str!("templates/rust/request.rs")
                },
            ),
        ]),
        // Stream transforms are decorated functions built by the package's authoring module
        // (copied as `wafer.py`); request transforms implement the WIT exports directly.
        Lang::Python if stream => f.extend([
            ("build.sh", include_str!("templates/python/build.sh")),
            ("wafer.py", PYTHON_AUTHORING),
            ("app.py", include_str!("templates/python/stream.py")),
        ]),
        Lang::Python => f.extend([
            ("build.sh", include_str!("templates/python/build_request.sh")),
            ("app.py", include_str!("templates/python/request.py")),
        ]),
        Lang::Js => f.extend([
            ("build.sh", include_str!("templates/js/build.sh")),
            ("package.json", include_str!("templates/js/package.json")),
            (
                "app.js",
                if stream { include_str!("templates/js/stream.js") } else { include_str!("templates/js/request.js") },
            ),
        ]),
        Lang::C => f.extend([
            ("build.sh", include_str!("templates/c/build.sh")),
            ("wafer_json.h", WAFER_JSON_H),
            (
                "app.c",
                if stream { include_str!("templates/c/stream.c") } else { include_str!("templates/c/request.c") },
            ),
        ]),
    }
    f
}

/// Transform names as `describe` must declare them.
fn check_name(name: &str) -> Result<()> {
    let valid_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if name.is_empty() || !valid_chars || !name.starts_with(|c: char| c.is_ascii_lowercase()) {
        bail!(
            "invalid transform name `{name}`: use lowercase letters, digits, `_` and `-`, starting with a letter (e.g. card_txn)"
        );
    }
    Ok(())
}

/// The sample's event times (ms): whole minutes, a minute apart, the last a minute before `now`.
fn sample_times(now_ms: i64) -> [String; 3] {
    let minute = 60_000;
    let last = (now_ms / minute - 1) * minute;
    [last - 2 * minute, last - minute, last].map(|t| t.to_string())
}

fn render(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_string();
    for (k, v) in vars {
        s = s.replace(&format!("{{{{{k}}}}}"), v);
    }
    s
}

pub fn new(args: NewArgs) -> Result<ExitCode> {
    check_name(&args.name)?;
    let dir = args.dir.clone().unwrap_or_else(|| PathBuf::from(&args.name));
    if dir.exists() && dir.read_dir().with_context(|| format!("reading {}", dir.display()))?.next().is_some() {
        bail!("{} already exists and is not empty; pick another name or --dir", dir.display());
    }
    let stream = args.kind == Kind::Stream;
    let (lang, source, build_tool, doc) = match args.lang {
        Lang::Rust => ("Rust", "src/lib.rs", "cargo, wasm32-wasip2", "rust"),
        Lang::Python => ("Python", "app.py", "componentize-py", "python"),
        Lang::Js => ("JavaScript", "app.js", "componentize-qjs", "javascript"),
        Lang::C => ("C", "app.c", "clang + wasi-libc + wasm-c", "c"),
    };
    let crate_name = args.name.replace('-', "_");
    let [t0, t1, t2] = sample_times(wafer_runtime::time::now_ms());
    let vars = [
        ("name", args.name.as_str()),
        ("crate", crate_name.as_str()),
        ("world", if stream { "stream-transform" } else { "request-transform" }),
        ("kind", if stream { "stream" } else { "request" }),
        ("sample", if stream { "events.jsonl" } else { "requests.jsonl" }),
        ("lang", lang),
        ("source", source),
        ("build_tool", build_tool),
        ("doc", doc),
        ("t0", t0.as_str()),
        ("t1", t1.as_str()),
        ("t2", t2.as_str()),
    ];
    for (path, template) in files(args.lang, args.kind) {
        // The WIT, the JSON header and the authoring module are copied verbatim.
        let verbatim = path.ends_with(".wit") || path.ends_with(".h") || path == "wafer.py";
        let text = if verbatim { template.to_string() } else { render(template, &vars) };
        write(&dir.join(path), &text, path.ends_with(".sh"))?;
    }
    println!("created {} ({lang} {} transform)", dir.display(), vars[3].1);
    println!("next: cd {} && ./build.sh && ./test.sh", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn write(path: &Path, text: &str, executable: bool) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    if executable {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", path.display()))?;
    }
    Ok(())
}
