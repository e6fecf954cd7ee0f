//! Anthropic Messages ingress: a Messages request parsed, and converted to
//! the canonical Responses request.

#[cfg(feature = "server")]
use super::parse_body;
use super::require_model;
use crate::error::Error;
use crate::signatures::SignatureCache;
use bytes::Bytes;
use llmproxy_api::messages::MessagesRequest;
use llmproxy_api::messages::request::messages_to_responses;
use llmproxy_api::responses::Input;

/// A minimal valid body, for error messages.
#[cfg(feature = "server")]
const EXAMPLE: &str =
    r#"{"model":"...","max_tokens":1024,"messages":[{"role":"user","content":"Hello"}]}"#;

/// Parses a Messages request, with client-facing errors naming the field.
#[cfg(feature = "server")]
pub(crate) fn parse(body: &[u8]) -> Result<MessagesRequest, Error> {
    let request: MessagesRequest = parse_body(body, EXAMPLE)?;
    require_model(request.model.as_deref())?;
    Ok(request)
}

/// The canonical request for a Messages request, with reasoning state the
/// client did not send back restored from `signatures`, and the
/// translator's extras: `{"messages": {...}}`, the Messages-only
/// parameters.
pub(crate) fn to_canonical(
    request: &MessagesRequest,
    signatures: &SignatureCache,
) -> Result<(Bytes, String), Error> {
    require_model(request.model.as_deref())?;
    let (mut canonical, extras) = messages_to_responses(request).map_err(Error::from)?;
    if let Some(Input::Items(items)) = &mut canonical.input {
        signatures.restore(items);
    }
    let canonical = serde_json::to_vec(&canonical)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("cannot serialize the request: {e}")))?;
    let extras = serde_json::to_string(&serde_json::json!({ "messages": extras }))
        .map_err(|e| Error::Internal(format!("cannot serialize the request: {e}")))?;
    Ok((canonical, extras))
}

/// A rough count of a request's input tokens, for upstreams without a
/// counting endpoint: about four bytes of JSON per token over the system
/// prompt, the messages and the tools.
pub(crate) fn estimate_tokens(request: &MessagesRequest) -> u64 {
    fn len<T: serde::Serialize>(v: &Option<T>) -> u64 {
        v.as_ref()
            .and_then(|v| serde_json::to_vec(v).ok())
            .map_or(0, |b| b.len() as u64)
    }
    let bytes = len(&request.system) + len(&request.messages) + len(&request.tools);
    bytes.div_ceil(4).max(1)
}
