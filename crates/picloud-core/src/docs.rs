//! Documents (changelog v1.1.2, issue #16): what a stored document is, its field paths, and the
//! query language of `find` — parsed once here, evaluated here for what a run wrote itself, and
//! written as SQL by the store. The store's SQL and [`Query::matches`] / [`Query::order`] agree
//! on every document: the conformance suite holds both backends to this module.
//!
//! **One order for every value.** A field's value sorts as: missing or `null`, then numbers
//! (as 64-bit floats: `2.5 < 10`), then strings (by their bytes, i.e. by code point), then
//! booleans (`false < true`), then arrays, then maps (arrays all sort alike, as do maps). `$sort`
//! follows it; ties go by document id, in the sort's direction.
//!
//! **Comparisons stay within a type.** `$gt` / `$gte` / `$lt` / `$lte` compare a field with a
//! number, a string or a boolean, and only a field of that same type can match: `#{ "$gt": 5 }`
//! matches numbers above 5, never a string. `$eq`, `$ne` and `$in` compare any scalar, `null`
//! included (which a missing field equals).

use std::cmp::Ordering;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::input::{echo, InputError};
use crate::Timestamp;

/// The largest document any configuration may allow, in bytes of its JSON text; the default
/// limit is [`crate::Limits::max_document_bytes`].
pub const DOC_MAX_BYTES: usize = 16 * 1024 * 1024;
/// The deepest field path: `a.b.c.d.e`.
pub const PATH_MAX_DEPTH: usize = 5;
/// The longest segment of a field path.
pub const PATH_SEGMENT_MAX_CHARS: usize = 64;
/// The most comparisons one filter makes (each operator of each field counts one).
pub const QUERY_MAX_CONDITIONS: usize = 32;
/// The most values one `$in` lists.
pub const QUERY_MAX_IN_VALUES: usize = 256;
/// Documents a `find` returns when its filter has no `$limit`.
pub const FIND_DEFAULT_LIMIT: u32 = 100;
/// The largest `$limit`.
pub const FIND_MAX_LIMIT: u32 = 1_000;

/// A document as stored: its data (a map) and when it was created and last updated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredDoc {
    pub data: serde_json::Value,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What the filter language could not use, in a sentence for the script's author.
fn refuse(message: impl Into<String>) -> InputError {
    InputError::new("filter", message)
}

/// The name a script author knows a JSON value's type by.
pub fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "a map",
    }
}

/// A document's data: a map. The sentence names the function that got something else.
pub fn check_data(value: &serde_json::Value) -> Result<(), InputError> {
    if value.is_object() {
        return Ok(());
    }
    Err(InputError::new(
        "data",
        format!(
            "a document's data is a map such as #{{ name: \"Ada\" }} (got {})",
            kind_of(value)
        ),
    ))
}

/// The JSON text of a document's data, checked against `max_bytes`.
pub fn data_text(value: &serde_json::Value, max_bytes: usize) -> Result<String, InputError> {
    check_data(value)?;
    let text = value.to_string();
    if text.len() > max_bytes {
        return Err(InputError::new(
            "data",
            format!(
                "the document is {} bytes as JSON; a document has at most {max_bytes} bytes",
                text.len()
            ),
        ));
    }
    Ok(text)
}

/// A dotted path into a document's data: 1–5 segments of 1–64 `A–Z a–z 0–9 _ -`, each starting
/// with a letter or `_` (so that no segment reads as an array index on either backend).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldPath(Vec<String>);

