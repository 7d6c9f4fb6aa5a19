//! The control plane of a node in registry mode: the shared [`Registry`], the admin token, the
//! bounded compile pool for uploads, and [`sync`], which keeps the node's tenants in step with
//! the registry (within a poll interval) and installs each new state into the node
//! ([`crate::node::Node::install`] starts and stops the Kafka consumers).

pub mod config;
pub mod sync;
pub mod upload;

pub use config::ControlConfig;

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::component::Loader;
use crate::registry::Registry;

pub struct Control {
    pub registry: Registry,
    admin_hash: [u8; 32],
    loader: Loader,
    /// Concurrent compiles of uploads (so uploads never starve serving of CPU).
    pub compile_slots: tokio::sync::Semaphore,
    /// Per-tenant loaders (artifact cache namespaced by tenant).
    loaders: Mutex<HashMap<String, Arc<Loader>>>,
    /// Wakes the sync loop after a change made through this node.
    pub changed: tokio::sync::Notify,
    /// One reload at a time (the sync loop and read-your-writes reloads after API changes).
    pub(crate) reloading: tokio::sync::Mutex<()>,
}

impl Control {
    pub fn new(registry: Registry, admin_token: &str, loader: Loader, compile_slots: usize) -> Self {
        Self {
            registry,
            admin_hash: Sha256::digest(admin_token.as_bytes()).into(),
            loader,
            compile_slots: tokio::sync::Semaphore::new(compile_slots.max(1)),
            loaders: Mutex::new(HashMap::new()),
            changed: tokio::sync::Notify::new(),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// Constant-time comparison of the token's hash with the admin token's.
    pub fn is_admin(&self, token: &str) -> bool {
        let h: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        h.iter().zip(self.admin_hash.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The tenant's loader (its own artifact-cache directory).
    pub fn loader(&self, tenant: &str) -> Result<Arc<Loader>, crate::component::LoadError> {
        if let Some(l) = self.loaders.lock().get(tenant) {
            return Ok(l.clone());
        }
        let l = Arc::new(self.loader.for_tenant(tenant)?);
        self.loaders.lock().insert(tenant.to_owned(), l.clone());
        Ok(l)
    }
}

/// A new API key secret: `wfr_` + 32 random bytes (hex) from the OS.
pub fn new_secret() -> std::io::Result<String> {
    use std::io::Read;
    let mut buf = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(format!("wfr_{}", hex::encode(buf)))
}
