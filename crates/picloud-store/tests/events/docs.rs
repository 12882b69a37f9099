//! The document store (#16): runs' commits of documents, the filter language on both backends
//! held to one model (`picloud_core::docs::Query`), declared indexes, docs triggers, isolation.

use picloud_core::docs::{FieldPath, Query, StoredDoc, DOC_MAX_BYTES};
use picloud_core::events::DocsEvent;
use picloud_core::tx::{DocEffects, DocRead, DocWrite, Effects, QueryRead, Seen};
use picloud_core::{DocsOp, DocumentId, Timestamp};

use super::*;

fn stored(data: serde_json::Value) -> StoredDoc {
    StoredDoc {
        data,
        created_at: Timestamp::from_millis(1_000),
        updated_at: Timestamp::from_millis(2_000),
    }
}

fn doc_write(name: &str, id: DocumentId, data: Option<serde_json::Value>) -> DocWrite {
    DocWrite {
        collection: collection(name),
        key: id,
        value: data.map(stored),
    }
}

fn doc_run(app_id: AppId, docs: DocEffects) -> RunCommit {
    RunCommit {
        origin: origin(app_id, 0),
        effects: Effects {
            docs: Box::new(docs),
            ..Effects::default()
        },
        finishes: None,
    }
}

/// Commits writes of documents without reads; they must commit.
async fn write_docs(
    store: &Arc<dyn Store>,
    app_id: AppId,
    writes: Vec<DocWrite>,
) -> anyhow::Result<u32> {
    let verdict = store
        .commit_run(doc_run(
            app_id,
            DocEffects {
                writes,
                ..DocEffects::default()
            },
        ))
        .await?;
    match verdict {
        RunVerdict::Committed { trigger_jobs } => Ok(trigger_jobs),
        other => bail!("the writes were not committed: {other:?}"),
    }
}

/// Creates one document; answers its id.
async fn create(
    store: &Arc<dyn Store>,
    app_id: AppId,
    name: &str,
    data: serde_json::Value,
) -> anyhow::Result<DocumentId> {
    let id = DocumentId::new();
    write_docs(store, app_id, vec![doc_write(name, id, Some(data))]).await?;
    Ok(id)
}

/// Replaces the data of the document `id` of "users".
async fn update(
    store: &Arc<dyn Store>,
    app_id: AppId,
    id: DocumentId,
    data: serde_json::Value,
) -> anyhow::Result<u32> {
    write_docs(store, app_id, vec![doc_write("users", id, Some(data))]).await
}

fn query(filter: serde_json::Value) -> Query {
    Query::parse(&filter).expect("a valid filter")
}

/// The ids `query` finds in the store.
async fn found(
    store: &Arc<dyn Store>,
    app_id: AppId,
    name: &str,
    query: &Query,
) -> anyhow::Result<Vec<String>> {
    Ok(store
        .doc_find(app_id, &collection(name), query, query.limit, usize::MAX)
        .await?
        .docs
        .into_iter()
        .map(|(id, _, _)| id.to_string())
        .collect())
}

/// The ids `query` finds among `docs` by the model: `Query::matches` and `Query::order`.
fn model(docs: &[(String, serde_json::Value)], query: &Query) -> Vec<String> {
    let mut matched: Vec<&(String, serde_json::Value)> = docs
        .iter()
        .filter(|(_, data)| query.matches(data))
        .collect();
    matched.sort_by(|a, b| query.order((&a.0, &a.1), (&b.0, &b.1)));
    matched
        .into_iter()
        .take(query.limit as usize)
        .map(|(id, _)| id.clone())
        .collect()
}

/// Every filter of `filters` finds in the collection `name` (holding `docs`) what the model
/// finds, in the model's order.
async fn finds_as_the_model(
    store: &Arc<dyn Store>,
    app_id: AppId,
    name: &str,
    docs: &[(String, serde_json::Value)],
    filters: impl Iterator<Item = serde_json::Value>,
) -> anyhow::Result<()> {
    for (case, filter) in filters.enumerate() {
        let query = query(filter.clone());
        let got = found(store, app_id, name, &query).await?;
        let want = model(docs, &query);
        ensure!(
            got == want,
            "case {case}, {filter}: the store found {got:?}, the model {want:?}"
        );
    }
    Ok(())
}

