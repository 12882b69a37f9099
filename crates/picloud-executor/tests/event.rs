//! `ctx.event`: a triggered run sees its event as a map in exactly the shape the event travels
//! in (the outbox payload, the remote executor's wire), and no HTTP request; an HTTP run sees no
//! event. Run through both clients, so the event also survives the remote executor's wire.

use picloud_core::events::{DeadLetterEvent, KvEvent};
use picloud_core::exec::ResponseBody;
use picloud_core::exec::{ExecRequest, LogLevel};
use picloud_core::{DeadLetterId, KvOp, ScriptId, TriggerEvent};
use picloud_test_support::executor::{ok, Harness, Via};
use picloud_test_support::for_both_clients;
use serde_json::{json, Value};

for_both_clients!(
    a_kv_trigger_sees_its_event_in_the_shape_it_travels_in_and_no_request,
    a_deleted_entry_shows_as_null_value_with_its_previous_value,
    a_dead_letter_handler_sees_the_dead_letter_it_handles,
    an_http_run_has_no_event,
    the_event_examples_in_the_sdk_docs_work,
);

/// `#{ event, request, request_is_unit }` of a run of `event`.
async fn seen(h: &Harness, event: TriggerEvent) -> Value {
    let request = ExecRequest {
        event: Some(event),
        trigger_depth: 1,
        ..h.request(
            "#{ event: ctx.event, request: ctx.request, request_is_unit: ctx.request == (), \
               app: ctx.app.slug }",
        )
    };
    match ok(h.execute(request).await).body {
        ResponseBody::Json(value) => value,
        other => panic!("expected a JSON body, got {other:?}"),
    }
}

async fn a_kv_trigger_sees_its_event_in_the_shape_it_travels_in_and_no_request(via: Via) {
    let h = Harness::start(via).await;
    let event = TriggerEvent::Kv {
        kv: KvEvent {
            collection: "users".to_string(),
            key: "u:1".to_string(),
            op: KvOp::Set,
            value: Some(json!({"name": "Ada", "tags": ["x", 1, 2.5, true, null]})),
            prev_value: Some(json!({"name": "Ad"})),
        },
    };
    let seen = seen(&h, event.clone()).await;
    assert_eq!(
        seen["event"],
        json!({
            "source": "kv",
            "kv": {
                "collection": "users",
                "key": "u:1",
                "op": "set",
                "value": {"name": "Ada", "tags": ["x", 1, 2.5, true, null]},
                "prev_value": {"name": "Ad"},
            }
        }),
        "ctx.event is the kv event, field for field"
    );
    assert_eq!(
        seen["event"],
        serde_json::to_value(&event).expect("the event serialises"),
        "ctx.event has exactly the event's serde shape"
    );
    assert_eq!(
        seen["request_is_unit"],
        json!(true),
        "a triggered run has no HTTP request"
    );
    assert_eq!(seen["app"], json!("shop"), "the rest of ctx is as for HTTP");
}

async fn a_deleted_entry_shows_as_null_value_with_its_previous_value(via: Via) {
    let h = Harness::start(via).await;
    let event = TriggerEvent::Kv {
        kv: KvEvent {
            collection: "users".to_string(),
            key: "u:1".to_string(),
            op: KvOp::Delete,
            value: None,
            prev_value: Some(json!(7)),
        },
    };
    let seen = seen(&h, event).await;
    assert_eq!(
        seen["event"]["kv"],
        json!({"collection": "users", "key": "u:1", "op": "delete", "value": null, "prev_value": 7}),
        "a delete has no value and keeps the previous one"
    );
}

async fn a_dead_letter_handler_sees_the_dead_letter_it_handles(via: Via) {
    let h = Harness::start(via).await;
    let id = DeadLetterId::new();
    let script_id = ScriptId::new();
    let event = TriggerEvent::DeadLetter {
        dead_letter: DeadLetterEvent {
            id,
            script_id,
            error: "boom at line 3".to_string(),
            attempts: 5,
            payload: json!({"source": "http", "request": {"method": "POST", "path": "/x"}}),
        },
    };
    let seen = seen(&h, event.clone()).await;
    assert_eq!(
        seen["event"],
        json!({
            "source": "dead_letter",
            "dead_letter": {
                "id": id.to_string(),
                "script_id": script_id.to_string(),
                "error": "boom at line 3",
                "attempts": 5,
                "payload": {"source": "http", "request": {"method": "POST", "path": "/x"}},
            }
        }),
        "ctx.event is the dead letter, ids as strings"
    );
    assert_eq!(
        seen["event"],
        serde_json::to_value(&event).expect("the event serialises"),
        "ctx.event has exactly the event's serde shape"
    );
    assert_eq!(
        seen["request_is_unit"],
        json!(true),
        "a dead-letter handler has no HTTP request"
    );
}

async fn an_http_run_has_no_event(via: Via) {
    let h = Harness::start(via).await;
    let seen = h
        .json("#{ event_is_unit: ctx.event == (), method: ctx.request.method }")
        .await;
    assert_eq!(
        seen,
        json!({"event_is_unit": true, "method": "GET"}),
        "an HTTP run has its request and no event"
    );
}

async fn the_event_examples_in_the_sdk_docs_work(via: Via) {
    let h = Harness::start(via).await;
    let order = TriggerEvent::Kv {
        kv: KvEvent {
            collection: "orders".to_string(),
            key: "o-1".to_string(),
            op: KvOp::Set,
            value: Some(json!({"total": 42})),
            prev_value: None,
        },
    };
    let source = "let change = ctx.event.kv;\nif change.prev_value == () {\n    log::info(`new order ${change.key}: ${change.value.total}`);\n}";
    let outcome = h
        .execute(ExecRequest {
            event: Some(order),
            ..h.request(source)
        })
        .await;
    assert_eq!(
        outcome
            .logs
            .iter()
            .map(|line| (line.level, line.message.as_str()))
            .collect::<Vec<_>>(),
        vec![(LogLevel::Info, "new order o-1: 42")],
        "the kv example logs the new order: {:?}",
        outcome.result
    );

    let script_id = ScriptId::new();
    let failed = TriggerEvent::DeadLetter {
        dead_letter: DeadLetterEvent {
            id: DeadLetterId::new(),
            script_id,
            error: "boom".to_string(),
            attempts: 5,
            payload: json!({}),
        },
    };
    let source = "let failed = ctx.event.dead_letter;\nlog::error(`${failed.script_id} failed ${failed.attempts} times: ${failed.error}`);\nif failed.error.contains(\"validation\") {\n    dead_letters::resolve(failed.id);   // nothing to retry\n}";
    let outcome = h
        .execute(ExecRequest {
            event: Some(failed),
            ..h.request(source)
        })
        .await;
    assert_eq!(
        outcome
            .logs
            .iter()
            .map(|line| (line.level, line.message.clone()))
            .collect::<Vec<_>>(),
        vec![(LogLevel::Error, format!("{script_id} failed 5 times: boom"))],
        "the dead-letter example logs the failure: {:?}",
        outcome.result
    );
}
