//! `picloud logs`: an app's execution records, oldest first, one header line each with its log
//! lines and error below; `--follow` goes on with the live tail (`…/logs/stream`, server-sent
//! events) and reconnects when the connection drops.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use anyhow::Context;
use picloud_core::exec::LogLevel;
use picloud_core::records::ExecutionRecord;
use picloud_core::RecordId;
use serde::Deserialize;

use crate::client::{AppRef, RecordFilter, Refusal, Server};
use crate::config::LogsArgs;
use crate::sse;

pub async fn run(args: LogsArgs) -> anyhow::Result<()> {
    let server = Server::from_args(&args.server)?;
    let app = server.app(&args.app).await?;
    let script_id = match &args.script {
        Some(name) => Some(server.script(&app, name).await?),
        None => None,
    };
    let filter = RecordFilter {
        script_id,
        errors: args.errors,
        source: args.source,
    };
    let mut printer = Printer {
        out: std::io::stdout().lock(),
        style: Style::for_stdout(),
        shown: BTreeSet::new(),
    };
    if !args.follow {
        let records = server.executions(app.id, &filter, args.limit).await?;
        return printer.print_newest(records);
    }
    let tail = Tail {
        server: &server,
        app: &app,
        filter: &filter,
        limit: args.limit,
    };
    tail.follow(&mut printer).await
}

/// How long the live tail may stay silent before the connection counts as lost: the server
/// sends a keep-alive comment every 15 s.
const SILENCE_LIMIT: Duration = Duration::from_secs(45);
/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// When the newest records are listed a second time after a (re)connection. The live tail
/// publishes a record as its execution finishes, the list has it once it is written (within
/// 0.2 s): one that finished just before the tail opened was in neither at first.
const SECOND_LOOK: Duration = Duration::from_secs(1);

/// `--follow`: the newest records, then the live tail until the server ends it. Each
/// (re)connection opens the stream first and lists the newest records after (and once more a
/// moment later), so nothing that finished in between is missed; what both bring is printed
/// once.
struct Tail<'a> {
    server: &'a Server,
    app: &'a AppRef,
    filter: &'a RecordFilter,
    limit: u32,
}

/// How a live tail ended.
enum Ended {
    /// The server closed the stream.
    Closed,
    /// The connection broke or went silent: worth reconnecting.
    Lost(String),
}

/// `data` of `event: dropped`.
#[derive(Deserialize)]
struct Dropped {
    message: String,
}

