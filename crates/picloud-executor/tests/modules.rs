//! `import` of module scripts against the real store, on SQLite and on PostgreSQL (#17): a module
//! is read once and then served from the module cache without a database query, until a new
//! version is named; a module it imports changing counts too. Cycles, self-imports and chains
//! past the depth limit — in rows written to the database directly, which skipped every
//! save-time check — fail the run with a sentence naming the chain, and the executor carries on.
//! An import never reaches another app's module.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use picloud_core::docs::{Query, StoredDoc};
use picloud_core::exec::{
    AppRef, ExecErrorKind, ExecRequest, ModuleVersions, ResponseBody, ScriptRef,
};
use picloud_core::services::{Found, KvListRequest, ServiceResult};
use picloud_core::tx::{Version, VersionedPage};
use picloud_core::{
    AppId, CollectionName, DeadLetterId, DocumentId, KvKey, ModuleSource, Script, ScriptKind,
    ScriptName, ScriptServices,
};
use picloud_executor::ExecutorConfig;
use picloud_store::{NewScript, ScriptPatch, Store, StoreServices};
use picloud_test_support::both_backends;
use picloud_test_support::executor::{assert_error, failed, new_app, ok, Harness, Via};
use serde_json::{json, Value};

/// The store's services, counting the module reads that reach the database.
struct Counted {
    store: StoreServices,
    lookups: AtomicU64,
}

#[async_trait]
impl ModuleSource for Counted {
    async fn lookup(&self, app_id: AppId, name: &str) -> ServiceResult<Option<ScriptRef>> {
        self.lookups.fetch_add(1, Ordering::SeqCst);
        self.store.lookup(app_id, name).await
    }
}

