//! Execution records through the admin API, on both backends (#18): every source of execution
//! — a sync request, each attempt of an async job, a trigger handler, a test run — leaves exactly
//! one record per attempt with its outcome, error and log; lists filter and refuse bad filters
//! with a sentence; someone without access to the app finds nothing. The live tail streams the
//! runs that finish after it opened, and drops a reader that stalls without slowing anyone.

use std::time::Duration;

use picloud_test_support::both_backends;
use picloud_test_support::eventually;
use picloud_test_support::http::EventStream;
use picloud_test_support::server::{Settings, TestServer};
use reqwest::Method;
use serde_json::{json, Value};

const WITHIN: Duration = Duration::from_secs(10);

/// The app's records matching `query` (`source=sync`…), once there are `count` of them.
async fn records(server: &TestServer, app: &str, query: &str, count: usize) -> Vec<Value> {
    let path = format!("/api/v1/admin/apps/{app}/executions?{query}");
    eventually(&format!("{count} records for ?{query}"), WITHIN, || async {
        let answer = server.admin(Method::GET, &path, None).await;
        assert_eq!(answer.status, 200, "{answer}");
        let items = answer.json["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= count).then_some(items)
    })
    .await
}

both_backends!(
    every_source_of_execution_leaves_one_record_per_attempt,
    |store| async move {
        let mut settings = Settings::default();
        settings.platform.jobs.retry_max_attempts = 2;
        settings.platform.jobs.retry_base_ms = 10;
        let server = TestServer::start_with(store, settings).await;
        let app = server.api.create_app("shop").await;
        server
            .api
            .add_route(
                &app,
                "hello",
                "print(\"saying hi\");\n#{ hi: 1 }",
                "GET",
                "/hello",
            )
            .await;
        server
            .api
            .add_route(&app, "boom", "let x = 1;\nthrow \"boom\";", "GET", "/boom")
            .await;
        let failing = server
            .api
            .route(
                &app,
                "later",
                "throw \"not today\";",
                ("POST", "/later"),
                "async",
            )
            .await;
        let handler = server
            .api
            .create_script(&app, "handler", "log::info(`saw ${ctx.event.kv.key}`);")
            .await;
        let (status, _) = server
            .api
            .post(
                &format!("/api/v1/admin/apps/{app}/triggers/kv"),
                json!({"script_id": handler, "collection": "orders"}),
            )
            .await;
        assert_eq!(status, 201);
        server
            .api
            .add_route(
                &app,
                "order",
                "kv::collection(\"orders\").set(\"o-1\", 1); 1",
                "GET",
                "/order",
            )
            .await;

        assert_eq!(server.get("/shop/hello").await.status, 200);
        assert_eq!(server.get("/shop/boom").await.status, 500);
        let accepted = server.call(Method::POST, "/shop/later", None, None).await;
        assert_eq!(accepted.status, 202, "{accepted}");
        let job = accepted.json["execution_id"]
            .as_str()
            .expect("an id")
            .to_owned();
        assert_eq!(server.get("/shop/order").await.status, 200);
        let tested = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/scripts/{failing}/execute"),
                Some(json!({})),
            )
            .await;
        assert_eq!(tested.status, 200, "{tested}");

        let ok = records(&server, &app, "source=sync&outcome=ok", 2).await;
        assert_eq!(ok.len(), 2, "hello and order: {ok:?}");
        let hello = ok
            .iter()
            .find(|r| r["summary"] == "GET /hello")
            .expect("the hello record");
        assert_eq!(hello["status"], 200);
        assert_eq!(hello["attempt"], 1);
        assert_eq!(hello["runs"], 1);
        assert_eq!(hello["logs"][0]["message"], "saying hi", "{hello}");
        assert_eq!(hello["logs"][0]["level"], "info", "{hello}");

        let failed = records(&server, &app, "source=sync&outcome=runtime_error", 1).await;
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0]["summary"], "GET /boom");
        assert_eq!(failed[0]["error"]["message"], "boom");
        assert_eq!(failed[0]["error"]["line"], 2);
        let errors = records(&server, &app, "source=sync&outcome=error", 1).await;
        assert_eq!(errors, failed, "outcome=error is every outcome but ok");

        let handled = records(&server, &app, "source=kv", 1).await;
        assert_eq!(handled[0]["summary"], "kv set orders/o-1", "{handled:?}");
        assert_eq!(handled[0]["outcome"], "ok");
        assert_eq!(handled[0]["logs"][0]["message"], "saw o-1");

        let test_runs = records(&server, &app, "source=test", 1).await;
        assert_eq!(test_runs[0]["summary"], "test run GET /", "{test_runs:?}");
        assert_eq!(test_runs[0]["outcome"], "runtime_error");

        // The async job fails both of its attempts: one record each, under its execution id.
        let attempts = eventually("both attempts recorded", WITHIN, || async {
            let answer = server
                .admin(
                    Method::GET,
                    &format!("/api/v1/admin/executions/{job}"),
                    None,
                )
                .await;
            let attempts = answer.json["attempts"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            (attempts.len() == 2).then_some(attempts)
        })
        .await;
        assert_eq!(
            attempts
                .iter()
                .map(|a| a["attempt"].clone())
                .collect::<Vec<_>>(),
            [json!(1), json!(2)]
        );
        for attempt in &attempts {
            assert_eq!(attempt["source"], "async");
            assert_eq!(attempt["summary"], "POST /later");
            assert_eq!(attempt["error"]["message"], "not today");
        }

        // Filters: by script, and refusals naming the field.
        let by_script = records(&server, &app, &format!("script_id={failing}"), 3).await;
        assert_eq!(
            by_script.len(),
            3,
            "two attempts and the test run: {by_script:?}"
        );
        for (query, field) in [
            ("outcome=great", "outcome"),
            ("source=cron", "source"),
            ("since=yesterday", "since"),
            ("script_id=nope", "script_id"),
            ("colour=red", ""),
        ] {
            let answer = server
                .admin(
                    Method::GET,
                    &format!("/api/v1/admin/apps/{app}/executions?{query}"),
                    None,
                )
                .await;
            assert_eq!(answer.status, 400, "{query}: {answer}");
            if !field.is_empty() {
                assert_eq!(answer.json["error"]["field"], field, "{query}: {answer}");
            }
        }
        let future = records(&server, &app, "since=2999-01-01T00:00:00Z", 0).await;
        assert!(future.is_empty(), "nothing started in the future");
        let paged = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps/{app}/executions?limit=2"),
                None,
            )
            .await;
        assert_eq!(paged.json["items"].as_array().map(Vec::len), Some(2));
        let cursor = paged.json["next_cursor"].as_str().expect("a next page");
        let next = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps/{app}/executions?limit=2&cursor={cursor}"),
                None,
            )
            .await;
        assert!(
            next.json["items"][0]["id"] != paged.json["items"][1]["id"],
            "the next page goes on where the first ended"
        );

        // Someone without access to the app finds none of it.
        let created = server
            .admin(
                Method::POST,
                "/api/v1/admin/users",
                Some(json!({"username": "mallory", "password": "a long password"})),
            )
            .await;
        assert_eq!(created.status, 201, "{created}");
        let mallory = server.login("mallory", "a long password").await;
        for path in [
            format!("/api/v1/admin/apps/{app}/executions"),
            format!("/api/v1/admin/executions/{job}"),
        ] {
            let answer = server.call(Method::GET, &path, Some(&mallory), None).await;
            assert_eq!(answer.status, 404, "{path}: {answer}");
        }
        Ok(())
    }
);

