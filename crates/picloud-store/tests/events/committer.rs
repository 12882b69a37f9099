//! The outbox committer (the recorder's thread writes through it).

use super::*;

/// Runs `batch` through `committer` on a blocking thread, as the recorder's thread does.
async fn commit_on_thread(
    mut committer: Box<dyn OutboxCommitter>,
    batch: OutboxBatch,
) -> (
    Box<dyn OutboxCommitter>,
    Result<Vec<RunVerdict>, StoreError>,
) {
    tokio::task::spawn_blocking(move || {
        let committed = committer.commit(&batch);
        (committer, committed)
    })
    .await
    .expect("the committing thread")
}

both_backends!(
    a_committer_writes_new_jobs_and_deletes_finished_ones,
    |store: Arc<dyn Store>| async move {
        let app = app(&store, "shop").await?;
        let script = endpoint(&store, app.id, "work").await?;
        let first = http_job(&script, "/a");
        let committer = store.outbox_committer()?;
        let (committer, committed) = commit_on_thread(
            committer,
            OutboxBatch {
                enqueue: vec![first.clone()],
                durable: false,
                ..OutboxBatch::default()
            },
        )
        .await;
        committed?;
        let claimed = store
            .claim_jobs("node", 10, ANY_NUMBER_PER_APP, &[], LEASE_MS)
            .await?;
        ensure!(
            claimed.len() == 1 && claimed[0].id == first.id,
            "{claimed:?}"
        );

        let second = http_job(&script, "/b");
        let (_, committed) = commit_on_thread(
            committer,
            OutboxBatch {
                enqueue: vec![second],
                finished: vec![JobAttempt {
                    id: first.id,
                    attempt: claimed[0].attempt,
                }],
                durable: true,
                ..OutboxBatch::default()
            },
        )
        .await;
        committed?;
        let depth = store.outbox_depth().await?;
        ensure!(
            depth
                == OutboxDepth {
                    pending: 1,
                    running: 0
                },
            "the finished job is gone and the new one waits: {depth:?}"
        );
        Ok(())
    }
);

// The platform's runs commit through the committer, with the outbox's rows (SQLite: on its own
// rusqlite connection): a run's writes and trigger jobs, its job's completion, in one commit;
// a stale read conflicts there as it does through the store.
both_backends!(a_committer_commits_runs_with_its_rows, |store: Arc<
    dyn Store,
>| async move {
    use picloud_core::tx::{Effects, KvRead, KvWrite, Seen};
    let app = app(&store, "shop").await?;
    let script = endpoint(&store, app.id, "work").await?;
    kv_trigger(&store, &script, "orders", None, &[KvOp::Set]).await?;
    enqueue(&store, vec![http_job(&script, "/a")]).await?;
    let job = claim(&store, "node", 1).await?.pop().context("claimed")?;
    let write = |value: serde_json::Value| KvWrite {
        collection: collection("orders"),
        key: key("o1"),
        value: Some(value),
    };
    let run = |seen: Seen, value, finishes| RunCommit {
        origin: origin(app.id, 0),
        effects: Effects {
            reads: vec![KvRead {
                collection: collection("orders"),
                key: key("o1"),
                seen,
            }],
            writes: vec![write(value)],
            ..Effects::default()
        },
        finishes,
    };
    let sync = http_job(&script, "/b");
    let (committer, committed) = commit_on_thread(
        store.outbox_committer()?,
        OutboxBatch {
            enqueue: vec![sync],
            runs: vec![
                run(Seen::Absent, json!(1), Some(job.attempt_ref())),
                // Read before the first run committed: it conflicts.
                run(Seen::Absent, json!(2), None),
            ],
            ..OutboxBatch::default()
        },
    )
    .await;
    ensure!(
        committed?
            == vec![
                RunVerdict::Committed { trigger_jobs: 1 },
                RunVerdict::Conflict
            ],
        "the first run commits, the second conflicts"
    );
    let (value, version) = store
        .kv_read(app.id, &collection("orders"), &key("o1"))
        .await?
        .context("written")?;
    ensure!(value == json!(1), "{value}");
    let jobs = claim_all(&store).await?;
    ensure!(
        jobs.len() == 2,
        "the batch's new job and the run's trigger job; the finished job is gone: {jobs:?}"
    );
    let (_, committed) = commit_on_thread(
        committer,
        OutboxBatch {
            runs: vec![run(Seen::At(version), json!(3), None)],
            ..OutboxBatch::default()
        },
    )
    .await;
    ensure!(
        committed? == vec![RunVerdict::Committed { trigger_jobs: 1 }],
        "a run that read the current version commits"
    );
    Ok(())
});

// PostgreSQL only: the committer keeps a connection of its own, which a restart of the server
// (here: its backend terminated) breaks while it is idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_committer_reconnects_after_losing_an_idle_connection() -> anyhow::Result<()> {
    let Some((store, database)) = fresh_store(Backend::Postgres).await else {
        return Ok(());
    };
    let app = app(&store, "shop").await?;
    let script = endpoint(&store, app.id, "work").await?;
    let batch = |job: NewJob| OutboxBatch {
        enqueue: vec![job],
        durable: true,
        ..OutboxBatch::default()
    };
    let committer = store.outbox_committer()?;
    let (committer, committed) = commit_on_thread(committer, batch(http_job(&script, "/a"))).await;
    committed?;

    let url = database
        .config()
        .database_url
        .clone()
        .context("a PostgreSQL URL")?;
    let mut admin = PgConnection::connect(&url).await?;
    let terminated: i64 = sqlx::query_scalar(concat!(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity ",
        "WHERE datname = current_database() AND pid <> pg_backend_pid()) AS gone"
    ))
    .fetch_one(&mut admin)
    .await?;
    ensure!(terminated >= 1, "the committer's connection was terminated");
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    let (_, committed) = commit_on_thread(committer, batch(http_job(&script, "/b"))).await;
    committed.context("the commit after the connection was lost")?;
    ensure!(store.outbox_depth().await?.pending == 2);
    Ok(())
}
