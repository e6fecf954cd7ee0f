//! Chat request ⇄ canonical Responses request.
//!
//! [`chat_to_responses`] is the host's ingress for `/v1/chat/completions`;
//! [`responses_to_chat`] is what a Chat Completions backend sends upstream.
//! Chat-only parameters (`stop`, `n`, `seed`, `logit_bias`, ...) have no
//! place in a Responses request: the host hands the original Chat request to
//! translators as `extras`, and each decides whether it can honour them.

use crate::ConvertError;
use crate::chat::{
    ChatFunction, ChatFunctionCall, ChatMessage, ChatRequest, ChatTool, ChatToolCall,
};
use crate::responses::{
    ContentPart, CreateResponse, FunctionCall, FunctionCallOutput, FunctionTool, Input, InputFile,
    InputImage, InputText, Item, Message, MessageContent, OutputText, ReasoningConfig, Refusal,
    Role, TextConfig, TextFormat, Tool, ToolChoice, kind_of,
};
use serde_json::{Map, Value, json};

/// The `include` value asking for output logprobs.
pub const INCLUDE_LOGPROBS: &str = "message.output_text.logprobs";

/// Converts a Chat Completions request to the canonical Responses request.
///
/// Messages become items in the same order (system and developer messages
/// stay in place as `system`/`developer` message items); an assistant
/// message with tool calls becomes a message item (if it has content)
/// followed by one `function_call` item per call; each `tool` message
/// becomes a `function_call_output`. Unknown fields of the request, of
/// messages and of parts are carried along.
pub fn chat_to_responses(chat: &ChatRequest) -> Result<CreateResponse, ConvertError> {
    let messages = match &chat.messages {
        None => {
            return Err(ConvertError::invalid(
                "The request has no `messages`: send the conversation as a list of messages.",
                "messages",
            ));
        }
        Some(m) if m.is_empty() => {
            return Err(ConvertError::invalid(
                "`messages` is empty: send at least one message.",
                "messages",
            ));
        }
        Some(m) => m,
    };
    let mut items = Vec::new();
    let mut legacy_calls: Vec<(String, String)> = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        convert_message(i, msg, &mut items, &mut legacy_calls)?;
    }

    let mut tools: Vec<Tool> = Vec::new();
    for (i, tool) in chat.tools.iter().flatten().enumerate() {
        match (&tool.kind[..], &tool.function) {
            ("function", Some(f)) => tools.push(Tool::Function(function_tool(f, &tool.extra))),
            ("function", None) => {
                return Err(ConvertError::invalid(
                    "a function tool needs a `function` object with a `name`",
                    format!("tools[{i}].function"),
                ));
            }
            _ => tools.push(Tool::Other(
                serde_json::to_value(tool).unwrap_or(Value::Null),
            )),
        }
    }
    for f in chat.functions.iter().flatten() {
        tools.push(Tool::Function(function_tool(f, &Map::new())));
    }

    let tool_choice = match (&chat.tool_choice, &chat.function_call) {
        (Some(tc), _) => Some(tool_choice_from_chat(tc, "tool_choice")?),
        (None, Some(fc)) => Some(tool_choice_from_chat(fc, "function_call")?),
        (None, None) => None,
    };

    let mut text = TextConfig::default();
    if let Some(rf) = &chat.response_format {
        text.format = Some(text_format_from_chat(rf)?);
    }
    text.verbosity.clone_from(&chat.verbosity);
    let text = (text.format.is_some() || text.verbosity.is_some()).then_some(text);

    let mut include = Vec::new();
    if chat.logprobs == Some(true) {
        include.push(INCLUDE_LOGPROBS.to_string());
    }

    Ok(CreateResponse {
        model: chat.model.clone(),
        input: Some(Input::Items(items)),
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        parallel_tool_calls: chat.parallel_tool_calls,
        max_output_tokens: chat.max_completion_tokens.or(chat.max_tokens),
        temperature: chat.temperature,
        top_p: chat.top_p,
        presence_penalty: chat.presence_penalty,
        frequency_penalty: chat.frequency_penalty,
        top_logprobs: chat.top_logprobs.filter(|_| chat.logprobs == Some(true)),
        include: (!include.is_empty()).then_some(include),
        text,
        reasoning: chat.reasoning_effort.as_ref().map(|e| ReasoningConfig {
            effort: Some(e.clone()),
            ..ReasoningConfig::default()
        }),
        stream: chat.stream,
        service_tier: chat.service_tier.clone(),
        metadata: chat.metadata.clone(),
        safety_identifier: chat.safety_identifier.clone().or_else(|| chat.user.clone()),
        prompt_cache_key: chat.prompt_cache_key.clone(),
        extra: chat.extra.clone(),
        ..CreateResponse::default()
    })
}

