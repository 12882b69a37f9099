//! The route index: every app's routes in memory, so a public request costs no database query.
//!
//! Per app there is one [`matchit`] router per method (`GET`, …, and `ANY`). Matching a request:
//! the router of its exact method first, then `ANY`; a `HEAD` also tries `GET` before `ANY`. A
//! path that some other method's router matches gives [`Lookup::MethodNotAllowed`] with the
//! methods that would have answered.
//!
//! Two patterns conflict when matchit refuses to hold them in one router (`/users/{id}` and
//! `/users/{name}` under the same method); [`RouteIndex::check_new_route`] reports that before
//! the route is written. Different methods never conflict.
//!
//! A wildcard may match nothing: `/files/{*rest}` answers `/files/a/b` (`rest = "a/b"`), and also
//! `/files/` and `/files` (`rest = ""`) unless another route of the same method claims those
//! paths. Otherwise matching is exact: `/users/{id}` does not answer `/users/1/`.
//!
//! The index is built from [`RouteStore::routing_entries`](picloud_store::RouteStore) at start
//! and rebuilt for one app whenever that app's routes, scripts, slug or `expose_errors` change
//! (the services call [`RouteIndex::refresh_app`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use percent_encoding::percent_decode_str;
use picloud_core::exec::{ModuleVersion, ModuleVersions, ScriptRef};
use picloud_core::input::PathSegment;
use picloud_core::{App, AppId, DispatchMode, KeptHeaders, RouteId, RouteMethod, RoutePath};
use picloud_store::{AppModule, PageRequest, RoutingEntry, Store, StoreResult};
use tokio::sync::watch;

use crate::error::{ServiceError, ServiceResult};
use crate::invoke::ErrorDetail;

/// What a route runs, with everything the request path needs (no store lookup).
#[derive(Debug, Clone)]
pub struct RouteTarget {
    pub route_id: RouteId,
    pub app_id: AppId,
    pub app_slug: Arc<str>,
    pub method: RouteMethod,
    pub path: RoutePath,
    pub dispatch_mode: DispatchMode,
    /// The redacted headers an async route keeps in its stored payload.
    pub keep_headers: KeptHeaders,
    /// How much of a failed execution the caller sees (the app's `expose_errors`).
    pub error_detail: ErrorDetail,
    pub script: ScriptRef,
}

impl RouteTarget {
    pub fn from_entry(entry: RoutingEntry) -> Self {
        Self {
            route_id: entry.route.id,
            app_id: entry.route.app_id,
            app_slug: Arc::from(entry.app_slug.as_str()),
            method: entry.route.method,
            path: entry.route.path,
            dispatch_mode: entry.route.dispatch_mode,
            keep_headers: entry.route.keep_headers,
            error_detail: ErrorDetail::of_app(entry.app_expose_errors),
            script: ScriptRef {
                id: entry.route.script_id,
                name: entry.script_name.to_string(),
                updated_at: entry.script_updated_at,
                source: Arc::from(entry.script_source),
            },
        }
    }
}

/// A request's route and its path parameters (percent-decoded).
#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub target: Arc<RouteTarget>,
    pub params: BTreeMap<String, String>,
    /// The app's module scripts, for the run's imports.
    pub modules: ModuleVersions,
}

/// What the index says about a request.
#[derive(Debug, Clone)]
pub enum Lookup {
    Found(RouteMatch),
    /// No app has this slug.
    NoApp,
    /// The app exists but no route's pattern matches the path.
    NoRoute,
    /// Some route's pattern matches the path, but not for this method; `allow` lists the
    /// methods that would answer (for the `Allow` header).
    MethodNotAllowed {
        allow: Vec<&'static str>,
    },
}

/// One matchit router's value: the route, and whether this entry is the empty match of a
/// wildcard (`/files` for `/files/{*rest}`), which binds the wildcard's name to `""`.
#[derive(Debug, Clone)]
struct Endpoint {
    target: Arc<RouteTarget>,
    empty_wildcard: Option<String>,
}

