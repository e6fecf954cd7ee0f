//! The bundled translator kinds a config may name, and which translator
//! serves which model within a kind.

/// `gcp-vertex` sends `claude-*` models to the Claude translator and the
/// rest to Gemini.
const GCP_VERTEX: [(&str, &str); 2] = [("claude-*", "vertex-claude"), ("*", "vertex-gemini")];

/// The translators of a kind, by upstream model glob. Every other bundled
/// translator is a kind of its own.
pub(crate) fn kind_translators(kind: &str) -> Option<Vec<(&'static str, &'static str)>> {
    if kind == "gcp-vertex" {
        return Some(GCP_VERTEX.to_vec());
    }
    kinds()
        .into_iter()
        .find(|k| *k == kind && crate::translator::bundled_kinds().any(|b| b == kind))
        .map(|k| vec![("*", k)])
}

/// Every kind a config may name.
pub(crate) fn kinds() -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = crate::translator::bundled_kinds()
        .filter(|k| GCP_VERTEX.iter().all(|(_, part)| part != k))
        .collect();
    kinds.push("gcp-vertex");
    kinds.sort_unstable();
    kinds
}
