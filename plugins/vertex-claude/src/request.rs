//! Canonical Responses request → Anthropic Messages body for Vertex
//! (`rawPredict` / `streamRawPredict`).

use llmproxy_sdk::Media;
use llmproxy_sdk::api::ConvertError;
use llmproxy_sdk::api::chat::ChatRequest;
use llmproxy_sdk::api::envelope;
use llmproxy_sdk::api::media::{data_url, decode_base64, is_http_url, mime_from_name};
use llmproxy_sdk::api::messages::MessagesExtras;
use llmproxy_sdk::api::responses::{
    ContentPart, CreateResponse, InputFile, InputImage, Item, Role, TextFormat, Tool, ToolChoice,
};
use llmproxy_sdk::api::tools::ToolNames;
use llmproxy_sdk::api::turns::Turns;
use llmproxy_sdk::api::vertex::Settings;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The API version Vertex wants in the body.
pub const ANTHROPIC_VERSION: &str = "vertex-2023-10-16";
/// The tool that carries structured output (`text.format`): Claude on Vertex
/// has no native JSON mode, so the proxy forces this tool and turns its
/// input into the answer's text.
pub const JSON_TOOL: &str = "json_response";
/// Image types Claude accepts.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];
/// Smallest thinking budget Claude accepts.
const MIN_BUDGET: u64 = 1024;

/// The model, settings and downloaded media a request is translated with.
#[derive(Debug)]
pub struct Target<'a> {
    /// Vertex model id (in the URL and in thinking envelopes).
    pub model: &'a str,
    pub settings: &'a Settings,
    /// The client's Chat request, when it spoke Chat.
    pub chat: Option<&'a ChatRequest>,
    /// The client's Messages-only parameters, when it spoke Messages.
    pub messages: Option<&'a MessagesExtras>,
    /// Files the host downloaded (see `error::needs-media`).
    pub media: &'a [Media],
    pub streaming: bool,
}

/// What the answer's mapping needs to know about the request.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// The structured-output tool, when one was forced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_tool: Option<String>,
    /// Tools renamed for Claude, whose calls are lifted back.
    #[serde(default, skip_serializing_if = "ToolNames::is_empty")]
    pub tools: ToolNames,
}

/// Whether `model` (a Vertex Claude id such as `claude-sonnet-4-5@2025...`)
/// has Anthropic's web search tool on Vertex: Claude 4 and later.
pub fn has_web_search(model: &str) -> bool {
    model
        .split(['-', '@', '.'])
        .find_map(|part| part.parse::<u32>().ok())
        .is_some_and(|major| major >= 4)
}

/// Adds Claude's equivalents of the hosted tools [`lower`] kept: the web
/// search server tool for web search. Server tools come first, so that the
/// prompt-cache mark stays on the last function tool.
///
/// [`lower`]: llmproxy_sdk::api::tools::lower
pub fn add_hosted(body: &mut Value, hosted: &[Value]) {
    let Some(offer) = hosted.first() else {
        return;
    };
    let mut search = json!({"type": "web_search_20250305", "name": WEB_SEARCH});
    // The client's restrictions carry over.
    if let Some(domains) = offer
        .pointer("/filters/allowed_domains")
        .filter(|d| d.is_array())
    {
        search["allowed_domains"] = domains.clone();
    }
    if let Some(Value::Object(at)) = offer.get("user_location") {
        let mut location = Map::new();
        location.insert("type".into(), json!("approximate"));
        for key in ["city", "region", "country", "timezone"] {
            if let Some(v) = at.get(key).filter(|v| v.is_string()) {
                location.insert(key.into(), v.clone());
            }
        }
        search["user_location"] = Value::Object(location);
    }
    llmproxy_sdk::api::tools::insert_tool(body, search, Some(0));
}

/// The name of Claude's web search tool.
pub const WEB_SEARCH: &str = "web_search";

/// A translated request, or the URLs that must be downloaded first.
#[derive(Debug, PartialEq)]
pub enum Built {
    Request { body: Value, state: State },
    NeedsMedia(Vec<String>),
}

