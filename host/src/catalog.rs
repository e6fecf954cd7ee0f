//! `GET /v1/models`: the model ids a client can ask for.
//!
//! Per backend, in routing order: the literal names of its `models` and the
//! client names of its `model_map`; for its globs, the ids of its
//! `model_list` when the config gives one, else the upstream's own list
//! (OpenAI-style `GET {base_url}/models`, or Vertex AI's publisher model
//! lists), cached for [`TTL`]. An id is listed under the backend that
//! would serve it (first match wins), once; a glob is never listed. A
//! backend whose upstream cannot be listed (a custom translator, an
//! upstream without a model list, one that failed) contributes its literal
//! names only; the failure is logged and retried after [`RETRY`].

use crate::config::BackendConfig;
use crate::proxy::{Backend, Proxy};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long an upstream's model list is reused.
pub(crate) const TTL: Duration = Duration::from_secs(600);

/// How long after a failed listing the upstream is asked again.
pub(crate) const RETRY: Duration = Duration::from_secs(60);

/// Where a backend's globs are expanded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// The config's `model_list`.
    Config,
    /// `GET {base_url}/models`.
    OpenAi,
    /// Vertex AI's publisher model lists.
    Vertex,
    /// Nothing: globs list nothing.
    None,
}

/// One backend's listable model ids.
#[derive(Debug)]
pub(crate) struct Catalog {
    /// Literal model names and `model_list` ids.
    fixed: Vec<String>,
    /// Whether `models` holds globs to expand.
    globs: bool,
    source: Source,
    /// The upstream's last list and when it expires.
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Vec<String>>)>>,
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '[', '{'])
}

impl Catalog {
    pub(crate) fn new(cfg: &BackendConfig) -> Catalog {
        let mut fixed: Vec<String> = cfg
            .models
            .iter()
            .filter(|m| !is_glob(m))
            .chain(cfg.model_map.keys())
            .cloned()
            .collect();
        let source = match (&cfg.model_list, cfg.translator.is_some(), cfg.kind.as_str()) {
            (Some(list), _, _) => {
                fixed.extend(list.iter().cloned());
                Source::Config
            }
            (None, true, _) => Source::None,
            (None, false, "openai" | "openresponses") => Source::OpenAi,
            (None, false, "gcp-vertex") => Source::Vertex,
            _ => Source::None,
        };
        Catalog {
            fixed,
            globs: cfg.models.iter().any(|m| is_glob(m)),
            source,
            cached: tokio::sync::Mutex::new(None),
        }
    }
}

impl Backend {
    /// The ids this backend may list (before routing decides).
    async fn model_ids(&self) -> Vec<String> {
        let catalog = &self.catalog;
        let mut ids = catalog.fixed.clone();
        let vertex = match catalog.source {
            _ if !catalog.globs => return ids,
            Source::Config | Source::None => return ids,
            Source::OpenAi => false,
            Source::Vertex => true,
        };
        let mut cached = catalog.cached.lock().await;
        let listed = match &*cached {
            Some((until, list)) if Instant::now() < *until => list.clone(),
            _ => {
                let (ttl, list) = match self.upstream.list_models(vertex).await {
                    Ok(list) => (TTL, list),
                    Err(e) => {
                        tracing::warn!(backend = %self.name, "cannot list the upstream's models, so GET /v1/models shows only the backend's literal names: {e}");
                        (RETRY, Vec::new())
                    }
                };
                let list = Arc::new(list);
                *cached = Some((Instant::now() + ttl, list.clone()));
                list
            }
        };
        ids.extend(listed.iter().cloned());
        ids
    }
}

impl Proxy {
    /// The model ids clients can use, each with the name of the backend
    /// that serves it, in routing order (what `GET /v1/models` lists).
    pub async fn model_ids(&self) -> Vec<(String, String)> {
        let backends = &self.inner.backends;
        let lists = futures_util::future::join_all(backends.iter().map(|b| b.model_ids())).await;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (i, ids) in lists.into_iter().enumerate() {
            for id in ids {
                let serves = self.inner.routes.route(&id) == Some(i);
                if serves && llmproxy_api::model::check(&id).is_ok() && seen.insert(id.clone()) {
                    out.push((id, backends[i].name.clone()));
                }
            }
        }
        out
    }
}
