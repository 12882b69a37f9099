//! What scripts read: entries with their versions, pages, and whether a dead letter is theirs to
//! close. (Their writes are runs' commits: `transactions.rs`.)

use super::*;

both_backends!(
    services_read_entries_and_pages_with_the_versions_of_their_commits,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let services = services(&store);
        let quiet = collection("quiet");
        ensure!(
            services.kv_get(shop.id, &quiet, &key("k")).await?.is_none()
                && services
                    .kv_version(shop.id, &quiet, &key("k"))
                    .await?
                    .is_none(),
            "nothing there yet"
        );
        store
            .kv_set(origin(shop.id, 0), &quiet, &key("k"), &json!(1))
            .await?;
        let (value, first) = services
            .kv_get(shop.id, &quiet, &key("k"))
            .await?
            .context("the entry")?;
        ensure!(value == json!(1), "get: {value}");
        ensure!(
            services.kv_version(shop.id, &quiet, &key("k")).await? == Some(first),
            "the version alone is the same"
        );
        store
            .kv_set(origin(shop.id, 0), &quiet, &key("k"), &json!(2))
            .await?;
        store
            .kv_delete(origin(shop.id, 0), &quiet, &key("k"))
            .await?;
        store
            .kv_set(origin(shop.id, 0), &quiet, &key("k"), &json!(3))
            .await?;
        let again = services
            .kv_version(shop.id, &quiet, &key("k"))
            .await?
            .context("written again")?;
        ensure!(
            again > first,
            "an entry deleted and written again never shows a version seen before: {first} → {again}"
        );
        let page = services
            .kv_list(shop.id, &quiet, &list(None, 10, None))
            .await?;
        ensure!(
            page.items == vec![("k".to_owned(), json!(3), again)] && page.cursor.is_none(),
            "list, with versions: {page:?}"
        );
        let bad = services
            .kv_list(shop.id, &quiet, &list(None, 10, Some("x".into())))
            .await
            .expect_err("a forged cursor");
        ensure!(
            bad.kind == ServiceErrorKind::Invalid
                && bad.message == "the cursor is not one this server issued",
            "a forged cursor is invalid input, with the store's sentence: {bad:?}"
        );
        Ok(())
    }
);

// A script reaches its own app's dead letters only; another app's read exactly like missing
// ones, so nothing about them leaks.
both_backends!(
    services_tell_a_script_only_about_its_own_apps_open_dead_letters,
    |store| async move {
        let shop = app(&store, "shop").await?;
        let blog = app(&store, "blog").await?;
        let failing = endpoint(&store, shop.id, "failing").await?;
        let theirs = endpoint(&store, blog.id, "failing").await?;
        let mine = dead_letter(&store, &failing, "boom").await?;
        let other = dead_letter(&store, &theirs, "boom").await?;
        let services = services(&store);

        let missing = DeadLetterId::new();
        for (id, what) in [(missing, "a missing id"), (other.id, "another app's")] {
            let refused = services
                .dead_letter_open(shop.id, id)
                .await
                .expect_err(what);
            ensure!(
                refused.kind == ServiceErrorKind::NotFound
                    && refused.message == format!("no dead letter with id {id} in this app"),
                "{what}: not found, with the same sentence: {refused:?}"
            );
        }
        services.dead_letter_open(shop.id, mine.id).await?;
        store
            .replay_dead_letter(mine.id, ExecutionId::new())
            .await?;
        let closed = services
            .dead_letter_open(shop.id, mine.id)
            .await
            .expect_err("already replayed");
        ensure!(
            closed.kind == ServiceErrorKind::Conflict
                && closed.message.contains("already replayed"),
            "a closed one is a conflict that says why: {closed:?}"
        );
        Ok(())
    }
);
