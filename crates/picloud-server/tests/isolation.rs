//! Tenant isolation over HTTP (issue #12): the admin surface and the apps never share an origin,
//! PiCloud's credentials never reach a script, a script cannot set them, a cookie-signed admin
//! request from any other origin is refused, and the answers hyper writes by itself are JSON.

use picloud_server::{Origins, ServerConfig};
use picloud_test_support::both_backends;
use picloud_test_support::http::Answer;
use picloud_test_support::server::{BrowserLogin, Settings, TestServer};
use picloud_test_support::ADMIN_PASSWORD;
use reqwest::Method;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A script that answers the request's headers as JSON.
const ECHO_HEADERS: &str = "ctx.request.headers";

fn with_origins(origins: Origins) -> Settings {
    Settings {
        server: ServerConfig {
            origins,
            ..ServerConfig::default()
        },
        ..Settings::default()
    }
}

/// `GET url` with `headers`.
async fn get_with(server: &TestServer, url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut request = server.api.http.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Answer::read(request.send().await.expect("the request is answered")).await
}

// The admin API, auth and metrics answer only on the admin listener; the apps only on the public
// one. The takeover of #12 began with a tenant's page on the admin API's origin.
both_backends!(
    the_admin_surface_and_the_apps_never_answer_on_each_others_listener,
    |store| async move {
        let server = TestServer::start(store).await;
        server.api.deploy("shop", r#""hi""#, "GET", "/x").await;

        let login = json!({"username": "admin", "password": ADMIN_PASSWORD});
        for (method, path, body) in [
            (Method::POST, "/api/v1/auth/login", Some(login)),
            (Method::GET, "/api/v1/auth/me", None),
            (Method::GET, "/api/v1/admin/apps", None),
            (Method::GET, "/metrics", None),
        ] {
            let mut request = server
                .api
                .http
                .request(method.clone(), format!("{}{path}", server.base))
                .bearer_auth(&server.api.token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            let answer = Answer::read(request.send().await.expect("answered")).await;
            assert_eq!(
                (answer.status, answer.code()),
                (404, "not_found"),
                "{method} {path} on the public listener: {answer}"
            );
        }

        let public = server.get("/shop/x").await;
        assert_eq!(
            (public.status, public.text.as_str()),
            (200, "hi"),
            "the app on the public listener"
        );
        let on_admin = get_with(&server, &format!("{}/shop/x", server.admin_base), &[]).await;
        assert_eq!(
            (on_admin.status, on_admin.code()),
            (404, "not_found"),
            "the app is not answered on the admin listener: {on_admin}"
        );
        assert!(
            on_admin.header("x-picloud-execution-id").is_none(),
            "no script ran for it: {on_admin}"
        );
        for (header, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("cache-control", "no-store"),
            ("referrer-policy", "no-referrer"),
        ] {
            assert_eq!(
                on_admin.header(header),
                Some(value),
                "the admin surface's answers carry {header}"
            );
        }
        let health = get_with(&server, &format!("{}/healthz", server.base), &[]).await;
        assert_eq!(
            health.status, 200,
            "health on the public listener: {health}"
        );
    }
);

// A request to an app carrying the admin's cookies and tokens: the script sees the app's own
// cookie and token, never PiCloud's. In #12 a tenant stored the admin's session this way.
both_backends!(
    a_script_never_sees_picloud_credentials_but_sees_the_apps_own,
    |store| async move {
        let server = TestServer::start(store).await;
        server.api.deploy("spy", ECHO_HEADERS, "GET", "/").await;
        let key = server
            .admin(
                Method::POST,
                "/api/v1/admin/api-keys",
                Some(json!({"name": "ci", "scopes": ["admin"]})),
            )
            .await;
        let key = key.json["secret"].as_str().expect("a key").to_owned();
        let token = server.api.token.clone();
        let url = server.url("/spy/");

        let cookie = format!(
            "picloud_session={token}; theme=dark; __Host-picloud_session={token}; PICLOUD_CSRF=x; sid=app-1"
        );
        let seen = get_with(
            &server,
            &url,
            &[
                ("cookie", &cookie),
                ("authorization", &format!("Bearer {token}")),
            ],
        )
        .await;
        assert_eq!(seen.status, 200, "the script ran: {seen}");
        assert_eq!(
            seen.json["cookie"], "theme=dark; sid=app-1",
            "only the app's own cookies: {seen}"
        );
        assert!(
            seen.json.get("authorization").is_none() && !seen.text.contains(&token),
            "the admin's session token is nowhere: {seen}"
        );

        let seen = get_with(
            &server,
            &url,
            &[("authorization", &format!("Bearer {key}"))],
        )
        .await;
        assert!(
            seen.json.get("authorization").is_none() && !seen.text.contains(&key),
            "an API key is dropped too: {seen}"
        );
        let seen = get_with(
            &server,
            &url,
            &[("cookie", &format!("picloud_session={token}"))],
        )
        .await;
        assert!(
            seen.json.get("cookie").is_none(),
            "a cookie header of PiCloud's cookies alone disappears: {seen}"
        );
        let seen = get_with(&server, &url, &[("authorization", "Bearer app-token-123")]).await;
        assert_eq!(
            seen.json["authorization"], "Bearer app-token-123",
            "the app's own token is the app's: {seen}"
        );
    }
);

// A script's answer cannot set, overwrite or clear PiCloud's cookies; its own cookies pass.
both_backends!(
    a_script_cannot_set_or_clear_picloud_cookies,
    |store| async move {
        let server = TestServer::start(store).await;
        let app_id = server.api.create_app("jar").await;
        let refused = [
            (
                "set",
                r#"#{"set-cookie": "picloud_session=attacker; Path=/"}"#,
            ),
            (
                "host",
                r#"#{"Set-Cookie": "__Host-picloud_session=x; Secure; Path=/"}"#,
            ),
            ("case", r#"#{"set-cookie": "PICLOUD_Session=x"}"#),
            ("clear", r#"#{"clear-site-data": "\"cookies\""}"#),
        ];
        for (name, headers) in refused {
            let source = format!(r#"response(200, "ok", {headers})"#);
            server
                .api
                .add_route(&app_id, name, &source, "GET", &format!("/{name}"))
                .await;
            let answer = server.get(&format!("/jar/{name}")).await;
            assert_eq!(
                (answer.status, answer.code()),
                (500, "invalid_response"),
                "{headers} is refused: {answer}"
            );
            assert!(
                answer.header("set-cookie").is_none() && answer.header("clear-site-data").is_none(),
                "nothing of it is sent: {answer}"
            );
        }
        server
            .api
            .add_route(
                &app_id,
                "own",
                r#"response(200, "ok", #{"set-cookie": "picloud=1; Path=/"})"#,
                "GET",
                "/own",
            )
            .await;
        let answer = server.get("/jar/own").await;
        assert_eq!(
            (answer.status, answer.header("set-cookie")),
            (200, Some("picloud=1; Path=/")),
            "the app's own cookie passes: {answer}"
        );
    }
);

// The session cookie cannot be read by a page's script, is scoped to the API's paths over plain
// HTTP and to a secure host-only cookie over TLS; the CSRF token is in no cookie, only in answers
// no other origin can read.
both_backends!(
    the_session_cookie_is_http_only_and_scoped_and_no_cookie_holds_the_csrf_token,
    |store| async move {
        let server = TestServer::start(store).await;
        let login = server.browser_login(&[]).await;
        let (token, csrf, cookies) = (&login.token, &login.csrf, &login.set_cookies);
        let session = cookies
            .iter()
            .find(|c| c.starts_with("picloud_session="))
            .expect("the session cookie");
        assert_eq!(
            session,
            &format!(
                "picloud_session={token}; HttpOnly; SameSite=Strict; Path=/api/; Max-Age=86400"
            ),
            "HttpOnly, strict, on the API's paths"
        );
        assert!(
            cookies.contains(&format!(
                "picloud_session={token}; HttpOnly; SameSite=Strict; Path=/admin; Max-Age=86400"
            )),
            "and on the dashboard's (`admin` is a reserved slug): {cookies:?}"
        );
        assert_eq!(
            cookies
                .iter()
                .filter(|c| c.starts_with("picloud_session="))
                .count(),
            2,
            "on no other path: {cookies:?}"
        );
        assert!(
            cookies.iter().all(|c| !c.contains(csrf)),
            "no cookie holds the CSRF token: {cookies:?}"
        );
        assert!(
            cookies
                .iter()
                .any(|c| c.starts_with("picloud_csrf=;") && c.contains("Max-Age=0")),
            "the readable CSRF cookie of older versions is cleared: {cookies:?}"
        );

        let me = get_with(
            &server,
            &server.url("/api/v1/auth/me"),
            &[("cookie", &format!("picloud_session={token}"))],
        )
        .await;
        assert_eq!(
            (me.status, me.json["csrf_token"].as_str()),
            (200, Some(csrf.as_str())),
            "a reloaded dashboard page gets the CSRF token from /me: {me}"
        );

        let login = server
            .browser_login(&[("x-forwarded-proto", "https")])
            .await;
        let (token, cookies) = (&login.token, &login.set_cookies);
        assert!(
            cookies.contains(&format!(
                "__Host-picloud_session={token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=86400"
            )),
            "over TLS a secure host-only cookie: {cookies:?}"
        );
        let plain = get_with(
            &server,
            &server.url("/api/v1/auth/me"),
            &[
                ("x-forwarded-proto", "https"),
                ("cookie", &format!("picloud_session={token}")),
            ],
        )
        .await;
        assert_eq!(
            plain.status, 401,
            "over TLS the plain cookie name is not accepted (a page could have set it): {plain}"
        );
    }
);

// The takeover of #12, step two: a tenant's page on the same host (another port) makes the
// admin's browser send a write with the admin's cookie. Even holding the CSRF token, it is
// refused: the browser names the page's origin.
both_backends!(
    a_cookie_signed_admin_request_from_another_origin_is_refused_whatever_the_port,
    |store| async move {
        let server = TestServer::start(store).await;
        let BrowserLogin { token, csrf, .. } = server.browser_login(&[]).await;
        let cookie = format!("picloud_session={token}");
        let admin_origin = server.admin_base.clone();
        let tenant_origin = server.base.clone();
        let create_user =
            |origin: Option<String>, site: Option<&'static str>, name: &'static str| {
                let mut request = server
                    .api
                    .http
                    .post(server.url("/api/v1/admin/users"))
                    .header("cookie", &cookie)
                    .header("x-csrf-token", &csrf)
                    .json(&json!({"username": name, "password": "a long enough password"}));
                if let Some(origin) = origin {
                    request = request.header("origin", origin);
                }
                if let Some(site) = site {
                    request = request.header("sec-fetch-site", site);
                }
                request.send()
            };
        for (origin, site, what) in [
            (Some(tenant_origin.clone()), None, "a tenant page's Origin"),
            (
                Some(tenant_origin.clone()),
                Some("same-site"),
                "a same-site page",
            ),
            (None, Some("same-site"), "same-site without an Origin"),
            (Some("null".to_owned()), None, "an opaque origin"),
            (
                Some(admin_origin.clone()),
                Some("cross-site"),
                "a cross-site fetch",
            ),
        ] {
            let answer =
                Answer::read(create_user(origin, site, "mallory").await.expect("sent")).await;
            assert_eq!(
                (answer.status, answer.code()),
                (403, "csrf_failed"),
                "{what} is refused: {answer}"
            );
        }
        let read = get_with(
            &server,
            &server.url("/api/v1/admin/users"),
            &[("cookie", &cookie), ("origin", &tenant_origin)],
        )
        .await;
        assert_eq!(read.status, 403, "reads from another origin too: {read}");
        let users = server.admin(Method::GET, "/api/v1/admin/users", None).await;
        assert!(
            !users.text.contains("mallory"),
            "no refused request created a user: {users}"
        );

        let answer = Answer::read(
            create_user(Some(admin_origin), Some("same-origin"), "alice")
                .await
                .expect("sent"),
        )
        .await;
        assert_eq!(answer.status, 201, "the admin origin's own page: {answer}");
    }
);

// An API key is a machine's credential: it goes in Authorization, never in the session cookie.
both_backends!(an_api_key_is_refused_as_a_cookie, |store| async move {
    let server = TestServer::start(store).await;
    let key = server
        .admin(
            Method::POST,
            "/api/v1/admin/api-keys",
            Some(json!({"name": "ci", "scopes": ["admin"]})),
        )
        .await;
    let key = key.json["secret"].as_str().expect("a key").to_owned();
    let url = server.url("/api/v1/admin/apps");
    let answer = get_with(
        &server,
        &url,
        &[("cookie", &format!("picloud_session={key}"))],
    )
    .await;
    assert_eq!(answer.status, 401, "a key in the cookie: {answer}");
    assert!(
        answer.json["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Authorization")),
        "the message says where a key goes: {answer}"
    );
    let answer = get_with(
        &server,
        &url,
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(answer.status, 200, "the key as a bearer token: {answer}");
});

// One listener behind a proxy, two origins: PICLOUD_ADMIN_HOST's requests reach the admin
// surface, every other host the apps.
both_backends!(
    with_an_admin_host_the_public_listener_serves_the_admin_surface_to_that_host_only,
    |store| async move {
        let server = TestServer::start_with(
            store,
            with_origins(Origins {
                admin_host: Some("admin.test".into()),
                apps_domain: None,
            }),
        )
        .await;
        server.api.deploy("shop", r#""hi""#, "GET", "/x").await;
        let on_public = |path: &str| format!("{}{path}", server.base);
        let bearer = format!("Bearer {}", server.api.token);
        let admin = get_with(
            &server,
            &on_public("/api/v1/admin/apps"),
            &[("host", "admin.test:8443"), ("authorization", &bearer)],
        )
        .await;
        assert_eq!(admin.status, 200, "the admin host reaches the API: {admin}");
        let app_on_admin_host =
            get_with(&server, &on_public("/shop/x"), &[("host", "admin.test")]).await;
        assert_eq!(
            app_on_admin_host.status, 404,
            "the admin host never runs an app: {app_on_admin_host}"
        );
        let api_on_other_host = get_with(
            &server,
            &on_public("/api/v1/admin/apps"),
            &[("host", "shop.test"), ("authorization", &bearer)],
        )
        .await;
        assert_eq!(
            api_on_other_host.status, 404,
            "another host never reaches the API: {api_on_other_host}"
        );
        let app = get_with(&server, &on_public("/shop/x"), &[("host", "shop.test")]).await;
        assert_eq!(app.text, "hi", "another host reaches the apps: {app}");
    }
);

// Per-app origins: with PICLOUD_APPS_DOMAIN each app answers on its own host, at the root, and
// path routing is off (it would put every app on one origin).
both_backends!(
    with_an_apps_domain_each_app_answers_on_its_own_host_only,
    |store| async move {
        let server = TestServer::start_with(
            store,
            with_origins(Origins {
                admin_host: None,
                apps_domain: Some("apps.test".into()),
            }),
        )
        .await;
        server
            .api
            .deploy("shop", "ctx.request.path", "GET", "/items/{id}")
            .await;
        let url = |path: &str| format!("{}{path}", server.base);
        let own = get_with(&server, &url("/items/3"), &[("host", "shop.apps.test")]).await;
        assert_eq!(
            (own.status, own.text.as_str()),
            (200, "/items/3"),
            "the app on its own host, the whole path its own: {own}"
        );
        let by_path = get_with(&server, &url("/shop/items/3"), &[("host", "apps.test")]).await;
        assert_eq!(
            (by_path.status, by_path.code()),
            (404, "not_found"),
            "no path routing: {by_path}"
        );
        assert!(
            by_path.text.contains("<slug>.apps.test"),
            "the message says where apps are: {by_path}"
        );
        let health = get_with(&server, &url("/healthz"), &[("host", "apps.test")]).await;
        assert_eq!(health.status, 200, "health answers on any host: {health}");
    }
);

/// Sends `bytes` on a new connection to `base` and reads until the server closes it.
async fn raw_exchange(base: &str, bytes: &[u8]) -> (u16, Value) {
    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("send");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        stream.read_to_end(&mut answer),
    )
    .await
    .expect("the server answers and closes");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a status line: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    let json = serde_json::from_str(body).unwrap_or(Value::String(text.clone()));
    (status, json)
}

// hyper answers what it cannot parse before any route runs; those answers are in the API's
// error shape too, on both listeners, and after an earlier request on the same connection.
both_backends!(
    requests_that_are_not_http_get_json_errors_on_both_listeners,
    |store| async move {
        let server = TestServer::start_with(
            store,
            Settings {
                server: ServerConfig {
                    max_body_bytes: 1024,
                    ..ServerConfig::default()
                },
                ..Settings::default()
            },
        )
        .await;
        let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70_000));
        let many_headers = format!(
            "GET / HTTP/1.1\r\nHost: x\r\n{}\r\n",
            (0..200)
                .map(|i| format!("x-h{i}: v\r\n"))
                .collect::<String>()
        );
        let cases: [(&str, &[u8], u16, &str); 3] = [
            (
                "garbage",
                b"NOT HTTP AT ALL\r\n\r\n",
                400,
                "invalid_request",
            ),
            ("a long URI", long_uri.as_bytes(), 414, "uri_too_long"),
            (
                "200 headers",
                many_headers.as_bytes(),
                431,
                "headers_too_large",
            ),
        ];
        let large_body = |path: &str| {
            let mut request = format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\ncontent-length: 2048\r\nconnection: close\r\n\r\n"
            )
            .into_bytes();
            request.extend_from_slice(&[b' '; 2048]);
            request
        };
        for (base, body_path) in [
            (&server.base, "/shop/x"),
            (&server.admin_base, "/api/v1/auth/login"),
        ] {
            for (what, bytes, status, code) in cases {
                let (got, json) = raw_exchange(base, bytes).await;
                assert_eq!(
                    (got, json["error"]["code"].as_str()),
                    (status, Some(code)),
                    "{what} on {base}: {json}"
                );
            }
            let (got, json) = raw_exchange(base, &large_body(body_path)).await;
            assert_eq!(
                (got, json["error"]["code"].as_str()),
                (413, Some("payload_too_large")),
                "a body over the limit on {base}: {json}"
            );
        }
        let (status, json) = raw_exchange(
            &server.base,
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200, "the first request is answered");
        let text = json.as_str().unwrap_or_default();
        assert!(
            text.contains("\"invalid_request\""),
            "the second, unparsable one gets JSON on the same connection: {text}"
        );
    }
);
