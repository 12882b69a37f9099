//! `/metrics` (issue #18): executions by app and script under the cardinality guard, the outbox
//! and dead-letter gauges read from the database at each scrape, the pools, and the optional
//! bearer token.

use std::time::Duration;

use picloud_core::exec::HttpRequest;
use picloud_core::{AppId, ExecutionId, JobPayload, ScriptId};
use picloud_orchestrator::MetricsConfig;
use picloud_server::MetricsToken;
use picloud_store::{NewJob, OutboxBatch};
use picloud_test_support::server::{Settings, TestServer};
use picloud_test_support::{both_backends, eventually};
use reqwest::Method;

const WITHIN: Duration = Duration::from_secs(10);

/// The samples of `/metrics` whose line starts with `prefix`, as (labels and name, value).
fn samples(text: &str, prefix: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter(|line| line.starts_with(prefix))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_owned(), value.parse().ok()?))
        })
        .collect()
}

/// The value of the sample `name` (labels included) in `text`.
fn value(text: &str, name: &str) -> Option<f64> {
    samples(text, name)
        .into_iter()
        .find_map(|(sample, value)| (sample == name).then_some(value))
}

async fn scrape(server: &TestServer) -> String {
    let answer = server.get("/metrics").await;
    assert_eq!(answer.status, 200, "/metrics answers: {answer}");
    answer.text
}

both_backends!(
    executions_are_counted_by_app_script_and_outcome,
    |store| async move {
        let server = TestServer::start(store).await;
        let shop = server.api.create_app("shop").await;
        server
            .api
            .add_route(&shop, "hello", "#{ hi: 1 }", "GET", "/hello")
            .await;
        server
            .api
            .add_route(&shop, "broken", "throw \"no\";", "GET", "/broken")
            .await;
        server.api.deploy("blog", "1", "GET", "/").await;
        for path in ["/shop/hello", "/shop/hello", "/shop/broken", "/blog"] {
            server.get(path).await;
        }
        let text = scrape(&server).await;
        for (sample, expected) in [
            (
                r#"picloud_executions_total{app="shop",script="hello",outcome="ok"}"#,
                2.0,
            ),
            (
                r#"picloud_executions_total{app="shop",script="broken",outcome="runtime_error"}"#,
                1.0,
            ),
            (
                r#"picloud_executions_total{app="blog",script="main",outcome="ok"}"#,
                1.0,
            ),
            (
                r#"picloud_execution_duration_seconds_count{app="shop",script="hello"}"#,
                2.0,
            ),
            (
                r#"picloud_execution_duration_seconds_count{app="blog",script="main"}"#,
                1.0,
            ),
        ] {
            assert_eq!(value(&text, sample), Some(expected), "{sample}: {text}");
        }
        assert_eq!(
            value(
                &text,
                r#"picloud_executions_total{app="(other)",script="(other)",outcome="ok"}"#
            ),
            Some(0.0),
            "nothing overflowed the guard: {text}"
        );
    }
);

// A hostile tenant makes more scripts than the guard gives out: its later scripts share one
// series of its app, later apps share the instance's, and every execution is still counted once.
both_backends!(
    a_tenant_with_more_scripts_than_the_guard_allows_gets_no_more_series,
    |store| async move {
        let settings = Settings {
            platform: picloud_orchestrator::PlatformConfig {
                metrics: MetricsConfig {
                    max_apps: 2,
                    max_scripts: 3,
                },
                ..Default::default()
            },
            ..Settings::default()
        };
        let server = TestServer::start_with(store, settings).await;
        let greedy = server.api.create_app("greedy").await;
        for n in 0..8 {
            server
                .api
                .add_route(&greedy, &format!("s{n}"), "1", "GET", &format!("/s{n}"))
                .await;
        }
        server.api.deploy("second", "1", "GET", "/").await;
        server.api.deploy("third", "1", "GET", "/").await;
        for n in 0..8 {
            assert_eq!(server.get(&format!("/greedy/s{n}")).await.status, 200);
        }
        server.get("/second").await;
        server.get("/third").await;
        server.get("/greedy/s0").await;

        let text = scrape(&server).await;
        let executions = samples(&text, "picloud_executions_total{");
        assert_eq!(
            executions.iter().map(|(_, n)| n).sum::<f64>(),
            11.0,
            "every execution is counted once: {text}"
        );
        for (sample, expected) in [
            (
                r#"picloud_executions_total{app="greedy",script="s0",outcome="ok"}"#,
                2.0,
            ),
            (
                r#"picloud_executions_total{app="greedy",script="s2",outcome="ok"}"#,
                1.0,
            ),
            (
                r#"picloud_executions_total{app="greedy",script="(other)",outcome="ok"}"#,
                5.0,
            ),
            (
                r#"picloud_executions_total{app="second",script="(other)",outcome="ok"}"#,
                1.0,
            ),
            (
                r#"picloud_executions_total{app="(other)",script="(other)",outcome="ok"}"#,
                1.0,
            ),
        ] {
            assert_eq!(value(&text, sample), Some(expected), "{sample}: {text}");
        }
        assert_eq!(
            samples(&text, "picloud_execution_duration_seconds_count{").len(),
            6,
            "three pairs, two apps' aggregates and the instance's: {text}"
        );
    }
);

