//! Public invocation: `ANY /{app_slug}` and `ANY /{app_slug}/{path…}` run the app's routes (or
//! every path of `<slug>.<apps domain>`, with per-app hosts; see [`crate::origins`]).
//!
//! This is the public router's fallback, so it sees every path no other route claimed. Reserved
//! first segments (`api`, `admin`, `static`, …) are never routed to apps: they answer a JSON 404.
//!
//! PiCloud's own credentials never reach a script: its cookies (every name starting with
//! `picloud_`, with or without a `__Host-` / `__Secure-` prefix) are taken out of `cookie`, and an
//! `authorization` carrying a PiCloud session token or API key is dropped. A script's answer may
//! not set those cookies, nor send `clear-site-data` (which would clear them).
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
use axum::Extension;
use picloud_core::exec::{ExecError, ExecErrorKind, ResponseBody, ScriptResponse};
use picloud_core::input::RESERVED_SLUGS;
use picloud_orchestrator::{InvokeError, InvokeRequest, InvokeResponse, Platform};
use std::sync::Arc;

use crate::error::{ApiError, EXECUTION_ID_HEADER};
use crate::extract::{body_rejection, is_picloud_cookie};
use crate::origins::{AppAddress, Origins};

/// Headers a script may not set: the server frames the response itself.
const FRAMING_HEADERS: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
];

pub async fn invoke(
    State(platform): State<Platform>,
    Extension(origins): Extension<Arc<Origins>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (slug, path) = match origins.app_address(&headers, &uri) {
        AppAddress::App { slug, path } => (slug, path),
        AppAddress::NotAnAppHost => {
            let domain = origins.apps_domain.as_deref().unwrap_or_default();
            return Err(ApiError::not_found(format!(
                "apps are served on hosts of their own: <slug>.{domain}"
            )));
        }
    };
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
        headers: script_visible_headers(&headers),
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

/// The request's headers as the script sees them: without PiCloud's own cookies, and without an
/// `authorization` that carries a PiCloud credential.
fn script_visible_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(name, value)| {
            let value = String::from_utf8_lossy(value.as_bytes());
            let value = if name == header::COOKIE {
                let kept: Vec<&str> = value
                    .split(';')
                    .map(str::trim)
                    .filter(|pair| {
                        let name = pair.split_once('=').map_or(*pair, |(name, _)| name);
                        !pair.is_empty() && !is_picloud_cookie(name)
                    })
                    .collect();
                if kept.is_empty() {
                    return None;
                }
                kept.join("; ")
            } else if name == header::AUTHORIZATION
                && value.split_once(' ').is_some_and(|(_, token)| {
                    picloud_orchestrator::auth::is_credential(token.trim())
                })
            {
                return None;
            } else {
                value.into_owned()
            };
            Some((name.as_str().to_owned(), value))
        })
        .collect()
}

/// Why a script may not send this header, if it may not: it would set or clear PiCloud's own
/// cookies.
fn forbidden_to_scripts(name: &HeaderName, value: &HeaderValue) -> Option<&'static str> {
    if name == header::SET_COOKIE {
        let cookie = String::from_utf8_lossy(value.as_bytes());
        let cookie_name = cookie.split_once('=').map_or(&*cookie, |(name, _)| name);
        return is_picloud_cookie(cookie_name.trim()).then_some(
            "cookies whose names start with 'picloud_' are PiCloud's own; use another name",
        );
    }
    (name.as_str() == "clear-site-data")
        .then_some("'clear-site-data' would clear PiCloud's own cookies on this host")
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
        if let Some(why) = forbidden_to_scripts(&name, &value) {
            return Err(format!(
                "the script may not send the header '{name}': {why}"
            ));
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
