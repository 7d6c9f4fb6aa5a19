//! [`SourceEnv`]: what a source needs from the node it runs in, and nothing more: the store it
//! writes to, the metrics it moves, and the current version of its view. Sources depend on this
//! small type rather than on the node, so they can run (and be tested) against any store.

use std::sync::Arc;

use crate::pipeline::{Metrics, StreamView};
use crate::store::OnlineStore;

/// Looks up a tenant's current stream view (`None` once it is deleted).
pub type ViewLookup = dyn Fn(&str, &str) -> Option<Arc<StreamView>> + Send + Sync;

/// The store, metrics and view lookup a source works with.
#[derive(Clone)]
pub struct SourceEnv {
    /// Where the source's batches are written.
    pub store: Arc<dyn OnlineStore>,
    /// The node's metrics.
    pub metrics: Arc<Metrics>,
    views: Arc<ViewLookup>,
}

impl SourceEnv {
    /// An environment writing to `store`, finding views with `views(tenant, view)`.
    pub fn new(
        store: Arc<dyn OnlineStore>,
        metrics: Arc<Metrics>,
        views: impl Fn(&str, &str) -> Option<Arc<StreamView>> + Send + Sync + 'static,
    ) -> Self {
        Self { store, metrics, views: Arc::new(views) }
    }

    /// The current stream view `view` of `tenant` (a hot swap replaces it between batches).
    pub fn view(&self, tenant: &str, view: &str) -> Option<Arc<StreamView>> {
        (self.views)(tenant, view)
    }
}
