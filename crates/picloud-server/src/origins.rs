//! Which surface a request reaches: the admin surface (the admin API, `/metrics`, and the
//! dashboard) or the tenants' public routes. The two never share an origin (`docs/security.md`):
//!
//! - everything accepted on the admin listener (`PICLOUD_ADMIN_ADDR`) is the admin surface;
//! - on the public listener, a request whose `Host` is `PICLOUD_ADMIN_HOST` is the admin surface,
//!   every other request the public one;
//! - on the public surface, with `PICLOUD_APPS_DOMAIN=apps.example.com`, an app is served at the
//!   root of its own host `<slug>.apps.example.com`; without it, at `/<slug>/…` (path routing).

use axum::http::{header, HeaderMap, Uri};

/// Where the admin surface and the apps are served; see the module documentation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origins {
    /// A host name (lower case, no port) whose requests on the public listener reach the admin
    /// surface.
    pub admin_host: Option<String>,
    /// A domain (lower case, no port) under which each app has a host of its own.
    pub apps_domain: Option<String>,
}

/// Where a public request goes: which app, and the path within it.
#[derive(Debug, PartialEq, Eq)]
pub enum AppAddress<'a> {
    /// `slug` and the path inside the app (`/` at least).
    App { slug: &'a str, path: &'a str },
    /// Per-app hosts are on and this host is none of them: only health checks answer here.
    NotAnAppHost,
}

impl Origins {
    /// Whether a request that arrived on the public listener is for the admin surface.
    pub fn is_admin_request(&self, headers: &HeaderMap) -> bool {
        self.admin_host
            .as_deref()
            .is_some_and(|admin| host_name(headers).is_some_and(|h| h.eq_ignore_ascii_case(admin)))
    }

    /// The app a public request names: by its host under the apps domain, or by its first path
    /// segment.
    pub fn app_address<'a>(&self, headers: &'a HeaderMap, uri: &'a Uri) -> AppAddress<'a> {
        let Some(domain) = self.apps_domain.as_deref() else {
            let (slug, path) = split_path(uri.path());
            return AppAddress::App { slug, path };
        };
        let slug = host_name(headers).and_then(|host| {
            let (slug, rest) = host.split_once('.')?;
            rest.eq_ignore_ascii_case(domain).then_some(slug)
        });
        match slug {
            Some(slug) => AppAddress::App {
                slug,
                path: match uri.path() {
                    "" => "/",
                    path => path,
                },
            },
            None => AppAddress::NotAnAppHost,
        }
    }
}

/// The host name of a request, without its port: the `Host` header (HTTP/1.1), else the URI's
/// authority (HTTP/2).
fn host_name(headers: &HeaderMap) -> Option<&str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    Some(match host.rsplit_once(':') {
        // `[::1]:8080` or `example.com:8080`; a bare `[::1]` has no port to strip.
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    })
}

/// `/shop/items/3` → (`shop`, `/items/3`); `/shop` and `/shop/` → (`shop`, `/`).
fn split_path(path: &str) -> (&str, &str) {
    let rest = path.strip_prefix('/').unwrap_or(path);
    match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, host.parse().expect("a header value"));
        headers
    }

    fn uri(path: &str) -> Uri {
        path.parse().expect("a URI")
    }

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
    fn only_the_admin_host_reaches_the_admin_surface_whatever_its_port_or_case() {
        let origins = Origins {
            admin_host: Some("admin.example.com".into()),
            apps_domain: None,
        };
        for host in [
            "admin.example.com",
            "ADMIN.example.com",
            "admin.example.com:8443",
        ] {
            assert!(
                origins.is_admin_request(&headers(host)),
                "{host} is the admin host"
            );
        }
        for host in [
            "example.com",
            "shop.admin.example.com",
            "admin.example.com.evil.io",
        ] {
            assert!(
                !origins.is_admin_request(&headers(host)),
                "{host} is not the admin host"
            );
        }
        assert!(
            !Origins::default().is_admin_request(&headers("admin.example.com")),
            "without an admin host, the public listener serves no admin request"
        );
    }

    #[test]
    fn with_an_apps_domain_the_host_names_the_app_and_the_whole_path_is_its_own() {
        let origins = Origins {
            admin_host: None,
            apps_domain: Some("apps.example.com".into()),
        };
        let path = uri("/items/3?x=1");
        assert_eq!(
            origins.app_address(&headers("shop.apps.example.com:8080"), &path),
            AppAddress::App {
                slug: "shop",
                path: "/items/3"
            },
            "the host names the app"
        );
        for host in [
            "apps.example.com",
            "a.b.apps.example.com",
            "shop.example.com",
        ] {
            assert_eq!(
                origins.app_address(&headers(host), &path),
                AppAddress::NotAnAppHost,
                "{host} is no app's host"
            );
        }
        assert_eq!(
            Origins::default().app_address(&headers("shop.apps.example.com"), &path),
            AppAddress::App {
                slug: "items",
                path: "/3"
            },
            "without an apps domain, the path names the app"
        );
    }
}