fn invalid(message: impl Into<String>, param: impl Into<String>) -> ConvertError {
    ConvertError::invalid(message, param)
}

fn unsupported(message: impl Into<String>, param: impl Into<String>) -> ConvertError {
    ConvertError::unsupported(message, param)
}

/// The built-in `max_tokens` for a model when the request sets none: the
/// model's maximum output.
pub fn default_max_tokens(model: &str) -> u64 {
    const TABLE: [(&str, u64); 9] = [
        ("claude-3-haiku", 4096),
        ("claude-3-5-", 8192),
        ("claude-3-7-sonnet", 64000),
        ("claude-sonnet-4", 64000),
        ("claude-haiku-4", 64000),
        ("claude-opus-4", 32000),
        ("claude-opus-4-1", 32000),
        ("claude-opus-4-5", 64000),
        ("claude-opus-4-6", 128000),
    ];
    TABLE
        .iter()
        .filter(|(prefix, _)| model.starts_with(prefix))
        .max_by_key(|(prefix, _)| prefix.len())
        .map_or(32000, |(_, n)| *n)
}

/// A `tool_use` id Claude accepts (`^[a-zA-Z0-9_-]+$`): valid ids pass
/// unchanged; others (minted by other providers, e.g. `functions.Bash:0`)
/// get their invalid characters replaced and a hash of the original
/// appended, so distinct ids stay distinct and a call and its result agree.
pub fn tool_id(id: &str) -> String {
    let valid = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
    if !id.is_empty() && id.len() <= 64 && id.chars().all(valid) {
        return id.to_string();
    }
    // FNV-1a: stable across builds and platforms.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let clean: String = id
        .chars()
        .map(|c| if valid(c) { c } else { '_' })
        .take(40)
        .collect();
    format!("{clean}_{hash:016x}")
}

struct Builder<'a> {
    t: &'a Target<'a>,
    /// URLs to download before the request can be built.
    missing: Vec<String>,
}

