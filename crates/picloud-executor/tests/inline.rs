//! Inline runs: an execution whose script is compiled already is first tried on the caller's
//! async thread, and starts over on an executor thread when it reaches a data call or its inline
//! budget. What a script can observe must not change: the same answer, each data write once, each
//! log line once. These tests build their own runtimes, because inline runs need threads with
//! [`inline_stack_size`] of stack and `#[tokio::test]` threads have 2 MiB.

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex, Once};

use picloud_core::exec::{ExecErrorKind, ExecOutcome, ResponseBody, ScriptRef};
use picloud_core::{AppName, AppSlug, Limits, NoServices, Timestamp};
use picloud_executor::{inline_stack_size, ExecutorConfig};
use picloud_store::{NewApp, Store};
use picloud_test_support::both_backends;
use picloud_test_support::executor::{failed, get, ok, script, Harness, Via};
use serde_json::{json, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::Layer;

/// Every script log line this test binary's process log received.
static EMITTED: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Collects the script log lines written to the process log (the `picloud::script` target).
struct ScriptLines;

impl<S: Subscriber> Layer<S> for ScriptLines {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        struct Message(String);
        impl Visit for Message {
            fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
                if field.name() == "message" {
                    self.0 = format!("{value:?}");
                }
            }
        }
        if event.metadata().target() == "picloud::script" {
            let mut message = Message(String::new());
            event.record(&mut message);
            EMITTED.lock().expect("the line list").push(message.0);
        }
    }
}

/// How many times `line` reached the process log. Tests run in parallel, so each logs lines of
/// its own (with a fresh id in them).
fn emitted(line: &str) -> usize {
    EMITTED
        .lock()
        .expect("the line list")
        .iter()
        .filter(|emitted| *emitted == line)
        .count()
}

/// Installs the collecting subscriber for the whole test binary (once).
fn collect_script_lines() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(ScriptLines))
            .expect("no other global subscriber in this test binary");
    });
}

/// Runs `body` on a worker of a runtime whose threads have `stack` bytes of stack (not on the
/// test's own thread, which `block_on` would use).
fn on_runtime<F: Future<Output = ()> + Send + 'static>(stack: usize, body: F) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_stack_size(stack)
        .enable_all()
        .build()
        .expect("a runtime");
    if let Err(err) = runtime.block_on(runtime.spawn(body)) {
        std::panic::resume_unwind(err.into_panic());
    }
}

/// Runs `body` on a runtime built as the binary builds its own: room for inline runs.
fn on_roomy_runtime<F: Future<Output = ()> + Send + 'static>(body: F) {
    on_runtime(inline_stack_size(&Limits::default()) + 1024 * 1024, body);
}

async fn harness() -> Harness {
    Harness::start(Via::Local).await
}

/// A harness whose scripts reach `store`, in a new app of it.
async fn harness_with_store(store: &Arc<dyn Store>) -> Harness {
    let mut h = Harness::with_config_and_store(
        Via::Local,
        ExecutorConfig {
            threads: 4,
            ..ExecutorConfig::default()
        },
        store,
    )
    .await;
    let app = store
        .create_app(&NewApp {
            slug: AppSlug::parse("shop").expect("a valid slug"),
            name: AppName::parse("Shop").expect("a valid name"),
            expose_errors: false,
        })
        .await
        .expect("the app is created");
    h.app.id = app.id;
    h
}

async fn run(h: &Harness, script: &ScriptRef) -> ExecOutcome {
    h.run_script(script.clone(), get("/")).await
}

fn json_of(outcome: ExecOutcome) -> Value {
    match ok(outcome).body {
        ResponseBody::Json(value) => value,
        other => panic!("expected a JSON body, got {other:?}"),
    }
}

fn messages(outcome: &ExecOutcome) -> Vec<&str> {
    outcome
        .logs
        .iter()
        .map(|line| line.message.as_str())
        .collect()
}

#[test]
fn a_compiled_script_without_data_calls_runs_inline() {
    collect_script_lines();
    on_roomy_runtime(async {
        let h = harness().await;
        let line = format!("hi {}", uuid::Uuid::new_v4());
        let hello = script(&format!(
            r#"log::info("{line}"); #{{ hello: "world", n: 1 + 2 }}"#
        ));
        let first = run(&h, &hello).await;
        assert_eq!(
            h.local.inline_runs(),
            0,
            "the first run compiles the script, on a worker"
        );
        let second = run(&h, &hello).await;
        let third = run(&h, &hello).await;
        assert_eq!(
            h.local.inline_runs(),
            2,
            "later runs stay on the async thread"
        );
        assert_eq!(
            messages(&second),
            [line.as_str()],
            "an inline run keeps its log"
        );
        assert_eq!(
            emitted(&line),
            3,
            "and writes it to the process log once per run, inline or not"
        );
        for outcome in [first, second, third] {
            assert_eq!(
                json_of(outcome),
                json!({ "hello": "world", "n": 3 }),
                "the same answer wherever it ran"
            );
        }
    });
}

#[test]
fn an_error_raised_inline_is_the_same_error() {
    on_roomy_runtime(async {
        let h = harness().await;
        let boom = script("let x = 2;\nthrow `boom ${x}`;");
        let on_worker = failed(run(&h, &boom).await);
        let inline = failed(run(&h, &boom).await);
        assert_eq!(h.local.inline_runs(), 1, "the second run was inline");
        assert_eq!(inline, on_worker, "the error, its kind and position agree");
        assert_eq!(inline.kind, ExecErrorKind::Runtime);
        assert_eq!(inline.line, Some(2), "the line of the throw");
    });
}

