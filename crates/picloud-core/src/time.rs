//! Timestamps are stored as milliseconds since the Unix epoch (an integer on both backends, set
//! from the database's clock) and shown as RFC 3339 strings.

use std::fmt;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(millis: i64) -> Self {
        Self(millis)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// The process clock; stores use the database's clock instead.
    pub fn now() -> Self {
        Self(Utc::now().timestamp_millis())
    }

    /// An RFC 3339 time (`2026-12-06T10:00:00Z`, any offset), to the millisecond.
    pub fn parse_rfc3339(value: &str) -> Result<Self, chrono::ParseError> {
        DateTime::parse_from_rfc3339(value).map(|t| Self(t.timestamp_millis()))
    }

    pub fn to_rfc3339(self) -> String {
        DateTime::<Utc>::from_timestamp_millis(self.0)
            .unwrap_or_default()
            .to_rfc3339_opts(SecondsFormat::Millis, true)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse_rfc3339(&value).map_err(|e| {
            serde::de::Error::custom(format!("'{value}' is not an RFC 3339 time: {e}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_shows_as_rfc3339_with_milliseconds() {
        let t = Timestamp::from_millis(1_700_000_000_123);
        assert_eq!(t.to_string(), "2023-11-14T22:13:20.123Z");
        let back: Timestamp = serde_json::from_value(serde_json::to_value(t).expect("serialize"))
            .expect("deserialize");
        assert_eq!(back, t, "serde must round-trip");
    }
}