/// Stores every data of `values` as a document of `name`; answers them with their ids.
async fn seed(
    store: &Arc<dyn Store>,
    app_id: AppId,
    name: &str,
    values: Vec<serde_json::Value>,
) -> anyhow::Result<Vec<(String, serde_json::Value)>> {
    let docs: Vec<(DocumentId, serde_json::Value)> = values
        .into_iter()
        .map(|data| (DocumentId::new(), data))
        .collect();
    seed_as(store, app_id, name, &docs).await?;
    Ok(docs
        .into_iter()
        .map(|(id, data)| (id.to_string(), data))
        .collect())
}

/// Stores each document of `docs` under its id in `name`.
async fn seed_as(
    store: &Arc<dyn Store>,
    app_id: AppId,
    name: &str,
    docs: &[(DocumentId, serde_json::Value)],
) -> anyhow::Result<()> {
    let writes = docs
        .iter()
        .map(|(id, data)| doc_write(name, *id, Some(data.clone())))
        .collect();
    write_docs(store, app_id, writes).await?;
    Ok(())
}

/// Values of every type, with the numbers and strings that text comparison gets wrong.
fn every_kind_of_value() -> Vec<serde_json::Value> {
    let mut values = vec![
        json!({"v": 9}),
        json!({"v": 10}),
        json!({"v": 2.5}),
        json!({"v": -1}),
        json!({"v": -0.5}),
        json!({"v": 0}),
        json!({"v": 1e20}),
        json!({"v": 100}),
        json!({"v": "10"}),
        json!({"v": "9"}),
        json!({"v": "b"}),
        json!({"v": "B"}),
        json!({"v": "ä"}),
        json!({"v": ""}),
        json!({"v": true}),
        json!({"v": false}),
        json!({"v": null}),
        json!({"w": 1}),
        json!({"v": [1, 2]}),
        json!({"v": {"a": 1}}),
        json!({"v": 10, "n": {"a": {"b": {"c": {"d": 5}}}}}),
        json!({"v": "x", "n": {"a": {"b": {"c": {"d": "5"}}}}}),
        json!({"n": {"a": 1}}),
    ];
    values.push(json!({"user": {"email": "ada@example.com", "tier": "gold"}}));
    values
}

both_backends!(
    every_operator_finds_what_the_model_finds_on_values_of_every_type,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let docs = seed(&store, shop.id, "things", every_kind_of_value()).await?;
        let filters = [
            json!({"v": {"$gt": 9}}),
            json!({"v": {"$gte": 9}}),
            json!({"v": {"$lt": 10}}),
            json!({"v": {"$lte": 2.5}}),
            json!({"v": {"$gt": -1, "$lt": 10}}),
            json!({"v": 10}),
            json!({"v": 10.0}),
            json!({"v": "10"}),
            json!({"v": {"$gt": "9"}}),
            json!({"v": {"$lt": "b"}}),
            json!({"v": {"$gte": ""}}),
            json!({"v": true}),
            json!({"v": {"$gt": false}}),
            json!({"v": {"$lte": true}}),
            json!({"v": null}),
            json!({"v": {"$eq": null}}),
            json!({"v": {"$ne": null}}),
            json!({"v": {"$ne": 10}}),
            json!({"v": {"$ne": "b"}}),
            json!({"v": {"$in": [9, "9", null, true]}}),
            json!({"v": {"$in": []}}),
            json!({"v": {"$in": [2.5, "ä"]}}),
            json!({"n.a.b.c.d": 5}),
            json!({"n.a.b.c.d": {"$gte": "5"}}),
            json!({"n.a": {"$ne": null}}),
            json!({"n.a": 1}),
            json!({"user.email": "ada@example.com", "user.tier": "gold"}),
            json!({"$sort": {"v": "asc"}}),
            json!({"$sort": {"v": "desc"}}),
            json!({"$sort": {"v": 1}, "$limit": 3}),
            json!({"$sort": {"v": -1}, "$limit": 4}),
            json!({"v": {"$gt": 0}, "$sort": {"v": -1}}),
            json!({"v": {"$ne": null}, "$sort": {"n.a.b.c.d": "asc"}, "$limit": 5}),
            json!({"$limit": 2}),
            json!({}),
        ];
        finds_as_the_model(&store, shop.id, "things", &docs, filters.into_iter()).await
    }
);

