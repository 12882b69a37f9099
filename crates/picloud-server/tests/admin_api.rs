//! The admin API over HTTP on both backends: every endpoint's happy path, the refusals with
//! their codes, and authentication.

mod common;

use common::TestServer;
use picloud_test_support::both_backends;
use reqwest::Method;
use serde_json::{json, Value};

const HELLO: &str = r#""hello""#;

// Every admin endpoint answers its happy path with the documented status and record.
both_backends!(
    every_admin_endpoint_answers_its_happy_path,
    |store| async move {
        let server = TestServer::start(store).await;

        let created = server
            .admin(
                Method::POST,
                "/api/v1/admin/apps",
                Some(json!({"slug": "shop", "name": "Shop"})),
            )
            .await;
        assert_eq!(created.status, 201, "POST /apps creates: {created}");
        assert_eq!(
            (created.json["slug"].clone(), created.json["name"].clone()),
            (json!("shop"), json!("Shop")),
            "the record: {created}"
        );
        let app_id = created.json["id"].as_str().expect("an id").to_owned();
        assert!(
            created.json["created_at"].is_string(),
            "timestamps are strings: {created}"
        );

        let listed = server.admin(Method::GET, "/api/v1/admin/apps", None).await;
        assert_eq!(listed.status, 200, "GET /apps: {listed}");
        assert_eq!(
            listed.json["items"][0]["id"],
            json!(app_id),
            "the app is listed: {listed}"
        );
        assert!(
            listed.json.get("next_cursor").is_some(),
            "lists carry next_cursor: {listed}"
        );

        let read = server
            .admin(Method::GET, &format!("/api/v1/admin/apps/{app_id}"), None)
            .await;
        assert_eq!(
            (read.status, read.json["slug"].clone()),
            (200, json!("shop")),
            "GET /apps/{{id}}: {read}"
        );

        let patched = server
            .admin(
                Method::PATCH,
                &format!("/api/v1/admin/apps/{app_id}"),
                Some(json!({"name": "The Shop"})),
            )
            .await;
        assert_eq!(
            (patched.status, patched.json["name"].clone()),
            (200, json!("The Shop")),
            "PATCH renames: {patched}"
        );
        assert_eq!(
            patched.json["slug"],
            json!("shop"),
            "PATCH keeps what it was not given: {patched}"
        );

        let script = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/apps/{app_id}/scripts"),
                Some(json!({"name": "hello", "source": HELLO, "kind": "endpoint"})),
            )
            .await;
        assert_eq!(
            script.status, 201,
            "POST /apps/{{id}}/scripts creates: {script}"
        );
        assert_eq!(
            (script.json["kind"].clone(), script.json["source"].clone()),
            (json!("endpoint"), json!(HELLO)),
            "the record: {script}"
        );
        let script_id = script.json["id"].as_str().expect("an id").to_owned();

        let scripts = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps/{app_id}/scripts"),
                None,
            )
            .await;
        assert_eq!(
            (scripts.status, scripts.json["items"][0]["id"].clone()),
            (200, json!(script_id)),
            "GET scripts lists it: {scripts}"
        );

        let read = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/scripts/{script_id}"),
                None,
            )
            .await;
        assert_eq!(
            (read.status, read.json["name"].clone()),
            (200, json!("hello")),
            "GET /scripts/{{id}}: {read}"
        );

        let put = server
            .admin(
                Method::PUT,
                &format!("/api/v1/admin/scripts/{script_id}"),
                Some(json!({"source": r#""hi""#})),
            )
            .await;
        assert_eq!(
            (put.status, put.json["source"].clone()),
            (200, json!(r#""hi""#)),
            "PUT changes the source: {put}"
        );
        assert_ne!(
            put.json["updated_at"], read.json["updated_at"],
            "an update moves updated_at: {put}"
        );

        let route = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/scripts/{script_id}/routes"),
                Some(json!({"method": "get", "path": "/hello/{name}", "dispatch_mode": "sync"})),
            )
            .await;
        assert_eq!(
            route.status, 201,
            "POST /scripts/{{id}}/routes creates: {route}"
        );
        assert_eq!(
            (route.json["method"].clone(), route.json["path"].clone()),
            (json!("GET"), json!("/hello/{name}")),
            "the method is upper-cased: {route}"
        );
        let route_id = route.json["id"].as_str().expect("an id").to_owned();

        let routes = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps/{app_id}/routes"),
                None,
            )
            .await;
        assert_eq!(
            (routes.status, routes.json["items"][0]["id"].clone()),
            (200, json!(route_id)),
            "GET routes lists it: {routes}"
        );
        assert_eq!(
            server.get("/shop/hello/x").await.text,
            "hi",
            "the route answers with the updated source"
        );

        let deleted = server
            .admin(
                Method::DELETE,
                &format!("/api/v1/admin/routes/{route_id}"),
                None,
            )
            .await;
        assert_eq!(deleted.status, 204, "DELETE /routes/{{id}}: {deleted}");
        assert_eq!(
            server.get("/shop/hello/x").await.status,
            404,
            "a deleted route stops answering"
        );
        let deleted = server
            .admin(
                Method::DELETE,
                &format!("/api/v1/admin/scripts/{script_id}"),
                None,
            )
            .await;
        assert_eq!(deleted.status, 204, "DELETE /scripts/{{id}}: {deleted}");
        let deleted = server
            .admin(
                Method::DELETE,
                &format!("/api/v1/admin/apps/{app_id}"),
                None,
            )
            .await;
        assert_eq!(deleted.status, 204, "DELETE /apps/{{id}}: {deleted}");
        let gone = server
            .admin(Method::GET, &format!("/api/v1/admin/apps/{app_id}"), None)
            .await;
        assert_eq!(
            (gone.status, gone.code()),
            (404, "not_found"),
            "the app is gone: {gone}"
        );
    }
);

// Lists page with limit and cursor; a bad limit is refused.
both_backends!(lists_page_through_limit_and_cursor, |store| async move {
    let server = TestServer::start(store).await;
    for slug in ["a1", "a2", "a3"] {
        server.create_app(slug).await;
    }
    let first = server
        .admin(Method::GET, "/api/v1/admin/apps?limit=2", None)
        .await;
    assert_eq!(
        first.json["items"].as_array().map(Vec::len),
        Some(2),
        "two per page: {first}"
    );
    let cursor = first.json["next_cursor"]
        .as_str()
        .expect("a next cursor after a full page")
        .to_owned();
    let second = server
        .admin(
            Method::GET,
            &format!("/api/v1/admin/apps?limit=2&cursor={cursor}"),
            None,
        )
        .await;
    assert_eq!(
        second.json["items"][0]["slug"],
        json!("a3"),
        "the second page continues: {second}"
    );
    assert_eq!(
        second.json["next_cursor"],
        Value::Null,
        "no cursor after the last page: {second}"
    );
    for bad in ["0", "abc", "100000", "-3"] {
        let answer = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps?limit={bad}"),
                None,
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "invalid_input"),
            "limit={bad} is refused: {answer}"
        );
        assert_eq!(
            answer.json["error"]["field"],
            json!("limit"),
            "the field is named: {answer}"
        );
    }
    let answer = server
        .admin(Method::GET, "/api/v1/admin/apps?cursor=not-a-cursor", None)
        .await;
    assert_eq!(
        (answer.status, answer.code()),
        (400, "invalid_input"),
        "a forged cursor is refused: {answer}"
    );
});

