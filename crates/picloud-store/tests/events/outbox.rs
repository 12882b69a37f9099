//! The outbox.

use super::*;

// #19: a sync request is recorded apart from the outbox, held by its node, and its record is
// deleted once it is answered. No claimer ever sees it.
both_backends!(
    a_sync_request_is_recorded_apart_from_the_outbox_until_it_is_answered,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let id = serve(&store, &script, "node-a", LEASE_MS).await?;
        assert_eq!(depth(&store).await?, depth_of(0, 0), "no outbox row");
        assert!(
            claim(&store, "node-b", 10).await?.is_empty(),
            "nothing to claim"
        );
        assert!(
            !holds(&store, "node-b", id).await?,
            "only its node holds it"
        );
        assert!(holds(&store, "node-a", id).await?, "its node holds it");
        answer(&store, vec![id]).await?;
        assert!(
            !holds(&store, "node-a", id).await?,
            "answered: its record is gone"
        );
        assert_eq!(
            store.sweep_sync_requests(0).await? + store.sweep_sync_requests(0).await?,
            0,
            "nor swept"
        );
        assert!(
            abandoned(&store, shop.id).await?.is_empty(),
            "nothing recorded"
        );
        Ok(())
    }
);

// #19: a node that dies leaves its requests' records behind; once their leases lapse, two sweeps
// at most record them abandoned, and never one still held — however many sweeps pass over it.
both_backends!(
    a_sync_request_whose_lease_lapsed_is_recorded_abandoned_by_a_sweep,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let lapsing = serve(&store, &script, "dead-node", 5).await?;
        let held = serve(&store, &script, "live-node", LEASE_MS).await?;
        tokio::time::sleep(Duration::from_millis(50)).await;
        let swept = store.sweep_sync_requests(0).await? + store.sweep_sync_requests(0).await?;
        assert_eq!(swept, 1, "the lapsed request, within two sweeps");
        let listed = store
            .list_abandoned_executions(shop.id, &PageRequest::default())
            .await?;
        assert_eq!(listed.items.len(), 1, "one record");
        assert_eq!(
            listed.items[0].execution_id, lapsing,
            "of the lapsed request"
        );
        assert!(
            listed.items[0].reason.contains("node stopped"),
            "saying why: {}",
            listed.items[0].reason
        );
        for _ in 0..3 {
            assert_eq!(
                store.sweep_sync_requests(0).await?,
                0,
                "nothing else lapsed"
            );
            assert!(
                holds(&store, "live-node", held).await?,
                "the held request keeps its record through every sweep"
            );
        }
        assert!(
            store
                .abandon_sync(held, shop.id, script.id, "the caller had gone")
                .await?,
            "and can still be abandoned"
        );
        assert_eq!(abandoned(&store, shop.id).await?.len(), 2);
        Ok(())
    }
);

// #19: sweeps that run while requests are being recorded and answered (on PostgreSQL: rotations
// that TRUNCATE a partition) lose none and record none abandoned.
both_backends!(sweeps_beside_busy_requests_lose_none, |store| async move {
    let shop = app(&store, "shop").await?;
    let script = endpoint(&store, shop.id, "api").await?;
    let sweeper = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..40 {
                store.sweep_sync_requests(0).await?;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            anyhow::Ok(())
        })
    };
    let mut held = Vec::new();
    for round in 0..40 {
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(serve(&store, &script, "node", LEASE_MS).await?);
        }
        // Every other round's requests are answered, the rest stay held.
        if round % 2 == 0 {
            answer(&store, ids).await?;
        } else {
            held.extend(ids);
        }
    }
    sweeper.await??;
    assert_eq!(store.sweep_sync_requests(0).await?, 0);
    assert_eq!(
        store.extend_leases("node", &[], &held, LEASE_MS).await?,
        held.len() as u64,
        "every held request keeps its record"
    );
    assert!(
        abandoned(&store, shop.id).await?.is_empty(),
        "none recorded abandoned"
    );
    Ok(())
});

both_backends!(
    a_batch_skips_jobs_of_apps_that_are_gone,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let doomed = app(&store, "doomed").await?;
        let live = endpoint(&store, shop.id, "api").await?;
        let dead = endpoint(&store, doomed.id, "api").await?;
        let orphan = http_job(&dead, "/x");
        store.delete_app(doomed.id).await?;
        enqueue(&store, vec![http_job(&live, "/a"), orphan]).await?;
        assert_eq!(
            depth(&store).await?,
            depth_of(1, 0),
            "the live app's job is in, the orphan skipped"
        );
        Ok(())
    }
);

