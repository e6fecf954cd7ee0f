//! Tools a function-only provider has no kind for, lowered to function
//! tools and lifted back on the answer.
//!
//! Agents offer more than function tools. Codex sends `namespace` tools
//! (function tools grouped under a name, whose calls come back with
//! `namespace` and the short `name`), `custom` (freeform) tools whose calls
//! carry one string `input` instead of JSON arguments, and hosted tools such
//! as `web_search`. Chat Completions, Gemini and Claude take function tools
//! only, so [`lower`] rewrites the canonical request before a translator maps
//! it:
//!
//! - each function of a namespace becomes a function tool named
//!   `{namespace}__{name}` - or, when that is not a name every provider takes
//!   (`[A-Za-z_][A-Za-z0-9_-]{0,63}`) or clashes with another tool, a
//!   shortened name ending in a hash of both - deterministically, so every
//!   turn gets the same names;
//! - a custom tool becomes a function tool taking `{"input": string}`, with
//!   its grammar or format described to the model in the description;
//! - hosted tools are handed to the translator when it has an equivalent
//!   ([`Lowered::hosted`]); otherwise they are left out (the default,
//!   [`HostedTools::Drop`]) or refused ([`HostedTools::Reject`]). A
//!   `tool_choice` forcing a left-out tool is refused either way;
//! - replayed calls get the same treatment: a `function_call` with a
//!   `namespace`, `custom_tool_call` and `custom_tool_call_output` items
//!   become plain function calls and outputs; records of hosted calls
//!   (`web_search_call`, ...) are left out - their results are already in the
//!   assistant's text.
//!
//! [`ToolNames`] (kept in the translator's `state`) lifts the calls in the
//! answer back: [`ToolNames::restore_item`] for whole items and
//! [`Restorer`] for a stream, whose argument deltas of custom calls are
//! dropped (the finished item carries the input).

use crate::ConvertError;
use crate::responses::{CreateResponse, FunctionCall, FunctionCallOutput, FunctionTool, Item};
use crate::responses::{Tool, ToolChoice};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::collections::HashSet;

/// What a backend does with a hosted tool it has no equivalent for
/// (setting `hosted_tools`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HostedTools {
    /// Leave the offer out; the model never sees the tool.
    #[default]
    Drop,
    /// Refuse the request (400 `unsupported_parameter`).
    Reject,
}

/// The longest name every provider takes (OpenAI and Gemini: 64).
pub const MAX_NAME: usize = 64;

/// Item kinds that only record a hosted tool's work and need no answer.
const HOSTED_RECORDS: &[&str] = &[
    "web_search_call",
    "file_search_call",
    "code_interpreter_call",
    "image_generation_call",
    "mcp_list_tools",
    "mcp_call",
    // Tools the client runs itself, offered only to Responses backends; a
    // conversation that moved here may still hold their calls.
    "tool_search_call",
    "tool_search_output",
    "local_shell_call",
    "local_shell_call_output",
];

/// How one tool was renamed for the provider.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Renamed {
    /// The name the provider sees.
    flat: String,
    /// The client's (short) name.
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    /// A custom tool: calls carry `{"input": ..}`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    custom: bool,
}

/// The tools [`lower`] renamed, to lift the calls of the answer back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolNames {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    renamed: Vec<Renamed>,
}

/// The result of [`lower`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Lowered {
    /// How to lift the answer's calls back (put it in the translator state).
    pub names: ToolNames,
    /// The hosted tools the translator said it maps, as the client sent them.
    pub hosted: Vec<Value>,
}

fn tool_type(v: &Value) -> &str {
    v.get("type").and_then(Value::as_str).unwrap_or("unknown")
}

/// Whether every provider takes `name` as a function name.
pub fn portable_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// FNV-1a of the parts, for short stable suffixes.
fn hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The provider name for `name` in `namespace`: `{namespace}__{name}` when
/// that is portable and free, else a portable prefix of it plus a hash.
fn flat_name(namespace: Option<&str>, name: &str, taken: &HashSet<String>) -> String {
    let joined = match namespace {
        Some(ns) => format!("{ns}__{name}"),
        None => name.to_string(),
    };
    if portable_name(&joined) && !taken.contains(&joined) {
        return joined;
    }
    let mut stem: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME - 9)
        .collect();
    if !stem.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
        stem.insert(0, '_');
        stem.truncate(MAX_NAME - 9);
    }
    let mut salt = 0u32;
    loop {
        let salt_text = salt.to_string();
        let h = hash(&[namespace.unwrap_or(""), name, &salt_text]) & 0xffff_ffff;
        let candidate = format!("{stem}_{h:08x}");
        if !taken.contains(&candidate) {
            return candidate;
        }
        salt += 1;
    }
}

