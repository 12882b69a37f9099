//! Who is calling: a bearer token or the dashboard's session cookie, and the checks a request
//! signed in by cookie must pass (its origin, its CSRF token).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use picloud_core::Principal;
use picloud_orchestrator::Platform;

use crate::error::{ApiError, ErrorCode};

/// The session cookie a login sets over plain HTTP, for the dashboard: `HttpOnly`,
/// `SameSite=Strict`, `Path=/api/`.
pub const SESSION_COOKIE: &str = "picloud_session";
/// The session cookie a login sets over TLS (`X-Forwarded-Proto: https`): `__Host-` makes the
/// browser keep it only from a secure origin, for this host alone, on `Path=/`.
pub const SECURE_SESSION_COOKIE: &str = "__Host-picloud_session";
/// The header a cookie-authenticated state-changing request must carry: the session's CSRF
/// token, which only the login answer and `GET /api/v1/auth/me` give (never a cookie).
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Whether a cookie name is PiCloud's: every name starting with `picloud_` (any case), with or
/// without a `__Host-` or `__Secure-` prefix. Scripts never see these and may not set them.
pub fn is_picloud_cookie(name: &str) -> bool {
    let name = name.trim();
    let unprefixed = ["__host-", "__secure-"]
        .iter()
        .find(|prefix| starts_with_ignore_case(name, prefix))
        .map_or(name, |prefix| &name[prefix.len()..]);
    starts_with_ignore_case(unprefixed, "picloud_")
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Whether the request reached the proxy in front of PiCloud over TLS (`X-Forwarded-Proto` or
/// `Forwarded: proto=https`). A client that claims it falsely only gets a cookie its browser
/// will not keep over plain HTTP.
pub fn is_https(headers: &HeaderMap) -> bool {
    let forwarded_proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .is_some_and(|proto| proto.trim().eq_ignore_ascii_case("https"));
    forwarded_proto
        || headers
            .get(header::FORWARDED)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|first| {
                first.split(';').any(|pair| {
                    pair.trim().split_once('=').is_some_and(|(k, v)| {
                        k.eq_ignore_ascii_case("proto")
                            && v.trim_matches('"').eq_ignore_ascii_case("https")
                    })
                })
            })
}

/// The caller of an admin endpoint.
///
/// - `Authorization: Bearer <token>` with a session token or an API key (`pk_…`). Missing,
///   unknown, expired, logged-out or revoked credentials are refused with 401 and
///   `WWW-Authenticate: Bearer`.
/// - Without that header, the dashboard's session cookie ([`SECURE_SESSION_COOKIE`], or over
///   plain HTTP [`SESSION_COOKIE`]). It carries sessions only: an API key in it is refused. A
///   request riding on the cookie must come from the admin origin's own pages: a
///   `Sec-Fetch-Site` other than `same-origin` / `none`, or an `Origin` other than the request's
///   own host, is refused with 403 `csrf_failed` — a tenant's page on the same host but another
///   port is same-site, and browsers send it the cookie. A request with an unsafe method
///   (anything but GET, HEAD, OPTIONS) must also carry the session's CSRF token in
///   `X-CSRF-Token`. Bearer requests are not subject to this: a browser never adds the header
///   on its own.
pub struct Authenticated {
    pub principal: Principal,
    pub token: String,
}

impl FromRequestParts<Platform> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        platform: &Platform,
    ) -> Result<Self, Self::Rejection> {
        let presented = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        Self::check(parts, platform, presented).await
    }
}

impl Authenticated {
    /// The caller of a request whose head is `parts`; `csrf` is the CSRF token it presents (the
    /// `X-CSRF-Token` header, or a dashboard form's field, which only the dashboard reads from the
    /// body). The one place a request is signed in, for the API and the dashboard alike.
    pub async fn check(
        parts: &Parts,
        platform: &Platform,
        csrf: Option<&str>,
    ) -> Result<Self, ApiError> {
        let token = match bearer_token(&parts.headers) {
            Some(token) => token,
            None => cookie_session(parts, csrf)?,
        };
        match platform.auth().authenticate(token).await? {
            Some(principal) => Ok(Self {
                principal,
                token: token.to_owned(),
            }),
            None => Err(ApiError::new(
                ErrorCode::Unauthorized,
                "the credentials are unknown, expired, revoked or logged out; sign in again",
            )),
        }
    }
}

