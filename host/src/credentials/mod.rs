//! Upstream credentials: the host adds them after translation, so
//! translators never see a secret.

pub(crate) mod gcp;

use crate::error::Error;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use std::sync::Arc;

/// A secret string (API key, token). Its `Debug` output is redacted, and
/// while it lives it is removed from every message that leaves the process
/// (see [`crate::redact`]).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(std::sync::Arc<str>);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        let secret: std::sync::Arc<str> = value.into().into();
        crate::redact::register(&secret);
        Secret(secret)
    }

    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Headers that carry credentials: only the host sets them, from `auth`.
pub(crate) fn is_credential_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "authorization"
            | "proxy-authorization"
            | "x-api-key"
            | "api-key"
            | "x-goog-api-key"
            | "cookie"
    )
}

/// How requests to one backend are authenticated.
#[derive(Debug, Clone)]
pub(crate) enum Credentials {
    None,
    /// A static header, e.g. `authorization: Bearer <key>`.
    Header {
        name: HeaderName,
        value: Secret,
    },
    /// A Google access token (Application Default Credentials).
    Gcp(Arc<gcp::GcpAuth>),
}

/// The headers to add to one request, and the token they carry (so that a
/// rejected token can be invalidated).
#[derive(Debug)]
pub(crate) struct Applied {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub gcp_token: Option<Secret>,
}

fn sensitive(value: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| Error::Internal("a credential is not a valid header value".into()))?;
    v.set_sensitive(true);
    Ok(v)
}

impl Credentials {
    /// The credential headers for one request.
    pub(crate) async fn headers(&self) -> Result<Applied, Error> {
        match self {
            Credentials::None => Ok(Applied {
                headers: Vec::new(),
                gcp_token: None,
            }),
            Credentials::Header { name, value } => Ok(Applied {
                headers: vec![(name.clone(), sensitive(value.expose())?)],
                gcp_token: None,
            }),
            Credentials::Gcp(auth) => {
                let token = auth.token().await?;
                let mut headers = vec![(
                    http::header::AUTHORIZATION,
                    sensitive(&format!("Bearer {}", token.expose()))?,
                )];
                if let Some(project) = auth.quota_project()
                    && let Ok(v) = HeaderValue::from_str(project)
                {
                    headers.push((HeaderName::from_static("x-goog-user-project"), v));
                }
                Ok(Applied {
                    headers,
                    gcp_token: Some(token),
                })
            }
        }
    }

    /// After a 401: forgets the token so that the next request fetches a
    /// new one. Whether a retry can help.
    pub(crate) fn rejected(&self, applied: &Applied) -> bool {
        match (self, &applied.gcp_token) {
            (Credentials::Gcp(auth), Some(token)) => {
                auth.invalidate(token);
                true
            }
            _ => false,
        }
    }
}
