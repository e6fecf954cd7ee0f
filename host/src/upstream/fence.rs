//! Where a translator's upstream request may go: the host checks every path
//! a translator asks for - bundled or custom - before it adds credentials.
//!
//! For every backend the path must stay under the base URL: it starts with
//! one `/`, has no `.` or `..` segments, no empty segments, no fragment, no
//! backslash, no space or control character, no percent-encoded `/`, `\`,
//! `.`, `%` or control character, and the joined URL keeps the base URL's
//! scheme, host, port and path prefix.
//!
//! A backend holding Google credentials is fenced further, to what the
//! Vertex AI translators need: `POST` to a model method of the configured
//! project and location only, with only the headers they need (no
//! `x-goog-user-project` naming another project to bill, say).
//!
//! No translator may set a method-override header (Google's front ends, and
//! others, honour `X-HTTP-Method-Override`).

use http::Method;

/// The Vertex AI methods a Google-authenticated backend may call.
pub(crate) const VERTEX_METHODS: [&str; 5] = [
    "generateContent",
    "streamGenerateContent",
    "rawPredict",
    "streamRawPredict",
    "countTokens",
];

/// The publishers whose models a Google-authenticated backend may call.
const VERTEX_PUBLISHERS: [&str; 2] = ["google", "anthropic"];

/// The headers a translator may set on a Google-authenticated backend.
const VERTEX_HEADERS: [&str; 6] = [
    "content-type",
    "accept",
    "user-agent",
    "x-request-id",
    "anthropic-version",
    "anthropic-beta",
];

/// Headers that would change the HTTP method the host checked.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The rules for one backend.
#[derive(Debug, Clone)]
pub(crate) enum Fence {
    /// Anything under the base URL.
    Base,
    /// Vertex AI model methods of one project and location.
    Vertex { project: String, location: String },
}

/// Why a path was refused, naming the rule (for a 502 `translator_error`).
fn refused(path: &str, rule: &str) -> String {
    format!(
        "asked for the upstream path {:?}{}, which the host refuses: {rule}; nothing was sent",
        path.chars().take(200).collect::<String>(),
        if path.chars().count() > 200 {
            "..."
        } else {
            ""
        }
    )
}

impl Fence {
    /// Checks a header a translator wants to send (credential headers are
    /// refused before this).
    pub(crate) fn check_header(&self, name: &http::HeaderName) -> Result<(), String> {
        let name = name.as_str();
        if METHOD_OVERRIDES.contains(&name) {
            return Err(format!(
                "set the header {name}, which would change the HTTP method the host checked; nothing was sent"
            ));
        }
        match self {
            Fence::Vertex { .. } if !VERTEX_HEADERS.contains(&name) => Err(format!(
                "set the header {name}; on a backend holding Google credentials translators may only set {}; nothing was sent",
                VERTEX_HEADERS.join(", ")
            )),
            _ => Ok(()),
        }
    }

    /// Checks `method` and `path` (path and query, relative to the base
    /// URL) against the rules; `Err` names the rule broken.
    pub(crate) fn check(&self, method: &Method, path: &str) -> Result<(), String> {
        check_relative(path).map_err(|rule| refused(path, &rule))?;
        match self {
            Fence::Base => Ok(()),
            Fence::Vertex { project, location } => {
                check_vertex(method, path, project, location).map_err(|rule| refused(path, &rule))
            }
        }
    }
}

/// The rules every path follows.
fn check_relative(path: &str) -> Result<(), String> {
    if !path.starts_with('/') || path.starts_with("//") {
        return Err("it must start with a single '/' (it is relative to the base URL)".into());
    }
    if let Some(b) = path.bytes().find(|b| !(0x21..=0x7e).contains(b)) {
        return Err(format!(
            "it contains the byte 0x{b:02x} (a space, a control character or non-ASCII)"
        ));
    }
    if path.contains('#') {
        return Err("it has a fragment ('#')".into());
    }
    if path.contains('\\') {
        return Err("it contains a backslash".into());
    }
    let (segments, query) = path.split_once('?').unwrap_or((path, ""));
    check_escapes(segments, true)?;
    check_escapes(query, false)?;
    let parts: Vec<&str> = segments[1..].split('/').collect();
    for (i, segment) in parts.iter().enumerate() {
        match *segment {
            "." | ".." => return Err(format!("it has a {segment:?} segment")),
            "" if i + 1 < parts.len() => return Err("it has an empty segment ('//')".into()),
            _ => {}
        }
    }
    Ok(())
}

