//! Headless Chromium, driven over the DevTools protocol (a WebSocket), for the tests that need a
//! real browser: one page, navigated, evaluated in, and waited on with deadlines.
//!
//! Chromium comes from Debian's `chromium` package (`.ci/run` installs it), or the path in
//! `PICLOUD_TEST_CHROMIUM`. Outside CI, without it, [`Chromium::launch`] says so and gives `None`
//! (the test passes without running); in CI (`CI=true`) a missing browser fails the test.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

use crate::in_ci;

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Headless Chromium and one page in it, over the DevTools protocol.
pub struct Chromium {
    child: Child,
    socket: Socket,
    session: String,
    next_id: u64,
    _profile: tempfile::TempDir,
}

impl Chromium {
    /// Starts the browser with a fresh profile, or `None` when it is not installed outside CI.
    pub async fn launch() -> Option<Self> {
        let path =
            std::env::var("PICLOUD_TEST_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
        if !std::path::Path::new(&path).exists() {
            assert!(
                !in_ci(),
                "CI needs Chromium at {path} (Debian's chromium package) for the browser tests"
            );
            eprintln!("skipping a browser test: no Chromium at {path}");
            return None;
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        // The flags a closed network needs: no background requests to Google's hosts.
        let mut child = Command::new(&path)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start Chromium");
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("DevTools listening on ") {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("Chromium prints its DevTools address within 30 s");
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .expect("connect to DevTools");
        let mut browser = Self {
            child,
            socket,
            session: String::new(),
            next_id: 0,
            _profile: profile,
        };
        let target = browser
            .call(None, "Target.createTarget", json!({"url": "about:blank"}))
            .await;
        let attached = browser
            .call(
                None,
                "Target.attachToTarget",
                json!({"targetId": target["targetId"], "flatten": true}),
            )
            .await;
        browser.session = attached["sessionId"]
            .as_str()
            .expect("a session id")
            .to_owned();
        Some(browser)
    }

    /// One DevTools command (on the page when `session` is given); its result.
    pub async fn call(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        let answer = self.send(session, method, params).await;
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    /// One DevTools command; its whole answer, an error included.
    async fn send(&mut self, session: Option<&str>, method: &str, params: Value) -> Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut command = json!({"id": id, "method": method, "params": params});
        if let Some(session) = session {
            command["sessionId"] = json!(session);
        }
        self.socket
            .send(Message::text(command.to_string()))
            .await
            .expect("send a DevTools command");
        loop {
            let message = tokio::time::timeout(Duration::from_secs(60), self.socket.next())
                .await
                .unwrap_or_else(|_| panic!("{method} answered within 60 s"))
                .expect("the DevTools socket is open")
                .expect("a DevTools message");
            let Message::Text(text) = message else {
                continue;
            };
            let answer: Value = serde_json::from_str(&text).expect("DevTools JSON");
            if answer["id"] == id {
                return answer;
            }
        }
    }

    /// Opens `url` in the page and waits until it has loaded.
    pub async fn open(&mut self, url: &str) {
        let session = self.session.clone();
        self.call(Some(&session), "Page.navigate", json!({"url": url}))
            .await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let state = self.eval("document.readyState + ' ' + location.href").await;
            if state.as_str() == Some(&format!("complete {url}")) {
                return;
            }
            assert!(Instant::now() < deadline, "{url} did not load: {state}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Evaluates `expression` in the page, awaiting a promise; its value as JSON.
    pub async fn eval(&mut self, expression: &str) -> Value {
        let session = self.session.clone();
        let result = self
            .call(
                Some(&session),
                "Runtime.evaluate",
                json!({"expression": expression, "awaitPromise": true, "returnByValue": true}),
            )
            .await;
        assert!(
            result.get("exceptionDetails").is_none(),
            "{expression} threw: {result}"
        );
        result["result"]["value"].clone()
    }
}

impl Chromium {
    /// One DevTools command on the page; its result.
    pub async fn page(&mut self, method: &str, params: Value) -> Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params).await
    }

    /// Waits until `expression` (evaluated in the page, whichever page is loaded by then) is
    /// truthy, and gives its value; fails the test after 60 s (a loaded CI machine), saying
    /// `what` did not happen.
    pub async fn wait_for(&mut self, what: &str, expression: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        let guarded = format!(
            "(() => {{ try {{ return document.readyState === 'complete' && ({expression}); }} \
             catch (e) {{ return false; }} }})()"
        );
        loop {
            // While the page navigates, its context may be gone: that is "not yet".
            let session = self.session.clone();
            let answer = self
                .send(
                    Some(&session),
                    "Runtime.evaluate",
                    json!({"expression": guarded, "returnByValue": true}),
                )
                .await;
            let value = answer["result"]["result"]["value"].clone();
            let truthy = match &value {
                Value::Null | Value::Bool(false) => false,
                Value::String(text) => !text.is_empty(),
                _ => true,
            };
            if truthy {
                return value;
            }
            if Instant::now() >= deadline {
                let page = self
                    .eval("location.href + '\\n' + (document.body ? document.body.innerText.slice(0, 2000) : '')")
                    .await;
                panic!("{what}, within 60 s; the page: {page}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Makes the page `width` CSS pixels wide (a phone at 360), or a desktop's 1280.
    pub async fn set_width(&mut self, width: u32) {
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": 800, "deviceScaleFactor": 1, "mobile": width < 600}),
        )
        .await;
    }

    /// A PNG of the page as it is shown now.
    pub async fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let shot = self
            .page("Page.captureScreenshot", json!({"format": "png"}))
            .await;
        base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("the image, in base64"))
            .expect("base64")
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
