//! Anthropic Messages requests as Claude on Vertex takes them: the
//! passthrough path, for clients that speak Messages themselves (Claude
//! Code). The request stays as the client wrote it - cache breakpoints,
//! thinking blocks and their signatures, unknown fields and block types -
//! but for what Vertex's dialect differs in:
//!
//! - no `model` in the body (it is in the URL), except for token counting,
//!   where Vertex wants its model id there;
//! - `anthropic_version: "vertex-2023-10-16"` in the body;
//! - betas in the body (`anthropic_beta`), only those Vertex takes
//!   ([`VERTEX_BETAS`], some under another name); the others are left out,
//!   and so is `output_config.effort`, whose beta Vertex does not take;
//! - no URL image or document sources (Vertex refuses them): a 400 naming
//!   the block, before anything is sent.
//!
//! What is left out is noted on stderr, which the host logs at debug level.

use llmproxy_sdk::api::vertex::Settings;
use llmproxy_sdk::{Api as ClientApi, Context, Error, UpstreamRequest};
use serde_json::{Map, Value, json};

/// The `state` of a token count: `response` passes its answer on.
pub const COUNT_STATE: &str = "count-tokens";

/// The fields token counting takes.
const COUNTED: &[&str] = &[
    "anthropic_version",
    "anthropic_beta",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "thinking",
    "context_management",
    "mcp_servers",
];

/// The Vertex API version field Claude needs in the body.
const VERTEX_VERSION: &str = "vertex-2023-10-16";

/// The betas Claude on Vertex takes: (the client's name, Vertex's name).
/// Every other beta is left out (Vertex refuses a request naming one it
/// does not know).
pub const VERTEX_BETAS: &[(&str, &str)] = &[
    (
        "interleaved-thinking-2025-05-14",
        "interleaved-thinking-2025-05-14",
    ),
    ("context-1m-2025-08-07", "context-1m-2025-08-07"),
    (
        "context-management-2025-06-27",
        "context-management-2025-06-27",
    ),
    ("compact-2026-01-12", "compact-2026-01-12"),
    ("computer-use-2025-01-24", "computer-use-2025-01-24"),
    ("computer-use-2025-11-24", "computer-use-2025-11-24"),
    ("web-search-2025-03-05", "web-search-2025-03-05"),
    ("tool-search-tool-2025-10-19", "tool-search-tool-2025-10-19"),
    // Deferred tool loading (`defer_loading`) is tool search on Vertex.
    (
        "advanced-tool-use-2025-11-20",
        "tool-search-tool-2025-10-19",
    ),
];

/// The upstream request for a client's Messages (or token counting)
/// request.
pub fn adapt(
    ctx: &Context,
    settings: &Settings,
    api: ClientApi,
    body: &[u8],
) -> Result<UpstreamRequest, Error> {
    let mut req: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| Error::invalid(format!("the request is not a JSON object: {e}"), None))?;
    let mut left_out = Vec::new();
    refuse_url_sources(&req)?;
    hoist_system_messages(&mut req);
    req.remove("model");
    // `stream` goes with `streamRawPredict` only; false is the default.
    if req.get("stream") == Some(&Value::Bool(false)) {
        req.remove("stream");
    }
    req.insert("anthropic_version".into(), json!(VERTEX_VERSION));
    let mut betas: Vec<String> = settings.anthropic_beta.clone().unwrap_or_default();
    for beta in client_betas(&ctx.extras) {
        match VERTEX_BETAS.iter().find(|(client, _)| *client == beta) {
            Some((_, vertex)) if !betas.iter().any(|b| b == vertex) => {
                betas.push((*vertex).to_string());
            }
            Some(_) => {}
            None => left_out.push(format!("beta {beta}")),
        }
    }
    if !betas.is_empty() {
        req.insert("anthropic_beta".into(), json!(betas));
    }
    if let Some(Value::Object(config)) = req.get_mut("output_config")
        && config.remove("effort").is_some()
    {
        left_out.push("output_config.effort (its beta is not on Vertex)".into());
        if config.is_empty() {
            req.remove("output_config");
        }
    }
    let (model, method) = match api {
        ClientApi::MessagesCountTokens => {
            // What generation alone takes (`max_tokens`, sampling, ...) the
            // counting endpoint refuses.
            req.retain(|k, _| COUNTED.contains(&k.as_str()));
            req.insert("model".into(), json!(ctx.upstream_model));
            ("count-tokens", "rawPredict")
        }
        ClientApi::Messages if ctx.streaming => (ctx.upstream_model.as_str(), "streamRawPredict"),
        ClientApi::Messages => (ctx.upstream_model.as_str(), "rawPredict"),
        other => {
            return Err(Error::unsupported(
                format!("Claude on Vertex takes no {other:?} requests as they are"),
                None,
            ));
        }
    };
    if !left_out.is_empty() {
        eprintln!("left out for Vertex: {}", left_out.join(", "));
    }
    Ok(UpstreamRequest {
        method: "POST".into(),
        path: settings
            .model_path("anthropic", model, method)
            .map_err(Error::invalid_model)?,
        headers: vec![("content-type".into(), "application/json".into())],
        body: serde_json::to_vec(&req).map_err(|e| Error::internal(e.to_string()))?,
        state: if api == ClientApi::MessagesCountTokens {
            COUNT_STATE.into()
        } else {
            String::new()
        },
    })
}