/// The description of a custom tool's function: its own, then what `input`
/// must look like.
fn custom_description(tool: &Value) -> String {
    let mut text = tool
        .get("description")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim_end()
        .to_string();
    if !text.is_empty() {
        text.push_str("\n\n");
    }
    text.push_str(
        "Call this tool with one argument, `input`: the tool's raw text input as one string (not JSON).",
    );
    let format = tool.get("format");
    if format.and_then(|f| f.get("type")).and_then(Value::as_str) == Some("grammar") {
        let syntax = format
            .and_then(|f| f.get("syntax"))
            .and_then(Value::as_str)
            .unwrap_or("lark");
        let definition = format
            .and_then(|f| f.get("definition"))
            .and_then(Value::as_str)
            .unwrap_or("");
        text.push_str(&format!(
            " The input must match this {syntax} grammar exactly:\n```\n{definition}\n```"
        ));
    }
    text
}

fn custom_function(flat: &str, tool: &Value) -> FunctionTool {
    FunctionTool {
        name: flat.to_string(),
        description: Some(custom_description(tool)),
        parameters: Some(json!({
            "type": "object",
            "properties": {"input": {"type": "string", "description": "The raw input."}},
            "required": ["input"],
            "additionalProperties": false
        })),
        strict: None,
        extra: Map::new(),
    }
}

impl ToolNames {
    /// Nothing was renamed: answers need no lifting.
    pub fn is_empty(&self) -> bool {
        self.renamed.is_empty()
    }

    fn by_flat(&self, flat: &str) -> Option<&Renamed> {
        self.renamed.iter().find(|r| r.flat == flat)
    }

    fn by_client(&self, namespace: Option<&str>, name: &str) -> Option<&Renamed> {
        self.renamed
            .iter()
            .find(|r| r.namespace.as_deref() == namespace && r.name == name)
    }

    /// The provider's name for a replayed call of `name` in `namespace`.
    fn flat_for(&self, namespace: Option<&str>, name: &str) -> String {
        match self.by_client(namespace, name) {
            Some(r) => r.flat.clone(),
            None if namespace.is_some() => flat_name(namespace, name, &HashSet::new()),
            None => name.to_string(),
        }
    }

    /// Lifts one answer item (JSON) back to what the client offered: a
    /// call of a flattened namespace tool regains `namespace` and its short
    /// `name`; a call of a custom tool becomes a `custom_tool_call`. Returns
    /// whether the item is a custom tool call.
    pub fn restore_item(&self, item: &mut Value) -> bool {
        if self.is_empty() || tool_type(item) != "function_call" {
            return false;
        }
        let Some(obj) = item.as_object_mut() else {
            return false;
        };
        let Some(renamed) = obj
            .get("name")
            .and_then(Value::as_str)
            .and_then(|n| self.by_flat(n))
        else {
            return false;
        };
        obj.insert("name".into(), json!(renamed.name));
        if let Some(ns) = &renamed.namespace {
            obj.insert("namespace".into(), json!(ns));
        }
        if !renamed.custom {
            return false;
        }
        let arguments = obj
            .remove("arguments")
            .and_then(|a| a.as_str().map(str::to_string))
            .unwrap_or_default();
        // The model was asked for `{"input": "..."}`; anything else is
        // passed on as it came.
        let input = match serde_json::from_str::<Value>(&arguments) {
            Ok(Value::Object(mut args)) => match args.remove("input") {
                Some(Value::String(s)) => s,
                Some(other) => other.to_string(),
                None => arguments,
            },
            _ => arguments,
        };
        obj.insert("type".into(), json!("custom_tool_call"));
        obj.insert("input".into(), json!(input));
        true
    }

    /// Lifts the `output` items of a response object (JSON).
    pub fn restore_response(&self, response: &mut Value) {
        if self.is_empty() {
            return;
        }
        if let Some(Value::Array(items)) = response.get_mut("output") {
            for item in items {
                self.restore_item(item);
            }
        }
    }

    /// [`ToolNames::restore_response`] on a serialized response.
    pub fn restore_response_bytes(&self, body: Vec<u8>) -> Vec<u8> {
        if self.is_empty() {
            return body;
        }
        match serde_json::from_slice::<Value>(&body) {
            Ok(mut v) => {
                self.restore_response(&mut v);
                serde_json::to_vec(&v).unwrap_or(body)
            }
            Err(_) => body,
        }
    }
}

