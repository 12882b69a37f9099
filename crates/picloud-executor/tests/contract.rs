//! The script contract as a script author sees it: what is in `ctx`, how a value becomes a
//! response, how failures are reported, what the log keeps — and the executor's own promises:
//! a hot script is compiled once, an update is served at once, executions run concurrently.

use std::sync::Arc;

use picloud_core::exec::{ExecErrorKind, HttpRequest, LogLevel, ResponseBody};
use picloud_core::{ScriptKind, Timestamp};
use picloud_executor::ExecutorConfig;
use picloud_test_support::executor::{
    assert_error, failed, get, ok, script, strings, Harness, Via,
};
use picloud_test_support::for_both_clients;
use serde_json::json;

for_both_clients!(
    the_script_sees_its_request_app_and_execution_in_ctx,
    a_body_that_is_not_json_leaves_ctx_request_json_unit,
    a_string_answers_200_text,
    a_map_array_number_or_bool_answers_200_json,
    unit_answers_204_without_a_body,
    an_explicit_response_sets_status_body_and_headers,
    an_explicit_response_refuses_an_invalid_status_or_header,
    a_value_that_cannot_be_a_response_is_an_invalid_response_naming_its_type,
    a_compile_error_has_its_line_and_column,
    a_runtime_error_has_the_line_and_column_where_it_was_raised,
    an_error_inside_a_function_names_the_function,
    sdk_errors_are_catchable_by_try_catch,
    log_lines_are_captured_with_their_levels,
    a_hot_script_is_compiled_once_and_an_update_is_served_at_once,
    fifty_concurrent_executions_through_four_threads_all_succeed,
    the_duration_is_measured,
    the_examples_in_the_sdk_docs_work,
);

async fn the_script_sees_its_request_app_and_execution_in_ctx(via: Via) {
    let h = Harness::start(via).await;
    let request = HttpRequest {
        method: "POST".to_string(),
        path: "/users/7".to_string(),
        params: strings(&[("id", "7")]),
        query: strings(&[("q", "rust"), ("page", "2")]),
        headers: strings(&[("content-type", "application/json"), ("x-trace", "abc")]),
        body: r#"{"name": "Ada", "tags": ["a", "b"], "n": 3}"#.to_string(),
    };
    let source = r#"
        #{
            method: ctx.request.method,
            path: ctx.request.path,
            params: ctx.request.params,
            query: ctx.request.query,
            headers: ctx.request.headers,
            body: ctx.request.body,
            json: ctx.request.json,
            app: ctx.app,
            execution_id: ctx.execution_id,
            event: ctx.event,
        }
    "#;
    let outcome = h.run_request(source, request).await;
    let ResponseBody::Json(value) = ok(outcome).body else {
        panic!("a map answers JSON");
    };
    let execution_id = value["execution_id"]
        .as_str()
        .expect("the execution id is a string");
    assert_eq!(
        execution_id.len(),
        36,
        "the execution id is a uuid: {execution_id}"
    );
    assert_eq!(
        value,
        json!({
            "method": "POST",
            "path": "/users/7",
            "params": {"id": "7"},
            "query": {"q": "rust", "page": "2"},
            "headers": {"content-type": "application/json", "x-trace": "abc"},
            "body": r#"{"name": "Ada", "tags": ["a", "b"], "n": 3}"#,
            "json": {"name": "Ada", "tags": ["a", "b"], "n": 3},
            "app": {"id": h.app.id.to_string(), "slug": "shop"},
            "execution_id": execution_id,
            "event": null,
        }),
        "ctx holds the request, the app, the execution id and no event"
    );
}

async fn a_body_that_is_not_json_leaves_ctx_request_json_unit(via: Via) {
    let h = Harness::start(via).await;
    for body in ["not json {", ""] {
        let request = HttpRequest {
            body: body.to_string(),
            ..get("/")
        };
        let outcome = h
            .run_request("[ctx.request.json == (), ctx.request.body]", request)
            .await;
        assert_eq!(
            ok(outcome).body,
            ResponseBody::Json(json!([true, body])),
            "a body of {body:?} gives json = () and keeps the text"
        );
    }
}

async fn a_string_answers_200_text(via: Via) {
    let h = Harness::start(via).await;
    let response = ok(h.run("`hello ${ctx.app.slug}`").await);
    assert_eq!(response.status, 200, "a string answers 200");
    assert_eq!(
        response.body,
        ResponseBody::Text("hello shop".to_string()),
        "as text"
    );
    assert!(response.headers.is_empty(), "and sets no headers");
}

