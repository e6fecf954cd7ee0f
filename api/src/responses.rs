//! The canonical format: OpenAI Responses / OpenResponses request, items,
//! content parts and response object.
//!
//! Known fields are typed; everything else is kept in `extra` (or, for item,
//! part and tool kinds this crate does not model, in an `Other` variant
//! holding the JSON as-is).

use serde::de::{Error as _, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/responses` body (`CreateResponseBody`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CreateResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<Input>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<Tool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<ToolChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_calls: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<TextConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<ReasoningConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(CreateResponse {
    opt model: "model",
    opt input: "input",
    opt instructions: "instructions",
    opt previous_response_id: "previous_response_id",
    opt include: "include",
    opt tools: "tools",
    opt tool_choice: "tool_choice",
    opt parallel_tool_calls: "parallel_tool_calls",
    opt max_output_tokens: "max_output_tokens",
    opt max_tool_calls: "max_tool_calls",
    opt temperature: "temperature",
    opt top_p: "top_p",
    opt presence_penalty: "presence_penalty",
    opt frequency_penalty: "frequency_penalty",
    opt top_logprobs: "top_logprobs",
    opt text: "text",
    opt reasoning: "reasoning",
    opt stream: "stream",
    opt stream_options: "stream_options",
    opt store: "store",
    opt background: "background",
    opt truncation: "truncation",
    opt service_tier: "service_tier",
    opt metadata: "metadata",
    opt safety_identifier: "safety_identifier",
    opt prompt_cache_key: "prompt_cache_key",
    opt user: "user",
});

impl CreateResponse {
    /// Refuses what a stateless backend that answers every request anew
    /// (`backend` names it in the message) cannot do, rather than drop it:
    /// `previous_response_id`, `background`, `max_tool_calls`,
    /// `truncation: auto`.
    pub fn refuse_stateful(&self, backend: &str) -> Result<(), crate::ConvertError> {
        let refuse = |what: &str, param: &str| {
            Err(crate::ConvertError::unsupported(
                format!("{what} is not supported by {backend}"),
                param,
            ))
        };
        if self.previous_response_id.is_some() {
            return Err(crate::ConvertError::unsupported(
                format!(
                    "`previous_response_id` is not supported by {backend}: send the whole conversation in `input`"
                ),
                "previous_response_id",
            ));
        }
        if self.background == Some(true) {
            return refuse("`background: true`", "background");
        }
        if self.max_tool_calls.is_some() {
            return refuse("`max_tool_calls`", "max_tool_calls");
        }
        if self.truncation.as_deref() == Some("auto") {
            return refuse("`truncation: auto`", "truncation");
        }
        Ok(())
    }

    /// The function tools, with their index in `tools`; built-in tools are
    /// refused naming `backend` (which has only function tools).
    pub fn function_tools(
        &self,
        backend: &str,
    ) -> Result<Vec<(usize, &FunctionTool)>, crate::ConvertError> {
        self.tools
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, tool)| match tool {
                Tool::Function(f) => Ok((i, f)),
                Tool::Other(v) => {
                    let kind = v.get("type").and_then(Value::as_str).unwrap_or("unknown");
                    Err(crate::ConvertError::unsupported(
                        format!(
                            "tools of type {kind:?} are not supported by {backend}; only function tools are"
                        ),
                        format!("tools[{i}]"),
                    ))
                }
            })
            .collect()
    }

    /// The input as a list of items (a string input is one user message).
    pub fn input_items(&self) -> Vec<Item> {
        match &self.input {
            None => Vec::new(),
            Some(Input::Text(text)) => vec![Item::Message(Message {
                id: None,
                role: Role::User,
                content: MessageContent::Text(text.clone()),
                status: None,
                extra: Map::new(),
            })],
            Some(Input::Items(items)) => items.clone(),
        }
    }
}

/// `input`: a string (one user message) or a list of items.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Input {
    Text(String),
    Items(Vec<Item>),
}

impl<'de> Deserialize<'de> for Input {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::wire::text_or_list(
            d,
            "`input`: a string or an array of items",
            "input",
            Input::Text,
            Input::Items,
        )
    }
}

/// A JSON value's kind, for error messages.
pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// An input or output item.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    Message(Message),
    FunctionCall(FunctionCall),
    FunctionCallOutput(FunctionCallOutput),
    Reasoning(Reasoning),
    ItemReference(ItemReference),
    /// An item kind this crate does not model, kept as-is.
    #[serde(untagged)]
    Other(Value),
}

impl<'de> Deserialize<'de> for Item {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Item;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an item: an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Item, A::Error> {
                crate::wire::tagged(map, Item::from_fields, Item::from_value)
            }
        }
        d.deserialize_any(V)
    }
}

impl Item {
    /// The item of kind `tag` from the rest of its object.
    fn from_fields<'de, A: MapAccess<'de>>(tag: &str, map: A) -> Result<Item, A::Error> {
        let typed = |e: A::Error| A::Error::custom(format!("{tag} item: {e}"));
        match tag {
            "message" => Message::visit_fields(map).map(Item::Message),
            "function_call" => FunctionCall::visit_fields(map).map(Item::FunctionCall),
            "function_call_output" => {
                FunctionCallOutput::visit_fields(map).map(Item::FunctionCallOutput)
            }
            "reasoning" => Reasoning::visit_fields(map).map(Item::Reasoning),
            "item_reference" => ItemReference::visit_fields(map).map(Item::ItemReference),
            _ => return crate::wire::rest_as_value(tag, map).map(Item::Other),
        }
        .map_err(typed)
    }

    /// The item a whole object is: one whose `type` did not come first, or
    /// a message without one.
    fn from_value<E: serde::de::Error>(v: Value) -> Result<Item, E> {
        let Some(obj) = v.as_object() else {
            return Err(E::custom(format!(
                "an item must be an object, not {}",
                kind_of(&v)
            )));
        };
        let kind = match obj.get("type") {
            None if obj.contains_key("role") => "message".to_string(),
            None => return Err(E::custom("an item needs a `type`")),
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(E::custom("an item's `type` must be a string")),
        };
        let typed = |r: Result<Item, serde_json::Error>| {
            r.map_err(|e| E::custom(format!("{kind} item: {e}")))
        };
        match kind.as_str() {
            "message" => typed(serde_json::from_value(strip_type(v)).map(Item::Message)),
            "function_call" => typed(serde_json::from_value(strip_type(v)).map(Item::FunctionCall)),
            "function_call_output" => {
                typed(serde_json::from_value(strip_type(v)).map(Item::FunctionCallOutput))
            }
            "reasoning" => typed(serde_json::from_value(strip_type(v)).map(Item::Reasoning)),
            "item_reference" => {
                typed(serde_json::from_value(strip_type(v)).map(Item::ItemReference))
            }
            _ => Ok(Item::Other(v)),
        }
    }
}

/// Removes `type` so that it does not end up in a variant's `extra`.
fn strip_type(mut v: Value) -> Value {
    if let Value::Object(o) = &mut v {
        o.remove("type");
    }
    v
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Assistant,
    System,
    Developer,
}

impl Role {
    /// The role's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Assistant => "assistant",
            Role::System => "system",
            Role::Developer => "developer",
        }
    }
}

/// A `message` item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Message {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub role: Role,
    pub content: MessageContent,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(Message {
    opt id: "id",
    req role: "role",
    req content: "content",
    opt status: "status",
} ignore "type");

impl Message {
    /// The non-empty texts of a system, developer or assistant message, for
    /// providers that take those as plain text (instructions, model turns).
    /// Other parts are refused naming `provider` and `param`.
    pub fn texts(&self, provider: &str, param: &str) -> Result<Vec<String>, crate::ConvertError> {
        let mut texts = Vec::new();
        for part in self.content.parts(self.role) {
            let text = match part {
                ContentPart::InputText(p) => p.text,
                ContentPart::OutputText(p) => p.text,
                ContentPart::Refusal(r) if self.role == Role::Assistant => r.refusal,
                _ => {
                    return Err(crate::ConvertError::unsupported(
                        format!(
                            "{} messages can only hold text for {provider}",
                            self.role.as_str()
                        ),
                        format!("{param}.content"),
                    ));
                }
            };
            if !text.is_empty() {
                texts.push(text);
            }
        }
        Ok(texts)
    }
}

impl Item {
    /// The error for an item a provider cannot take as history (item
    /// references, kinds this crate does not model).
    pub fn unsupported(&self, provider: &str, param: &str) -> crate::ConvertError {
        let kind = match self {
            Item::ItemReference(_) => "item_reference",
            Item::Other(v) => v.get("type").and_then(Value::as_str).unwrap_or("unknown"),
            Item::Message(_) => "message",
            Item::FunctionCall(_) => "function_call",
            Item::FunctionCallOutput(_) => "function_call_output",
            Item::Reasoning(_) => "reasoning",
        };
        crate::ConvertError::unsupported(
            format!("input items of type {kind:?} are not supported by {provider}"),
            param,
        )
    }
}

/// A message's content: a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum MessageContent {
    Text(String),
    Parts(Vec<ContentPart>),
}

impl<'de> Deserialize<'de> for MessageContent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        crate::wire::text_or_list(
            d,
            "`content`: a string or an array of parts",
            "content",
            MessageContent::Text,
            MessageContent::Parts,
        )
    }
}

impl MessageContent {
    /// The parts; a string is one `input_text` (or `output_text` for
    /// assistant messages) part.
    pub fn parts(&self, role: Role) -> Vec<ContentPart> {
        match self {
            MessageContent::Parts(p) => p.clone(),
            MessageContent::Text(t) if role == Role::Assistant => {
                vec![ContentPart::OutputText(OutputText::new(t.clone()))]
            }
            MessageContent::Text(t) => vec![ContentPart::InputText(InputText {
                text: t.clone(),
                extra: Map::new(),
            })],
        }
    }

    /// All text of the content, joined (text parts only).
    pub fn text(&self) -> String {
        match self {
            MessageContent::Text(t) => t.clone(),
            MessageContent::Parts(parts) => parts
                .iter()
                .filter_map(|p| match p {
                    ContentPart::InputText(t) => Some(t.text.as_str()),
                    ContentPart::OutputText(t) => Some(t.text.as_str()),
                    _ => None,
                })
                .collect(),
        }
    }
}

/// A content part of a message (input or output).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ContentPart {
    InputText(InputText),
    InputImage(InputImage),
    InputFile(InputFile),
    OutputText(OutputText),
    Refusal(Refusal),
    /// A part kind this crate does not model (e.g. `input_audio`), as-is.
    #[serde(untagged)]
    Other(Value),
}

impl<'de> Deserialize<'de> for ContentPart {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ContentPart;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a content part: an object with a string `type`")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ContentPart, A::Error> {
                crate::wire::tagged(map, ContentPart::from_fields, ContentPart::from_value)
            }
        }
        d.deserialize_any(V)
    }
}

impl ContentPart {
    /// The part of kind `tag` from the rest of its object.
    fn from_fields<'de, A: MapAccess<'de>>(tag: &str, map: A) -> Result<ContentPart, A::Error> {
        let typed = |e: A::Error| A::Error::custom(format!("{tag} part: {e}"));
        match tag {
            "input_text" => InputText::visit_fields(map).map(ContentPart::InputText),
            "input_image" => InputImage::visit_fields(map).map(ContentPart::InputImage),
            "input_file" => InputFile::visit_fields(map).map(ContentPart::InputFile),
            "output_text" => OutputText::visit_fields(map).map(ContentPart::OutputText),
            "refusal" => Refusal::visit_fields(map).map(ContentPart::Refusal),
            _ => return crate::wire::rest_as_value(tag, map).map(ContentPart::Other),
        }
        .map_err(typed)
    }

    /// The part a whole object is (its `type` did not come first).
    fn from_value<E: serde::de::Error>(v: Value) -> Result<ContentPart, E> {
        let kind = match v.get("type") {
            Some(Value::String(s)) => s.clone(),
            _ => return Err(E::custom("a content part needs a string `type`")),
        };
        let typed = |r: Result<ContentPart, serde_json::Error>| {
            r.map_err(|e| E::custom(format!("{kind} part: {e}")))
        };
        match kind.as_str() {
            "input_text" => {
                typed(serde_json::from_value(strip_type(v)).map(ContentPart::InputText))
            }
            "input_image" => {
                typed(serde_json::from_value(strip_type(v)).map(ContentPart::InputImage))
            }
            "input_file" => {
                typed(serde_json::from_value(strip_type(v)).map(ContentPart::InputFile))
            }
            "output_text" => {
                typed(serde_json::from_value(strip_type(v)).map(ContentPart::OutputText))
            }
            "refusal" => typed(serde_json::from_value(strip_type(v)).map(ContentPart::Refusal)),
            _ => Ok(ContentPart::Other(v)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputText {
    pub text: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(InputText {
    req text: "text",
} ignore "type");

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputImage {
    /// A URL or a `data:` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(InputImage {
    opt image_url: "image_url",
    opt file_id: "file_id",
    opt detail: "detail",
} ignore "type");

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputFile {
    /// Base64 data or a `data:` URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(InputFile {
    opt file_data: "file_data",
    opt file_id: "file_id",
    opt file_url: "file_url",
    opt filename: "filename",
} ignore "type");

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputText {
    pub text: String,
    #[serde(default)]
    pub annotations: Vec<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Vec<Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(OutputText {
    req text: "text",
    opt annotations: "annotations",
    opt logprobs: "logprobs",
} ignore "type");

impl OutputText {
    /// A plain text part.
    pub fn new(text: String) -> Self {
        OutputText {
            text,
            annotations: Vec::new(),
            logprobs: None,
            extra: Map::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Refusal {
    pub refusal: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(Refusal {
    req refusal: "refusal",
} ignore "type");

/// A `function_call` item: the model calls a tool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCall {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub call_id: String,
    pub name: String,
    /// The arguments as a JSON text.
    #[serde(default)]
    pub arguments: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(FunctionCall {
    opt id: "id",
    req call_id: "call_id",
    req name: "name",
    opt arguments: "arguments",
    opt status: "status",
} ignore "type");

impl FunctionCall {
    /// The arguments as a JSON object (`""` counts as `{}`), for providers
    /// that take them parsed; an error names `provider` and `param`.
    pub fn arguments_object(
        &self,
        provider: &str,
        param: &str,
    ) -> Result<Value, crate::ConvertError> {
        if self.arguments.trim().is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        match serde_json::from_str(&self.arguments) {
            Ok(v @ Value::Object(_)) => Ok(v),
            Ok(_) => Err(crate::ConvertError::invalid(
                format!("function call arguments must be a JSON object for {provider}"),
                format!("{param}.arguments"),
            )),
            Err(e) => Err(crate::ConvertError::invalid(
                format!("function call arguments are not JSON: {e}"),
                format!("{param}.arguments"),
            )),
        }
    }
}

/// A `function_call_output` item: the result of a tool call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionCallOutput {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub call_id: String,
    /// A string, or a list of content parts.
    pub output: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(FunctionCallOutput {
    opt id: "id",
    req call_id: "call_id",
    req output: "output",
    opt status: "status",
} ignore "type");

impl FunctionCallOutput {
    /// The output as text: the string, or the text parts joined.
    pub fn output_text(&self) -> String {
        match &self.output {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join(""),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }
}

/// A `reasoning` item. Provider state the client must send back (thought
/// signatures, thinking signatures) travels in `encrypted_content`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reasoning {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default)]
    pub summary: Vec<SummaryText>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(Reasoning {
    opt id: "id",
    opt summary: "summary",
    opt content: "content",
    opt encrypted_content: "encrypted_content",
    opt status: "status",
} ignore "type");

impl Reasoning {
    /// The summary texts joined with blank lines.
    pub fn summary_text(&self) -> String {
        self.summary
            .iter()
            .map(|s| s.text.as_str())
            .collect::<Vec<_>>()
            .join("\n\n")
    }
}

/// A `summary_text` part of a reasoning item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryText {
    #[serde(rename = "type", default = "summary_text")]
    pub kind: String,
    pub text: String,
}

fn summary_text() -> String {
    "summary_text".into()
}

impl SummaryText {
    pub fn new(text: String) -> Self {
        SummaryText {
            kind: summary_text(),
            text,
        }
    }
}

/// An `item_reference` (OpenAI): an item stored server-side.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemReference {
    pub id: String,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ItemReference {
    req id: "id",
} ignore "type");

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Tool {
    Function(FunctionTool),
    /// A built-in or provider tool this crate does not model, as-is.
    #[serde(untagged)]
    Other(Value),
}

impl<'de> Deserialize<'de> for Tool {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Tool;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a tool: an object with a string `type`")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Tool, A::Error> {
                crate::wire::tagged(
                    map,
                    |tag, map| match tag {
                        "function" => FunctionTool::visit_fields(map)
                            .map(Tool::Function)
                            .map_err(|e| A::Error::custom(format!("function tool: {e}"))),
                        _ => crate::wire::rest_as_value(tag, map).map(Tool::Other),
                    },
                    |v| match v.get("type").and_then(Value::as_str) {
                        Some("function") => serde_json::from_value(strip_type(v))
                            .map(Tool::Function)
                            .map_err(|e| A::Error::custom(format!("function tool: {e}"))),
                        Some(_) => Ok(Tool::Other(v)),
                        None => Err(A::Error::custom("a tool needs a string `type`")),
                    },
                )
            }
        }
        d.deserialize_any(V)
    }
}

/// A function tool (`FunctionToolParam`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FunctionTool {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A JSON Schema, passed through untouched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(FunctionTool {
    req name: "name",
    opt description: "description",
    opt parameters: "parameters",
    opt strict: "strict",
} ignore "type");

/// `tool_choice`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(String),
    /// `{"type":"function","name":..}`.
    Function {
        #[serde(rename = "type")]
        kind: FunctionTag,
        name: String,
    },
    /// `{"type":"allowed_tools","mode":..,"tools":[{"type":"function","name":..}]}`.
    AllowedTools {
        #[serde(rename = "type")]
        kind: AllowedToolsTag,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<String>,
        tools: Vec<Value>,
    },
    /// Anything else, as-is.
    Other(Value),
}

impl<'de> Deserialize<'de> for ToolChoice {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        match &v {
            Value::String(s) => Ok(ToolChoice::Mode(s.clone())),
            Value::Object(o) => match o.get("type").and_then(Value::as_str) {
                Some("function") => match o.get("name").and_then(Value::as_str) {
                    Some(name) => Ok(ToolChoice::Function {
                        kind: FunctionTag::Function,
                        name: name.to_string(),
                    }),
                    None => Err(D::Error::custom(
                        "tool_choice of type function needs a `name`",
                    )),
                },
                Some("allowed_tools") => Ok(ToolChoice::AllowedTools {
                    kind: AllowedToolsTag::AllowedTools,
                    mode: o.get("mode").and_then(Value::as_str).map(str::to_string),
                    tools: o
                        .get("tools")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                }),
                _ => Ok(ToolChoice::Other(v)),
            },
            _ => Err(D::Error::custom(format!(
                "`tool_choice` must be a string or an object, not {}",
                kind_of(&v)
            ))),
        }
    }
}

impl ToolChoice {
    /// `{"type":"function","name":name}`.
    pub fn function(name: impl Into<String>) -> Self {
        ToolChoice::Function {
            kind: FunctionTag::Function,
            name: name.into(),
        }
    }

    /// Names of tools an `allowed_tools` choice allows.
    pub fn allowed_names(tools: &[Value]) -> Vec<String> {
        tools
            .iter()
            .filter_map(|t| {
                t.get("name")
                    .or_else(|| t.pointer("/function/name"))
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .collect()
    }
}

/// The literal `"function"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunctionTag {
    Function,
}

/// The literal `"allowed_tools"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowedToolsTag {
    AllowedTools,
}

