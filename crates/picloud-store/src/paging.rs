//! Keyset pagination, the same on both backends. Lists are ordered by id: ids are UUID v7 in
//! their hyphenated lower-case form, so text order is creation order. KV lists are ordered by
//! key, bytewise on both backends. A cursor is the base64url of the last id (or key) of a page;
//! a page asks the database for one row more than it returns, and only when that row exists is
//! there a next cursor.

use picloud_core::events::{parse_key_prefix, KV_MAX_LIST_LIMIT};
use picloud_core::services::KvListRequest;
use picloud_core::KvKey;
use uuid::Uuid;

use crate::{Page, PageRequest, StoreError, StoreResult};

/// Items a KV list returns when it does not say (`limit` 0).
pub(crate) const KV_DEFAULT_LIST_LIMIT: u32 = 100;

/// Sorts after every id: ids are lower-case hex digits and `-`, and both backends compare ids
/// bytewise (SQLite's BINARY collation, PostgreSQL's "C").
const AFTER_EVERY_ID: &str = "~";

/// One page to read, checked: the id (or key) to start after and how many rows to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    /// Rows with an id (or key) greater than this; the empty string sorts before every id and
    /// every key.
    pub after: String,
    limit: u32,
}

impl Window {
    /// Clamps the limit to 1..=[`PageRequest::MAX_LIMIT`] and decodes the cursor.
    pub fn new(request: &PageRequest) -> StoreResult<Self> {
        let after = match &request.cursor {
            None => String::new(),
            Some(cursor) => decode_id_cursor(cursor)?,
        };
        Ok(Self {
            after,
            limit: request.limit.clamp(1, PageRequest::MAX_LIMIT),
        })
    }

    /// A page of KV entries: `limit` 0 means [`KV_DEFAULT_LIST_LIMIT`], more than
    /// [`KV_MAX_LIST_LIMIT`] is capped; the cursor names the last key of the page before.
    pub fn of_keys(request: &KvListRequest) -> StoreResult<Self> {
        let after = match &request.cursor {
            None => String::new(),
            Some(cursor) => {
                let key = decode_cursor(cursor)?;
                KvKey::parse(&key).map_err(|_| not_issued())?;
                key
            }
        };
        let limit = match request.limit {
            0 => KV_DEFAULT_LIST_LIMIT,
            limit => limit.min(KV_MAX_LIST_LIMIT),
        };
        Ok(Self { after, limit })
    }

    /// For lists newest first: rows with an id less than this (the cursor's id, or without
    /// one a string that sorts after every id).
    pub fn before(&self) -> &str {
        if self.after.is_empty() {
            AFTER_EVERY_ID
        } else {
            &self.after
        }
    }

