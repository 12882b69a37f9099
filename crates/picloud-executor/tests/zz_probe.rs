use std::sync::Arc;
use picloud_core::exec::*;
use picloud_core::*;
use picloud_executor::Sandbox;

fn req(src: &str) -> ExecRequest {
    ExecRequest { execution_id: ExecutionId::new(), app: AppRef { id: AppId::new(), slug: "a".into() },
      script: ScriptRef { id: ScriptId::new(), name: "t".into(), updated_at: Timestamp::from_millis(1), source: Arc::from(src) },
      request: HttpRequest::default() }
}

#[test]
fn probe() {
    let depth: usize = std::env::var("DEPTH").ok().and_then(|d| d.parse().ok()).unwrap_or(1000);
    let stack: usize = std::env::var("STACK_MB").ok().and_then(|d| d.parse().ok()).unwrap_or(8);
    let script = std::env::var("SCRIPT").unwrap_or_else(|_| "let a = []; for i in 0..DEPTH { a = [a]; } 1".into()).replace("DEPTH", &depth.to_string());
    let t = std::thread::Builder::new().stack_size(stack << 20).spawn(move || {
        let s = Sandbox::new(Limits { max_array_size: 1_000_000, max_operations: u64::MAX, timeout_ms: 600_000, ..Limits::default() }, 4);
        let o = s.run(&req(&script), None);
        eprintln!("{:?}", o.result.map(|_| ()));
    }).unwrap();
    t.join().unwrap();
}