fn function_tool(f: &ChatFunction, outer_extra: &Map<String, Value>) -> FunctionTool {
    let mut extra = f.extra.clone();
    extra.extend(outer_extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    FunctionTool {
        name: f.name.clone(),
        description: f.description.clone(),
        parameters: f.parameters.clone(),
        strict: f.strict,
        extra,
    }
}

fn convert_message(
    i: usize,
    msg: &ChatMessage,
    items: &mut Vec<Item>,
    legacy_calls: &mut Vec<(String, String)>,
) -> Result<(), ConvertError> {
    let at = |field: &str| format!("messages[{i}].{field}");
    let mut extra = msg.extra.clone();
    if let Some(name) = &msg.name {
        extra.insert("name".into(), Value::String(name.clone()));
    }
    match msg.role.as_str() {
        "system" | "developer" | "user" => {
            let role = match msg.role.as_str() {
                "system" => Role::System,
                "developer" => Role::Developer,
                _ => Role::User,
            };
            let content = match &msg.content {
                Some(Value::String(s)) => MessageContent::Text(s.clone()),
                Some(Value::Array(parts)) => MessageContent::Parts(
                    parts
                        .iter()
                        .enumerate()
                        .map(|(j, p)| input_part(p, &format!("messages[{i}].content[{j}]")))
                        .collect::<Result<_, _>>()?,
                ),
                other => {
                    return Err(ConvertError::invalid(
                        format!(
                            "a {} message needs `content` (a string or a list of parts), not {}",
                            msg.role,
                            other.as_ref().map_or("nothing", kind_of)
                        ),
                        at("content"),
                    ));
                }
            };
            items.push(Item::Message(Message {
                id: None,
                role,
                content,
                status: None,
                extra,
            }));
        }
        "assistant" => {
            let mut parts = Vec::new();
            match &msg.content {
                None | Some(Value::Null) => {}
                Some(Value::String(s)) => {
                    if !s.is_empty() {
                        parts.push(ContentPart::OutputText(OutputText::new(s.clone())));
                    }
                }
                Some(Value::Array(ps)) => {
                    for (j, p) in ps.iter().enumerate() {
                        let param = format!("messages[{i}].content[{j}]");
                        match p.get("type").and_then(Value::as_str) {
                            Some("text") => {
                                let t = p.get("text").and_then(Value::as_str).ok_or_else(|| {
                                    ConvertError::invalid("a text part needs `text`", &param)
                                })?;
                                if !t.is_empty() {
                                    parts.push(ContentPart::OutputText(OutputText::new(t.into())));
                                }
                            }
                            Some("refusal") => {
                                let r = p.get("refusal").and_then(Value::as_str).unwrap_or("");
                                parts.push(ContentPart::Refusal(Refusal {
                                    refusal: r.into(),
                                    extra: Map::new(),
                                }));
                            }
                            _ => parts.push(ContentPart::Other(p.clone())),
                        }
                    }
                }
                Some(other) => {
                    return Err(ConvertError::invalid(
                        format!(
                            "an assistant message's `content` must be a string, a list of parts or null, not {}",
                            kind_of(other)
                        ),
                        at("content"),
                    ));
                }
            }
            if let Some(r) = msg.refusal.as_ref().filter(|r| !r.is_empty()) {
                parts.push(ContentPart::Refusal(Refusal {
                    refusal: r.clone(),
                    extra: Map::new(),
                }));
            }
            if !parts.is_empty() || !extra.is_empty() {
                items.push(Item::Message(Message {
                    id: None,
                    role: Role::Assistant,
                    content: MessageContent::Parts(parts),
                    status: None,
                    extra,
                }));
            }
            for (j, call) in msg.tool_calls.iter().flatten().enumerate() {
                if call.id.is_empty() {
                    return Err(ConvertError::invalid(
                        "a tool call needs an `id`",
                        format!("messages[{i}].tool_calls[{j}].id"),
                    ));
                }
                items.push(Item::FunctionCall(FunctionCall {
                    id: None,
                    call_id: call.id.clone(),
                    name: call.function.name.clone(),
                    arguments: non_empty_args(&call.function.arguments),
                    status: None,
                    extra: call.extra.clone(),
                }));
            }
            if let Some(fc) = &msg.function_call {
                let call_id = format!("call_legacy_{}", legacy_calls.len());
                legacy_calls.push((fc.name.clone(), call_id.clone()));
                items.push(Item::FunctionCall(FunctionCall {
                    id: None,
                    call_id,
                    name: fc.name.clone(),
                    arguments: non_empty_args(&fc.arguments),
                    status: None,
                    extra: Map::new(),
                }));
            }
        }
        "tool" => {
            let call_id = msg.tool_call_id.clone().ok_or_else(|| {
                ConvertError::invalid("a tool message needs `tool_call_id`", at("tool_call_id"))
            })?;
            items.push(Item::FunctionCallOutput(FunctionCallOutput {
                id: None,
                call_id,
                output: Value::String(text_content(msg.content.as_ref(), &at("content"))?),
                status: None,
                extra,
            }));
        }
        "function" => {
            let name = msg.name.clone().unwrap_or_default();
            let pos = legacy_calls.iter().position(|(n, _)| *n == name);
            let call_id = match pos {
                Some(p) => legacy_calls.remove(p).1,
                None => {
                    return Err(ConvertError::invalid(
                        format!(
                            "a function message answers a call to {name:?}, but no assistant message made one"
                        ),
                        at("name"),
                    ));
                }
            };
            items.push(Item::FunctionCallOutput(FunctionCallOutput {
                id: None,
                call_id,
                output: Value::String(text_content(msg.content.as_ref(), &at("content"))?),
                status: None,
                extra: Map::new(),
            }));
        }
        other => {
            return Err(ConvertError::invalid(
                format!("unknown role {other:?}; use system, developer, user, assistant or tool"),
                at("role"),
            ));
        }
    }
    Ok(())
}

fn non_empty_args(args: &str) -> String {
    if args.trim().is_empty() {
        "{}".into()
    } else {
        args.to_string()
    }
}

/// A string, or the texts of text parts joined.
fn text_content(content: Option<&Value>, param: &str) -> Result<String, ConvertError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => Ok(parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("")),
        Some(other) => Err(ConvertError::invalid(
            format!(
                "`content` must be a string or a list of text parts, not {}",
                kind_of(other)
            ),
            param,
        )),
    }
}

