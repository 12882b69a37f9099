//! Concurrent KV writes (on SQLite, the ones that arrive together share one commit).

use super::*;

// However the writes to one key are grouped into transactions, each must replace exactly the
// value before it, as if they had run one after another.
both_backends!(
    concurrent_sets_of_a_key_form_one_serial_history_and_fire_each_trigger_once,
    |store| async move {
        const WRITES: u64 = 200;
        const KEYS: u64 = 5;
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-count").await?;
        kv_trigger(&store, &handler, "counts", None, &[KvOp::Set]).await?;
        let writes = (0..WRITES)
            .map(|i| KvWriteCase::Set(shop.id, "counts", format!("k{}", i % KEYS), json!(i)))
            .collect();
        let answers = write_concurrently(&store, writes).await?;

        // The value each write replaced, by the value it wrote (values are unique).
        let mut replaced: HashMap<u64, Option<serde_json::Value>> = HashMap::new();
        for (i, answer) in (0..WRITES).zip(answers) {
            let written = answer.with_context(|| format!("write {i} succeeds"))?;
            ensure!(
                written.jobs_enqueued == 1,
                "write {i} fires the trigger once"
            );
            replaced.insert(i, written.prev_value);
        }
        for k in 0..KEYS {
            let name = format!("k{k}");
            // The write that replaced each value: `None` for the one that created the entry.
            let mut next: HashMap<Option<u64>, u64> = HashMap::new();
            for i in (0..WRITES).filter(|i| i % KEYS == k) {
                let prev = replaced[&i]
                    .as_ref()
                    .map(|prev| prev.as_u64().context("a number"));
                let prev = prev.transpose()?;
                if let Some(other) = next.insert(prev, i) {
                    bail!("writes {other} and {i} of {name} both replaced {prev:?}");
                }
            }
            let mut last = None;
            let mut walked = 0;
            while let Some(&i) = next.get(&last) {
                ensure!(walked < WRITES / KEYS, "the history of {name} loops");
                last = Some(i);
                walked += 1;
            }
            assert_eq!(
                walked,
                WRITES / KEYS,
                "every write of {name} is in one history that starts with the entry's creation"
            );
            let stored = store
                .kv_get(shop.id, &collection("counts"), &key(&name))
                .await?;
            assert_eq!(
                stored,
                last.map(|i| json!(i)),
                "{name} holds the last value of its history"
            );
        }

        let jobs = claim_all(&store).await?;
        assert_eq!(jobs.len(), WRITES as usize, "one job per write");
        let mut fired = HashSet::new();
        for job in &jobs {
            let event = kv_event(job)?;
            let i = event
                .value
                .as_ref()
                .and_then(serde_json::Value::as_u64)
                .context("a set's event carries its value")?;
            ensure!(fired.insert(i), "write {i} fired twice");
            assert_eq!(
                event.key,
                format!("k{}", i % KEYS),
                "write {i}'s event names its key"
            );
            assert_eq!(
                event.prev_value, replaced[&i],
                "write {i}'s event carries the value it replaced"
            );
        }
        Ok(())
    }
);

both_backends!(
    a_write_for_an_app_that_is_gone_fails_alone_among_concurrent_writes,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let gone = app(&store, "gone").await?;
        store.delete_app(gone.id).await?;
        let mut writes: Vec<KvWriteCase> = (0..30)
            .map(|i| KvWriteCase::Set(shop.id, "c", format!("k{i}"), json!(i)))
            .collect();
        writes.insert(
            15,
            KvWriteCase::Set(gone.id, "c", "k".to_owned(), json!("lost")),
        );
        let answers = write_concurrently(&store, writes).await?;

        for (i, answer) in answers.iter().enumerate() {
            if i == 15 {
                assert!(
                    matches!(answer, Err(StoreError::NotFound("app"))),
                    "the write for the app that is gone is refused: {answer:?}"
                );
            } else {
                assert!(
                    matches!(answer, Ok(written) if written.prev_value.is_none()),
                    "write {i} creates its entry: {answer:?}"
                );
            }
        }
        assert_eq!(
            all_keys(&store, shop.id, "c", None, 100).await?.len(),
            30,
            "every other write is stored"
        );
        assert_eq!(
            store.kv_get(gone.id, &collection("c"), &key("k")).await?,
            None,
            "nothing is stored for the app that is gone"
        );
        Ok(())
    }
);