// A group commit may hold more rows than one statement takes.
both_backends!(
    large_batches_are_written_and_finished_whole,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let jobs: Vec<NewJob> = (0..1_100)
            .map(|i| http_job(&script, &format!("/{i}")))
            .collect();
        enqueue(&store, jobs).await?;
        assert_eq!(depth(&store).await?, depth_of(1_100, 0), "every job is in");
        let claimed = claim(&store, "worker", 2_000).await?;
        assert_eq!(claimed.len(), 1_100, "every job is claimed");
        finish(
            &store,
            claimed.iter().map(ClaimedJob::attempt_ref).collect(),
        )
        .await?;
        assert_eq!(
            depth(&store).await?,
            depth_of(0, 0),
            "every job is finished"
        );
        Ok(())
    }
);

both_backends!(
    jobs_are_claimed_in_the_order_they_fall_due,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let (late, soon, now) = (
            http_job(&script, "/late"),
            http_job(&script, "/soon"),
            http_job(&script, "/now"),
        );
        let ids = [late.id, soon.id, now.id];
        enqueue(&store, vec![late, soon, now]).await?;
        let claimed = claim(&store, "worker", 10).await?;
        assert_eq!(claimed.len(), 3, "all three are due");
        // Due again in 400 ms, 200 ms and now.
        let delay_of = |id| match id {
            id if id == ids[0] => 400,
            id if id == ids[1] => 200,
            _ => 0,
        };
        for job in &claimed {
            ensure!(
                store
                    .retry_job(job.attempt_ref(), delay_of(job.id), "try later")
                    .await?,
                "the retry of {} is written",
                job.id
            );
        }
        tokio::time::sleep(Duration::from_millis(450)).await;
        let mut order = Vec::new();
        for _ in 0..3 {
            let jobs = claim(&store, "worker", 1).await?;
            ensure!(jobs.len() == 1, "one job per claim of one, got {jobs:?}");
            order.push(jobs[0].id);
        }
        assert_eq!(
            order,
            vec![ids[2], ids[1], ids[0]],
            "oldest due first: now, soon, late"
        );
        Ok(())
    }
);

/// The jobs of `script`'s app among `jobs`.
fn of_app(jobs: &[ClaimedJob], script: &Script) -> Vec<ExecutionId> {
    jobs.iter()
        .filter(|job| job.app_id == script.app_id)
        .map(|job| job.id)
        .collect()
}

// Issue #13: 87,380 jobs of one app delayed another app's job by 36.6 s, because a claim took the
// oldest due jobs of the whole outbox. The apps take turns instead.
both_backends!(
    a_claim_takes_each_waiting_app_in_turn_not_the_oldest_backlog_first,
    |store| async move {
        let busy = endpoint(&store, app(&store, "busy").await?.id, "api").await?;
        let quiet = endpoint(&store, app(&store, "quiet").await?.id, "api").await?;
        let backlog: Vec<NewJob> = (0..200)
            .map(|i| http_job(&busy, &format!("/{i}")))
            .collect();
        let oldest = backlog[0].id;
        enqueue(&store, backlog).await?;
        let late = http_job(&quiet, "/late");
        let late_id = late.id;
        enqueue(&store, vec![late]).await?;

        let claimed = store.claim_jobs("worker", 3, 8, &[], LEASE_MS).await?;
        assert_eq!(claimed.len(), 3, "three are due: {claimed:?}");
        assert_eq!(
            of_app(&claimed, &quiet),
            vec![late_id],
            "the quiet app's job, queued after 200 others, is in the first claim"
        );
        assert_eq!(
            of_app(&claimed, &busy)[0],
            oldest,
            "the busy app's own jobs still go in the order they fell due"
        );
        Ok(())
    }
);

