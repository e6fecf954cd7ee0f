//! Canonical Responses request → Vertex `generateContent` body.

use crate::schema;
use llmproxy_sdk::api::ConvertError;
use llmproxy_sdk::api::chat::ChatRequest;
use llmproxy_sdk::api::envelope;
use llmproxy_sdk::api::media::{data_url, mime_from_name};
use llmproxy_sdk::api::messages::MessagesExtras;
use llmproxy_sdk::api::responses::{
    ContentPart, CreateResponse, InputFile, InputImage, Item, Role, TextFormat, ToolChoice,
};
use llmproxy_sdk::api::turns::Turns;
use llmproxy_sdk::api::vertex::Settings;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// The signature Google documents for function calls it did not sign (history
/// from another provider, or from a client that dropped the reasoning
/// items).
pub const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// What the model name says about its capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelInfo {
    /// (major, minor) of `gemini-X.Y`; unknown names count as 2.5.
    pub version: (u32, u32),
    pub pro: bool,
    pub flash_lite: bool,
}

impl ModelInfo {
    pub fn of(model: &str) -> ModelInfo {
        let version = model
            .split("gemini-")
            .nth(1)
            .and_then(|rest| {
                let v: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_digit() || *c == '.')
                    .collect();
                let mut it = v.split('.');
                let major = it.next()?.parse().ok()?;
                let minor = it.next().and_then(|m| m.parse().ok()).unwrap_or(0);
                Some((major, minor))
            })
            .unwrap_or((2, 5));
        ModelInfo {
            version,
            pro: model.contains("-pro"),
            flash_lite: model.contains("flash-lite"),
        }
    }

    /// Gemini 3 and later: thinking levels, mandatory call signatures.
    pub fn gen3(&self) -> bool {
        self.version.0 >= 3
    }

    /// Gemini 2.5 and later understand full JSON Schema.
    fn json_schema(&self) -> bool {
        self.version >= (2, 5)
    }
}

/// The model and settings a request is translated for.
#[derive(Debug)]
pub struct Target<'a> {
    /// Upstream model id (goes in the URL, and in signature envelopes).
    pub model: &'a str,
    pub settings: &'a Settings,
    /// The client's Chat request, when it spoke Chat.
    pub chat: Option<&'a ChatRequest>,
    /// The client's Messages-only parameters, when it spoke Messages.
    pub messages: Option<&'a MessagesExtras>,
}

fn invalid(message: impl Into<String>, param: impl Into<String>) -> ConvertError {
    ConvertError::invalid(message, param)
}

fn unsupported(message: impl Into<String>, param: impl Into<String>) -> ConvertError {
    ConvertError::unsupported(message, param)
}