async fn a_map_array_number_or_bool_answers_200_json(via: Via) {
    let h = Harness::start(via).await;
    for (source, expected) in [
        (
            "#{ ok: true, items: [1, 2] }",
            json!({"ok": true, "items": [1, 2]}),
        ),
        (
            "[1, \"two\", 3.5, (), 'c']",
            json!([1, "two", 3.5, null, "c"]),
        ),
        ("40 + 2", json!(42)),
        ("1.5", json!(1.5)),
        ("false", json!(false)),
    ] {
        let response = ok(h.run(source).await);
        assert_eq!(response.status, 200, "`{source}` answers 200");
        assert_eq!(
            response.body,
            ResponseBody::Json(expected),
            "`{source}` answers JSON"
        );
    }
}

async fn unit_answers_204_without_a_body(via: Via) {
    let h = Harness::start(via).await;
    for source in ["()", "let x = 1;", ""] {
        let response = ok(h.run(source).await);
        assert_eq!(response.status, 204, "`{source}` answers 204");
        assert_eq!(response.body, ResponseBody::Empty, "`{source}` has no body");
    }
}

async fn an_explicit_response_sets_status_body_and_headers(via: Via) {
    let h = Harness::start(via).await;
    let response = ok(h.run("response(201, \"made\")").await);
    assert_eq!(
        (response.status, response.body),
        (201, ResponseBody::Text("made".to_string())),
        "a string body is text"
    );

    let response = ok(h.run("response(404, #{ error: \"no such user\" })").await);
    assert_eq!(
        (response.status, response.body),
        (404, ResponseBody::Json(json!({"error": "no such user"}))),
        "a map body is JSON"
    );

    let response = ok(h
        .run("response(302, (), #{ Location: \"/login\", \"Set-Cookie\": [\"a=1\", \"b=2\"], \"x-n\": 5 })")
        .await);
    assert_eq!(response.status, 302, "the status is kept");
    assert_eq!(response.body, ResponseBody::Empty, "() is an empty body");
    assert_eq!(
        response.headers,
        vec![
            ("location".to_string(), "/login".to_string()),
            ("set-cookie".to_string(), "a=1".to_string()),
            ("set-cookie".to_string(), "b=2".to_string()),
            ("x-n".to_string(), "5".to_string()),
        ],
        "header names are lower-cased and an array value repeats the header"
    );

    let status = h.json("let r = response(418, \"teapot\"); r.status").await;
    assert_eq!(status, json!(418), "a response's status can be read back");
}

async fn an_explicit_response_refuses_an_invalid_status_or_header(via: Via) {
    let h = Harness::start(via).await;
    for status in ["600", "99", "-1"] {
        let err = h
            .error(&format!("let x = 1;\nresponse({status}, \"x\")"))
            .await;
        assert_error(
            &err,
            ExecErrorKind::Runtime,
            &format!("response(): {status} is not an HTTP status: use a number from 100 to 599"),
        );
        assert_eq!(err.line, Some(2), "the error points at the call: {err:?}");
    }
    let err = h
        .error("response(200, \"x\", #{ \"bad name\": \"v\" })")
        .await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "'bad name' is not a valid header name",
    );
    let err = h
        .error("response(200, \"x\", #{ \"x-a\": \"line\\nbreak\" })")
        .await;
    assert_error(&err, ExecErrorKind::Runtime, "control character");
    let err = h.error("response(200, \"x\", #{ \"x-a\": #{} })").await;
    assert_error(&err, ExecErrorKind::Runtime, "use a string");
    let err = h.error("response(200, #{ f: Fn(\"f\") })").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "the value at $.f is a function pointer (Fn)",
    );
}

async fn a_value_that_cannot_be_a_response_is_an_invalid_response_naming_its_type(via: Via) {
    let h = Harness::start(via).await;
    for (source, named) in [
        ("Fn(\"f\")", "function pointer (Fn)"),
        ("timestamp()", "timestamp"),
        ("blob(3)", "blob"),
    ] {
        let err = h.error(source).await;
        assert_error(
            &err,
            ExecErrorKind::InvalidResponse,
            &format!("the script's value is a {named}, which cannot be a response"),
        );
    }
    let err = h.error("#{ user: #{ created: timestamp() } }").await;
    assert_error(
        &err,
        ExecErrorKind::InvalidResponse,
        "the value at $.user.created is a timestamp",
    );
}

