//! The page shell every dashboard page is rendered in, and the small parts pages share.

use maud::{html, Markup, DOCTYPE};
use picloud_core::exec::LogLine;
use picloud_core::{Capability, Timestamp};
use picloud_orchestrator::PageRequest;
use serde::Deserialize;

use super::assets;
use super::session::Session;

/// What goes in a page's `<head>` besides the shell's own: its title, and the assets of the
/// pages that need more (the editor).
pub struct Head<'a> {
    pub title: &'a str,
    pub scripts: &'a [&'static str],
    pub styles: &'a [&'static str],
}

impl<'a> Head<'a> {
    pub fn new(title: &'a str) -> Self {
        Self {
            title,
            scripts: &[],
            styles: &[],
        }
    }
}

/// htmx's settings: no `eval`, no inline scripts or styles of its own (the CSP forbids them),
/// no copy of pages in `localStorage` (a page may hold a secret shown once), and every answer
/// swapped, errors included (they are pages saying what went wrong).
const HTMX_CONFIG: &str = r#"{"allowEval":false,"allowScriptTags":false,"includeIndicatorStyles":false,"historyCacheSize":0,"refreshOnHistoryMiss":true,"responseHandling":[{"code":"204","swap":false},{"code":"...","swap":true}]}"#;

/// A whole page: `session` is the signed-in caller (`None` on the login and error pages).
pub fn page(head: &Head, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="htmx-config" content=(HTMX_CONFIG);
                @if let Some(session) = session {
                    meta name="csrf-token" content=(session.csrf);
                }
                title { (head.title) " · PiCloud" }
                link rel="stylesheet" href=(assets::url("dashboard.css"));
                @for style in head.styles {
                    link rel="stylesheet" href=(assets::url(style));
                }
                script src=(assets::url("htmx.min.js")) defer {}
                script src=(assets::url("dashboard.js")) defer {}
                @for script in head.scripts {
                    script src=(assets::url(script)) defer {}
                }
            }
            body {
                header.top {
                    a.brand href="/admin" { "PiCloud" }
                    @if let Some(session) = session {
                        nav {
                            a href="/admin" { "Apps" }
                            a href="/admin/api-keys" { "API keys" }
                            @if session.principal().can(Capability::InstanceAdmin) {
                                a href="/admin/users" { "Users" }
                                a href="/admin/health" { "Health" }
                            }
                        }
                        form.logout method="post" action="/admin/logout" {
                            (csrf_field(session))
                            span.who { (session.principal().username.as_str()) }
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                (body)
            }
        }
    }
}

/// The hidden field that carries the session's CSRF token in a form.
pub fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf_token" value=(session.csrf); }
}

/// A time as people read it, in UTC, to the second.
pub fn time(at: Timestamp) -> Markup {
    let full = at.to_rfc3339();
    let shown = full.get(..19).unwrap_or(&full).replace('T', " ");
    html! { time datetime=(full) { (shown) } }
}

/// How many rows a list page shows.
pub const PAGE_SIZE: u32 = 100;

/// The first page of a list, as large as a page may be: what a page shows beside its own list
/// (an app's modules in the editor, a script's routes and triggers, the apps a key may name).
pub const LARGEST_PAGE: PageRequest = PageRequest {
    limit: PageRequest::MAX_LIMIT,
    cursor: None,
};

/// `?cursor=…`: which page of a list (the cursor is URL-safe as the stores make it).
#[derive(Deserialize)]
pub struct PageQuery {
    cursor: Option<String>,
}

impl PageQuery {
    pub fn page(&self) -> PageRequest {
        PageRequest {
            limit: PAGE_SIZE,
            cursor: self.cursor.clone(),
        }
    }
}

/// The link to the next page of a list, when there is one; `base` ends in `?` or `&`.
pub fn pager(base: &str, next_cursor: Option<&str>) -> Markup {
    html! {
        @if let Some(cursor) = next_cursor {
            p.pager { a href={ (base) "cursor=" (cursor) } { "Next page" } }
        }
    }
}

/// A duration given in microseconds, as people read it.
pub fn duration(micros: u64) -> String {
    if micros < 1000 {
        format!("{micros} µs")
    } else {
        format!("{:.1} ms", micros as f64 / 1000.0)
    }
}

/// An execution's log lines.
pub fn log_lines(lines: &[LogLine]) -> Markup {
    html! {
        @if lines.is_empty() {
            p.muted { "No log lines." }
        } @else {
            ol.logs {
                @for line in lines {
                    li {
                        span.level { (format!("{:?}", line.level).to_lowercase()) }
                        " " (line.message)
                        @if line.discarded { " " span.muted { "(discarded run)" } }
                    }
                }
            }
        }
    }
}
