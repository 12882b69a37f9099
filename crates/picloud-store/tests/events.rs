//! The conformance suite of the event side of the store — the KV store, triggers, the outbox,
//! dead letters, abandoned executions and the services scripts call — on SQLite and on
//! PostgreSQL alike (see `picloud_test_support::both_backends!`).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use picloud_core::events::{DeadLetterEvent, KvEvent, KV_MAX_VALUE_BYTES};
use picloud_core::exec::HttpRequest;
use picloud_core::services::{KvListRequest, Writer};
use picloud_core::{
    App, AppId, AppName, AppSlug, CollectionName, DeadLetter, DeadLetterId, DispatchMode,
    ExecutionId, JobMode, JobPayload, KeptHeaders, KvChanged, KvKey, KvOp, Resolution, RouteMethod,
    RoutePath, Script, ScriptId, ScriptKind, ScriptName, ScriptServices, ServiceErrorKind,
    TriggerDetail, TriggerEvent,
};
use picloud_store::{
    AppPatch, AppQuotas, AppUsage, ClaimedJob, DeadLetterFilter, DeadLetterStatus, JobAttempt,
    KvWritten, Lease, NewApp, NewJob, NewRoute, NewScript, NewTrigger, OutboxBatch,
    OutboxCommitter, OutboxDepth, OverLimit, PageRequest, ScriptPatch, Store, StoreError,
    StoreServices, KV_ENTRY_OVERHEAD,
};
use picloud_test_support::{both_backends, fresh_store, Backend, TestDatabase};
use serde_json::json;
use sqlx::{Connection, PgConnection};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A long lease: nothing expires while a test runs unless it asks for a short one.
const LEASE_MS: i64 = 60_000;

async fn app(store: &Arc<dyn Store>, slug: &str) -> anyhow::Result<App> {
    Ok(store
        .create_app(&NewApp {
            slug: AppSlug::parse(slug).expect("a valid slug"),
            name: AppName::parse(slug).expect("a valid app name"),
            expose_errors: false,
        })
        .await?)
}

async fn endpoint(store: &Arc<dyn Store>, app_id: AppId, name: &str) -> anyhow::Result<Script> {
    Ok(store
        .create_script(&NewScript {
            app_id,
            name: ScriptName::parse(name, ScriptKind::Endpoint).expect("a valid script name"),
            kind: ScriptKind::Endpoint,
            source: "\"hi\"".to_owned(),
        })
        .await?)
}

fn collection(name: &str) -> CollectionName {
    CollectionName::parse(name).expect("a valid collection name")
}

fn key(value: &str) -> KvKey {
    KvKey::parse(value).expect("a valid key")
}

/// A writer with room for every trigger job a test fires.
fn writer(app_id: AppId, trigger_depth: u32) -> Writer {
    Writer {
        app_id,
        trigger_depth,
        trigger_jobs_left: u32::MAX,
    }
}

fn list(prefix: Option<&str>, limit: u32, cursor: Option<String>) -> KvListRequest {
    KvListRequest {
        prefix: prefix.map(str::to_owned),
        limit,
        cursor,
    }
}

fn page(limit: u32, cursor: Option<String>) -> PageRequest {
    PageRequest { limit, cursor }
}

/// Every key of a collection, walking the pages of `limit` entries.
async fn all_keys(
    store: &Arc<dyn Store>,
    app_id: AppId,
    name: &str,
    prefix: Option<&str>,
    limit: u32,
) -> anyhow::Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .kv_list(app_id, &collection(name), &list(prefix, limit, cursor))
            .await?;
        ensure!(
            page.items.len() <= limit as usize,
            "a page holds at most {limit} entries, got {}",
            page.items.len()
        );
        keys.extend(page.items.into_iter().map(|(key, _)| key));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return Ok(keys),
        }
    }
}

async fn kv_trigger(
    store: &Arc<dyn Store>,
    script: &Script,
    name: &str,
    key_prefix: Option<&str>,
    ops: &[KvOp],
) -> anyhow::Result<picloud_core::Trigger> {
    Ok(store
        .create_trigger(&NewTrigger {
            app_id: script.app_id,
            script_id: script.id,
            detail: TriggerDetail::Kv {
                collection: collection(name),
                key_prefix: key_prefix.map(str::to_owned),
                ops: ops.to_vec(),
            },
        })
        .await?)
}

async fn dead_letter_trigger(
    store: &Arc<dyn Store>,
    script: &Script,
) -> anyhow::Result<picloud_core::Trigger> {
    Ok(store
        .create_trigger(&NewTrigger {
            app_id: script.app_id,
            script_id: script.id,
            detail: TriggerDetail::DeadLetter,
        })
        .await?)
}

fn http_payload(path: &str) -> JobPayload {
    JobPayload::Http {
        request: HttpRequest {
            method: "POST".to_owned(),
            path: path.to_owned(),
            body: "{\"n\":1}".to_owned(),
            ..HttpRequest::default()
        },
    }
}

/// An async HTTP job of `script`, pending and due now.
fn http_job(script: &Script, path: &str) -> NewJob {
    NewJob {
        id: ExecutionId::new(),
        app_id: script.app_id,
        script_id: script.id,
        mode: JobMode::Async,
        payload: http_payload(path),
        trigger_depth: 0,
        claimed: None,
    }
}

