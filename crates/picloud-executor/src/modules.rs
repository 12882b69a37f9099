//! `import "name" as alias;`: module scripts of the running execution's app, compiled once and
//! shared.
//!
//! The engine is shared by every execution, so its one resolver, [`PicloudModuleResolver`], acts
//! per call through the call context ([`crate::context`]): the app comes from there (a script
//! never names one, so an import cannot cross apps), as do the versions of the app's modules when
//! the run was built ([`ModuleVersions`]) and the chain of imports in progress.
//!
//! An import, in order:
//! 1. a name the app has no module of fails at once ("this app has no module of that name");
//! 2. a name already in the chain is a cycle, refused with the chain (`a → b → a`) before
//!    anything runs — Rhai's `max_modules` would not stop it, and the recursion would overflow
//!    the stack; a chain deeper than `Limits::module_import_depth_max` is refused too (a cached
//!    module knows its deepest chain of imports, so the check holds for it as well);
//! 3. the compiled module is taken from the [`ModuleCache`] when it was built from the version
//!    the run names and so was every module it imports: no database query;
//! 4. otherwise the source is read through [`ModuleSource`](picloud_core::ModuleSource) (an
//!    inline run starts over on a worker first, as for any read), checked against the module
//!    shape again (a row written to the database directly skipped the save-time check),
//!    evaluated into a module within the run's budget, and cached.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;
use picloud_core::exec::ModuleVersion;
use picloud_core::AppId;
use rhai::module_resolvers::ModuleResolver;
use rhai::{Engine, EvalAltResult, GlobalRuntimeState, Module, Position, Scope};

use crate::context;
use crate::validate;

/// A module compiled from one version of its source, and the versions of the modules it
/// imported while it was built (its functions keep them): it is used only while all of them are
/// the ones a run names.
pub(crate) struct CachedModule {
    version: ModuleVersion,
    imported: Vec<(String, ModuleVersion)>,
    /// Its deepest chain of imports, itself first: what importing it adds to a chain's depth.
    deepest: Vec<String>,
    module: Arc<Module>,
}

/// Compiled modules by app and name, least recently used out (`PICLOUD_MODULE_CACHE_SIZE`).
pub(crate) struct ModuleCache {
    entries: Mutex<LruCache<(AppId, String), Arc<CachedModule>>>,
    loads: AtomicU64,
}

impl ModuleCache {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(LruCache::new(
                NonZeroUsize::new(capacity).unwrap_or(NonZeroUsize::MIN),
            )),
            loads: AtomicU64::new(0),
        }
    }

    /// How many times an import read a module's source from the data services (a database
    /// query); a hot import reads none.
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// The cached module if it is still what `fresh` says every module it depends on is.
    fn get(
        &self,
        app_id: AppId,
        name: &str,
        fresh: impl Fn(&str, ModuleVersion) -> bool,
    ) -> Option<Arc<CachedModule>> {
        let cached = self
            .entries
            .lock()
            .get(&(app_id, name.to_owned()))
            .cloned()?;
        (fresh(name, cached.version)
            && cached
                .imported
                .iter()
                .all(|(name, version)| fresh(name, *version)))
        .then_some(cached)
    }

    fn put(&self, app_id: AppId, name: &str, module: Arc<CachedModule>) {
        self.entries.lock().put((app_id, name.to_owned()), module);
    }
}

/// The engine's module resolver; see the module's documentation.
pub(crate) struct PicloudModuleResolver {
    cache: Arc<ModuleCache>,
    depth_max: usize,
}

impl PicloudModuleResolver {
    pub fn new(cache: Arc<ModuleCache>, depth_max: usize) -> Self {
        Self { cache, depth_max }
    }
}

impl ModuleResolver for PicloudModuleResolver {
    /// Not what `import` calls (it calls [`Self::resolve_raw`]); anything else finds nothing.
    fn resolve(
        &self,
        _engine: &Engine,
        _source: Option<&str>,
        path: &str,
        position: Position,
    ) -> Result<Arc<Module>, Box<EvalAltResult>> {
        Err(EvalAltResult::ErrorModuleNotFound(path.to_owned(), position).into())
    }

    fn resolve_raw(
        &self,
        engine: &Engine,
        global: &mut GlobalRuntimeState,
        _scope: &mut Scope,
        name: &str,
        position: Position,
    ) -> Result<Arc<Module>, Box<EvalAltResult>> {
        let not_found = || EvalAltResult::ErrorModuleNotFound(name.to_owned(), position).into();
        let refused = |refusal: String| error(refusal, position);
        let import = context::begin_import(name).map_err(refused)?;
        let Some((app_id, version, modules)) = import else {
            return Err(not_found());
        };
        if let Some(cached) = self.cache.get(app_id, name, |name, version| {
            modules.get(name) == Some(version)
        }) {
            context::check_depth(&cached.deepest, self.depth_max).map_err(refused)?;
            context::imported(name, &cached);
            return Ok(cached.module.clone());
        }
        context::check_depth(&[name.to_owned()], self.depth_max).map_err(refused)?;
        // A miss: read, check and evaluate this version, with the module on the chain. An inline
        // run starts over on a worker, which finds the module cached from then on.
        if context::runs_inline() {
            return Err(context::terminated(context::LOAD_MODULE_TOKEN));
        }
        self.cache.loads.fetch_add(1, Ordering::Relaxed);
        // Read and compiled off the run's memory books: the compiled module outlives the run,
        // shared by every later one, and the source came from another thread.
        let (source, ast) = context::off_the_books(|| {
            let source = crate::sdk::service_call(&format!("import \"{name}\""), async {
                context::module_source()?.lookup(app_id, name).await
            })?
            .ok_or_else(not_found)?;
            let ast = engine.compile(&*source.source).map_err(|err| {
                error(
                    format!("the module '{name}' does not compile: {err}"),
                    position,
                )
            })?;
            Ok::<_, Box<EvalAltResult>>((source, ast))
        })?;
        validate::check_module(&ast).map_err(|shape| {
            let (line, _) = crate::errors::line_and_column(shape.position);
            let at = line
                .map(|line| format!(" (line {line})"))
                .unwrap_or_default();
            error(
                format!(
                    "the module '{name}' is not a valid module{at}: {}",
                    shape.message
                ),
                position,
            )
        })?;
        let frame = context::push_import(name);
        let evaluated = Module::eval_ast_as_new_raw(engine, &mut Scope::new(), global, &ast);
        let (imported, below) = context::pop_import(frame);
        let mut module = evaluated?;
        module.set_id(name);
        let cached = Arc::new(CachedModule {
            version: ModuleVersion {
                id: source.id,
                updated_at: source.updated_at,
            },
            imported,
            deepest: std::iter::once(name.to_owned()).chain(below).collect(),
            module: Arc::new(module),
        });
        // Only the version the run names is worth keeping: a newer one read here is cached
        // once a run names it.
        if version == cached.version {
            self.cache.put(app_id, name, cached.clone());
        }
        context::imported(name, &cached);
        Ok(cached.module.clone())
    }
}

impl CachedModule {
    pub(crate) fn deepest(&self) -> &[String] {
        &self.deepest
    }

    /// This module and everything it imported, as an importer records them.
    pub(crate) fn versions(
        &self,
        name: &str,
    ) -> impl Iterator<Item = (String, ModuleVersion)> + '_ {
        std::iter::once((name.to_owned(), self.version)).chain(self.imported.iter().cloned())
    }
}

/// What an import that cannot go ahead raises: a runtime error at the import.
fn error(message: String, position: Position) -> Box<EvalAltResult> {
    EvalAltResult::ErrorRuntime(message.into(), position).into()
}