/// A small deterministic generator (xorshift64*), so a failing case can be run again.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

const STRINGS: [&str; 8] = ["", "a", "aa", "b", "B", "10", "9", "é"];

fn random_scalar(rng: &mut Rng) -> serde_json::Value {
    match rng.below(6) {
        0 => json!(rng.below(21) as i64 - 10),
        1 => json!((rng.below(41) as f64 - 20.0) / 4.0),
        2 => json!(rng.pick(&STRINGS)),
        3 => json!(rng.below(2) == 0),
        4 => serde_json::Value::Null,
        _ => json!(rng.below(3) * 100),
    }
}

fn random_value(rng: &mut Rng) -> serde_json::Value {
    match rng.below(10) {
        0 => json!([random_scalar(rng)]),
        1 => json!({"x": random_scalar(rng)}),
        _ => random_scalar(rng),
    }
}

fn random_doc(rng: &mut Rng) -> serde_json::Value {
    let mut data = serde_json::Map::new();
    for field in ["a", "d"] {
        if rng.below(5) > 0 {
            data.insert(field.to_owned(), random_value(rng));
        }
    }
    if rng.below(3) > 0 {
        data.insert("b".to_owned(), json!({"c": random_value(rng)}));
    }
    serde_json::Value::Object(data)
}

const PATHS: [&str; 4] = ["a", "b.c", "d", "b"];
const OPERATORS: [&str; 7] = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in"];

fn random_filter(rng: &mut Rng) -> serde_json::Value {
    let mut filter = serde_json::Map::new();
    for _ in 0..rng.below(3) {
        let path = *rng.pick(&PATHS);
        let operator = *rng.pick(&OPERATORS);
        let operand = match operator {
            "$in" => json!((0..rng.below(4))
                .map(|_| random_scalar(rng))
                .collect::<Vec<_>>()),
            "$eq" | "$ne" => random_scalar(rng),
            _ => loop {
                let scalar = random_scalar(rng);
                if !scalar.is_null() {
                    break scalar;
                }
            },
        };
        let tests = filter.entry(path.to_owned()).or_insert_with(|| json!({}));
        tests[operator] = operand;
    }
    if rng.below(2) == 0 {
        let direction = if rng.below(2) == 0 { "asc" } else { "desc" };
        filter.insert("$sort".to_owned(), json!({ *rng.pick(&PATHS): direction }));
    }
    if rng.below(2) == 0 {
        filter.insert("$limit".to_owned(), json!(1 + rng.below(25)));
    }
    serde_json::Value::Object(filter)
}

both_backends!(
    generated_filters_find_what_the_model_finds,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let values = (0..200).map(|_| random_doc(&mut rng)).collect();
        let docs = seed(&store, shop.id, "random", values).await?;
        let filters: Vec<_> = (0..400).map(|_| random_filter(&mut rng)).collect();
        finds_as_the_model(
            &store,
            shop.id,
            "random",
            &docs,
            filters.clone().into_iter(),
        )
        .await?;
        // With an index declared on every path the same filters find the same documents.
        for path in PATHS {
            store
                .declare_doc_index(shop.id, &collection("random"), &FieldPath::parse(path)?)
                .await?;
        }
        finds_as_the_model(&store, shop.id, "random", &docs, filters.into_iter()).await
    }
);