/// One refused request: what is sent, the status and the code expected.
struct Refusal {
    what: &'static str,
    method: Method,
    path: String,
    body: Option<Value>,
    status: u16,
    code: &'static str,
}

fn refusal(
    what: &'static str,
    method: Method,
    path: impl Into<String>,
    body: Option<Value>,
    status: u16,
    code: &'static str,
) -> Refusal {
    Refusal {
        what,
        method,
        path: path.into(),
        body,
        status,
        code,
    }
}

// Bad input is refused with the documented status and code, and nothing is written.
both_backends!(
    bad_input_is_refused_with_the_documented_codes,
    |store| async move {
        let server = TestServer::start(store).await;
        let app_id = server.create_app("taken").await;
        let script_id = server.create_script(&app_id, "main", HELLO).await;
        server.create_route(&script_id, "GET", "/users/{id}").await;
        let module = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/apps/{app_id}/scripts"),
                Some(
                    json!({"name": "utils", "source": "fn double(x) { x * 2 }", "kind": "module"}),
                ),
            )
            .await;
        assert_eq!(module.status, 201, "a module is created: {module}");
        let module_id = module.json["id"].as_str().expect("an id").to_owned();
        let unknown = "0190f5b4-0000-7000-8000-000000000000";

        let apps = "/api/v1/admin/apps".to_owned();
        let scripts = format!("/api/v1/admin/apps/{app_id}/scripts");
        let routes = format!("/api/v1/admin/scripts/{script_id}/routes");
        let cases = [
            refusal(
                "an invalid slug",
                Method::POST,
                &apps,
                Some(json!({"slug": "Bad Slug", "name": "x"})),
                400,
                "invalid_input",
            ),
            refusal(
                "a reserved slug",
                Method::POST,
                &apps,
                Some(json!({"slug": "api", "name": "x"})),
                400,
                "invalid_input",
            ),
            refusal(
                "a duplicate slug",
                Method::POST,
                &apps,
                Some(json!({"slug": "taken", "name": "x"})),
                409,
                "conflict",
            ),
            refusal(
                "a missing field",
                Method::POST,
                &apps,
                Some(json!({"slug": "fine"})),
                400,
                "invalid_input",
            ),
            refusal(
                "a wrong type",
                Method::POST,
                &apps,
                Some(json!({"slug": 12, "name": "x"})),
                400,
                "invalid_input",
            ),
            refusal(
                "an empty name",
                Method::POST,
                &apps,
                Some(json!({"slug": "fine", "name": "  "})),
                400,
                "invalid_input",
            ),
            refusal(
                "a reserved slug in a rename",
                Method::PATCH,
                format!("{apps}/{app_id}"),
                Some(json!({"slug": "api"})),
                400,
                "invalid_input",
            ),
            refusal(
                "an unknown app",
                Method::GET,
                format!("{apps}/{unknown}"),
                None,
                404,
                "not_found",
            ),
            refusal(
                "an id that is no uuid",
                Method::GET,
                format!("{apps}/nope"),
                None,
                404,
                "not_found",
            ),
            refusal(
                "scripts of an unknown app",
                Method::POST,
                format!("{apps}/{unknown}/scripts"),
                Some(json!({"name": "a", "source": "1"})),
                404,
                "not_found",
            ),
            refusal(
                "a source that does not compile",
                Method::POST,
                &scripts,
                Some(json!({"name": "broken", "source": "let x = ;"})),
                400,
                "invalid_script",
            ),
            refusal(
                "an unknown kind",
                Method::POST,
                &scripts,
                Some(json!({"name": "k", "source": "1", "kind": "macro"})),
                400,
                "invalid_input",
            ),
            refusal(
                "a module name that cannot be imported",
                Method::POST,
                &scripts,
                Some(json!({"name": "my-utils", "source": "1", "kind": "module"})),
                400,
                "invalid_input",
            ),
            refusal(
                "a duplicate script name",
                Method::POST,
                &scripts,
                Some(json!({"name": "main", "source": "1"})),
                409,
                "conflict",
            ),
            refusal(
                "an oversized source",
                Method::POST,
                &scripts,
                Some(json!({"name": "big", "source": "1;".repeat(600_000)})),
                400,
                "invalid_input",
            ),
            refusal(
                "an unknown script",
                Method::GET,
                format!("/api/v1/admin/scripts/{unknown}"),
                None,
                404,
                "not_found",
            ),
            refusal(
                "a duplicate route",
                Method::POST,
                &routes,
                Some(json!({"method": "GET", "path": "/users/{id}"})),
                409,
                "conflict",
            ),
            refusal(
                "a conflicting pattern",
                Method::POST,
                &routes,
                Some(json!({"method": "GET", "path": "/users/{name}"})),
                409,
                "conflict",
            ),
            refusal(
                "a module as route target",
                Method::POST,
                format!("/api/v1/admin/scripts/{module_id}/routes"),
                Some(json!({"method": "GET", "path": "/m"})),
                400,
                "invalid_input",
            ),
            refusal(
                "an unknown dispatch mode",
                Method::POST,
                &routes,
                Some(json!({"method": "GET", "path": "/later", "dispatch_mode": "later"})),
                400,
                "invalid_input",
            ),
            refusal(
                "an unknown method",
                Method::POST,
                &routes,
                Some(json!({"method": "FETCH", "path": "/x"})),
                400,
                "invalid_input",
            ),
            refusal(
                "a malformed path",
                Method::POST,
                &routes,
                Some(json!({"method": "GET", "path": "no-slash"})),
                400,
                "invalid_input",
            ),
            refusal(
                "a route for an unknown script",
                Method::POST,
                format!("/api/v1/admin/scripts/{unknown}/routes"),
                Some(json!({"method": "GET", "path": "/x"})),
                404,
                "not_found",
            ),
            refusal(
                "an unknown route",
                Method::DELETE,
                format!("/api/v1/admin/routes/{unknown}"),
                None,
                404,
                "not_found",
            ),
            refusal(
                "deleting a routed script",
                Method::DELETE,
                format!("/api/v1/admin/scripts/{script_id}"),
                None,
                409,
                "conflict",
            ),
            refusal(
                "turning a routed script into a module",
                Method::PUT,
                format!("/api/v1/admin/scripts/{script_id}"),
                Some(json!({"kind": "module"})),
                409,
                "conflict",
            ),
            refusal(
                "an unknown API path",
                Method::GET,
                "/api/v1/admin/nothing",
                None,
                404,
                "not_found",
            ),
            refusal(
                "a wrong method on an admin path",
                Method::PUT,
                &apps,
                Some(json!({})),
                405,
                "method_not_allowed",
            ),
        ];
        for case in cases {
            let answer = server
                .admin(case.method.clone(), &case.path, case.body.clone())
                .await;
            assert_eq!(
                (answer.status, answer.code()),
                (case.status, case.code),
                "{}: {answer}",
                case.what
            );
            assert!(
                answer.json["error"]["message"]
                    .as_str()
                    .is_some_and(|m| !m.is_empty()),
                "{} has a message: {answer}",
                case.what
            );
        }

        let apps_now = server.admin(Method::GET, "/api/v1/admin/apps", None).await;
        assert_eq!(
            apps_now.json["items"].as_array().map(Vec::len),
            Some(1),
            "no refused app was written: {apps_now}"
        );
        let routes_now = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps/{app_id}/routes"),
                None,
            )
            .await;
        assert_eq!(
            routes_now.json["items"].as_array().map(Vec::len),
            Some(1),
            "no refused route was written: {routes_now}"
        );
    }
);

