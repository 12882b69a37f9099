//! Extractors whose rejections are [`ApiError`]s: a JSON body ([`json`]), the authenticated
//! caller ([`auth`]), path ids and list paging (here).

mod auth;
mod json;

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::{ConnectInfo, FromRequestParts, Query, RawPathParams};
use axum::http::request::Parts;
use picloud_core::id::ParseIdError;
use picloud_core::{
    ApiKeyId, AppId, CollectionName, DeadLetterId, RouteId, ScriptId, TriggerId, UserId,
};
use picloud_orchestrator::PageRequest;
use serde::Deserialize;

use crate::error::{ApiError, ErrorCode};

pub use auth::{
    bearer_token, cookie, from_own_origin, is_https, is_picloud_cookie, Authenticated, CSRF_HEADER,
    SECURE_SESSION_COOKIE, SESSION_COOKIE,
};
pub use json::{body_rejection, JsonBody};

/// The client's address, when the server was started with connection info (`serve` does).
pub struct ClientAddr(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|info| info.0.ip()),
        ))
    }
}

/// Ids from the path, parsed: `PathIds(id): PathIds<AppId>` for `/apps/{app_id}`,
/// `PathIds((app_id, user_id)): PathIds<(AppId, UserId)>` for two. A segment that is no id of
/// its kind names nothing: 404 "no app with the id '…'".
pub struct PathIds<T>(pub T);

impl<S: Send + Sync, T: FromSegments> FromRequestParts<S> for PathIds<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let params = RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::new(ErrorCode::InvalidInput, rejection.body_text()))?;
        let segments: Vec<&str> = params.iter().map(|(_, value)| value).collect();
        T::from_segments(&segments).map(PathIds)
    }
}

/// An id that can name a path segment.
pub trait PathId: FromStr<Err = ParseIdError> {}

impl PathId for AppId {}
impl PathId for ScriptId {}
impl PathId for RouteId {}
impl PathId for UserId {}
impl PathId for ApiKeyId {}
impl PathId for TriggerId {}
impl PathId for DeadLetterId {}
impl PathId for picloud_core::ExecutionId {}

/// What [`PathIds`] holds: one id, or two.
pub trait FromSegments: Sized {
    fn from_segments(segments: &[&str]) -> Result<Self, ApiError>;
}

impl<A: PathId> FromSegments for A {
    fn from_segments(segments: &[&str]) -> Result<Self, ApiError> {
        match segments {
            [a] => a.parse().map_err(unknown_id),
            _ => Err(segment_count(1, segments)),
        }
    }
}

impl<A: PathId, B: PathId> FromSegments for (A, B) {
    fn from_segments(segments: &[&str]) -> Result<Self, ApiError> {
        match segments {
            [a, b] => Ok((
                a.parse().map_err(unknown_id)?,
                b.parse().map_err(unknown_id)?,
            )),
            _ => Err(segment_count(2, segments)),
        }
    }
}

/// An app and one of its data collections: `/apps/{app_id}/kv/{collection}`. A collection name
/// that breaks the naming rule is refused as 400 with the rule.
impl FromSegments for (AppId, CollectionName) {
    fn from_segments(segments: &[&str]) -> Result<Self, ApiError> {
        match segments {
            [app, collection] => Ok((
                app.parse().map_err(unknown_id)?,
                CollectionName::parse(collection)?,
            )),
            _ => Err(segment_count(2, segments)),
        }
    }
}

/// An app, one of its collections and a field path: `/apps/{app_id}/docs/{collection}/indexes/
/// {path}` (the path is checked where it is used).
impl FromSegments for (AppId, CollectionName, String) {
    fn from_segments(segments: &[&str]) -> Result<Self, ApiError> {
        match segments {
            [app, collection, path] => {
                let (app, collection) =
                    <(AppId, CollectionName)>::from_segments(&[app, collection])?;
                Ok((app, collection, (*path).to_owned()))
            }
            _ => Err(segment_count(3, segments)),
        }
    }
}

/// A route whose path has another number of segments than its handler's ids: a bug of ours.
fn segment_count(expected: usize, segments: &[&str]) -> ApiError {
    ApiError::internal(format!(
        "the handler reads {expected} id(s) from a path with {} segment(s)",
        segments.len()
    ))
}

/// A string that is no id of its kind names nothing: 404.
pub fn unknown_id(err: ParseIdError) -> ApiError {
    ApiError::not_found(format!("no {} with the id '{}'", err.kind, err.value))
}