/// Lifts a canonical event stream's calls back (see [`ToolNames`]).
#[derive(Debug, Clone, Default)]
pub struct Restorer {
    names: ToolNames,
    /// Item ids of custom tool calls, whose argument events are dropped.
    custom: HashSet<String>,
}

impl Restorer {
    pub fn new(names: ToolNames) -> Self {
        Restorer {
            names,
            custom: HashSet::new(),
        }
    }

    /// One event; `false` when it must be dropped.
    pub fn event(&mut self, event: &mut Value) -> bool {
        let kind = tool_type(event).to_string();
        match kind.as_str() {
            "response.output_item.added" | "response.output_item.done" => {
                if let Some(item) = event.get_mut("item")
                    && self.names.restore_item(item)
                {
                    if kind.ends_with("added") {
                        // The finished item carries the whole input.
                        item["input"] = json!("");
                    }
                    if let Some(id) = item.get("id").and_then(Value::as_str) {
                        self.custom.insert(id.to_string());
                    }
                }
                true
            }
            "response.function_call_arguments.delta" | "response.function_call_arguments.done" => {
                let id = event.get("item_id").and_then(Value::as_str).unwrap_or("");
                if self.custom.contains(id) {
                    return false;
                }
                if let Some(r) = event
                    .get("name")
                    .and_then(Value::as_str)
                    .and_then(|n| self.names.by_flat(n))
                {
                    event["name"] = json!(r.name);
                }
                true
            }
            _ => {
                if let Some(response) = event.get_mut("response") {
                    self.names.restore_response(response);
                }
                true
            }
        }
    }

    /// Events as JSON values, lifted; those to drop removed.
    pub fn events(&mut self, mut events: Vec<Value>) -> Vec<Value> {
        if !self.names.is_empty() {
            events.retain_mut(|e| self.event(e));
        }
        events
    }

    /// Events as JSON texts, lifted; only events that can hold a call are
    /// parsed.
    pub fn event_texts(&mut self, events: Vec<String>) -> Vec<String> {
        if self.names.is_empty() {
            return events;
        }
        events
            .into_iter()
            .filter_map(|text| {
                // Argument deltas only matter for custom calls (dropped).
                let interesting = if text.contains("function_call_arguments") {
                    self.custom.iter().any(|id| text.contains(id.as_str()))
                } else {
                    text.contains("function_call")
                };
                if !interesting {
                    return Some(text);
                }
                let Ok(mut v) = serde_json::from_str::<Value>(&text) else {
                    return Some(text);
                };
                self.event(&mut v).then(|| v.to_string())
            })
            .collect()
    }
}

/// Whether `tool` is OpenAI's web search, in any of its versions.
pub fn is_web_search(tool: &Value) -> bool {
    matches!(
        tool_type(tool),
        "web_search"
            | "web_search_2025_08_26"
            | "web_search_preview"
            | "web_search_preview_2025_03_11"
    )
}

/// Inserts `tool` into the `tools` list of a provider request `body`
/// (created when missing) at `index`, or at the end when `None`.
pub fn insert_tool(body: &mut Value, tool: Value, index: Option<usize>) {
    let Some(obj) = body.as_object_mut() else {
        return;
    };
    if let Some(list) = obj
        .entry("tools")
        .or_insert_with(|| json!([]))
        .as_array_mut()
    {
        let at = index.unwrap_or(list.len()).min(list.len());
        list.insert(at, tool);
    }
}

/// Whether `req` offers any tool the model calls itself (function, custom
/// or namespace), as opposed to hosted tools only.
pub fn offers_functions(req: &CreateResponse) -> bool {
    req.tools.iter().flatten().any(|t| match t {
        Tool::Function(_) => true,
        Tool::Other(v) => !hosted_kind(tool_type(v)),
    })
}

fn unsupported(message: String, param: String) -> ConvertError {
    ConvertError::unsupported(message, param)
}

