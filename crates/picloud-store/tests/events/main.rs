//! The conformance suite of the event side of the store — the KV store, triggers, the outbox,
//! dead letters, abandoned executions and the services scripts call — on SQLite and on
//! PostgreSQL alike (see `picloud_test_support::both_backends!`). One test binary; a module per
//! part, the helpers they share here:
//!
//! | module | part |
//! |---|---|
//! | [`kv`] | the KV store |
//! | [`docs`] | the document store: its filters on both backends against one model, docs triggers |
//! | [`triggers`] | triggers |
//! | [`kv_triggers`] | KV writes that fire triggers |
//! | [`concurrent_writes`] | concurrent KV writes (on SQLite, the ones that arrive together share one commit) |
//! | [`outbox`] | the outbox |
//! | [`dead_letters`] | dead letters |
//! | [`app_deletion`] | deleting an app, and the routing fingerprint |
//! | [`script_services`] | the services scripts call |
//! | [`committer`] | the outbox committer (the recorder's thread writes through it) |
//! | [`quotas`] | quotas (#13): stored bytes and queued jobs per app, trigger jobs per execution |

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, ensure, Context};
use picloud_core::events::{DeadLetterEvent, KvEvent, KV_MAX_VALUE_BYTES};
use picloud_core::exec::HttpRequest;
use picloud_core::services::{KvListRequest, WriteOrigin};
use picloud_core::{
    AppId, AppName, CollectionName, DeadLetter, DeadLetterId, DispatchMode, ExecutionId,
    JobPayload, KeptHeaders, KvKey, KvOp, Resolution, RouteMethod, RoutePath, Script, ScriptId,
    ScriptServices, ServiceErrorKind, TriggerDetail, TriggerEvent,
};
use picloud_store::{
    AbandonedExecution, AppPatch, AppQuotas, AppUsage, ClaimedJob, DeadLetterFilter,
    DeadLetterStatus, JobAttempt, KvWritten, Lease, NewJob, NewRoute, NewTrigger, Notice,
    OutboxBatch, OutboxCommitter, OutboxDepth, OverLimit, PageRequest, RunCommit, RunVerdict,
    ScriptPatch, Store, StoreError, StoreServices, SyncRequest, KV_ENTRY_OVERHEAD,
};
use picloud_test_support::fixtures::{app, conflict, endpoint, page};
use picloud_test_support::{both_backends, fresh_store, Backend, TestDatabase};
use serde_json::json;
use sqlx::{Connection, PgConnection};

mod app_deletion;
mod committer;
mod concurrent_writes;
mod dead_letters;
mod docs;
mod kv;
mod kv_triggers;
mod outbox;
mod quotas;
mod script_services;
mod transactions;
mod triggers;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A long lease: nothing expires while a test runs unless it asks for a short one.
const LEASE_MS: i64 = 60_000;

fn collection(name: &str) -> CollectionName {
    CollectionName::parse(name).expect("a valid collection name")
}

fn key(value: &str) -> KvKey {
    KvKey::parse(value).expect("a valid key")
}

/// A writer with room for every trigger job a test fires.
fn origin(app_id: AppId, trigger_depth: u32) -> WriteOrigin {
    WriteOrigin {
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
        payload: http_payload(path),
        trigger_depth: 0,
    }
}

/// Commits `jobs` durably.
async fn enqueue(store: &Arc<dyn Store>, jobs: Vec<NewJob>) -> anyhow::Result<()> {
    store
        .commit_outbox(&OutboxBatch {
            enqueue: jobs,
            finished: Vec::new(),
            durable: true,
            ..OutboxBatch::default()
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
            ..OutboxBatch::default()
        })
        .await?;
    Ok(())
}

/// Records a sync request of `script` that `owner` serves under a lease of `lease_ms`.
async fn serve(
    store: &Arc<dyn Store>,
    script: &Script,
    owner: &str,
    lease_ms: i64,
) -> anyhow::Result<ExecutionId> {
    let id = ExecutionId::new();
    store
        .commit_outbox(&OutboxBatch {
            serving: vec![SyncRequest {
                id,
                app_id: script.app_id,
                script_id: script.id,
                lease: Lease {
                    owner: owner.to_owned(),
                    lease_ms,
                },
            }],
            ..OutboxBatch::default()
        })
        .await?;
    Ok(id)
}

/// Deletes the records of answered sync requests.
async fn answer(store: &Arc<dyn Store>, served: Vec<ExecutionId>) -> anyhow::Result<()> {
    store
        .commit_outbox(&OutboxBatch {
            served,
            ..OutboxBatch::default()
        })
        .await?;
    Ok(())
}

/// The app's records of abandoned executions (its first page), newest first.
async fn abandoned(
    store: &Arc<dyn Store>,
    app_id: AppId,
) -> anyhow::Result<Vec<AbandonedExecution>> {
    Ok(store
        .list_abandoned_executions(app_id, &PageRequest::default())
        .await?
        .items)
}

/// Whether `owner` holds the sync request `id` (extending its lease tells).
async fn holds(store: &Arc<dyn Store>, owner: &str, id: ExecutionId) -> anyhow::Result<bool> {
    Ok(store.extend_leases(owner, &[], &[id], LEASE_MS).await? == 1)
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
                        .kv_set(origin(app_id, 0), &collection(name), &key(&k), &value)
                        .await
                }
                KvWriteCase::Delete(app_id, name, k) => {
                    store
                        .kv_delete(origin(app_id, 0), &collection(name), &key(&k))
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

/// What scripts read of `store`.
fn services(store: &Arc<dyn Store>) -> StoreServices {
    StoreServices::new(
        store.clone(),
        picloud_core::Limits::default().max_memory_bytes,
    )
}
