//! Scripts: create, list, read, update, delete. The rules:
//! - a source is at most [`MAX_SOURCE_BYTES`] and must compile (checked by the executor's
//!   validator at save time; a failure names the line and column);
//! - a name must suit the kind (a module's name is what scripts import);
//! - a script that routes point at stays an endpoint;
//! - a script may import only modules of its own app, never itself nor, through others, a
//!   module that imports it (a cycle); what it imports is recorded with it, so a module that
//!   others import is not deleted, renamed or made an endpoint without `force`;
//! - saving a script refreshes the routes of its app, so the next request runs the new source;
//! - a test run ([`ScriptService::execute`]) runs an endpoint now, through the sync path of the
//!   outbox like a public request, with the caller's own authority.

use std::sync::Arc;

use std::collections::{HashMap, VecDeque};

use picloud_core::exec::{
    AppRef, ExecError, ExecErrorKind, ExecOutcome, ExecRequest, HttpRequest, ValidatedScript,
};
use picloud_core::{
    AppId, Capability, ExecutionId, InputError, Principal, Script, ScriptId, ScriptKind, ScriptName,
};
use picloud_store::{NewScript, Page, PageRequest, ScriptLink, ScriptPatch, Store, StoreError};

use crate::auth::{require, require_on};
use crate::dispatcher::Dispatcher;
use crate::error::{ServiceError, ServiceResult};
use crate::index::{self, RouteIndex};
use crate::page::check_page;
use crate::runner::Ran;
use crate::validate::ScriptValidator;

/// The largest source accepted: 1 MiB.
pub const MAX_SOURCE_BYTES: usize = 1024 * 1024;

/// A new script. The name is checked here because its rules depend on the kind.
#[derive(Debug, Clone)]
pub struct NewScriptInput {
    pub name: String,
    pub kind: ScriptKind,
    pub source: String,
}

/// Changes to a script; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct ScriptChanges {
    pub name: Option<String>,
    pub kind: Option<ScriptKind>,
    pub source: Option<String>,
}

/// A script with the scripts it imports and those that import it.
#[derive(Debug, Clone)]
pub struct ScriptDetail {
    pub script: Script,
    pub imports: Vec<ScriptLink>,
    pub imported_by: Vec<ScriptLink>,
}

/// A finished test run: the response (or the error) and the log lines.
#[derive(Debug, Clone)]
pub struct TestRun {
    pub execution_id: ExecutionId,
    pub outcome: ExecOutcome,
}

#[derive(Clone)]
pub struct ScriptService {
    store: Arc<dyn Store>,
    index: Arc<RouteIndex>,
    validator: Arc<dyn ScriptValidator>,
    dispatcher: Arc<Dispatcher>,
}

impl ScriptService {
    pub(crate) fn new(
        store: Arc<dyn Store>,
        index: Arc<RouteIndex>,
        validator: Arc<dyn ScriptValidator>,
        dispatcher: Arc<Dispatcher>,
    ) -> Self {
        Self {
            store,
            index,
            validator,
            dispatcher,
        }
    }

    /// Runs an endpoint script now with `request`, as the caller: the script's data access is
    /// the caller's (see the execution contract's authority), not the app's.
    #[tracing::instrument(skip_all, fields(script_id = %id, execution_id = tracing::field::Empty))]
    pub async fn execute(
        &self,
        actor: &Principal,
        id: ScriptId,
        request: HttpRequest,
    ) -> ServiceResult<TestRun> {
        let script = self.load(id).await?;
        require_on(
            actor,
            Capability::AppScriptsExecute(script.app_id),
            "script",
            id,
        )?;
        if script.kind == ScriptKind::Module {
            return Err(InputError::new(
                "script",
                format!("'{}' is a module script; only endpoints run", script.name),
            )
            .into());
        }
        let app = self
            .store
            .get_app(script.app_id)
            .await?
            .ok_or_else(|| ServiceError::not_found("script", id))?;
        let modules = index::modules_for(self.store.as_ref(), app.id, &script.source).await?;
        let execution_id = ExecutionId::new();
        tracing::Span::current().record("execution_id", tracing::field::display(execution_id));
        let exec = ExecRequest {
            execution_id,
            app: AppRef {
                id: app.id,
                slug: app.slug.to_string(),
            },
            script: picloud_core::exec::ScriptRef {
                id: script.id,
                name: script.name.to_string(),
                updated_at: script.updated_at,
                source: script.source.into(),
            },
            request,
            authority: actor.authority_on(script.app_id),
            event: None,
            trigger_depth: 0,
            attempt: 1,
            modules,
        };
        let outcome = match self.dispatcher.run_sync(exec).await {
            Ok(Ran::Finished(outcome, _)) => outcome,
            Ok(Ran::Overloaded(refusal)) => return Err(ServiceError::Overloaded(refusal)),
            Err(_timed_out) => ExecOutcome {
                result: Err(ExecError {
                    kind: ExecErrorKind::Timeout,
                    message: "the execution did not finish while the request waited".to_owned(),
                    line: None,
                    column: None,
                }),
                ..ExecOutcome::unavailable("")
            },
        };
        Ok(TestRun {
            execution_id,
            outcome,
        })
    }