async fn a_compile_error_has_its_line_and_column(via: Via) {
    let h = Harness::start(via).await;
    let source = "let a = 1;\nlet b = ;\n";
    let err = h.error(source).await;
    assert_eq!(
        err.kind,
        ExecErrorKind::Compile,
        "a syntax error is a compile error: {err:?}"
    );
    assert_eq!(
        (err.line, err.column),
        (Some(2), Some(9)),
        "it points at the gap: {err:?}"
    );

    let validated = h
        .local
        .validate(source, ScriptKind::Endpoint)
        .expect_err("validation refuses it too");
    assert_eq!(
        validated, err,
        "validation and execution report the same error"
    );
    h.still_works().await;
}

async fn a_runtime_error_has_the_line_and_column_where_it_was_raised(via: Via) {
    let h = Harness::start(via).await;
    let err = h
        .error("let a = 1;\nif a == 1 {\n    throw \"boom\";\n}")
        .await;
    assert_eq!(
        (err.kind, err.message.as_str(), err.line, err.column),
        (ExecErrorKind::Runtime, "boom", Some(3), Some(5)),
        "a throw keeps its message and position: {err:?}"
    );
    let err = h.error("let m = #{};\nlet x = 1 + \"a\" * 2;").await;
    assert_eq!(
        err.kind,
        ExecErrorKind::Runtime,
        "a type error is a runtime error: {err:?}"
    );
    assert_eq!(err.line, Some(2), "it has the line: {err:?}");
    assert!(err.column.is_some(), "and a column: {err:?}");
    let err = h.error("throw #{ code: 7 };").await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "the script threw #{\"code\": 7}",
    );
}

async fn an_error_inside_a_function_names_the_function(via: Via) {
    let h = Harness::start(via).await;
    let err = h
        .error("fn check(x) {\n  if x > 1 { throw `too big: ${x}`; }\n}\ncheck(5);")
        .await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "too big: 5 (in function 'check')",
    );
    assert_eq!(
        err.line,
        Some(2),
        "the position is inside the function: {err:?}"
    );
}

async fn sdk_errors_are_catchable_by_try_catch(via: Via) {
    let h = Harness::start(via).await;
    let response = ok(h
        .run("let out = \"\";\ntry { regex::is_match(\"(\", \"x\"); } catch (e) { out = e; }\nout")
        .await);
    let ResponseBody::Text(message) = response.body else {
        panic!("the caught error is a string");
    };
    assert!(
        message.starts_with("regex::is_match: '(' is not a valid pattern"),
        "the script sees the SDK's sentence: {message}"
    );
}

async fn log_lines_are_captured_with_their_levels(via: Via) {
    let h = Harness::start(via).await;
    let outcome = h
        .run("log::debug(\"d\");\nlog::info(#{ a: 1 });\nlog::warn(42);\nlog::error(\"e\");\nlog::info([Fn(\"x\")]);\n\"done\"")
        .await;
    assert!(
        outcome.result.is_ok(),
        "the script succeeds: {:?}",
        outcome.result
    );
    let lines: Vec<_> = outcome
        .logs
        .iter()
        .map(|l| (l.level, l.message.as_str()))
        .collect();
    assert_eq!(
        lines,
        vec![
            (LogLevel::Debug, "d"),
            (LogLevel::Info, "{\"a\":1}"),
            (LogLevel::Warn, "42"),
            (LogLevel::Error, "e"),
            (LogLevel::Info, "[Fn(\"x\")]"),
        ],
        "each line keeps its level; a value is logged as JSON when it has a JSON form"
    );
    let failed_outcome = h.run("log::info(\"before\");\nthrow \"after\";").await;
    assert_eq!(
        failed_outcome.logs.len(),
        1,
        "a failed execution keeps the lines written before it failed"
    );
}

async fn a_hot_script_is_compiled_once_and_an_update_is_served_at_once(via: Via) {
    let h = Harness::start(via).await;
    let mut hot = script("\"v1\"");
    let before = h.local.compilations();
    for _ in 0..5 {
        let response = ok(h.run_script(hot.clone(), get("/")).await);
        assert_eq!(
            response.body,
            ResponseBody::Text("v1".to_string()),
            "the script answers"
        );
    }
    assert_eq!(
        h.local.compilations() - before,
        1,
        "five runs of one version compile once"
    );

    hot.source = Arc::from("\"v2\"");
    hot.updated_at = Timestamp::from_millis(hot.updated_at.as_millis() + 1);
    let response = ok(h.run_script(hot.clone(), get("/")).await);
    assert_eq!(
        response.body,
        ResponseBody::Text("v2".to_string()),
        "the updated version is served on the next request"
    );
    ok(h.run_script(hot, get("/")).await);
    assert_eq!(
        h.local.compilations() - before,
        2,
        "the update compiles once more, then is hot"
    );
}