/// The routes of one app.
#[derive(Debug, Clone, Default)]
pub struct AppRoutes {
    app_id: Option<AppId>,
    slug: String,
    targets: Vec<Arc<RouteTarget>>,
    routers: HashMap<RouteMethod, matchit::Router<Endpoint>>,
    /// The app's module scripts and their versions: what its runs may import, and the versions
    /// the executor's module cache must hold (so a hot import reads nothing).
    modules: ModuleVersions,
}

/// Why a route cannot join an app's routes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternConflict {
    pub message: String,
}

impl AppRoutes {
    /// An app's routes; a route that conflicts with an earlier one (possible only if another node
    /// wrote it concurrently) is skipped with a warning rather than failing the whole app.
    pub fn build(
        app_id: AppId,
        slug: &str,
        targets: Vec<Arc<RouteTarget>>,
        modules: ModuleVersions,
    ) -> Self {
        let mut routes = Self {
            app_id: Some(app_id),
            slug: slug.to_owned(),
            modules,
            ..Self::default()
        };
        for target in targets {
            if let Err(conflict) = routes.insert(target.clone()) {
                tracing::warn!(
                    app_id = %app_id,
                    route_id = %target.route_id,
                    "a stored route is left out of the index: {}",
                    conflict.message
                );
            }
        }
        routes.add_empty_wildcards();
        routes
    }

    /// Whether `method path` could join these routes.
    pub fn check(&self, method: RouteMethod, path: &RoutePath) -> Result<(), PatternConflict> {
        let existing = self
            .targets
            .iter()
            .find(|t| t.method == method && t.path == *path);
        if let Some(existing) = existing {
            return Err(PatternConflict {
                message: format!(
                    "the app already has a route {method} {path} (route '{}')",
                    existing.route_id
                ),
            });
        }
        let mut router = matchit::Router::new();
        for target in self.targets.iter().filter(|t| t.method == method) {
            // Existing routes were inserted once already; one that fails here was skipped then.
            let _ = router.insert(matchit_pattern(&target.path), ());
        }
        router
            .insert(matchit_pattern(path), ())
            .map_err(|err| PatternConflict {
                message: conflict_message(method, path, &err),
            })
    }

    fn insert(&mut self, target: Arc<RouteTarget>) -> Result<(), PatternConflict> {
        let router = self.routers.entry(target.method).or_default();
        let endpoint = Endpoint {
            target: target.clone(),
            empty_wildcard: None,
        };
        router
            .insert(matchit_pattern(&target.path), endpoint)
            .map_err(|err| PatternConflict {
                message: conflict_message(target.method, &target.path, &err),
            })?;
        self.targets.push(target);
        Ok(())
    }

    /// Lets each wildcard also match the empty rest, where no route of the same method already
    /// answers that path.
    fn add_empty_wildcards(&mut self) {
        for target in &self.targets {
            let Ok(segments) = target.path.segments() else {
                continue;
            };
            let Some(PathSegment::Wildcard(name)) = segments.last() else {
                continue;
            };
            let pattern = matchit_pattern(&target.path);
            let Some(prefix) = pattern.rfind('/').map(|i| &pattern[..=i]) else {
                continue;
            };
            let mut aliases = vec![prefix.to_owned()];
            if prefix.len() > 1 {
                aliases.push(prefix.trim_end_matches('/').to_owned());
            }
            let Some(router) = self.routers.get_mut(&target.method) else {
                continue;
            };
            for alias in aliases {
                if router.at(&alias).is_ok() {
                    continue;
                }
                let endpoint = Endpoint {
                    target: target.clone(),
                    empty_wildcard: Some(name.clone()),
                };
                // A refusal only means another pattern already covers the alias.
                let _ = router.insert(alias, endpoint);
            }
        }
    }