    #[tracing::instrument(skip_all, fields(app_id = %app_id))]
    pub async fn create(
        &self,
        actor: &Principal,
        app_id: AppId,
        input: NewScriptInput,
    ) -> ServiceResult<Script> {
        require(actor, Capability::AppScriptsWrite(app_id))?;
        let name = ScriptName::parse(&input.name, input.kind)?;
        if self.store.get_app(app_id).await?.is_none() {
            return Err(ServiceError::not_found("app", app_id));
        }
        let _writes = self.index.lock_writes().await;
        let imports = self
            .check_script(app_id, &name, input.kind, &input.source)
            .await?;
        let new = NewScript {
            app_id,
            name,
            kind: input.kind,
            source: input.source,
            imports,
        };
        let script = self
            .store
            .create_script(&new)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => ServiceError::not_found("app", app_id),
                other => other.into(),
            })?;
        if script.kind == ScriptKind::Module {
            self.index.refresh_app(self.store.as_ref(), app_id).await?;
        }
        tracing::info!(script_id = %script.id, name = %script.name, "script created");
        Ok(script)
    }

    /// The scripts of an app, oldest first.
    pub async fn list(
        &self,
        actor: &Principal,
        app_id: AppId,
        page: &PageRequest,
    ) -> ServiceResult<Page<Script>> {
        require(actor, Capability::AppScriptsRead(app_id))?;
        check_page(page)?;
        if self.store.get_app(app_id).await?.is_none() {
            return Err(ServiceError::not_found("app", app_id));
        }
        Ok(self.store.list_scripts(app_id, page).await?)
    }

    pub async fn get(&self, actor: &Principal, id: ScriptId) -> ServiceResult<ScriptDetail> {
        let script = self.load(id).await?;
        require_on(
            actor,
            Capability::AppScriptsRead(script.app_id),
            "script",
            id,
        )?;
        Ok(ScriptDetail {
            imports: self.store.imports_of(id).await?,
            imported_by: self.store.importers_of(id).await?,
            script,
        })
    }

    #[tracing::instrument(skip_all, fields(script_id = %id))]
    pub async fn update(
        &self,
        actor: &Principal,
        id: ScriptId,
        changes: ScriptChanges,
    ) -> ServiceResult<Script> {
        let current = self.load(id).await?;
        require_on(
            actor,
            Capability::AppScriptsWrite(current.app_id),
            "script",
            id,
        )?;
        let kind = changes.kind.unwrap_or(current.kind);
        let name = match &changes.name {
            Some(name) => Some(ScriptName::parse(name, kind)?),
            None if kind != current.kind => {
                // The kept name must suit the new kind too (a module's name is imported).
                Some(ScriptName::parse(current.name.as_str(), kind)?)
            }
            None => None,
        };
        // Held from the route check to the index refresh, so no route can be added to a script
        // that is becoming a module.
        let _writes = self.index.lock_writes().await;
        if kind == ScriptKind::Module && current.kind == ScriptKind::Endpoint {
            let routes = self.store.list_routes_of_script(id).await?;
            if !routes.is_empty() {
                return Err(ServiceError::Conflict(format!(
                    "'{}' is the target of {} route(s); delete them before making it a module",
                    current.name,
                    routes.len()
                )));
            }
        }
        if current.kind == ScriptKind::Module
            && (kind != ScriptKind::Module || name.as_ref().is_some_and(|n| *n != current.name))
        {
            self.refuse_if_imported(&current, "renamed or made an endpoint")
                .await?;
        }
        // After the route check: a routed script stays an endpoint whatever its source says.
        let imports = if changes.source.is_some() || kind != current.kind || name.is_some() {
            let source = changes.source.as_deref().unwrap_or(&current.source);
            let saved_name = name.as_ref().unwrap_or(&current.name);
            Some(
                self.check_script(current.app_id, saved_name, kind, source)
                    .await?,
            )
        } else {
            None
        };
        let patch = ScriptPatch {
            name,
            kind: changes.kind,
            source: changes.source,
            imports,
        };
        let script = self
            .store
            .update_script(id, &patch)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => ServiceError::not_found("script", id),
                other => other.into(),
            })?;
        self.index
            .refresh_app(self.store.as_ref(), script.app_id)
            .await?;
        tracing::info!(app_id = %script.app_id, "script updated");
        Ok(script)
    }

    /// Refused (409) while routes or triggers point at the script, and while other scripts
    /// import it unless `force` (their imports then fail until they change).
    #[tracing::instrument(skip_all, fields(script_id = %id))]
    pub async fn delete(&self, actor: &Principal, id: ScriptId, force: bool) -> ServiceResult<()> {
        let current = self.load(id).await?;
        require_on(
            actor,
            Capability::AppScriptsWrite(current.app_id),
            "script",
            id,
        )?;
        let _writes = self.index.lock_writes().await;
        if !force {
            self.refuse_if_imported(&current, "deleted").await?;
        }
        if !self.store.delete_script(id).await? {
            return Err(ServiceError::not_found("script", id));
        }
        self.index
            .refresh_app(self.store.as_ref(), current.app_id)
            .await?;
        tracing::info!(app_id = %current.app_id, "script deleted");
        Ok(())
    }

    /// `Conflict` naming the scripts that import `module`, which cannot be `done` under them.
    async fn refuse_if_imported(&self, module: &Script, done: &str) -> ServiceResult<()> {
        let importers = self.store.importers_of(module.id).await?;
        if importers.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = importers
            .iter()
            .map(|link| format!("'{}'", link.name))
            .collect();
        Err(ServiceError::Conflict(format!(
            "the module '{}' cannot be {done} while {} import it; change them first (a delete \
             can be forced with ?force=true, and their imports then fail until they change)",
            module.name,
            names.join(", ")
        )))
    }

    async fn load(&self, id: ScriptId) -> ServiceResult<Script> {
        self.store
            .get_script(id)
            .await?
            .ok_or_else(|| ServiceError::not_found("script", id))
    }

    /// The source's checks ([`Self::check_source`]), then its imports against the app: each
    /// names a module of the app, none the script itself, and a module imports nothing that
    /// imports it back (through the imports recorded for the others). The imports to record.
    async fn check_script(
        &self,
        app_id: AppId,
        name: &ScriptName,
        kind: ScriptKind,
        source: &str,
    ) -> ServiceResult<Vec<String>> {
        let validated = self.check_source(source, kind).await?;
        if validated.imports.is_empty() {
            return Ok(Vec::new());
        }
        let modules = index::module_versions(self.store.as_ref(), app_id).await?;
        let graph = self.store.import_graph(app_id).await?;
        for import in &validated.imports {
            let refused = |message: String| ServiceError::InvalidScript {
                message: match import.line {
                    Some(line) => format!("line {line}: {message}"),
                    None => message,
                },
                line: import.line,
                column: import.column,
            };
            if import.name == name.as_str() {
                return Err(refused(format!(
                    "import cycle: {name} → {name}; a module cannot import itself"
                )));
            }
            if modules.get(&import.name).is_none() {
                return Err(refused(missing_module(&import.name, modules.names())));
            }
            if let Some(chain) = cycle(&graph, name.as_str(), &import.name) {
                return Err(refused(format!(
                    "import cycle: {}; a module cannot import itself, directly or through others",
                    chain.join(" → ")
                )));
            }
        }
        Ok(validated.imports.into_iter().map(|i| i.name).collect())
    }

    /// Size, then compilation (on a blocking thread: a large source takes a while to parse).
    async fn check_source(&self, source: &str, kind: ScriptKind) -> ServiceResult<ValidatedScript> {
        if source.len() > MAX_SOURCE_BYTES {
            return Err(InputError::new(
                "source",
                format!(
                    "the source is {} bytes; at most {MAX_SOURCE_BYTES} (1 MiB) are accepted",
                    source.len()
                ),
            )
            .into());
        }
        let validator = self.validator.clone();
        let source = source.to_owned();
        let span = tracing::Span::current();
        let checked = tokio::task::spawn_blocking(move || {
            let _entered = span.enter();
            validator.validate(&source, kind)
        })
        .await
        .map_err(|err| ServiceError::Internal(format!("the validation task failed: {err}")))?;
        checked.map_err(|err| ServiceError::InvalidScript {
            message: err.message,
            line: err.line,
            column: err.column,
        })
    }
}

