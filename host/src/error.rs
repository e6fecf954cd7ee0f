//! Errors, and their OpenAI-shaped rendering for clients.

#[cfg(feature = "server")]
use axum::response::{IntoResponse, Response};
#[cfg(feature = "server")]
use http::HeaderValue;
use http::StatusCode;
use serde_json::{Value, json};

/// Everything that can fail while serving a request.
///
/// Each variant knows its HTTP status and renders as
/// `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client's request is malformed (400).
    #[error("{message}")]
    InvalidRequest {
        /// What is wrong and how to fix it.
        message: String,
        /// The offending field.
        param: Option<String>,
        /// A machine-readable code.
        code: Option<String>,
    },
    /// The request asks for something the backend cannot do (400).
    #[error("{message}")]
    Unsupported {
        /// What is unsupported.
        message: String,
        /// The offending field.
        param: Option<String>,
        /// A machine-readable code (default `unsupported_parameter`).
        code: Option<String>,
    },
    /// Missing or wrong client API key (401).
    #[error("{0}")]
    Unauthorized(String),
    /// No backend serves this model (404).
    #[error(
        "The model `{0}` does not exist or is not served by this proxy: no backend's `models` glob matches it."
    )]
    ModelNotFound(String),
    /// Unknown endpoint (404) or method (405).
    #[error("{message}")]
    Route {
        /// 404 or 405.
        status: StatusCode,
        /// Which route was asked for.
        message: String,
    },
    /// A stored response the request names is not there: never stored,
    /// expired or deleted (404).
    #[error("{message}")]
    NotFound {
        /// Which response, and what to do.
        message: String,
        /// The field naming it, if any.
        param: Option<String>,
        /// `previous_response_not_found` or `response_not_found`.
        code: &'static str,
    },
    /// The response store cannot be reached (503).
    #[error("{0}")]
    StoreUnavailable(String),
    /// The request body is over the configured limit (413).
    #[error("The request body is larger than the limit of {limit_mib} MiB (server.max_body_mib).")]
    PayloadTooLarge {
        /// The limit in MiB.
        limit_mib: u32,
    },
    /// The request is more than the translator can map in its memory
    /// limit (413).
    #[error("{0}")]
    TooLargeToTranslate(String),
    /// The request body is compressed (415).
    #[error(
        "The request body is sent with Content-Encoding {0:?}, which this proxy does not decode; send it uncompressed."
    )]
    UnsupportedEncoding(String),
    /// The request body did not arrive in time (408).
    #[error(
        "The request body did not arrive within {limit_secs} s (server.body_timeout_secs); send it again, faster."
    )]
    RequestTimeout {
        /// The limit in seconds.
        limit_secs: f64,
    },
    /// The upstream answered with an error, passed on with its status.
    #[error("{message}")]
    Upstream {
        /// The HTTP status for the client.
        status: u16,
        /// The upstream's message.
        message: String,
        /// OpenAI error type.
        error_type: Option<String>,
        /// OpenAI error code.
        code: Option<String>,
        /// OpenAI error param.
        param: Option<String>,
        /// Seconds before a retry makes sense.
        retry_after: Option<u32>,
    },
    /// The upstream could not be reached (502).
    #[error("backend {backend:?} is unreachable: {detail}")]
    UpstreamUnreachable {
        /// Backend name.
        backend: String,
        /// What went wrong.
        detail: String,
    },
    /// The upstream answered something unusable: a truncated or garbled
    /// stream (502).
    #[error("backend {backend:?} sent a bad response: {detail}")]
    BadUpstream {
        /// Backend name.
        backend: String,
        /// What was wrong.
        detail: String,
    },
    /// The upstream took too long (504).
    #[error("backend {backend:?} timed out: {detail}")]
    UpstreamTimeout {
        /// Backend name.
        backend: String,
        /// Which timeout fired.
        detail: String,
    },
    /// A translator trapped, hit a limit or reported an internal error (502).
    #[error("translator {translator:?} failed: {detail}")]
    Translator {
        /// Translator name (its kind or file).
        translator: String,
        /// What happened.
        detail: String,
    },
    /// The proxy could not get upstream credentials (502).
    #[error("{0}")]
    Credentials(String),
    /// The proxy is at capacity (503).
    #[error("{0}")]
    Overloaded(String),
    /// The proxy is shutting down and cut the request off at its deadline
    /// (503).
    #[error(
        "llmproxy is shutting down and ended this request at its shutdown deadline (server.shutdown_timeout_secs); send it again"
    )]
    ShuttingDown,
    /// A bug or an environment problem in the proxy itself (500).
    #[error("{0}")]
    Internal(String),
}

