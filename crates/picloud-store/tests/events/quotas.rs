//! Quotas (#13): stored bytes and queued jobs per app, trigger jobs per execution.

use super::*;

/// Quotas small enough to reach in a test.
const SMALL: AppQuotas = AppQuotas {
    stored_bytes: 4_096,
    queued_jobs: 5,
};

/// What an entry counts against its app's stored bytes, by the documented rule: its collection
/// name, key and value as JSON text, in bytes, plus the per-entry overhead.
fn entry_size(name: &str, k: &str, value: &serde_json::Value) -> u64 {
    (name.len() + k.len() + value.to_string().len()) as u64 + KV_ENTRY_OVERHEAD
}

async fn usage(store: &Arc<dyn Store>, app_id: AppId) -> anyhow::Result<AppUsage> {
    store
        .app_usage(app_id)
        .await?
        .context("an existing app has a usage")
}

/// The sum of the sizes of every entry of the app in `collections`, read back from the store.
async fn stored_bytes(
    store: &Arc<dyn Store>,
    app_id: AppId,
    collections: &[&str],
) -> anyhow::Result<u64> {
    let mut total = 0;
    for name in collections {
        for k in all_keys(store, app_id, name, None, 100).await? {
            let value = store
                .kv_get(app_id, &collection(name), &key(&k))
                .await?
                .context("a listed entry reads back")?;
            total += entry_size(name, &k, &value);
        }
    }
    Ok(total)
}

/// Writes `value` under `k0`, `k1`, … of `name` until the store refuses one; returns the keys
/// written and the refusal.
async fn fill(
    store: &Arc<dyn Store>,
    app_id: AppId,
    name: &str,
    value: &serde_json::Value,
) -> anyhow::Result<(Vec<String>, OverLimit)> {
    let mut written = Vec::new();
    for i in 0..1_000 {
        let k = format!("k{i}");
        match store
            .kv_set(origin(app_id, 0), &collection(name), &key(&k), value)
            .await
        {
            Ok(_) => written.push(k),
            Err(StoreError::OverLimit(over)) => return Ok((written, over)),
            Err(other) => bail!("expected a write or a quota refusal, got {other:?}"),
        }
    }
    bail!("1000 writes never reached the quota")
}

// #13: one 5 s request wrote 553 MB of KV. A write that would take its app past its quota of
// stored bytes is refused, says where the app stands, and writes nothing.
both_backends!(
    quotas: SMALL,
    a_write_past_the_stored_bytes_quota_is_refused_with_the_usage_and_the_quota,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let value = json!("x".repeat(1_000));
        let size = entry_size("notes", "k0", &value);
        let (written, over) = fill(&store, shop.id, "notes", &value).await?;
        let fits = SMALL.stored_bytes / size;
        ensure!(
            written.len() as u64 == fits,
            "{fits} entries of {size} bytes fit in {} bytes, {} were written",
            SMALL.stored_bytes,
            written.len()
        );
        let held = fits * size;
        ensure!(
            over == OverLimit::StoredBytes {
                stored: held,
                adding: size,
                quota: SMALL.stored_bytes
            },
            "the refusal says what the app holds, what the write adds and the quota: {over:?}"
        );
        let message = over.to_string();
        ensure!(
            message.contains(&(held + size).to_string())
                && message.contains(&held.to_string())
                && message.contains(&SMALL.stored_bytes.to_string())
                && message.contains("delete entries"),
            "the sentence names the usage, the quota and a way out: {message}"
        );
        let refused = format!("k{fits}");
        ensure!(
            store
                .kv_get(shop.id, &collection("notes"), &key(&refused))
                .await?
                .is_none(),
            "the refused write wrote nothing"
        );
        ensure!(
            usage(&store, shop.id).await?.kv_bytes == held,
            "the usage is what was written"
        );
        let blog = app(&store, "blog").await?;
        store
            .kv_set(origin(blog.id, 0), &collection("notes"), &key("k0"), &value)
            .await
            .context("another app has a quota of its own")?;
        Ok(())
    }
);

