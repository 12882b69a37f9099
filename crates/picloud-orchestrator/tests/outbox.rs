//! The outbox and the dispatcher on both backends, in one process: sync requests recorded and
//! answered, async routes accepted and run, retries with backoff, dead letters and their triggers,
//! the recursion stop, the trigger-depth limit, replay and resolve, abandoned sync executions,
//! an app's quota of queued jobs.
//! (Crashes, outages and several nodes cross processes: `crates/picloud/tests/`.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::exec::HttpRequest;
use picloud_core::services::WriteOrigin;
use picloud_core::{
    AppId, CollectionName, DeadLetter, DispatchMode, ExecutionId, JobPayload, KvKey, Principal,
    Resolution, ScriptKind,
};
use picloud_orchestrator::{
    DeadLetterFilter, DeadLetterStatus, DispatchConfig, InvokeError, JobConfig, NewKvTriggerInput,
    PageRequest, Platform, PlatformConfig,
};
use picloud_store::{AppQuotas, NewJob, OutboxBatch, Store};
use picloud_test_support::both_backends;
use picloud_test_support::eventually;
use picloud_test_support::platform::{
    admin, app_with_script, deploy, kv, request, route, script, start, start_with,
};
use serde_json::json;

/// Settings sized for tests: quick retries, a short lease and poll.
fn quick() -> PlatformConfig {
    PlatformConfig {
        jobs: JobConfig {
            retry_max_attempts: 3,
            retry_base_ms: 50,
            retry_max_ms: 200,
            max_trigger_depth: 3,
        },
        dispatch: DispatchConfig {
            lease_ms: 2_000,
            poll_ms: 50,
            ..DispatchConfig::default()
        },
        ..PlatformConfig::default()
    }
}

async fn dead_letters(
    platform: &Platform,
    actor: &Principal,
    app_id: AppId,
    status: DeadLetterStatus,
) -> Vec<DeadLetter> {
    platform
        .dead_letters()
        .list(
            actor,
            app_id,
            &DeadLetterFilter {
                status,
                script_id: None,
            },
            &PageRequest::default(),
        )
        .await
        .expect("the dead letters")
        .items
}

// A sync request is recorded in the outbox and answered; its row is gone once it finished.
both_backends!(
    a_sync_request_goes_through_the_outbox_and_leaves_no_row,
    |store| async move {
        let platform = start(store.clone()).await;
        let actor = admin(&platform).await;
        deploy(
            &platform,
            &actor,
            "echo",
            "#{ got: ctx.request.json.n }",
            DispatchMode::Sync,
        )
        .await;
        for n in 0..20 {
            let answer = platform
                .invoke(request("echo", "POST", "/run", json!({"n": n})))
                .await
                .expect("an answer");
            assert_eq!(answer.response.status, 200, "request {n} is answered");
        }
        eventually(
            "the finished rows are deleted",
            Duration::from_secs(5),
            || {
                let store = store.clone();
                async move {
                    let depth = store.outbox_depth().await.expect("the depth");
                    (depth.pending + depth.running == 0).then_some(())
                }
            },
        )
        .await;
        assert_eq!(
            platform.dispatcher().inbox().open_count(),
            0,
            "no inbox is left open"
        );
        platform.shutdown().await;
    }
);

// An async route answers 202 with the execution id, and the dispatcher runs the job.
both_backends!(
    an_async_route_accepts_at_once_and_the_job_runs,
    |store| async move {
        let platform = start_with(store.clone(), quick()).await;
        let actor = admin(&platform).await;
        let app_id = deploy(
            &platform,
            &actor,
            "jobs",
            r#"kv::collection("done").set(ctx.execution_id, ctx.request.json); ()"#,
            DispatchMode::Async,
        )
        .await;
        let answer = platform
            .invoke(request("jobs", "POST", "/run", json!({"n": 7})))
            .await
            .expect("accepted");
        assert_eq!(answer.response.status, 202, "accepted");
        let id = answer.execution_id.to_string();
        let picloud_core::exec::ResponseBody::Json(body) = &answer.response.body else {
            panic!("a JSON body: {:?}", answer.response.body);
        };
        assert_eq!(
            body["execution_id"],
            id.as_str(),
            "the body names the execution"
        );
        let stored = eventually("the job runs", Duration::from_secs(10), || {
            let store = store.clone();
            let id = id.clone();
            async move { kv(&store, app_id, "done", &id).await }
        })
        .await;
        assert_eq!(stored, json!({"n": 7}), "the job saw the request body");
        platform.shutdown().await;
    }
);

