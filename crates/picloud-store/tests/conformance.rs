//! The store conformance suite: every body runs on SQLite and on PostgreSQL (see
//! `picloud_test_support::both_backends!`), so both backends keep the same contract — the same
//! results, the same refusals, the same sentences.

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::{bail, ensure, Context};
use picloud_core::{
    ApiKeyId, ApiKeyName, AppId, AppName, AppSlug, DispatchMode, KeptHeaders, Role, RouteMethod,
    RoutePath, Scope, Script, ScriptId, ScriptKind, ScriptName, Timestamp, UserId, Username,
};
use picloud_store::{
    AppPatch, Backend, NewApiKey, NewApp, NewRoute, NewScript, PageRequest, ScriptPatch, Store,
    StoreConfig, StoreError, StoreResult,
};
use picloud_test_support::fixtures::{app, conflict, endpoint, page};
use picloud_test_support::{both_backends, fresh_store};

fn slug(value: &str) -> AppSlug {
    AppSlug::parse(value).expect("a valid slug")
}

fn name(value: &str) -> AppName {
    AppName::parse(value).expect("a valid app name")
}

fn username(value: &str) -> Username {
    Username::parse(value).expect("a valid username")
}

fn path(value: &str) -> RoutePath {
    RoutePath::parse(value).expect("a valid route path")
}

fn new_script(app_id: AppId, script_name: &str, kind: ScriptKind, source: &str) -> NewScript {
    NewScript {
        app_id,
        name: ScriptName::parse(script_name, kind).expect("a valid script name"),
        kind,
        source: source.to_owned(),
        imports: Vec::new(),
    }
}

fn new_route(script: &Script, method: RouteMethod, route_path: &str) -> NewRoute {
    NewRoute {
        app_id: script.app_id,
        script_id: script.id,
        method,
        path: path(route_path),
        dispatch_mode: DispatchMode::Sync,
        keep_headers: KeptHeaders::default(),
    }
}

/// A key with the name "ci", every scope and a fixed secret hash.
fn new_key(user_id: UserId, prefix: &str, app_id: Option<AppId>) -> NewApiKey {
    NewApiKey {
        user_id,
        name: ApiKeyName::parse("ci").expect("a key name"),
        prefix: prefix.to_owned(),
        secret_hash: vec![9; 32],
        scopes: Scope::ALL.to_vec(),
        app_id,
        expires_at: None,
    }
}

/// A token hash as the auth layer makes them (SHA-256 is 32 bytes).
fn token_hash(seed: u8) -> Vec<u8> {
    vec![seed; 32]
}

// ---------------------------------------------------------------------------------------------
// Apps
// ---------------------------------------------------------------------------------------------

both_backends!(
    an_app_is_created_read_renamed_and_deleted,
    |store| async move {
        let created = app(&store, "shop").await?;
        assert_eq!(created.slug.as_str(), "shop", "the slug is stored");
        assert_eq!(
            created.created_at, created.updated_at,
            "a new app was never updated"
        );
        let now = Timestamp::now().as_millis();
        assert!(
            (created.created_at.as_millis() - now).abs() < 60_000,
            "created_at is milliseconds since the epoch: {} vs {now}",
            created.created_at.as_millis()
        );

        assert_eq!(
            store.get_app(created.id).await?,
            Some(created.clone()),
            "found by id"
        );
        assert_eq!(
            store.get_app_by_slug("shop").await?,
            Some(created.clone()),
            "found by slug"
        );
        assert_eq!(
            store.get_app_by_slug("nope").await?,
            None,
            "an unknown slug finds nothing"
        );

        let patch = AppPatch {
            slug: Some(slug("store")),
            name: Some(name("The Store")),
            expose_errors: None,
        };
        let updated = store.update_app(created.id, &patch).await?;
        assert_eq!(updated.id, created.id, "the id stays");
        assert_eq!(updated.slug.as_str(), "store", "the slug changed");
        assert_eq!(updated.name.as_str(), "The Store", "the name changed");
        assert_eq!(updated.created_at, created.created_at, "created_at stays");
        assert!(
            updated.updated_at >= created.updated_at,
            "updated_at never moves back"
        );
        assert_eq!(
            store.get_app_by_slug("shop").await?,
            None,
            "the old slug is free"
        );

        let renamed = store
            .update_app(
                created.id,
                &AppPatch {
                    slug: None,
                    name: Some(name("Renamed")),
                    expose_errors: None,
                },
            )
            .await?;
        assert_eq!(
            renamed.slug.as_str(),
            "store",
            "a patch without a slug keeps it"
        );

        assert!(store.delete_app(created.id).await?, "the app is deleted");
        assert_eq!(
            store.get_app(created.id).await?,
            None,
            "a deleted app is gone"
        );
        assert!(
            !store.delete_app(created.id).await?,
            "deleting it again finds nothing"
        );
        Ok(())
    }
);

both_backends!(
    a_slug_names_one_app_on_the_whole_instance,
    |store| async move {
        app(&store, "shop").await?;
        let message = conflict(
            store
                .create_app(&NewApp {
                    slug: slug("shop"),
                    name: name("Other"),
                    expose_errors: false,
                })
                .await,
            "a second 'shop'",
        )?;
        assert_eq!(
            message, "an app with the slug 'shop' already exists",
            "the message names the slug"
        );

        let blog = app(&store, "blog").await?;
        let patch = AppPatch {
            slug: Some(slug("shop")),
            name: None,
            expose_errors: None,
        };
        let message = conflict(
            store.update_app(blog.id, &patch).await,
            "renaming to 'shop'",
        )?;
        assert_eq!(
            message, "an app with the slug 'shop' already exists",
            "the same sentence on update"
        );
        assert_eq!(
            store.get_app(blog.id).await?.map(|a| a.slug.to_string()),
            Some("blog".to_owned()),
            "the refused update changed nothing"
        );
        Ok(())
    }
);

both_backends!(
    updating_an_app_that_does_not_exist_is_not_found,
    |store| async move {
        let result = store
            .update_app(
                AppId::new(),
                &AppPatch {
                    slug: None,
                    name: Some(name("x")),
                    expose_errors: None,
                },
            )
            .await;
        ensure!(
            matches!(result, Err(StoreError::NotFound("app"))),
            "expected NotFound(\"app\"), got {result:?}"
        );
        assert_eq!(
            store.get_app(AppId::new()).await?,
            None,
            "an unknown id finds nothing"
        );
        Ok(())
    }
);

// Deleting an app takes its scripts and routes with it, and nothing of any other app.
both_backends!(
    deleting_an_app_deletes_its_scripts_and_routes,
    |store| async move {
        let doomed = app(&store, "doomed").await?;
        let script = endpoint(&store, doomed.id, "main").await?;
        let route = store
            .create_route(&new_route(&script, RouteMethod::Get, "/"))
            .await?;
        let kept = app(&store, "kept").await?;
        let kept_script = endpoint(&store, kept.id, "main").await?;
        store
            .create_route(&new_route(&kept_script, RouteMethod::Get, "/"))
            .await?;

        assert!(
            store.delete_app(doomed.id).await?,
            "the app with a routed script is deleted"
        );
        assert_eq!(
            store.get_script(script.id).await?,
            None,
            "its script is gone"
        );
        assert_eq!(store.get_route(route.id).await?, None, "its route is gone");
        let entries = store.routing_entries(None).await?;
        assert_eq!(
            entries.len(),
            1,
            "only the other app's route is left: {entries:?}"
        );
        assert_eq!(
            entries[0].app_slug.as_str(),
            "kept",
            "the other app is untouched"
        );
        assert!(
            store.get_script(kept_script.id).await?.is_some(),
            "the other app's script stays"
        );
        Ok(())
    }
);

// ---------------------------------------------------------------------------------------------
// Scripts
// ---------------------------------------------------------------------------------------------

