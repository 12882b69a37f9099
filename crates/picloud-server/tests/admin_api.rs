//! The admin API over HTTP on both backends: every endpoint's happy path, the refusals with
//! their codes, and authentication.

use picloud_test_support::both_backends;
use picloud_test_support::http::Answer;
use picloud_test_support::scenario::{self, Effect, Scenario};
use picloud_test_support::server::{Settings, TestServer};
use picloud_test_support::ADMIN_PASSWORD;
use reqwest::Method;
use serde_json::{json, Value};

const HELLO: &str = r#""hello""#;

// Every admin endpoint answers its happy path with the documented status and record.
both_backends!(
    every_admin_endpoint_answers_its_happy_path,
    |store| async move {
        let server = TestServer::start(store).await;
        let apps = "/api/v1/admin/apps";
        scenario::run(
            &server,
            vec![
                Scenario::new("POST /apps creates", Method::POST, apps)
                    .body(json!({"slug": "shop", "name": "Shop"}))
                    .status(201)
                    .field("/slug", json!("shop"))
                    .field("/name", json!("Shop"))
                    .string("/created_at")
                    .capture("app", "/id"),
                Scenario::new("GET /apps lists it, with next_cursor", Method::GET, apps)
                    .field("/items/0/id", json!("{app}"))
                    .present("/next_cursor"),
                Scenario::new("GET /apps/{id}", Method::GET, "/api/v1/admin/apps/{app}")
                    .field("/slug", json!("shop")),
                Scenario::new(
                    "PATCH renames and keeps what it was not given",
                    Method::PATCH,
                    "/api/v1/admin/apps/{app}",
                )
                .body(json!({"name": "The Shop"}))
                .field("/name", json!("The Shop"))
                .field("/slug", json!("shop")),
                Scenario::new(
                    "POST /apps/{id}/scripts creates",
                    Method::POST,
                    "/api/v1/admin/apps/{app}/scripts",
                )
                .body(json!({"name": "hello", "source": HELLO, "kind": "endpoint"}))
                .status(201)
                .field("/kind", json!("endpoint"))
                .field("/source", json!(HELLO))
                .capture("script", "/id"),
                Scenario::new(
                    "GET scripts lists it",
                    Method::GET,
                    "/api/v1/admin/apps/{app}/scripts",
                )
                .field("/items/0/id", json!("{script}")),
                Scenario::new(
                    "GET /scripts/{id}",
                    Method::GET,
                    "/api/v1/admin/scripts/{script}",
                )
                .field("/name", json!("hello"))
                .capture("read_at", "/updated_at"),
                Scenario::new(
                    "PUT changes the source and moves updated_at",
                    Method::PUT,
                    "/api/v1/admin/scripts/{script}",
                )
                .body(json!({"source": r#""hi""#}))
                .field("/source", json!(r#""hi""#))
                .field_differs("/updated_at", json!("{read_at}")),
                Scenario::new(
                    "POST /scripts/{id}/routes creates, the method upper-cased",
                    Method::POST,
                    "/api/v1/admin/scripts/{script}/routes",
                )
                .body(json!({"method": "get", "path": "/hello/{name}", "dispatch_mode": "sync"}))
                .status(201)
                .field("/method", json!("GET"))
                .field("/path", json!("/hello/{name}"))
                .capture("route", "/id"),
                Scenario::new(
                    "GET routes lists it, and it answers with the updated source",
                    Method::GET,
                    "/api/v1/admin/apps/{app}/routes",
                )
                .field("/items/0/id", json!("{route}"))
                .effect(Effect::Answers {
                    path: "/shop/hello/x".into(),
                    status: 200,
                    text: Some("hi"),
                }),
                Scenario::new(
                    "DELETE /routes/{id}: the route stops answering",
                    Method::DELETE,
                    "/api/v1/admin/routes/{route}",
                )
                .status(204)
                .effect(Effect::Answers {
                    path: "/shop/hello/x".into(),
                    status: 404,
                    text: None,
                }),
                Scenario::new(
                    "DELETE /scripts/{id}",
                    Method::DELETE,
                    "/api/v1/admin/scripts/{script}",
                )
                .status(204),
                Scenario::new(
                    "DELETE /apps/{id}",
                    Method::DELETE,
                    "/api/v1/admin/apps/{app}",
                )
                .status(204),
                Scenario::new("the app is gone", Method::GET, "/api/v1/admin/apps/{app}")
                    .error(404, "not_found"),
            ],
        )
        .await;
    }
);

// Lists page with limit and cursor; a bad limit is refused.
both_backends!(lists_page_through_limit_and_cursor, |store| async move {
    let server = TestServer::start(store).await;
    for slug in ["a1", "a2", "a3"] {
        server.api.create_app(slug).await;
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

// Bad input is refused with the documented status and code, and nothing is written.
both_backends!(
    bad_input_is_refused_with_the_documented_codes,
    |store| async move {
        let server = TestServer::start(store).await;
        let app_id = server.api.create_app("taken").await;
        let script_id = server.api.create_script(&app_id, "main", HELLO).await;
        server
            .api
            .create_route(&script_id, "GET", "/users/{id}")
            .await;
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
        scenario::run(
            &server,
            vec![
                Scenario::new("an invalid slug", Method::POST, &apps)
                    .body(json!({"slug": "Bad Slug", "name": "x"}))
                    .error(400, "invalid_input"),
                Scenario::new("a reserved slug", Method::POST, &apps)
                    .body(json!({"slug": "api", "name": "x"}))
                    .error(400, "invalid_input"),
                Scenario::new("a duplicate slug", Method::POST, &apps)
                    .body(json!({"slug": "taken", "name": "x"}))
                    .error(409, "conflict"),
                Scenario::new("a missing field", Method::POST, &apps)
                    .body(json!({"slug": "fine"}))
                    .error(400, "invalid_input"),
                Scenario::new("a wrong type", Method::POST, &apps)
                    .body(json!({"slug": 12, "name": "x"}))
                    .error(400, "invalid_input"),
                Scenario::new("an empty name", Method::POST, &apps)
                    .body(json!({"slug": "fine", "name": "  "}))
                    .error(400, "invalid_input"),
                Scenario::new(
                    "a reserved slug in a rename",
                    Method::PATCH,
                    format!("{apps}/{app_id}"),
                )
                .body(json!({"slug": "api"}))
                .error(400, "invalid_input"),
                Scenario::new("an unknown app", Method::GET, format!("{apps}/{unknown}"))
                    .error(404, "not_found"),
                Scenario::new("an id that is no uuid", Method::GET, format!("{apps}/nope"))
                    .error(404, "not_found"),
                Scenario::new(
                    "scripts of an unknown app",
                    Method::POST,
                    format!("{apps}/{unknown}/scripts"),
                )
                .body(json!({"name": "a", "source": "1"}))
                .error(404, "not_found"),
                Scenario::new("a source that does not compile", Method::POST, &scripts)
                    .body(json!({"name": "broken", "source": "let x = ;"}))
                    .error(400, "invalid_script"),
                Scenario::new("an unknown kind", Method::POST, &scripts)
                    .body(json!({"name": "k", "source": "1", "kind": "macro"}))
                    .error(400, "invalid_input"),
                Scenario::new(
                    "a module name that cannot be imported",
                    Method::POST,
                    &scripts,
                )
                .body(json!({"name": "my-utils", "source": "1", "kind": "module"}))
                .error(400, "invalid_input"),
                Scenario::new("a duplicate script name", Method::POST, &scripts)
                    .body(json!({"name": "main", "source": "1"}))
                    .error(409, "conflict"),
                Scenario::new("an oversized source", Method::POST, &scripts)
                    .body(json!({"name": "big", "source": "1;".repeat(600_000)}))
                    .error(400, "invalid_input"),
                Scenario::new(
                    "an unknown script",
                    Method::GET,
                    format!("/api/v1/admin/scripts/{unknown}"),
                )
                .error(404, "not_found"),
                Scenario::new("a duplicate route", Method::POST, &routes)
                    .body(json!({"method": "GET", "path": "/users/{id}"}))
                    .error(409, "conflict"),
                Scenario::new("a conflicting pattern", Method::POST, &routes)
                    .body(json!({"method": "GET", "path": "/users/{name}"}))
                    .error(409, "conflict"),
                Scenario::new(
                    "a module as route target",
                    Method::POST,
                    format!("/api/v1/admin/scripts/{module_id}/routes"),
                )
                .body(json!({"method": "GET", "path": "/m"}))
                .error(400, "invalid_input"),
                Scenario::new("an unknown dispatch mode", Method::POST, &routes)
                    .body(json!({"method": "GET", "path": "/later", "dispatch_mode": "later"}))
                    .error(400, "invalid_input"),
                Scenario::new("an unknown method", Method::POST, &routes)
                    .body(json!({"method": "FETCH", "path": "/x"}))
                    .error(400, "invalid_input"),
                Scenario::new("a malformed path", Method::POST, &routes)
                    .body(json!({"method": "GET", "path": "no-slash"}))
                    .error(400, "invalid_input"),
                Scenario::new(
                    "a route for an unknown script",
                    Method::POST,
                    format!("/api/v1/admin/scripts/{unknown}/routes"),
                )
                .body(json!({"method": "GET", "path": "/x"}))
                .error(404, "not_found"),
                Scenario::new(
                    "an unknown route",
                    Method::DELETE,
                    format!("/api/v1/admin/routes/{unknown}"),
                )
                .error(404, "not_found"),
                Scenario::new(
                    "deleting a routed script",
                    Method::DELETE,
                    format!("/api/v1/admin/scripts/{script_id}"),
                )
                .error(409, "conflict"),
                Scenario::new(
                    "turning a routed script into a module",
                    Method::PUT,
                    format!("/api/v1/admin/scripts/{script_id}"),
                )
                .body(json!({"kind": "module"}))
                .error(409, "conflict"),
                Scenario::new("an unknown API path", Method::GET, "/api/v1/admin/nothing")
                    .error(404, "not_found"),
                Scenario::new("a wrong method on an admin path", Method::PUT, &apps)
                    .body(json!({}))
                    .error(405, "method_not_allowed"),
                Scenario::new("no refused app was written", Method::GET, &apps).length("/items", 1),
                Scenario::new(
                    "no refused route was written",
                    Method::GET,
                    format!("/api/v1/admin/apps/{app_id}/routes"),
                )
                .length("/items", 1),
            ],
        )
        .await;
    }
);

// The refusals that carry details say where: the field, and the line and column of a compile error.
both_backends!(
    refusals_name_the_field_and_the_position,
    |store| async move {
        let server = TestServer::start(store).await;
        let app_id = server.api.create_app("detail").await;
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
            Settings {
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
                .api
                .http
                .post(server.url("/api/v1/admin/apps"))
                .bearer_auth(&server.api.token)
                .header("content-type", content_type)
                .body(body)
        };
        let answer = Answer::read(
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
        let answer = Answer::read(
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
            .api
            .http
            .post(server.url("/api/v1/admin/apps"))
            .bearer_auth(&server.api.token)
            .header("content-type", "application/json")
            .body(big)
            .send()
            .await
            .expect("send");
        let answer = Answer::read(response).await;
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
            .api
            .http
            .get(server.url("/api/v1/admin/apps"))
            .header("cookie", format!("picloud_session={}", server.api.token))
            .send()
            .await
            .expect("send");
        assert_eq!(
            cookie_only.status(),
            200,
            "the dashboard's cookie reads without a CSRF token (a safe method)"
        );

        let token = server.login("admin", ADMIN_PASSWORD).await;
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
            .call(
                Method::GET,
                "/api/v1/admin/apps",
                Some(&server.api.token),
                None,
            )
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
                Some(json!({"username": "admin", "password": ADMIN_PASSWORD})),
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
        let app_id = server.api.create_app("private").await;
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

// The data browser (#16): documents by id or by filter (query string or body), KV entries by
// prefix, declared indexes, docs triggers — and what each refuses, with a sentence.
both_backends!(
    the_data_browser_shows_documents_and_kv_entries_and_refuses_bad_filters,
    |store| async move {
        let server = TestServer::start(store).await;
        let app = server
            .admin(
                Method::POST,
                "/api/v1/admin/apps",
                Some(json!({"slug": "shop", "name": "Shop"})),
            )
            .await;
        let app = app.json["id"].as_str().expect("the app").to_owned();
        let seed = r#"
            let users = docs::collection("users");
            users.create(#{ name: "Ada", age: 36 });
            users.create(#{ name: "Grace", age: 9 });
            users.create(#{ name: "Linus", age: 10 });
            let settings = kv::collection("settings");
            settings.set("a:1", 1);
            settings.set("a:2", 2);
            settings.set("b:1", 3);
        "#;
        let script = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/apps/{app}/scripts"),
                Some(json!({"name": "seed", "source": seed})),
            )
            .await;
        let script = script.json["id"].as_str().expect("the script").to_owned();
        let ran = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/scripts/{script}/execute"),
                Some(json!({})),
            )
            .await;
        assert_eq!(ran.status, 200, "{ran}");

        let docs = format!("/api/v1/admin/apps/{app}/docs/users");
        let page = server
            .admin(Method::GET, &format!("{docs}?limit=2"), None)
            .await;
        assert_eq!(page.status, 200, "{page}");
        assert_eq!(
            page.json["items"][0]["data"]["name"], "Ada",
            "creation order"
        );
        assert!(page.json["items"][0]["created_at"].is_string(), "{page}");
        let cursor = page.json["next_cursor"].as_str().expect("a next page");
        let rest = server
            .admin(Method::GET, &format!("{docs}?cursor={cursor}"), None)
            .await;
        assert_eq!(rest.json["items"][0]["data"]["name"], "Linus", "{rest}");
        assert_eq!(rest.json["next_cursor"], Value::Null);

        let filter =
            "%7B%22age%22%3A%7B%22%24gt%22%3A9%7D%2C%22%24sort%22%3A%7B%22age%22%3A%22asc%22%7D%7D";
        let older = server
            .admin(Method::GET, &format!("{docs}?filter={filter}"), None)
            .await;
        let names: Vec<&Value> = older.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|item| &item["data"]["name"])
            .collect();
        assert_eq!(names, [&json!("Linus"), &json!("Ada")], "{older}");
        let found = server
            .admin(
                Method::POST,
                &format!("{docs}/find"),
                Some(json!({"filter": {"name": "Grace"}})),
            )
            .await;
        assert_eq!(found.json["items"][0]["data"]["age"], 9, "{found}");

        for (answer, needle) in [
            (
                server
                    .admin(
                        Method::POST,
                        &format!("{docs}/find"),
                        Some(json!({"filter": {"$or": []}})),
                    )
                    .await,
                "'$or' is not supported",
            ),
            (
                server
                    .admin(Method::GET, &format!("{docs}?filter=%7Bnope"), None)
                    .await,
                "the filter is not JSON",
            ),
            (
                server
                    .admin(
                        Method::GET,
                        &format!("{docs}?filter={filter}&limit=1"),
                        None,
                    )
                    .await,
                "a filter says how many documents it wants",
            ),
            (
                server
                    .admin(Method::GET, &format!("{docs}?prefix=a"), None)
                    .await,
                "documents are listed by id",
            ),
            (
                server
                    .admin(
                        Method::GET,
                        "/api/v1/admin/apps/{app}/docs/.bad"
                            .replace("{app}", &app)
                            .as_str(),
                        None,
                    )
                    .await,
                "is not a collection name",
            ),
            (
                server
                    .admin(
                        Method::POST,
                        &format!("{docs}/indexes"),
                        Some(json!({"path": "a..b"})),
                    )
                    .await,
                "is not a field path",
            ),
            (
                server
                    .admin(
                        Method::POST,
                        &format!("/api/v1/admin/apps/{app}/triggers/docs"),
                        Some(
                            json!({"script_id": script, "collection": "users", "ops": ["upsert"]}),
                        ),
                    )
                    .await,
                "'upsert' is not a document operation",
            ),
            (
                server
                    .admin(
                        Method::POST,
                        &format!("/api/v1/admin/apps/{app}/triggers/docs"),
                        Some(json!({"script_id": script, "collection": "users", "fields": []})),
                    )
                    .await,
                "name 1 to 32 field paths",
            ),
        ] {
            assert_eq!(answer.status, 400, "{answer}");
            assert!(answer.text.contains(needle), "{needle}: {answer}");
        }

        let declared = server
            .admin(
                Method::POST,
                &format!("{docs}/indexes"),
                Some(json!({"path": "age"})),
            )
            .await;
        assert_eq!(declared.status, 201, "{declared}");
        assert_eq!(declared.json["path"], "age");
        let listed = server
            .admin(Method::GET, &format!("{docs}/indexes"), None)
            .await;
        assert_eq!(listed.json["items"][0]["path"], "age", "{listed}");
        let dropped = server
            .admin(Method::DELETE, &format!("{docs}/indexes/age"), None)
            .await;
        assert_eq!(dropped.status, 204, "{dropped}");
        let again = server
            .admin(Method::DELETE, &format!("{docs}/indexes/age"), None)
            .await;
        assert_eq!(again.status, 404, "{again}");
        assert!(again.text.contains("no index of 'age'"), "{again}");
        let listed = server
            .admin(Method::GET, &format!("{docs}/indexes"), None)
            .await;
        assert_eq!(listed.json["items"], json!([]), "{listed}");

        let trigger = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/apps/{app}/triggers/docs"),
                Some(json!({"script_id": script, "collection": "users", "fields": ["age"]})),
            )
            .await;
        assert_eq!(trigger.status, 201, "{trigger}");
        assert_eq!(trigger.json["kind"], "docs");
        assert_eq!(trigger.json["ops"], json!(["create", "update", "delete"]));
        assert_eq!(trigger.json["fields"], json!(["age"]));

        let kv = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps/{app}/kv/settings?prefix=a:&limit=1"),
                None,
            )
            .await;
        assert_eq!(
            kv.json["items"],
            json!([{"key": "a:1", "value": 1}]),
            "{kv}"
        );
        let cursor = kv.json["next_cursor"].as_str().expect("a next page");
        let kv = server
            .admin(
                Method::GET,
                &format!("/api/v1/admin/apps/{app}/kv/settings?prefix=a:&cursor={cursor}"),
                None,
            )
            .await;
        assert_eq!(
            kv.json["items"],
            json!([{"key": "a:2", "value": 2}]),
            "{kv}"
        );
        Ok(())
    }
);

// #17: the SDK's catalogue, from the engine's registrations, for editors; and a typo'd SDK call
// refused when the script is saved, with where it is and the closest name.
both_backends!(
    the_sdk_catalogue_is_served_and_a_typod_call_is_refused_on_save,
    |store| async move {
        let server = TestServer::start(store).await;
        let anonymous = server.call(Method::GET, "/api/v1/sdk", None, None).await;
        assert_eq!(anonymous.status, 401, "{anonymous}");
        let sdk = server.admin(Method::GET, "/api/v1/sdk", None).await;
        assert_eq!(sdk.status, 200, "{sdk}");
        assert_eq!(
            sdk.json["version"], "1.4",
            "the SDK version of modules: {sdk}"
        );
        let collection = &sdk.json["namespaces"]["kv"][0];
        assert_eq!(collection["name"], "collection", "{sdk}");
        assert_eq!(collection["arguments"], 1);
        assert!(collection["doc"]
            .as_str()
            .is_some_and(|doc| !doc.is_empty()));
        assert!(
            sdk.json["methods"]["DocsCollection"]
                .as_array()
                .is_some_and(|methods| methods.iter().any(|m| m["name"] == "find_one")),
            "{sdk}"
        );

        let app = server
            .admin(
                Method::POST,
                "/api/v1/admin/apps",
                Some(json!({"slug": "shop", "name": "Shop"})),
            )
            .await;
        let app = app.json["id"].as_str().expect("the app").to_owned();
        let refused = server
            .admin(
                Method::POST,
                &format!("/api/v1/admin/apps/{app}/scripts"),
                Some(json!({"name": "typo", "source": "let c = kv::colection(\"c\");"})),
            )
            .await;
        assert_eq!(refused.status, 400, "{refused}");
        assert!(
            refused.text.contains("did you mean kv::collection?"),
            "{refused}"
        );
        Ok(())
    }
);