/// Builds the `generateContent` body.
pub fn build(req: &CreateResponse, t: &Target) -> Result<Value, ConvertError> {
    let info = ModelInfo::of(t.model);
    refuse_unsupported(req, t)?;

    let items = req.input_items();
    let names: HashMap<&str, &str> = items
        .iter()
        .filter_map(|i| match i {
            Item::FunctionCall(c) => Some((c.call_id.as_str(), c.name.as_str())),
            _ => None,
        })
        .collect();
    let mut system = Vec::new();
    if let Some(s) = req.instructions.as_deref().filter(|s| !s.trim().is_empty()) {
        system.push(s.to_string());
    }
    let mut turns = Turns::default();
    let mut call_sigs: HashMap<String, String> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let at = format!("input[{i}]");
        match item {
            Item::Message(m) if matches!(m.role, Role::System | Role::Developer) => {
                system.extend(m.texts("Gemini", &at)?);
            }
            Item::Message(m) if m.role == Role::User => {
                for (j, part) in m.content.parts(Role::User).iter().enumerate() {
                    if let Some(p) = user_part(part, &info, &format!("{at}.content[{j}]"))? {
                        turns.push("user", p, None);
                    }
                }
            }
            Item::Message(m) => {
                for text in m.texts("Gemini", &at)? {
                    turns.push("model", json!({"text": text}), None);
                }
            }
            Item::Reasoning(r) => {
                let Some(env) = r
                    .encrypted_content
                    .as_deref()
                    .and_then(|e| envelope::open_for_model("gemini", e, t.model))
                else {
                    // Another provider's or another model's state, or none:
                    // nothing to replay.
                    continue;
                };
                for sig in env
                    .get("sigs")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let (Some(anchor), Some(s)) =
                        (sig.get("a"), sig.get("s").and_then(Value::as_str))
                    else {
                        continue;
                    };
                    if let Some(call) = anchor.get("call").and_then(Value::as_str) {
                        call_sigs.insert(call.to_string(), s.to_string());
                    } else if anchor.get("text").is_some() {
                        // The signature of the last text part of this turn.
                        if let Some(part) = turns.last_with_role("model").and_then(|t| {
                            t.parts.iter_mut().rev().find(|p| p.get("text").is_some())
                        }) {
                            part["thoughtSignature"] = json!(s);
                        }
                    } else if let Some(idx) = anchor.get("thought").and_then(Value::as_u64) {
                        let text = r
                            .summary
                            .get(usize::try_from(idx).unwrap_or(usize::MAX))
                            .map(|s| s.text.as_str())
                            .unwrap_or("");
                        if !text.is_empty() {
                            turns.push(
                                "model",
                                json!({"text": text, "thought": true, "thoughtSignature": s}),
                                None,
                            );
                        }
                    }
                }
            }
            Item::FunctionCall(c) => {
                let args = c.arguments_object("Gemini", &at)?;
                let mut part = json!({"functionCall": {"name": c.name}});
                part["functionCall"]["args"] = args;
                if let Some(sig) = call_sigs.remove(&c.call_id) {
                    part["thoughtSignature"] = json!(sig);
                }
                turns.push("model", part, Some(c.call_id.clone()));
            }
            Item::FunctionCallOutput(o) => {
                let name = names.get(o.call_id.as_str()).ok_or_else(|| {
                    invalid(
                        format!(
                            "function_call_output for call_id {:?} has no matching function_call in the input; Gemini needs the call to name the function",
                            o.call_id
                        ),
                        format!("{at}.call_id"),
                    )
                })?;
                let text = o.output_text();
                let output = match serde_json::from_str::<Value>(&text) {
                    Ok(v @ (Value::Object(_) | Value::Array(_))) => v,
                    _ => Value::String(text),
                };
                let mut part = json!({"functionResponse": {"name": name, "response": {}}});
                part["functionResponse"]["response"]["output"] = output;
                turns.push("user", part, Some(o.call_id.clone()));
            }
            Item::ItemReference(_) | Item::Other(_) => return Err(item.unsupported("Gemini", &at)),
        }
    }
    turns.pair_calls("model", "Gemini")?;
    if turns.0.first().is_some_and(|t| t.role == "model") {
        return Err(invalid(
            "the conversation starts with an assistant turn; Gemini needs a user message first",
            "input",
        ));
    }
    if turns.0.is_empty() {
        return Err(invalid(
            "the request has no input for Gemini to answer",
            "input",
        ));
    }
    if info.gen3() {
        sign_current_turn(&mut turns);
    }

    let mut body = Map::new();
    body.insert(
        "contents".into(),
        Value::Array(
            turns
                .0
                .into_iter()
                .map(|t| t.into_message("parts"))
                .collect(),
        ),
    );
    if !system.is_empty() {
        body.insert(
            "systemInstruction".into(),
            json!({"parts": [{"text": system.join("\n\n")}]}),
        );
    }
    let (tools, any_strict) = tools(req, t, &info)?;
    if let Some(tools) = tools {
        body.insert("tools".into(), tools);
    }
    if let Some(config) = tool_config(req, any_strict)? {
        body.insert("toolConfig".into(), config);
    }
    let generation = generation_config(req, t, &info)?;
    if !generation.is_empty() {
        body.insert("generationConfig".into(), Value::Object(generation));
    }
    if let Some(safety) = &t.settings.safety_settings {
        body.insert("safetySettings".into(), Value::Array(safety.clone()));
    }
    Ok(Value::Object(body))
}

/// Refuses what Gemini cannot do rather than dropping it.
fn refuse_unsupported(req: &CreateResponse, t: &Target) -> Result<(), ConvertError> {
    req.refuse_stateful("Gemini")?;
    if let Some(chat) = t.chat {
        if let Some(param) = chat
            .chat_only_params()
            .into_iter()
            .find(|p| !["stop", "seed"].contains(p))
        {
            return Err(unsupported(
                format!("`{param}` is not supported by Gemini; remove it from the request"),
                param,
            ));
        }
        if chat.stop_sequences().len() > 5 {
            return Err(invalid("Gemini accepts at most 5 stop sequences", "stop"));
        }
    }
    Ok(())
}

