//! The dashboard in a real browser: headless Chromium (over the DevTools protocol) against the
//! real binary. The admin signs in through the form, builds an app, breaks a script and sees the
//! error at its line, calls a route and reads its execution's log line; a failed job shows as a
//! badge and is replayed; a viewer is offered no edit control; pages fit a 360 px screen, and no
//! page trips its Content Security Policy. The server-side rules are proved in
//! `picloud-server/tests/dashboard.rs`.
//!
//! `PICLOUD_SCREENSHOTS=<dir>` saves a PNG of the main pages there (the ones in `docs/`).

use std::time::{Duration, Instant};

use picloud_store::Backend;
use picloud_test_support::binary::{Database, Process};
use picloud_test_support::browser::Chromium;
use picloud_test_support::http::Admin;
use picloud_test_support::ADMIN_PASSWORD;
use serde_json::{json, Value};

/// Records every CSP violation of every page the browser opens from now on in `window.__csp`.
async fn watch_csp(browser: &mut Chromium) {
    browser
        .page(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({"source": "window.__csp = []; document.addEventListener('securitypolicyviolation', \
                (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"}),
        )
        .await;
}

async fn assert_no_csp_violation(browser: &mut Chromium, what: &str) {
    let seen = browser.eval("JSON.stringify(window.__csp || [])").await;
    assert_eq!(seen, "[]", "{what} trips no CSP rule");
}

/// Fills the fields of the form `form` (a CSS selector), by name, and clicks its submit button.
/// A textarea that the code editor replaced is set through the editor.
async fn submit(browser: &mut Chromium, form: &str, fields: &[(&str, &str)]) {
    let fields = serde_json::to_string(&fields).expect("JSON");
    let form = serde_json::to_string(form).expect("JSON");
    browser
        .eval(&format!(
            r#"(() => {{
              const form = document.querySelector({form});
              for (const [name, value] of {fields}) {{
                const field = form.elements[name];
                const editor = field.nextElementSibling && field.nextElementSibling.CodeMirror;
                if (editor) {{ editor.setValue(value); }} else {{ field.value = value; }}
              }}
              form.querySelector('button[type="submit"]').click();
              return true;
            }})()"#
        ))
        .await;
}

/// Clicks the first link whose text contains `text`.
async fn follow(browser: &mut Chromium, text: &str) {
    let text = serde_json::to_string(text).expect("JSON");
    let clicked = browser
        .eval(&format!(
            "(() => {{ const a = [...document.querySelectorAll('a')].find((a) => a.textContent.includes({text})); \
             if (a) {{ a.click(); }} return !!a; }})()"
        ))
        .await;
    assert_eq!(clicked, true, "a link with {text}");
}

/// Saves a screenshot as `<name>.png` when `PICLOUD_SCREENSHOTS` names a directory, with the
/// element `at` (a CSS selector) scrolled into view.
async fn snapshot(browser: &mut Chromium, name: &str, at: &str) {
    let Ok(dir) = std::env::var("PICLOUD_SCREENSHOTS") else {
        return;
    };
    let at = serde_json::to_string(at).expect("JSON");
    browser
        .eval(&format!(
            "document.querySelector({at}).scrollIntoView({{block: 'start'}}), true"
        ))
        .await;
    let png = browser.screenshot().await;
    std::fs::write(format!("{dir}/{name}.png"), png).expect("write the screenshot");
}

/// Signs `username` in through the login form; waits for the apps page.
async fn sign_in(browser: &mut Chromium, admin_base: &str, username: &str) {
    browser.open(&format!("{admin_base}/admin/login")).await;
    submit(
        browser,
        "main form",
        &[("username", username), ("password", ADMIN_PASSWORD)],
    )
    .await;
    browser
        .wait_for(
            &format!("{username} reaches the apps page"),
            "location.pathname === '/admin' && document.querySelector('h1').textContent === 'Apps'",
        )
        .await;
}