/// Lowers `req`'s tools, `tool_choice` and replayed items for `provider`,
/// which takes function tools and the hosted tools for which `maps` says
/// yes. See the module docs.
pub fn lower(
    req: &mut CreateResponse,
    provider: &str,
    policy: HostedTools,
    maps: impl Fn(&Value) -> bool,
) -> Result<Lowered, ConvertError> {
    let mut out = Lowered::default();
    if !needs_lowering(req) {
        return Ok(out);
    }
    let mut dropped: Vec<String> = Vec::new();
    if let Some(tools) = req.tools.take() {
        // Plain function names first: flattened names must not take them.
        let mut taken: HashSet<String> = tools
            .iter()
            .filter_map(|t| match t {
                Tool::Function(f) => Some(f.name.clone()),
                _ => None,
            })
            .collect();
        let mut lowered = Vec::with_capacity(tools.len());
        for (i, tool) in tools.into_iter().enumerate() {
            let v = match tool {
                Tool::Function(f) => {
                    lowered.push(Tool::Function(f));
                    continue;
                }
                Tool::Other(v) => v,
            };
            match tool_type(&v) {
                "namespace" => {
                    let Some(ns) = v.get("name").and_then(Value::as_str) else {
                        return Err(ConvertError::invalid(
                            "a namespace tool needs a `name`",
                            format!("tools[{i}].name"),
                        ));
                    };
                    let inner = v.get("tools").and_then(Value::as_array);
                    for (j, t) in inner.into_iter().flatten().enumerate() {
                        let at = format!("tools[{i}].tools[{j}]");
                        let name = t.get("name").and_then(Value::as_str).ok_or_else(|| {
                            ConvertError::invalid("a tool needs a `name`", format!("{at}.name"))
                        })?;
                        let flat = flat_name(Some(ns), name, &taken);
                        taken.insert(flat.clone());
                        let custom = match tool_type(t) {
                            "function" => {
                                let mut f: FunctionTool = serde_json::from_value(t.clone())
                                    .map_err(|e| {
                                        ConvertError::invalid(format!("function tool: {e}"), &at)
                                    })?;
                                f.extra.remove("type");
                                f.name = flat.clone();
                                lowered.push(Tool::Function(f));
                                false
                            }
                            "custom" => {
                                lowered.push(Tool::Function(custom_function(&flat, t)));
                                true
                            }
                            other => {
                                return Err(unsupported(
                                    format!(
                                        "tools of type {other:?} inside a namespace are not supported by {provider}"
                                    ),
                                    at,
                                ));
                            }
                        };
                        out.names.renamed.push(Renamed {
                            flat,
                            name: name.to_string(),
                            namespace: Some(ns.to_string()),
                            custom,
                        });
                    }
                }
                "custom" => {
                    let Some(name) = v.get("name").and_then(Value::as_str) else {
                        return Err(ConvertError::invalid(
                            "a custom tool needs a `name`",
                            format!("tools[{i}].name"),
                        ));
                    };
                    // A custom tool keeps its name unless a function has it.
                    let flat = flat_name(None, name, &taken);
                    taken.insert(flat.clone());
                    lowered.push(Tool::Function(custom_function(&flat, &v)));
                    out.names.renamed.push(Renamed {
                        flat,
                        name: name.to_string(),
                        namespace: None,
                        custom: true,
                    });
                }
                _ if maps(&v) => out.hosted.push(v),
                kind => match policy {
                    HostedTools::Drop => dropped.push(kind.to_string()),
                    HostedTools::Reject => {
                        return Err(unsupported(
                            format!(
                                "tools of type {kind:?} are not supported by {provider}; only function, custom and namespace tools are (set hosted_tools = \"drop\" to leave such tools out)"
                            ),
                            format!("tools[{i}]"),
                        ));
                    }
                },
            }
        }
        // No tool left (hosted ones dropped): none is sent.
        req.tools = (!lowered.is_empty() || !out.hosted.is_empty()).then_some(lowered);
    }
    lower_choice(req, &out, &dropped, provider)?;
    if let Some(crate::responses::Input::Items(items)) = &mut req.input {
        let taken = std::mem::take(items);
        items.extend(
            taken
                .into_iter()
                .filter_map(|item| lower_item(item, &out.names)),
        );
    }
    Ok(out)
}

/// Whether anything in `req` is not a plain function tool, call or choice
/// (the common case costs one look at each tool and item).
fn needs_lowering(req: &CreateResponse) -> bool {
    let tools = req
        .tools
        .iter()
        .flatten()
        .any(|t| matches!(t, Tool::Other(_)));
    let choice = matches!(
        req.tool_choice,
        Some(ToolChoice::Other(_) | ToolChoice::AllowedTools { .. })
    );
    let items = match &req.input {
        Some(crate::responses::Input::Items(items)) => items.iter().any(|i| match i {
            Item::Other(_) => true,
            Item::FunctionCall(c) => c.extra.contains_key("namespace"),
            _ => false,
        }),
        _ => false,
    };
    tools || choice || items
}

