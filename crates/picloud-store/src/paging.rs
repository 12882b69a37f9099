//! Keyset pagination, the same on both backends. Lists are ordered by id: ids are UUID v7 in
//! their hyphenated lower-case form, so text order is creation order. A cursor is the
//! base64url of the last id of a page; a page asks the database for one row more than it
//! returns, and only when that row exists is there a next cursor.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use uuid::Uuid;

use crate::{Page, PageRequest, StoreError, StoreResult};

/// One page to read, checked: the id to start after and how many rows to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Window {
    /// Rows with an id greater than this; the empty string sorts before every id.
    pub after: String,
    limit: u32,
}

impl Window {
    /// Clamps the limit to 1..=[`PageRequest::MAX_LIMIT`] and decodes the cursor.
    pub fn new(request: &PageRequest) -> StoreResult<Self> {
        let after = match &request.cursor {
            None => String::new(),
            Some(cursor) => decode_cursor(cursor)?,
        };
        Ok(Self {
            after,
            limit: request.limit.clamp(1, PageRequest::MAX_LIMIT),
        })
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
    URL_SAFE_NO_PAD.encode(id)
}

fn decode_cursor(cursor: &str) -> StoreResult<String> {
    let refused =
        || StoreError::InvalidInput("the cursor is not one this server issued".to_owned());
    let bytes = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| refused())?;
    let text = std::str::from_utf8(&bytes).map_err(|_| refused())?;
    let id = Uuid::try_parse(text).map_err(|_| refused())?;
    // Compare in the one form the stores write, whatever form the cursor spelled.
    Ok(id.hyphenated().to_string())
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