    /// Matches `method path` (`path` as sent, percent-encoded, starting with `/`).
    pub fn lookup(&self, method: &str, path: &str) -> Lookup {
        for candidate in candidate_methods(method) {
            if let Some(found) = self.match_in(candidate, path) {
                return Lookup::Found(found);
            }
        }
        let mut allow: Vec<&'static str> = Vec::new();
        for route_method in RouteMethod::ALL {
            if self.match_in(route_method, path).is_some() {
                allow.push(route_method.as_str());
            }
        }
        if allow.is_empty() {
            return Lookup::NoRoute;
        }
        // `ANY` is never in the list: had an ANY route matched, the request would have been found.
        if allow.contains(&"GET") && !allow.contains(&"HEAD") {
            allow.push("HEAD");
        }
        allow.sort_unstable();
        Lookup::MethodNotAllowed { allow }
    }

    fn match_in(&self, method: RouteMethod, path: &str) -> Option<RouteMatch> {
        let matched = self.routers.get(&method)?.at(path).ok()?;
        let mut params: BTreeMap<String, String> = matched
            .params
            .iter()
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    percent_decode_str(v).decode_utf8_lossy().into_owned(),
                )
            })
            .collect();
        if let Some(name) = &matched.value.empty_wildcard {
            params.insert(name.clone(), String::new());
        }
        Some(RouteMatch {
            target: matched.value.target.clone(),
            params,
            modules: self.modules.clone(),
        })
    }

    pub fn slug(&self) -> &str {
        &self.slug
    }

    pub fn targets(&self) -> &[Arc<RouteTarget>] {
        &self.targets
    }
}

/// The module versions a run of `source` in the app `app_id` needs, from the store: none for a
/// source that cannot import (it never says `import`), which spares a job the query.
pub(crate) async fn modules_for(
    store: &dyn Store,
    app_id: AppId,
    source: &str,
) -> StoreResult<ModuleVersions> {
    if !source.contains("import") {
        return Ok(ModuleVersions::default());
    }
    module_versions(store, app_id).await
}

/// The module scripts of the app `app_id` now, from the store.
pub(crate) async fn module_versions(
    store: &dyn Store,
    app_id: AppId,
) -> StoreResult<ModuleVersions> {
    let modules = store.module_versions(Some(app_id)).await?;
    Ok(modules_by_app(modules).remove(&app_id).unwrap_or_default())
}

fn modules_by_app(modules: Vec<AppModule>) -> HashMap<AppId, ModuleVersions> {
    let mut by_app: HashMap<AppId, Vec<(String, ModuleVersion)>> = HashMap::new();
    for module in modules {
        by_app
            .entry(module.app_id)
            .or_default()
            .push((module.name, module.version));
    }
    by_app
        .into_iter()
        .map(|(app_id, modules)| (app_id, ModuleVersions::new(modules)))
        .collect()
}

/// The methods whose routes may answer a request, in order of preference.
fn candidate_methods(method: &str) -> Vec<RouteMethod> {
    let exact = RouteMethod::ALL
        .into_iter()
        .find(|m| *m != RouteMethod::Any && m.as_str() == method);
    match exact {
        Some(RouteMethod::Head) => vec![RouteMethod::Head, RouteMethod::Get, RouteMethod::Any],
        Some(m) => vec![m, RouteMethod::Any],
        None => vec![RouteMethod::Any],
    }
}

/// Our pattern syntax is matchit's (`{id}`, `{*rest}`), so a pattern goes in as it is written.
fn matchit_pattern(path: &RoutePath) -> String {
    path.as_str().to_owned()
}

fn conflict_message(method: RouteMethod, path: &RoutePath, err: &matchit::InsertError) -> String {
    match err {
        matchit::InsertError::Conflict { with } => format!(
            "{method} {path} overlaps the existing route {method} {with}: a request could match both"
        ),
        other => format!("{method} {path} cannot be routed: {other}"),
    }
}

#[derive(Default)]
struct Apps {
    by_slug: HashMap<String, Arc<AppRoutes>>,
    slug_of: HashMap<AppId, String>,
}

