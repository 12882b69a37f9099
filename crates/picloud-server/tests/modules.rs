//! Modules through the admin API and the public routes, on both backends (#17): an endpoint
//! imports a module of its app and the next request after a save runs the new version; what a
//! script imports is checked when it is saved (a missing module, a cycle, itself, another app's
//! module) and recorded, so `GET` shows `imports` / `imported_by` and a module others import is
//! not deleted or renamed without `?force=true`.

use picloud_test_support::both_backends;
use picloud_test_support::server::TestServer;
use reqwest::Method;
use serde_json::{json, Value};

fn script_path(id: &str) -> String {
    format!("/api/v1/admin/scripts/{id}")
}

/// The shared validation library of docs/sdk.md ("Modules"), word for word.
const CHECKS: &str = r#"const MAX_NAME = 40;

// The trimmed name, or a sentence the caller can act on.
fn name(value) {
    if type_of(value) != "string" { throw "name must be a string"; }
    let name = value;
    name.trim();                       // trim() changes the string in place
    if name.len() == 0 || name.len() > global::MAX_NAME {
        throw `name must be 1 to ${global::MAX_NAME} characters`;
    }
    name
}

fn email(value) {
    if type_of(value) != "string" || !regex::is_match("^[^@\\s]+@[^@\\s]+$", value) {
        throw "email must look like someone@example.com";
    }
    value.to_lower()
}"#;

/// The endpoint of docs/sdk.md that uses it, word for word.
const SIGNUP: &str = r#"import "checks" as check;

