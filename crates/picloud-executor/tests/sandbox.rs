//! The sandbox holds against hostile scripts: each limit stops its script with the right kind
//! of error, a script cannot catch its own limit, nothing escapes to the file system, the clock
//! or stdout — and the same client runs an ordinary script afterwards.

use std::time::{Duration, Instant};

use picloud_core::exec::{ExecErrorKind, LogLevel};
use picloud_core::Limits;
use picloud_test_support::executor::{assert_error, failed, small_limits, Harness, Via};
use picloud_test_support::for_both_clients;

for_both_clients!(
    an_endless_loop_stops_at_the_operations_limit,
    a_cheap_endless_loop_stops_at_the_deadline,
    unbounded_recursion_stops_at_the_call_depth_limit_without_overflowing_the_stack,
    deep_recursion_with_deep_expressions_in_every_frame_does_not_overflow_the_stack,
    a_doubling_string_stops_at_the_memory_budget,
    a_growing_array_stops_at_the_memory_budget,
    padding_an_array_past_its_limit_is_refused,
    a_growing_map_stops_at_the_memory_budget,
    deeply_nested_arrays_stop_at_the_memory_budget_without_overflowing_the_stack,
    showing_or_comparing_a_deeply_nested_value_stops_at_a_fixed_depth,
    a_deeply_nested_expression_is_refused_at_the_expression_depth_limit,
    eval_is_refused,
    sleep_is_refused_in_every_form,
    importing_a_file_is_refused,
    print_and_debug_go_to_the_log_not_to_stdout,
    try_catch_cannot_swallow_the_operations_limit,
    try_catch_cannot_swallow_the_deadline,
    try_catch_cannot_swallow_the_size_limits,
    try_catch_cannot_swallow_the_call_depth_limit,
    a_script_cannot_change_its_ctx,
    a_regex_replacement_cannot_grow_past_the_string_limit,
    a_script_that_logs_in_a_loop_keeps_only_its_log_budget,
    a_huge_thrown_message_is_cut_to_a_log_lines_length,
);

async fn an_endless_loop_stops_at_the_operations_limit(via: Via) {
    let h = Harness::with_limits(via, small_limits()).await;
    let err = h.error("let x = 0;\nloop { x += 1; }").await;
    assert_error(
        &err,
        ExecErrorKind::LimitExceeded,
        "the script exceeded its limit of 200000 operations",
    );
    assert_eq!(err.line, Some(2), "the error points into the loop: {err:?}");
    h.still_works().await;
}

async fn a_cheap_endless_loop_stops_at_the_deadline(via: Via) {
    let h = Harness::with_limits(
        via,
        Limits {
            max_operations: u64::MAX,
            timeout_ms: 150,
            ..Limits::default()
        },
    )
    .await;
    let started = Instant::now();
    let err = h.error("while true { }").await;
    assert_error(
        &err,
        ExecErrorKind::Timeout,
        "the script ran longer than 150 ms",
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the deadline stops the script promptly, not after {:?}",
        started.elapsed()
    );
    h.still_works().await;
}

async fn unbounded_recursion_stops_at_the_call_depth_limit_without_overflowing_the_stack(via: Via) {
    let h = Harness::start(via).await;
    let err = h.error("fn f(x) { f(x + 1) }\nf(0)").await;
    assert_error(
        &err,
        ExecErrorKind::LimitExceeded,
        "the script exceeded its limit of 32 nested function calls",
    );
    h.still_works().await;
}

async fn deep_recursion_with_deep_expressions_in_every_frame_does_not_overflow_the_stack(via: Via) {
    // The default limits (32 calls × 64 expression levels) on the executor's threads: the
    // combination that overflowed tokio's 2 MiB stacks.
    let h = Harness::start(via).await;
    let nested = format!("{}x{}", "(1 + ".repeat(25), ")".repeat(25));
    let source = format!("fn f(x) {{ let y = {nested}; f(y) }}\nf(0)");
    let err = h.error(&source).await;
    assert_error(&err, ExecErrorKind::LimitExceeded, "nested function calls");
    h.still_works().await;
}

