//! Google Application Default Credentials, as Google's own libraries find
//! them, and a token cache.
//!
//! Order: an explicit credentials file (config), then
//! `GOOGLE_APPLICATION_CREDENTIALS`, then gcloud's well-known
//! `application_default_credentials.json` (`$CLOUDSDK_CONFIG`, else
//! `~/.config/gcloud`), then the GCE metadata server (`GCE_METADATA_HOST`,
//! else a probe of 169.254.169.254 unless `NO_GCE_CHECK=true`). Credential
//! files may hold a service account key (signed JWT grant) or an
//! `authorized_user` refresh token; their `token_uri` is honoured.
//!
//! Tokens are cached and refreshed 4 minutes before they expire (half their
//! lifetime if that is shorter), one refresh at a time; a refresh that fails
//! while the old token is still valid keeps using it. Tokens, keys and
//! refresh tokens never reach a log or an error message.

use super::Secret;
use crate::error::Error;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject;
use rustls::sign::SigningKey;
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

const SCOPE: &str = "https://www.googleapis.com/auth/cloud-platform";
const DEFAULT_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const METADATA_IP: &str = "169.254.169.254";
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const REFRESH_MARGIN: Duration = Duration::from_secs(240);

/// The environment ADC reads, captured once (tests build their own).
#[derive(Debug, Clone, Default)]
pub(crate) struct AdcEnv {
    pub application_credentials: Option<PathBuf>,
    pub cloudsdk_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub metadata_host: Option<String>,
    pub no_gce_check: bool,
    pub quota_project: Option<String>,
}

impl AdcEnv {
    /// The process environment.
    pub(crate) fn from_process() -> Self {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        AdcEnv {
            application_credentials: var("GOOGLE_APPLICATION_CREDENTIALS").map(PathBuf::from),
            cloudsdk_config: var("CLOUDSDK_CONFIG").map(PathBuf::from),
            home: var("HOME").map(PathBuf::from),
            metadata_host: var("GCE_METADATA_HOST").or_else(|| var("GCE_METADATA_ROOT")),
            no_gce_check: var("NO_GCE_CHECK").is_some_and(|v| v.eq_ignore_ascii_case("true")),
            quota_project: var("GOOGLE_CLOUD_QUOTA_PROJECT"),
        }
    }

    /// gcloud's well-known ADC file.
    fn well_known_file(&self) -> Option<PathBuf> {
        let dir = match (&self.cloudsdk_config, &self.home) {
            (Some(dir), _) => dir.clone(),
            (None, Some(home)) => home.join(".config/gcloud"),
            (None, None) => return None,
        };
        Some(dir.join("application_default_credentials.json"))
    }
}

/// Where tokens come from.
enum Source {
    ServiceAccount {
        email: String,
        key_id: Option<String>,
        key: Arc<dyn SigningKey>,
        token_uri: String,
    },
    AuthorizedUser {
        client_id: String,
        client_secret: Secret,
        refresh_token: Mutex<Secret>,
        token_uri: String,
    },
    Metadata {
        host: String,
    },
}

struct Cached {
    token: Secret,
    refresh_at: Instant,
    expires_at: Instant,
}

/// Google credentials with a token cache. Shared by every backend of a proxy
/// that uses the same credentials.
pub(crate) struct GcpAuth {
    source: Source,
    /// Where the credentials came from, for logs (no secrets).
    origin: String,
    quota_project: Option<String>,
    http: reqwest::Client,
    cache: Mutex<Option<Cached>>,
    refresh: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for GcpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GcpAuth")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct CredentialFile {
    #[serde(rename = "type")]
    kind: Option<String>,
    client_email: Option<String>,
    private_key: Option<String>,
    private_key_id: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    token_uri: Option<String>,
    quota_project_id: Option<String>,
}

