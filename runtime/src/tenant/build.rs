//! Building a running [`TenantApp`] from a [`TenantSpec`]: load every transform (within the
//! tenant's quotas), check every view against it, and register stream, batch and request views
//! and feature services in the catalog.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::{RateLimiter, StreamSource, TenantApp, TenantSpec};
use crate::component::LoadError;
use crate::pipeline::{Metrics, StreamView};
use crate::registry::Quotas;
use crate::serving::request_view::RequestViewError;
use crate::serving::{Catalog, RequestView, StoredView};
use crate::store::quota::EntityQuota;
use crate::transform::Transform;
use crate::transform::pool::ComputeShare;
use crate::view::{ViewError, ViewSpec};
use crate::{Limits, WorldKind};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("view `{view}`: loading transform {}: {source}", .path.display())]
    Load { view: String, path: PathBuf, source: LoadError },
    #[error("view `{view}`: {} is a {found:?} transform, expected {expected:?}", .path.display())]
    WrongWorld { view: String, path: PathBuf, found: WorldKind, expected: WorldKind },
    #[error(transparent)]
    View(#[from] ViewError),
    #[error(transparent)]
    RequestView(#[from] RequestViewError),
    #[error("feature service `{service}`: {message}")]
    Service { service: String, message: String },
    #[error("view `{view}`: {limit} {asked} exceeds the tenant's quota of {quota}")]
    Quota { view: String, limit: &'static str, asked: u64, quota: u64 },
    #[error("the tenant has {views} views; its quota is {quota}")]
    TooManyViews { views: usize, quota: usize },
}

impl BuildError {
    /// Stable code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            BuildError::Load { source, .. } => source.code(),
            BuildError::WrongWorld { .. } => "wrong_world",
            BuildError::View(_) | BuildError::RequestView(_) | BuildError::Service { .. } => "invalid_view",
            BuildError::Quota { .. } | BuildError::TooManyViews { .. } => "quota_exceeded",
        }
    }
}

/// Limits of a view's calls, checked against the tenant's quotas.
fn limits(view: &str, deadline_ms: u64, memory_mib: usize, q: &Quotas) -> Result<Limits, BuildError> {
    if deadline_ms > q.deadline_ms {
        return Err(BuildError::Quota {
            view: view.into(),
            limit: "deadline_ms",
            asked: deadline_ms,
            quota: q.deadline_ms,
        });
    }
    if memory_mib > q.memory_mib {
        return Err(BuildError::Quota {
            view: view.into(),
            limit: "memory_mib",
            asked: memory_mib as u64,
            quota: q.memory_mib as u64,
        });
    }
    Ok(Limits {
        max_instances: q.max_instances,
        output_bytes: q.output_mib.saturating_mul(1 << 20),
        batch_cpu: Duration::from_millis(q.batch_cpu_ms),
        batch_rows: q.batch_rows,
        batch_entities: q.batch_entities,
        entity_key_bytes: q.entity_key_bytes,
        compile_time: Duration::from_secs(q.compile_seconds),
        compile_memory_bytes: q.compile_memory_mib.saturating_mul(1 << 20),
        ..Limits::capped(Duration::from_millis(deadline_ms), memory_mib << 20)
    })
}

/// How a view's `transform` (a file path in manifests, a transform name in the registry) becomes
/// a loaded transform.
pub type LoadFn<'a> = dyn Fn(&Path, Limits) -> Result<Transform, LoadError> + 'a;

