use super::*;
use serde_json::json;

/// Codex's default tools, abridged: functions, a namespace, web search and
/// a freeform `apply_patch`.
fn codex_request() -> CreateResponse {
    serde_json::from_value(json!({
        "model": "m",
        "input": [
            {"type": "message", "role": "user", "content": "go"},
            {"type": "function_call", "id": "fc_1", "call_id": "c1", "namespace": "multi_agent_v1",
             "name": "spawn_agent", "arguments": "{\"task\":\"x\"}", "status": "completed"},
            {"type": "function_call_output", "id": "fco_1", "call_id": "c1", "output": "spawned"},
            {"type": "custom_tool_call", "id": "ctc_1", "call_id": "c2", "name": "apply_patch",
             "input": "*** Begin Patch\n*** End Patch", "status": "completed"},
            {"type": "custom_tool_call_output", "call_id": "c2", "output": "applied"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed",
             "action": {"type": "search", "query": "q"}}
        ],
        "tools": [
            {"type": "function", "name": "exec_command", "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}}},
            {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents", "tools": [
                {"type": "function", "name": "spawn_agent", "description": "Spawn", "parameters": {"type": "object"}},
                {"type": "function", "name": "wait", "parameters": {"type": "object"}}
            ]},
            {"type": "web_search", "external_web_access": true},
            {"type": "custom", "name": "apply_patch", "description": "Edit files.",
             "format": {"type": "grammar", "syntax": "lark", "definition": "start: begin_patch"}}
        ],
        "tool_choice": "auto"
    }))
    .unwrap()
}

fn function_names(req: &CreateResponse) -> Vec<String> {
    req.tools
        .iter()
        .flatten()
        .map(|t| match t {
            Tool::Function(f) => f.name.clone(),
            Tool::Other(v) => format!("other:{}", tool_type(v)),
        })
        .collect()
}

#[test]
fn namespaces_and_custom_tools_become_portable_functions() {
    let mut req = codex_request();
    let lowered = lower(&mut req, "Gemini", HostedTools::Drop, |_| false).unwrap();
    assert_eq!(
        function_names(&req),
        [
            "exec_command",
            "multi_agent_v1__spawn_agent",
            "multi_agent_v1__wait",
            "apply_patch"
        ]
    );
    assert!(lowered.hosted.is_empty());
    let Some(Tool::Function(patch)) = req.tools.as_ref().unwrap().last() else {
        panic!()
    };
    let description = patch.description.as_deref().unwrap();
    assert!(
        description.starts_with("Edit files.") && description.contains("start: begin_patch"),
        "{description}"
    );
    assert_eq!(
        patch.parameters.as_ref().unwrap()["required"],
        json!(["input"])
    );
    // The same tools give the same names on every turn.
    let mut again = codex_request();
    assert_eq!(
        lower(&mut again, "Gemini", HostedTools::Drop, |_| false).unwrap(),
        lowered
    );
}

#[test]
fn replayed_calls_use_the_flattened_names_and_hosted_records_are_left_out() {
    let mut req = codex_request();
    lower(&mut req, "Claude", HostedTools::Drop, |_| false).unwrap();
    let input = serde_json::to_value(&req.input).unwrap();
    let kinds: Vec<&str> = input
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "message",
            "function_call",
            "function_call_output",
            "function_call",
            "function_call_output"
        ]
    );
    assert_eq!(input[1]["name"], "multi_agent_v1__spawn_agent");
    assert!(input[1].get("namespace").is_none());
    assert_eq!(input[3]["name"], "apply_patch");
    assert_eq!(input[3]["call_id"], "c2");
    let args: Value = serde_json::from_str(input[3]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"input": "*** Begin Patch\n*** End Patch"}));
    assert_eq!(input[4]["output"], "applied");
}

#[test]
fn long_odd_and_clashing_names_stay_portable_and_distinct() {
    let long = "n".repeat(70);
    let mut req: CreateResponse = serde_json::from_value(json!({
        "model": "m", "input": "x",
        "tools": [
            {"type": "function", "name": "ns__f"},
            {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "f"}]},
            {"type": "namespace", "name": "mcp.server/x", "tools": [{"type": "function", "name": "read"}]},
            {"type": "namespace", "name": long, "tools": [
                {"type": "function", "name": "a"}, {"type": "function", "name": "b"}]},
            {"type": "namespace", "name": "9lives", "tools": [{"type": "function", "name": "go"}]}
        ]
    }))
    .unwrap();
    let lowered = lower(&mut req, "Claude", HostedTools::Drop, |_| false).unwrap();
    let names = function_names(&req);
    assert_eq!(names[0], "ns__f");
    let unique: HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "{names:?}");
    for n in &names {
        assert!(portable_name(n), "{n}");
    }
    // Each call comes back under the client's own names.
    for (flat, ns, short) in [
        (&names[1], "ns", "f"),
        (&names[2], "mcp.server/x", "read"),
        (&names[4], long.as_str(), "b"),
        (&names[5], "9lives", "go"),
    ] {
        let mut item =
            json!({"type": "function_call", "call_id": "c", "name": flat, "arguments": "{}"});
        assert!(!lowered.names.restore_item(&mut item));
        assert_eq!(
            (item["namespace"].as_str(), item["name"].as_str()),
            (Some(ns), Some(short))
        );
    }
    // A plain function's call is left alone.
    let mut plain =
        json!({"type": "function_call", "call_id": "c", "name": "ns__f", "arguments": "{}"});
    lowered.names.restore_item(&mut plain);
    assert!(plain.get("namespace").is_none());
}

