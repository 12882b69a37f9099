//! Public invocation over HTTP on both backends: the quick start, the response rules, errors of
//! scripts, the gate, and the paths that are not routed.

use std::time::{Duration, Instant};

use picloud_core::Limits;
use picloud_orchestrator::PlatformConfig;
use picloud_test_support::both_backends;
use picloud_test_support::http::Answer;
use picloud_test_support::scenario::{self, Caller, Effect, Scenario};
use picloud_test_support::server::{Settings, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const GREETER: &str = r#"
let name = ctx.request.params.name;
let lang = ctx.request.query.lang;
#{ greeting: if lang == "fr" { `Bonjour, ${name} !` } else { `Hello, ${name}!` }, app: ctx.app.slug }
"#;

// The README's quick start: log in, create an app, a script and a route, then call it.
both_backends!(the_quick_start_flow_works_end_to_end, |store| async move {
    let server = TestServer::start(store).await;
    server
        .api
        .deploy("hello", GREETER, "GET", "/greet/{name}")
        .await;
    let answer = server.get("/hello/greet/Ada%20L?lang=fr").await;
    assert_eq!(answer.status, 200, "the route answers: {answer}");
    assert_eq!(
        answer.header("content-type"),
        Some("application/json"),
        "a map is JSON"
    );
    assert_eq!(
        answer.json,
        json!({"greeting": "Bonjour, Ada L !", "app": "hello"}),
        "params decoded, query read"
    );
    assert!(
        answer.header("x-picloud-execution-id").is_some(),
        "every invocation names its execution"
    );
});

// What a script returns decides the response, as the script contract says.
both_backends!(a_scripts_value_becomes_the_response, |store| async move {
    let server = TestServer::start(store).await;
    let app_id = server.api.create_app("rules").await;
    let cases: [(&str, &str, u16, Option<&str>, Value); 8] = [
        (
            "string",
            r#""plain""#,
            200,
            Some("text/plain; charset=utf-8"),
            json!("plain"),
        ),
        (
            "map",
            "#{ a: 1, b: [true] }",
            200,
            Some("application/json"),
            json!({"a": 1, "b": [true]}),
        ),
        (
            "array",
            "[1, 2, 3]",
            200,
            Some("application/json"),
            json!([1, 2, 3]),
        ),
        ("number", "42", 200, Some("application/json"), json!(42)),
        ("bool", "false", 200, Some("application/json"), json!(false)),
        ("unit", "()", 204, None, json!("")),
        (
            "explicit",
            r#"response(201, #{ id: 7 })"#,
            201,
            Some("application/json"),
            json!({"id": 7}),
        ),
        (
            "headers",
            r#"response(418, "teapot", #{ "x-brew": "earl grey", "content-type": "text/html" })"#,
            418,
            Some("text/html"),
            json!("teapot"),
        ),
    ];
    for (name, source, ..) in &cases {
        server
            .api
            .add_route(&app_id, name, source, "GET", &format!("/{name}"))
            .await;
    }
    for (name, _, status, content_type, body) in cases {
        let answer = server.get(&format!("/rules/{name}")).await;
        assert_eq!(answer.status, status, "{name}: status: {answer}");
        assert_eq!(
            answer.header("content-type"),
            content_type,
            "{name}: content type: {answer}"
        );
        assert_eq!(answer.json, body, "{name}: body: {answer}");
        assert!(
            answer.header("x-picloud-execution-id").is_some(),
            "{name}: the execution id header"
        );
    }
    let answer = server.get("/rules/headers").await;
    assert_eq!(
        answer.header("x-brew"),
        Some("earl grey"),
        "a script's header is sent: {answer}"
    );
});

// The script sees the request: method, path, params, query, lower-case headers, body and json.
both_backends!(a_script_sees_the_whole_request, |store| async move {
    let server = TestServer::start(store).await;
    let echo = "let r = ctx.request; #{ method: r.method, path: r.path, params: r.params, query: r.query, agent: r.headers[\"x-agent\"], body: r.body, json: r.json }";
    server
        .api
        .deploy("echo", echo, "ANY", "/files/{*rest}")
        .await;
    let response = server
        .api
        .http
        .post(server.url("/echo/files/a/b.txt?x=1&x=2"))
        .header("X-Agent", "test")
        .json(&json!({"k": "v"}))
        .send()
        .await
        .expect("send");
    let answer = Answer::read(response).await;
    assert_eq!(answer.status, 200, "ANY answers POST: {answer}");
    assert_eq!(answer.json["method"], json!("POST"), "the method: {answer}");
    assert_eq!(
        answer.json["path"],
        json!("/files/a/b.txt"),
        "the path below the slug: {answer}"
    );
    assert_eq!(
        answer.json["params"],
        json!({"rest": "a/b.txt"}),
        "the wildcard: {answer}"
    );
    assert_eq!(
        answer.json["query"],
        json!({"x": "2"}),
        "the last value of a repeated name: {answer}"
    );
    assert_eq!(
        answer.json["agent"],
        json!("test"),
        "header names are lower case: {answer}"
    );
    assert_eq!(
        answer.json["json"],
        json!({"k": "v"}),
        "the parsed body: {answer}"
    );
    let answer = server.get("/echo/files").await;
    assert_eq!(
        answer.json["params"],
        json!({"rest": ""}),
        "a wildcard matches nothing too: {answer}"
    );
});

// A script error is a 500 JSON error naming the execution; the script's message and position
// are for the log and the app's people (redaction.rs has the rest of that contract).
both_backends!(
    a_script_error_is_a_json_500_with_the_execution_id,
    |store| async move {
        let server = TestServer::start(store).await;
        server
            .api
            .deploy("oops", "let a = 1;\nthrow \"boom\";", "GET", "/")
            .await;
        let answer = server.get("/oops").await;
        assert_eq!(
            (answer.status, answer.code()),
            (500, "script_error"),
            "a thrown error: {answer}"
        );
        let execution_id = answer.json["error"]["execution_id"]
            .as_str()
            .expect("the execution id")
            .to_owned();
        assert_eq!(
            answer.header("x-picloud-execution-id"),
            Some(execution_id.as_str()),
            "header and body agree"
        );
        assert!(
            answer.json["error"]["line"].is_null(),
            "an anonymous caller is not told the line of the throw: {answer}"
        );
        assert!(
            answer.json["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.contains("boom") && m.contains("execution id")),
            "nor the thrown message, but where to look: {answer}"
        );
    }
);

// An endless loop is stopped by a limit and the next request is answered normally.
both_backends!(
    an_endless_loop_is_stopped_and_the_server_keeps_answering,
    |store| async move {
        let limits = Limits {
            max_operations: 200_000,
            timeout_ms: 30_000,
            ..Limits::default()
        };
        let server = TestServer::start_with(
            store,
            Settings {
                limits,
                ..Default::default()
            },
        )
        .await;
        let app_id = server.api.deploy("loops", "loop { }", "GET", "/spin").await;
        server
            .api
            .add_route(&app_id, "ok", r#""fine""#, "GET", "/ok")
            .await;
        let answer = server.get("/loops/spin").await;
        assert_eq!(
            (answer.status, answer.code()),
            (500, "limit_exceeded"),
            "the operations limit stops it: {answer}"
        );
        assert!(
            answer.json["error"]["execution_id"].is_string(),
            "the error names the execution: {answer}"
        );
        assert_eq!(
            server.get("/loops/ok").await.text,
            "fine",
            "the next request is answered"
        );
    }
);

// A script past its deadline gets 504 execution_timeout.
both_backends!(a_script_past_its_deadline_times_out, |store| async move {
    let limits = Limits {
        max_operations: u64::MAX / 2,
        timeout_ms: 200,
        ..Limits::default()
    };
    let server = TestServer::start_with(
        store,
        Settings {
            limits,
            ..Default::default()
        },
    )
    .await;
    server.api.deploy("slowpoke", "loop { }", "GET", "/").await;
    let started = Instant::now();
    let answer = server.get("/slowpoke/").await;
    assert_eq!(
        (answer.status, answer.code()),
        (504, "execution_timeout"),
        "the deadline: {answer}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "enforced promptly"
    );
});

// With a gate of one and a slow script, a concurrent request is refused with 503 and Retry-After.
both_backends!(
    a_full_gate_refuses_with_503_and_retry_after,
    |store| async move {
        let platform = PlatformConfig {
            gate_size: 1,
            gate_wait_ms: 50,
            ..PlatformConfig::default()
        };
        let server = TestServer::start_with(
            store,
            Settings {
                platform,
                ..Default::default()
            },
        )
        .await;
        let slow = r#"let started = time::now(); while time::now() - started < 1500 { } "slow""#;
        let app_id = server.api.deploy("gate", slow, "GET", "/slow").await;
        server
            .api
            .add_route(&app_id, "fast", r#""fast""#, "GET", "/fast")
            .await;
        let url = server.url("/gate/slow");
        let http = server.api.http.clone();
        let first =
            tokio::spawn(async move { http.get(url).send().await.expect("send").text().await });
        tokio::time::sleep(Duration::from_millis(400)).await;
        let answer = server.get("/gate/fast").await;
        assert_eq!(
            (answer.status, answer.code()),
            (503, "overloaded"),
            "the gate is full: {answer}"
        );
        assert_eq!(
            answer.header("retry-after"),
            Some("1"),
            "the caller is told when to retry: {answer}"
        );
        assert_eq!(
            first.await.expect("join").expect("body"),
            "slow",
            "the admitted request finishes"
        );
        assert_eq!(
            server.get("/gate/fast").await.text,
            "fast",
            "the gate admits again once free"
        );
    }
);

// Paths that no route matches, wrong methods, reserved prefixes and oversized bodies.
both_backends!(unrouted_requests_get_json_errors, |store| async move {
    let server = TestServer::start_with(
        store,
        Settings {
            server: picloud_server::ServerConfig {
                max_body_bytes: 1024,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .await;
    server.api.deploy("site", r#""ok""#, "GET", "/page").await;
    let answer = server.get("/site/missing").await;
    assert_eq!(
        (answer.status, answer.code()),
        (404, "not_found"),
        "no route: {answer}"
    );
    let answer = server.get("/nosuchapp/page").await;
    assert_eq!(
        (answer.status, answer.code()),
        (404, "not_found"),
        "no app: {answer}"
    );
    let answer = server.call(Method::DELETE, "/site/page", None, None).await;
    assert_eq!(
        (answer.status, answer.code()),
        (405, "method_not_allowed"),
        "a wrong method: {answer}"
    );
    assert_eq!(
        answer.header("allow"),
        Some("GET, HEAD"),
        "Allow lists the answering methods: {answer}"
    );
    let head = server
        .api
        .http
        .head(server.url("/site/page"))
        .send()
        .await
        .expect("send");
    assert_eq!(head.status(), 200, "HEAD is answered by the GET route");
    for reserved in ["/api", "/admin/x", "/static/app.js", "/assets/a.css"] {
        let answer = server.get(reserved).await;
        assert_eq!(
            (answer.status, answer.code()),
            (404, "not_found"),
            "{reserved} is never an app: {answer}"
        );
    }
    let response = server
        .api
        .http
        .post(server.url("/site/page"))
        .body("x".repeat(4096))
        .send()
        .await
        .expect("send");
    let answer = Answer::read(response).await;
    assert_eq!(
        (answer.status, answer.code()),
        (413, "payload_too_large"),
        "a body over the maximum: {answer}"
    );
});

// Renaming an app moves its routes at once; deleting it removes them.
both_backends!(
    a_slug_change_and_a_deletion_take_effect_at_once,
    |store| async move {
        let server = TestServer::start(store).await;
        let app_id = server.api.deploy("before", r#""here""#, "GET", "/").await;
        let renamed = server
            .admin(
                Method::PATCH,
                &format!("/api/v1/admin/apps/{app_id}"),
                Some(json!({"slug": "after"})),
            )
            .await;
        assert_eq!(renamed.status, 200, "rename: {renamed}");
        assert_eq!(
            server.get("/before").await.status,
            404,
            "the old slug stops answering"
        );
        assert_eq!(
            server.get("/after").await.text,
            "here",
            "the new slug answers"
        );
        server
            .admin(
                Method::DELETE,
                &format!("/api/v1/admin/apps/{app_id}"),
                None,
            )
            .await;
        assert_eq!(
            server.get("/after").await.status,
            404,
            "a deleted app stops answering"
        );
    }
);

// /healthz, /readyz and /metrics; counters move after a request.
both_backends!(health_readiness_and_metrics_answer, |store| async move {
    let server = TestServer::start(store).await;
    let answer = server.get("/healthz").await;
    assert_eq!(
        (answer.status, answer.json.clone()),
        (200, json!({"status": "ok"})),
        "healthz: {answer}"
    );
    let answer = server.get("/readyz").await;
    assert_eq!(
        (answer.status, answer.json.clone()),
        (200, json!({"status": "ok"})),
        "readyz with a database: {answer}"
    );

    server.api.deploy("counted", "1", "GET", "/").await;
    let sample = r#"picloud_http_requests_total{kind="public",status="200"}"#;
    let before = server.metric(sample).await;
    let executions_before = server
        .metric(r#"picloud_executions_total{app="counted",script="main",outcome="ok"}"#)
        .await;
    assert_eq!(
        server.get("/counted").await.status,
        200,
        "the route answers"
    );
    assert_eq!(
        server.metric(sample).await,
        before + 1.0,
        "the public 200 is counted"
    );
    assert_eq!(
        server
            .metric(r#"picloud_executions_total{app="counted",script="main",outcome="ok"}"#)
            .await,
        executions_before + 1.0,
        "the execution is counted"
    );
    let text = server.get("/metrics").await.text;
    let capacity = format!(
        "picloud_gate_capacity {}",
        PlatformConfig::default().gate_size
    );
    for name in [
        "picloud_execution_duration_seconds_bucket",
        "picloud_gate_in_use",
        capacity.as_str(),
    ] {
        assert!(text.contains(name), "/metrics has {name}: {text}");
    }
    assert!(
        server
            .metric(r#"picloud_http_requests_total{kind="admin",status="201"}"#)
            .await
            >= 3.0,
        "admin requests are counted"
    );

    server.platform.store().close().await;
    let answer = server.get("/readyz").await;
    assert_eq!(
        (answer.status, answer.code()),
        (503, "unavailable"),
        "readyz tells the truth without a database: {answer}"
    );
    assert_eq!(
        server.get("/healthz").await.status,
        200,
        "the process itself is still alive"
    );
});

// Shutting down lets an in-flight execution finish and answer before the server stops.
both_backends!(
    a_shutdown_lets_in_flight_requests_finish,
    |store| async move {
        let mut server = TestServer::start(store).await;
        let slow = r#"let started = time::now(); while time::now() - started < 800 { } "done""#;
        server.api.deploy("drain", slow, "GET", "/").await;
        let url = server.url("/drain/");
        let http = server.api.http.clone();
        let request =
            tokio::spawn(async move { http.get(url).send().await.expect("send").text().await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let started = Instant::now();
        server.stop().await;
        assert_eq!(
            request.await.expect("join").expect("body"),
            "done",
            "the in-flight request was answered"
        );
        assert!(
            started.elapsed() >= Duration::from_millis(300),
            "the server waited for it"
        );
        let refused = reqwest::get(server.url("/healthz")).await;
        assert!(refused.is_err(), "a stopped server accepts nothing more");
    }
);

// A caller that goes away does not free the gate: the script still runs, so it still counts.
both_backends!(
    an_abandoned_execution_keeps_its_place_in_the_gate,
    |store| async move {
        let platform = PlatformConfig {
            gate_size: 1,
            gate_wait_ms: 50,
            ..PlatformConfig::default()
        };
        let server = TestServer::start_with(
            store,
            Settings {
                platform,
                ..Default::default()
            },
        )
        .await;
        let slow = r#"let started = time::now(); while time::now() - started < 1500 { } "slow""#;
        let app_id = server.api.deploy("abandon", slow, "GET", "/slow").await;
        server
            .api
            .add_route(&app_id, "fast", r#""fast""#, "GET", "/fast")
            .await;
        let impatient = server
            .api
            .http
            .get(server.url("/abandon/slow"))
            .timeout(Duration::from_millis(300))
            .send()
            .await;
        assert!(impatient.is_err(), "the impatient caller gave up");
        let answer = server.get("/abandon/fast").await;
        assert_eq!(
            (answer.status, answer.code()),
            (503, "overloaded"),
            "the abandoned script still holds the gate: {answer}"
        );
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            server.get("/abandon/fast").await.text,
            "fast",
            "the gate frees when the script ends"
        );
    }
);

// #13: an app's queue of async jobs is bounded. A request past it is refused with 429 — the
// app's own backlog is full, the server is well (a 503 would page the operator and read as an
// outage) — with `Retry-After` and a sentence naming the limit, and it is not recorded. The
// admin view of the app shows where it stands.
both_backends!(
    quotas: picloud_store::AppQuotas {
        queued_jobs: 2,
        ..picloud_store::AppQuotas::default()
    },
    an_app_at_its_queue_quota_answers_async_requests_429_and_its_view_shows_its_usage,
    |store| async move {
        // A failed job waits a minute for its retry, queued.
        let mut platform = PlatformConfig::default();
        platform.jobs.retry_base_ms = 60_000;
        let server = TestServer::start_with(
            store,
            Settings {
                platform,
                ..Settings::default()
            },
        )
        .await;
        let app_id = server
            .api.deploy("shop", r#"kv::collection("notes").set("n", "✓✓"); "ok""#, "POST", "/note")
            .await;
        let script_id = server.api.create_script(&app_id, "later", r#"throw "later""#).await;
        // "notes" + "n" + "\"✓✓\"" (8 bytes: ✓ is 3) + 64 for the entry.
        let entry = ("notes".len() + "n".len() + "\"✓✓\"".len()) as u64
            + picloud_store::KV_ENTRY_OVERHEAD;
        let accepted = |n: u32| {
            Scenario::new(format!("request {n} is accepted"), Method::POST, "/shop/later")
                .caller(Caller::Anonymous)
                .status(202)
        };
        scenario::run(
            &server,
            vec![
                Scenario::new(
                    "an async route",
                    Method::POST,
                    format!("/api/v1/admin/scripts/{script_id}/routes"),
                )
                .body(json!({"method": "POST", "path": "/later", "dispatch_mode": "async"}))
                .status(201),
                accepted(0),
                accepted(1).effect(Effect::Queued { jobs: 2 }),
                Scenario::new("a full queue refuses", Method::POST, "/shop/later")
                    .caller(Caller::Anonymous)
                    .error(429, "quota_exceeded")
                    .header("retry-after", "5")
                    .contains("/error/message", "the app has 2 queued jobs")
                    .contains("/error/message", "limit of 2")
                    .effect(Effect::Queued { jobs: 2 }),
                Scenario::new("a sync route still runs", Method::POST, "/shop/note")
                    .caller(Caller::Anonymous),
                Scenario::new(
                    "the view shows the app's usage and quotas beside its fields",
                    Method::GET,
                    format!("/api/v1/admin/apps/{app_id}"),
                )
                .field(
                    "/usage",
                    json!({
                        "kv_bytes": entry,
                        "kv_bytes_quota": picloud_store::AppQuotas::default().stored_bytes,
                        "queued_jobs": 2,
                        "queued_jobs_quota": 2
                    }),
                )
                .field("/slug", json!("shop")),
            ],
        )
        .await;
    }
);
