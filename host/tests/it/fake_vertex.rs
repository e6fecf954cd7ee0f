//! A strict in-process Vertex AI (Gemini `generateContent` /
//! `streamGenerateContent?alt=sse`) and the OAuth token endpoint that issues
//! the tokens it accepts.
//!
//! Like Vertex it rejects unknown fields at every level it knows, `id` on
//! function calls and responses, empty text parts and empty `parts`, wrong
//! or repeated roles, a conversation that does not start with the user,
//! function responses that do not pair up with the calls before them,
//! `$schema` in schemas, both thinking knobs at once, and - on Gemini 3 -
//! function calls of the current turn without a thought signature it issued
//! (or Google's documented placeholder). It also checks the bearer token,
//! the project and the location. Claude models (`publishers/anthropic`) are
//! served by [`crate::fake_claude`]; `/media/*` serves files for the proxy
//! to download.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub const PROJECT: &str = "test-proj";
pub const LOCATION: &str = "us-east5";
pub const PLACEHOLDER: &str = "skip_thought_signature_validator";

#[derive(Default)]
struct Inner {
    /// Tokens issued and still accepted.
    tokens: HashSet<String>,
    /// Signatures issued.
    signatures: HashSet<String>,
    /// Request bodies received (after validation), with the URL path.
    received: Vec<(String, Value)>,
    /// Signatures that came back on function calls.
    replayed: Vec<String>,
    token_requests: usize,
    /// Every request other than token requests, as `METHOD path?query`,
    /// before any check.
    hits: Vec<String>,
    /// Claude thinking signatures issued, with their exact thinking text.
    claude_thinking: std::collections::HashMap<String, String>,
    /// Claude thinking signatures and redacted data that came back.
    claude_replayed: Vec<String>,
}

#[derive(Clone, Default)]
pub struct FakeVertex {
    pub base_url: String,
    /// `host:port`, for GCE_METADATA_HOST.
    pub host: String,
    pub token_uri: String,
    inner: Arc<Mutex<Inner>>,
    counter: Arc<AtomicUsize>,
}

