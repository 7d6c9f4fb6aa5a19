//! `[control]` of the manifest: registry mode's admin token and upload compile slots.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlConfig {
    /// Environment variable holding the admin token (never put the token itself in a file).
    #[serde(default = "default_admin_env")]
    pub admin_token_env: String,
    /// Uploads compiled at once (compiles take CPU from serving).
    #[serde(default = "default_compile_slots")]
    pub compile_slots: usize,
}

fn default_admin_env() -> String {
    "WAFER_ADMIN_TOKEN".into()
}
fn default_compile_slots() -> usize {
    1
}
