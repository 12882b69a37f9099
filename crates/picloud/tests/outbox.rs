//! The outbox's rules through the real binary, with test-sized settings: retries with
//! exponential backoff then a dead letter; replaying and resolving dead letters; the recursion
//! stop for dead-letter handlers; the trigger-depth limit; a KV trigger's `ctx.event`.

use std::time::{Duration, Instant};

use picloud_store::Backend;
use picloud_test_support::binary::{Database, Process};
use picloud_test_support::http::{get_json, Admin};
use picloud_test_support::{eventually, ADMIN_PASSWORD};
use serde_json::{json, Value};

/// Retries after 200 ms then 400 ms (± 20 %), three attempts, due jobs looked for every 50 ms.
const FAST_RETRIES: [(&str, &str); 4] = [
    ("PICLOUD_TRIGGER_RETRY_BASE_MS", "200"),
    ("PICLOUD_TRIGGER_RETRY_MAX_ATTEMPTS", "3"),
    ("PICLOUD_TRIGGER_RETRY_MAX_MS", "5000"),
    ("PICLOUD_OUTBOX_POLL_MS", "50"),
];

/// A server on a fresh SQLite database with [`FAST_RETRIES`] and `extra`, and its admin.
async fn server(extra: &[(&str, &str)]) -> Option<(Process, Admin, Database)> {
    let db = Database::fresh(Backend::Sqlite)?;
    let mut settings = FAST_RETRIES.to_vec();
    settings.extend_from_slice(extra);
    let server = Process::serve(&db, &settings);
    let admin = Admin::login(&server.admin_base, ADMIN_PASSWORD).await;
    Some((server, admin, db))
}

/// `POST url` with `body`; the status, the JSON body and the execution-id header.
async fn post(url: &str, body: Value) -> (u16, Value, Option<String>) {
    let response = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = response.status().as_u16();
    let header = response
        .headers()
        .get("x-picloud-execution-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    (status, response.json().await.unwrap_or(Value::Null), header)
}

/// An async request that must be accepted; returns its execution id.
async fn accepted(url: &str, body: Value) -> String {
    let (status, body, header) = post(url, body).await;
    assert_eq!(status, 202, "an async route accepts the job: {body}");
    let id = body["execution_id"]
        .as_str()
        .unwrap_or_else(|| panic!("the 202 names the execution: {body}"))
        .to_owned();
    assert_eq!(
        header.as_deref(),
        Some(id.as_str()),
        "x-picloud-execution-id names the same execution"
    );
    id
}

/// The app's dead letters with `status` once there are `count` of them.
async fn dead_letters(admin: &Admin, app_id: &str, status: &str, count: usize) -> Vec<Value> {
    eventually(
        &format!("{count} {status} dead letter(s) appear"),
        Duration::from_secs(20),
        || async move {
            let items = admin.dead_letters(app_id, status).await;
            (items.len() >= count).then_some(items)
        },
    )
    .await
}

/// A job that always fails is attempted `PICLOUD_TRIGGER_RETRY_MAX_ATTEMPTS` times, the delays
/// doubling from `PICLOUD_TRIGGER_RETRY_BASE_MS` (± 20 %), then dead-lettered with its last error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_async_job_is_retried_with_backoff_then_dead_lettered() {
    let Some((server, admin, _db)) = server(&[]).await else {
        return;
    };
    let app_id = admin.create_app("retry").await;
    let script_id = admin
        .route(
            &app_id,
            "fails",
            r#"throw "always fails""#,
            ("POST", "/fail"),
            "async",
        )
        .await;
    let started = Instant::now();
    let execution_id = accepted(&format!("{}/retry/fail", server.base), json!({"a": 1})).await;
    let items = dead_letters(&admin, &app_id, "unresolved", 1).await;
    let elapsed = started.elapsed();
    eprintln!(
        "retries: 3 attempts with base 200 ms dead-lettered {} ms after acceptance (nominal 600 ms \
         of backoff, at least 480 ms with jitter)",
        elapsed.as_millis()
    );
    assert_eq!(items.len(), 1, "one dead letter: {items:?}");
    let dead = &items[0];
    assert_eq!(dead["attempts"], 3, "every attempt was made: {dead}");
    assert!(
        elapsed >= Duration::from_millis(480),
        "two backoff delays of 200 and 400 ms (−20 % at most) passed first, not {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(5),
        "the retries come due promptly: {elapsed:?}"
    );
    assert_eq!(
        dead["execution_id"],
        execution_id.as_str(),
        "the accepted job: {dead}"
    );
    assert_eq!(dead["script_id"], script_id.as_str(), "its script: {dead}");
    assert_eq!(dead["app_id"], app_id.as_str(), "its app: {dead}");
    assert_eq!(dead["source"], "http", "from an async route: {dead}");
    assert_eq!(
        dead["payload"]["source"], "http",
        "the payload is the request: {dead}"
    );
    assert!(
        dead["error"]
            .as_str()
            .is_some_and(|e| e.contains("always fails")),
        "the last error is kept: {dead}"
    );
    assert!(
        dead["resolution"].is_null() && dead["resolved_at"].is_null(),
        "an open dead letter: {dead}"
    );
    assert!(dead["created_at"].is_string(), "a creation time: {dead}");
}

