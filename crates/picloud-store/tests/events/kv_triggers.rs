//! KV writes that fire triggers.

use super::*;

both_backends!(
    a_matching_set_enqueues_one_job_carrying_the_event_one_level_deeper,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-user").await?;
        kv_trigger(&store, &handler, "users", Some("u:"), &[KvOp::Set]).await?;
        let users = collection("users");

        let written = store
            .kv_set(origin(shop.id, 2), &users, &key("u:1"), &json!({"n": 1}))
            .await?;
        assert_eq!(written.jobs_enqueued, 1, "one trigger, one job");
        assert_eq!(depth(&store).await?, depth_of(1, 0), "one pending job");

        let jobs = claim(&store, "worker", 10).await?;
        assert_eq!(jobs.len(), 1, "exactly one job to claim");
        let job = &jobs[0];
        assert_eq!(job.app_id, shop.id, "the writer's app");
        assert_eq!(job.script_id, handler.id, "the trigger's script");
        assert_eq!(job.attempt, 1, "the first attempt");
        assert_eq!(job.trigger_depth, 3, "one level deeper than the writer");
        assert_eq!(
            kv_event(job)?,
            &KvEvent {
                collection: "users".to_owned(),
                key: "u:1".to_owned(),
                op: KvOp::Set,
                value: Some(json!({"n": 1})),
                prev_value: None,
            },
            "the event of a first set"
        );

        store
            .kv_set(origin(shop.id, 0), &users, &key("u:1"), &json!({"n": 2}))
            .await?;
        let jobs = claim(&store, "worker", 10).await?;
        assert_eq!(jobs.len(), 1, "the second set fires again");
        let event = kv_event(&jobs[0])?;
        assert_eq!(
            event.prev_value,
            Some(json!({"n": 1})),
            "and carries the value it replaced"
        );
        assert_eq!(event.value, Some(json!({"n": 2})), "and the new one");
        assert_eq!(jobs[0].trigger_depth, 1, "depth 0 writes enqueue depth 1");
        Ok(())
    }
);

both_backends!(
    writes_that_match_no_trigger_enqueue_nothing,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        let handler = endpoint(&store, shop.id, "on-user").await?;
        kv_trigger(&store, &handler, "users", Some("u:"), &[KvOp::Set]).await?;
        let users = collection("users");
        let cases = [
            (shop.id, "orders", "u:1", "another collection"),
            (shop.id, "users", "v:1", "a key outside the prefix"),
            (shop.id, "users", "U:1", "a prefix is case-sensitive"),
            (
                blog.id,
                "users",
                "u:1",
                "the same collection in another app",
            ),
        ];
        for (app_id, name, k, what) in cases {
            let written = store
                .kv_set(origin(app_id, 0), &collection(name), &key(k), &json!(1))
                .await?;
            assert_eq!(written.jobs_enqueued, 0, "{what}: no job");
        }
        store
            .kv_set(origin(shop.id, 0), &users, &key("u:2"), &json!(1))
            .await?;
        claim(&store, "worker", 10).await?;
        let deleted = store
            .kv_delete(origin(shop.id, 0), &users, &key("u:2"))
            .await?;
        assert!(deleted.prev_value.is_some(), "the entry was deleted");
        assert_eq!(
            deleted.jobs_enqueued, 0,
            "a set-only trigger ignores deletes"
        );
        assert_eq!(
            depth(&store).await?,
            depth_of(0, 1),
            "only the one matching set ever enqueued a job"
        );
        Ok(())
    }
);

both_backends!(
    a_delete_fires_delete_triggers_with_the_removed_value,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let on_delete = endpoint(&store, shop.id, "on-delete").await?;
        let on_any = endpoint(&store, shop.id, "on-any").await?;
        kv_trigger(&store, &on_delete, "carts", None, &[KvOp::Delete]).await?;
        kv_trigger(&store, &on_any, "carts", Some(""), &KvOp::ALL).await?;
        let carts = collection("carts");

        let set = store
            .kv_set(origin(shop.id, 0), &carts, &key("c1"), &json!([1, 2]))
            .await?;
        assert_eq!(
            set.jobs_enqueued, 1,
            "only the set-and-delete trigger fires on a set"
        );
        claim(&store, "worker", 10).await?;

        let missing = store
            .kv_delete(origin(shop.id, 0), &carts, &key("nope"))
            .await?;
        assert_eq!(
            missing.jobs_enqueued, 0,
            "deleting a missing key fires nothing"
        );
        assert_eq!(depth(&store).await?.pending, 0, "nothing pending");

        let deleted = store
            .kv_delete(origin(shop.id, 4), &carts, &key("c1"))
            .await?;
        assert_eq!(deleted.jobs_enqueued, 2, "both triggers fire on the delete");
        let jobs = claim(&store, "worker", 10).await?;
        let scripts: HashSet<ScriptId> = jobs.iter().map(|job| job.script_id).collect();
        assert_eq!(
            scripts,
            HashSet::from([on_delete.id, on_any.id]),
            "one job per trigger"
        );
        for job in &jobs {
            assert_eq!(
                kv_event(job)?,
                &KvEvent {
                    collection: "carts".to_owned(),
                    key: "c1".to_owned(),
                    op: KvOp::Delete,
                    value: None,
                    prev_value: Some(json!([1, 2])),
                },
                "a delete's event has no value and the removed one"
            );
            assert_eq!(job.trigger_depth, 5, "one level deeper than the writer");
        }
        Ok(())
    }
);