// The admin's whole path in the browser: sign in, create an app, a module and an endpoint that
// imports it, break the endpoint and see the error at its line, fix it, add a route, call it, and
// find the execution and its log line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_builds_an_app_and_reads_its_execution_in_the_browser() {
    let Some(db) = Database::fresh(Backend::Sqlite) else {
        return;
    };
    let Some(mut browser) = Chromium::launch().await else {
        return;
    };
    watch_csp(&mut browser).await;
    browser.set_width(1280).await;
    let server = Process::serve(&db, &[]);
    let admin = server.admin_base.clone();

    browser
        .page("Page.navigate", json!({"url": format!("{admin}/admin")}))
        .await;
    browser
        .wait_for(
            "a signed-out browser is sent to the login page",
            "location.pathname === '/admin/login'",
        )
        .await;
    sign_in(&mut browser, &admin, "admin").await;
    assert_no_csp_violation(&mut browser, "the apps page").await;

    submit(
        &mut browser,
        "form[action=\"/admin/apps\"]",
        &[("slug", "shop"), ("name", "The <b>Shop</b>")],
    )
    .await;
    browser
        .wait_for(
            "the new app's page",
            "document.querySelector('h1').textContent.startsWith('The <b>Shop</b>')",
        )
        .await;
    let app_path = browser.eval("location.pathname").await;
    let app_path = app_path.as_str().expect("a path").to_owned();

    submit(
        &mut browser,
        "form[action$=\"/scripts\"]",
        &[("name", "greeting"), ("kind", "module")],
    )
    .await;
    browser
        .wait_for(
            "the module's page",
            "document.querySelector('h1').textContent.includes('greeting')",
        )
        .await;
    browser.open(&format!("{admin}{app_path}")).await;
    snapshot(&mut browser, "dashboard-app", "body").await;
    submit(
        &mut browser,
        "form[action$=\"/scripts\"]",
        &[("name", "welcome"), ("kind", "endpoint")],
    )
    .await;
    browser
        .wait_for(
            "the endpoint's page",
            "document.querySelector('h1').textContent.includes('welcome')",
        )
        .await;
    assert_no_csp_violation(&mut browser, "the script page").await;

    submit(
        &mut browser,
        "#editor",
        &[("source", "import \"greeting\" as g;\nlet x = ;\n")],
    )
    .await;
    let error = browser
        .wait_for(
            "the compile error at its line",
            "document.querySelector('.source-error') && \
             [document.querySelector('.source-error').dataset.line, document.querySelector('.source-error').textContent]",
        )
        .await;
    assert_eq!(error[0], "2", "the error is on line 2: {error}");
    assert!(
        error[1]
            .as_str()
            .is_some_and(|t| t.contains("Line 2, column")),
        "it says where: {error}"
    );
    let marked = browser
        .wait_for(
            "the code editor, with the error's line marked and the cursor on it",
            "document.querySelector('.CodeMirror .source-error-line') && \
             document.querySelector('.CodeMirror').CodeMirror.getCursor().line + 1",
        )
        .await;
    assert_eq!(marked, 2, "the cursor is on line 2");
    snapshot(&mut browser, "dashboard-editor-error", "body").await;
    for (typed, offered) in [("log::in", "info("), ("gree", "greeting (module)")] {
        let hints = browser
            .wait_for(
                &format!("completions for {typed}"),
                &format!(
                    "(() => {{ const cm = document.querySelector('.CodeMirror').CodeMirror; \
                     cm.setValue({typed:?}); cm.setCursor({{line: 0, ch: {len}}}); \
                     cm.showHint({{completeSingle: false}}); \
                     const list = document.querySelector('.CodeMirror-hints'); \
                     return list && list.innerText.includes({offered:?}) && list.innerText; }})()",
                    len = typed.len()
                ),
            )
            .await;
        assert!(hints.is_string(), "{typed} offers {offered}: {hints}");
    }
    snapshot(&mut browser, "dashboard-editor-completions", "body").await;
    assert_no_csp_violation(&mut browser, "the code editor").await;

    // No keyboard trap: with no completion list open, Tab leaves the code editor for the next
    // control.
    browser
        .eval(
            "(() => { const cm = document.querySelector('.CodeMirror').CodeMirror; \
             cm.closeHint(); cm.focus(); return true; })()",
        )
        .await;
    for kind in ["rawKeyDown", "keyUp"] {
        browser
            .page(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9}),
            )
            .await;
    }
    let focused = browser
        .wait_for(
            "Tab moves the focus out of the code editor",
            "!document.activeElement.closest('.CodeMirror') && document.activeElement.outerHTML.slice(0, 80)",
        )
        .await;
    assert!(
        focused.as_str().is_some_and(|f| f.starts_with("<button")),
        "the Save button is next: {focused}"
    );

    submit(
        &mut browser,
        "#editor",
        &[(
            "source",
            "import \"greeting\" as g;\nlog::info(\"served the welcome\");\ng::greet(\"you\")\n",
        )],
    )
    .await;
    browser
        .wait_for(
            "the saved source",
            "document.querySelector('.notice') && document.querySelector('.notice').textContent === 'Saved.'",
        )
        .await;
    submit(
        &mut browser,
        "#run",
        &[
            ("method", "GET"),
            ("path", "/welcome"),
            ("headers", ""),
            ("body", ""),
        ],
    )
    .await;
    let ran = browser
        .wait_for(
            "the test run's response, log line and duration under the form",
            "document.querySelector('#run-result .run') && document.querySelector('#run-result').innerText",
        )
        .await;
    let ran = ran.as_str().unwrap_or_default();
    assert!(
        ran.contains("hello, you")
            && ran.contains("served the welcome")
            && (ran.contains("µs") || ran.contains(" ms")),
        "the test run: {ran}"
    );
    snapshot(&mut browser, "dashboard-test-run", "#run").await;
    submit(
        &mut browser,
        "form[action$=\"/routes\"]",
        &[
            ("method", "GET"),
            ("path", "/welcome"),
            ("dispatch_mode", "sync"),
        ],
    )
    .await;
    browser
        .wait_for(
            "the routes tab with the new route",
            "document.body.innerText.includes('GET /shop/welcome') || document.body.innerText.includes('/shop/welcome')",
        )
        .await;

    browser.open(&format!("{admin}{app_path}/executions")).await;
    browser
        .eval("document.querySelector('#tail button').click(), true")
        .await;
    browser
        .wait_for(
            "the live tail is following (its stream is open)",
            "document.querySelector('#tail button').textContent === 'Stop following'",
        )
        .await;
    let answer = reqwest::get(format!("{}/shop/welcome", server.base))
        .await
        .expect("GET /shop/welcome");
    assert_eq!(answer.status(), 200, "the route answers");
    assert_eq!(answer.text().await.expect("a body"), "hello, you");
    let tailed = browser
        .wait_for(
            "the call in the live tail, with its log line",
            "document.querySelector('#tail ol').innerText.includes('GET /welcome') && \
             document.querySelector('#tail ol').innerText",
        )
        .await;
    assert!(
        tailed
            .as_str()
            .is_some_and(|t| t.contains("info served the welcome")),
        "{tailed}"
    );

    // Execution records are written just after the answer: reload the tab until it is listed.
    // (The test run above is listed too, as `test run GET /welcome`; the call is the sync one.)
    let the_call = "[...document.querySelectorAll('tbody tr')].find((row) => \
                    row.innerText.includes('GET /welcome') && row.innerText.includes('sync'))";
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        browser.open(&format!("{admin}{app_path}/executions")).await;
        let listed = browser.eval(&format!("!!{the_call}")).await;
        if listed == true {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the call's execution is listed within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    snapshot(&mut browser, "dashboard-executions", "body").await;
    browser
        .eval(&format!("{the_call}.querySelector('a').click(), true"))
        .await;
    let line = browser
        .wait_for(
            "the execution's log line",
            "document.querySelector('ol.logs') && document.querySelector('ol.logs').innerText",
        )
        .await;
    assert!(
        line.as_str()
            .is_some_and(|l| l.contains("info served the welcome")),
        "the log line: {line}"
    );
    let summary = browser
        .eval("document.querySelector('section.attempt p').innerText")
        .await;
    assert!(
        summary
            .as_str()
            .is_some_and(|s| s.starts_with("GET /welcome · sync")),
        "the route call's record: {summary}"
    );
    assert_no_csp_violation(&mut browser, "the execution page").await;
    snapshot(&mut browser, "dashboard-execution", "body").await;
}

