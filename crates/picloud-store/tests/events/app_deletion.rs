//! Deleting an app, and the routing fingerprint.

use super::*;

both_backends!(
    deleting_an_app_removes_its_entries_jobs_triggers_and_dead_letters,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let keep = app(&store, "keep").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let kept_script = endpoint(&store, keep.id, "api").await?;
        let trigger = kv_trigger(&store, &script, "users", None, &[KvOp::Set]).await?;
        dead_letter_trigger(&store, &script).await?;
        let dead = dead_letter(&store, &script, "boom").await?;
        store
            .kv_set(
                origin(shop.id, 0),
                &collection("users"),
                &key("u"),
                &json!(1),
            )
            .await?;
        store
            .kv_set(
                origin(keep.id, 0),
                &collection("users"),
                &key("u"),
                &json!(2),
            )
            .await?;
        let gone = serve(&store, &script, "n", LEASE_MS).await?;
        store.abandon_sync(gone, shop.id, script.id, "gone").await?;
        let serving = serve(&store, &script, "n", LEASE_MS).await?;
        enqueue(&store, vec![http_job(&kept_script, "/k")]).await?;
        ensure!(depth(&store).await?.pending > 1, "the app has jobs waiting");

        assert!(store.delete_app(shop.id).await?, "the app is deleted");
        assert_eq!(
            store
                .kv_get(shop.id, &collection("users"), &key("u"))
                .await?,
            None,
            "its KV entries are gone"
        );
        assert_eq!(store.get_trigger(trigger.id).await?, None, "its triggers");
        assert_eq!(
            store.get_dead_letter(dead.id).await?,
            None,
            "its dead letters"
        );
        assert!(
            abandoned(&store, shop.id).await?.is_empty(),
            "its abandoned executions"
        );
        assert_eq!(
            depth(&store).await?,
            depth_of(1, 0),
            "its outbox jobs, and only its"
        );
        // A request served while its app was deleted ends without a trace: its answer deletes
        // its record (or a sweep drops it); an abandonment records nothing for a gone app.
        assert!(
            !store
                .abandon_sync(serving, shop.id, script.id, "gone")
                .await?,
            "nothing recorded for the gone app"
        );
        assert!(
            !holds(&store, "n", serving).await?,
            "and the request's record is taken"
        );
        assert!(abandoned(&store, shop.id).await?.is_empty());
        let late = serve(&store, &script, "n", LEASE_MS).await?;
        assert!(
            !holds(&store, "n", late).await?,
            "a request of a gone app commits, and records nothing"
        );
        assert_eq!(
            store
                .kv_get(keep.id, &collection("users"), &key("u"))
                .await?,
            Some(json!(2)),
            "the other app's entry stays"
        );
        Ok(())
    }
);

both_backends!(
    the_routing_fingerprint_moves_with_every_change_of_the_route_index,
    |store| async move {
        let fingerprint = || {
            let store = store.clone();
            async move { store.routing_fingerprint().await }
        };
        let start = fingerprint().await?;
        assert_eq!(
            fingerprint().await?,
            start,
            "nothing changed, nothing moves"
        );

        let shop = app(&store, "shop").await?;
        let created = fingerprint().await?;
        assert_ne!(created, start, "an app created");

        let script = endpoint(&store, shop.id, "api").await?;
        let route = store
            .create_route(&NewRoute {
                app_id: shop.id,
                script_id: script.id,
                method: RouteMethod::Get,
                path: RoutePath::parse("/").expect("a path"),
                dispatch_mode: DispatchMode::Sync,
                keep_headers: KeptHeaders::default(),
            })
            .await?;
        let routed = fingerprint().await?;
        assert_ne!(routed, created, "a route added");

        store
            .kv_set(origin(shop.id, 0), &collection("c"), &key("k"), &json!(1))
            .await?;
        assert_eq!(fingerprint().await?, routed, "data writes do not move it");

        let mut previous = routed;
        for i in 0..3 {
            // Two updates within one millisecond are still two versions.
            store
                .update_script(
                    script.id,
                    &ScriptPatch {
                        source: Some(format!("{i}")),
                        ..ScriptPatch::default()
                    },
                )
                .await?;
            let now = fingerprint().await?;
            assert_ne!(now, previous, "script update {i}");
            previous = now;
        }
        for i in 0..3 {
            store
                .update_app(
                    shop.id,
                    &AppPatch {
                        name: Some(AppName::parse(&format!("Shop {i}")).expect("a name")),
                        ..AppPatch::default()
                    },
                )
                .await?;
            let now = fingerprint().await?;
            assert_ne!(now, previous, "app update {i}");
            previous = now;
        }
        // The index carries an app's `expose_errors` to its routes, so other nodes must notice.
        store
            .update_app(
                shop.id,
                &AppPatch {
                    expose_errors: Some(true),
                    ..AppPatch::default()
                },
            )
            .await?;
        let exposed = fingerprint().await?;
        assert_ne!(exposed, previous, "an app's expose_errors changed");
        let previous = exposed;
        store.delete_route(route.id).await?;
        let unrouted = fingerprint().await?;
        assert_ne!(unrouted, previous, "a route deleted");
        store.delete_app(shop.id).await?;
        assert_ne!(fingerprint().await?, unrouted, "an app deleted");
        Ok(())
    }
);