#[test]
fn hosted_tools_are_dropped_mapped_or_refused() {
    let mut req = codex_request();
    let lowered = lower(&mut req, "Gemini", HostedTools::Drop, |t| {
        t["type"] == "web_search"
    })
    .unwrap();
    assert_eq!(
        lowered.hosted,
        [json!({"type": "web_search", "external_web_access": true})]
    );
    assert!(!function_names(&req).iter().any(|n| n.starts_with("other:")));

    let mut req = codex_request();
    let e = lower(&mut req, "Gemini", HostedTools::Reject, |_| false).unwrap_err();
    assert!(
        e.unsupported && e.message.contains("\"web_search\""),
        "{e:?}"
    );
    assert_eq!(e.param.as_deref(), Some("tools[2]"));

    // Forcing a tool that was left out is refused; allowed_tools loses it.
    let mut req = codex_request();
    req.tool_choice = Some(serde_json::from_value(json!({"type": "web_search"})).unwrap());
    let e = lower(&mut req, "Gemini", HostedTools::Drop, |_| false).unwrap_err();
    assert!(
        e.message.contains("forces the hosted tool \"web_search\""),
        "{e:?}"
    );
    let mut req = codex_request();
    req.tool_choice = Some(
        serde_json::from_value(json!({"type": "allowed_tools", "mode": "auto", "tools": [
            {"type": "web_search"}, {"type": "custom", "name": "apply_patch"},
            {"type": "function", "name": "wait", "namespace": "multi_agent_v1"},
            {"type": "function", "name": "exec_command"}]}))
        .unwrap(),
    );
    lower(&mut req, "Gemini", HostedTools::Drop, |_| false).unwrap();
    let ToolChoice::AllowedTools { tools, .. } = req.tool_choice.unwrap() else {
        panic!()
    };
    assert_eq!(
        ToolChoice::allowed_names(&tools),
        ["apply_patch", "multi_agent_v1__wait", "exec_command"]
    );
    // Forcing a custom tool forces its function.
    let mut req = codex_request();
    req.tool_choice =
        Some(serde_json::from_value(json!({"type": "custom", "name": "apply_patch"})).unwrap());
    lower(&mut req, "Gemini", HostedTools::Drop, |_| false).unwrap();
    assert_eq!(req.tool_choice, Some(ToolChoice::function("apply_patch")));
}

#[test]
fn a_custom_tool_named_like_a_function_gets_its_own_name() {
    let mut req: CreateResponse = serde_json::from_value(json!({
        "model": "m", "input": "x",
        "tools": [{"type": "custom", "name": "edit"}, {"type": "function", "name": "edit"}]
    }))
    .unwrap();
    let lowered = lower(&mut req, "Gemini", HostedTools::Drop, |_| false).unwrap();
    let names = function_names(&req);
    assert_eq!(names[1], "edit");
    assert!(
        names[0].starts_with("edit_") && portable_name(&names[0]),
        "{names:?}"
    );
    let mut call = json!({"type": "function_call", "id": "fc_9", "call_id": "c", "name": names[0], "arguments": "{\"input\":\"x\"}"});
    assert!(lowered.names.restore_item(&mut call));
    assert_eq!(
        call,
        json!({"type": "custom_tool_call", "id": "fc_9", "call_id": "c", "name": "edit", "input": "x"})
    );
}