#[test]
fn a_run_past_the_inline_budget_finishes_on_a_worker() {
    on_roomy_runtime(async {
        let h = harness().await;
        let long = script("let total = 0; for i in 0..20000 { total += i; } total");
        for _ in 0..3 {
            assert_eq!(
                json_of(run(&h, &long).await),
                json!(199_990_000),
                "the loop runs to its end"
            );
        }
        assert_eq!(
            h.local.inline_runs(),
            0,
            "a long script starts over on a worker, and is not tried inline again"
        );
    });
}

#[test]
fn nothing_runs_inline_on_threads_with_a_small_stack() {
    on_runtime(2 * 1024 * 1024, async {
        let h = harness().await;
        let hello = script("1 + 1");
        for _ in 0..3 {
            assert_eq!(json_of(run(&h, &hello).await), json!(2));
        }
        assert_eq!(
            h.local.inline_runs(),
            0,
            "2 MiB cannot hold a script at its limits"
        );
    });
}

#[test]
fn a_new_version_of_a_script_is_tried_inline_again() {
    on_roomy_runtime(async {
        let h = Harness::with_config_and_services(
            Via::Local,
            ExecutorConfig {
                threads: 2,
                ..ExecutorConfig::default()
            },
            Arc::new(NoServices),
        )
        .await;
        let calls_data = script(r#"try { kv::collection("c").get("k") } catch { 0 }"#);
        run(&h, &calls_data).await;
        run(&h, &calls_data).await;
        assert_eq!(h.local.inline_runs(), 0, "a data call cannot run inline");
        let saved = ScriptRef {
            source: Arc::from("41 + 1"),
            updated_at: Timestamp::from_millis(calls_data.updated_at.as_millis() + 1),
            ..calls_data
        };
        run(&h, &saved).await;
        assert_eq!(json_of(run(&h, &saved).await), json!(42));
        assert_eq!(
            h.local.inline_runs(),
            1,
            "the saved version no longer calls data, and runs inline"
        );
    });
}

both_backends!(
    on on_roomy_runtime,
    a_data_call_moves_the_run_to_a_worker_before_anything_leaves_it,
    |store| async move {
        collect_script_lines();
        let h = harness_with_store(&store).await;
        let before = format!("before {}", uuid::Uuid::new_v4());
        let counter = script(&format!(
            r#"
            log::info("{before}");
            let c = kv::collection("counts");
            let n = c.get("k");
            c.set("k", if n == () {{ 1 }} else {{ n + 1 }});
            log::info("after");
            c.get("k")
            "#
        ));
        for expected in 1..=3 {
            let outcome = run(&h, &counter).await;
            assert_eq!(
                messages(&outcome),
                [before.as_str(), "after"],
                "the outcome holds the lines of the run that finished"
            );
            assert_eq!(
                json_of(outcome),
                json!(expected),
                "each run wrote exactly once"
            );
        }
        assert_eq!(h.local.inline_runs(), 0, "no run finished inline");
        assert_eq!(
            emitted(&before),
            3,
            "the line the inline attempt wrote before its data call never reached the log"
        );
    }
);

both_backends!(
    on on_roomy_runtime,
    try_catch_cannot_keep_a_data_call_inline,
    |store| async move {
        let h = harness_with_store(&store).await;
        let writer = script(
            r#"
            let c = kv::collection("c");
            let wrote = "wrote";
            try { c.set("k", (c.get("k") ?? 0) + 1); } catch (e) { wrote = `caught: ${e}`; }
            [wrote, c.get("k")]
            "#,
        );
        assert_eq!(json_of(run(&h, &writer).await), json!(["wrote", 1]));
        assert_eq!(
            json_of(run(&h, &writer).await),
            json!(["wrote", 2]),
            "the move to a worker is not an error a script can catch"
        );
        assert_eq!(h.local.inline_runs(), 0);
    }
);

// #17: an import whose module is not cached yet must read it on a worker (a data call), but the
// script stays a candidate for inline runs: the next run finds the module cached.
both_backends!(
    on on_roomy_runtime,
    a_script_that_imports_a_cached_module_runs_inline,
    |store| async move {
        let h = harness_with_store(&store).await;
        let module = store
            .create_script(&picloud_store::NewScript {
                app_id: h.app.id,
                name: picloud_core::ScriptName::parse("util", picloud_core::ScriptKind::Module)
                    .expect("a module name"),
                kind: picloud_core::ScriptKind::Module,
                source: "fn double(x) { x * 2 }".to_owned(),
                imports: Vec::new(),
            })
            .await
            .expect("the module");
        let endpoint = script("import \"util\" as u;\nu::double(21)");
        let run_it = || async {
            let modules = store
                .module_versions(Some(h.app.id))
                .await
                .expect("the versions");
            let request = picloud_core::exec::ExecRequest {
                script: endpoint.clone(),
                modules: picloud_core::exec::ModuleVersions::new(
                    modules.into_iter().map(|m| (m.name, m.version)),
                ),
                ..h.request("")
            };
            json_of(h.execute(request).await)
        };
        for _ in 0..3 {
            assert_eq!(run_it().await, json!(42));
        }
        assert_eq!(
            (h.local.module_loads(), h.local.inline_runs()),
            (1, 2),
            "the first run compiled the script and read the module on a worker; the next two \
             ran inline"
        );
        store
            .update_script(
                module.id,
                &picloud_store::ScriptPatch {
                    source: Some("fn double(x) { x * 3 }".to_owned()),
                    ..Default::default()
                },
            )
            .await
            .expect("the module is updated");
        assert_eq!(run_it().await, json!(63), "the new version");
        assert_eq!(run_it().await, json!(63));
        assert_eq!(
            (h.local.module_loads(), h.local.inline_runs()),
            (2, 3),
            "the run that met the new version started over on a worker to read it; the next \
             ran inline again"
        );
    }
);
