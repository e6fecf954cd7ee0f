//! Model names are identifiers, never path material.
//!
//! A client's model name decides the route and, after a backend's
//! `model_map`, is what the translator sends upstream - for Vertex AI as a
//! segment of the URL path that the proxy's credentials are sent to. So
//! every name is checked before anything else looks at it:
//!
//! - [`check`] (every model name a client sends, every backend kind):
//!   1 to [`MAX_LEN`] characters from `A-Z a-z 0-9 . _ - : @ /`; `/` only
//!   between non-empty segments that are not `.` or `..` (so
//!   `meta-llama/Llama-3.1-8B-Instruct` and `hf.co/org/model:Q4_K_M` pass,
//!   `a/../b`, `/a` and `a//b` do not). Everything else - spaces, control
//!   characters, `?`, `#`, `%`, `\`, quotes, non-ASCII - is refused.
//! - [`check_path_segment`] (names that become one URL path segment, as on
//!   Vertex AI): the same without `/` and `:` (`:` separates the model from
//!   the method there).

/// The longest model name accepted.
pub const MAX_LEN: usize = 256;

/// Why a model name was refused; the message names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidModel(pub String);

impl std::fmt::Display for InvalidModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidModel {}

/// The name as it may be quoted in a message: at most 64 characters, with
/// anything unusual escaped (it is what the client sent, and unchecked).
pub fn quoted(name: &str) -> String {
    let short: String = name.chars().take(64).collect();
    if short.len() < name.len() {
        format!("{short:?}... ({} bytes)", name.len())
    } else {
        format!("{short:?}")
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '/')
}

/// Checks a client's model name (see the module docs).
pub fn check(name: &str) -> Result<(), InvalidModel> {
    let refuse = |why: String| {
        Err(InvalidModel(format!(
            "The model name {} {why}",
            quoted(name)
        )))
    };
    if name.is_empty() {
        return Err(InvalidModel("The model name is empty.".into()));
    }
    if name.len() > MAX_LEN {
        return refuse(format!("is longer than {MAX_LEN} bytes."));
    }
    if let Some(c) = name.chars().find(|c| !allowed(*c)) {
        return refuse(format!(
            "contains {c:?}; model names may only use letters, digits and . _ - : @ /"
        ));
    }
    if name.contains('/')
        && name
            .split('/')
            .any(|segment| matches!(segment, "" | "." | ".."))
    {
        return refuse(
            "is not a plain name: '/' may only separate non-empty parts that are not '.' or '..'."
                .into(),
        );
    }
    Ok(())
}

/// Checks a name that becomes one segment of an upstream URL path: what
/// [`check`] allows, without `/` and `:`.
pub fn check_path_segment(name: &str) -> Result<(), InvalidModel> {
    check(name)?;
    match name.chars().find(|c| matches!(c, '/' | ':')) {
        Some(c) => Err(InvalidModel(format!(
            "The model name {} contains {c:?}, which this backend does not allow in a model name.",
            quoted(name)
        ))),
        None if matches!(name, "." | "..") => Err(InvalidModel(format!(
            "The model name {} is not a model name.",
            quoted(name)
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_pass() {
        for ok in [
            "gpt-5",
            "gemini-2.5-flash",
            "claude-sonnet-4-5@20250929",
            "qwen3:8b",
            "meta-llama/Llama-3.1-8B-Instruct",
            "hf.co/bartowski/Qwen2.5-7B-Instruct-GGUF:Q4_K_M",
            "accounts/fireworks/models/llama-v3p1-8b-instruct",
            "o4-mini-2025-04-16",
        ] {
            assert_eq!(check(ok), Ok(()), "{ok}");
        }
        for ok in [
            "gemini-2.5-flash",
            "claude-opus-4-6@default",
            "count-tokens",
        ] {
            assert_eq!(check_path_segment(ok), Ok(()), "{ok}");
        }
    }

    #[test]
    fn path_material_is_refused() {
        for bad in [
            "",
            "gemini-2.5-flash/../../../../projects/victim/locations/x/publishers/google/models/gemini-2.5-pro",
            "gemini-2.5-flash:countTokens#",
            "gemini?alt=json",
            "gemini#frag",
            "gemini\\..\\x",
            "/v1beta1/x",
            "a//b",
            "a/./b",
            "a/",
            "gemini-x\n../../y",
            "tab\there",
            "cr\rlf",
            "space here",
            "pct%2f",
            "quote\"",
            "ünïcode",
            "nul\0",
        ] {
            assert!(check(bad).is_err(), "{bad:?}");
        }
        let long = "a".repeat(MAX_LEN + 1);
        let e = check(&long).unwrap_err();
        assert!(e.0.contains("longer than 256"), "{e}");
        assert!(e.0.len() < 200, "the message quotes a bounded part: {e}");
        assert_eq!(check(&"a".repeat(MAX_LEN)), Ok(()));
        for bad in ["a/b", "gemini:countTokens", "x:rawPredict", ".", ".."] {
            assert!(check_path_segment(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn messages_escape_what_they_quote() {
        let e = check("x\n../y").unwrap_err();
        assert!(e.0.contains(r#""x\n../y""#), "{e}");
        assert!(!e.0.contains('\n'));
    }
}