// The turns count what the claimer runs of an app already: an app with jobs running waits for
// the apps that have none, even when its jobs fell due first.
both_backends!(
    an_app_with_jobs_running_yields_its_turn_to_apps_without,
    |store| async move {
        let busy = endpoint(&store, app(&store, "busy").await?.id, "api").await?;
        let quiet = endpoint(&store, app(&store, "quiet").await?.id, "api").await?;
        enqueue(
            &store,
            (0..10).map(|i| http_job(&busy, &format!("/{i}"))).collect(),
        )
        .await?;
        let quiet_jobs = vec![http_job(&quiet, "/a"), http_job(&quiet, "/b")];
        let quiet_ids: HashSet<ExecutionId> = quiet_jobs.iter().map(|job| job.id).collect();
        enqueue(&store, quiet_jobs).await?;

        let running = [(busy.app_id, 3)];
        let claimed = store.claim_jobs("worker", 2, 8, &running, LEASE_MS).await?;
        assert_eq!(
            claimed.iter().map(|job| job.id).collect::<HashSet<_>>(),
            quiet_ids,
            "with three of its jobs running, the busy app's next waits for the quiet app's two"
        );
        let next = store.claim_jobs("worker", 1, 8, &running, LEASE_MS).await?;
        assert_eq!(
            of_app(&next, &busy).len(),
            1,
            "with the quiet app served, the busy app's turn comes: {next:?}"
        );
        Ok(())
    }
);

// `per_app` bounds what the claimer runs of one app at once, its running jobs included: jobs
// beyond it would only wait at the app's share of the gate, holding claims.
both_backends!(
    a_claimer_runs_at_most_per_app_jobs_of_one_app_at_once,
    |store| async move {
        let busy = endpoint(&store, app(&store, "busy").await?.id, "api").await?;
        let quiet = endpoint(&store, app(&store, "quiet").await?.id, "api").await?;
        let jobs: Vec<NewJob> = (0..10).map(|i| http_job(&busy, &format!("/{i}"))).collect();
        let ids: Vec<ExecutionId> = jobs.iter().map(|job| job.id).collect();
        enqueue(&store, jobs).await?;
        let first = store.claim_jobs("worker", 10, 3, &[], LEASE_MS).await?;
        assert_eq!(
            first.iter().map(|job| job.id).collect::<Vec<_>>(),
            ids[..3].to_vec(),
            "three, the per-app bound, oldest due first"
        );
        let quiet_job = http_job(&quiet, "/q");
        let quiet_id = quiet_job.id;
        enqueue(&store, vec![quiet_job]).await?;
        let full = store
            .claim_jobs("worker", 10, 3, &[(busy.app_id, 3)], LEASE_MS)
            .await?;
        assert_eq!(
            full.iter().map(|job| job.id).collect::<Vec<_>>(),
            vec![quiet_id],
            "with its three running, the busy app gets none; the quiet app its job"
        );
        let after = store
            .claim_jobs("worker", 10, 3, &[(busy.app_id, 2)], LEASE_MS)
            .await?;
        assert_eq!(
            after.iter().map(|job| job.id).collect::<Vec<_>>(),
            vec![ids[3]],
            "one of the three finished: one more is taken"
        );
        assert!(
            store
                .claim_jobs("worker", 10, 0, &[], LEASE_MS)
                .await?
                .is_empty(),
            "a bound of none takes none"
        );
        Ok(())
    }
);

both_backends!(
    a_retried_job_is_not_claimable_before_its_delay,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        enqueue(&store, vec![http_job(&script, "/x")]).await?;
        let first = claim(&store, "worker", 1).await?;
        let job = first.first().context("claimed")?;
        assert!(
            store.retry_job(job.attempt_ref(), 400, "boom").await?,
            "the retry is written"
        );
        assert_eq!(depth(&store).await?, depth_of(1, 0), "pending again");
        assert!(
            claim(&store, "worker", 1).await?.is_empty(),
            "not due before its delay"
        );
        tokio::time::sleep(Duration::from_millis(450)).await;
        let again = claim(&store, "worker", 1).await?;
        assert_eq!(again.len(), 1, "due after its delay");
        assert_eq!(again[0].id, job.id, "the same job");
        assert_eq!(again[0].attempt, 2, "its second attempt");
        Ok(())
    }
);

