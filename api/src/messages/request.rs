//! A Messages request → the canonical Responses request.
//!
//! - `system` (a string or text blocks), and `role: "system"` messages inside
//!   `messages` (Claude Code sends them to models it does not know as
//!   Claude), become one `system` message item at the start: the system
//!   prompt, in order;
//! - user text, images and documents become a user message item; each
//!   `tool_result` becomes a `function_call_output` (text and image
//!   content kept);
//! - assistant text becomes an assistant message item, each `tool_use` a
//!   `function_call`, and `thinking` / `redacted_thinking` blocks reasoning
//!   items whose `encrypted_content` carries the signature (see
//!   [`signature_to_encrypted`]);
//! - client tools become function tools; server tools become hosted tools
//!   (`web_search`, ...), which each translator's hosted-tools policy keeps,
//!   drops or refuses;
//! - `thinking` becomes `reasoning.effort`; `max_tokens`, `temperature` and
//!   `top_p` carry over; `stop_sequences`, `top_k`, `thinking` and
//!   `metadata` also go to translators as [`MessagesExtras`].
//!
//! `cache_control` has no canonical meaning and is left out. A Messages
//! request is never stored by the proxy (`store: false`): the client sends
//! the whole conversation each time.

use super::{
    Block, Content, MessageParam, MessagesExtras, MessagesRequest, SourceBlock, ToolChoiceParam,
    ToolParam, ToolResult,
};
use crate::ConvertError;
use crate::envelope;
use crate::responses::{
    ContentPart, CreateResponse, FunctionCall, FunctionCallOutput, FunctionTool, Input, InputFile,
    InputImage, InputText, Item, Message, MessageContent, OutputText, Reasoning, ReasoningConfig,
    Role, SummaryText, Tool, ToolChoice,
};
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// Converts a Messages request to the canonical request, with the
/// Messages-only parameters for translators.
pub fn messages_to_responses(
    req: &MessagesRequest,
) -> Result<(CreateResponse, MessagesExtras), ConvertError> {
    let messages = match &req.messages {
        None => {
            return Err(ConvertError::invalid(
                "messages: Field required. Send the conversation as a list of messages.",
                "messages",
            ));
        }
        Some(m) if m.is_empty() => {
            return Err(ConvertError::invalid(
                "messages: at least one message is required.",
                "messages",
            ));
        }
        Some(m) => m,
    };
    let Some(max_tokens) = req.max_tokens else {
        return Err(ConvertError::invalid(
            "max_tokens: Field required. Say how many tokens the answer may have.",
            "max_tokens",
        ));
    };
    let mut system = match &req.system {
        Some(content) => system_parts(content, "system")?,
        None => Vec::new(),
    };
    let mut items = Vec::new();
    let mut open_calls: HashSet<&str> = HashSet::new();
    for (i, msg) in messages.iter().enumerate() {
        if matches!(msg.role.as_str(), "system" | "developer") {
            system.extend(system_parts(
                &msg.content,
                &format!("messages.{i}.content"),
            )?);
            continue;
        }
        convert_message(i, msg, &mut items, &mut open_calls)?;
    }
    if !system.is_empty() {
        items.insert(0, message(Role::System, system));
    }

    let mut tools = Vec::new();
    for (i, tool) in req.tools.iter().flatten().enumerate() {
        if let Some(tool) = convert_tool(i, tool)? {
            tools.push(tool);
        }
    }
    let (tool_choice, parallel) = match &req.tool_choice {
        Some(choice) => convert_tool_choice(choice)?,
        None => (None, None),
    };

    let canonical = CreateResponse {
        model: req.model.clone(),
        input: Some(Input::Items(items)),
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        parallel_tool_calls: parallel,
        max_output_tokens: Some(max_tokens),
        temperature: req.temperature,
        top_p: req.top_p,
        reasoning: reasoning(req)?,
        stream: req.stream,
        store: Some(false),
        ..CreateResponse::default()
    };
    let extras = MessagesExtras {
        stop_sequences: req.stop_sequences.clone().filter(|s| !s.is_empty()),
        top_k: req.top_k,
        thinking: req.thinking.clone(),
        metadata: req.metadata.clone(),
        extra: Map::new(),
    };
    Ok((canonical, extras))
}

