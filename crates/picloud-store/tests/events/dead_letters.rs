//! Dead letters.

use super::*;

both_backends!(
    a_dead_lettered_job_moves_out_of_the_outbox_and_fans_out_to_handlers,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let failing = endpoint(&store, shop.id, "failing").await?;
        let handler = endpoint(&store, shop.id, "handler").await?;
        let auditor = endpoint(&store, shop.id, "auditor").await?;
        dead_letter_trigger(&store, &handler).await?;
        dead_letter_trigger(&store, &auditor).await?;
        let blog = app(&store, "blog").await?;
        let elsewhere = endpoint(&store, blog.id, "handler").await?;
        dead_letter_trigger(&store, &elsewhere).await?;

        let mut job = http_job(&failing, "/pay");
        job.trigger_depth = 1;
        let payload = job.payload.clone();
        let id = job.id;
        enqueue(&store, vec![job]).await?;
        claim(&store, "w", 1).await?;
        let retry = store
            .retry_job(JobAttempt { id, attempt: 1 }, 0, "first")
            .await?;
        ensure!(retry, "the first attempt is retried");
        let jobs = claim(&store, "w", 1).await?;
        let attempt = jobs.first().context("the second attempt")?.attempt_ref();

        let dead = store
            .dead_letter_job(attempt, "it failed twice")
            .await?
            .context("dead-lettered")?;
        assert_eq!(dead.app_id, shop.id, "the job's app");
        assert_eq!(dead.script_id, failing.id, "the job's script");
        assert_eq!(dead.execution_id, id, "the failed execution");
        assert_eq!(dead.source, "http", "its source");
        assert_eq!(dead.payload, payload, "its payload");
        assert_eq!(dead.error, "it failed twice", "the last error");
        assert_eq!(dead.attempts, 2, "how many attempts it had");
        assert_eq!(dead.trigger_depth, 1, "its depth");
        assert_eq!(dead.resolution, None, "open");
        assert_eq!(dead.resolved_at, None, "open");
        assert_eq!(
            store.get_dead_letter(dead.id).await?,
            Some(dead.clone()),
            "read back by id"
        );
        assert_eq!(
            store.count_unresolved_dead_letters(shop.id).await?,
            1,
            "one open dead letter"
        );

        let handled = claim(&store, "w", 10).await?;
        assert_eq!(
            handled.len(),
            2,
            "the failed job is gone; one job per handler of the app, none of other apps"
        );
        let scripts: HashSet<ScriptId> = handled.iter().map(|job| job.script_id).collect();
        assert_eq!(
            scripts,
            HashSet::from([handler.id, auditor.id]),
            "the handlers"
        );
        for job in &handled {
            assert_eq!(
                dead_letter_event(job)?,
                &DeadLetterEvent {
                    id: dead.id,
                    script_id: failing.id,
                    error: "it failed twice".to_owned(),
                    attempts: 2,
                    payload: serde_json::to_value(&payload)?,
                },
                "the event names the dead letter and carries the failed payload"
            );
            assert_eq!(job.trigger_depth, 2, "one level deeper");
            assert_eq!(
                job.payload.handled_dead_letter(),
                Some(dead.id),
                "a handler's job names what it handles"
            );
        }
        Ok(())
    }
);

// The recursion stop: a failing dead-letter handler closes the dead letter instead of making a
// new one.
both_backends!(
    a_failed_dead_letter_handler_marks_it_handler_failed_and_makes_no_new_one,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let failing = endpoint(&store, shop.id, "failing").await?;
        let handler = endpoint(&store, shop.id, "handler").await?;
        dead_letter_trigger(&store, &handler).await?;
        let dead = dead_letter(&store, &failing, "boom").await?;
        let jobs = claim(&store, "w", 10).await?;
        let handler_job = jobs.first().context("the handler's job")?;
        assert!(
            store
                .fail_dead_letter_handler(handler_job.attempt_ref(), dead.id, "handler boom")
                .await?,
            "the handler's failure is written"
        );
        assert_eq!(
            depth(&store).await?,
            depth_of(0, 0),
            "the handler's job is gone"
        );
        let after = store
            .get_dead_letter(dead.id)
            .await?
            .context("the dead letter is kept")?;
        assert_eq!(
            after.resolution,
            Some(Resolution::HandlerFailed),
            "marked handler_failed"
        );
        assert!(after.resolved_at.is_some(), "and closed");
        assert_eq!(after.error, "boom", "its own error is kept");
        let all = store
            .list_dead_letters(
                shop.id,
                &DeadLetterFilter {
                    status: DeadLetterStatus::All,
                    script_id: None,
                },
                &PageRequest::default(),
            )
            .await?;
        assert_eq!(all.items.len(), 1, "no new dead letter");
        assert_eq!(
            store.count_unresolved_dead_letters(shop.id).await?,
            0,
            "nothing open"
        );
        let message = conflict(
            store.replay_dead_letter(dead.id, ExecutionId::new()).await,
            "replaying a handler_failed dead letter",
        )?;
        assert!(
            message.starts_with("the dead letter was already marked handler_failed at "),
            "the message says how and when: {message}"
        );
        Ok(())
    }
);