/// A user/system content part of a Chat message as a canonical part.
fn input_part(part: &Value, param: &str) -> Result<ContentPart, ConvertError> {
    let obj = part
        .as_object()
        .ok_or_else(|| ConvertError::invalid("a content part must be an object", param))?;
    let mut extra = obj.clone();
    let kind = extra.remove("type");
    match kind.as_ref().and_then(Value::as_str) {
        Some("text") => {
            let text = match extra.remove("text") {
                Some(Value::String(t)) => t,
                _ => return Err(ConvertError::invalid("a text part needs `text`", param)),
            };
            Ok(ContentPart::InputText(InputText { text, extra }))
        }
        Some("image_url") => {
            let (url, detail) = match extra.remove("image_url") {
                Some(Value::String(url)) => (url, None),
                Some(Value::Object(mut o)) => match o.remove("url") {
                    Some(Value::String(url)) => (
                        url,
                        o.remove("detail")
                            .and_then(|d| d.as_str().map(str::to_string)),
                    ),
                    _ => {
                        return Err(ConvertError::invalid(
                            "an image_url part needs `image_url.url`",
                            format!("{param}.image_url.url"),
                        ));
                    }
                },
                _ => {
                    return Err(ConvertError::invalid(
                        "an image_url part needs `image_url.url`",
                        format!("{param}.image_url"),
                    ));
                }
            };
            Ok(ContentPart::InputImage(InputImage {
                image_url: Some(url),
                file_id: None,
                detail: Some(detail.unwrap_or_else(|| "auto".into())),
                extra,
            }))
        }
        Some("file") => {
            let file = match extra.remove("file") {
                Some(Value::Object(f)) => f,
                _ => return Err(ConvertError::invalid("a file part needs `file`", param)),
            };
            let get = |k: &str| file.get(k).and_then(Value::as_str).map(str::to_string);
            Ok(ContentPart::InputFile(InputFile {
                file_data: get("file_data"),
                file_id: get("file_id"),
                file_url: None,
                filename: get("filename"),
                extra,
            }))
        }
        Some(_) => Ok(ContentPart::Other(part.clone())),
        None => Err(ConvertError::invalid(
            "a content part needs a `type`",
            param,
        )),
    }
}