/// The sentence for an import of `name`, which is no module of the app, with the closest of
/// the app's module names when one is close.
fn missing_module<'a>(name: &str, modules: impl Iterator<Item = &'a str>) -> String {
    match picloud_executor::closest(name, modules) {
        Some(module) => {
            format!("cannot import '{name}': this app has no module of that name; did you mean '{module}'?")
        }
        None => format!("cannot import '{name}': this app has no module of that name"),
    }
}

/// The chain `script → import → … → script` when `import` already leads back to `script`
/// through the recorded imports (leaving out those of `script`, which its save replaces).
fn cycle(graph: &[(String, String)], script: &str, import: &str) -> Option<Vec<String>> {
    let mut came_from: HashMap<&str, &str> = HashMap::new();
    let mut queue: VecDeque<&str> = VecDeque::from([import]);
    while let Some(at) = queue.pop_front() {
        for (_, next) in graph
            .iter()
            .filter(|(from, _)| from == at && from != script)
        {
            if next == script {
                let mut chain = vec![script.to_owned(), at.to_owned()];
                let mut back = at;
                while let Some(previous) = came_from.get(back) {
                    chain.insert(1, (*previous).to_owned());
                    back = previous;
                }
                chain.push(script.to_owned());
                return Some(chain);
            }
            if next != import && !came_from.contains_key(next.as_str()) {
                came_from.insert(next, at);
                queue.push_back(next);
            }
        }
    }
    None
}