impl GcpAuth {
    /// Finds credentials in ADC order; the error says what was tried and
    /// what to do.
    pub(crate) async fn discover(
        explicit: Option<&Path>,
        env: &AdcEnv,
        http: reqwest::Client,
    ) -> Result<GcpAuth, String> {
        let mut tried = Vec::new();
        if let Some(path) = explicit {
            return Self::from_file(path, "auth.gcp_credentials_file", env, http);
        }
        match &env.application_credentials {
            Some(path) => {
                return Self::from_file(path, "GOOGLE_APPLICATION_CREDENTIALS", env, http);
            }
            None => tried.push("GOOGLE_APPLICATION_CREDENTIALS (not set)".to_string()),
        }
        match env.well_known_file() {
            Some(path) if path.is_file() => {
                return Self::from_file(&path, "gcloud's application default credentials", env, http);
            }
            Some(path) => tried.push(format!("{} (not found)", path.display())),
            None => tried.push("gcloud's application_default_credentials.json (neither CLOUDSDK_CONFIG nor HOME is set)".into()),
        }
        let host = match &env.metadata_host {
            Some(host) => Some(host.clone()),
            None if env.no_gce_check => {
                tried.push("the GCE metadata server (skipped: NO_GCE_CHECK=true)".into());
                None
            }
            None => {
                if probe_metadata(&http, METADATA_IP).await {
                    Some(METADATA_IP.to_string())
                } else {
                    tried.push(format!(
                        "the GCE metadata server at {METADATA_IP} (no answer within {} ms)",
                        PROBE_TIMEOUT.as_millis()
                    ));
                    None
                }
            }
        };
        match host {
            Some(host) => Ok(GcpAuth {
                origin: format!("the metadata server at {host}"),
                source: Source::Metadata { host },
                quota_project: env.quota_project.clone(),
                http,
                cache: Mutex::new(None),
                refresh: tokio::sync::Mutex::new(()),
            }),
            None => Err(format!(
                "no Google credentials found; tried {}. Run `gcloud auth application-default login`, \
                 or set GOOGLE_APPLICATION_CREDENTIALS to a service account key or an authorized_user file",
                tried.join(", ")
            )),
        }
    }

