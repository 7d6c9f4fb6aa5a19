//! What is wrong with an uploaded binary, said precisely, before anything runs.

use wasmtime::Engine;
use wasmtime::component::Component;
use wasmtime::component::types::ComponentItem;

use super::{LoadError, WorldKind};
use crate::bindings::names;

/// The magic and version words of the two kinds of Wasm binary.
const MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];
const COMPONENT_LAYER: [u8; 2] = [1, 0];

/// Check the header: a Wasm binary at all, and a component rather than a core module.
pub fn check_header(bytes: &[u8]) -> Result<(), LoadError> {
    if bytes.len() < 8 || &bytes[..4] != MAGIC {
        let reason = if bytes.is_empty() {
            "the file is empty".to_string()
        } else if bytes.starts_with(b"(component") || bytes.starts_with(b"(module") {
            "it is WebAssembly text (.wat); compile it to a binary component first".to_string()
        } else {
            let n = bytes.len().min(4);
            format!(
                "it does not start with the Wasm magic bytes {} (found {})",
                hex_bytes(MAGIC),
                hex_bytes(&bytes[..n])
            )
        };
        return Err(LoadError::NotWasm { reason });
    }
    let version = [bytes[4], bytes[5], bytes[6], bytes[7]];
    if version == CORE_VERSION {
        return Err(LoadError::CoreModule);
    }
    if version[2..] != COMPONENT_LAYER {
        return Err(LoadError::NotWasm {
            reason: format!("unknown Wasm binary version/layer {}", hex_bytes(&version)),
        });
    }
    Ok(())
}

/// Bytes as a hex dump reads them: `00 61 73 6d`.
fn hex_bytes(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

/// Which Wafer world the component's exports implement.
pub fn world_of(engine: &Engine, component: &Component) -> Result<WorldKind, LoadError> {
    let ty = component.component_type();
    let exports: Vec<String> = ty.exports(engine).map(|(name, _)| name.to_string()).collect();
    kind_from_exports(&exports)
}

/// Which Wafer world a component with these export names implements.
pub fn kind_from_exports(exports: &[String]) -> Result<WorldKind, LoadError> {
    let has = |n: &str| exports.iter().any(|e| e == n);
    let stream = has(names::STREAM);
    let request = has(names::REQUEST);
    let describe = has(names::DESCRIBE);
    match (describe, stream, request) {
        (true, true, false) => Ok(WorldKind::Stream),
        (true, false, true) => Ok(WorldKind::Request),
        (true, true, true) => Err(LoadError::AmbiguousWorld),
        _ => Err(LoadError::WrongWorld {
            exports: if exports.is_empty() { "nothing".into() } else { exports.join(", ") },
            missing: [(names::DESCRIBE, describe), (names::STREAM, stream || request)]
                .iter()
                .filter(|(_, ok)| !ok)
                .map(|(n, _)| {
                    if *n == names::STREAM { format!("{} or {}", names::STREAM, names::REQUEST) } else { n.to_string() }
                })
                .collect::<Vec<_>>()
                .join(" and "),
        }),
    }
}

/// WASI 0.2 interfaces a guest may import. They are all sandboxed (see `crate::sandbox`): the
/// toolchains (Rust std, CPython, JS engines) import them even when a transform never uses them.
const ALLOWED_WASI: &[&str] = &[
    "wasi:cli/environment",
    "wasi:cli/exit",
    "wasi:cli/stdin",
    "wasi:cli/stdout",
    "wasi:cli/stderr",
    "wasi:cli/terminal-input",
    "wasi:cli/terminal-output",
    "wasi:cli/terminal-stdin",
    "wasi:cli/terminal-stdout",
    "wasi:cli/terminal-stderr",
    "wasi:clocks/monotonic-clock",
    "wasi:clocks/wall-clock",
    "wasi:filesystem/types",
    "wasi:filesystem/preopens",
    "wasi:io/error",
    "wasi:io/poll",
    "wasi:io/streams",
    "wasi:random/random",
    "wasi:random/insecure",
    "wasi:random/insecure-seed",
    "wasi:sockets/network",
    "wasi:sockets/instance-network",
    "wasi:sockets/tcp",
    "wasi:sockets/tcp-create-socket",
    "wasi:sockets/udp",
    "wasi:sockets/udp-create-socket",
    "wasi:sockets/ip-name-lookup",
];

/// Every import of the component, as `name` strings.
pub fn imports_of(engine: &Engine, component: &Component) -> Vec<String> {
    component.component_type().imports(engine).map(|(n, _)| n.to_string()).collect()
}

/// Reject imports outside what Wafer provides, naming the first offender (and the others).
pub fn check_imports(imports: &[String]) -> Result<(), LoadError> {
    let forbidden: Vec<&String> = imports.iter().filter(|i| !import_allowed(i)).collect();
    match forbidden.first() {
        None => Ok(()),
        Some(first) => Err(LoadError::ForbiddenImport {
            name: first.to_string(),
            all: forbidden.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
        }),
    }
}

fn import_allowed(name: &str) -> bool {
    if name == names::HOST || name == "wafer:transform/types@0.1.0" {
        return true;
    }
    // `wasi:cli/stdout@0.2.6` → interface `wasi:cli/stdout`, version `0.2.6`.
    let Some((iface, version)) = name.split_once('@') else { return false };
    version.starts_with("0.2.") && ALLOWED_WASI.contains(&iface)
}

/// Whether an item is an instance (interface) import, for messages.
pub fn describe_item(item: &ComponentItem) -> &'static str {
    match item {
        ComponentItem::ComponentFunc(_) => "function",
        ComponentItem::ComponentInstance(_) => "interface",
        ComponentItem::Resource(_) => "resource",
        _ => "item",
    }
}
