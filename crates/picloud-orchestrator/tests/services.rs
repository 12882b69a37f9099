//! The domain rules on both backends, called as the admin API and the dashboard call them.

use picloud_core::{AppName, AppSlug, Principal, ScriptKind, Username};
use picloud_orchestrator::{Lookup, NewApp, Platform, ScriptChanges, ServiceError};
use picloud_store::PageRequest;
use picloud_test_support::both_backends;

use picloud_test_support::platform::{admin, app_with_script, route, script, start};
use picloud_test_support::ADMIN_PASSWORD;

async fn route_count(platform: &Platform, actor: &Principal, app_id: picloud_core::AppId) -> usize {
    platform
        .routes()
        .list(actor, app_id, &PageRequest::default())
        .await
        .expect("list")
        .items
        .len()
}

// A module is a library: it cannot answer a route, and nothing is written when refused.
both_backends!(
    a_module_script_cannot_be_a_route_target,
    |store| async move {
        let platform = start(store).await;
        let actor = admin(&platform).await;
        let (app_id, _) = app_with_script(&platform, &actor, "mods", "1").await;
        let module = platform
            .scripts()
            .create(
                &actor,
                app_id,
                script("utils", ScriptKind::Module, "fn f() { 1 }"),
            )
            .await
            .expect("a module");
        let err = platform
            .routes()
            .create(&actor, module.id, route("GET", "/m"))
            .await
            .expect_err("refused");
        let ServiceError::Invalid(input) = err else {
            panic!("expected invalid input, got {err:?}")
        };
        assert_eq!(
            input.field, "script",
            "the message is about the target: {input}"
        );
        assert_eq!(
            route_count(&platform, &actor, app_id).await,
            0,
            "no route was written"
        );
    }
);

// Overlapping patterns under one method are a conflict found in the index before the write.
both_backends!(
    an_overlapping_pattern_is_refused_before_the_row_is_written,
    |store| async move {
        let platform = start(store).await;
        let actor = admin(&platform).await;
        let (app_id, script_id) = app_with_script(&platform, &actor, "users", "1").await;
        platform
            .routes()
            .create(&actor, script_id, route("GET", "/users/{id}"))
            .await
            .expect("the first route");
        let err = platform
            .routes()
            .create(&actor, script_id, route("GET", "/users/{name}"))
            .await
            .expect_err("overlap");
        assert!(
            matches!(err, ServiceError::Conflict(_)),
            "a conflict: {err:?}"
        );
        assert_eq!(
            route_count(&platform, &actor, app_id).await,
            1,
            "the refused route was not written"
        );
        platform
            .routes()
            .create(&actor, script_id, route("POST", "/users/{name}"))
            .await
            .expect("another method may use it");
    }
);

