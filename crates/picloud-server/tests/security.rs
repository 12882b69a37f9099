//! Secrets at rest, CSRF, the slowdown of password guessing, and names that could pass for
//! others, over HTTP on both backends.

use std::time::Duration;

use picloud_orchestrator::{PlatformConfig, ThrottleConfig};
use picloud_store::Backend;
use picloud_test_support::http::Answer;
use picloud_test_support::server::{Settings, TestServer};
use picloud_test_support::ADMIN_PASSWORD;
use picloud_test_support::{both_backends, fresh_store, TestDatabase};
use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};

/// What the database holds of credentials, read with plain SQL: every password hash, session
/// token hash, and API key row (prefix, name, scopes, secret hash).
struct AtRest {
    password_hashes: Vec<String>,
    session_hashes: Vec<Vec<u8>>,
    keys: Vec<(String, String, String, Vec<u8>)>,
}

async fn read_at_rest(database: &TestDatabase) -> AtRest {
    const PASSWORDS: &str = "SELECT password_hash FROM users";
    const SESSIONS: &str = "SELECT token_hash FROM sessions";
    const KEYS: &str = "SELECT prefix, name, scopes, secret_hash FROM api_keys";
    match database.backend() {
        Backend::Sqlite => {
            let path = database.data_dir().join("picloud.db");
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
                .await
                .expect("open the SQLite file");
            AtRest {
                password_hashes: sqlx::query_scalar(PASSWORDS)
                    .fetch_all(&pool)
                    .await
                    .expect("users"),
                session_hashes: sqlx::query_scalar(SESSIONS)
                    .fetch_all(&pool)
                    .await
                    .expect("sessions"),
                keys: sqlx::query_as(KEYS).fetch_all(&pool).await.expect("keys"),
            }
        }
        Backend::Postgres => {
            let url = database.config().database_url.clone().expect("a URL");
            let pool = sqlx::PgPool::connect(&url).await.expect("connect");
            AtRest {
                password_hashes: sqlx::query_scalar(PASSWORDS)
                    .fetch_all(&pool)
                    .await
                    .expect("users"),
                session_hashes: sqlx::query_scalar(SESSIONS)
                    .fetch_all(&pool)
                    .await
                    .expect("sessions"),
                keys: sqlx::query_as(KEYS).fetch_all(&pool).await.expect("keys"),
            }
        }
    }
}

// Passwords, session tokens and API keys are never stored as given: the test reads the tables.
async fn secrets_are_stored_only_as_hashes(backend: Backend) {
    let Some((store, database)) = fresh_store(backend).await else {
        return;
    };
    let server = TestServer::start(store).await;
    let created = server
        .admin(
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(json!({"name": "ci", "scopes": ["script:write"]})),
        )
        .await;
    assert_eq!(created.status, 201, "a key: {created}");
    let secret = created.json["secret"]
        .as_str()
        .expect("the secret, once")
        .to_owned();
    let prefix = created.json["prefix"]
        .as_str()
        .expect("the prefix")
        .to_owned();
    assert!(
        secret.starts_with(&format!("pk_{prefix}_")) && secret.len() >= 3 + 8 + 1 + 43,
        "pk_<prefix>_<32 bytes base64url>: {secret}"
    );
    let listed = server
        .admin(Method::GET, "/api/v1/admin/api-keys", None)
        .await;
    assert!(
        !listed.text.contains(&secret),
        "a list never shows the secret: {listed}"
    );
    assert!(
        listed.json["items"][0].get("secret").is_none(),
        "no secret field in lists: {listed}"
    );

    let at_rest = read_at_rest(&database).await;
    let password = ADMIN_PASSWORD;
    assert!(
        at_rest
            .password_hashes
            .iter()
            .all(|h| h.starts_with("$argon2id$") && !h.contains(password)),
        "passwords are argon2id hashes: {:?}",
        at_rest.password_hashes
    );
    assert!(
        !at_rest.session_hashes.is_empty(),
        "the admin's session is stored"
    );
    assert!(
        at_rest.session_hashes.iter().all(|h| h.len() == 32
            && h.as_slice() != server.api.token.as_bytes()
            && h.as_slice() == Sha256::digest(server.api.token.as_bytes()).as_slice()),
        "a session is stored as the SHA-256 of its token"
    );
    let (stored_prefix, name, scopes, hash) = at_rest.keys.first().expect("the key row").clone();
    assert_eq!(
        (stored_prefix.as_str(), name.as_str(), scopes.as_str()),
        (prefix.as_str(), "ci", "script:write"),
        "the key's visible columns"
    );
    assert_eq!(
        hash.as_slice(),
        Sha256::digest(secret.as_bytes()).as_slice(),
        "the key is stored as its SHA-256"
    );
    let secret_part = secret
        .rsplit_once(&format!("{prefix}_"))
        .expect("a secret part")
        .1;
    for column in [&stored_prefix, &name, &scopes] {
        assert!(
            !column.contains(secret_part),
            "no column holds the secret: {column}"
        );
    }
    assert!(
        !hash
            .windows(secret_part.len().min(hash.len()))
            .any(|w| w == secret_part.as_bytes()),
        "the hash column does not hold the secret either"
    );

    // Right prefix, wrong secret: refused like an unknown key (compared in constant time).
    let forged = format!("pk_{prefix}_{}", "A".repeat(43));
    let answer = server
        .call(Method::GET, "/api/v1/admin/apps", Some(&forged), None)
        .await;
    assert_eq!(
        answer.status, 401,
        "a forged secret with a real prefix: {answer}"
    );
    let answer = server
        .call(Method::GET, "/api/v1/admin/apps", Some(&secret), None)
        .await;
    assert_eq!(answer.status, 200, "the real key works: {answer}");
    let used = server
        .admin(Method::GET, "/api/v1/admin/api-keys", None)
        .await;
    assert!(
        used.json["items"][0]["last_used_at"].is_string(),
        "last_used_at is kept: {used}"
    );
    drop(server);
    drop(database);
}

