//! KV.

use super::*;

both_backends!(
    a_kv_value_round_trips_with_nested_json,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let users = collection("users");
        let value = json!({
            "name": "Ada",
            "tags": ["a", "b", {"deep": [1, 2.5, null, true]}],
            "address": {"city": "Zürich", "zip": "8000"},
            "big": 9_007_199_254_740_993_i64,
        });
        let written = store
            .kv_set(origin(shop.id, 0), &users, &key("u:1"), &value)
            .await?;
        assert_eq!(written.prev_value, None, "a new entry had no value");
        assert_eq!(written.jobs_enqueued, 0, "no trigger, no job");
        assert_eq!(
            store.kv_get(shop.id, &users, &key("u:1")).await?,
            Some(value.clone()),
            "the value reads back as it was written"
        );

        let replaced = store
            .kv_set(origin(shop.id, 0), &users, &key("u:1"), &json!("plain"))
            .await?;
        assert_eq!(
            replaced.prev_value,
            Some(value),
            "a set reports the value it replaced"
        );
        assert_eq!(
            store.kv_get(shop.id, &users, &key("u:1")).await?,
            Some(json!("plain")),
            "a string is a value too"
        );
        for scalar in [json!(null), json!(0), json!(false), json!([])] {
            store
                .kv_set(origin(shop.id, 0), &users, &key("s"), &scalar)
                .await?;
            assert_eq!(
                store.kv_get(shop.id, &users, &key("s")).await?,
                Some(scalar.clone()),
                "{scalar} round trips"
            );
        }
        assert_eq!(
            store.kv_get(shop.id, &users, &key("nobody")).await?,
            None,
            "a missing key reads as None"
        );
        Ok(())
    }
);

both_backends!(
    has_and_delete_report_whether_the_entry_was_there,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let carts = collection("carts");
        assert!(
            !store.kv_has(shop.id, &carts, &key("c1")).await?,
            "nothing there yet"
        );
        store
            .kv_set(origin(shop.id, 0), &carts, &key("c1"), &json!({"items": 3}))
            .await?;
        assert!(
            store.kv_has(shop.id, &carts, &key("c1")).await?,
            "there after a set"
        );
        let deleted = store
            .kv_delete(origin(shop.id, 0), &carts, &key("c1"))
            .await?;
        assert_eq!(
            deleted.prev_value,
            Some(json!({"items": 3})),
            "a delete returns the value it removed"
        );
        assert!(
            !store.kv_has(shop.id, &carts, &key("c1")).await?,
            "gone after the delete"
        );
        let again = store
            .kv_delete(origin(shop.id, 0), &carts, &key("c1"))
            .await?;
        assert_eq!(
            again.prev_value, None,
            "deleting a missing key finds nothing"
        );
        assert_eq!(again.jobs_enqueued, 0, "and enqueues nothing");
        Ok(())
    }
);

// Keys sort by their bytes on both backends, whatever PostgreSQL's default collation.
both_backends!(
    keys_are_listed_in_byte_order_page_by_page,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let words = collection("words");
        for (i, word) in ["é", "b", "a", "B", "A1", "a b", "ab", "Z"]
            .iter()
            .enumerate()
        {
            store
                .kv_set(origin(shop.id, 0), &words, &key(word), &json!(i))
                .await?;
        }
        let expected = ["A1", "B", "Z", "a", "a b", "ab", "b", "é"];
        for limit in [1, 3, 100] {
            assert_eq!(
                all_keys(&store, shop.id, "words", None, limit).await?,
                expected,
                "bytewise order, pages of {limit}"
            );
        }
        let first = store.kv_list(shop.id, &words, &list(None, 3, None)).await?;
        assert_eq!(
            first.items[0],
            ("A1".to_owned(), json!(4)),
            "items carry their values"
        );
        assert!(first.next_cursor.is_some(), "more pages follow");
        let last = store.kv_list(shop.id, &words, &list(None, 8, None)).await?;
        assert_eq!(last.items.len(), 8, "one page holds everything");
        assert_eq!(last.next_cursor, None, "no cursor after the last page");
        Ok(())
    }
);

// A prefix is a range of keys, not a LIKE pattern: `%` and `_` in it match only themselves.
both_backends!(
    a_prefix_with_like_wildcards_matches_only_itself,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let files = collection("files");
        for name in [
            "a%",
            "a%b1",
            "a%b2",
            "axb",
            "a_c",
            "abc",
            "a%%",
            "b%",
            "a",
            "a\u{10FFFF}x",
        ] {
            store
                .kv_set(origin(shop.id, 0), &files, &key(name), &json!(name))
                .await?;
        }
        assert_eq!(
            all_keys(&store, shop.id, "files", Some("a%"), 2).await?,
            ["a%", "a%%", "a%b1", "a%b2"],
            "'%' is a character of the prefix"
        );
        assert_eq!(
            all_keys(&store, shop.id, "files", Some("a_"), 2).await?,
            ["a_c"],
            "'_' is a character of the prefix"
        );
        assert_eq!(
            all_keys(&store, shop.id, "files", Some("a\u{10FFFF}"), 2).await?,
            ["a\u{10FFFF}x"],
            "a prefix ending in the last code point"
        );
        assert_eq!(
            all_keys(&store, shop.id, "files", Some(""), 100)
                .await?
                .len(),
            10,
            "an empty prefix lists everything"
        );
        assert!(
            all_keys(&store, shop.id, "files", Some("zz"), 10)
                .await?
                .is_empty(),
            "a prefix nothing starts with lists nothing"
        );
        Ok(())
    }
);

