//! Integration tests: the real server on 127.0.0.1 with the real translator
//! components, against in-process fake upstreams.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod agents;
mod binary;
mod chat;
mod claude;
mod conversations;
mod examples;
mod fake_claude;
mod fake_vertex;
mod faults;
mod fuzz;
mod library;
mod messages;
mod metrics;
mod reload;
mod responses;
mod sandbox;
mod security;
mod spec;
mod support;
#[cfg(feature = "telemetry")]
mod tracing;
mod vertex;