    /// How many rows to ask for: one more than the page holds, to learn whether more exist.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// The page made of `items` (at most [`Window::fetch`] of them, in id order).
    pub fn page<T>(&self, mut items: Vec<T>, id_of: impl Fn(&T) -> String) -> Page<T> {
        let limit = usize::try_from(self.limit).unwrap_or(usize::MAX);
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = if more {
            items.last().map(|last| encode_cursor(&id_of(last)))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

fn encode_cursor(id: &str) -> String {
    picloud_core::cursor::encode(id)
}

fn decode_id_cursor(cursor: &str) -> StoreResult<String> {
    let text = decode_cursor(cursor)?;
    let id = Uuid::try_parse(&text).map_err(|_| not_issued())?;
    // Compare in the one form the stores write, whatever form the cursor spelled.
    Ok(id.hyphenated().to_string())
}

fn decode_cursor(cursor: &str) -> StoreResult<String> {
    picloud_core::cursor::decode(cursor).ok_or_else(not_issued)
}

fn not_issued() -> StoreError {
    StoreError::InvalidInput("the cursor is not one this server issued".to_owned())
}

/// The keys starting with `prefix`, as a range an index can walk: from `prefix` itself up to,
/// not including, the returned end — the smallest string that sorts after every key with the
/// prefix (`None`: no end, as for the empty prefix). UTF-8 keeps code-point order in its bytes,
/// so the next code point of the last character that has one is that end. The prefix is
/// checked like a key's (`InvalidInput` with the reason).
pub(crate) fn prefix_range(prefix: &str) -> StoreResult<Option<String>> {
    parse_key_prefix(prefix).map_err(|err| StoreError::InvalidInput(err.message))?;
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            // The surrogates are no characters; the next one after them is U+E000.
            '\u{D7FF}' => Some('\u{E000}'),
            other => char::from_u32(u32::from(other) + 1),
        };
        if let Some(next) = next {
            chars.push(next);
            return Ok(Some(chars.into_iter().collect()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(limit: u32, cursor: Option<&str>) -> PageRequest {
        PageRequest {
            limit,
            cursor: cursor.map(str::to_owned),
        }
    }

    #[test]
    fn a_cursor_round_trips_to_the_id_it_was_made_from() {
        let id = Uuid::now_v7().hyphenated().to_string();
        let window = Window::new(&request(10, Some(&encode_cursor(&id)))).expect("a valid cursor");
        assert_eq!(window.after, id, "decoding gives back the id");
    }

    #[test]
    fn limits_are_clamped_to_the_allowed_range() {
        assert_eq!(
            Window::new(&request(0, None)).expect("window").fetch(),
            2,
            "0 reads as 1"
        );
        assert_eq!(
            Window::new(&request(10_000, None)).expect("window").fetch(),
            i64::from(PageRequest::MAX_LIMIT) + 1,
            "a huge limit reads as the maximum"
        );
    }

    #[test]
    fn a_cursor_that_was_not_issued_is_refused_as_input() {
        for forged in ["", "!!!", "bm90LWFuLWlk", "%%"] {
            let err = Window::new(&request(10, Some(forged))).expect_err("a forged cursor");
            assert!(
                matches!(err, StoreError::InvalidInput(ref m) if m == "the cursor is not one this server issued"),
                "'{forged}' is refused with a user-facing message, got {err:?}"
            );
        }
    }

    #[test]
    fn a_key_cursor_round_trips_and_a_forged_one_is_refused() {
        let cursor = encode_cursor("user:ü/1");
        let request = KvListRequest {
            prefix: None,
            limit: 0,
            cursor: Some(cursor),
        };
        let window = Window::of_keys(&request).expect("a valid key cursor");
        assert_eq!(window.after, "user:ü/1", "decoding gives back the key");
        assert_eq!(
            window.fetch(),
            i64::from(KV_DEFAULT_LIST_LIMIT) + 1,
            "0 reads as the default"
        );
        for forged in [
            "!!!",
            &encode_cursor("a\nb"),
            &base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                [0xff, 0xfe],
            ),
        ] {
            let request = KvListRequest {
                cursor: Some(forged.to_owned()),
                ..KvListRequest::default()
            };
            assert!(
                matches!(Window::of_keys(&request), Err(StoreError::InvalidInput(_))),
                "'{forged}' is refused"
            );
        }
        let huge = KvListRequest {
            limit: u32::MAX,
            ..KvListRequest::default()
        };
        assert_eq!(
            Window::of_keys(&huge).expect("window").fetch(),
            i64::from(KV_MAX_LIST_LIMIT) + 1,
            "a huge limit is capped"
        );
    }

    #[test]
    fn a_prefix_range_ends_at_the_next_code_point() {
        assert_eq!(prefix_range("").expect("empty"), None, "no prefix, no end");
        assert_eq!(prefix_range("ab").expect("ascii"), Some("ac".to_owned()));
        assert_eq!(prefix_range("a%").expect("wildcard"), Some("a&".to_owned()));
        assert_eq!(
            prefix_range("a\u{10FFFF}").expect("last code point"),
            Some("b".to_owned()),
            "a last character without a successor is dropped"
        );
        assert_eq!(prefix_range("\u{10FFFF}").expect("only the last"), None);
        assert_eq!(
            prefix_range("x\u{D7FF}").expect("before the surrogates"),
            Some("x\u{E000}".to_owned())
        );
        assert!(
            matches!(prefix_range("a\u{0}"), Err(StoreError::InvalidInput(_))),
            "a control character is refused like in a key"
        );
    }

    #[test]
    fn before_sorts_after_every_id_without_a_cursor() {
        let window = Window::new(&request(10, None)).expect("window");
        let id = Uuid::now_v7().hyphenated().to_string();
        assert!(
            window.before() > id.as_str() && window.before() > "ffffffff-ffff",
            "the sentinel is after every id"
        );
    }

    #[test]
    fn a_next_cursor_exists_only_when_more_items_do() {
        let window = Window::new(&request(2, None)).expect("window");
        let full = window.page(vec!["a", "b", "c"], |s| (*s).to_owned());
        assert_eq!(full.items, vec!["a", "b"], "the extra row is not returned");
        assert_eq!(
            full.next_cursor,
            Some(encode_cursor("b")),
            "the cursor names the last item"
        );
        let last = window.page(vec!["a", "b"], |s| (*s).to_owned());
        assert_eq!(last.next_cursor, None, "no cursor after the last page");
    }
}