    fn from_file(
        path: &Path,
        via: &str,
        env: &AdcEnv,
        http: reqwest::Client,
    ) -> Result<GcpAuth, String> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            format!(
                "{via} points to {}, which cannot be read: {e}",
                path.display()
            )
        })?;
        let file: CredentialFile = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{} (from {via}) is not a Google credentials JSON file: {e}",
                path.display()
            )
        })?;
        let need = |v: Option<String>, field: &str| {
            v.filter(|s| !s.is_empty())
                .ok_or_else(|| format!("{} (from {via}) lacks `{field}`", path.display()))
        };
        let token_uri = file
            .token_uri
            .clone()
            .unwrap_or_else(|| DEFAULT_TOKEN_URI.into());
        let source = match file.kind.as_deref() {
            Some("service_account") => {
                let pem = need(file.private_key, "private_key")?;
                let der = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
                    format!(
                        "the private_key in {} is not a PEM private key",
                        path.display()
                    )
                })?;
                let key = rustls::crypto::ring::sign::any_supported_type(&der).map_err(|_| {
                    format!(
                        "the private_key in {} is not an RSA key Google issues",
                        path.display()
                    )
                })?;
                Source::ServiceAccount {
                    email: need(file.client_email, "client_email")?,
                    key_id: file.private_key_id,
                    key,
                    token_uri,
                }
            }
            Some("authorized_user") => Source::AuthorizedUser {
                client_id: need(file.client_id, "client_id")?,
                client_secret: Secret::new(need(file.client_secret, "client_secret")?),
                refresh_token: Mutex::new(Secret::new(need(file.refresh_token, "refresh_token")?)),
                token_uri,
            },
            other => {
                return Err(format!(
                    "{} (from {via}) holds credentials of type {:?}; llmproxy supports service_account \
                     keys and authorized_user files (gcloud auth application-default login)",
                    path.display(),
                    other.unwrap_or("(none)")
                ));
            }
        };
        let what = match &source {
            Source::ServiceAccount { email, .. } => format!("service account {email}"),
            Source::AuthorizedUser { .. } => "user credentials".to_string(),
            Source::Metadata { .. } => String::new(),
        };
        Ok(GcpAuth {
            origin: format!("{what} from {} ({via})", path.display()),
            source,
            quota_project: env.quota_project.clone().or(file.quota_project_id),
            http,
            cache: Mutex::new(None),
            refresh: tokio::sync::Mutex::new(()),
        })
    }

    /// Where the credentials came from (no secrets).
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The quota project for `x-goog-user-project`, if any.
    pub(crate) fn quota_project(&self) -> Option<&str> {
        self.quota_project.as_deref()
    }

    fn cached(&self, usable_until: impl Fn(&Cached) -> Instant) -> Option<Secret> {
        let now = Instant::now();
        let cache = self.cache.lock().ok()?;
        cache
            .as_ref()
            .filter(|c| usable_until(c) > now)
            .map(|c| c.token.clone())
    }

    /// A valid access token: cached, or fetched (one fetch at a time).
    pub(crate) async fn token(&self) -> Result<Secret, Error> {
        if let Some(t) = self.cached(|c| c.refresh_at) {
            return Ok(t);
        }
        let _one_at_a_time = self.refresh.lock().await;
        if let Some(t) = self.cached(|c| c.refresh_at) {
            return Ok(t);
        }
        match self.fetch().await {
            Ok((token, lifetime)) => {
                let now = Instant::now();
                let margin = REFRESH_MARGIN.min(lifetime / 2);
                if let Ok(mut cache) = self.cache.lock() {
                    *cache = Some(Cached {
                        token: token.clone(),
                        refresh_at: now + lifetime - margin,
                        expires_at: now + lifetime,
                    });
                }
                Ok(token)
            }
            Err(message) => match self.cached(|c| c.expires_at) {
                Some(old) => {
                    tracing::warn!(
                        "refreshing the Google access token failed ({message}); using the current one until it expires"
                    );
                    Ok(old)
                }
                None => Err(Error::Credentials(format!(
                    "cannot get a Google access token from {}: {message}",
                    self.origin
                ))),
            },
        }
    }

    /// Forgets `token` (Vertex said it is no longer valid).
    pub(crate) fn invalidate(&self, token: &Secret) {
        if let Ok(mut cache) = self.cache.lock()
            && cache.as_ref().is_some_and(|c| &c.token == token)
        {
            *cache = None;
        }
    }

    async fn fetch(&self) -> Result<(Secret, Duration), String> {
        // The signed assertion, a Secret (so registered for redaction) for
        // as long as its request and answer are handled.
        let assertion: Secret;
        let response = match &self.source {
            Source::ServiceAccount {
                email,
                key_id,
                key,
                token_uri,
            } => {
                assertion = Secret::new(service_account_jwt(
                    email,
                    key_id.as_deref(),
                    key.as_ref(),
                    token_uri,
                )?);
                let body = form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.expose()),
                ]);
                self.post_form(token_uri, body).await?
            }
            Source::AuthorizedUser {
                client_id,
                client_secret,
                refresh_token,
                token_uri,
            } => {
                let refresh = refresh_token
                    .lock()
                    .map_err(|_| "credential state is poisoned".to_string())?
                    .clone();
                let body = form(&[
                    ("grant_type", "refresh_token"),
                    ("client_id", client_id),
                    ("client_secret", client_secret.expose()),
                    ("refresh_token", refresh.expose()),
                ]);
                self.post_form(token_uri, body).await?
            }
            Source::Metadata { host } => {
                let url = format!(
                    "http://{host}/computeMetadata/v1/instance/service-accounts/default/token"
                );
                self.http
                    .get(&url)
                    .header("metadata-flavor", "Google")
                    .timeout(Duration::from_secs(10))
                    .send()
                    .await
                    .map_err(|e| {
                        format!(
                            "the metadata server at {host} did not answer: {}",
                            cause(&e)
                        )
                    })?
            }
        };
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| format!("reading the token response failed: {}", cause(&e)))?;
        let parsed: TokenResponse = serde_json::from_slice(&body).unwrap_or_default();
        if !status.is_success() {
            // By status and OAuth error code only: a token endpoint's
            // description (or an HTML page) may quote the request, which
            // carries the assertion or the refresh token and client secret.
            let code = parsed.error.filter(|e| {
                (1..=64).contains(&e.len())
                    && e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
            let hint = match code.as_deref() {
                Some("invalid_grant") => {
                    ": the refresh token or the key is no longer valid (expired, revoked, or a clock far off); run `gcloud auth application-default login` again or issue a new key"
                }
                Some("invalid_client" | "unauthorized_client") => {
                    ": the token endpoint does not accept this client; check the credentials file"
                }
                _ => "",
            };
            return Err(match code {
                Some(e) => format!("HTTP {status}: {e}{hint}"),
                None => format!("HTTP {status}"),
            });
        }
        let token = parsed
            .access_token
            .filter(|t| !t.is_empty())
            .ok_or("the token response has no access_token")?;
        if let (Some(new), Source::AuthorizedUser { refresh_token, .. }) =
            (parsed.refresh_token, &self.source)
            && let Ok(mut slot) = refresh_token.lock()
        {
            *slot = Secret::new(new);
        }
        let lifetime = match parsed.expires_in {
            Some(serde_json::Value::Number(n)) => n.as_u64(),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(3600)
        .clamp(1, 24 * 3600);
        Ok((Secret::new(token), Duration::from_secs(lifetime)))
    }

    async fn post_form(&self, uri: &str, body: String) -> Result<reqwest::Response, String> {
        self.http
            .post(uri)
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body)
            .timeout(Duration::from_secs(30))
            .send()
            .await
            .map_err(|e| format!("the token endpoint {uri} did not answer: {}", cause(&e)))
    }
}

