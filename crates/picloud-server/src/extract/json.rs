//! A JSON request body, and what a body that cannot be read or parsed is refused with.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// A JSON request body. Refusals: no JSON content type → 415, malformed JSON → 400
/// `invalid_json`, a missing field or a wrong type → 400 `invalid_input` naming the field, too
/// large → 413.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                "send the body as JSON, with 'Content-Type: application/json'",
            ));
        }
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Reading a body failed: too large (413), too slow (408) or the connection broke.
pub fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            ErrorCode::PayloadTooLarge,
            "the request body is larger than this server accepts",
        )
    } else if crate::slow_clients::is_too_slow(&rejection) {
        ApiError::new(
            ErrorCode::RequestTimeout,
            format!("{}; send it faster, or in one piece", rejection.body_text()),
        )
    } else {
        ApiError::new(
            ErrorCode::InvalidInput,
            format!("cannot read the request body: {}", rejection.body_text()),
        )
    }
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        json_error(&path, &inner)
    })?;
    deserializer.end().map_err(|err| json_error(".", &err))?;
    Ok(value)
}

fn json_error(path: &str, err: &serde_json::Error) -> ApiError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => ApiError::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {err}"),
        ),
        Category::Data => {
            let text = err.to_string();
            // serde says "missing field `name` at line 1 column 2" with the path at the parent.
            if let Some(name) = text
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                let field = if path == "." {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                };
                return ApiError::new(
                    ErrorCode::InvalidInput,
                    format!("the field '{field}' is required"),
                )
                .with_field(field);
            }
            let message = without_position(&text);
            if path == "." {
                ApiError::new(
                    ErrorCode::InvalidInput,
                    format!("the body has the wrong shape: {message}"),
                )
            } else {
                ApiError::new(ErrorCode::InvalidInput, format!("{path}: {message}"))
                    .with_field(path)
            }
        }
    }
}

/// "invalid type: integer `1`, expected a string at line 1 column 9" → without " at line …".
fn without_position(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(i) => &message[..i],
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Sample {
        slug: String,
        count: u32,
    }

    fn parse(body: &str) -> ApiError {
        parse_json::<Sample>(body.as_bytes()).expect_err("the body is refused")
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        let err = parse(r#"{"slug": "#);
        assert_eq!(
            err.code(),
            ErrorCode::InvalidJson,
            "truncated JSON: {}",
            err.message()
        );
        let err = parse(r#"{"slug": "a", "count": 1} trailing"#);
        assert_eq!(
            err.code(),
            ErrorCode::InvalidJson,
            "trailing characters: {}",
            err.message()
        );
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let err = parse(r#"{"slug": 5, "count": 1}"#);
        assert_eq!(err.code(), ErrorCode::InvalidInput, "a data error");
        assert!(
            err.message().starts_with("slug: invalid type"),
            "names the field: {}",
            err.message()
        );
    }

    #[test]
    fn a_missing_field_names_the_field() {
        let err = parse(r#"{"count": 1}"#);
        assert_eq!(
            err.message(),
            "the field 'slug' is required",
            "the message names it"
        );
    }
}