/// Commits `jobs` durably.
async fn enqueue(store: &Arc<dyn Store>, jobs: Vec<NewJob>) -> anyhow::Result<()> {
    store
        .commit_outbox(&OutboxBatch {
            enqueue: jobs,
            finished: Vec::new(),
            durable: true,
        })
        .await?;
    Ok(())
}

/// Deletes finished attempts.
async fn finish(store: &Arc<dyn Store>, finished: Vec<JobAttempt>) -> anyhow::Result<()> {
    store
        .commit_outbox(&OutboxBatch {
            enqueue: Vec::new(),
            finished,
            durable: false,
        })
        .await?;
    Ok(())
}

/// No bound on the jobs of one app a claimer runs (every due job is a candidate).
const ANY_NUMBER_PER_APP: u32 = u32::MAX;

async fn claim(store: &Arc<dyn Store>, owner: &str, limit: u32) -> anyhow::Result<Vec<ClaimedJob>> {
    Ok(store
        .claim_jobs(owner, limit, ANY_NUMBER_PER_APP, &[], LEASE_MS)
        .await?)
}

async fn depth(store: &Arc<dyn Store>) -> anyhow::Result<OutboxDepth> {
    Ok(store.outbox_depth().await?)
}

fn depth_of(pending: u64, running: u64) -> OutboxDepth {
    OutboxDepth { pending, running }
}

/// The KV event a claimed trigger job carries.
fn kv_event(job: &ClaimedJob) -> anyhow::Result<&KvEvent> {
    match &job.payload {
        JobPayload::Trigger {
            event: TriggerEvent::Kv { kv },
        } => Ok(kv),
        other => bail!("expected a KV trigger event, got {other:?}"),
    }
}

/// The dead-letter event a claimed trigger job carries.
fn dead_letter_event(job: &ClaimedJob) -> anyhow::Result<&DeadLetterEvent> {
    match &job.payload {
        JobPayload::Trigger {
            event: TriggerEvent::DeadLetter { dead_letter },
        } => Ok(dead_letter),
        other => bail!("expected a dead-letter trigger event, got {other:?}"),
    }
}

/// A job of `script` that failed its only attempt and was dead-lettered with `error`.
async fn dead_letter(
    store: &Arc<dyn Store>,
    script: &Script,
    error: &str,
) -> anyhow::Result<DeadLetter> {
    enqueue(store, vec![http_job(script, "/fail")]).await?;
    let jobs = claim(store, "worker", 1).await?;
    let job = jobs.first().context("the job to fail is claimed")?;
    store
        .dead_letter_job(job.attempt_ref(), error)
        .await?
        .context("the job is dead-lettered")
}

/// Expects a `Conflict` and returns its message.
fn conflict<T: std::fmt::Debug>(
    result: Result<T, StoreError>,
    what: &str,
) -> anyhow::Result<String> {
    match result {
        Err(StoreError::Conflict(message)) => Ok(message),
        other => bail!("expected {what} to be refused with Conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// KV
// ---------------------------------------------------------------------------------------------

both_backends!(
    a_kv_value_round_trips_with_nested_json,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let users = collection("users");
        let value = json!({
            "name": "Ada",
            "tags": ["a", "b", {"deep": [1, 2.5, null, true]}],
            "address": {"city": "Zürich", "zip": "8000"},
            "big": 9_007_199_254_740_993_i64,
        });
        let written = store
            .kv_set(writer(shop.id, 0), &users, &key("u:1"), &value)
            .await?;
        assert_eq!(written.prev_value, None, "a new entry had no value");
        assert_eq!(written.jobs_enqueued, 0, "no trigger, no job");
        assert_eq!(
            store.kv_get(shop.id, &users, &key("u:1")).await?,
            Some(value.clone()),
            "the value reads back as it was written"
        );

        let replaced = store
            .kv_set(writer(shop.id, 0), &users, &key("u:1"), &json!("plain"))
            .await?;
        assert_eq!(
            replaced.prev_value,
            Some(value),
            "a set reports the value it replaced"
        );
        assert_eq!(
            store.kv_get(shop.id, &users, &key("u:1")).await?,
            Some(json!("plain")),
            "a string is a value too"
        );
        for scalar in [json!(null), json!(0), json!(false), json!([])] {
            store
                .kv_set(writer(shop.id, 0), &users, &key("s"), &scalar)
                .await?;
            assert_eq!(
                store.kv_get(shop.id, &users, &key("s")).await?,
                Some(scalar.clone()),
                "{scalar} round trips"
            );
        }
        assert_eq!(
            store.kv_get(shop.id, &users, &key("nobody")).await?,
            None,
            "a missing key reads as None"
        );
        Ok(())
    }
);

both_backends!(
    has_and_delete_report_whether_the_entry_was_there,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let carts = collection("carts");
        assert!(
            !store.kv_has(shop.id, &carts, &key("c1")).await?,
            "nothing there yet"
        );
        store
            .kv_set(writer(shop.id, 0), &carts, &key("c1"), &json!({"items": 3}))
            .await?;
        assert!(
            store.kv_has(shop.id, &carts, &key("c1")).await?,
            "there after a set"
        );
        let deleted = store
            .kv_delete(writer(shop.id, 0), &carts, &key("c1"))
            .await?;
        assert_eq!(
            deleted.prev_value,
            Some(json!({"items": 3})),
            "a delete returns the value it removed"
        );
        assert!(
            !store.kv_has(shop.id, &carts, &key("c1")).await?,
            "gone after the delete"
        );
        let again = store
            .kv_delete(writer(shop.id, 0), &carts, &key("c1"))
            .await?;
        assert_eq!(
            again.prev_value, None,
            "deleting a missing key finds nothing"
        );
        assert_eq!(again.jobs_enqueued, 0, "and enqueues nothing");
        Ok(())
    }
);

// Keys sort by their bytes on both backends, whatever PostgreSQL's default collation.
both_backends!(
    keys_are_listed_in_byte_order_page_by_page,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let words = collection("words");
        for (i, word) in ["é", "b", "a", "B", "A1", "a b", "ab", "Z"]
            .iter()
            .enumerate()
        {
            store
                .kv_set(writer(shop.id, 0), &words, &key(word), &json!(i))
                .await?;
        }
        let expected = ["A1", "B", "Z", "a", "a b", "ab", "b", "é"];
        for limit in [1, 3, 100] {
            assert_eq!(
                all_keys(&store, shop.id, "words", None, limit).await?,
                expected,
                "bytewise order, pages of {limit}"
            );
        }
        let first = store.kv_list(shop.id, &words, &list(None, 3, None)).await?;
        assert_eq!(
            first.items[0],
            ("A1".to_owned(), json!(4)),
            "items carry their values"
        );
        assert!(first.next_cursor.is_some(), "more pages follow");
        let last = store.kv_list(shop.id, &words, &list(None, 8, None)).await?;
        assert_eq!(last.items.len(), 8, "one page holds everything");
        assert_eq!(last.next_cursor, None, "no cursor after the last page");
        Ok(())
    }
);

