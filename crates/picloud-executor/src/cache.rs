//! The compiled-script cache: script id → `(updated_at, Arc<AST>)`, least recently used out.
//! A request names the version it wants through `updated_at`; the same version is served from
//! the cache, any other is compiled and replaces it, so a saved script takes effect at once.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use picloud_core::exec::ScriptRef;
use picloud_core::{ScriptId, Timestamp};
use rhai::AST;

pub(crate) struct AstCache {
    /// `parking_lot::Mutex` because nothing blocks while it is held: compilation happens outside.
    entries: Mutex<LruCache<ScriptId, (Timestamp, Arc<AST>)>>,
    compilations: AtomicU64,
}

impl AstCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            compilations: AtomicU64::new(0),
        }
    }

    /// The AST of this version of the script, compiled with `compile` on a miss. Two threads
    /// missing the same script at once may both compile it; the last one in wins, which is
    /// harmless and keeps the lock short.
    pub fn get_or_compile<E>(
        &self,
        script: &ScriptRef,
        compile: impl FnOnce(&str) -> Result<AST, E>,
    ) -> Result<Arc<AST>, E> {
        if let Some((updated_at, ast)) = self.entries.lock().get(&script.id) {
            if *updated_at == script.updated_at {
                return Ok(ast.clone());
            }
        }
        self.compilations.fetch_add(1, Ordering::Relaxed);
        let ast = Arc::new(compile(&script.source)?);
        self.entries
            .lock()
            .put(script.id, (script.updated_at, ast.clone()));
        Ok(ast)
    }

    /// How many times a script was compiled for execution.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }
}