/// Moves `role: "system"` messages (which some clients put in `messages`;
/// Claude takes only `user` and `assistant` there) to the end of `system`,
/// as text blocks.
fn hoist_system_messages(req: &mut Map<String, Value>) {
    let Some(Value::Array(messages)) = req.get_mut("messages") else {
        return;
    };
    let is_system = |m: &Value| {
        matches!(
            m.get("role").and_then(Value::as_str),
            Some("system" | "developer")
        )
    };
    if !messages.iter().any(is_system) {
        return;
    }
    let mut texts = Vec::new();
    messages.retain(|m| {
        if !is_system(m) {
            return true;
        }
        match m.get("content") {
            Some(Value::String(t)) => texts.push(json!({"type": "text", "text": t})),
            Some(Value::Array(blocks)) => texts.extend(
                blocks
                    .iter()
                    .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
                    .cloned(),
            ),
            _ => {}
        }
        false
    });
    texts.retain(|b| {
        b.get("text")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    });
    if texts.is_empty() {
        return;
    }
    let mut system = match req.remove("system") {
        Some(Value::String(t)) if !t.is_empty() => vec![json!({"type": "text", "text": t})],
        Some(Value::Array(blocks)) => blocks,
        _ => Vec::new(),
    };
    system.extend(texts);
    req.insert("system".into(), Value::Array(system));
}

/// The betas in the host's extras (`{"anthropic_beta": [...]}`).
fn client_betas(extras: &str) -> Vec<String> {
    #[derive(serde::Deserialize, Default)]
    struct Extras {
        #[serde(default)]
        anthropic_beta: Vec<String>,
    }
    serde_json::from_str::<Extras>(extras)
        .unwrap_or_default()
        .anthropic_beta
}

/// A 400 for an image or document given by URL, which Vertex refuses.
fn refuse_url_sources(req: &Map<String, Value>) -> Result<(), Error> {
    let messages = req.get("messages").and_then(Value::as_array);
    for (i, message) in messages.into_iter().flatten().enumerate() {
        let blocks = message.get("content").and_then(Value::as_array);
        for (j, block) in blocks.into_iter().flatten().enumerate() {
            let nested = block.get("content").and_then(Value::as_array);
            let inner = nested.into_iter().flatten().map(Some);
            for (k, b) in std::iter::once(Some(block)).chain(inner).enumerate() {
                let Some(b) = b else { continue };
                if b.pointer("/source/type").and_then(Value::as_str) == Some("url") {
                    let at = if k == 0 {
                        format!("messages.{i}.content.{j}.source")
                    } else {
                        format!("messages.{i}.content.{j}.content.{}.source", k - 1)
                    };
                    return Err(Error::unsupported(
                        format!(
                            "{at}: Claude on Vertex takes no URL sources; send the file's bytes (`source.type` \"base64\")"
                        ),
                        Some(&at),
                    ));
                }
            }
        }
    }
    Ok(())
}
