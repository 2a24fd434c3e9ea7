//! The status page and its two assets, compiled into the binary.
//!
//! The kiosk has no Internet, so nothing may come from elsewhere: no fonts, no scripts, no
//! CDNs. The files in `page/` are hand-written and small (the whole page stays under
//! 100 KB, which a test checks). They are served with an `ETag` derived from their content
//! at compile time, so a phone on weak Wi-Fi revalidates with a few bytes instead of
//! downloading them again, and a new gateway version is picked up at once.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

struct Asset {
    body: &'static str,
    content_type: &'static str,
    tag: u64,
}

const INDEX: Asset = asset(include_str!("page/index.html"), "text/html; charset=utf-8");
const APP_JS: Asset = asset(
    include_str!("page/app.js"),
    "text/javascript; charset=utf-8",
);
const STYLE_CSS: Asset = asset(include_str!("page/style.css"), "text/css; charset=utf-8");

const fn asset(body: &'static str, content_type: &'static str) -> Asset {
    Asset {
        body,
        content_type,
        tag: fnv1a(body.as_bytes()),
    }
}

/// FNV-1a, 64 bit: not cryptographic, only a change detector for cache validation, and
/// simple enough to run in a `const` context.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut index = 0;
    while index < bytes.len() {
        hash ^= bytes[index] as u64;
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        index += 1;
    }
    hash
}

fn respond(asset: &Asset, headers: &HeaderMap) -> Response {
    let etag = format!("\"{:016x}\"", asset.tag);
    let cached = headers
        .get_all(IF_NONE_MATCH)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|candidate| candidate.trim() == etag || candidate.trim() == "*");
    let validators = [
        (ETAG, etag.clone()),
        (CACHE_CONTROL, "no-cache".to_string()),
    ];
    if cached {
        return (StatusCode::NOT_MODIFIED, validators).into_response();
    }
    (validators, [(CONTENT_TYPE, asset.content_type)], asset.body).into_response()
}

pub async fn index(headers: HeaderMap) -> Response {
    respond(&INDEX, &headers)
}

pub async fn app_js(headers: HeaderMap) -> Response {
    respond(&APP_JS, &headers)
}

pub async fn style_css(headers: HeaderMap) -> Response {
    respond(&STYLE_CSS, &headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_content() {
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(INDEX.tag, APP_JS.tag);
    }
}
