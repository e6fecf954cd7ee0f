//! Chat Completions ingress: a Chat request parsed, and converted to the
//! canonical Responses request.

use super::{parse_body, require_model};
use crate::error::Error;
use crate::signatures::SignatureCache;
use bytes::Bytes;
use llmproxy_api::chat::ChatRequest;
use llmproxy_api::chat_request::chat_to_responses;
use llmproxy_api::json::RawObject;
use llmproxy_api::responses::Input;

/// What the host reads of every Chat request before it routes it: enough to
/// pass it through unparsed where the upstream speaks Chat itself.
#[derive(Debug, Clone)]
pub(crate) struct ChatHead {
    pub model: String,
    /// `stream`.
    pub stream: bool,
    /// `stream_options.include_usage`.
    pub include_usage: bool,
}

impl ChatHead {
    /// Reads the head of a Chat request, with client-facing errors: a JSON
    /// object, an identifier as `model`, and `stream` and `stream_options`
    /// of the right types. The rest is checked where it is used: by the
    /// canonical conversion, or by an upstream that speaks Chat.
    #[cfg(feature = "server")]
    pub(crate) fn parse(body: &[u8]) -> Result<ChatHead, Error> {
        #[derive(serde::Deserialize)]
        struct Head {
            model: Option<String>,
            stream: Option<bool>,
            stream_options: Option<StreamOptions>,
        }
        #[derive(serde::Deserialize)]
        struct StreamOptions {
            include_usage: Option<bool>,
        }
        let head: Head = super::parse_body(
            body,
            r#"{"model":"...","messages":[{"role":"user","content":"Hello"}]}"#,
        )?;
        require_model(head.model.as_deref())?;
        Ok(ChatHead {
            model: head.model.unwrap_or_default(),
            stream: head.stream.unwrap_or(false),
            include_usage: head
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        })
    }

    /// The head of a typed request (the in-process calls).
    pub(crate) fn of(chat: &ChatRequest) -> ChatHead {
        ChatHead {
            model: chat.model.clone().unwrap_or_default(),
            stream: chat.stream.unwrap_or(false),
            include_usage: chat.include_usage(),
        }
    }
}

/// Parses a Chat request, with client-facing errors.
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
/// extras: the client's own request (`raw`) without what the canonical
/// request carries, for its Chat-only parameters.
pub(crate) fn to_canonical(
    chat: &ChatRequest,
    raw: &[u8],
    signatures: &SignatureCache,
) -> Result<(Bytes, String), Error> {
    require_model(chat.model.as_deref())?;
    let mut canonical = chat_to_responses(chat).map_err(Error::from)?;
    if let Some(Input::Items(items)) = &mut canonical.input {
        // Thought signatures of earlier answers, which Chat clients cannot
        // send back themselves.
        signatures.restore(items);
    }
    let canonical = serde_json::to_vec(&canonical)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("cannot serialize the request: {e}")))?;
    Ok((canonical, extras(raw)))
}

/// `{"chat": ...}`: a Chat request without its conversation and tools, the
/// rest as the client wrote it.
fn extras(raw: &[u8]) -> String {
    let mut chat = match RawObject::parse(raw) {
        Ok(chat) => chat,
        Err(_) => return "{}".into(),
    };
    for conversation in ["messages", "tools", "functions"] {
        chat.remove(conversation);
    }
    let chat = chat.to_vec();
    let mut extras = Vec::with_capacity(chat.len() + 10);
    extras.extend_from_slice(b"{\"chat\":");
    extras.extend_from_slice(&chat);
    extras.push(b'}');
    String::from_utf8(extras).unwrap_or_else(|_| "{}".into())
}
