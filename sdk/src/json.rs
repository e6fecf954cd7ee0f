//! Cheap JSON object surgery for pass-through translators: see
//! [`llmproxy_api::json`].

pub use crate::api::json::*;
