//! Issue #12, what is stored and what anonymous callers are shown, over HTTP on both backends:
//! an async job's stored payload (and so its dead letter, and what its run sees) leaves out the
//! caller's credentials unless the route keeps them; a public 5xx names the kind of failure and
//! the execution, never the script's message or position, unless the app exposes them.

use std::time::{Duration, Instant};

use picloud_core::{HeaderNames, Limits};
use picloud_orchestrator::{JobConfig, PlatformConfig, RedactedHeaders};
use picloud_test_support::both_backends;
use picloud_test_support::http::Answer;
use picloud_test_support::scenario::{self, Scenario};
use picloud_test_support::server::{Settings, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

/// Throws the names of the headers its run sees, so the dead letter's error says what the run
/// saw and its payload what was stored.
const THROW_HEADER_NAMES: &str = r#"
let seen = "";
for name in ctx.request.headers.keys() { seen += name + ";"; }
throw "headers seen: " + seen;
"#;

/// The credentials a caller sends, and `x-session`, which the server is configured to redact too.
const SENSITIVE: [(&str, &str); 4] = [
    ("Authorization", "Bearer caller-secret"),
    ("Cookie", "sid=caller-session"),
    ("X-Api-Key", "pk_caller_key"),
    ("X-Session", "caller-session-2"),
];

/// One attempt per job, so a failing async request is dead-lettered at once; `x-session` is
/// redacted besides the defaults.
fn settings() -> Settings {
    let extra = HeaderNames::parse("redacted_headers", &["x-session"]).expect("a header name");
    Settings {
        platform: PlatformConfig {
            jobs: JobConfig {
                retry_max_attempts: 1,
                ..JobConfig::default()
            },
            redacted_headers: RedactedHeaders::with_extra(extra),
            ..PlatformConfig::default()
        },
        ..Settings::default()
    }
}

/// `POST /api/v1/admin/scripts/{script_id}/routes` with `body`.
async fn create_route(server: &TestServer, script_id: &str, body: Value) -> Answer {
    server
        .admin(
            Method::POST,
            &format!("/api/v1/admin/scripts/{script_id}/routes"),
            Some(body),
        )
        .await
}

/// An app `slug` whose failing script answers the async `POST /hook`, keeping `keep`; returns the
/// app's id.
async fn failing_hook(server: &TestServer, slug: &str, keep: &[&str]) -> String {
    let app_id = server.api.create_app(slug).await;
    let script_id = server
        .api
        .create_script(&app_id, "hook", THROW_HEADER_NAMES)
        .await;
    let route = create_route(
        server,
        &script_id,
        json!({"method": "POST", "path": "/hook", "dispatch_mode": "async", "keep_headers": keep}),
    )
    .await;
    assert_eq!(route.status, 201, "the async route is created: {route}");
    app_id
}

/// Calls `POST /{slug}/hook` with the sensitive headers and `x-trace`; asserts the 202.
async fn call_hook(server: &TestServer, slug: &str) {
    let mut request = server
        .api
        .http
        .post(server.url(&format!("/{slug}/hook")))
        .header("x-trace", "trace-1")
        .body("{}");
    for (name, value) in SENSITIVE {
        request = request.header(name, value);
    }
    let answer = Answer::read(request.send().await.expect("the hook is called")).await;
    assert_eq!(answer.status, 202, "an async route accepts: {answer}");
}

/// The app's one dead letter, once the dispatcher has written it.
async fn dead_letter(server: &TestServer, app_id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps/{app_id}/dead-letters?status=all"),
                None,
            )
            .await;
        assert_eq!(list.status, 200, "the dead letters are listed: {list}");
        if let Some(letter) = list.json["items"].get(0) {
            return letter.clone();
        }
        assert!(
            Instant::now() < deadline,
            "the failing job is dead-lettered in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The header names of a dead letter's stored request, lower case.
fn stored_header_names(letter: &Value) -> Vec<String> {
    letter["payload"]["request"]["headers"]
        .as_object()
        .expect("the stored request's headers")
        .keys()
        .cloned()
        .collect()
}

// Issue #12: an async request's Authorization and Cookie were stored verbatim in the outbox and,
// for 30 days, in its dead letter, where every editor of the app (and its dead_letter triggers)
// could read them.
both_backends!(
    an_async_requests_credentials_are_in_neither_its_dead_letter_nor_its_run,
    |store| async move {
        let server = TestServer::start_with(store, settings()).await;
        let app_id = failing_hook(&server, "hooks", &[]).await;
        call_hook(&server, "hooks").await;
        let letter = dead_letter(&server, &app_id).await;

        let stored = stored_header_names(&letter);
        assert!(
            stored.contains(&"x-trace".to_owned()),
            "an ordinary header is kept: {stored:?}"
        );
        for (name, value) in SENSITIVE {
            let name = name.to_ascii_lowercase();
            assert!(!stored.contains(&name), "{name} is not stored: {stored:?}");
            assert!(
                !letter.to_string().contains(value),
                "the value of {name} appears nowhere in the dead letter: {letter}"
            );
        }
        let error = letter["error"].as_str().expect("the run's error");
        assert!(
            error.contains("x-trace;"),
            "the run saw the ordinary header, so its list is real: {error}"
        );
        for (name, _) in SENSITIVE {
            let name = name.to_ascii_lowercase();
            assert!(
                !error.contains(&format!("{name};")),
                "the run did not see {name}: {error}"
            );
        }
    }
);

// A route that needs a credential in its async run (a webhook relaying the caller's token) keeps
// just that one; the others are still dropped.
both_backends!(
    a_route_keeps_only_the_redacted_headers_it_names,
    |store| async move {
        let server = TestServer::start_with(store, settings()).await;
        let app_id = failing_hook(&server, "relay", &["Authorization"]).await;
        let routes = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps/{app_id}/routes"),
                None,
            )
            .await;
        assert_eq!(
            routes.json["items"][0]["keep_headers"],
            json!(["authorization"]),
            "the route shows what it keeps, lower-cased: {routes}"
        );
        call_hook(&server, "relay").await;
        let letter = dead_letter(&server, &app_id).await;
        let stored = stored_header_names(&letter);
        assert!(
            stored.contains(&"authorization".to_owned()),
            "the kept header is stored: {stored:?}"
        );
        for dropped in ["cookie", "x-api-key", "x-session"] {
            assert!(
                !stored.contains(&dropped.to_owned()),
                "{dropped} is still dropped: {stored:?}"
            );
        }
        let error = letter["error"].as_str().expect("the run's error");
        assert!(
            error.contains("authorization;") && !error.contains("cookie;"),
            "the run sees the kept header and not the others: {error}"
        );
    }
);

// What a route may keep is checked where it is created, with the field named.
both_backends!(
    keep_headers_is_refused_on_sync_routes_and_when_malformed,
    |store| async move {
        let server = TestServer::start(store).await;
        let app_id = server.api.create_app("checks").await;
        let script_id = server.api.create_script(&app_id, "main", "()").await;
        let routes = format!("/api/v1/admin/scripts/{script_id}/routes");
        let seventeen: Vec<String> = (0..17).map(|i| format!("x-h{i}")).collect();
        let refused = |case: &str, body: Value, says: &str| {
            Scenario::new(format!("{case} is refused"), Method::POST, &routes)
                .body(body)
                .error(400, "invalid_input")
                .field("/error/field", json!("keep_headers"))
                .contains("/error/message", says)
        };
        scenario::run(
            &server,
            vec![
                Scenario::new("a route keeps nothing by default", Method::POST, &routes)
                    .body(json!({"method": "POST", "path": "/plain", "dispatch_mode": "async"}))
                    .status(201)
                    .field("/keep_headers", json!([])),
                refused(
                    "a sync route",
                    json!({"method": "GET", "path": "/s", "dispatch_mode": "sync", "keep_headers": ["authorization"]}),
                    "never stored",
                ),
                refused(
                    "a route that is sync by default",
                    json!({"method": "GET", "path": "/d", "keep_headers": ["cookie"]}),
                    "never stored",
                ),
                refused(
                    "an invalid header name",
                    json!({"method": "POST", "path": "/n", "dispatch_mode": "async", "keep_headers": ["bad header"]}),
                    "bad header",
                ),
                refused(
                    "seventeen names",
                    json!({"method": "POST", "path": "/m", "dispatch_mode": "async", "keep_headers": seventeen}),
                    "at most 16",
                ),
            ],
        )
        .await;
    }
);

/// The `error` object of a public call.
fn public_error(answer: &Answer) -> &Value {
    &answer.json["error"]
}

/// What the admin test run of `script_id` says went wrong.
async fn admin_run_error(server: &TestServer, script_id: &str) -> Value {
    let run = server
        .admin(
            Method::POST,
            &format!("/api/v1/admin/scripts/{script_id}/execute"),
            Some(json!({})),
        )
        .await;
    assert_eq!(run.status, 200, "the test run answers: {run}");
    run.json["error"].clone()
}

// Issue #12: a public route's 500 told anyone on the internet the script's error text
// ("Function not found: kv::colection …") and its line and column.
both_backends!(
    an_anonymous_caller_sees_the_kind_of_failure_and_its_id_not_the_scripts_error,
    |store| async move {
        let server = TestServer::start(store).await;
        let app_id = server.api.create_app("typo").await;
        let script_id = server
            .api
            // A typo the save-time check cannot see (a method of a handle): it fails at run time.
            .create_script(
                &app_id,
                "main",
                "let x = 1;\nkv::collection(\"x\").gett(\"k\")",
            )
            .await;
        server.api.create_route(&script_id, "GET", "/").await;

        let answer = server.get("/typo/").await;
        assert_eq!(
            (answer.status, answer.code()),
            (500, "script_error"),
            "the kind of failure stays: {answer}"
        );
        let error = public_error(&answer);
        let execution_id = error["execution_id"].as_str().expect("the execution id");
        assert_eq!(
            answer.header("x-picloud-execution-id"),
            Some(execution_id),
            "the header and the body name the same execution"
        );
        assert!(
            !answer.text.contains("gett"),
            "the script's message is not sent: {answer}"
        );
        assert!(
            error.get("line").is_none() && error.get("column").is_none(),
            "nor its position: {answer}"
        );

        let detail = admin_run_error(&server, &script_id).await;
        assert!(
            detail["message"]
                .as_str()
                .is_some_and(|m| m.contains("gett")),
            "an admin's test run shows the message: {detail}"
        );
        assert_eq!(detail["line"], json!(2), "and the line: {detail}");

        let patched = server
            .admin(
                Method::PATCH,
                &format!("/api/v1/admin/apps/{app_id}"),
                Some(json!({"expose_errors": true})),
            )
            .await;
        assert_eq!(
            (patched.status, &patched.json["expose_errors"]),
            (200, &json!(true)),
            "the app now exposes its errors: {patched}"
        );
        let answer = server.get("/typo/").await;
        let error = public_error(&answer);
        assert!(
            error["message"]
                .as_str()
                .is_some_and(|m| m.contains("gett")),
            "a development app shows the message at once, without a restart: {answer}"
        );
        assert_eq!(error["line"], json!(2), "and the line: {answer}");
    }
);

// An app created with `expose_errors` shows the details from the start; one created without
// shows `false`.
both_backends!(
    expose_errors_is_set_at_creation_and_shown_in_the_apps_json,
    |store| async move {
        let server = TestServer::start(store).await;
        let quiet = server
            .admin(
                Method::POST,
                "/api/v1/admin/apps",
                Some(json!({"slug": "quiet", "name": "quiet"})),
            )
            .await;
        assert_eq!(
            quiet.json["expose_errors"],
            json!(false),
            "off by default: {quiet}"
        );
        let dev = server
            .admin(
                Method::POST,
                "/api/v1/admin/apps",
                Some(json!({"slug": "dev", "name": "dev", "expose_errors": true})),
            )
            .await;
        assert_eq!(
            (dev.status, &dev.json["expose_errors"]),
            (201, &json!(true)),
            "on when asked: {dev}"
        );
        let app_id = dev.json["id"].as_str().expect("an app id");
        server
            .api
            .add_route(app_id, "boom", r#"throw "boom""#, "GET", "/")
            .await;
        let answer = server.get("/dev/").await;
        assert!(
            public_error(&answer)["message"]
                .as_str()
                .is_some_and(|m| m.contains("boom")),
            "the thrown message is shown: {answer}"
        );
    }
);

// A limit's message (which limit, at what count) is the script's detail too.
both_backends!(
    a_limit_error_is_generic_for_an_anonymous_caller,
    |store| async move {
        let limits = Limits {
            max_operations: 10_000,
            timeout_ms: 30_000,
            ..Limits::default()
        };
        let server = TestServer::start_with(
            store,
            Settings {
                limits,
                ..Settings::default()
            },
        )
        .await;
        let app_id = server.api.create_app("spin").await;
        let script_id = server.api.create_script(&app_id, "main", "loop { }").await;
        server.api.create_route(&script_id, "GET", "/").await;
        let answer = server.get("/spin/").await;
        assert_eq!(
            (answer.status, answer.code()),
            (500, "limit_exceeded"),
            "the operations limit stops it: {answer}"
        );
        let detail = admin_run_error(&server, &script_id).await;
        let detailed = detail["message"].as_str().expect("the detailed message");
        let sent = public_error(&answer)["message"]
            .as_str()
            .expect("a message");
        assert!(
            !sent.contains(detailed) && sent != detailed,
            "the public message is not the detailed one ({detailed}): {sent}"
        );
        assert!(
            public_error(&answer)["execution_id"].is_string(),
            "the execution is named: {answer}"
        );
    }
);
