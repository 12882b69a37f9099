//! The cursors of paged lists: the base64url of the last id (or KV key) of a page. A cursor is
//! opaque to its caller; the store and a run's own view of a KV list (`tx`) read it the same way.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

/// The cursor of a page that ended at `last`.
pub fn encode(last: &str) -> String {
    URL_SAFE_NO_PAD.encode(last)
}

/// The id or key a cursor names; `None` when it is not one [`encode`] made.
pub fn decode(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_reads_back_as_the_key_it_was_made_from() {
        for key in ["", "user:1", "ключ", "a/b?c=d"] {
            assert_eq!(decode(&encode(key)).as_deref(), Some(key));
        }
        assert_eq!(decode("not base64!"), None);
        assert_eq!(decode(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])), None);
    }
}
