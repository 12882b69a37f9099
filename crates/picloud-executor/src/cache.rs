//! The compiled-script cache: script id → `(updated_at, Arc<Compiled>)`, least recently used
//! out. A request names the version it wants through `updated_at`; the same version is served
//! from the cache, any other is compiled and replaces it, so a saved script takes effect at once.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use picloud_core::exec::ScriptRef;
use picloud_core::{ScriptId, Timestamp};
use rhai::AST;

/// One version of a script, compiled.
pub(crate) struct Compiled {
    pub ast: AST,
    /// Whether the script may read `ctx.request.json` (its source names `json` anywhere), so the
    /// body is parsed for it; the others never pay for parsing a body they do not read.
    pub reads_json: bool,
    /// Whether runs of this version are still tried inline; cleared the first time one has to
    /// start over on an executor thread (it calls a data service, or runs long), so a script
    /// that cannot finish inline pays for the attempt once per version, not per request.
    inline: AtomicBool,
}

impl Compiled {
    fn new(source: &str, ast: AST) -> Self {
        Self {
            ast,
            reads_json: source.contains("json"),
            inline: AtomicBool::new(true),
        }
    }

    pub fn runs_inline(&self) -> bool {
        self.inline.load(Ordering::Relaxed)
    }

    pub fn stop_inline(&self) {
        self.inline.store(false, Ordering::Relaxed);
    }
}

pub(crate) struct AstCache {
    /// `parking_lot::Mutex` because nothing blocks while it is held: compilation happens outside.
    entries: Mutex<LruCache<ScriptId, (Timestamp, Arc<Compiled>)>>,
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
    ) -> Result<Arc<Compiled>, E> {
        if let Some(compiled) = self.get(script) {
            return Ok(compiled);
        }
        self.compilations.fetch_add(1, Ordering::Relaxed);
        let compiled = Arc::new(Compiled::new(&script.source, compile(&script.source)?));
        self.entries
            .lock()
            .put(script.id, (script.updated_at, compiled.clone()));
        Ok(compiled)
    }

    /// This version of the script if it is cached.
    pub fn get(&self, script: &ScriptRef) -> Option<Arc<Compiled>> {
        let mut entries = self.entries.lock();
        let (updated_at, compiled) = entries.get(&script.id)?;
        (*updated_at == script.updated_at).then(|| compiled.clone())
    }

    /// How many times a script was compiled for execution.
    pub fn compilations(&self) -> u64 {
        self.compilations.load(Ordering::Relaxed)
    }
}