/// Every `%` starts a valid escape; in the path part, no escape may encode
/// a separator, a dot, a `%` or a control character.
fn check_escapes(part: &str, in_path: bool) -> Result<(), String> {
    let bytes = part.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'%' {
            i += 1;
            continue;
        }
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or("it has a '%' that does not start a percent-escape")?;
        if in_path && (matches!(hex, b'/' | b'\\' | b'.' | b'%') || hex < 0x20 || hex == 0x7f) {
            return Err(format!(
                "it encodes {:?} as %{:02X} in the path",
                char::from(hex),
                hex
            ));
        }
        i += 3;
    }
    Ok(())
}

/// `POST /{v1|v1beta1}/projects/{project}/locations/{location}/publishers/
/// {google|anthropic}/models/{model}:{method}`, query empty or `alt=sse`.
fn check_vertex(method: &Method, path: &str, project: &str, location: &str) -> Result<(), String> {
    if method != Method::POST {
        return Err(format!(
            "this backend holds Google credentials and only POSTs to Vertex AI; it asked for {method}"
        ));
    }
    let (segments, query) = path.split_once('?').unwrap_or((path, ""));
    if !matches!(query, "" | "alt=sse") {
        return Err(format!(
            "the query may only be alt=sse, not {}",
            llmproxy_api::model::quoted(query)
        ));
    }
    let parts: Vec<&str> = segments[1..].split('/').collect();
    let shape = "it must be /{v1|v1beta1}/projects/{project}/locations/{location}/publishers/{google|anthropic}/models/{model}:{method}";
    let [
        version,
        "projects",
        p,
        "locations",
        l,
        "publishers",
        publisher,
        "models",
        model_method,
    ] = parts.as_slice()
    else {
        return Err(shape.into());
    };
    if !matches!(*version, "v1" | "v1beta1") {
        return Err(format!("{shape} (API version {version:?})"));
    }
    if *p != project {
        return Err(format!(
            "it names project {p:?}, but this backend is configured for project {project:?}"
        ));
    }
    if *l != location {
        return Err(format!(
            "it names location {l:?}, but this backend is configured for location {location:?}"
        ));
    }
    if !VERTEX_PUBLISHERS.contains(publisher) {
        return Err(format!(
            "publisher {publisher:?} is not one of {}",
            VERTEX_PUBLISHERS.join(", ")
        ));
    }
    let Some((model, rpc)) = model_method.rsplit_once(':') else {
        return Err(format!("{shape} (no ':method')"));
    };
    llmproxy_api::model::check_path_segment(model).map_err(|e| e.0)?;
    if !VERTEX_METHODS.contains(&rpc) {
        return Err(format!(
            "method {rpc:?} is not one of {}",
            VERTEX_METHODS.join(", ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vertex() -> Fence {
        Fence::Vertex {
            project: "p".into(),
            location: "us-east5".into(),
        }
    }

    #[test]
    fn every_backend_keeps_paths_under_its_base() {
        for ok in [
            "/responses",
            "/chat/completions",
            "/responses/resp_1/input_items?limit=2&order=asc",
            "/x/",
            "/models/caf%C3%A9",
        ] {
            assert_eq!(Fence::Base.check(&Method::POST, ok), Ok(()), "{ok}");
        }
        for (bad, rule) in [
            ("responses", "single '/'"),
            ("//evil.example/x", "single '/'"),
            ("/../x", "\"..\" segment"),
            ("/a/./b", "\".\" segment"),
            ("/a//b", "empty segment"),
            ("/a#b", "fragment"),
            ("/a\\b", "backslash"),
            ("/a b", "0x20"),
            ("/a\nb", "0x0a"),
            ("/a\tb", "0x09"),
            ("/caf\u{e9}", "0xc3"),
            ("/a%2f..%2fb", "%2F"),
            ("/a%2Fb", "%2F"),
            ("/%2e%2e/b", "%2E"),
            ("/a%5cb", "%5C"),
            ("/a%252e", "%25"),
            ("/a%00", "%00"),
            ("/a%zz", "percent-escape"),
            ("/a?b=%", "percent-escape"),
        ] {
            let e = Fence::Base.check(&Method::POST, bad).unwrap_err();
            assert!(e.contains(rule), "{bad:?}: {e}");
            assert!(e.contains("nothing was sent"), "{e}");
        }
    }

    #[test]
    fn google_credentials_reach_only_model_methods_of_the_project() {
        let f = vertex();
        for ok in [
            "/v1/projects/p/locations/us-east5/publishers/google/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
            "/v1/projects/p/locations/us-east5/publishers/google/models/gemini-2.5-flash:generateContent",
            "/v1beta1/projects/p/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
            "/v1/projects/p/locations/us-east5/publishers/anthropic/models/count-tokens:rawPredict",
            "/v1/projects/p/locations/us-east5/publishers/google/models/gemini-2.5-flash:countTokens",
        ] {
            assert_eq!(f.check(&Method::POST, ok), Ok(()), "{ok}");
        }
        for (bad, rule) in [
            (
                "/v1/projects/victim/locations/us-east5/publishers/google/models/gemini-2.5-pro:generateContent",
                "project \"victim\"",
            ),
            (
                "/v1/projects/p/locations/europe-west4/publishers/google/models/g:generateContent",
                "location \"europe-west4\"",
            ),
            (
                "/v1/projects/p/locations/us-east5/endpoints/123:rawPredict",
                "must be /{v1",
            ),
            (
                "/v1/projects/p/locations/us-east5/publishers/google/models/g:predictLongRunning",
                "method \"predictLongRunning\"",
            ),
            (
                "/v1/projects/p/locations/us-east5/publishers/google/models/g:generateContent?alt=json&key=x",
                "alt=sse",
            ),
            (
                "/v2/projects/p/locations/us-east5/publishers/google/models/g:generateContent",
                "API version",
            ),
            (
                "/v1/projects/p/locations/us-east5/publishers/meta/models/g:rawPredict",
                "publisher \"meta\"",
            ),
            (
                "/v1/projects/p/locations/us-east5/publishers/google/models/g",
                "no ':method'",
            ),
            (
                "/v1/projects/p/locations/us-east5/publishers/google/models/a:b:generateContent",
                "contains ':'",
            ),
        ] {
            let e = f.check(&Method::POST, bad).unwrap_err();
            assert!(e.contains(rule), "{bad:?}: {e}");
        }
        for bad in [
            "x-goog-user-project",
            "x-goog-api-key2",
            "x-http-method-override",
            "cookie2",
        ] {
            let name = http::HeaderName::from_static(bad);
            assert!(f.check_header(&name).is_err(), "{bad}");
        }
        for ok in ["content-type", "accept", "anthropic-version"] {
            assert_eq!(f.check_header(&http::HeaderName::from_static(ok)), Ok(()));
        }
        let override_header = http::HeaderName::from_static("x-http-method-override");
        assert!(Fence::Base.check_header(&override_header).is_err());
        let vendor = http::HeaderName::from_static("x-vendor");
        assert_eq!(Fence::Base.check_header(&vendor), Ok(()));
        let e = f
            .check(
                &Method::GET,
                "/v1/projects/p/locations/us-east5/publishers/google/models/g:generateContent",
            )
            .unwrap_err();
        assert!(e.contains("only POSTs"), "{e}");
    }
}
