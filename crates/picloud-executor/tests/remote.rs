//! The remote executor's own promises, beyond running scripts like the local one (which the
//! shared test bodies check): it guards `/v1/execute` with its token, answers `/healthz`, and a
//! client that cannot get an outcome says so with the executor's URL.

use std::sync::Arc;
use std::time::Duration;

use picloud_core::exec::{AppRef, ExecErrorKind, ExecRequest};
use picloud_core::{AppId, ExecutionId, NoServices};
use picloud_executor::{
    remote, ExecutorClient, ExecutorConfig, LocalExecutorClient, RemoteExecutorClient,
};
use picloud_test_support::executor::{failed, get, script, serve_remotely, TOKEN};

async fn start_server(token: Option<&str>) -> String {
    let local = Arc::new(LocalExecutorClient::new(
        ExecutorConfig {
            threads: 2,
            ..ExecutorConfig::default()
        },
        Arc::new(NoServices),
    ));
    serve_remotely(local, token).await
}

fn request(source: &str) -> ExecRequest {
    ExecRequest {
        execution_id: ExecutionId::new(),
        app: AppRef {
            id: AppId::new(),
            slug: "shop".to_string(),
        },
        script: script(source),
        request: get("/"),
        authority: Default::default(),
        event: None,
        trigger_depth: 0,
        attempt: 1,
        modules: Default::default(),
    }
}

fn client(url: &str, token: Option<&str>) -> RemoteExecutorClient {
    RemoteExecutorClient::new(url, token.map(str::to_string), Duration::from_secs(10))
        .expect("a valid executor URL")
}

