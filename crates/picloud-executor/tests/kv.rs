//! The KV SDK against the real store (`StoreServices` over a fresh database), on SQLite and on
//! PostgreSQL: what a script writes reads back as it was, pages walk to the end, every refusal
//! names the function and says what to change, the app is always the running execution's.

use std::sync::Arc;

use picloud_core::exec::{AppRef, ExecErrorKind, ExecOutcome, ResponseBody};
use picloud_core::{
    Authority, CapabilityKind, CollectionName, JobPayload, KvOp, Limits, NoServices, ScriptKind,
    ScriptName, TriggerDetail, TriggerEvent,
};
use picloud_executor::ExecutorConfig;
use picloud_store::{NewScript, NewTrigger, Store};
use picloud_test_support::both_backends;
use picloud_test_support::executor::{assert_error, failed, new_app, ok, Harness, Via};
use serde_json::{json, Value};

/// A harness whose scripts reach `store`, running in a new app `slug` of it.
async fn harness(store: &Arc<dyn Store>, slug: &str) -> Harness {
    let mut h = Harness::with_store(Via::Local, store).await;
    h.app = new_app(store, slug).await;
    h
}

/// A harness with `limits` on one executor thread, in a new app `shop` of `store`.
async fn limited_harness(store: &Arc<dyn Store>, limits: Limits) -> Harness {
    let mut h = Harness::with_config_and_store(
        Via::Local,
        ExecutorConfig {
            limits,
            threads: 1,
            ..ExecutorConfig::default()
        },
        store,
    )
    .await;
    h.app = new_app(store, "shop").await;
    h
}

/// The JSON value `outcome` answered.
fn json_of(outcome: ExecOutcome) -> Value {
    match ok(outcome).body {
        ResponseBody::Json(value) => value,
        other => panic!("expected a JSON body, got {other:?}"),
    }
}

both_backends!(
    values_of_every_json_shape_read_back_as_they_were_written,
    |store| async move {
        let h = harness(&store, "shop").await;
        let value = h
            .json(
                r#"
                let users = kv::collection("users");
                let ada = #{
                    name: "Ada ✓", age: 36, ratio: 0.25, admin: true, manager: (),
                    tags: ["a", 1, 2.5, false, (), [[]], #{}],
                    address: #{ city: "London", lines: ["12 St", #{ flat: 3 }] },
                };
                users.set("ada", ada);
                users.set("count", 7);
                users.set("pi", 3.5);
                users.set("flag", false);
                users.set("text", "plain");
                users.set("nothing", ());
                #{
                    same: users.get("ada") == ada,
                    ada: users.get("ada"),
                    scalars: [users.get("count"), users.get("pi"), users.get("flag"), users.get("text")],
                    nothing: [users.get("nothing"), users.has("nothing")],
                    missing: [users.get("nobody"), users.has("nobody")],
                }
                "#,
            )
            .await;
        assert_eq!(
            value["same"],
            json!(true),
            "the map reads back equal to what was written"
        );
        assert_eq!(
            value["ada"],
            json!({
                "name": "Ada ✓", "age": 36, "ratio": 0.25, "admin": true, "manager": null,
                "tags": ["a", 1, 2.5, false, null, [[]], {}],
                "address": {"city": "London", "lines": ["12 St", {"flat": 3}]},
            }),
            "nested maps and arrays keep every value and type"
        );
        assert_eq!(
            value["scalars"],
            json!([7, 3.5, false, "plain"]),
            "top-level scalars are values too"
        );
        assert_eq!(
            value["nothing"],
            json!([null, true]),
            "() is stored as null: get answers () and has tells it from a missing key"
        );
        assert_eq!(
            value["missing"],
            json!([null, false]),
            "a missing key reads as ()"
        );
    }
);