both_backends!(
    a_record_keeps_the_capped_log_and_the_setting_leaves_out_sync_successes,
    |store| async move {
        let mut settings = Settings::default();
        settings.platform.records.sync_successes = false;
        let server = TestServer::start_with(store, settings).await;
        let app = server.api.create_app("shop").await;
        server
            .api
            .add_route(&app, "quiet", "1", "GET", "/quiet")
            .await;
        server
            .api
            .add_route(
                &app,
                "chatty",
                "for i in 0..1500 { print(`line ${i}`); }\nthrow \"after all that\";",
                "GET",
                "/chatty",
            )
            .await;
        server
            .api
            .add_route(
                &app,
                "long",
                "let line = \"x\";\nline.pad(1023, \"x\");\nfor i in 0..40 { print(line); }\nthrow \"long\";",
                "GET",
                "/long",
            )
            .await;
        let mut tail = tail(&server, &app, "").await;
        assert_eq!(server.get("/shop/long").await.status, 500);
        // The tail shows the whole log; the stored record its first 16 KiB (PICLOUD_RECORD_MAX_LOG_BYTES).
        let shown = tail.next(WITHIN).await.expect("an event").json();
        assert_eq!(
            shown["logs"].as_array().map(Vec::len),
            Some(40),
            "{}",
            shown["summary"]
        );
        let stored = records(&server, &app, "outcome=runtime_error", 1).await;
        let logs = stored[0]["logs"].as_array().expect("the log");
        assert_eq!(
            logs.len(),
            17,
            "16 whole lines of 1,023 bytes, then the note"
        );
        assert!(
            logs[16]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("24 more log lines (24552 bytes) are not kept")),
            "{}",
            logs[16]
        );
        let long = stored[0]["execution_id"].clone();

        assert_eq!(server.get("/shop/quiet").await.status, 200);
        assert_eq!(server.get("/shop/chatty").await.status, 500);
        let kept = records(&server, &app, "", 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let kept_now: Vec<Value> = records(&server, &app, "", 2)
            .await
            .into_iter()
            .filter(|record| record["execution_id"] != long)
            .collect();
        assert_eq!(kept_now.len(), 1, "only the failure is kept: {kept:?}");
        let logs = kept_now[0]["logs"].as_array().expect("the log");
        assert_eq!(logs.len(), 1001, "1,000 lines and the closing one");
        assert!(
            logs[1000]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("500 more log lines were dropped")),
            "{}",
            logs[1000]
        );
        Ok(())
    }
);