/// A job that failed for want of data runs again when replayed after the data is there: the
/// replay is a new execution with the original request, and the dead letter is `replayed`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_dead_letter_runs_again_as_a_new_execution() {
    let Some((server, admin, _db)) = server(&[]).await else {
        return;
    };
    let app_id = admin.create_app("replay").await;
    let flaky = r#"
        let ready = kv::collection("flags").get("ready") ?? false;
        if !ready { throw "not ready yet"; }
        kv::collection("done").set(ctx.execution_id, ctx.request.json);
    "#;
    admin
        .route(&app_id, "flaky", flaky, ("POST", "/flaky"), "async")
        .await;
    admin
        .route(
            &app_id,
            "ready",
            r#"kv::collection("flags").set("ready", true); "ready""#,
            ("POST", "/ready"),
            "sync",
        )
        .await;
    admin
        .route(
            &app_id,
            "done",
            r#"kv::collection("done").list().items"#,
            ("GET", "/done"),
            "sync",
        )
        .await;
    let base = format!("{}/replay", server.base);

    let first = accepted(&format!("{base}/flaky"), json!({"order": 7})).await;
    let dead = dead_letters(&admin, &app_id, "unresolved", 1).await[0].clone();
    assert_eq!(
        dead["execution_id"],
        first.as_str(),
        "the flaky job: {dead}"
    );
    assert_eq!(
        get_json(&format!("{base}/done")).await,
        (200, json!([])),
        "it never succeeded"
    );

    let (status, _, _) = post(&format!("{base}/ready"), json!({})).await;
    assert_eq!(status, 200, "the flag is set");
    let dead_id = dead["id"].as_str().expect("a dead letter id");
    let (status, replay) = admin
        .post(
            &format!("/api/v1/admin/dead-letters/{dead_id}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "the replay is accepted: {replay}");
    assert_eq!(
        replay["dead_letter"]["resolution"], "replayed",
        "the dead letter is closed as replayed: {replay}"
    );
    assert!(
        replay["dead_letter"]["resolved_at"].is_string(),
        "with a time: {replay}"
    );
    let second = replay["execution_id"]
        .as_str()
        .expect("the replay's execution id")
        .to_owned();
    assert_ne!(second, first, "the replay is a new execution");

    let done = eventually(
        "the replayed job succeeds",
        Duration::from_secs(10),
        || async {
            let (_, items) = get_json(&format!("{base}/done")).await;
            items.as_array().filter(|items| !items.is_empty()).cloned()
        },
    )
    .await;
    assert_eq!(
        done,
        vec![json!({"key": second, "value": {"order": 7}})],
        "the replay ran once, as the new execution, with the original request"
    );
    assert!(
        admin.dead_letters(&app_id, "unresolved").await.is_empty(),
        "no open dead letter remains"
    );
    let resolved = admin.dead_letters(&app_id, "resolved").await;
    assert_eq!(
        (resolved.len(), resolved[0]["resolution"].clone()),
        (1, json!("replayed")),
        "the closed one is listed as replayed: {resolved:?}"
    );
    let (status, body) = admin
        .post(
            &format!("/api/v1/admin/dead-letters/{dead_id}/replay"),
            json!({}),
        )
        .await;
    assert_eq!(status, 409, "a dead letter is replayed once: {body}");
}

/// Resolving closes a dead letter without running anything; a closed one cannot be closed again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolved_dead_letter_is_closed_and_cannot_be_replayed() {
    let Some((server, admin, _db)) = server(&[]).await else {
        return;
    };
    let app_id = admin.create_app("resolve").await;
    let script_id = admin
        .route(
            &app_id,
            "fails",
            r#"throw "nope""#,
            ("POST", "/fail"),
            "async",
        )
        .await;
    admin
        .route(&app_id, "ok", r#""fine""#, ("POST", "/ok"), "async")
        .await;
    accepted(&format!("{}/resolve/fail", server.base), json!({})).await;
    accepted(&format!("{}/resolve/ok", server.base), json!({})).await;
    let dead = dead_letters(&admin, &app_id, "unresolved", 1).await;
    assert_eq!(
        dead.len(),
        1,
        "only the failing job is dead-lettered: {dead:?}"
    );
    let filtered = admin
        .get(&format!(
            "/api/v1/admin/apps/{app_id}/dead-letters?status=all&script_id={script_id}"
        ))
        .await;
    assert_eq!(
        (filtered.0, filtered.1["items"].as_array().map(Vec::len)),
        (200, Some(1)),
        "the list filters by script: {}",
        filtered.1
    );
    let id = dead[0]["id"].as_str().expect("an id");
    let (status, closed) = admin
        .post(
            &format!("/api/v1/admin/dead-letters/{id}/resolve"),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "resolved: {closed}");
    assert_eq!(
        closed["resolution"], "resolved",
        "closed as resolved: {closed}"
    );
    assert!(closed["resolved_at"].is_string(), "with a time: {closed}");
    assert!(
        admin.dead_letters(&app_id, "unresolved").await.is_empty(),
        "no longer open"
    );
    assert_eq!(
        admin.dead_letters(&app_id, "all").await.len(),
        1,
        "still listed among all"
    );
    for action in ["resolve", "replay"] {
        let (status, body) = admin
            .post(
                &format!("/api/v1/admin/dead-letters/{id}/{action}"),
                json!({}),
            )
            .await;
        assert_eq!(
            status, 409,
            "{action} of a closed dead letter is refused: {body}"
        );
    }
}

/// The recursion stop: a dead-letter handler that fails marks its dead letter `handler_failed`
/// and never makes a dead letter of its own (which would run the handler again, and so on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_dead_letter_handler_marks_its_dead_letter_and_makes_no_new_one() {
    let Some((server, admin, _db)) = server(&[]).await else {
        return;
    };
    let app_id = admin.create_app("dlh").await;
    let failing = admin
        .route(
            &app_id,
            "fails",
            r#"throw "boom""#,
            ("POST", "/fail"),
            "async",
        )
        .await;
    let handler = admin
        .create_script(
            &app_id,
            "handler",
            r#"
            log::info(`handled ${json::stringify(ctx.event)}`);
            throw "the handler fails too";
            "#,
        )
        .await;
    let (status, trigger) = admin
        .post(
            &format!("/api/v1/admin/apps/{app_id}/triggers/dead_letter"),
            json!({"script_id": handler}),
        )
        .await;
    assert_eq!(status, 201, "the dead-letter trigger is created: {trigger}");

    accepted(&format!("{}/dlh/fail", server.base), json!({"x": 1})).await;
    let dead = eventually(
        "the handler's failure marks the dead letter",
        Duration::from_secs(20),
        || async {
            let items = admin.dead_letters(&app_id, "all").await;
            items
                .iter()
                .any(|d| d["resolution"] == "handler_failed")
                .then_some(items)
        },
    )
    .await;
    // Several poll intervals (50 ms) for a second dead letter or a second handler run to appear.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = admin.dead_letters(&app_id, "all").await;
    assert_eq!(
        after.len(),
        1,
        "the failed handler makes no dead letter of its own: {after:?}"
    );
    assert_eq!(after[0]["id"], dead[0]["id"], "the same dead letter");
    assert!(
        after[0]["resolved_at"].is_string(),
        "closed with a time: {after:?}"
    );

    // A run that fails writes nothing (#15): the handler leaves its record in the log.
    let handled: Vec<Value> = server
        .logs()
        .iter()
        .filter_map(|line| {
            line["message"]
                .as_str()?
                .strip_prefix("handled ")
                .map(str::to_owned)
        })
        .map(|event| serde_json::from_str(&event).expect("the event as JSON"))
        .collect();
    assert_eq!(
        handled.len(),
        1,
        "the handler ran once, not retried: {handled:?}"
    );
    let event = &handled[0];
    assert_eq!(
        event["source"], "dead_letter",
        "a dead-letter event: {event}"
    );
    let seen = &event["dead_letter"];
    assert_eq!(
        seen["id"], after[0]["id"],
        "it names the dead letter: {event}"
    );
    assert_eq!(
        seen["script_id"],
        failing.as_str(),
        "and the failed script: {event}"
    );
    assert_eq!(seen["attempts"], 3, "and its attempts: {event}");
    assert!(
        seen["error"].as_str().is_some_and(|e| e.contains("boom")),
        "and its error: {event}"
    );
    assert_eq!(
        seen["payload"]["source"], "http",
        "and the failed job's payload: {event}"
    );
}