// A job that always fails is retried with growing delays, then dead-lettered with its attempts.
both_backends!(
    a_failing_job_is_retried_with_backoff_then_dead_lettered,
    |store| async move {
        let platform = start_with(store.clone(), quick()).await;
        let actor = admin(&platform).await;
        let app_id = deploy(
            &platform,
            &actor,
            "flaky",
            r#"throw "always""#,
            DispatchMode::Async,
        )
        .await;
        let started = Instant::now();
        platform
            .invoke(request("flaky", "POST", "/run", json!({"n": 1})))
            .await
            .expect("accepted");
        let dead = eventually("the job is dead-lettered", Duration::from_secs(10), || {
            let platform = platform.clone();
            let actor = actor.clone();
            async move {
                let dead =
                    dead_letters(&platform, &actor, app_id, DeadLetterStatus::Unresolved).await;
                dead.into_iter().next()
            }
        })
        .await;
        let elapsed = started.elapsed();
        assert_eq!(dead.attempts, 3, "every attempt was made: {dead:?}");
        assert!(
            dead.error.contains("always"),
            "the error is kept: {}",
            dead.error
        );
        assert!(
            elapsed >= Duration::from_millis(120),
            "two backoff delays (~50 + ~100 ms, ±20 %) passed before the dead letter: {elapsed:?}"
        );
        assert_eq!(dead.source, "http", "an HTTP job");
        platform.shutdown().await;
    }
);