// The issue's property, stated directly: the same documents (same ids) and the same generated
// filters give the same documents in the same order on SQLite and on PostgreSQL. (Each backend
// is also held to the model above; this one needs both at once, so PostgreSQL must be there.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_and_postgres_find_the_same_documents_in_the_same_order() {
    let Some((sqlite, _sqlite_db)) = fresh_store(Backend::Sqlite).await else {
        return;
    };
    let Some((postgres, _postgres_db)) = fresh_store(Backend::Postgres).await else {
        return;
    };
    let mut rng = Rng(0x0DDB_1A5E_5BAD_5EED);
    let docs: Vec<(DocumentId, serde_json::Value)> = (0..300)
        .map(|_| (DocumentId::new(), random_doc(&mut rng)))
        .collect();
    let mut apps = Vec::new();
    for store in [&sqlite, &postgres] {
        let shop = app(store, "shop").await.expect("an app");
        seed_as(store, shop.id, "same", &docs)
            .await
            .expect("seeded");
        apps.push(shop.id);
    }
    for case in 0..500 {
        let filter = random_filter(&mut rng);
        let query = query(filter.clone());
        let on_sqlite = found(&sqlite, apps[0], "same", &query)
            .await
            .expect("sqlite");
        let on_postgres = found(&postgres, apps[1], "same", &query)
            .await
            .expect("postgres");
        assert_eq!(on_sqlite, on_postgres, "case {case}, {filter}");
    }
}

both_backends!(
    a_document_is_created_read_listed_updated_and_deleted,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let users = collection("users");
        let first = create(&store, shop.id, "users", json!({"name": "Ada"})).await?;
        let second = create(&store, shop.id, "users", json!({"name": "Grace"})).await?;
        let (doc, version) = store
            .doc_read(shop.id, &users, first)
            .await?
            .context("the document")?;
        assert_eq!(
            doc,
            stored(json!({"name": "Ada"})),
            "data and times as written"
        );
        let page = store
            .doc_page(shop.id, &users, &list(None, 1, None), usize::MAX)
            .await?;
        assert_eq!(page.items.len(), 1);
        assert_eq!(page.items[0].0, first.to_string(), "by id: creation order");
        let rest = store
            .doc_page(
                shop.id,
                &users,
                &list(None, 10, page.next_cursor),
                usize::MAX,
            )
            .await?;
        assert_eq!(rest.items[0].0, second.to_string());
        assert!(rest.next_cursor.is_none(), "the last page");

        write_docs(
            &store,
            shop.id,
            vec![doc_write("users", first, Some(json!({"name": "Ada L."})))],
        )
        .await?;
        let (doc, updated) = store
            .doc_read(shop.id, &users, first)
            .await?
            .context("the document")?;
        assert_eq!(doc.data, json!({"name": "Ada L."}));
        assert!(updated > version, "a commit moves the version on");

        write_docs(&store, shop.id, vec![doc_write("users", first, None)]).await?;
        assert!(store.doc_read(shop.id, &users, first).await?.is_none());
        let usage = store.app_usage(shop.id).await?.context("usage")?;
        assert!(usage.kv_bytes > 0, "documents count against stored bytes");
        write_docs(&store, shop.id, vec![doc_write("users", second, None)]).await?;
        let usage = store.app_usage(shop.id).await?.context("usage")?;
        assert_eq!(usage.kv_bytes, 0, "deleting them frees their bytes");
        Ok(())
    }
);

both_backends!(
    the_same_collection_name_in_two_apps_holds_two_sets_of_documents,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        let users = collection("users");
        let id = create(&store, shop.id, "users", json!({"name": "Ada"})).await?;
        assert!(store.doc_read(blog.id, &users, id).await?.is_none());
        assert!(
            found(&store, blog.id, "users", &query(json!({"name": "Ada"})))
                .await?
                .is_empty()
        );
        let page = store
            .doc_page(blog.id, &users, &list(None, 10, None), usize::MAX)
            .await?;
        assert!(page.items.is_empty(), "another app's collection is empty");
        assert_eq!(
            found(&store, shop.id, "users", &query(json!({"name": "Ada"}))).await?,
            [id.to_string()]
        );
        Ok(())
    }
);

