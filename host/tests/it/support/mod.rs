//! Test harness: the proxy on 127.0.0.1:0 and the clients that talk to it
//! (`harness`), a strict fake OpenAI-style upstream that records what it
//! receives (`fake_openai`), readers of what came back (`answers`), and a
//! real Redis server (`redis`).

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, StatusCode};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod answers;
mod fake_openai;
mod harness;
mod redis;

pub use answers::*;
pub use fake_openai::*;
pub use harness::*;
pub use redis::*;