/// The session token of a request signed in by cookie, once the request has shown it comes
/// from the admin origin's own pages (and, when it changes state, presents the CSRF token).
fn cookie_session<'a>(parts: &'a Parts, csrf: Option<&str>) -> Result<&'a str, ApiError> {
    let headers = &parts.headers;
    let secure = cookie(headers, SECURE_SESSION_COOKIE);
    let token = if is_https(headers) {
        secure
    } else {
        secure.or_else(|| cookie(headers, SESSION_COOKIE))
    }
    .filter(|t| !t.is_empty())
    .ok_or_else(ApiError::unauthorized)?;
    if token.starts_with(picloud_orchestrator::auth::API_KEY_MARK) {
        return Err(ApiError::new(
            ErrorCode::Unauthorized,
            "an API key is accepted only in 'Authorization: Bearer <key>', never as a cookie",
        ));
    }
    if !from_own_origin(headers) {
        return Err(ApiError::new(
            ErrorCode::CsrfFailed,
            "a request signed in by cookie must come from the admin origin's own pages; \
             scripts and other sites send 'Authorization: Bearer <token>' instead",
        ));
    }
    if !is_safe(&parts.method)
        && !picloud_orchestrator::auth::csrf_matches(token, csrf.unwrap_or_default())
    {
        return Err(ApiError::new(
            ErrorCode::CsrfFailed,
            "a request signed in by cookie must carry the session's CSRF token \
             in the X-CSRF-Token header",
        ));
    }
    Ok(token)
}

/// Whether a browser says the request comes from a page of this very origin (or from no page:
/// the address bar, a bookmark, a client that is not a browser). `Sec-Fetch-Site` tells it
/// directly; an `Origin` must name the host the request was sent to (`X-Forwarded-Host` behind a
/// proxy, else `Host`).
pub fn from_own_origin(headers: &HeaderMap) -> bool {
    let site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if site.is_some_and(|site| !matches!(site, "same-origin" | "none")) {
        return false;
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|origin| origin.split_once("://"))
        .map(|(_, authority)| authority);
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The value of cookie `name` in the `Cookie` header(s).
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim())
}

/// The token of `Authorization: Bearer <token>` (the scheme in any case).
pub fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_with_any_scheme_case() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "bearer abc".parse().expect("header"));
        assert_eq!(bearer_token(&headers), Some("abc"), "lower-case scheme");
        headers.insert(header::AUTHORIZATION, "Basic abc".parse().expect("header"));
        assert_eq!(bearer_token(&headers), None, "other schemes are ignored");
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().expect("header"));
        assert_eq!(bearer_token(&headers), None, "an empty token is none");
    }

    #[test]
    fn picloud_cookies_are_every_picloud_name_with_or_without_a_prefix() {
        for name in [
            "picloud_session",
            "PICLOUD_session",
            "__Host-picloud_session",
            "__secure-picloud_csrf",
            "picloud_anything",
        ] {
            assert!(is_picloud_cookie(name), "{name} is PiCloud's");
        }
        for name in ["session", "my_picloud_session", "__Host-session", "picloud"] {
            assert!(!is_picloud_cookie(name), "{name} is the app's");
        }
    }

    #[test]
    fn only_a_page_of_the_same_origin_passes_the_origin_check() {
        let check = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.insert(*name, value.parse().expect("a value"));
            }
            from_own_origin(&headers)
        };
        assert!(check(&[]), "no browser headers: not a page");
        assert!(
            check(&[
                ("host", "127.0.0.1:8081"),
                ("origin", "http://127.0.0.1:8081"),
                ("sec-fetch-site", "same-origin")
            ]),
            "the admin origin's own page"
        );
        assert!(
            !check(&[
                ("host", "127.0.0.1:8081"),
                ("origin", "http://127.0.0.1:8080")
            ]),
            "a tenant's page on another port of the same host"
        );
        assert!(
            !check(&[("host", "127.0.0.1:8081"), ("sec-fetch-site", "same-site")]),
            "a same-site page, even without an Origin"
        );
        assert!(
            !check(&[("host", "admin.example.com"), ("origin", "null")]),
            "an opaque origin"
        );
        assert!(
            check(&[
                ("host", "10.0.0.2:8081"),
                ("x-forwarded-host", "admin.example.com"),
                ("origin", "https://admin.example.com")
            ]),
            "behind a proxy, the forwarded host"
        );
    }

    #[test]
    fn https_is_what_the_proxy_says() {
        let mut headers = HeaderMap::new();
        assert!(!is_https(&headers), "nothing said: plain HTTP");
        headers.insert("x-forwarded-proto", "https".parse().expect("a value"));
        assert!(is_https(&headers), "X-Forwarded-Proto");
        let mut headers = HeaderMap::new();
        headers.insert(
            header::FORWARDED,
            "for=1.2.3.4;proto=https, for=5.6.7.8"
                .parse()
                .expect("a value"),
        );
        assert!(is_https(&headers), "Forwarded");
    }

    #[test]
    fn cookies_are_found_by_name_among_several() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::COOKIE,
            "a=1; picloud_session=tok; b=2".parse().expect("header"),
        );
        assert_eq!(
            cookie(&headers, SESSION_COOKIE),
            Some("tok"),
            "found by name"
        );
        assert_eq!(cookie(&headers, "missing"), None, "absent");
    }
}
