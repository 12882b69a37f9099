//! The permission matrix, generated from the admin endpoint table (`picloud_server::admin_endpoints`):
//! every admin endpoint × every kind of caller → the status the capability table implies. An
//! endpoint added to the table without a request here fails `every_endpoint_has_a_request`
//! and the matrix itself. Then the cross-tenant rule: a user or key of app A finds nothing of
//! app B — the same 404 as for an id that never existed.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use picloud_core::exec::HttpRequest;
use picloud_core::{
    ApiKeyId, ApiKeyName, AppId, AppName, AppSlug, Capability, DeadLetterId, ExecutionId,
    JobPayload, Principal, Role, ScriptId, ScriptKind, ScriptName, TriggerDetail, UserId, Username,
};
use picloud_server::{admin_endpoints, Endpoint, Need};
use picloud_store::{
    NewApiKey, NewApp, NewJob, NewRoute, NewScript, NewTrigger, OutboxBatch, Store,
};
use picloud_test_support::both_backends;
use picloud_test_support::server::TestServer;
use reqwest::Method;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// A counter for unique names across cells.
static NEXT: AtomicUsize = AtomicUsize::new(0);

fn next() -> usize {
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The objects one request acts on, made fresh for every cell so that deletes and renames never
/// disturb the next cell.
struct Fixture {
    app: AppId,
    script: String,
    route: String,
    trigger: String,
    /// An unresolved dead letter of the app, for replay and resolve.
    dead_letter: String,
    /// A recorded execution of the app.
    execution: String,
    /// A viewer of the app, for the members endpoints; also the target of the users endpoints.
    target: UserId,
    /// A key of the caller's own user, for `DELETE /api-keys/{key_id}`.
    own_key: ApiKeyId,
}

/// The users whose roles the matrix exercises.
struct Cast {
    viewer: UserId,
    editor: UserId,
    owner: UserId,
    /// Owns every fixture app too; its keys carry the single scopes.
    keyholder: UserId,
}

/// One kind of caller: a name for messages, the bearer credential (`None`: no credentials), the
/// user it acts for, and whether it can authenticate at all.
struct Caller {
    name: String,
    token: Option<String>,
    user: UserId,
    valid: bool,
}

fn username(value: &str) -> Username {
    Username::parse(value).expect("a valid username")
}

fn sha256(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

async fn fixture(store: &Arc<dyn Store>, cast: &Cast, caller_user: UserId) -> Fixture {
    let n = next();
    let app = store
        .create_app(&NewApp {
            slug: AppSlug::parse(&format!("m{n}")).expect("a slug"),
            name: AppName::parse("matrix").expect("a name"),
            expose_errors: false,
        })
        .await
        .expect("the fixture app");
    let target = store
        .create_user(&username(&format!("target{n}")), "not-a-hash", false)
        .await
        .expect("the target user");
    for (user, role) in [
        (cast.viewer, Role::Viewer),
        (cast.editor, Role::Editor),
        (cast.owner, Role::Owner),
        (cast.keyholder, Role::Owner),
        (target.id, Role::Viewer),
    ] {
        store
            .set_membership(app.id, user, role)
            .await
            .expect("a membership");
    }
    let script = |name: &str| NewScript {
        app_id: app.id,
        name: ScriptName::parse(name, ScriptKind::Endpoint).expect("a script name"),
        kind: ScriptKind::Endpoint,
        source: r#""ok""#.to_owned(),
        imports: Vec::new(),
    };
    let free = store
        .create_script(&script("free"))
        .await
        .expect("a script");
    let routed = store
        .create_script(&script("routed"))
        .await
        .expect("a script");
    let route = store
        .create_route(&NewRoute {
            app_id: app.id,
            script_id: routed.id,
            method: picloud_core::RouteMethod::parse("GET").expect("a method"),
            path: picloud_core::RoutePath::parse("/r").expect("a path"),
            dispatch_mode: picloud_core::DispatchMode::Sync,
            keep_headers: picloud_core::KeptHeaders::default(),
        })
        .await
        .expect("a route");
    let own_key = store
        .create_api_key(&NewApiKey {
            user_id: caller_user,
            name: ApiKeyName::parse("own").expect("a key name"),
            prefix: format!("f{n:07}"),
            secret_hash: vec![0; 32],
            scopes: vec![picloud_core::Scope::AppRead],
            app_id: None,
            expires_at: None,
        })
        .await
        .expect("a key of the caller");
    let trigger = store
        .create_trigger(&NewTrigger {
            app_id: app.id,
            // The routed script: `free` must stay deletable for the script endpoints' cells.
            script_id: routed.id,
            detail: TriggerDetail::DeadLetter,
        })
        .await
        .expect("a trigger");
    let dead_letter = dead_letter(store, app.id, free.id).await;
    let execution = ExecutionId::new();
    let record = picloud_core::records::ExecutionRecord::fixture(app.id, free.id, execution, 1);
    let mut writer = store.execution_writer("matrix").expect("a writer");
    tokio::task::spawn_blocking(move || writer.write(&[record]))
        .await
        .expect("the write ran")
        .expect("an execution record");
    // A declared document index, for the cell that withdraws it.
    store
        .declare_doc_index(
            app.id,
            &picloud_core::CollectionName::parse("users").expect("a collection"),
            &picloud_core::docs::FieldPath::parse("email").expect("a path"),
        )
        .await
        .expect("an index");
    Fixture {
        app: app.id,
        script: free.id.to_string(),
        route: route.id.to_string(),
        trigger: trigger.id.to_string(),
        dead_letter: dead_letter.to_string(),
        execution: execution.to_string(),
        target: target.id,
        own_key: own_key.id,
    }
}

/// A dead letter of `script`, made the way the dispatcher makes one: an async job claimed and
/// failed for good. The test server's dispatcher may claim the job first (its commit wakes it):
/// then that job runs, and another is made.
async fn dead_letter(store: &Arc<dyn Store>, app_id: AppId, script_id: ScriptId) -> DeadLetterId {
    loop {
        let id = ExecutionId::new();
        store
            .commit_outbox(&OutboxBatch {
                enqueue: vec![NewJob {
                    id,
                    app_id,
                    script_id,
                    payload: JobPayload::Http {
                        request: HttpRequest::default(),
                    },
                    trigger_depth: 0,
                }],
                durable: true,
                ..OutboxBatch::default()
            })
            .await
            .expect("an outbox job");
        let claimed = store
            .claim_jobs(&format!("matrix-{}", next()), 100, u32::MAX, &[], 60_000)
            .await
            .expect("a claim");
        if let Some(job) = claimed.iter().find(|job| job.id == id) {
            return store
                .dead_letter_job(job.attempt_ref(), "it failed")
                .await
                .expect("the job is dead-lettered")
                .expect("the attempt is current")
                .id;
        }
    }
}

/// The request that exercises `spec` on `fixture`: its path with the ids filled in, and a valid
/// body. `None` for an endpoint this test does not know yet — which fails the test.
fn request(spec: &Endpoint, fixture: &Fixture) -> Option<(String, Option<Value>)> {
    let n = next();
    let body = match (spec.method.as_str(), spec.path) {
        ("GET" | "DELETE", _) => None,
        ("POST", "/api/v1/admin/apps") => Some(json!({"slug": format!("n{n}"), "name": "new"})),
        ("PATCH", "/api/v1/admin/apps/{app_id}") => Some(json!({"name": "renamed"})),
        ("POST", "/api/v1/admin/apps/{app_id}/scripts") => {
            Some(json!({"name": format!("s{n}"), "source": r#""hi""#}))
        }
        ("PUT", "/api/v1/admin/scripts/{script_id}") => Some(json!({"source": r#""changed""#})),
        ("POST", "/api/v1/admin/scripts/{script_id}/execute") => Some(json!({})),
        ("POST", "/api/v1/admin/scripts/{script_id}/routes") => {
            Some(json!({"method": "GET", "path": format!("/n{n}")}))
        }
        ("PUT", "/api/v1/admin/apps/{app_id}/members/{user_id}") => Some(json!({"role": "editor"})),
        ("POST", "/api/v1/admin/apps/{app_id}/triggers/kv") => Some(
            json!({"script_id": fixture.script, "collection": format!("c{n}"), "ops": ["set"]}),
        ),
        ("POST", "/api/v1/admin/apps/{app_id}/triggers/docs") => Some(
            json!({"script_id": fixture.script, "collection": format!("c{n}"), "fields": ["a.b"]}),
        ),
        ("POST", "/api/v1/admin/apps/{app_id}/docs/{collection}/find") => {
            Some(json!({"filter": {"n": {"$gt": 1}, "$sort": {"n": "desc"}}}))
        }
        ("POST", "/api/v1/admin/apps/{app_id}/docs/{collection}/indexes") => {
            Some(json!({"path": format!("f{n}.email")}))
        }
        ("POST", "/api/v1/admin/apps/{app_id}/triggers/dead_letter") => {
            Some(json!({"script_id": fixture.script}))
        }
        (
            "POST",
            "/api/v1/admin/dead-letters/{dead_letter_id}/replay"
            | "/api/v1/admin/dead-letters/{dead_letter_id}/resolve",
        ) => None,
        ("POST", "/api/v1/admin/api-keys") => Some(json!({"name": "k", "scopes": ["app:read"]})),
        ("POST", "/api/v1/admin/users") => {
            Some(json!({"username": format!("new{n}"), "password": "a new password"}))
        }
        ("PATCH", "/api/v1/admin/users/{user_id}") => Some(json!({"disabled": true})),
        ("PUT", "/api/v1/admin/users/{user_id}/password") => {
            Some(json!({"password": "another password"}))
        }
        _ => return None,
    };
    let path = spec
        .path
        .replace("{app_id}", &fixture.app.to_string())
        .replace("{script_id}", &fixture.script)
        .replace("{route_id}", &fixture.route)
        .replace("{trigger_id}", &fixture.trigger)
        .replace("{dead_letter_id}", &fixture.dead_letter)
        .replace("{execution_id}", &fixture.execution)
        .replace("{user_id}", &fixture.target.to_string())
        .replace("{key_id}", &fixture.own_key.to_string())
        .replace("{collection}", "users")
        .replace("{path}", "email");
    Some((path, body))
}

/// What the capability table says `principal` gets from `spec` on `app`: the success status, 403
/// when it may see the app but lacks the capability, 404 when it may not even see the app.
fn expected(spec: &Endpoint, principal: Option<&Principal>, app: AppId) -> u16 {
    let Some(principal) = principal else {
        return 401;
    };
    match spec.need {
        Need::Authenticated => spec.ok.as_u16(),
        Need::Capability(kind) if principal.can(kind.on(app)) => spec.ok.as_u16(),
        Need::Capability(kind) if !kind.is_app_scoped() => 403,
        Need::Capability(_) if principal.can(Capability::AppRead(app)) => 403,
        Need::Capability(_) => 404,
    }
}

async fn create_user(server: &TestServer, name: &str) -> UserId {
    server
        .platform
        .auth()
        .create_user(&username(name), "pw of the cast", false)
        .await
        .expect("a cast member")
        .id
}

/// A key of `token`'s user, made through the API; returns the whole key.
async fn api_key(server: &TestServer, token: &str, scopes: &[&str], app: Option<AppId>) -> String {
    let mut body = json!({"name": "matrix", "scopes": scopes});
    if let Some(app) = app {
        body["app_id"] = json!(app.to_string());
    }
    let answer = server
        .call(
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(token),
            Some(body),
        )
        .await;
    assert_eq!(answer.status, 201, "a key with {scopes:?}: {answer}");
    answer.json["secret"]
        .as_str()
        .expect("the secret")
        .to_owned()
}

// Every endpoint of the table has a request in this test: adding an endpoint means adding it here.
#[test]
fn every_endpoint_has_a_request() {
    let fixture = Fixture {
        app: AppId::new(),
        script: "s".into(),
        route: "r".into(),
        trigger: "t".into(),
        dead_letter: "d".into(),
        execution: "e".into(),
        target: UserId::new(),
        own_key: ApiKeyId::new(),
    };
    for spec in admin_endpoints() {
        assert!(
            request(spec, &fixture).is_some(),
            "{} {} has no request in the permission matrix; add one",
            spec.method,
            spec.path
        );
    }
}

// The whole matrix: every admin endpoint × {no credentials, an expired session, a revoked key,
// each role, a user without a role, the instance admin, each single scope, a key bound to
// another app} answers what the capability table implies.
both_backends!(
    every_admin_endpoint_answers_every_caller_as_the_capability_table_says,
    |store| async move {
        let server = TestServer::start(store.clone()).await;
        let cast = Cast {
            viewer: create_user(&server, "viewer").await,
            editor: create_user(&server, "editor").await,
            owner: create_user(&server, "owner").await,
            keyholder: create_user(&server, "keyholder").await,
        };
        let outsider = create_user(&server, "outsider").await;
        let admin_id = server
            .platform
            .auth()
            .authenticate(&server.api.token)
            .await
            .expect("store")
            .expect("the admin")
            .user_id;
        let keyholder_token = server.login("keyholder", "pw of the cast").await;
        let other_app = server
            .platform
            .apps()
            .create(
                &server
                    .platform
                    .auth()
                    .authenticate(&keyholder_token)
                    .await
                    .expect("store")
                    .expect("the keyholder"),
                &NewApp {
                    slug: AppSlug::parse("other").expect("a slug"),
                    name: AppName::parse("other").expect("a name"),
                    expose_errors: false,
                },
            )
            .await
            .expect("the other app");

        let expired = "an-expired-session-token-of-the-matrix";
        store
            .create_session(&sha256(expired), cast.owner, -1_000)
            .await
            .expect("an expired session");
        let revoked = api_key(&server, &keyholder_token, &["admin"], None).await;
        let revoked_id = server
            .platform
            .auth()
            .authenticate(&revoked)
            .await
            .expect("store")
            .map(|p| match p.credential {
                picloud_core::Credential::ApiKey { key_id, .. } => key_id,
                picloud_core::Credential::Session => panic!("a key principal"),
            })
            .expect("the key works before it is revoked");
        let answer = server
            .call(
                Method::DELETE,
                &format!("/api/v1/admin/api-keys/{revoked_id}"),
                Some(&keyholder_token),
                None,
            )
            .await;
        assert_eq!(answer.status, 204, "revoking: {answer}");

        let mut callers = vec![
            Caller {
                name: "no credentials".into(),
                token: None,
                user: cast.keyholder,
                valid: false,
            },
            Caller {
                name: "an expired session".into(),
                token: Some(expired.into()),
                user: cast.owner,
                valid: false,
            },
            Caller {
                name: "a revoked key".into(),
                token: Some(revoked),
                user: cast.keyholder,
                valid: false,
            },
            Caller {
                name: "the instance admin".into(),
                token: Some(server.api.token.clone()),
                user: admin_id,
                valid: true,
            },
        ];
        for (name, user) in [
            ("viewer", cast.viewer),
            ("editor", cast.editor),
            ("owner", cast.owner),
            ("outsider", outsider),
        ] {
            callers.push(Caller {
                name: format!("the {name}"),
                token: Some(server.login(name, "pw of the cast").await),
                user,
                valid: true,
            });
        }
        for scope in picloud_core::Scope::ALL {
            callers.push(Caller {
                name: format!("a key with only {scope}"),
                token: Some(api_key(&server, &keyholder_token, &[scope.as_str()], None).await),
                user: cast.keyholder,
                valid: true,
            });
        }
        let all: Vec<&str> = picloud_core::Scope::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        callers.push(Caller {
            name: "a key bound to another app".into(),
            token: Some(api_key(&server, &keyholder_token, &all, Some(other_app.id)).await),
            user: cast.keyholder,
            valid: true,
        });

        let mut checked = 0;
        let mut failures = Vec::new();
        for spec in admin_endpoints() {
            for caller in &callers {
                let fixture = fixture(&store, &cast, caller.user).await;
                let principal = match (&caller.token, caller.valid) {
                    (Some(token), true) => Some(
                        server
                            .platform
                            .auth()
                            .authenticate(token)
                            .await
                            .expect("store")
                            .unwrap_or_else(|| panic!("{} authenticates", caller.name)),
                    ),
                    _ => None,
                };
                let want = expected(spec, principal.as_ref(), fixture.app);
                let (path, body) = request(spec, &fixture).expect("every endpoint has a request");
                let answer = server
                    .call(spec.method.clone(), &path, caller.token.as_deref(), body)
                    .await;
                checked += 1;
                if answer.status != want {
                    failures.push(format!(
                        "{} {} as {}: expected {want}, got {answer}",
                        spec.method, spec.path, caller.name
                    ));
                }
            }
        }
        assert!(
            failures.is_empty(),
            "{} of {checked} cells differ:\n{}",
            failures.len(),
            failures.join("\n")
        );
        assert_eq!(
            checked,
            admin_endpoints().len() * 16,
            "every endpoint met every caller"
        );
    }
);

// The table itself, spot-checked by hand so the matrix does not only agree with itself.
both_backends!(
    roles_and_scopes_open_what_the_documentation_says,
    |store| async move {
        let server = TestServer::start(store.clone()).await;
        let app = server.api.create_app("spot").await;
        let script = server.api.create_script(&app, "main", r#""ok""#).await;
        let viewer = create_user(&server, "viewer").await;
        let answer = server
            .admin(
                Method::PUT,
                &format!("/api/v1/admin/apps/{app}/members/{viewer}"),
                Some(json!({"role": "viewer"})),
            )
            .await;
        assert_eq!(answer.status, 200, "the admin adds a viewer: {answer}");
        let token = server.login("viewer", "pw of the cast").await;
        let read = server
            .call(
                Method::GET,
                &format!("/api/v1/admin/scripts/{script}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(read.status, 200, "a viewer reads scripts: {read}");
        let write = server
            .call(
                Method::PUT,
                &format!("/api/v1/admin/scripts/{script}"),
                Some(&token),
                Some(json!({"source": "1"})),
            )
            .await;
        assert_eq!(
            (write.status, write.code()),
            (403, "forbidden"),
            "a viewer may not write: {write}"
        );

        let app_id = AppId::parse(&app).expect("an app id");
        let script_read = api_key(&server, &server.api.token, &["script:read"], Some(app_id)).await;
        let run = server
            .call(
                Method::POST,
                &format!("/api/v1/admin/scripts/{script}/execute"),
                Some(&script_read),
                Some(json!({})),
            )
            .await;
        assert_eq!(run.status, 200, "script:read runs a test: {run}");
        let members = server
            .call(
                Method::PUT,
                &format!("/api/v1/admin/apps/{app}/members/{viewer}"),
                Some(&script_read),
                Some(json!({"role": "owner"})),
            )
            .await;
        assert_eq!(
            members.status, 403,
            "script:read manages no members: {members}"
        );
        let users = server
            .call(Method::GET, "/api/v1/admin/users", Some(&script_read), None)
            .await;
        assert_eq!(
            users.status, 403,
            "a bound key is never instance-wide: {users}"
        );
    }
);

// A user and a key of app A try every endpoint on app B's objects by id: nothing succeeds, and
// the answer is the very one an id that never existed gets — no existence leak.
both_backends!(
    a_tenant_finds_nothing_of_another_tenants_app,
    |store| async move {
        let server = TestServer::start(store.clone()).await;
        let alice = create_user(&server, "alice").await;
        let bob = create_user(&server, "bob").await;
        let alice_token = server.login("alice", "pw of the cast").await;
        let bob_token = server.login("bob", "pw of the cast").await;
        let answer = server
            .call(
                Method::POST,
                "/api/v1/admin/apps",
                Some(&alice_token),
                Some(json!({"slug": "alpha", "name": "A"})),
            )
            .await;
        assert_eq!(answer.status, 201, "alice makes her app: {answer}");
        let all: Vec<&str> = picloud_core::Scope::ALL
            .iter()
            .map(|s| s.as_str())
            .collect();
        let alice_key = api_key(&server, &alice_token, &all, None).await;

        let cast = Cast {
            viewer: bob,
            editor: bob,
            owner: bob,
            keyholder: bob,
        };
        let bobs = fixture(&store, &cast, bob).await;
        let ghost = Fixture {
            app: AppId::new(),
            script: picloud_core::ScriptId::new().to_string(),
            route: picloud_core::RouteId::new().to_string(),
            trigger: picloud_core::TriggerId::new().to_string(),
            dead_letter: DeadLetterId::new().to_string(),
            execution: ExecutionId::new().to_string(),
            target: UserId::new(),
            own_key: ApiKeyId::new(),
        };
        let _ = bob_token;
        for (who, token) in [
            ("alice's session", &alice_token),
            ("alice's key", &alice_key),
        ] {
            for spec in admin_endpoints() {
                let (path, body) = request(spec, &bobs).expect("a request");
                let answer = server
                    .call(spec.method.clone(), &path, Some(token), body.clone())
                    .await;
                match spec.need {
                    Need::Capability(kind) if kind.is_app_scoped() => {
                        let (ghost_path, ghost_body) = request(spec, &ghost).expect("a request");
                        let missing = server
                            .call(spec.method.clone(), &ghost_path, Some(token), ghost_body)
                            .await;
                        assert_eq!(
                            (answer.status, answer.code()),
                            (404, "not_found"),
                            "{who}: {} {} on bob's app: {answer}",
                            spec.method,
                            spec.path
                        );
                        assert_eq!(
                            (answer.status, answer.code()),
                            (missing.status, missing.code()),
                            "{who}: {} {} answers bob's objects as if they did not exist",
                            spec.method,
                            spec.path
                        );
                    }
                    _ => assert!(
                        !(200..300).contains(&answer.status)
                            || !path.contains(&bobs.app.to_string()),
                        "{who}: {} {} must not succeed on bob's objects: {answer}",
                        spec.method,
                        spec.path
                    ),
                }
            }
        }
        let listed = server
            .call(Method::GET, "/api/v1/admin/apps", Some(&alice_key), None)
            .await;
        let ids: Vec<_> = listed.json["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|a| a["id"].clone())
            .collect();
        assert!(
            !ids.contains(&json!(bobs.app.to_string())),
            "bob's app is not in alice's list: {listed}"
        );
        assert_eq!(
            listed.json["items"][0]["slug"],
            json!("alpha"),
            "her own app is: {listed}"
        );
        let keys = server
            .call(
                Method::GET,
                "/api/v1/admin/api-keys",
                Some(&alice_token),
                None,
            )
            .await;
        assert!(
            keys.json["items"]
                .as_array()
                .expect("items")
                .iter()
                .all(|k| k["user_id"] == json!(alice.to_string())),
            "alice lists only her own keys: {keys}"
        );
        let revoke = server
            .call(
                Method::DELETE,
                &format!("/api/v1/admin/api-keys/{}", bobs.own_key),
                Some(&alice_token),
                None,
            )
            .await;
        assert_eq!(
            revoke.status, 404,
            "bob's key is not found for alice: {revoke}"
        );
    }
);