// A prefix is a range of keys, not a LIKE pattern: `%` and `_` in it match only themselves.
both_backends!(
    a_prefix_with_like_wildcards_matches_only_itself,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let files = collection("files");
        for name in [
            "a%",
            "a%b1",
            "a%b2",
            "axb",
            "a_c",
            "abc",
            "a%%",
            "b%",
            "a",
            "a\u{10FFFF}x",
        ] {
            store
                .kv_set(writer(shop.id, 0), &files, &key(name), &json!(name))
                .await?;
        }
        assert_eq!(
            all_keys(&store, shop.id, "files", Some("a%"), 2).await?,
            ["a%", "a%%", "a%b1", "a%b2"],
            "'%' is a character of the prefix"
        );
        assert_eq!(
            all_keys(&store, shop.id, "files", Some("a_"), 2).await?,
            ["a_c"],
            "'_' is a character of the prefix"
        );
        assert_eq!(
            all_keys(&store, shop.id, "files", Some("a\u{10FFFF}"), 2).await?,
            ["a\u{10FFFF}x"],
            "a prefix ending in the last code point"
        );
        assert_eq!(
            all_keys(&store, shop.id, "files", Some(""), 100)
                .await?
                .len(),
            10,
            "an empty prefix lists everything"
        );
        assert!(
            all_keys(&store, shop.id, "files", Some("zz"), 10)
                .await?
                .is_empty(),
            "a prefix nothing starts with lists nothing"
        );
        Ok(())
    }
);

both_backends!(a_list_limit_of_zero_means_one_hundred, |store| async move {
    let shop = app(&store, "shop").await?;
    let many = collection("many");
    for i in 0..105 {
        store
            .kv_set(
                writer(shop.id, 0),
                &many,
                &key(&format!("k{i:03}")),
                &json!(i),
            )
            .await?;
    }
    let first = store.kv_list(shop.id, &many, &list(None, 0, None)).await?;
    assert_eq!(first.items.len(), 100, "the default page holds 100");
    let rest = store
        .kv_list(shop.id, &many, &list(None, 0, first.next_cursor))
        .await?;
    assert_eq!(rest.items.len(), 5, "the rest on the next page");
    assert_eq!(
        rest.items[0].0, "k100",
        "the next page starts after the cursor"
    );
    assert_eq!(rest.next_cursor, None, "and it is the last");
    Ok(())
});

both_backends!(
    a_cursor_or_prefix_the_store_cannot_use_is_invalid_input,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let coll = collection("c");
        for cursor in ["not base64!", "bm90LWFuLWlk\u{1}", ""] {
            let result = store
                .kv_list(shop.id, &coll, &list(None, 10, Some(cursor.to_owned())))
                .await;
            let Err(StoreError::InvalidInput(message)) = result else {
                bail!("expected the cursor {cursor:?} to be refused, got {result:?}");
            };
            assert_eq!(
                message, "the cursor is not one this server issued",
                "the message is a sentence"
            );
        }
        let result = store
            .kv_list(shop.id, &coll, &list(Some("a\nb"), 10, None))
            .await;
        assert!(
            matches!(&result, Err(StoreError::InvalidInput(m)) if m.contains("control character")),
            "a prefix no key can have is refused with the reason: {result:?}"
        );
        Ok(())
    }
);

