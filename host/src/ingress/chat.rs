//! Chat Completions ingress: a Chat request parsed, and converted to the
//! canonical Responses request.

#[cfg(feature = "server")]
use super::parse_body;
use super::require_model;
use crate::error::Error;
use crate::signatures::SignatureCache;
use bytes::Bytes;
use llmproxy_api::chat::ChatRequest;
use llmproxy_api::chat_request::chat_to_responses;
use llmproxy_api::responses::Input;

/// Parses a Chat request, with client-facing errors.
#[cfg(feature = "server")]
pub(crate) fn parse(body: &[u8]) -> Result<ChatRequest, Error> {
    let chat: ChatRequest = parse_body(
        body,
        r#"{"model":"...","messages":[{"role":"user","content":"Hello"}]}"#,
    )?;
    require_model(chat.model.as_deref())?;
    Ok(chat)
}

/// The canonical request for a Chat request, with the reasoning state the
/// client cannot carry restored from `signatures`, and the translator's
/// extras: the client's own request (`raw`), for Chat-only parameters.
pub(crate) fn to_canonical(
    chat: &ChatRequest,
    raw: &[u8],
    signatures: &SignatureCache,
) -> Result<(Bytes, String), Error> {
    require_model(chat.model.as_deref())?;
    let mut canonical = chat_to_responses(chat).map_err(|e| {
        let (message, param) = (e.message, e.param);
        if e.unsupported {
            Error::Unsupported {
                message,
                param,
                code: None,
            }
        } else {
            Error::InvalidRequest {
                message,
                param,
                code: None,
            }
        }
    })?;
    if let Some(Input::Items(items)) = &mut canonical.input {
        // Thought signatures of earlier answers, which Chat clients cannot
        // send back themselves.
        signatures.restore(items);
    }
    let canonical = serde_json::to_vec(&canonical)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("cannot serialize the request: {e}")))?;
    let mut extras = String::with_capacity(raw.len() + 10);
    extras.push_str("{\"chat\":");
    extras.push_str(std::str::from_utf8(raw).unwrap_or("{}"));
    extras.push('}');
    Ok((canonical, extras))
}