// An app at its quota must be able to get back under it: deletes and overwrites that shrink
// always pass, and the room they free can be written again.
both_backends!(
    quotas: SMALL,
    at_its_quota_an_app_can_still_shrink_and_delete_and_then_write_again,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let big = json!("x".repeat(1_000));
        let (written, _) = fill(&store, shop.id, "notes", &big).await?;
        ensure!(written.len() >= 2, "at least two entries fit: {written:?}");
        let before = usage(&store, shop.id).await?.kv_bytes;

        let small = json!("y");
        store
            .kv_set(origin(shop.id, 0), &collection("notes"), &key("k0"), &small)
            .await
            .context("an overwrite that shrinks passes at the quota")?;
        let shrunk = usage(&store, shop.id).await?.kv_bytes;
        ensure!(
            shrunk == before - entry_size("notes", "k0", &big) + entry_size("notes", "k0", &small),
            "the overwrite counts the difference: {before} → {shrunk}"
        );
        let grown = json!("z".repeat(3_000));
        let refused = store
            .kv_set(origin(shop.id, 0), &collection("notes"), &key("k1"), &grown)
            .await;
        ensure!(
            matches!(refused, Err(StoreError::OverLimit(OverLimit::StoredBytes { .. }))),
            "an overwrite that grows past the quota is refused: {refused:?}"
        );
        ensure!(
            store.kv_get(shop.id, &collection("notes"), &key("k1")).await? == Some(big.clone()),
            "the refused overwrite left the entry as it was"
        );
        let deleted = store
            .kv_delete(origin(shop.id, 0), &collection("notes"), &key("k1"))
            .await
            .context("a delete passes at the quota")?;
        ensure!(deleted.prev_value == Some(big.clone()), "the entry was deleted");
        ensure!(
            usage(&store, shop.id).await?.kv_bytes == shrunk - entry_size("notes", "k1", &big),
            "the delete frees the entry's bytes"
        );
        let again = format!("k{}", written.len());
        store
            .kv_set(origin(shop.id, 0), &collection("notes"), &key(&again), &big)
            .await
            .context("the freed room is written again")?;
        ensure!(
            usage(&store, shop.id).await?.kv_bytes
                == stored_bytes(&store, shop.id, &["notes"]).await?,
            "the usage is the sum of what is stored"
        );
        Ok(())
    }
);

// The count is kept by every write, not recomputed: after sets, overwrites that grow and
// shrink, deletes and deletes of nothing, in several collections and with characters of several
// bytes, it is exactly the sum of what is stored, per app.
both_backends!(
    the_usage_is_the_sum_of_the_entries_after_a_mix_of_writes,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        let collections = ["a", "b_2", "c.d"];
        for round in 0..3_usize {
            for (i, name) in collections.iter().enumerate() {
                for n in 0..8_usize {
                    let k = format!("key-é-{n}");
                    let value = match (round + n + i) % 4 {
                        0 => json!("✓".repeat(n * 10 + round)),
                        1 => json!({ "n": n, "list": vec![round; n] }),
                        2 => json!(n as f64 / 3.0),
                        _ => serde_json::Value::Null,
                    };
                    if (round + n) % 5 == 4 {
                        store
                            .kv_delete(origin(shop.id, 0), &collection(name), &key(&k))
                            .await?;
                    } else {
                        store
                            .kv_set(origin(shop.id, 0), &collection(name), &key(&k), &value)
                            .await?;
                    }
                }
            }
            store
                .kv_delete(origin(shop.id, 0), &collection("a"), &key("never-there"))
                .await?;
            store
                .kv_set(
                    origin(blog.id, 0),
                    &collection("a"),
                    &key("b"),
                    &json!(round),
                )
                .await?;
        }
        let shop_usage = usage(&store, shop.id).await?.kv_bytes;
        let stored = stored_bytes(&store, shop.id, &collections).await?;
        ensure!(
            shop_usage == stored,
            "the usage {shop_usage} is the sum of the entries {stored}"
        );
        ensure!(stored > 0, "something is stored");
        ensure!(
            usage(&store, blog.id).await?.kv_bytes == entry_size("a", "b", &json!(2)),
            "another app counts its own entries only"
        );
        store.delete_app(shop.id).await?;
        ensure!(
            store.app_usage(shop.id).await?.is_none(),
            "a deleted app has no usage"
        );
        Ok(())
    }
);