// The refusals that carry details say where: the field, and the line and column of a compile error.
both_backends!(
    refusals_name_the_field_and_the_position,
    |store| async move {
        let server = TestServer::start(store).await;
        let app_id = server.create_app("detail").await;
        let answer = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/apps/{app_id}/scripts"),
                Some(json!({"name": "broken", "source": "let a = 1;\nlet b = ;"})),
            )
            .await;
        assert_eq!(answer.code(), "invalid_script", "a compile error: {answer}");
        assert_eq!(
            answer.json["error"]["line"],
            json!(2),
            "the line of the error: {answer}"
        );
        assert!(
            answer.json["error"]["column"]
                .as_u64()
                .is_some_and(|c| c > 0),
            "a column: {answer}"
        );
        assert_eq!(
            answer.json["error"]["field"],
            json!("source"),
            "the field: {answer}"
        );

        let answer = server
            .admin(
                Method::POST,
                "/api/v1/admin/apps",
                Some(json!({"name": "x"})),
            )
            .await;
        assert_eq!(
            answer.json["error"]["field"],
            json!("slug"),
            "a missing field is named: {answer}"
        );
        let answer = server
            .admin(
                Method::POST,
                "/api/v1/admin/apps",
                Some(json!({"slug": ["a"], "name": "x"})),
            )
            .await;
        assert_eq!(
            answer.json["error"]["field"],
            json!("slug"),
            "a wrong type is named: {answer}"
        );
        let answer = server
            .admin(
                Method::POST,
                "/api/v1/admin/apps",
                Some(json!({"slug": "api", "name": "x"})),
            )
            .await;
        assert!(
            answer.json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("reserved")),
            "a reserved slug says so: {answer}"
        );
    }
);