both_backends!(
    a_script_is_created_read_changed_and_deleted,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let created = store
            .create_script(&new_script(
                shop.id,
                "hello",
                ScriptKind::Endpoint,
                "\"hello\"",
            ))
            .await?;
        assert_eq!(created.app_id, shop.id, "the script belongs to its app");
        assert_eq!(created.kind, ScriptKind::Endpoint, "the kind is stored");
        assert_eq!(created.source, "\"hello\"", "the source is stored");
        assert_eq!(
            created.created_at, created.updated_at,
            "a new script was never updated"
        );
        assert_eq!(
            store.get_script(created.id).await?,
            Some(created.clone()),
            "found by id"
        );

        let module = store
            .create_script(&new_script(
                shop.id,
                "utils",
                ScriptKind::Module,
                "fn f() { 1 }",
            ))
            .await?;
        assert_eq!(
            module.kind,
            ScriptKind::Module,
            "a module is stored as a module"
        );

        let patch = ScriptPatch {
            name: Some(ScriptName::parse("greet", ScriptKind::Endpoint).expect("a name")),
            kind: None,
            source: Some("\"hey\"".to_owned()),
            imports: None,
        };
        let updated = store.update_script(created.id, &patch).await?;
        assert_eq!(updated.name.as_str(), "greet", "renamed");
        assert_eq!(updated.source, "\"hey\"", "the new source");
        assert_eq!(
            updated.kind,
            ScriptKind::Endpoint,
            "a patch without a kind keeps it"
        );
        assert_eq!(updated.created_at, created.created_at, "created_at stays");

        assert!(store.delete_script(created.id).await?, "deleted");
        assert_eq!(
            store.get_script(created.id).await?,
            None,
            "a deleted script is gone"
        );
        assert!(
            !store.delete_script(created.id).await?,
            "deleting it again finds nothing"
        );
        Ok(())
    }
);

both_backends!(
    a_script_name_is_unique_within_its_app_only,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        endpoint(&store, shop.id, "hello").await?;
        endpoint(&store, blog.id, "hello")
            .await
            .context("the same name in another app is fine")?;

        let again = store
            .create_script(&new_script(shop.id, "hello", ScriptKind::Module, "1"))
            .await;
        let message = conflict(again, "a second 'hello' in the app")?;
        assert_eq!(
            message, "a script named 'hello' already exists in this app",
            "names the script"
        );

        let other = endpoint(&store, shop.id, "other").await?;
        let rename = ScriptPatch {
            name: Some(ScriptName::parse("hello", ScriptKind::Endpoint).expect("a name")),
            ..ScriptPatch::default()
        };
        let message = conflict(
            store.update_script(other.id, &rename).await,
            "renaming to 'hello'",
        )?;
        assert_eq!(
            message, "a script named 'hello' already exists in this app",
            "the same on update"
        );
        Ok(())
    }
);

both_backends!(a_script_needs_an_app_that_exists, |store| async move {
    let result = store
        .create_script(&new_script(
            AppId::new(),
            "hello",
            ScriptKind::Endpoint,
            "1",
        ))
        .await;
    ensure!(
        matches!(result, Err(StoreError::NotFound("app"))),
        "expected NotFound(\"app\"), got {result:?}"
    );
    Ok(())
});

both_backends!(
    changing_a_script_that_does_not_exist_is_not_found,
    |store| async move {
        let result = store
            .update_script(
                ScriptId::new(),
                &ScriptPatch {
                    source: Some("1".into()),
                    ..ScriptPatch::default()
                },
            )
            .await;
        ensure!(
            matches!(result, Err(StoreError::NotFound("script"))),
            "expected NotFound(\"script\"), got {result:?}"
        );
        assert!(
            !store.delete_script(ScriptId::new()).await?,
            "deleting an unknown script finds nothing"
        );
        assert_eq!(
            store.get_script(ScriptId::new()).await?,
            None,
            "an unknown id finds nothing"
        );
        Ok(())
    }
);

// The AST cache keys on (id, updated_at): two updates within one millisecond must still be
// two versions.
both_backends!(
    every_update_moves_a_scripts_updated_at_strictly_forward,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "hello").await?;
        let mut previous = script.updated_at;
        for round in 0..5 {
            let patch = ScriptPatch {
                source: Some(format!("{round}")),
                ..ScriptPatch::default()
            };
            let updated = store.update_script(script.id, &patch).await?;
            assert!(
                updated.updated_at > previous,
                "update {round}: updated_at {} must be later than {}",
                updated.updated_at.as_millis(),
                previous.as_millis()
            );
            previous = updated.updated_at;
        }
        let empty = store
            .update_script(script.id, &ScriptPatch::default())
            .await?;
        assert!(
            empty.updated_at > previous,
            "even an empty patch is a new version"
        );
        Ok(())
    }
);

both_backends!(
    a_script_that_routes_point_at_cannot_be_deleted,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "hello").await?;
        let first = store
            .create_route(&new_route(&script, RouteMethod::Get, "/a"))
            .await?;
        let second = store
            .create_route(&new_route(&script, RouteMethod::Post, "/a"))
            .await?;

        let message = conflict(
            store.delete_script(script.id).await,
            "deleting a routed script",
        )?;
        assert_eq!(
            message, "the script is the target of 2 routes; delete them first",
            "the message counts the routes"
        );
        assert!(
            store.get_script(script.id).await?.is_some(),
            "the script is still there"
        );

        assert!(store.delete_route(first.id).await?, "first route deleted");
        assert!(store.delete_route(second.id).await?, "second route deleted");
        assert!(
            store.delete_script(script.id).await?,
            "without routes it can be deleted"
        );
        Ok(())
    }
);

// #17: what a script imports is recorded in the transaction that writes it, by module id; a name
// that is no module of the app refuses the whole write; the edges go with either script.
both_backends!(
    a_scripts_imports_are_recorded_with_it_and_go_with_either_side,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let other = app(&store, "other").await?;
        let module = |app_id: AppId, name: &str| {
            new_script(app_id, name, ScriptKind::Module, "fn f() { 1 }")
        };
        let util = store.create_script(&module(shop.id, "util")).await?;
        let fmt = store.create_script(&module(shop.id, "fmt")).await?;
        store.create_script(&module(other.id, "theirs")).await?;
        let main = store
            .create_script(&NewScript {
                imports: vec!["util".to_owned(), "fmt".to_owned()],
                ..new_script(shop.id, "main", ScriptKind::Endpoint, "1")
            })
            .await?;
        let names = |links: Vec<picloud_store::ScriptLink>| -> Vec<String> {
            links.into_iter().map(|link| link.name).collect()
        };
        assert_eq!(
            names(store.imports_of(main.id).await?),
            ["fmt", "util"],
            "by name"
        );
        assert_eq!(names(store.importers_of(util.id).await?), ["main"]);
        let mut graph = store.import_graph(shop.id).await?;
        graph.sort();
        assert_eq!(
            graph,
            [
                ("main".to_owned(), "fmt".to_owned()),
                ("main".to_owned(), "util".to_owned())
            ]
        );
        assert!(store.import_graph(other.id).await?.is_empty(), "per app");

        for (what, imports) in [
            ("another app's module", "theirs"),
            ("an endpoint", "main"),
            ("nothing", "nope"),
        ] {
            let refused = store
                .create_script(&NewScript {
                    imports: vec!["util".to_owned(), imports.to_owned()],
                    ..new_script(shop.id, "second", ScriptKind::Endpoint, "1")
                })
                .await;
            match refused {
                Err(StoreError::InvalidInput(message)) => ensure!(
                    message
                        == format!(
                            "cannot import '{imports}': this app has no module of that name"
                        ),
                    "{what}: {message}"
                ),
                other => bail!("{what}: expected InvalidInput, got {other:?}"),
            }
        }
        let scripts = store.list_scripts(shop.id, &page(100, None)).await?.items;
        ensure!(
            !scripts.iter().any(|s| s.name.as_str() == "second"),
            "a refused write leaves no script behind"
        );
        ensure!(store.importers_of(util.id).await?.len() == 1, "nor an edge");

        let patch = ScriptPatch {
            source: Some("2".to_owned()),
            imports: Some(vec!["fmt".to_owned()]),
            ..ScriptPatch::default()
        };
        store.update_script(main.id, &patch).await?;
        assert_eq!(names(store.imports_of(main.id).await?), ["fmt"], "replaced");
        let unchanged = ScriptPatch {
            source: Some("3".to_owned()),
            ..ScriptPatch::default()
        };
        store.update_script(main.id, &unchanged).await?;
        assert_eq!(
            names(store.imports_of(main.id).await?),
            ["fmt"],
            "kept without imports"
        );

        let versions = store.module_versions(Some(shop.id)).await?;
        assert_eq!(
            versions.iter().map(|m| m.name.as_str()).collect::<Vec<_>>(),
            ["fmt", "util"],
            "the app's modules, by name"
        );
        assert_eq!(versions[1].version.id, util.id);
        assert_eq!(versions[1].version.updated_at, util.updated_at);
        assert_eq!(store.module_versions(None).await?.len(), 3, "every app's");
        assert_eq!(
            store.get_module(shop.id, "util").await?.map(|s| s.id),
            Some(util.id)
        );
        assert!(
            store.get_module(shop.id, "main").await?.is_none(),
            "an endpoint is no module"
        );
        assert!(
            store.get_module(other.id, "util").await?.is_none(),
            "nor another app's"
        );

        assert!(
            store.delete_script(fmt.id).await?,
            "a module others import can be deleted here"
        );
        assert!(
            store.imports_of(main.id).await?.is_empty(),
            "its edges went with it"
        );
        Ok(())
    }
);