/// A user-side content part, or `None` for an empty text.
fn user_part(
    part: &ContentPart,
    info: &ModelInfo,
    param: &str,
) -> Result<Option<Value>, ConvertError> {
    Ok(Some(match part {
        ContentPart::InputText(p) if p.text.is_empty() => return Ok(None),
        ContentPart::InputText(p) => json!({"text": p.text}),
        ContentPart::OutputText(p) if p.text.is_empty() => return Ok(None),
        ContentPart::OutputText(p) => json!({"text": p.text}),
        ContentPart::Refusal(r) => json!({"text": r.refusal}),
        ContentPart::InputImage(img) => image_part(img, info, param)?,
        ContentPart::InputFile(f) => file_part(f, param)?,
        ContentPart::Other(v) if v.get("type").and_then(Value::as_str) == Some("input_audio") => {
            let data = v.pointer("/input_audio/data").and_then(Value::as_str);
            let format = v.pointer("/input_audio/format").and_then(Value::as_str);
            match (data, format) {
                (Some(data), Some(format)) => {
                    json!({"inlineData": {"mimeType": format!("audio/{format}"), "data": data}})
                }
                _ => return Err(invalid("input_audio needs `data` and `format`", param)),
            }
        }
        ContentPart::Other(v) => {
            let kind = v.get("type").and_then(Value::as_str).unwrap_or("unknown");
            return Err(unsupported(
                format!("content parts of type {kind:?} are not supported by Gemini"),
                param,
            ));
        }
    }))
}

fn image_part(img: &InputImage, info: &ModelInfo, param: &str) -> Result<Value, ConvertError> {
    let Some(url) = img.image_url.as_deref() else {
        return Err(unsupported(
            "images by `file_id` are not supported by Gemini; send `image_url` (a URL or a data: URL)",
            param,
        ));
    };
    let mut part = match data_url(url) {
        Some((mime, data)) => json!({"inlineData": {"mimeType": mime, "data": data}}),
        None if url.starts_with("gs://")
            || url.starts_with("https://")
            || url.starts_with("http://") =>
        {
            json!({"fileData": {"fileUri": url, "mimeType": mime_from_name(url).unwrap_or("image/jpeg")}})
        }
        None => {
            return Err(invalid(
                "`image_url` must be an http(s):// or gs:// URL, or a data:<mime>;base64 URL",
                format!("{param}.image_url"),
            ));
        }
    };
    if info.gen3() {
        let level = match img.detail.as_deref() {
            Some("low") => Some("MEDIA_RESOLUTION_LOW"),
            Some("high") => Some("MEDIA_RESOLUTION_HIGH"),
            _ => None,
        };
        if let Some(level) = level {
            part["mediaResolution"] = json!({"level": level});
        }
    }
    Ok(part)
}

fn file_part(f: &InputFile, param: &str) -> Result<Value, ConvertError> {
    if let Some(data) = &f.file_data {
        if let Some((mime, data)) = data_url(data) {
            return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
        }
        let mime = f.filename.as_deref().and_then(mime_from_name).ok_or_else(|| {
            invalid(
                "cannot tell the file's type: send `file_data` as a data:<mime>;base64 URL or give a `filename` with an extension",
                format!("{param}.filename"),
            )
        })?;
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    if let Some(url) = &f.file_url {
        let mime = mime_from_name(url)
            .or_else(|| f.filename.as_deref().and_then(mime_from_name))
            .ok_or_else(|| {
                invalid(
                    "cannot tell the file's type from `file_url`; add a `filename`",
                    param,
                )
            })?;
        return Ok(json!({"fileData": {"fileUri": url, "mimeType": mime}}));
    }
    Err(unsupported(
        "files by `file_id` are not supported by Gemini; send `file_data` or `file_url`",
        param,
    ))
}

/// Gemini 3 requires the first function call of every step of the current
/// turn (since the last user message with real content) to carry a
/// signature; unsigned ones get Google's documented placeholder.
fn sign_current_turn(turns: &mut Turns) {
    let start = turns
        .0
        .iter()
        .rposition(|t| {
            t.role == "user" && t.parts.iter().any(|p| p.get("functionResponse").is_none())
        })
        .map_or(0, |i| i + 1);
    for turn in turns.0.iter_mut().skip(start) {
        if turn.role != "model" {
            continue;
        }
        if let Some(first) = turn
            .parts
            .iter_mut()
            .find(|p| p.get("functionCall").is_some())
            && first.get("thoughtSignature").is_none()
        {
            first["thoughtSignature"] = json!(SKIP_SIGNATURE);
        }
    }
}

/// Google's function-name rule: a letter or `_` first, then letters,
/// digits, `_ . : -`, at most 128 characters.
fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c))
        && name.len() <= 128
}

