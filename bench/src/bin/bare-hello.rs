//! `bare-hello ADDR`: the ceiling the benchmark compares PiCloud with. It answers every GET with
//! the JSON that PiCloud's `hello` workload returns, with nothing in between: no routing by app,
//! no script, no recording.

use std::process::ExitCode;
use std::sync::atomic::{AtomicI64, Ordering};

use axum::routing::get;
use axum::{Json, Router};

static COUNTER: AtomicI64 = AtomicI64::new(0);

async fn hello() -> Json<serde_json::Value> {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    Json(serde_json::json!({ "hello": "world", "n": n }))
}

fn main() -> ExitCode {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8099".to_owned());
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("bare-hello: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        eprintln!("bare-hello listening on {}", listener.local_addr()?);
        let app = Router::new().fallback(get(hello));
        axum::serve(listener, app).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("bare-hello: {err}");
            ExitCode::FAILURE
        }
    }
}
