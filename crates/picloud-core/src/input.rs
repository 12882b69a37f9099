//! Parsed input. Handlers and services take these types only, so a value that reaches the store
//! has already been checked; each `parse` returns an [`InputError`] naming the field and saying
//! what is wrong in a sentence a user can act on.

use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory as _};

/// Input that was refused: the field it came in and what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct InputError {
    pub field: &'static str,
    pub message: String,
}

impl InputError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

/// Slugs that would shadow the instance's own paths.
pub const RESERVED_SLUGS: &[&str] = &[
    "api", "admin", "static", "assets", "healthz", "readyz", "metrics",
];

/// An app's slug: the first segment of its public URLs. `^[a-z][a-z0-9-]{0,62}$`, not reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct AppSlug(String);
string_newtype!(AppSlug);

impl AppSlug {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        const FIELD: &str = "slug";
        let valid_shape = value.len() <= 63
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid_shape {
            return Err(InputError::new(
                FIELD,
                format!(
                    "'{}' is not a valid slug: use 1 to 63 characters of a-z, 0-9 and '-', starting with a letter",
                    echo(value)
                ),
            ));
        }
        if RESERVED_SLUGS.contains(&value) {
            return Err(InputError::new(
                FIELD,
                format!("'{value}' is reserved for the instance's own paths; pick another slug"),
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

/// A human-readable app name, under the display-name rule: trimmed, 1 to 100 characters, no
/// control characters and no invisible formatting characters such as bidirectional controls.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct AppName(String);
string_newtype!(AppName);

impl AppName {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        display_name("name", value).map(Self)
    }
}

/// What an API key's owner calls it, to tell keys apart in lists; the display-name rule of
/// [`AppName`] applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ApiKeyName(String);
string_newtype!(ApiKeyName);

impl ApiKeyName {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        display_name("name", value).map(Self)
    }
}

/// The most characters of a display name.
const DISPLAY_NAME_MAX_CHARS: usize = 100;

/// The one rule for the free-text names people read in lists and in the dashboard (an app's
/// name, an API key's name): trimmed, 1 to [`DISPLAY_NAME_MAX_CHARS`] characters, any letters,
/// digits, punctuation and emoji, but none of the characters that change how the rest is shown
/// (see [`hidden_kind`]) — a right-to-left override makes `Payments\u{202e}nimda` read as
/// `Paymentsadmin`, zero-width characters make two different names look alike.
///
/// Markup characters (`<`, `>`, `&`, quotes) are allowed: a name is text, and whatever renders it
/// escapes it.
fn display_name(field: &'static str, value: &str) -> Result<String, InputError> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(InputError::new(
            field,
            format!("the {field} must not be empty"),
        ));
    }
    if trimmed.chars().count() > DISPLAY_NAME_MAX_CHARS {
        return Err(InputError::new(
            field,
            format!("the {field} must be at most {DISPLAY_NAME_MAX_CHARS} characters long"),
        ));
    }
    if let Some(kind) = trimmed.chars().find_map(hidden_kind) {
        return Err(InputError::new(
            field,
            format!("the {field} must not contain {kind}: '{}'", echo(trimmed)),
        ));
    }
    Ok(trimmed.to_owned())
}

/// Why `c` may not be in a display name, or `None` when it may: control characters (general
/// category Cc: NUL, newline, escape…), line and paragraph separators (Zl, Zp), and format
/// characters (Cf: the bidirectional controls U+061C, U+200E–U+200F, U+202A–U+202E and
/// U+2066–U+2069, the zero-width U+200B–U+200D and U+2060, the byte order mark U+FEFF, tag
/// characters…). Emoji joined by a zero-width joiner (a family, some flags) are refused with
/// it; single emoji and those with a variation selector are fine.
fn hidden_kind(c: char) -> Option<&'static str> {
    match c.general_category() {
        GeneralCategory::Control => Some("control characters"),
        GeneralCategory::LineSeparator | GeneralCategory::ParagraphSeparator => {
            Some("line or paragraph separators")
        }
        GeneralCategory::Format => Some(
            "invisible formatting characters (bidirectional controls, zero-width characters, byte order marks)",
        ),
        _ => None,
    }
}

