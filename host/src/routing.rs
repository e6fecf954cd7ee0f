//! Model routing: the first backend with a matching glob wins.

use globset::{Glob, GlobSet, GlobSetBuilder};

/// Maps a model name to the index of the backend that serves it.
#[derive(Debug, Clone)]
pub(crate) struct Routes {
    set: GlobSet,
    /// Backend index of each glob in `set`, in config order.
    owner: Vec<usize>,
    /// The globs, in config order (metrics label requests by the glob that
    /// routed them, never by the client's model string).
    globs: Vec<String>,
}

impl Routes {
    /// Builds the routes from each backend's globs, in config order. Globs
    /// are checked by the config loader; a bad one here is reported anyway.
    pub(crate) fn new<'a>(
        backends: impl IntoIterator<Item = &'a [String]>,
    ) -> Result<Self, globset::Error> {
        let mut builder = GlobSetBuilder::new();
        let mut owner = Vec::new();
        let mut names = Vec::new();
        for (index, globs) in backends.into_iter().enumerate() {
            for glob in globs {
                builder.add(Glob::new(glob)?);
                owner.push(index);
                names.push(glob.clone());
            }
        }
        Ok(Routes {
            set: builder.build()?,
            owner,
            globs: names,
        })
    }

    /// The glob that routes `model` (the first matching one).
    pub(crate) fn glob(&self, model: &str) -> Option<&str> {
        self.set
            .matches(model)
            .into_iter()
            .min()
            .and_then(|glob| self.globs.get(glob))
            .map(String::as_str)
    }

    /// The first backend (in config order) with a glob matching `model`.
    pub(crate) fn route(&self, model: &str) -> Option<usize> {
        // Globs were added in config order, so the lowest matching glob
        // index belongs to the first matching backend.
        self.set
            .matches(model)
            .into_iter()
            .min()
            .and_then(|glob| self.owner.get(glob).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routes(backends: &[&[&str]]) -> Routes {
        let owned: Vec<Vec<String>> = backends
            .iter()
            .map(|globs| globs.iter().map(|g| g.to_string()).collect())
            .collect();
        Routes::new(owned.iter().map(Vec::as_slice)).unwrap()
    }

    #[test]
    fn first_matching_backend_wins() {
        let r = routes(&[&["gpt-4o-mini"], &["gpt-*", "o[0-9]*"], &["*"]]);
        assert_eq!(r.route("gpt-4o-mini"), Some(0));
        assert_eq!(r.route("gpt-5"), Some(1));
        assert_eq!(r.route("o3"), Some(1));
        assert_eq!(r.route("claude-opus-4-6"), Some(2));
    }

    #[test]
    fn no_match_is_none() {
        let r = routes(&[&["gemini-*"], &["{claude,anthropic}-*"]]);
        assert_eq!(r.route("anthropic-x"), Some(1));
        assert_eq!(r.route("gpt-5"), None);
        assert_eq!(r.route(""), None);
    }

    #[test]
    fn star_matches_slashes_in_model_names() {
        let r = routes(&[&["meta-llama/*"], &["*"]]);
        assert_eq!(r.route("meta-llama/Llama-3.3-70B"), Some(0));
        assert_eq!(r.route("qwen/qwen3"), Some(1));
    }
}
