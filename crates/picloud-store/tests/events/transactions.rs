//! Runs' commits (#15): a run's reads are checked, its writes, the jobs its triggers fire, its
//! dead-letter actions and its job's completion commit together, or nothing does.

use picloud_core::tx::{DeadLetterAction, Effects, KvRangeRead, KvRead, KvWrite, Seen, Version};

use super::*;

const COMMITTED: RunVerdict = RunVerdict::Committed { trigger_jobs: 0 };

fn read(name: &str, k: &str, seen: Seen) -> KvRead {
    KvRead {
        collection: collection(name),
        key: key(k),
        seen,
    }
}

fn write(name: &str, k: &str, value: Option<serde_json::Value>) -> KvWrite {
    KvWrite {
        collection: collection(name),
        key: key(k),
        value,
    }
}

fn run(app_id: AppId, reads: Vec<KvRead>, writes: Vec<KvWrite>) -> RunCommit {
    RunCommit {
        origin: origin(app_id, 0),
        effects: Effects {
            reads,
            writes,
            ..Effects::default()
        },
        finishes: None,
    }
}

/// What the key holds: its value and version.
async fn entry(
    store: &Arc<dyn Store>,
    app_id: AppId,
    name: &str,
    k: &str,
) -> anyhow::Result<Option<(serde_json::Value, Version)>> {
    Ok(store.kv_read(app_id, &collection(name), &key(k)).await?)
}

async fn seen(store: &Arc<dyn Store>, app_id: AppId, name: &str, k: &str) -> anyhow::Result<Seen> {
    Ok(entry(store, app_id, name, k)
        .await?
        .map_or(Seen::Absent, |(_, version)| Seen::At(version)))
}

/// Commits `run`, which must come back `expected` and leave the key `(collection, key)` of
/// `store`'s app unwritten: a run that is not committed writes nothing.
async fn not_committed(
    store: &Arc<dyn Store>,
    run: RunCommit,
    expected: RunVerdict,
    (collection, key): (&str, &str),
) -> anyhow::Result<()> {
    let app_id = run.origin.app_id;
    let verdict = store.commit_run(run).await?;
    ensure!(verdict == expected, "{verdict:?}, not {expected:?}");
    ensure!(
        entry(store, app_id, collection, key).await?.is_none(),
        "a run that is not committed ({verdict:?}) writes nothing"
    );
    Ok(())
}

both_backends!(
    a_run_commits_its_writes_with_the_jobs_their_triggers_fire,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-order").await?;
        kv_trigger(&store, &handler, "orders", None, &[KvOp::Set]).await?;
        let verdict = store
            .commit_run(run(
                shop.id,
                vec![read("orders", "o1", Seen::Absent)],
                vec![
                    write("orders", "o1", Some(json!({"total": 3}))),
                    write("totals", "all", Some(json!(3))),
                ],
            ))
            .await?;
        ensure!(
            verdict == RunVerdict::Committed { trigger_jobs: 1 },
            "{verdict:?}"
        );
        let (_, version) = entry(&store, shop.id, "orders", "o1")
            .await?
            .context("written")?;
        let (_, other) = entry(&store, shop.id, "totals", "all")
            .await?
            .context("written")?;
        ensure!(
            version == other,
            "one commit, one version for all its writes"
        );
        let jobs = claim_all(&store).await?;
        ensure!(jobs.len() == 1, "its trigger job: {jobs:?}");
        ensure!(
            kv_event(&jobs[0])?.key.as_str() == "o1",
            "for the key written"
        );
        ensure!(
            store
                .app_usage(shop.id)
                .await?
                .context("usage")?
                .queued_jobs
                == 1,
            "counted against the app's queued jobs"
        );
        Ok(())
    }
);

both_backends!(
    a_run_whose_reads_changed_before_its_commit_conflicts_and_writes_nothing,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-any").await?;
        kv_trigger(&store, &handler, "c", None, &KvOp::ALL).await?;
        store
            .kv_set(origin(shop.id, 0), &collection("c"), &key("n"), &json!(1))
            .await?;
        let before = seen(&store, shop.id, "c", "n").await?;
        let jobs_before = claim_all(&store).await?.len();
        // Another commit changes the key between the run's read and its commit.
        store
            .kv_set(origin(shop.id, 0), &collection("c"), &key("n"), &json!(2))
            .await?;
        let stale = run(
            shop.id,
            vec![read("c", "n", before)],
            vec![
                write("c", "n", Some(json!(2))),
                write("c", "other", Some(json!("x"))),
            ],
        );
        not_committed(&store, stale, RunVerdict::Conflict, ("c", "other")).await?;
        let fired = claim_all(&store).await?.len();
        ensure!(
            fired == 1 && jobs_before == 1,
            "only the other commit's trigger job exists: the run's trigger rows were not \
             written ({jobs_before} before, {fired} after)"
        );
        // Read as absent, then created by another: a conflict too.
        let verdict = store
            .commit_run(run(
                shop.id,
                vec![read("c", "fresh", Seen::Absent)],
                vec![write("c", "mine", Some(json!(1)))],
            ))
            .await?;
        ensure!(verdict == COMMITTED || matches!(verdict, RunVerdict::Committed { .. }));
        store
            .kv_set(
                origin(shop.id, 0),
                &collection("c"),
                &key("fresh"),
                &json!(1),
            )
            .await?;
        let verdict = store
            .commit_run(run(
                shop.id,
                vec![read("c", "fresh", Seen::Absent)],
                vec![write("c", "mine", Some(json!(2)))],
            ))
            .await?;
        ensure!(
            verdict == RunVerdict::Conflict,
            "a key read absent and created since: {verdict:?}"
        );
        ensure!(
            entry(&store, shop.id, "c", "mine").await?.map(|(v, _)| v) == Some(json!(1)),
            "the conflicting run wrote nothing"
        );
        Ok(())
    }
);