/// What a script is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScriptKind {
    /// Answers routes and trigger events.
    #[default]
    Endpoint,
    /// A library that other scripts of the same app import.
    Module,
}

impl ScriptKind {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        match value {
            "endpoint" => Ok(Self::Endpoint),
            "module" => Ok(Self::Module),
            other => Err(InputError::new(
                "kind",
                format!(
                    "'{}' is not a script kind: use 'endpoint' or 'module'",
                    echo(other)
                ),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Endpoint => "endpoint",
            Self::Module => "module",
        }
    }
}

/// Names a module may not take: the SDK's namespaces, present and planned.
pub const RESERVED_MODULE_NAMES: &[&str] = &[
    "log",
    "regex",
    "random",
    "time",
    "json",
    "base64",
    "hex",
    "url",
    "kv",
    "docs",
    "dead_letters",
    "http",
    "files",
    "pubsub",
    "secrets",
    "email",
    "users",
    "queue",
];

/// A script's name, unique within its app. Endpoint names use letters, digits, `_`, `-` and `.`;
/// module names must be valid import names (`^[a-zA-Z_][a-zA-Z0-9_]{0,63}$`) and not reserved.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ScriptName(String);
string_newtype!(ScriptName);

impl ScriptName {
    pub fn parse(value: &str, kind: ScriptKind) -> Result<Self, InputError> {
        const FIELD: &str = "name";
        let starts_well = value.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_');
        let valid = match kind {
            ScriptKind::Endpoint => {
                (1..=64).contains(&value.len())
                    && (starts_well || value.starts_with(|c: char| c.is_ascii_digit()))
                    && value
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            }
            ScriptKind::Module => {
                (1..=64).contains(&value.len())
                    && starts_well
                    && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            }
        };
        if !valid {
            let rule = match kind {
                ScriptKind::Endpoint => {
                    "use 1 to 64 characters of letters, digits, '_', '-' and '.', starting with a letter, digit or '_'"
                }
                ScriptKind::Module => {
                    "a module name is what scripts import, so use 1 to 64 characters of letters, digits and '_', starting with a letter or '_'"
                }
            };
            return Err(InputError::new(
                FIELD,
                format!("'{}' is not a valid script name: {rule}", echo(value)),
            ));
        }
        if kind == ScriptKind::Module && RESERVED_MODULE_NAMES.contains(&value) {
            return Err(InputError::new(
                FIELD,
                format!("'{value}' is the name of a standard-library namespace; pick another module name"),
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

/// The HTTP method a route answers, or `ANY`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum RouteMethod {
    Get,
    Post,
    Put,
    Patch,
    Delete,
    Head,
    Options,
    Any,
}

impl RouteMethod {
    pub const ALL: [RouteMethod; 8] = [
        Self::Get,
        Self::Post,
        Self::Put,
        Self::Patch,
        Self::Delete,
        Self::Head,
        Self::Options,
        Self::Any,
    ];

    /// Accepts any letter case: `get`, `GET` and `Get` are one method.
    pub fn parse(value: &str) -> Result<Self, InputError> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(value))
            .ok_or_else(|| {
                InputError::new(
                    "method",
                    format!(
                        "'{}' is not a supported method: use GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or ANY",
                        echo(value)
                    ),
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Get => "GET",
            Self::Post => "POST",
            Self::Put => "PUT",
            Self::Patch => "PATCH",
            Self::Delete => "DELETE",
            Self::Head => "HEAD",
            Self::Options => "OPTIONS",
            Self::Any => "ANY",
        }
    }
}

impl fmt::Display for RouteMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a route runs its script: the caller waits (`sync`) or gets `202` at once (`async`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DispatchMode {
    #[default]
    Sync,
    Async,
}

impl DispatchMode {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        match value {
            "sync" => Ok(Self::Sync),
            "async" => Ok(Self::Async),
            other => Err(InputError::new(
                "dispatch_mode",
                format!(
                    "'{}' is not a dispatch mode: use 'sync' or 'async'",
                    echo(other)
                ),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sync => "sync",
            Self::Async => "async",
        }
    }
}

/// One segment of a [`RoutePath`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSegment {
    Literal(String),
    /// `{name}`: one segment, bound to `params.name`.
    Param(String),
    /// `{*name}`: the rest of the path (possibly empty), bound to `params.name`; last only.
    Wildcard(String),
}

/// A route's path pattern below the app's slug: `/`, `/users/{id}`, `/files/{*rest}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct RoutePath(String);
string_newtype!(RoutePath);

impl RoutePath {
    pub const MAX_LEN: usize = 512;

    pub fn parse(value: &str) -> Result<Self, InputError> {
        let path = Self(value.to_owned());
        path.segments()?;
        Ok(path)
    }

    /// The pattern's segments; `/` has none.
    pub fn segments(&self) -> Result<Vec<PathSegment>, InputError> {
        let err = |why: String| InputError::new("path", why);
        let value = self.0.as_str();
        if value.len() > Self::MAX_LEN {
            return Err(err(format!(
                "a path must be at most {} characters long",
                Self::MAX_LEN
            )));
        }
        let Some(rest) = value.strip_prefix('/') else {
            return Err(err(format!("'{}' must start with '/'", echo(value))));
        };
        if rest.is_empty() {
            return Ok(Vec::new());
        }
        let raw: Vec<&str> = rest.split('/').collect();
        let mut segments = Vec::with_capacity(raw.len());
        let mut names: Vec<&str> = Vec::new();
        for (i, seg) in raw.iter().enumerate() {
            if seg.is_empty() {
                return Err(err(format!(
                    "'{}' has an empty segment: remove the doubled or trailing '/'",
                    echo(value)
                )));
            }
            if let Some(inner) = seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                let (wildcard, name) = match inner.strip_prefix('*') {
                    Some(name) => (true, name),
                    None => (false, inner),
                };
                let valid_name = name.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
                    && name.len() <= 64
                    && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                if !valid_name {
                    return Err(err(format!(
                        "'{{{}}}' is not a valid parameter: name it with letters, digits and '_', like '{{id}}' or '{{*rest}}'",
                        echo(inner)
                    )));
                }
                if names.contains(&name) {
                    return Err(err(format!("the parameter '{name}' appears twice")));
                }
                names.push(name);
                if wildcard {
                    if i + 1 != raw.len() {
                        return Err(err(format!(
                            "the wildcard '{{*{name}}}' must be the last segment"
                        )));
                    }
                    segments.push(PathSegment::Wildcard(name.to_owned()));
                } else {
                    segments.push(PathSegment::Param(name.to_owned()));
                }
            } else {
                let valid_literal = seg.chars().all(|c| {
                    c.is_ascii_alphanumeric()
                        || matches!(c, '-' | '.' | '_' | '~' | '@' | ':' | '+' | ',' | '=')
                });
                if !valid_literal {
                    return Err(err(format!(
                        "the segment '{}' may hold only letters, digits and - . _ ~ @ : + , =; parameters are written '{{name}}'",
                        echo(seg)
                    )));
                }
                segments.push(PathSegment::Literal((*seg).to_owned()));
            }
        }
        Ok(segments)
    }
}

/// Whether `name` is an HTTP header name: a token of letters, digits and
/// `` ! # $ % & ' * + - . ^ _ ` | ~ `` (RFC 9110).
pub fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// HTTP header names, lower-cased, each once, in the order first given.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct HeaderNames(Vec<String>);

impl HeaderNames {
    /// Each name must be a header name; names are lower-cased and a repeat is dropped. `field`
    /// is the input the names came in, for the error.
    pub fn parse<S: AsRef<str>>(field: &'static str, names: &[S]) -> Result<Self, InputError> {
        let mut parsed: Vec<String> = Vec::with_capacity(names.len());
        for name in names {
            let name = name.as_ref();
            if !is_header_name(name) {
                return Err(InputError::new(
                    field,
                    format!(
                        "'{}' is not an HTTP header name: use letters, digits and ! # $ % & ' * + - . ^ _ ` | ~",
                        echo(name)
                    ),
                ));
            }
            let name = name.to_ascii_lowercase();
            if !parsed.contains(&name) {
                parsed.push(name);
            }
        }
        Ok(Self(parsed))
    }

    /// A comma-separated list (`x-internal-token, x-session`); blanks around names are ignored.
    pub fn parse_list(field: &'static str, list: &str) -> Result<Self, InputError> {
        let names: Vec<&str> = list
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .collect();
        Self::parse(field, &names)
    }

    /// Whether `name` is one of these, in any letter case.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|known| known.eq_ignore_ascii_case(name))
    }

    /// These names, then those of `other` that are not among them.
    pub fn union(&self, other: &HeaderNames) -> HeaderNames {
        let mut names = self.0.clone();
        names.extend(
            other
                .iter()
                .filter(|name| !self.contains(name))
                .map(str::to_owned),
        );
        Self(names)
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The sensitive request headers an async route keeps in its stored payload all the same (a
/// route's `keep_headers`): at most [`KeptHeaders::MAX`] header names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct KeptHeaders(HeaderNames);

impl KeptHeaders {
    pub const MAX: usize = 16;

    pub fn parse<S: AsRef<str>>(names: &[S]) -> Result<Self, InputError> {
        const FIELD: &str = "keep_headers";
        let names = HeaderNames::parse(FIELD, names)?;
        if names.len() > Self::MAX {
            return Err(InputError::new(
                FIELD,
                format!(
                    "a route keeps at most {} headers; {} were given",
                    Self::MAX,
                    names.len()
                ),
            ));
        }
        Ok(Self(names))
    }

    pub fn names(&self) -> &HeaderNames {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A login name: 1 to 64 characters of a-z, 0-9, `_`, `-`, `.`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Username(String);
string_newtype!(Username);

impl Username {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        let valid = (1..=64).contains(&value.len())
            && value.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && value.chars().all(|c| {
                c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.')
            });
        if valid {
            Ok(Self(value.to_owned()))
        } else {
            Err(InputError::new(
                "username",
                format!(
                    "'{}' is not a valid username: use 1 to 64 characters of a-z, 0-9, '_', '-' and '.'",
                    echo(value)
                ),
            ))
        }
    }
}

/// A refused value as a message quotes it: at most 64 characters, and the characters a display
/// name may not hold ([`hidden_kind`]) escaped (`\u{202e}`, `\n`), so that a bidi control
/// cannot reorder the message around it nor a line break forge a log line.
pub(crate) fn echo(value: &str) -> String {
    const MAX: usize = 64;
    let mut shown = String::new();
    for (i, c) in value.chars().enumerate() {
        if i == MAX {
            shown.push('…');
            break;
        }
        if hidden_kind(c).is_some() {
            shown.extend(c.escape_default());
        } else {
            shown.push(c);
        }
    }
    shown
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_documented_shape() {
        for ok in ["a", "my-app", "a1", &"a".repeat(63)] {
            assert!(AppSlug::parse(ok).is_ok(), "'{ok}' should be a valid slug");
        }
        for bad in [
            "",
            "1app",
            "My-App",
            "my_app",
            "-a",
            &"a".repeat(64),
            "a b",
            "ä",
        ] {
            assert!(AppSlug::parse(bad).is_err(), "'{bad}' should be refused");
        }
    }

    #[test]
    fn reserved_slugs_are_refused_with_a_reason() {
        for reserved in RESERVED_SLUGS {
            let err = AppSlug::parse(reserved).expect_err("reserved");
            assert!(
                err.message.contains("reserved"),
                "message should say why: {err}"
            );
        }
    }

    #[test]
    fn app_names_are_trimmed_and_bounded() {
        assert_eq!(
            AppName::parse("  Hello ").map(|n| n.to_string()),
            Ok("Hello".into())
        );
        assert!(AppName::parse("   ").is_err(), "blank names are refused");
        assert!(
            AppName::parse(&"x".repeat(101)).is_err(),
            "101 characters is too long"
        );
        assert!(
            AppName::parse("a\u{0}b").is_err(),
            "control characters are refused"
        );
    }

    /// Characters that reorder, hide or break the text around them: controls, every bidi
    /// control, zero-width characters, the BOM, separators, a tag character.
    const HOSTILE: &[(&str, char)] = &[
        ("NUL", '\u{0}'),
        ("newline", '\n'),
        ("ESC", '\u{1b}'),
        ("DEL", '\u{7f}'),
        ("CSI (C1)", '\u{9b}'),
        ("ALM", '\u{61c}'),
        ("LRM", '\u{200e}'),
        ("RLM", '\u{200f}'),
        ("LRE", '\u{202a}'),
        ("RLE", '\u{202b}'),
        ("PDF", '\u{202c}'),
        ("LRO", '\u{202d}'),
        ("RLO", '\u{202e}'),
        ("LRI", '\u{2066}'),
        ("RLI", '\u{2067}'),
        ("FSI", '\u{2068}'),
        ("PDI", '\u{2069}'),
        ("ZWSP", '\u{200b}'),
        ("ZWNJ", '\u{200c}'),
        ("ZWJ", '\u{200d}'),
        ("word joiner", '\u{2060}'),
        ("BOM", '\u{feff}'),
        ("soft hyphen", '\u{ad}'),
        ("line separator", '\u{2028}'),
        ("paragraph separator", '\u{2029}'),
        ("tag A", '\u{e0041}'),
    ];

    /// A parser under test, by what it names: the parsed value as text, or the refusal.
    type Parser = (&'static str, fn(&str) -> Result<String, InputError>);

    /// The parsers of display names.
    fn display_names() -> [Parser; 2] {
        [
            ("app name", |v| AppName::parse(v).map(|n| n.to_string())),
            ("API key name", |v| {
                ApiKeyName::parse(v).map(|n| n.to_string())
            }),
        ]
    }

    // Names are shown in lists and the dashboard: a right-to-left override or a zero-width
    // character let one name pass for another, and the refusal quoted the character raw.
    #[test]
    fn display_names_refuse_controls_and_invisible_formatting_characters() {
        for (kind, parse) in display_names() {
            for (what, c) in HOSTILE {
                let name = format!("Pay{c}ments");
                let err = parse(&name).expect_err(&format!("a {kind} with {what}"));
                assert_eq!(err.field, "name", "{kind} with {what}: the field is named");
                assert!(
                    !err.message.contains(*c),
                    "{kind} with {what}: the message does not echo it raw: {}",
                    err.message.escape_debug()
                );
                assert!(
                    err.message.contains(&c.escape_default().to_string()),
                    "{kind} with {what}: the message shows it escaped: {}",
                    err.message.escape_debug()
                );
                assert!(
                    ["control", "formatting", "separator"]
                        .iter()
                        .any(|k| err.message.contains(k)),
                    "{kind} with {what}: the message says which kind of character: {}",
                    err.message.escape_debug()
                );
            }
            let rlo = parse("Pay\u{202e}ments").expect_err("RLO");
            assert!(
                rlo.message.contains("bidirectional"),
                "{kind}: a bidi control is called one: {}",
                rlo.message.escape_debug()
            );
        }
    }

    #[test]
    fn display_names_accept_ordinary_unicode_and_markup() {
        for (kind, parse) in display_names() {
            for ok in [
                "Café crème",
                "日本のアプリ",
                "🚀 Launch",
                "❤\u{fe0f} Love",
                "שלום עולם",
                "<b>Shop</b> & \"Co\"",
            ] {
                assert_eq!(
                    parse(ok),
                    Ok(ok.to_owned()),
                    "the {kind} '{ok}' is accepted"
                );
            }
        }
    }

    // Slugs, script names, usernames and collection names are ASCII-only; none lets a hostile
    // character through, and none quotes it back raw.
    #[test]
    fn ascii_names_refuse_bidi_and_invisible_characters() {
        let parsers: [Parser; 5] = [
            ("slug", |v| AppSlug::parse(v).map(|n| n.to_string())),
            ("endpoint name", |v| {
                ScriptName::parse(v, ScriptKind::Endpoint).map(|n| n.to_string())
            }),
            ("module name", |v| {
                ScriptName::parse(v, ScriptKind::Module).map(|n| n.to_string())
            }),
            ("username", |v| Username::parse(v).map(|n| n.to_string())),
            ("collection", |v| {
                crate::events::CollectionName::parse(v).map(|n| n.to_string())
            }),
        ];
        for (kind, parse) in parsers {
            assert_eq!(
                parse("payments"),
                Ok("payments".to_owned()),
                "a plain {kind} passes"
            );
            for (what, c) in HOSTILE {
                let err =
                    parse(&format!("pay{c}ments")).expect_err(&format!("a {kind} with {what}"));
                assert!(
                    !err.message.contains(*c),
                    "{kind} with {what}: the message does not echo it raw: {}",
                    err.message.escape_debug()
                );
            }
        }
    }

    #[test]
    fn module_names_must_be_importable_and_not_reserved() {
        assert!(ScriptName::parse("utils", ScriptKind::Module).is_ok());
        assert!(
            ScriptName::parse("my-utils", ScriptKind::Module).is_err(),
            "'-' cannot be imported"
        );
        assert!(
            ScriptName::parse("json", ScriptKind::Module).is_err(),
            "stdlib names are reserved"
        );
        assert!(
            ScriptName::parse("json", ScriptKind::Endpoint).is_ok(),
            "endpoints may be named json"
        );
        assert!(ScriptName::parse("hello-world.v2", ScriptKind::Endpoint).is_ok());
        assert!(ScriptName::parse("", ScriptKind::Endpoint).is_err());
        assert!(ScriptName::parse("a/b", ScriptKind::Endpoint).is_err());
    }

    #[test]
    fn methods_parse_in_any_case() {
        assert_eq!(RouteMethod::parse("get"), Ok(RouteMethod::Get));
        assert_eq!(RouteMethod::parse("ANY"), Ok(RouteMethod::Any));
        assert!(RouteMethod::parse("FETCH").is_err());
    }

    #[test]
    fn route_paths_accept_params_and_a_final_wildcard() {
        let path = RoutePath::parse("/users/{id}/files/{*rest}").expect("valid");
        assert_eq!(
            path.segments().expect("segments"),
            vec![
                PathSegment::Literal("users".into()),
                PathSegment::Param("id".into()),
                PathSegment::Literal("files".into()),
                PathSegment::Wildcard("rest".into()),
            ]
        );
        assert!(RoutePath::parse("/").is_ok(), "the root is a path");
    }

    #[test]
    fn header_names_are_lower_cased_and_each_kept_once() {
        let names = HeaderNames::parse("headers", &["Authorization", "x-Trace", "AUTHORIZATION"])
            .expect("valid names");
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            vec!["authorization", "x-trace"],
            "lower case, first occurrence kept"
        );
        assert!(
            names.contains("X-TRACE"),
            "contains ignores the letter case"
        );
        for bad in ["", "bad name", "x:y", "caf\u{e9}", "a\nb"] {
            let err = HeaderNames::parse("headers", &[bad]).expect_err("not a header name");
            assert_eq!(err.field, "headers", "the error names the field: {err}");
        }
    }

    #[test]
    fn a_comma_separated_list_ignores_blanks() {
        let names = HeaderNames::parse_list("redacted_headers", " X-Session, ,x-token ,")
            .expect("a valid list");
        assert_eq!(
            names.iter().collect::<Vec<_>>(),
            vec!["x-session", "x-token"],
            "trimmed, blanks dropped"
        );
        assert!(
            HeaderNames::parse_list("redacted_headers", "x-ok, not ok").is_err(),
            "a name with a space is refused"
        );
    }

    #[test]
    fn a_route_keeps_at_most_sixteen_headers() {
        let sixteen: Vec<String> = (0..16).map(|i| format!("x-h{i}")).collect();
        assert!(
            KeptHeaders::parse(&sixteen).is_ok(),
            "sixteen names are accepted"
        );
        let mut seventeen = sixteen.clone();
        seventeen.push("x-h16".to_owned());
        let err = KeptHeaders::parse(&seventeen).expect_err("seventeen names");
        assert_eq!(
            err.field, "keep_headers",
            "the error names the field: {err}"
        );
        let mut repeated = sixteen;
        repeated.push("X-H0".to_owned());
        assert_eq!(
            KeptHeaders::parse(&repeated).map(|kept| kept.names().len()),
            Ok(16),
            "a repeat (in any case) is counted once"
        );
    }

    #[test]
    fn malformed_route_paths_are_refused() {
        for bad in [
            "",
            "users",
            "/users/",
            "//x",
            "/{*rest}/x",
            "/{id}/{id}",
            "/{1x}",
            "/{}",
            "/a b",
            "/x?y",
            "/{a",
        ] {
            assert!(RoutePath::parse(bad).is_err(), "'{bad}' should be refused");
        }
    }
}
