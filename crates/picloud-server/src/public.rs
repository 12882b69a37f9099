//! Public invocation: `ANY /{app_slug}` and `ANY /{app_slug}/{path…}` run the app's routes.
//!
//! This is the router's fallback, so it sees every path no other route claimed. Reserved first
//! segments (`api`, `admin`, `static`, …) are never routed to apps: they answer a JSON 404.
//!
//! A script's answer becomes the response: its status and headers; a text body is
//! `text/plain; charset=utf-8`, a JSON body `application/json` (unless the script set a
//! `content-type`); an empty body has none. Every response of an execution carries
//! `x-picloud-execution-id`. A failed execution's answer names its kind and execution id; the
//! script's message and position only when the app has `expose_errors`.

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use picloud_core::exec::{ExecError, ExecErrorKind, ResponseBody, ScriptResponse};
use picloud_core::input::RESERVED_SLUGS;
use picloud_orchestrator::{InvokeError, InvokeRequest, InvokeResponse, Platform};

use crate::error::{ApiError, EXECUTION_ID_HEADER};
use crate::extract::body_rejection;

/// Headers a script may not set: the server frames the response itself.
const FRAMING_HEADERS: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

pub async fn invoke(
    State(platform): State<Platform>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (slug, path) = split_path(uri.path());
    if slug.is_empty() || RESERVED_SLUGS.contains(&slug) {
        let what = if slug == "api" {
            "API endpoint"
        } else {
            "page"
        };
        return Err(ApiError::not_found(format!(
            "there is no {what} at {}",
            uri.path()
        )));
    }
    let body = body.map_err(body_rejection)?;
    let request = InvokeRequest {
        slug: slug.to_owned(),
        method: method.as_str().to_owned(),
        path: path.to_owned(),
        query: uri.query().map(str::to_owned),
        headers: headers
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: Vec::from(body),
    };
    send(platform.invoke(request).await?)
}

/// The script's answer with its execution id; an answer HTTP cannot carry is a failed execution
/// after all, reported as any other. The runner logged a success, so that failure is logged here.
fn send(answer: InvokeResponse) -> Result<Response, ApiError> {
    let InvokeResponse {
        execution_id,
        response,
        app_id,
        script_id,
        error_detail,
    } = answer;
    let mut response = into_response(response).map_err(|why| {
        let kind = ExecErrorKind::InvalidResponse;
        tracing::warn!(%app_id, %script_id, %execution_id, kind = kind.as_str(), "execution failed: {why}");
        ApiError::from(InvokeError::Failed {
            execution_id,
            error: ExecError {
                kind,
                message: why,
                line: None,
                column: None,
            },
            detail: error_detail,
        })
    })?;
    let id = HeaderValue::from_str(&execution_id.to_string()).map_err(ApiError::internal)?;
    response.headers_mut().insert(EXECUTION_ID_HEADER, id);
    Ok(response)
}

/// `/shop/items/3` → (`shop`, `/items/3`); `/shop` and `/shop/` → (`shop`, `/`).
fn split_path(path: &str) -> (&str, &str) {
    let rest = path.strip_prefix('/').unwrap_or(path);
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

/// The script's answer as an HTTP response, or why HTTP cannot carry it.
fn into_response(answer: ScriptResponse) -> Result<Response, String> {
    let status = StatusCode::from_u16(answer.status)
        .ok()
        .filter(|s| s.as_u16() >= 100 && !s.is_informational())
        .ok_or_else(|| {
            format!(
                "{} is not a usable HTTP status; use 200 to 599",
                answer.status
            )
        })?;
    let (content_type, body) = match answer.body {
        ResponseBody::Empty => (None, Body::empty()),
        ResponseBody::Text(text) => (Some("text/plain; charset=utf-8"), Body::from(text)),
        ResponseBody::Json(value) => {
            let bytes = serde_json::to_vec(&value)
                .map_err(|err| format!("the JSON body cannot be encoded: {err}"))?;
            (Some("application/json"), Body::from(bytes))
        }
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    if let Some(content_type) = content_type {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    let mut set_by_script: Vec<HeaderName> = Vec::new();
    for (name, value) in answer.headers {
        let name = HeaderName::try_from(name.as_str())
            .map_err(|_| format!("'{name}' is not a valid header name"))?;
        let value = HeaderValue::try_from(value.as_str())
            .map_err(|_| format!("the value of the header '{name}' is not valid in HTTP"))?;
        if FRAMING_HEADERS.contains(&name.as_str()) {
            continue;
        }
        // The script's headers replace the defaults; a header the script repeats keeps every value.
        if !set_by_script.contains(&name) {
            headers.remove(&name);
            set_by_script.push(name.clone());
        }
        headers.append(name, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_segment_is_the_slug_and_the_rest_the_path() {
        assert_eq!(
            split_path("/shop/items/3"),
            ("shop", "/items/3"),
            "a nested path"
        );
        assert_eq!(split_path("/shop"), ("shop", "/"), "no rest is the root");
        assert_eq!(
            split_path("/shop/"),
            ("shop", "/"),
            "a trailing slash is the root too"
        );
        assert_eq!(split_path("/"), ("", "/"), "the site root has no slug");
    }

    #[test]
    fn a_script_header_replaces_the_default_content_type_and_repeats_are_kept() {
        let answer = ScriptResponse {
            status: 201,
            headers: vec![
                ("Content-Type".into(), "text/html".into()),
                ("set-cookie".into(), "a=1".into()),
                ("set-cookie".into(), "b=2".into()),
                ("content-length".into(), "999".into()),
            ],
            body: ResponseBody::Text("<p>hi</p>".into()),
        };
        let response = into_response(answer).expect("a valid response");
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "the script's status"
        );
        let headers = response.headers();
        assert_eq!(
            headers[header::CONTENT_TYPE],
            "text/html",
            "the script's content type wins"
        );
        assert_eq!(
            headers.get_all(header::SET_COOKIE).iter().count(),
            2,
            "both cookies are sent"
        );
        assert_ne!(
            headers.get(header::CONTENT_LENGTH).map(|v| v.as_bytes()),
            Some(&b"999"[..]),
            "framing headers are the server's"
        );
    }

    #[test]
    fn an_unsendable_status_or_header_is_an_invalid_response() {
        for answer in [
            ScriptResponse {
                status: 42,
                headers: vec![],
                body: ResponseBody::Empty,
            },
            ScriptResponse {
                status: 200,
                headers: vec![("bad name".into(), "x".into())],
                body: ResponseBody::Empty,
            },
            ScriptResponse {
                status: 200,
                headers: vec![("x-ok".into(), "line\nbreak".into())],
                body: ResponseBody::Empty,
            },
        ] {
            let why = into_response(answer.clone()).expect_err("refused");
            assert!(!why.is_empty(), "{answer:?} cannot be sent, and says why");
        }
    }
}