both_backends!(
    a_value_too_large_is_refused_and_nothing_is_stored,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blobs = collection("blobs");
        let big = json!("x".repeat(KV_MAX_VALUE_BYTES));
        let result = store
            .kv_set(writer(shop.id, 0), &blobs, &key("big"), &big)
            .await;
        let Err(StoreError::InvalidInput(message)) = result else {
            bail!("expected a too large value to be refused, got {result:?}");
        };
        assert!(
            message.contains("bytes as JSON") && message.contains("at most"),
            "the message says the size and the limit: {message}"
        );
        assert!(
            !store.kv_has(shop.id, &blobs, &key("big")).await?,
            "nothing was stored"
        );
        let just_fits = json!("x".repeat(KV_MAX_VALUE_BYTES - 2));
        store
            .kv_set(writer(shop.id, 0), &blobs, &key("fits"), &just_fits)
            .await
            .context("a value of exactly the limit is stored")?;
        assert_eq!(
            store.kv_get(shop.id, &blobs, &key("fits")).await?,
            Some(just_fits),
            "and reads back whole"
        );
        Ok(())
    }
);

// Every KV call is scoped by the app; the same collection and key in two apps are two entries.
both_backends!(kv_entries_never_cross_apps, |store| async move {
    let shop = app(&store, "shop").await?;
    let blog = app(&store, "blog").await?;
    let users = collection("users");
    store
        .kv_set(writer(shop.id, 0), &users, &key("u1"), &json!("shop's"))
        .await?;
    store
        .kv_set(writer(blog.id, 0), &users, &key("u1"), &json!("blog's"))
        .await?;
    store
        .kv_set(writer(blog.id, 0), &users, &key("u2"), &json!("blog only"))
        .await?;
    assert_eq!(
        store.kv_get(shop.id, &users, &key("u1")).await?,
        Some(json!("shop's")),
        "each app reads its own value"
    );
    assert_eq!(
        store.kv_get(shop.id, &users, &key("u2")).await?,
        None,
        "another app's key is not there"
    );
    assert_eq!(
        all_keys(&store, shop.id, "users", None, 10).await?,
        ["u1"],
        "a list shows only the app's keys"
    );
    store
        .kv_delete(writer(blog.id, 0), &users, &key("u1"))
        .await?;
    assert_eq!(
        store.kv_get(shop.id, &users, &key("u1")).await?,
        Some(json!("shop's")),
        "a delete in one app leaves the other's entry"
    );
    Ok(())
});

both_backends!(
    a_kv_write_for_an_app_that_is_gone_is_not_found,
    |store| async move {
        let result = store
            .kv_set(
                writer(AppId::new(), 0),
                &collection("c"),
                &key("k"),
                &json!(1),
            )
            .await;
        assert!(
            matches!(result, Err(StoreError::NotFound("app"))),
            "NotFound(\"app\"), got {result:?}"
        );
        Ok(())
    }
);

// ---------------------------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// KV writes that fire triggers
// ---------------------------------------------------------------------------------------------

both_backends!(
    a_matching_set_enqueues_one_job_carrying_the_event_one_level_deeper,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-user").await?;
        kv_trigger(&store, &handler, "users", Some("u:"), &[KvOp::Set]).await?;
        let users = collection("users");

        let written = store
            .kv_set(writer(shop.id, 2), &users, &key("u:1"), &json!({"n": 1}))
            .await?;
        assert_eq!(written.jobs_enqueued, 1, "one trigger, one job");
        assert_eq!(depth(&store).await?, depth_of(1, 0), "one pending job");

        let jobs = claim(&store, "worker", 10).await?;
        assert_eq!(jobs.len(), 1, "exactly one job to claim");
        let job = &jobs[0];
        assert_eq!(job.app_id, shop.id, "the writer's app");
        assert_eq!(job.script_id, handler.id, "the trigger's script");
        assert_eq!(job.mode, JobMode::Async, "triggered jobs are async");
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
            .kv_set(writer(shop.id, 0), &users, &key("u:1"), &json!({"n": 2}))
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
                .kv_set(writer(app_id, 0), &collection(name), &key(k), &json!(1))
                .await?;
            assert_eq!(written.jobs_enqueued, 0, "{what}: no job");
        }
        store
            .kv_set(writer(shop.id, 0), &users, &key("u:2"), &json!(1))
            .await?;
        claim(&store, "worker", 10).await?;
        let deleted = store
            .kv_delete(writer(shop.id, 0), &users, &key("u:2"))
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
            .kv_set(writer(shop.id, 0), &carts, &key("c1"), &json!([1, 2]))
            .await?;
        assert_eq!(
            set.jobs_enqueued, 1,
            "only the set-and-delete trigger fires on a set"
        );
        claim(&store, "worker", 10).await?;

        let missing = store
            .kv_delete(writer(shop.id, 0), &carts, &key("nope"))
            .await?;
        assert_eq!(
            missing.jobs_enqueued, 0,
            "deleting a missing key fires nothing"
        );
        assert_eq!(depth(&store).await?.pending, 0, "nothing pending");

        let deleted = store
            .kv_delete(writer(shop.id, 4), &carts, &key("c1"))
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

// ---------------------------------------------------------------------------------------------
// Concurrent KV writes (on SQLite, the ones that arrive together share one commit)
// ---------------------------------------------------------------------------------------------