#[tokio::test]
async fn a_request_without_the_token_gets_401() {
    let url = start_server(Some(TOKEN)).await;
    let http = reqwest::Client::new();
    let body = serde_json::to_value(request("1")).expect("the request serialises");
    for auth in [None, Some("Bearer wrong"), Some(TOKEN)] {
        let mut call = http.post(format!("{url}/v2/execute")).json(&body);
        if let Some(auth) = auth {
            call = call.header("authorization", auth);
        }
        let status = call.send().await.expect("the server answers").status();
        assert_eq!(status, 401, "authorization {auth:?} is refused");
    }
    let status = http
        .post(format!("{url}/v2/execute"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("the server answers")
        .status();
    assert_eq!(status, 200, "the right bearer token is accepted");
}

// An orchestrator of before #15 would call `/v1` and drop the effects in the outcome, losing the
// run's writes: it is told to upgrade instead.
#[tokio::test]
async fn the_v1_protocol_is_gone_with_a_sentence_saying_to_upgrade() {
    let url = start_server(Some(TOKEN)).await;
    let body = serde_json::to_value(request("1")).expect("the request serialises");
    let response = reqwest::Client::new()
        .post(format!("{url}/v1/execute"))
        .bearer_auth(TOKEN)
        .json(&body)
        .send()
        .await
        .expect("the server answers");
    assert_eq!(response.status(), 410);
    let text = response.text().await.expect("a body");
    assert!(
        text.contains("/v2/execute") && text.contains("upgrade the orchestrator"),
        "{text}"
    );
}

// A run's writes cross the wire in its outcome: the remote executor writes nothing itself.
#[tokio::test]
async fn a_remote_runs_effects_come_back_in_its_outcome() {
    let url = start_server(Some(TOKEN)).await;
    let outcome = client(&url, Some(TOKEN))
        .execute(request(
            r#"let c = kv::collection("c"); c.set("k", #{ n: 1 }); c.set("j", 2); "ok""#,
        ))
        .await;
    assert!(outcome.result.is_ok(), "{:?}", outcome.result);
    let writes: Vec<(String, Option<serde_json::Value>)> = outcome
        .effects
        .writes
        .iter()
        .map(|write| (write.key.as_str().to_owned(), write.value.clone()))
        .collect();
    assert_eq!(
        writes,
        [
            ("j".to_owned(), Some(serde_json::json!(2))),
            ("k".to_owned(), Some(serde_json::json!({"n": 1})))
        ]
    );
}

#[tokio::test]
async fn a_client_with_the_wrong_token_gets_an_unavailable_outcome() {
    let url = start_server(Some(TOKEN)).await;
    let err = failed(client(&url, Some("wrong")).execute(request("1")).await);
    assert_eq!(err.kind, ExecErrorKind::Unavailable, "{err:?}");
    assert!(
        err.message.contains(&url) && err.message.contains("401"),
        "the message names the executor and the refusal: {}",
        err.message
    );
}

#[tokio::test]
async fn without_a_token_configured_the_executor_runs_any_request() {
    let url = start_server(None).await;
    let outcome = client(&url, None).execute(request("\"open\"")).await;
    assert!(outcome.result.is_ok(), "it runs: {:?}", outcome.result);
}

#[tokio::test]
async fn healthz_answers_without_a_token() {
    let url = start_server(Some(TOKEN)).await;
    let reply = reqwest::get(format!("{url}/healthz"))
        .await
        .expect("the server answers");
    assert_eq!(reply.status(), 200, "liveness needs no token");
    assert_eq!(reply.text().await.expect("a body"), "ok", "and says ok");
}

#[tokio::test]
async fn an_unreachable_executor_is_an_unavailable_outcome_naming_its_url() {
    // Bind and drop a listener so the port is (very likely) closed.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let err = failed(client(&url, None).execute(request("1")).await);
    assert_eq!(err.kind, ExecErrorKind::Unavailable, "{err:?}");
    assert!(
        err.message
            .starts_with(&format!("the executor at {url} cannot be reached")),
        "the message names the URL: {}",
        err.message
    );
}

#[tokio::test]
async fn a_slow_executor_is_an_unavailable_outcome_after_the_timeout() {
    // A server that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let url = format!("http://{addr}");
    let slow = RemoteExecutorClient::new(&url, None, Duration::from_millis(200))
        .expect("a valid executor URL");
    let err = failed(slow.execute(request("1")).await);
    assert_eq!(err.kind, ExecErrorKind::Unavailable, "{err:?}");
    assert!(
        err.message.contains(&url) && err.message.contains("did not answer within 200 ms"),
        "the message names the URL and the timeout: {}",
        err.message
    );
}

#[tokio::test]
async fn a_reply_that_is_not_an_outcome_is_an_unavailable_outcome() {
    let app = axum::Router::new().route(
        "/v2/execute",
        axum::routing::post(|| async { axum::Json(serde_json::json!({"hello": "world"})) }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    let url = format!("http://{addr}");
    let err = failed(client(&url, None).execute(request("1")).await);
    assert_eq!(err.kind, ExecErrorKind::Unavailable, "{err:?}");
    assert!(
        err.message.contains(&url) && err.message.contains("not an outcome"),
        "the message names the URL and the problem: {}",
        err.message
    );
}

#[test]
fn a_base_url_that_is_not_http_is_refused_at_construction() {
    for url in ["not a url", "ftp://example.com", "unix:/tmp/sock"] {
        let err = RemoteExecutorClient::new(url, None, Duration::from_secs(1))
            .expect_err("the URL is refused");
        assert!(
            err.to_string().contains(url),
            "the error names the URL: {err}"
        );
    }
    assert!(
        RemoteExecutorClient::new("http://10.0.0.5:8090/base", None, Duration::from_secs(1))
            .is_ok(),
        "an http URL with a path is fine"
    );
}

#[tokio::test]
async fn serve_stops_when_its_shutdown_signal_completes() {
    let local = Arc::new(LocalExecutorClient::new(
        ExecutorConfig {
            threads: 1,
            ..ExecutorConfig::default()
        },
        Arc::new(NoServices),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(remote::serve(listener, local, None, async {
        let _ = stopped.await;
    }));
    stop.send(()).expect("the server is waiting");
    let result = tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("the server stops promptly")
        .expect("the task completes");
    assert!(
        result.is_ok(),
        "a graceful stop is not an error: {result:?}"
    );
}