both_backends!(
    concurrent_deletes_and_sets_each_see_the_state_before_them,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let handler = endpoint(&store, shop.id, "on-cart").await?;
        kv_trigger(&store, &handler, "carts", None, &KvOp::ALL).await?;
        let carts = collection("carts");
        for i in 0..10 {
            store
                .kv_set(
                    origin(shop.id, 0),
                    &carts,
                    &key(&format!("d{i}")),
                    &json!(i),
                )
                .await?;
        }
        store
            .kv_set(origin(shop.id, 0), &carts, &key("x"), &json!("before"))
            .await?;
        assert_eq!(claim_all(&store).await?.len(), 11, "the setup's own jobs");

        let mut writes = Vec::new();
        for i in 0..10 {
            writes.push(KvWriteCase::Delete(shop.id, "carts", format!("d{i}")));
            writes.push(KvWriteCase::Set(
                shop.id,
                "carts",
                format!("s{i}"),
                json!(i),
            ));
            writes.push(KvWriteCase::Delete(shop.id, "carts", format!("none{i}")));
        }
        writes.push(KvWriteCase::Set(
            shop.id,
            "carts",
            "x".to_owned(),
            json!("after"),
        ));
        writes.push(KvWriteCase::Delete(shop.id, "carts", "x".to_owned()));
        let answers = write_concurrently(&store, writes).await?;

        for (i, chunk) in answers[..30].chunks(3).enumerate() {
            let [deleted, set, missing] = chunk else {
                bail!("three writes per entry");
            };
            let deleted = deleted.as_ref().map_err(|err| anyhow::anyhow!("{err}"))?;
            assert_eq!(
                deleted.prev_value,
                Some(json!(i)),
                "d{i}'s delete removes its value"
            );
            assert_eq!(deleted.jobs_enqueued, 1, "d{i}'s delete fires");
            let set = set.as_ref().map_err(|err| anyhow::anyhow!("{err}"))?;
            assert_eq!(set.prev_value, None, "s{i}'s set creates it");
            assert_eq!(set.jobs_enqueued, 1, "s{i}'s set fires");
            let missing = missing.as_ref().map_err(|err| anyhow::anyhow!("{err}"))?;
            assert_eq!(
                (missing.prev_value.clone(), missing.jobs_enqueued),
                (None, 0),
                "deleting none{i}, which never existed, does nothing"
            );
        }
        let set_x = answers[30]
            .as_ref()
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        let delete_x = answers[31]
            .as_ref()
            .map_err(|err| anyhow::anyhow!("{err}"))?;
        let stored_x = store.kv_get(shop.id, &carts, &key("x")).await?;
        let set_first = (
            set_x.prev_value.clone(),
            delete_x.prev_value.clone(),
            stored_x.clone(),
        ) == (Some(json!("before")), Some(json!("after")), None);
        let delete_first = (
            delete_x.prev_value.clone(),
            set_x.prev_value.clone(),
            stored_x.clone(),
        ) == (Some(json!("before")), None, Some(json!("after")));
        assert!(
            set_first || delete_first,
            "the set and the delete of x ran in one order or the other: set saw {:?}, \
             delete saw {:?}, x holds {stored_x:?}",
            set_x.prev_value,
            delete_x.prev_value
        );

        for i in 0..10 {
            assert_eq!(
                store
                    .kv_get(shop.id, &carts, &key(&format!("d{i}")))
                    .await?,
                None,
                "d{i} is deleted"
            );
            assert_eq!(
                store
                    .kv_get(shop.id, &carts, &key(&format!("s{i}")))
                    .await?,
                Some(json!(i)),
                "s{i} is set"
            );
        }
        assert_eq!(
            claim_all(&store).await?.len(),
            22,
            "one job per delete and set that wrote: 10 + 10 + x's two"
        );
        Ok(())
    }
);