fn schema_mode_json(t: &Target, info: &ModelInfo) -> bool {
    match t.settings.schema_mode.as_deref() {
        Some("openapi") => false,
        Some(_) => true,
        None => info.json_schema(),
    }
}

/// `tools` (all functions in one `functionDeclarations` list) and whether
/// any tool is `strict`.
fn tools(
    req: &CreateResponse,
    t: &Target,
    info: &ModelInfo,
) -> Result<(Option<Value>, bool), ConvertError> {
    let mut declarations = Vec::new();
    let mut strict = false;
    for (i, f) in req.function_tools("Gemini")? {
        if !valid_name(&f.name) {
            return Err(invalid(
                format!(
                    "Gemini needs function names that start with a letter or _ and use only letters, digits, _ . : - (got {:?})",
                    f.name
                ),
                format!("tools[{i}].name"),
            ));
        }
        strict |= f.strict == Some(true);
        let mut decl = json!({"name": f.name});
        if let Some(d) = f.description.as_deref().filter(|d| !d.is_empty()) {
            decl["description"] = json!(d);
        }
        if let Some(params) = &f.parameters {
            if schema_mode_json(t, info) {
                let empty = params
                    .get("properties")
                    .and_then(Value::as_object)
                    .is_none_or(Map::is_empty)
                    && params.get("type").and_then(Value::as_str) == Some("object");
                if !empty {
                    decl["parametersJsonSchema"] = schema::json_schema(params);
                }
            } else if let Some(p) =
                schema::openapi(params).map_err(|e| invalid(e, format!("tools[{i}].parameters")))?
            {
                decl["parameters"] = p;
            }
        }
        declarations.push(decl);
    }
    Ok((
        (!declarations.is_empty()).then(|| json!([{"functionDeclarations": declarations}])),
        strict,
    ))
}

/// Adds the Gemini equivalents of the hosted tools [`tools::lower`] kept:
/// Google Search grounding for web search (mapped only when the request has
/// no function tools: Vertex refuses search mixed with functions).
///
/// [`tools::lower`]: llmproxy_sdk::api::tools::lower
pub fn add_hosted(body: &mut Value, hosted: &[Value]) {
    if !hosted.is_empty() {
        llmproxy_sdk::api::tools::insert_tool(body, json!({"googleSearch": {}}), None);
    }
}

/// `toolConfig.functionCallingConfig` from `tool_choice`.
fn tool_config(req: &CreateResponse, any_strict: bool) -> Result<Option<Value>, ConvertError> {
    if req.tools.as_ref().is_none_or(Vec::is_empty) {
        return Ok(None);
    }
    let auto = if any_strict { "VALIDATED" } else { "AUTO" };
    let config = match &req.tool_choice {
        None => json!({"mode": auto}),
        Some(ToolChoice::Mode(m)) => match m.as_str() {
            "auto" => json!({"mode": auto}),
            "none" => json!({"mode": "NONE"}),
            "required" => json!({"mode": "ANY"}),
            other => {
                return Err(invalid(
                    format!("tool_choice {other:?} is not one of auto, none, required"),
                    "tool_choice",
                ));
            }
        },
        Some(ToolChoice::Function { name, .. }) => {
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
        Some(ToolChoice::AllowedTools { mode, tools, .. }) => {
            let names = ToolChoice::allowed_names(tools);
            let mode = match mode.as_deref() {
                Some("required") => "ANY",
                Some("none") => "NONE",
                _ => "VALIDATED",
            };
            json!({"mode": mode, "allowedFunctionNames": names})
        }
        Some(ToolChoice::Other(_)) => {
            return Err(unsupported(
                "this tool_choice is not supported by Gemini",
                "tool_choice",
            ));
        }
    };
    Ok(Some(json!({"functionCallingConfig": config})))
}

/// `thinkingBudget` for Gemini 2.5 by effort (overridable per backend).
fn thinking_budget(effort: &str, info: &ModelInfo, t: &Target) -> Option<i64> {
    if let Some(b) = t
        .settings
        .thinking_budgets
        .as_ref()
        .and_then(|m| m.get(effort))
    {
        return Some(*b);
    }
    let floor = if info.pro {
        128
    } else if info.flash_lite {
        512
    } else {
        0
    };
    let budget = match effort {
        "none" => 0,
        "minimal" => 128,
        "low" => 1024,
        "medium" => 8192,
        "high" | "xhigh" | "max" => {
            if info.pro {
                32768
            } else {
                24576
            }
        }
        _ => return None,
    };
    Some(if budget == 0 && floor == 0 {
        0
    } else {
        budget.max(floor)
    })
}

/// `thinkingLevel` for Gemini 3 by effort.
fn thinking_level(effort: &str, info: &ModelInfo) -> Option<&'static str> {
    Some(match (effort, info.pro) {
        ("none" | "minimal", false) => "MINIMAL",
        ("low", false) => "LOW",
        ("medium", false) => "MEDIUM",
        ("none" | "minimal" | "low", true) => "LOW",
        ("medium" | "high" | "xhigh" | "max", true) => "HIGH",
        ("high" | "xhigh" | "max", false) => "HIGH",
        _ => return None,
    })
}