/// Every app's routes, shared by all requests; rebuilt per app on change.
pub struct RouteIndex {
    apps: RwLock<Apps>,
    /// Serialises "check the index, write the row, rebuild the app" so two concurrent admin
    /// writes cannot both pass a check the other would fail, and a slow rebuild cannot overwrite
    /// a newer one. Held across awaits, hence tokio's mutex.
    writes: tokio::sync::Mutex<()>,
}

impl Default for RouteIndex {
    fn default() -> Self {
        Self::new()
    }
}

impl RouteIndex {
    pub fn new() -> Self {
        Self {
            apps: RwLock::new(Apps::default()),
            writes: tokio::sync::Mutex::new(()),
        }
    }

    /// Loads every app and route.
    pub async fn load(store: &dyn Store) -> ServiceResult<Self> {
        let index = Self::new();
        index.reload(store).await?;
        Ok(index)
    }

    /// Replaces the whole index with what the store holds now.
    pub async fn reload(&self, store: &dyn Store) -> ServiceResult<()> {
        let mut apps: Vec<App> = Vec::new();
        let mut page = PageRequest {
            limit: PageRequest::MAX_LIMIT,
            cursor: None,
        };
        loop {
            let batch = store.list_apps(&page).await?;
            apps.extend(batch.items);
            match batch.next_cursor {
                Some(cursor) => page.cursor = Some(cursor),
                None => break,
            }
        }
        let mut by_app: HashMap<AppId, Vec<Arc<RouteTarget>>> = HashMap::new();
        for entry in store.routing_entries(None).await? {
            let target = RouteTarget::from_entry(entry);
            by_app
                .entry(target.app_id)
                .or_default()
                .push(Arc::new(target));
        }
        let mut modules = modules_by_app(store.module_versions(None).await?);
        let mut fresh = Apps::default();
        for app in apps {
            let targets = by_app.remove(&app.id).unwrap_or_default();
            let modules = modules.remove(&app.id).unwrap_or_default();
            let routes = AppRoutes::build(app.id, app.slug.as_str(), targets, modules);
            fresh.slug_of.insert(app.id, app.slug.to_string());
            fresh.by_slug.insert(app.slug.to_string(), Arc::new(routes));
        }
        *self.apps.write() = fresh;
        Ok(())
    }

