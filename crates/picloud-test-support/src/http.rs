//! Talking to a PiCloud over HTTP, in-process ([`TestServer`](crate::server::TestServer)) or the
//! real binary alike: an [`Answer`], and [`Admin`], a client signed in at the admin listener
//! with the fixtures a test builds on (app, endpoint script, route, user, API key).

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Value};

/// One answer: status, headers and the body (JSON when it parses, else a JSON string).
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Answer {
    /// Reads a response whole; of an event stream (a live tail, which never ends by itself),
    /// only the status and headers.
    pub async fn read(response: reqwest::Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let streams = headers
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|kind| kind.as_bytes().starts_with(b"text/event-stream"));
        let text = if streams {
            String::new()
        } else {
            response.text().await.expect("a readable body")
        };
        let json = serde_json::from_str(&text).unwrap_or_else(|_| Value::String(text.clone()));
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `error.code` of an error answer.
    pub fn code(&self) -> &str {
        self.json["error"]["code"]
            .as_str()
            .unwrap_or("<no error code>")
    }

    /// The status and the JSON body, `Null` when the body is not JSON.
    pub fn parts(self) -> (u16, Value) {
        let json = serde_json::from_str(&self.text).unwrap_or(Value::Null);
        (self.status, json)
    }
}

impl std::fmt::Display for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.text)
    }
}

/// `GET url` without credentials: the status and the JSON body (`Null` when not JSON).
pub async fn get_json(url: &str) -> (u16, Value) {
    Answer::read(reqwest::get(url).await.expect("GET"))
        .await
        .parts()
}

