//! Scenario tables, in the spirit of pocketbase's `tests.ApiScenario`: each row is one request
//! (method, path, as whom, body) with the status, the body and the side effects it must
//! produce, and [`run`] sends the rows in order on one [`TestServer`]. A failure names its row.
//!
//! Rows may build on earlier ones: [`Scenario::capture`] keeps a string of an answer under a
//! name, and `{name}` in a later row's path, body, expected fields, caller token or side effects
//! stands for it (only captured names are replaced, so a route pattern such as `/hello/{id}`
//! stays as it is).
//!
//! ```text
//! scenario::run(&server, vec![
//!     Scenario::new("POST /apps creates", Method::POST, "/api/v1/admin/apps")
//!         .body(json!({"slug": "shop", "name": "Shop"}))
//!         .status(201)
//!         .field("/slug", json!("shop"))
//!         .capture("app", "/id"),
//!     Scenario::new("an unknown app", Method::GET, "/api/v1/admin/apps/nope")
//!         .error(404, "not_found")
//!         .effect(Effect::Lists { path: "/api/v1/admin/apps".into(), items: 1 }),
//! ]).await;
//! ```

use std::collections::BTreeMap;

use reqwest::Method;
use serde_json::Value;

use crate::http::Answer;
use crate::server::TestServer;

/// Who sends a row's request.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The instance admin (the server's signed-in session).
    Admin,
    /// No credentials.
    Anonymous,
    /// `Authorization: Bearer <token>`; `{name}` stands for a captured value.
    Bearer(String),
}

/// What a row expects of one field of the JSON body (addressed by a JSON pointer).
#[derive(Debug, Clone)]
enum Expect {
    Equals(Value),
    Differs(Value),
    Contains(String),
    IsString,
    IsPresent,
    IsAbsent,
    Length(usize),
}

/// A side effect a row must leave behind, checked after its answer.
#[derive(Debug, Clone)]
pub enum Effect {
    /// `GET path` on the public listener (no credentials) answers `status`, with the body
    /// `text` when given.
    Answers {
        path: String,
        status: u16,
        text: Option<&'static str>,
    },
    /// The admin list at `path` holds `items` items.
    Lists { path: String, items: usize },
    /// The store's outbox holds `jobs` jobs, pending or running (a refused request added none).
    Queued { jobs: u64 },
}

/// One row: a request and what it must do.
#[derive(Debug, Clone)]
pub struct Scenario {
    name: String,
    method: Method,
    path: String,
    caller: Caller,
    body: Option<Value>,
    status: u16,
    text: Option<String>,
    headers: Vec<(&'static str, &'static str)>,
    fields: Vec<(String, Expect)>,
    captures: Vec<(&'static str, String)>,
    effects: Vec<Effect>,
}

impl Scenario {
    /// A request sent as the instance admin, expecting `200` unless told otherwise.
    pub fn new(name: impl Into<String>, method: Method, path: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            method,
            path: path.into(),
            caller: Caller::Admin,
            body: None,
            status: 200,
            text: None,
            headers: Vec::new(),
            fields: Vec::new(),
            captures: Vec::new(),
            effects: Vec::new(),
        }
    }

    pub fn caller(mut self, caller: Caller) -> Self {
        self.caller = caller;
        self
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// An error answer: `status`, `error.code` = `code` and a message that is not empty.
    pub fn error(self, status: u16, code: &str) -> Self {
        self.status(status)
            .field("/error/code", Value::from(code))
            .expect("/error/message", Expect::IsString)
    }

    /// The whole body is `text`.
    pub fn text(mut self, text: &str) -> Self {
        self.text = Some(text.to_owned());
        self
    }

    /// The answer has the header `name` with `value`.
    pub fn header(mut self, name: &'static str, value: &'static str) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The field at `pointer` equals `value`.
    pub fn field(self, pointer: &str, value: Value) -> Self {
        self.expect(pointer, Expect::Equals(value))
    }

    /// The field at `pointer` differs from `value`.
    pub fn field_differs(self, pointer: &str, value: Value) -> Self {
        self.expect(pointer, Expect::Differs(value))
    }

    /// The field at `pointer` is a string that contains `needle`.
    pub fn contains(self, pointer: &str, needle: &str) -> Self {
        self.expect(pointer, Expect::Contains(needle.to_owned()))
    }

    /// The field at `pointer` is not there.
    pub fn absent(self, pointer: &str) -> Self {
        self.expect(pointer, Expect::IsAbsent)
    }

    /// The field at `pointer` is a string that is not empty.
    pub fn string(self, pointer: &str) -> Self {
        self.expect(pointer, Expect::IsString)
    }

    /// The field at `pointer` is there (it may be `null`).
    pub fn present(self, pointer: &str) -> Self {
        self.expect(pointer, Expect::IsPresent)
    }

    /// The array at `pointer` holds `len` items.
    pub fn length(self, pointer: &str, len: usize) -> Self {
        self.expect(pointer, Expect::Length(len))
    }

    /// Keeps the string at `pointer` as `{name}` for later rows.
    pub fn capture(mut self, name: &'static str, pointer: &str) -> Self {
        self.captures.push((name, pointer.to_owned()));
        self
    }

    pub fn effect(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }

    fn expect(mut self, pointer: &str, expect: Expect) -> Self {
        self.fields.push((pointer.to_owned(), expect));
        self
    }
}

/// The values rows captured, by name.
pub type Captured = BTreeMap<&'static str, String>;

/// Runs `rows` in order on `server`; returns what they captured. Panics at the first row that
/// does not do what it says, naming it.
pub async fn run(server: &TestServer, rows: Vec<Scenario>) -> Captured {
    let mut captured = Captured::new();
    for row in rows {
        run_row(server, &row, &mut captured).await;
    }
    captured
}

async fn run_row(server: &TestServer, row: &Scenario, captured: &mut Captured) {
    let name = &row.name;
    let path = fill(&row.path, captured);
    let body = row.body.as_ref().map(|body| fill_json(body, captured));
    let answer = match &row.caller {
        Caller::Admin => server.admin(row.method.clone(), &path, body).await,
        Caller::Anonymous => server.call(row.method.clone(), &path, None, body).await,
        Caller::Bearer(token) => {
            let token = fill(token, captured);
            server
                .call(row.method.clone(), &path, Some(&token), body)
                .await
        }
    };
    assert_eq!(
        answer.status, row.status,
        "row '{name}' ({} {path}): the status; the answer: {answer}",
        row.method
    );
    if let Some(text) = &row.text {
        assert_eq!(&answer.text, text, "row '{name}': the body");
    }
    for (header, value) in &row.headers {
        assert_eq!(
            answer.header(header),
            Some(*value),
            "row '{name}': the header {header}; the answer: {answer}"
        );
    }
    for (pointer, expect) in &row.fields {
        check_field(name, &answer, pointer, expect, captured);
    }
    for (key, pointer) in &row.captures {
        let value = answer
            .json
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("row '{name}': no string at {pointer} to keep: {answer}"));
        captured.insert(key, value.to_owned());
    }
    for effect in &row.effects {
        check_effect(server, name, effect, captured).await;
    }
}

