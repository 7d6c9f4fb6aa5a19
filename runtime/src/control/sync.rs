//! Keeping a node in step with the registry: poll its revision (change counter + change id,
//! every 200 ms, or at once after a change made through this node) and reload whenever it differs
//! from the node's — older or newer: a registry restored from an older snapshot is reloaded too —
//! rebuild only tenants whose configuration changed,
//! swap the node state atomically (in-flight requests and batches finish on the state they
//! started with), and start/stop Kafka consumers to match the stream views.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use super::Control;
use crate::component::LoadError;
use crate::node::{Node, NodeState};
use crate::registry::{Snapshot, TransformRecord};
use crate::tenant::build::fingerprint;
use crate::tenant::{BuildError, RateLimiter, SpecError, TenantApp, TenantSpec, build_tenant};

/// How often a node polls the registry's revision.
pub const POLL: Duration = Duration::from_millis(200);

/// Why a tenant could not be built from a registry snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Its stored configuration does not parse.
    #[error(transparent)]
    Spec(#[from] SpecError),
    /// The registry could not be read.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryError),
    /// The tenant's loader (its artifact-cache directory) could not be made.
    #[error(transparent)]
    Loader(LoadError),
    /// Its views do not build (a transform does not load, a view is invalid or over a quota).
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The build task panicked or was cancelled.
    #[error("building the tenant failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl SyncError {
    /// The quota a view change asks more than, if that is why it was refused: (quota name, the
    /// quota's value, what was asked).
    pub fn quota(&self) -> Option<(&'static str, u64, u64)> {
        match self {
            Self::Build(BuildError::Quota { limit, asked, quota, .. }) => Some((*limit, *quota, *asked)),
            Self::Build(BuildError::TooManyViews { views, quota }) => Some(("max_views", *quota as u64, *views as u64)),
            _ => None,
        }
    }
}

/// Run forever: reload whenever the registry revision differs from the node's.
pub async fn run(app: Arc<Node>) {
    let Some(control) = app.control.clone() else { return };
    loop {
        match control.registry.revision().await {
            Ok(r) if needs_reload(&app.state(), &r) => {
                if let Err(e) = reload(&app, &control).await {
                    tracing::warn!(error = %e, "registry reload failed; retrying");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "registry unreachable; serving the last known state"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = control.changed.notified() => {}
        }
    }
}

/// Whether the node's state is not the registry's revision `r` (any difference: a restored
/// registry may be behind the node).
fn needs_reload(state: &NodeState, r: &crate::registry::Revision) -> bool {
    state.version == 0 || state.version != r.version.max(1) || state.change != r.change
}

/// Bytes of the active version of every transform the tenant's views use, fetched from the
/// registry on demand (only when the tenant is (re)built; nodes keep no copy of any version's
/// bytes afterwards, only the compiled artifact on disk).
async fn fetch_blobs(
    control: &Control,
    transforms: &HashMap<String, TransformRecord>,
    used: &std::collections::HashSet<String>,
) -> Result<HashMap<String, Arc<Vec<u8>>>, crate::registry::RegistryError> {
    let mut out = HashMap::new();
    for rec in transforms.values().filter(|r| used.contains(&r.name)) {
        let Some(id) = &rec.active else { continue };
        if let Some(b) = control.registry.blob(id).await? {
            out.insert(rec.name.clone(), Arc::new(b));
        }
    }
    Ok(out)
}

/// The fingerprint of a tenant's configuration in a snapshot.
fn tenant_fingerprint(snap: &Snapshot, tenant: &str) -> u64 {
    let t = serde_json::to_string(&snap.tenants.get(tenant)).unwrap_or_default();
    let mut views: Vec<String> = snap
        .views
        .get(tenant)
        .map(|v| v.values().map(|r| serde_json::to_string(r).unwrap_or_default()).collect())
        .unwrap_or_default();
    views.sort();
    let mut active: Vec<String> = snap
        .transforms
        .get(tenant)
        .map(|m| m.values().map(|r| format!("{}={:?}", r.name, r.active)).collect())
        .unwrap_or_default();
    active.sort();
    let views = views.join("\n");
    let active = active.join("\n");
    fingerprint(&[&t, &views, &active])
}

/// Build one tenant from a snapshot (the caller keeps the previous one if this fails).
pub async fn build_from_snapshot(
    app: &Node,
    control: &Arc<Control>,
    snap: &Snapshot,
    tenant: &str,
) -> Result<TenantApp, SyncError> {
    let spec = TenantSpec::from_registry(snap, tenant)?;
    let empty = HashMap::new();
    let transforms = snap.transforms.get(tenant).unwrap_or(&empty);
    let used: std::collections::HashSet<String> = spec
        .streams
        .iter()
        .map(|v| v.transform.to_string_lossy().into_owned())
        .chain(spec.requests.iter().map(|v| v.transform.to_string_lossy().into_owned()))
        .collect();
    let blobs = fetch_blobs(control, transforms, &used).await?;
    let loader = control.loader(tenant).map_err(SyncError::Loader)?;
    let metrics = app.metrics.clone();
    let fp = tenant_fingerprint(snap, tenant);
    tokio::task::spawn_blocking(move || {
        let load = |name: &Path, limits| {
            let n = name.to_string_lossy();
            let bytes = blobs
                .get(n.as_ref())
                .ok_or_else(|| LoadError::Invalid(format!("no uploaded transform `{n}` with an active version")))?;
            loader.load(bytes, limits)
        };
        build_tenant(&spec, &load, metrics, fp)
    })
    .await?
    .map_err(SyncError::Build)
}

/// Reload the registry into the node.
pub async fn reload(app: &Arc<Node>, control: &Arc<Control>) -> Result<(), crate::registry::RegistryError> {
    let _one = control.reloading.lock().await;
    // Reloads are serialized and each reads the registry as it is now, so a snapshot older than
    // the node's state means the registry itself went back (restored): follow it.
    let snap = control.registry.snapshot().await?;
    let old = app.state();
    if snap.version < old.version || (snap.version == old.version && snap.change != old.change) {
        tracing::warn!(
            node = old.version,
            registry = snap.version,
            "the registry is not the state this node loaded (restored from a snapshot?): reloading everything from it"
        );
    }
    let mut tenants = HashMap::new();
    for (name, t) in &snap.tenants {
        if t.disabled {
            continue;
        }
        let fp = tenant_fingerprint(&snap, name);
        if let Some(existing) = old.tenants.get(name).filter(|e| e.fingerprint == fp) {
            tenants.insert(name.clone(), existing.clone());
            continue;
        }
        match build_from_snapshot(app, control, &snap, name).await {
            Ok(t) => {
                tracing::info!(tenant = %name, views = t.catalog.stored_views().len() + t.catalog.request_views().len(), "tenant (re)loaded");
                tenants.insert(name.clone(), Arc::new(t));
            }
            Err(e) => {
                tracing::error!(tenant = %name, error = %e, "tenant configuration failed to load; keeping the previous one");
                let keep = old.tenants.get(name).cloned().unwrap_or_else(|| {
                    Arc::new(TenantApp {
                        name: name.clone(),
                        quotas: t.quotas,
                        views: HashMap::new(),
                        catalog: Default::default(),
                        rate: RateLimiter::new(t.quotas.requests_per_second),
                        sources: Vec::new(),
                        store_quota: None,
                        fingerprint: 0,
                    })
                });
                tenants.insert(name.clone(), keep);
            }
        }
    }
    app.install(NodeState {
        tenants,
        keys: snap.keys.clone(),
        open_tenant: None,
        version: snap.version.max(1),
        change: snap.change.clone(),
    });
    Ok(())
}
