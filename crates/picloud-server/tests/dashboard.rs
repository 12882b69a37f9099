//! The dashboard at `/admin`, server-side: signing in and out through its forms, the redirect of
//! a signed-out browser, the CSRF check of every form, the security headers of every page,
//! escaping, the assets' caching, and what each role sees and may post. The same pages in a real
//! browser: `picloud/tests/dashboard.rs`.

use std::time::Duration;

use picloud_test_support::http::Answer;
use picloud_test_support::server::TestServer;
use picloud_test_support::{both_backends, ADMIN_PASSWORD};
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::Method;
use serde_json::json;

/// A browser on the dashboard, as far as the server can tell: it follows no redirect (the test
/// looks at them), keeps the session cookie the login set for `/admin`, and sends what a page of
/// the admin origin sends with a form (`Origin`, `Sec-Fetch-Site: same-origin`).
struct Browser {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(server: &TestServer) -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(60))
                .build()
                .expect("an HTTP client"),
            base: server.admin_base.clone(),
            cookie: None,
        }
    }

    /// Signs `username` in through the login form; asserts the redirect to the apps.
    async fn signed_in(server: &TestServer, username: &str, password: &str) -> Self {
        let mut browser = Self::new(server);
        let answer = browser
            .post(
                "/admin/login",
                &[("username", username), ("password", password)],
            )
            .await;
        assert_eq!(
            (answer.status, answer.header("location")),
            (303, Some("/admin")),
            "{username} signs in: {answer}"
        );
        let session = answer
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|c| c.starts_with("picloud_session=") && c.contains("Path=/admin;"))
            .expect("a session cookie for the dashboard's paths");
        let pair = session.split(';').next().expect("name=value");
        browser.cookie = Some(pair.to_owned());
        browser
    }

    fn headers(&self, extra: &[(&str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        if let Some(cookie) = &self.cookie {
            headers.insert("cookie", HeaderValue::from_str(cookie).expect("a cookie"));
        }
        headers.insert("origin", HeaderValue::from_str(&self.base).expect("origin"));
        headers.insert("sec-fetch-site", HeaderValue::from_static("same-origin"));
        for (name, value) in extra {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes()).expect("a name");
            headers.insert(name, HeaderValue::from_str(value).expect("a value"));
        }
        headers
    }

    async fn get(&self, path: &str) -> Answer {
        self.get_with(path, &[]).await
    }

    async fn get_with(&self, path: &str, extra: &[(&str, &str)]) -> Answer {
        let request = self
            .http
            .get(format!("{}{path}", self.base))
            .headers(self.headers(extra));
        Answer::read(request.send().await.expect("GET")).await
    }

    /// A form post, as a page of the admin origin sends it.
    async fn post(&self, path: &str, fields: &[(&str, &str)]) -> Answer {
        self.post_with(path, fields, &[]).await
    }

    async fn post_with(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        extra: &[(&str, &str)],
    ) -> Answer {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let request = self
            .http
            .request(Method::POST, format!("{}{path}", self.base))
            .headers(self.headers(extra))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        Answer::read(request.send().await.expect("POST")).await
    }

    /// The CSRF token a page of this session carries.
    async fn csrf(&self) -> String {
        let page = self.get("/admin").await;
        assert_eq!(page.status, 200, "the apps page: {page}");
        between(&page.text, r#"<meta name="csrf-token" content=""#, "\"")
            .expect("the page carries the CSRF token")
            .to_owned()
    }
}

/// Percent-encoding for a form body.
fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".to_owned(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The text between `start` and the next `end`.
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = text.find(start)? + start.len();
    let len = text[from..].find(end)?;
    Some(&text[from..from + len])
}

fn assert_security_headers(answer: &Answer, what: &str) {
    let csp = answer
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what} has a CSP: {answer}"));
    for part in [
        "default-src 'self'",
        "script-src 'self'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(csp.contains(part), "{what}'s CSP has {part}: {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline"),
        "{what}: no unsafe-inline: {csp}"
    );
    assert_eq!(answer.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        answer.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
}

// A browser that is not signed in is sent to the login page from every page, and a form it posts
// changes nothing.
both_backends!(
    a_signed_out_browser_is_sent_to_the_login_page,
    |store| async move {
        let server = TestServer::start(store).await;
        server.api.create_app("shop").await;
        let browser = Browser::new(&server);
        let root = browser.get("/").await;
        assert_eq!(
            (root.status, root.header("location")),
            (303, Some("/admin")),
            "the admin origin's root leads to the dashboard: {root}"
        );
        for path in ["/admin", "/admin/"] {
            let answer = browser.get(path).await;
            assert_eq!(
                (answer.status, answer.header("location")),
                (303, Some("/admin/login")),
                "{path} sends a signed-out browser to the login page: {answer}"
            );
        }
        let posted = browser
            .post("/admin/apps", &[("slug", "sneaky"), ("name", "Sneaky")])
            .await;
        assert_eq!(
            (posted.status, posted.header("location")),
            (303, Some("/admin/login")),
            "a signed-out form goes to the login page: {posted}"
        );
        let (_, apps) = server.api.get("/api/v1/admin/apps").await;
        assert_eq!(
            apps["items"].as_array().map(Vec::len),
            Some(1),
            "nothing was created: {apps}"
        );
    }
);

