//! The takeover of issue #12 in a real browser: headless Chromium, driven over the DevTools
//! protocol, signs the admin in on the admin origin (as the dashboard would), then opens a
//! tenant's page served by the same host on another port. Cookies do not respect ports, so the
//! browser does send the admin's session cookie with the page's requests to the admin API; the
//! page must still read nothing and write nothing.
//!
//! Chromium comes from Debian's `chromium` package (`.ci/run` installs it). Outside CI, without
//! it, the test says so and passes; in CI (`CI=true`) a missing browser fails it.

use picloud_store::Backend;
use picloud_test_support::binary::{Database, Process};
use picloud_test_support::browser::Chromium;
use picloud_test_support::http::{metric, Admin};
use picloud_test_support::ADMIN_PASSWORD;
use serde_json::Value;

/// The tenant's page. Its script reads `document.cookie`, then tries, with the browser's
/// cookies, a JSON write, a simple (no preflight) write, a blind `no-cors` write and a read of the
/// admin API, and a classic form post into a hidden frame; `window.report` resolves to what it
/// saw.
fn tenant_page(admin: &str) -> String {
    let users = format!("{admin}/api/v1/admin/users");
    format!(
        r#"<!doctype html><html><body>
<iframe name="sink" id="sink"></iframe>
<form id="form" method="POST" action="{users}" enctype="text/plain" target="sink">
<input name='{{"username":"mallory3","password":"a long enough' value='password"}}'></form>
<script>
const body = JSON.stringify({{username: "mallory2", password: "a long enough password"}});
const attempt = async (label, init) => {{
  try {{
    const response = await fetch(init.url || "{users}", init);
    let text = "";
    try {{ text = await response.text(); }} catch (e) {{}}
    return [label, response.type, response.status, text.slice(0, 200)];
  }} catch (e) {{
    return [label, "blocked", 0, String(e)];
  }}
}};
window.report = (async () => {{
  const cookie = document.cookie;
  const attempts = [
    await attempt("json", {{method: "POST", credentials: "include", headers: {{"content-type": "application/json"}}, body}}),
    await attempt("simple", {{method: "POST", credentials: "include", headers: {{"content-type": "text/plain"}}, body}}),
    await attempt("no-cors", {{method: "POST", mode: "no-cors", credentials: "include", body}}),
    await attempt("read", {{credentials: "include"}}),
    await attempt("me", {{credentials: "include", url: "{admin}/api/v1/auth/me"}}),
  ];
  await new Promise((done) => {{
    document.getElementById("sink").onload = done;
    document.getElementById("form").submit();
  }});
  return {{cookie, attempts}};
}})();
</script></body></html>"#
    )
}

// The admin, signed in on the admin origin, opens a tenant's page on the same host: the page can
// neither read the session nor the CSRF token, nor read or write the admin API, although the
// browser sends the admin's cookie along.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_page_in_the_admins_browser_can_neither_read_nor_write_the_admin_api() {
    let Some(db) = Database::fresh(Backend::Sqlite) else {
        return;
    };
    let Some(mut browser) = Chromium::launch().await else {
        return;
    };
    let server = Process::serve(&db, &[]);
    let admin = Admin::login(&server.admin_base, ADMIN_PASSWORD).await;
    let page = serde_json::to_string(&tenant_page(&server.admin_base)).expect("a string literal");
    admin
        .deploy(
            "evil",
            &format!(r#"response(200, {page}, #{{"content-type": "text/html"}})"#),
            "GET",
            "/steal",
        )
        .await;

    // The admin signs in the way the dashboard does: a same-origin fetch on the admin origin.
    browser
        .open(&format!("{}/healthz", server.admin_base))
        .await;
    let login = format!(
        r#"fetch("/api/v1/auth/login", {{method: "POST", headers: {{"content-type": "application/json"}},
            body: JSON.stringify({{username: "admin", password: "{ADMIN_PASSWORD}"}})}})
          .then((r) => r.json())"#
    );
    let signed_in = browser.eval(&login).await;
    let csrf = signed_in["csrf_token"]
        .as_str()
        .expect("a CSRF token")
        .to_owned();
    let session = signed_in["token"].as_str().expect("a session").to_owned();
    let me = browser
        .eval(r#"fetch("/api/v1/auth/me").then((r) => r.status)"#)
        .await;
    assert_eq!(me, 200, "the browser holds the admin's session cookie");

    let refused_before = metric(
        &admin.http,
        &server.admin_base,
        r#"picloud_http_requests_total{kind="admin",status="403"}"#,
    )
    .await;
    browser.open(&format!("{}/evil/steal", server.base)).await;
    let report = browser.eval("window.report").await;

    let cookie = report["cookie"]
        .as_str()
        .unwrap_or_else(|| panic!("the page reports document.cookie: {report}"));
    assert!(
        !cookie.contains(&session) && !cookie.contains(&csrf) && !cookie.contains("picloud"),
        "the page reads neither the session nor the CSRF token: {cookie:?}"
    );
    for attempt in report["attempts"].as_array().expect("attempts") {
        let text = attempt[3].as_str().unwrap_or_default();
        assert!(
            matches!(attempt[1].as_str(), Some("blocked" | "opaque")),
            "the page reads no answer of the admin API: {attempt}"
        );
        assert!(
            !text.contains("admin") && !text.contains(&csrf),
            "nothing of the admin API reaches the page: {attempt}"
        );
    }
    let refused = metric(
        &admin.http,
        &server.admin_base,
        r#"picloud_http_requests_total{kind="admin",status="403"}"#,
    )
    .await
        - refused_before;
    assert!(
        refused >= 3.0,
        "the browser sent the admin's cookie across ports with the simple, no-cors and form \
         writes, and each was refused as coming from another origin (403), got {refused}"
    );

    let (status, users) = admin.get("/api/v1/admin/users").await;
    assert_eq!(status, 200, "the admin lists the users: {users}");
    assert_eq!(
        users["items"].as_array().map(Vec::len),
        Some(1),
        "no user was created from the tenant's page: {users}"
    );
    let still = browser_me_after(&mut browser, &server.admin_base).await;
    assert_eq!(still, 200, "the admin's own session is untouched");
}

/// The admin's session, back on the admin origin.
async fn browser_me_after(browser: &mut Chromium, admin_base: &str) -> Value {
    browser.open(&format!("{admin_base}/healthz")).await;
    browser
        .eval(r#"fetch("/api/v1/auth/me").then((r) => r.status)"#)
        .await
}
