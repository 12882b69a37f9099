//! The docs SDK (#16) against the real store, on SQLite and on PostgreSQL: the envelope, every
//! method, a run that sees its own writes in `find` and `list`, refusals that name the function
//! and say what to write, the size limit, the caller's authority and the app's isolation.

use std::sync::Arc;

use picloud_core::exec::{ExecErrorKind, ExecRequest};
use picloud_core::{Authority, CapabilityKind, Limits};
use picloud_executor::ExecutorConfig;
use picloud_store::Store;
use picloud_test_support::both_backends;
use picloud_test_support::executor::{assert_error, failed, new_app, ok, Harness, Via};
use serde_json::json;

async fn harness(store: &Arc<dyn Store>, slug: &str, limits: Limits) -> Harness {
    let mut h = Harness::with_config_and_store(
        Via::Local,
        ExecutorConfig {
            limits,
            threads: 2,
            ..ExecutorConfig::default()
        },
        store,
    )
    .await;
    h.app = new_app(store, slug).await;
    h
}

both_backends!(
    a_document_is_created_read_found_updated_listed_and_deleted,
    |store| async move {
        let h = harness(&store, "shop", Limits::default()).await;
        let created = h
            .json(r#"docs::collection("users").create(#{ name: "Ada", age: 36, tier: "gold" })"#)
            .await;
        let id = created["id"].as_str().expect("an id").to_owned();
        assert_eq!(
            created["data"],
            json!({"name": "Ada", "age": 36, "tier": "gold"})
        );
        assert!(created["created_at"].is_i64(), "milliseconds: {created}");
        assert_eq!(created["created_at"], created["updated_at"]);

        let read = h
            .json(&format!(r#"docs::collection("users").get("{id}")"#))
            .await;
        assert_eq!(read, created, "get answers the envelope create answered");

        let answer = h
            .json(&format!(
                r#"
                let users = docs::collection("users");
                users.create(#{{ name: "Grace", age: 9, tier: "gold" }});
                users.create(#{{ name: "Linus", age: 10, tier: "silver" }});
                let updated = users.update("{id}", #{{ name: "Ada", age: 37, tier: "gold" }});
                #{{
                    updated: updated,
                    older: users.find(#{{ age: #{{ "$gt": 9 }}, "$sort": #{{ age: "desc" }} }}).map(|d| d.data.name),
                    gold: users.find(#{{ tier: "gold", "$sort": #{{ age: 1 }} }}).map(|d| d.data.name),
                    one: users.find_one(#{{ name: "Linus" }}).data.age,
                    none: users.find_one(#{{ name: "Nobody" }}),
                    page: users.list(#{{ limit: 2 }}),
                }}
                "#
            ))
            .await;
        assert_eq!(answer["updated"]["data"]["age"], 37);
        assert_eq!(
            answer["updated"]["created_at"], created["created_at"],
            "kept"
        );
        assert_eq!(
            answer["older"],
            json!(["Ada", "Linus"]),
            "10 > 9 as numbers"
        );
        assert_eq!(answer["gold"], json!(["Grace", "Ada"]));
        assert_eq!(answer["one"], 10);
        assert_eq!(answer["none"], json!(null));
        assert_eq!(answer["page"]["items"].as_array().map(Vec::len), Some(2));
        let cursor = answer["page"]["cursor"].as_str().expect("a next page");

        let rest = h
            .json(&format!(
                r#"docs::collection("users").list(#{{ cursor: "{cursor}" }}).items.map(|d| d.data.name)"#
            ))
            .await;
        assert_eq!(rest, json!(["Linus"]), "by id: creation order");

        let deleted = h
            .json(&format!(
                r#"let users = docs::collection("users");
                   [users.delete("{id}"), users.delete("{id}"), users.get("{id}")]"#
            ))
            .await;
        assert_eq!(
            deleted,
            json!([true, false, null]),
            "a run sees its own delete"
        );
        let after = h
            .json(&format!(
                r#"let users = docs::collection("users"); [users.delete("{id}"), users.find(#{{}}).len()]"#
            ))
            .await;
        assert_eq!(after, json!([false, 2]));
        Ok(())
    }
);

both_backends!(
    a_run_finds_and_lists_its_own_writes_in_the_filters_order,
    |store| async move {
        let h = harness(&store, "shop", Limits::default()).await;
        h.json(
            r#"let c = docs::collection("c");
               for n in [5, 1, 9] { c.create(#{ n: n }); } 0"#,
        )
        .await;
        let seen = h
            .json(
                r#"
                let c = docs::collection("c");
                let nine = c.find_one(#{ n: 9 });
                c.update(nine.id, #{ n: 0 });
                c.create(#{ n: 7 });
                let one = c.find_one(#{ n: 1 });
                c.delete(one.id);
                #{
                    sorted: c.find(#{ "$sort": #{ n: "asc" } }).map(|d| d.data.n),
                    top: c.find(#{ "$sort": #{ n: -1 }, "$limit": 2 }).map(|d| d.data.n),
                    listed: c.list().items.len(),
                }
                "#,
            )
            .await;
        assert_eq!(seen["sorted"], json!([0, 5, 7]));
        assert_eq!(seen["top"], json!([7, 5]));
        assert_eq!(seen["listed"], 3);
        let stored = h
            .json(r#"docs::collection("c").find(#{ "$sort": #{ n: 1 } }).map(|d| d.data.n)"#)
            .await;
        assert_eq!(stored, json!([0, 5, 7]), "and they were committed");
        Ok(())
    }
);

both_backends!(
    bad_filters_and_bad_documents_are_refused_with_what_to_write,
    |store| async move {
        let h = harness(&store, "shop", Limits::default()).await;
        for (source, needle) in [
            (
                r#"docs::collection("c").find(#{ "$or": [] })"#,
                "docs.find: '$or' is not supported",
            ),
            (
                r#"docs::collection("c").find(#{ a: #{ "$regex": "x" } })"#,
                "'$regex' is not supported",
            ),
            (
                r#"docs::collection("c").find(#{ "a.b.c.d.e.f": 1 })"#,
                "6 levels deep",
            ),
            (
                r#"docs::collection("c").find(#{ a: #{ "$gt": () } })"#,
                "null is only compared",
            ),
            (
                r#"docs::collection("c").find(#{ a: #{ "$in": 3 } })"#,
                "takes an array",
            ),
            (r#"docs::collection("c").find(#{ a: [1] })"#, "$in"),
            (
                r#"docs::collection("c").find_one(#{ "$limit": 0 })"#,
                "docs.find_one: $limit",
            ),
            (r#"docs::collection("c").find(42)"#, "a filter is a map"),
            (
                r#"docs::collection("c").create(42)"#,
                "docs.create: a document's data is a map",
            ),
            (r#"docs::collection("c").create([1])"#, "got an array"),
            (
                r#"docs::collection("c").get("nope")"#,
                "docs.get: 'nope' is not a valid document id",
            ),
            (
                r#"docs::collection("c").get(7)"#,
                "docs.get: a document id must be a string",
            ),
            (
                r#"docs::collection("c").update("0190a0a0-0000-7000-8000-000000000000", #{})"#,
                "docs.update: there is no document",
            ),
            (
                r#"docs::collection("c").list(#{ prefix: "a" })"#,
                "'prefix' is not an option: use limit or cursor",
            ),
            (
                r#"docs::collection(".bad")"#,
                "docs::collection: '.bad' is not a collection name",
            ),
            (
                r#"docs::collection("c").create(#{ x: 1.0 / 0.0 })"#,
                "cannot be stored",
            ),
        ] {
            let err = h.error(source).await;
            assert_error(&err, ExecErrorKind::Runtime, needle);
        }
        h.still_works().await;
        Ok(())
    }
);

both_backends!(
    a_document_at_the_size_limit_is_kept_and_one_over_it_is_refused,
    |store| async move {
        let limits = Limits {
            max_document_bytes: 4096,
            ..Limits::default()
        };
        let h = harness(&store, "shop", limits).await;
        // `#{ s: "…" }` is `{"s":"…"}`: 8 bytes around the string.
        let at_limit = h
            .json(r#"let s = "x"; s.pad(4088, "x"); docs::collection("c").create(#{ s: s }).data.s.len()"#)
            .await;
        assert_eq!(at_limit, 4088);
        let err = h
            .error(r#"let s = "x"; s.pad(4089, "x"); docs::collection("c").create(#{ s: s })"#)
            .await;
        assert_error(
            &err,
            ExecErrorKind::Runtime,
            "docs.create: the document is 4097 bytes as JSON; a document has at most 4096 bytes",
        );
        Ok(())
    }
);

both_backends!(
    a_reader_may_find_but_not_write_and_another_app_sees_nothing,
    |store| async move {
        let h = harness(&store, "shop", Limits::default()).await;
        let created = h
            .json(r#"docs::collection("users").create(#{ name: "Ada" })"#)
            .await;
        let id = created["id"].as_str().expect("an id");
        let reader = Authority::Caller {
            capabilities: [CapabilityKind::AppDocsRead].into_iter().collect(),
        };
        for (source, function) in [
            (
                r#"docs::collection("users").create(#{})"#.to_owned(),
                "docs.create",
            ),
            (
                format!(r#"docs::collection("users").delete("{id}")"#),
                "docs.delete",
            ),
            (
                format!(r#"docs::collection("users").update("{id}", #{{}})"#),
                "docs.update",
            ),
        ] {
            let request = ExecRequest {
                authority: reader.clone(),
                ..h.request(&source)
            };
            let err = failed(h.execute(request).await);
            assert_error(
                &err,
                ExecErrorKind::Runtime,
                &format!("{function}: this execution may not do that (it needs AppDocsWrite)"),
            );
        }
        let request = ExecRequest {
            authority: reader,
            ..h.request(r#"docs::collection("users").find(#{ name: "Ada" }).len()"#)
        };
        ok(h.execute(request).await);

        let other = harness(&store, "blog", Limits::default()).await;
        let seen = other
            .json(&format!(
                r#"let users = docs::collection("users");
                   [users.get("{id}"), users.find(#{{}}).len(), users.delete("{id}")]"#
            ))
            .await;
        assert_eq!(
            seen,
            json!([null, 0, false]),
            "the same name, another app's data"
        );
        let still = h
            .json(&format!(r#"docs::collection("users").get("{id}").data"#))
            .await;
        assert_eq!(still, json!({"name": "Ada"}));
        Ok(())
    }
);

both_backends!(
    a_find_bringing_more_than_the_execution_may_hold_is_refused,
    |store| async move {
        let limits = Limits {
            max_memory_bytes: 2 * 1024 * 1024,
            ..Limits::default()
        };
        let h = harness(&store, "shop", limits).await;
        for _ in 0..4 {
            ok(h.run(
                r#"let s = "x"; s.pad(600000, "x"); docs::collection("big").create(#{ s: s }); 0"#,
            )
            .await);
        }
        // Refused before the documents came in, as the memory limit: no `try/catch` takes it.
        let err = h
            .error(r#"try { docs::collection("big").find().len() } catch { "caught" }"#)
            .await;
        assert_error(
            &err,
            ExecErrorKind::LimitExceeded,
            "the script held more than its limit of 2 MiB of memory",
        );
        let one = h
            .json(r#"docs::collection("big").find(#{ "$limit": 1 }).len()"#)
            .await;
        assert_eq!(one, json!(1), "a smaller read goes through");
        Ok(())
    }
);
