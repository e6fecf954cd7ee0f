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
//! names only; the failure is logged and retried after [`RETRY`]. A list
//! not there yet is waited for at most [`WAIT`].

use crate::config::BackendConfig;
use crate::upstream::Upstream;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How long an upstream's model list is reused.
pub(crate) const TTL: Duration = Duration::from_secs(600);

/// How long after a failed listing the upstream is asked again.
pub(crate) const RETRY: Duration = Duration::from_secs(60);

/// How long `GET /v1/models` waits for an upstream list it does not have.
pub(crate) const WAIT: Duration = Duration::from_secs(3);

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
    cached: Cache,
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
            cached: Cache::default(),
        }
    }
}

impl Catalog {
    /// The ids this backend (`name`, at `upstream`) may list, before
    /// routing decides. An upstream list that is missing or stale is
    /// fetched in a task of its own, one at a time, and waited for at most
    /// [`WAIT`]: a slow or hanging upstream delays `GET /v1/models` by that
    /// much at most, and a client that gives up does not stop the fetch.
    pub(crate) async fn ids(&self, name: &str, upstream: &Arc<Upstream>) -> Vec<String> {
        let mut ids = self.fixed.clone();
        let vertex = match self.source {
            _ if !self.globs => return ids,
            Source::Config | Source::None => return ids,
            Source::OpenAi => false,
            Source::Vertex => true,
        };
        let (known, refresh) = {
            let mut cached = lock(&self.cached);
            match &*cached {
                Some((until, list)) if Instant::now() < *until => (list.clone(), None),
                old => {
                    let list = old.as_ref().map(|(_, l)| l.clone()).unwrap_or_default();
                    // Until this fetch ends, nobody starts another.
                    *cached = Some((Instant::now() + RETRY, list.clone()));
                    let (cache, upstream, name) =
                        (self.cached.clone(), upstream.clone(), name.to_string());
                    let task =
                        tokio::spawn(
                            async move { refresh(&cache, &upstream, &name, vertex).await },
                        );
                    (list, Some(task))
                }
            }
        };
        let listed = match refresh {
            Some(task) => match tokio::time::timeout(WAIT, task).await {
                Ok(Ok(list)) => list,
                _ => known,
            },
            None => known,
        };
        ids.extend(listed.iter().cloned());
        ids
    }
}

type Cache = Arc<std::sync::Mutex<Option<(Instant, Arc<Vec<String>>)>>>;

fn lock(cache: &Cache) -> std::sync::MutexGuard<'_, Option<(Instant, Arc<Vec<String>>)>> {
    cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Asks the upstream for its list and caches it ([`TTL`]); on failure logs
/// it and keeps what was known (asked again after [`RETRY`]).
async fn refresh(cache: &Cache, upstream: &Upstream, name: &str, vertex: bool) -> Arc<Vec<String>> {
    match upstream.list_models(vertex).await {
        Ok(list) => {
            let list = Arc::new(list);
            *lock(cache) = Some((Instant::now() + TTL, list.clone()));
            list
        }
        Err(e) => {
            tracing::warn!(backend = %name, "cannot list the upstream's models, so GET /v1/models shows only the backend's literal names: {e}");
            lock(cache)
                .as_ref()
                .map(|(_, l)| l.clone())
                .unwrap_or_default()
        }
    }
}