// Two nodes write one app's data at once: the count is exact under concurrency, so concurrent
// writers never take the app past its quota — not even by one value — and every write that
// was answered counts.
both_backends!(
    quotas: AppQuotas {
        stored_bytes: 16 * 1_024,
        ..AppQuotas::default()
    },
    concurrent_writers_never_take_an_app_past_its_quota,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let quota = store.quotas().stored_bytes;
        let value = json!("x".repeat(1_000));
        let size = entry_size("notes", "k00", &value);
        // Each round crosses the quota once, with every write in flight at once.
        for round in 0..10 {
            let writes = (0..40)
                .map(|i| KvWriteCase::Set(shop.id, "notes", format!("k{i:02}"), value.clone()))
                .collect();
            let mut accepted = Vec::new();
            for (i, answer) in write_concurrently(&store, writes).await?.into_iter().enumerate() {
                match answer {
                    Ok(_) => accepted.push(i),
                    Err(StoreError::OverLimit(OverLimit::StoredBytes { .. })) => {}
                    Err(other) => bail!("a write failed otherwise than by the quota: {other:?}"),
                }
            }
            ensure!(
                accepted.len() as u64 == quota / size,
                "round {round}: exactly the {} writes that fit were accepted, not {}",
                quota / size,
                accepted.len()
            );
            let held = usage(&store, shop.id).await?.kv_bytes;
            ensure!(
                held == accepted.len() as u64 * size && held <= quota,
                "round {round}: the usage {held} is what was accepted, within the quota {quota}"
            );
            let deletes = accepted
                .iter()
                .map(|i| KvWriteCase::Delete(shop.id, "notes", format!("k{i:02}")))
                .collect();
            for answer in write_concurrently(&store, deletes).await? {
                answer.context("a delete always passes")?;
            }
        }

        // Overwrites of one key that grow and shrink at once, and deletes among them.
        let writes = (0..30_usize)
            .map(|i| match i % 3 {
                2 => KvWriteCase::Delete(shop.id, "hot", "k".to_owned()),
                _ => KvWriteCase::Set(shop.id, "hot", "k".to_owned(), json!("y".repeat(i * 7))),
            })
            .collect();
        for answer in write_concurrently(&store, writes).await? {
            match answer {
                Ok(_) | Err(StoreError::OverLimit(OverLimit::StoredBytes { .. })) => {}
                Err(other) => bail!("an overwrite failed otherwise than by the quota: {other:?}"),
            }
        }
        let held = usage(&store, shop.id).await?.kv_bytes;
        let stored = stored_bytes(&store, shop.id, &["hot"]).await?;
        ensure!(
            held == stored && held <= quota,
            "after racing overwrites the usage {held} is the sum {stored}, within {quota}"
        );
        Ok(())
    }
);

// #13: a trigger whose handler writes its own collection fanned out to 87,380 jobs in 22 s. An
// execution may enqueue only so many trigger jobs; the write that would pass its budget is
// refused whole: no entry, no job.
both_backends!(
    a_write_that_would_fire_more_trigger_jobs_than_its_execution_has_left_is_refused_whole,
    |store| async move {
        let shop = app(&store, "shop").await?;
        for name in ["on-a", "on-b"] {
            let handler = endpoint(&store, shop.id, name).await?;
            kv_trigger(&store, &handler, "watched", None, &KvOp::ALL).await?;
        }
        let budget = |left| WriteOrigin {
            trigger_jobs_left: left,
            ..origin(shop.id, 0)
        };
        let refused = store
            .kv_set(budget(1), &collection("watched"), &key("k"), &json!(1))
            .await;
        let Err(StoreError::OverLimit(over)) = refused else {
            bail!("a set firing two jobs with room for one is refused: {refused:?}");
        };
        ensure!(
            over == OverLimit::TriggerJobs { firing: 2, left: 1 },
            "the refusal says what the write fires and what is left: {over:?}"
        );
        ensure!(
            store
                .kv_get(shop.id, &collection("watched"), &key("k"))
                .await?
                .is_none(),
            "nothing was stored"
        );
        ensure!(
            depth(&store).await? == depth_of(0, 0),
            "no job was enqueued"
        );
        ensure!(
            usage(&store, shop.id).await? == AppUsage::default(),
            "nothing was counted"
        );

        let written = store
            .kv_set(budget(2), &collection("watched"), &key("k"), &json!(1))
            .await?;
        ensure!(written.jobs_enqueued == 2, "with room for both, both fire");
        let refused = store
            .kv_delete(budget(1), &collection("watched"), &key("k"))
            .await;
        ensure!(
            matches!(
                refused,
                Err(StoreError::OverLimit(OverLimit::TriggerJobs { .. }))
            ),
            "a delete is held to the budget too: {refused:?}"
        );
        ensure!(
            store
                .kv_get(shop.id, &collection("watched"), &key("k"))
                .await?
                == Some(json!(1)),
            "the refused delete left the entry"
        );
        store
            .kv_set(budget(0), &collection("quiet"), &key("k"), &json!(1))
            .await
            .context("a write that fires nothing needs no budget")?;
        ensure!(depth(&store).await? == depth_of(2, 0), "two jobs in all");
        ensure!(
            usage(&store, shop.id).await?.queued_jobs == 2,
            "and two counted"
        );
        Ok(())
    }
);