/// Writes `records` through a writer of `store`'s, on a thread of its own as the platform does.
async fn write_records(
    store: &Arc<dyn Store>,
    origin: &str,
    records: Vec<picloud_core::records::ExecutionRecord>,
) -> StoreResult<()> {
    let mut writer = store.execution_writer(origin)?;
    tokio::task::spawn_blocking(move || writer.write(&records))
        .await
        .expect("the write ran")
}

// #18: execution records are written by a writer of their own; one of an app that is gone is
// left out (PostgreSQL) or swept (SQLite, whose records live in a file of their own); the sweep
// deletes them by age and beyond each app's newest N, the writer trims an app to its newest N,
// and other nodes hear of what was written (PostgreSQL) to read it by id.
both_backends!(
    execution_records_are_written_trimmed_swept_and_announced,
    |store| async move {
        use picloud_core::records::{ExecutionFilter, ExecutionRecord};
        let shop = app(&store, "shop").await?;
        let other = app(&store, "other").await?;
        let script = endpoint(&store, shop.id, "hello").await?;
        let day = 24 * 3_600_000;
        // An execution started `age_ms` ago: its time-ordered id says so (UUID v7: 48 bits of
        // ms), and so does its record's.
        let started = |age_ms: i64| {
            if age_ms == 0 {
                return picloud_core::ExecutionId::new();
            }
            let ms = Timestamp::now().as_millis() - age_ms;
            picloud_core::ExecutionId::parse(&format!(
                "{:08x}-{:04x}-7000-8000-000000000000",
                ms >> 16,
                ms & 0xffff
            ))
            .expect("a v7 id")
        };
        let attempt = |execution_id, attempt, app_id: AppId, age_ms: i64| ExecutionRecord {
            started_at: Timestamp::from_millis(Timestamp::now().as_millis() - age_ms),
            ..ExecutionRecord::fixture(app_id, script.id, execution_id, attempt)
        };
        let record = |app_id: AppId, age_ms: i64| attempt(started(age_ms), 1, app_id, age_ms);
        let old = record(shop.id, 10 * day);
        let recent: Vec<ExecutionRecord> = (0..3).map(|_| record(shop.id, 0)).collect();
        let gone = record(AppId::new(), 0);
        let theirs: Vec<ExecutionRecord> = (0..5).map(|_| record(other.id, 0)).collect();
        let mut executions = vec![old.clone(), gone.clone()];
        executions.extend(recent.iter().cloned());

        let mut notices = store.notices().await?;
        assert_eq!(
            notices.is_some(),
            store.backend() == Backend::Postgres,
            "notices for other nodes exist where there are other nodes"
        );
        write_records(&store, "node-a", executions.clone()).await?;
        // Written twice (a retried write): an attempt has one record.
        write_records(&store, "node-a", vec![recent[0].clone()]).await?;
        // The other app's, one write each: a batch each.
        for record in &theirs {
            write_records(&store, "node-a", vec![record.clone()]).await?;
        }
        if let Some(notices) = notices.as_mut() {
            let mut heard: Vec<picloud_store::RecordNotice> = Vec::new();
            // Batches: the old one, the one of an app that is gone and the three recent ones
            // (their ids lie far apart), the retried write, and the other app's five.
            let written = 3 + 1 + theirs.len();
            while heard.iter().map(|n| n.batches.len()).sum::<usize>() < written {
                let notice =
                    tokio::time::timeout(std::time::Duration::from_secs(5), notices.next())
                        .await
                        .expect("a notice within 5 s")?;
                if let picloud_store::Notice::Records(notice) = notice {
                    heard.push(notice);
                }
            }
            assert!(heard.iter().all(|n| n.origin == "node-a"));
            let mut shop_batches: Vec<picloud_core::RecordId> = heard
                .iter()
                .filter(|n| n.app_id == shop.id)
                .flat_map(|n| n.batches.iter().copied())
                .collect();
            shop_batches.sort();
            assert_eq!(
                shop_batches,
                vec![old.id, recent[0].id, recent[2].id],
                "the old one's, the one written twice's and the three recent ones' batch"
            );
        }
        let listed = store
            .list_executions(shop.id, &ExecutionFilter::default(), &page(100, None))
            .await?
            .items;
        assert_eq!(listed.len(), 4, "the shop's four, each once");
        assert_eq!(listed[0], recent[2], "newest first, as written");
        assert_eq!(
            store.get_execution(old.execution_id).await?,
            vec![old.clone()]
        );
        // A retried execution (of a third app): its attempts, first first, and nothing of a
        // neighbour.
        let third = app(&store, "third").await?;
        let retried = started(0);
        let attempts: Vec<ExecutionRecord> = (1..=3)
            .rev()
            .map(|n| attempt(retried, n, third.id, 0))
            .collect();
        write_records(&store, "node-a", attempts.clone()).await?;
        let mut in_order = attempts.clone();
        in_order.reverse();
        assert_eq!(store.get_execution(retried).await?, in_order);
        assert!(store.get_execution(started(0)).await?.is_empty());
        let announced = store
            .executions_in_batches(shop.id, &[recent[2].id, theirs[0].id, old.id])
            .await?;
        let mut expected = vec![old.clone()];
        expected.extend(recent.iter().cloned());
        assert_eq!(
            announced, expected,
            "the records of the app's own batches named, oldest first"
        );

        let mut writer = store.execution_writer("node-a")?;
        let other_id = other.id;
        let trimmed = tokio::task::spawn_blocking(move || writer.trim(other_id, 2, 100))
            .await
            .expect("the trim ran")?;
        assert_eq!(
            trimmed, 3,
            "the oldest three batches beyond the newest two records"
        );
        let left = store
            .list_executions(other.id, &ExecutionFilter::default(), &page(100, None))
            .await?
            .items;
        assert_eq!(left, vec![theirs[4].clone(), theirs[3].clone()]);

        store.sweep_executions(7 * day, 2, 100).await?;
        let kept = store
            .list_executions(shop.id, &ExecutionFilter::default(), &page(100, None))
            .await?
            .items;
        assert_eq!(
            kept,
            vec![recent[2].clone(), recent[1].clone(), recent[0].clone()],
            "the ten-day-old one went, then the batch beyond the newest two records (the \
             retried write); the batch that holds those two is kept whole"
        );
        assert!(
            store.get_execution(gone.execution_id).await?.is_empty(),
            "no record of an app that is gone"
        );
        assert!(store.delete_app(shop.id).await?);
        store.sweep_executions(7 * day, 2, 100).await?;
        assert!(
            store
                .get_execution(recent[2].execution_id)
                .await?
                .is_empty(),
            "an app's records go with it, by the next sweep at the latest"
        );
        assert_eq!(
            store
                .list_executions(other.id, &ExecutionFilter::default(), &page(100, None))
                .await?
                .items
                .len(),
            2,
            "another app's are its own"
        );
        Ok(())
    }
);

