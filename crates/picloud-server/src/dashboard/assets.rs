//! `/admin/assets/{name}`: the dashboard's CSS and JavaScript, compiled into the binary.
//!
//! Each asset has a strong ETag, the start of its content's SHA-256, computed once. Pages link
//! an asset as `/admin/assets/<name>?v=<that hash>`: such a URL names one content forever, so it
//! is cached `immutable` for a year; any other URL of an asset is `no-cache` (revalidated with
//! `If-None-Match`, answered `304`). A client that accepts gzip gets the asset compressed once,
//! at its first request, and kept.

use std::io::Write;
use std::sync::{LazyLock, OnceLock};

use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use picloud_orchestrator::Platform;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

macro_rules! asset {
    ($name:literal, $kind:expr, $path:literal) => {
        Asset {
            name: $name,
            content_type: $kind,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/", $path)),
        }
    };
}

static ASSETS: &[Asset] = &[
    asset!("dashboard.css", CSS, "dashboard.css"),
    asset!("dashboard.js", JS, "dashboard.js"),
    asset!("htmx.min.js", JS, "vendor/htmx/htmx.min.js"),
    asset!("codemirror.js", JS, "vendor/codemirror/codemirror.js"),
    asset!("codemirror.css", CSS, "vendor/codemirror/codemirror.css"),
    asset!("simple.js", JS, "vendor/codemirror/simple.js"),
    asset!("show-hint.js", JS, "vendor/codemirror/show-hint.js"),
    asset!("show-hint.css", CSS, "vendor/codemirror/show-hint.css"),
];

/// What is derived from an asset's content: its hash (the ETag and the `v` of its URL), and
/// its gzip form once a client asked for it.
struct Derived {
    hash: String,
    gzip: OnceLock<Vec<u8>>,
}

static DERIVED: LazyLock<Vec<Derived>> = LazyLock::new(|| {
    ASSETS
        .iter()
        .map(|asset| Derived {
            hash: Sha256::digest(asset.body)
                .iter()
                .take(10)
                .map(|b| format!("{b:02x}"))
                .collect(),
            gzip: OnceLock::new(),
        })
        .collect()
});

pub fn router() -> Router<Platform> {
    Router::new().route("/admin/assets/{name}", get(serve))
}

/// The URL a page links `name` with: its content's version in it, cached for good. Names are
/// this module's own, so an unknown one is a bug in a page.
pub fn url(name: &str) -> String {
    let (_, derived) = find(name).unwrap_or_else(|| panic!("no dashboard asset named {name}"));
    format!("/admin/assets/{name}?v={}", derived.hash)
}

fn find(name: &str) -> Option<(&'static Asset, &'static Derived)> {
    let index = ASSETS.iter().position(|asset| asset.name == name)?;
    Some((&ASSETS[index], &DERIVED[index]))
}

#[derive(Deserialize)]
struct Version {
    v: Option<String>,
}

async fn serve(
    Path(name): Path<String>,
    Query(version): Query<Version>,
    request_headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (asset, derived) = find(&name)
        .ok_or_else(|| ApiError::not_found(format!("the dashboard has no asset named {name}")))?;
    let gzip = accepts_gzip(&request_headers);
    let etag = if gzip {
        format!("\"{}-gz\"", derived.hash)
    } else {
        format!("\"{}\"", derived.hash)
    };
    let cache = if version.v.as_deref() == Some(derived.hash.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (header::ETAG, etag.as_str()),
        (header::CACHE_CONTROL, cache),
        (header::VARY, "accept-encoding"),
    ] {
        headers.insert(
            name,
            HeaderValue::from_str(value).map_err(ApiError::internal)?,
        );
    }
    let unchanged = request_headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*");
    if unchanged {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if !gzip {
        return Ok((headers, asset.body).into_response());
    }
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    let body = derived.gzip.get_or_init(|| compress(asset.body));
    Ok((headers, body.as_slice()).into_response())
}

/// Whether `Accept-Encoding` lists gzip (without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';').map(str::trim);
            let refused = |param: &str| {
                param
                    .strip_prefix("q=")
                    .and_then(|q| q.parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            };
            parts.next().is_some_and(|c| c.eq_ignore_ascii_case("gzip")) && !parts.any(refused)
        })
}

fn compress(body: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let written = encoder.write_all(body).and_then(|()| encoder.finish());
    written.unwrap_or_else(|err| unreachable!("gzip into memory failed: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_accepted_unless_refused_with_q_zero() {
        let check = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT_ENCODING, HeaderValue::from_static(value));
            accepts_gzip(&headers)
        };
        assert!(check("gzip, deflate, br"), "a browser's list");
        assert!(check("br;q=1.0, GZIP;q=0.5"), "any case, any weight but 0");
        assert!(!check("gzip;q=0, br"), "refused");
        assert!(!check("identity"), "not listed");
        assert!(!accepts_gzip(&HeaderMap::new()), "no header");
    }

    #[test]
    fn every_asset_has_a_url_with_its_hash_and_compresses() {
        for asset in ASSETS {
            let url = url(asset.name);
            assert!(
                url.starts_with(&format!("/admin/assets/{}?v=", asset.name)) && url.len() > 40,
                "{url}"
            );
            assert!(
                compress(asset.body).len() < asset.body.len(),
                "{} is smaller gzipped",
                asset.name
            );
        }
    }
}