both_backends!(
    a_document_over_the_largest_size_is_refused_and_one_at_it_is_kept,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let quotas_room = "x".repeat(DOC_MAX_BYTES - r#"{"s":""}"#.len());
        let at_limit = json!({ "s": quotas_room });
        let over = json!({ "s": format!("{quotas_room}x") });
        let err = store
            .commit_run(doc_run(
                shop.id,
                DocEffects {
                    writes: vec![doc_write("big", DocumentId::new(), Some(over))],
                    ..DocEffects::default()
                },
            ))
            .await
            .expect_err("over the limit");
        assert!(
            matches!(&err, StoreError::InvalidInput(message) if message.contains("at most")),
            "{err}"
        );
        let verdict = store
            .commit_run(doc_run(
                shop.id,
                DocEffects {
                    writes: vec![doc_write("big", DocumentId::new(), Some(at_limit))],
                    ..DocEffects::default()
                },
            ))
            .await;
        // The default quota of stored bytes may be smaller than the largest document.
        match verdict {
            Ok(
                RunVerdict::Committed { .. } | RunVerdict::Refused(OverLimit::StoredBytes { .. }),
            ) => {}
            other => bail!("a document at the limit is accepted or over the quota: {other:?}"),
        }
        Ok(())
    }
);

both_backends!(
    a_run_whose_document_or_find_changed_meanwhile_conflicts,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let users = collection("users");
        let id = create(&store, shop.id, "users", json!({"tier": "gold", "n": 1})).await?;
        let (_, version) = store.doc_read(shop.id, &users, id).await?.context("doc")?;
        let read = DocRead {
            collection: users.clone(),
            key: id,
            seen: Seen::At(version),
        };
        let gold = query(json!({"tier": "gold"}));
        let found_then = store
            .doc_find(shop.id, &users, &gold, 10, usize::MAX)
            .await?;
        let query_read = QueryRead {
            collection: users.clone(),
            query: gold.clone(),
            fetch: 10,
            collection_version: found_then.collection_version,
            results: found_then.docs.iter().map(|(id, _, v)| (*id, *v)).collect(),
        };
        // While the collection is as the find saw it, its version proves the find: the commit
        // does not run the query again (a record of a find that found nothing still commits).
        let unchanged = QueryRead {
            results: Vec::new(),
            ..query_read.clone()
        };
        let verdict = store
            .commit_run(doc_run(
                shop.id,
                DocEffects {
                    queries: vec![unchanged.clone()],
                    writes: vec![doc_write(
                        "audit",
                        DocumentId::new(),
                        Some(json!({"ok": 0})),
                    )],
                    ..DocEffects::default()
                },
            ))
            .await?;
        assert!(
            matches!(verdict, RunVerdict::Committed { .. }),
            "{verdict:?}"
        );
        // A document that does not match changes the collection's version; the query runs again
        // and finds what the find saw.
        create(&store, shop.id, "users", json!({"tier": "silver"})).await?;
        let verdict = store
            .commit_run(doc_run(
                shop.id,
                DocEffects {
                    queries: vec![query_read.clone()],
                    writes: vec![doc_write(
                        "audit",
                        DocumentId::new(),
                        Some(json!({"ok": 1})),
                    )],
                    ..DocEffects::default()
                },
            ))
            .await?;
        assert!(
            matches!(verdict, RunVerdict::Committed { .. }),
            "{verdict:?}"
        );
        // One that matches does.
        create(&store, shop.id, "users", json!({"tier": "gold"})).await?;
        let verdict = store
            .commit_run(doc_run(
                shop.id,
                DocEffects {
                    queries: vec![query_read],
                    writes: vec![doc_write(
                        "audit",
                        DocumentId::new(),
                        Some(json!({"ok": 2})),
                    )],
                    ..DocEffects::default()
                },
            ))
            .await?;
        assert_eq!(verdict, RunVerdict::Conflict, "a new match conflicts");
        // And a document updated since it was read.
        update(&store, shop.id, id, json!({"tier": "gold", "n": 2})).await?;
        let verdict = store
            .commit_run(doc_run(
                shop.id,
                DocEffects {
                    reads: vec![read],
                    writes: vec![doc_write(
                        "users",
                        id,
                        Some(json!({"tier": "gold", "n": 99})),
                    )],
                    ..DocEffects::default()
                },
            ))
            .await?;
        assert_eq!(verdict, RunVerdict::Conflict);
        let (doc, _) = store.doc_read(shop.id, &users, id).await?.context("doc")?;
        assert_eq!(doc.data["n"], 2, "the conflicting run wrote nothing");
        Ok(())
    }
);