impl FakeVertex {
    pub async fn start() -> FakeVertex {
        let mut fake = FakeVertex::default();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(fake.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        fake.base_url = format!("http://{addr}");
        fake.host = addr.to_string();
        fake.token_uri = format!("http://{addr}/token");
        fake
    }

    /// An authorized_user credentials file whose `token_uri` is this fake.
    pub fn credentials_file(&self) -> std::path::PathBuf {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!(
            "llmproxy-vertex-{}-{n}-{}",
            std::process::id(),
            self.base_url.replace([':', '/', '.'], "_")
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("adc.json");
        let file = json!({"type": "authorized_user", "client_id": "cid", "client_secret": "cs",
                          "refresh_token": "rt-secret-refresh", "token_uri": self.token_uri});
        std::fs::write(&path, file.to_string()).unwrap();
        path
    }

    /// A proxy config with one gcp-vertex backend on this fake.
    pub fn config(&self, settings_extra: &str) -> String {
        format!(
            "[[backends]]\nname = \"vertex\"\nkind = \"gcp-vertex\"\nbase_url = \"{}\"\nmodels = [\"*\"]\nauth = {{ gcp_credentials_file = {:?} }}\nsettings = {{ project = \"{PROJECT}\", location = \"{LOCATION}\"{settings_extra} }}\n",
            self.base_url,
            self.credentials_file().display().to_string()
        )
    }

    /// Revokes every token issued so far (as if they expired).
    pub fn revoke_tokens(&self) {
        self.inner.lock().unwrap().tokens.clear();
    }

    /// Every request that reached it (token requests aside), checked or not.
    pub fn hits(&self) -> Vec<String> {
        self.inner.lock().unwrap().hits.clone()
    }

    pub fn token_requests(&self) -> usize {
        self.inner.lock().unwrap().token_requests
    }

    pub fn received(&self) -> Vec<(String, Value)> {
        self.inner.lock().unwrap().received.clone()
    }

    pub fn last(&self) -> (String, Value) {
        self.received().pop().expect("Vertex received nothing")
    }

    /// Signatures that came back on function calls (placeholders included).
    pub fn replayed(&self) -> Vec<String> {
        self.inner.lock().unwrap().replayed.clone()
    }

    pub fn record(&self, path: &str, body: &Value) {
        let mut inner = self.inner.lock().unwrap();
        inner.received.push((path.to_string(), body.clone()));
    }

    pub fn next(&self) -> usize {
        self.counter.fetch_add(1, Ordering::SeqCst)
    }

    /// A Claude thinking signature for exactly this thinking text.
    pub fn issue_claude_signature(&self, thinking: &str) -> String {
        let sig = format!("EqQB-claude-sig-{}+/=", self.next());
        let mut inner = self.inner.lock().unwrap();
        inner
            .claude_thinking
            .insert(sig.clone(), thinking.to_string());
        sig
    }

    pub fn claude_thinking(&self, signature: &str) -> Option<String> {
        self.inner
            .lock()
            .unwrap()
            .claude_thinking
            .get(signature)
            .cloned()
    }

    pub fn note_replayed(&self, signature: &str) {
        let mut inner = self.inner.lock().unwrap();
        inner.claude_replayed.push(signature.to_string());
    }

    /// Claude thinking signatures (and redacted data) sent back to it.
    pub fn claude_replayed(&self) -> Vec<String> {
        self.inner.lock().unwrap().claude_replayed.clone()
    }

    fn issue_signature(&self, kind: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let sig = format!("SIG-{kind}-{n}-{}", "x".repeat(200));
        self.inner.lock().unwrap().signatures.insert(sig.clone());
        sig
    }
}

fn google_error(status: u16, google: &str, message: &str) -> Response {
    let body = json!({"error": {"code": status, "message": message, "status": google}});
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn bad(message: &str) -> Response {
    google_error(400, "INVALID_ARGUMENT", message)
}

async fn handle(State(fake): State<FakeVertex>, request: Request) -> Response {
    let request_method = request.method().to_string();
    let request_uri = request.uri().to_string();
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let headers = request.headers().clone();
    let raw = axum::body::to_bytes(request.into_body(), usize::MAX)
        .await
        .unwrap();
    if path == "/computeMetadata/v1/instance/service-accounts/default/token" {
        if headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
            return Response::builder()
                .status(403)
                .body(Body::from("Missing Metadata-Flavor:Google header"))
                .unwrap();
        }
        return issue_token(&fake);
    }
    if path == "/token" {
        let body = String::from_utf8_lossy(&raw);
        if !body.contains("grant_type=refresh_token")
            || !body.contains("refresh_token=rt-secret-refresh")
        {
            return Response::builder()
                .status(400)
                .body(Body::from(r#"{"error":"invalid_grant"}"#))
                .unwrap();
        }
        return issue_token(&fake);
    }
    if let Some(name) = path.strip_prefix("/media/") {
        // Files for the proxy to download (no credentials involved).
        return match name {
            "cat.png" => Response::builder()
                .header("content-type", "image/png")
                .body(Body::from(&b"\x89PNG\r\n\x1a\nfake-png"[..]))
                .unwrap(),
            "photo" => Response::builder()
                .header("content-type", "application/octet-stream")
                .body(Body::from(&b"\xff\xd8\xff\xe0fake-jpeg"[..]))
                .unwrap(),
            _ if name.ends_with(".png")
                && (name.starts_with("big-") || name.starts_with("slow-")) =>
            {
                // `big-<bytes>.png`: a PNG of that many bytes; `slow-...`
                // sends it after 400 ms.
                let (slow, size) = name[..name.len() - 4].split_once('-').unwrap();
                let n: usize = size.parse().unwrap_or(0);
                let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
                png.resize(n.max(8), 0);
                let len = png.len();
                let delay = if slow == "slow" { 400 } else { 0 };
                let body = futures_util::stream::once(async move {
                    tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
                    Ok::<_, std::convert::Infallible>(bytes::Bytes::from(png))
                });
                Response::builder()
                    .header("content-type", "image/png")
                    .header("content-length", len)
                    .body(Body::from_stream(body))
                    .unwrap()
            }
            _ if name.starts_with("trickle-") && name.ends_with(".png") => {
                // `trickle-<bytes>.png`: that many bytes, one per chunk, with
                // no Content-Length.
                let n: usize = name[8..name.len() - 4].parse().unwrap_or(0);
                let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
                png.resize(n.max(8), 0);
                let body = futures_util::stream::iter(
                    png.into_iter()
                        .map(|b| Ok::<_, std::convert::Infallible>(bytes::Bytes::from(vec![b]))),
                );
                Response::builder()
                    .header("content-type", "image/png")
                    .body(Body::from_stream(body))
                    .unwrap()
            }
            "huge.png" => Response::builder()
                .header("content-type", "image/png")
                .body(Body::from(vec![0u8; 2 << 20]))
                .unwrap(),
            _ => Response::builder().status(404).body(Body::empty()).unwrap(),
        };
    }
    fake.inner
        .lock()
        .unwrap()
        .hits
        .push(format!("{} {}", request_method, request_uri));
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !fake.inner.lock().unwrap().tokens.contains(bearer) {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token.",
        );
    }
    if request_method == "GET"
        && let Some(publisher) = path
            .strip_prefix("/v1beta1/publishers/")
            .and_then(|p| p.strip_suffix("/models"))
    {
        return list_models(publisher, &query);
    }
    let claude =
        format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/anthropic/models/");
    if let Some((model, method)) = path.strip_prefix(&claude).and_then(|r| r.split_once(':')) {
        return crate::fake_claude::handle(&fake, model, method, &raw);
    }
    let prefix = format!("/v1/projects/{PROJECT}/locations/{LOCATION}/publishers/google/models/");
    let Some(rest) = path.strip_prefix(&prefix) else {
        return google_error(404, "NOT_FOUND", &format!("unknown path {path}"));
    };
    let Some((model, method)) = rest.split_once(':') else {
        return google_error(404, "NOT_FOUND", "no method");
    };
    if method == "countTokens" {
        return count_tokens(&fake, &path, &raw);
    }
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" if query == "alt=sse" => true,
        _ => {
            return google_error(
                404,
                "NOT_FOUND",
                &format!("unknown method {method}?{query}"),
            );
        }
    };
    if headers.get("content-type").and_then(|v| v.to_str().ok()) != Some("application/json") {
        return bad("content-type must be application/json");
    }
    let body: Value = match serde_json::from_slice(&raw) {
        Ok(v) => v,
        Err(e) => return bad(&format!("Invalid JSON payload received. {e}")),
    };
    if let Err(message) = validate(&fake, model, &body) {
        return bad(&message);
    }
    fake.inner
        .lock()
        .unwrap()
        .received
        .push((path.clone(), body.clone()));
    answer(&fake, model, &body, stream)
}

/// `countTokens`: contents, system instruction and tools only (Vertex
/// refuses other fields there); four bytes of them per token.
fn count_tokens(fake: &FakeVertex, path: &str, raw: &[u8]) -> Response {
    let body: Value = match serde_json::from_slice(raw) {
        Ok(v) => v,
        Err(e) => return bad(&format!("Invalid JSON payload received. {e}")),
    };
    let allowed = ["contents", "systemInstruction", "tools", "generationConfig"];
    if let Some(k) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str())))
    {
        return bad(&format!(
            "Invalid JSON payload received. Unknown name \"{k}\": Cannot find field."
        ));
    }
    if body["contents"].as_array().is_none_or(Vec::is_empty) {
        return bad("contents is required");
    }
    fake.record(path, &body);
    let n = (body["contents"].to_string().len() + body["systemInstruction"].to_string().len()) / 4;
    json_response(json!({"totalTokens": n, "totalBillableCharacters": n * 4}))
}