fn message(role: Role, parts: Vec<ContentPart>) -> Item {
    Item::Message(Message {
        id: None,
        role,
        content: MessageContent::Parts(parts),
        status: None,
        extra: Map::new(),
    })
}

fn input_text(text: String) -> ContentPart {
    ContentPart::InputText(InputText {
        text,
        extra: Map::new(),
    })
}

/// The text parts of a system prompt (text blocks only).
fn system_parts(content: &Content, param: &str) -> Result<Vec<ContentPart>, ConvertError> {
    match content {
        Content::Text(t) if t.is_empty() => Ok(Vec::new()),
        Content::Text(t) => Ok(vec![input_text(t.clone())]),
        Content::Blocks(blocks) => {
            let mut parts = Vec::new();
            for (j, block) in blocks.iter().enumerate() {
                match block {
                    Block::Text(t) if t.text.is_empty() => {}
                    Block::Text(t) => parts.push(input_text(t.text.clone())),
                    other => {
                        return Err(ConvertError::invalid(
                            format!(
                                "{param}.{j}: a system prompt holds text blocks only, not {}.",
                                block_type(other)
                            ),
                            format!("{param}.{j}"),
                        ));
                    }
                }
            }
            Ok(parts)
        }
    }
}

fn convert_message<'a>(
    i: usize,
    msg: &'a MessageParam,
    items: &mut Vec<Item>,
    open_calls: &mut HashSet<&'a str>,
) -> Result<(), ConvertError> {
    let at = format!("messages.{i}");
    match msg.role.as_str() {
        "user" => user_message(&at, &msg.content, items, open_calls),
        "assistant" => assistant_message(&at, &msg.content, items, open_calls),
        other => Err(ConvertError::invalid(
            format!("{at}.role: Input should be 'user' or 'assistant', not {other:?}."),
            format!("{at}.role"),
        )),
    }
}

fn user_message<'a>(
    at: &str,
    content: &'a Content,
    items: &mut Vec<Item>,
    open_calls: &mut HashSet<&'a str>,
) -> Result<(), ConvertError> {
    let blocks = match content {
        Content::Text(t) => {
            items.push(message(Role::User, vec![input_text(t.clone())]));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut parts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content.{j}");
        match block {
            Block::Text(t) => {
                if !t.text.is_empty() {
                    parts.push(input_text(t.text.clone()));
                }
            }
            Block::Image(image) => parts.push(image_part(&at, image)?),
            Block::Document(doc) => parts.push(document_part(&at, doc)?),
            Block::ToolResult(result) => {
                if !open_calls.remove(result.tool_use_id.as_str()) {
                    return Err(ConvertError::invalid(
                        format!(
                            "{at}: unexpected `tool_use_id` found in `tool_result` blocks: {}. Each `tool_result` block must have a corresponding `tool_use` block in the previous message.",
                            result.tool_use_id
                        ),
                        format!("{at}.tool_use_id"),
                    ));
                }
                // Results answer the calls before them: what the user said
                // so far in this message goes first.
                if !parts.is_empty() {
                    items.push(message(Role::User, std::mem::take(&mut parts)));
                }
                items.push(tool_output(&at, result)?);
            }
            other => {
                return Err(ConvertError::invalid(
                    format!(
                        "{at}: a user message cannot hold {} here; use text, image, document or tool_result blocks.",
                        block_type(other)
                    ),
                    format!("{at}.type"),
                ));
            }
        }
    }
    if !parts.is_empty() {
        items.push(message(Role::User, parts));
    }
    Ok(())
}

fn assistant_message<'a>(
    at: &str,
    content: &'a Content,
    items: &mut Vec<Item>,
    open_calls: &mut HashSet<&'a str>,
) -> Result<(), ConvertError> {
    // Calls of an earlier turn that were never answered stay unanswered.
    open_calls.clear();
    let blocks = match content {
        Content::Text(t) if t.is_empty() => return Ok(()),
        Content::Text(t) => {
            items.push(assistant_text(vec![t.clone()]));
            return Ok(());
        }
        Content::Blocks(blocks) => blocks,
    };
    let mut texts = Vec::new();
    for (j, block) in blocks.iter().enumerate() {
        let at = format!("{at}.content.{j}");
        match block {
            Block::Text(t) => {
                if !t.text.is_empty() {
                    texts.push(t.text.clone());
                }
                continue;
            }
            _ if !texts.is_empty() => items.push(assistant_text(std::mem::take(&mut texts))),
            _ => {}
        }
        match block {
            Block::Thinking(t) => items.push(reasoning_item(
                (!t.thinking.is_empty()).then(|| t.thinking.clone()),
                signature_to_encrypted(&t.signature, "thinking"),
            )),
            Block::RedactedThinking(r) => items.push(reasoning_item(
                None,
                signature_to_encrypted(&r.data, "redacted"),
            )),
            Block::ToolUse(call) => {
                let arguments = match &call.input {
                    Value::Null => "{}".to_string(),
                    Value::Object(_) => call.input.to_string(),
                    _ => {
                        return Err(ConvertError::invalid(
                            format!("{at}.input: Input should be an object."),
                            format!("{at}.input"),
                        ));
                    }
                };
                open_calls.insert(call.id.as_str());
                items.push(Item::FunctionCall(FunctionCall {
                    id: None,
                    call_id: call.id.clone(),
                    name: call.name.clone(),
                    arguments,
                    status: Some("completed".into()),
                    extra: Map::new(),
                }));
            }
            // Server tool blocks (a hosted search and its results) are
            // already in the answer the model gave after them.
            Block::Other(v) if is_server_tool_block(v) => {}
            other => {
                return Err(ConvertError::invalid(
                    format!(
                        "{at}: an assistant message cannot hold {}; use text, thinking, redacted_thinking or tool_use blocks.",
                        block_type(other)
                    ),
                    format!("{at}.type"),
                ));
            }
        }
    }
    if !texts.is_empty() {
        items.push(assistant_text(texts));
    }
    Ok(())
}