fn generation_config(
    req: &CreateResponse,
    t: &Target,
    info: &ModelInfo,
) -> Result<Map<String, Value>, ConvertError> {
    let mut g = Map::new();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            g.insert(k.into(), v);
        }
    };
    put("temperature", req.temperature.map(|v| json!(v)));
    put("topP", req.top_p.map(|v| json!(v)));
    put("maxOutputTokens", req.max_output_tokens.map(|v| json!(v)));
    put("presencePenalty", req.presence_penalty.map(|v| json!(v)));
    put("frequencyPenalty", req.frequency_penalty.map(|v| json!(v)));
    if let Some(chat) = t.chat {
        let stop = chat.stop_sequences();
        put("stopSequences", (!stop.is_empty()).then(|| json!(stop)));
        put("seed", chat.seed.map(|s| json!(s)));
    }
    if let Some(m) = t.messages {
        let stop = m.stop_sequences.clone().unwrap_or_default();
        put("stopSequences", (!stop.is_empty()).then(|| json!(stop)));
        put("topK", m.top_k.map(|k| json!(k)));
    }
    let logprobs = req
        .include
        .iter()
        .flatten()
        .any(|i| i == llmproxy_sdk::api::chat_request::INCLUDE_LOGPROBS);
    if logprobs || req.top_logprobs.is_some_and(|n| n > 0) {
        put("responseLogprobs", Some(json!(true)));
        put(
            "logprobs",
            req.top_logprobs.filter(|n| *n > 0).map(|n| json!(n)),
        );
    }
    match req.text.as_ref().and_then(|t| t.format.as_ref()) {
        None | Some(TextFormat::Text) => {}
        Some(TextFormat::JsonObject) => put("responseMimeType", Some(json!("application/json"))),
        Some(TextFormat::JsonSchema { schema, .. }) => {
            put("responseMimeType", Some(json!("application/json")));
            if let Some(s) = schema {
                if schema_mode_json(t, info) {
                    put("responseJsonSchema", Some(schema::json_schema(s)));
                } else {
                    put(
                        "responseSchema",
                        schema::openapi(s).map_err(|e| invalid(e, "text.format.schema"))?,
                    );
                }
            }
        }
    }
    let effort = req.reasoning.as_ref().and_then(|r| r.effort.as_deref());
    let summary = req
        .reasoning
        .as_ref()
        .and_then(|r| r.summary.as_deref())
        .is_some_and(|s| s != "none");
    let include = match t.settings.include_thoughts.as_deref() {
        Some("always") => true,
        Some("never") => false,
        _ => summary,
    };
    let mut thinking = Map::new();
    if let Some(effort) = effort {
        if info.gen3() {
            let level = thinking_level(effort, info).ok_or_else(|| {
                invalid(
                    format!("reasoning.effort {effort:?} is not a known effort"),
                    "reasoning.effort",
                )
            })?;
            thinking.insert("thinkingLevel".into(), json!(level));
        } else if info.version >= (2, 5) {
            let budget = thinking_budget(effort, info, t).ok_or_else(|| {
                invalid(
                    format!("reasoning.effort {effort:?} is not a known effort"),
                    "reasoning.effort",
                )
            })?;
            thinking.insert("thinkingBudget".into(), json!(budget));
        } else if effort != "none" {
            return Err(unsupported(
                format!("{} does not think; remove reasoning.effort", t.model),
                "reasoning.effort",
            ));
        }
    }
    if include && info.version >= (2, 5) {
        thinking.insert("includeThoughts".into(), json!(true));
    }
    if !thinking.is_empty() {
        put("thinkingConfig", Some(Value::Object(thinking)));
    }
    Ok(g)
}
