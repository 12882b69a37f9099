//! `dead_letters::{replay, resolve}` against the real store, on SQLite and on PostgreSQL: a
//! script closes its own app's dead letters, never another app's (whose ids it cannot tell from
//! ids that name nothing), and a dead-letter handler cannot start a replay loop.

use std::sync::Arc;

use picloud_core::events::DeadLetterEvent;
use picloud_core::exec::{AppRef, ExecErrorKind, ExecRequest, HttpRequest, ResponseBody};
use picloud_core::{
    AppId, Authority, CapabilityKind, DeadLetter, DeadLetterId, ExecutionId, JobPayload,
    Resolution, ScriptId, ScriptKind, ScriptName, TriggerEvent,
};
use picloud_store::{NewJob, NewScript, OutboxBatch, Store};
use picloud_test_support::both_backends;
use picloud_test_support::executor::{assert_error, failed, new_app, ok, Harness, Via};

/// A harness whose scripts reach `store`, running in a new app `slug` of it, and a script of
/// that app whose job failed.
async fn harness(store: &Arc<dyn Store>, slug: &str) -> (Harness, ScriptId) {
    let mut h = Harness::with_store(Via::Local, store).await;
    let (app, script_id) = app(store, slug).await;
    h.app = app;
    (h, script_id)
}

async fn app(store: &Arc<dyn Store>, slug: &str) -> (AppRef, ScriptId) {
    let app = new_app(store, slug).await;
    let script = store
        .create_script(&NewScript {
            app_id: app.id,
            name: ScriptName::parse("checkout", ScriptKind::Endpoint).expect("a valid name"),
            kind: ScriptKind::Endpoint,
            source: "throw \"boom\"".to_string(),
            imports: Vec::new(),
        })
        .await
        .expect("the script is created");
    (app, script.id)
}

/// A dead letter made the way the dispatcher makes one: an async job in the outbox, claimed,
/// and dead-lettered after its last attempt.
async fn dead_letter(store: &Arc<dyn Store>, app_id: AppId, script_id: ScriptId) -> DeadLetter {
    let id = ExecutionId::new();
    store
        .commit_outbox(&OutboxBatch {
            enqueue: vec![NewJob {
                id,
                app_id,
                script_id,
                payload: JobPayload::Http {
                    request: HttpRequest {
                        method: "POST".to_string(),
                        path: "/checkout".to_string(),
                        ..HttpRequest::default()
                    },
                },
                trigger_depth: 0,
            }],
            durable: true,
            ..OutboxBatch::default()
        })
        .await
        .expect("the job is enqueued");
    let jobs = store
        .claim_jobs("test", 10, u32::MAX, &[], 60_000)
        .await
        .expect("the job is claimed");
    let job = jobs
        .iter()
        .find(|job| job.id == id)
        .expect("the claim holds the job");
    store
        .dead_letter_job(job.attempt_ref(), "boom")
        .await
        .expect("the job is dead-lettered")
        .expect("the attempt still holds the job")
}

async fn resolution(store: &Arc<dyn Store>, id: DeadLetterId) -> Option<Resolution> {
    store
        .get_dead_letter(id)
        .await
        .expect("the dead letter is read")
        .expect("the dead letter exists")
        .resolution
}