/// One of the KV writes [`write_concurrently`] runs: `(app, collection, key)` and what to do.
#[derive(Debug, Clone)]
enum KvWriteCase {
    Set(AppId, &'static str, String, serde_json::Value),
    Delete(AppId, &'static str, String),
}

/// Runs every write at once, each on a task of its own; the answers come in the order of
/// `writes`.
async fn write_concurrently(
    store: &Arc<dyn Store>,
    writes: Vec<KvWriteCase>,
) -> anyhow::Result<Vec<Result<KvWritten, StoreError>>> {
    let mut tasks = tokio::task::JoinSet::new();
    for (i, write) in writes.into_iter().enumerate() {
        let store = Arc::clone(store);
        tasks.spawn(async move {
            let answer = match write {
                KvWriteCase::Set(app_id, name, k, value) => {
                    store
                        .kv_set(writer(app_id, 0), &collection(name), &key(&k), &value)
                        .await
                }
                KvWriteCase::Delete(app_id, name, k) => {
                    store
                        .kv_delete(writer(app_id, 0), &collection(name), &key(&k))
                        .await
                }
            };
            (i, answer)
        });
    }
    let mut answers = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        answers.push(joined.context("a writer task panicked")?);
    }
    answers.sort_by_key(|(i, _)| *i);
    Ok(answers.into_iter().map(|(_, answer)| answer).collect())
}

/// Every job in the outbox, claimed.
async fn claim_all(store: &Arc<dyn Store>) -> anyhow::Result<Vec<ClaimedJob>> {
    let mut jobs = Vec::new();
    loop {
        let claimed = claim(store, "worker", 100).await?;
        if claimed.is_empty() {
            return Ok(jobs);
        }
        jobs.extend(claimed);
    }
}

// However the writes to one key are grouped into transactions, each must replace exactly the
// value before it, as if they had run one after another.
both_backends!(
    concurrent_sets_of_a_key_form_one_serial_history_and_fire_each_trigger_once,
    |store| async move {
        const WRITES: u64 = 200;
        const KEYS: u64 = 5;
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-count").await?;
        kv_trigger(&store, &handler, "counts", None, &[KvOp::Set]).await?;
        let writes = (0..WRITES)
            .map(|i| KvWriteCase::Set(shop.id, "counts", format!("k{}", i % KEYS), json!(i)))
            .collect();
        let answers = write_concurrently(&store, writes).await?;

        // The value each write replaced, by the value it wrote (values are unique).
        let mut replaced: HashMap<u64, Option<serde_json::Value>> = HashMap::new();
        for (i, answer) in (0..WRITES).zip(answers) {
            let written = answer.with_context(|| format!("write {i} succeeds"))?;
            ensure!(
                written.jobs_enqueued == 1,
                "write {i} fires the trigger once"
            );
            replaced.insert(i, written.prev_value);
        }
        for k in 0..KEYS {
            let name = format!("k{k}");
            // The write that replaced each value: `None` for the one that created the entry.
            let mut next: HashMap<Option<u64>, u64> = HashMap::new();
            for i in (0..WRITES).filter(|i| i % KEYS == k) {
                let prev = replaced[&i]
                    .as_ref()
                    .map(|prev| prev.as_u64().context("a number"));
                let prev = prev.transpose()?;
                if let Some(other) = next.insert(prev, i) {
                    bail!("writes {other} and {i} of {name} both replaced {prev:?}");
                }
            }
            let mut last = None;
            let mut walked = 0;
            while let Some(&i) = next.get(&last) {
                ensure!(walked < WRITES / KEYS, "the history of {name} loops");
                last = Some(i);
                walked += 1;
            }
            assert_eq!(
                walked,
                WRITES / KEYS,
                "every write of {name} is in one history that starts with the entry's creation"
            );
            let stored = store
                .kv_get(shop.id, &collection("counts"), &key(&name))
                .await?;
            assert_eq!(
                stored,
                last.map(|i| json!(i)),
                "{name} holds the last value of its history"
            );
        }

        let jobs = claim_all(&store).await?;
        assert_eq!(jobs.len(), WRITES as usize, "one job per write");
        let mut fired = HashSet::new();
        for job in &jobs {
            let event = kv_event(job)?;
            let i = event
                .value
                .as_ref()
                .and_then(serde_json::Value::as_u64)
                .context("a set's event carries its value")?;
            ensure!(fired.insert(i), "write {i} fired twice");
            assert_eq!(
                event.key,
                format!("k{}", i % KEYS),
                "write {i}'s event names its key"
            );
            assert_eq!(
                event.prev_value, replaced[&i],
                "write {i}'s event carries the value it replaced"
            );
        }
        Ok(())
    }
);

both_backends!(
    a_write_for_an_app_that_is_gone_fails_alone_among_concurrent_writes,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let gone = app(&store, "gone").await?;
        store.delete_app(gone.id).await?;
        let mut writes: Vec<KvWriteCase> = (0..30)
            .map(|i| KvWriteCase::Set(shop.id, "c", format!("k{i}"), json!(i)))
            .collect();
        writes.insert(
            15,
            KvWriteCase::Set(gone.id, "c", "k".to_owned(), json!("lost")),
        );
        let answers = write_concurrently(&store, writes).await?;

        for (i, answer) in answers.iter().enumerate() {
            if i == 15 {
                assert!(
                    matches!(answer, Err(StoreError::NotFound("app"))),
                    "the write for the app that is gone is refused: {answer:?}"
                );
            } else {
                assert!(
                    matches!(answer, Ok(written) if written.prev_value.is_none()),
                    "write {i} creates its entry: {answer:?}"
                );
            }
        }
        assert_eq!(
            all_keys(&store, shop.id, "c", None, 100).await?.len(),
            30,
            "every other write is stored"
        );
        assert_eq!(
            store.kv_get(gone.id, &collection("c"), &key("k")).await?,
            None,
            "nothing is stored for the app that is gone"
        );
        Ok(())
    }
);

