//! Errors from Vertex AI, shared by the Vertex translators.

use crate::api::vertex::google_error;
use crate::{Error, UpstreamError};

/// An upstream error for the client. 401 and 403 are about the proxy's
/// Google credentials, not the client's, so they become 502 saying so.
pub fn upstream(
    status: u16,
    message: String,
    code: Option<String>,
    retry_after: Option<u32>,
) -> Error {
    let (status, message) = match status {
        401 | 403 => (
            502,
            format!("Vertex AI refused the proxy's Google credentials (HTTP {status}): {message}"),
        ),
        s => (s, message),
    };
    Error::Upstream(UpstreamError {
        status,
        message,
        error_type: None,
        code,
        param: None,
        retry_after,
    })
}

/// An error Vertex answered with: Google's format
/// (`{"error":{"code","message","status","details"}}`, the `status` becoming
/// the code and a `RetryInfo` the retry delay), else the OpenAI-style
/// shapes of [`crate::openai_style_error`].
pub fn error(status: u16, body: &[u8]) -> Error {
    match google_error(body) {
        Some(g) => upstream(
            status,
            g.message,
            g.status.map(|s| s.to_ascii_lowercase()),
            g.retry_after,
        ),
        None => match crate::openai_style_error(status, body) {
            Error::Upstream(e) => upstream(status, e.message, e.code, e.retry_after),
            other => other,
        },
    }
}
