//! The canonical Responses output, made spec-valid whatever the translator
//! produced.
//!
//! Translators may return as little as `{"status","output","usage"}`; this
//! module fills every field the OpenResponses `ResponseResource` requires
//! (echoing the request's parameters), and [`StreamGuard`] keeps every
//! canonical stream well-formed: one `sequence_number` counter from 0,
//! `response.created` first, consistent response ids, full snapshots, and
//! always exactly one terminal event - `response.failed` (after an `error`
//! event) when anything goes wrong.

mod complete;
mod guard;
mod replay;

pub(crate) use complete::{ResponseMeta, complete_response};
pub(crate) use guard::StreamGuard;
pub(crate) use replay::events_from_response;

#[cfg(test)]
mod tests;
