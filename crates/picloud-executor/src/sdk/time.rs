//! `time::{now, now_secs, format, parse}`. Times are integers of milliseconds since the Unix
//! epoch (UTC), like the platform's timestamps; text is RFC 3339.

use chrono::{DateTime, SecondsFormat, Utc};
use rhai::{Module, INT};

use super::{add, error, SdkResult};

pub(crate) fn module() -> Module {
    let mut module = Module::new();
    add(
        &mut module,
        "now",
        "Now, in milliseconds since the Unix epoch",
        || -> SdkResult<INT> { Ok(Utc::now().timestamp_millis()) },
    );
    add(
        &mut module,
        "now_secs",
        "Now, in seconds since the Unix epoch",
        || -> SdkResult<INT> { Ok(Utc::now().timestamp()) },
    );
    add(
        &mut module,
        "format",
        "Milliseconds since the epoch as RFC 3339 text (UTC)",
        |millis: INT| -> SdkResult<String> {
            DateTime::<Utc>::from_timestamp_millis(millis)
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
                .ok_or_else(|| {
                    error(format!(
                    "time::format: {millis} ms since the epoch is outside the dates this can show"
                ))
                })
        },
    );
    add(
        &mut module,
        "parse",
        "RFC 3339 text as milliseconds since the epoch",
        |text: &str| -> SdkResult<INT> {
            DateTime::parse_from_rfc3339(text.trim())
            .map(|t| t.timestamp_millis())
            .map_err(|err| {
                error(format!(
                    "time::parse: '{}' is not an RFC 3339 time such as 2024-05-01T12:00:00Z ({err})",
                    shorten(text)
                ))
            })
        },
    );
    module
}

/// At most 64 characters of a user's text, for error messages.
pub(crate) fn shorten(text: &str) -> String {
    let mut chars = text.chars();
    let head: String = chars.by_ref().take(64).collect();
    if chars.next().is_some() {
        format!("{head}…")
    } else {
        head
    }
}
