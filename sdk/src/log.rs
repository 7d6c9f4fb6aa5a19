//! Logging through the host (truncated and rate-limited there).

use crate::bindings::stream::wafer::transform::host::{self, Level};

pub fn trace(msg: &str) {
    host::log(Level::Trace, msg)
}
pub fn debug(msg: &str) {
    host::log(Level::Debug, msg)
}
pub fn info(msg: &str) {
    host::log(Level::Info, msg)
}
pub fn warn(msg: &str) {
    host::log(Level::Warn, msg)
}
pub fn error(msg: &str) {
    host::log(Level::Error, msg)
}
