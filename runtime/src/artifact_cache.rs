//! On-disk cache of precompiled components.
//!
//! Key: `sha256(wasm)` under a directory named by the engine's compatibility hash (which covers
//! the wasmtime version, target and code-affecting `Config` flags) and Wafer's own fingerprint.
//! Artifacts are written to a temporary file and renamed into place, so a crash never leaves a
//! half-written artifact. Only artifacts this process family wrote are ever deserialized.

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

/// A directory of compiled artifacts for one engine configuration.
pub struct ArtifactCache {
    root: PathBuf,
    dir: Dir,
}

impl ArtifactCache {
    /// Open (creating it if needed) the cache under `base` for `engine`.
    pub fn open(base: &Path, engine: &wasmtime::Engine, fingerprint: &str) -> Result<Self, CacheError> {
        let mut h = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        fingerprint.hash(&mut h);
        let root = base.join(format!("{:016x}", h.finish()));
        std::fs::create_dir_all(&root).map_err(|source| CacheError::Dir { path: root.clone(), source })?;
        let dir = Dir::open_ambient_dir(&root, ambient_authority())
            .map_err(|source| CacheError::Dir { path: root.clone(), source })?;
        Ok(Self { root, dir })
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
        Ok(Self { root: path, dir })
    }

    fn name(sha256_hex: &str) -> String {
        format!("{sha256_hex}.cwasm")
    }

    /// Path of the artifact for `sha256_hex`, if it is cached. The name is a hex digest we
    /// computed, never user input.
    pub fn lookup(&self, sha256_hex: &str) -> Option<PathBuf> {
        let name = Self::name(sha256_hex);
        self.dir.metadata(&name).ok().filter(|m| m.is_file()).map(|_| self.root.join(name))
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
        Ok(self.root.join(name))
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