// Malformed JSON, a wrong content type and an oversized body are refused in the JSON error shape.
both_backends!(
    malformed_and_oversized_bodies_are_refused_as_json,
    |store| async move {
        let server = TestServer::start_with(
            store,
            common::Settings {
                server: picloud_server::ServerConfig {
                    max_body_bytes: 4096,
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await;
        let post = |body: &'static str, content_type: &'static str| {
            server
                .http
                .post(server.url("/api/v1/admin/apps"))
                .bearer_auth(&server.token)
                .header("content-type", content_type)
                .body(body)
        };
        let answer = TestServer::answer(
            post(r#"{"slug": "a", "#, "application/json")
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!(
            (answer.status, answer.code()),
            (400, "invalid_json"),
            "truncated JSON: {answer}"
        );
        assert!(
            answer.json["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("line 1")),
            "serde's message says where: {answer}"
        );
        let answer = TestServer::answer(
            post(r#"{"slug": "a", "name": "b"}"#, "text/plain")
                .send()
                .await
                .expect("send"),
        )
        .await;
        assert_eq!(
            (answer.status, answer.code()),
            (415, "unsupported_media_type"),
            "not declared as JSON: {answer}"
        );
        let big = format!(r#"{{"slug": "a", "name": "{}"}}"#, "x".repeat(10_000));
        let response = server
            .http
            .post(server.url("/api/v1/admin/apps"))
            .bearer_auth(&server.token)
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .expect("send");
        let answer = TestServer::answer(response).await;
        assert_eq!(
            (answer.status, answer.code()),
            (413, "payload_too_large"),
            "over max_body_bytes: {answer}"
        );
    }
);

// Nothing under /api/v1/admin answers without valid credentials.
both_backends!(
    admin_endpoints_refuse_missing_wrong_and_logged_out_tokens,
    |store| async move {
        let server = TestServer::start(store).await;
        let answer = server
            .call(Method::GET, "/api/v1/admin/apps", None, None)
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (401, "unauthorized"),
            "no token: {answer}"
        );
        assert_eq!(
            answer.header("www-authenticate"),
            Some("Bearer"),
            "the challenge names the scheme: {answer}"
        );
        let answer = server
            .call(
                Method::POST,
                "/api/v1/admin/apps",
                None,
                Some(json!({"slug": "x", "name": "x"})),
            )
            .await;
        assert_eq!(
            answer.status, 401,
            "no token, even for a valid write: {answer}"
        );
        let answer = server
            .call(
                Method::GET,
                "/api/v1/admin/apps",
                Some("not-a-real-token"),
                None,
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (401, "unauthorized"),
            "a wrong token: {answer}"
        );
        let cookie_only = server
            .http
            .get(server.url("/api/v1/admin/apps"))
            .header("cookie", format!("picloud_session={}", server.token))
            .send()
            .await
            .expect("send");
        assert_eq!(
            cookie_only.status(),
            200,
            "the dashboard's cookie reads without a CSRF token (a safe method)"
        );

        let token = server.login("admin", common::ADMIN_PASSWORD).await;
        let me = server
            .call(Method::GET, "/api/v1/auth/me", Some(&token), None)
            .await;
        assert_eq!(
            (me.status, me.json["username"].clone()),
            (200, json!("admin")),
            "me names the user: {me}"
        );
        assert_eq!(
            me.json["is_instance_admin"],
            json!(true),
            "the admin is instance admin: {me}"
        );
        let out = server
            .call(Method::POST, "/api/v1/auth/logout", Some(&token), None)
            .await;
        assert_eq!(out.status, 204, "logout: {out}");
        let answer = server
            .call(Method::GET, "/api/v1/admin/apps", Some(&token), None)
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (401, "unauthorized"),
            "a logged-out token: {answer}"
        );
        let answer = server
            .call(Method::GET, "/api/v1/admin/apps", Some(&server.token), None)
            .await;
        assert_eq!(answer.status, 200, "other sessions stay valid: {answer}");
    }
);

// Login answers token, user, expiry and the session cookie; wrong passwords and unknown users
// get the same refusal.
both_backends!(
    login_gives_a_token_and_a_cookie_and_refuses_alike,
    |store| async move {
        let server = TestServer::start(store).await;
        let answer = server
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "admin", "password": common::ADMIN_PASSWORD})),
            )
            .await;
        assert_eq!(answer.status, 200, "login: {answer}");
        assert!(
            answer.json["token"].as_str().is_some_and(|t| t.len() >= 43),
            "a 32-byte token: {answer}"
        );
        assert_eq!(
            answer.json["user"]["username"],
            json!("admin"),
            "the user: {answer}"
        );
        assert!(
            answer.json["expires_at"].is_string(),
            "the expiry: {answer}"
        );
        assert!(
            answer.json["user"].get("password_hash").is_none(),
            "no hash leaves the server: {answer}"
        );
        let cookie = answer
            .header("set-cookie")
            .expect("a session cookie")
            .to_owned();
        for part in ["picloud_session=", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(part), "the cookie has {part}: {cookie}");
        }

        let wrong = server
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "admin", "password": "nope"})),
            )
            .await;
        let unknown = server
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": "nobody", "password": "nope"})),
            )
            .await;
        assert_eq!(
            (wrong.status, wrong.code()),
            (401, "invalid_credentials"),
            "a wrong password: {wrong}"
        );
        assert_eq!(
            wrong.text, unknown.text,
            "an unknown user gets the very same answer"
        );
        assert_eq!(unknown.status, 401, "an unknown user is refused");
    }
);