// An app may have only so many jobs queued: past it, a write that would fire triggers is
// refused with a sentence naming the limit, and nothing is lost — every accepted write has its
// job, a refused one is not applied. When jobs finish, writes pass again.
both_backends!(
    quotas: SMALL,
    an_app_at_its_queued_jobs_quota_refuses_writes_that_fire_triggers_and_loses_nothing,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-set").await?;
        kv_trigger(&store, &handler, "watched", None, &[KvOp::Set]).await?;
        let (accepted, over) = fill(&store, shop.id, "watched", &json!(1)).await?;
        ensure!(
            accepted.len() as u64 == SMALL.queued_jobs,
            "{} writes fired a job each before the quota: {accepted:?}",
            SMALL.queued_jobs
        );
        ensure!(
            over == OverLimit::QueuedJobs {
                queued: SMALL.queued_jobs,
                adding: 1,
                quota: SMALL.queued_jobs
            },
            "the refusal names the queued jobs and the limit: {over:?}"
        );
        let message = over.to_string();
        ensure!(
            message.contains("the app has 5 queued jobs") && message.contains("limit of 5"),
            "the sentence names the count and the limit: {message}"
        );
        let refused = format!("k{}", accepted.len());
        ensure!(
            store
                .kv_get(shop.id, &collection("watched"), &key(&refused))
                .await?
                .is_none(),
            "the refused write was not applied"
        );
        store
            .kv_set(origin(shop.id, 0), &collection("quiet"), &key("k"), &json!(1))
            .await
            .context("a write that fires nothing passes")?;
        store
            .kv_delete(origin(shop.id, 0), &collection("watched"), &key("k0"))
            .await
            .context("a delete that fires nothing passes")?;
        let blog = app(&store, "blog").await?;
        let blog_handler = endpoint(&store, blog.id, "on-set").await?;
        kv_trigger(&store, &blog_handler, "watched", None, &[KvOp::Set]).await?;
        store
            .kv_set(origin(blog.id, 0), &collection("watched"), &key("k"), &json!(1))
            .await
            .context("another app's queue is its own")?;

        let jobs: Vec<ClaimedJob> = claim_all(&store)
            .await?
            .into_iter()
            .filter(|job| job.app_id == shop.id)
            .collect();
        let mut keys = jobs
            .iter()
            .map(|job| Ok(kv_event(job)?.key.clone()))
            .collect::<anyhow::Result<Vec<_>>>()?;
        keys.sort();
        let mut expected = accepted.clone();
        expected.sort();
        ensure!(keys == expected, "every accepted write has its job: {keys:?}");

        finish(&store, jobs.iter().take(2).map(ClaimedJob::attempt_ref).collect()).await?;
        ensure!(
            usage(&store, shop.id).await?.queued_jobs == SMALL.queued_jobs - 2,
            "finished jobs leave the count"
        );
        for k in ["again-0", "again-1"] {
            store
                .kv_set(origin(shop.id, 0), &collection("watched"), &key(k), &json!(1))
                .await
                .with_context(|| format!("{k} fits in the room the finished jobs left"))?;
        }
        let full = store
            .kv_set(origin(shop.id, 0), &collection("watched"), &key("again-2"), &json!(1))
            .await;
        ensure!(
            matches!(full, Err(StoreError::OverLimit(OverLimit::QueuedJobs { .. }))),
            "and then the quota holds again: {full:?}"
        );
        Ok(())
    }
);