/// A KV trigger whose script writes what triggers it stops at the trigger-depth limit; the
/// loop is logged, and the server keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trigger_depth_limit_stops_a_self_triggering_loop() {
    let Some((server, admin, _db)) = server(&[("PICLOUD_MAX_TRIGGER_DEPTH", "3")]).await else {
        return;
    };
    let app_id = admin.create_app("loop").await;
    let handler = admin
        .create_script(
            &app_id,
            "again",
            r#"
            let c = kv::collection("loop");
            c.set("count", (c.get("count") ?? 0) + 1);
            "#,
        )
        .await;
    admin
        .route(
            &app_id,
            "start",
            r#"kv::collection("loop").set("count", 0); "started""#,
            ("POST", "/start"),
            "sync",
        )
        .await;
    admin
        .route(
            &app_id,
            "count",
            r#"kv::collection("loop").get("count")"#,
            ("GET", "/count"),
            "sync",
        )
        .await;
    let (status, trigger) = admin
        .post(
            &format!("/api/v1/admin/apps/{app_id}/triggers/kv"),
            json!({"script_id": handler, "collection": "loop"}),
        )
        .await;
    assert_eq!(status, 201, "the KV trigger is created: {trigger}");

    let (status, _, _) = post(&format!("{}/loop/start", server.base), json!({})).await;
    assert_eq!(status, 200, "the loop starts");
    assert!(
        server.log_arrives(
            |l| l["message"]
                .as_str()
                .is_some_and(|m| m.contains("trigger-depth limit")),
            Duration::from_secs(15)
        ),
        "the skipped run is logged as a loop; logs: {:#?}",
        server.tail_logs(20)
    );
    let (status, stopped_at) = get_json(&format!("{}/loop/count", server.base)).await;
    assert_eq!(status, 200, "the server answers after the loop");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, later) = get_json(&format!("{}/loop/count", server.base)).await;
    eprintln!("trigger depth 3: the self-triggering counter stopped at {stopped_at}");
    assert_eq!(
        later, stopped_at,
        "the counter stays where the loop stopped"
    );
    let count = stopped_at.as_u64().expect("a count");
    assert!(
        (2..=4).contains(&count),
        "the loop ran about as deep as the limit (3), not {count}"
    );
    assert!(
        admin.dead_letters(&app_id, "all").await.is_empty(),
        "a run skipped for depth is not dead-lettered"
    );
}

