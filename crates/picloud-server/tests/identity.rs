//! Users, members, API keys and test runs over HTTP on both backends: the lifecycles and their
//! rules (the permission matrix is in `permissions.rs`).

use picloud_orchestrator::{PasswordPolicy, PlatformConfig};
use picloud_test_support::both_backends;
use picloud_test_support::http::Answer;
use picloud_test_support::scenario::{self, Caller, Scenario};
use picloud_test_support::server::{Settings, TestServer};
use reqwest::Method;
use serde_json::json;

/// One character short of the default minimum, and exactly it.
const ELEVEN_CHARS: &str = "elevenchars";
const TWELVE_CHARS: &str = "twelve chars";

/// Asserts a `400 invalid_input` on the body field `field` that states the minimum `min`.
fn assert_too_short(answer: &Answer, field: &str, min: usize, what: &str) {
    assert_eq!(
        (answer.status, answer.code()),
        (400, "invalid_input"),
        "{what}: a short password is invalid input: {answer}"
    );
    assert_eq!(
        answer.json["error"]["field"],
        json!(field),
        "{what}: the body's field is named: {answer}"
    );
    assert!(
        answer.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("at least {min} characters"))),
        "{what}: the message states the minimum: {answer}"
    );
}

// A one-character password used to be accepted. Every way of setting a password over the API
// refuses 11 characters (and changes nothing: the old password and sessions still work) and
// accepts 12.
both_backends!(
    every_way_of_setting_a_password_needs_12_characters,
    |store| async move {
        let server = TestServer::start(store).await;
        let refused = server
            .admin(
                Method::POST,
                "/api/v1/admin/users",
                Some(json!({"username": "pat", "password": ELEVEN_CHARS})),
            )
            .await;
        assert_too_short(&refused, "password", 12, "creating a user");
        let created = server
            .admin(
                Method::POST,
                "/api/v1/admin/users",
                Some(json!({"username": "pat", "password": TWELVE_CHARS})),
            )
            .await;
        assert_eq!(created.status, 201, "12 characters create pat: {created}");
        let pat_id = created.json["id"].as_str().expect("an id").to_owned();
        let pat = server.login("pat", TWELVE_CHARS).await;

        let reset = format!("/api/v1/admin/users/{pat_id}/password");
        let refused = server
            .admin(Method::PUT, &reset, Some(json!({"password": ELEVEN_CHARS})))
            .await;
        assert_too_short(&refused, "password", 12, "an admin's reset");
        let own = |current: &str, new: &str| {
            server.call(
                Method::POST,
                "/api/v1/auth/password",
                Some(&pat),
                Some(json!({"current_password": current, "new_password": new})),
            )
        };
        let refused = own(TWELVE_CHARS, ELEVEN_CHARS).await;
        assert_too_short(&refused, "new_password", 12, "a user's own change");
        let me = server
            .call(Method::GET, "/api/v1/auth/me", Some(&pat), None)
            .await;
        assert_eq!(me.status, 200, "refused changes end no session: {me}");

        let changed = own(TWELVE_CHARS, "other 12 chr").await;
        assert_eq!(
            changed.status, 204,
            "a user's own change to 12 characters: {changed}"
        );
        let reset = server
            .admin(Method::PUT, &reset, Some(json!({"password": TWELVE_CHARS})))
            .await;
        assert_eq!(
            reset.status, 204,
            "an admin's reset to 12 characters: {reset}"
        );
        server.login("pat", TWELVE_CHARS).await;
    }
);

// PICLOUD_MIN_PASSWORD_LENGTH reaches the service: a higher minimum refuses what the default
// accepts.
both_backends!(
    a_higher_minimum_refuses_a_password_the_default_accepts,
    |store| async move {
        let settings = Settings {
            platform: PlatformConfig {
                password_policy: PasswordPolicy::new(16).expect("16 is in range"),
                ..PlatformConfig::default()
            },
            ..Settings::default()
        };
        let server = TestServer::start_with(store, settings).await;
        let refused = server
            .admin(
                Method::POST,
                "/api/v1/admin/users",
                Some(json!({"username": "pat", "password": TWELVE_CHARS})),
            )
            .await;
        assert_too_short(&refused, "password", 16, "a minimum of 16");
        let created = server
            .admin(
                Method::POST,
                "/api/v1/admin/users",
                Some(json!({"username": "pat", "password": "sixteen chars ok"})),
            )
            .await;
        assert_eq!(created.status, 201, "16 characters pass: {created}");
    }
);

