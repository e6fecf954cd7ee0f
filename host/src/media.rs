//! Downloads of images and files that a translator asked for
//! (`error::needs-media`): upstreams such as Claude on Vertex accept images
//! only inline, so the host fetches `http(s)://` URLs for them.
//!
//! The proxy sits next to credentials and internal services, and the URLs
//! come from clients, so fetching is fenced: only `http`/`https`, no
//! loopback, private, link-local or otherwise non-public addresses (checked
//! on every resolved address and on every redirect) unless
//! `media.allow_private_networks` is set, a size cap, a timeout and a cap on
//! URLs per request.

use crate::config::MediaConfig;
use crate::error::Error;
use crate::translator::Media;
use base64::Engine;
use futures_util::StreamExt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Most URLs fetched for one request.
const MAX_URLS: usize = 16;
const MAX_REDIRECTS: usize = 5;

/// Fetches media for translators under the configured policy.
#[derive(Debug, Clone)]
pub(crate) struct MediaFetcher {
    client: Option<reqwest::Client>,
    max_bytes: u64,
    /// Most bytes for one request.
    max_request: u64,
    /// Bytes downloaded or held for all requests, in KiB permits.
    in_flight: Arc<tokio::sync::Semaphore>,
    max_inflight_mib: u32,
    timeout: Duration,
    allow_private: bool,
    /// Where downloads are counted.
    metrics: Arc<crate::metrics::Metrics>,
}

/// The media bytes a request holds, counted against
/// `media.max_inflight_mib` (in KiB) until dropped.
#[derive(Debug, Default)]
pub(crate) struct Held(Option<tokio::sync::OwnedSemaphorePermit>);

/// One request's downloads: what they may total, and what they hold.
struct Budget {
    room: u64,
    used: std::sync::atomic::AtomicU64,
    held: std::sync::Mutex<Held>,
    /// Why `room` is what it is, for messages.
    why: String,
}

/// Whether an address is on the public internet (not loopback, private,
/// link-local, shared, documentation, multicast, ...).
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_unspecified()
                || v4.is_multicast()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0 && c == 0)
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let seg = v6.segments();
            // Only global unicast (2000::/3) is public, less the special
            // ranges inside it: 2001::/23 (IETF assignments: Teredo,
            // benchmarking, ORCHID...), 2001:db8::/32 and 3fff::/20
            // (documentation) and 2002::/16 (6to4, which embeds any IPv4
            // address). Everything outside 2000::/3 - loopback, the
            // IPv4-compatible ::/96, NAT64 64:ff9b::/96, discard 100::/64,
            // unique local fc00::/7, link-local fe80::/10, the deprecated
            // site-local fec0::/10, multicast - is not.
            (seg[0] & 0xe000) == 0x2000
                && !(seg[0] == 0x2001 && seg[1] < 0x0200)
                && !(seg[0] == 0x2001 && seg[1] == 0x0db8)
                && seg[0] != 0x2002
                && (seg[0] & 0xfff0) != 0x3ff0
        }
    }
}