impl FieldPath {
    pub fn parse(value: &str) -> Result<Self, InputError> {
        let segments: Vec<&str> = value.split('.').collect();
        if segments.len() > PATH_MAX_DEPTH {
            return Err(refuse(format!(
                "'{}' is {} levels deep; a field path has at most {PATH_MAX_DEPTH}",
                echo(value),
                segments.len()
            )));
        }
        for segment in &segments {
            let starts_well = segment
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
            let well_formed = starts_well
                && segment.chars().count() <= PATH_SEGMENT_MAX_CHARS
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-'));
            if !well_formed {
                return Err(refuse(format!(
                    "'{}' is not a field path: write field names joined by '.', each of 1 to \
                     {PATH_SEGMENT_MAX_CHARS} letters, digits, '_' or '-', starting with a \
                     letter or '_' (such as \"user.email\")",
                    echo(value)
                )));
            }
        }
        Ok(Self(segments.into_iter().map(str::to_owned).collect()))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The value at this path in `data`, through maps only; `None` when a step is missing or
    /// not a map.
    pub fn get<'v>(&self, data: &'v serde_json::Value) -> Option<&'v serde_json::Value> {
        self.0
            .iter()
            .try_fold(data, |value, segment| value.as_object()?.get(segment))
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("."))
    }
}

impl Serialize for FieldPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for FieldPath {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = String::deserialize(deserializer)?;
        Self::parse(&value).map_err(|err| serde::de::Error::custom(err.message))
    }
}

/// A value a filter compares with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
}

impl Scalar {
    fn parse(value: &serde_json::Value, what: impl Fn() -> String) -> Result<Self, InputError> {
        Ok(match value {
            serde_json::Value::Null => Self::Null,
            serde_json::Value::Bool(b) => Self::Bool(*b),
            serde_json::Value::Number(n) => Self::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Self::String(s.clone()),
            other => {
                return Err(refuse(format!(
                    "{} compares with a number, a string, a boolean or null (got {})",
                    what(),
                    kind_of(other)
                )))
            }
        })
    }

    pub fn key(&self) -> SortKey {
        match self {
            Self::Null => SortKey::Null,
            Self::Bool(b) => SortKey::Bool(*b),
            Self::Number(n) => SortKey::Number(*n),
            Self::String(s) => SortKey::String(s.clone()),
        }
    }

    /// The type a range comparison with it stays within; `None` for null.
    pub fn band(&self) -> Option<Band> {
        match self {
            Self::Null => None,
            Self::Bool(_) => Some(Band::Bool),
            Self::Number(_) => Some(Band::Number),
            Self::String(_) => Some(Band::String),
        }
    }
}

/// The types a range comparison can stay within.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Band {
    Number,
    String,
    Bool,
}

/// Where a field's value sorts (see the module's doc): missing and null first, then numbers,
/// strings, booleans, arrays and maps.
#[derive(Debug, Clone, PartialEq)]
pub enum SortKey {
    Null,
    Number(f64),
    String(String),
    Bool(bool),
    Array,
    Object,
}

impl SortKey {
    /// The key of the value at `path` in `data`.
    pub fn at(data: &serde_json::Value, path: &FieldPath) -> Self {
        match path.get(data) {
            None | Some(serde_json::Value::Null) => Self::Null,
            Some(serde_json::Value::Bool(b)) => Self::Bool(*b),
            Some(serde_json::Value::Number(n)) => Self::Number(n.as_f64().unwrap_or(0.0)),
            Some(serde_json::Value::String(s)) => Self::String(s.clone()),
            Some(serde_json::Value::Array(_)) => Self::Array,
            Some(serde_json::Value::Object(_)) => Self::Object,
        }
    }

    fn rank(&self) -> u8 {
        match self {
            Self::Null => 0,
            Self::Number(_) => 1,
            Self::String(_) => 2,
            Self::Bool(_) => 3,
            Self::Array => 4,
            Self::Object => 5,
        }
    }

    pub fn band(&self) -> Option<Band> {
        match self {
            Self::Number(_) => Some(Band::Number),
            Self::String(_) => Some(Band::String),
            Self::Bool(_) => Some(Band::Bool),
            _ => None,
        }
    }
}

impl Eq for SortKey {}