    /// Keeps the index in step with changes other nodes make to the same database: every
    /// `every`, reads the store's routing fingerprint and reloads when it moved. (Changes made
    /// through this node are in the index at once; this is for the others.) Stops at `shutdown`.
    pub async fn follow(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        every: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut seen: Option<String> = None;
        loop {
            match store.routing_fingerprint().await {
                Ok(fingerprint) if seen.as_ref() != Some(&fingerprint) => {
                    let _writes = self.lock_writes().await;
                    match self.reload(store.as_ref()).await {
                        Ok(()) => seen = Some(fingerprint),
                        Err(err) => tracing::warn!("the route index could not be reloaded: {err}"),
                    }
                }
                Ok(_) => {}
                Err(err) => tracing::debug!("the routing fingerprint could not be read: {err}"),
            }
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Holds the index's write lock for a check-then-write sequence; see [`RouteIndex::refresh_app`].
    pub async fn lock_writes(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.writes.lock().await
    }

    /// Rebuilds one app from the store (or drops it when it is gone). Callers that checked the
    /// index before writing hold [`RouteIndex::lock_writes`] across check, write and refresh.
    pub async fn refresh_app(&self, store: &dyn Store, app_id: AppId) -> ServiceResult<()> {
        let app = store.get_app(app_id).await?;
        let Some(app) = app else {
            self.remove_app(app_id);
            return Ok(());
        };
        let targets = store
            .routing_entries(Some(app_id))
            .await?
            .into_iter()
            .map(|entry| Arc::new(RouteTarget::from_entry(entry)))
            .collect();
        let modules = module_versions(store, app_id).await?;
        self.put_app(AppRoutes::build(
            app.id,
            app.slug.as_str(),
            targets,
            modules,
        ));
        Ok(())
    }

    /// Replaces one app's routes (under its current slug).
    pub fn put_app(&self, routes: AppRoutes) {
        let Some(app_id) = routes.app_id else { return };
        let mut state = self.apps.write();
        if let Some(old_slug) = state.slug_of.insert(app_id, routes.slug.clone()) {
            if old_slug != routes.slug {
                state.by_slug.remove(&old_slug);
            }
        }
        state.by_slug.insert(routes.slug.clone(), Arc::new(routes));
    }

    pub fn remove_app(&self, app_id: AppId) {
        let mut state = self.apps.write();
        if let Some(slug) = state.slug_of.remove(&app_id) {
            state.by_slug.remove(&slug);
        }
    }

    /// One app's routes as the index holds them.
    pub fn app(&self, app_id: AppId) -> Option<Arc<AppRoutes>> {
        let state = self.apps.read();
        let slug = state.slug_of.get(&app_id)?;
        state.by_slug.get(slug).cloned()
    }

    /// Whether `method path` may be added to the app, against the index as it is.
    pub fn check_new_route(
        &self,
        app_id: AppId,
        method: RouteMethod,
        path: &RoutePath,
    ) -> Result<(), PatternConflict> {
        match self.app(app_id) {
            Some(routes) => routes.check(method, path),
            None => AppRoutes::default().check(method, path),
        }
    }

    /// Finds the route for a public request: `slug` is the first path segment, `path` the rest
    /// (percent-encoded, starting with `/`).
    pub fn lookup(&self, slug: &str, method: &str, path: &str) -> Lookup {
        let routes = self.apps.read().by_slug.get(slug).cloned();
        match routes {
            Some(routes) => routes.lookup(method, path),
            None => Lookup::NoApp,
        }
    }
}

impl From<PatternConflict> for ServiceError {
    fn from(conflict: PatternConflict) -> Self {
        ServiceError::Conflict(conflict.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use picloud_core::{ScriptId, Timestamp};

    fn target(method: &str, path: &str) -> Arc<RouteTarget> {
        Arc::new(RouteTarget {
            route_id: RouteId::new(),
            app_id: AppId::new(),
            app_slug: Arc::from("shop"),
            method: RouteMethod::parse(method).expect("a test method"),
            path: RoutePath::parse(path).expect("a test path"),
            dispatch_mode: DispatchMode::Sync,
            keep_headers: KeptHeaders::default(),
            error_detail: ErrorDetail::Withheld,
            script: ScriptRef {
                id: ScriptId::new(),
                name: format!("{method} {path}"),
                updated_at: Timestamp::from_millis(1),
                source: Arc::from("()"),
            },
        })
    }

    fn routes(specs: &[(&str, &str)]) -> AppRoutes {
        AppRoutes::build(
            AppId::new(),
            "shop",
            specs.iter().map(|(m, p)| target(m, p)).collect(),
            ModuleVersions::default(),
        )
    }

    /// The name of the matched route's script (`"METHOD /pattern"` in these tests) and params.
    fn found(lookup: Lookup) -> (String, BTreeMap<String, String>) {
        match lookup {
            Lookup::Found(m) => (m.target.script.name.clone(), m.params),
            other => panic!("expected a match, got {other:?}"),
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn path_parameters_are_bound_and_percent_decoded() {
        let r = routes(&[("GET", "/users/{id}"), ("GET", "/users/{id}/posts/{post}")]);
        assert_eq!(
            found(r.lookup("GET", "/users/42")),
            ("GET /users/{id}".to_owned(), params(&[("id", "42")])),
            "one parameter"
        );
        assert_eq!(
            found(r.lookup("GET", "/users/a%20b/posts/x%2Fy")),
            (
                "GET /users/{id}/posts/{post}".to_owned(),
                params(&[("id", "a b"), ("post", "x/y")])
            ),
            "parameters are percent-decoded, an encoded '/' stays inside its segment"
        );
    }

    #[test]
    fn a_literal_segment_wins_over_a_parameter() {
        let r = routes(&[("GET", "/users/{id}"), ("GET", "/users/me")]);
        assert_eq!(
            found(r.lookup("GET", "/users/me")).0,
            "GET /users/me",
            "the literal route wins"
        );
        assert_eq!(
            found(r.lookup("GET", "/users/7")).0,
            "GET /users/{id}",
            "others go to the parameter"
        );
    }

    #[test]
    fn a_wildcard_takes_the_rest_of_the_path_including_nothing() {
        let r = routes(&[("GET", "/files/{*rest}")]);
        assert_eq!(
            found(r.lookup("GET", "/files/a/b.txt")).1,
            params(&[("rest", "a/b.txt")]),
            "several segments"
        );
        assert_eq!(
            found(r.lookup("GET", "/files/")).1,
            params(&[("rest", "")]),
            "a trailing slash alone"
        );
        assert_eq!(
            found(r.lookup("GET", "/files")).1,
            params(&[("rest", "")]),
            "no slash at all"
        );
        assert!(
            matches!(r.lookup("GET", "/filesystem"), Lookup::NoRoute),
            "a longer literal is another path"
        );
    }

    #[test]
    fn a_wildcard_at_the_root_answers_every_path_of_the_app() {
        let r = routes(&[("ANY", "/{*path}")]);
        assert_eq!(
            found(r.lookup("GET", "/")).1,
            params(&[("path", "")]),
            "the root itself"
        );
        assert_eq!(
            found(r.lookup("POST", "/a/b")).1,
            params(&[("path", "a/b")]),
            "any depth"
        );
    }

    #[test]
    fn an_explicit_route_keeps_the_path_a_wildcard_would_match_empty() {
        let r = routes(&[("GET", "/files/{*rest}"), ("GET", "/files")]);
        assert_eq!(
            found(r.lookup("GET", "/files")).0,
            "GET /files",
            "the explicit route wins"
        );
        assert_eq!(
            found(r.lookup("GET", "/files/")).0,
            "GET /files/{*rest}",
            "the slash still goes to the wildcard"
        );
    }

    #[test]
    fn the_exact_method_wins_over_any_and_head_falls_back_to_get() {
        let r = routes(&[("GET", "/items"), ("ANY", "/items"), ("ANY", "/other")]);
        assert_eq!(
            found(r.lookup("GET", "/items")).0,
            "GET /items",
            "exact method first"
        );
        assert_eq!(
            found(r.lookup("DELETE", "/items")).0,
            "ANY /items",
            "then ANY"
        );
        assert_eq!(
            found(r.lookup("HEAD", "/items")).0,
            "GET /items",
            "HEAD is answered by GET"
        );
        assert_eq!(
            found(r.lookup("PROPFIND", "/other")).0,
            "ANY /other",
            "an unlisted method reaches ANY"
        );
        let r = routes(&[("HEAD", "/x"), ("GET", "/x")]);
        assert_eq!(
            found(r.lookup("HEAD", "/x")).0,
            "HEAD /x",
            "an explicit HEAD route wins over GET"
        );
    }

    #[test]
    fn a_path_that_matches_only_other_methods_is_method_not_allowed() {
        let r = routes(&[("GET", "/items/{id}"), ("DELETE", "/items/{id}")]);
        match r.lookup("POST", "/items/3") {
            Lookup::MethodNotAllowed { allow } => {
                assert_eq!(
                    allow,
                    vec!["DELETE", "GET", "HEAD"],
                    "Allow lists the answering methods and HEAD for GET"
                )
            }
            other => panic!("expected 405, got {other:?}"),
        }
        assert!(
            matches!(r.lookup("POST", "/nothing"), Lookup::NoRoute),
            "an unmatched path is 404, not 405"
        );
    }

    #[test]
    fn matching_is_exact_about_trailing_slashes() {
        let r = routes(&[("GET", "/users/{id}"), ("GET", "/")]);
        assert!(
            matches!(r.lookup("GET", "/users/1/"), Lookup::NoRoute),
            "a trailing slash is another path"
        );
        assert!(
            found(r.lookup("GET", "/")).1.is_empty(),
            "the root route answers '/'"
        );
    }

    #[test]
    fn overlapping_parameters_under_one_method_conflict() {
        let r = routes(&[("GET", "/users/{id}")]);
        let path = RoutePath::parse("/users/{name}").expect("path");
        let err = r
            .check(RouteMethod::Get, &path)
            .expect_err("matchit cannot hold both");
        assert!(
            err.message.contains("/users/{id}"),
            "the message names the existing route: {}",
            err.message
        );
        assert!(
            r.check(RouteMethod::Post, &path).is_ok(),
            "another method has its own patterns"
        );
        assert!(
            r.check(RouteMethod::Any, &path).is_ok(),
            "ANY is its own method for conflicts; the exact method wins at lookup"
        );
    }

    #[test]
    fn the_same_method_and_path_twice_conflicts() {
        let r = routes(&[("GET", "/a")]);
        let err = r
            .check(RouteMethod::Get, &RoutePath::parse("/a").expect("path"))
            .expect_err("duplicate");
        assert!(
            err.message.contains("already has a route"),
            "the message says it exists: {}",
            err.message
        );
    }

    #[test]
    fn literals_beside_parameters_and_wildcards_do_not_conflict() {
        let r = routes(&[("GET", "/users/{id}"), ("GET", "/files/{*rest}")]);
        for ok in ["/users/me", "/users/{id}/posts", "/files/special", "/files"] {
            let path = RoutePath::parse(ok).expect("path");
            assert!(
                r.check(RouteMethod::Get, &path).is_ok(),
                "{ok} should fit beside the others"
            );
        }
    }

    #[test]
    fn a_conflicting_stored_route_is_left_out_rather_than_failing_the_app() {
        let r = routes(&[
            ("GET", "/users/{id}"),
            ("GET", "/users/{name}"),
            ("GET", "/ok"),
        ]);
        assert_eq!(
            r.targets().len(),
            2,
            "the second overlapping route is skipped"
        );
        assert_eq!(
            found(r.lookup("GET", "/ok")).0,
            "GET /ok",
            "the rest of the app still routes"
        );
    }

    #[test]
    fn the_index_follows_slug_changes_and_removals() {
        let index = RouteIndex::new();
        let app_id = AppId::new();
        index.put_app(AppRoutes::build(
            app_id,
            "old",
            vec![target("GET", "/")],
            ModuleVersions::default(),
        ));
        assert!(
            matches!(index.lookup("old", "GET", "/"), Lookup::Found(_)),
            "found under its slug"
        );
        index.put_app(AppRoutes::build(
            app_id,
            "new",
            vec![target("GET", "/")],
            ModuleVersions::default(),
        ));
        assert!(
            matches!(index.lookup("old", "GET", "/"), Lookup::NoApp),
            "the old slug is gone"
        );
        assert!(
            matches!(index.lookup("new", "GET", "/"), Lookup::Found(_)),
            "the new slug answers"
        );
        index.remove_app(app_id);
        assert!(
            matches!(index.lookup("new", "GET", "/"), Lookup::NoApp),
            "a deleted app is gone"
        );
    }

    #[test]
    fn an_app_without_routes_is_known_but_has_no_route() {
        let index = RouteIndex::new();
        index.put_app(AppRoutes::build(
            AppId::new(),
            "empty",
            Vec::new(),
            ModuleVersions::default(),
        ));
        assert!(
            matches!(index.lookup("empty", "GET", "/"), Lookup::NoRoute),
            "known app, no route"
        );
        assert!(
            matches!(index.lookup("ghost", "GET", "/"), Lookup::NoApp),
            "unknown slug"
        );
    }
}