// A worker that paused past its lease finds its job taken over, and its late writes refused.
both_backends!(
    an_expired_lease_is_claimed_again_and_the_old_attempt_is_fenced,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        enqueue(&store, vec![http_job(&script, "/x")]).await?;
        let stale = store
            .claim_jobs("paused", 1, ANY_NUMBER_PER_APP, &[], 5)
            .await?;
        let stale = stale.first().context("claimed with a short lease")?.clone();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let taken = claim(&store, "fresh", 10).await?;
        assert_eq!(taken.len(), 1, "the expired lease is claimed again");
        assert_eq!(taken[0].id, stale.id, "the same job");
        assert_eq!(taken[0].attempt, 2, "as the next attempt");

        let old = stale.attempt_ref();
        assert_eq!(
            store.extend_leases("paused", &[old], &[], LEASE_MS).await?,
            0,
            "the old owner cannot extend it"
        );
        assert!(
            !store.retry_job(old, 0, "late").await?,
            "a stale retry is fenced"
        );
        assert!(
            store.dead_letter_job(old, "late").await?.is_none(),
            "a stale dead-lettering is fenced"
        );
        assert!(
            !store
                .fail_dead_letter_handler(old, DeadLetterId::new(), "late")
                .await?,
            "a stale handler failure is fenced"
        );
        finish(&store, vec![old]).await?;
        assert_eq!(
            depth(&store).await?,
            depth_of(0, 1),
            "a stale finish deletes nothing: the new attempt runs on"
        );
        assert!(
            claim(&store, "another", 10).await?.is_empty(),
            "and its lease holds"
        );
        finish(&store, vec![taken[0].attempt_ref()]).await?;
        assert_eq!(
            depth(&store).await?,
            depth_of(0, 0),
            "the current attempt finishes"
        );
        Ok(())
    }
);

both_backends!(
    a_live_owner_keeps_its_lease_by_extending_it,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        enqueue(&store, vec![http_job(&script, "/x")]).await?;
        let jobs = store
            .claim_jobs("owner", 1, ANY_NUMBER_PER_APP, &[], 100)
            .await?;
        let attempt = jobs.first().context("claimed")?.attempt_ref();
        assert_eq!(
            store
                .extend_leases("intruder", &[attempt], &[], LEASE_MS)
                .await?,
            0,
            "only the owner extends"
        );
        assert_eq!(
            store
                .extend_leases("owner", &[attempt], &[], LEASE_MS)
                .await?,
            1,
            "the owner extends its lease"
        );
        assert_eq!(
            store.extend_leases("owner", &[], &[], LEASE_MS).await?,
            0,
            "extending nothing is a no-op"
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(
            claim(&store, "other", 10).await?.is_empty(),
            "past the first lease the extended one still holds"
        );
        Ok(())
    }
);

// The FOR UPDATE SKIP LOCKED proof on PostgreSQL (and the single writer's on SQLite): claimers
// running side by side never get the same row.
both_backends!(
    concurrent_claimers_never_get_the_same_job,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let jobs: Vec<NewJob> = (0..200)
            .map(|i| http_job(&script, &format!("/{i}")))
            .collect();
        let expected: HashSet<ExecutionId> = jobs.iter().map(|job| job.id).collect();
        enqueue(&store, jobs).await?;
        let claimers: Vec<_> = (0..4)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    let owner = format!("claimer-{n}");
                    let mut mine = Vec::new();
                    loop {
                        let batch = store
                            .claim_jobs(&owner, 7, ANY_NUMBER_PER_APP, &[], LEASE_MS)
                            .await?;
                        if batch.is_empty() {
                            return anyhow::Ok(mine);
                        }
                        mine.extend(batch.into_iter().map(|job| job.id));
                    }
                })
            })
            .collect();
        let mut seen = HashSet::new();
        let mut total = 0;
        for claimer in claimers {
            for id in claimer.await.context("the claimer ran")?? {
                total += 1;
                ensure!(seen.insert(id), "the job {id} was claimed twice");
            }
        }
        assert_eq!(total, 200, "every job was claimed once");
        assert_eq!(seen, expected, "and exactly the jobs enqueued");
        Ok(())
    }
);

both_backends!(
    released_jobs_are_pending_again_with_their_attempt,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        enqueue(
            &store,
            (0..3)
                .map(|i| http_job(&script, &format!("/{i}")))
                .collect(),
        )
        .await?;
        let mine = claim(&store, "stopping", 2).await?;
        let theirs = claim(&store, "staying", 1).await?;
        assert_eq!((mine.len(), theirs.len()), (2, 1), "two and one claimed");
        assert_eq!(
            store.release_jobs("stopping").await?,
            2,
            "the stopping node's jobs are released"
        );
        assert_eq!(
            depth(&store).await?,
            depth_of(2, 1),
            "two pending, one running"
        );
        let reclaimed = claim(&store, "next", 10).await?;
        let ids: HashSet<_> = reclaimed.iter().map(|job| job.id).collect();
        assert_eq!(
            ids,
            mine.iter().map(|job| job.id).collect(),
            "the released jobs, and not the other node's"
        );
        assert!(
            reclaimed.iter().all(|job| job.attempt == 2),
            "a release keeps the attempt; the next claim counts on"
        );
        assert_eq!(
            store.release_jobs("nobody").await?,
            0,
            "an owner without jobs releases nothing"
        );
        Ok(())
    }
);

