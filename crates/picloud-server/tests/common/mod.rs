//! A real server for each test: the public and admin listeners on 127.0.0.1:0 over a fresh store
//! (one per backend), the local executor, and an HTTP client logged in as the instance admin.
//! [`TestServer::url`] sends `/api/…` and `/metrics` to the admin listener, everything else to
//! the public one.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use picloud_core::Limits;
use picloud_executor::ExecutorConfig;
use picloud_orchestrator::{Platform, PlatformConfig};
use picloud_server::ServerConfig;
use picloud_store::Store;
use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

pub const ADMIN_PASSWORD: &str = "correct horse battery staple";

/// What a test tunes.
#[derive(Clone, Default)]
pub struct Settings {
    pub platform: PlatformConfig,
    pub server: ServerConfig,
    pub limits: Limits,
}

pub struct TestServer {
    /// The public listener: the apps' routes.
    pub base: String,
    /// The admin listener: the admin API, auth, metrics.
    pub admin_base: String,
    pub http: reqwest::Client,
    pub platform: Platform,
    /// The instance admin's bearer token.
    pub token: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<()>>,
}

/// A browser's sign-in: the session and CSRF tokens from the answer, and its `Set-Cookie` values.
pub struct BrowserLogin {
    pub token: String,
    pub csrf: String,
    pub set_cookies: Vec<String>,
}

/// One answer: status, headers and the body (JSON when it parses, else a JSON string).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.json["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

impl TestServer {
    pub async fn start(store: Arc<dyn Store>) -> Self {
        Self::start_with(store, Settings::default()).await
    }

    pub async fn start_with(store: Arc<dyn Store>, settings: Settings) -> Self {
        let executor = ExecutorConfig {
            limits: settings.limits.clone(),
            script_cache_size: 64,
            threads: 4,
        };
        let platform = Platform::start_local(store, executor, settings.platform)
            .await
            .expect("the platform starts");
        platform
            .auth()
            .ensure_instance_admin(Some(ADMIN_PASSWORD))
            .await
            .expect("the instance admin is created");
        let bind = || async {
            tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind a free port")
        };
        let listeners = picloud_server::Listeners {
            public: bind().await,
            admin: Some(bind().await),
        };
        let addr = listeners.public.local_addr().expect("the bound address");
        let admin_addr = listeners
            .admin
            .as_ref()
            .map(|l| l.local_addr().expect("the bound admin address"))
            .expect("an admin listener");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server_platform = platform.clone();
        let stopped = tokio::spawn(async move {
            let stop = async {
                let _ = rx.await;
            };
            picloud_server::serve(listeners, server_platform, settings.server, stop)
                .await
                .expect("the server runs");
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let mut server = Self {
            base: format!("http://{addr}"),
            admin_base: format!("http://{admin_addr}"),
            http,
            platform,
            token: String::new(),
            shutdown: Some(tx),
            stopped: Some(stopped),
        };
        server.token = server.login("admin", ADMIN_PASSWORD).await;
        server
    }

    /// Sends the shutdown signal and waits until the server has stopped.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(stopped) = self.stopped.take() {
            stopped.await.expect("the server task ends cleanly");
        }
    }

    /// Signs the admin in as a browser would, sending `headers` too: the answer's tokens and the
    /// `Set-Cookie` values (asserting success).
    pub async fn browser_login(&self, headers: &[(&str, &str)]) -> BrowserLogin {
        let mut request = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("login");
        let set_cookies = response
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let answer = Self::answer(response).await;
        assert_eq!(answer.status, 200, "login: {answer}");
        BrowserLogin {
            token: answer.json["token"].as_str().expect("a token").to_owned(),
            csrf: answer.json["csrf_token"]
                .as_str()
                .expect("a CSRF token")
                .to_owned(),
            set_cookies,
        }
    }

    /// Logs in and returns the token (asserting success).
    pub async fn login(&self, username: &str, password: &str) -> String {
        let answer = self
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"username": username, "password": password})),
            )
            .await;
        assert_eq!(
            answer.status, 200,
            "login as {username} should succeed: {answer}"
        );
        answer.json["token"].as_str().expect("a token").to_owned()
    }

    /// The URL of `path` on the listener that serves it: the admin one for `/api/…` and
    /// `/metrics`, the public one for the rest.
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("/api/") || path == "/metrics" {
            format!("{}{path}", self.admin_base)
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// A request with an optional bearer token and an optional JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut request = self.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Self::answer(request.send().await.expect("the request is answered")).await
    }

    pub async fn answer(response: reqwest::Response) -> Answer {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.expect("a readable body");
        let json = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Answer {
            status,
            headers,
            text,
            json,
        }
    }

    /// An admin call as the instance admin.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.call(method, path, Some(&self.token), body).await
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, None).await
    }

    /// Creates an app; returns its id.
    pub async fn create_app(&self, slug: &str) -> String {
        let answer = self
            .admin(
                Method::POST,
                "/api/v1/admin/apps",
                Some(json!({"slug": slug, "name": slug})),
            )
            .await;
        assert_eq!(answer.status, 201, "create app {slug}: {answer}");
        answer.json["id"].as_str().expect("an app id").to_owned()
    }

    /// Creates an endpoint script; returns its id.
    pub async fn create_script(&self, app_id: &str, name: &str, source: &str) -> String {
        let answer = self
            .admin(
                Method::POST,
                &format!("/api/v1/admin/apps/{app_id}/scripts"),
                Some(json!({"name": name, "source": source, "kind": "endpoint"})),
            )
            .await;
        assert_eq!(answer.status, 201, "create script {name}: {answer}");
        answer.json["id"].as_str().expect("a script id").to_owned()
    }

    /// Routes `method path` to a script; returns the route's id.
    pub async fn create_route(&self, script_id: &str, method: &str, path: &str) -> String {
        let answer = self
            .admin(
                Method::POST,
                &format!("/api/v1/admin/scripts/{script_id}/routes"),
                Some(json!({"method": method, "path": path, "dispatch_mode": "sync"})),
            )
            .await;
        assert_eq!(answer.status, 201, "create route {method} {path}: {answer}");
        answer.json["id"].as_str().expect("a route id").to_owned()
    }

    /// An app `slug` whose script `source` answers `method path`; returns the app's id.
    pub async fn deploy(&self, slug: &str, source: &str, method: &str, path: &str) -> String {
        let app_id = self.create_app(slug).await;
        let script_id = self.create_script(&app_id, "main", source).await;
        self.create_route(&script_id, method, path).await;
        app_id
    }

    /// Adds a script and its route to an app.
    pub async fn add_route(
        &self,
        app_id: &str,
        name: &str,
        source: &str,
        method: &str,
        path: &str,
    ) {
        let script_id = self.create_script(app_id, name, source).await;
        self.create_route(&script_id, method, path).await;
    }

    /// The value of one sample in `/metrics`, 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.get("/metrics").await.text;
        text.lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.trim().parse::<f64>().ok())
            })
            .unwrap_or(0.0)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
