//! The services scripts call.

use super::*;

both_backends!(
    services_wake_the_dispatcher_only_when_a_write_enqueued_jobs,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "handler").await?;
        kv_trigger(&store, &handler, "watched", None, &KvOp::ALL).await?;
        let (services, wakes) = services(&store);
        let me = origin(shop.id, 0);

        let quiet = services
            .kv_set(me, &collection("quiet"), &key("k"), json!(1))
            .await?;
        assert_eq!(
            quiet,
            KvChanged {
                existed: false,
                trigger_jobs: 0
            },
            "a new entry, no trigger"
        );
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "no trigger, no wake-up");
        let watched = services
            .kv_set(me, &collection("watched"), &key("k"), json!(1))
            .await?;
        assert_eq!(watched.trigger_jobs, 1, "the write reports its trigger job");
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "a fired trigger wakes it");
        let missing = services
            .kv_delete(me, &collection("watched"), &key("missing"))
            .await?;
        assert!(
            !missing.existed && missing.trigger_jobs == 0,
            "deleting a missing key finds nothing and fires nothing: {missing:?}"
        );
        assert_eq!(wakes.load(Ordering::SeqCst), 1, "and wakes nothing");
        assert_eq!(
            services
                .kv_delete(me, &collection("watched"), &key("k"))
                .await?,
            KvChanged {
                existed: true,
                trigger_jobs: 1
            },
            "deleting an entry finds it and fires its trigger"
        );
        assert_eq!(wakes.load(Ordering::SeqCst), 2, "its trigger wakes it");

        assert!(
            services
                .kv_has(shop.id, &collection("quiet"), &key("k"))
                .await?,
            "has"
        );
        assert_eq!(
            services
                .kv_get(shop.id, &collection("quiet"), &key("k"))
                .await?,
            Some(json!(1)),
            "get"
        );
        let listed = services
            .kv_list(shop.id, &collection("quiet"), &list(None, 10, None))
            .await?;
        assert_eq!(listed.items, vec![("k".to_owned(), json!(1))], "list");
        assert_eq!(listed.cursor, None, "one page");
        let bad = services
            .kv_list(
                shop.id,
                &collection("quiet"),
                &list(None, 10, Some("x".into())),
            )
            .await
            .expect_err("a forged cursor");
        assert_eq!(bad.kind, ServiceErrorKind::Invalid, "is invalid input");
        assert_eq!(
            bad.message, "the cursor is not one this server issued",
            "with the store's sentence"
        );
        let too_big = services
            .kv_set(
                me,
                &collection("quiet"),
                &key("big"),
                json!("x".repeat(KV_MAX_VALUE_BYTES)),
            )
            .await
            .expect_err("too large");
        assert_eq!(too_big.kind, ServiceErrorKind::Invalid, "a too large value");
        Ok(())
    }
);

// A script reaches its own app's dead letters only; another app's read exactly like missing
// ones, so nothing about them leaks.
both_backends!(
    services_replay_and_resolve_only_the_callers_dead_letters,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        let failing = endpoint(&store, shop.id, "failing").await?;
        let theirs = endpoint(&store, blog.id, "failing").await?;
        let mine = dead_letter(&store, &failing, "boom").await?;
        let other = dead_letter(&store, &theirs, "boom").await?;
        let (services, wakes) = services(&store);

        let missing = DeadLetterId::new();
        for (id, what) in [(missing, "a missing id"), (other.id, "another app's")] {
            let replay = services
                .dead_letter_replay(shop.id, id)
                .await
                .expect_err(what);
            assert_eq!(replay.kind, ServiceErrorKind::NotFound, "{what}: not found");
            assert_eq!(
                replay.message,
                format!("no dead letter with id {id} in this app"),
                "{what}: the same sentence"
            );
            let resolve = services
                .dead_letter_resolve(shop.id, id)
                .await
                .expect_err(what);
            assert_eq!(
                (resolve.kind, resolve.message),
                (replay.kind, replay.message),
                "{what}: resolve answers alike"
            );
        }
        assert_eq!(
            store
                .get_dead_letter(other.id)
                .await?
                .context("still there")?
                .resolution,
            None,
            "the other app's dead letter is untouched"
        );
        assert_eq!(wakes.load(Ordering::SeqCst), 0, "nothing enqueued");

        let execution_id = services.dead_letter_replay(shop.id, mine.id).await?;
        assert_eq!(
            wakes.load(Ordering::SeqCst),
            1,
            "a replay wakes the dispatcher"
        );
        let jobs = claim(&store, "w", 10).await?;
        assert_eq!(
            jobs.iter().map(|job| job.id).collect::<Vec<_>>(),
            vec![execution_id],
            "the replay runs as the execution it returned"
        );
        let again = services
            .dead_letter_resolve(shop.id, mine.id)
            .await
            .expect_err("already replayed");
        assert_eq!(again.kind, ServiceErrorKind::Conflict, "a conflict");
        assert!(
            again.message.contains("already replayed"),
            "says why: {}",
            again.message
        );
        let fresh = dead_letter(&store, &failing, "again").await?;
        services.dead_letter_resolve(shop.id, fresh.id).await?;
        assert_eq!(
            store
                .get_dead_letter(fresh.id)
                .await?
                .context("kept")?
                .resolution,
            Some(Resolution::Resolved),
            "resolved through the services"
        );
        Ok(())
    }
);