// The outbox's gauges are read at the scrape: the dispatcher is stopped, so jobs written to the
// outbox stay there; one is put back to wait a minute, so it is pending but not due.
both_backends!(
    the_outbox_gauges_show_the_backlog_and_how_long_it_has_waited,
    |store| async move {
        let server = TestServer::start(store.clone()).await;
        let app = server.api.create_app("queue").await;
        let script = server.api.create_script(&app, "job", "1").await;
        server.platform.shutdown().await;
        let text = scrape(&server).await;
        for (sample, expected) in [
            (r#"picloud_outbox_jobs{status="pending"}"#, 0.0),
            ("picloud_outbox_due_jobs", 0.0),
            ("picloud_outbox_oldest_due_age_seconds", 0.0),
        ] {
            assert_eq!(
                value(&text, sample),
                Some(expected),
                "{sample}, empty: {text}"
            );
        }

        let job = || NewJob {
            id: ExecutionId::new(),
            app_id: AppId::parse(&app).expect("an app id"),
            script_id: ScriptId::parse(&script).expect("a script id"),
            payload: JobPayload::Http {
                request: HttpRequest::default(),
            },
            trigger_depth: 0,
        };
        store
            .commit_outbox(&OutboxBatch {
                enqueue: vec![job(), job(), job()],
                durable: true,
                ..OutboxBatch::default()
            })
            .await
            .expect("three jobs are queued");
        let claimed = store
            .claim_jobs("a test", 1, 1, &[], 60_000)
            .await
            .expect("a claim");
        assert_eq!(claimed.len(), 1, "one job is claimed");
        assert!(
            store
                .retry_job(claimed[0].attempt_ref(), 60_000, "later")
                .await
                .expect("a retry"),
            "the job waits a minute"
        );
        tokio::time::sleep(Duration::from_millis(1_100)).await;

        let text = scrape(&server).await;
        for (sample, expected) in [
            (r#"picloud_outbox_jobs{status="pending"}"#, 3.0),
            (r#"picloud_outbox_jobs{status="running"}"#, 0.0),
            ("picloud_outbox_due_jobs", 2.0),
        ] {
            assert_eq!(value(&text, sample), Some(expected), "{sample}: {text}");
        }
        let age = value(&text, "picloud_outbox_oldest_due_age_seconds")
            .expect("the age of the oldest due job");
        assert!(
            (1.0..60.0).contains(&age),
            "the due jobs have waited a second, not the minute of the one put back: {age}"
        );
    }
);

// Dead letters per app: the apps with the most are named, the rest summed; a resolved one no
// longer counts.
both_backends!(
    unresolved_dead_letters_are_counted_per_app,
    |store| async move {
        let settings = Settings {
            platform: picloud_orchestrator::PlatformConfig {
                jobs: picloud_orchestrator::JobConfig {
                    retry_max_attempts: 1,
                    ..Default::default()
                },
                metrics: MetricsConfig {
                    max_apps: 1,
                    max_scripts: 10,
                },
                ..Default::default()
            },
            ..Settings::default()
        };
        let server = TestServer::start_with(store, settings).await;
        let mut apps = Vec::new();
        for (slug, failures) in [("shop", 2), ("blog", 1)] {
            let app = server.api.create_app(slug).await;
            server
                .api
                .route(&app, "hook", "throw \"no\";", ("POST", "/hook"), "async")
                .await;
            for _ in 0..failures {
                let answer = server
                    .call(Method::POST, &format!("/{slug}/hook"), None, None)
                    .await;
                assert_eq!(answer.status, 202, "accepted: {answer}");
            }
            apps.push(app);
        }
        eventually("three dead letters", WITHIN, || async {
            let text = scrape(&server).await;
            (value(&text, r#"picloud_dead_letters_unresolved{app="shop"}"#) == Some(2.0)
                && value(&text, r#"picloud_dead_letters_unresolved{app="(other)"}"#) == Some(1.0))
            .then_some(())
        })
        .await;

        let letters = server.api.dead_letters(&apps[0], "unresolved").await;
        let id = letters[0]["id"].as_str().expect("a dead letter id");
        let resolved = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/dead-letters/{id}/resolve"),
                None,
            )
            .await;
        assert_eq!(resolved.status, 200, "resolved: {resolved}");
        let text = scrape(&server).await;
        let unresolved = samples(&text, "picloud_dead_letters_unresolved{");
        assert_eq!(
            unresolved.len(),
            2,
            "one app named, the rest summed: {text}"
        );
        assert_eq!(
            unresolved.iter().map(|(_, n)| n).sum::<f64>(),
            2.0,
            "the resolved one no longer counts: {text}"
        );
    }
);

both_backends!(
    the_pools_and_the_gate_say_how_full_they_are,
    |store| async move {
        let backend = store.backend();
        let server = TestServer::start(store).await;
        let text = scrape(&server).await;
        let pools: &[&str] = match backend {
            picloud_store::Backend::Sqlite => &["reader", "writer"],
            picloud_store::Backend::Postgres => &["main"],
        };
        for pool in pools {
            let capacity = value(
                &text,
                &format!(r#"picloud_db_pool_capacity{{pool="{pool}"}}"#),
            )
            .expect("the pool's capacity");
            let in_use = value(
                &text,
                &format!(r#"picloud_db_pool_in_use{{pool="{pool}"}}"#),
            )
            .expect("the pool's connections in use");
            assert!(
                capacity >= 1.0 && in_use <= capacity,
                "{pool}: {in_use} of {capacity}: {text}"
            );
        }
        assert!(
            value(&text, "picloud_metrics_store_errors_total") == Some(0.0),
            "every read of the store answered: {text}"
        );
    }
);

// PICLOUD_METRICS_TOKEN: without the token, or with another, 401 and the usual error body.
both_backends!(a_metrics_token_is_required_once_set, |store| async move {
    let settings = Settings {
        server: picloud_server::ServerConfig {
            metrics_token: Some(MetricsToken::new("scrape-me-please")),
            ..Default::default()
        },
        ..Settings::default()
    };
    let server = TestServer::start_with(store, settings).await;
    for (token, case) in [
        (None, "no token"),
        (Some("scrape-me-pleasE"), "another token"),
        (Some(""), "an empty token"),
        (Some("scrape-me-please-"), "a longer token"),
    ] {
        let answer = server.call(Method::GET, "/metrics", token, None).await;
        assert_eq!(
            (answer.status, answer.code()),
            (401, "unauthorized"),
            "{case}: {answer}"
        );
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer"),
            "{case}: the scheme is named"
        );
        assert!(
            !answer.text.contains("picloud_"),
            "{case}: no metric is shown: {answer}"
        );
    }
    let answer = server
        .call(Method::GET, "/metrics", Some("scrape-me-please"), None)
        .await;
    assert_eq!(answer.status, 200, "the token is accepted: {answer}");
    assert!(
        answer.text.contains("picloud_gate_capacity"),
        "the metrics: {answer}"
    );
    let session = server
        .call(Method::GET, "/metrics", Some(&server.api.token), None)
        .await;
    assert_eq!(
        session.status, 401,
        "an admin's session is not the metrics token: {session}"
    );
});