// #18: records are kept in batches, one row per app and write. Two nodes write overlapping
// ranges of ids, a write of large logs fills more than one batch, and an old execution's retry
// gets a batch of its own: pages still list every record once, newest first; filters hold across
// batches; an execution's attempts are found wherever they were written.
both_backends!(
    batched_records_list_in_order_across_overlapping_and_split_batches,
    |store| async move {
        use picloud_core::exec::{LogLevel, LogLine};
        use picloud_core::records::{ExecutionFilter, ExecutionRecord};
        use picloud_core::ExecutionId;
        let busy = app(&store, "busy").await?;
        let script = endpoint(&store, busy.id, "hello").await?;
        let record = |execution_id, attempt| {
            ExecutionRecord::fixture(busy.id, script.id, execution_id, attempt)
        };
        // Thirty executions in time order, every seventh a timeout; node A recorded the even
        // ones, node B the odd ones, each in one write.
        let mut all: Vec<ExecutionRecord> = (0..30)
            .map(|n| ExecutionRecord {
                outcome: if n % 7 == 3 { "timeout" } else { "ok" }.to_owned(),
                ..record(ExecutionId::new(), 1)
            })
            .collect();
        let (even, odd): (Vec<_>, Vec<_>) = all
            .iter()
            .cloned()
            .enumerate()
            .partition(|(n, _)| n % 2 == 0);
        write_records(&store, "node-a", even.into_iter().map(|(_, r)| r).collect()).await?;
        write_records(&store, "node-b", odd.into_iter().map(|(_, r)| r).collect()).await?;
        // Twelve with 200 KiB of log each: more than a batch's megabyte, in one write.
        let line = LogLine {
            level: LogLevel::Info,
            message: "x".repeat(200 * 1024),
            at: Timestamp::now(),
            discarded: false,
        };
        let large: Vec<ExecutionRecord> = (0..12)
            .map(|_| ExecutionRecord {
                logs: vec![line.clone()],
                ..record(ExecutionId::new(), 1)
            })
            .collect();
        write_records(&store, "node-a", large.clone()).await?;
        all.extend(large);
        // The second attempt of the first execution, written last: its id is the oldest.
        let retry = record(all[0].execution_id, 2);
        write_records(&store, "node-a", vec![retry.clone()]).await?;
        all.push(retry.clone());
        all.sort_by_key(|r| std::cmp::Reverse(r.id));

        let mut listed: Vec<ExecutionRecord> = Vec::new();
        let mut cursor = None;
        loop {
            let page_of = store
                .list_executions(busy.id, &ExecutionFilter::default(), &page(4, cursor))
                .await?;
            ensure!(page_of.items.len() <= 4, "a page holds at most its limit");
            listed.extend(page_of.items);
            cursor = page_of.next_cursor;
            if cursor.is_none() {
                break;
            }
        }
        ensure!(
            listed.iter().map(|r| r.id).collect::<Vec<_>>()
                == all.iter().map(|r| r.id).collect::<Vec<_>>(),
            "every record once, newest first, across pages of four"
        );
        ensure!(listed == all, "and each as written");

        let errors = store
            .list_executions(
                busy.id,
                &ExecutionFilter {
                    outcome: Some(ExecutionFilter::ANY_ERROR.to_owned()),
                    ..ExecutionFilter::default()
                },
                &page(100, None),
            )
            .await?
            .items;
        let timeouts: Vec<&ExecutionRecord> =
            all.iter().filter(|r| r.outcome == "timeout").collect();
        ensure!(timeouts.len() == 4, "four timeouts among the thirty");
        ensure!(
            errors.iter().collect::<Vec<_>>() == timeouts,
            "the errors of both nodes' batches, newest first"
        );
        let successes = store
            .list_executions(
                busy.id,
                &ExecutionFilter {
                    outcome: Some("ok".to_owned()),
                    ..ExecutionFilter::default()
                },
                &page(100, None),
            )
            .await?
            .items;
        ensure!(successes.len() == all.len() - 4, "and every success");

        let first = retry.execution_id;
        let attempts = store.get_execution(first).await?;
        ensure!(
            attempts.iter().map(|r| r.attempt).collect::<Vec<_>>() == vec![1, 2],
            "both attempts of the retried execution, from two batches written apart: {:?}",
            attempts.iter().map(|r| r.attempt).collect::<Vec<_>>()
        );
        // Forty newer batches of one record each, of another script: a list of this script's
        // reads past them in reads that grow (8, 16, 32 batches) and finds every record still.
        let elsewhere = picloud_core::ScriptId::new();
        for _ in 0..40 {
            let other = ExecutionRecord {
                script_id: elsewhere,
                ..record(ExecutionId::new(), 1)
            };
            write_records(&store, "node-a", vec![other]).await?;
        }
        let this_script = store
            .list_executions(
                busy.id,
                &ExecutionFilter {
                    script_id: Some(script.id),
                    ..ExecutionFilter::default()
                },
                &page(100, None),
            )
            .await?;
        ensure!(
            this_script.items == all && this_script.next_cursor.is_none(),
            "the script's {} records behind forty batches of another's, newest first",
            all.len()
        );
        let retried = store.executions_in_batches(busy.id, &[retry.id]).await?;
        ensure!(
            retried == vec![retry],
            "the retry's batch holds the retry alone"
        );
        Ok(())
    }
);

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

both_backends!(
    a_route_is_created_read_listed_and_deleted,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "users").await?;
        let mut wanted = new_route(&script, RouteMethod::Get, "/users/{id}");
        wanted.dispatch_mode = DispatchMode::Async;
        let route = store.create_route(&wanted).await?;
        assert_eq!(route.app_id, shop.id, "the route's app");
        assert_eq!(route.script_id, script.id, "the route's script");
        assert_eq!(route.method, RouteMethod::Get, "the method");
        assert_eq!(route.path.as_str(), "/users/{id}", "the path pattern");
        assert_eq!(
            route.dispatch_mode,
            DispatchMode::Async,
            "the dispatch mode"
        );

        assert_eq!(
            store.get_route(route.id).await?,
            Some(route.clone()),
            "found by id"
        );
        assert_eq!(
            store
                .list_routes(shop.id, &PageRequest::default())
                .await?
                .items,
            vec![route.clone()],
            "listed in its app"
        );
        assert_eq!(
            store.list_routes_of_script(script.id).await?,
            vec![route.clone()],
            "listed for its script"
        );

        assert!(store.delete_route(route.id).await?, "deleted");
        assert_eq!(store.get_route(route.id).await?, None, "gone");
        assert!(
            !store.delete_route(route.id).await?,
            "deleting it again finds nothing"
        );
        assert!(
            store.list_routes_of_script(script.id).await?.is_empty(),
            "the script has no routes"
        );
        Ok(())
    }
);