both_backends!(
    set_overwrites_and_has_and_delete_say_whether_the_entry_was_there,
    |store| async move {
        let h = harness(&store, "shop").await;
        let value = h
            .json(
                r#"
                let c = kv::collection("carts");
                c.set("k", 1);
                c.set("k", #{ v: 2 });
                let after_set = [c.get("k"), c.has("k")];
                let first = c.delete("k");
                let second = c.delete("k");
                [after_set, first, second, c.has("k"), c.get("k")]
                "#,
            )
            .await;
        assert_eq!(
            value,
            json!([[{"v": 2}, true], true, false, false, null]),
            "set overwrites; delete answers true once, then false; the key is gone"
        );
    }
);

both_backends!(
    list_walks_a_prefix_page_by_page_in_key_order_to_the_end,
    |store| async move {
        let h = harness(&store, "shop").await;
        let value = h
            .json(
                r#"
                let c = kv::collection("users");
                for i in 0..25 {
                    let key = if i < 10 { `user:0${i}` } else { `user:${i}` };
                    c.set(key, #{ n: i });
                }
                c.set("other:1", 1);
                c.set("user", "no colon");
                let keys = [];
                let pages = [];
                let cursor = ();
                loop {
                    let page = c.list(#{ prefix: "user:", limit: 10, cursor: cursor });
                    pages.push(page.items.len());
                    for item in page.items { keys.push(item.key); }
                    cursor = page.cursor;
                    if cursor == () { break; }
                    if type_of(cursor) != "string" { throw "the cursor is not a string"; }
                }
                let all = c.list();
                let first = c.list(#{ limit: 1 });
                #{
                    keys: keys, pages: pages,
                    last_value: c.list(#{ prefix: "user:24" }).items,
                    all: all.items.len(), all_cursor: all.cursor,
                    first: first.items[0].key, first_has_cursor: first.cursor != (),
                    none: c.list(#{ prefix: "nobody" }),
                    empty_prefix: c.list(#{ prefix: "", limit: 1000 }).items.len(),
                }
                "#,
            )
            .await;
        let expected: Vec<String> = (0..25).map(|i| format!("user:{i:02}")).collect();
        assert_eq!(
            value["keys"],
            json!(expected),
            "every key with the prefix, once, ascending, across pages"
        );
        assert_eq!(
            value["pages"],
            json!([10, 10, 5]),
            "pages of the limit, the last one short"
        );
        assert_eq!(
            value["last_value"],
            json!([{"key": "user:24", "value": {"n": 24}}]),
            "items carry their values"
        );
        assert_eq!(
            value["all"],
            json!(27),
            "without options, one page of up to 100"
        );
        assert_eq!(
            value["all_cursor"],
            Value::Null,
            "and no cursor after the last page"
        );
        assert_eq!(value["first"], json!("other:1"), "keys sort by their bytes");
        assert_eq!(
            value["first_has_cursor"],
            json!(true),
            "a full page has a cursor"
        );
        assert_eq!(
            value["none"],
            json!({"items": [], "cursor": null}),
            "a prefix nothing has is an empty last page"
        );
        assert_eq!(
            value["empty_prefix"],
            json!(27),
            "an empty prefix is no prefix"
        );
    }
);

both_backends!(
    refusals_name_the_function_and_say_what_to_change,
    |store| async move {
        let h = harness(&store, "shop").await;
        let long_key = "k".repeat(513);
        let cases: Vec<(String, &str)> =
            vec![
            (r#"kv::collection("a b")"#.into(), "kv::collection: 'a b' is not a collection name"),
            (r#"kv::collection(".x")"#.into(), "kv::collection: '.x' is not a collection name"),
            (r#"kv::collection("")"#.into(), "kv::collection: a collection name cannot be empty"),
            (format!(r#"kv::collection("{}")"#, "c".repeat(65)), "longer than 64 characters"),
            (r#"kv::collection(7)"#.into(), "kv::collection: a collection name must be a string"),
            (r#"kv::collection("u").get("")"#.into(), "kv.get: a KV key cannot be empty"),
            (
                format!(r#"kv::collection("u").set("{long_key}", 1)"#),
                "kv.set: 'kkkk",
            ),
            (
                format!(r#"kv::collection("u").has("{long_key}")"#),
                "a KV key has at most 512 bytes",
            ),
            (
                r#"kv::collection("u").delete("a\nb")"#.into(),
                "kv.delete: 'a\\nb' contains a control character",
            ),
            (r#"kv::collection("u").get(42)"#.into(), "kv.get: a key must be a string (got i64)"),
            (
                r#"kv::collection("u").set("k", Fn("greet"))"#.into(),
                "kv.set: the value cannot be stored: a function pointer (Fn) has no JSON form",
            ),
            (
                r#"kv::collection("u").set("k", #{ h: kv::collection("u") })"#.into(),
                "kv.set: the value cannot be stored: the value at $.h is a KvCollection",
            ),
            (
                r#"kv::collection("u").set("k", [0.0 / 0.0])"#.into(),
                "kv.set: the value cannot be stored: the value at $[0] is NaN",
            ),
            (
                r#"kv::collection("u").set("k", 1.0 / 0.0)"#.into(),
                "kv.set: the value cannot be stored: inf has no JSON form: a number must be finite",
            ),
            (
                r#"let big = ""; big.pad(1048577, 'x'); kv::collection("u").set("k", big)"#.into(),
                "kv.set: the value is 1048579 bytes as JSON; a KV value has at most 1048576 bytes",
            ),
            (
                r#"kv::collection("u").list(#{ sort: "desc" })"#.into(),
                "kv.list: 'sort' is not an option: use prefix, limit or cursor",
            ),
            (
                r#"kv::collection("u").list(#{ limit: 0 })"#.into(),
                "kv.list: the limit must be a whole number from 1 to 1000 (got 0)",
            ),
            (
                r#"kv::collection("u").list(#{ limit: 1001 })"#.into(),
                "kv.list: the limit must be a whole number from 1 to 1000 (got 1001)",
            ),
            (
                r#"kv::collection("u").list(#{ limit: "10" })"#.into(),
                "kv.list: the limit must be a whole number from 1 to 1000 (got string)",
            ),
            (
                r#"kv::collection("u").list(#{ prefix: 3 })"#.into(),
                "kv.list: the prefix must be a string",
            ),
            (
                r#"kv::collection("u").list("users")"#.into(),
                "kv.list: the options are a map",
            ),
            (
                r#"kv::collection("u").list(#{ cursor: "not-a-cursor" })"#.into(),
                "kv.list: the cursor is not one this server issued",
            ),
        ];
        for (source, needle) in &cases {
            let err = h.error(source).await;
            assert_error(&err, ExecErrorKind::Runtime, needle);
        }
        let caught = h
            .json(
                r#"
                let c = kv::collection("u");
                let said = "";
                try { c.set("", 1); } catch (err) { said = err; }
                [said, c.has("k")]
                "#,
            )
            .await;
        assert_eq!(
            caught,
            json!(["kv.set: a KV key cannot be empty", false]),
            "a refusal can be caught, and nothing refused was stored"
        );
    }
);

both_backends!(
    a_caller_without_kv_write_may_read_but_not_write,
    |store| async move {
        let h = harness(&store, "shop").await;
        ok(h.run(r#"kv::collection("u").set("k", "before")"#).await);
        let reader = Authority::Caller {
            capabilities: [CapabilityKind::AppKvRead].into_iter().collect(),
        };
        for (source, function) in [
            (r#"kv::collection("u").set("k", "after")"#, "kv.set"),
            (r#"kv::collection("u").delete("k")"#, "kv.delete"),
        ] {
            let request = picloud_core::exec::ExecRequest {
                authority: reader.clone(),
                ..h.request(source)
            };
            let err = failed(h.execute(request).await);
            assert_error(
                &err,
                ExecErrorKind::Runtime,
                &format!("{function}: this execution may not do that (it needs AppKvWrite)"),
            );
        }
        let request = picloud_core::exec::ExecRequest {
            authority: reader,
            ..h.request(
                r#"let c = kv::collection("u"); [c.get("k"), c.has("k"), c.list().items.len()]"#,
            )
        };
        assert_eq!(
            json_of(h.execute(request).await),
            json!(["before", true, 1]),
            "the reader reads, and the refused writes changed nothing"
        );
        let nobody = picloud_core::exec::ExecRequest {
            authority: Authority::Caller {
                capabilities: Default::default(),
            },
            ..h.request(r#"kv::collection("u").get("k")"#)
        };
        let err = failed(h.execute(nobody).await);
        assert_error(
            &err,
            ExecErrorKind::Runtime,
            "kv.get: this execution may not do that (it needs AppKvRead)",
        );
    }
);

both_backends!(
    two_apps_with_the_same_collection_and_key_never_see_each_other,
    |store| async move {
        let h = harness(&store, "shop").await;
        let shop = h.app.clone();
        let blog = new_app(&store, "blog").await;
        let run = |app: AppRef, source: &str| {
            let request = picloud_core::exec::ExecRequest {
                app,
                ..h.request(source)
            };
            h.execute(request)
        };
        ok(run(
            shop.clone(),
            r#"kv::collection("users").set("ada", "shop's")"#,
        )
        .await);
        ok(run(
            blog.clone(),
            r#"kv::collection("users").set("ada", "blog's")"#,
        )
        .await);
        ok(run(
            blog.clone(),
            r#"kv::collection("users").set("only-blog", 1)"#,
        )
        .await);
        let read = r#"let c = kv::collection("users");
            [c.get("ada"), c.has("only-blog"), c.list().items.map(|item| item.key)]"#;
        assert_eq!(
            json_of(run(shop.clone(), read).await),
            json!(["shop's", false, ["ada"]]),
            "the shop sees its own value and keys only"
        );
        assert_eq!(
            json_of(run(blog.clone(), read).await),
            json!(["blog's", true, ["ada", "only-blog"]]),
            "the blog sees its own value and keys only"
        );
        ok(run(shop.clone(), r#"kv::collection("users").delete("ada")"#).await);
        assert_eq!(
            json_of(run(blog, r#"[kv::collection("users").get("ada")]"#).await),
            json!(["blog's"]),
            "a delete in one app leaves the other's entry"
        );
    }
);

both_backends!(
    a_write_enqueues_its_triggers_one_level_deeper_than_the_writer,
    |store| async move {
        let h = harness(&store, "shop").await;
        let script = store
            .create_script(&NewScript {
                app_id: h.app.id,
                name: ScriptName::parse("on-user", ScriptKind::Endpoint).expect("a valid name"),
                kind: ScriptKind::Endpoint,
                source: "ctx.event".to_string(),
                imports: Vec::new(),
            })
            .await
            .expect("the handler is created");
        store
            .create_trigger(&NewTrigger {
                app_id: h.app.id,
                script_id: script.id,
                detail: TriggerDetail::Kv {
                    collection: CollectionName::parse("users").expect("a name"),
                    key_prefix: None,
                    ops: vec![KvOp::Set],
                },
            })
            .await
            .expect("the trigger is created");
        let request = picloud_core::exec::ExecRequest {
            trigger_depth: 2,
            ..h.request(r#"kv::collection("users").set("ada", #{ n: 1 })"#)
        };
        ok(h.execute(request).await);
        let jobs = store
            .claim_jobs("test", 10, u32::MAX, &[], 60_000)
            .await
            .expect("the jobs are claimed");
        assert_eq!(jobs.len(), 1, "one trigger job: {jobs:?}");
        assert_eq!(jobs[0].trigger_depth, 3, "one level deeper than the writer");
        assert_eq!(jobs[0].app_id, h.app.id, "in the writer's app");
        let JobPayload::Trigger {
            event: TriggerEvent::Kv { kv },
        } = &jobs[0].payload
        else {
            panic!("expected a kv trigger payload, got {:?}", jobs[0].payload);
        };
        assert_eq!(
            (kv.collection.as_str(), kv.key.as_str(), kv.op, &kv.value),
            ("users", "ada", KvOp::Set, &Some(json!({"n": 1}))),
            "the event says what the script wrote"
        );
    }
);

both_backends!(
    values_read_back_count_toward_the_sandbox_limits_like_any_other,
    |store| async move {
        let h = limited_harness(
            &store,
            Limits {
                max_memory_bytes: 4 * 1024 * 1024,
                ..Limits::default()
            },
        )
        .await;
        // One value a run: a run holds what it writes until it commits.
        for key in ["a", "b", "c", "d", "e", "f", "g", "h"] {
            ok(h
                .run(&format!(
                    r#"let text = ""; text.pad(900000, 'x'); kv::collection("notes").set("{key}", text);"#
                ))
                .await);
        }
        let value = h
            .json(
                r#"
                let c = kv::collection("notes");
                [c.get("b").len(), c.list(#{ limit: 1 }).items.len()]
                "#,
            )
            .await;
        assert_eq!(
            value,
            json!([900_000, 1]),
            "a value and a page within the budget read back"
        );
        let err = h.error(r#"kv::collection("notes").list()"#).await;
        assert_error(
            &err,
            ExecErrorKind::LimitExceeded,
            "the script held more than its limit of 4 MiB of memory",
        );
    }
);

// #13: memory read from the store was allocated on the store's threads, so freeing it here looked
// like the run giving memory back and a value read cost nothing: values read in a loop and kept
// in closures (which no size limit sees) grew without bound. What a run reads is charged to it,
// and so is what it writes (#15: its transaction holds the last value of each key it wrote until
// the commit), but not every write: a value overwritten is freed.
both_backends!(
    values_read_are_charged_and_a_run_holds_one_written_value_per_key,
    |store| async move {
        let h = limited_harness(
            &store,
            Limits {
                max_memory_bytes: 8 * 1024 * 1024,
                // The test is about memory: a debug build on a busy machine may take its time.
                timeout_ms: 60_000,
                ..Limits::default()
            },
        )
        .await;
        let written = h
            .json(
                r#"
                let c = kv::collection("big");
                let text = ""; text.pad(500000, 'x');
                for i in 0..24 { c.set(`k${i % 4}`, text); }
                c.get("k1").len()
                "#,
            )
            .await;
        assert_eq!(
            written,
            json!(500_000),
            "12 MB written through an 8 MiB budget: the run held the last value of each of 4 keys"
        );
        let err = h
            .error(
                r#"
                let c = kv::collection("big");
                let kept = [];
                loop { let v = c.get("k1"); kept.push(|| v); }
                "#,
            )
            .await;
        assert_error(
            &err,
            ExecErrorKind::LimitExceeded,
            "the script held more than its limit of 8 MiB of memory",
        );
    }
);

// #15: a run keeps a record of every key it read until it commits. A script reading distinct keys
// in a loop grows that record: it is the run's memory, so the budget stops it.
both_backends!(
    the_record_of_what_a_run_read_counts_against_its_memory,
    |store| async move {
        let h = limited_harness(
            &store,
            Limits {
                max_memory_bytes: 1024 * 1024,
                timeout_ms: 60_000,
                ..Limits::default()
            },
        )
        .await;
        // Keys of 400 bytes: 1 MiB holds the record of about 2,000 reads (each read's answer
        // is charged too, but a missing key's `()` costs a few bytes).
        let outcome = h
            .run(
                r#"
                let c = kv::collection("c");
                let pad = ""; pad.pad(400, 'k');
                for i in 0..1000000 {
                    if i % 500 == 0 { log::info(`${i}`); }
                    c.get(`${pad}${i}`);
                }
                "#,
            )
            .await;
        let last: u64 = outcome
            .logs
            .last()
            .and_then(|line| line.message.parse().ok())
            .expect("a count was logged");
        assert_error(
            &failed(outcome),
            ExecErrorKind::LimitExceeded,
            "the script held more than its limit of 1 MiB of memory",
        );
        assert!(
            last < 5_000,
            "the record of the reads filled the budget, not the reads' answers: {last} reads"
        );
    }
);

both_backends!(the_kv_examples_in_the_sdk_docs_work, |store| async move {
    let h = harness(&store, "shop").await;
    let first = h
        .json(
            r#"
            let users = kv::collection("users");
            users.set("ada", #{ name: "Ada", langs: ["en", "fr"], visits: 1 });
            let ada = users.get("ada");
            ada.visits += 1;
            users.set("ada", ada);
            [users.has("ada"), users.get("ada").visits, `${users}`]
            "#,
        )
        .await;
    assert_eq!(
        first,
        json!([true, 2, "kv::collection(\"users\")"]),
        "the first example, and a handle shows as its constructor"
    );
    let names = h
        .json(
            r#"
            let users = kv::collection("users");
            for i in 0..150 { users.set(`user:${1000 + i}`, #{ name: `n${i}` }); }
            let names = [];
            let cursor = ();
            loop {
                let page = users.list(#{ prefix: "user:", limit: 100, cursor: cursor });
                for item in page.items { names.push(item.value.name); }
                cursor = page.cursor;
                if cursor == () { break; }
            }
            names
            "#,
        )
        .await;
    let expected: Vec<String> = (0..150).map(|i| format!("n{i}")).collect();
    assert_eq!(
        names,
        json!(expected),
        "the paging example reads every entry once, in order"
    );
});

/// An executor started without a database: a data call is a runtime error with a sentence,
/// never a panic, and the script can catch it.
#[tokio::test]
async fn without_data_services_a_kv_call_fails_with_a_sentence() {
    let h = Harness::with_config_and_services(
        Via::Local,
        ExecutorConfig::default(),
        Arc::new(NoServices),
    )
    .await;
    let err = h.error(r#"kv::collection("users").get("ada")"#).await;
    assert_error(
        &err,
        ExecErrorKind::Runtime,
        "kv.get: this executor has no data services",
    );
    let caught = h
        .json(r#"let said = (); try { kv::collection("u").has("k"); } catch (err) { said = err; } [said]"#)
        .await;
    assert!(
        caught[0]
            .as_str()
            .is_some_and(|said| said.starts_with("kv.has: this executor has no data services")),
        "the failure is catchable: {caught}"
    );
    h.still_works().await;
}

// #13: one request wrote without bound, and each write may fire triggers. An execution makes at
// most `max_writes` writes; the next one ends it with a limit that `try/catch` cannot swallow,
// and (#15) a run that fails writes nothing, not even the writes before it.
both_backends!(
    an_execution_stops_at_its_limit_of_writes_and_cannot_catch_it,
    |store| async move {
        let h = limited_harness(
            &store,
            Limits {
                max_writes: 50,
                ..Limits::default()
            },
        )
        .await;
        let err = h
            .error(
                r#"
                let c = kv::collection("flood");
                for i in 0..1000 {
                    try { c.set(`k${i}`, i); } catch { }
                }
                "#,
            )
            .await;
        assert_error(
            &err,
            ExecErrorKind::LimitExceeded,
            "the script exceeded its limit of 50 data writes (kv.set, kv.delete, docs.create, \
             docs.update, docs.delete) in one execution",
        );
        let kept = h
            .json(r#"kv::collection("flood").list(#{ limit: 500 }).items.len()"#)
            .await;
        assert_eq!(kept, json!(0), "the failed run wrote nothing");
        let deletes = h
            .error(r#"let c = kv::collection("flood"); for i in 0..60 { c.delete(`k${i}`); }"#)
            .await;
        assert_eq!(
            deletes.kind,
            ExecErrorKind::LimitExceeded,
            "deletes count as writes: {deletes:?}"
        );
    }
);

/// An endpoint script of `h`'s app with a KV trigger on `collection` (every operation).
async fn watch(store: &Arc<dyn Store>, h: &Harness, name: &str, collection: &str) {
    let handler = store
        .create_script(&NewScript {
            app_id: h.app.id,
            name: ScriptName::parse(name, ScriptKind::Endpoint).expect("a valid name"),
            kind: ScriptKind::Endpoint,
            source: "ctx.event".to_string(),
            imports: Vec::new(),
        })
        .await
        .expect("the handler is created");
    store
        .create_trigger(&NewTrigger {
            app_id: h.app.id,
            script_id: handler.id,
            detail: TriggerDetail::Kv {
                collection: CollectionName::parse(collection).expect("a name"),
                key_prefix: None,
                ops: KvOp::ALL.to_vec(),
            },
        })
        .await
        .expect("the trigger is created");
}

// #13: a KV trigger whose handler writes keys of its own collection produced 87,380 jobs in
// 22 s; the depth cap bounds the chain, not its breadth. One run's writes may fire at most
// `max_trigger_jobs` jobs: a run whose commit would fire more is refused whole (#15) — no write,
// no job — and fails with a limit, which `try/catch` in the script cannot swallow.
both_backends!(
    a_fanning_out_handler_is_refused_whole_past_its_limit_of_trigger_jobs,
    |store| async move {
        let mut h = harness(&store, "shop").await;
        h.max_trigger_jobs = 10;
        watch(&store, &h, "on-fan", "fan").await;
        let request = picloud_core::exec::ExecRequest {
            trigger_depth: 1,
            event: Some(TriggerEvent::Kv {
                kv: picloud_core::events::KvEvent {
                    collection: "fan".to_owned(),
                    key: "seed".to_owned(),
                    op: KvOp::Set,
                    value: Some(json!(1)),
                    prev_value: None,
                },
            }),
            ..h.request(
                r#"
                let fan = kv::collection("fan");
                for i in 0..100 {
                    try { fan.set(`${ctx.event.kv.key}-${i}`, i); } catch { }
                }
                "#,
            )
        };
        let err = failed(h.execute(request).await);
        assert_error(
            &err,
            ExecErrorKind::LimitExceeded,
            "the execution's writes were refused, nothing was written: this execution's writes \
             would fire 100 trigger jobs, and it may fire only 10",
        );
        let jobs = store
            .claim_jobs("test", 100, u32::MAX, &[], 60_000)
            .await
            .expect("the jobs are claimed");
        assert_eq!(jobs.len(), 0, "no job of the refused run");
        let kept = h
            .json(r#"kv::collection("fan").list(#{ limit: 500 }).items.len()"#)
            .await;
        assert_eq!(kept, json!(0), "and no write");
        h.still_works().await;
    }
);

// A quota is the app's: a run whose commit would take the app past it is refused whole, with
// the usage and the quota in its error; a later run that frees room (a delete, a smaller
// value) commits.
both_backends!(
    quotas: picloud_store::AppQuotas {
        stored_bytes: 4_096,
        ..picloud_store::AppQuotas::default()
    },
    a_run_past_a_quota_writes_nothing_and_a_run_that_frees_room_commits,
    |store| async move {
        let h = harness(&store, "shop").await;
        let fill = r#"
            let notes = kv::collection("notes");
            let text = ""; text.pad(1000, 'x');
            for i in 0..N { notes.set(`n${i}`, text); }
        "#;
        ok(h.run(&fill.replace('N', "3")).await);
        let err = failed(h.run(&fill.replace('N', "5")).await);
        assert_eq!(err.kind, ExecErrorKind::LimitExceeded, "{err:?}");
        assert!(
            err.message.contains("the app's KV data would grow to")
                && err.message.contains("past its quota of 4096 bytes"),
            "the refusal names the usage and the quota: {}",
            err.message
        );
        assert_eq!(
            h.json(r#"kv::collection("notes").list().items.len()"#).await,
            json!(3),
            "the refused run wrote nothing"
        );
        let value = h
            .json(
                r#"
                let notes = kv::collection("notes");
                let text = ""; text.pad(1000, 'x');
                notes.delete("n0");
                notes.set("again", text);
                notes.get("again").len()
                "#,
            )
            .await;
        assert_eq!(value, json!(1000), "the room a delete freed was written");
    }
);
