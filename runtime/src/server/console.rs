//! **The console** at `GET /ui`: a small single-page app (plain HTML, CSS and JavaScript in
//! `console/`, embedded in the binary; no build step, no CDN) over the same API and the same
//! keys as every other client. The page asks for a tenant key and, for its Tenants page, the
//! admin token; both stay in the tab's `sessionStorage` and travel only in `Authorization`
//! headers, never in URLs.
//!
//! Pages: views (`GET /v1/views`), transforms and versions with activate/rollback
//! (`/v1/transforms`), live health with charts (`GET /v1/view-health`), feature lookup
//! (`POST /v1/features`, with `as_of`), and tenants and keys for the admin (`/v1/admin/...`).
//!
//! Assets are served with a strict `Content-Security-Policy` (only this origin's scripts, styles
//! and API), `X-Content-Type-Options: nosniff` and `no-cache` (a new binary serves new assets).

use hyper::StatusCode;
use hyper::header::{CACHE_CONTROL, HeaderValue};

use super::error::ApiError;
use super::respond::{Resp, bytes_resp};

/// One embedded file: its name under `/ui/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Every file of the console (the page itself is `/ui`).
const ASSETS: &[Asset] = &[
    Asset { name: "index.html", content_type: "text/html; charset=utf-8", body: include_str!("console/index.html") },
    Asset {
        name: "console.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("console/console.js"),
    },
    Asset { name: "console.css", content_type: "text/css; charset=utf-8", body: include_str!("console/console.css") },
];

/// The policy every console response carries: nothing from other origins, no inline script.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
                   img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// `GET /ui`: the page.
pub(super) fn page() -> Resp {
    asset("index.html").unwrap_or_else(|e| e.into_response())
}

/// `GET /ui/{asset}`: one of the console's files (404 `not_found` for any other name).
pub(super) fn asset(name: &str) -> Result<Resp, ApiError> {
    let a = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::not_found(format!("the console has no file `{name}`")))?;
    let mut r = bytes_resp(StatusCode::OK, a.content_type, a.body);
    let h = r.headers_mut();
    h.insert("content-security-policy", HeaderValue::from_static(CSP));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_the_page_loads_is_embedded_and_others_are_404() {
        let index = ASSETS.iter().find(|a| a.name == "index.html").expect("index");
        for a in ASSETS.iter().filter(|a| a.name != "index.html") {
            assert!(index.body.contains(&format!("/ui/{}", a.name)), "index.html does not load {}", a.name);
        }
        let r = asset("console.js").expect("console.js");
        assert_eq!(r.headers()["content-type"], "text/javascript; charset=utf-8");
        assert!(r.headers()["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
        assert_eq!(asset("../openapi.json").unwrap_err().code(), "not_found");
    }

    #[test]
    fn the_page_has_no_inline_script_or_remote_resource() {
        for a in ASSETS {
            let body = a.body.replace("http://www.w3.org/2000/svg", "");
            assert!(!body.contains("http://") && !body.contains("https://"), "{} loads a remote resource", a.name);
        }
        let index = ASSETS.iter().find(|a| a.name == "index.html").expect("index").body;
        assert!(!index.contains("<script>") && !index.contains("onclick="), "inline script in index.html");
    }
}