both_backends!(
    a_method_and_path_name_one_route_per_app,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "users").await?;
        store
            .create_route(&new_route(&script, RouteMethod::Get, "/users/{id}"))
            .await?;

        let again = store
            .create_route(&new_route(&script, RouteMethod::Get, "/users/{id}"))
            .await;
        let message = conflict(again, "a second GET /users/{id}")?;
        assert_eq!(
            message, "this app already has a route GET /users/{id}",
            "names method and path"
        );

        store
            .create_route(&new_route(&script, RouteMethod::Delete, "/users/{id}"))
            .await
            .context("another method on the same path is fine")?;
        let blog = app(&store, "blog").await?;
        let blog_script = endpoint(&store, blog.id, "users").await?;
        store
            .create_route(&new_route(&blog_script, RouteMethod::Get, "/users/{id}"))
            .await
            .context("the same route in another app is fine")?;
        Ok(())
    }
);

// Cross-app access is impossible by construction: a route's script must be in the route's app.
both_backends!(
    a_route_needs_its_script_in_its_own_app,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        let blog_script = endpoint(&store, blog.id, "main").await?;

        let mut foreign = new_route(&blog_script, RouteMethod::Get, "/");
        foreign.app_id = shop.id;
        let result = store.create_route(&foreign).await;
        ensure!(
            matches!(result, Err(StoreError::NotFound("script"))),
            "a script of another app is not found: {result:?}"
        );

        let mut missing = new_route(&blog_script, RouteMethod::Get, "/");
        missing.script_id = ScriptId::new();
        let result = store.create_route(&missing).await;
        ensure!(
            matches!(result, Err(StoreError::NotFound("script"))),
            "an unknown script is not found: {result:?}"
        );
        assert!(
            store.routing_entries(None).await?.is_empty(),
            "no route was written"
        );
        Ok(())
    }
);

both_backends!(
    routing_entries_carry_the_app_slug_and_the_current_script,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        let hello = endpoint(&store, shop.id, "hello").await?;
        let posts = endpoint(&store, blog.id, "posts").await?;
        let r1 = store
            .create_route(&new_route(&hello, RouteMethod::Get, "/hello"))
            .await?;
        let r2 = store
            .create_route(&new_route(&hello, RouteMethod::Any, "/hi/{*rest}"))
            .await?;
        let r3 = store
            .create_route(&new_route(&posts, RouteMethod::Post, "/posts"))
            .await?;

        let all = store.routing_entries(None).await?;
        let ids: Vec<_> = all.iter().map(|e| e.route.id).collect();
        assert_eq!(ids, vec![r1.id, r2.id, r3.id], "every route, oldest first");
        let first = &all[0];
        assert_eq!(first.route, r1, "the route itself");
        assert_eq!(first.app_slug.as_str(), "shop", "the app's slug");
        assert_eq!(first.script_name.as_str(), "hello", "the script's name");
        assert_eq!(first.script_source, hello.source, "the script's source");
        assert_eq!(
            first.script_updated_at, hello.updated_at,
            "the script's version"
        );

        let only_blog = store.routing_entries(Some(blog.id)).await?;
        assert_eq!(only_blog.len(), 1, "one app's routes only: {only_blog:?}");
        assert_eq!(only_blog[0].route, r3, "the blog's route");
        assert_eq!(only_blog[0].app_slug.as_str(), "blog", "the blog's slug");

        let patch = ScriptPatch {
            source: Some("\"new\"".to_owned()),
            ..ScriptPatch::default()
        };
        let changed = store.update_script(hello.id, &patch).await?;
        let shop_entries = store.routing_entries(Some(shop.id)).await?;
        assert_eq!(shop_entries.len(), 2, "both shop routes");
        for entry in &shop_entries {
            assert_eq!(entry.script_source, "\"new\"", "the current source");
            assert_eq!(
                entry.script_updated_at, changed.updated_at,
                "the current version"
            );
        }
        assert!(
            store.routing_entries(Some(AppId::new())).await?.is_empty(),
            "an unknown app has none"
        );
        Ok(())
    }
);

// Issue #12: the kept headers of a route are what the invoker reads to redact a payload; they
// must come back as they were written, from every read, on both backends.
both_backends!(
    a_routes_kept_headers_are_stored_and_read_back,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let hook = endpoint(&store, shop.id, "hook").await?;
        let kept = KeptHeaders::parse(&["authorization", "x-api-key"]).expect("valid names");
        let route = store
            .create_route(&NewRoute {
                keep_headers: kept.clone(),
                dispatch_mode: DispatchMode::Async,
                ..new_route(&hook, RouteMethod::Post, "/hook")
            })
            .await?;
        let plain = store
            .create_route(&new_route(&hook, RouteMethod::Get, "/plain"))
            .await?;
        assert_eq!(route.keep_headers, kept, "create returns them");
        assert_eq!(
            store.get_route(route.id).await?.map(|r| r.keep_headers),
            Some(kept.clone()),
            "get reads them"
        );
        assert!(
            plain.keep_headers.is_empty(),
            "a route keeps none unless told"
        );
        let entries = store.routing_entries(Some(shop.id)).await?;
        let kept_by_route: Vec<_> = entries
            .iter()
            .map(|e| (e.route.id, e.route.keep_headers.clone()))
            .collect();
        assert_eq!(
            kept_by_route,
            vec![(route.id, kept), (plain.id, KeptHeaders::default())],
            "the routing entries carry them"
        );
        Ok(())
    }
);

// Issue #12: `expose_errors` is off unless asked for, set at creation or by a patch, and
// carried by the routing entries to the index.
both_backends!(
    an_apps_expose_errors_is_off_by_default_and_follows_patches,
    |store| async move {
        let quiet = app(&store, "quiet").await?;
        assert!(!quiet.expose_errors, "off by default");
        let dev = store
            .create_app(&NewApp {
                slug: slug("dev"),
                name: name("dev"),
                expose_errors: true,
            })
            .await?;
        assert!(dev.expose_errors, "on when created so");
        let exposed = store
            .update_app(
                quiet.id,
                &AppPatch {
                    expose_errors: Some(true),
                    ..AppPatch::default()
                },
            )
            .await?;
        assert!(exposed.expose_errors, "a patch turns it on");
        let renamed = store
            .update_app(
                quiet.id,
                &AppPatch {
                    name: Some(name("Quiet")),
                    ..AppPatch::default()
                },
            )
            .await?;
        assert!(renamed.expose_errors, "a patch without it keeps it");
        let script = endpoint(&store, quiet.id, "main").await?;
        store
            .create_route(&new_route(&script, RouteMethod::Get, "/"))
            .await?;
        let entries = store.routing_entries(Some(quiet.id)).await?;
        assert!(
            entries.iter().all(|e| e.app_expose_errors),
            "the routing entries carry the app's setting: {entries:?}"
        );
        Ok(())
    }
);

// ---------------------------------------------------------------------------------------------
// Lists
// ---------------------------------------------------------------------------------------------

both_backends!(
    lists_walk_every_item_once_in_creation_order,
    |store| async move {
        let mut created = Vec::new();
        for i in 0..7 {
            created.push(app(&store, &format!("app-{i}")).await?.id);
        }
        let mut seen = Vec::new();
        let mut sizes = Vec::new();
        let mut cursor = None;
        loop {
            let batch = store.list_apps(&page(3, cursor)).await?;
            sizes.push(batch.items.len());
            seen.extend(batch.items.iter().map(|a| a.id));
            match batch.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
            ensure!(
                sizes.len() <= 3,
                "7 items in pages of 3 take 3 pages, not more"
            );
        }
        assert_eq!(sizes, vec![3, 3, 1], "pages of 3, 3 and 1");
        assert_eq!(seen, created, "every app once, oldest first");

        let exact = store.list_apps(&page(7, None)).await?;
        assert_eq!(
            exact.items.len(),
            7,
            "a page as large as the list holds it all"
        );
        assert_eq!(exact.next_cursor, None, "and says there is no more");
        Ok(())
    }
);