mod secrets_are_never_stored_in_plain_text {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::secrets_are_stored_only_as_hashes(super::Backend::Sqlite).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::secrets_are_stored_only_as_hashes(super::Backend::Postgres).await;
    }
}

/// Signs in by cookie and returns (token, csrf token, the Cookie header value to send back).
async fn cookie_login(server: &TestServer) -> (String, String, String) {
    let login = server.browser_login(&[]).await;
    let session = format!("picloud_session={}", login.token);
    assert!(
        login
            .set_cookies
            .iter()
            .any(|c| c.starts_with(&format!("{session};"))),
        "the session cookie: {:?}",
        login.set_cookies
    );
    assert!(
        login.set_cookies.iter().all(|c| !c.contains(&login.csrf)),
        "no cookie holds the CSRF token: {:?}",
        login.set_cookies
    );
    (login.token, login.csrf, session)
}

// A cookie-authenticated state-changing request needs the session's CSRF token; reads and bearer
// requests do not.
both_backends!(
    cookie_requests_that_change_state_need_the_csrf_token,
    |store| async move {
        let server = TestServer::start(store).await;
        let (token, csrf, cookie) = cookie_login(&server).await;
        let post = |slug: &'static str, header: Option<String>| {
            let mut request = server
                .api
                .http
                .post(server.url("/api/v1/admin/apps"))
                .header("cookie", cookie.clone())
                .json(&json!({"slug": slug, "name": slug}));
            if let Some(header) = header {
                request = request.header("x-csrf-token", header);
            }
            request.send()
        };
        let answer = Answer::read(post("one", None).await.expect("send")).await;
        assert_eq!(
            (answer.status, answer.code()),
            (403, "csrf_failed"),
            "no CSRF header: {answer}"
        );
        let answer = Answer::read(post("one", Some("forged".into())).await.expect("send")).await;
        assert_eq!(
            (answer.status, answer.code()),
            (403, "csrf_failed"),
            "a wrong token: {answer}"
        );
        let other_session = server.login("admin", ADMIN_PASSWORD).await;
        let answer = Answer::read(
            post(
                "one",
                Some(picloud_orchestrator::auth::csrf_token(&other_session)),
            )
            .await
            .expect("send"),
        )
        .await;
        assert_eq!(answer.status, 403, "another session's CSRF token: {answer}");
        let listed = server.admin(Method::GET, "/api/v1/admin/apps", None).await;
        assert_eq!(
            listed.json["items"],
            json!([]),
            "nothing was created by the refused requests"
        );

        let answer = Answer::read(post("one", Some(csrf.clone())).await.expect("send")).await;
        assert_eq!(answer.status, 201, "with the CSRF token: {answer}");
        let answer = server
            .call(
                Method::POST,
                "/api/v1/admin/apps",
                Some(&token),
                Some(json!({"slug": "two", "name": "t"})),
            )
            .await;
        assert_eq!(
            answer.status, 201,
            "a bearer request needs no CSRF token: {answer}"
        );

        let logout = |header: Option<&str>| {
            let mut request = server
                .api
                .http
                .post(server.url("/api/v1/auth/logout"))
                .header("cookie", cookie.clone());
            if let Some(header) = header {
                request = request.header("x-csrf-token", header);
            }
            request.send()
        };
        let answer = Answer::read(logout(None).await.expect("send")).await;
        assert_eq!(
            answer.status, 403,
            "a cookie logout needs the token too: {answer}"
        );
        let answer = Answer::read(logout(Some(&csrf)).await.expect("send")).await;
        assert_eq!(answer.status, 204, "logged out: {answer}");
        let answer = server
            .call(Method::GET, "/api/v1/admin/apps", Some(&token), None)
            .await;
        assert_eq!(
            answer.status, 401,
            "the session ended server-side: {answer}"
        );
    }
);