both_backends!(a_list_limit_of_zero_means_one_hundred, |store| async move {
    let shop = app(&store, "shop").await?;
    let many = collection("many");
    for i in 0..105 {
        store
            .kv_set(
                origin(shop.id, 0),
                &many,
                &key(&format!("k{i:03}")),
                &json!(i),
            )
            .await?;
    }
    let first = store.kv_list(shop.id, &many, &list(None, 0, None)).await?;
    assert_eq!(first.items.len(), 100, "the default page holds 100");
    let rest = store
        .kv_list(shop.id, &many, &list(None, 0, first.next_cursor))
        .await?;
    assert_eq!(rest.items.len(), 5, "the rest on the next page");
    assert_eq!(
        rest.items[0].0, "k100",
        "the next page starts after the cursor"
    );
    assert_eq!(rest.next_cursor, None, "and it is the last");
    Ok(())
});

both_backends!(
    a_cursor_or_prefix_the_store_cannot_use_is_invalid_input,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let coll = collection("c");
        for cursor in ["not base64!", "bm90LWFuLWlk\u{1}", ""] {
            let result = store
                .kv_list(shop.id, &coll, &list(None, 10, Some(cursor.to_owned())))
                .await;
            let Err(StoreError::InvalidInput(message)) = result else {
                bail!("expected the cursor {cursor:?} to be refused, got {result:?}");
            };
            assert_eq!(
                message, "the cursor is not one this server issued",
                "the message is a sentence"
            );
        }
        let result = store
            .kv_list(shop.id, &coll, &list(Some("a\nb"), 10, None))
            .await;
        assert!(
            matches!(&result, Err(StoreError::InvalidInput(m)) if m.contains("control character")),
            "a prefix no key can have is refused with the reason: {result:?}"
        );
        Ok(())
    }
);

both_backends!(
    a_value_too_large_is_refused_and_nothing_is_stored,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blobs = collection("blobs");
        let big = json!("x".repeat(KV_MAX_VALUE_BYTES));
        let result = store
            .kv_set(origin(shop.id, 0), &blobs, &key("big"), &big)
            .await;
        let Err(StoreError::InvalidInput(message)) = result else {
            bail!("expected a too large value to be refused, got {result:?}");
        };
        assert!(
            message.contains("bytes as JSON") && message.contains("at most"),
            "the message says the size and the limit: {message}"
        );
        assert!(
            !store.kv_has(shop.id, &blobs, &key("big")).await?,
            "nothing was stored"
        );
        let just_fits = json!("x".repeat(KV_MAX_VALUE_BYTES - 2));
        store
            .kv_set(origin(shop.id, 0), &blobs, &key("fits"), &just_fits)
            .await
            .context("a value of exactly the limit is stored")?;
        assert_eq!(
            store.kv_get(shop.id, &blobs, &key("fits")).await?,
            Some(just_fits),
            "and reads back whole"
        );
        Ok(())
    }
);

// Every KV call is scoped by the app; the same collection and key in two apps are two entries.
both_backends!(kv_entries_never_cross_apps, |store| async move {
    let shop = app(&store, "shop").await?;
    let blog = app(&store, "blog").await?;
    let users = collection("users");
    store
        .kv_set(origin(shop.id, 0), &users, &key("u1"), &json!("shop's"))
        .await?;
    store
        .kv_set(origin(blog.id, 0), &users, &key("u1"), &json!("blog's"))
        .await?;
    store
        .kv_set(origin(blog.id, 0), &users, &key("u2"), &json!("blog only"))
        .await?;
    assert_eq!(
        store.kv_get(shop.id, &users, &key("u1")).await?,
        Some(json!("shop's")),
        "each app reads its own value"
    );
    assert_eq!(
        store.kv_get(shop.id, &users, &key("u2")).await?,
        None,
        "another app's key is not there"
    );
    assert_eq!(
        all_keys(&store, shop.id, "users", None, 10).await?,
        ["u1"],
        "a list shows only the app's keys"
    );
    store
        .kv_delete(origin(blog.id, 0), &users, &key("u1"))
        .await?;
    assert_eq!(
        store.kv_get(shop.id, &users, &key("u1")).await?,
        Some(json!("shop's")),
        "a delete in one app leaves the other's entry"
    );
    Ok(())
});

both_backends!(
    a_kv_write_for_an_app_that_is_gone_is_not_found,
    |store| async move {
        let result = store
            .kv_set(
                origin(AppId::new(), 0),
                &collection("c"),
                &key("k"),
                &json!(1),
            )
            .await;
        assert!(
            matches!(result, Err(StoreError::NotFound("app"))),
            "NotFound(\"app\"), got {result:?}"
        );
        Ok(())
    }
);