impl Builder<'_> {
    /// An inline `(media_type, base64)` for a URL, or `None` (and the URL
    /// noted as missing) when the host has not downloaded it yet.
    fn fetched(&mut self, url: &str) -> Option<(String, String)> {
        match self.t.media.iter().find(|m| m.url == url) {
            Some(m) => Some((m.mime_type.clone(), m.data_base64.clone())),
            None => {
                if !self.missing.iter().any(|u| u == url) {
                    self.missing.push(url.to_string());
                }
                None
            }
        }
    }

    fn image(&mut self, img: &InputImage, param: &str) -> Result<Option<Value>, ConvertError> {
        let Some(url) = img.image_url.as_deref() else {
            return Err(unsupported(
                "images by `file_id` are not supported by Claude on Vertex; send `image_url` (a URL or a data: URL)",
                param,
            ));
        };
        let (mime, data) = if let Some((mime, data)) = data_url(url) {
            (mime.to_string(), data.to_string())
        } else if is_http_url(url) {
            match self.fetched(url) {
                Some(found) => found,
                None => return Ok(None),
            }
        } else {
            return Err(invalid(
                "`image_url` must be an http(s):// URL or a data:<mime>;base64 URL",
                format!("{param}.image_url"),
            ));
        };
        image_block(&mime, data, param).map(Some)
    }

    fn file(&mut self, f: &InputFile, param: &str) -> Result<Option<Value>, ConvertError> {
        let (mime, data) = if let Some(data) = &f.file_data {
            match data_url(data) {
                Some((mime, data)) => (mime.to_string(), data.to_string()),
                None => {
                    let mime = f.filename.as_deref().and_then(mime_from_name).ok_or_else(|| {
                        invalid(
                            "cannot tell the file's type: send `file_data` as a data:<mime>;base64 URL or give a `filename` with an extension",
                            format!("{param}.filename"),
                        )
                    })?;
                    (mime.to_string(), data.clone())
                }
            }
        } else if let Some(url) = f.file_url.as_deref().filter(|u| is_http_url(u)) {
            match self.fetched(url) {
                Some(found) => found,
                None => return Ok(None),
            }
        } else {
            return Err(unsupported(
                "files by `file_id` are not supported by Claude on Vertex; send `file_data` or an http(s) `file_url`",
                param,
            ));
        };
        let mut block = match mime.as_str() {
            "application/pdf" => json!({"type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": data}}),
            m if m.starts_with("text/") => {
                let text = decode_base64(&data)
                    .and_then(|b| String::from_utf8(b).ok())
                    .ok_or_else(|| {
                        invalid(
                            "the text file is not base64-encoded UTF-8",
                            format!("{param}.file_data"),
                        )
                    })?;
                json!({"type": "document",
                    "source": {"type": "text", "media_type": "text/plain", "data": text}})
            }
            m if m.starts_with("image/") => return image_block(m, data, param).map(Some),
            other => {
                return Err(unsupported(
                    format!("Claude reads PDF, plain-text and image files, not {other}"),
                    param,
                ));
            }
        };
        if let Some(name) = f.filename.as_deref().filter(|n| !n.is_empty()) {
            block["title"] = json!(name);
        }
        Ok(Some(block))
    }

    /// A user-side content block, or `None` for empty text or a file still
    /// to be downloaded.
    fn user_block(
        &mut self,
        part: &ContentPart,
        param: &str,
    ) -> Result<Option<Value>, ConvertError> {
        Ok(match part {
            ContentPart::InputText(p) => text_block(&p.text),
            ContentPart::OutputText(p) => text_block(&p.text),
            ContentPart::Refusal(r) => text_block(&r.refusal),
            ContentPart::InputImage(img) => return self.image(img, param),
            ContentPart::InputFile(f) => return self.file(f, param),
            ContentPart::Other(v) => {
                let kind = v.get("type").and_then(Value::as_str).unwrap_or("unknown");
                return Err(unsupported(
                    format!("content parts of type {kind:?} are not supported by Claude"),
                    param,
                ));
            }
        })
    }

    /// A `tool_result`'s content: the output string, or its parts as text
    /// and image blocks. `None` when empty.
    fn tool_result_content(
        &mut self,
        output: &Value,
        param: &str,
    ) -> Result<Option<Value>, ConvertError> {
        let Value::Array(parts) = output else {
            let text = match output {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            return Ok((!text.is_empty()).then(|| json!(text)));
        };
        let mut blocks = Vec::new();
        for (i, raw) in parts.iter().enumerate() {
            let part: ContentPart = serde_json::from_value(raw.clone()).map_err(|e| {
                invalid(
                    format!("not a content part: {e}"),
                    format!("{param}.output[{i}]"),
                )
            })?;
            if let Some(b) = self.user_block(&part, &format!("{param}.output[{i}]"))? {
                blocks.push(b);
            }
        }
        Ok((!blocks.is_empty()).then_some(Value::Array(blocks)))
    }
}

fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