fn throttled(max_failures: u32) -> Settings {
    Settings {
        platform: PlatformConfig {
            login_throttle: ThrottleConfig {
                max_failures,
                base_delay: Duration::from_secs(30),
                ..ThrottleConfig::default()
            },
            ..PlatformConfig::default()
        },
        ..Settings::default()
    }
}

async fn login_answer(server: &TestServer, username: &str, password: &str) -> Answer {
    server
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await
}

// Repeated failed logins of one account are refused with 429 and Retry-After — even with the
// right password — while other accounts are unaffected.
both_backends!(
    repeated_failed_logins_of_an_account_are_slowed_down,
    |store| async move {
        let server = TestServer::start_with(store, throttled(3)).await;
        server
            .platform
            .auth()
            .create_user(
                &picloud_core::Username::parse("victim").expect("name"),
                "right password",
                false,
            )
            .await
            .expect("a user");
        for attempt in 1..=3 {
            let answer = login_answer(&server, "victim", "wrong").await;
            assert_eq!(
                answer.status, 401,
                "failure {attempt} is an ordinary refusal: {answer}"
            );
        }
        let answer = login_answer(&server, "victim", "right password").await;
        assert_eq!(
            (answer.status, answer.code()),
            (429, "too_many_requests"),
            "then even the right password waits: {answer}"
        );
        let retry: u64 = answer
            .header("retry-after")
            .and_then(|v| v.parse().ok())
            .expect("Retry-After");
        assert!(
            (1..=30).contains(&retry),
            "Retry-After gives the delay: {retry}"
        );
        let answer = login_answer(&server, "admin", ADMIN_PASSWORD).await;
        assert_eq!(
            answer.status, 200,
            "another account still logs in: {answer}"
        );
    }
);

// Failures across many accounts from one address slow that address down.
both_backends!(
    repeated_failed_logins_from_one_address_are_slowed_down,
    |store| async move {
        let server = TestServer::start_with(store, throttled(2)).await;
        // The address threshold is four times the account's: 8 failures, one per account.
        for i in 0..8 {
            let answer = login_answer(&server, &format!("guess{i}"), "wrong").await;
            assert_eq!(answer.status, 401, "failure {i}: {answer}");
        }
        let answer = login_answer(&server, "admin", ADMIN_PASSWORD).await;
        assert_eq!(
            (answer.status, answer.code()),
            (429, "too_many_requests"),
            "the address waits: {answer}"
        );
    }
);

// A right-to-left override made a name read differently than it was stored (`Pay\u{202e}nimda`
// shows as `Payadmin`). Every name a user or key sets refuses it alike, changes nothing, and the
// refusal does not quote the character raw.
both_backends!(
    names_with_bidi_controls_are_refused_wherever_they_are_set,
    |store| async move {
        let server = TestServer::start(store).await;
        let app = server.api.create_app("named").await;
        let hostile = "Pay\u{202e}nimda";
        let app_path = format!("/api/v1/admin/apps/{app}");
        for (what, method, path, body) in [
            (
                "a new app",
                Method::POST,
                "/api/v1/admin/apps",
                json!({"slug": "spoof", "name": hostile}),
            ),
            (
                "a renamed app",
                Method::PATCH,
                app_path.as_str(),
                json!({"name": hostile}),
            ),
            (
                "a new API key",
                Method::POST,
                "/api/v1/admin/api-keys",
                json!({"name": hostile, "scopes": ["app:read"]}),
            ),
        ] {
            let answer = server.admin(method, path, Some(body)).await;
            assert_eq!(
                (answer.status, answer.code()),
                (400, "invalid_input"),
                "{what} is refused: {}",
                answer.text.escape_debug()
            );
            assert_eq!(
                answer.json["error"]["field"],
                json!("name"),
                "{what}: the field is named: {}",
                answer.text.escape_debug()
            );
            assert!(
                !answer.text.contains('\u{202e}'),
                "{what}: the answer does not carry the override raw: {}",
                answer.text.escape_debug()
            );
        }
        let apps = server.admin(Method::GET, "/api/v1/admin/apps", None).await;
        assert_eq!(
            apps.json["items"]
                .as_array()
                .map(|items| items.iter().map(|a| a["name"].clone()).collect::<Vec<_>>()),
            Some(vec![json!("named")]),
            "no app was created or renamed: {apps}"
        );
        let keys = server
            .admin(Method::GET, "/api/v1/admin/api-keys", None)
            .await;
        assert_eq!(
            keys.json["items"].as_array().map(Vec::len),
            Some(0),
            "no key was created: {keys}"
        );
    }
);