fn tool_choice_from_chat(v: &Value, param: &str) -> Result<ToolChoice, ConvertError> {
    match v {
        Value::String(s) => Ok(ToolChoice::Mode(s.clone())),
        Value::Object(o) => {
            let name_of = |f: Option<&Value>| {
                f.and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            };
            match o.get("type").and_then(Value::as_str) {
                Some("function") => name_of(o.get("function"))
                    .map(ToolChoice::function)
                    .ok_or_else(|| {
                        ConvertError::invalid(
                            "a function tool_choice needs `function.name`",
                            format!("{param}.function.name"),
                        )
                    }),
                Some("allowed_tools") => {
                    let at = o.get("allowed_tools");
                    let mode = at
                        .and_then(|a| a.get("mode"))
                        .and_then(Value::as_str)
                        .map(str::to_string);
                    let tools = at
                        .and_then(|a| a.get("tools"))
                        .and_then(Value::as_array)
                        .map(|ts| {
                            ts.iter()
                                .filter_map(|t| name_of(t.get("function")))
                                .map(|name| json!({"type": "function", "name": name}))
                                .collect()
                        })
                        .unwrap_or_default();
                    Ok(ToolChoice::AllowedTools {
                        kind: crate::responses::AllowedToolsTag::AllowedTools,
                        mode,
                        tools,
                    })
                }
                // Legacy `function_call: {"name": ...}`.
                None if o.contains_key("name") => name_of(Some(v))
                    .map(ToolChoice::function)
                    .ok_or_else(|| ConvertError::invalid("`name` must be a string", param)),
                _ => Ok(ToolChoice::Other(v.clone())),
            }
        }
        other => Err(ConvertError::invalid(
            format!(
                "`{param}` must be a string or an object, not {}",
                kind_of(other)
            ),
            param,
        )),
    }
}

fn text_format_from_chat(rf: &Value) -> Result<TextFormat, ConvertError> {
    match rf.get("type").and_then(Value::as_str) {
        Some("text") => Ok(TextFormat::Text),
        Some("json_object") => Ok(TextFormat::JsonObject),
        Some("json_schema") => {
            let js = rf.get("json_schema").ok_or_else(|| {
                ConvertError::invalid(
                    "a json_schema response_format needs `json_schema`",
                    "response_format.json_schema",
                )
            })?;
            let name = js.get("name").and_then(Value::as_str).ok_or_else(|| {
                ConvertError::invalid(
                    "response_format.json_schema needs a `name`",
                    "response_format.json_schema.name",
                )
            })?;
            Ok(TextFormat::JsonSchema {
                name: name.to_string(),
                description: js
                    .get("description")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                schema: js.get("schema").cloned(),
                strict: js.get("strict").and_then(Value::as_bool),
            })
        }
        _ => Err(ConvertError::invalid(
            "response_format.type must be text, json_object or json_schema",
            "response_format.type",
        )),
    }
}

/// How a Chat backend wants some fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatOptions {
    /// Send the token limit as `max_tokens` instead of `max_completion_tokens`
    /// (older OpenAI-compatible servers).
    pub legacy_max_tokens: bool,
    /// Send `instructions` as a `developer` message instead of `system`.
    pub developer_instructions: bool,
}