/// Vertex AI's publisher model list, two pages for Google.
fn list_models(publisher: &str, query: &str) -> Response {
    let (models, next): (&[&str], &str) = match (publisher, query.contains("pageToken=p2")) {
        ("google", false) => (&["gemini-2.5-pro", "gemini-2.5-flash"], "p2"),
        ("google", true) => (&["gemini-3-pro-preview", "imagen-4.0-generate-001"], ""),
        ("anthropic", _) => (&["claude-sonnet-4-5", "claude-opus-4-1"], ""),
        _ => return google_error(404, "NOT_FOUND", "unknown publisher"),
    };
    let list: Vec<Value> = models
        .iter()
        .map(|m| json!({"name": format!("publishers/{publisher}/models/{m}"), "versionId": "001"}))
        .collect();
    let mut body = json!({"publisherModels": list});
    if !next.is_empty() {
        body["nextPageToken"] = json!(next);
    }
    json_response(body)
}

fn issue_token(fake: &FakeVertex) -> Response {
    let n = fake.counter.fetch_add(1, Ordering::SeqCst);
    let token = format!("ya29.fake-token-{n}");
    let mut inner = fake.inner.lock().unwrap();
    inner.tokens.insert(token.clone());
    inner.token_requests += 1;
    let body = json!({"access_token": token, "expires_in": 3599, "token_type": "Bearer"});
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap()
}