/// 8 MiB of memory, operations and time to spare: what a growing value meets first.
fn small_budget() -> Limits {
    Limits {
        max_memory_bytes: 8 * 1024 * 1024,
        max_operations: 50_000_000,
        timeout_ms: 30_000,
        ..Limits::default()
    }
}

async fn a_doubling_string_stops_at_the_memory_budget(via: Via) {
    let h = Harness::with_limits(via, small_budget()).await;
    let err = h.error("let s = \"x\";\nloop { s += s; }").await;
    assert_error(
        &err,
        ExecErrorKind::LimitExceeded,
        "the script held more than its limit of 8 MiB of memory",
    );
    assert_eq!(err.line, Some(2), "the error points into the loop: {err:?}");
    h.still_works().await;
}

async fn a_growing_array_stops_at_the_memory_budget(via: Via) {
    let h = Harness::with_limits(via, small_budget()).await;
    let err = h
        .error("let s = \"x\"; s.pad(1000, \"x\");\nlet a = [];\nlet i = 0;\nloop { a.push(s + i); i += 1; }")
        .await;
    assert_error(&err, ExecErrorKind::LimitExceeded, "8 MiB of memory");
    h.still_works().await;
}

async fn padding_an_array_past_its_limit_is_refused(via: Via) {
    let h = Harness::start(via).await;
    let err = h.error("let a = [];\na.pad(100000000, 0);\na.len()").await;
    assert_eq!(
        err.kind,
        ExecErrorKind::LimitExceeded,
        "one call cannot build a huge array: {err:?}"
    );
    h.still_works().await;
}

async fn a_growing_map_stops_at_the_memory_budget(via: Via) {
    let h = Harness::with_limits(via, small_budget()).await;
    let err = h
        .error("let s = \"x\"; s.pad(1000, \"x\");\nlet m = #{};\nlet i = 0;\nloop { m.set(`k${i}`, s + i); i += 1; }")
        .await;
    assert_error(&err, ExecErrorKind::LimitExceeded, "8 MiB of memory");
    // Index assignments are counted too (Rhai's own map limit never saw them).
    let err = h
        .error("let s = \"x\"; s.pad(1000, \"x\");\nlet m = #{};\nlet i = 0;\nloop { m[`k${i}`] = s + i; i += 1; }")
        .await;
    assert_error(&err, ExecErrorKind::LimitExceeded, "8 MiB of memory");
    h.still_works().await;
}

async fn deeply_nested_arrays_stop_at_the_memory_budget_without_overflowing_the_stack(via: Via) {
    // Nothing but the memory budget bounds how deep a value nests (closures nest at O(1) cost
    // per level), and the worker stack is sized for Rhai's recursion over what fits in it.
    let h = Harness::with_limits(via, small_budget()).await;
    let err = h
        .error("let f = || 1;\nloop { let g = f; f = || g; }")
        .await;
    assert_error(&err, ExecErrorKind::LimitExceeded, "8 MiB of memory");
    let err = h
        .error("let a = [];\nloop { let b = a; a = [|| b]; }")
        .await;
    assert_error(&err, ExecErrorKind::LimitExceeded, "8 MiB of memory");
    let value = h
        .json("let a = [];\nfor i in 0..1500 { a = [a]; }\nlet n = 0;\nwhile a.len() > 0 { a = a[0]; n += 1; }\nn")
        .await;
    assert_eq!(
        value,
        serde_json::json!(1500),
        "deep values within the budget work"
    );
    h.still_works().await;
}

async fn showing_or_comparing_a_deeply_nested_value_stops_at_a_fixed_depth(via: Via) {
    // Rhai shows and compares nested values with ~2 KiB of native stack per level, which
    // overflowed an 8 MiB stack (and aborted the process) at ~4 000 levels.
    let h = Harness::with_limits(
        via,
        Limits {
            max_operations: 1_000_000,
            ..Limits::default()
        },
    )
    .await;
    let outcome = h
        .run("let a = [];\nfor i in 0..300 { a = [a]; }\nprint(a);\nlet s = `${a}`;\nlog::info(a);\na == a")
        .await;
    assert!(
        outcome.logs.iter().all(|l| l.message.contains("[…]")),
        "printing elides the levels past the cap: {:?}",
        outcome.logs
    );
    let err = failed(outcome);
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "cannot compare values nested deeper than 128 levels",
    );
    let err = h
        .error("let a = [];\nfor i in 0..300 { a = [a]; }\na")
        .await;
    assert_error(
        &err,
        ExecErrorKind::InvalidResponse,
        "deeper than 128 levels",
    );
    let equal = h
        .json("let a = [1, [2.0, #{x: \"y\"}]];\nlet b = [1, [2, #{x: \"y\"}]];\n[a == b, a != b, [a].contains(b), #{k: a} == #{k: b}, a == [1]]")
        .await;
    assert_eq!(
        equal,
        serde_json::json!([true, false, true, true, false]),
        "shallow values compare as Rhai compares them"
    );
    h.still_works().await;
}

