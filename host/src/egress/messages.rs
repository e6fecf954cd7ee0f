//! Egress for Anthropic Messages clients: a `message`, or a stream of
//! Messages events, rendered from canonical output. The HTTP layer writes
//! them as JSON or SSE; the in-process calls hand them over typed.

use crate::error::Error;
use crate::exchange::Outcome;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use llmproxy_api::messages::Message;
use llmproxy_api::messages::response::response_to_message;
use llmproxy_api::messages::stream::{MessageRenderer, StreamEvent};
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
