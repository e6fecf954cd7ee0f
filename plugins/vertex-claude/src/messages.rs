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
//! - no URL image or document sources (Vertex fetches none): the host
//!   downloads them (`error::needs-media`) and they go inline, as base64.
//!
//! What is left out is noted on stderr, which the host logs at debug level.

use llmproxy_sdk::api::vertex::Settings;
use llmproxy_sdk::{Api as ClientApi, Context, Error, Media, UpstreamRequest};
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
    let missing = inline_url_sources(&mut req, &ctx.media)?;
    if !missing.is_empty() {
        return Err(Error::NeedsMedia(missing));
    }
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

/// Puts the files the host downloaded (`media`) in place of image and
/// document sources given by URL, which Vertex does not fetch (also inside
/// tool results); the URLs still to download.
fn inline_url_sources(req: &mut Map<String, Value>, media: &[Media]) -> Result<Vec<String>, Error> {
    let mut missing: Vec<String> = Vec::new();
    let Some(Value::Array(messages)) = req.get_mut("messages") else {
        return Ok(missing);
    };
    for (i, message) in messages.iter_mut().enumerate() {
        let Some(Value::Array(blocks)) = message.get_mut("content") else {
            continue;
        };
        for (j, block) in blocks.iter_mut().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            inline_source(block, &at, media, &mut missing)?;
            if let Some(Value::Array(inner)) = block.get_mut("content") {
                for (k, b) in inner.iter_mut().enumerate() {
                    inline_source(b, &format!("{at}.content.{k}"), media, &mut missing)?;
                }
            }
        }
    }
    Ok(missing)
}

/// One block's URL source inlined from `media`, or its URL noted as
/// `missing`.
fn inline_source(
    block: &mut Value,
    at: &str,
    media: &[Media],
    missing: &mut Vec<String>,
) -> Result<(), Error> {
    let kind = block
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(source) = block.get_mut("source") else {
        return Ok(());
    };
    if source.get("type").and_then(Value::as_str) != Some("url") {
        return Ok(());
    }
    let param = format!("{at}.source.url");
    let url = match source.get("url").and_then(Value::as_str) {
        Some(u) if u.starts_with("https://") || u.starts_with("http://") => u.to_string(),
        _ => {
            return Err(Error::invalid(
                format!(
                    "{param}: give an http(s) URL, or the file's bytes (`source.type` \"base64\")"
                ),
                Some(&param),
            ));
        }
    };
    let Some(file) = media.iter().find(|m| m.url == url) else {
        if !missing.contains(&url) {
            missing.push(url);
        }
        return Ok(());
    };
    let allowed = match kind.as_str() {
        "image" => ["image/jpeg", "image/png", "image/gif", "image/webp"]
            .contains(&file.mime_type.as_str()),
        _ => file.mime_type == "application/pdf",
    };
    if !allowed {
        return Err(Error::unsupported(
            format!(
                "{at}: {url} is {}, which Claude does not take as {kind} (images: JPEG, PNG, GIF, WebP; documents: PDF)",
                file.mime_type
            ),
            Some(&format!("{at}.source")),
        ));
    }
    *source = json!({"type": "base64", "media_type": file.mime_type, "data": file.data_base64});
    Ok(())
}
