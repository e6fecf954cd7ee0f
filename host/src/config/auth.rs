//! `auth`: how the proxy authenticates to a backend's upstream - as written
//! in the config ([`AuthConfig`], checked when it parses), and resolved once,
//! when the proxy is built, to a header with the secret read ([`Auth`]).

use super::{ConfigError, KindDefaults};
use crate::credentials::Secret;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use std::fmt;
use std::path::PathBuf;

/// A backend's `auth`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuthConfig {
    /// `"none"`: no credentials.
    None,
    /// `"gcp"`: Google Application Default Credentials.
    Gcp,
    /// `{ gcp_credentials_file = "path" }`: a Google credentials file.
    GcpFile(PathBuf),
    /// `{ bearer_env = "VAR" }`, `{ bearer_file = "path" }` (header
    /// `Authorization: Bearer <key>`), `{ header = "x-api-key", env = "VAR" }`
    /// or `{ header = "x-api-key", file = "path" }` (the key as it is).
    Key {
        /// The header; `None` for `Authorization: Bearer`.
        header: Option<String>,
        /// Where the key is read from.
        source: KeySource,
    },
}

/// Where a key is read from, when the proxy is built.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeySource {
    /// An environment variable.
    Env(String),
    /// A file (its content, trimmed).
    File(PathBuf),
}

/// The forms `auth` takes, for messages.
const FORMS: &str = "\"none\", \"gcp\", { bearer_env = \"VAR\" }, { bearer_file = \"path\" }, \
                     { header = \"name\", env = \"VAR\" }, { header = \"name\", file = \"path\" } \
                     or { gcp_credentials_file = \"path\" }";

impl<'de> serde::Deserialize<'de> for AuthConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AuthVisitor)
    }
}

struct AuthVisitor;

impl<'de> Visitor<'de> for AuthVisitor {
    type Value = AuthConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "one of {FORMS}")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<AuthConfig, E> {
        match v {
            "none" => Ok(AuthConfig::None),
            "gcp" => Ok(AuthConfig::Gcp),
            other => Err(E::custom(format!(
                "auth = {other:?} is not understood; use {FORMS}"
            ))),
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AuthConfig, A::Error> {
        let mut fields: Vec<(String, String)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            const KEYS: [&str; 6] = [
                "bearer_env",
                "bearer_file",
                "header",
                "env",
                "file",
                "gcp_credentials_file",
            ];
            if !KEYS.contains(&key.as_str()) {
                return Err(de::Error::custom(format!(
                    "unknown key auth.{key}; expected bearer_env, bearer_file, header with env or file, or gcp_credentials_file"
                )));
            }
            let value: String = map
                .next_value()
                .map_err(|_| de::Error::custom(format!("auth.{key} must be a string")))?;
            fields.push((key, value));
        }
        let get = |key: &str| {
            fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        if let Some(path) = get("gcp_credentials_file") {
            if fields.len() > 1 {
                return Err(de::Error::custom(
                    "auth.gcp_credentials_file cannot be combined with other auth keys",
                ));
            }
            return Ok(AuthConfig::GcpFile(PathBuf::from(path)));
        }
        let (header, source) = match (
            get("bearer_env"),
            get("bearer_file"),
            get("header"),
            get("env"),
            get("file"),
        ) {
            (Some(var), None, None, None, None) => (None, KeySource::Env(var)),
            (None, Some(path), None, None, None) => (None, KeySource::File(path.into())),
            (None, None, Some(h), Some(var), None) => (Some(h), KeySource::Env(var)),
            (None, None, Some(h), None, Some(path)) => (Some(h), KeySource::File(path.into())),
            _ => {
                return Err(de::Error::custom(
                    "auth needs exactly one of bearer_env, bearer_file, or header together with env or file",
                ));
            }
        };
        if let Some(h) = &header
            && http::HeaderName::from_bytes(h.as_bytes()).is_err()
        {
            return Err(de::Error::custom(format!(
                "auth.header = {h:?} is not a valid header name"
            )));
        }
        Ok(AuthConfig::Key { header, source })
    }
}

/// How the host authenticates to a backend, its secret read.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    None,
    /// A header carrying a secret, e.g. `authorization: Bearer <key>`.
    Header {
        name: http::HeaderName,
        value: Secret,
    },
    /// Google Application Default Credentials, or an explicit credentials
    /// file (resolved when the proxy starts).
    Gcp {
        file: Option<PathBuf>,
    },
}

impl Auth {
    /// Resolves backend `at`'s `auth` (of kind `kind`; `None` when not
    /// set) and reads the secret it names.
    pub(crate) fn resolve(
        at: &str,
        kind: &str,
        auth: Option<&AuthConfig>,
    ) -> Result<Auth, ConfigError> {
        let (header, source) = match auth {
            Some(AuthConfig::None) => return Ok(Auth::None),
            Some(AuthConfig::Gcp) => return Ok(Auth::Gcp { file: None }),
            Some(AuthConfig::GcpFile(path)) => {
                return Ok(Auth::Gcp {
                    file: Some(path.clone()),
                });
            }
            Some(AuthConfig::Key { header, source }) => (header.as_deref(), source.clone()),
            None => {
                let defaults = KindDefaults::of(kind);
                if defaults.gcp {
                    return Ok(Auth::Gcp { file: None });
                }
                let Some(var) = defaults.key_env else {
                    return Ok(Auth::None);
                };
                if std::env::var(var).is_ok_and(|v| !v.trim().is_empty()) {
                    (None, KeySource::Env(var.into()))
                } else {
                    return Err(ConfigError::new(format!(
                        "{at}: no `auth` is set, so the {kind} backend reads its key from {var}, \
                         which is not set; export {var}=<key>, point `auth` elsewhere, or set \
                         auth = \"none\" for a server that needs no key"
                    )));
                }
            }
        };
        let key = read(at, &source)?;
        let (name, value) = match header {
            None => (http::header::AUTHORIZATION, format!("Bearer {key}")),
            Some(h) => (
                http::HeaderName::from_bytes(h.as_bytes()).map_err(|_| {
                    ConfigError::new(format!(
                        "{at}: auth.header = {h:?} is not a valid header name"
                    ))
                })?,
                key,
            ),
        };
        if http::HeaderValue::from_str(&value).is_err() {
            return Err(ConfigError::new(format!(
                "{at}: the credential from {} contains characters not allowed in a header",
                describe(&source)
            )));
        }
        Ok(Auth::Header {
            name,
            value: Secret::new(value),
        })
    }
}

fn describe(source: &KeySource) -> String {
    match source {
        KeySource::Env(var) => format!("environment variable {var}"),
        KeySource::File(path) => format!("file {}", path.display()),
    }
}

/// Reads a key, trimmed; an error says what to do when it is not there.
pub(crate) fn read(at: &str, source: &KeySource) -> Result<String, ConfigError> {
    let value = match source {
        KeySource::Env(var) => std::env::var(var).map_err(|_| {
            ConfigError::new(format!(
                "{at}: auth reads the environment variable {var}, which is not set; \
                 export {var}=<key> or change `auth`"
            ))
        })?,
        KeySource::File(path) => std::fs::read_to_string(path).map_err(|e| {
            ConfigError::new(format!(
                "{at}: auth reads the file {}, which cannot be read ({e}); \
                 create it or change `auth`",
                path.display()
            ))
        })?,
    };
    let value = value.trim().to_string();
    if value.is_empty() {
        return Err(ConfigError::new(format!(
            "{at}: the credential in {} is empty",
            describe(source)
        )));
    }
    Ok(value)
}
