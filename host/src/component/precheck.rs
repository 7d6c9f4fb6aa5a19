//! Checks on the raw bytes of a component, before any compilation: which world its top-level
//! exports implement and whether its top-level imports are ones Wafer provides. Parsing is one
//! linear pass over the binary (no validation, no code generation), so a component of the wrong
//! world or with a forbidden import is refused in milliseconds whatever its size.

use wasmparser::{Parser, Payload};

use super::validate::{check_imports, kind_from_exports};
use super::{LoadError, WorldKind};

/// Top-level import and export names of a component binary.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Surface {
    pub imports: Vec<String>,
    pub exports: Vec<String>,
}

/// Read the top-level imports and exports (nested modules and components are skipped).
pub fn surface(bytes: &[u8]) -> Result<Surface, LoadError> {
    let invalid = |e: wasmparser::BinaryReaderError| LoadError::Invalid(e.to_string());
    let mut s = Surface::default();
    let mut depth = 0usize;
    for payload in Parser::new(0).parse_all(bytes) {
        match payload.map_err(invalid)? {
            Payload::ModuleSection { .. } | Payload::ComponentSection { .. } => depth += 1,
            Payload::End(_) => depth = depth.saturating_sub(1),
            Payload::ComponentImportSection(r) if depth == 0 => {
                for i in r {
                    s.imports.push(i.map_err(invalid)?.name.name.to_string());
                }
            }
            Payload::ComponentExportSection(r) if depth == 0 => {
                for e in r {
                    s.exports.push(e.map_err(invalid)?.name.name.to_string());
                }
            }
            _ => {}
        }
    }
    Ok(s)
}

/// The world the component claims by its export names, and its imports allow-listed: the
/// checks [`super::Loader::load`] repeats on the compiled component's types, done first on
/// the bytes.
pub fn precheck(bytes: &[u8]) -> Result<WorldKind, LoadError> {
    let s = surface(bytes)?;
    let kind = kind_from_exports(&s.exports)?;
    check_imports(&s.imports)?;
    Ok(kind)
}