#[async_trait]
impl ScriptServices for Counted {
    async fn kv_get(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> ServiceResult<Option<(Value, Version)>> {
        self.store.kv_get(app_id, collection, key).await
    }
    async fn kv_version(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        key: &KvKey,
    ) -> ServiceResult<Option<Version>> {
        self.store.kv_version(app_id, collection, key).await
    }
    async fn kv_list(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> ServiceResult<VersionedPage> {
        self.store.kv_list(app_id, collection, request).await
    }
    async fn doc_get(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        id: DocumentId,
    ) -> ServiceResult<Option<(StoredDoc, Version)>> {
        self.store.doc_get(app_id, collection, id).await
    }
    async fn doc_list(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        request: &KvListRequest,
    ) -> ServiceResult<VersionedPage<StoredDoc>> {
        self.store.doc_list(app_id, collection, request).await
    }
    async fn doc_find(
        &self,
        app_id: AppId,
        collection: &CollectionName,
        query: &Query,
        fetch: u32,
    ) -> ServiceResult<Found> {
        self.store.doc_find(app_id, collection, query, fetch).await
    }
    async fn dead_letter_open(&self, app_id: AppId, id: DeadLetterId) -> ServiceResult<()> {
        self.store.dead_letter_open(app_id, id).await
    }
}

/// A harness on `store` in a new app `slug`, whose module reads are counted.
async fn harness(store: &Arc<dyn Store>, slug: &str) -> (Harness, Arc<Counted>) {
    let config = ExecutorConfig {
        threads: 2,
        ..ExecutorConfig::default()
    };
    let counted = Arc::new(Counted {
        store: StoreServices::new(store.clone(), config.limits.max_memory_bytes),
        lookups: AtomicU64::new(0),
    });
    let mut h = Harness::with_config_and_services(Via::Local, config, counted.clone()).await;
    h.store = Some(store.clone());
    h.app = new_app(store, slug).await;
    (h, counted)
}

/// Writes the module `name` of `app` straight to the store: no save-time check looks at it.
async fn module(store: &Arc<dyn Store>, app: &AppRef, name: &str, source: &str) -> Script {
    store
        .create_script(&NewScript {
            app_id: app.id,
            name: ScriptName::parse(name, ScriptKind::Module).expect("a module name"),
            kind: ScriptKind::Module,
            source: source.to_owned(),
            imports: Vec::new(),
        })
        .await
        .expect("the module is written")
}

async fn change(store: &Arc<dyn Store>, script: &Script, source: &str) {
    store
        .update_script(
            script.id,
            &ScriptPatch {
                source: Some(source.to_owned()),
                ..ScriptPatch::default()
            },
        )
        .await
        .expect("the module is updated");
}

/// The app's modules as the orchestrator hands them to a run.
async fn modules_of(store: &Arc<dyn Store>, app_id: AppId) -> ModuleVersions {
    let modules = store
        .module_versions(Some(app_id))
        .await
        .expect("the module versions");
    ModuleVersions::new(modules.into_iter().map(|m| (m.name, m.version)))
}

/// A run of `source` in the harness's app, naming the app's modules as they are now.
async fn request(h: &Harness, store: &Arc<dyn Store>, source: &str) -> ExecRequest {
    ExecRequest {
        modules: modules_of(store, h.app.id).await,
        ..h.request(source)
    }
}

async fn value(h: &Harness, store: &Arc<dyn Store>, source: &str) -> Value {
    match ok(h.execute(request(h, store, source).await).await).body {
        ResponseBody::Json(value) => value,
        ResponseBody::Text(text) => Value::String(text),
        other => panic!("expected JSON or text, got {other:?}"),
    }
}

both_backends!(
    a_hot_import_reads_no_database_until_the_module_or_one_it_imports_changes,
    |store: Arc<dyn Store>| async move {
        let (h, counted) = harness(&store, "shop").await;
        let format = module(&store, &h.app, "format", "fn money(n) { `$${n}` }").await;
        let prices = module(
            &store,
            &h.app,
            "prices",
            "import \"format\" as f;\nconst VAT = 20;\nfn gross(n) { f::money(n + n * global::VAT / 100) }",
        )
        .await;
        let endpoint = "import \"prices\" as p;\np::gross(100)";
        assert_eq!(value(&h, &store, endpoint).await, json!("$120"));
        assert_eq!(
            counted.lookups.load(Ordering::SeqCst),
            2,
            "the first run reads prices and the format it imports"
        );
        for _ in 0..20 {
            assert_eq!(value(&h, &store, endpoint).await, json!("$120"));
        }
        assert_eq!(
            counted.lookups.load(Ordering::SeqCst),
            2,
            "twenty more runs import both without a query"
        );

        change(
            &store,
            &prices,
            "import \"format\" as f;\nfn gross(n) { f::money(n * 2) }",
        )
        .await;
        assert_eq!(
            value(&h, &store, endpoint).await,
            json!("$200"),
            "the next run runs the updated module"
        );
        change(&store, &format, "fn money(n) { `EUR ${n}` }").await;
        assert_eq!(
            value(&h, &store, endpoint).await,
            json!("EUR 200"),
            "a change of a module that the imported one imports is seen too"
        );
        assert_eq!(
            counted.lookups.load(Ordering::SeqCst),
            5,
            "prices read again once, then prices (built on the old format) and format once each"
        );
        assert_eq!(value(&h, &store, endpoint).await, json!("EUR 200"));
        assert_eq!(counted.lookups.load(Ordering::SeqCst), 5, "hot again");
    }
);

both_backends!(module_functions_act_for_the_importing_app, |store: Arc<
    dyn Store,
>| async move {
    let (h, _) = harness(&store, "shop").await;
    module(
            &store,
            &h.app,
            "counter",
            "fn bump() { let c = kv::collection(\"counts\"); let n = (c.get(\"n\") ?? 0) + 1; c.set(\"n\", n); n }",
        )
        .await;
    let endpoint = "import \"counter\" as c;\nc::bump()";
    assert_eq!(value(&h, &store, endpoint).await, json!(1));
    assert_eq!(
        value(&h, &store, endpoint).await,
        json!(2),
        "its write was committed with the run"
    );
});

both_backends!(
    cycles_and_self_imports_written_to_the_database_fail_the_run_naming_the_chain,
    |store: Arc<dyn Store>| async move {
        let (h, _) = harness(&store, "shop").await;
        module(&store, &h.app, "a", "import \"b\" as b;\nfn f() { b::g() }").await;
        module(&store, &h.app, "b", "import \"a\" as a;\nfn g() { 1 }").await;
        module(&store, &h.app, "me", "import \"me\" as me;\nfn f() { 1 }").await;
        for (source, chain) in [
            ("import \"a\" as a;\na::f()", "import cycle: a → b → a"),
            ("import \"b\" as b;\nb::g()", "import cycle: b → a → b"),
            ("import \"me\" as me;\nme::f()", "import cycle: me → me"),
        ] {
            let err = failed(h.execute(request(&h, &store, source).await).await);
            assert_eq!(err.kind, ExecErrorKind::Runtime, "{err:?}");
            assert!(
                err.message.contains(chain),
                "'{}' names {chain}",
                err.message
            );
        }
        h.still_works().await;
    }
);

both_backends!(imports_nest_at_most_the_depth_limit, |store: Arc<
    dyn Store,
>| async move {
    let (h, _) = harness(&store, "shop").await;
    // m1 imports m2 … m8 imports m9: importing m1 is a chain of nine modules.
    for n in 1..=9 {
        let source = if n < 9 {
            format!(
                "import \"m{}\" as next;\nfn depth() {{ 1 + next::depth() }}",
                n + 1
            )
        } else {
            "fn depth() { 1 }".to_owned()
        };
        module(&store, &h.app, &format!("m{n}"), &source).await;
    }
    assert_eq!(
        value(&h, &store, "import \"m2\" as m;\nm::depth()").await,
        json!(8),
        "eight modules deep is within the limit"
    );
    let err = failed(
        h.execute(request(&h, &store, "import \"m1\" as m;\nm::depth()").await)
            .await,
    );
    assert!(
        err.message.contains(
            "cannot import 'm2': imports would nest 9 modules deep, past the limit of 8 \
                 (m1 → m2 → m3 → m4 → m5 → m6 → m7 → m8 → m9)"
        ),
        "the ninth is refused, naming the chain: {}",
        err.message
    );
    h.still_works().await;
});

both_backends!(an_import_never_reaches_another_apps_module, |store: Arc<
    dyn Store,
>| async move {
    let (h, _) = harness(&store, "shop").await;
    let other = new_app(&store, "other").await;
    module(
        &store,
        &other,
        "vault",
        "const KEY = \"other's\";\nfn key() { global::KEY }",
    )
    .await;
    let endpoint = "import \"vault\" as s;\ns::key()";
    assert_error(
        &failed(h.execute(request(&h, &store, endpoint).await).await),
        ExecErrorKind::Runtime,
        "cannot import 'vault': this app has no module of that name",
    );
    // Even a request that names the other app's module (as a forged or stale one might)
    // reads modules only of its own app.
    let forged = ExecRequest {
        modules: modules_of(&store, other.id).await,
        ..h.request(endpoint)
    };
    assert_error(
        &failed(h.execute(forged).await),
        ExecErrorKind::Runtime,
        "cannot import 'vault': this app has no module of that name",
    );
});

both_backends!(
    a_module_written_to_the_database_with_top_level_code_is_refused_when_imported,
    |store: Arc<dyn Store>| async move {
        let (h, _) = harness(&store, "shop").await;
        module(
            &store,
            &h.app,
            "bad",
            "fn f() { 1 }\nlet leak = kv::collection(\"x\");",
        )
        .await;
        let err = failed(
            h.execute(request(&h, &store, "import \"bad\" as b;\nb::f()").await)
                .await,
        );
        assert!(
            err.message
                .contains("the module 'bad' is not a valid module (line 2)")
                && err.message.contains("cannot declare the variable 'leak'"),
            "{}",
            err.message
        );
        assert_eq!(
            err.line,
            Some(1),
            "the error is where the script imports it"
        );
    }
);