both_backends!(a_replay_enqueues_the_job_again_once, |store| async move {
    let shop = app(&store, "shop").await?;
    let failing = endpoint(&store, shop.id, "failing").await?;
    let dead = dead_letter(&store, &failing, "boom").await?;
    let execution_id = ExecutionId::new();
    let replayed = store.replay_dead_letter(dead.id, execution_id).await?;
    assert_eq!(
        replayed.resolution,
        Some(Resolution::Replayed),
        "marked replayed"
    );
    let at = replayed.resolved_at.context("closed with a time")?;
    assert_eq!(
        store.get_dead_letter(dead.id).await?,
        Some(replayed.clone()),
        "as stored"
    );

    let jobs = claim(&store, "w", 10).await?;
    assert_eq!(jobs.len(), 1, "one job enqueued");
    let job = &jobs[0];
    assert_eq!(job.id, execution_id, "under the given execution id");
    assert_eq!(job.script_id, failing.id, "for the same script");
    assert_eq!(job.app_id, shop.id, "in the same app");
    assert_eq!(job.payload, dead.payload, "with the same payload");
    assert_eq!(job.attempt, 1, "from its first attempt");
    assert_eq!(job.trigger_depth, dead.trigger_depth, "at the same depth");

    let message = conflict(
        store.replay_dead_letter(dead.id, ExecutionId::new()).await,
        "a second replay",
    )?;
    assert_eq!(
        message,
        format!("the dead letter was already replayed at {at}"),
        "the message says how and when"
    );
    let message = conflict(
        store.resolve_dead_letter(dead.id).await,
        "resolving a replayed one",
    )?;
    assert!(
        message.contains("already replayed"),
        "resolve says it too: {message}"
    );
    assert!(
        claim(&store, "w", 10).await?.is_empty(),
        "the refused replay enqueued nothing"
    );
    let result = store
        .replay_dead_letter(DeadLetterId::new(), ExecutionId::new())
        .await;
    assert!(
        matches!(result, Err(StoreError::NotFound("dead letter"))),
        "an unknown id: {result:?}"
    );
    Ok(())
});

both_backends!(a_dead_letter_is_resolved_once, |store| async move {
    let shop = app(&store, "shop").await?;
    let failing = endpoint(&store, shop.id, "failing").await?;
    let dead = dead_letter(&store, &failing, "boom").await?;
    let resolved = store.resolve_dead_letter(dead.id).await?;
    assert_eq!(
        resolved.resolution,
        Some(Resolution::Resolved),
        "marked resolved"
    );
    let at = resolved.resolved_at.context("closed with a time")?;
    assert_eq!(
        store.count_unresolved_dead_letters(shop.id).await?,
        0,
        "no longer open"
    );
    let message = conflict(store.resolve_dead_letter(dead.id).await, "a second resolve")?;
    assert_eq!(
        message,
        format!("the dead letter was already resolved at {at}"),
        "the message says how and when"
    );
    conflict(
        store.replay_dead_letter(dead.id, ExecutionId::new()).await,
        "replaying a resolved one",
    )?;
    assert_eq!(depth(&store).await?, depth_of(0, 0), "nothing enqueued");
    let result = store.resolve_dead_letter(DeadLetterId::new()).await;
    assert!(
        matches!(result, Err(StoreError::NotFound("dead letter"))),
        "an unknown id: {result:?}"
    );
    Ok(())
});