async fn a_deeply_nested_expression_is_refused_at_the_expression_depth_limit(via: Via) {
    let h = Harness::start(via).await;
    let source = format!("let x = {}1{};", "(".repeat(200), ")".repeat(200));
    let err = h.error(&source).await;
    assert_error(
        &err,
        ExecErrorKind::LimitExceeded,
        "the script nests expressions deeper than its limit of 64 levels",
    );
    assert_eq!(err.line, Some(1), "the error has a line: {err:?}");
    h.still_works().await;
}

async fn eval_is_refused(via: Via) {
    let h = Harness::start(via).await;
    let err = h.error("eval(\"1\")").await;
    assert_eq!(
        err.kind,
        ExecErrorKind::Compile,
        "eval is not even compiled: {err:?}"
    );
    assert!(
        err.message.contains("eval"),
        "the message names eval: {err:?}"
    );
    h.still_works().await;
}

async fn sleep_is_refused_in_every_form(via: Via) {
    let h = Harness::start(via).await;
    for source in [
        "sleep(10)",
        "sleep(0.5)",
        "Fn(\"sleep\").call(10)",
        "let f = Fn(\"sleep\"); f.call(1.5)",
    ] {
        let started = Instant::now();
        let err = h.error(source).await;
        assert_error(&err, ExecErrorKind::Runtime, "sleep() is not available");
        assert!(
            started.elapsed() < Duration::from_millis(400),
            "`{source}` must not sleep"
        );
    }
    let caught = h
        .json("let caught = false;\ntry { sleep(10); } catch (e) { caught = true; }\ncaught")
        .await;
    assert_eq!(
        caught,
        serde_json::json!(true),
        "the refusal is an ordinary, catchable error"
    );
    h.still_works().await;
}

async fn importing_a_file_is_refused(via: Via) {
    let h = Harness::start(via).await;
    for source in [
        "import \"/etc/passwd\" as x;\nx::y",
        "import \"../secrets\" as s; 1",
        "import \"/etc/hostname\" as h; 1",
    ] {
        let err = h.error(source).await;
        assert_error(&err, ExecErrorKind::Runtime, "cannot import");
        assert_eq!(err.line, Some(1), "the error points at the import: {err:?}");
    }
    h.still_works().await;
}

async fn print_and_debug_go_to_the_log_not_to_stdout(via: Via) {
    let h = Harness::start(via).await;
    let outcome = h.run("print(\"x\");\ndebug(\"y\");\nprint(42);").await;
    let logs: Vec<_> = outcome
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        logs,
        vec![
            (LogLevel::Info, "x"),
            (LogLevel::Debug, "\"y\""),
            (LogLevel::Info, "42")
        ],
        "print is an info line and debug a debug line of the execution's log"
    );
    assert!(
        outcome.result.is_ok(),
        "the script succeeds: {:?}",
        outcome.result
    );
}

