//! Passthrough: a client's request to a backend whose upstream speaks the
//! client's API itself - Chat Completions ([`chat`]), Anthropic Messages
//! ([`messages`]) - goes on as the client wrote it, every field kept, with
//! only `model` set to the upstream model; or, where the translator declared
//! it so, as the translator adapts it to its upstream's dialect (`adapt` in
//! the WIT contract: Claude on Vertex takes the model in the URL and a
//! version in the body). The upstream's 2xx answer comes back as it is, its
//! `model` the one the client asked for. Nothing is converted to the
//! canonical format: the translator declared the route when the config
//! loaded (`configure`), and is called only to adapt a request and to turn
//! an error answer into an error.
//!
//! What the host still does: routing and `model_map`, the upstream fences,
//! credentials, timeouts and retries, scrubbing secrets from what comes
//! back, the usage it logs, and a stream that fails midway ends with an
//! error the client sees, never silently.

pub(crate) mod chat;
pub(crate) mod messages;

use crate::backend::Backend;
use crate::error::Error;
use crate::media::{Held, MediaFetcher};
use crate::translator::{
    Api, Context, Passthrough, Requested, UpstreamRequest, UpstreamResponse, budget,
};
use tokio::time::Instant;

/// An upstream's whole answer (not a stream), secrets scrubbed, with what
/// an error needs of its head.
pub(crate) struct Whole {
    pub answer: UpstreamResponse,
    pub retry_after: Option<u32>,
}

impl Whole {
    /// Reads `response` to its end within `deadline`.
    pub(crate) async fn read(
        backend: &Backend,
        response: reqwest::Response,
        deadline: Instant,
    ) -> Result<Whole, Error> {
        let status = response.status().as_u16();
        let headers = crate::upstream::header_pairs(response.headers());
        let retry_after = crate::upstream::retry_after(response.headers());
        let body = backend.upstream.read_body(response, deadline).await?;
        Ok(Whole {
            answer: UpstreamResponse {
                status,
                headers,
                body: crate::redact::redact_bytes(body.to_vec()),
            },
            retry_after,
        })
    }

    pub(crate) fn is_success(&self) -> bool {
        (200..300).contains(&self.answer.status)
    }

    /// The translator's reading of the answer (`response`, with `state`),
    /// its `Retry-After` kept on an error.
    pub(crate) async fn translated(
        &self,
        backend: &Backend,
        ctx: &Context,
        state: &str,
    ) -> Result<Vec<u8>, Error> {
        let translator = backend.translator(&ctx.upstream_model)?;
        let mut instance = translator.instantiate().await?;
        instance
            .response(ctx, state, &self.answer)
            .await
            .map_err(|e| Backend::with_retry_after(e, self.retry_after))
    }

    /// The error a non-2xx answer is: the translator knows its upstream's
    /// error shapes.
    pub(crate) async fn error(&self, backend: &Backend, ctx: &Context) -> Error {
        match self.translated(backend, ctx, "").await {
            Err(e) => e,
            Ok(_) => Error::BadUpstream {
                backend: backend.name.clone(),
                detail: format!("it answered HTTP {}", self.answer.status),
            },
        }
    }
}

/// The upstream request the translator's `adapt` makes of a client's
/// `body`: checked first against the translator's memory (a 413 up front,
/// as for translated requests), and with the files it asks for downloaded
/// under the media policy. The files stay held - counted against the media
/// budget - until the request is sent.
pub(crate) async fn adapted(
    backend: &Backend,
    media: &MediaFetcher,
    mut ctx: Context,
    api: Api,
    body: &[u8],
) -> Result<(UpstreamRequest, Option<Held>), Error> {
    let translator = backend.translator(&ctx.upstream_model)?.clone();
    let need = crate::exchange::fits(backend, &translator, body, &ctx.extras, None)?;
    let mut instance = translator.instantiate().await?;
    let urls = match instance.adapt(&ctx, api, body).await? {
        Requested::Ready(request) => return Ok((request, None)),
        Requested::NeedsMedia(urls) => urls,
    };
    let room = budget::media_room(translator.memory_bytes(), need);
    let (files, held) = media.fetch_all(&urls, room, &backend.name).await?;
    ctx.media = files;
    match instance.adapt(&ctx, api, body).await? {
        Requested::Ready(request) => Ok((request, Some(held))),
        Requested::NeedsMedia(urls) => Err(Error::Translator {
            translator: translator.name().to_string(),
            detail: format!(
                "asked for media again after the host fetched it ({})",
                urls.join(", ")
            ),
        }),
    }
}

/// A client API the upstream speaks itself, and where such requests go, as
/// a translator declared it.
#[derive(Debug, Clone)]
pub(crate) struct Route {
    pub api: Api,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    /// Each request goes through the translator's `adapt`.
    pub adapt: bool,
}

impl Route {
    /// The routes a translator declared, checked for what can be checked
    /// before any request: an API at most once, a path under the base URL.
    /// (The upstream's fence checks path, method and headers again on every
    /// request, as for any translated request.)
    pub(crate) fn checked(declared: Vec<Passthrough>) -> Result<Vec<Route>, String> {
        let mut routes: Vec<Route> = Vec::new();
        for p in declared {
            if routes.iter().any(|r| r.api == p.api) {
                return Err(format!("declared {:?} twice for passthrough", p.api));
            }
            if !p.adapt && !p.path.starts_with('/') {
                return Err(format!(
                    "declared a passthrough path {:?} that does not start with '/'",
                    p.path
                ));
            }
            if p.api == Api::Responses {
                // Responses requests go through `request` as always (the
                // canonical format is the Responses API).
                continue;
            }
            routes.push(Route {
                api: p.api,
                method: p.method,
                path: p.path,
                headers: p.headers,
                adapt: p.adapt,
            });
        }
        Ok(routes)
    }

    pub(crate) fn request(&self, body: Vec<u8>, stream: bool) -> UpstreamRequest {
        let accept = if stream {
            "text/event-stream"
        } else {
            "application/json"
        };
        let mut headers = vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept".to_string(), accept.to_string()),
        ];
        headers.extend(self.headers.iter().cloned());
        UpstreamRequest {
            method: self.method.clone(),
            path: self.path.clone(),
            headers,
            body,
            state: String::new(),
        }
    }
}
