//! What the Vertex AI translators share: backend settings, URLs, and the
//! Google error format.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The settings of a `gcp-vertex` backend (one table for both publishers;
/// each translator uses its part).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Google Cloud project id.
    #[serde(default)]
    pub project: String,
    /// Vertex AI location: a region such as `us-east5`, `global`, or the
    /// multi-regions `us` / `eu`.
    #[serde(default)]
    pub location: String,
    /// REST API version in the path (`v1`, or `v1beta1` for previews).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Gemini: how tool and response schemas are sent: `json_schema`
    /// (`parametersJsonSchema`, Gemini 2.5 and later; the default for them)
    /// or `openapi` (`parameters`, converted to Google's Schema subset; the
    /// default for older models).
    #[serde(default)]
    pub schema_mode: Option<String>,
    /// Gemini: when to ask for thought summaries: `auto` (when the request
    /// asks for a reasoning summary; default), `always`, `never`.
    #[serde(default)]
    pub include_thoughts: Option<String>,
    /// Gemini 2.5 and Claude: thinking budget (tokens) per
    /// `reasoning.effort`, overriding the built-in table.
    #[serde(default)]
    pub thinking_budgets: Option<BTreeMap<String, i64>>,
    /// Gemini: `safetySettings`, sent as given.
    #[serde(default)]
    pub safety_settings: Option<Vec<Value>>,
    /// Claude: `max_tokens` when the request sets no limit: one number for
    /// every model, or a table of model-name prefix → number (the longest
    /// matching prefix wins; unlisted models keep the built-in default, the
    /// model's maximum output).
    #[serde(default, deserialize_with = "max_tokens")]
    pub claude_max_tokens: Option<MaxTokens>,
    /// Claude: `anthropic_beta` features to send in the body (Vertex
    /// rejects unknown ones, so client betas are never forwarded).
    #[serde(default)]
    pub anthropic_beta: Option<Vec<String>>,
    /// Claude: mark prompt-cache breakpoints (tools, system prompt and the
    /// latest user turns) so that repeated prefixes are billed as cache
    /// reads. Default true.
    #[serde(default)]
    pub claude_prompt_caching: Option<bool>,
    /// Hosted tools (`web_search`, ...) the model has no equivalent for:
    /// `drop` (leave them out; default) or `reject` (refuse the request).
    /// See [`crate::tools`].
    #[serde(default)]
    pub hosted_tools: crate::tools::HostedTools,
    /// Claude: offer Anthropic's web search server tool for a client's
    /// `web_search` (Claude 4 and later). Default true.
    #[serde(default)]
    pub claude_web_search: Option<bool>,
}

/// `claude_max_tokens`.
#[derive(Debug, Clone, PartialEq)]
pub enum MaxTokens {
    /// The same for every model.
    All(u64),
    /// By model-name prefix.
    ByModel(BTreeMap<String, u64>),
}

impl MaxTokens {
    /// The configured value for `model`, if any.
    pub fn for_model(&self, model: &str) -> Option<u64> {
        match self {
            MaxTokens::All(n) => Some(*n),
            MaxTokens::ByModel(map) => map
                .iter()
                .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
                .max_by_key(|(prefix, _)| prefix.len())
                .map(|(_, n)| *n),
        }
    }
}

fn max_tokens<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<MaxTokens>, D::Error> {
    use serde::de::Error;
    let bad = || {
        D::Error::custom(
            "`claude_max_tokens` must be a positive number, or a table of model-name prefix = positive number",
        )
    };
    let positive = |v: &Value| v.as_u64().filter(|n| *n > 0);
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        v @ Value::Number(_) => positive(&v)
            .map(|n| Some(MaxTokens::All(n)))
            .ok_or_else(bad),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| positive(v).map(|n| (k.clone(), n)))
            .collect::<Option<BTreeMap<_, _>>>()
            .map(|m| Some(MaxTokens::ByModel(m)))
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

impl Settings {
    /// Parses and checks settings JSON; errors name the key and the fix.
    pub fn parse(json: &str) -> Result<Settings, String> {
        let s: Settings = serde_json::from_str(json).map_err(|e| e.to_string())?;
        if s.project.trim().is_empty() {
            return Err(
                "setting `project` is missing: the Google Cloud project id (flag --project, env GOOGLE_CLOUD_PROJECT)".into(),
            );
        }
        if s.location.is_empty()
            || !s
                .location
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(format!(
                "setting `location` = {:?} is not a Vertex AI location such as us-east5, europe-west4 or global (flag --location, env VERTEX_LOCATION)",
                s.location
            ));
        }
        let check = |key: &str, value: &Option<String>, allowed: &[&str]| match value {
            Some(v) if !allowed.contains(&v.as_str()) => Err(format!(
                "setting `{key}` = {v:?} is not one of {}",
                allowed.join(", ")
            )),
            _ => Ok(()),
        };
        check("schema_mode", &s.schema_mode, &["json_schema", "openapi"])?;
        check(
            "include_thoughts",
            &s.include_thoughts,
            &["auto", "always", "never"],
        )?;
        check("api_version", &s.api_version, &["v1", "v1beta1"])?;
        Ok(s)
    }

    /// `/{version}/projects/{project}/locations/{location}/publishers/{publisher}/models/{model}:{method}`,
    /// or why `model` cannot be one segment of that path.
    pub fn model_path(
        &self,
        publisher: &str,
        model: &str,
        method: &str,
    ) -> Result<String, crate::model::InvalidModel> {
        crate::model::check_path_segment(model)?;
        Ok(format!(
            "/{}/projects/{}/locations/{}/publishers/{publisher}/models/{model}:{method}",
            self.api_version.as_deref().unwrap_or("v1"),
            self.project,
            self.location,
        ))
    }
}