// The count of queued jobs is kept by each way a job enters or leaves the outbox, so it must
// follow all of them: recorded requests, trigger jobs, retries, dead letters and their
// handlers, replays, finished and abandoned jobs. Sync jobs are not queued work and do not count.
both_backends!(
    the_count_of_queued_jobs_follows_every_way_into_and_out_of_the_outbox,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let work = endpoint(&store, shop.id, "work").await?;
        let on_dead = endpoint(&store, shop.id, "on-dead").await?;
        dead_letter_trigger(&store, &on_dead).await?;
        kv_trigger(&store, &work, "watched", None, &[KvOp::Set]).await?;
        let queued = |expected: u64, after: &'static str| {
            let store = store.clone();
            async move {
                let counted = usage(&store, shop.id).await?.queued_jobs;
                ensure!(
                    counted == expected,
                    "after {after}: {counted} counted, {expected} queued"
                );
                anyhow::Ok(())
            }
        };

        enqueue(&store, vec![http_job(&work, "/a"), http_job(&work, "/b")]).await?;
        queued(2, "two async requests").await?;
        let sync = serve(&store, &work, "node", LEASE_MS).await?;
        queued(2, "a sync request").await?;
        store
            .kv_set(
                origin(shop.id, 0),
                &collection("watched"),
                &key("k"),
                &json!(1),
            )
            .await?;
        queued(3, "a write that fired a trigger").await?;

        let jobs = claim_all(&store).await?;
        let [a, b, fired] = jobs.as_slice() else {
            bail!("the three async jobs are claimed: {jobs:?}");
        };
        queued(3, "claiming").await?;
        ensure!(
            store.retry_job(a.attempt_ref(), 60_000, "later").await?,
            "a retry"
        );
        queued(3, "a retry").await?;
        let dead = store
            .dead_letter_job(b.attempt_ref(), "failed")
            .await?
            .context("a dead letter")?;
        queued(3, "a dead letter that enqueued its handler").await?;
        let handled = claim_all(&store).await?;
        finish(
            &store,
            handled.iter().map(ClaimedJob::attempt_ref).collect(),
        )
        .await?;
        queued(2, "the dead-letter handler finished").await?;
        store
            .replay_dead_letter(dead.id, ExecutionId::new())
            .await?;
        queued(3, "a replay").await?;
        store
            .dead_letter_job(fired.attempt_ref(), "failed too")
            .await?
            .context("another dead letter")?;
        queued(3, "another dead letter that enqueued its handler").await?;
        let claimed = claim_all(&store).await?;
        let handler = claimed
            .iter()
            .find(|job| job.script_id == on_dead.id)
            .context("the second handler's job")?;
        let handled = dead_letter_event(handler)?.id;
        ensure!(
            store
                .fail_dead_letter_handler(handler.attempt_ref(), handled, "the handler failed")
                .await?,
            "the handler's failure is recorded"
        );
        queued(2, "a failed dead-letter handler").await?;
        ensure!(
            store
                .abandon_sync(sync, shop.id, work.id, "the caller left")
                .await?,
            "the sync request is abandoned"
        );
        queued(2, "an abandoned sync request").await?;
        let replayed = claimed
            .iter()
            .find(|job| job.script_id == work.id)
            .context("the replayed job")?;
        // The retried job waits a minute; its row goes by its attempt all the same.
        finish(&store, vec![replayed.attempt_ref(), a.attempt_ref()]).await?;
        queued(0, "every job finished").await?;
        finish(&store, vec![a.attempt_ref()]).await?;
        queued(0, "a finish fenced off (the row is gone)").await?;
        Ok(())
    }
);

// A replay enqueues a job like a write that fires a trigger, so it waits for room too; the
// dead letter stays open until it can be replayed.
both_backends!(
    quotas: AppQuotas {
        queued_jobs: 1,
        ..SMALL
    },
    a_replay_is_refused_while_the_app_has_its_quota_of_queued_jobs,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let work = endpoint(&store, shop.id, "work").await?;
        let dead = dead_letter(&store, &work, "failed").await?;
        enqueue(&store, vec![http_job(&work, "/busy")]).await?;
        let refused = store.replay_dead_letter(dead.id, ExecutionId::new()).await;
        ensure!(
            matches!(
                refused,
                Err(StoreError::OverLimit(OverLimit::QueuedJobs { queued: 1, .. }))
            ),
            "a replay into a full queue is refused: {refused:?}"
        );
        let open = store
            .get_dead_letter(dead.id)
            .await?
            .context("the dead letter")?;
        ensure!(open.resolution.is_none(), "the dead letter stays open");
        let busy = claim_all(&store).await?;
        finish(&store, busy.iter().map(ClaimedJob::attempt_ref).collect()).await?;
        store
            .replay_dead_letter(dead.id, ExecutionId::new())
            .await
            .context("with room, the replay passes")?;
        ensure!(usage(&store, shop.id).await?.queued_jobs == 1, "and counts");
        Ok(())
    }
);