impl Ord for SortKey {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (Self::Number(a), Self::Number(b)) => a.partial_cmp(b).unwrap_or(Ordering::Equal),
            (Self::String(a), Self::String(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Self::Bool(a), Self::Bool(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for SortKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// One comparison of a field.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Test {
    Eq(Scalar),
    Ne(Scalar),
    Gt(Scalar),
    Gte(Scalar),
    Lt(Scalar),
    Lte(Scalar),
    In(Vec<Scalar>),
}

/// The operators, as a sentence lists them.
const OPERATORS: &str = "$eq, $ne, $gt, $gte, $lt, $lte and $in";
const OPERATOR_NAMES: [&str; 7] = ["$eq", "$ne", "$gt", "$gte", "$lt", "$lte", "$in"];

impl Test {
    fn parse(
        path: &FieldPath,
        operator: &str,
        operand: &serde_json::Value,
    ) -> Result<Self, InputError> {
        let what = || format!("'{operator}' of '{path}'");
        let range = |make: fn(Scalar) -> Self| {
            let scalar = Scalar::parse(operand, what)?;
            if scalar == Scalar::Null {
                return Err(refuse(format!(
                    "{} compares with a number, a string or a boolean; null is only compared \
                     with $eq, $ne or $in",
                    what()
                )));
            }
            Ok(make(scalar))
        };
        match operator {
            "$eq" => Ok(Self::Eq(Scalar::parse(operand, what)?)),
            "$ne" => Ok(Self::Ne(Scalar::parse(operand, what)?)),
            "$gt" => range(Self::Gt),
            "$gte" => range(Self::Gte),
            "$lt" => range(Self::Lt),
            "$lte" => range(Self::Lte),
            "$in" => {
                let Some(values) = operand.as_array() else {
                    return Err(refuse(format!(
                        "{} takes an array of values such as [\"a\", \"b\"] (got {})",
                        what(),
                        kind_of(operand)
                    )));
                };
                if values.len() > QUERY_MAX_IN_VALUES {
                    return Err(refuse(format!(
                        "{} lists {} values; it lists at most {QUERY_MAX_IN_VALUES}",
                        what(),
                        values.len()
                    )));
                }
                values
                    .iter()
                    .map(|value| Scalar::parse(value, what))
                    .collect::<Result<_, _>>()
                    .map(Self::In)
            }
            other => Err(unsupported(other)),
        }
    }

    /// Whether a field whose value sorts as `key` passes.
    pub fn holds(&self, key: &SortKey) -> bool {
        let within = |bound: &Scalar, order: fn(Ordering) -> bool| {
            key.band() == bound.band() && order(key.cmp(&bound.key()))
        };
        match self {
            Self::Eq(value) => *key == value.key(),
            Self::Ne(value) => *key != value.key(),
            Self::Gt(bound) => within(bound, Ordering::is_gt),
            Self::Gte(bound) => within(bound, Ordering::is_ge),
            Self::Lt(bound) => within(bound, Ordering::is_lt),
            Self::Lte(bound) => within(bound, Ordering::is_le),
            Self::In(values) => values.iter().any(|value| *key == value.key()),
        }
    }
}

fn unsupported(operator: &str) -> InputError {
    refuse(format!(
        "'{}' is not supported: a filter compares fields with a value (equality) or with \
         {OPERATORS}, and takes $sort and $limit; $or, $and, $regex, $exists and the other \
         operators are planned for v1.2",
        echo(operator)
    ))
}

/// A field's comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    pub path: FieldPath,
    pub test: Test,
}

/// `$sort`: one field, ascending or descending.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sort {
    pub path: FieldPath,
    pub descending: bool,
}

/// A parsed filter: every condition must hold; the documents come in `sort`'s order (by id
/// without one), at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Query {
    pub conditions: Vec<Condition>,
    pub sort: Option<Sort>,
    pub limit: u32,
}