both_backends!(
    concurrent_deletes_and_sets_each_see_the_state_before_them,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-cart").await?;
        kv_trigger(&store, &handler, "carts", None, &KvOp::ALL).await?;
        let carts = collection("carts");
        for i in 0..10 {
            store
                .kv_set(
                    writer(shop.id, 0),
                    &carts,
                    &key(&format!("d{i}")),
                    &json!(i),
                )
                .await?;
        }
        store
            .kv_set(writer(shop.id, 0), &carts, &key("x"), &json!("before"))
            .await?;
        assert_eq!(claim_all(&store).await?.len(), 11, "the setup's own jobs");

        let mut writes = Vec::new();
        for i in 0..10 {
            writes.push(KvWriteCase::Delete(shop.id, "carts", format!("d{i}")));
            writes.push(KvWriteCase::Set(
                shop.id,
                "carts",
                format!("s{i}"),
                json!(i),
            ));
            writes.push(KvWriteCase::Delete(shop.id, "carts", format!("none{i}")));
        }
        writes.push(KvWriteCase::Set(
            shop.id,
            "carts",
            "x".to_owned(),
            json!("after"),
        ));
        writes.push(KvWriteCase::Delete(shop.id, "carts", "x".to_owned()));
        let answers = write_concurrently(&store, writes).await?;

        for (i, chunk) in answers[..30].chunks(3).enumerate() {
            let [deleted, set, missing] = chunk else {
                bail!("three writes per entry");
            };
            let deleted = deleted.as_ref().map_err(|err| anyhow::anyhow!("{err}"))?;
            assert_eq!(
                deleted.prev_value,
                Some(json!(i)),
                "d{i}'s delete removes its value"
            );
            assert_eq!(deleted.jobs_enqueued, 1, "d{i}'s delete fires");
            let set = set.as_ref().map_err(|err| anyhow::anyhow!("{err}"))?;
            assert_eq!(set.prev_value, None, "s{i}'s set creates it");
            assert_eq!(set.jobs_enqueued, 1, "s{i}'s set fires");
            let missing = missing.as_ref().map_err(|err| anyhow::anyhow!("{err}"))?;
            assert_eq!(
                (missing.prev_value.clone(), missing.jobs_enqueued),
                (None, 0),
                "deleting none{i}, which never existed, does nothing"
            );
        }
        let set_x = answers[30]
            .as_ref()
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        let delete_x = answers[31]
            .as_ref()
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        let stored_x = store.kv_get(shop.id, &carts, &key("x")).await?;
        let set_first = (
            set_x.prev_value.clone(),
            delete_x.prev_value.clone(),
            stored_x.clone(),
        ) == (Some(json!("before")), Some(json!("after")), None);
        let delete_first = (
            delete_x.prev_value.clone(),
            set_x.prev_value.clone(),
            stored_x.clone(),
        ) == (Some(json!("before")), None, Some(json!("after")));
        assert!(
            set_first || delete_first,
            "the set and the delete of x ran in one order or the other: set saw {:?}, \
             delete saw {:?}, x holds {stored_x:?}",
            set_x.prev_value,
            delete_x.prev_value
        );

        for i in 0..10 {
            assert_eq!(
                store
                    .kv_get(shop.id, &carts, &key(&format!("d{i}")))
                    .await?,
                None,
                "d{i} is deleted"
            );
            assert_eq!(
                store
                    .kv_get(shop.id, &carts, &key(&format!("s{i}")))
                    .await?,
                Some(json!(i)),
                "s{i} is set"
            );
        }
        assert_eq!(
            claim_all(&store).await?.len(),
            22,
            "one job per delete and set that wrote: 10 + 10 + x's two"
        );
        Ok(())
    }
);

// ---------------------------------------------------------------------------------------------
// The outbox
// ---------------------------------------------------------------------------------------------

