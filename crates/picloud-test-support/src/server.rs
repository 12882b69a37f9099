//! `spawn_app`: a real server for each test, in this process: the public and admin listeners on
//! 127.0.0.1:0 over a fresh store (one per backend), the local executor, and an [`Admin`] client
//! signed in as the instance admin ([`TestServer::api`], with the fixtures).
//! [`TestServer::url`] sends `/api/…` and `/metrics` to the admin listener, everything else to
//! the public one.

use std::sync::Arc;
use std::time::Duration;

use picloud_core::Limits;
use picloud_executor::ExecutorConfig;
use picloud_orchestrator::{Platform, PlatformConfig};
use picloud_server::ServerConfig;
use picloud_store::Store;
use reqwest::Method;
use serde_json::{json, Value};

use crate::http::{metric, sign_in, Admin, Answer};
use crate::ADMIN_PASSWORD;

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
    pub platform: Platform,
    /// The instance admin, signed in at the admin listener: its token, its HTTP client and the
    /// fixtures (app, script, route, …).
    pub api: Admin,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    stopped: Option<tokio::task::JoinHandle<()>>,
}

/// A browser's sign-in: the session and CSRF tokens from the answer, and its `Set-Cookie` values.
pub struct BrowserLogin {
    pub token: String,
    pub csrf: String,
    pub set_cookies: Vec<String>,
}

impl TestServer {
    /// `spawn_app`: a server on `store` with the default settings.
    pub async fn start(store: Arc<dyn Store>) -> Self {
        Self::start_with(store, Settings::default()).await
    }

    /// A server on `store` tuned by `settings`.
    pub async fn start_with(store: Arc<dyn Store>, settings: Settings) -> Self {
        let executor = ExecutorConfig {
            limits: settings.limits.clone(),
            script_cache_size: 64,
            module_cache_size: 64,
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
        let admin_base = format!("http://{admin_addr}");
        let token = sign_in(&http, &admin_base, "admin", ADMIN_PASSWORD).await;
        Self {
            base: format!("http://{addr}"),
            api: Admin::signed_in(http, &admin_base, token),
            admin_base,
            platform,
            shutdown: Some(tx),
            stopped: Some(stopped),
        }
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
            .api
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
        let answer = Answer::read(response).await;
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
        sign_in(&self.api.http, &self.admin_base, username, password).await
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
        let mut request = self.api.http.request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::read(request.send().await.expect("the request is answered")).await
    }

    /// An admin call as the instance admin.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        self.api.request(method, path, body).await
    }

    /// `GET path` without credentials.
    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None, None).await
    }

    /// The value of one sample in `/metrics`, 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        metric(&self.api.http, &self.admin_base, sample).await
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