/// Build the tenant. `fingerprint` identifies the configuration (see [`TenantApp::fingerprint`]).
pub fn build_tenant(
    spec: &TenantSpec,
    load: &LoadFn<'_>,
    metrics: Arc<Metrics>,
    fingerprint: u64,
) -> Result<TenantApp, BuildError> {
    let tenant = &spec.name;
    let q = &spec.quotas;
    if spec.view_count() > q.max_views {
        return Err(BuildError::TooManyViews { views: spec.view_count(), quota: q.max_views });
    }
    let mut views = HashMap::new();
    let mut catalog = Catalog::default();
    let compute = ComputeShare::new(q.compute_slots);
    let store_quota =
        (q.max_stored_entities != u64::MAX).then(|| Arc::new(EntityQuota::new(tenant, q.max_stored_entities)));
    let mut sources = Vec::new();
    for cfg in &spec.streams {
        let lim = limits(&cfg.name, cfg.deadline_ms, cfg.memory_mib, q)?;
        if cfg.breaker_trip_after > q.breaker_trip_after {
            return Err(BuildError::Quota {
                view: cfg.name.clone(),
                limit: "breaker_trip_after",
                asked: cfg.breaker_trip_after.into(),
                quota: q.breaker_trip_after.into(),
            });
        }
        let t = load(&cfg.transform, lim).map_err(|source| BuildError::Load {
            view: cfg.name.clone(),
            path: cfg.transform.clone(),
            source,
        })?;
        if t.kind() != WorldKind::Stream {
            return Err(BuildError::WrongWorld {
                view: cfg.name.clone(),
                path: cfg.transform.clone(),
                found: t.kind(),
                expected: WorldKind::Stream,
            });
        }
        let spec = ViewSpec::new(cfg, &t.info().outputs)?;
        tracing::info!(tenant = %tenant, view = %cfg.name, transform = t.name(), version = %t.info().version, features = spec.feature_names().len(), "stream view loaded");
        let view = Arc::new(
            StreamView::new(tenant, spec, t, metrics.clone())
                .with_compute(compute.clone())
                .with_store_quota(store_quota.clone()),
        );
        catalog.add_stored(view.stored.clone());
        views.insert(cfg.name.clone(), view);
        if let Some(topic) = &cfg.topic {
            sources.push(StreamSource {
                tenant: tenant.clone(),
                view: cfg.name.clone(),
                topic: topic.clone(),
                dead_letter_topic: cfg.dead_letter_topic.clone(),
                batch_size: cfg.batch_size.max(1),
            });
        }
    }
    for cfg in &spec.batches {
        let spec = cfg.spec()?;
        tracing::info!(tenant = %tenant, view = %cfg.name, features = spec.latest.len(), "batch view loaded");
        catalog.add_stored(Arc::new(StoredView::new(tenant, spec)));
    }
    for cfg in &spec.requests {
        let lim = limits(&cfg.name, cfg.deadline_ms, cfg.memory_mib, q)?;
        let t = load(&cfg.transform, lim).map_err(|source| BuildError::Load {
            view: cfg.name.clone(),
            path: cfg.transform.clone(),
            source,
        })?;
        if t.kind() != WorldKind::Request {
            return Err(BuildError::WrongWorld {
                view: cfg.name.clone(),
                path: cfg.transform.clone(),
                found: t.kind(),
                expected: WorldKind::Request,
            });
        }
        let rv = RequestView::new(&cfg.name, t, |v, f| catalog.resolve_stored(v, f))?.with_compute(compute.clone());
        tracing::info!(tenant = %tenant, view = %cfg.name, transform = rv.transform.name(), reads = rv.reads.len(), "request view loaded");
        catalog.add_request(Arc::new(rv));
    }
    for s in &spec.services {
        if let Err(e) = catalog.plan(&s.features, None) {
            return Err(BuildError::Service { service: s.name.clone(), message: e.to_string() });
        }
        catalog.add_service(&s.name, s.features.clone());
    }
    Ok(TenantApp {
        name: tenant.clone(),
        quotas: *q,
        views,
        catalog,
        rate: RateLimiter::new(q.requests_per_second),
        sources,
        fingerprint,
    })
}

/// A fingerprint of anything hashable (configuration JSON, version ids).
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut h = DefaultHasher::new();
    parts.hash(&mut h);
    h.finish()
}
