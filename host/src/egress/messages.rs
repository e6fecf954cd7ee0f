//! Egress for Anthropic Messages clients: a `message`, or a stream of
//! Messages events, rendered from canonical output. The HTTP layer writes
//! them as JSON or SSE; the in-process calls hand them over typed.

use crate::error::Error;
use crate::exchange::Outcome;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use llmproxy_api::messages::response::response_to_message;
use llmproxy_api::messages::stream::{MessageRenderer, StreamEvent};
use llmproxy_api::messages::{Message, error_type_for_status};
use llmproxy_api::responses::Response;
use serde_json::Value;

/// A Messages client's answer.
pub(crate) struct MessagesAnswer {
    pub body: MessagesBody,
    /// The upstream's request id, if it sent one.
    #[cfg_attr(not(feature = "server"), allow(dead_code))]
    pub upstream_id: Option<String>,
}

/// A `message`, or the events of a stream: it ends with `message_stop`, or
/// with an `error` event when it failed.
pub(crate) enum MessagesBody {
    Whole(Box<Message>),
    Stream(BoxStream<'static, StreamEvent>),
}

/// The Messages answer for a canonical outcome: `model` is the name the
/// client asked for.
pub(crate) fn from_canonical(outcome: Outcome, model: &str) -> Result<MessagesAnswer, Error> {
    let id = message_id();
    Ok(match outcome {
        Outcome::Complete {
            response,
            upstream_id,
        } => {
            super::failed_as_error(&response)?;
            let response: Response = serde_json::from_value(Value::Object(response))
                .map_err(|e| Error::Internal(format!("the answer cannot be typed: {e}")))?;
            MessagesAnswer {
                body: MessagesBody::Whole(Box::new(response_to_message(&response, model, &id))),
                upstream_id,
            }
        }
        Outcome::Stream {
            events,
            upstream_id,
        } => {
            let mut renderer = MessageRenderer::new(model, &id);
            let events = events
                .flat_map(move |event| futures_util::stream::iter(renderer.event(&event)))
                .boxed();
            MessagesAnswer {
                body: MessagesBody::Stream(events),
                upstream_id,
            }
        }
    })
}

/// A fresh `msg_...` id.
fn message_id() -> String {
    crate::ids::new_id("msg")
}

/// The Anthropic error `type` of an error: the upstream's own when it is
/// one of Anthropic's, else the one Anthropic uses for the status.
pub(crate) fn anthropic_type(error: &Error) -> &'static str {
    if let Error::Upstream {
        error_type: Some(t),
        ..
    } = error
    {
        const KNOWN: [&str; 10] = [
            "invalid_request_error",
            "authentication_error",
            "billing_error",
            "permission_error",
            "not_found_error",
            "request_too_large",
            "rate_limit_error",
            "api_error",
            "overloaded_error",
            "timeout_error",
        ];
        if let Some(known) = KNOWN.iter().find(|k| **k == t) {
            return known;
        }
    }
    error_type_for_status(error.status().as_u16())
}