fn check_field(name: &str, answer: &Answer, pointer: &str, expect: &Expect, captured: &Captured) {
    let found = answer.json.pointer(pointer);
    match expect {
        Expect::Equals(value) => assert_eq!(
            found,
            Some(&fill_json(value, captured)),
            "row '{name}': the field {pointer}; the answer: {answer}"
        ),
        Expect::Differs(value) => assert_ne!(
            found,
            Some(&fill_json(value, captured)),
            "row '{name}': the field {pointer} changes; the answer: {answer}"
        ),
        Expect::Contains(needle) => assert!(
            found
                .and_then(Value::as_str)
                .is_some_and(|s| s.contains(&fill(needle, captured))),
            "row '{name}': the field {pointer} says '{needle}'; the answer: {answer}"
        ),
        Expect::IsAbsent => assert!(
            found.is_none(),
            "row '{name}': the field {pointer} is not there; the answer: {answer}"
        ),
        Expect::IsString => assert!(
            found.and_then(Value::as_str).is_some_and(|s| !s.is_empty()),
            "row '{name}': the field {pointer} is a string that is not empty; the answer: {answer}"
        ),
        Expect::IsPresent => assert!(
            found.is_some(),
            "row '{name}': the field {pointer} is there; the answer: {answer}"
        ),
        Expect::Length(len) => assert_eq!(
            found.and_then(Value::as_array).map(Vec::len),
            Some(*len),
            "row '{name}': the number of items at {pointer}; the answer: {answer}"
        ),
    }
}

async fn check_effect(server: &TestServer, name: &str, effect: &Effect, captured: &Captured) {
    match effect {
        Effect::Answers { path, status, text } => {
            let path = fill(path, captured);
            let answer = server.get(&path).await;
            assert_eq!(
                answer.status, *status,
                "row '{name}': afterwards GET {path} answers; the answer: {answer}"
            );
            if let Some(text) = text {
                assert_eq!(
                    answer.text, *text,
                    "row '{name}': afterwards GET {path} answers with"
                );
            }
        }
        Effect::Lists { path, items } => {
            let path = fill(path, captured);
            let answer = server.admin(Method::GET, &path, None).await;
            assert_eq!(
                answer.json["items"].as_array().map(Vec::len),
                Some(*items),
                "row '{name}': afterwards {path} lists {items} item(s); the answer: {answer}"
            );
        }
        Effect::Queued { jobs } => {
            let depth = server
                .platform
                .store()
                .outbox_depth()
                .await
                .unwrap_or_else(|err| panic!("row '{name}': the outbox depth: {err}"));
            assert_eq!(
                depth.pending + depth.running,
                *jobs,
                "row '{name}': afterwards the outbox holds {jobs} job(s): {depth:?}"
            );
        }
    }
}

/// `text` with every `{name}` of a captured value replaced.
fn fill(text: &str, captured: &Captured) -> String {
    captured
        .iter()
        .fold(text.to_owned(), |text, (name, value)| {
            text.replace(&format!("{{{name}}}"), value)
        })
}

/// [`fill`] on every string of a JSON value.
fn fill_json(value: &Value, captured: &Captured) -> Value {
    match value {
        Value::String(s) => Value::String(fill(s, captured)),
        Value::Array(items) => Value::Array(items.iter().map(|v| fill_json(v, captured)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), fill_json(v, captured)))
                .collect(),
        ),
        other => other.clone(),
    }
}