/// Converts a canonical request to a Chat Completions request for `model`.
///
/// Reasoning items are dropped (Chat has no reasoning input). Parameters a
/// Chat backend cannot honour (`previous_response_id`, `background`,
/// `max_tool_calls`, `truncation: auto`, built-in tools, item references)
/// are refused.
pub fn responses_to_chat(
    req: &CreateResponse,
    model: &str,
    stream: bool,
    options: ChatOptions,
) -> Result<ChatRequest, ConvertError> {
    let unsupported = |what: &str, param: &str| {
        Err(ConvertError::unsupported(
            format!("{what} is not supported by a Chat Completions backend"),
            param,
        ))
    };
    if req.previous_response_id.is_some() {
        return unsupported("`previous_response_id`", "previous_response_id");
    }
    if req.background == Some(true) {
        return unsupported("`background: true`", "background");
    }
    if req.max_tool_calls.is_some() {
        return unsupported("`max_tool_calls`", "max_tool_calls");
    }
    if req.truncation.as_deref() == Some("auto") {
        return unsupported("`truncation: auto`", "truncation");
    }

    let mut messages: Vec<ChatMessage> = Vec::new();
    if let Some(instructions) = req.instructions.as_ref().filter(|s| !s.is_empty()) {
        let role = if options.developer_instructions {
            "developer"
        } else {
            "system"
        };
        messages.push(ChatMessage::text(role, instructions.clone()));
    }
    // Whether the last message is an assistant turn that tool calls may join.
    let mut assistant_open = false;
    for (i, item) in req.input_items().iter().enumerate() {
        let param = format!("input[{i}]");
        match item {
            Item::Message(m) if m.role == Role::Assistant => {
                let mut text = String::new();
                let mut refusal = String::new();
                for part in m.content.parts(Role::Assistant) {
                    match part {
                        ContentPart::OutputText(t) => text.push_str(&t.text),
                        ContentPart::InputText(t) => text.push_str(&t.text),
                        ContentPart::Refusal(r) => refusal.push_str(&r.refusal),
                        _ => {
                            return Err(ConvertError::unsupported(
                                "an assistant message may only contain text and refusals for a Chat Completions backend",
                                param,
                            ));
                        }
                    }
                }
                let mut msg = ChatMessage {
                    content: if text.is_empty() {
                        None
                    } else {
                        Some(Value::String(text))
                    },
                    refusal: (!refusal.is_empty()).then_some(refusal),
                    ..ChatMessage::text("assistant", "")
                };
                msg.extra.clone_from(&m.extra);
                if let Some(Value::String(name)) = msg.extra.remove("name") {
                    msg.name = Some(name);
                }
                if msg.content.is_none() {
                    msg.content = Some(Value::Null);
                }
                messages.push(msg);
                assistant_open = true;
            }
            Item::Message(m) => {
                let mut msg = ChatMessage::text(m.role.as_str(), "");
                msg.content = Some(chat_content(&m.content, m.role, &param)?);
                msg.extra.clone_from(&m.extra);
                if let Some(Value::String(name)) = msg.extra.remove("name") {
                    msg.name = Some(name);
                }
                messages.push(msg);
                assistant_open = false;
            }
            Item::FunctionCall(call) => {
                if !assistant_open {
                    let mut msg = ChatMessage::text("assistant", "");
                    msg.content = Some(Value::Null);
                    messages.push(msg);
                    assistant_open = true;
                }
                if let Some(last) = messages.last_mut() {
                    last.tool_calls
                        .get_or_insert_with(Vec::new)
                        .push(ChatToolCall {
                            id: call.call_id.clone(),
                            kind: "function".into(),
                            function: ChatFunctionCall {
                                name: call.name.clone(),
                                arguments: non_empty_args(&call.arguments),
                            },
                            extra: Map::new(),
                        });
                }
            }
            Item::FunctionCallOutput(out) => {
                let mut msg = ChatMessage::text("tool", out.output_text());
                msg.tool_call_id = Some(out.call_id.clone());
                messages.push(msg);
                assistant_open = false;
            }
            // Chat has no reasoning input; provider state in reasoning items
            // belongs to other backends.
            Item::Reasoning(_) => {}
            Item::ItemReference(_) => {
                return unsupported("an `item_reference` input item", &param);
            }
            Item::Other(v) => {
                let kind = v.get("type").and_then(Value::as_str).unwrap_or("unknown");
                return Err(ConvertError::unsupported(
                    format!(
                        "input items of type {kind:?} are not supported by a Chat Completions backend"
                    ),
                    param,
                ));
            }
        }
    }

    let tools: Vec<ChatTool> = req
        .function_tools("a Chat Completions backend")?
        .into_iter()
        .map(|(_, f)| ChatTool {
            kind: "function".into(),
            function: Some(ChatFunction {
                name: f.name.clone(),
                description: f.description.clone(),
                parameters: f.parameters.clone(),
                strict: f.strict,
                extra: f.extra.clone(),
            }),
            extra: Map::new(),
        })
        .collect();

    let tool_choice = match &req.tool_choice {
        None => None,
        Some(ToolChoice::Mode(m)) => Some(Value::String(m.clone())),
        Some(ToolChoice::Function { name, .. }) => {
            Some(json!({"type": "function", "function": {"name": name}}))
        }
        Some(ToolChoice::AllowedTools { mode, tools, .. }) => Some(json!({
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": mode.clone().unwrap_or_else(|| "auto".into()),
                "tools": ToolChoice::allowed_names(tools).iter()
                    .map(|n| json!({"type": "function", "function": {"name": n}}))
                    .collect::<Vec<_>>(),
            }
        })),
        Some(ToolChoice::Other(_)) => return unsupported("this `tool_choice`", "tool_choice"),
    };

    let response_format = match req.text.as_ref().and_then(|t| t.format.as_ref()) {
        None => None,
        Some(TextFormat::Text) => Some(json!({"type": "text"})),
        Some(TextFormat::JsonObject) => Some(json!({"type": "json_object"})),
        Some(TextFormat::JsonSchema {
            name,
            description,
            schema,
            strict,
        }) => {
            let mut js = json!({"name": name});
            if let Some(d) = description {
                js["description"] = json!(d);
            }
            if let Some(s) = schema {
                js["schema"] = s.clone();
            }
            if let Some(s) = strict {
                js["strict"] = json!(s);
            }
            Some(json!({"type": "json_schema", "json_schema": js}))
        }
    };

    let logprobs = req.include.iter().flatten().any(|i| i == INCLUDE_LOGPROBS)
        || req.top_logprobs.is_some_and(|n| n > 0);
    let (max_completion_tokens, max_tokens) = if options.legacy_max_tokens {
        (None, req.max_output_tokens)
    } else {
        (req.max_output_tokens, None)
    };
    Ok(ChatRequest {
        model: Some(model.to_string()),
        messages: Some(messages),
        stream: stream.then_some(true),
        stream_options: stream.then(|| json!({"include_usage": true})),
        max_completion_tokens,
        max_tokens,
        temperature: req.temperature,
        top_p: req.top_p,
        presence_penalty: req.presence_penalty,
        frequency_penalty: req.frequency_penalty,
        logprobs: logprobs.then_some(true),
        top_logprobs: req.top_logprobs.filter(|n| *n > 0),
        response_format,
        tools: (!tools.is_empty()).then_some(tools),
        tool_choice,
        parallel_tool_calls: req.parallel_tool_calls,
        reasoning_effort: req.reasoning.as_ref().and_then(|r| r.effort.clone()),
        verbosity: req.text.as_ref().and_then(|t| t.verbosity.clone()),
        safety_identifier: req.safety_identifier.clone(),
        prompt_cache_key: req.prompt_cache_key.clone(),
        user: req.user.clone(),
        metadata: req.metadata.clone(),
        service_tier: req.service_tier.clone(),
        extra: req.extra.clone(),
        ..ChatRequest::default()
    })
}