// The sync path: the row is inserted already claimed, so no claim write, and no other claimer
// takes it while its lease holds.
both_backends!(
    a_job_inserted_claimed_is_running_and_not_claimed_again,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let mut job = http_job(&script, "/sync");
        job.mode = JobMode::Sync;
        job.claimed = Some(Lease {
            owner: "node-a".to_owned(),
            lease_ms: LEASE_MS,
        });
        let id = job.id;
        store
            .commit_outbox(&OutboxBatch {
                enqueue: vec![job],
                finished: Vec::new(),
                durable: false,
            })
            .await?;
        assert_eq!(depth(&store).await?, depth_of(0, 1), "running at once");
        assert!(
            claim(&store, "node-b", 10).await?.is_empty(),
            "a held lease is not claimed"
        );
        assert_eq!(
            store
                .extend_leases("node-a", &[JobAttempt { id, attempt: 1 }], LEASE_MS)
                .await?,
            1,
            "its owner holds attempt 1"
        );
        finish(&store, vec![JobAttempt { id, attempt: 1 }]).await?;
        assert_eq!(
            depth(&store).await?,
            depth_of(0, 0),
            "a finished attempt is deleted"
        );
        Ok(())
    }
);

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
            store.extend_leases("paused", &[old], LEASE_MS).await?,
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
            !store.abandon_job(old, "late").await?,
            "a stale abandon is fenced"
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
                .extend_leases("intruder", &[attempt], LEASE_MS)
                .await?,
            0,
            "only the owner extends"
        );
        assert_eq!(
            store.extend_leases("owner", &[attempt], LEASE_MS).await?,
            1,
            "the owner extends its lease"
        );
        assert_eq!(
            store.extend_leases("owner", &[], LEASE_MS).await?,
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
    an_abandoned_sync_job_leaves_a_record_instead,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let script = endpoint(&store, shop.id, "api").await?;
        let mut job = http_job(&script, "/slow");
        job.mode = JobMode::Sync;
        job.claimed = Some(Lease {
            owner: "node".to_owned(),
            lease_ms: LEASE_MS,
        });
        let attempt = JobAttempt {
            id: job.id,
            attempt: 1,
        };
        enqueue(&store, vec![job]).await?;
        assert!(
            store.abandon_job(attempt, "the caller had gone").await?,
            "abandoned"
        );
        assert_eq!(depth(&store).await?, depth_of(0, 0), "the job is gone");
        assert!(
            !store.abandon_job(attempt, "again").await?,
            "a second abandon finds nothing"
        );
        let listed = store
            .list_abandoned_executions(shop.id, &PageRequest::default())
            .await?;
        assert_eq!(listed.items.len(), 1, "one record");
        let record = &listed.items[0];
        assert_eq!(record.execution_id, attempt.id, "of the execution");
        assert_eq!(record.script_id, script.id, "its script");
        assert_eq!(record.app_id, shop.id, "its app");
        assert_eq!(record.reason, "the caller had gone", "with the reason");
        let blog = app(&store, "blog").await?;
        assert!(
            store
                .list_abandoned_executions(blog.id, &PageRequest::default())
                .await?
                .items
                .is_empty(),
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
        for i in 0..3 {
            let job = http_job(&script, &format!("/{i}"));
            ids.push(job.id);
            enqueue(&store, vec![job]).await?;
        }
        for job in claim(&store, "w", 10).await? {
            store.abandon_job(job.attempt_ref(), "gone").await?;
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

// ---------------------------------------------------------------------------------------------
// Dead letters
// ---------------------------------------------------------------------------------------------

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
            assert_eq!(job.mode, JobMode::Async, "async");
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
    assert_eq!(job.mode, JobMode::Async, "async");
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
        let mut old_sync = http_job(&script, "/old");
        old_sync.mode = JobMode::Sync;
        let old_attempt = JobAttempt {
            id: old_sync.id,
            attempt: 1,
        };
        old_sync.claimed = Some(Lease {
            owner: "n".to_owned(),
            lease_ms: LEASE_MS,
        });
        enqueue(&store, vec![old_sync]).await?;
        store.abandon_job(old_attempt, "gone").await?;
        let older = dead_letter(&store, &script, "older still").await?;

        tokio::time::sleep(Duration::from_millis(400)).await;
        let new_dead = dead_letter(&store, &script, "new").await?;
        let mut new_sync = http_job(&script, "/new");
        new_sync.mode = JobMode::Sync;
        let new_attempt = JobAttempt {
            id: new_sync.id,
            attempt: 1,
        };
        new_sync.claimed = Some(Lease {
            owner: "n".to_owned(),
            lease_ms: LEASE_MS,
        });
        enqueue(&store, vec![new_sync]).await?;
        store.abandon_job(new_attempt, "gone").await?;

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
            vec![new_attempt.id],
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

// ---------------------------------------------------------------------------------------------
// Deleting an app, and the routing fingerprint
// ---------------------------------------------------------------------------------------------

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
                writer(shop.id, 0),
                &collection("users"),
                &key("u"),
                &json!(1),
            )
            .await?;
        store
            .kv_set(
                writer(keep.id, 0),
                &collection("users"),
                &key("u"),
                &json!(2),
            )
            .await?;
        let mut sync = http_job(&script, "/s");
        sync.mode = JobMode::Sync;
        let attempt = JobAttempt {
            id: sync.id,
            attempt: 1,
        };
        sync.claimed = Some(Lease {
            owner: "n".to_owned(),
            lease_ms: LEASE_MS,
        });
        enqueue(&store, vec![sync, http_job(&kept_script, "/k")]).await?;
        store.abandon_job(attempt, "gone").await?;
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
            store
                .list_abandoned_executions(shop.id, &PageRequest::default())
                .await?
                .items
                .is_empty(),
            "its abandoned executions"
        );
        assert_eq!(
            depth(&store).await?,
            depth_of(1, 0),
            "its outbox jobs, and only its"
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
            .kv_set(writer(shop.id, 0), &collection("c"), &key("k"), &json!(1))
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

// ---------------------------------------------------------------------------------------------
// The services scripts call
// ---------------------------------------------------------------------------------------------

/// Services over `store` that count their wake-ups.
fn services(store: &Arc<dyn Store>) -> (StoreServices, Arc<AtomicUsize>) {
    let wakes = Arc::new(AtomicUsize::new(0));
    let counter = wakes.clone();
    let services = StoreServices::new(
        store.clone(),
        Arc::new(move || {
            counter.fetch_add(1, Ordering::SeqCst);
        }),
    );
    (services, wakes)
}

both_backends!(
    services_wake_the_dispatcher_only_when_a_write_enqueued_jobs,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "handler").await?;
        kv_trigger(&store, &handler, "watched", None, &KvOp::ALL).await?;
        let (services, wakes) = services(&store);
        let me = writer(shop.id, 0);

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

// ---------------------------------------------------------------------------------------------
// The outbox committer (the recorder's thread writes through it)
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Quotas (#13): stored bytes and queued jobs per app, trigger jobs per execution
// ---------------------------------------------------------------------------------------------

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
            .kv_set(writer(app_id, 0), &collection(name), &key(&k), value)
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
            .kv_set(writer(blog.id, 0), &collection("notes"), &key("k0"), &value)
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
            .kv_set(writer(shop.id, 0), &collection("notes"), &key("k0"), &small)
            .await
            .context("an overwrite that shrinks passes at the quota")?;
        let shrunk = usage(&store, shop.id).await?.kv_bytes;
        ensure!(
            shrunk == before - entry_size("notes", "k0", &big) + entry_size("notes", "k0", &small),
            "the overwrite counts the difference: {before} → {shrunk}"
        );
        let grown = json!("z".repeat(3_000));
        let refused = store
            .kv_set(writer(shop.id, 0), &collection("notes"), &key("k1"), &grown)
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
            .kv_delete(writer(shop.id, 0), &collection("notes"), &key("k1"))
            .await
            .context("a delete passes at the quota")?;
        ensure!(deleted.prev_value == Some(big.clone()), "the entry was deleted");
        ensure!(
            usage(&store, shop.id).await?.kv_bytes == shrunk - entry_size("notes", "k1", &big),
            "the delete frees the entry's bytes"
        );
        let again = format!("k{}", written.len());
        store
            .kv_set(writer(shop.id, 0), &collection("notes"), &key(&again), &big)
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
                            .kv_delete(writer(shop.id, 0), &collection(name), &key(&k))
                            .await?;
                    } else {
                        store
                            .kv_set(writer(shop.id, 0), &collection(name), &key(&k), &value)
                            .await?;
                    }
                }
            }
            store
                .kv_delete(writer(shop.id, 0), &collection("a"), &key("never-there"))
                .await?;
            store
                .kv_set(
                    writer(blog.id, 0),
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
        let budget = |left| Writer {
            trigger_jobs_left: left,
            ..writer(shop.id, 0)
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
            .kv_set(writer(shop.id, 0), &collection("quiet"), &key("k"), &json!(1))
            .await
            .context("a write that fires nothing passes")?;
        store
            .kv_delete(writer(shop.id, 0), &collection("watched"), &key("k0"))
            .await
            .context("a delete that fires nothing passes")?;
        let blog = app(&store, "blog").await?;
        let blog_handler = endpoint(&store, blog.id, "on-set").await?;
        kv_trigger(&store, &blog_handler, "watched", None, &[KvOp::Set]).await?;
        store
            .kv_set(writer(blog.id, 0), &collection("watched"), &key("k"), &json!(1))
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
                .kv_set(writer(shop.id, 0), &collection("watched"), &key(k), &json!(1))
                .await
                .with_context(|| format!("{k} fits in the room the finished jobs left"))?;
        }
        let full = store
            .kv_set(writer(shop.id, 0), &collection("watched"), &key("again-2"), &json!(1))
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
        let sync = NewJob {
            mode: JobMode::Sync,
            claimed: Some(Lease {
                owner: "node".to_owned(),
                lease_ms: LEASE_MS,
            }),
            ..http_job(&work, "/sync")
        };
        enqueue(&store, vec![sync.clone()]).await?;
        queued(2, "a sync request").await?;
        store
            .kv_set(
                writer(shop.id, 0),
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
                .abandon_job(
                    JobAttempt {
                        id: sync.id,
                        attempt: 1
                    },
                    "the caller left"
                )
                .await?,
            "the sync job is abandoned"
        );
        queued(2, "an abandoned sync job").await?;
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

// The services tell a script which refusal it met: a quota of its app (which it may catch and
// handle) or the limit of its execution (which ends it).
both_backends!(
    quotas: SMALL,
    services_tell_a_quota_from_the_executions_limit,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-set").await?;
        kv_trigger(&store, &handler, "watched", None, &[KvOp::Set]).await?;
        let (services, _) = services(&store);
        let none_left = Writer {
            trigger_jobs_left: 0,
            ..writer(shop.id, 0)
        };
        let limit = services
            .kv_set(none_left, &collection("watched"), &key("k"), json!(1))
            .await
            .expect_err("no trigger job left");
        ensure!(
            limit.kind == ServiceErrorKind::TriggerJobLimit,
            "the execution's limit: {limit:?}"
        );
        let quota = services
            .kv_set(
                writer(shop.id, 0),
                &collection("big"),
                &key("k"),
                json!("x".repeat(5_000)),
            )
            .await
            .expect_err("past the stored bytes");
        ensure!(
            quota.kind == ServiceErrorKind::QuotaExceeded && quota.message.contains("quota of 4096"),
            "the app's quota, with its sentence: {quota:?}"
        );
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
            .kv_delete(writer(app_id, 0), &collection("users"), &key("ada"))
            .await?;
        store
            .kv_delete(writer(app_id, 0), &collection("e"), &key("ké"))
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
