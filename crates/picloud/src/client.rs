//! The admin API as the client commands speak it: a [`Server`] with its credential, and every
//! failure as a sentence that says what to do — an unreachable URL named as such, a refusal with
//! the server's own message.

use std::fmt;
use std::time::Duration;

use anyhow::Context;
use picloud_core::records::{ExecutionRecord, ExecutionSource};
use picloud_core::{AppId, ScriptId};
use reqwest::{Response, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use crate::config::{ServerArgs, DEFAULT_URL};
use crate::profiles::Profiles;

/// A mistake in how the command was called (no credential, no profile): exit code 2, as for
/// clap's own usage errors.
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// An answer that is not a success: its status, and the code and message of the server's error
/// body.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    /// `Retry-After`, in seconds.
    pub retry_after: Option<u64>,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            StatusCode::UNAUTHORIZED => write!(
                f,
                "the server refused the credential ({}): log in again with `picloud login`, or \
                 pass another --token",
                self.message
            ),
            status => write!(f, "{} ({status})", self.message),
        }
    }
}

impl std::error::Error for Refusal {}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

impl Refusal {
    /// The refusal a failed answer carries; `Ok` hands a success back.
    async fn check(response: Response) -> Result<Response, Self> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok()?.trim().parse().ok());
        let (code, message) = match response.json::<ErrorBody>().await {
            Ok(body) => (body.error.code, body.error.message),
            Err(_) => (
                String::new(),
                status
                    .canonical_reason()
                    .unwrap_or("an unexpected answer")
                    .to_lowercase(),
            ),
        };
        Err(Self {
            status,
            code,
            message,
            retry_after,
        })
    }
}

/// An app as the CLI names it.
#[derive(Debug, Deserialize)]
pub struct AppRef {
    pub id: AppId,
    pub slug: String,
}

#[derive(Deserialize)]
struct ScriptRef {
    id: ScriptId,
    name: String,
}

#[derive(Deserialize)]
struct List<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

/// A session `POST /api/v1/auth/login` answered.
#[derive(Deserialize)]
pub struct Session {
    pub token: String,
}

/// Which of an app's records: the query of the executions list and of the live tail alike.
#[derive(Debug, Default)]
pub struct RecordFilter {
    pub script_id: Option<ScriptId>,
    /// Only failed executions (`outcome=error`).
    pub errors: bool,
    pub source: Option<ExecutionSource>,
}

impl RecordFilter {
    fn query(&self) -> Vec<(&'static str, String)> {
        let mut query = Vec::new();
        if let Some(script_id) = self.script_id {
            query.push(("script_id", script_id.to_string()));
        }
        if self.errors {
            query.push(("outcome", "error".to_owned()));
        }
        if let Some(source) = self.source {
            query.push(("source", source.as_str().to_owned()));
        }
        query
    }
}

/// How long an ordinary request may take; the live tail has no such bound.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// A server's admin listener, and the bearer token sent to it.
pub struct Server {
    http: reqwest::Client,
    /// The URL without a trailing `/`: paths are appended to it (a proxy may serve the admin
    /// API under a path of its own).
    base: String,
    token: String,
}