#[derive(Default, Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    refresh_token: Option<String>,
    error: Option<String>,
}

/// The innermost cause of a transport error (no URL with secrets in it).
pub(crate) fn cause(e: &reqwest::Error) -> String {
    let mut last = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        last = s.to_string();
        source = s.source();
    }
    last
}

/// Whether the GCE metadata server answers at `host`.
async fn probe_metadata(http: &reqwest::Client, host: &str) -> bool {
    let request = http
        .get(format!("http://{host}/"))
        .header("metadata-flavor", "Google")
        .timeout(PROBE_TIMEOUT)
        .send();
    match request.await {
        Ok(r) => {
            r.status().is_success()
                && r.headers()
                    .get("metadata-flavor")
                    .is_some_and(|v| v == "Google")
        }
        Err(_) => false,
    }
}

/// `application/x-www-form-urlencoded` body.
fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The signed JWT of the service-account grant (RS256, one hour).
fn service_account_jwt(
    email: &str,
    key_id: Option<&str>,
    key: &dyn SigningKey,
    token_uri: &str,
) -> Result<String, String> {
    let now = crate::ids::unix_now();
    let mut header = serde_json::json!({"alg": "RS256", "typ": "JWT"});
    if let Some(kid) = key_id {
        header["kid"] = serde_json::json!(kid);
    }
    let claims = serde_json::json!({
        "iss": email, "scope": SCOPE, "aud": token_uri, "iat": now, "exp": now + 3600,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let signer = key
        .choose_scheme(&[rustls::SignatureScheme::RSA_PKCS1_SHA256])
        .ok_or("the service account key cannot sign RS256")?;
    let signature = signer
        .sign(signing_input.as_bytes())
        .map_err(|_| "signing the token request failed".to_string())?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

#[cfg(test)]
mod tests;