impl Query {
    /// The filter `filter` (a map; `null` is the empty filter) as a query: fields with a value
    /// (equality) or an operator map, and the modifiers `$sort` and `$limit`.
    pub fn parse(filter: &serde_json::Value) -> Result<Self, InputError> {
        let mut query = Self {
            conditions: Vec::new(),
            sort: None,
            limit: FIND_DEFAULT_LIMIT,
        };
        let fields = match filter {
            serde_json::Value::Null => return Ok(query),
            serde_json::Value::Object(fields) => fields,
            other => {
                return Err(refuse(format!(
                    "a filter is a map such as #{{ status: \"active\" }} (got {})",
                    kind_of(other)
                )))
            }
        };
        for (name, value) in fields {
            match name.as_str() {
                "$sort" => query.sort = Some(parse_sort(value)?),
                "$limit" => query.limit = parse_limit(value)?,
                operator if OPERATOR_NAMES.contains(&operator) => {
                    return Err(refuse(format!(
                        "'{operator}' goes in a field's operator map, such as \
                         #{{ age: #{{ \"{operator}\": 18 }} }}"
                    )))
                }
                operator if operator.starts_with('$') => return Err(unsupported(operator)),
                path => {
                    let path = FieldPath::parse(path)?;
                    query.parse_field(path, value)?;
                }
            }
        }
        if query.conditions.len() > QUERY_MAX_CONDITIONS {
            return Err(refuse(format!(
                "the filter makes {} comparisons; a filter makes at most {QUERY_MAX_CONDITIONS}",
                query.conditions.len()
            )));
        }
        Ok(query)
    }

    fn parse_field(
        &mut self,
        path: FieldPath,
        value: &serde_json::Value,
    ) -> Result<(), InputError> {
        match value {
            serde_json::Value::Object(operators) => {
                if operators.is_empty() || !operators.keys().all(|key| key.starts_with('$')) {
                    return Err(refuse(format!(
                        "'{path}' is compared with a map; compare a field with a number, a \
                         string, a boolean or null, with an operator map such as \
                         #{{ \"$gt\": 5 }}, or reach inside it with a dotted path (\"{path}.name\")"
                    )));
                }
                for (operator, operand) in operators {
                    let test = Test::parse(&path, operator, operand)?;
                    self.conditions.push(Condition {
                        path: path.clone(),
                        test,
                    });
                }
            }
            serde_json::Value::Array(_) => {
                return Err(refuse(format!(
                    "'{path}' is compared with an array; to match any of several values use \
                     #{{ \"$in\": [...] }}"
                )))
            }
            scalar => {
                let test = Test::Eq(Scalar::parse(scalar, || format!("'{path}'"))?);
                self.conditions.push(Condition { path, test });
            }
        }
        Ok(())
    }

    /// Whether a document with `data` passes every condition.
    pub fn matches(&self, data: &serde_json::Value) -> bool {
        self.conditions
            .iter()
            .all(|condition| condition.test.holds(&SortKey::at(data, &condition.path)))
    }

    /// The order of two documents (id and data) in this query's results.
    pub fn order(&self, a: (&str, &serde_json::Value), b: (&str, &serde_json::Value)) -> Ordering {
        match &self.sort {
            None => a.0.cmp(b.0),
            Some(sort) => {
                let order = SortKey::at(a.1, &sort.path)
                    .cmp(&SortKey::at(b.1, &sort.path))
                    .then_with(|| a.0.cmp(b.0));
                if sort.descending {
                    order.reverse()
                } else {
                    order
                }
            }
        }
    }
}

fn parse_sort(value: &serde_json::Value) -> Result<Sort, InputError> {
    let shape = || {
        refuse(
            "$sort names one field and its direction, such as #{ \"$sort\": #{ age: \"desc\" } } \
             (\"asc\" or \"desc\", or 1 or -1)",
        )
    };
    let Some(fields) = value.as_object() else {
        return Err(shape());
    };
    let mut fields = fields.iter();
    let (Some((path, direction)), None) = (fields.next(), fields.next()) else {
        return Err(shape());
    };
    let descending = match direction {
        serde_json::Value::String(d) if d == "asc" => false,
        serde_json::Value::String(d) if d == "desc" => true,
        serde_json::Value::Number(n) if n.as_i64() == Some(1) => false,
        serde_json::Value::Number(n) if n.as_i64() == Some(-1) => true,
        _ => return Err(shape()),
    };
    Ok(Sort {
        path: FieldPath::parse(path)?,
        descending,
    })
}

fn parse_limit(value: &serde_json::Value) -> Result<u32, InputError> {
    value
        .as_u64()
        .and_then(|limit| u32::try_from(limit).ok())
        .filter(|limit| (1..=FIND_MAX_LIMIT).contains(limit))
        .ok_or_else(|| {
            refuse(format!(
                "$limit is a whole number from 1 to {FIND_MAX_LIMIT} (got {value})"
            ))
        })
}