// A dead-letter trigger runs its handler with the dead letter in ctx.event; resolving and
// replaying close the dead letter.
both_backends!(
    a_dead_letter_fires_its_trigger_and_can_be_replayed_or_resolved,
    |store| async move {
        let platform = start_with(store.clone(), quick()).await;
        let actor = admin(&platform).await;
        // Fails until the flag is set; then records its success.
        let app_id = deploy(
            &platform,
            &actor,
            "dl",
            r#"
                let flags = kv::collection("flags");
                if flags.get("fixed") != true { throw "not yet"; }
                flags.set("ran", ctx.request.json.n);
                ()
            "#,
            DispatchMode::Async,
        )
        .await;
        let handler = platform
            .scripts()
            .create(
                &actor,
                app_id,
                script(
                    "on_dead",
                    ScriptKind::Endpoint,
                    r#"kv::collection("seen").set(ctx.event.dead_letter.id, ctx.event); ()"#,
                ),
            )
            .await
            .expect("the handler");
        platform
            .triggers()
            .create_dead_letter(&actor, app_id, handler.id)
            .await
            .expect("the dead-letter trigger");
        for n in [1, 2] {
            platform
                .invoke(request("dl", "POST", "/run", json!({"n": n})))
                .await
                .expect("accepted");
        }
        let dead = eventually(
            "both jobs are dead-lettered",
            Duration::from_secs(10),
            || {
                let platform = platform.clone();
                let actor = actor.clone();
                async move {
                    let dead =
                        dead_letters(&platform, &actor, app_id, DeadLetterStatus::Unresolved).await;
                    (dead.len() == 2).then_some(dead)
                }
            },
        )
        .await;
        for letter in &dead {
            let event = eventually(
                "the handler sees the dead letter",
                Duration::from_secs(10),
                || {
                    let store = store.clone();
                    let id = letter.id.to_string();
                    async move { kv(&store, app_id, "seen", &id).await }
                },
            )
            .await;
            assert_eq!(
                event["source"], "dead_letter",
                "the event's source: {event}"
            );
            assert_eq!(event["dead_letter"]["attempts"], 3, "the attempts: {event}");
            assert!(
                event["dead_letter"]["error"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("not yet"),
                "the error: {event}"
            );
        }
        store
            .kv_set(
                WriteOrigin {
                    app_id,
                    trigger_depth: 0,
                    trigger_jobs_left: 0,
                },
                &CollectionName::parse("flags").expect("a collection"),
                &KvKey::parse("fixed").expect("a key"),
                &json!(true),
            )
            .await
            .expect("the flag is set");
        let replayed = platform
            .dead_letters()
            .replay(&actor, dead[0].id)
            .await
            .expect("replayed");
        assert_eq!(
            replayed.dead_letter.resolution,
            Some(Resolution::Replayed),
            "the dead letter is closed as replayed"
        );
        let ran = eventually("the replayed job succeeds", Duration::from_secs(10), || {
            let store = store.clone();
            async move { kv(&store, app_id, "flags", "ran").await }
        })
        .await;
        assert!(
            ran == json!(1) || ran == json!(2),
            "the replay ran the original request: {ran}"
        );
        let resolved = platform
            .dead_letters()
            .resolve(&actor, dead[1].id)
            .await
            .expect("resolved");
        assert_eq!(
            resolved.resolution,
            Some(Resolution::Resolved),
            "closed as resolved"
        );
        let again = platform.dead_letters().resolve(&actor, dead[1].id).await;
        assert!(
            matches!(again, Err(picloud_orchestrator::ServiceError::Conflict(_))),
            "resolving twice is a conflict: {again:?}"
        );
        assert!(
            dead_letters(&platform, &actor, app_id, DeadLetterStatus::Unresolved)
                .await
                .is_empty(),
            "nothing is left unresolved"
        );
        platform.shutdown().await;
    }
);

// The recursion stop: a failing dead-letter handler marks the dead letter handler_failed and
// makes no new dead letter, and is not retried.
both_backends!(
    a_failing_dead_letter_handler_marks_its_dead_letter_and_stops,
    |store| async move {
        let platform = start_with(store.clone(), quick()).await;
        let actor = admin(&platform).await;
        let app_id = deploy(
            &platform,
            &actor,
            "stop",
            r#"throw "job""#,
            DispatchMode::Async,
        )
        .await;
        let handler = platform
            .scripts()
            .create(
                &actor,
                app_id,
                script("bad_handler", ScriptKind::Endpoint, r#"throw "handler""#),
            )
            .await
            .expect("the handler");
        platform
            .triggers()
            .create_dead_letter(&actor, app_id, handler.id)
            .await
            .expect("the trigger");
        platform
            .invoke(request("stop", "POST", "/run", json!({})))
            .await
            .expect("accepted");
        let letter = eventually("the dead letter is marked", Duration::from_secs(10), || {
            let platform = platform.clone();
            let actor = actor.clone();
            async move {
                let all = dead_letters(&platform, &actor, app_id, DeadLetterStatus::All).await;
                all.into_iter()
                    .find(|d| d.resolution == Some(Resolution::HandlerFailed))
            }
        })
        .await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let all = dead_letters(&platform, &actor, app_id, DeadLetterStatus::All).await;
        assert_eq!(
            all.len(),
            1,
            "the handler's failure made no new dead letter: {all:?}"
        );
        assert_eq!(all[0].id, letter.id, "only the original");
        let depth = store.outbox_depth().await.expect("the depth");
        assert_eq!(
            depth.pending + depth.running,
            0,
            "the handler is not retried: {depth:?}"
        );
        platform.shutdown().await;
    }
);

// A trigger whose handler writes what triggers it stops at the depth limit; nothing is
// dead-lettered.
both_backends!(
    the_trigger_depth_limit_stops_a_self_triggering_loop,
    |store| async move {
        let platform = start_with(store.clone(), quick()).await;
        let actor = admin(&platform).await;
        let app_id = deploy(
            &platform,
            &actor,
            "loop",
            r#"
                let c = kv::collection("loop");
                let n = c.get("n");
                c.set("n", if n == () { 1 } else { n + 1 });
                ()
            "#,
            DispatchMode::Sync,
        )
        .await;
        let script_id = platform
            .index()
            .app(app_id)
            .expect("the app is indexed")
            .targets()[0]
            .script
            .id;
        platform
            .triggers()
            .create_kv(
                &actor,
                app_id,
                NewKvTriggerInput {
                    script_id,
                    collection: "loop".into(),
                    key_prefix: None,
                    ops: vec!["set".into()],
                },
            )
            .await
            .expect("the trigger");
        platform
            .invoke(request("loop", "POST", "/run", json!({})))
            .await
            .expect("the first write");
        // Depth 1, 2, 3 run; depth 4 is skipped: 1 (HTTP) + 3 triggered writes.
        eventually("the loop reaches the limit", Duration::from_secs(10), || {
            let store = store.clone();
            async move { (kv(&store, app_id, "loop", "n").await == Some(json!(4))).then_some(()) }
        })
        .await;
        eventually(
            "the skipped job leaves the outbox",
            Duration::from_secs(5),
            || {
                let store = store.clone();
                async move {
                    let depth = store.outbox_depth().await.expect("the depth");
                    (depth.pending + depth.running == 0).then_some(())
                }
            },
        )
        .await;
        assert_eq!(
            kv(&store, app_id, "loop", "n").await,
            Some(json!(4)),
            "the loop stopped"
        );
        assert!(
            dead_letters(&platform, &actor, app_id, DeadLetterStatus::All)
                .await
                .is_empty(),
            "a loop is not a failure: no dead letter"
        );
        platform.shutdown().await;
    }
);

// A caller that stops waiting gets a timeout; the run that finishes later is recorded as
// abandoned.
both_backends!(
    a_sync_run_that_outlives_its_caller_is_recorded_as_abandoned,
    |store| async move {
        let config = PlatformConfig {
            dispatch: DispatchConfig {
                sync_wait_ms: 100,
                ..quick().dispatch
            },
            ..quick()
        };
        let platform = start_with(store.clone(), config).await;
        let actor = admin(&platform).await;
        let app_id = deploy(
            &platform,
            &actor,
            "slow",
            "let x = 0; while x < 300000 { x += 1; } x",
            DispatchMode::Sync,
        )
        .await;
        let err = platform
            .invoke(request("slow", "POST", "/run", json!({})))
            .await
            .expect_err("the caller stops waiting");
        let InvokeError::Failed { error, .. } = &err else {
            panic!("a failed execution, got {err:?}");
        };
        assert_eq!(
            error.kind,
            picloud_core::exec::ExecErrorKind::Timeout,
            "a timeout: {err}"
        );
        let abandoned = eventually(
            "the abandoned run is recorded",
            Duration::from_secs(10),
            || {
                let store = store.clone();
                async move {
                    let page = store
                        .list_abandoned_executions(app_id, &PageRequest::default())
                        .await
                        .expect("the abandoned executions");
                    page.items.into_iter().next()
                }
            },
        )
        .await;
        assert!(
            abandoned.reason.contains("gone"),
            "the reason says the caller had gone: {}",
            abandoned.reason
        );
        platform.shutdown().await;
    }
);

// A KV write that matches a trigger hands the handler the change in ctx.event.
both_backends!(
    a_kv_trigger_hands_its_handler_the_change,
    |store| async move {
        let platform = start_with(store.clone(), quick()).await;
        let actor = admin(&platform).await;
        let app_id = deploy(
            &platform,
            &actor,
            "users",
            r#"kv::collection("users").set("u:" + ctx.request.json.id, ctx.request.json); ()"#,
            DispatchMode::Sync,
        )
        .await;
        let handler = platform
            .scripts()
            .create(
                &actor,
                app_id,
                script(
                    "audit",
                    ScriptKind::Endpoint,
                    r#"kv::collection("audit").set(ctx.event.kv.key, ctx.event); ()"#,
                ),
            )
            .await
            .expect("the handler");
        platform
            .triggers()
            .create_kv(
                &actor,
                app_id,
                NewKvTriggerInput {
                    script_id: handler.id,
                    collection: "users".into(),
                    key_prefix: Some("u:".into()),
                    ops: vec!["set".into()],
                },
            )
            .await
            .expect("the trigger");
        platform
            .invoke(request(
                "users",
                "POST",
                "/run",
                json!({"id": "1", "name": "Ada"}),
            ))
            .await
            .expect("written");
        let event = eventually("the handler ran", Duration::from_secs(10), || {
            let store = store.clone();
            async move { kv(&store, app_id, "audit", "u:1").await }
        })
        .await;
        assert_eq!(
            event,
            json!({"source": "kv", "kv": {
                "collection": "users", "key": "u:1", "op": "set",
                "value": {"id": "1", "name": "Ada"}, "prev_value": null
            }}),
            "the event as the handler saw it"
        );
        platform.shutdown().await;
    }
);

/// A KV trigger on `collection` (sets) whose handler is a new script `name` of `app_id`.
async fn kv_handler(
    platform: &Platform,
    actor: &Principal,
    app_id: AppId,
    name: &str,
    collection: &str,
    source: &str,
) {
    let handler = platform
        .scripts()
        .create(actor, app_id, script(name, ScriptKind::Endpoint, source))
        .await
        .expect("the handler");
    platform
        .triggers()
        .create_kv(
            actor,
            app_id,
            NewKvTriggerInput {
                script_id: handler.id,
                collection: collection.into(),
                key_prefix: None,
                ops: vec!["set".into()],
            },
        )
        .await
        .expect("the trigger");
}

async fn queued_jobs(store: &Arc<dyn Store>, app_id: AppId) -> u64 {
    store
        .app_usage(app_id)
        .await
        .expect("a store answer")
        .expect("the app's usage")
        .queued_jobs
}

// #13: an app may have only so many jobs queued. Past it an async request is refused (never
// recorded and then dropped) and a write that would fire a trigger fails with a sentence the
// script can catch; what was accepted stays queued, and other apps are not held back.
both_backends!(
    quotas: AppQuotas {
        queued_jobs: 3,
        ..AppQuotas::default()
    },
    an_app_with_a_full_queue_refuses_async_requests_and_trigger_writes_and_keeps_what_it_accepted,
    |store| async move {
        // Failed jobs wait a minute before their retry: they stay queued meanwhile.
        let config = PlatformConfig {
            jobs: JobConfig {
                retry_base_ms: 60_000,
                retry_max_ms: 60_000,
                ..quick().jobs
            },
            ..quick()
        };
        let platform = start_with(store.clone(), config).await;
        let actor = admin(&platform).await;
        let app_id = deploy(
            &platform,
            &actor,
            "busy",
            r#"throw "not now""#,
            DispatchMode::Async,
        )
        .await;
        for n in 0..3 {
            let accepted = platform
                .invoke(request("busy", "POST", "/run", json!({ "n": n })))
                .await
                .expect("accepted while there is room");
            assert_eq!(accepted.response.status, 202, "request {n} is accepted");
        }
        let refused = platform
            .invoke(request("busy", "POST", "/run", json!({ "n": 3 })))
            .await;
        let Err(InvokeError::QueueFull(message)) = refused else {
            panic!("the fourth async request is refused: {refused:?}");
        };
        assert!(
            message.contains("the app has 3 queued jobs") && message.contains("limit of 3"),
            "the refusal names the count and the limit: {message}"
        );
        assert_eq!(
            queued_jobs(&store, app_id).await,
            3,
            "the accepted jobs are queued, the refused one is not"
        );

        kv_handler(&platform, &actor, app_id, "on-order", "orders", "()").await;
        let writer = platform
            .scripts()
            .create(
                &actor,
                app_id,
                script(
                    "order",
                    ScriptKind::Endpoint,
                    r#"kv::collection("orders").set("o1", 1); "written""#,
                ),
            )
            .await
            .expect("the writer");
        platform
            .routes()
            .create(&actor, writer.id, route("POST", "/order"))
            .await
            .expect("its route");
        // The quota is checked when the run commits (#15): the run fails whole, with the count
        // and the limit.
        let refused = platform
            .invoke(request("busy", "POST", "/order", json!({})))
            .await;
        let Err(InvokeError::Failed { error, .. }) = refused else {
            panic!("the run is refused: {refused:?}");
        };
        assert!(
            error.kind == picloud_core::exec::ExecErrorKind::LimitExceeded
                && error.message.contains("the app has 3 queued jobs"),
            "the refusal says why: {error:?}"
        );
        assert_eq!(
            kv(&store, app_id, "orders", "o1").await,
            None,
            "the refused write was not applied"
        );

        let other = deploy(&platform, &actor, "other", "()", DispatchMode::Async).await;
        let accepted = platform
            .invoke(request("other", "POST", "/run", json!({})))
            .await
            .expect("another app's queue is its own");
        assert_eq!(accepted.response.status, 202, "accepted");
        assert!(queued_jobs(&store, other).await <= 1, "counted for that app");
        platform.shutdown().await;
    }
);

// #13: a KV trigger whose handler writes 4 keys of its own collection produced 87,380 jobs in
// 22 s. With a queue of 40 jobs the fan-out is held to 40 queued at any time (counted rows, not
// only the count); the writes the quota refuses fail their runs with a sentence naming it, and
// those end as dead letters, not silently.
both_backends!(
    quotas: AppQuotas {
        queued_jobs: 40,
        ..AppQuotas::default()
    },
    the_fan_out_of_a_self_writing_trigger_is_held_to_the_apps_queue,
    |store| async move {
        let config = PlatformConfig {
            jobs: JobConfig {
                max_trigger_depth: 5,
                ..quick().jobs
            },
            ..quick()
        };
        let platform = start_with(store.clone(), config).await;
        let actor = admin(&platform).await;
        let app_id = deploy(
            &platform,
            &actor,
            "fan",
            r#"kv::collection("fan").set("s", 0); ()"#,
            DispatchMode::Sync,
        )
        .await;
        kv_handler(
            &platform,
            &actor,
            app_id,
            "spread",
            "fan",
            r#"
                let fan = kv::collection("fan");
                for i in 0..4 { fan.set(`${ctx.event.kv.key}.${i}`, i); }
                ()
            "#,
        )
        .await;
        platform
            .invoke(request("fan", "POST", "/run", json!({})))
            .await
            .expect("the seed is written");
        let started = Instant::now();
        let (mut most_counted, mut most_rows) = (0, 0);
        loop {
            let depth = store.outbox_depth().await.expect("the depth");
            let rows = depth.pending + depth.running;
            let counted = queued_jobs(&store, app_id).await;
            most_counted = most_counted.max(counted);
            most_rows = most_rows.max(rows);
            if rows == 0 && counted == 0 {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(90),
                "the fan-out ends ({rows} rows, {counted} counted)"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            most_counted <= 40 && most_rows <= 40,
            "at most 40 jobs were ever queued: {most_counted} counted, {most_rows} rows"
        );
        assert!(
            most_counted >= 20,
            "the fan-out did fill the queue (it would reach 1,364 jobs): {most_counted}"
        );
        let dead = dead_letters(&platform, &actor, app_id, DeadLetterStatus::All).await;
        assert!(
            dead.iter()
                .any(|dead| dead.error.contains("queued jobs") && dead.error.contains("limit of 40")),
            "runs refused by the quota end as dead letters that say why: {:?}",
            dead.iter().map(|dead| &dead.error).take(3).collect::<Vec<_>>()
        );
        platform.shutdown().await;
    }
);

// Issue #13: one app's trigger fan-out queued 87,380 jobs, and another app's async job waited
// 36.6 s behind them (the claim took the oldest due jobs of the whole outbox). The claim takes
// the apps in turn: the other app's job runs while the backlog is still there.
both_backends!(
    an_apps_backlog_does_not_hold_back_another_apps_async_job,
    |store| async move {
        let platform = start_with(store.clone(), quick()).await;
        let actor = admin(&platform).await;
        let (busy_app, busy_script) = app_with_script(
            &platform,
            &actor,
            "busy",
            "let x = 0; while x < 20000 { x += 1; } x",
        )
        .await;
        let quiet = deploy(
            &platform,
            &actor,
            "quiet",
            r#"kv::collection("done").set("job", ctx.execution_id); ()"#,
            DispatchMode::Async,
        )
        .await;
        let backlog: Vec<NewJob> = (0..2_000)
            .map(|_| NewJob {
                id: ExecutionId::new(),
                app_id: busy_app,
                script_id: busy_script,
                payload: JobPayload::Http {
                    request: HttpRequest::default(),
                },
                trigger_depth: 0,
            })
            .collect();
        store
            .commit_outbox(&OutboxBatch {
                enqueue: backlog,
                finished: Vec::new(),
                durable: true,
                ..OutboxBatch::default()
            })
            .await
            .expect("the backlog is queued");
        eventually(
            "the busy app's jobs run",
            Duration::from_secs(10),
            || async {
                let depth = store.outbox_depth().await.expect("the depth");
                (depth.running > 0).then_some(())
            },
        )
        .await;

        let started = Instant::now();
        platform
            .invoke(request("quiet", "POST", "/run", json!({})))
            .await
            .expect("accepted");
        eventually("the quiet app's job runs", Duration::from_secs(30), || {
            let store = store.clone();
            async move { kv(&store, quiet, "done", "job").await }
        })
        .await;
        let waited = started.elapsed();
        let queued = store.outbox_depth().await.expect("the depth").pending;
        assert!(
            queued > 1_000,
            "the quiet app's job ran while {queued} of the busy app's were still queued"
        );
        assert!(
            waited < Duration::from_secs(5),
            "the quiet app's job ran within {waited:?}"
        );
        platform.shutdown().await;
    }
);
