use std::sync::Arc;
use picloud_core::exec::*;
use picloud_core::*;
use picloud_executor::{ExecutorClient, ExecutorConfig, LocalExecutorClient};

fn req(src: &str) -> ExecRequest {
    ExecRequest { execution_id: ExecutionId::new(), app: AppRef { id: AppId::new(), slug: "a".into() },
      script: ScriptRef { id: ScriptId::new(), name: "t".into(), updated_at: Timestamp::from_millis(1), source: Arc::from(src) },
      request: HttpRequest::default() }
}

#[tokio::test]
async fn probe() {
    let depth: usize = std::env::var("DEPTH").ok().and_then(|d| d.parse().ok()).unwrap_or(1000);
    let script = std::env::var("SCRIPT").unwrap_or_else(|_| "let a = []; for i in 0..DEPTH { a = [a]; } 1".into()).replace("DEPTH", &depth.to_string());
    let c = LocalExecutorClient::new(ExecutorConfig { limits: Limits { max_operations: u64::MAX, timeout_ms: 600_000, ..Limits::default() }, threads: 1, ..Default::default() });
    let o = c.execute(req(&script)).await;
    eprintln!("RESULT {:?}", o.result.map(|r| r.body));
}