/// A script id in a body field: a string that is no script id is refused as 400 on `script_id`.
pub fn script_id_field(value: &str) -> Result<picloud_core::ScriptId, ApiError> {
    picloud_core::ScriptId::parse(value)
        .map_err(|err| picloud_core::InputError::new("script_id", err.to_string()).into())
}

/// `?limit=&cursor=` of a list.
#[derive(Debug, Default, Deserialize)]
pub struct ListParams {
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListParams {
    /// For lists whose query carries more than the page.
    pub fn new(limit: Option<String>, cursor: Option<String>) -> Self {
        Self { limit, cursor }
    }

    pub fn page(self) -> Result<PageRequest, ApiError> {
        let mut page = PageRequest {
            cursor: self.cursor.filter(|c| !c.is_empty()),
            ..PageRequest::default()
        };
        if let Some(limit) = self.limit {
            page.limit = limit
                .parse::<u32>()
                .ok()
                .filter(|l| (1..=PageRequest::MAX_LIMIT).contains(l))
                .ok_or_else(|| {
                    ApiError::new(
                        ErrorCode::InvalidInput,
                        format!(
                            "the limit must be a whole number from 1 to {}",
                            PageRequest::MAX_LIMIT
                        ),
                    )
                    .with_field("limit")
                })?;
        }
        Ok(page)
    }
}

/// `?limit=&cursor=`, with a malformed query string refused as 400.
pub struct Paging(pub PageRequest);

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(params) = Query::<ListParams>::from_request_parts(parts, state).await?;
        params.page().map(Paging)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_one_to_the_maximum_are_refused() {
        for bad in ["0", "-1", "abc", "501"] {
            let params = ListParams {
                limit: Some(bad.into()),
                cursor: None,
            };
            assert!(params.page().is_err(), "limit={bad} is refused");
        }
        let params = ListParams {
            limit: Some("10".into()),
            cursor: Some(String::new()),
        };
        let page = params.page().expect("valid");
        assert_eq!(
            (page.limit, page.cursor),
            (10, None),
            "an empty cursor means the first page"
        );
    }

    async fn answer(uri: &str) -> (axum::http::StatusCode, String) {
        use tower_service::Service;
        let mut router = axum::Router::new()
            .route(
                "/apps/{app_id}",
                axum::routing::get(|PathIds(id): PathIds<AppId>| async move { id.to_string() }),
            )
            .route(
                "/apps/{app_id}/members/{user_id}",
                axum::routing::get(
                    |PathIds((app, user)): PathIds<(AppId, UserId)>| async move {
                        format!("{app} {user}")
                    },
                ),
            )
            .route(
                "/mismatch/{a}/{b}",
                axum::routing::get(|PathIds(id): PathIds<AppId>| async move { id.to_string() }),
            );
        let request = axum::http::Request::get(uri)
            .body(axum::body::Body::empty())
            .expect("a request");
        let response = router.call(request).await.expect("infallible");
        let status = response.status();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .expect("a body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn path_ids_are_parsed_or_name_nothing() {
        let app = AppId::new();
        let user = UserId::new();
        assert_eq!(
            answer(&format!("/apps/{app}")).await,
            (axum::http::StatusCode::OK, app.to_string()),
            "one id"
        );
        assert_eq!(
            answer(&format!("/apps/{app}/members/{user}")).await,
            (axum::http::StatusCode::OK, format!("{app} {user}")),
            "two ids, in the path's order"
        );
        let (status, body) = answer(&format!("/apps/{app}/members/nobody")).await;
        assert_eq!(status, axum::http::StatusCode::NOT_FOUND, "{body}");
        assert!(
            body.contains("no user with the id 'nobody'"),
            "the kind and the value: {body}"
        );
        let long = "x".repeat(200);
        let (status, body) = answer(&format!("/apps/{long}")).await;
        assert_eq!(status, axum::http::StatusCode::NOT_FOUND, "{body}");
        assert!(
            body.contains(&format!("no app with the id '{}'", "x".repeat(64)))
                && !body.contains(&"x".repeat(65)),
            "the value is cut at 64 characters: {body}"
        );
        let (status, body) = answer("/apps/%FF").await;
        assert_eq!(status, axum::http::StatusCode::BAD_REQUEST, "{body}");
        assert!(body.contains("invalid_input"), "a JSON error: {body}");
        let (status, _) = answer(&format!("/mismatch/{app}/{app}")).await;
        assert_eq!(
            status,
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            "a handler reading fewer ids than its path has is our bug"
        );
    }
}