/// The dotted paths whose value differs between `prev` and `next` (a document's data before and
/// after a change; `None` when there was none or is none any more): maps are compared key by key
/// down to [`PATH_MAX_DEPTH`] levels, anything else (arrays included) as a whole. Sorted.
pub fn changed_paths(
    prev: Option<&serde_json::Value>,
    next: Option<&serde_json::Value>,
) -> Vec<String> {
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let mut out = Vec::new();
    diff(
        &mut Vec::new(),
        Some(prev.unwrap_or(&empty)),
        Some(next.unwrap_or(&empty)),
        &mut out,
    );
    out.sort();
    out
}

fn diff<'v>(
    at: &mut Vec<&'v str>,
    a: Option<&'v serde_json::Value>,
    b: Option<&'v serde_json::Value>,
    out: &mut Vec<String>,
) {
    if a == b {
        return;
    }
    match (a, b) {
        (Some(serde_json::Value::Object(a)), Some(serde_json::Value::Object(b)))
            if at.len() < PATH_MAX_DEPTH =>
        {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                at.push(key);
                diff(at, a.get(key), b.get(key), out);
                at.pop();
            }
        }
        _ => out.push(at.join(".")),
    }
}

/// Whether a change of `changed` paths touches one of `fields`: a field changed, or a path
/// inside it, or the map holding it.
pub fn touches(changed: &[String], fields: &[FieldPath]) -> bool {
    fields.iter().any(|field| {
        let field = field.to_string();
        changed.iter().any(|path| {
            path == &field
                || path.starts_with(&format!("{field}."))
                || field.starts_with(&format!("{path}."))
        })
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn query(filter: serde_json::Value) -> Query {
        Query::parse(&filter).expect("a filter")
    }

    fn refused(filter: serde_json::Value) -> String {
        Query::parse(&filter).expect_err("refused").message
    }

    #[test]
    fn numbers_compare_as_numbers_and_stay_within_their_type() {
        let q = query(json!({"n": {"$gt": 9}}));
        assert!(q.matches(&json!({"n": 10})), "10 > 9, not as text");
        assert!(q.matches(&json!({"n": 9.5})));
        assert!(!q.matches(&json!({"n": "10"})), "a string is not a number");
        assert!(!q.matches(&json!({})), "a missing field does not compare");
        let q = query(json!({"n": {"$lt": 10}}));
        assert!(q.matches(&json!({"n": 2.5})));
        assert!(!q.matches(&json!({"n": null})));
        let q = query(json!({"s": {"$gte": "b"}}));
        assert!(q.matches(&json!({"s": "b"})) && q.matches(&json!({"s": "ba"})));
        assert!(
            !q.matches(&json!({"s": "B"})),
            "strings compare by code point"
        );
        assert!(!q.matches(&json!({"s": true})));
    }

    #[test]
    fn equality_is_type_correct_and_null_matches_a_missing_field() {
        let q = query(json!({"a": 1}));
        assert!(q.matches(&json!({"a": 1.0})));
        assert!(!q.matches(&json!({"a": true})) && !q.matches(&json!({"a": "1"})));
        let q = query(json!({"a": null}));
        assert!(q.matches(&json!({})) && q.matches(&json!({"a": null})));
        assert!(!q.matches(&json!({"a": 0})));
        let q = query(json!({"a": {"$ne": null}}));
        assert!(q.matches(&json!({"a": [1]})) && !q.matches(&json!({"b": 1})));
        let q = query(json!({"user.tier": {"$in": ["gold", 3]}}));
        assert!(q.matches(&json!({"user": {"tier": 3}})));
        assert!(!q.matches(&json!({"user": {"tier": "silver"}})));
        assert!(
            !q.matches(&json!({"user": "gold"})),
            "a path goes through maps only"
        );
    }

    #[test]
    fn mixed_types_sort_in_one_order_with_ties_by_id() {
        let q = query(json!({"$sort": {"v": "asc"}}));
        let values = [
            json!({"v": {"a": 1}}),
            json!({"v": [1]}),
            json!({"v": true}),
            json!({"v": false}),
            json!({"v": "a"}),
            json!({"v": 10}),
            json!({"v": 9}),
            json!({}),
        ];
        let mut docs: Vec<(String, &serde_json::Value)> = values
            .iter()
            .enumerate()
            .map(|(n, v)| (format!("{n}"), v))
            .collect();
        docs.sort_by(|a, b| q.order((&a.0, a.1), (&b.0, b.1)));
        let ids: Vec<&str> = docs.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(ids, ["7", "6", "5", "4", "3", "2", "1", "0"]);
        let desc = query(json!({"$sort": {"v": -1}}));
        let a = json!({"v": 1});
        assert_eq!(
            desc.order(("a", &a), ("b", &a)),
            Ordering::Greater,
            "ties reversed too"
        );
    }

    #[test]
    fn bad_filters_are_refused_with_what_to_write_instead() {
        assert!(refused(json!({"$or": []})).contains("'$or' is not supported"));
        assert!(refused(json!({"a": {"$regex": "x"}})).contains("'$regex' is not supported"));
        assert!(refused(json!({"a.b.c.d.e.f": 1})).contains("6 levels deep"));
        assert!(Query::parse(&json!({"a.b.c.d.e": 1})).is_ok(), "5 levels");
        assert!(refused(json!({"a": {"$gt": null}})).contains("null is only compared"));
        assert!(refused(json!({"a": {"$gt": [1]}})).contains("got an array"));
        assert!(refused(json!({"a": {"$in": 3}})).contains("takes an array"));
        assert!(refused(json!({"a": {"b": 1}})).contains("compared with a map"));
        assert!(refused(json!({"a": [1]})).contains("$in"));
        assert!(refused(json!({"$gt": 1})).contains("goes in a field's operator map"));
        assert!(refused(json!({"$limit": 0})).contains("$limit is a whole number"));
        assert!(refused(json!({"$limit": 1001})).contains("1 to 1000"));
        assert!(refused(json!({"$sort": {"a": "up"}})).contains("$sort names one field"));
        assert!(refused(json!({"$sort": {"a": 1, "b": 1}})).contains("$sort names one field"));
        assert!(refused(json!({"1a": 1})).contains("not a field path"));
        assert!(refused(json!({"a..b": 1})).contains("not a field path"));
        assert!(refused(json!([1])).contains("a filter is a map"));
        let many: serde_json::Map<String, serde_json::Value> =
            (0..33).map(|n| (format!("f{n}"), json!(n))).collect();
        assert!(refused(serde_json::Value::Object(many)).contains("at most 32"));
        let long: Vec<u32> = (0..257).collect();
        assert!(refused(json!({"a": {"$in": long}})).contains("at most 256"));
    }

    #[test]
    fn changed_paths_name_what_differs_down_to_five_levels() {
        let before = json!({"user": {"email": "a", "name": "n"}, "tags": [1], "n": 1});
        let after = json!({"user": {"email": "b", "name": "n"}, "tags": [1, 2], "m": 2});
        assert_eq!(
            changed_paths(Some(&before), Some(&after)),
            ["m", "n", "tags", "user.email"]
        );
        assert_eq!(changed_paths(None, Some(&json!({"a": {"b": 1}}))), ["a"]);
        assert!(changed_paths(Some(&before), Some(&before)).is_empty());
        let deep = |v: i32| json!({"a": {"b": {"c": {"d": {"e": {"f": v}}}}}});
        assert_eq!(changed_paths(Some(&deep(1)), Some(&deep(2))), ["a.b.c.d.e"]);
        let fields = |paths: &[&str]| -> Vec<FieldPath> {
            paths
                .iter()
                .map(|p| FieldPath::parse(p).expect("a path"))
                .collect()
        };
        let changed = changed_paths(Some(&before), Some(&after));
        assert!(touches(&changed, &fields(&["user"])), "inside the field");
        assert!(
            touches(&changed, &fields(&["user.email.x"])),
            "the map holding it"
        );
        assert!(!touches(&changed, &fields(&["user.name", "other"])));
    }
}
