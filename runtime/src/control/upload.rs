//! Validating and precompiling an uploaded component for a tenant, on the bounded compile pool.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Control;
use crate::component::LoadError;
use crate::registry::{Quotas, Version};
use crate::{Limits, Transform, WorldKind};

/// The outcome of a successful validation.
pub struct Validated {
    pub version: Version,
    pub transform: Transform,
}

/// Validate (a component, a Wafer world, only Wafer's imports, `describe` within the tenant's
/// deadline) and precompile into the tenant's artifact cache. Nothing is stored in the registry.
pub async fn validate(
    control: &Arc<Control>,
    tenant: &str,
    quotas: &Quotas,
    bytes: Arc<Vec<u8>>,
    now_ms: i64,
) -> Result<Validated, LoadError> {
    let _slot = control.compile_slots.acquire().await.map_err(|_| LoadError::Invalid("shutting down".into()))?;
    let loader = control.loader(tenant)?;
    let limits = Limits {
        compile_time: Duration::from_secs(quotas.compile_seconds),
        compile_memory_bytes: quotas.compile_memory_mib.saturating_mul(1 << 20),
        entity_key_bytes: quotas.entity_key_bytes,
        ..Limits::capped(Duration::from_millis(quotas.deadline_ms.min(10_000)), quotas.memory_mib.min(4096) << 20)
    };
    let started = Instant::now();
    let b = bytes.clone();
    let t = tokio::task::spawn_blocking(move || loader.load(&b, limits))
        .await
        .map_err(|e| LoadError::Invalid(format!("compile task failed: {e}")))??;
    let stats = t.load_stats();
    let info = t.info();
    let version = Version {
        id: stats.sha256.clone(),
        world: match t.kind() {
            WorldKind::Stream => "stream",
            WorldKind::Request => "request",
        }
        .into(),
        info: serde_json::json!({
            "name": info.name,
            "version": info.version,
            "outputs": info.outputs.iter().map(|o| serde_json::json!({"name": o.name, "type": o.value_type.as_str(), "nullable": o.nullable})).collect::<Vec<_>>(),
            "params": info.params.iter().map(|o| serde_json::json!({"name": o.name, "type": o.value_type.as_str(), "nullable": o.nullable})).collect::<Vec<_>>(),
            "reads": info.reads,
        }),
        bytes: bytes.len(),
        compile_ms: started.elapsed().as_millis() as u64,
        uploaded_ms: now_ms,
    };
    Ok(Validated { version, transform: t })
}
