//! Counting the effects of async jobs end to end: a script that adds 1 to its job's own KV key
//! and to a counter all jobs share, a sync route that reads them, and a batch of concurrent
//! async requests.
//!
//! A job `n` whose key exists was not lost; `total − distinct` is the number of duplicated
//! effects. A job may run more than once (at-least-once delivery, a conflict's re-run: the
//! `ran <n>` log lines count runs), but its effects commit once with its completion (#15), so
//! the tests expect none, and the shared counter to equal `total`.

use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use crate::http::Admin;

/// The async job: busy for `work` ms (so that work is in flight), then adds 1 to its own key
/// and to the shared counter, and logs `ran <n>` (the node that ran it shows in its own log).
pub const RECORD_RUN: &str = r#"
let job = ctx.request.json;
let stop_at = time::now() + (job.work ?? 0);
while time::now() < stop_at { }
let runs = kv::collection("runs");
runs.set(`${job.n}`, (runs.get(`${job.n}`) ?? 0) + 1);
let all = kv::collection("shared");
all.set("count", (all.get("count") ?? 0) + 1);
log::info(`ran ${job.n}`);
"#;

/// The sync counter: the effects committed so far, per `n`, and the shared counter.
pub const COUNT_RUNS: &str = r#"
let runs = kv::collection("runs");
let counts = #{};
let total = 0;
let cursor = ();
loop {
    let page = runs.list(#{ limit: 1000, cursor: cursor });
    for item in page.items {
        counts[item.key] = item.value;
        total += item.value;
    }
    cursor = page.cursor;
    if cursor == () { break; }
}
#{ total: total, counts: counts, "shared": kv::collection("shared").get("count") ?? 0 }
"#;

/// Deploys the recorder behind `POST /run` (async) and the counter behind `GET /runs` (sync,
/// created last: a node that serves it knows the app's other route too); returns the app's id.
pub async fn deploy(admin: &Admin, slug: &str) -> String {
    let app_id = admin.create_app(slug).await;
    admin
        .route(&app_id, "record", RECORD_RUN, ("POST", "/run"), "async")
        .await;
    admin
        .route(&app_id, "count", COUNT_RUNS, ("GET", "/runs"), "sync")
        .await;
    app_id
}

/// What the counter saw.
#[derive(Debug, Default)]
pub struct Runs {
    /// Effects committed, over all jobs.
    pub total: u64,
    /// Effects committed per `n`.
    pub counts: HashMap<i64, u64>,
    /// The counter every job adds 1 to.
    pub shared: u64,
}

impl Runs {
    /// The accepted jobs that have not run (yet).
    pub fn missing(&self, accepted: &[i64]) -> Vec<i64> {
        accepted
            .iter()
            .copied()
            .filter(|n| !self.counts.contains_key(n))
            .collect()
    }

    /// Effects beyond the first of each job.
    pub fn duplicates(&self) -> u64 {
        self.total - self.counts.len() as u64
    }

    /// Effects beyond the first of the jobs numbered in `ns`.
    pub fn duplicates_in(&self, ns: Range<i64>) -> u64 {
        self.counts
            .iter()
            .filter(|(n, _)| ns.contains(n))
            .map(|(_, k)| k - 1)
            .sum()
    }

    /// How many jobs' effects were committed exactly `k` times, for `k` ≥ 2.
    pub fn repeated(&self) -> BTreeMap<u64, usize> {
        let mut by = BTreeMap::new();
        for &k in self.counts.values().filter(|&&k| k > 1) {
            *by.entry(k).or_default() += 1;
        }
        by
    }
}

/// Asks the counter at `base` (the server's address) of app `slug`.
pub async fn count(http: &reqwest::Client, base: &str, slug: &str) -> Result<Runs, String> {
    let response = http
        .get(format!("{base}/{slug}/runs"))
        .send()
        .await
        .map_err(|err| format!("GET /runs: {err}"))?;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status != 200 {
        return Err(format!("GET /runs answered {status}: {body}"));
    }
    let counts = body["counts"]
        .as_object()
        .ok_or_else(|| format!("no counts in {body}"))?
        .iter()
        .map(|(n, k)| {
            let n: i64 = n
                .parse()
                .map_err(|_| format!("'{n}' is not a job number"))?;
            Ok((n, k.as_u64().ok_or("a count is a number")?))
        })
        .collect::<Result<HashMap<_, _>, String>>()?;
    Ok(Runs {
        total: body["total"].as_u64().ok_or("total is a number")?,
        counts,
        shared: body["shared"].as_u64().ok_or("shared is a number")?,
    })
}

/// Polls the counter until every job in `accepted` has run or `timeout` passes; returns the
/// last count and how long it took. Counter errors (e.g. while the database recovers) are
/// retried until the deadline.
pub async fn wait_for(
    http: &reqwest::Client,
    base: &str,
    slug: &str,
    accepted: &[i64],
    timeout: Duration,
) -> (Runs, Duration) {
    let started = Instant::now();
    let deadline = started + timeout;
    let mut last_error = String::new();
    loop {
        match count(http, base, slug).await {
            Ok(runs) if runs.missing(accepted).is_empty() => return (runs, started.elapsed()),
            Ok(runs) if Instant::now() >= deadline => return (runs, started.elapsed()),
            Ok(_) => {}
            Err(err) => last_error = err,
        }
        assert!(
            Instant::now() < deadline,
            "the run counter did not answer within {timeout:?}: {last_error}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How one request of a batch ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// `202`, with the execution id (body and header agree).
    Accepted(String),
    /// Another status.
    Refused(u16),
    /// No answer (connection refused or reset, timeout).
    Failed(String),
}

/// One request of a batch: its job number, the index of the node it went to, how it ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub n: i64,
    pub node: usize,
    pub sent: Sent,
}

/// A batch of async requests on its way.
pub struct Batch {
    /// Requests answered `202` so far.
    pub accepted: Arc<AtomicUsize>,
    handle: JoinHandle<Vec<Outcome>>,
}

impl Batch {
    /// Sends `POST {urls[n % len]}` with `{"n": n, "work": work_ms}` for every `n` in `ns`,
    /// `concurrency` at a time.
    pub fn spawn(urls: Vec<String>, ns: Range<i64>, concurrency: usize, work_ms: u64) -> Self {
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        let handle = tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(concurrency));
            let mut set = JoinSet::new();
            for n in ns {
                let permit = slots.clone().acquire_owned().await.expect("open semaphore");
                let node = n.unsigned_abs() as usize % urls.len();
                let url = urls[node].clone();
                let http = http.clone();
                let counter = counter.clone();
                set.spawn(async move {
                    let _permit = permit;
                    let sent = post_job(&http, &url, n, work_ms).await;
                    if matches!(sent, Sent::Accepted(_)) {
                        counter.fetch_add(1, Ordering::AcqRel);
                    }
                    Outcome { n, node, sent }
                });
            }
            let mut outcomes = Vec::new();
            while let Some(outcome) = set.join_next().await {
                outcomes.push(outcome.expect("a request task"));
            }
            outcomes.sort_by_key(|o| o.n);
            outcomes
        });
        Self { accepted, handle }
    }

    /// Waits until at least `count` requests were accepted, or the batch ended.
    pub async fn wait_accepted(&self, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.accepted.load(Ordering::Acquire) < count && !self.handle.is_finished() {
            assert!(
                Instant::now() < deadline,
                "only {} of the {count} requests were accepted within {timeout:?}",
                self.accepted.load(Ordering::Acquire)
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn finish(self) -> Vec<Outcome> {
        self.handle.await.expect("the batch task")
    }
}

/// One async request.
pub async fn post_job(http: &reqwest::Client, url: &str, n: i64, work_ms: u64) -> Sent {
    match http
        .post(url)
        .json(&json!({"n": n, "work": work_ms}))
        .send()
        .await
    {
        Ok(response) if response.status() == 202 => {
            let header = response
                .headers()
                .get("x-picloud-execution-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let id = body["execution_id"]
                .as_str()
                .unwrap_or_else(|| panic!("a 202 names its execution: {body}"))
                .to_owned();
            assert_eq!(
                header.as_deref(),
                Some(id.as_str()),
                "the x-picloud-execution-id header names the accepted execution"
            );
            Sent::Accepted(id)
        }
        Ok(response) => Sent::Refused(response.status().as_u16()),
        Err(err) => Sent::Failed(err.to_string()),
    }
}

/// The job numbers that were accepted.
pub fn accepted(outcomes: &[Outcome]) -> Vec<i64> {
    outcomes
        .iter()
        .filter(|o| matches!(o.sent, Sent::Accepted(_)))
        .map(|o| o.n)
        .collect()
}

/// A summary of how requests ended: `"202" → 950, "503" → 20, "no answer" → 30`.
pub fn tally(outcomes: &[Outcome]) -> BTreeMap<String, usize> {
    let mut by = BTreeMap::new();
    for outcome in outcomes {
        let key = match &outcome.sent {
            Sent::Accepted(_) => "202".to_owned(),
            Sent::Refused(status) => status.to_string(),
            Sent::Failed(_) => "no answer".to_owned(),
        };
        *by.entry(key).or_default() += 1;
    }
    by
}