#[test]
fn streams_regain_namespaces_and_custom_inputs() {
    let mut req = codex_request();
    let names = lower(&mut req, "Gemini", HostedTools::Drop, |_| false)
        .unwrap()
        .names;
    let mut restorer = Restorer::new(names);
    let call = |name: &str, args: &str| json!({"type": "function_call", "id": format!("fc_{name}"), "call_id": "c", "name": name, "arguments": args, "status": "completed"});
    let events = vec![
        json!({"type": "response.output_item.added", "output_index": 0, "item": call("apply_patch", "")}),
        json!({"type": "response.function_call_arguments.delta", "item_id": "fc_apply_patch", "output_index": 0, "delta": "{\"in"}),
        json!({"type": "response.function_call_arguments.done", "item_id": "fc_apply_patch", "output_index": 0, "arguments": "{\"input\":\"P\"}"}),
        json!({"type": "response.output_item.done", "output_index": 0, "item": call("apply_patch", "{\"input\":\"P\"}")}),
        json!({"type": "response.output_item.done", "output_index": 1, "item": call("multi_agent_v1__wait", "{}")}),
        json!({"type": "response.function_call_arguments.done", "item_id": "fc_multi_agent_v1__wait", "output_index": 1, "arguments": "{}"}),
        json!({"type": "response.completed", "response": {"output": [call("multi_agent_v1__wait", "{}")]}}),
    ];
    let texts: Vec<String> = events.iter().map(Value::to_string).collect();
    let out = restorer.events(events);
    assert_eq!(out.len(), 5, "{out:#?}");
    assert_eq!(out[0]["item"]["type"], "custom_tool_call");
    assert_eq!(out[0]["item"]["input"], "");
    assert_eq!(out[1]["item"]["input"], "P");
    assert_eq!(out[2]["item"]["namespace"], "multi_agent_v1");
    assert_eq!(out[2]["item"]["name"], "wait");
    assert_eq!(out[3]["type"], "response.function_call_arguments.done");
    assert_eq!(out[4]["response"]["output"][0]["name"], "wait");

    // The same through event texts (translators that emit strings).
    let mut req = codex_request();
    let names = lower(&mut req, "Chat", HostedTools::Drop, |_| false)
        .unwrap()
        .names;
    let out = Restorer::new(names).event_texts(texts);
    assert_eq!(out.len(), 5);
    assert!(
        out[2].contains("\"namespace\":\"multi_agent_v1\""),
        "{}",
        out[2]
    );
}

#[test]
fn requests_without_special_tools_are_untouched() {
    let body = json!({"model": "m", "input": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
        "tool_choice": {"type": "function", "name": "f"}});
    let mut req: CreateResponse = serde_json::from_value(body.clone()).unwrap();
    let lowered = lower(&mut req, "Gemini", HostedTools::Drop, |_| false).unwrap();
    assert!(lowered.names.is_empty());
    let mut back = serde_json::to_value(&req).unwrap();
    back["input"][0].as_object_mut().unwrap().remove("type");
    assert_eq!(back, body);
    let mut events = vec![
        json!({"type": "response.output_item.done", "item": {"type": "function_call", "name": "f"}}),
    ];
    events = Restorer::new(lowered.names).events(events);
    assert_eq!(events.len(), 1);
    // A text input stays.
    let mut req: CreateResponse =
        serde_json::from_value(json!({"model": "m", "input": "hi"})).unwrap();
    lower(&mut req, "Gemini", HostedTools::Drop, |_| false).unwrap();
    assert_eq!(req.input, Some(crate::responses::Input::Text("hi".into())));
}

#[test]
fn a_request_whose_tools_were_all_left_out_sends_no_tools_and_no_choice() {
    let only_hosted = |choice: Value| {
        let mut req: CreateResponse = serde_json::from_value(json!({
            "model": "m", "input": "x", "tools": [{"type": "web_search"}], "tool_choice": choice
        }))
        .unwrap();
        lower(&mut req, "Chat", HostedTools::Drop, |_| false).map(|_| req)
    };
    let req = only_hosted(json!("auto")).unwrap();
    assert_eq!((req.tools, req.tool_choice), (None, None));
    let req = only_hosted(
        json!({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "web_search"}]}),
    )
    .unwrap();
    assert_eq!((req.tools, req.tool_choice), (None, None));
    let e = only_hosted(json!("required")).unwrap_err();
    assert!(e.message.contains("web_search"), "{e:?}");
    // Client-run tools' records from another backend are left out too.
    let mut req: CreateResponse = serde_json::from_value(json!({"model": "m", "input": [
        {"type": "tool_search_call", "call_id": "t1", "arguments": {}},
        {"type": "tool_search_output", "call_id": "t1", "tools": []},
        {"role": "user", "content": "x"}]}))
    .unwrap();
    lower(&mut req, "Chat", HostedTools::Drop, |_| false).unwrap();
    assert_eq!(
        serde_json::to_value(&req.input)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn custom_call_arguments_without_input_come_back_as_they_came() {
    let mut req = codex_request();
    let names = lower(&mut req, "Gemini", HostedTools::Drop, |_| false)
        .unwrap()
        .names;
    let mut call = json!({"type": "function_call", "call_id": "c", "name": "apply_patch", "arguments": "{\"patch\":\"P\"}"});
    assert!(names.restore_item(&mut call));
    assert_eq!(call["input"], "{\"patch\":\"P\"}");
}
