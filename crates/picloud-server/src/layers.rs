//! What wraps every request: JSON for the errors axum answers by itself, request counting, and a
//! last-resort panic guard; on the admin surface, the headers that keep its answers in their
//! place, and the answer to paths it does not serve.

use std::any::Any;
use std::future::{poll_fn, Future};
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::task::Poll;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use picloud_orchestrator::{Platform, RequestKind};

use crate::error::{ApiError, ErrorCode, EXECUTION_ID_HEADER};

/// Every answer passes here: a handler that panicked answers 500 in the API's shape, the errors
/// axum answers by itself get that shape too, and the answer is counted by kind and status. One
/// middleware, not one per concern: each layer costs boxed futures and a clone of the service
/// inside it per request, which `hello` measures (bench/RESULTS.md, "one middleware").
pub async fn finish_response(
    State(platform): State<Platform>,
    request: Request,
    next: Next,
) -> Response {
    let kind = kind_of(request.uri().path());
    let response = match catch_panic(next.run(request)).await {
        Ok(response) => json_errors(response).await,
        Err(panic) => panic_response(panic),
    };
    platform
        .metrics()
        .record_http_request(kind, response.status().as_u16());
    response
}

/// The admin surface's answers are never sniffed as another type, framed by another page, cached,
/// or named in a `Referer`: they hold tokens and tenants' data.
pub async fn admin_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CACHE_CONTROL, "no-store"),
    ] {
        headers
            .entry(name)
            .or_insert(HeaderValue::from_static(value));
    }
    response
}

/// A path the admin surface does not serve. Tenants' routes are never answered here, whatever
/// the path.
pub async fn not_on_the_admin_origin(uri: Uri) -> ApiError {
    ApiError::not_found(format!(
        "there is nothing at {} on the admin origin; apps are served on the public address",
        uri.path()
    ))
}

/// Runs `future`; a panic while it is polled ends it with the panic's payload.
async fn catch_panic<F: Future>(future: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut future = pin!(future);
    poll_fn(
        |cx| match panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(poll) => poll.map(Ok),
            Err(panic) => Poll::Ready(Err(panic)),
        },
    )
    .await
}

fn kind_of(path: &str) -> RequestKind {
    let first = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default();
    match first {
        "api" => RequestKind::Admin,
        "" | "healthz" | "readyz" | "metrics" | "admin" | "static" | "assets" => RequestKind::Other,
        _ => RequestKind::Public,
    }
}

/// Turns the errors axum answers on its own (a wrong method on a known path, a path-parameter
/// rejection…) into the API's JSON shape. Scripts' answers (they carry an execution id),
/// answers already in JSON and the dashboard's HTML pages pass untouched.
async fn json_errors(response: Response) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(EXECUTION_ID_HEADER)
        || has_type(&response, "application/json")
        || has_type(&response, "text/html")
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 64 * 1024)
        .await
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ErrorCode::UnsupportedMediaType,
        s if s.is_client_error() => ErrorCode::InvalidInput,
        _ => ErrorCode::Internal,
    };
    let message = match code {
        ErrorCode::MethodNotAllowed => "this method is not allowed on this path".to_owned(),
        ErrorCode::NotFound if text.is_empty() => "there is nothing at this path".to_owned(),
        ErrorCode::Internal => {
            "something went wrong on our side; the server log has the details".to_owned()
        }
        _ if text.is_empty() => status.canonical_reason().unwrap_or("error").to_owned(),
        _ => text,
    };
    let mut fixed = ApiError::new(code, message).into_response();
    // Keep what axum said beyond the body (an `Allow` list, for one), and the original status.
    *fixed.status_mut() = status;
    for (name, value) in parts.headers.iter() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            fixed.headers_mut().insert(name, value.clone());
        }
    }
    fixed
}

fn has_type(response: &Response<Body>, media_type: &str) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(media_type))
}

/// A handler panicked: log it and answer 500 in the API's shape. A bug, never the intended path.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message");
    ApiError::internal(format!("a request handler panicked: {detail}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_their_first_segment() {
        assert_eq!(kind_of("/api/v1/admin/apps"), RequestKind::Admin, "the API");
        assert_eq!(kind_of("/healthz"), RequestKind::Other, "health");
        assert_eq!(kind_of("/"), RequestKind::Other, "the site root");
        assert_eq!(kind_of("/shop/items"), RequestKind::Public, "an app");
    }

    #[tokio::test]
    async fn a_panic_while_polled_is_caught_and_an_answer_passes() {
        let caught = catch_panic(async {
            tokio::task::yield_now().await;
            panic!("a bug after the first poll")
        })
        .await;
        let detail = caught
            .expect_err("the panic is caught")
            .downcast::<&str>()
            .expect("its message");
        assert_eq!(*detail, "a bug after the first poll");
        assert_eq!(
            catch_panic(async { 7 }).await.ok(),
            Some(7),
            "an answer passes"
        );
    }

    #[tokio::test]
    async fn a_panic_becomes_a_json_500_without_its_message() {
        let response = panic_response(Box::new("secret detail".to_owned()));
        assert_eq!(
            response.status(),
            StatusCode::INTERNAL_SERVER_ERROR,
            "a panic is a 500"
        );
        let body = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .expect("a body");
        let json: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
        assert_eq!(
            json["error"]["code"], "internal",
            "in the API's error shape: {json}"
        );
        assert!(
            !json.to_string().contains("secret detail"),
            "the panic message stays in the log: {json}"
        );
    }
}
