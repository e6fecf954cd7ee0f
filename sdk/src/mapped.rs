//! The answer side of a translator whose upstream answers in a JSON format
//! of its own (Gemini, Claude on Vertex): one [`AnswerMapper`] per upstream
//! turns a whole answer, or a stream's events, into canonical output;
//! [`whole`] and [`MappedStream`] do the rest - parsing, lifting the calls
//! of renamed tools back, serialising.

use crate::api::responses::Response;
use crate::api::tools::{Restorer, ToolNames};
use crate::{Error, EventStream};
use serde_json::Value;

/// Maps one upstream's answers to canonical Responses output.
pub trait AnswerMapper {
    /// Maps one JSON value - a whole answer (`whole`), or the data of one
    /// stream event - to canonical events.
    fn map(&mut self, value: &Value, whole: bool, out: &mut Vec<Value>) -> Result<(), Error>;

    /// The upstream stream ended: the events still owed.
    fn end(&mut self, out: &mut Vec<Value>);

    /// The complete response, after a whole answer.
    fn response(self) -> Response;
}

/// A whole 2xx answer from `upstream` (named in errors) as a canonical
/// response (JSON), the calls of `tools` lifted back.
pub fn whole<M: AnswerMapper>(
    mut mapper: M,
    tools: &ToolNames,
    body: &[u8],
    upstream: &str,
) -> Result<Vec<u8>, Error> {
    let answer = crate::json_body(body, upstream)?;
    mapper.map(&answer, true, &mut Vec::new())?;
    let body =
        serde_json::to_vec(&mapper.response()).map_err(|e| Error::internal(e.to_string()))?;
    Ok(tools.restore_response_bytes(body))
}

/// An upstream event stream mapped by `M`, the calls of renamed tools
/// lifted back.
#[derive(Debug)]
pub struct MappedStream<M> {
    mapper: M,
    tools: Restorer,
    upstream: &'static str,
}

impl<M> MappedStream<M> {
    /// A stream from `upstream` (named in errors) mapped by `mapper`.
    pub fn new(mapper: M, tools: ToolNames, upstream: &'static str) -> Self {
        MappedStream {
            mapper,
            tools: Restorer::new(tools),
            upstream,
        }
    }
}

impl<M: AnswerMapper> EventStream for MappedStream<M> {
    fn push(&mut self, _event: &str, data: &str) -> Result<Vec<String>, Error> {
        let Some(value) = crate::json_event(data, self.upstream)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        self.mapper.map(&value, false, &mut out)?;
        Ok(crate::event_strings(self.tools.events(out)))
    }

    fn finish(&mut self) -> Result<Vec<String>, Error> {
        let mut out = Vec::new();
        self.mapper.end(&mut out);
        Ok(crate::event_strings(self.tools.events(out)))
    }
}