fn assistant_text(texts: Vec<String>) -> Item {
    Item::Message(Message {
        id: None,
        role: Role::Assistant,
        content: MessageContent::Parts(
            texts
                .into_iter()
                .map(|text| ContentPart::OutputText(OutputText::new(text)))
                .collect(),
        ),
        status: Some("completed".into()),
        extra: Map::new(),
    })
}

fn reasoning_item(summary: Option<String>, encrypted_content: Option<String>) -> Item {
    Item::Reasoning(Reasoning {
        id: None,
        summary: summary.map(SummaryText::new).into_iter().collect(),
        content: None,
        encrypted_content,
        status: None,
        extra: Map::new(),
    })
}

/// The envelope provider under which non-llmproxy reasoning state (OpenAI's
/// encrypted reasoning) rides in a thinking block's signature.
pub(crate) const OPAQUE: &str = "opaque";

/// A thinking block's `signature` (or a redacted block's `data`) as the
/// canonical `encrypted_content`:
/// - an llmproxy envelope (the proxy gave it out for another provider's
///   state, e.g. Gemini thought signatures) as it is, or the state it wraps
///   when it is another API's opaque blob;
/// - anything else is Anthropic's own signature, sealed for Claude
///   (`k` is `thinking` or `redacted`).
///
/// An empty signature is no state at all.
pub fn signature_to_encrypted(signature: &str, kind: &str) -> Option<String> {
    if signature.is_empty() {
        return None;
    }
    if signature.starts_with(crate::ENVELOPE_PREFIX) {
        if let Some(fields) = envelope::open(OPAQUE, signature)
            && let Some(Value::String(blob)) = fields.get("ec")
        {
            return Some(blob.clone());
        }
        return Some(signature.to_string());
    }
    let mut fields = Map::new();
    fields.insert("k".into(), json!(kind));
    let key = if kind == "redacted" { "data" } else { "sig" };
    fields.insert(key.into(), json!(signature));
    Some(envelope::seal("anthropic", fields))
}