impl Tail<'_> {
    async fn follow(&self, printer: &mut Printer<impl Write>) -> anyhow::Result<()> {
        let mut stream = self.server.live_tail(self.app.id, self.filter).await?;
        loop {
            match self.read(&mut stream, printer).await? {
                Ended::Closed => {
                    eprintln!("the server ended the live tail");
                    return Ok(());
                }
                Ended::Lost(why) => stream = self.reconnect(&why).await?,
            }
        }
    }

    /// Opens the stream again, waiting longer after each failure; a refusal (the credential
    /// ended, the app is gone) is an error.
    async fn reconnect(&self, why: &str) -> anyhow::Result<reqwest::Response> {
        let mut backoff = Duration::from_millis(500);
        eprintln!(
            "the live tail of '{}' was interrupted ({why}); reconnecting",
            self.app.slug
        );
        loop {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
            match self.server.live_tail(self.app.id, self.filter).await {
                Ok(stream) => return Ok(stream),
                Err(err) if err.downcast_ref::<Refusal>().is_some() => return Err(err),
                Err(err) => eprintln!("{err:#}; trying again in {} ms", backoff.as_millis()),
            }
        }
    }

    async fn catch_up(&self, printer: &mut Printer<impl Write>) -> anyhow::Result<()> {
        let records = self
            .server
            .executions(self.app.id, self.filter, self.limit)
            .await?;
        printer.print_newest(records)
    }

    /// Prints the newest records, then the stream's until it ends; `dropped` (the server gave
    /// up on a slow reader) is an error.
    async fn read(
        &self,
        stream: &mut reqwest::Response,
        printer: &mut Printer<impl Write>,
    ) -> anyhow::Result<Ended> {
        self.catch_up(printer).await?;
        let second_look = tokio::time::sleep(SECOND_LOOK);
        tokio::pin!(second_look);
        let mut looked = false;
        let mut parser = sse::Parser::default();
        loop {
            let chunk = tokio::select! {
                () = &mut second_look, if !looked => {
                    looked = true;
                    self.catch_up(printer).await?;
                    continue;
                }
                chunk = tokio::time::timeout(SILENCE_LIMIT, stream.chunk()) => chunk,
            };
            let chunk = match chunk {
                Err(_) => return Ok(Ended::Lost("no keep-alive for 45 s".to_owned())),
                Ok(Err(err)) => return Ok(Ended::Lost(err.to_string())),
                Ok(Ok(None)) => return Ok(Ended::Closed),
                Ok(Ok(Some(chunk))) => chunk,
            };
            for event in parser.push(&chunk) {
                match event.name.as_str() {
                    "execution" => {
                        let record: ExecutionRecord = serde_json::from_str(&event.data)
                            .context("the live tail sent a record that does not parse")?;
                        printer.print(&record)?;
                    }
                    "dropped" => {
                        let message = serde_json::from_str::<Dropped>(&event.data)
                            .map_or(event.data, |dropped| dropped.message);
                        anyhow::bail!("the server stopped the live tail: {message}");
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Records printed lately, so that one the list and the live tail both bring is printed once;
/// past this many, the oldest are forgotten (a list brings at most 500, all newer).
const SHOWN_KEPT: usize = 1_000;

struct Printer<W> {
    out: W,
    style: Style,
    shown: BTreeSet<RecordId>,
}

impl<W: Write> Printer<W> {
    /// A list's records (newest first), oldest first.
    fn print_newest(&mut self, records: Vec<ExecutionRecord>) -> anyhow::Result<()> {
        records
            .iter()
            .rev()
            .try_for_each(|record| self.print(record))
    }

    /// The record, unless it was printed already.
    fn print(&mut self, record: &ExecutionRecord) -> anyhow::Result<()> {
        if !self.shown.insert(record.id) {
            return Ok(());
        }
        if self.shown.len() > SHOWN_KEPT {
            self.shown.pop_first();
        }
        self.out
            .write_all(render(record, self.style).as_bytes())
            .and_then(|()| self.out.flush())
            .context("cannot write to stdout")
    }
}

/// ANSI colours, or plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Style {
    colour: bool,
}

impl Style {
    /// Colours only for a person at a terminal, and not when `NO_COLOR` is set
    /// (<https://no-color.org>).
    fn for_stdout() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            colour: std::io::stdout().is_terminal() && !no_color,
        }
    }

    fn paint(self, sgr: &str, text: &str) -> String {
        if self.colour {
            format!("\x1b[{sgr}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

const DIM: &str = "2";
const RED: &str = "31";
const GREEN: &str = "32";
const YELLOW: &str = "33";

/// The lines of one record: a header (time, source, summary, outcome, duration, execution id,
/// the attempt when it is a retry), its log lines indented, and its error.
fn render(record: &ExecutionRecord, style: Style) -> String {
    let outcome = match record.status {
        Some(status) if record.outcome == "ok" => style.paint(GREEN, &format!("ok {status}")),
        _ => style.paint(RED, &record.outcome),
    };
    let mut text = format!(
        "{}  {}  {}  {outcome}  {}  {}",
        style.paint(DIM, &record.started_at.to_rfc3339()),
        record.source.as_str(),
        printable(&record.summary),
        duration(record.duration_us),
        style.paint(DIM, &record.execution_id.to_string()),
    );
    if record.attempt > 1 {
        let _ = write!(text, "  attempt {}", record.attempt);
    }
    text.push('\n');
    for line in &record.logs {
        let level = match line.level {
            LogLevel::Debug => style.paint(DIM, "debug"),
            LogLevel::Info => "info ".to_owned(),
            LogLevel::Warn => style.paint(YELLOW, "warn "),
            LogLevel::Error => style.paint(RED, "error"),
        };
        let discarded = if line.discarded {
            "[discarded run] "
        } else {
            ""
        };
        let _ = writeln!(text, "    {level} {discarded}{}", indented(&line.message));
    }
    if let Some(error) = &record.error {
        let at = match (error.line, error.column) {
            (Some(line), Some(column)) => format!(" (at {line}:{column})"),
            (Some(line), None) => format!(" (at line {line})"),
            _ => String::new(),
        };
        let _ = writeln!(
            text,
            "    {} {}{at}",
            style.paint(RED, "!"),
            indented(&error.message)
        );
    }
    text
}

/// `412 µs`, `3.1 ms`, `2.40 s`.
fn duration(micros: u64) -> String {
    match micros {
        0..=999 => format!("{micros} µs"),
        1_000..=999_999 => format!("{:.1} ms", micros as f64 / 1e3),
        _ => format!("{:.2} s", micros as f64 / 1e6),
    }
}

/// Text from a script or a caller, made harmless for a terminal: control characters (escape
/// sequences could rewrite the screen) are shown escaped.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() && c != '\t' {
                c.escape_unicode().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A multi-line message, its further lines indented under the first.
fn indented(message: &str) -> String {
    message
        .split('\n')
        .map(printable)
        .collect::<Vec<_>>()
        .join("\n          ")
}

#[cfg(test)]
mod tests {
    use picloud_core::exec::{ExecError, ExecErrorKind, LogLine};
    use picloud_core::records::ExecutionSource;
    use picloud_core::{AppId, ExecutionId, ScriptId, Timestamp};

    use super::*;

    fn record() -> ExecutionRecord {
        ExecutionRecord {
            id: RecordId::new(),
            execution_id: ExecutionId::new(),
            attempt: 1,
            app_id: AppId::new(),
            script_id: ScriptId::new(),
            source: ExecutionSource::Sync,
            summary: "GET /orders/17".to_owned(),
            started_at: Timestamp::from_millis(1_800_000_000_123),
            duration_us: 412,
            runs: 1,
            outcome: "ok".to_owned(),
            status: Some(200),
            error: None,
            logs: vec![LogLine {
                level: picloud_core::exec::LogLevel::Info,
                message: "loading order 17".to_owned(),
                at: Timestamp::from_millis(1_800_000_000_124),
                discarded: false,
            }],
        }
    }

    const PLAIN: Style = Style { colour: false };

    #[test]
    fn a_record_is_a_header_line_and_its_log_lines_indented() {
        let record = record();
        assert_eq!(
            render(&record, PLAIN),
            format!(
                "2027-01-15T08:00:00.123Z  sync  GET /orders/17  ok 200  412 µs  {}\n    \
                 info  loading order 17\n",
                record.execution_id
            )
        );
    }

    #[test]
    fn a_failed_retry_shows_its_attempt_and_its_error_with_the_position() {
        let mut record = record();
        record.attempt = 3;
        record.source = ExecutionSource::Async;
        record.outcome = "runtime_error".to_owned();
        record.status = None;
        record.duration_us = 2_400_000;
        record.logs[0].discarded = true;
        record.error = Some(ExecError {
            kind: ExecErrorKind::Runtime,
            message: "boom".to_owned(),
            line: Some(2),
            column: Some(1),
        });
        let text = render(&record, PLAIN);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].contains("  runtime_error  2.40 s  ") && lines[0].ends_with("  attempt 3"),
            "the header: {text}"
        );
        assert_eq!(lines[1], "    info  [discarded run] loading order 17");
        assert_eq!(lines[2], "    ! boom (at 2:1)");
    }

    #[test]
    fn colours_are_ansi_codes_and_plain_text_has_none() {
        let mut record = record();
        record.summary = "GET /\u{1b}[2Jcleared".to_owned();
        let plain = render(&record, PLAIN);
        assert!(
            !plain.contains('\u{1b}'),
            "no escape code, not even the caller's: {plain:?}"
        );
        assert!(
            plain.contains("GET /\\u{1b}[2Jcleared"),
            "shown escaped: {plain}"
        );
        let coloured = render(&record, Style { colour: true });
        assert!(
            coloured.contains("\u{1b}[32mok 200\u{1b}[0m"),
            "the outcome in green: {coloured:?}"
        );
    }

    #[test]
    fn a_record_that_two_sources_bring_is_printed_once() {
        let mut printer = Printer {
            out: Vec::new(),
            style: PLAIN,
            shown: BTreeSet::new(),
        };
        let first = record();
        let second = record();
        printer
            .print_newest(vec![second.clone(), first.clone()])
            .expect("printed");
        printer.print(&second).expect("printed");
        let text = String::from_utf8(printer.out).expect("UTF-8");
        let headers: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
        assert_eq!(headers.len(), 2, "each once: {text}");
        assert!(
            headers[0].ends_with(&first.execution_id.to_string()),
            "oldest first: {text}"
        );
    }
}