let body = ctx.request.json;
let user = #{};
try {
    user = #{ name: check::name(body.name), email: check::email(body.email) };
} catch (message) {
    return response(400, #{ error: message });
}
docs::collection("users").create(user);
response(201, user)"#;

both_backends!(
    an_endpoint_imports_a_module_and_runs_each_saved_version_at_once,
    |store| async move {
        let server = TestServer::start(store).await;
        let app = server.api.create_app("shop").await;
        let checks = server.api.create_module(&app, "checks", CHECKS).await;
        server
            .api
            .add_route(&app, "signup", SIGNUP, "POST", "/signup")
            .await;
        let signup = |body: Value| {
            let server = &server;
            async move {
                server
                    .call(Method::POST, "/shop/signup", None, Some(body))
                    .await
            }
        };
        let answer = signup(json!({"name": "  Ada ", "email": "Ada@Example.com"})).await;
        assert_eq!(
            (answer.status, answer.json.clone()),
            (201, json!({"name": "Ada", "email": "ada@example.com"})),
            "{answer}"
        );
        let answer = signup(json!({"name": 42, "email": "a@b.c"})).await;
        assert_eq!(answer.status, 400, "{answer}");
        assert_eq!(answer.json["error"], "name must be a string");
        let answer = signup(json!({"name": "Ada", "email": "nope"})).await;
        assert_eq!(
            answer.json["error"],
            "email must look like someone@example.com"
        );

        let saved = server
            .admin(
                Method::PUT,
                &script_path(&checks),
                Some(json!({"source": CHECKS.replace("name must be a string", "name: text, please")})),
            )
            .await;
        assert_eq!(saved.status, 200, "{saved}");
        let answer = signup(json!({"name": 42, "email": "a@b.c"})).await;
        assert_eq!(
            answer.json["error"], "name: text, please",
            "the request right after the save runs the new version: {answer}"
        );
        Ok(())
    }
);

both_backends!(
    imports_are_checked_when_a_script_is_saved,
    |store| async move {
        let server = TestServer::start(store).await;
        let app = server.api.create_app("shop").await;
        let other = server.api.create_app("other").await;
        server
            .api
            .create_module(&other, "theirs", "fn f() { 1 }")
            .await;
        let a = server.api.create_module(&app, "a", "fn f() { 1 }").await;
        server
            .api
            .create_module(&app, "format", "fn f() { 1 }")
            .await;
        server
            .api
            .create_module(&app, "b", "import \"a\" as a;\nfn g() { a::f() }")
            .await;
        let scripts = format!("/api/v1/admin/apps/{app}/scripts");
        for (what, method, path, body, line, message) in [
            (
                "a missing module, with the closest name",
                Method::POST,
                scripts.clone(),
                json!({"name": "e1", "source": "let x = 1;\nimport \"formt\" as f;\nf::f()"}),
                2,
                "line 2: cannot import 'formt': this app has no module of that name; did you mean \
                 'format'?",
            ),
            (
                "another app's module",
                Method::POST,
                scripts.clone(),
                json!({"name": "e2", "source": "import \"theirs\" as t;\nt::f()"}),
                1,
                "line 1: cannot import 'theirs': this app has no module of that name",
            ),
            (
                "a module importing itself",
                Method::POST,
                scripts.clone(),
                json!({"name": "me", "kind": "module", "source": "fn f() { 1 }\nimport \"me\" as me;"}),
                2,
                "line 2: import cycle: me → me; a module cannot import itself",
            ),
            (
                "a cycle through another module",
                Method::PUT,
                script_path(&a),
                json!({"source": "import \"b\" as b;\nfn f() { 1 }"}),
                1,
                "line 1: import cycle: a → b → a; a module cannot import itself, directly or \
                 through others",
            ),
            (
                "a module with a top-level call",
                Method::POST,
                scripts.clone(),
                json!({"name": "c", "kind": "module", "source": "fn f() { 1 }\nf();"}),
                2,
                "line 2: a module may only contain `fn` definitions",
            ),
            (
                "an unknown SDK function",
                Method::POST,
                scripts.clone(),
                json!({"name": "e3", "source": "json::parze(\"1\")"}),
                1,
                "json::parze is not a function of json; did you mean json::parse?",
            ),
        ] {
            let answer = server.admin(method, &path, Some(body)).await;
            assert_eq!(answer.status, 400, "{what}: {answer}");
            assert_eq!(answer.code(), "invalid_script", "{what}: {answer}");
            assert!(
                answer.json["error"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(message)),
                "{what}: the message contains '{message}': {answer}"
            );
            assert_eq!(answer.json["error"]["line"], line, "{what}: {answer}");
        }
        let reserved = server
            .admin(
                Method::POST,
                &scripts,
                Some(json!({"name": "kv", "kind": "module", "source": "fn f() { 1 }"})),
            )
            .await;
        assert_eq!(reserved.status, 400, "a reserved name: {reserved}");
        Ok(())
    }
);

both_backends!(
    a_module_that_others_import_is_not_deleted_or_renamed_without_force,
    |store| async move {
        let server = TestServer::start(store).await;
        let app = server.api.create_app("shop").await;
        let util = server
            .api
            .create_module(&app, "util", "fn double(x) { x * 2 }")
            .await;
        let main = server
            .api
            .create_script(&app, "main", "import \"util\" as u;\nu::double(21)")
            .await;
        server.api.create_route(&main, "GET", "/").await;
        let lib = server
            .api
            .create_module(
                &app,
                "lib",
                "import \"util\" as u;\nfn quad(x) { u::double(u::double(x)) }",
            )
            .await;

        let shown = server.admin(Method::GET, &script_path(&util), None).await;
        assert_eq!(shown.status, 200, "{shown}");
        assert_eq!(shown.json["imports"], json!([]));
        assert_eq!(
            shown.json["imported_by"],
            json!([{"id": lib, "name": "lib"}, {"id": main, "name": "main"}]),
            "{shown}"
        );
        let shown = server.admin(Method::GET, &script_path(&main), None).await;
        assert_eq!(
            shown.json["imports"],
            json!([{"id": util, "name": "util"}]),
            "{shown}"
        );

        let refused = server
            .admin(Method::DELETE, &script_path(&util), None)
            .await;
        assert_eq!(refused.status, 409, "{refused}");
        assert!(
            refused.text.contains("'lib', 'main'") && refused.text.contains("?force=true"),
            "the refusal names the importers and the way out: {refused}"
        );
        let renamed = server
            .admin(
                Method::PUT,
                &script_path(&util),
                Some(json!({"name": "utils"})),
            )
            .await;
        assert_eq!(
            renamed.status, 409,
            "a rename would break them too: {renamed}"
        );
        let made_endpoint = server
            .admin(
                Method::PUT,
                &script_path(&util),
                Some(json!({"kind": "endpoint"})),
            )
            .await;
        assert_eq!(made_endpoint.status, 409, "{made_endpoint}");
        let bad_flag = server
            .admin(
                Method::DELETE,
                &format!("{}?force=maybe", script_path(&util)),
                None,
            )
            .await;
        assert_eq!(bad_flag.status, 400, "{bad_flag}");
        assert!(
            bad_flag.text.contains("force") && bad_flag.text.contains("`true` or `false`"),
            "the sentence names the parameter and what it takes: {bad_flag}"
        );

        assert_eq!(server.get("/shop/").await.text, "42", "still imported");
        // An importer that stops importing it frees it.
        let saved = server
            .admin(
                Method::PUT,
                &script_path(&lib),
                Some(json!({"source": "fn quad(x) { x * 4 }"})),
            )
            .await;
        assert_eq!(saved.status, 200, "{saved}");
        let shown = server.admin(Method::GET, &script_path(&util), None).await;
        assert_eq!(
            shown.json["imported_by"],
            json!([{"id": main, "name": "main"}]),
            "{shown}"
        );

        let forced = server
            .admin(
                Method::DELETE,
                &format!("{}?force=true", script_path(&util)),
                None,
            )
            .await;
        assert_eq!(forced.status, 204, "{forced}");
        let shown = server.admin(Method::GET, &script_path(&main), None).await;
        assert_eq!(
            shown.json["imports"],
            json!([]),
            "the deleted module's edges went with it"
        );
        let answer = server.get("/shop/").await;
        assert_eq!(answer.status, 500, "the importer now fails: {answer}");
        Ok(())
    }
);

// The changelog's trigger tightening: every kind of trigger refuses a script that does not
// exist, one of another app, and a module — each with a sentence naming `script_id`.
both_backends!(
    a_trigger_needs_an_endpoint_of_its_own_app,
    |store| async move {
        let server = TestServer::start(store).await;
        let app = server.api.create_app("shop").await;
        let other = server.api.create_app("other").await;
        let module = server.api.create_module(&app, "util", "fn f() { 1 }").await;
        let theirs = server.api.create_script(&other, "handler", "1").await;
        let missing = "0190f5b4-0000-7000-8000-000000000000";
        for kind in ["kv", "docs", "dead_letter"] {
            let path = format!("/api/v1/admin/apps/{app}/triggers/{kind}");
            for (what, script_id, message) in [
                ("a missing script", missing, "no script with the id"),
                (
                    "another app's script",
                    theirs.as_str(),
                    "no script with the id",
                ),
                (
                    "a module",
                    module.as_str(),
                    "'util' is a module script; a trigger needs an endpoint script",
                ),
            ] {
                let body = match kind {
                    "dead_letter" => json!({"script_id": script_id}),
                    _ => json!({"script_id": script_id, "collection": "c"}),
                };
                let answer = server.admin(Method::POST, &path, Some(body)).await;
                assert_eq!(answer.status, 400, "{kind}, {what}: {answer}");
                assert_eq!(
                    answer.json["error"]["field"], "script_id",
                    "{kind}, {what}: {answer}"
                );
                assert!(answer.text.contains(message), "{kind}, {what}: {answer}");
            }
        }
        Ok(())
    }
);