/// The text of `/metrics` on the admin listener `admin_base`.
pub async fn metrics(http: &reqwest::Client, admin_base: &str) -> String {
    http.get(format!("{admin_base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("the metrics")
}

/// The value of one sample in `/metrics` of the admin listener `admin_base`, 0 when absent.
pub async fn metric(http: &reqwest::Client, admin_base: &str, sample: &str) -> f64 {
    metrics(http, admin_base)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Signs `username` in at the admin listener `base`; returns the bearer token (asserting
/// success).
pub async fn sign_in(http: &reqwest::Client, base: &str, username: &str, password: &str) -> String {
    let answer = Answer::read(
        http.post(format!("{base}/api/v1/auth/login"))
            .json(&json!({"username": username, "password": password}))
            .send()
            .await
            .expect("the login request is answered"),
    )
    .await;
    assert_eq!(
        answer.status, 200,
        "login as {username} should succeed: {answer}"
    );
    answer.json["token"].as_str().expect("a token").to_owned()
}

/// An HTTP client signed in at the admin listener (as the instance admin, or as `login_as` says).
pub struct Admin {
    pub http: reqwest::Client,
    /// The admin listener.
    pub base: String,
    /// The bearer token.
    pub token: String,
}

impl Admin {
    /// Signs in as the instance admin at the admin listener `base`.
    pub async fn login(base: &str, password: &str) -> Self {
        Self::login_as(base, "admin", password).await
    }

    /// Signs in as `username`.
    pub async fn login_as(base: &str, username: &str, password: &str) -> Self {
        let http = reqwest::Client::new();
        let token = sign_in(&http, base, username, password).await;
        Self::signed_in(http, base, token)
    }

    /// A client for a session already signed in.
    pub fn signed_in(http: reqwest::Client, base: &str, token: String) -> Self {
        Self {
            http,
            base: base.to_owned(),
            token,
        }
    }

    /// A signed-in request with an optional JSON body.
    pub async fn request(&self, method: Method, path: &str, body: Option<Value>) -> Answer {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        Answer::read(request.send().await.expect("the request is answered")).await
    }

    /// A signed-in `POST`: the status and the JSON body (`Null` when not JSON).
    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.request(Method::POST, path, Some(body)).await.parts()
    }

    /// A signed-in `GET`: the status and the JSON body (`Null` when not JSON).
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.request(Method::GET, path, None).await.parts()
    }

    /// A signed-in `DELETE`: the status.
    pub async fn delete(&self, path: &str) -> u16 {
        self.request(Method::DELETE, path, None).await.status
    }

    /// Creates an app; returns its id.
    pub async fn create_app(&self, slug: &str) -> String {
        let (status, app) = self
            .post("/api/v1/admin/apps", json!({"slug": slug, "name": slug}))
            .await;
        assert_eq!(status, 201, "create app {slug}: {app}");
        app["id"].as_str().expect("an app id").to_owned()
    }

    /// Creates an endpoint script without a route (a trigger's handler); returns its id.
    pub async fn create_script(&self, app_id: &str, name: &str, source: &str) -> String {
        self.create_of_kind(app_id, "endpoint", name, source).await
    }

    /// Creates a module script; returns its id.
    pub async fn create_module(&self, app_id: &str, name: &str, source: &str) -> String {
        self.create_of_kind(app_id, "module", name, source).await
    }

    async fn create_of_kind(&self, app_id: &str, kind: &str, name: &str, source: &str) -> String {
        let (status, script) = self
            .post(
                &format!("/api/v1/admin/apps/{app_id}/scripts"),
                json!({"name": name, "source": source, "kind": kind}),
            )
            .await;
        assert_eq!(status, 201, "create {kind} {name}: {script}");
        script["id"].as_str().expect("a script id").to_owned()
    }

    /// Routes `method path` to a script, dispatched `mode` (`"sync"` or `"async"`); returns the
    /// route's id.
    pub async fn create_route_with(
        &self,
        script_id: &str,
        (method, path): (&str, &str),
        mode: &str,
    ) -> String {
        let (status, route) = self
            .post(
                &format!("/api/v1/admin/scripts/{script_id}/routes"),
                json!({"method": method, "path": path, "dispatch_mode": mode}),
            )
            .await;
        assert_eq!(status, 201, "create {mode} route {method} {path}: {route}");
        route["id"].as_str().expect("a route id").to_owned()
    }

    /// Routes `method path` to a script, sync; returns the route's id.
    pub async fn create_route(&self, script_id: &str, method: &str, path: &str) -> String {
        self.create_route_with(script_id, (method, path), "sync")
            .await
    }

    /// Creates a script behind `method path` dispatched `mode` (`"sync"` or `"async"`); returns
    /// the script's id.
    pub async fn route(
        &self,
        app_id: &str,
        name: &str,
        source: &str,
        (method, path): (&str, &str),
        mode: &str,
    ) -> String {
        let script_id = self.create_script(app_id, name, source).await;
        self.create_route_with(&script_id, (method, path), mode)
            .await;
        script_id
    }

    /// Creates a script behind a sync route `method path`.
    pub async fn add_route(
        &self,
        app_id: &str,
        name: &str,
        source: &str,
        method: &str,
        path: &str,
    ) {
        self.route(app_id, name, source, (method, path), "sync")
            .await;
    }

    /// An app `slug` whose script `source` answers `method path`; returns the app's id.
    pub async fn deploy(&self, slug: &str, source: &str, method: &str, path: &str) -> String {
        let app_id = self.create_app(slug).await;
        self.add_route(&app_id, "main", source, method, path).await;
        app_id
    }

    /// The app's dead letters with `status` (`unresolved`, `resolved`, `all`).
    pub async fn dead_letters(&self, app_id: &str, status: &str) -> Vec<Value> {
        let (code, body) = self
            .get(&format!(
                "/api/v1/admin/apps/{app_id}/dead-letters?status={status}"
            ))
            .await;
        assert_eq!(code, 200, "list dead letters: {body}");
        body["items"].as_array().expect("an items array").clone()
    }
}

/// A Server-Sent Events stream (a live tail), read event by event.
pub struct EventStream {
    response: reqwest::Response,
    /// Received text not yet parsed into events.
    buffer: String,
}

/// One event: its name (`message` when it has none) and its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

impl Event {
    /// The data as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or_else(|err| panic!("{err}: {}", self.data))
    }
}

impl EventStream {
    /// `GET url` with `token`: the stream, or the answer when it is not one.
    pub async fn open(http: &reqwest::Client, url: &str, token: &str) -> Result<Self, Answer> {
        let response = http
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .expect("the request is answered");
        let streams = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .is_some_and(|kind| kind.as_bytes().starts_with(b"text/event-stream"));
        if response.status() != 200 || !streams {
            return Err(Answer::read(response).await);
        }
        Ok(Self {
            response,
            buffer: String::new(),
        })
    }

    /// The next event, skipping comments; `None` when the server ended the stream. Panics when
    /// nothing comes `within`.
    pub async fn next(&mut self, within: std::time::Duration) -> Option<Event> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                if let Some(event) = parse_event(&block) {
                    return Some(event);
                }
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .unwrap_or_else(|_| panic!("no event within {within:?}"))
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }
}

/// An event of one block of lines; `None` for a block of comments.
fn parse_event(block: &str) -> Option<Event> {
    let mut name = None;
    let mut data: Vec<&str> = Vec::new();
    for line in block.lines() {
        if let Some(value) = line.strip_prefix("event:") {
            name = Some(value.trim_start().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            data.push(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    (name.is_some() || !data.is_empty()).then(|| Event {
        name: name.unwrap_or_else(|| "message".to_owned()),
        data: data.join("\n"),
    })
}