fn tool_output(at: &str, result: &ToolResult) -> Result<Item, ConvertError> {
    let output = match &result.content {
        None => Value::String(String::new()),
        Some(Content::Text(t)) => Value::String(t.clone()),
        Some(Content::Blocks(blocks)) => {
            let mut parts = Vec::new();
            for (k, block) in blocks.iter().enumerate() {
                let at = format!("{at}.content.{k}");
                let part = match block {
                    Block::Text(t) => input_text(t.text.clone()),
                    Block::Image(image) => image_part(&at, image)?,
                    Block::Document(doc) => document_part(&at, doc)?,
                    other => {
                        return Err(ConvertError::invalid(
                            format!(
                                "{at}: a tool_result holds text, image or document blocks, not {}.",
                                block_type(other)
                            ),
                            format!("{at}.type"),
                        ));
                    }
                };
                parts.push(part);
            }
            // Text only: one string, which every upstream takes.
            if parts.iter().all(|p| matches!(p, ContentPart::InputText(_))) {
                let texts: Vec<String> = parts
                    .into_iter()
                    .filter_map(|p| match p {
                        ContentPart::InputText(t) => Some(t.text),
                        _ => None,
                    })
                    .collect();
                Value::String(texts.join("\n"))
            } else {
                serde_json::to_value(parts).unwrap_or(Value::Null)
            }
        }
    };
    // `is_error` has no canonical place (upstreams refuse unknown item
    // fields); the output's own text says what went wrong.
    Ok(Item::FunctionCallOutput(FunctionCallOutput {
        id: None,
        call_id: result.tool_use_id.clone(),
        output,
        status: None,
        extra: Map::new(),
    }))
}

fn image_part(at: &str, image: &SourceBlock) -> Result<ContentPart, ConvertError> {
    let url = source_url(at, image, "image")?;
    Ok(ContentPart::InputImage(InputImage {
        image_url: Some(url),
        file_id: None,
        detail: None,
        extra: Map::new(),
    }))
}

fn document_part(at: &str, doc: &SourceBlock) -> Result<ContentPart, ConvertError> {
    let source = &doc.source;
    match source.kind.as_str() {
        "text" => Ok(input_text(source.data.clone().unwrap_or_default())),
        "url" => Ok(ContentPart::InputFile(InputFile {
            file_data: None,
            file_id: None,
            file_url: source.url.clone(),
            filename: doc.title.clone(),
            extra: Map::new(),
        })),
        _ => {
            let data = source_url(at, doc, "document")?;
            Ok(ContentPart::InputFile(InputFile {
                file_data: Some(data),
                file_id: None,
                file_url: None,
                filename: Some(doc.title.clone().unwrap_or_else(|| "document.pdf".into())),
                extra: Map::new(),
            }))
        }
    }
}

/// A base64 source as a data URL, or a `url` source's URL.
fn source_url(at: &str, block: &SourceBlock, what: &str) -> Result<String, ConvertError> {
    let source = &block.source;
    match (source.kind.as_str(), &source.data, &source.url) {
        ("base64", Some(data), _) => {
            let mime = source.media_type.as_deref().unwrap_or(match what {
                "image" => "image/png",
                _ => "application/pdf",
            });
            Ok(format!("data:{mime};base64,{data}"))
        }
        ("url", _, Some(url)) => Ok(url.clone()),
        (kind, _, _) => Err(ConvertError::invalid(
            format!(
                "{at}.source: an {what} source needs `type` \"base64\" with `data`, or \"url\" with `url` (got {kind:?})."
            ),
            format!("{at}.source"),
        )),
    }
}

fn convert_tool(i: usize, tool: &ToolParam) -> Result<Option<Tool>, ConvertError> {
    let kind = tool.kind.as_deref().unwrap_or("custom");
    if kind == "custom" {
        if tool.name.is_empty() {
            return Err(ConvertError::invalid(
                format!("tools.{i}.name: a tool needs a name."),
                format!("tools.{i}.name"),
            ));
        }
        let parameters = tool
            .input_schema
            .clone()
            .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
        return Ok(Some(Tool::Function(FunctionTool {
            name: tool.name.clone(),
            description: tool.description.clone(),
            parameters: Some(parameters),
            strict: tool.extra.get("strict").and_then(Value::as_bool),
            extra: Map::new(),
        })));
    }
    // A server tool: the hosted tool it is, for the translators' policy.
    let hosted = if kind.starts_with("web_search") {
        json!({"type": "web_search"})
    } else {
        json!({"type": kind, "name": tool.name})
    };
    Ok(Some(Tool::Other(hosted)))
}