// Saving a script changes what the index runs, with no restart and no query per request.
both_backends!(
    a_saved_script_is_what_the_next_request_runs,
    |store| async move {
        let platform = start(store).await;
        let actor = admin(&platform).await;
        let (_, script_id) = app_with_script(&platform, &actor, "live", r#""v1""#).await;
        platform
            .routes()
            .create(&actor, script_id, route("GET", "/"))
            .await
            .expect("route");
        let changes = ScriptChanges {
            source: Some(r#""v2""#.to_owned()),
            ..ScriptChanges::default()
        };
        let saved = platform
            .scripts()
            .update(&actor, script_id, changes)
            .await
            .expect("update");
        let Lookup::Found(found) = platform.index().lookup("live", "GET", "/") else {
            panic!("the route is indexed")
        };
        assert_eq!(
            &*found.target.script.source, r#""v2""#,
            "the index holds the new source"
        );
        assert_eq!(
            found.target.script.updated_at, saved.updated_at,
            "and its version, for the AST cache"
        );
    }
);

// A script that routes point at stays an endpoint; without routes it may become a module.
both_backends!(a_routed_script_cannot_become_a_module, |store| async move {
    let platform = start(store).await;
    let actor = admin(&platform).await;
    let (_, script_id) = app_with_script(&platform, &actor, "kinds", "fn f() { 1 }").await;
    let route = platform
        .routes()
        .create(&actor, script_id, route("GET", "/"))
        .await
        .expect("route");
    let to_module = || ScriptChanges {
        kind: Some(ScriptKind::Module),
        ..ScriptChanges::default()
    };
    let err = platform
        .scripts()
        .update(&actor, script_id, to_module())
        .await
        .expect_err("routed");
    assert!(
        matches!(err, ServiceError::Conflict(_)),
        "a conflict while routed: {err:?}"
    );
    platform
        .routes()
        .delete(&actor, route.id)
        .await
        .expect("delete the route");
    let script = platform
        .scripts()
        .update(&actor, script_id, to_module())
        .await
        .expect("now allowed");
    assert_eq!(script.kind, ScriptKind::Module, "the kind changed");
});

// A source that does not compile is refused with where it broke.
both_backends!(
    a_source_that_does_not_compile_is_refused_with_its_position,
    |store| async move {
        let platform = start(store).await;
        let actor = admin(&platform).await;
        let (app_id, _) = app_with_script(&platform, &actor, "compile", "1").await;
        let err = platform
            .scripts()
            .create(
                &actor,
                app_id,
                script("bad", ScriptKind::Endpoint, "let x = 1;\nlet = 2;"),
            )
            .await
            .expect_err("does not compile");
        let ServiceError::InvalidScript { line, column, .. } = err else {
            panic!("expected invalid script, got {err:?}")
        };
        assert_eq!(line, Some(2), "the line");
        assert!(column.is_some(), "a column");
    }
);

// The index loaded at start holds what earlier processes created.
both_backends!(
    the_index_is_loaded_from_the_store_at_start,
    |store| async move {
        let platform = start(store.clone()).await;
        let actor = admin(&platform).await;
        let (_, script_id) = app_with_script(&platform, &actor, "kept", "1").await;
        platform
            .routes()
            .create(&actor, script_id, route("GET", "/items/{id}"))
            .await
            .expect("route");
        app_with_script(&platform, &actor, "empty", "1").await;
        let restarted = start(store).await;
        let Lookup::Found(found) = restarted.index().lookup("kept", "GET", "/items/9") else {
            panic!("the route is loaded")
        };
        assert_eq!(
            found.params.get("id").map(String::as_str),
            Some("9"),
            "with its parameters"
        );
        assert!(
            matches!(
                restarted.index().lookup("empty", "GET", "/"),
                Lookup::NoRoute
            ),
            "an app without routes is known"
        );
    }
);

// The first start creates the admin once; a generated password is returned and works.
both_backends!(
    the_instance_admin_is_created_once_with_a_generated_password,
    |store| async move {
        let platform = start(store).await;
        let password = platform
            .auth()
            .ensure_instance_admin(None)
            .await
            .expect("create")
            .expect("a generated password");
        assert_eq!(password.len(), 24, "24 characters");
        assert!(
            platform
                .auth()
                .ensure_instance_admin(Some("other"))
                .await
                .expect("again")
                .is_none(),
            "only once"
        );
        platform
            .auth()
            .login("admin", &password)
            .await
            .expect("the generated password works");
        assert!(
            platform.auth().login("admin", "other").await.is_err(),
            "the second password was not used"
        );
    }
);

// Unknown users and wrong passwords are refused alike; logout ends the session.
both_backends!(
    logins_are_refused_alike_and_logout_ends_the_session,
    |store| async move {
        let platform = start(store).await;
        admin(&platform).await;
        let wrong = platform
            .auth()
            .login("admin", "nope")
            .await
            .expect_err("wrong password");
        let unknown = platform
            .auth()
            .login("ghost", "nope")
            .await
            .expect_err("unknown user");
        let invalid = platform
            .auth()
            .login("Not A Name!", "nope")
            .await
            .expect_err("impossible username");
        assert_eq!(
            wrong.to_string(),
            unknown.to_string(),
            "the same refusal for both"
        );
        assert_eq!(
            wrong.to_string(),
            invalid.to_string(),
            "even for a name that cannot exist"
        );
        let login = platform
            .auth()
            .login("admin", ADMIN_PASSWORD)
            .await
            .expect("login");
        assert!(
            platform
                .auth()
                .authenticate(&login.token)
                .await
                .expect("store")
                .is_some(),
            "the token works"
        );
        assert!(
            platform.auth().logout(&login.token).await.expect("logout"),
            "the session existed"
        );
        assert!(
            platform
                .auth()
                .authenticate(&login.token)
                .await
                .expect("store")
                .is_none(),
            "the token no longer works"
        );
    }
);

// Only the capability check decides. A user who may not read an app finds nothing of it (as if
// it did not exist); a viewer sees it but is forbidden to change it; anyone may create an app of
// their own and becomes its owner.
both_backends!(
    an_outsider_finds_nothing_and_a_viewer_may_only_read,
    |store| async move {
        let platform = start(store).await;
        let actor = admin(&platform).await;
        let (app_id, script_id) = app_with_script(&platform, &actor, "guarded", "1").await;
        let username = Username::parse("guest").expect("name");
        let guest_user = platform
            .auth()
            .create_user(&username, "guest password", false)
            .await
            .expect("a guest");
        let login = platform
            .auth()
            .login("guest", "guest password")
            .await
            .expect("guest login");
        let guest = platform
            .auth()
            .authenticate(&login.token)
            .await
            .expect("store")
            .expect("principal");
        let hidden = |r: Result<(), ServiceError>, what: &str| {
            assert!(
                matches!(r, Err(ServiceError::NotFound(_))),
                "{what} is not found for an outsider: {r:?}"
            );
        };
        hidden(
            platform.apps().get(&guest, app_id).await.map(drop),
            "reading the app",
        );
        hidden(
            platform.apps().delete(&guest, app_id).await,
            "deleting the app",
        );
        hidden(
            platform.scripts().get(&guest, script_id).await.map(drop),
            "reading a script",
        );
        hidden(
            platform
                .routes()
                .create(&guest, script_id, route("GET", "/"))
                .await
                .map(drop),
            "adding a route",
        );

        platform
            .members()
            .set(&actor, app_id, guest_user.id, picloud_core::Role::Viewer)
            .await
            .expect("the guest becomes a viewer");
        let viewer = platform
            .auth()
            .authenticate(&login.token)
            .await
            .expect("store")
            .expect("principal");
        assert!(
            platform.scripts().get(&viewer, script_id).await.is_ok(),
            "a viewer reads the scripts"
        );
        let refused = platform.apps().delete(&viewer, app_id).await;
        assert!(
            matches!(refused, Err(ServiceError::Forbidden(_))),
            "a viewer is forbidden to delete: {refused:?}"
        );

        let new = NewApp {
            slug: AppSlug::parse("mine").expect("slug"),
            name: AppName::parse("m").expect("name"),
            expose_errors: false,
        };
        let mine = platform
            .apps()
            .create(&viewer, &new)
            .await
            .expect("anyone may create an app");
        let members = platform
            .members()
            .list(&actor, mine.id)
            .await
            .expect("the admin lists the members");
        assert_eq!(
            members
                .iter()
                .map(|m| (m.user_id, m.role))
                .collect::<Vec<_>>(),
            vec![(guest_user.id, picloud_core::Role::Owner)],
            "the creator is the owner"
        );
    }
);