/// A KV trigger runs its script for each matching write, with the change in `ctx.event`; keys
/// outside its prefix do not fire it; a deleted trigger fires no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kv_trigger_runs_its_script_with_the_change_in_ctx_event() {
    let Some((server, admin, _db)) = server(&[]).await else {
        return;
    };
    let app_id = admin.create_app("kvt").await;
    let handler = admin
        .create_script(
            &app_id,
            "seen",
            r#"kv::collection("seen").set(ctx.execution_id, ctx.event);"#,
        )
        .await;
    admin
        .route(
            &app_id,
            "write",
            r#"
            let orders = kv::collection("orders");
            let write = ctx.request.json;
            if write.value == () { orders.delete(write.key); } else { orders.set(write.key, write.value); }
            "written"
            "#,
            ("POST", "/write"),
            "sync",
        )
        .await;
    admin
        .route(
            &app_id,
            "events",
            r#"let events = []; for item in kv::collection("seen").list().items { events.push(item.value); } events"#,
            ("GET", "/events"),
            "sync",
        )
        .await;
    let (status, trigger) = admin
        .post(
            &format!("/api/v1/admin/apps/{app_id}/triggers/kv"),
            json!({"script_id": handler, "collection": "orders", "key_prefix": "o:", "ops": ["set", "delete"]}),
        )
        .await;
    assert_eq!(status, 201, "the KV trigger is created: {trigger}");
    let (status, list) = admin
        .get(&format!("/api/v1/admin/apps/{app_id}/triggers"))
        .await;
    assert_eq!(
        (status, list["items"].as_array().map(Vec::len)),
        (200, Some(1)),
        "the trigger is listed: {list}"
    );

    // One write per run: a trigger fires on what a run's commit changed, key by key, from the
    // value before the run to the value after it (#15).
    let base = format!("{}/kvt", server.base);
    for write in [
        json!({"key": "o:1", "value": {"total": 5}}),
        json!({"key": "x:2", "value": {"total": 9}}),
        json!({"key": "o:1", "value": {"total": 7}}),
        json!({"key": "o:1"}),
    ] {
        let (status, _, _) = post(&format!("{base}/write"), write.clone()).await;
        assert_eq!(status, 200, "{write} is written");
    }
    let events = eventually("three trigger runs", Duration::from_secs(10), || async {
        let (_, events) = get_json(&format!("{base}/events")).await;
        events.as_array().filter(|e| e.len() >= 3).cloned()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, again) = get_json(&format!("{base}/events")).await;
    assert_eq!(
        again.as_array().map(Vec::len),
        Some(3),
        "x:2 fires nothing: {again}"
    );
    let change = |op: &str, value: Value, prev: Value| json!({"source": "kv", "kv": {"collection": "orders", "key": "o:1", "op": op, "value": value, "prev_value": prev}});
    for expected in [
        change("set", json!({"total": 5}), Value::Null),
        change("set", json!({"total": 7}), json!({"total": 5})),
        change("delete", Value::Null, json!({"total": 7})),
    ] {
        assert!(
            events.contains(&expected),
            "the handler saw {expected} in ctx.event; it saw {events:?}"
        );
    }

    let trigger_id = trigger["id"].as_str().expect("a trigger id");
    assert_eq!(
        admin
            .delete(&format!("/api/v1/admin/triggers/{trigger_id}"))
            .await,
        204,
        "the trigger is deleted"
    );
    let (status, _, _) = post(
        &format!("{base}/write"),
        json!({"key": "o:1", "value": {"total": 1}}),
    )
    .await;
    assert_eq!(status, 200, "the write is made again");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (_, after) = get_json(&format!("{base}/events")).await;
    assert_eq!(
        after.as_array().map(Vec::len),
        Some(3),
        "a deleted trigger fires no more: {after}"
    );
}
