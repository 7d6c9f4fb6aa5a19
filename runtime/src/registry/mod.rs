//! **The registry**: tenants, API keys (hashed), transforms (content-addressed versions and the
//! active one), views — in Redis, so every `wafer serve` node shares it. Every change bumps one
//! version counter and writes a fresh random change id; nodes poll both ([`Revision`],
//! [`crate::control::sync`]) and reload within a second when either differs from what they
//! loaded. The change id makes a registry restored from an older snapshot visible even when
//! later changes bring its counter back to (or past) a value a node has already seen.
//!
//! Keys share the hash tag `{wafer-registry}` (one Redis Cluster slot), so each change is one
//! atomic MULTI/EXEC:
//! - `{wafer-registry}:version`: change counter
//! - `{wafer-registry}:change`: random id of the latest change
//! - `{wafer-registry}:tenants`: tenant → [`Tenant`]
//! - `{wafer-registry}:keys`: sha256(secret) → [`ApiKey`]
//! - `{wafer-registry}:transforms:<tenant>`: name → [`TransformRecord`]
//! - `{wafer-registry}:views:<tenant>`: name → [`ViewRecord`]
//! - `{wafer-registry}:blob:<sha256>`: component bytes (deleted with the last version using them)

pub mod model;

use std::collections::HashMap;

use redis::AsyncCommands;

use crate::store::redis::Conn;
use sha2::{Digest, Sha256};

pub use model::{ApiKey, Quotas, Tenant, TransformRecord, Version, ViewKind, ViewRecord};

const P: &str = "{wafer-registry}";

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("corrupt registry entry {key}: {message}")]
    Corrupt { key: String, message: String },
    #[error("no tenant `{0}`")]
    NoTenant(String),
    #[error("tenant `{0}` already exists")]
    TenantExists(String),
    #[error("no transform `{0}`")]
    NoTransform(String),
    #[error("transform `{name}` has no version `{version}`")]
    NoVersion { name: String, version: String },
    #[error("no view `{0}`")]
    NoView(String),
    #[error("no key `{0}`")]
    NoKey(String),
}

impl RegistryError {
    /// Whether retrying later may succeed (see [`crate::store::redis_is_transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, RegistryError::Redis(e) if crate::store::redis_is_transient(e))
    }

    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Self::NoTenant(_) | Self::NoTransform(_) | Self::NoVersion { .. } | Self::NoView(_) | Self::NoKey(_)
        )
    }
}

/// Which state of the registry a node has: the change counter and the latest change's id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revision {
    pub version: u64,
    pub change: String,
}

/// Everything a node needs, read in one pass.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub version: u64,
    /// The latest change's id (empty for a registry written before change ids).
    pub change: String,
    pub tenants: HashMap<String, Tenant>,
    /// sha256(secret) hex → key.
    pub keys: HashMap<String, ApiKey>,
    pub transforms: HashMap<String, HashMap<String, TransformRecord>>,
    pub views: HashMap<String, HashMap<String, ViewRecord>>,
}

/// A fresh random change id (16 hex digits from the OS's generator; the time if it is unavailable).
fn change_id() -> String {
    use std::io::Read;
    let mut buf = [0u8; 8];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut buf)) {
        Ok(()) => hex::encode(buf),
        Err(_) => format!(
            "{:x}",
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ),
    }
}

pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn parse<T: serde::de::DeserializeOwned>(key: &str, s: &str) -> Result<T, RegistryError> {
    serde_json::from_str(s).map_err(|e| RegistryError::Corrupt { key: key.into(), message: e.to_string() })
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Drop the oldest versions of `rec` beyond `keep`, never the active one nor `newest`; the ids
/// of the dropped ones.
fn gc_versions(rec: &mut TransformRecord, newest: &str, keep: usize) -> Vec<String> {
    let mut dropped = Vec::new();
    while rec.versions.len() > keep {
        let oldest = rec
            .versions
            .iter()
            .enumerate()
            .filter(|(_, v)| v.id != newest && Some(&v.id) != rec.active.as_ref())
            .min_by_key(|(_, v)| v.uploaded_ms)
            .map(|(i, _)| i);
        match oldest {
            Some(i) => dropped.push(rec.versions.remove(i).id),
            None => break,
        }
    }
    dropped
}

#[derive(Clone)]
pub struct Registry {
    conn: Conn,
}

impl Registry {
    /// Connect to a single Redis.
    pub async fn connect(url: &str) -> Result<Self, RegistryError> {
        Ok(Self { conn: Conn::single(url).await? })
    }

    /// Connect as the store's options say (a single Redis or a Cluster: every registry key
    /// shares one hash tag, so the registry lives in one slot).
    pub async fn open(opts: &crate::store::redis::RedisOptions) -> Result<Self, RegistryError> {
        let conn = match opts.urls.as_slice() {
            [url] if !opts.cluster => Conn::single(url).await?,
            seeds => Conn::cluster(seeds).await?,
        };
        Ok(Self { conn })
    }

    fn conn(&self) -> Conn {
        self.conn.clone()
    }

    /// The change counter.
    pub async fn version(&self) -> Result<u64, RegistryError> {
        Ok(self.revision().await?.version)
    }

    /// The change counter and the latest change's id, in one round trip.
    pub async fn revision(&self) -> Result<Revision, RegistryError> {
        let (v, change): (Option<u64>, Option<String>) =
            redis::pipe().get(format!("{P}:version")).get(format!("{P}:change")).query_async(&mut self.conn()).await?;
        Ok(Revision { version: v.unwrap_or(0), change: change.unwrap_or_default() })
    }

    /// Add "bump the counter, record a new change id" to an atomic pipeline.
    fn bump(pipe: &mut redis::Pipeline) -> &mut redis::Pipeline {
        pipe.incr(format!("{P}:version"), 1).ignore().set(format!("{P}:change"), change_id()).ignore()
    }

    /// Read everything (the registry is small: configs and hashes, not blobs).
    pub async fn snapshot(&self) -> Result<Snapshot, RegistryError> {
        let mut c = self.conn();
        type Head = (Option<u64>, Option<String>, HashMap<String, String>, HashMap<String, String>);
        let (version, change, tenants, keys): Head = redis::pipe()
            .atomic()
            .get(format!("{P}:version"))
            .get(format!("{P}:change"))
            .hgetall(format!("{P}:tenants"))
            .hgetall(format!("{P}:keys"))
            .query_async(&mut c)
            .await?;
        let mut snap =
            Snapshot { version: version.unwrap_or(0), change: change.unwrap_or_default(), ..Snapshot::default() };
        for (name, v) in tenants {
            snap.tenants.insert(name, parse(&format!("{P}:tenants"), &v)?);
        }
        for (h, v) in keys {
            snap.keys.insert(h, parse(&format!("{P}:keys"), &v)?);
        }
        if !snap.tenants.is_empty() {
            let mut pipe = redis::pipe();
            let names: Vec<&String> = snap.tenants.keys().collect();
            for t in &names {
                pipe.hgetall(format!("{P}:transforms:{t}")).hgetall(format!("{P}:views:{t}"));
            }
            let res: Vec<HashMap<String, String>> = pipe.query_async(&mut c).await?;
            for (i, t) in names.iter().enumerate() {
                let mut ts = HashMap::new();
                for (n, v) in &res[2 * i] {
                    ts.insert(n.clone(), parse(&format!("{P}:transforms:{t}"), v)?);
                }
                let mut vs = HashMap::new();
                for (n, v) in &res[2 * i + 1] {
                    vs.insert(n.clone(), parse(&format!("{P}:views:{t}"), v)?);
                }
                snap.transforms.insert((*t).clone(), ts);
                snap.views.insert((*t).clone(), vs);
            }
        }
        Ok(snap)
    }

    /// Write `hash[field] = value` and bump the version, atomically.
    async fn put(&self, hash: String, field: &str, value: String) -> Result<(), RegistryError> {
        let mut c = self.conn();
        let mut pipe = redis::pipe();
        pipe.atomic().hset(hash, field, value).ignore();
        let _: () = Self::bump(&mut pipe).query_async(&mut c).await?;
        Ok(())
    }

    async fn get<T: serde::de::DeserializeOwned>(&self, hash: String, field: &str) -> Result<Option<T>, RegistryError> {
        let v: Option<String> = self.conn().hget(&hash, field).await?;
        v.map(|s| parse(&hash, &s)).transpose()
    }

    pub async fn tenant(&self, name: &str) -> Result<Tenant, RegistryError> {
        self.get(format!("{P}:tenants"), name).await?.ok_or_else(|| RegistryError::NoTenant(name.into()))
    }

    pub async fn create_tenant(&self, t: &Tenant) -> Result<(), RegistryError> {
        let mut c = self.conn();
        let created: bool = c.hset_nx(format!("{P}:tenants"), &t.name, to_json(t)).await?;
        if !created {
            return Err(RegistryError::TenantExists(t.name.clone()));
        }
        let _: () = Self::bump(redis::pipe().atomic()).query_async(&mut c).await?;
        Ok(())
    }

    pub async fn update_tenant(&self, t: &Tenant) -> Result<(), RegistryError> {
        self.tenant(&t.name).await?;
        self.put(format!("{P}:tenants"), &t.name, to_json(t)).await
    }

    /// Store a new key for `tenant`; the secret is returned once and never stored.
    pub async fn issue_key(&self, tenant: &str, secret: &str, now_ms: i64) -> Result<ApiKey, RegistryError> {
        self.tenant(tenant).await?;
        let h = hash_secret(secret);
        let key = ApiKey { id: h[..16].to_owned(), tenant: tenant.into(), created_ms: now_ms, revoked: false };
        self.put(format!("{P}:keys"), &h, to_json(&key)).await?;
        Ok(key)
    }

    /// Revoke a tenant's key by its id.
    pub async fn revoke_key(&self, tenant: &str, id: &str) -> Result<(), RegistryError> {
        let keys: HashMap<String, String> = self.conn().hgetall(format!("{P}:keys")).await?;
        for (h, v) in keys {
            let mut k: ApiKey = parse(&format!("{P}:keys"), &v)?;
            if k.id == id && k.tenant == tenant {
                k.revoked = true;
                return self.put(format!("{P}:keys"), &h, to_json(&k)).await;
            }
        }
        Err(RegistryError::NoKey(id.into()))
    }

    pub async fn blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, RegistryError> {
        Ok(self.conn().get(format!("{P}:blob:{sha256}")).await?)
    }

    /// Every transform of a tenant.
    pub async fn transforms(&self, tenant: &str) -> Result<HashMap<String, TransformRecord>, RegistryError> {
        let hash = format!("{P}:transforms:{tenant}");
        let raw: HashMap<String, String> = self.conn().hgetall(&hash).await?;
        raw.into_iter().map(|(n, v)| Ok((n, parse(&hash, &v)?))).collect()
    }

    pub async fn transform(&self, tenant: &str, name: &str) -> Result<Option<TransformRecord>, RegistryError> {
        self.get(format!("{P}:transforms:{tenant}"), name).await
    }

    /// Add a validated, compiled version (and its bytes), optionally activating it, and keep at
    /// most `keep` versions: the oldest inactive ones beyond are dropped, with their bytes unless
    /// another transform still references them; atomic.
    pub async fn add_version(
        &self,
        tenant: &str,
        name: &str,
        version: Version,
        bytes: &[u8],
        activate: bool,
        keep: usize,
    ) -> Result<TransformRecord, RegistryError> {
        let mut rec = self.transform(tenant, name).await?.unwrap_or(TransformRecord {
            name: name.into(),
            active: None,
            versions: Vec::new(),
        });
        let id = version.id.clone();
        if rec.version(&id).is_none() {
            rec.versions.push(version);
        }
        if activate || rec.active.is_none() {
            rec.active = Some(id.clone());
        }
        let dropped = gc_versions(&mut rec, &id, keep.max(1));
        let mut unreferenced = Vec::new();
        if !dropped.is_empty() {
            let snap = self.snapshot().await?;
            let in_use = |sha: &str| {
                snap.transforms
                    .iter()
                    .any(|(t, recs)| recs.values().any(|r| (t != tenant || r.name != name) && r.version(sha).is_some()))
            };
            unreferenced = dropped.into_iter().filter(|v| !in_use(v)).collect();
        }
        let mut pipe = redis::pipe();
        pipe.atomic().set(format!("{P}:blob:{id}"), bytes).ignore();
        for sha in &unreferenced {
            pipe.del(format!("{P}:blob:{sha}")).ignore();
        }
        pipe.hset(format!("{P}:transforms:{tenant}"), name, to_json(&rec)).ignore();
        let _: () = Self::bump(&mut pipe).query_async(&mut self.conn()).await?;
        Ok(rec)
    }

    /// Make `version` the active one (also a rollback).
    pub async fn activate(&self, tenant: &str, name: &str, version: &str) -> Result<TransformRecord, RegistryError> {
        let mut rec = self.transform(tenant, name).await?.ok_or_else(|| RegistryError::NoTransform(name.into()))?;
        if rec.version(version).is_none() {
            return Err(RegistryError::NoVersion { name: name.into(), version: version.into() });
        }
        rec.active = Some(version.into());
        self.put(format!("{P}:transforms:{tenant}"), name, to_json(&rec)).await?;
        Ok(rec)
    }

    pub async fn put_view(&self, tenant: &str, view: &ViewRecord) -> Result<(), RegistryError> {
        self.put(format!("{P}:views:{tenant}"), &view.name, to_json(view)).await
    }

    pub async fn delete_view(&self, tenant: &str, name: &str) -> Result<(), RegistryError> {
        let mut c = self.conn();
        let mut pipe = redis::pipe();
        pipe.atomic().hdel(format!("{P}:views:{tenant}"), name);
        let (n,): (u64,) = Self::bump(&mut pipe).query_async(&mut c).await?;
        if n == 0 {
            return Err(RegistryError::NoView(name.into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(id: &str, uploaded_ms: i64) -> Version {
        Version {
            id: id.into(),
            world: "stream".into(),
            info: serde_json::Value::Null,
            bytes: 1,
            compile_ms: 0,
            uploaded_ms,
        }
    }

    #[test]
    fn gc_drops_the_oldest_inactive_versions_beyond_the_cap() {
        let mut rec = TransformRecord {
            name: "t".into(),
            active: Some("a".into()),
            versions: vec![v("a", 1), v("b", 2), v("c", 3), v("d", 4), v("e", 5)],
        };
        assert_eq!(gc_versions(&mut rec, "e", 3), vec!["b".to_string(), "c".to_string()]);
        let ids: Vec<&str> = rec.versions.iter().map(|v| v.id.as_str()).collect();
        assert_eq!(ids, ["a", "d", "e"], "the active (oldest) and the newest are kept");
        assert!(gc_versions(&mut rec, "e", 3).is_empty());
    }
}