fn docs_event(job: &ClaimedJob) -> anyhow::Result<&DocsEvent> {
    match &job.payload {
        JobPayload::Trigger {
            event: TriggerEvent::Docs { docs },
        } => Ok(docs),
        other => bail!("expected a docs trigger event, got {other:?}"),
    }
}

async fn docs_trigger(
    store: &Arc<dyn Store>,
    script: &Script,
    name: &str,
    ops: &[DocsOp],
    fields: Option<&[&str]>,
) -> anyhow::Result<picloud_core::Trigger> {
    Ok(store
        .create_trigger(&NewTrigger {
            app_id: script.app_id,
            script_id: script.id,
            detail: TriggerDetail::Docs {
                collection: collection(name),
                ops: ops.to_vec(),
                fields: fields.map(|fields| {
                    fields
                        .iter()
                        .map(|f| FieldPath::parse(f).expect("a path"))
                        .collect()
                }),
            },
        })
        .await?)
}

both_backends!(
    docs_triggers_carry_prev_data_and_what_changed_and_filter_by_field,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let every = endpoint(&store, shop.id, "on-user").await?;
        let on_email = endpoint(&store, shop.id, "on-email").await?;
        let trigger = docs_trigger(&store, &every, "users", &DocsOp::ALL, None).await?;
        docs_trigger(
            &store,
            &on_email,
            "users",
            &[DocsOp::Update],
            Some(&["email"]),
        )
        .await?;
        assert!(
            matches!(&trigger.detail, TriggerDetail::Docs { ops, fields: None, .. } if ops.len() == 3),
            "{trigger:?}"
        );
        let listed = store.list_triggers(shop.id, &page(10, None)).await?;
        assert_eq!(listed.items.len(), 2);
        assert!(listed.items.iter().any(|t| matches!(&t.detail,
            TriggerDetail::Docs { fields: Some(fields), .. } if fields[0].to_string() == "email")));

        let id = create(
            &store,
            shop.id,
            "users",
            json!({"email": "a@x", "visits": 1}),
        )
        .await?;
        let jobs = claim(&store, "worker", 10).await?;
        assert_eq!(jobs.len(), 1, "a create fires the trigger of every op only");
        let event = docs_event(&jobs[0])?;
        assert_eq!((event.op, event.id), (DocsOp::Create, id));
        assert_eq!(event.prev_data, None, "nothing before a create");
        assert_eq!(event.changed, ["email", "visits"]);

        let fired = update(&store, shop.id, id, json!({"email": "a@x", "visits": 2})).await?;
        assert_eq!(fired, 1, "the email trigger does not fire on visits");
        let jobs = claim(&store, "worker", 10).await?;
        let event = docs_event(&jobs[0])?;
        assert_eq!(event.op, DocsOp::Update);
        assert_eq!(event.prev_data, Some(json!({"email": "a@x", "visits": 1})));
        assert_eq!(event.data, Some(json!({"email": "a@x", "visits": 2})));
        assert_eq!(event.changed, ["visits"]);

        let fired = update(&store, shop.id, id, json!({"email": "b@x", "visits": 2})).await?;
        assert_eq!(fired, 2, "both fire when the email changes");
        let jobs = claim(&store, "worker", 10).await?;
        let scripts: HashSet<ScriptId> = jobs.iter().map(|job| job.script_id).collect();
        assert_eq!(scripts, HashSet::from([every.id, on_email.id]));

        write_docs(&store, shop.id, vec![doc_write("users", id, None)]).await?;
        let jobs = claim(&store, "worker", 10).await?;
        assert_eq!(jobs.len(), 1);
        let event = docs_event(&jobs[0])?;
        assert_eq!((event.op, event.data.as_ref()), (DocsOp::Delete, None));
        assert_eq!(event.prev_data, Some(json!({"email": "b@x", "visits": 2})));
        Ok(())
    }
);

