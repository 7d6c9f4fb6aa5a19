//! Core module → component with the `wit-component` crate (what `wasm-tools component new` does).
//!
//! A module that uses libc I/O (printf, even snprintf pulls it in) imports WASI preview 1; it is
//! adapted to WASI 0.2 with wasmtime's preview1 reactor adapter, which Wafer's sandbox provides
//! (stdout/stderr go to the transform's log). A module without such imports needs no adapter.

use wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER;
use wit_component::ComponentEncoder;

use crate::Error;

const WASI_P1: &str = "wasi_snapshot_preview1";

/// Wrap a core module whose component type was linked in by the bindings' object file.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, Error> {
    let mut encoder = ComponentEncoder::default();
    encoder.module(core).map_err(|e| Error::Component(format!("{e:#}")))?;
    if imports_wasi_p1(core)? {
        encoder
            .adapter(WASI_P1, WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER)
            .map_err(|e| Error::Component(format!("adding the WASI adapter: {e:#}")))?;
    }
    encoder.validate(true).encode().map_err(|e| Error::Component(format!("{e:#}")))
}

/// Whether the module imports anything from WASI preview 1.
fn imports_wasi_p1(core: &[u8]) -> Result<bool, Error> {
    for payload in wasmparser::Parser::new(0).parse_all(core) {
        let payload = payload.map_err(|e| Error::Component(format!("not a valid core module: {e}")))?;
        if let wasmparser::Payload::ImportSection(reader) = payload {
            for import in reader.into_imports() {
                let import = import.map_err(|e| Error::Component(format!("not a valid core module: {e}")))?;
                if import.module == WASI_P1 {
                    return Ok(true);
                }
            }
        }
    }
    Ok(false)
}
