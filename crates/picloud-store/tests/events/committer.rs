//! The outbox committer (the recorder's thread writes through it).

use super::*;

/// Runs `batch` through `committer` on a blocking thread, as the recorder's thread does.
async fn commit_on_thread(
    mut committer: Box<dyn OutboxCommitter>,
    batch: OutboxBatch,
) -> (Box<dyn OutboxCommitter>, Result<(), StoreError>) {
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
