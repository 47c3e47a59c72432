//! [`TlsCell`]: the TLS config in force, shared by every worker and
//! swapped on SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;

use super::{load, TlsError};

/// The certificate files and the config made from them last, shared by
/// every worker (`Arc<TlsCell>`).
///
/// [`TlsCell::reload`] reads both files again and swaps the config in
/// only if they load; connections already open keep the config they
/// started with. Workers read it through a [`super::TlsAcceptor`], which
/// takes the lock only after a reload, never per connection or per byte.
#[derive(Debug)]
pub struct TlsCell {
    cert: PathBuf,
    key: PathBuf,
    /// The config, with the generation it was stored under.
    current: RwLock<(u64, Arc<ServerConfig>)>,
    /// The generation of `current`, readable without the lock: bumped
    /// after each successful reload.
    generation: AtomicU64,
}

impl TlsCell {
    /// Loads `cert` and `key` ([`load()`]) into a new cell.
    pub fn load(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Result<TlsCell, TlsError> {
        let cert = cert.into();
        let key = key.into();
        let config = load(&cert, &key)?;
        Ok(TlsCell {
            cert,
            key,
            current: RwLock::new((0, config)),
            generation: AtomicU64::new(0),
        })
    }

    /// The `--tls-cert` file.
    pub fn cert_path(&self) -> &Path {
        &self.cert
    }

    /// The `--tls-key` file.
    pub fn key_path(&self) -> &Path {
        &self.key
    }

    /// The config for a connection accepted now.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.snapshot().1
    }

    /// The config in force with its generation (0 at start-up, one more
    /// for each reload that took).
    pub fn snapshot(&self) -> (u64, Arc<ServerConfig>) {
        // The lock guards a plain pair replaced whole: a panic elsewhere
        // cannot leave it half-written, so a poisoned lock is still fine.
        let guard = self.current.read().unwrap_or_else(PoisonError::into_inner);
        (guard.0, Arc::clone(&guard.1))
    }

    /// The generation of the config in force, without taking the lock.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reads both files again; on success the new config serves every
    /// connection accepted from now on, on failure the old one goes on
    /// serving and the error says which file is wrong.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = load(&self.cert, &self.key)?;
        let mut guard = self.current.write().unwrap_or_else(PoisonError::into_inner);
        let generation = guard.0 + 1;
        *guard = (generation, config);
        // Published while the lock is held, so the counter never runs ahead
        // of or behind the config a reader then finds.
        self.generation.store(generation, Ordering::Release);
        Ok(())
    }
}
