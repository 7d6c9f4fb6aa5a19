//! Building a running [`App`] from a manifest: load every transform, check every view against
//! it, and register stream, batch and request views and feature services in the catalog.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::App;
use crate::component::{LoadError, Loader};
use crate::pipeline::{Metrics, View};
use crate::serving::request_view::RequestViewError;
use crate::serving::{Catalog, RequestView, StoredView};
use crate::store::OnlineStore;
use crate::view::{Manifest, ViewError, ViewSpec};
use crate::{Limits, WorldKind};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("view `{view}`: loading {}: {source}", .path.display())]
    Load { view: String, path: PathBuf, source: LoadError },
    #[error("view `{view}`: {} is a {found:?} transform, expected {expected:?}", .path.display())]
    WrongWorld { view: String, path: PathBuf, found: WorldKind, expected: WorldKind },
    #[error(transparent)]
    View(#[from] ViewError),
    #[error(transparent)]
    RequestView(#[from] RequestViewError),
    #[error("feature service `{service}`: {message}")]
    Service { service: String, message: String },
}

fn limits(deadline_ms: u64, memory_mib: usize) -> Limits {
    Limits {
        deadline: Duration::from_millis(deadline_ms),
        memory_bytes: memory_mib << 20,
        recycle_memory_bytes: (memory_mib << 20) / 4 * 3,
        ..Limits::default()
    }
}

/// Load every view of `manifest` (transforms compiled or taken from the artifact cache).
pub fn build_app(manifest: &Manifest, loader: &Loader, store: Arc<dyn OnlineStore>, metrics: Arc<Metrics>) -> Result<App, BuildError> {
    let tenant = &manifest.server.tenant;
    let mut views = HashMap::new();
    let mut catalog = Catalog::default();
    for cfg in &manifest.views {
        let load = |source| BuildError::Load { view: cfg.name.clone(), path: cfg.transform.clone(), source };
        let t = loader.load_file(&cfg.transform, limits(cfg.deadline_ms, cfg.memory_mib)).map_err(load)?;
        if t.kind() != WorldKind::Stream {
            return Err(BuildError::WrongWorld { view: cfg.name.clone(), path: cfg.transform.clone(), found: t.kind(), expected: WorldKind::Stream });
        }
        let spec = ViewSpec::new(cfg, &t.info().outputs)?;
        tracing::info!(view = %cfg.name, transform = t.name(), version = %t.info().version, features = spec.feature_names().len(), "stream view loaded");
        let view = Arc::new(View::new(tenant, spec, t, metrics.clone()));
        catalog.add_stored(view.stored.clone());
        views.insert(cfg.name.clone(), view);
    }
    for cfg in &manifest.batch_views {
        let spec = cfg.spec()?;
        tracing::info!(view = %cfg.name, features = spec.latest.len(), "batch view loaded");
        catalog.add_stored(Arc::new(StoredView::new(tenant, spec)));
    }
    for cfg in &manifest.request_views {
        let load = |source| BuildError::Load { view: cfg.name.clone(), path: cfg.transform.clone(), source };
        let t = loader.load_file(&cfg.transform, limits(cfg.deadline_ms, cfg.memory_mib)).map_err(load)?;
        if t.kind() != WorldKind::Request {
            return Err(BuildError::WrongWorld { view: cfg.name.clone(), path: cfg.transform.clone(), found: t.kind(), expected: WorldKind::Request });
        }
        let rv = RequestView::new(&cfg.name, t, |v, f| catalog.resolve_stored(v, f))?;
        tracing::info!(view = %cfg.name, transform = rv.transform.name(), reads = rv.reads.len(), "request view loaded");
        catalog.add_request(Arc::new(rv));
    }
    for s in &manifest.feature_services {
        if let Err(e) = catalog.plan(&s.features, None) {
            return Err(BuildError::Service { service: s.name.clone(), message: e.to_string() });
        }
        catalog.add_service(&s.name, s.features.clone());
    }
    Ok(App { views, catalog, store, metrics })
}
