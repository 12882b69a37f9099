//! What another node changes reaches this one at once on PostgreSQL (#19), not at its polls:
//! the polls here are a minute apart, and "another node" is a write through the store that this
//! node's services never saw — as a second `picloud serve` on the same database writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use picloud_core::exec::HttpRequest;
use picloud_core::{AppId, ExecutionId, JobPayload, ScriptId};
use picloud_store::{Backend, NewJob, OutboxBatch, ScriptPatch, Store};
use picloud_test_support::server::{Settings, TestServer};
use picloud_test_support::with_store;

/// A node whose polls would take a minute to see anything.
async fn slow_polling_node(store: Arc<dyn Store>) -> TestServer {
    let mut settings = Settings::default();
    settings.platform.dispatch.poll_ms = 60_000;
    settings.platform.route_refresh_ms = 60_000;
    TestServer::start_with(store, settings).await
}

/// How long until `GET path` answers `want`; panics after 5 s.
async fn answered(server: &TestServer, path: &str, want: &str) -> Duration {
    let started = Instant::now();
    loop {
        let answer = server.get(path).await;
        if answer.status == 200 && answer.text == want {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "GET {path} never answered {want:?} (last: {answer})"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_committed_by_another_node_wakes_the_idle_dispatcher_at_once() {
    with_store(Backend::Postgres, |store| async move {
        let server = slow_polling_node(store.clone()).await;
        let app = server.api.create_app("jobs").await;
        let work = server
            .api
            .route(
                &app,
                "work",
                "kv::collection(\"seen\").set(\"ran\", true);",
                ("POST", "/work"),
                "async",
            )
            .await;
        server
            .api
            .add_route(
                &app,
                "seen",
                "kv::collection(\"seen\").get(\"ran\") == true",
                "GET",
                "/seen",
            )
            .await;
        assert_eq!(server.get("/jobs/seen").await.text, "false");
        let job = NewJob {
            id: ExecutionId::new(),
            app_id: AppId::parse(&app).expect("an app id"),
            script_id: ScriptId::parse(&work).expect("a script id"),
            payload: JobPayload::Http {
                request: HttpRequest::default(),
            },
            trigger_depth: 0,
        };
        store
            .commit_outbox(&OutboxBatch {
                enqueue: vec![job],
                durable: true,
                ..OutboxBatch::default()
            })
            .await?;
        let waited = answered(&server, "/jobs/seen", "true").await;
        eprintln!(
            "a job committed elsewhere ran {:.3} s later",
            waited.as_secs_f64()
        );
        Ok::<(), anyhow::Error>(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_script_or_route_changed_by_another_node_is_served_at_once() {
    with_store(Backend::Postgres, |store| async move {
        let server = slow_polling_node(store.clone()).await;
        let app = server.api.create_app("site").await;
        let hello = server
            .api
            .create_script(&app, "hello", "\"hello, version 1\"")
            .await;
        server.api.create_route(&hello, "GET", "/").await;
        answered(&server, "/site/", "hello, version 1").await;

        let script_id = ScriptId::parse(&hello).expect("a script id");
        store
            .update_script(
                script_id,
                &ScriptPatch {
                    name: None,
                    kind: None,
                    source: Some("\"hello, version 2\"".to_owned()),
                    imports: None,
                },
            )
            .await?;
        let waited = answered(&server, "/site/", "hello, version 2").await;
        eprintln!(
            "a script saved elsewhere was served {:.3} s later",
            waited.as_secs_f64()
        );

        store
            .create_route(&picloud_store::NewRoute {
                app_id: AppId::parse(&app).expect("an app id"),
                script_id,
                method: picloud_core::RouteMethod::parse("GET").expect("a method"),
                path: picloud_core::RoutePath::parse("/other").expect("a path"),
                dispatch_mode: picloud_core::DispatchMode::Sync,
                keep_headers: picloud_core::KeptHeaders::default(),
            })
            .await?;
        answered(&server, "/site/other", "hello, version 2").await;
        Ok::<(), anyhow::Error>(())
    })
    .await;
}
