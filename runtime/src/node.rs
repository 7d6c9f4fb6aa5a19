//! The running node: the online store, the metrics, and what it serves right now
//! ([`NodeState`]: tenants and keys, swapped atomically when the registry changes).
//!
//! Every layer reads the node through this module: the HTTP API ([`crate::server`]) routes
//! requests against it, the control plane ([`crate::control::sync`]) installs new states, and
//! the Kafka source gets a [`SourceEnv`] built from it ([`Node::source_env`]).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;

use crate::pipeline::{Metrics, StreamView};
use crate::registry::ApiKey;
use crate::sources::SourceEnv;
use crate::store::OnlineStore;
use crate::tenant::{StreamSource, TenantApp};
use crate::view::KafkaConfig;

/// A node: the online store, metrics, and the tenants it serves (swapped atomically when the
/// registry changes; requests in flight keep the state they started with).
pub struct Node {
    pub store: Arc<dyn OnlineStore>,
    pub metrics: Arc<Metrics>,
    state: RwLock<Arc<NodeState>>,
    /// The control plane (registry mode); `None` serves one manifest tenant without keys.
    pub control: Option<Arc<crate::control::Control>>,
    /// The brokers stream views consume from (`None`: no Kafka consumers are started).
    kafka: Option<KafkaConfig>,
    /// The running Kafka consumer of each stream view's source ([`Node::install`] keeps them in
    /// step with the state).
    consumers: Mutex<HashMap<StreamSource, JoinHandle<()>>>,
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
        Self::with_state(state, store, metrics, None)
    }

    /// Registry mode: tenants and keys come from the control plane's sync loop.
    pub fn registry(control: Arc<crate::control::Control>, store: Arc<dyn OnlineStore>, metrics: Arc<Metrics>) -> Self {
        Self::with_state(NodeState::default(), store, metrics, Some(control))
    }

    fn with_state(
        state: NodeState,
        store: Arc<dyn OnlineStore>,
        metrics: Arc<Metrics>,
        control: Option<Arc<crate::control::Control>>,
    ) -> Self {
        let state = RwLock::new(Arc::new(state));
        Self { store, metrics, state, control, kafka: None, consumers: Mutex::new(HashMap::new()) }
    }

    /// Consume stream views' sources from these brokers (see [`Node::install`]).
    pub fn with_kafka(mut self, kafka: Option<KafkaConfig>) -> Self {
        self.kafka = kafka;
        self
    }

    pub fn state(&self) -> Arc<NodeState> {
        self.state.read().clone()
    }

    /// Replace what the node serves without touching its consumers (tests and tools; a running
    /// node changes state through [`Node::install`]).
    pub fn swap_state(&self, s: NodeState) {
        *self.state.write() = Arc::new(s);
    }

    /// The one way a running node changes what it serves: swap the state (requests in flight
    /// keep the one they started with), then start a Kafka consumer for every new stream
    /// source and stop those whose view is gone (see [`Node::start_sources`]).
    pub fn install(self: &Arc<Self>, s: NodeState) -> Vec<SourceStartError> {
        self.swap_state(s);
        self.start_sources()
    }

    /// Bring the Kafka consumers in step with the current state: stop the ones whose source is
    /// no longer served (or whose task ended), start the missing ones. Returns the sources whose
    /// consumer could not be started (each is also logged); a later install retries them.
    pub fn start_sources(self: &Arc<Self>) -> Vec<SourceStartError> {
        let Some(kafka) = &self.kafka else { return Vec::new() };
        let sources: Vec<StreamSource> = self.state().tenants.values().flat_map(|t| t.sources.clone()).collect();
        let mut consumers = self.consumers.lock();
        consumers.retain(|src, handle| {
            let keep = sources.contains(src) && !handle.is_finished();
            if !keep {
                handle.abort();
            }
            keep
        });
        let mut failed = Vec::new();
        for src in sources {
            if consumers.contains_key(&src) {
                continue;
            }
            match crate::sources::kafka::spawn_consumer(kafka, self.source_env(), src.clone()) {
                Ok(h) => {
                    consumers.insert(src, h);
                }
                Err(error) => {
                    tracing::error!(tenant = %src.tenant, view = %src.view, error = %error, "cannot start the Kafka consumer");
                    failed.push(SourceStartError { stream: src, error });
                }
            }
        }
        failed
    }

    pub fn tenant(&self, name: &str) -> Option<Arc<TenantApp>> {
        self.state.read().tenants.get(name).cloned()
    }

    /// The current stream view `view` of `tenant` (a hot swap replaces it between batches).
    pub fn view(&self, tenant: &str, view: &str) -> Option<Arc<StreamView>> {
        self.state.read().tenants.get(tenant)?.views.get(view).cloned()
    }
}

impl Node {
    /// What a source consuming into this node sees of it ([`SourceEnv`]): its store, metrics,
    /// and a lookup of the tenants' current views.
    ///
    /// The lookup holds the node weakly: a consumer never keeps a dropped node alive, and finds
    /// no view (so stops) once the node is gone.
    pub fn source_env(self: &Arc<Self>) -> SourceEnv {
        let node = Arc::downgrade(self);
        SourceEnv::new(self.store.clone(), self.metrics.clone(), move |tenant, view| node.upgrade()?.view(tenant, view))
    }
}

/// A stream source whose Kafka consumer could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the Kafka consumer of view `{}` of tenant `{}`: {error:#}", stream.view, stream.tenant)]
pub struct SourceStartError {
    /// The source.
    pub stream: StreamSource,
    /// Why (a consumer or producer configuration the client library refused).
    pub error: anyhow::Error,
}