both_backends!(scripts_and_routes_are_listed_per_app, |store| async move {
    let shop = app(&store, "shop").await?;
    let blog = app(&store, "blog").await?;
    let mut scripts = Vec::new();
    for i in 0..7 {
        scripts.push(endpoint(&store, shop.id, &format!("s{i}")).await?);
        endpoint(&store, blog.id, &format!("s{i}")).await?;
    }
    let mut routes = Vec::new();
    for (i, script) in scripts.iter().enumerate() {
        routes.push(
            store
                .create_route(&new_route(script, RouteMethod::Get, &format!("/r{i}")))
                .await?
                .id,
        );
    }

    let mut seen_scripts = Vec::new();
    let mut cursor = None;
    loop {
        let batch = store.list_scripts(shop.id, &page(3, cursor)).await?;
        seen_scripts.extend(batch.items.iter().map(|s| s.id));
        ensure!(
            batch.items.iter().all(|s| s.app_id == shop.id),
            "only the shop's scripts"
        );
        let Some(next) = batch.next_cursor else { break };
        cursor = Some(next);
    }
    let expected: Vec<_> = scripts.iter().map(|s| s.id).collect();
    assert_eq!(seen_scripts, expected, "the shop's 7 scripts, oldest first");

    let mut seen_routes = Vec::new();
    let mut cursor = None;
    loop {
        let batch = store.list_routes(shop.id, &page(3, cursor)).await?;
        seen_routes.extend(batch.items.iter().map(|r| r.id));
        let Some(next) = batch.next_cursor else { break };
        cursor = Some(next);
    }
    assert_eq!(seen_routes, routes, "the shop's 7 routes, oldest first");
    assert!(
        store
            .list_routes(blog.id, &PageRequest::default())
            .await?
            .items
            .is_empty(),
        "the blog has no routes"
    );
    Ok(())
});

both_backends!(
    a_cursor_this_server_did_not_issue_is_refused,
    |store| async move {
        app(&store, "shop").await?;
        for forged in ["not-a-cursor!", "", "aGVsbG8"] {
            let result = store.list_apps(&page(3, Some(forged.to_owned()))).await;
            match result {
                Err(StoreError::InvalidInput(message)) => assert_eq!(
                    message, "the cursor is not one this server issued",
                    "a sentence for the user"
                ),
                other => bail!("expected InvalidInput for the cursor '{forged}', got {other:?}"),
            }
        }
        let result = store
            .list_scripts(AppId::new(), &page(3, Some("x".to_owned())))
            .await;
        ensure!(
            matches!(result, Err(StoreError::InvalidInput(_))),
            "scripts too: {result:?}"
        );
        let result = store
            .list_routes(AppId::new(), &page(3, Some("x".to_owned())))
            .await;
        ensure!(
            matches!(result, Err(StoreError::InvalidInput(_))),
            "routes too: {result:?}"
        );
        Ok(())
    }
);

both_backends!(a_limit_out_of_range_is_clamped, |store| async move {
    for i in 0..3 {
        app(&store, &format!("app-{i}")).await?;
    }
    let zero = store.list_apps(&page(0, None)).await?;
    assert_eq!(zero.items.len(), 1, "a limit of 0 reads as 1");
    assert!(zero.next_cursor.is_some(), "and there is more");
    let huge = store.list_apps(&page(u32::MAX, None)).await?;
    assert_eq!(huge.items.len(), 3, "a huge limit reads as the maximum");
    assert_eq!(huge.next_cursor, None, "everything fit");
    Ok(())
});

// ---------------------------------------------------------------------------------------------
// Users and sessions
// ---------------------------------------------------------------------------------------------

both_backends!(
    a_user_is_found_by_id_and_by_name_with_its_hash,
    |store| async move {
        assert_eq!(store.count_users().await?, 0, "a fresh store has no users");
        let admin = store
            .create_user(&username("admin"), "$argon2id$v=19$hash", true)
            .await?;
        assert!(admin.is_instance_admin, "the instance admin flag is stored");
        assert!(!admin.disabled, "a new user is enabled");
        let bob = store
            .create_user(&username("bob"), "$argon2id$bob", false)
            .await?;
        assert!(!bob.is_instance_admin, "bob is no admin");
        assert_eq!(store.count_users().await?, 2, "two users");

        assert_eq!(
            store.get_user(admin.id).await?,
            Some(admin.clone()),
            "found by id"
        );
        let credentials = store
            .user_credentials(&username("admin"))
            .await?
            .context("the admin's credentials")?;
        assert_eq!(credentials.user, admin, "the credentials' user");
        assert_eq!(
            credentials.password_hash, "$argon2id$v=19$hash",
            "the stored hash"
        );
        assert!(
            store.user_credentials(&username("carol")).await?.is_none(),
            "an unknown name"
        );
        assert_eq!(store.get_user(UserId::new()).await?, None, "an unknown id");

        let disabled = store.set_user_disabled(bob.id, true).await?;
        assert!(disabled.disabled, "bob is disabled");
        let enabled = store.set_user_disabled(bob.id, false).await?;
        assert!(!enabled.disabled, "and enabled again");
        let result = store.set_user_disabled(UserId::new(), true).await;
        ensure!(
            matches!(result, Err(StoreError::NotFound("user"))),
            "disabling an unknown user: {result:?}"
        );
        Ok(())
    }
);

both_backends!(a_username_is_taken_once, |store| async move {
    store.create_user(&username("bob"), "h1", false).await?;
    let message = conflict(
        store.create_user(&username("bob"), "h2", true).await,
        "a second bob",
    )?;
    assert_eq!(message, "the username 'bob' is taken", "names the username");
    assert_eq!(store.count_users().await?, 1, "nothing was written");
    Ok(())
});

both_backends!(
    a_session_finds_its_user_until_it_is_deleted,
    |store| async move {
        let bob = store.create_user(&username("bob"), "h", false).await?;
        let before = Timestamp::now().as_millis();
        let expires_at = store.create_session(&token_hash(1), bob.id, 60_000).await?;
        let after = Timestamp::now().as_millis();
        assert!(
            (before + 60_000 - 1_000..=after + 60_000 + 1_000).contains(&expires_at.as_millis()),
            "expires one minute from the database's now: {} not near {before}+60000",
            expires_at.as_millis()
        );
        assert_eq!(
            store.session_user(&token_hash(1)).await?,
            Some(bob.clone()),
            "the session's user"
        );
        assert_eq!(
            store.session_user(&token_hash(2)).await?,
            None,
            "an unknown token finds nobody"
        );

        assert!(store.delete_session(&token_hash(1)).await?, "logged out");
        assert_eq!(
            store.session_user(&token_hash(1)).await?,
            None,
            "a deleted session finds nobody"
        );
        assert!(
            !store.delete_session(&token_hash(1)).await?,
            "deleting it again finds nothing"
        );

        let result = store
            .create_session(&token_hash(3), UserId::new(), 60_000)
            .await;
        ensure!(
            matches!(result, Err(StoreError::NotFound("user"))),
            "a session for an unknown user: {result:?}"
        );
        Ok(())
    }
);