both_backends!(
    an_abandoned_sync_request_leaves_a_record_instead,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let id = serve(&store, &script, "node", LEASE_MS).await?;
        assert!(
            store
                .abandon_sync(id, shop.id, script.id, "the caller had gone")
                .await?,
            "abandoned"
        );
        assert!(!holds(&store, "node", id).await?, "its record is gone");
        assert!(
            !store.abandon_sync(id, shop.id, script.id, "again").await?,
            "a second abandon records nothing"
        );
        // A request abandoned before its record was written (it is written only once its run
        // has gone on for a moment) is recorded all the same.
        let unwritten = ExecutionId::new();
        assert!(
            store
                .abandon_sync(unwritten, shop.id, script.id, "the caller had gone")
                .await?,
            "abandoned without a record"
        );
        let listed = store
            .list_abandoned_executions(shop.id, &PageRequest::default())
            .await?;
        assert_eq!(listed.items.len(), 2, "two records");
        assert_eq!(listed.items[0].execution_id, unwritten, "newest first");
        let record = &listed.items[1];
        assert_eq!(record.execution_id, id, "of the execution");
        assert_eq!(record.script_id, script.id, "its script");
        assert_eq!(record.app_id, shop.id, "its app");
        assert_eq!(record.reason, "the caller had gone", "with the reason");
        let blog = app(&store, "blog").await?;
        assert!(
            abandoned(&store, blog.id).await?.is_empty(),
            "another app sees none"
        );
        Ok(())
    }
);

both_backends!(
    abandoned_executions_are_listed_newest_first,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(serve(&store, &script, "w", LEASE_MS).await?);
        }
        for id in &ids {
            store.abandon_sync(*id, shop.id, script.id, "gone").await?;
        }
        let first = store
            .list_abandoned_executions(shop.id, &page(2, None))
            .await?;
        let second = store
            .list_abandoned_executions(shop.id, &page(2, first.next_cursor.clone()))
            .await?;
        let listed: Vec<ExecutionId> = first
            .items
            .iter()
            .chain(&second.items)
            .map(|record| record.execution_id)
            .collect();
        ids.reverse();
        assert_eq!(listed, ids, "newest first, across pages");
        assert_eq!(second.next_cursor, None, "two pages");
        Ok(())
    }
);

/// The next notice within `within_ms`, or `None`.
async fn next(
    notices: &mut picloud_store::Notices,
    within_ms: u64,
) -> picloud_store::StoreResult<Option<Notice>> {
    tokio::time::timeout(Duration::from_millis(within_ms), notices.next())
        .await
        .ok()
        .transpose()
}

// #19: what other nodes hear. On PostgreSQL an async job's commit sends `Jobs` (a sync request
// nothing), and a change to an app, a script or a route sends `Changed` with the app; SQLite, one
// process, has no notices.
both_backends!(
    committed_jobs_and_changes_are_told_to_every_listener,
    |store| async move {
        let Some(mut notices) = store.notices().await? else {
            assert_eq!(store.backend(), Backend::Sqlite, "PostgreSQL has notices");
            return Ok(());
        };
        let shop = app(&store, "shop").await?;
        assert_eq!(
            next(&mut notices, 5_000).await?,
            Some(Notice::Changed(shop.id)),
            "an app made"
        );
        let script = endpoint(&store, shop.id, "api").await?;
        assert_eq!(
            next(&mut notices, 5_000).await?,
            Some(Notice::Changed(shop.id))
        );

        serve(&store, &script, "node", LEASE_MS).await?;
        assert_eq!(
            next(&mut notices, 300).await?,
            None,
            "a sync request wakes nobody"
        );
        enqueue(
            &store,
            vec![http_job(&script, "/a"), http_job(&script, "/b")],
        )
        .await?;
        assert_eq!(next(&mut notices, 5_000).await?, Some(Notice::Jobs));
        assert_eq!(
            next(&mut notices, 300).await?,
            None,
            "one notice for the commit, however many jobs"
        );
        assert!(store.delete_app(shop.id).await?);
        assert_eq!(
            next(&mut notices, 5_000).await?,
            Some(Notice::Changed(shop.id)),
            "an app deleted (and its scripts with it: the same notice, once)"
        );
        Ok(())
    }
);