/// A resolver that drops non-public addresses.
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| is_public(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err(format!(
                    "{host} resolves to no public address (media.allow_private_networks is off)"
                )
                .into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// Why a URL may not be fetched, judged from the URL alone.
fn refuse(url: &reqwest::Url, allow_private: bool) -> Option<String> {
    if !matches!(url.scheme(), "http" | "https") {
        return Some("only http:// and https:// URLs can be downloaded".into());
    }
    let host = url.host_str()?;
    let ip: IpAddr = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()?;
    (!allow_private && !is_public(ip))
        .then(|| format!("{ip} is not a public address (media.allow_private_networks is off)"))
}

impl MediaFetcher {
    /// A fetcher for `config`, sharing the proxy's TLS settings.
    pub(crate) fn new(
        config: &MediaConfig,
        tls: rustls::ClientConfig,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<MediaFetcher, Error> {
        let timeout = Duration::from_secs_f64(config.timeout_secs);
        let client =
            if config.fetch {
                let allow_private = config.allow_private_networks;
                let redirects = reqwest::redirect::Policy::custom(move |attempt| {
                    if attempt.previous().len() >= MAX_REDIRECTS {
                        return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
                    }
                    match refuse(attempt.url(), allow_private) {
                        Some(why) => {
                            let to = attempt.url().to_string();
                            attempt.error(format!("redirected to {to}: {why}"))
                        }
                        None => attempt.follow(),
                    }
                });
                let mut builder = reqwest::Client::builder()
                    .tls_backend_preconfigured(tls)
                    .redirect(redirects)
                    .no_proxy()
                    .connect_timeout(timeout.min(Duration::from_secs(10)))
                    .user_agent(concat!("llmproxy/", env!("CARGO_PKG_VERSION")));
                if !allow_private {
                    builder = builder.dns_resolver(Arc::new(PublicOnly));
                }
                Some(builder.build().map_err(|e| {
                    Error::Internal(format!("cannot build the media HTTP client: {e}"))
                })?)
            } else {
                None
            };
        Ok(MediaFetcher {
            client,
            max_bytes: u64::from(config.max_mib) * 1024 * 1024,
            max_request: u64::from(config.max_request_mib) * 1024 * 1024,
            in_flight: Arc::new(tokio::sync::Semaphore::new(
                config.max_inflight_mib as usize * 1024,
            )),
            max_inflight_mib: config.max_inflight_mib,
            timeout,
            allow_private: config.allow_private_networks,
            metrics,
        })
    }

    /// Downloads every URL (concurrently); the first failure fails all.
    /// Together they may total `room` bytes (what the translator of
    /// `backend` can take with the request) and `media.max_request_mib`;
    /// what they hold counts against `media.max_inflight_mib` until the
    /// returned [`Held`] is dropped.
    pub(crate) async fn fetch_all(
        &self,
        urls: &[String],
        room: u64,
        backend: &str,
    ) -> Result<(Vec<Media>, Held), Error> {
        let fetched = self.fetch_all_uncounted(urls, room, backend).await;
        match &fetched {
            Ok((media, _)) => {
                for m in media {
                    self.metrics.media(Some(m.data_base64.len() as u64 / 4 * 3));
                }
            }
            Err(_) => self.metrics.media(None),
        }
        fetched
    }

    async fn fetch_all_uncounted(
        &self,
        urls: &[String],
        room: u64,
        backend: &str,
    ) -> Result<(Vec<Media>, Held), Error> {
        let Some(client) = &self.client else {
            return Err(Error::Unsupported {
                message: format!(
                    "this backend cannot fetch {} itself and downloading media is turned off (media.fetch = false); send the file inline as a data: URL",
                    urls.first().map(String::as_str).unwrap_or("the URL")
                ),
                param: None,
                code: Some("invalid_image_url".into()),
            });
        };
        let mut unique: Vec<&String> = Vec::new();
        for u in urls {
            if !unique.contains(&u) {
                unique.push(u);
            }
        }
        if unique.len() > MAX_URLS {
            return Err(invalid(format!(
                "the request links {} files for the proxy to download; the limit is {MAX_URLS}: send some inline as data: URLs",
                unique.len()
            )));
        }
        let why = if room < self.max_request {
            format!(
                "what the translator of backend {backend:?} can take along with this request in its memory limit (translators.memory_limit_mib)"
            )
        } else {
            "media.max_request_mib".to_string()
        };
        let budget = Budget {
            room: room.min(self.max_request),
            used: std::sync::atomic::AtomicU64::new(0),
            held: std::sync::Mutex::new(Held::default()),
            why,
        };
        let fetches = unique.into_iter().map(|u| self.fetch(client, u, &budget));
        let media = futures_util::future::try_join_all(fetches).await?;
        let held = match budget.held.into_inner() {
            Ok(h) => h,
            Err(poisoned) => poisoned.into_inner(),
        };
        Ok((media, held))
    }

    /// Counts one file of `url` growing from `from` to `to` bytes against
    /// the request's and every request's budget.
    fn take(&self, budget: &Budget, from: u64, to: u64, url: &str) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        let n = to.saturating_sub(from);
        let used = budget.used.fetch_add(n, Ordering::SeqCst) + n;
        if used > budget.room {
            return Err(Error::InvalidRequest {
                message: format!(
                    "cannot download {url}: the files this request links total more than {} MiB, {}; link fewer or smaller files, or send them inline as data: URLs",
                    budget.room / (1024 * 1024),
                    budget.why
                ),
                param: None,
                code: Some("media_too_large".into()),
            });
        }
        // Whole KiB per file, however small its pieces arrive.
        let kib = to.div_ceil(1024) - from.div_ceil(1024);
        if kib == 0 {
            return Ok(());
        }
        let kib = u32::try_from(kib).unwrap_or(u32::MAX);
        match self.in_flight.clone().try_acquire_many_owned(kib) {
            Ok(permit) => {
                if let Ok(mut held) = budget.held.lock() {
                    match &mut held.0 {
                        Some(all) => all.merge(permit),
                        None => held.0 = Some(permit),
                    }
                }
                Ok(())
            }
            Err(_) => Err(Error::Overloaded(format!(
                "the proxy is holding as many downloaded files as it may for all requests together (media.max_inflight_mib = {}); retry shortly",
                self.max_inflight_mib
            ))),
        }
    }

    async fn fetch(
        &self,
        client: &reqwest::Client,
        url: &str,
        budget: &Budget,
    ) -> Result<Media, Error> {
        let fail = |why: String| invalid(format!("cannot download {url}: {why}"));
        let parsed = reqwest::Url::parse(url).map_err(|e| fail(format!("not a URL ({e})")))?;
        if let Some(why) = refuse(&parsed, self.allow_private) {
            return Err(fail(why));
        }
        let work = async {
            let response = client
                .get(parsed)
                .send()
                .await
                .map_err(|e| fail(error_chain(&e)))?;
            let status = response.status();
            if !status.is_success() {
                return Err(fail(format!(
                    "the server answered HTTP {}",
                    status.as_u16()
                )));
            }
            let declared = response.content_length();
            if declared.is_some_and(|n| n > self.max_bytes) {
                return Err(fail(self.too_large()));
            }
            // A declared size is counted before the body is read.
            let mut counted = 0u64;
            if let Some(n) = declared {
                self.take(budget, 0, n, url)?;
                counted = n;
            }
            let header_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.split(';').next())
                .map(|v| v.trim().to_ascii_lowercase())
                .filter(|v| !v.is_empty());
            let mut body = Vec::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| fail(error_chain(&e)))?;
                let total = (body.len() + chunk.len()) as u64;
                if total > self.max_bytes {
                    return Err(fail(self.too_large()));
                }
                if total > counted {
                    self.take(budget, counted, total, url)?;
                    counted = total;
                }
                body.extend_from_slice(&chunk);
            }
            let mime = match header_type.as_deref() {
                Some(t) if t != "application/octet-stream" && t != "binary/octet-stream" => {
                    t.to_string()
                }
                _ => llmproxy_api::media::sniff_mime(&body)
                    .or_else(|| llmproxy_api::media::mime_from_name(url))
                    .unwrap_or("application/octet-stream")
                    .to_string(),
            };
            Ok(Media {
                url: url.to_string(),
                mime_type: mime,
                data_base64: base64::engine::general_purpose::STANDARD.encode(&body),
            })
        };
        tokio::time::timeout(self.timeout, work)
            .await
            .map_err(|_| {
                fail(format!(
                    "no complete answer within {:.0}s (media.timeout_secs)",
                    self.timeout.as_secs_f64()
                ))
            })?
    }

    fn too_large(&self) -> String {
        format!(
            "the file is larger than {} MiB (media.max_mib)",
            self.max_bytes / (1024 * 1024)
        )
    }
}

