//! RFC 7807 problem documents.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

/// A problem as the client reads it: the body of every error answer
/// (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "Problem", description = "An RFC 7807 problem document.")]
pub struct ProblemDocument {
    /// A URI naming the kind of problem; its last segment is the title.
    #[serde(rename = "type")]
    pub kind: String,
    /// A stable, short title (`unknown-id`, `rate-limited`, ...).
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong here, for people.
    pub detail: String,
}

impl From<&Problem> for ProblemDocument {
    fn from(problem: &Problem) -> Self {
        Self {
            kind: format!("https://tidings.invalid/problems/{}", problem.title),
            title: problem.title.to_string(),
            status: problem.status.as_u16(),
            detail: problem.detail.clone(),
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let body = serde_json::to_string(&ProblemDocument::from(&self)).unwrap_or_default();
        let mut response = (
            self.status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
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