both_backends!(
    a_page_read_holds_until_a_key_enters_or_leaves_its_range,
    |store| async move {
        let shop = app(&store, "shop").await?;
        for k in ["user:1", "user:3"] {
            store
                .kv_set(origin(shop.id, 0), &collection("c"), &key(k), &json!(1))
                .await?;
        }
        let request = list(Some("user:"), 10, None);
        let range =
            |page: &picloud_store::Page<(String, serde_json::Value, Version)>| KvRangeRead {
                collection: collection("c"),
                request: request.clone(),
                entries: page
                    .items
                    .iter()
                    .map(|(k, _, version)| (k.clone(), *version))
                    .collect(),
                more: page.next_cursor.is_some(),
            };
        let uniqueness_check = |range: KvRangeRead, new_key: &str| RunCommit {
            effects: Effects {
                ranges: vec![range],
                writes: vec![write("c", new_key, Some(json!(1)))],
                ..Effects::default()
            },
            ..run(shop.id, Vec::new(), Vec::new())
        };
        let page = store
            .kv_page(shop.id, &collection("c"), &request, usize::MAX)
            .await?;
        // A key outside the range changes nothing the run read.
        store
            .kv_set(
                origin(shop.id, 0),
                &collection("c"),
                &key("team:1"),
                &json!(1),
            )
            .await?;
        let verdict = store
            .commit_run(uniqueness_check(range(&page), "user:4"))
            .await?;
        ensure!(
            matches!(verdict, RunVerdict::Committed { .. }),
            "{verdict:?}"
        );
        // A key inserted into the range (the run's own commit above) is a phantom to a run
        // that listed it before.
        let phantom = uniqueness_check(range(&page), "user:5");
        not_committed(&store, phantom, RunVerdict::Conflict, ("c", "user:5")).await?;
        Ok(())
    }
);

both_backends!(
    a_run_of_a_job_finishes_it_and_a_moved_on_attempt_commits_nothing,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let work = endpoint(&store, shop.id, "work").await?;
        enqueue(&store, vec![http_job(&work, "/a")]).await?;
        let job = claim(&store, "w", 1).await?.pop().context("claimed")?;
        let stale = JobAttempt {
            attempt: job.attempt + 1,
            ..job.attempt_ref()
        };
        let fenced = RunCommit {
            finishes: Some(stale),
            ..run(shop.id, Vec::new(), vec![write("c", "k", Some(json!(1)))])
        };
        not_committed(&store, fenced, RunVerdict::Fenced, ("c", "k")).await?;
        ensure!(
            depth(&store).await? == depth_of(0, 1),
            "the job is still running"
        );
        let done = store
            .commit_run(RunCommit {
                finishes: Some(job.attempt_ref()),
                ..run(shop.id, Vec::new(), vec![write("c", "k", Some(json!(1)))])
            })
            .await?;
        ensure!(done == COMMITTED, "{done:?}");
        ensure!(
            depth(&store).await? == depth_of(0, 0),
            "its row is gone with the commit"
        );
        ensure!(
            store
                .app_usage(shop.id)
                .await?
                .context("usage")?
                .queued_jobs
                == 0,
            "and the app's queued jobs count it out"
        );
        let again = store
            .commit_run(RunCommit {
                finishes: Some(job.attempt_ref()),
                ..run(shop.id, Vec::new(), vec![write("c", "k", Some(json!(2)))])
            })
            .await?;
        ensure!(
            again == RunVerdict::Fenced,
            "a second commit of the same attempt is fenced: effects are applied once ({again:?})"
        );
        Ok(())
    }
);