/// Whether `kind` names a hosted tool (not function, custom or namespace).
fn hosted_kind(kind: &str) -> bool {
    !matches!(kind, "function" | "custom" | "namespace")
}

fn lower_choice(
    req: &mut CreateResponse,
    out: &Lowered,
    dropped: &[String],
    provider: &str,
) -> Result<(), ConvertError> {
    let names = &out.names;
    let hosted_mapped = |kind: &str| out.hosted.iter().any(|h| tool_type(h) == kind);
    let refuse = |kind: &str| {
        unsupported(
            format!(
                "tool_choice forces the hosted tool {kind:?}, which {provider} does not have; it was left out of `tools`"
            ),
            "tool_choice".into(),
        )
    };
    let no_tools = req.tools.is_none() && out.hosted.is_empty();
    let choice = match req.tool_choice.take() {
        None => return Ok(()),

        Some(ToolChoice::Other(v)) => match tool_type(&v) {
            "custom" => match v.get("name").and_then(Value::as_str) {
                Some(name) => ToolChoice::function(names.flat_for(None, name)),
                None => ToolChoice::Other(v),
            },
            kind if hosted_mapped(kind) => ToolChoice::Mode("auto".into()),
            kind if dropped.iter().any(|d| d == kind) || hosted_kind(kind) => {
                return Err(refuse(kind));
            }
            _ => ToolChoice::Other(v),
        },
        // A forced function keeps its name: plain functions are never renamed.
        Some(ToolChoice::AllowedTools { kind, mode, tools }) => {
            let tools = tools
                .into_iter()
                .filter_map(|t| {
                    let name = t.get("name").and_then(Value::as_str);
                    match (tool_type(&t), name) {
                        ("function", Some(name)) => match t.get("namespace").and_then(Value::as_str) {
                            Some(ns) => Some(json!({"type": "function", "name": names.flat_for(Some(ns), name)})),
                            None => Some(t),
                        },
                        ("custom", Some(name)) => {
                            Some(json!({"type": "function", "name": names.flat_for(None, name)}))
                        }
                        (k, _) if hosted_kind(k) && k != "unknown" => None,
                        _ => Some(t),
                    }
                })
                .collect::<Vec<Value>>();
            if tools.is_empty() {
                // Only left-out tools were allowed.
                ToolChoice::Mode("none".into())
            } else {
                ToolChoice::AllowedTools { kind, mode, tools }
            }
        }
        Some(other) => other,
    };
    if no_tools && !dropped.is_empty() {
        // Every tool was left out: a choice among none is no choice (and
        // upstreams refuse one without tools); requiring a call forces a
        // tool that is not there.
        return match choice {
            ToolChoice::Mode(m) if m == "required" => Err(refuse(&dropped[0])),
            _ => Ok(()),
        };
    }
    req.tool_choice = Some(choice);
    Ok(())
}

/// One replayed input item, lowered; `None` to leave it out.
fn lower_item(item: Item, names: &ToolNames) -> Option<Item> {
    match item {
        Item::FunctionCall(mut call) => {
            if let Some(Value::String(ns)) = call.extra.remove("namespace") {
                call.name = names.flat_for(Some(&ns), &call.name);
            }
            Some(Item::FunctionCall(call))
        }
        Item::Other(v) => match tool_type(&v) {
            "custom_tool_call" => {
                let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
                let name = s("name").unwrap_or_default();
                let ns = s("namespace");
                let input = s("input").unwrap_or_default();
                Some(Item::FunctionCall(FunctionCall {
                    id: s("id"),
                    call_id: s("call_id").unwrap_or_default(),
                    name: names.flat_for(ns.as_deref(), &name),
                    arguments: json!({ "input": input }).to_string(),
                    status: s("status"),
                    extra: Map::new(),
                }))
            }
            "custom_tool_call_output" => Some(Item::FunctionCallOutput(FunctionCallOutput {
                id: v.get("id").and_then(Value::as_str).map(str::to_string),
                call_id: v
                    .get("call_id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                output: v.get("output").cloned().unwrap_or(Value::Null),
                status: None,
                extra: Map::new(),
            })),
            kind if HOSTED_RECORDS.contains(&kind) => None,
            _ => Some(Item::Other(v)),
        },
        other => Some(other),
    }
}

#[cfg(test)]
mod tests;