// The login form opens a session whose cookie reaches the dashboard's and the API's paths (and
// no app's); a wrong password shows the form again with the reason; signing out ends the session.
both_backends!(
    the_login_form_signs_in_and_out_and_explains_a_refusal,
    |store| async move {
        let server = TestServer::start(store).await;
        let form = Browser::new(&server).get("/admin/login").await;
        assert_eq!(form.status, 200, "the login page: {form}");
        assert!(
            form.text
                .contains(r#"<form method="post" action="/admin/login">"#),
            "{form}"
        );

        let wrong = Browser::new(&server)
            .post(
                "/admin/login",
                &[("username", "admin"), ("password", "not the password")],
            )
            .await;
        assert_eq!(wrong.status, 401, "a wrong password: {wrong}");
        assert!(
            wrong.text.contains("role=\"alert\"") && wrong.text.contains("value=\"admin\""),
            "the form again, with the reason and the username kept: {wrong}"
        );
        assert!(wrong.header("set-cookie").is_none(), "no cookie: {wrong}");

        let foreign = Browser::new(&server)
            .post_with(
                "/admin/login",
                &[("username", "admin"), ("password", ADMIN_PASSWORD)],
                &[
                    ("origin", "http://127.0.0.1:1"),
                    ("sec-fetch-site", "cross-site"),
                ],
            )
            .await;
        assert_eq!(
            foreign.status, 403,
            "a login form posted from another site is refused (login CSRF): {foreign}"
        );

        let browser = Browser::signed_in(&server, "admin", ADMIN_PASSWORD).await;
        let apps = browser.get("/admin").await;
        assert_eq!(apps.status, 200, "the apps page: {apps}");
        assert!(apps.text.contains("<h1>Apps</h1>"), "{apps}");

        let csrf = browser.csrf().await;
        let out = browser
            .post("/admin/logout", &[("csrf_token", &csrf)])
            .await;
        assert_eq!(
            (out.status, out.header("location")),
            (303, Some("/admin/login")),
            "signed out: {out}"
        );
        let cleared: Vec<&str> = out
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        assert!(
            cleared
                .iter()
                .filter(|c| c.starts_with("picloud_session=;") && c.contains("Max-Age=0"))
                .count()
                == 2,
            "both session cookies are cleared: {cleared:?}"
        );
        let after = browser.get("/admin").await;
        assert_eq!(
            (after.status, after.header("location")),
            (303, Some("/admin/login")),
            "the session ended server-side: {after}"
        );
    }
);

// Every form that changes state must come from the admin origin's own page and carry the
// session's CSRF token (the form's field or X-CSRF-Token); otherwise it is refused and changes
// nothing.
both_backends!(
    a_form_without_the_csrf_token_or_from_another_origin_is_refused,
    |store| async move {
        let server = TestServer::start(store).await;
        let browser = Browser::signed_in(&server, "admin", ADMIN_PASSWORD).await;
        let csrf = browser.csrf().await;

        let missing = browser
            .post("/admin/apps", &[("slug", "one"), ("name", "One")])
            .await;
        assert_eq!(missing.status, 403, "no token: {missing}");
        assert!(
            missing.text.contains("CSRF"),
            "the page says why: {missing}"
        );
        let wrong = browser
            .post(
                "/admin/apps",
                &[("slug", "one"), ("name", "One"), ("csrf_token", "nope")],
            )
            .await;
        assert_eq!(wrong.status, 403, "a wrong token: {wrong}");
        let foreign = browser
            .post_with(
                "/admin/apps",
                &[("slug", "one"), ("name", "One"), ("csrf_token", &csrf)],
                &[
                    ("origin", "http://127.0.0.1:1"),
                    ("sec-fetch-site", "same-site"),
                ],
            )
            .await;
        assert_eq!(
            foreign.status, 403,
            "the right token from another origin: {foreign}"
        );
        let (_, apps) = server.api.get("/api/v1/admin/apps").await;
        assert_eq!(
            apps["items"].as_array().map(Vec::len),
            Some(0),
            "nothing was created: {apps}"
        );

        let by_field = browser
            .post(
                "/admin/apps",
                &[("slug", "one"), ("name", "One"), ("csrf_token", &csrf)],
            )
            .await;
        assert_eq!(by_field.status, 303, "the form's field: {by_field}");
        let by_header = browser
            .post_with(
                "/admin/apps",
                &[("slug", "two"), ("name", "Two")],
                &[("x-csrf-token", &csrf)],
            )
            .await;
        assert_eq!(
            by_header.status, 303,
            "X-CSRF-Token, as htmx sends it: {by_header}"
        );
        let (_, apps) = server.api.get("/api/v1/admin/apps").await;
        assert_eq!(
            apps["items"].as_array().map(Vec::len),
            Some(2),
            "both were created: {apps}"
        );
    }
);

// The login page, a signed-in page and an error page all carry the CSP (no inline script),
// refuse framing and are never cached.
both_backends!(
    every_page_carries_the_security_headers,
    |store| async move {
        let server = TestServer::start(store).await;
        let browser = Browser::signed_in(&server, "admin", ADMIN_PASSWORD).await;
        let pages = [
            (
                "the login page",
                Browser::new(&server).get("/admin/login").await,
            ),
            ("the apps page", browser.get("/admin").await),
            (
                "a refused form",
                browser
                    .post("/admin/apps", &[("slug", "x"), ("name", "X")])
                    .await,
            ),
        ];
        for (what, answer) in &pages {
            assert_security_headers(answer, what);
            assert!(
                answer
                    .header("content-type")
                    .is_some_and(|t| t.starts_with("text/html")),
                "{what} is HTML, errors too: {answer}"
            );
            assert!(
                !answer.text.contains("<script>") && !answer.text.contains(" style="),
                "{what} has no inline script or style: {answer}"
            );
        }
        assert_eq!(
            pages[1].1.header("cache-control"),
            Some("no-store"),
            "pages are not cached"
        );
        assert_eq!(
            pages[2].1.status, 403,
            "a form without its token: {}",
            pages[2].1
        );
    }
);

// Assets are linked by a URL that holds their content's hash and cached for good, carry an ETag
// that answers 304, and are gzipped for a client that accepts it.
both_backends!(assets_are_cached_by_etag_and_gzipped, |store| async move {
    let server = TestServer::start(store).await;
    let browser = Browser::signed_in(&server, "admin", ADMIN_PASSWORD).await;
    let page = browser.get("/admin").await;
    let url = between(&page.text, r#"<script src=""#, "\"")
        .expect("the page links a script")
        .replace("&amp;", "&");
    assert!(url.starts_with("/admin/assets/htmx.min.js?v="), "{url}");
    let asset = browser.get(&url).await;
    assert_eq!(asset.status, 200, "{url}");
    assert_eq!(
        asset.header("cache-control"),
        Some("public, max-age=31536000, immutable"),
        "a versioned URL is cached for good"
    );
    assert!(asset
        .header("content-type")
        .is_some_and(|t| t.starts_with("text/javascript")));
    let etag = asset.header("etag").expect("an ETag").to_owned();
    assert!(
        etag.starts_with('"') && etag.len() > 10,
        "a strong ETag: {etag}"
    );
    let again = browser.get_with(&url, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status, 304, "unchanged: {again}");
    assert!(again.text.is_empty(), "a 304 has no body");

    let bare = browser.get("/admin/assets/dashboard.css").await;
    assert_eq!(
        bare.header("cache-control"),
        Some("no-cache"),
        "an unversioned URL revalidates"
    );
    let gzipped = browser
        .get_with(&url, &[("accept-encoding", "gzip, deflate, br")])
        .await;
    assert_eq!(
        gzipped.header("content-encoding"),
        Some("gzip"),
        "gzip when accepted"
    );
    assert_ne!(
        gzipped.header("etag"),
        Some(etag.as_str()),
        "each encoding has its own ETag"
    );
    let missing = browser.get("/admin/assets/nothing.js").await;
    assert_eq!(missing.status, 404, "{missing}");
});

// Names are markup-free only where they must be: an app's display name may hold `<`, and every
// page shows it as text.
both_backends!(
    an_app_named_like_markup_renders_as_text,
    |store| async move {
        let server = TestServer::start(store).await;
        let hostile = "<img src=x onerror=alert(1)>";
        let (status, app) = server
            .api
            .post(
                "/api/v1/admin/apps",
                json!({"slug": "evil", "name": hostile}),
            )
            .await;
        assert_eq!(status, 201, "{app}");
        let browser = Browser::signed_in(&server, "admin", ADMIN_PASSWORD).await;
        let page = browser.get("/admin").await;
        assert!(
            page.text.contains("&lt;img src=x onerror=alert(1)&gt;")
                && !page.text.contains(hostile),
            "the name is escaped: {page}"
        );
    }
);