// The instance admin creates, lists, disables, promotes and deletes users; a disabled user's
// sessions and keys stop working; an admin cannot lock itself out.
both_backends!(
    the_instance_admin_manages_users_and_cannot_lock_itself_out,
    |store| async move {
        let server = TestServer::start(store).await;
        let users = "/api/v1/admin/users";
        let ann = "/api/v1/admin/users/{ann}";
        let login = "/api/v1/auth/login";
        let mut rows = vec![
            Scenario::new("create", Method::POST, users)
                .body(json!({"username": "ann", "password": "ann's password"}))
                .status(201)
                .absent("/password_hash")
                .capture("ann", "/id"),
            Scenario::new("a taken username", Method::POST, users)
                .body(json!({"username": "ann", "password": "another password"}))
                .status(409),
            Scenario::new("admin and ann are listed", Method::GET, users).length("/items", 2),
            Scenario::new("ann signs in", Method::POST, login)
                .caller(Caller::Anonymous)
                .body(json!({"username": "ann", "password": "ann's password"}))
                .capture("session", "/token"),
            Scenario::new("ann makes a key", Method::POST, "/api/v1/admin/api-keys")
                .caller(Caller::Bearer("{session}".into()))
                .body(json!({"name": "k", "scopes": ["app:read"]}))
                .status(201)
                .capture("key", "/secret"),
            Scenario::new("disable", Method::PATCH, ann)
                .body(json!({"disabled": true}))
                .field("/disabled", json!(true)),
            Scenario::new(
                "her session stops working",
                Method::GET,
                "/api/v1/admin/apps",
            )
            .caller(Caller::Bearer("{session}".into()))
            .status(401),
            Scenario::new("her key stops working", Method::GET, "/api/v1/admin/apps")
                .caller(Caller::Bearer("{key}".into()))
                .status(401),
            Scenario::new("enable her as an instance admin", Method::PATCH, ann)
                .body(json!({"disabled": false, "is_instance_admin": true})),
            Scenario::new(
                "an app:read key of an admin is still no admin key",
                Method::GET,
                users,
            )
            .caller(Caller::Bearer("{key}".into()))
            .status(403),
            Scenario::new(
                "set password",
                Method::PUT,
                "/api/v1/admin/users/{ann}/password",
            )
            .body(json!({"password": "ann's new password"}))
            .status(204),
            Scenario::new("ann signs in with the new password", Method::POST, login)
                .caller(Caller::Anonymous)
                .body(json!({"username": "ann", "password": "ann's new password"}))
                .string("/token"),
            Scenario::new("me names the admin", Method::GET, "/api/v1/auth/me")
                .capture("admin", "/id"),
        ];
        for (method, body) in [
            (Method::PATCH, Some(json!({"disabled": true}))),
            (Method::PATCH, Some(json!({"is_instance_admin": false}))),
            (Method::DELETE, None),
        ] {
            let row = Scenario::new(
                format!("{method} on oneself is refused"),
                method,
                "/api/v1/admin/users/{admin}",
            );
            rows.push(
                match body {
                    Some(body) => row.body(body),
                    None => row,
                }
                .status(409),
            );
        }
        rows.extend([
            Scenario::new("delete", Method::DELETE, ann).status(204),
            Scenario::new("gone", Method::GET, ann).status(404),
        ]);
        scenario::run(&server, rows).await;
    }
);

// Owners manage members; an app always keeps an owner; a user changes its own password.
both_backends!(
    owners_manage_members_and_an_app_keeps_an_owner,
    |store| async move {
        let server = TestServer::start(store).await;
        let olga = |name: &str, method: Method, path: &str| {
            Scenario::new(name, method, path).caller(Caller::Bearer("{olga}".into()))
        };
        let vic = "/api/v1/admin/apps/{app}/members/{vic}";
        let olga_member = "/api/v1/admin/apps/{app}/members/{olga_id}";
        let password = "/api/v1/auth/password";
        scenario::run(
            &server,
            vec![
                Scenario::new("create olga", Method::POST, "/api/v1/admin/users")
                    .body(json!({"username": "olga", "password": "member password"}))
                    .status(201),
                Scenario::new("create vic", Method::POST, "/api/v1/admin/users")
                    .body(json!({"username": "vic", "password": "member password"}))
                    .status(201)
                    .capture("vic", "/id"),
                Scenario::new("olga signs in", Method::POST, "/api/v1/auth/login")
                    .caller(Caller::Anonymous)
                    .body(json!({"username": "olga", "password": "member password"}))
                    .capture("olga", "/token"),
                olga("olga creates an app", Method::POST, "/api/v1/admin/apps")
                    .body(json!({"slug": "team", "name": "T"}))
                    .status(201)
                    .capture("app", "/id"),
                olga(
                    "the creator is the owner",
                    Method::GET,
                    "/api/v1/admin/apps/{app}/members",
                )
                .field("/items/0/username", json!("olga"))
                .field("/items/0/role", json!("owner"))
                .capture("olga_id", "/items/0/user_id"),
                olga("add a viewer", Method::PUT, vic)
                    .body(json!({"role": "viewer"}))
                    .field("/role", json!("viewer")),
                olga("an unknown role", Method::PUT, vic)
                    .body(json!({"role": "god"}))
                    .error(400, "invalid_input"),
                olga("the last owner stays", Method::DELETE, olga_member).status(409),
                olga("nor is demoted", Method::PUT, olga_member)
                    .body(json!({"role": "editor"}))
                    .status(409),
                olga("remove vic", Method::DELETE, vic).status(204),
                olga("the current password is checked", Method::POST, password)
                    .body(json!({"current_password": "nope", "new_password": "a brand new password"}))
                    .status(401),
                olga("changed", Method::POST, password)
                    .body(json!({"current_password": "member password", "new_password": "member password 2"}))
                    .status(204),
                olga("the old session ended", Method::GET, "/api/v1/auth/me").status(401),
                Scenario::new("olga signs in with the new password", Method::POST, "/api/v1/auth/login")
                    .caller(Caller::Anonymous)
                    .body(json!({"username": "olga", "password": "member password 2"}))
                    .string("/token"),
            ],
        )
        .await;
    }
);