// An authenticated user without access to an app finds nothing of it (404, as if it did not
// exist), sees only its own apps listed, and may create apps of its own.
both_backends!(
    a_user_without_access_finds_nothing_and_creates_its_own_apps,
    |store| async move {
        let server = TestServer::start(store).await;
        let app_id = server.create_app("private").await;
        let username = picloud_core::Username::parse("guest").expect("a username");
        server
            .platform
            .auth()
            .create_user(&username, "guest password", false)
            .await
            .expect("a second user");
        let guest = server.login("guest", "guest password").await;
        let answer = server
            .call(
                Method::GET,
                &format!("/api/v1/admin/apps/{app_id}"),
                Some(&guest),
                None,
            )
            .await;
        assert_eq!(
            (answer.status, answer.code()),
            (404, "not_found"),
            "reading another's app: {answer}"
        );
        let answer = server
            .call(Method::GET, "/api/v1/admin/apps", Some(&guest), None)
            .await;
        assert_eq!(
            answer.json["items"],
            json!([]),
            "the list shows only what the user may read: {answer}"
        );
        let answer = server
            .call(
                Method::POST,
                "/api/v1/admin/apps",
                Some(&guest),
                Some(json!({"slug": "mine", "name": "m"})),
            )
            .await;
        assert_eq!(answer.status, 201, "any user may create an app: {answer}");
        let answer = server
            .call(Method::GET, "/api/v1/admin/apps", Some(&guest), None)
            .await;
        assert_eq!(
            answer.json["items"][0]["slug"],
            json!("mine"),
            "its own app is listed: {answer}"
        );
        let answer = server
            .call(Method::GET, "/api/v1/auth/me", Some(&guest), None)
            .await;
        assert_eq!(
            answer.json["is_instance_admin"],
            json!(false),
            "the guest is who it is: {answer}"
        );
    }
);