/// Applies the backend's migrations numbered below `below` to the fresh database `database`.
async fn migrate_below(database: &TestDatabase, below: &str) -> anyhow::Result<()> {
    let kind = match database.backend() {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let earlier = tempfile::tempdir()?;
    let ours = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(kind);
    for entry in std::fs::read_dir(&ours)? {
        let path = entry?.path();
        let name = path.file_name().context("a migration's name")?.to_owned();
        if name.to_string_lossy().as_ref() < below {
            std::fs::copy(&path, earlier.path().join(name))?;
        }
    }
    let migrator = sqlx::migrate::Migrator::new(earlier.path()).await?;
    match &database.config().database_url {
        Some(url) => migrator.run(&sqlx::PgPool::connect(url).await?).await?,
        None => {
            let file = database.data_dir().join("picloud.db");
            let options = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(file)
                .create_if_missing(true);
            migrator
                .run(&sqlx::SqlitePool::connect_with(options).await?)
                .await?;
        }
    }
    Ok(())
}

// An instance upgraded to the quotas starts from what its apps already hold: 0010 counts the
// existing entries' bytes and async jobs (the same SQL text on both backends writes them here).
mod migration_0010_counts_what_apps_held_before {
    use super::*;

    async fn check(backend: Backend) -> anyhow::Result<()> {
        let Some(database) = TestDatabase::create(backend).await else {
            return Ok(());
        };
        migrate_below(&database, "0010").await?;
        let store = picloud_store::open(database.config()).await?;
        let (app_id, empty_id) = (AppId::new(), AppId::new());
        let statements = [
            format!("INSERT INTO apps (id, slug, name) VALUES ('{app_id}', 'shop', 'Shop')"),
            format!("INSERT INTO apps (id, slug, name) VALUES ('{empty_id}', 'blog', 'Blog')"),
            format!(
                "INSERT INTO kv_entries (app_id, collection, key, value) VALUES \
                 ('{app_id}', 'users', 'ada', '{{\"name\":\"Ada\"}}'), ('{app_id}', 'e', 'ké', '\"✓\"')"
            ),
            format!(
                "INSERT INTO outbox (id, app_id, script_id, mode, source_kind, payload, status, due_at) \
                 VALUES ('{}', '{app_id}', '{}', 'async', 'http', '{{}}', 'pending', 0), \
                 ('{}', '{app_id}', '{}', 'sync', 'http', '{{}}', 'running', 0)",
                ExecutionId::new(),
                ScriptId::new(),
                ExecutionId::new(),
                ScriptId::new()
            ),
        ];
        let url = database.config().database_url.clone();
        for statement in &statements {
            match &url {
                Some(url) => {
                    let mut conn = PgConnection::connect(url).await?;
                    sqlx::query(statement).execute(&mut conn).await?;
                }
                None => {
                    let file = database.data_dir().join("picloud.db");
                    let mut conn =
                        sqlx::SqliteConnection::connect(&file.display().to_string()).await?;
                    sqlx::query(statement).execute(&mut conn).await?;
                }
            }
        }
        store.migrate().await?;
        let held = usage(&store, app_id).await?;
        let expected = entry_size("users", "ada", &json!({"name": "Ada"}))
            + entry_size("e", "ké", &json!("✓"));
        // PostgreSQL prints a JSONB object with a space after ':', one byte more than it was written.
        let printed = match backend {
            Backend::Sqlite => 0,
            Backend::Postgres => 1,
        };
        ensure!(
            held == AppUsage {
                kv_bytes: expected + printed,
                queued_jobs: 1
            },
            "0010 counted the entries and the async job: {held:?}"
        );
        ensure!(
            usage(&store, empty_id).await? == AppUsage::default(),
            "an app without data has a usage of nothing"
        );
        store
            .kv_delete(origin(app_id, 0), &collection("users"), &key("ada"))
            .await?;
        store
            .kv_delete(origin(app_id, 0), &collection("e"), &key("ké"))
            .await?;
        ensure!(
            usage(&store, app_id).await?.kv_bytes == 0,
            "deleting what was counted brings the usage to nothing"
        );
        store.close().await;
        Ok(())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() -> anyhow::Result<()> {
        check(Backend::Sqlite).await
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() -> anyhow::Result<()> {
        check(Backend::Postgres).await
    }
}