/// Whose fault an [`Error`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The request (or the caller's credentials): fix it and retry (4xx).
    Client,
    /// The upstream refused, failed, timed out or could not be reached, or
    /// its credentials could not be obtained.
    Upstream,
    /// A translator trapped, hit a sandbox limit or reported a fault (502).
    Translator,
    /// The proxy itself: at capacity (503) or a bug (500).
    Proxy,
}

impl Error {
    /// Whose fault this error is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidRequest { .. }
            | Error::Unsupported { .. }
            | Error::Unauthorized(_)
            | Error::ModelNotFound(_)
            | Error::NotFound { .. }
            | Error::Route { .. }
            | Error::PayloadTooLarge { .. }
            | Error::RequestTimeout { .. }
            | Error::UnsupportedEncoding(_)
            | Error::TooLargeToTranslate(_) => ErrorKind::Client,
            Error::Upstream { .. }
            | Error::UpstreamUnreachable { .. }
            | Error::BadUpstream { .. }
            | Error::UpstreamTimeout { .. }
            | Error::Credentials(_) => ErrorKind::Upstream,
            Error::Translator { .. } => ErrorKind::Translator,
            Error::Overloaded(_)
            | Error::ShuttingDown
            | Error::StoreUnavailable(_)
            | Error::Internal(_) => ErrorKind::Proxy,
        }
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Error::InvalidRequest { .. } | Error::Unsupported { .. } => StatusCode::BAD_REQUEST,
            Error::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Error::ModelNotFound(_) | Error::NotFound { .. } => StatusCode::NOT_FOUND,
            Error::Route { status, .. } => *status,
            Error::PayloadTooLarge { .. } | Error::TooLargeToTranslate(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Error::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Error::UnsupportedEncoding(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Error::Upstream { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            Error::UpstreamUnreachable { .. }
            | Error::BadUpstream { .. }
            | Error::Credentials(_)
            | Error::Translator { .. } => StatusCode::BAD_GATEWAY,
            Error::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Error::Overloaded(_) | Error::ShuttingDown | Error::StoreUnavailable(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI error `type`.
    pub fn error_type(&self) -> &str {
        match self {
            Error::Upstream {
                error_type: Some(t),
                ..
            } => t,
            Error::Upstream { status, .. } => type_for_status(*status),
            Error::StoreUnavailable(_) => "server_error",
            other => type_for_status(other.status().as_u16()),
        }
    }

    /// The OpenAI error `code`.
    pub fn code(&self) -> Option<&str> {
        match self {
            Error::InvalidRequest { code, .. } | Error::Upstream { code, .. } => code.as_deref(),
            Error::Unsupported { code, .. } => {
                Some(code.as_deref().unwrap_or("unsupported_parameter"))
            }
            Error::Unauthorized(_) => Some("invalid_api_key"),
            Error::ModelNotFound(_) => Some("model_not_found"),
            Error::NotFound { code, .. } => Some(code),
            Error::StoreUnavailable(_) => Some("store_unavailable"),
            Error::Route { status, .. } if *status == StatusCode::NOT_FOUND => Some("unknown_url"),
            Error::Route { .. } => Some("method_not_allowed"),
            Error::PayloadTooLarge { .. } | Error::TooLargeToTranslate(_) => {
                Some("request_too_large")
            }
            Error::RequestTimeout { .. } => Some("request_timeout"),
            Error::UnsupportedEncoding(_) => Some("unsupported_content_encoding"),
            Error::UpstreamUnreachable { .. } => Some("upstream_unreachable"),
            Error::BadUpstream { .. } => Some("bad_upstream_response"),
            Error::UpstreamTimeout { .. } => Some("upstream_timeout"),
            Error::Translator { .. } => Some("translator_error"),
            Error::Credentials(_) => Some("upstream_credentials_error"),
            Error::Overloaded(_) => Some("overloaded"),
            Error::ShuttingDown => Some("shutting_down"),
            Error::Internal(_) => Some("internal_error"),
        }
    }

    /// The OpenAI error `param`.
    pub fn param(&self) -> Option<&str> {
        match self {
            Error::InvalidRequest { param, .. }
            | Error::Unsupported { param, .. }
            | Error::Upstream { param, .. }
            | Error::NotFound { param, .. } => param.as_deref(),
            Error::ModelNotFound(_) => Some("model"),
            _ => None,
        }
    }

    /// Seconds the client should wait before retrying, if known.
    pub fn retry_after(&self) -> Option<u32> {
        match self {
            Error::Upstream { retry_after, .. } => *retry_after,
            Error::Overloaded(_) | Error::ShuttingDown => Some(1),
            _ => None,
        }
    }

    /// `{"message","type","param","code"}`, without any secret the process
    /// holds.
    pub fn body(&self) -> Value {
        let clean = |s: &str| crate::redact::redact(s).into_owned();
        json!({
            "message": clean(&self.to_string()),
            "type": clean(self.error_type()),
            "param": self.param().map(clean),
            "code": self.code().map(clean),
        })
    }

    /// This error with every secret the process holds removed from its
    /// texts (upstream messages may quote what they were sent).
    pub(crate) fn redacted(mut self) -> Error {
        for text in self.texts_mut() {
            *text = crate::redact::redact_owned(std::mem::take(text));
        }
        self
    }

    /// The texts an error carries that came from outside the proxy.
    fn texts_mut(&mut self) -> Vec<&mut String> {
        match self {
            Error::InvalidRequest {
                message,
                param,
                code,
            }
            | Error::Unsupported {
                message,
                param,
                code,
            } => [Some(message)]
                .into_iter()
                .chain([param.as_mut(), code.as_mut()])
                .flatten()
                .collect(),
            Error::Upstream {
                message,
                error_type,
                code,
                param,
                ..
            } => [Some(message)]
                .into_iter()
                .chain([error_type.as_mut(), code.as_mut(), param.as_mut()])
                .flatten()
                .collect(),
            Error::UpstreamUnreachable { detail, .. }
            | Error::BadUpstream { detail, .. }
            | Error::UpstreamTimeout { detail, .. }
            | Error::Translator { detail, .. } => vec![detail],
            Error::Credentials(m) | Error::StoreUnavailable(m) | Error::Internal(m) => vec![m],
            _ => Vec::new(),
        }
    }
}

impl From<llmproxy_api::ConvertError> for Error {
    /// A conversion of the client's request failed: invalid (400) or
    /// unsupported (400, `unsupported_parameter`).
    fn from(e: llmproxy_api::ConvertError) -> Error {
        let (message, param) = (e.message, e.param);
        if e.unsupported {
            Error::Unsupported {
                message,
                param,
                code: None,
            }
        } else {
            Error::InvalidRequest {
                message,
                param,
                code: None,
            }
        }
    }
}

/// The OpenAI error type conventionally used for an HTTP status.
fn type_for_status(status: u16) -> &'static str {
    match status {
        400 | 404 | 405 | 408 | 409 | 413 | 415 | 422 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "server_error",
    }
}

#[cfg(feature = "server")]
impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.body() });
        self.response(self.status(), body)
    }
}

#[cfg(feature = "server")]
impl Error {
    /// The HTTP answer for this error: `status`, the JSON `body` (the
    /// client API's error shape), `retry-after` when known, and
    /// `www-authenticate` on a 401.
    pub(crate) fn response(&self, status: StatusCode, body: Value) -> Response {
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after() {
            response
                .headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                http::header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