/// `text`: output format and verbosity.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TextConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<TextFormat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(TextConfig {
    opt format: "format",
    opt verbosity: "verbosity",
});

/// `text.format`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TextFormat {
    Text,
    JsonObject,
    JsonSchema {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        description: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schema: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        strict: Option<bool>,
    },
}

/// `reasoning`: effort and summary preferences.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReasoningConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ReasoningConfig {
    opt effort: "effort",
    opt summary: "summary",
});

/// Token usage of a response.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
    pub total_tokens: u64,
    #[serde(default)]
    pub input_tokens_details: InputTokensDetails,
    #[serde(default)]
    pub output_tokens_details: OutputTokensDetails,
}

impl Usage {
    /// Usage from input and output counts (each including its cached /
    /// reasoning part).
    pub fn new(input: u64, cached: u64, output: u64, reasoning: u64) -> Self {
        Usage {
            input_tokens: input,
            output_tokens: output,
            total_tokens: input + output,
            input_tokens_details: InputTokensDetails {
                cached_tokens: cached,
                extra: Map::new(),
            },
            output_tokens_details: OutputTokensDetails {
                reasoning_tokens: reasoning,
                extra: Map::new(),
            },
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct InputTokensDetails {
    #[serde(default)]
    pub cached_tokens: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(InputTokensDetails {
    opt cached_tokens: "cached_tokens",
});

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OutputTokensDetails {
    #[serde(default)]
    pub reasoning_tokens: u64,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(OutputTokensDetails {
    opt reasoning_tokens: "reasoning_tokens",
});

/// A response object (`ResponseResource`), as translators produce it; the
/// host fills in the fields a client needs and the translator leaves out.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Response {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(default)]
    pub output: Vec<Item>,
    /// Null until known: the schema requires the field.
    #[serde(default)]
    pub usage: Option<Usage>,
    /// Null unless the response is incomplete.
    #[serde(default)]
    pub incomplete_details: Option<Value>,
    /// Null unless the response failed.
    #[serde(default)]
    pub error: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(Response {
    opt id: "id",
    opt status: "status",
    opt output: "output",
    opt usage: "usage",
    opt incomplete_details: "incomplete_details",
    opt error: "error",
    opt created_at: "created_at",
    opt model: "model",
});

impl Response {
    /// The text of the assistant messages in `output`, concatenated (what
    /// the OpenAI SDKs call `output_text`).
    pub fn output_text(&self) -> String {
        let mut text = String::new();
        for item in &self.output {
            let Item::Message(m) = item else { continue };
            match &m.content {
                MessageContent::Text(t) => text.push_str(t),
                MessageContent::Parts(parts) => {
                    for part in parts {
                        if let ContentPart::OutputText(t) = part {
                            text.push_str(&t.text);
                        }
                    }
                }
            }
        }
        text
    }

    /// `incomplete_details.reason`, if any.
    pub fn incomplete_reason(&self) -> Option<&str> {
        self.incomplete_details
            .as_ref()
            .and_then(|d| d.get("reason"))
            .and_then(Value::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn items_round_trip_with_unknown_fields_and_kinds() {
        let input = json!([
            {"role": "user", "content": "hi"},
            {"type": "message", "role": "user", "content": [
                {"type": "input_text", "text": "look", "x_part": 1},
                {"type": "input_image", "image_url": "https://x/y.png", "detail": "high"},
                {"type": "input_audio", "input_audio": {"data": "AAA", "format": "wav"}}
            ], "x_msg": true},
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}", "id": "fc_1"},
            {"type": "function_call_output", "call_id": "c1", "output": "ok"},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "E"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed"}
        ]);
        let parsed: Input = serde_json::from_value(input.clone()).unwrap();
        let Input::Items(items) = &parsed else {
            panic!()
        };
        assert!(matches!(items[0], Item::Message(_)));
        assert!(matches!(items[5], Item::Other(_)));
        let Item::Message(m) = &items[1] else {
            panic!()
        };
        let MessageContent::Parts(parts) = &m.content else {
            panic!()
        };
        assert!(matches!(parts[2], ContentPart::Other(_)));
        let mut back = serde_json::to_value(&parsed).unwrap();
        // The type-less easy message gains its type; nothing else changes.
        back[0].as_object_mut().unwrap().remove("type");
        assert_eq!(back, input);
    }

    #[test]
    fn items_parse_the_same_whether_type_comes_first_or_not() {
        let first = r#"[{"type":"function_call","call_id":"c1","name":"f","arguments":"{}","x_kept":[1,{"a":2}]},
                        {"type":"web_search_call","id":"ws_1","status":"completed"},
                        {"type":"message","role":"user","content":[{"type":"input_text","text":"hi","x_part":true}]}]"#;
        let later = r#"[{"call_id":"c1","name":"f","type":"function_call","arguments":"{}","x_kept":[1,{"a":2}]},
                        {"id":"ws_1","type":"web_search_call","status":"completed"},
                        {"role":"user","content":[{"text":"hi","type":"input_text","x_part":true}],"type":"message"}]"#;
        let a: Input = serde_json::from_str(first).unwrap();
        let b: Input = serde_json::from_str(later).unwrap();
        assert_eq!(a, b);
        let Input::Items(items) = &a else { panic!() };
        let Item::FunctionCall(call) = &items[0] else {
            panic!("{items:?}")
        };
        assert_eq!(call.extra["x_kept"], serde_json::json!([1, {"a": 2}]));
        assert!(!call.extra.contains_key("type"));
        assert!(
            matches!(&items[1], Item::Other(v) if v["type"] == "web_search_call" && v["status"] == "completed")
        );
        // Unknown kinds keep every field, `type` included.
        assert_eq!(
            serde_json::to_value(&items[1]).unwrap(),
            serde_json::json!({"type": "web_search_call", "id": "ws_1", "status": "completed"})
        );
    }

    #[test]
    fn malformed_known_items_are_errors_with_positions() {
        let e = serde_json::from_value::<Input>(
            json!([{"role":"user","content":"a"}, {"type":"function_call","name":"f"}]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("input[1]") && e.contains("call_id"), "{e}");
        let e = serde_json::from_value::<Input>(json!(42))
            .unwrap_err()
            .to_string();
        assert!(e.contains("string or an array"), "{e}");
        let e = serde_json::from_value::<Input>(
            json!([{"role":"user","content":[{"type":"input_text"}]}]),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("content[0]") && e.contains("text"), "{e}");
    }

    #[test]
    fn request_keeps_unknown_top_level_fields() {
        let body = json!({"model": "m", "input": "hi", "top_k": 5, "tool_choice": {"type": "function", "name": "f"},
                          "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}}});
        let req: CreateResponse = serde_json::from_value(body.clone()).unwrap();
        assert_eq!(req.extra["top_k"], 5);
        assert_eq!(req.tool_choice, Some(ToolChoice::function("f")));
        assert_eq!(serde_json::to_value(&req).unwrap(), body);
    }
}
