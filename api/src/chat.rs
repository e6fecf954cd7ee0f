//! Chat Completions wire types: request, response and stream chunk.
//!
//! Parsing is lenient where servers differ (missing `created`, usage in the
//! finish chunk, `reasoning_content` or `reasoning`), and everything unknown
//! is kept in `extra`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<Vec<ChatMessage>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_options: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_completion_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_p: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_penalty: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logit_bias: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_logprobs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Vec<ChatTool>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_choice: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_effort: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verbosity: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub safety_identifier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_cache_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modalities: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web_search_options: Option<Value>,
    /// Legacy function calling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub functions: Option<Vec<ChatFunction>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<Value>,
    /// Fields this crate does not model, kept verbatim.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChatRequest {
    opt model: "model",
    opt messages: "messages",
    opt stream: "stream",
    opt stream_options: "stream_options",
    opt max_completion_tokens: "max_completion_tokens",
    opt max_tokens: "max_tokens",
    opt temperature: "temperature",
    opt top_p: "top_p",
    opt presence_penalty: "presence_penalty",
    opt frequency_penalty: "frequency_penalty",
    opt n: "n",
    opt stop: "stop",
    opt seed: "seed",
    opt logit_bias: "logit_bias",
    opt logprobs: "logprobs",
    opt top_logprobs: "top_logprobs",
    opt response_format: "response_format",
    opt tools: "tools",
    opt tool_choice: "tool_choice",
    opt parallel_tool_calls: "parallel_tool_calls",
    opt reasoning_effort: "reasoning_effort",
    opt verbosity: "verbosity",
    opt user: "user",
    opt safety_identifier: "safety_identifier",
    opt prompt_cache_key: "prompt_cache_key",
    opt metadata: "metadata",
    opt store: "store",
    opt service_tier: "service_tier",
    opt modalities: "modalities",
    opt audio: "audio",
    opt prediction: "prediction",
    opt web_search_options: "web_search_options",
    opt functions: "functions",
    opt function_call: "function_call",
});

impl ChatRequest {
    /// The Chat-only parameters this request sets that have no place in a
    /// Responses request, by name: `n` (above 1), `stop`, `seed`,
    /// `logit_bias`, `modalities`, `audio`, `prediction`,
    /// `web_search_options`. A backend that cannot honour one must refuse the
    /// request rather than drop it.
    pub fn chat_only_params(&self) -> Vec<&'static str> {
        let mut set = Vec::new();
        if self.n.is_some_and(|n| n > 1) {
            set.push("n");
        }
        let present = |v: &Option<Value>| v.as_ref().is_some_and(|v| !v.is_null());
        if present(&self.stop) {
            set.push("stop");
        }
        if self.seed.is_some() {
            set.push("seed");
        }
        for (name, v) in [
            ("logit_bias", &self.logit_bias),
            ("modalities", &self.modalities),
            ("audio", &self.audio),
            ("prediction", &self.prediction),
            ("web_search_options", &self.web_search_options),
        ] {
            if present(v) {
                set.push(name);
            }
        }
        set
    }

    /// `stop` as a list of strings.
    pub fn stop_sequences(&self) -> Vec<String> {
        match &self.stop {
            Some(Value::String(s)) => vec![s.clone()],
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the client asked for the usage chunk of a stream.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false)
    }
}

/// One message of a Chat request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatMessage {
    pub role: String,
    /// A string, a list of parts, or null.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ChatToolCall>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    /// Legacy `function_call` on assistant messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<ChatFunctionCall>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChatMessage {
    req role: "role",
    opt content: "content",
    opt name: "name",
    opt tool_calls: "tool_calls",
    opt tool_call_id: "tool_call_id",
    opt refusal: "refusal",
    opt function_call: "function_call",
});

impl ChatMessage {
    /// A message with a role and string content.
    pub fn text(role: &str, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.to_string(),
            content: Some(Value::String(content.into())),
            name: None,
            tool_calls: None,
            tool_call_id: None,
            refusal: None,
            function_call: None,
            extra: Map::new(),
        }
    }
}

/// A tool call in an assistant message or response.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatToolCall {
    #[serde(default)]
    pub id: String,
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    pub function: ChatFunctionCall,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChatToolCall {
    opt id: "id",
    or(function_type()) kind: "type",
    req function: "function",
});

fn function_type() -> String {
    "function".into()
}