fn invalid(message: String) -> Error {
    Error::InvalidRequest {
        message,
        param: None,
        code: Some("invalid_image_url".into()),
    }
}

/// An error with its causes, e.g. "error sending request: dns error: ...".
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_addresses() {
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "fec0::1",
            "feff::1",
            "2002:7f00:1::1",
            "2002:a9fe:a9fe::1",
            "2001::1",
            "2001:db8::1",
            "64:ff9b::7f00:1",
            "100::1",
            "3fff::1",
            "ff02::1",
            "::",
        ] {
            assert!(!is_public(private.parse().unwrap()), "{private}");
        }
        for public in [
            "8.8.8.8",
            "142.250.1.1",
            "2a00:1450::1",
            "2001:4860:4860::8888",
            "2606:4700::1111",
        ] {
            assert!(is_public(public.parse().unwrap()), "{public}");
        }
    }

    #[test]
    fn urls_refused_by_themselves() {
        let r = |u: &str, allow| refuse(&reqwest::Url::parse(u).unwrap(), allow);
        assert!(r("file:///etc/passwd", true).is_some());
        assert!(r("http://169.254.169.254/computeMetadata/v1/", false).is_some());
        assert!(r("http://[::1]:8080/x.png", false).is_some());
        assert!(r("http://127.0.0.1:8080/x.png", true).is_none());
        assert!(r("https://example.com/x.png", false).is_none());
    }
}