fn convert_tool_choice(
    choice: &ToolChoiceParam,
) -> Result<(Option<ToolChoice>, Option<bool>), ConvertError> {
    let tool_choice = match choice.kind.as_str() {
        "auto" => ToolChoice::Mode("auto".into()),
        "any" => ToolChoice::Mode("required".into()),
        "none" => ToolChoice::Mode("none".into()),
        "tool" => match &choice.name {
            Some(name) => ToolChoice::function(name.clone()),
            None => {
                return Err(ConvertError::invalid(
                    "tool_choice.name: Field required when `type` is \"tool\".",
                    "tool_choice.name",
                ));
            }
        },
        other => {
            return Err(ConvertError::invalid(
                format!(
                    "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none', not {other:?}."
                ),
                "tool_choice.type",
            ));
        }
    };
    let parallel = choice.disable_parallel_tool_use.map(|d| !d);
    Ok((Some(tool_choice), parallel))
}

/// `thinking` (and `output_config.effort`) as a reasoning effort: a budget
/// maps to the nearest effort; adaptive thinking takes the effort asked for.
fn reasoning(req: &MessagesRequest) -> Result<Option<ReasoningConfig>, ConvertError> {
    let Some(thinking) = &req.thinking else {
        return Ok(None);
    };
    let effort = match thinking.kind.as_str() {
        "disabled" => return Ok(None),
        "enabled" => match thinking.budget_tokens {
            Some(b) if b < 1024 => {
                return Err(ConvertError::invalid(
                    "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024.",
                    "thinking.budget_tokens",
                ));
            }
            Some(b) if b < 4096 => "low",
            Some(b) if b < 16384 => "medium",
            Some(_) => "high",
            None => {
                return Err(ConvertError::invalid(
                    "thinking.enabled.budget_tokens: Field required.",
                    "thinking.budget_tokens",
                ));
            }
        },
        "adaptive" => match req
            .output_config
            .as_ref()
            .and_then(|c| c.get("effort"))
            .and_then(Value::as_str)
        {
            Some("low") => "low",
            Some("medium") => "medium",
            Some("max" | "xhigh") => "xhigh",
            _ => "high",
        },
        other => {
            return Err(ConvertError::invalid(
                format!(
                    "thinking.type: Input should be 'enabled', 'adaptive' or 'disabled', not {other:?}."
                ),
                "thinking.type",
            ));
        }
    };
    Ok(Some(ReasoningConfig {
        effort: Some(effort.into()),
        summary: Some("auto".into()),
        extra: Map::new(),
    }))
}

/// A block's type, for messages.
fn block_type(block: &Block) -> String {
    let name = match block {
        Block::Text(_) => "text",
        Block::Image(_) => "image",
        Block::Document(_) => "document",
        Block::ToolUse(_) => "tool_use",
        Block::ToolResult(_) => "tool_result",
        Block::Thinking(_) => "thinking",
        Block::RedactedThinking(_) => "redacted_thinking",
        Block::Other(v) => {
            return match v.get("type").and_then(Value::as_str) {
                Some(
                    t @ ("text" | "image" | "document" | "tool_use" | "tool_result" | "thinking"
                    | "redacted_thinking"),
                ) => format!("a malformed {t} block (a required field is missing or mistyped)"),
                Some(t) => format!("a {t:?} block"),
                None => "a block without a `type`".into(),
            };
        }
    };
    format!("a {name} block")
}

/// Blocks of Anthropic's server tools (hosted search and fetch, code
/// execution) and their results.
fn is_server_tool_block(v: &Value) -> bool {
    v.get("type")
        .and_then(Value::as_str)
        .is_some_and(|t| t == "server_tool_use" || t.ends_with("_tool_result"))
}