// #13: one request logged a thousand 16 KiB lines, 17 MB of server log. The execution keeps its
// budget of bytes and says how much it dropped.
async fn a_script_that_logs_in_a_loop_keeps_only_its_log_budget(via: Via) {
    let h = Harness::with_limits(
        via,
        Limits {
            max_log_bytes: 64 * 1024,
            ..Limits::default()
        },
    )
    .await;
    let outcome = h
        .run(
            r#"let line = "x"; line.pad(16000, "x"); for i in 0..1000 { log::info(line); } "done""#,
        )
        .await;
    assert!(
        outcome.result.is_ok(),
        "the script still finishes: {:?}",
        outcome.result
    );
    let (summary, kept) = outcome.logs.split_last().expect("log lines");
    let bytes: usize = kept.iter().map(|l| l.message.len()).sum();
    assert!(
        bytes <= 64 * 1024 && kept.len() == 4,
        "four lines of 16,000 bytes fit in 64 KiB, then nothing: {} lines, {bytes} bytes",
        kept.len()
    );
    assert!(
        summary.level == LogLevel::Warn
            && summary
                .message
                .starts_with("996 more log lines were dropped"),
        "one closing line counts the rest: {}",
        summary.message
    );
    h.still_works().await;
}

// #13: a `throw` of a 4 MB string became one 4 MB log line and a 4 MB error message.
async fn a_huge_thrown_message_is_cut_to_a_log_lines_length(via: Via) {
    let h = Harness::start(via).await;
    let err = h
        .error(r#"let s = "boom"; s.pad(3000000, "!"); throw s;"#)
        .await;
    assert_eq!(
        err.kind,
        ExecErrorKind::Runtime,
        "a thrown error: {}",
        &err.message[..80]
    );
    assert!(
        err.message.starts_with("boom!!!") && err.message.len() <= 16 * 1024 + 32,
        "the message keeps its start, cut to about 16 KiB: {} bytes",
        err.message.len()
    );
    assert!(err.message.ends_with("(truncated)"), "the cut is marked");
    h.still_works().await;
}

async fn try_catch_cannot_swallow_the_operations_limit(via: Via) {
    let h = Harness::with_limits(via, small_limits()).await;
    let err = h
        .error("let r = \"ran\";\ntry { loop { } } catch (e) { r = \"swallowed\"; }\nr")
        .await;
    assert_eq!(
        err.kind,
        ExecErrorKind::LimitExceeded,
        "the limit escapes try/catch: {err:?}"
    );
    h.still_works().await;
}

async fn try_catch_cannot_swallow_the_deadline(via: Via) {
    let h = Harness::with_limits(
        via,
        Limits {
            max_operations: u64::MAX,
            timeout_ms: 100,
            ..Limits::default()
        },
    )
    .await;
    let err = h
        .error("let n = 0;\nloop { try { while true { } } catch (e) { n += 1; } }")
        .await;
    assert_eq!(
        err.kind,
        ExecErrorKind::Timeout,
        "the deadline escapes try/catch: {err:?}"
    );
    h.still_works().await;
}

async fn try_catch_cannot_swallow_the_size_limits(via: Via) {
    let h = Harness::start(via).await;
    let err = h
        .error("let s = \"x\";\ntry { loop { s += s; } } catch (e) { \"swallowed\" }")
        .await;
    assert_eq!(
        err.kind,
        ExecErrorKind::LimitExceeded,
        "the size limit escapes try/catch: {err:?}"
    );
    h.still_works().await;
}

async fn try_catch_cannot_swallow_the_call_depth_limit(via: Via) {
    let h = Harness::start(via).await;
    let err = h
        .error("fn f(x) { try { f(x + 1) } catch (e) { \"swallowed\" } }\nf(0)")
        .await;
    assert_eq!(
        err.kind,
        ExecErrorKind::LimitExceeded,
        "the call limit escapes try/catch: {err:?}"
    );
    h.still_works().await;
}

async fn a_script_cannot_change_its_ctx(via: Via) {
    let h = Harness::start(via).await;
    for source in ["ctx.app.slug = \"other\";", "ctx = #{};"] {
        let err = failed(h.run(source).await);
        assert_eq!(
            err.kind,
            ExecErrorKind::Runtime,
            "`{source}` fails: {err:?}"
        );
    }
    h.still_works().await;
}

async fn a_regex_replacement_cannot_grow_past_the_string_limit(via: Via) {
    let h = Harness::start(via).await;
    let err = h
        .error("let big = \"y\";\nbig.pad(100000, \"y\");\nlet text = \"x\";\ntext.pad(100000, \"x\");\nregex::replace_all(\"\", text, big)")
        .await;
    assert_error(&err, ExecErrorKind::Runtime, "longer than the string limit");
    h.still_works().await;
}