both_backends!(
    an_expired_session_finds_nobody_and_is_swept,
    |store| async move {
        let bob = store.create_user(&username("bob"), "h", false).await?;
        store.create_session(&token_hash(1), bob.id, 0).await?;
        store.create_session(&token_hash(2), bob.id, -1_000).await?;
        store
            .create_session(&token_hash(3), bob.id, 3_600_000)
            .await?;
        store
            .create_session(&token_hash(4), bob.id, i64::MAX)
            .await
            .context("a huge ttl is clamped")?;
        assert_eq!(
            store.session_user(&token_hash(1)).await?,
            None,
            "a ttl of 0 is already expired"
        );
        assert_eq!(
            store.session_user(&token_hash(2)).await?,
            None,
            "a negative ttl is expired"
        );
        assert_eq!(
            store.session_user(&token_hash(3)).await?,
            Some(bob.clone()),
            "an hour is valid"
        );
        assert_eq!(
            store.session_user(&token_hash(4)).await?,
            Some(bob.clone()),
            "forever is valid"
        );

        assert_eq!(
            store.delete_expired_sessions().await?,
            2,
            "the two expired sessions are swept"
        );
        assert_eq!(
            store.delete_expired_sessions().await?,
            0,
            "nothing is left to sweep"
        );
        assert!(
            !store.delete_session(&token_hash(1)).await?,
            "the swept session is gone"
        );
        assert!(
            store.delete_session(&token_hash(3)).await?,
            "the valid session was kept"
        );
        Ok(())
    }
);

both_backends!(a_disabled_users_sessions_find_nobody, |store| async move {
    let bob = store.create_user(&username("bob"), "h", false).await?;
    store.create_session(&token_hash(1), bob.id, 60_000).await?;
    store.set_user_disabled(bob.id, true).await?;
    assert_eq!(
        store.session_user(&token_hash(1)).await?,
        None,
        "a disabled user is not let in"
    );
    store.set_user_disabled(bob.id, false).await?;
    let back = store.session_user(&token_hash(1)).await?;
    assert_eq!(
        back.map(|u| u.id),
        Some(bob.id),
        "enabled again, the session works again"
    );
    Ok(())
});

// ---------------------------------------------------------------------------------------------
// Users, memberships and API keys
// ---------------------------------------------------------------------------------------------

both_backends!(
    users_are_listed_changed_and_deleted_with_everything_they_own,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let ann = store.create_user(&username("ann"), "h1", false).await?;
        let bob = store.create_user(&username("bob"), "h2", false).await?;
        let listed = store.list_users(&page(1, None)).await?;
        assert_eq!(
            listed.items,
            vec![ann.clone()],
            "the first page holds the oldest"
        );
        let rest = store.list_users(&page(10, listed.next_cursor)).await?;
        assert_eq!(rest.items, vec![bob.clone()], "the second page the next");

        store.create_session(&token_hash(1), ann.id, 60_000).await?;
        let changed = store.set_password(ann.id, "h3").await?;
        assert_eq!(changed, ann, "the record is unchanged");
        let creds = store
            .user_credentials(&username("ann"))
            .await?
            .context("ann exists")?;
        assert_eq!(creds.password_hash, "h3", "the new hash is stored");
        assert_eq!(
            store.session_user(&token_hash(1)).await?,
            None,
            "a password change ends the user's sessions"
        );

        let promoted = store.set_instance_admin(bob.id, true).await?;
        assert!(promoted.is_instance_admin, "the flag is set");
        let missing = store.set_instance_admin(UserId::new(), true).await;
        assert!(
            matches!(missing, Err(StoreError::NotFound("user"))),
            "an unknown user: {missing:?}"
        );

        store.create_session(&token_hash(2), bob.id, 60_000).await?;
        assert_eq!(
            store.delete_sessions_of_user(bob.id).await?,
            1,
            "one session ended"
        );

        store.set_membership(shop.id, ann.id, Role::Owner).await?;
        store
            .create_api_key(&new_key(ann.id, "pfx00001", None))
            .await?;
        assert!(store.delete_user(ann.id).await?, "ann is deleted");
        assert!(
            !store.delete_user(ann.id).await?,
            "a second delete finds nothing"
        );
        assert!(
            store.list_members(shop.id).await?.is_empty(),
            "her membership went with her"
        );
        assert!(
            store.list_api_keys(None).await?.is_empty(),
            "her keys went with her"
        );
        Ok(())
    }
);

both_backends!(
    a_membership_is_set_replaced_listed_and_removed,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        let ann = store.create_user(&username("ann"), "h", false).await?;
        let bob = store.create_user(&username("bob"), "h", false).await?;
        let set = store.set_membership(shop.id, bob.id, Role::Viewer).await?;
        assert_eq!(
            (set.app_id, set.user_id, set.username.as_str(), set.role),
            (shop.id, bob.id, "bob", Role::Viewer),
            "the membership record"
        );
        let replaced = store.set_membership(shop.id, bob.id, Role::Editor).await?;
        assert_eq!(
            replaced.role,
            Role::Editor,
            "setting again replaces the role"
        );
        store.set_membership(shop.id, ann.id, Role::Owner).await?;
        store.set_membership(blog.id, bob.id, Role::Owner).await?;
        let members = store.list_members(shop.id).await?;
        let names: Vec<_> = members
            .iter()
            .map(|m| (m.username.as_str(), m.role))
            .collect();
        assert_eq!(
            names,
            vec![("ann", Role::Owner), ("bob", Role::Editor)],
            "members by username, one row per user"
        );
        let mut of_bob = store.memberships_of_user(bob.id).await?;
        of_bob.sort();
        let mut expected = vec![(shop.id, Role::Editor), (blog.id, Role::Owner)];
        expected.sort();
        assert_eq!(of_bob, expected, "every app bob belongs to");

        let missing_app = store
            .set_membership(AppId::new(), bob.id, Role::Viewer)
            .await;
        assert!(
            matches!(missing_app, Err(StoreError::NotFound("app"))),
            "no app: {missing_app:?}"
        );
        let missing_user = store
            .set_membership(shop.id, UserId::new(), Role::Viewer)
            .await;
        assert!(
            matches!(missing_user, Err(StoreError::NotFound("user"))),
            "no user: {missing_user:?}"
        );

        assert!(store.remove_membership(shop.id, bob.id).await?, "removed");
        assert!(
            !store.remove_membership(shop.id, bob.id).await?,
            "a second removal finds nothing"
        );
        store.delete_app(blog.id).await?;
        assert!(
            store.memberships_of_user(bob.id).await?.is_empty(),
            "deleting an app removes its memberships"
        );
        Ok(())
    }
);