impl Server {
    /// The admin listener at `url`, with `token` (may be empty, for a login).
    pub fn new(url: &Url, token: String) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("picloud-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            base: url.as_str().trim_end_matches('/').to_owned(),
            token,
        })
    }

    /// The server and credential of the flags, else of the profile. The profile's session goes
    /// only to the URL it was made for.
    pub fn from_args(args: &ServerArgs) -> anyhow::Result<Self> {
        if let (Some(url), Some(token)) = (&args.url, &args.token) {
            return Self::new(url, token.clone());
        }
        let profiles = Profiles::load(&args.profile)?;
        let profile = profiles.get(&args.profile.profile);
        let url = match (&args.url, profile) {
            (Some(url), _) => url.clone(),
            (None, Some(profile)) => profile.url()?,
            (None, None) => Url::parse(DEFAULT_URL).context("the default URL")?,
        };
        if let Some(token) = &args.token {
            return Self::new(&url, token.clone());
        }
        match profile {
            Some(profile) if profile.url == url.as_str() => Self::new(&url, profile.token.clone()),
            Some(profile) => Err(UsageError(format!(
                "the profile '{}' holds a session for {}, not {url}: pass --token, or run \
                 `picloud login --url {url}`",
                args.profile.profile, profile.url
            ))
            .into()),
            None => Err(UsageError(format!(
                "not logged in: run `picloud login` (no profile '{}' in {}), or pass --token",
                args.profile.profile,
                profiles.path().display()
            ))
            .into()),
        }
    }

    pub fn url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        if self.token.is_empty() {
            request
        } else {
            request.bearer_auth(&self.token)
        }
    }

    /// Sends a request: a network failure names the URL; a refusal is a [`Refusal`].
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Response> {
        let response = request.send().await.map_err(|err| self.unreachable(err))?;
        Ok(Refusal::check(response).await?)
    }

    fn unreachable(&self, err: reqwest::Error) -> anyhow::Error {
        let cause = std::error::Error::source(&err)
            .map(ToString::to_string)
            .unwrap_or_else(|| err.to_string());
        if err.is_timeout() {
            anyhow::anyhow!("the PiCloud server at {} did not answer in time", self.base)
        } else {
            anyhow::anyhow!(
                "cannot reach the PiCloud server at {}: it is not reachable ({cause})",
                self.base
            )
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let request = self
            .request(reqwest::Method::GET, path)
            .query(query)
            .timeout(REQUEST_TIMEOUT);
        self.send(request)
            .await?
            .json()
            .await
            .with_context(|| format!("the answer of {}{path} is not what it should be", self.base))
    }

    /// Every item of a list, page by page.
    async fn all<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<Vec<T>> {
        let mut items = Vec::new();
        let mut query = vec![("limit", "500".to_owned())];
        loop {
            let page: List<T> = self.get(path, &query).await?;
            items.extend(page.items);
            match page.next_cursor {
                Some(cursor) => query = vec![("limit", "500".to_owned()), ("cursor", cursor)],
                None => return Ok(items),
            }
        }
    }

    /// `POST /api/v1/auth/login`.
    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<Session> {
        let request = self
            .request(reqwest::Method::POST, "/api/v1/auth/login")
            .json(&json!({"username": username, "password": password}))
            .timeout(REQUEST_TIMEOUT);
        let response = self.send(request).await.map_err(|err| {
            let Some(refusal) = err.downcast_ref::<Refusal>() else {
                return err;
            };
            match (refusal.status, refusal.code.as_str()) {
                (StatusCode::UNAUTHORIZED, _) => anyhow::anyhow!(
                    "wrong username or password for '{username}' at {}",
                    self.base
                ),
                (StatusCode::FORBIDDEN, "account_disabled") => anyhow::anyhow!(
                    "the account '{username}' is disabled; an instance admin can enable it"
                ),
                (StatusCode::TOO_MANY_REQUESTS, _) => anyhow::anyhow!(
                    "too many failed logins for '{username}'; try again in {} s",
                    refusal.retry_after.unwrap_or(1)
                ),
                _ => err,
            }
        })?;
        response
            .json()
            .await
            .context("the login answer carries no session token")
    }

    /// `POST /api/v1/auth/logout`: the session ends on the server.
    pub async fn logout(&self) -> anyhow::Result<()> {
        let request = self
            .request(reqwest::Method::POST, "/api/v1/auth/logout")
            .timeout(REQUEST_TIMEOUT);
        self.send(request).await.map(drop)
    }

    /// The app whose slug is `slug`, among those the credential may read.
    pub async fn app(&self, slug: &str) -> anyhow::Result<AppRef> {
        let mut apps: Vec<AppRef> = self.all("/api/v1/admin/apps").await?;
        if let Some(index) = apps.iter().position(|app| app.slug == slug) {
            return Ok(apps.swap_remove(index));
        }
        let near = picloud_executor::closest(slug, apps.iter().map(|app| app.slug.as_str()));
        anyhow::bail!(
            "there is no app '{slug}' at {} that you may read{}",
            self.base,
            did_you_mean(near)
        )
    }

    /// The id of the app's script `name`.
    pub async fn script(&self, app: &AppRef, name: &str) -> anyhow::Result<ScriptId> {
        let scripts: Vec<ScriptRef> = self
            .all(&format!("/api/v1/admin/apps/{}/scripts", app.id))
            .await?;
        if let Some(script) = scripts.iter().find(|script| script.name == name) {
            return Ok(script.id);
        }
        let near = picloud_executor::closest(name, scripts.iter().map(|s| s.name.as_str()));
        anyhow::bail!(
            "the app '{}' has no script '{name}'{}",
            app.slug,
            did_you_mean(near)
        )
    }

    /// The app's newest `limit` records that match `filter`, newest first.
    pub async fn executions(
        &self,
        app: AppId,
        filter: &RecordFilter,
        limit: u32,
    ) -> anyhow::Result<Vec<ExecutionRecord>> {
        let mut query = filter.query();
        query.push(("limit", limit.to_string()));
        let page: List<ExecutionRecord> = self
            .get(&format!("/api/v1/admin/apps/{app}/executions"), &query)
            .await?;
        Ok(page.items)
    }

    /// The app's live tail: an open `text/event-stream` of the records that match `filter`.
    pub async fn live_tail(&self, app: AppId, filter: &RecordFilter) -> anyhow::Result<Response> {
        let request = self
            .request(
                reqwest::Method::GET,
                &format!("/api/v1/admin/apps/{app}/logs/stream"),
            )
            .query(&filter.query())
            .header(reqwest::header::ACCEPT, "text/event-stream");
        self.send(request).await
    }
}

fn did_you_mean(near: Option<&str>) -> String {
    near.map(|name| format!("; did you mean '{name}'?"))
        .unwrap_or_default()
}