/// The Vertex AI endpoint for a location: `https://{location}-aiplatform.googleapis.com`,
/// `https://aiplatform.googleapis.com` for `global`, and the `rep` hosts for
/// the `us` and `eu` multi-regions.
pub fn base_url(location: &str) -> String {
    match location {
        "global" => "https://aiplatform.googleapis.com".into(),
        "us" | "eu" => format!("https://aiplatform.{location}.rep.googleapis.com"),
        region => format!("https://{region}-aiplatform.googleapis.com"),
    }
}

/// A Google API error: `{"error":{"code","message","status","details"}}`,
/// possibly inside a one-element array.
#[derive(Debug, Clone, PartialEq)]
pub struct GoogleError {
    pub message: String,
    /// `INVALID_ARGUMENT`, `RESOURCE_EXHAUSTED`, ...
    pub status: Option<String>,
    /// From a `google.rpc.RetryInfo` detail, in whole seconds.
    pub retry_after: Option<u32>,
}

/// Parses a Google error body; `None` when it is not one.
pub fn google_error(body: &[u8]) -> Option<GoogleError> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let v = match v {
        Value::Array(mut a) if a.len() == 1 => a.remove(0),
        other => other,
    };
    let err = v.get("error")?.as_object()?;
    let message = err.get("message").and_then(Value::as_str)?.to_string();
    let status = err
        .get("status")
        .and_then(Value::as_str)
        .map(str::to_string);
    let retry_after = err
        .get("details")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|d| {
            d.get("@type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.ends_with("google.rpc.RetryInfo"))
        })
        .find_map(|d| d.get("retryDelay").and_then(Value::as_str))
        .and_then(parse_duration_secs);
    Some(GoogleError {
        message,
        status,
        retry_after,
    })
}

/// `"7s"`, `"0.5s"` → whole seconds, rounded up.
fn parse_duration_secs(s: &str) -> Option<u32> {
    let secs: f64 = s.strip_suffix('s')?.parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| secs.ceil().min(f64::from(u32::MAX)) as u32)
}

/// Keeps only the keys of `obj` present in `allowed` (for bodies sent to
/// Vertex, which rejects unknown fields).
pub fn retain_known(obj: &mut Map<String, Value>, allowed: &[&str]) {
    obj.retain(|k, _| allowed.contains(&k.as_str()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_checked() {
        let s = Settings::parse(r#"{"project":"p","location":"us-east5"}"#).unwrap();
        assert_eq!(
            s.model_path("google", "gemini-3-flash", "streamGenerateContent?alt=sse")
                .unwrap(),
            "/v1/projects/p/locations/us-east5/publishers/google/models/gemini-3-flash:streamGenerateContent?alt=sse"
        );
        for bad in ["gemini/../x", "gemini:countTokens", "a?b", ".."] {
            assert!(
                s.model_path("google", bad, "generateContent").is_err(),
                "{bad}"
            );
        }
        for (bad, needle) in [
            (r#"{"location":"us"}"#, "project"),
            (r#"{"project":"p"}"#, "location"),
            (r#"{"project":"p","location":"US East"}"#, "location"),
            (
                r#"{"project":"p","location":"global","schema_mode":"x"}"#,
                "schema_mode",
            ),
            (
                r#"{"project":"p","location":"global","projectt":"x"}"#,
                "projectt",
            ),
            (
                r#"{"project":"p","location":"global","claude_max_tokens":"lots"}"#,
                "claude_max_tokens",
            ),
            (
                r#"{"project":"p","location":"global","claude_max_tokens":{"claude-":0}}"#,
                "claude_max_tokens",
            ),
        ] {
            let e = Settings::parse(bad).unwrap_err();
            assert!(e.contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn claude_max_tokens_by_prefix() {
        let s = Settings::parse(
            r#"{"project":"p","location":"global","claude_max_tokens":{"claude-":1000,"claude-opus":2000}}"#,
        )
        .unwrap();
        let m = s.claude_max_tokens.unwrap();
        assert_eq!(m.for_model("claude-opus-4-6"), Some(2000));
        assert_eq!(m.for_model("claude-sonnet-4-5@20250929"), Some(1000));
        assert_eq!(m.for_model("gemini"), None);
        let s = Settings::parse(r#"{"project":"p","location":"global","claude_max_tokens":5}"#)
            .unwrap();
        assert_eq!(s.claude_max_tokens, Some(MaxTokens::All(5)));
    }

    #[test]
    fn base_urls() {
        assert_eq!(
            base_url("us-east5"),
            "https://us-east5-aiplatform.googleapis.com"
        );
        assert_eq!(base_url("global"), "https://aiplatform.googleapis.com");
        assert_eq!(base_url("eu"), "https://aiplatform.eu.rep.googleapis.com");
    }

    #[test]
    fn google_errors() {
        let body = br#"[{"error":{"code":429,"message":"Quota exceeded","status":"RESOURCE_EXHAUSTED",
            "details":[{"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"6.2s"}]}}]"#;
        let e = google_error(body).unwrap();
        assert_eq!(e.message, "Quota exceeded");
        assert_eq!(e.status.as_deref(), Some("RESOURCE_EXHAUSTED"));
        assert_eq!(e.retry_after, Some(7));
        assert!(google_error(b"<html>").is_none());
        assert!(google_error(br#"{"type":"error"}"#).is_none());
    }
}