async fn fifty_concurrent_executions_through_four_threads_all_succeed(via: Via) {
    let h = Arc::new(
        Harness::with_config(
            via,
            ExecutorConfig {
                threads: 4,
                ..ExecutorConfig::default()
            },
        )
        .await,
    );
    let mut runs = tokio::task::JoinSet::new();
    for i in 0..50 {
        let h = h.clone();
        runs.spawn(async move {
            let source = format!("let s = 0; for i in 0..200 {{ s += i; }} s + {i}");
            (i, h.run(&source).await)
        });
    }
    let mut answered = 0;
    while let Some(joined) = runs.join_next().await {
        let (i, outcome) = joined.expect("the task completes");
        assert_eq!(
            ok(outcome).body,
            ResponseBody::Json(json!(19_900 + i)),
            "execution {i} gets its own answer"
        );
        answered += 1;
    }
    assert_eq!(answered, 50, "every execution answered");
}

async fn the_duration_is_measured(via: Via) {
    let h = Harness::start(via).await;
    let outcome = h.run("let s = 0; for i in 0..2000 { s += i; } s").await;
    assert!(
        outcome.duration_us > 0,
        "the run took some time: {}",
        outcome.duration_us
    );
    let failed_outcome = h.run("throw \"x\"").await;
    assert!(failed_outcome.duration_us > 0, "a failed run is timed too");
    assert_eq!(
        failed(failed_outcome).kind,
        ExecErrorKind::Runtime,
        "and fails"
    );
}

async fn the_examples_in_the_sdk_docs_work(via: Via) {
    let h = Harness::start(via).await;
    let request = HttpRequest {
        body: r#"{"name": "Ada"}"#.to_string(),
        ..get("/")
    };
    let source =
        "let name = ctx.request.json?.name ?? \"stranger\";\n`hello ${name} from ${ctx.app.slug}`";
    let greeted = ok(h.run_request(source, request).await);
    assert_eq!(
        greeted.body,
        ResponseBody::Text("hello Ada from shop".to_string()),
        "ctx example"
    );
    let stranger = ok(h.run(source).await);
    assert_eq!(
        stranger.body,
        ResponseBody::Text("hello stranger from shop".to_string()),
        "?. and ?? cope with a body that is not JSON"
    );

    let captures = h
        .json("let m = regex::captures(`(?<user>\\w+)@(?<host>[\\w.]+)`, \"ada@example.org\");\n[m.user, m[\"2\"]]")
        .await;
    assert_eq!(
        captures,
        json!(["ada", "example.org"]),
        "regex::captures example"
    );

    let caught = "let pattern = ctx.request.query.pattern ?? \".*\";\nlet answer = ();\ntry {\n    answer = #{ matches: regex::is_match(pattern, \"text\") };\n} catch (err) {\n    answer = response(400, #{ error: err });\n}\nanswer";
    let fine = ok(h.run(caught).await);
    assert_eq!(
        fine.body,
        ResponseBody::Json(json!({"matches": true})),
        "try example, happy"
    );
    let refused = ok(h
        .run_request(
            caught,
            HttpRequest {
                query: strings(&[("pattern", "(")]),
                ..get("/")
            },
        )
        .await);
    assert_eq!(refused.status, 400, "try example, caught: {refused:?}");

    let examples = h
        .json(
            r#"[
                regex::replace("(\\w+)@", "ada@x", "<$1>@"),
                regex::replace_all("\\s+", "a  b   c", " "),
                base64::encode("hi"),
                base64::encode_url("hé?>"),
                hex::encode("hi!"),
                url::encode("a b/c"),
                url::build_query(#{ a: 1, b: "x y", t: ["p", "q"] }),
                json::stringify(#{ a: [1, ()] }),
                #{ a: [1, ()] }.to_json(),
                response(201, "x").status,
            ]"#,
        )
        .await;
    assert_eq!(
        examples,
        json!([
            "<ada>@x",
            "a b c",
            "aGk=",
            "aMOpPz4",
            "686921",
            "a%20b%2Fc",
            "a=1&b=x%20y&t=p&t=q",
            "{\"a\":[1,null]}",
            "{\"a\":[1,null]}",
            201
        ]),
        "the documented examples answer as documented"
    );
}