/// A user/system/developer message's content in Chat form: a string when it
/// is only text (what every server accepts), else a list of Chat parts.
fn chat_content(content: &MessageContent, role: Role, param: &str) -> Result<Value, ConvertError> {
    let parts = match content {
        MessageContent::Text(t) => return Ok(Value::String(t.clone())),
        MessageContent::Parts(p) => p,
    };
    let text_only = parts.iter().all(|p| {
        matches!(p, ContentPart::InputText(t) if t.extra.is_empty())
            || matches!(p, ContentPart::OutputText(_))
    });
    if text_only {
        return Ok(Value::String(content.text()));
    }
    let mut out = Vec::new();
    for (j, part) in parts.iter().enumerate() {
        let at = format!("{param}.content[{j}]");
        out.push(match part {
            ContentPart::InputText(t) => {
                let mut p = t.extra.clone();
                p.insert("type".into(), json!("text"));
                p.insert("text".into(), json!(t.text));
                Value::Object(p)
            }
            ContentPart::OutputText(t) => json!({"type": "text", "text": t.text}),
            ContentPart::InputImage(img) => {
                let Some(url) = &img.image_url else {
                    return Err(ConvertError::unsupported(
                        "images by `file_id` are not supported by a Chat Completions backend; send `image_url`",
                        at,
                    ));
                };
                let mut image = json!({"url": url});
                if let Some(d) = &img.detail {
                    image["detail"] = json!(d);
                }
                let mut p = img.extra.clone();
                p.insert("type".into(), json!("image_url"));
                p.insert("image_url".into(), image);
                Value::Object(p)
            }
            ContentPart::InputFile(f) => {
                let mut file = Map::new();
                for (k, v) in [("file_data", &f.file_data), ("file_id", &f.file_id), ("filename", &f.filename)] {
                    if let Some(v) = v {
                        file.insert(k.into(), json!(v));
                    }
                }
                if f.file_url.is_some() {
                    return Err(ConvertError::unsupported(
                        "files by `file_url` are not supported by a Chat Completions backend; send `file_data`",
                        at,
                    ));
                }
                json!({"type": "file", "file": file})
            }
            ContentPart::Refusal(_) => {
                return Err(ConvertError::unsupported(
                    format!("a refusal part in a {} message", role.as_str()),
                    at,
                ));
            }
            ContentPart::Other(v) => v.clone(),
        });
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests;
