//! The running node: the online store, the metrics, and what it serves right now
//! ([`NodeState`]: tenants and keys, swapped atomically when the registry changes).
//!
//! Every layer reads the node through this module: the HTTP API ([`crate::server`]) routes
//! requests against it, the control plane ([`crate::control::sync`]) installs new states, and
//! the Kafka source gets a [`SourceEnv`] built from it ([`Node::source_env`]).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::RwLock;

use crate::pipeline::{Metrics, View};
use crate::registry::ApiKey;
use crate::sources::SourceEnv;
use crate::store::OnlineStore;
use crate::tenant::TenantApp;

/// A node: the online store, metrics, and the tenants it serves (swapped atomically when the
/// registry changes; requests in flight keep the state they started with).
pub struct Node {
    pub store: Arc<dyn OnlineStore>,
    pub metrics: Arc<Metrics>,
    state: RwLock<Arc<NodeState>>,
    /// The control plane (registry mode); `None` serves one manifest tenant without keys.
    pub control: Option<Arc<crate::control::Control>>,
}

/// What the node serves right now.
#[derive(Default)]
pub struct NodeState {
    pub tenants: HashMap<String, Arc<TenantApp>>,
    /// sha256(secret) → key (registry mode).
    pub keys: HashMap<String, ApiKey>,
    /// Manifest mode: every request is this tenant's, no key needed.
    pub open_tenant: Option<String>,
    /// Registry version this state was built from.
    pub version: u64,
    /// Registry change id this state was built from (see [`crate::registry::Revision`]).
    pub change: String,
}

impl Node {
    /// Manifest mode: one tenant, no keys.
    pub fn single(tenant: TenantApp, store: Arc<dyn OnlineStore>, metrics: Arc<Metrics>) -> Self {
        let name = tenant.name.clone();
        let state = NodeState {
            tenants: HashMap::from([(name.clone(), Arc::new(tenant))]),
            open_tenant: Some(name),
            ..NodeState::default()
        };
        Self { store, metrics, state: RwLock::new(Arc::new(state)), control: None }
    }

    /// Registry mode: tenants and keys come from the control plane's sync loop.
    pub fn registry(control: Arc<crate::control::Control>, store: Arc<dyn OnlineStore>, metrics: Arc<Metrics>) -> Self {
        Self { store, metrics, state: RwLock::new(Arc::new(NodeState::default())), control: Some(control) }
    }

    pub fn state(&self) -> Arc<NodeState> {
        self.state.read().clone()
    }

    pub fn swap_state(&self, s: NodeState) {
        *self.state.write() = Arc::new(s);
    }

    pub fn tenant(&self, name: &str) -> Option<Arc<TenantApp>> {
        self.state.read().tenants.get(name).cloned()
    }

    /// The current stream view `view` of `tenant` (a hot swap replaces it between batches).
    pub fn view(&self, tenant: &str, view: &str) -> Option<Arc<View>> {
        self.state.read().tenants.get(tenant)?.views.get(view).cloned()
    }
}

impl Node {
    /// What a source consuming into this node sees of it ([`SourceEnv`]): its store, metrics,
    /// and a lookup of the tenants' current views.
    pub fn source_env(self: &Arc<Self>) -> SourceEnv {
        let node = self.clone();
        SourceEnv::new(self.store.clone(), self.metrics.clone(), move |tenant, view| node.view(tenant, view))
    }
}