both_backends!(
    dead_letters_are_listed_newest_first_by_status_and_script,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let first_script = endpoint(&store, shop.id, "one").await?;
        let second_script = endpoint(&store, shop.id, "two").await?;
        let a = dead_letter(&store, &first_script, "a").await?;
        let b = dead_letter(&store, &second_script, "b").await?;
        let c = dead_letter(&store, &first_script, "c").await?;
        store.resolve_dead_letter(b.id).await?;
        let ids = |items: &[DeadLetter]| items.iter().map(|d| d.id).collect::<Vec<_>>();
        let filtered = |status, script_id| DeadLetterFilter { status, script_id };

        let open = store
            .list_dead_letters(
                shop.id,
                &DeadLetterFilter::default(),
                &PageRequest::default(),
            )
            .await?;
        assert_eq!(
            ids(&open.items),
            vec![c.id, a.id],
            "unresolved by default, newest first"
        );
        let resolved = store
            .list_dead_letters(
                shop.id,
                &filtered(DeadLetterStatus::Resolved, None),
                &PageRequest::default(),
            )
            .await?;
        assert_eq!(ids(&resolved.items), vec![b.id], "only the resolved one");
        let of_script = store
            .list_dead_letters(
                shop.id,
                &filtered(DeadLetterStatus::All, Some(first_script.id)),
                &PageRequest::default(),
            )
            .await?;
        assert_eq!(ids(&of_script.items), vec![c.id, a.id], "only the script's");

        let first = store
            .list_dead_letters(
                shop.id,
                &filtered(DeadLetterStatus::All, None),
                &page(2, None),
            )
            .await?;
        let second = store
            .list_dead_letters(
                shop.id,
                &filtered(DeadLetterStatus::All, None),
                &page(2, first.next_cursor.clone()),
            )
            .await?;
        assert_eq!(ids(&first.items), vec![c.id, b.id], "the newest two");
        assert_eq!(ids(&second.items), vec![a.id], "then the oldest");
        assert_eq!(second.next_cursor, None, "and no more");

        let blog = app(&store, "blog").await?;
        assert!(
            store
                .list_dead_letters(
                    blog.id,
                    &filtered(DeadLetterStatus::All, None),
                    &PageRequest::default()
                )
                .await?
                .items
                .is_empty(),
            "another app lists none"
        );
        let bad = store
            .list_dead_letters(
                shop.id,
                &DeadLetterFilter::default(),
                &page(2, Some("nope".into())),
            )
            .await;
        assert!(
            matches!(bad, Err(StoreError::InvalidInput(_))),
            "a forged cursor is refused: {bad:?}"
        );
        Ok(())
    }
);

// Retention: only rows older than it go, a bounded number at a time.
both_backends!(
    sweepers_delete_only_rows_older_than_the_retention,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let old_dead = dead_letter(&store, &script, "old").await?;
        let old_sync = serve(&store, &script, "n", LEASE_MS).await?;
        store
            .abandon_sync(old_sync, shop.id, script.id, "gone")
            .await?;
        let older = dead_letter(&store, &script, "older still").await?;

        tokio::time::sleep(Duration::from_millis(400)).await;
        let new_dead = dead_letter(&store, &script, "new").await?;
        let new_sync = serve(&store, &script, "n", LEASE_MS).await?;
        store
            .abandon_sync(new_sync, shop.id, script.id, "gone")
            .await?;

        assert_eq!(
            store.sweep_dead_letters(200, 1).await?,
            1,
            "a sweep deletes at most its limit"
        );
        assert_eq!(
            store.sweep_dead_letters(200, 100).await?,
            1,
            "the other old dead letter goes next"
        );
        assert_eq!(
            store.get_dead_letter(old_dead.id).await?,
            None,
            "the old dead letter is gone"
        );
        assert_eq!(
            store.get_dead_letter(older.id).await?,
            None,
            "both old ones"
        );
        assert!(
            store.get_dead_letter(new_dead.id).await?.is_some(),
            "the new one stays"
        );
        assert_eq!(
            store.sweep_abandoned_executions(200, 100).await?,
            1,
            "one old abandoned execution"
        );
        let left = store
            .list_abandoned_executions(shop.id, &PageRequest::default())
            .await?;
        assert_eq!(
            left.items
                .iter()
                .map(|r| r.execution_id)
                .collect::<Vec<_>>(),
            vec![new_sync],
            "the new record stays"
        );
        assert_eq!(
            store.sweep_dead_letters(200, 0).await?,
            0,
            "a limit of 0 deletes nothing"
        );
        Ok(())
    }
);
