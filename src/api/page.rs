//! The node's web page: `GET /` and its two assets, compiled into the binary.
//!
//! The page is plain HTML, CSS and JavaScript with no build step. It reads the
//! same API as every other client (so it honours the token: it asks for it
//! when the API answers 401 and keeps it in the browser tab's session storage)
//! and follows `/v1/watch` for live updates, resuming with `Last-Event-ID`.
//! The three files carry no data, so they are served without the token; the
//! tokenless API's host check still applies to them. A strict content security
//! policy allows nothing but this origin's own script, style and requests, and
//! the script puts every value from the network in the page as text.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("page/index.html");
const SCRIPT: &str = include_str!("page/app.js");
const STYLE: &str = include_str!("page/app.css");

/// The paths of the page: served without the API token.
pub(super) const PATHS: [&str; 3] = ["/", "/ui/app.js", "/ui/app.css"];

const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
    connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        body,
    )
        .into_response()
}

pub(super) async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub(super) async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub(super) async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}
