//! The instance-admin takeover of issue #12, replayed against the real binary with its default
//! listeners: an ordinary user's route tries to capture the admin's session when the admin
//! opens its page, to plant its own session cookie, and to make the admin's browser create an
//! instance admin. Every step must fail, whatever port the admin API is on.
//!
//! The test plays the admin's browser at its most generous: it sends the admin's session cookie
//! to the tenant's page although the cookie's `Path=/api/` keeps a real browser from doing so,
//! and it sends the page's requests with the headers a browser adds (`Origin`,
//! `Sec-Fetch-Site: same-site` — cookies do not respect ports, so another port of the same host
//! is the same site).

use picloud_store::Backend;
use picloud_test_support::binary::{Database, Process};
use picloud_test_support::http::Admin;
use picloud_test_support::on_both_backends;
use picloud_test_support::ADMIN_PASSWORD;
use serde_json::{json, Value};

const MALLORY_PASSWORD: &str = "mallory's long password";

/// The tenant's page: stores every header it was sent, and serves HTML whose script would read
/// `document.cookie` and post a new instance admin to the admin API.
const STEAL: &str = r#"
kv::collection("loot").set("headers", ctx.request.headers);
response(200, "<script>fetch(admin + '/api/v1/admin/users', {method: 'POST', credentials: 'include', body: document.cookie})</script>",
    #{ "content-type": "text/html" })
"#;

/// Tries to plant the tenant's own session in the admin's browser.
const PLANT: &str = r#"
response(200, "welcome", #{ "set-cookie": `picloud_session=${ctx.request.query.s}; Path=/api/` })
"#;

/// What the tenant captured.
const LOOT: &str = r#"kv::collection("loot").get("headers")"#;

async fn a_tenant_page_cannot_take_over_the_instance_admin(backend: Backend) {
    let Some(db) = Database::fresh(backend) else {
        return;
    };
    let server = Process::serve(&db, &[]);
    assert_ne!(
        server.base, server.admin_base,
        "the admin API listens apart from the apps"
    );
    let http = reqwest::Client::new();

    // The admin signs in to the dashboard: a session cookie and, in the answer only, the CSRF
    // token.
    let login = http
        .post(format!("{}/api/v1/auth/login", server.admin_base))
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .expect("login");
    let set_cookies: Vec<String> = login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect();
    let login: Value = login.json().await.expect("login JSON");
    let session = login["token"].as_str().expect("a session").to_owned();
    let csrf = login["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_owned();
    assert!(
        set_cookies.iter().all(|c| !c.contains(&csrf)),
        "no cookie a page could read holds the CSRF token: {set_cookies:?}"
    );
    assert!(
        set_cookies
            .iter()
            .any(|c| c.starts_with("picloud_session=") && c.contains("HttpOnly")),
        "the session cookie is HttpOnly: {set_cookies:?}"
    );
    let admin_cookie = format!("picloud_session={session}");

    // An ordinary user owns an app with the hostile routes.
    let admin = Admin::login(&server.admin_base, ADMIN_PASSWORD).await;
    let (status, mallory) = admin
        .post(
            "/api/v1/admin/users",
            json!({"username": "mallory", "password": MALLORY_PASSWORD}),
        )
        .await;
    assert_eq!(status, 201, "the tenant's account: {mallory}");
    let app_id = admin.create_app("evil").await;
    let mallory_id = mallory["id"].as_str().expect("a user id");
    let response = http
        .put(format!(
            "{}/api/v1/admin/apps/{app_id}/members/{mallory_id}",
            server.admin_base
        ))
        .bearer_auth(&admin.token)
        .json(&json!({"role": "owner"}))
        .send()
        .await
        .expect("membership");
    assert_eq!(response.status(), 200, "mallory owns the app");
    let tenant = Admin::login_as(&server.admin_base, "mallory", MALLORY_PASSWORD).await;
    for (name, source, path) in [
        ("steal", STEAL, "/steal"),
        ("plant", PLANT, "/plant"),
        ("loot", LOOT, "/loot"),
    ] {
        tenant
            .route(&app_id, name, source, ("GET", path), "sync")
            .await;
    }

    // The admin opens the tenant's page, the browser sending every cookie it holds for the host.
    let page = http
        .get(format!("{}/evil/steal", server.base))
        .header("cookie", format!("{admin_cookie}; theme=dark"))
        .header("authorization", format!("Bearer {session}"))
        .send()
        .await
        .expect("the page");
    assert_eq!(page.status(), 200, "the page is served");
    let loot: Value = http
        .get(format!("{}/evil/loot", server.base))
        .send()
        .await
        .expect("loot")
        .json()
        .await
        .expect("loot JSON");
    let captured = loot.to_string();
    assert!(
        !captured.contains(&session) && !captured.contains("picloud_"),
        "the script captured nothing of the admin's session: {captured}"
    );
    assert_eq!(
        loot["cookie"], "theme=dark",
        "the app's own cookies still reach it: {loot}"
    );

    // The page's script posts a new instance admin with the admin's cookie. It cannot read the
    // CSRF token; even given it, the browser names the page's origin.
    let tenant_origin = server.base.clone();
    for (csrf_header, content_type) in [
        (None, "text/plain"),
        (None, "application/json"),
        (Some(csrf.as_str()), "application/json"),
    ] {
        let mut request = http
            .post(format!("{}/api/v1/admin/users", server.admin_base))
            .header("cookie", &admin_cookie)
            .header("origin", &tenant_origin)
            .header("sec-fetch-site", "same-site")
            .header("content-type", content_type)
            .body(r#"{"username": "mallory2", "password": "mallory's long password", "is_instance_admin": true}"#);
        if let Some(csrf) = csrf_header {
            request = request.header("x-csrf-token", csrf);
        }
        let response = request.send().await.expect("the page's write");
        assert_eq!(
            response.status(),
            403,
            "a write from the tenant's page is refused (CSRF token: {}, {content_type})",
            csrf_header.is_some()
        );
    }
    // The same write to the public port, where the page itself lives: no admin API there.
    let response = http
        .post(format!("{}/api/v1/admin/users", server.base))
        .header("cookie", &admin_cookie)
        .header("x-csrf-token", &csrf)
        .json(&json!({"username": "mallory3", "password": MALLORY_PASSWORD}))
        .send()
        .await
        .expect("the write on the public port");
    assert_eq!(response.status(), 404, "the public port has no admin API");

    // The tenant's page cannot plant the tenant's own session in the admin's browser.
    let response = http
        .get(format!("{}/evil/plant?s={}", server.base, tenant.token))
        .send()
        .await
        .expect("plant");
    assert_eq!(response.status(), 500, "the script's answer is refused");
    assert!(
        response.headers().get("set-cookie").is_none(),
        "no PiCloud cookie is set by a script"
    );

    let (status, users) = admin.get("/api/v1/admin/users").await;
    assert_eq!(status, 200, "the admin lists the users: {users}");
    let names: Vec<&str> = users["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|u| u["username"].as_str())
        .collect();
    assert_eq!(
        names.len(),
        2,
        "only the admin and mallory exist: {names:?}"
    );
}
on_both_backends!(
    a_tenant_page_cannot_take_over_the_instance_admin_through_the_real_binary,
    a_tenant_page_cannot_take_over_the_instance_admin
);
