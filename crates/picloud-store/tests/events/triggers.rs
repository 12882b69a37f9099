//! Triggers.

use super::*;

both_backends!(
    triggers_of_both_kinds_are_created_read_listed_and_deleted,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "on-change").await?;
        let kv = kv_trigger(
            &store,
            &script,
            "users",
            Some("u:"),
            &[KvOp::Delete, KvOp::Set, KvOp::Delete],
        )
        .await?;
        assert_eq!(kv.app_id, shop.id, "the trigger's app");
        assert_eq!(kv.script_id, script.id, "the trigger's script");
        assert_eq!(
            kv.detail,
            TriggerDetail::Kv {
                collection: collection("users"),
                key_prefix: Some("u:".to_owned()),
                ops: vec![KvOp::Set, KvOp::Delete],
            },
            "the details, operations once each in their order"
        );
        let dl = dead_letter_trigger(&store, &script).await?;
        assert_eq!(
            dl.detail,
            TriggerDetail::DeadLetter,
            "a dead-letter trigger"
        );
        let all = kv_trigger(&store, &script, "orders", None, &[KvOp::Set]).await?;

        assert_eq!(
            store.get_trigger(kv.id).await?,
            Some(kv.clone()),
            "read back by id"
        );
        assert_eq!(
            store.get_trigger(dl.id).await?,
            Some(dl.clone()),
            "a dead-letter trigger read back"
        );

        let first = store.list_triggers(shop.id, &page(2, None)).await?;
        assert_eq!(first.items, vec![kv.clone(), dl.clone()], "oldest first");
        let second = store
            .list_triggers(shop.id, &page(2, first.next_cursor.clone()))
            .await?;
        assert_eq!(second.items, vec![all.clone()], "the rest on the next page");
        assert_eq!(second.next_cursor, None, "no more pages");
        let other = app(&store, "other").await?;
        assert!(
            store
                .list_triggers(other.id, &PageRequest::default())
                .await?
                .items
                .is_empty(),
            "another app lists none of them"
        );

        assert!(store.delete_trigger(kv.id).await?, "deleted");
        assert_eq!(store.get_trigger(kv.id).await?, None, "gone");
        assert!(
            !store.delete_trigger(kv.id).await?,
            "a second delete finds nothing"
        );
        Ok(())
    }
);

both_backends!(
    a_trigger_needs_a_script_of_its_own_app,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        let blog_script = endpoint(&store, blog.id, "handler").await?;
        for (script_id, what) in [
            (ScriptId::new(), "a script that does not exist"),
            (blog_script.id, "a script of another app"),
        ] {
            let result = store
                .create_trigger(&NewTrigger {
                    app_id: shop.id,
                    script_id,
                    detail: TriggerDetail::DeadLetter,
                })
                .await;
            assert!(
                matches!(result, Err(StoreError::NotFound("script"))),
                "{what} is NotFound(\"script\"), got {result:?}"
            );
        }
        assert!(
            store
                .list_triggers(shop.id, &PageRequest::default())
                .await?
                .items
                .is_empty(),
            "nothing was written"
        );
        Ok(())
    }
);

both_backends!(
    a_script_that_triggers_point_at_cannot_be_deleted,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "handler").await?;
        let trigger = dead_letter_trigger(&store, &script).await?;
        let message = conflict(
            store.delete_script(script.id).await,
            "deleting a triggered script",
        )?;
        assert_eq!(
            message, "the script is the target of 1 trigger; delete it first",
            "the message counts the trigger"
        );

        let route_to = |method| NewRoute {
            app_id: shop.id,
            script_id: script.id,
            method,
            path: RoutePath::parse("/h").expect("a valid path"),
            dispatch_mode: DispatchMode::Async,
            keep_headers: KeptHeaders::default(),
        };
        let get = store.create_route(&route_to(RouteMethod::Get)).await?;
        let post = store.create_route(&route_to(RouteMethod::Post)).await?;
        let message = conflict(
            store.delete_script(script.id).await,
            "deleting a routed and triggered script",
        )?;
        assert_eq!(
            message, "the script is the target of 2 routes and 1 trigger; delete them first",
            "one message counts both"
        );

        store.delete_trigger(trigger.id).await?;
        store.delete_route(get.id).await?;
        store.delete_route(post.id).await?;
        assert!(
            store.delete_script(script.id).await?,
            "without routes and triggers it can be deleted"
        );
        Ok(())
    }
);