/// A function name and its arguments (a JSON text).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatFunctionCall {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub arguments: String,
}

/// A tool definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatTool {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<ChatFunction>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChatTool {
    req kind: "type",
    opt function: "function",
});

/// A function definition (in `tools[].function` or legacy `functions`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatFunction {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict: Option<bool>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChatFunction {
    req name: "name",
    opt description: "description",
    opt parameters: "parameters",
    opt strict: "strict",
});

/// A `chat.completion` response.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatCompletion {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub object: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChatChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChatCompletion {
    opt id: "id",
    opt object: "object",
    opt created: "created",
    opt model: "model",
    opt choices: "choices",
    opt usage: "usage",
});

/// One choice of a `chat.completion`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChoice {
    #[serde(default)]
    pub index: u64,
    pub message: ChatResponseMessage,
    #[serde(default)]
    pub finish_reason: Option<String>,
    #[serde(default)]
    pub logprobs: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChatChoice {
    opt index: "index",
    req message: "message",
    opt finish_reason: "finish_reason",
    opt logprobs: "logprobs",
});

/// The assistant message of a choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatResponseMessage {
    #[serde(default)]
    pub role: Option<String>,
    #[serde(default)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ChatToolCall>>,
    /// Non-standard, widely used (DeepSeek, vLLM, xAI; read by OpenCode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    /// Non-standard synonym some servers use instead of `reasoning_content`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<Vec<Value>>,
    /// Legacy single function call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<ChatFunctionCall>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChatResponseMessage {
    opt role: "role",
    opt content: "content",
    opt refusal: "refusal",
    opt tool_calls: "tool_calls",
    opt reasoning_content: "reasoning_content",
    opt reasoning: "reasoning",
    opt annotations: "annotations",
    opt function_call: "function_call",
});

/// Chat usage.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default)]
    pub total_tokens: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_tokens_details: Option<Map<String, Value>>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChatUsage {
    opt prompt_tokens: "prompt_tokens",
    opt completion_tokens: "completion_tokens",
    opt total_tokens: "total_tokens",
    opt prompt_tokens_details: "prompt_tokens_details",
    opt completion_tokens_details: "completion_tokens_details",
});

impl ChatUsage {
    fn detail(map: &Option<Map<String, Value>>, key: &str) -> u64 {
        map.as_ref()
            .and_then(|m| m.get(key))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    }

    /// `prompt_tokens_details.cached_tokens`, or 0.
    pub fn cached_tokens(&self) -> u64 {
        Self::detail(&self.prompt_tokens_details, "cached_tokens")
    }

    /// `completion_tokens_details.reasoning_tokens`, or 0.
    pub fn reasoning_tokens(&self) -> u64 {
        Self::detail(&self.completion_tokens_details, "reasoning_tokens")
    }
}

/// A `chat.completion.chunk`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChatChunk {
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub created: i64,
    #[serde(default)]
    pub model: String,
    #[serde(default)]
    pub choices: Vec<ChunkChoice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    /// A mid-stream error (`{"error":{...}}` instead of a chunk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChatChunk {
    opt id: "id",
    opt created: "created",
    opt model: "model",
    opt choices: "choices",
    opt usage: "usage",
    opt error: "error",
});

/// One choice of a chunk.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ChunkChoice {
    #[serde(default)]
    pub index: u64,
    #[serde(default)]
    pub delta: Delta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Value>,
    /// Some servers (Groq) put usage on the choice's last chunk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<ChatUsage>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ChunkChoice {
    opt index: "index",
    opt delta: "delta",
    opt finish_reason: "finish_reason",
    opt logprobs: "logprobs",
    opt usage: "usage",
});

/// What a chunk adds to a choice.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refusal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function_call: Option<FunctionCallDelta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(Delta {
    opt role: "role",
    opt content: "content",
    opt refusal: "refusal",
    opt reasoning_content: "reasoning_content",
    opt reasoning: "reasoning",
    opt tool_calls: "tool_calls",
    opt function_call: "function_call",
});

/// A fragment of a tool call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ToolCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub function: Option<FunctionCallDelta>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(ToolCallDelta {
    opt index: "index",
    opt id: "id",
    opt kind: "type",
    opt function: "function",
});

/// A fragment of a function call.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FunctionCallDelta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arguments: Option<String>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

crate::wire::deserialize_with_extra!(FunctionCallDelta {
    opt name: "name",
    opt arguments: "arguments",
});
