//! Server-sent events, read as the bytes arrive: [`Parser::push`] takes a chunk of the stream
//! and gives back the events it completed. Only what the live tail sends is kept: `event:` and
//! `data:` fields; comments (`: keep-alive`), `id:` and `retry:` are skipped.

/// One event: its name (`message` when the server gave none) and its data lines, joined by
/// newlines.
#[derive(Debug, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub data: String,
}

#[derive(Debug, Default)]
pub struct Parser {
    /// Bytes of a line not yet ended (a chunk may end anywhere, even inside a character).
    pending: Vec<u8>,
    name: Option<String>,
    data: Option<String>,
}

impl Parser {
    /// Feeds `chunk`; returns the events that it ended.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Event> {
        self.pending.extend_from_slice(chunk);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            events.extend(self.line(line.trim_end_matches('\n').trim_end_matches('\r')));
        }
        events
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            let name = self.name.take();
            // An event without data is not dispatched (the specification's rule).
            return self.data.take().map(|data| Event {
                name: name.unwrap_or_else(|| "message".to_owned()),
                data,
            });
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.name = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {}
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(name: &str, data: &str) -> Event {
        Event {
            name: name.to_owned(),
            data: data.to_owned(),
        }
    }

    #[test]
    fn events_end_at_a_blank_line_and_comments_are_skipped() {
        let mut parser = Parser::default();
        let stream = ": keep-alive\n\nevent: execution\ndata: {\"a\":1}\n\ndata: one\ndata:two\n\n";
        assert_eq!(
            parser.push(stream.as_bytes()),
            vec![
                event("execution", "{\"a\":1}"),
                event("message", "one\ntwo")
            ],
            "a comment alone is no event; data lines join with newlines"
        );
    }

    #[test]
    fn an_event_split_anywhere_across_chunks_is_put_together() {
        let stream = "event: dropped\r\ndata: {\"message\": \"too slow: é\"}\r\n\r\n";
        let bytes = stream.as_bytes();
        for split in 1..bytes.len() {
            let mut parser = Parser::default();
            let mut events = parser.push(&bytes[..split]);
            events.extend(parser.push(&bytes[split..]));
            assert_eq!(
                events,
                vec![event("dropped", "{\"message\": \"too slow: é\"}")],
                "split at byte {split}, CRLF line ends"
            );
        }
    }

    #[test]
    fn an_unfinished_event_waits_for_its_blank_line() {
        let mut parser = Parser::default();
        assert!(
            parser.push(b"event: execution\ndata: {}\n").is_empty(),
            "no blank line yet"
        );
        assert_eq!(parser.push(b"\n"), vec![event("execution", "{}")]);
    }
}
