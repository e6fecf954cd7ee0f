use super::*;
use serde_json::{Value, json};

fn ctx(streaming: bool) -> Context {
    Context {
        backend: "local".into(),
        model: "qwen3".into(),
        upstream_model: "qwen3:8b".into(),
        streaming,
        settings: "{}".into(),
        extras: "{}".into(),
        media: Vec::new(),
    }
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
fn request_rewrites_model_and_keeps_everything_else_verbatim() {
    let body = br#"{"model":"qwen3","input":[{"type":"message","role":"user","content":"hi"}],"x_vendor":{"keep":[1,2.50]},"temperature":0.2}"#;
    let req = OpenResponses::request(&ctx(false), body).unwrap();
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/responses");
    assert_eq!(
        String::from_utf8(req.body).unwrap(),
        r#"{"model":"qwen3:8b","input":[{"type":"message","role":"user","content":"hi"}],"x_vendor":{"keep":[1,2.50]},"temperature":0.2}"#
    );
    assert!(
        req.headers
            .iter()
            .all(|(n, _)| !n.eq_ignore_ascii_case("authorization"))
    );
}

#[test]
fn request_sets_stream_from_context() {
    let req = OpenResponses::request(&ctx(true), br#"{"model":"m","input":"hi"}"#).unwrap();
    assert_eq!(json_of(&req.body)["stream"], json!(true));
    assert!(
        req.headers
            .contains(&("accept".to_string(), "text/event-stream".to_string()))
    );
    let req = OpenResponses::request(&ctx(false), br#"{"model":"m","stream":true}"#).unwrap();
    assert_eq!(json_of(&req.body)["stream"], json!(false));
    let req = OpenResponses::request(&ctx(false), br#"{"model":"m"}"#).unwrap();
    assert!(json_of(&req.body).get("stream").is_none());
}

#[test]
fn request_maps_openai_only_efforts() {
    for (from, to) in [("minimal", "low"), ("max", "xhigh"), ("high", "high")] {
        let body = json!({"model":"m","reasoning":{"effort":from,"summary":"auto"}}).to_string();
        let req = OpenResponses::request(&ctx(false), body.as_bytes()).unwrap();
        let sent = json_of(&req.body);
        assert_eq!(
            sent["reasoning"],
            json!({"effort":to,"summary":"auto"}),
            "{from}"
        );
    }
}

#[test]
fn request_uses_path_setting() {
    let mut c = ctx(false);
    c.settings = r#"{"path":"/v1/responses"}"#.into();
    let req = OpenResponses::request(&c, br#"{"model":"m"}"#).unwrap();
    assert_eq!(req.path, "/v1/responses");
}

#[test]
fn request_rejects_non_objects() {
    let err = OpenResponses::request(&ctx(false), b"[1,2]").unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err:?}");
}

#[test]
fn settings_are_validated() {
    assert!(OpenResponses::validate_settings("{}").is_ok());
    assert!(OpenResponses::validate_settings(r#"{"path":"/x"}"#).is_ok());
    let err = OpenResponses::validate_settings(r#"{"project":"p"}"#).unwrap_err();
    assert!(err.contains("project") && err.contains("path"), "{err}");
    let err = OpenResponses::validate_settings(r#"{"path":"x"}"#).unwrap_err();
    assert!(err.contains("start with '/'"), "{err}");
}

fn upstream(status: u16, body: &str) -> UpstreamResponse {
    UpstreamResponse {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.as_bytes().to_vec(),
    }
}

#[test]
fn response_passes_the_body_through() {
    let body = r#"{"id":"resp_1","object":"response","status":"completed","output":[],"x":1}"#;
    let out = OpenResponses::response(&ctx(false), "", upstream(200, body)).unwrap();
    assert_eq!(out, body.as_bytes());
}

#[test]
fn response_maps_openai_errors_with_status() {
    let body = r#"{"error":{"message":"You exceeded your current quota.","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#;
    let err = OpenResponses::response(&ctx(false), "", upstream(429, body)).unwrap_err();
    let Error::Upstream(e) = err else {
        panic!("{err:?}")
    };
    assert_eq!(e.status, 429);
    assert_eq!(e.message, "You exceeded your current quota.");
    assert_eq!(e.error_type.as_deref(), Some("insufficient_quota"));
    assert_eq!(e.code.as_deref(), Some("insufficient_quota"));
    assert_eq!(e.param, None);
}

#[test]
fn response_maps_other_error_shapes() {
    let vllm = r#"{"object":"error","message":"model not loaded","type":"BadRequestError","param":null,"code":400}"#;
    let Error::Upstream(e) =
        OpenResponses::response(&ctx(false), "", upstream(400, vllm)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!((e.status, e.message.as_str()), (400, "model not loaded"));
    assert_eq!(e.code.as_deref(), Some("400"));

    let fastapi = r#"{"detail":"Not Found"}"#;
    let Error::Upstream(e) =
        OpenResponses::response(&ctx(false), "", upstream(404, fastapi)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!((e.status, e.message.as_str()), (404, "Not Found"));

    let html = "<html><body>502 Bad Gateway</body></html>";
    let Error::Upstream(e) =
        OpenResponses::response(&ctx(false), "", upstream(502, html)).unwrap_err()
    else {
        panic!()
    };
    assert_eq!(e.status, 502);
    assert!(
        e.message.contains("HTTP 502") && e.message.contains("Bad Gateway"),
        "{}",
        e.message
    );
}

#[test]
fn response_rejects_a_2xx_that_is_not_json() {
    let err = OpenResponses::response(&ctx(false), "", upstream(200, "oops")).unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("not a JSON object")),
        "{err:?}"
    );
}

#[test]
fn stream_passes_events_through_and_skips_done() {
    let mut s = OpenResponses::stream(ctx(true), String::new(), 200, vec![]);
    let ev = r#"{"type":"response.output_text.delta","sequence_number":4,"item_id":"msg_1","output_index":0,"content_index":0,"delta":"Hi","x":true}"#;
    assert_eq!(
        s.push("response.output_text.delta", ev).unwrap(),
        vec![ev.to_string()]
    );
    assert!(s.push("", "[DONE]").unwrap().is_empty());
    assert!(s.push("", "").unwrap().is_empty());
    assert!(s.finish().unwrap().is_empty());
}

#[test]
fn stream_renames_openai_reasoning_text_events() {
    let mut s = OpenResponses::stream(ctx(true), String::new(), 200, vec![]);
    let ev = r#"{"type":"response.reasoning_text.delta","item_id":"rs_1","output_index":0,"content_index":0,"delta":"hm"}"#;
    let out = s.push("response.reasoning_text.delta", ev).unwrap();
    assert_eq!(
        json_of(out[0].as_bytes()),
        json!({"type":"response.reasoning.delta","item_id":"rs_1","output_index":0,"content_index":0,"delta":"hm"})
    );
}

#[test]
fn stream_takes_the_type_from_the_sse_event_name_when_missing() {
    let mut s = OpenResponses::stream(ctx(true), String::new(), 200, vec![]);
    let out = s
        .push("response.in_progress", r#"{"response":{"id":"r"}}"#)
        .unwrap();
    assert_eq!(json_of(out[0].as_bytes())["type"], "response.in_progress");
    let err = s.push("", r#"{"response":{}}"#).unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("without a type")),
        "{err:?}"
    );
}

#[test]
fn stream_reports_garbage() {
    let mut s = OpenResponses::stream(ctx(true), String::new(), 200, vec![]);
    let err = s.push("", "{not json").unwrap_err();
    assert!(
        matches!(&err, Error::Internal(m) if m.contains("not a JSON object")),
        "{err:?}"
    );
}

#[test]
fn chat_only_parameters_are_refused() {
    let mut c = ctx(false);
    c.extras =
        json!({"chat": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "seed": 3}})
            .to_string();
    let err = OpenResponses::request(&c, br#"{"model":"m","input":"hi"}"#).unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported(i) if i.param.as_deref() == Some("seed")),
        "{err:?}"
    );
    c.extras = json!({"chat": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 1, "temperature": 0.1}}).to_string();
    assert!(
        OpenResponses::request(&c, br#"{"model":"m","input":"hi"}"#).is_ok(),
        "n = 1 is fine"
    );
}