both_backends!(
    an_index_is_declared_once_per_path_and_listed,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        let users = collection("users");
        let email = FieldPath::parse("user.email")?;
        let first = store.declare_doc_index(shop.id, &users, &email).await?;
        let again = store.declare_doc_index(shop.id, &users, &email).await?;
        assert_eq!(first, again, "declaring it again changes nothing");
        store.declare_doc_index(blog.id, &users, &email).await?;
        let listed = store.doc_indexes(shop.id, &users).await?;
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].path, email);
        assert!(store
            .doc_indexes(shop.id, &collection("other"))
            .await?
            .is_empty());
        // An app declares a bounded number of indexes; declaring one it has is not one more.
        for n in 1..picloud_store::MAX_DOC_INDEXES_PER_APP {
            store
                .declare_doc_index(
                    blog.id,
                    &collection(&format!("c{}", n % 3)),
                    &FieldPath::parse(&format!("f{n}"))?,
                )
                .await?;
        }
        store.declare_doc_index(blog.id, &users, &email).await?;
        let refused = store
            .declare_doc_index(blog.id, &users, &FieldPath::parse("one.more")?)
            .await
            .expect_err("past the bound");
        assert!(
            matches!(&refused, StoreError::Conflict(m) if m.contains("16 document indexes")),
            "{refused}"
        );
        assert!(store.drop_doc_index(blog.id, &users, &email).await?);
        assert!(
            !store.drop_doc_index(blog.id, &users, &email).await?,
            "withdrawn once"
        );
        assert_eq!(
            store.doc_indexes(shop.id, &users).await?.len(),
            1,
            "shop's stays"
        );
        let id = create(&store, shop.id, "users", json!({"user": {"email": "a@x"}})).await?;
        assert_eq!(
            found(
                &store,
                shop.id,
                "users",
                &query(json!({"user.email": "a@x"}))
            )
            .await?,
            [id.to_string()],
            "the indexed path finds the document"
        );
        Ok(())
    }
);

// Hostile reads (#16): a page or a find brings at most `max_bytes` into the process; past it,
// the read is refused with what to do instead, whatever the app stored.
both_backends!(
    a_page_or_find_holding_more_than_its_bound_is_refused,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let big = "x".repeat(10_000);
        seed(
            &store,
            shop.id,
            "big",
            (0..5).map(|n| json!({"n": n, "s": big})).collect(),
        )
        .await?;
        let all = query(json!({}));
        let too_much = store
            .doc_find(shop.id, &collection("big"), &all, 100, 30_000)
            .await
            .expect_err("five documents of 10 kB are more than 30 kB");
        assert!(
            too_much.to_string().contains("more than 30000 bytes"),
            "{too_much}"
        );
        let two = query(json!({"$limit": 2}));
        assert_eq!(
            store
                .doc_find(shop.id, &collection("big"), &two, 2, 30_000)
                .await?
                .docs
                .len(),
            2,
            "two fit"
        );
        assert!(store
            .doc_page(shop.id, &collection("big"), &list(None, 100, None), 30_000)
            .await
            .is_err());
        for n in 0..5 {
            store
                .kv_set(
                    origin(shop.id, 0),
                    &collection("big"),
                    &key(&format!("k{n}")),
                    &json!(big),
                )
                .await?;
        }
        let err = store
            .kv_page(shop.id, &collection("big"), &list(None, 100, None), 30_000)
            .await
            .expect_err("the KV page too");
        assert!(matches!(err, StoreError::ReadTooLarge(30_000)), "{err}");
        Ok(())
    }
);