fn image_block(mime: &str, data: String, param: &str) -> Result<Value, ConvertError> {
    let mime = mime.to_ascii_lowercase();
    if !IMAGE_TYPES.contains(&mime.as_str()) {
        return Err(invalid(
            format!("Claude accepts JPEG, PNG, GIF and WebP images, not {mime}"),
            param,
        ));
    }
    Ok(json!({"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}))
}

/// Builds the Messages body.
pub fn build(req: &CreateResponse, t: &Target) -> Result<Built, ConvertError> {
    refuse_unsupported(req, t)?;
    let mut b = Builder {
        t,
        missing: Vec::new(),
    };
    let mut system: Vec<String> = Vec::new();
    if let Some(s) = req.instructions.as_deref().filter(|s| !s.trim().is_empty()) {
        system.push(s.to_string());
    }
    let mut turns = Turns::default();
    for (i, item) in req.input_items().iter().enumerate() {
        let at = format!("input[{i}]");
        match item {
            Item::Message(m) if matches!(m.role, Role::System | Role::Developer) => {
                system.extend(m.texts("Claude", &at)?);
            }
            Item::Message(m) if m.role == Role::User => {
                for (j, part) in m.content.parts(Role::User).iter().enumerate() {
                    if let Some(block) = b.user_block(part, &format!("{at}.content[{j}]"))? {
                        turns.push("user", block, None);
                    }
                }
            }
            Item::Message(m) => {
                for text in m.texts("Claude", &at)? {
                    turns.push("assistant", json!({"type": "text", "text": text}), None);
                }
            }
            Item::Reasoning(r) => {
                let Some(env) = r
                    .encrypted_content
                    .as_deref()
                    .and_then(|e| envelope::open_for_model("anthropic", e, t.model))
                else {
                    // Another provider's or another model's state, or none:
                    // nothing to replay.
                    continue;
                };
                let field = |k: &str| env.get(k).and_then(Value::as_str);
                let block = match (field("k"), field("sig"), field("data")) {
                    (Some("thinking"), Some(sig), _) => {
                        let text: String = r.summary.iter().map(|s| s.text.as_str()).collect();
                        json!({"type": "thinking", "thinking": text, "signature": sig})
                    }
                    (Some("redacted"), _, Some(data)) => {
                        json!({"type": "redacted_thinking", "data": data})
                    }
                    _ => continue,
                };
                turns.push("assistant", block, None);
            }
            Item::FunctionCall(c) => {
                let input = c.arguments_object("Claude", &at)?;
                let id = tool_id(&c.call_id);
                let mut block = json!({"type": "tool_use", "id": id, "name": c.name});
                block["input"] = input;
                turns.push("assistant", block, Some(id.clone()));
            }
            Item::FunctionCallOutput(o) => {
                let id = tool_id(&o.call_id);
                let mut block = json!({"type": "tool_result", "tool_use_id": id});
                if let Some(content) = b.tool_result_content(&o.output, &at)? {
                    block["content"] = content;
                }
                turns.push("user", block, Some(id));
            }
            Item::ItemReference(_) | Item::Other(_) => return Err(item.unsupported("Claude", &at)),
        }
    }
    if !b.missing.is_empty() {
        return Ok(Built::NeedsMedia(b.missing));
    }
    turns.pair_calls("assistant", "Claude")?;
    match turns.0.first() {
        None => {
            return Err(invalid(
                "the request has no input for Claude to answer",
                "input",
            ));
        }
        Some(first) if first.role == "assistant" => {
            return Err(invalid(
                "the conversation starts with an assistant turn; Claude needs a user message first",
                "input",
            ));
        }
        Some(_) => {}
    }

    let mut body = Map::new();
    body.insert("anthropic_version".into(), json!(ANTHROPIC_VERSION));
    let max_tokens = req
        .max_output_tokens
        .or_else(|| {
            t.settings
                .claude_max_tokens
                .as_ref()
                .and_then(|m| m.for_model(t.model))
        })
        .unwrap_or_else(|| default_max_tokens(t.model));
    body.insert("max_tokens".into(), json!(max_tokens));

    let (tools, json_tool) = tools(req)?;
    let choice = tool_choice(req, &tools, json_tool.is_some())?;
    let forced = choice
        .as_ref()
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|k| k == "any" || k == "tool");
    let mut thinking = if forced {
        // Claude cannot think when a tool is forced: the forced tool wins.
        None
    } else {
        thinking_budget(req, t, max_tokens)?
    };
    if thinking.is_some() && !tool_loop_is_signed(&turns) {
        // The turn being continued lost its thinking blocks (another model
        // made it, or the client dropped them): Claude would refuse the
        // request, so this step goes without thinking.
        thinking = None;
    }
    finish_last_assistant_turn(&mut turns, thinking.is_some());

    let caching = t.settings.claude_prompt_caching != Some(false);
    let mut messages: Vec<Value> = turns
        .0
        .into_iter()
        .map(|t| t.into_message("content"))
        .collect();
    if caching {
        mark_recent_user_turns(&mut messages);
    }
    body.insert("messages".into(), Value::Array(messages));
    if !system.is_empty() {
        let text = system.join("\n\n");
        let system = if caching {
            json!([{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}])
        } else {
            json!(text)
        };
        body.insert("system".into(), system);
    }
    if !tools.is_empty() {
        let mut tools = tools;
        if caching && let Some(Value::Object(last)) = tools.last_mut() {
            last.insert("cache_control".into(), json!({"type": "ephemeral"}));
        }
        body.insert("tools".into(), Value::Array(tools));
        if let Some(choice) = choice {
            body.insert("tool_choice".into(), choice);
        }
    }
    if let Some(budget) = thinking {
        body.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    } else {
        // Claude accepts temperature 0-1; OpenAI's range goes to 2. With
        // thinking on, sampling parameters are not allowed.
        if let Some(temp) = req.temperature {
            body.insert("temperature".into(), json!(temp.clamp(0.0, 1.0)));
        }
        if let Some(top_p) = req.top_p {
            body.insert("top_p".into(), json!(top_p));
        }
    }
    let stop = match (t.chat, t.messages) {
        (Some(chat), _) => chat.stop_sequences(),
        (None, Some(m)) => m.stop_sequences.clone().unwrap_or_default(),
        (None, None) => Vec::new(),
    };
    if !stop.is_empty() {
        body.insert("stop_sequences".into(), json!(stop));
    }
    if let Some(top_k) = t.messages.and_then(|m| m.top_k)
        && thinking.is_none()
    {
        body.insert("top_k".into(), json!(top_k));
    }
    if let Some(user) = t
        .messages
        .and_then(MessagesExtras::user_id)
        .or(req.safety_identifier.as_deref())
        .or(req.user.as_deref())
        .filter(|u| !u.is_empty())
    {
        body.insert("metadata".into(), json!({"user_id": user}));
    }
    if let Some(betas) = t.settings.anthropic_beta.as_ref().filter(|b| !b.is_empty()) {
        body.insert("anthropic_beta".into(), json!(betas));
    }
    if t.streaming {
        body.insert("stream".into(), json!(true));
    }
    Ok(Built::Request {
        body: Value::Object(body),
        state: State {
            json_tool,
            tools: ToolNames::default(),
        },
    })
}

/// Refuses what Claude cannot do rather than drop it.
fn refuse_unsupported(req: &CreateResponse, t: &Target) -> Result<(), ConvertError> {
    req.refuse_stateful("Claude")?;
    for (value, param) in [
        (req.presence_penalty, "presence_penalty"),
        (req.frequency_penalty, "frequency_penalty"),
    ] {
        if value.is_some_and(|v| v != 0.0) {
            return Err(unsupported(
                format!("`{param}` is not supported by Claude; remove it from the request"),
                param,
            ));
        }
    }
    let logprobs = req
        .include
        .iter()
        .flatten()
        .any(|i| i == llmproxy_sdk::api::chat_request::INCLUDE_LOGPROBS);
    if logprobs || req.top_logprobs.is_some_and(|n| n > 0) {
        return Err(unsupported(
            "log probabilities are not available from Claude",
            "top_logprobs",
        ));
    }
    if let Some(chat) = t.chat
        && let Some(param) = chat.chat_only_params().into_iter().find(|p| *p != "stop")
    {
        return Err(unsupported(
            format!("`{param}` is not supported by Claude; remove it from the request"),
            param,
        ));
    }
    Ok(())
}

/// The tool definitions, and the structured-output tool's name if
/// `text.format` asks for JSON.
fn tools(req: &CreateResponse) -> Result<(Vec<Value>, Option<String>), ConvertError> {
    // Claude has no allow-list: the allowed tools are the only ones it is
    // told about.
    let allowed = match &req.tool_choice {
        Some(ToolChoice::AllowedTools { tools, .. }) => Some(ToolChoice::allowed_names(tools)),
        _ => None,
    };
    if let Some(unknown) = allowed.iter().flatten().find(|name| {
        !req.tools
            .iter()
            .flatten()
            .any(|t| matches!(t, Tool::Function(f) if &f.name == *name))
    }) {
        return Err(invalid(
            format!("tool_choice.tools names {unknown:?}, which is not a function in `tools`"),
            "tool_choice.tools",
        ));
    }
    let mut tools = Vec::new();
    for (i, f) in req.function_tools("Claude on Vertex")? {
        if f.name == JSON_TOOL && req.text.as_ref().is_some_and(|t| t.format.is_some()) {
            return Err(invalid(
                format!(
                    "the tool name {JSON_TOOL:?} is reserved for structured output on Claude; rename the tool"
                ),
                format!("tools[{i}].name"),
            ));
        }
        if allowed.as_ref().is_some_and(|a| !a.contains(&f.name)) {
            continue;
        }
        let mut schema = match &f.parameters {
            Some(Value::Object(p)) => p.clone(),
            _ => Map::new(),
        };
        schema.entry("type").or_insert(json!("object"));
        schema.entry("properties").or_insert(json!({}));
        let mut def = json!({"name": f.name, "input_schema": schema});
        if let Some(d) = f.description.as_deref().filter(|d| !d.is_empty()) {
            def["description"] = json!(d);
        }
        tools.push(def);
    }
    let json_schema = match req.text.as_ref().and_then(|t| t.format.as_ref()) {
        None | Some(TextFormat::Text) => None,
        Some(TextFormat::JsonObject) => Some(json!({"type": "object"})),
        Some(TextFormat::JsonSchema { schema, .. }) => {
            let schema = schema.clone().unwrap_or_else(|| json!({"type": "object"}));
            if schema.get("type").and_then(Value::as_str) != Some("object") {
                return Err(unsupported(
                    "Claude on Vertex produces structured output only as a JSON object: give text.format.schema `\"type\": \"object\"`",
                    "text.format.schema",
                ));
            }
            Some(schema)
        }
    };
    let json_tool = json_schema.map(|schema| {
        tools.push(json!({"name": JSON_TOOL,
            "description": "Respond to the user with a JSON object matching this schema.",
            "input_schema": schema}));
        JSON_TOOL.to_string()
    });
    Ok((tools, json_tool))
}

/// `tool_choice`, or `None` for Claude's default (`auto`, parallel calls).
fn tool_choice(
    req: &CreateResponse,
    tools: &[Value],
    json_tool: bool,
) -> Result<Option<Value>, ConvertError> {
    let single = req.parallel_tool_calls == Some(false);
    let mut choice = match &req.tool_choice {
        None => json!({"type": "auto"}),
        Some(ToolChoice::Mode(m)) => match m.as_str() {
            "auto" => json!({"type": "auto"}),
            "none" => json!({"type": "none"}),
            "required" => json!({"type": "any"}),
            other => {
                return Err(invalid(
                    format!("tool_choice {other:?} is not one of auto, none, required"),
                    "tool_choice",
                ));
            }
        },
        Some(ToolChoice::Function { name, .. }) => json!({"type": "tool", "name": name}),
        Some(ToolChoice::AllowedTools { mode, .. }) => match mode.as_deref() {
            Some("required") => json!({"type": "any"}),
            _ => json!({"type": "auto"}),
        },
        Some(ToolChoice::Other(_)) => {
            return Err(unsupported(
                "this tool_choice is not supported by Claude",
                "tool_choice",
            ));
        }
    };
    if json_tool {
        choice = match choice.get("type").and_then(Value::as_str) {
            // Only the JSON tool may answer: force it.
            _ if tools.len() == 1 => json!({"type": "tool", "name": JSON_TOOL}),
            Some("none") => json!({"type": "tool", "name": JSON_TOOL}),
            // Either call a tool or answer through the JSON tool.
            Some("auto" | "any") => json!({"type": "any"}),
            _ => choice,
        };
    }
    let kind = choice
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if single && kind != "none" {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    if kind == "auto" && !single {
        return Ok(None);
    }
    Ok(Some(choice))
}

/// `thinking.budget_tokens` for the request's `reasoning.effort`, or `None`
/// for no thinking. Responses semantics: `max_output_tokens` covers
/// reasoning and answer, so the budget stays at least 1024 below
/// `max_tokens`; without that room there is no thinking.
fn thinking_budget(
    req: &CreateResponse,
    t: &Target,
    max_tokens: u64,
) -> Result<Option<u64>, ConvertError> {
    let Some(effort) = req.reasoning.as_ref().and_then(|r| r.effort.as_deref()) else {
        return Ok(None);
    };
    // A Messages client's own budget, when the answer has room for it.
    if let Some(budget) = t
        .messages
        .and_then(|m| m.thinking.as_ref())
        .filter(|th| th.kind == "enabled")
        .and_then(|th| th.budget_tokens)
        && budget >= 1024
        && budget < max_tokens
    {
        return Ok(Some(budget));
    }
    let percent = match effort {
        "none" => return Ok(None),
        "minimal" => 2,
        "low" => 10,
        "medium" => 30,
        "high" => 60,
        "xhigh" | "max" => 90,
        other => {
            return Err(invalid(
                format!("reasoning.effort {other:?} is not a known effort"),
                "reasoning.effort",
            ));
        }
    };
    let ceiling = max_tokens.saturating_sub(MIN_BUDGET);
    if ceiling < MIN_BUDGET {
        return Ok(None);
    }
    let configured = t
        .settings
        .thinking_budgets
        .as_ref()
        .and_then(|m| m.get(effort))
        .copied();
    let budget = match configured {
        Some(b) if b <= 0 => return Ok(None),
        Some(b) => b.unsigned_abs(),
        None => max_tokens.saturating_mul(percent) / 100,
    };
    Ok(Some(budget.clamp(MIN_BUDGET, ceiling)))
}

fn is_thinking(block: &Value) -> bool {
    matches!(
        block.get("type").and_then(Value::as_str),
        Some("thinking" | "redacted_thinking")
    )
}

/// With thinking on, the assistant turn whose tool calls the last user turn
/// answers must start with its thinking blocks.
fn tool_loop_is_signed(turns: &Turns) -> bool {
    let n = turns.0.len();
    let Some(last) = turns.0.last() else {
        return true;
    };
    if last.role == "assistant" {
        // A prefilled answer cannot be combined with thinking.
        return false;
    }
    if last.calls.is_empty() || n < 2 {
        return true;
    }
    turns.0[n - 2].parts.first().is_some_and(is_thinking)
}

/// A final assistant turn (a prefill the answer continues): without
/// thinking it may hold no thinking blocks, and its text may not end in
/// whitespace.
fn finish_last_assistant_turn(turns: &mut Turns, thinking: bool) {
    let Some(last) = turns.last_with_role("assistant") else {
        return;
    };
    if !thinking && last.parts.iter().any(is_thinking) {
        let mut kept = Vec::new();
        let mut calls = Vec::new();
        for (i, part) in last.parts.iter().enumerate() {
            if is_thinking(part) {
                continue;
            }
            if let Some((_, id)) = last.calls.iter().find(|(p, _)| *p == i) {
                calls.push((kept.len(), id.clone()));
            }
            kept.push(part.clone());
        }
        last.parts = kept;
        last.calls = calls;
    }
    if let Some(text) = last
        .parts
        .last_mut()
        .and_then(|p| p.get_mut("text"))
        .filter(|t| t.is_string())
    {
        let trimmed = text.as_str().unwrap_or("").trim_end().to_string();
        *text = json!(trimmed);
    }
    if last.parts.last().is_some_and(|p| p["text"] == "") {
        last.parts.pop();
    }
    if last.parts.is_empty() {
        turns.0.pop();
    }
}

/// Prompt-cache breakpoints on the last block of the last two user turns,
/// so that each request reads the previous one's prefix from the cache.
fn mark_recent_user_turns(messages: &mut [Value]) {
    let mut marked = 0;
    for message in messages.iter_mut().rev() {
        if marked == 2 {
            break;
        }
        if message["role"] != "user" {
            continue;
        }
        if let Some(Value::Object(block)) = message
            .get_mut("content")
            .and_then(Value::as_array_mut)
            .and_then(|c| c.last_mut())
        {
            block.insert("cache_control".into(), json!({"type": "ephemeral"}));
            marked += 1;
        }
    }
}