both_backends!(
    replay_sends_the_job_again_and_answers_the_new_execution_id,
    |store| async move {
        let (h, script_id) = harness(&store, "shop").await;
        let letter = dead_letter(&store, h.app.id, script_id).await;
        let outcome = h
            .run(&format!(r#"dead_letters::replay("{}")"#, letter.id))
            .await;
        let ResponseBody::Text(execution_id) = ok(outcome).body else {
            panic!("replay answers a string");
        };
        let execution_id = ExecutionId::parse(&execution_id).expect("an execution id");
        assert_ne!(
            execution_id, letter.execution_id,
            "the replay is a new execution"
        );
        assert_eq!(
            resolution(&store, letter.id).await,
            Some(Resolution::Replayed),
            "the dead letter is closed as replayed"
        );
        let jobs = store
            .claim_jobs("test", 10, u32::MAX, &[], 60_000)
            .await
            .expect("the jobs are claimed");
        assert!(
            jobs.iter()
                .any(|job| job.id == execution_id && job.payload == letter.payload),
            "the same job is in the outbox again, as the new execution: {jobs:?}"
        );
        let again = h
            .error(&format!(r#"dead_letters::replay("{}")"#, letter.id))
            .await;
        assert_error(
            &again,
            ExecErrorKind::Runtime,
            "dead_letters::replay: the dead letter was already replayed",
        );
    }
);

both_backends!(resolve_closes_the_dead_letter_once, |store| async move {
    let (h, script_id) = harness(&store, "shop").await;
    let letter = dead_letter(&store, h.app.id, script_id).await;
    let source = format!(r#"dead_letters::resolve("{}")"#, letter.id);
    let resolved = ok(h.run(&source).await);
    assert_eq!(resolved.status, 204, "resolve answers ()");
    assert_eq!(
        resolution(&store, letter.id).await,
        Some(Resolution::Resolved),
        "the dead letter is closed as resolved"
    );
    let again = h.error(&source).await;
    assert_error(
        &again,
        ExecErrorKind::Runtime,
        "dead_letters::resolve: the dead letter was already resolved",
    );
    assert_eq!(
        resolution(&store, letter.id).await,
        Some(Resolution::Resolved),
        "resolving twice changes nothing"
    );
});

both_backends!(
    another_apps_dead_letter_is_not_found_exactly_like_one_that_does_not_exist,
    |store| async move {
        let (h, _) = harness(&store, "shop").await;
        let (blog, blog_script) = app(&store, "blog").await;
        let theirs = dead_letter(&store, blog.id, blog_script).await;
        let nothing = DeadLetterId::new();
        for function in ["replay", "resolve"] {
            let other = h
                .error(&format!(r#"dead_letters::{function}("{}")"#, theirs.id))
                .await;
            let random = h
                .error(&format!(r#"dead_letters::{function}("{nothing}")"#))
                .await;
            assert_error(
                &random,
                ExecErrorKind::Runtime,
                &format!("dead_letters::{function}: no dead letter with id {nothing} in this app"),
            );
            assert_eq!(
                other.message.replace(&theirs.id.to_string(), "<id>"),
                random.message.replace(&nothing.to_string(), "<id>"),
                "{function}: another app's id cannot be told from an id of nothing"
            );
        }
        assert_eq!(
            resolution(&store, theirs.id).await,
            None,
            "the other app's dead letter is untouched"
        );
    }
);

both_backends!(
    a_bad_id_or_a_missing_capability_is_refused_before_the_store,
    |store| async move {
        let (h, script_id) = harness(&store, "shop").await;
        let letter = dead_letter(&store, h.app.id, script_id).await;
        for (source, needle) in [
            (
                r#"dead_letters::replay("dl-1")"#,
                "dead_letters::replay: 'dl-1' is not a valid dead letter id",
            ),
            (
                r#"dead_letters::resolve(42)"#,
                "dead_letters::resolve: a dead letter id must be a string (got i64)",
            ),
        ] {
            let err = h.error(source).await;
            assert_error(&err, ExecErrorKind::Runtime, needle);
        }
        let editor = Authority::Caller {
            capabilities: [CapabilityKind::AppKvRead, CapabilityKind::AppKvWrite]
                .into_iter()
                .collect(),
        };
        for function in ["replay", "resolve"] {
            let request = ExecRequest {
                authority: editor.clone(),
                ..h.request(&format!(r#"dead_letters::{function}("{}")"#, letter.id))
            };
            let err = failed(h.execute(request).await);
            assert_error(
                &err,
                ExecErrorKind::Runtime,
                &format!(
                    "dead_letters::{function}: this execution may not do that (it needs AppDeadLetterManage)"
                ),
            );
        }
        assert_eq!(
            resolution(&store, letter.id).await,
            None,
            "nothing refused touched the dead letter"
        );
    }
);

both_backends!(
    a_dead_letter_handler_may_resolve_but_not_replay,
    |store| async move {
        let (h, script_id) = harness(&store, "shop").await;
        let letter = dead_letter(&store, h.app.id, script_id).await;
        let handler = |source: &str| ExecRequest {
            event: Some(TriggerEvent::DeadLetter {
                dead_letter: DeadLetterEvent {
                    id: letter.id,
                    script_id,
                    error: letter.error.clone(),
                    attempts: letter.attempts,
                    payload: serde_json::to_value(&letter.payload).expect("the payload"),
                },
            }),
            trigger_depth: 1,
            ..h.request(source)
        };
        let err = failed(
            h.execute(handler("dead_letters::replay(ctx.event.dead_letter.id)"))
                .await,
        );
        assert_error(
            &err,
            ExecErrorKind::Runtime,
            "dead_letters::replay: a dead-letter handler may not replay dead letters",
        );
        assert_eq!(
            resolution(&store, letter.id).await,
            None,
            "the refused replay changed nothing"
        );
        ok(
            h.execute(handler("dead_letters::resolve(ctx.event.dead_letter.id)"))
                .await,
        );
        assert_eq!(
            resolution(&store, letter.id).await,
            Some(Resolution::Resolved),
            "the handler resolves the dead letter it handles"
        );
    }
);