both_backends!(
    quotas: AppQuotas {
        stored_bytes: 4_096,
        queued_jobs: 100,
    },
    a_refused_run_writes_nothing_and_says_which_limit,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-set").await?;
        kv_trigger(&store, &handler, "watched", None, &[KvOp::Set]).await?;
        let none_left = RunCommit {
            origin: WriteOrigin {
                trigger_jobs_left: 0,
                ..origin(shop.id, 0)
            },
            ..run(
                shop.id,
                Vec::new(),
                vec![
                    write("plain", "k", Some(json!(1))),
                    write("watched", "k", Some(json!(1))),
                ],
            )
        };
        let verdict = store.commit_run(none_left).await?;
        ensure!(
            matches!(
                verdict,
                RunVerdict::Refused(OverLimit::TriggerJobs { firing: 1, left: 0 })
            ),
            "{verdict:?}"
        );
        let verdict = store
            .commit_run(run(
                shop.id,
                Vec::new(),
                vec![
                    write("plain", "k", Some(json!(1))),
                    write("big", "k", Some(json!("x".repeat(5_000)))),
                ],
            ))
            .await?;
        ensure!(
            matches!(verdict, RunVerdict::Refused(OverLimit::StoredBytes { .. })),
            "{verdict:?}"
        );
        ensure!(
            entry(&store, shop.id, "plain", "k").await?.is_none()
                && claim_all(&store).await?.is_empty(),
            "no write and no job of the refused runs"
        );
        ensure!(
            store.app_usage(shop.id).await?.context("usage")? == AppUsage::default(),
            "nothing counted"
        );
        let gone = store
            .commit_run(run(AppId::new(), Vec::new(), vec![write("c", "k", None)]))
            .await?;
        ensure!(gone == RunVerdict::AppGone, "{gone:?}");
        Ok(())
    }
);

both_backends!(
    a_runs_dead_letter_actions_commit_with_its_writes_or_not_at_all,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let failing = endpoint(&store, shop.id, "failing").await?;
        let first = dead_letter(&store, &failing, "boom").await?;
        let second = dead_letter(&store, &failing, "boom").await?;
        let execution_id = ExecutionId::new();
        let verdict = store
            .commit_run(RunCommit {
                effects: Effects {
                    writes: vec![write("log", "replayed", Some(json!(1)))],
                    dead_letters: vec![
                        DeadLetterAction::Replay {
                            id: first.id,
                            execution_id,
                        },
                        DeadLetterAction::Resolve { id: second.id },
                    ],
                    ..Effects::default()
                },
                ..run(shop.id, Vec::new(), Vec::new())
            })
            .await?;
        ensure!(verdict == COMMITTED, "{verdict:?}");
        let replayed = claim_all(&store).await?;
        ensure!(
            replayed.iter().map(|job| job.id).collect::<Vec<_>>() == vec![execution_id],
            "the replay runs as the execution the script was told"
        );
        ensure!(
            store
                .get_dead_letter(second.id)
                .await?
                .context("kept")?
                .resolution
                == Some(Resolution::Resolved),
            "resolved"
        );
        // Closed meanwhile: the run's view no longer holds.
        let closed = RunCommit {
            effects: Effects {
                writes: vec![write("log", "twice", Some(json!(1)))],
                dead_letters: vec![DeadLetterAction::Resolve { id: first.id }],
                ..Effects::default()
            },
            ..run(shop.id, Vec::new(), Vec::new())
        };
        not_committed(&store, closed, RunVerdict::Conflict, ("log", "twice")).await?;
        Ok(())
    }
);

// The counter of the issue, at the store: 32 writers each read the counter and commit +1 with
// that read, again on a conflict. Every increment lands exactly once, on both backends (on
// PostgreSQL from 32 connections at once).
both_backends!(
    concurrent_read_modify_write_runs_lose_no_increment,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..32 {
            let store = store.clone();
            tasks.spawn(async move {
                let mut runs = 0u32;
                loop {
                    runs += 1;
                    let now = entry(&store, shop.id, "c", "count").await?;
                    let (n, seen) = match now {
                        Some((value, version)) => (value.as_i64().unwrap_or(0), Seen::At(version)),
                        None => (0, Seen::Absent),
                    };
                    let verdict = store
                        .commit_run(run(
                            shop.id,
                            vec![read("c", "count", seen)],
                            vec![write("c", "count", Some(json!(n + 1)))],
                        ))
                        .await?;
                    match verdict {
                        RunVerdict::Committed { .. } => return anyhow::Ok(runs),
                        RunVerdict::Conflict => continue,
                        other => bail!("unexpected {other:?}"),
                    }
                }
            });
        }
        let mut runs = 0;
        while let Some(joined) = tasks.join_next().await {
            runs += joined??;
        }
        let (count, _) = entry(&store, shop.id, "c", "count")
            .await?
            .context("the counter")?;
        ensure!(
            count == json!(32),
            "32 increments, got {count} ({runs} runs)"
        );
        Ok(())
    }
);
