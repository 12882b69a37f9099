//! Who is looking at a page, the check of a form that changes state, and what a page shows when
//! it cannot answer; `/admin/login` and `/admin/logout`.
//!
//! The dashboard signs requests in through the API's own check
//! ([`Authenticated::check`](crate::extract::Authenticated::check)); what differs is the answer
//! to a caller who is not signed in (a redirect to the login page, not `401` JSON) and where a
//! form's CSRF token is (its `csrf_token` field, when `X-CSRF-Token` is absent).

use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Router};
use maud::{html, Markup};
use picloud_core::{App, AppId, Principal};
use picloud_orchestrator::{Platform, ServiceError};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::layout::{page, Head};
use crate::auth::{end_session, start_session};
use crate::error::{ApiError, ErrorCode};
use crate::extract::{
    from_own_origin, Authenticated, ClientAddr, FromSegments, PathIds, CSRF_HEADER,
};

pub const LOGIN_PATH: &str = "/admin/login";

pub fn router() -> Router<Platform> {
    Router::new()
        .route(LOGIN_PATH, get(login_page).post(login))
        .route("/admin/logout", axum::routing::post(logout))
}

/// The signed-in caller of a page, and the CSRF token its forms carry.
pub struct Session {
    pub caller: Authenticated,
    pub csrf: String,
}

impl Session {
    pub fn principal(&self) -> &Principal {
        &self.caller.principal
    }

    fn of(caller: Authenticated) -> Self {
        let csrf = picloud_orchestrator::auth::csrf_token(&caller.token);
        Self { caller, csrf }
    }
}

impl FromRequestParts<Platform> for Session {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Platform,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let caller = Authenticated::check(parts, platform, presented).await?;
        Ok(Self::of(caller))
    }
}

/// A form that changes state, from a signed-in caller who presented the session's CSRF token:
/// in `X-CSRF-Token` (`dashboard.js` adds it), else in the form's `csrf_token` field.
pub struct SignedForm<T> {
    pub session: Session,
    pub fields: T,
}

#[derive(Deserialize)]
struct Fields<T> {
    csrf_token: Option<String>,
    #[serde(flatten)]
    rest: T,
}

/// The fields of a form that has none but its CSRF token (a button).
#[derive(Deserialize)]
pub struct NoFields {}

impl<T: DeserializeOwned + Send> FromRequest<Platform> for SignedForm<T> {
    type Rejection = PageError;

    async fn from_request(request: Request, platform: &Platform) -> Result<Self, Self::Rejection> {
        let (parts, body) = request.into_parts();
        let form =
            Form::<Fields<T>>::from_request(Request::from_parts(parts.clone(), body), platform)
                .await
                .map_err(|rejection| ApiError::new(ErrorCode::InvalidInput, rejection.body_text()));
        let presented = parts
            .headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .or_else(|| form.as_ref().ok().and_then(|f| f.csrf_token.as_deref()));
        let caller = Authenticated::check(&parts, platform, presented).await?;
        let Form(fields) = form?;
        Ok(Self {
            session: Session::of(caller),
            fields: fields.rest,
        })
    }
}

/// Ids from the path ([`PathIds`]), with the dashboard's error page.
pub struct Ids<T>(pub T);

impl<T: FromSegments> FromRequestParts<Platform> for Ids<T> {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Platform,
    ) -> Result<Self, Self::Rejection> {
        let PathIds(ids) = PathIds::<T>::from_request_parts(parts, platform).await?;
        Ok(Self(ids))
    }
}

/// A page of one app: the signed-in caller, and the app the path names, read as the caller (an
/// app they may not read answers the API's 404 as a page).
pub struct AppOf {
    pub session: Session,
    pub app: App,
}

impl FromRequestParts<Platform> for AppOf {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Platform,
    ) -> Result<Self, Self::Rejection> {
        let session = Session::from_request_parts(parts, platform).await?;
        let Ids(app_id) = Ids::<AppId>::from_request_parts(parts, platform).await?;
        let app = platform.apps().get(session.principal(), app_id).await?;
        Ok(Self { session, app })
    }
}

/// Whether htmx sent the request (it swaps the answer into the page; a plain form loads a page).
pub fn from_htmx(headers: &HeaderMap) -> bool {
    headers.contains_key("hx-request")
}

/// What a page answers when it cannot: a caller who is not signed in goes to the login page;
/// every other error is a page with the API's status and message.
pub struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(error: ApiError) -> Self {
        Self(error)
    }
}

impl From<ServiceError> for PageError {
    fn from(error: ServiceError) -> Self {
        Self(error.into())
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let code = self.0.code();
        if code == ErrorCode::Unauthorized {
            return Redirect::to(LOGIN_PATH).into_response();
        }
        let title = match code {
            ErrorCode::Forbidden | ErrorCode::CsrfFailed => "Not allowed",
            ErrorCode::NotFound => "Not found",
            _ => "Something went wrong",
        };
        let body = html! {
            h1 { (title) }
            p.error { (self.0.message()) }
            p { a href="/admin" { "Back to the apps" } }
        };
        (code.status(), page(&Head::new(title), None, body)).into_response()
    }
}

/// An HTML answer.
pub type PageResult = Result<Response, PageError>;

#[derive(Deserialize)]
struct LoginForm {
    username: String,
    password: String,
}

async fn login_page() -> Response {
    login_form(None, "").into_response()
}

fn login_form(problem: Option<&str>, username: &str) -> Markup {
    let body = html! {
        main.narrow {
            h1 { "Sign in to PiCloud" }
            @if let Some(problem) = problem {
                p.error role="alert" { (problem) }
            }
            form method="post" action=(LOGIN_PATH) {
                label for="username" { "Username" }
                input #username name="username" autocomplete="username" required value=(username);
                label for="password" { "Password" }
                input #password type="password" name="password" autocomplete="current-password" required;
                button type="submit" { "Sign in" }
            }
        }
    };
    page(&Head::new("Sign in"), None, body)
}

/// Opens a session from the login form and sets its cookies as the API's login does; a wrong
/// password shows the form again with the reason. The form must come from this origin's own page
/// (a form posted from another site would sign the admin's browser in as someone else).
async fn login(
    State(platform): State<Platform>,
    ClientAddr(client): ClientAddr,
    request_headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    if !from_own_origin(&request_headers) {
        return PageError(ApiError::new(
            ErrorCode::CsrfFailed,
            "sign in from the dashboard's own login page",
        ))
        .into_response();
    }
    match start_session(
        &platform,
        client,
        &request_headers,
        &form.username,
        &form.password,
    )
    .await
    {
        Ok((_, mut cookies)) => {
            cookies.insert(header::LOCATION, header::HeaderValue::from_static("/admin"));
            (StatusCode::SEE_OTHER, cookies).into_response()
        }
        Err(error) => {
            let status = error.code().status();
            (status, login_form(Some(error.message()), &form.username)).into_response()
        }
    }
}

async fn logout(
    State(platform): State<Platform>,
    request_headers: HeaderMap,
    form: SignedForm<NoFields>,
) -> PageResult {
    let mut cookies = end_session(&platform, &form.session.caller, &request_headers).await?;
    cookies.insert(
        header::LOCATION,
        header::HeaderValue::from_static(LOGIN_PATH),
    );
    Ok((StatusCode::SEE_OTHER, cookies).into_response())
}
