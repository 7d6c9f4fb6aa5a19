//! On-disk cache of precompiled components.
//!
//! Key: `sha256(wasm)` under a directory named by the engine's compatibility hash (which covers
//! the wasmtime version, target and code-affecting `Config` flags) and Wafer's own fingerprint.
//! Artifacts are written to a temporary file and renamed into place, so a crash never leaves a
//! half-written artifact. Only artifacts this process family wrote are ever deserialized, and
//! only for components that passed validation (see `component::Loader::load`).
//!
//! The cache is bounded ([`ArtifactCache::set_max_bytes`], across every tenant's namespace):
//! storing an artifact evicts the least recently used ones (a hit refreshes the file's mtime)
//! until the total fits. An evicted artifact that is still loaded stays mapped; it is recompiled
//! only if loaded again.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};

use cap_std::ambient_authority;
use cap_std::fs::Dir;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("artifact cache directory {path}: {source}")]
    Dir { path: PathBuf, source: io::Error },
    #[error("writing artifact {name}: {source}")]
    Write { name: String, source: io::Error },
}

/// Default bound on the cache's total size.
pub const DEFAULT_MAX_BYTES: u64 = 4 << 30;

/// A directory of compiled artifacts for one engine configuration.
pub struct ArtifactCache {
    root: PathBuf,
    dir: Dir,
    top: std::sync::Arc<Top>,
}

/// The engine's directory (holding every namespace) and its size bound.
struct Top {
    dir: Dir,
    max_bytes: std::sync::atomic::AtomicU64,
    evicting: parking_lot::Mutex<()>,
}

impl ArtifactCache {
    /// Open (creating it if needed) the cache under `base` for `engine`.
    pub fn open(base: &Path, engine: &wasmtime::Engine, fingerprint: &str) -> Result<Self, CacheError> {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        fingerprint.hash(&mut h);
        let root = base.join(format!("{:016x}", h.finish()));
        std::fs::create_dir_all(&root).map_err(|source| CacheError::Dir { path: root.clone(), source })?;
        let open = || {
            Dir::open_ambient_dir(&root, ambient_authority())
                .map_err(|source| CacheError::Dir { path: root.clone(), source })
        };
        let top = std::sync::Arc::new(Top {
            dir: open()?,
            max_bytes: DEFAULT_MAX_BYTES.into(),
            evicting: parking_lot::Mutex::new(()),
        });
        Ok(Self { dir: open()?, root, top })
    }

    /// Bound the total size of the cache (every namespace of this engine's directory).
    pub fn set_max_bytes(&self, max: u64) {
        self.top.max_bytes.store(max, std::sync::atomic::Ordering::Relaxed);
    }

    /// The cache of one tenant: a subdirectory opened through this directory's handle, so a
    /// name can never reach outside it (`name` must already be a validated tenant name).
    pub fn namespace(&self, name: &str) -> Result<Self, CacheError> {
        let path = self.root.join(name);
        let err = |source| CacheError::Dir { path: path.clone(), source };
        if name.is_empty() || name.contains(['/', '\\', '.']) {
            return Err(err(io::Error::new(io::ErrorKind::InvalidInput, "invalid namespace name")));
        }
        self.dir.create_dir_all(name).map_err(err)?;
        let dir = self.dir.open_dir(name).map_err(err)?;
        Ok(Self { root: path, dir, top: self.top.clone() })
    }

    fn name(sha256_hex: &str) -> String {
        format!("{sha256_hex}.cwasm")
    }

    /// Path of the artifact for `sha256_hex`, if it is cached. The name is a hex digest we
    /// computed, never user input.
    pub fn lookup(&self, sha256_hex: &str) -> Option<PathBuf> {
        let name = Self::name(sha256_hex);
        let f = self.dir.open(&name).ok()?;
        if !f.metadata().ok()?.is_file() {
            return None;
        }
        // Recently used: eviction goes by modification time.
        let _ = f.into_std().set_modified(std::time::SystemTime::now());
        Some(self.root.join(name))
    }

    /// Store `artifact` and return its path.
    pub fn store(&self, sha256_hex: &str, artifact: &[u8]) -> Result<PathBuf, CacheError> {
        let name = Self::name(sha256_hex);
        // Unique per writer: two threads may compile the same component at once.
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = format!("{name}.tmp-{}-{seq}", std::process::id());
        let write = || -> io::Result<()> {
            self.dir.write(&tmp, artifact)?;
            self.dir.rename(&tmp, &self.dir, &name)
        };
        write().map_err(|source| CacheError::Write { name: name.clone(), source })?;
        self.evict_to_fit();
        Ok(self.root.join(name))
    }

    /// Remove least recently used artifacts until the cache fits its bound.
    fn evict_to_fit(&self) {
        let max = self.top.max_bytes.load(std::sync::atomic::Ordering::Relaxed);
        let _one = self.top.evicting.lock();
        let mut files = Vec::new();
        collect(&self.top.dir, None, &mut files);
        let mut total: u64 = files.iter().map(|f| f.size).sum();
        if total <= max {
            return;
        }
        files.sort_by_key(|f| f.modified);
        for f in files {
            if total <= max {
                break;
            }
            let removed = match &f.sub {
                Some(sub) => self.top.dir.open_dir(sub).and_then(|d| d.remove_file(&f.name)),
                None => self.top.dir.remove_file(&f.name),
            };
            if removed.is_ok() {
                total -= f.size;
                tracing::info!(artifact = %f.name, bytes = f.size, "artifact cache over its bound: evicted the least recently used");
            }
        }
    }

    /// Total size of the cached artifacts (every namespace).
    pub fn total_bytes(&self) -> u64 {
        let mut files = Vec::new();
        collect(&self.top.dir, None, &mut files);
        files.iter().map(|f| f.size).sum()
    }

    /// Forget a (corrupt or incompatible) artifact.
    pub fn evict(&self, sha256_hex: &str) {
        let _ = self.dir.remove_file(Self::name(sha256_hex));
    }

    /// Default location: `$WAFER_CACHE_DIR`, else `$XDG_CACHE_HOME/wafer/artifacts`, else
    /// `~/.cache/wafer/artifacts`, else a directory under the system temp dir.
    pub fn default_base() -> PathBuf {
        if let Some(p) = std::env::var_os("WAFER_CACHE_DIR") {
            return PathBuf::from(p);
        }
        if let Some(p) = std::env::var_os("XDG_CACHE_HOME") {
            return PathBuf::from(p).join("wafer/artifacts");
        }
        if let Some(home) = std::env::var_os("HOME") {
            return PathBuf::from(home).join(".cache/wafer/artifacts");
        }
        std::env::temp_dir().join("wafer-artifacts")
    }
}

/// One cached artifact, for eviction.
struct Cached {
    sub: Option<String>,
    name: String,
    size: u64,
    modified: std::time::SystemTime,
}

/// Every `*.cwasm` in `dir` and (one level down) its namespaces.
fn collect(dir: &Dir, sub: Option<&str>, out: &mut Vec<Cached>) {
    let Ok(entries) = dir.entries() else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            if sub.is_none()
                && let Ok(d) = dir.open_dir(&name)
            {
                collect(&d, Some(&name), out);
            }
        } else if name.ends_with(".cwasm") {
            let modified = meta.modified().map(|t| t.into_std()).unwrap_or(std::time::UNIX_EPOCH);
            out.push(Cached { sub: sub.map(String::from), name, size: meta.len(), modified });
        }
    }
}