fn unknown(obj: &Value, allowed: &[&str], at: &str) -> Result<(), String> {
    let Some(o) = obj.as_object() else {
        return Err(format!("Invalid value at '{at}': expected an object"));
    };
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!(
            "Invalid JSON payload received. Unknown name \"{k}\" at '{at}': Cannot find field."
        )),
        None => Ok(()),
    }
}

fn contains_key(v: &Value, key: &str) -> bool {
    match v {
        Value::Object(o) => o.contains_key(key) || o.values().any(|x| contains_key(x, key)),
        Value::Array(a) => a.iter().any(|x| contains_key(x, key)),
        _ => false,
    }
}

fn validate(fake: &FakeVertex, model: &str, body: &Value) -> Result<(), String> {
    unknown(
        body,
        &[
            "contents",
            "systemInstruction",
            "tools",
            "toolConfig",
            "generationConfig",
            "safetySettings",
        ],
        "",
    )?;
    let contents = body["contents"]
        .as_array()
        .filter(|c| !c.is_empty())
        .ok_or("contents must not be empty")?;
    let mut prev_role = "";
    for (i, c) in contents.iter().enumerate() {
        unknown(c, &["role", "parts"], &format!("contents[{i}]"))?;
        let role = c["role"].as_str().unwrap_or("");
        if role != "user" && role != "model" {
            return Err(format!(
                "Please use a valid role: user, model. (contents[{i}].role = {role:?})"
            ));
        }
        if i == 0 && role != "user" {
            return Err("Please ensure that multiturn requests start with a user turn.".into());
        }
        if role == prev_role {
            return Err(format!(
                "Please ensure that multiturn requests alternate between user and model (contents[{i}])."
            ));
        }
        prev_role = role;
        let parts = c["parts"]
            .as_array()
            .filter(|p| !p.is_empty())
            .ok_or(format!("contents[{i}].parts must not be empty"))?;
        for (j, p) in parts.iter().enumerate() {
            let at = format!("contents[{i}].parts[{j}]");
            unknown(
                p,
                &[
                    "text",
                    "inlineData",
                    "fileData",
                    "functionCall",
                    "functionResponse",
                    "thought",
                    "thoughtSignature",
                    "mediaResolution",
                ],
                &at,
            )?;
            let data = [
                "text",
                "inlineData",
                "fileData",
                "functionCall",
                "functionResponse",
            ]
            .iter()
            .filter(|k| p.get(**k).is_some())
            .count();
            if data != 1 {
                return Err(format!("{at} must have exactly one data field"));
            }
            if p.get("text").is_some_and(|t| t.as_str() == Some("")) {
                return Err("Unable to submit request because it has an empty text parameter. Add a value to the parameter and try again.".into());
            }
            if let Some(fc) = p.get("functionCall") {
                unknown(fc, &["name", "args"], &format!("{at}.function_call"))?;
                if role != "model" {
                    return Err(format!("{at}: function calls belong in model turns"));
                }
            }
            if let Some(fr) = p.get("functionResponse") {
                unknown(
                    fr,
                    &["name", "response"],
                    &format!("{at}.function_response"),
                )?;
                if !fr["response"].is_object() {
                    return Err(format!("{at}.function_response.response must be an object"));
                }
            }
            if let Some(d) = p.get("inlineData") {
                unknown(d, &["mimeType", "data"], &format!("{at}.inline_data"))?;
            }
            if let Some(d) = p.get("fileData") {
                unknown(d, &["mimeType", "fileUri"], &format!("{at}.file_data"))?;
            }
        }
    }
    // Every call turn is answered by the next turn, one response per call,
    // in order.
    for (i, c) in contents.iter().enumerate() {
        let calls: Vec<&str> = c["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.pointer("/functionCall/name").and_then(Value::as_str))
            .collect();
        if calls.is_empty() {
            continue;
        }
        let next = contents
            .get(i + 1)
            .ok_or("function calls at the end of the conversation need responses")?;
        let responses: Vec<&str> = next["parts"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p.pointer("/functionResponse/name").and_then(Value::as_str))
            .collect();
        if responses.len() != calls.len() {
            return Err("Please ensure that the number of function response parts is equal to the number of function call parts of the function call turn.".into());
        }
        if responses != calls {
            return Err(format!(
                "function responses {responses:?} do not answer calls {calls:?} in order"
            ));
        }
    }
    for (i, c) in contents.iter().enumerate() {
        let has_response = c["parts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p.get("functionResponse").is_some());
        let after_calls = i > 0
            && contents[i - 1]["parts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p.get("functionCall").is_some());
        if has_response && !after_calls {
            return Err("Please ensure that function response turn comes immediately after a function call turn.".into());
        }
    }
    // Gemini 3: signatures on the first call of each step of the current turn.
    if model.starts_with("gemini-3") {
        let start = contents
            .iter()
            .rposition(|c| {
                c["role"] == "user"
                    && c["parts"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|p| p.get("functionResponse").is_none())
            })
            .map_or(0, |i| i + 1);
        let inner = fake.inner.lock().unwrap();
        let mut replayed = Vec::new();
        for (i, c) in contents.iter().enumerate() {
            for p in c["parts"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|p| p.get("functionCall").is_some())
            {
                if let Some(sig) = p.get("thoughtSignature").and_then(Value::as_str) {
                    if sig != PLACEHOLDER && !inner.signatures.contains(sig) {
                        return Err("Corrupted thought signature.".into());
                    }
                    replayed.push(sig.to_string());
                }
            }
            if i < start {
                continue;
            }
            let first = c["parts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p.get("functionCall").is_some());
            if let Some(p) = first
                && p.get("thoughtSignature").is_none()
            {
                return Err(format!(
                    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work correctly, and missing thought_signature may lead to degraded model performance. Additional data, function call `default_api:{}` , position {}.",
                    p["functionCall"]["name"].as_str().unwrap_or(""),
                    i + 1
                ));
            }
        }
        drop(inner);
        fake.inner.lock().unwrap().replayed.extend(replayed);
    }
    if let Some(s) = body.get("systemInstruction") {
        unknown(s, &["parts"], "system_instruction")?;
    }
    if let Some(tools) = body.get("tools") {
        for (i, t) in tools
            .as_array()
            .ok_or("tools must be a list")?
            .iter()
            .enumerate()
        {
            unknown(
                t,
                &["functionDeclarations", "googleSearch"],
                &format!("tools[{i}]"),
            )?;
            if t.get("googleSearch").is_some() {
                let all_search = tools
                    .as_array()
                    .into_iter()
                    .flatten()
                    .all(|t| t.get("functionDeclarations").is_none());
                if !all_search {
                    return Err(
                        "Multiple tools are supported only when they are all search tools.".into(),
                    );
                }
                continue;
            }
            for (j, d) in t["functionDeclarations"]
                .as_array()
                .ok_or("functionDeclarations must be a list")?
                .iter()
                .enumerate()
            {
                unknown(
                    d,
                    &["name", "description", "parameters", "parametersJsonSchema"],
                    &format!("tools[{i}].function_declarations[{j}]"),
                )?;
                let name = d["name"].as_str().unwrap_or("");
                let mut chars = name.chars();
                let valid = name.len() <= 64
                    && chars
                        .next()
                        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
                if !valid {
                    return Err(format!(
                        "* GenerateContentRequest.tools[{i}].function_declarations[{j}].name: Invalid function name. Must start with a letter or an underscore. Must be alphameric (a-z, A-Z, 0-9), underscores (_), dots (.), colons (:), or dashes (-), with a maximum length of 64."
                    ));
                }
                if contains_key(d, "$schema") {
                    return Err("Invalid JSON payload received. Unknown name \"$schema\"".into());
                }
            }
        }
    }
    if let Some(tc) = body.get("toolConfig") {
        unknown(tc, &["functionCallingConfig"], "tool_config")?;
        unknown(
            &tc["functionCallingConfig"],
            &["mode", "allowedFunctionNames"],
            "tool_config.function_calling_config",
        )?;
    }
    if let Some(g) = body.get("generationConfig") {
        unknown(
            g,
            &[
                "temperature",
                "topP",
                "maxOutputTokens",
                "stopSequences",
                "seed",
                "presencePenalty",
                "frequencyPenalty",
                "responseLogprobs",
                "logprobs",
                "responseMimeType",
                "responseSchema",
                "responseJsonSchema",
                "thinkingConfig",
            ],
            "generation_config",
        )?;
        if let Some(t) = g.get("thinkingConfig") {
            unknown(
                t,
                &["thinkingBudget", "thinkingLevel", "includeThoughts"],
                "generation_config.thinking_config",
            )?;
            if t.get("thinkingBudget").is_some() && t.get("thinkingLevel").is_some() {
                return Err(
                    "You can only set only one of thinking budget and thinking level.".into(),
                );
            }
            if t.get("thinkingLevel").is_some() && !model.starts_with("gemini-3") {
                return Err("Thinking level is not supported for this model.".into());
            }
        }
    }
    Ok(())
}

fn last_user_text(body: &Value) -> String {
    body["contents"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|c| c["role"] == "user")
        .map(|c| {
            c["parts"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| p["text"].as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn answer(fake: &FakeVertex, model: &str, body: &Value, stream: bool) -> Response {
    let gen3 = model.starts_with("gemini-3");
    let text = last_user_text(body);
    let usage_base = json!({"promptTokenCount": 20, "cachedContentTokenCount": 5, "candidatesTokenCount": 7, "totalTokenCount": 27});
    if text.contains("RATELIMIT") {
        let err = json!([{"error": {"code": 429, "message": "Resource exhausted. Please try again later.", "status": "RESOURCE_EXHAUSTED",
            "details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}]}}]);
        return Response::builder()
            .status(429)
            .header("content-type", "application/json")
            .body(Body::from(err.to_string()))
            .unwrap();
    }
    if text.contains("FORBIDME") {
        return google_error(
            403,
            "PERMISSION_DENIED",
            "Permission 'aiplatform.endpoints.predict' denied on resource",
        );
    }
    if text.contains("BLOCKME") {
        let blocked = json!({"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 20, "totalTokenCount": 20}});
        return if stream {
            sse(vec![blocked])
        } else {
            json_response(blocked)
        };
    }
    let contents = body["contents"].as_array().unwrap();
    let last = contents.last().unwrap();
    let responses: Vec<String> = last["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p.get("functionResponse"))
        .map(|r| match &r["response"]["output"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    let thoughts = body.pointer("/generationConfig/thinkingConfig/includeThoughts")
        == Some(&Value::Bool(true));
    let mut parts: Vec<Value> = Vec::new();
    if thoughts {
        let mut p = json!({"text": "Thinking about it.", "thought": true});
        if gen3 {
            p["thoughtSignature"] = json!(fake.issue_signature("thought"));
        }
        parts.push(p);
    }
    let decls: Vec<Value> = body
        .pointer("/tools/0/functionDeclarations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mode = body
        .pointer("/toolConfig/functionCallingConfig/mode")
        .and_then(Value::as_str)
        .unwrap_or("AUTO");
    let shell = decls.iter().find_map(|d| {
        let name = d["name"].as_str()?;
        crate::support::shell_call(name).map(|args| (name.to_string(), args))
    });
    if responses.is_empty()
        && mode != "NONE"
        && let Some((name, args)) = shell
    {
        let mut p = json!({"functionCall": {"name": name, "args": args}});
        if gen3 {
            p["thoughtSignature"] = json!(fake.issue_signature("call"));
        }
        parts.push(p);
    } else if responses.is_empty() && !decls.is_empty() && mode != "NONE" {
        let n = if text.contains("both") { 2 } else { 1 };
        for (i, d) in decls.iter().take(n).enumerate() {
            let takes_args = d
                .pointer("/parametersJsonSchema/properties")
                .or_else(|| d.pointer("/parameters/properties"))
                .and_then(Value::as_object)
                .is_some_and(|p| !p.is_empty());
            let mut call = json!({"name": d["name"]});
            if takes_args {
                call["args"] = json!({"city": "Paris"});
            }
            let mut p = json!({"functionCall": call});
            if gen3 && i == 0 {
                p["thoughtSignature"] = json!(fake.issue_signature("call"));
            }
            parts.push(p);
        }
    } else {
        let reply = if !responses.is_empty() {
            format!("Results: {}", responses.join(", "))
        } else if body.pointer("/generationConfig/responseMimeType")
            == Some(&json!("application/json"))
        {
            "{\"answer\":\"42\"}".to_string()
        } else {
            let media: Vec<&str> = last["parts"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|p| {
                    p.pointer("/inlineData/mimeType")
                        .or_else(|| p.pointer("/fileData/mimeType"))
                        .and_then(Value::as_str)
                })
                .collect();
            if media.is_empty() {
                format!("Hello from {model}")
            } else {
                format!("I see {}", media.join(" and "))
            }
        };
        parts.push(json!({"text": reply}));
    }
    let mut usage = usage_base;
    if thoughts {
        usage["thoughtsTokenCount"] = json!(3);
        usage["totalTokenCount"] = json!(30);
    }
    let answered_in_text = parts
        .iter()
        .any(|p| p.get("text").is_some() && p.get("thought").is_none());
    let text_signature = (gen3 && answered_in_text).then(|| fake.issue_signature("text"));
    if !stream {
        if let (Some(sig), Some(last)) = (
            &text_signature,
            parts
                .iter_mut()
                .rev()
                .find(|p| p.get("text").is_some() && p.get("thought").is_none()),
        ) {
            last["thoughtSignature"] = json!(sig);
        }
        return json_response(
            json!({"candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}],
            "usageMetadata": usage, "modelVersion": model}),
        );
    }
    // Streamed: each text split in words, every other part whole, and the
    // finish (with a trailing signed empty text part) in a last chunk.
    let mut chunks = Vec::new();
    for p in parts {
        match p.get("text").and_then(Value::as_str) {
            Some(t) if p.get("thought").is_none() => {
                for w in t.split_inclusive(' ') {
                    chunks.push(json!({"candidates": [{"content": {"role": "model", "parts": [{"text": w}]}, "index": 0}], "usageMetadata": {"promptTokenCount": 20}}));
                }
            }
            _ => chunks.push(
                json!({"candidates": [{"content": {"role": "model", "parts": [p]}, "index": 0}]}),
            ),
        }
    }
    let mut tail = json!({"text": ""});
    if let Some(sig) = text_signature {
        tail["thoughtSignature"] = json!(sig);
    }
    chunks.push(json!({"candidates": [{"content": {"role": "model", "parts": [tail]}, "finishReason": "STOP", "index": 0}], "usageMetadata": usage}));
    sse(chunks)
}

fn json_response(v: Value) -> Response {
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(v.to_string()))
        .unwrap()
}

fn sse(chunks: Vec<Value>) -> Response {
    let body: String = chunks
        .iter()
        .map(|c| format!("data: {c}\r\n\r\n"))
        .collect();
    Response::builder()
        .header("content-type", "text/event-stream")
        .body(Body::from(body))
        .unwrap()
}