// A job that failed for good shows as a badge on the apps page and is replayed from the dead
// letters tab in place; a viewer of the app reads the script but is offered no control to change
// it. Every page fits a 360 px screen without scrolling sideways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_is_replayed_and_a_viewer_cannot_edit_in_the_browser() {
    let Some(db) = Database::fresh(Backend::Sqlite) else {
        return;
    };
    let Some(mut browser) = Chromium::launch().await else {
        return;
    };
    watch_csp(&mut browser).await;
    let server = Process::serve(&db, &[("PICLOUD_TRIGGER_RETRY_MAX_ATTEMPTS", "1")]);
    let admin = server.admin_base.clone();
    let api = Admin::login(&admin, ADMIN_PASSWORD).await;
    let app_id = api.create_app("shop").await;
    let script_id = api
        .route(
            &app_id,
            "hook",
            r#"throw "no stock""#,
            ("POST", "/hook"),
            "async",
        )
        .await;
    let accepted = reqwest::Client::new()
        .post(format!("{}/shop/hook", server.base))
        .body(r#"{"order":17}"#)
        .send()
        .await
        .expect("POST /shop/hook");
    assert_eq!(accepted.status(), 202, "the async route accepts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let letter = loop {
        if let Some(letter) = api.dead_letters(&app_id, "unresolved").await.first() {
            break letter["id"].clone();
        }
        assert!(
            Instant::now() < deadline,
            "the job is dead-lettered within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    browser.set_width(360).await;
    sign_in(&mut browser, &admin, "admin").await;
    let badge = browser
        .wait_for(
            "the badge",
            "document.querySelector('a.badge.bad').textContent",
        )
        .await;
    assert_eq!(badge, "1", "one unresolved dead letter");
    assert_fits(&mut browser, "the apps page").await;
    snapshot(&mut browser, "dashboard-apps-phone", "body").await;

    follow(&mut browser, "1").await;
    browser
        .wait_for(
            "the dead letters tab",
            "document.querySelector('details.dead-letter')",
        )
        .await;
    browser
        .eval("document.querySelector('details.dead-letter summary').click(), true")
        .await;
    let payload = browser
        .wait_for(
            "the payload, expanded",
            "document.querySelector('details.dead-letter').open && document.querySelector('details.dead-letter pre').innerText",
        )
        .await;
    assert!(
        payload.as_str().is_some_and(|p| p.contains("order")),
        "the payload: {payload}"
    );
    assert_fits(&mut browser, "the dead letters tab").await;
    snapshot(&mut browser, "dashboard-dead-letters-phone", "body").await;
    browser
        .eval("document.querySelector('details.dead-letter form[action$=\"/replay\"] button').click(), true")
        .await;
    let swapped = browser
        .wait_for(
            "the dead letter swapped in place as replayed",
            "!document.querySelector('details.dead-letter form[action$=\"/replay\"]') && document.querySelector('details.dead-letter').innerText.includes('replayed')",
        )
        .await;
    assert_eq!(swapped, true);
    assert!(
        !api.dead_letters(&app_id, "unresolved")
            .await
            .iter()
            .any(|l| l["id"] == letter),
        "the dead letter is resolved as replayed (its job runs again, and may fail again)"
    );
    assert_no_csp_violation(&mut browser, "htmx's swap").await;

    let (status, user) = api
        .post(
            "/api/v1/admin/users",
            json!({"username": "vera", "password": ADMIN_PASSWORD}),
        )
        .await;
    assert_eq!(status, 201, "{user}");
    let viewer_id = user["id"].as_str().expect("an id");
    let set = api
        .request(
            reqwest::Method::PUT,
            &format!("/api/v1/admin/apps/{app_id}/members/{viewer_id}"),
            Some(json!({"role": "viewer"})),
        )
        .await;
    assert_eq!(set.status, 200, "{set}");
    browser
        .eval("document.querySelector('form.logout button').click(), true")
        .await;
    browser
        .wait_for("the login page", "location.pathname === '/admin/login'")
        .await;
    browser.set_width(1280).await;
    sign_in(&mut browser, &admin, "vera").await;
    browser
        .open(&format!("{admin}/admin/scripts/{script_id}"))
        .await;
    let offered: Value = browser
        .wait_for(
            "the script page",
            "document.querySelector('#source') && [document.querySelector('#source').readOnly, \
             !!document.querySelector('#editor button[type=\"submit\"]')]",
        )
        .await;
    assert_eq!(
        offered,
        json!([true, false]),
        "the viewer reads the source and has no Save"
    );
    browser.open(&format!("{admin}/admin/apps/{app_id}")).await;
    let create = browser
        .eval("!!document.querySelector('form[action$=\"/scripts\"]')")
        .await;
    assert_eq!(create, false, "no create form for the viewer");
}

/// The page is no wider than the screen: nothing scrolls sideways but the tables' own boxes.
async fn assert_fits(browser: &mut Chromium, what: &str) {
    let widths = browser
        .eval("[document.documentElement.scrollWidth, window.innerWidth]")
        .await;
    assert!(
        widths[0].as_u64() <= widths[1].as_u64(),
        "{what} fits the screen: {widths}"
    );
}
