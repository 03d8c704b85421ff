//! RFC 7807 problem documents.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// An error answer: status, a short title, and details for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// HTTP status.
    pub status: StatusCode,
    /// A stable, short title (also the last part of the type URI).
    pub title: &'static str,
    /// What went wrong here.
    pub detail: String,
    /// Seconds after which a retry may succeed (`Retry-After`), for 429 and 503.
    pub retry_after: Option<u64>,
}

impl Problem {
    /// A problem with `status`, `title` and `detail`.
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// The same problem, telling the client when to retry.
    pub fn retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    /// 400 Bad Request.
    pub fn bad_request(title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, title, detail)
    }

    /// 404 Not Found.
    pub fn not_found(title: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, title, detail)
    }

    /// 500, for a node that stopped or a log that cannot be read.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal-error", detail)
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "type": format!("https://tidings.invalid/problems/{}", self.title),
            "title": self.title,
            "status": self.status.as_u16(),
            "detail": self.detail,
        });
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body.to_string(),
        )
            .into_response();
        if let Some(seconds) = self.retry_after {
            if let Ok(value) = header::HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}