both_backends!(
    an_api_key_is_found_by_prefix_until_revoked_or_expired,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let ann = store.create_user(&username("ann"), "h", false).await?;
        let mut new = new_key(ann.id, "pfx00001", Some(shop.id));
        new.scopes = vec![Scope::ScriptRead, Scope::TriggerWrite];
        let key = store.create_api_key(&new).await?;
        assert_eq!(
            (
                key.name.as_str(),
                key.prefix.as_str(),
                key.app_id,
                key.revoked
            ),
            ("ci", "pfx00001", Some(shop.id), false),
            "the record"
        );
        assert_eq!(key.scopes, new.scopes, "the scopes in order");
        assert_eq!(key.last_used_at, None, "never used");
        assert_eq!(
            store.get_api_key(key.id).await?,
            Some(key.clone()),
            "found by id"
        );

        let creds = store
            .api_key_credentials("pfx00001")
            .await?
            .context("a usable key is found by its prefix")?;
        assert_eq!(creds.secret_hash, vec![9_u8; 32], "with its secret's hash");
        assert_eq!(creds.key, key, "and its record");
        assert!(
            store.api_key_credentials("pfx00002").await?.is_none(),
            "an unknown prefix finds nothing"
        );

        store.touch_api_key(key.id).await?;
        let used = store.get_api_key(key.id).await?.context("still there")?;
        assert!(used.last_used_at.is_some(), "last_used_at is kept");

        let duplicate = store
            .create_api_key(&new_key(ann.id, "pfx00001", None))
            .await;
        conflict(duplicate, "a second key with the same prefix")?;

        let mut expired = new_key(ann.id, "pfx00003", None);
        expired.expires_at = Some(Timestamp::from_millis(
            Timestamp::now().as_millis() - 60_000,
        ));
        store.create_api_key(&expired).await?;
        assert!(
            store.api_key_credentials("pfx00003").await?.is_none(),
            "an expired key is not usable"
        );

        assert!(store.revoke_api_key(key.id).await?, "revoked");
        assert!(
            !store.revoke_api_key(key.id).await?,
            "revoking twice finds nothing"
        );
        assert!(
            store.api_key_credentials("pfx00001").await?.is_none(),
            "a revoked key is not usable"
        );
        assert!(
            store.get_api_key(key.id).await?.is_some_and(|k| k.revoked),
            "but still listed, as revoked"
        );
        let bob = store.create_user(&username("bob"), "h", false).await?;
        store
            .create_api_key(&new_key(bob.id, "pfx00004", None))
            .await?;
        assert_eq!(
            store.list_api_keys(Some(ann.id)).await?.len(),
            2,
            "ann's keys"
        );
        assert_eq!(store.list_api_keys(None).await?.len(), 3, "everyone's keys");

        let no_user = store
            .create_api_key(&new_key(UserId::new(), "pfx00005", None))
            .await;
        assert!(
            matches!(no_user, Err(StoreError::NotFound("user"))),
            "no user: {no_user:?}"
        );
        let no_app = store
            .create_api_key(&new_key(ann.id, "pfx00006", Some(AppId::new())))
            .await;
        assert!(
            matches!(no_app, Err(StoreError::NotFound("app"))),
            "no app: {no_app:?}"
        );
        assert_eq!(
            store.get_api_key(ApiKeyId::new()).await?,
            None,
            "unknown id"
        );
        store.delete_app(shop.id).await?;
        assert_eq!(
            store.get_api_key(key.id).await?,
            None,
            "a key bound to a deleted app goes with it"
        );
        Ok(())
    }
);

// ---------------------------------------------------------------------------------------------
// The store itself
// ---------------------------------------------------------------------------------------------

// SQLite writes go through one connection with BEGIN IMMEDIATE, so concurrent admin writes
// queue instead of failing with "database is locked".
both_backends!(concurrent_writes_all_succeed, |store| async move {
    let shop = app(&store, "shop").await?;
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let script = endpoint(&store, shop.id, &format!("s{i}")).await?;
                let patch = ScriptPatch {
                    source: Some(format!("{i}")),
                    ..ScriptPatch::default()
                };
                store.update_script(script.id, &patch).await?;
                store.list_scripts(shop.id, &PageRequest::default()).await?;
                anyhow::Ok(script.id)
            })
        })
        .collect();
    let mut ids = HashSet::new();
    for task in tasks {
        ids.insert(task.await.context("the task ran")??);
    }
    assert_eq!(ids.len(), 40, "every concurrent write succeeded");
    let listed = store.list_scripts(shop.id, &page(100, None)).await?;
    assert_eq!(listed.items.len(), 40, "and every script is there");
    Ok(())
});

both_backends!(migrating_again_changes_nothing, |store| async move {
    let shop = app(&store, "shop").await?;
    store
        .migrate()
        .await
        .context("a second migrate is a no-op")?;
    assert_eq!(
        store.get_app(shop.id).await?,
        Some(shop),
        "the data is untouched"
    );
    store.ping().await.context("the database answers")?;
    Ok(())
});

both_backends!(a_closed_store_is_unavailable, |store| async move {
    store.ping().await.context("open, it answers")?;
    store.close().await;
    let result = store.ping().await;
    ensure!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "closed, ping: {result:?}"
    );
    let result = store.get_app(AppId::new()).await;
    ensure!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "closed, a read: {result:?}"
    );
    let result = app(&store, "late").await;
    ensure!(
        matches!(
            result.as_ref().map_err(|e| e.downcast_ref::<StoreError>()),
            Err(Some(StoreError::Unavailable(_)))
        ),
        "closed, a write: {result:?}"
    );
    Ok(())
});

// What was written is there after the store is closed and opened again on the same database.
mod data_survives_closing_and_reopening {
    use super::*;

    async fn check(backend: Backend) -> anyhow::Result<()> {
        let Some((store, database)) = fresh_store(backend).await else {
            return Ok(());
        };
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "hello").await?;
        let route = store
            .create_route(&new_route(&script, RouteMethod::Get, "/"))
            .await?;
        let bob = store.create_user(&username("bob"), "h", false).await?;
        store.create_session(&token_hash(7), bob.id, 60_000).await?;
        store.close().await;
        drop(store);

        let reopened = picloud_store::open(database.config()).await?;
        reopened
            .migrate()
            .await
            .context("migrating an up-to-date database")?;
        assert_eq!(
            reopened.get_app(shop.id).await?,
            Some(shop),
            "the app survived"
        );
        assert_eq!(
            reopened.get_script(script.id).await?,
            Some(script),
            "the script survived"
        );
        assert_eq!(
            reopened.get_route(route.id).await?,
            Some(route),
            "the route survived"
        );
        assert_eq!(
            reopened.session_user(&token_hash(7)).await?,
            Some(bob),
            "the session survived"
        );
        if backend == Backend::Sqlite {
            assert!(
                database.data_dir().join("picloud.db").is_file(),
                "SQLite keeps picloud.db in the data directory"
            );
        }
        reopened.close().await;
        Ok(())
    }

    #[tokio::test]
    async fn sqlite() -> anyhow::Result<()> {
        check(Backend::Sqlite).await
    }

    #[tokio::test]
    async fn postgres() -> anyhow::Result<()> {
        check(Backend::Postgres).await
    }
}

// `open` creates the SQLite file and every missing directory above it.
#[tokio::test]
async fn sqlite_creates_its_data_directory_when_missing() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("nested").join("data");
    let config = StoreConfig {
        data_dir: data_dir.clone(),
        ..StoreConfig::default()
    };
    let store = picloud_store::open(&config).await?;
    store.migrate().await?;
    assert_eq!(store.backend(), Backend::Sqlite, "no URL means SQLite");
    assert!(
        data_dir.join("picloud.db").is_file(),
        "the database file exists"
    );
    assert!(
        data_dir.join("picloud.db-wal").is_file(),
        "the database runs in WAL mode (the log exists while the store is open)"
    );
    store.close().await;

    let url = format!(
        "sqlite://{}",
        dir.path().join("other").join("x.db").display()
    );
    let store = picloud_store::open(&StoreConfig {
        database_url: Some(url),
        ..config
    })
    .await?;
    store.migrate().await?;
    assert!(
        dir.path().join("other").join("x.db").is_file(),
        "a sqlite:// URL names the file"
    );
    store.close().await;
    Ok(())
}

#[tokio::test]
async fn an_unknown_database_url_is_refused_before_connecting() {
    let config = StoreConfig {
        database_url: Some("mysql://db/x".to_owned()),
        ..StoreConfig::default()
    };
    let result = picloud_store::open(&config).await.map(|_| ());
    assert!(
        matches!(&result, Err(StoreError::InvalidInput(m)) if m.contains("PICLOUD_DATABASE_URL")),
        "names the variable: {result:?}"
    );
}

#[tokio::test]
async fn an_unreachable_postgres_server_is_unavailable() {
    let config = StoreConfig {
        // Port 1 on localhost: nothing listens there.
        database_url: Some("postgres://nobody@127.0.0.1:1/none".to_owned()),
        acquire_timeout_ms: 2_000,
        ..StoreConfig::default()
    };
    let result = picloud_store::open(&config).await.map(|_| ());
    assert!(
        matches!(result, Err(StoreError::Unavailable(_))),
        "refused connection: {result:?}"
    );
}