// A sync execution whose caller stopped waiting is listed abandoned, newest first, a page at a
// time: one that ran long enough for its record to be written (#19: after 50 ms) and one that
// was over sooner, never written.
both_backends!(
    sync_executions_whose_callers_left_are_listed_abandoned,
    |store| async move {
        let mut settings = Settings::default();
        settings.platform.dispatch.sync_wait_ms = 10;
        let server = TestServer::start_with(store, settings).await;
        let app = server.api.create_app("shop").await;
        let busy = |ms: u32| format!("let t = time::now(); while time::now() - t < {ms} {{ }} 1");
        let slow = server
            .api
            .route(&app, "slow", &busy(300), ("GET", "/slow"), "sync")
            .await;
        let brief = server
            .api
            .route(&app, "brief", &busy(30), ("GET", "/brief"), "sync")
            .await;
        for path in ["/shop/slow", "/shop/brief"] {
            let answer = server.get(path).await;
            assert_eq!(answer.status, 504, "the caller stopped waiting: {answer}");
        }
        let path = format!("/api/v1/admin/apps/{app}/abandoned-executions");
        let listed = eventually("two abandoned executions", WITHIN, || async {
            let answer = server.admin(Method::GET, &path, None).await;
            assert_eq!(answer.status, 200, "{answer}");
            let items = answer.json["items"].as_array().cloned().unwrap_or_default();
            (items.len() == 2).then_some(items)
        })
        .await;
        let scripts: Vec<&str> = listed
            .iter()
            .map(|item| item["script_id"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(scripts, [brief.as_str(), slow.as_str()], "newest first");
        for item in &listed {
            assert_eq!(item["app_id"], json!(app));
            assert!(
                item["reason"]
                    .as_str()
                    .is_some_and(|reason| reason.contains("the caller had gone")),
                "{item}"
            );
        }

        let first = server
            .admin(Method::GET, &format!("{path}?limit=1"), None)
            .await;
        assert_eq!(first.json["items"][0], listed[0], "{first}");
        let cursor = first.json["next_cursor"].as_str().expect("a next page");
        let second = server
            .admin(
                Method::GET,
                &format!("{path}?limit=1&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(second.json["items"], json!([listed[1]]), "{second}");

        let refused = server
            .admin(Method::GET, &format!("{path}?limit=0"), None)
            .await;
        assert_eq!(
            (refused.status, refused.json["error"]["field"].as_str()),
            (400, Some("limit")),
            "{refused}"
        );
        let other = server.api.create_app("blog").await;
        let answer = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps/{other}/abandoned-executions"),
                None,
            )
            .await;
        assert_eq!(answer.json["items"], json!([]), "another app's: {answer}");
        let missing = server
            .admin(
                Method::GET,
                "/api/v1/admin/apps/0190f5b6-0000-7000-8000-000000000000/abandoned-executions",
                None,
            )
            .await;
        assert_eq!(missing.status, 404, "{missing}");
        Ok(())
    }
);

/// The app's live tail, `query` its filter, as the instance admin.
async fn tail(server: &TestServer, app: &str, query: &str) -> EventStream {
    let url = server.url(&format!("/api/v1/admin/apps/{app}/logs/stream?{query}"));
    match EventStream::open(&server.api.http, &url, &server.api.token).await {
        Ok(stream) => stream,
        Err(answer) => panic!("no stream: {answer}"),
    }
}

both_backends!(
    the_live_tail_streams_the_runs_that_finish_after_it_opened,
    |store| async move {
        let mut server = TestServer::start(store).await;
        let app = server.api.create_app("shop").await;
        let other = server.api.create_app("other").await;
        server
            .api
            .add_route(&app, "hello", "print(\"saying hi\");\n1", "GET", "/hello")
            .await;
        server
            .api
            .add_route(&app, "boom", "let x = 1;\nthrow \"boom\";", "GET", "/boom")
            .await;
        server
            .api
            .add_route(&other, "theirs", "print(\"not yours\");\n1", "GET", "/x")
            .await;
        assert_eq!(
            server.get("/shop/hello").await.status,
            200,
            "before the tail"
        );

        let mut everything = tail(&server, &app, "").await;
        let mut errors = tail(&server, &app, "outcome=error").await;
        assert_eq!(server.get("/other/x").await.status, 200);
        assert_eq!(server.get("/shop/hello").await.status, 200);
        assert_eq!(server.get("/shop/boom").await.status, 500);

        let hello = everything.next(WITHIN).await.expect("an event");
        assert_eq!(hello.name, "execution");
        let hello = hello.json();
        assert_eq!(hello["summary"], "GET /hello", "{hello}");
        assert_eq!(hello["logs"][0]["message"], "saying hi");
        let boom = everything.next(WITHIN).await.expect("an event").json();
        assert_eq!(boom["summary"], "GET /boom", "not the other app's: {boom}");
        assert_eq!(boom["error"]["line"], 2);
        let failed = errors.next(WITHIN).await.expect("an event").json();
        assert_eq!(failed["summary"], "GET /boom", "only errors: {failed}");
        // What a tail sends is what the list holds.
        let listed = records(&server, &app, "outcome=runtime_error", 1).await;
        assert_eq!(listed[0], failed);

        for (query, field) in [
            ("outcome=fine", "outcome"),
            ("source=cron", "source"),
            ("script_id=7", "script_id"),
            ("since=2026-01-01T00:00:00Z", "since"),
        ] {
            let url = server.url(&format!("/api/v1/admin/apps/{app}/logs/stream?{query}"));
            let refused = EventStream::open(&server.api.http, &url, &server.api.token)
                .await
                .err()
                .unwrap_or_else(|| panic!("?{query} streams"));
            assert_eq!(refused.status, 400, "?{query}: {refused}");
            assert!(refused.text.contains(field), "?{query}: {refused}");
        }

        // Shutting down ends the open tails, so the server drains at once.
        let stopping = tokio::time::Instant::now();
        server.stop().await;
        assert_eq!(everything.next(WITHIN).await, None);
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "the drain waited"
        );
        Ok(())
    }
);

/// A tail that stops reading falls behind, is told so and closed; meanwhile executions go on at
/// their speed (a bound on `hello`'s latency, generous for a debug build under load).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tail_that_stops_reading_is_dropped_without_slowing_the_app() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    picloud_test_support::with_store(picloud_test_support::Backend::Sqlite, |store| async move {
        let server = TestServer::start(store).await;
        let app = server.api.create_app("shop").await;
        // 64 KiB of log a run: a few hundred runs fill the sockets' buffers and the ring.
        server
            .api
            .add_route(
                &app,
                "noisy",
                "let line = \"x\";\nline.pad(1023, \"x\");\nfor i in 0..64 { print(line); }\n1",
                "GET",
                "/noisy",
            )
            .await;
        server
            .api
            .add_route(&app, "hello", "1", "GET", "/hello")
            .await;
        let address = server.admin_base.trim_start_matches("http://").to_owned();
        let mut stalled = tokio::net::TcpStream::connect(&address)
            .await
            .expect("a connection");
        let request = format!(
            "GET /api/v1/admin/apps/{app}/logs/stream HTTP/1.1\r\nHost: {address}\r\n\
             Authorization: Bearer {}\r\nConnection: close\r\n\r\n",
            server.api.token
        );
        stalled
            .write_all(request.as_bytes())
            .await
            .expect("the request is sent");

        let runs = 1_200;
        let workers = 4;
        let mut noise = Vec::new();
        for _ in 0..workers {
            let http = server.api.http.clone();
            let url = server.url("/shop/noisy");
            noise.push(tokio::spawn(async move {
                for _ in 0..runs / workers {
                    let status = http.get(&url).send().await.expect("an answer").status();
                    assert_eq!(status, 200);
                }
            }));
        }
        let mut slowest = Duration::ZERO;
        while !noise.iter().all(tokio::task::JoinHandle::is_finished) {
            let started = tokio::time::Instant::now();
            assert_eq!(server.get("/shop/hello").await.status, 200);
            slowest = slowest.max(started.elapsed());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for task in noise {
            task.await.expect("the noise ran");
        }
        assert!(
            slowest < Duration::from_secs(2),
            "hello took {slowest:?} while a tail stalled"
        );

        // Reading again, the tail finds what fitted in the buffers, then the notice, then the end.
        let mut received = Vec::new();
        tokio::time::timeout(WITHIN, stalled.read_to_end(&mut received))
            .await
            .expect("the server closed the stalled tail")
            .expect("the stream reads");
        let text = String::from_utf8_lossy(&received);
        assert!(
            text.starts_with("HTTP/1.1 200"),
            "{}",
            &text[..200.min(text.len())]
        );
        let notice = text
            .split("event: dropped\ndata: ")
            .nth(1)
            .expect("the tail was told why it was dropped");
        assert!(notice.contains("read too slowly"), "{notice}");
        Ok(())
    })
    .await;
}
