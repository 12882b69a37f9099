//! A platform (the orchestrator, no HTTP) on a test store: [`start`] it, sign in its instance
//! [`admin`], and make an app with a script, a route or a script input.

use std::sync::Arc;

use picloud_core::{
    AppId, AppName, AppSlug, CollectionName, DispatchMode, KeptHeaders, KvKey, Principal,
    RouteMethod, RoutePath, ScriptKind,
};
use picloud_executor::ExecutorConfig;
use picloud_orchestrator::{
    InvokeRequest, NewApp, NewRouteInput, NewScriptInput, Platform, PlatformConfig,
};
use picloud_store::Store;
use serde_json::Value;

use crate::ADMIN_PASSWORD;

/// A platform on `store` with the default configuration and the local executor.
pub async fn start(store: Arc<dyn Store>) -> Platform {
    start_with(store, PlatformConfig::default()).await
}

/// A platform on `store` configured by `config`.
pub async fn start_with(store: Arc<dyn Store>, config: PlatformConfig) -> Platform {
    let executor = ExecutorConfig {
        threads: 2,
        ..ExecutorConfig::default()
    };
    Platform::start_local(store, executor, config)
        .await
        .expect("the platform starts")
}

/// The instance admin (created with [`ADMIN_PASSWORD`]), signed in.
pub async fn admin(platform: &Platform) -> Principal {
    platform
        .auth()
        .ensure_instance_admin(Some(ADMIN_PASSWORD))
        .await
        .expect("the admin is created");
    let login = platform
        .auth()
        .login("admin", ADMIN_PASSWORD)
        .await
        .expect("the admin logs in");
    platform
        .auth()
        .authenticate(&login.token)
        .await
        .expect("a store answer")
        .expect("a principal")
}

/// A sync route input for `method path`.
pub fn route(method: &str, path: &str) -> NewRouteInput {
    NewRouteInput {
        method: RouteMethod::parse(method).expect("a method"),
        path: RoutePath::parse(path).expect("a path"),
        dispatch_mode: DispatchMode::Sync,
        keep_headers: KeptHeaders::default(),
    }
}

/// A script input.
pub fn script(name: &str, kind: ScriptKind, source: &str) -> NewScriptInput {
    NewScriptInput {
        name: name.to_owned(),
        kind,
        source: source.to_owned(),
    }
}

/// An app `slug` with one endpoint script; returns (app id, script id).
pub async fn app_with_script(
    platform: &Platform,
    actor: &Principal,
    slug: &str,
    source: &str,
) -> (picloud_core::AppId, picloud_core::ScriptId) {
    let app = platform
        .apps()
        .create(
            actor,
            &NewApp {
                slug: AppSlug::parse(slug).expect("slug"),
                name: AppName::parse(slug).expect("name"),
                expose_errors: false,
            },
        )
        .await
        .expect("the app is created");
    let script = platform
        .scripts()
        .create(actor, app.id, script("main", ScriptKind::Endpoint, source))
        .await
        .expect("the script is created");
    (app.id, script.id)
}

/// A public request of app `slug` with a JSON body.
pub fn request(slug: &str, method: &str, path: &str, body: Value) -> InvokeRequest {
    InvokeRequest {
        slug: slug.to_owned(),
        method: method.to_owned(),
        path: path.to_owned(),
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
        ..InvokeRequest::default()
    }
}

/// An app `slug` whose script `source` answers `POST /run` in `mode`.
pub async fn deploy(
    platform: &Platform,
    actor: &Principal,
    slug: &str,
    source: &str,
    mode: DispatchMode,
) -> AppId {
    let (app_id, script_id) = app_with_script(platform, actor, slug, source).await;
    platform
        .routes()
        .create(
            actor,
            script_id,
            NewRouteInput {
                dispatch_mode: mode,
                ..route("POST", "/run")
            },
        )
        .await
        .expect("the route is created");
    app_id
}

/// What the app's KV entry holds, read from the store.
pub async fn kv(
    store: &Arc<dyn Store>,
    app_id: AppId,
    collection: &str,
    key: &str,
) -> Option<Value> {
    store
        .kv_get(
            app_id,
            &CollectionName::parse(collection).expect("a collection"),
            &KvKey::parse(key).expect("a key"),
        )
        .await
        .expect("a store answer")
}
