//! Scheduling through the real binary (issue #13): one app cannot take the whole execution gate
//! from the others.

mod common;

use std::time::{Duration, Instant};

use common::{Admin, Database, Process, ADMIN_PASSWORD};
use picloud_store::Backend;
use serde_json::{json, Value};

async fn get(url: &str) -> (u16, Value) {
    let response = reqwest::get(url).await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Issue #13, item 4: 80 concurrent calls of one app's 5 s script got another app's hello
/// `503 overloaded` on 3 of 8 tries. One app now holds at most its share of the gate: its calls
/// beyond it wait, then get 503 saying so, and the other app's hello is answered meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_app_at_its_share_of_the_gate_leaves_another_apps_hello_answered() {
    let Some(db) = Database::fresh(Backend::Sqlite) else {
        return;
    };
    // A gate of 8 (it follows the threads), three quarters of it for one app; each spin holds
    // its permit for its whole 3 s.
    let server = Process::serve(
        &db,
        &[
            ("PICLOUD_EXECUTOR_THREADS", "8"),
            ("PICLOUD_MAX_OPERATIONS", "1000000000000"),
            ("PICLOUD_EXECUTION_TIMEOUT_MS", "3000"),
        ],
    );
    let admin = Admin::login(&server.admin_base, ADMIN_PASSWORD).await;
    admin.deploy("greedy", "loop { }", "GET", "/spin").await;
    admin
        .deploy("polite", r#"#{ hello: "world" }"#, "GET", "/hello")
        .await;

    let spin = format!("{}/greedy/spin", server.base);
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let spin = spin.clone();
            tokio::spawn(async move { get(&spin).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let hello = format!("{}/polite/hello", server.base);
    for n in 0..10 {
        let started = Instant::now();
        let (status, body) = get(&hello).await;
        assert_eq!(
            (status, &body),
            (200, &json!({"hello": "world"})),
            "hello {n}, {:?} after the greedy app's 40 calls, is answered",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(150)).await;
    }

    let mut refused = 0;
    for call in calls {
        let (status, body) = call.await.expect("the call ran");
        if status == 503 {
            refused += 1;
            assert_eq!(body["error"]["code"], "overloaded", "{body}");
            let message = body["error"]["message"].as_str().unwrap_or_default();
            assert!(
                message.contains("its share"),
                "the refusal says the app is at its share: {body}"
            );
        } else {
            assert_eq!(
                status, 504,
                "an admitted spin runs into its deadline: {body}"
            );
        }
    }
    assert_eq!(
        refused, 34,
        "six of the 40 ran (three quarters of the gate of 8), the others were refused"
    );
}