// API keys: bound to an app, with an expiry, listed without secrets, refused once expired.
both_backends!(
    api_keys_are_bound_expire_and_are_refused_when_malformed,
    |store| async move {
        let server = TestServer::start(store).await;
        let app = server.api.create_app("keyed").await;
        let bad = server
            .admin(
                Method::POST,
                "/api/v1/admin/api-keys",
                Some(json!({"name": "k", "scopes": ["root"]})),
            )
            .await;
        assert_eq!(
            (bad.status, bad.code()),
            (400, "invalid_input"),
            "an unknown scope: {bad}"
        );
        let none = server
            .admin(
                Method::POST,
                "/api/v1/admin/api-keys",
                Some(json!({"name": "k", "scopes": []})),
            )
            .await;
        assert_eq!(none.status, 400, "no scopes: {none}");
        let past = server
            .admin(Method::POST, "/api/v1/admin/api-keys", Some(json!({"name": "k", "scopes": ["app:read"], "expires_at": "2000-01-01T00:00:00.000Z"})))
            .await;
        assert_eq!(past.status, 400, "an expiry in the past: {past}");
        let bound = server
            .admin(Method::POST, "/api/v1/admin/api-keys", Some(json!({"name": "deploy", "scopes": ["script:write"], "app_id": app, "expires_at": "2999-01-01T00:00:00.000Z"})))
            .await;
        assert_eq!(bound.status, 201, "a bound key: {bound}");
        assert_eq!(bound.json["app_id"], json!(app), "bound: {bound}");
        let key = bound.json["secret"].as_str().expect("secret").to_owned();
        let mine = server
            .call(
                Method::POST,
                &format!("/api/v1/admin/apps/{app}/scripts"),
                Some(&key),
                Some(json!({"name": "x", "source": "1"})),
            )
            .await;
        assert_eq!(
            mine.status, 201,
            "the key writes scripts in its app: {mine}"
        );
        let other = server.api.create_app("other").await;
        let theirs = server
            .call(
                Method::GET,
                &format!("/api/v1/admin/apps/{other}"),
                Some(&key),
                None,
            )
            .await;
        assert_eq!(theirs.status, 404, "and sees nothing elsewhere: {theirs}");
        let new_app = server
            .call(
                Method::POST,
                "/api/v1/admin/apps",
                Some(&key),
                Some(json!({"slug": "x", "name": "x"})),
            )
            .await;
        assert_eq!(
            new_app.status, 403,
            "a bound key creates no apps: {new_app}"
        );
    }
);

// A test run answers the script's response and its log lines; failures answer 200 with the error.
both_backends!(
    a_test_run_answers_the_response_and_the_log_lines,
    |store| async move {
        let server = TestServer::start(store).await;
        let app = server.api.create_app("runs").await;
        let script = server
            .api.create_script(&app, "echo", r#"log::info(`hello ${ctx.request.query.who}`); #{ got: ctx.request.json, method: ctx.request.method }"#)
            .await;
        let run = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/scripts/{script}/execute"),
                Some(json!({"method": "POST", "query": {"who": "ann"}, "json": {"n": 1}})),
            )
            .await;
        assert_eq!(run.status, 200, "the run: {run}");
        assert_eq!(
            run.json["response"]["status"],
            json!(200),
            "the script's status: {run}"
        );
        assert_eq!(
            run.json["response"]["body"]["value"],
            json!({"got": {"n": 1}, "method": "POST"}),
            "the script saw the request: {run}"
        );
        assert_eq!(
            run.json["logs"][0]["message"],
            json!("hello ann"),
            "the log line: {run}"
        );
        assert!(
            run.json["execution_id"].is_string(),
            "an execution id: {run}"
        );

        let failing = server
            .api
            .create_script(&app, "boom", r#"throw "nope""#)
            .await;
        let run = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/scripts/{failing}/execute"),
                Some(json!({})),
            )
            .await;
        assert_eq!(run.status, 200, "a failing run still answers: {run}");
        assert_eq!(run.json["response"], json!(null), "no response: {run}");
        assert_eq!(
            run.json["error"]["kind"],
            json!("runtime"),
            "the error: {run}"
        );
    }
);
