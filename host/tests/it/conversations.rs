//! Conversation state: `previous_response_id` and stored responses on the
//! backends that keep none (a Chat upstream, Vertex Gemini, Vertex Claude)
//! with each store (memory, disk, Redis), and passed through to one that
//! does (an OpenResponses server).

use crate::claude::{MODEL as CLAUDE, weather_tools};
use crate::fake_vertex::FakeVertex;
use crate::spec::{check_response, check_stream};
use crate::support::*;
use crate::vertex::tools;
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// A fresh file for a disk store.
fn disk_path(name: &str) -> std::path::PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!("llmproxy-store-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.redb"))
}

/// A Chat upstream for `gpt-*`, then Vertex for everything else.
async fn setup(responses: &str) -> (FakeUpstream, FakeVertex, TestProxy) {
    let up = FakeUpstream::start().await;
    let vertex = FakeVertex::start().await;
    let config = format!(
        "{responses}\n[[backends]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"{}\"\nauth = \"none\"\nmodels = [\"gpt-*\"]\n\n{}",
        up.base_url,
        vertex.config("")
    );
    let proxy = TestProxy::start(&config).await;
    (up, vertex, proxy)
}

async fn respond(proxy: &TestProxy, body: Value) -> Value {
    let (status, _, v) = proxy.post("/v1/responses", &body).await;
    assert_eq!(status, 200, "{v}");
    check_response(&v).unwrap();
    v
}

/// The response a stream ends with.
async fn respond_streamed(proxy: &TestProxy, mut body: Value) -> Value {
    body["stream"] = json!(true);
    let (status, events, done) = proxy.post_stream("/v1/responses", &body).await;
    assert_eq!(status, 200, "{events:?}");
    check_stream(&events).unwrap();
    assert!(done);
    let last = events.last().unwrap();
    assert_eq!(last["type"], "response.completed", "{last}");
    assert_eq!(events[0]["response"]["id"], last["response"]["id"]);
    assert_eq!(events[0]["response"]["store"], true);
    last["response"].clone()
}

/// Text turns, a tool loop on Gemini 3 and a thinking tool loop on Claude,
/// each continued with `previous_response_id` only; a conversation moving
/// to another backend; reading, listing and deleting stored responses.
async fn chains(responses: &str) {
    let (up, vertex, proxy) = setup(responses).await;

    // Text on a Chat upstream: nothing inherited but the items.
    let r1 = respond(
        &proxy,
        json!({"model": "gpt-4o", "instructions": "Be brief.", "input": "Hi"}),
    )
    .await;
    assert_eq!(r1["store"], true);
    assert_ne!(r1["id"], "resp_upstream_1");
    let r2 = respond(
        &proxy,
        json!({"model": "gpt-4o", "previous_response_id": r1["id"],
               "input": [{"role": "user", "content": "And you?"}]}),
    )
    .await;
    assert_eq!(r2["previous_response_id"], r1["id"]);
    assert_eq!(
        r2["instructions"],
        Value::Null,
        "instructions are not inherited"
    );
    assert_eq!(
        chat_turns(&up.last().body),
        turns(&[
            ("user", "Hi"),
            ("assistant", "Hello from gpt-4o"),
            ("user", "And you?")
        ])
    );
    assert!(up.last().body.get("previous_response_id").is_none());
    let r3 = respond_streamed(
        &proxy,
        json!({"model": "gpt-4o", "previous_response_id": r2["id"], "input": "Third",
               "instructions": "Now in French."}),
    )
    .await;
    assert_eq!(
        chat_turns(&up.last().body),
        turns(&[
            ("system", "Now in French."),
            ("user", "Hi"),
            ("assistant", "Hello from gpt-4o"),
            ("user", "And you?"),
            ("assistant", "Hello from gpt-4o"),
            ("user", "Third")
        ])
    );

    // The same conversation, continued on Gemini: the model routes there.
    let r4 = respond(
        &proxy,
        json!({"model": "gemini-2.5-flash", "previous_response_id": r3["id"], "input": "Fourth"}),
    )
    .await;
    let (_, sent) = vertex.last();
    let contents: Vec<(String, String)> = sent["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["role"].as_str().unwrap().to_string(), text(&c["parts"])))
        .collect();
    assert_eq!(
        contents,
        turns(&[
            ("user", "Hi"),
            ("model", "Hello from gpt-4o"),
            ("user", "And you?"),
            ("model", "Hello from gpt-4o"),
            ("user", "Third"),
            ("model", "Hello from gpt-4o"),
            ("user", "Fourth")
        ])
    );
    assert!(sent.get("systemInstruction").is_none());

    // Stored responses: read back as they were sent, listed, deleted.
    let id4 = r4["id"].as_str().unwrap();
    let (status, got) = proxy
        .call(Method::GET, &format!("/v1/responses/{id4}"))
        .await;
    assert_eq!((status, &got), (200, &r4));
    let (status, list) = proxy
        .call(
            Method::GET,
            &format!("/v1/responses/{id4}/input_items?order=asc&limit=100"),
        )
        .await;
    assert_eq!(status, 200, "{list}");
    let texts: Vec<String> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| text(&i["content"]))
        .collect();
    assert_eq!(
        texts,
        [
            "Hi",
            "Hello from gpt-4o",
            "And you?",
            "Hello from gpt-4o",
            "Third",
            "Hello from gpt-4o",
            "Fourth"
        ]
    );
    assert_eq!(list["has_more"], false);
    let (_, newest) = proxy
        .call(
            Method::GET,
            &format!("/v1/responses/{id4}/input_items?limit=2"),
        )
        .await;
    assert_eq!(newest["data"][0]["content"][0]["text"].as_str(), None);
    assert_eq!(
        text(&newest["data"][0]["content"]),
        "Fourth",
        "newest first"
    );
    assert_eq!(newest["has_more"], true);
    let (_, next) = proxy
        .call(
            Method::GET,
            &format!(
                "/v1/responses/{id4}/input_items?limit=2&after={}",
                newest["last_id"].as_str().unwrap()
            ),
        )
        .await;
    assert_eq!(text(&next["data"][0]["content"]), "Third");

    let id2 = r2["id"].as_str().unwrap();
    let (status, deleted) = proxy
        .call(Method::DELETE, &format!("/v1/responses/{id2}"))
        .await;
    assert_eq!(
        (status, deleted),
        (
            200,
            json!({"id": id2, "object": "response.deleted", "deleted": true})
        )
    );
    let (status, gone) = proxy
        .call(Method::GET, &format!("/v1/responses/{id2}"))
        .await;
    assert_eq!(status, 404, "{gone}");
    assert_eq!(
        gone["error"]["message"],
        format!("Response with id '{id2}' not found.")
    );
    let (status, _, broken) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "previous_response_id": id4, "input": "Fifth"}),
        )
        .await;
    assert_eq!(status, 404, "{broken}");
    assert_eq!(broken["error"]["code"], "previous_response_not_found");
    assert_eq!(broken["error"]["param"], "previous_response_id");
    let message = broken["error"]["message"].as_str().unwrap();
    assert!(message.contains(id4) && message.contains(id2), "{message}");

    // A Gemini 3 tool loop: the client sends only the tool results back.
    for stream in [false, true] {
        let first =
            json!({"model": "gemini-3-flash", "input": "weather and time, both", "tools": tools()});
        let r = if stream {
            respond_streamed(&proxy, first).await
        } else {
            respond(&proxy, first).await
        };
        let output = r["output"].as_array().unwrap();
        let kinds: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["reasoning", "function_call", "function_call"]);
        let before = vertex.replayed().len();
        let next = json!({"model": "gemini-3-flash", "previous_response_id": r["id"], "tools": tools(),
            "input": [
                {"type": "function_call_output", "call_id": output[1]["call_id"], "output": "18C"},
                {"type": "function_call_output", "call_id": output[2]["call_id"], "output": "{\"time\":\"12:00\"}"}]});
        let done = if stream {
            respond_streamed(&proxy, next).await
        } else {
            respond(&proxy, next).await
        };
        assert_eq!(
            done["output"][0]["content"][0]["text"],
            r#"Results: 18C, {"time":"12:00"}"#
        );
        let replayed = vertex.replayed()[before..].to_vec();
        assert_eq!(replayed.len(), 1, "the first call's signature came back");
        assert!(replayed[0].starts_with("SIG-call-"), "{replayed:?}");
        let (_, sent) = vertex.last();
        assert_eq!(
            text(&sent["contents"][0]["parts"]),
            "weather and time, both"
        );
    }

    // A Claude tool loop with thinking: the thinking block comes back.
    for stream in [false, true] {
        let first = json!({"model": CLAUDE, "input": "weather in Paris?", "tools": weather_tools(),
                           "reasoning": {"effort": "low", "summary": "auto"}, "max_output_tokens": 16000});
        let r = if stream {
            respond_streamed(&proxy, first).await
        } else {
            respond(&proxy, first).await
        };
        let output = r["output"].as_array().unwrap();
        let kinds: Vec<&str> = output.iter().map(|i| i["type"].as_str().unwrap()).collect();
        assert_eq!(kinds, ["reasoning", "message", "function_call"]);
        let replayed = vertex.claude_replayed().len();
        let next = json!({"model": CLAUDE, "previous_response_id": r["id"], "tools": weather_tools(),
                          "reasoning": {"effort": "low"}, "max_output_tokens": 16000,
                          "input": [{"type": "function_call_output", "call_id": output[2]["call_id"], "output": "18C"}]});
        let done = if stream {
            respond_streamed(&proxy, next).await
        } else {
            respond(&proxy, next).await
        };
        assert_eq!(done["output"][1]["content"][0]["text"], "Results: 18C");
        assert_eq!(vertex.claude_replayed().len(), replayed + 1);
        let sent = vertex.last().1;
        assert_eq!(text(&sent["messages"][0]["content"]), "weather in Paris?");
        assert_eq!(sent["messages"][1]["content"][0]["type"], "thinking");
    }
}

#[tokio::test]
async fn chains_with_the_memory_store() {
    chains("").await;
}

#[tokio::test]
async fn chains_with_the_disk_store() {
    let path = disk_path("chains");
    chains(&format!("[responses]\nstore = \"disk\"\npath = {path:?}\n")).await;
}

#[tokio::test]
async fn chains_with_the_redis_store() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    chains(&format!(
        "[responses]\nstore = \"redis\"\nurl = \"{}\"\nkey_prefix = \"chains:\"\n",
        redis.url()
    ))
    .await;
}

/// A response unused for `ttl_secs` is gone; using one keeps it (and the
/// conversation before it) another `ttl_secs`.
async fn expiry(responses: &str) {
    let (_up, _vertex, proxy) = setup(&format!("{responses}ttl_secs = 1.0\n")).await;
    let r1 = respond(&proxy, json!({"model": "gpt-4o", "input": "Hi"})).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    let r2 = respond(
        &proxy,
        json!({"model": "gpt-4o", "previous_response_id": r1["id"], "input": "Again"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // r1 is 1.2 s old, but was used 0.6 s ago.
    let r3 = respond(
        &proxy,
        json!({"model": "gpt-4o", "previous_response_id": r2["id"], "input": "More"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "previous_response_id": r3["id"], "input": "Late"}),
        )
        .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["code"], "previous_response_not_found");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(r3["id"].as_str().unwrap())
    );
    let (status, _) = proxy
        .call(
            Method::GET,
            &format!("/v1/responses/{}", r1["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn responses_expire_in_every_store() {
    expiry("[responses]\n").await;
    let path = disk_path("expiry");
    expiry(&format!("[responses]\nstore = \"disk\"\npath = {path:?}\n")).await;
    if let Some(redis) = RedisServer::start().await {
        expiry(&format!(
            "[responses]\nstore = \"redis\"\nurl = \"{}\"\n",
            redis.url()
        ))
        .await;
    }
}

#[tokio::test]
async fn store_false_keeps_nothing_and_unknown_ids_are_404() {
    let (up, _vertex, proxy) = setup("").await;
    let r = respond(
        &proxy,
        json!({"model": "gpt-4o", "input": "Hi", "store": false}),
    )
    .await;
    assert_eq!(r["store"], false);
    let id = r["id"].as_str().unwrap();
    let (status, v) = proxy
        .call(Method::GET, &format!("/v1/responses/{id}"))
        .await;
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    let streamed = {
        let body = json!({"model": "gpt-4o", "input": "Hi", "store": false, "stream": true});
        let (_, events, _) = proxy.post_stream("/v1/responses", &body).await;
        events.last().unwrap()["response"].clone()
    };
    assert_eq!(streamed["store"], false);
    for id in [id, streamed["id"].as_str().unwrap(), "resp_never_issued"] {
        let sent = up.received().len();
        let (status, _, v) = proxy
            .post(
                "/v1/responses",
                &json!({"model": "gpt-4o", "previous_response_id": id, "input": "Again"}),
            )
            .await;
        assert_eq!(status, 404, "{v}");
        assert_eq!(
            v["error"],
            json!({"message": format!("Previous response with id '{id}' not found. It was never stored here (store: false, or another proxy's memory), has expired ([responses] ttl_secs) or was deleted."),
                   "type": "invalid_request_error", "param": "previous_response_id",
                   "code": "previous_response_not_found"})
        );
        assert_eq!(up.received().len(), sent, "nothing went upstream");
    }
    // Chained requests keep nothing either with store: false.
    let kept = respond(&proxy, json!({"model": "gpt-4o", "input": "Hi"})).await;
    let unkept = respond(
        &proxy,
        json!({"model": "gpt-4o", "previous_response_id": kept["id"], "input": "Again", "store": false}),
    )
    .await;
    assert_eq!(unkept["store"], false);
    let (status, _) = proxy
        .call(
            Method::GET,
            &format!("/v1/responses/{}", unkept["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 404);
    // Ids that are not ids are refused.
    let (status, v) = proxy.call(Method::GET, "/v1/responses/..%2Fetc").await;
    assert_eq!(status, 404, "{v}");
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "previous_response_id": 7, "input": "x"}),
        )
        .await;
    assert_eq!(
        (status.as_u16(), &v["error"]["param"]),
        (400, &json!("previous_response_id"))
    );
}

#[tokio::test]
async fn store_off_refuses_previous_response_id() {
    let (up, _vertex, proxy) = setup("[responses]\nstore = \"off\"\n").await;
    let r = respond(&proxy, json!({"model": "gpt-4o", "input": "Hi"})).await;
    assert_eq!(r["store"], false);
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "previous_response_id": r["id"], "input": "Again"}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("store = \"off\""),
        "{v}"
    );
    assert_eq!(up.received().len(), 1);
}

/// Two proxies behind a load balancer, one Redis: each continues what the
/// other started.
#[tokio::test]
async fn two_proxies_sharing_redis_continue_each_others_conversations() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let responses = format!(
        "[responses]\nstore = \"redis\"\nurl = \"{}\"\n",
        redis.url()
    );
    let (up_a, _va, a) = setup(&responses).await;
    let (up_b, _vb, b) = setup(&responses).await;
    let r1 = respond(&a, json!({"model": "gpt-4o", "input": "Hi"})).await;
    let r2 = respond_streamed(
        &b,
        json!({"model": "gpt-4o", "previous_response_id": r1["id"], "input": "On B"}),
    )
    .await;
    assert_eq!(
        chat_turns(&up_b.last().body),
        turns(&[
            ("user", "Hi"),
            ("assistant", "Hello from gpt-4o"),
            ("user", "On B")
        ])
    );
    let r3 = respond(
        &a,
        json!({"model": "gpt-4o", "previous_response_id": r2["id"], "input": "Back on A"}),
    )
    .await;
    assert_eq!(chat_turns(&up_a.last().body).len(), 5);
    let (status, got) = b
        .call(
            Method::GET,
            &format!("/v1/responses/{}", r3["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!((status, got), (200, r3));
    // Three responses kept, each with the key that finds its one output
    // item by id; Chat requests never are.
    assert_eq!(redis.keys(), 3 * 2);
    let chat =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "Hi"}], "store": true});
    let (status, _, _) = a.post("/v1/chat/completions", &chat).await;
    assert_eq!(status, 200);
    assert_eq!(redis.keys(), 3 * 2);
}

/// Redis going away costs conversations, not service: chained requests get
/// a 503 that says so, the others are answered (and say `store: false`).
#[tokio::test]
async fn redis_unavailable_is_a_503_for_chained_requests_only() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let (up, _vertex, proxy) = setup(&format!(
        "[responses]\nstore = \"redis\"\nurl = \"{}\"\n",
        redis.url()
    ))
    .await;
    let r1 = respond(&proxy, json!({"model": "gpt-4o", "input": "Hi"})).await;
    redis.stop();
    let sent = up.received().len();
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "previous_response_id": r1["id"], "input": "Again"}),
        )
        .await;
    assert_eq!(status, 503, "{v}");
    assert_eq!(v["error"]["code"], "store_unavailable");
    assert_eq!(v["error"]["type"], "server_error");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("Redis at 127.0.0.1:{}", redis.port))
            && message.contains("Requests without previous_response_id are still served"),
        "{message}"
    );
    assert_eq!(up.received().len(), sent, "nothing went upstream");
    let r2 = respond(&proxy, json!({"model": "gpt-4o", "input": "Still there?"})).await;
    assert_eq!(r2["store"], false, "it could not be stored");
    let streamed =
        respond_streamed(&proxy, json!({"model": "gpt-4o", "input": "And streamed?"})).await;
    assert_eq!(streamed["store"], false);
    let (status, _) = proxy
        .call(
            Method::GET,
            &format!("/v1/responses/{}", r1["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(status, 503);
    // Back (empty: this Redis keeps nothing on disk): new conversations work.
    redis.restart().await;
    let r3 = respond(&proxy, json!({"model": "gpt-4o", "input": "Hi again"})).await;
    assert_eq!(r3["store"], true);
    respond(
        &proxy,
        json!({"model": "gpt-4o", "previous_response_id": r3["id"], "input": "Good"}),
    )
    .await;
}

/// The disk store outlives the proxy (the in-process API here: the file
/// is free as soon as the proxy is dropped).
#[tokio::test]
async fn the_disk_store_survives_a_restart() {
    let up = FakeUpstream::start().await;
    let path = disk_path("restart");
    let config = format!(
        "[responses]\nstore = \"disk\"\npath = {path:?}\n\n[[backends]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"{}\"\nauth = \"none\"\nmodels = [\"*\"]\n",
        up.base_url
    );
    let request =
        |v: Value| serde_json::from_value::<llmproxy::api::responses::CreateResponse>(v).unwrap();
    let first = {
        let proxy = llmproxy::Proxy::new(llmproxy::Config::from_toml(&config).unwrap())
            .await
            .unwrap();
        let r = proxy
            .create_response(request(json!({"model": "gpt-4o", "input": "Hi"})))
            .await
            .unwrap();
        let err = llmproxy::Proxy::new(llmproxy::Config::from_toml(&config).unwrap())
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("one llmproxy process per file"),
            "{err}"
        );
        r.id
    };
    let proxy = llmproxy::Proxy::new(llmproxy::Config::from_toml(&config).unwrap())
        .await
        .unwrap();
    let r = proxy
        .create_response(request(
            json!({"model": "gpt-4o", "previous_response_id": first, "input": "Again"}),
        ))
        .await
        .unwrap();
    assert_eq!(r.extra["previous_response_id"], json!(first));
    // The in-process API reads, lists and deletes stored responses too.
    let (first, second) = (first.unwrap(), r.id.clone().unwrap());
    let got = proxy.retrieve_response(&second).await.unwrap();
    assert_eq!(
        serde_json::to_value(&got).unwrap(),
        serde_json::to_value(&r).unwrap()
    );
    let items = proxy.response_input_items(&second).await.unwrap();
    let texts: Vec<String> = items.iter().map(|i| text(&i["content"])).collect();
    assert_eq!(texts, ["Hi", "Hello from gpt-4o", "Again"]);
    assert!(proxy.delete_response(&first).await.unwrap());
    assert!(!proxy.delete_response(&first).await.unwrap());
    let err = proxy.retrieve_response(&first).await.unwrap_err();
    assert_eq!(err.status(), 404);
    assert_eq!(
        chat_turns(&up.last().body),
        turns(&[
            ("user", "Hi"),
            ("assistant", "Hello from gpt-4o"),
            ("user", "Again")
        ])
    );
}

/// An upstream that keeps state itself gets `previous_response_id` as sent,
/// and the stored-response endpoints are passed on to it.
#[tokio::test]
async fn stateful_upstreams_get_it_passed_through() {
    let up = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&up.base_url)).await;
    let r = respond(&proxy, json!({"model": "m", "input": "Hi"})).await;
    assert_eq!(r["id"], "resp_upstream_1", "the upstream's own id");
    respond(
        &proxy,
        json!({"model": "m", "previous_response_id": "resp_upstream_1", "input": "Again"}),
    )
    .await;
    let sent = up.last().body;
    assert_eq!(sent["previous_response_id"], "resp_upstream_1");
    assert_eq!(sent["input"], "Again", "not expanded");

    let stored = response_object("m", "completed", "Hello");
    up.script([
        Reply::Json(200, stored.clone(), vec![]),
        Reply::Json(200, json!({"object": "list", "data": [], "first_id": null, "last_id": null, "has_more": false}), vec![]),
        Reply::Json(200, json!({"id": "resp_upstream_1", "object": "response.deleted", "deleted": true}), vec![]),
        Reply::Json(404, json!({"error": {"message": "Response with id 'resp_gone' not found.", "type": "invalid_request_error", "param": null, "code": null}}), vec![]),
    ]);
    let (status, got) = proxy
        .call(Method::GET, "/v1/responses/resp_upstream_1")
        .await;
    assert_eq!((status, got), (200, stored));
    let (status, _) = proxy
        .call(
            Method::GET,
            "/v1/responses/resp_upstream_1/input_items?limit=5&order=asc",
        )
        .await;
    assert_eq!(status, 200);
    let (status, got) = proxy
        .call(Method::DELETE, "/v1/responses/resp_upstream_1")
        .await;
    assert_eq!((status, got["deleted"].clone()), (200, json!(true)));
    let (status, got) = proxy.call(Method::GET, "/v1/responses/resp_gone").await;
    assert_eq!(status, 404, "{got}");
    let asked: Vec<(String, String)> = up
        .received()
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    let expect = [
        ("GET", "/v1/responses/resp_upstream_1"),
        ("GET", "/v1/responses/resp_upstream_1/input_items"),
        ("DELETE", "/v1/responses/resp_upstream_1"),
        ("GET", "/v1/responses/resp_gone"),
    ];
    assert_eq!(
        asked,
        expect
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect::<Vec<_>>()
    );
}

/// The in-process API answers stored-response questions as HTTP does: a
/// response a stateful upstream keeps is asked of that upstream.
#[tokio::test]
async fn the_library_asks_a_stateful_upstream_too() {
    let up = FakeUpstream::start().await;
    let proxy = llmproxy::Proxy::new(llmproxy::Config::from_toml(&single(&up.base_url)).unwrap())
        .await
        .unwrap();
    let request = serde_json::from_value(json!({"model": "m", "input": "Hi"})).unwrap();
    let r = proxy.create_response(request).await.unwrap();
    let id = r.id.unwrap();
    let stored = response_object("m", "completed", "Hello");
    up.script([
        Reply::Json(200, stored.clone(), vec![]),
        Reply::Json(200, json!({"object": "list", "data": [{"type": "message", "role": "user", "content": "Hi"}], "first_id": null, "last_id": null, "has_more": false}), vec![]),
        Reply::Json(200, json!({"id": id, "object": "response.deleted", "deleted": true}), vec![]),
        Reply::Json(404, json!({"error": {"message": "Response with id 'resp_gone' not found.", "type": "invalid_request_error", "param": null, "code": null}}), vec![]),
    ]);
    let got = proxy.retrieve_response(&id).await.unwrap();
    assert_eq!(
        serde_json::to_value(&got).unwrap()["output"],
        stored["output"]
    );
    let items = proxy.response_input_items(&id).await.unwrap();
    assert_eq!(items.len(), 1);
    assert!(proxy.delete_response(&id).await.unwrap());
    let err = proxy.retrieve_response("resp_gone").await.unwrap_err();
    assert_eq!(err.status(), 404, "{err}");
    assert!(err.to_string().contains("resp_gone"), "{err}");
    let asked: Vec<String> = up
        .received()
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        asked,
        [
            format!("GET /v1/responses/{id}"),
            format!("GET /v1/responses/{id}/input_items"),
            format!("DELETE /v1/responses/{id}"),
            "GET /v1/responses/resp_gone".to_string(),
        ]
    );
}

/// The kept items are canonical: a tool loop started on Claude continues on
/// Gemini, then on a Chat upstream, each strict about call/result pairing.
#[tokio::test]
async fn a_tool_loop_moves_between_backends() {
    let (up, vertex, proxy) = setup("").await;
    let r1 = respond(
        &proxy,
        json!({"model": CLAUDE, "input": "weather in Paris?", "tools": weather_tools(),
               "reasoning": {"effort": "low"}, "max_output_tokens": 16000}),
    )
    .await;
    let call = r1["output"][2].clone();
    assert_eq!(call["type"], "function_call");
    let r2 = respond(
        &proxy,
        json!({"model": "gemini-2.5-flash", "previous_response_id": r1["id"], "tools": weather_tools(),
               "input": [{"type": "function_call_output", "call_id": call["call_id"], "output": "18C"}]}),
    )
    .await;
    assert_eq!(r2["output"][0]["content"][0]["text"], "Results: 18C");
    let (_, sent) = vertex.last();
    let roles: Vec<&str> = sent["contents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "model", "user"]);
    assert_eq!(
        sent["contents"][1]["parts"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["functionCall"]["name"],
        "get_weather"
    );
    assert_eq!(
        sent["contents"][2]["parts"][0]["functionResponse"]["name"],
        "get_weather"
    );

    respond(
        &proxy,
        json!({"model": "gpt-4o", "previous_response_id": r2["id"], "input": "Thanks"}),
    )
    .await;
    let sent = up.last().body;
    let roles: Vec<String> = chat_turns(&sent).into_iter().map(|(r, _)| r).collect();
    assert_eq!(roles, ["user", "assistant", "tool", "assistant", "user"]);
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(
        sent["messages"][2]["tool_call_id"],
        sent["messages"][1]["tool_calls"][0]["id"]
    );
}

/// A conversation the proxy kept continues on a backend whose upstream
/// keeps state: it gets the whole conversation, and its answer is kept too.
#[tokio::test]
async fn a_kept_conversation_continues_on_a_stateful_backend() {
    let chat = FakeUpstream::start().await;
    let stateful = FakeUpstream::start().await;
    let proxy = TestProxy::start(&format!(
        "[[backends]]\nname = \"openai\"\nkind = \"openai\"\nbase_url = \"{}\"\nauth = \"none\"\nmodels = [\"gpt-*\"]\n\n{}",
        chat.base_url,
        single(&stateful.base_url)
    ))
    .await;
    let r1 = respond(&proxy, json!({"model": "gpt-4o", "input": "Hi"})).await;
    let r2 = respond(
        &proxy,
        json!({"model": "m", "previous_response_id": r1["id"], "input": "Over there?"}),
    )
    .await;
    let sent = stateful.last().body;
    assert!(sent.get("previous_response_id").is_none(), "{sent}");
    let texts: Vec<String> = sent["input"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| text(&i["content"]))
        .collect();
    assert_eq!(texts, ["Hi", "Hello from gpt-4o", "Over there?"]);
    let (status, got) = proxy
        .call(
            Method::GET,
            &format!("/v1/responses/{}", r2["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!((status, &got["id"]), (200, &r2["id"]), "kept by the proxy");
    respond(
        &proxy,
        json!({"model": "gpt-4o", "previous_response_id": r2["id"], "input": "Back"}),
    )
    .await;
    assert_eq!(
        chat_turns(&chat.last().body),
        turns(&[
            ("user", "Hi"),
            ("assistant", "Hello from gpt-4o"),
            ("user", "Over there?"),
            ("assistant", "Hello from m"),
            ("user", "Back")
        ])
    );
}

/// A client may continue the moment `response.completed` arrives, before
/// the stream has even ended: the response is kept before that event goes
/// out.
#[tokio::test]
async fn a_streamed_response_can_be_continued_at_once() {
    let (up, _vertex, proxy) = setup("").await;
    for round in 0..20 {
        let mut answer = proxy
            .http
            .post(format!("{}/v1/responses", proxy.url))
            .json(&json!({"model": "gpt-4o", "input": format!("Hi {round}"), "stream": true}))
            .send()
            .await
            .unwrap();
        let mut seen = String::new();
        let id = loop {
            let chunk = answer.chunk().await.unwrap().expect("a terminal event");
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if let Some(at) = seen.find("event: response.completed\ndata: ") {
                let line = seen[at..].lines().nth(1).unwrap();
                let event: Value = serde_json::from_str(&line["data: ".len()..]).unwrap();
                break event["response"]["id"].as_str().unwrap().to_string();
            }
        };
        // The rest of the stream (`[DONE]`) is still unread.
        let r = respond(
            &proxy,
            json!({"model": "gpt-4o", "previous_response_id": id, "input": "Next"}),
        )
        .await;
        assert_eq!(r["previous_response_id"], json!(id));
        assert_eq!(chat_turns(&up.last().body).len(), 3);
        drop(answer);
    }
}

/// A response larger than the whole memory store is answered but not kept,
/// and says so.
#[tokio::test]
async fn a_response_too_large_for_the_memory_store_says_store_false() {
    let (_up, _vertex, proxy) = setup("[responses]\nmax_mib = 1\n").await;
    let big = "x".repeat(1_200_000);
    let r = respond(&proxy, json!({"model": "gpt-4o", "input": big})).await;
    assert_eq!(r["store"], false);
    let small = respond(&proxy, json!({"model": "gpt-4o", "input": "Hi"})).await;
    assert_eq!(small["store"], true);
}

/// Two backends whose upstreams keep state: the proxy remembers which one
/// holds each response and sends GET, DELETE and continuations there.
#[tokio::test]
async fn responses_of_two_stateful_upstreams_go_back_to_their_own() {
    let (a, b) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let proxy = TestProxy::start(&format!(
        "[[backends]]\nname = \"a\"\nkind = \"openresponses\"\nbase_url = \"{}\"\nmodels = [\"a-*\"]\n\n[[backends]]\nname = \"b\"\nkind = \"openresponses\"\nbase_url = \"{}\"\nmodels = [\"b-*\"]\n",
        a.base_url, b.base_url
    ))
    .await;
    let mut on_b = response_object("b-1", "completed", "Hello");
    on_b["id"] = json!("resp_on_b");
    b.script([Reply::Json(200, on_b.clone(), vec![])]);
    let r = respond(&proxy, json!({"model": "b-1", "input": "Hi"})).await;
    assert_eq!(r["id"], "resp_on_b");
    b.script([Reply::Json(200, on_b.clone(), vec![])]);
    let (status, got) = proxy.call(Method::GET, "/v1/responses/resp_on_b").await;
    assert_eq!((status, &got["id"]), (200, &json!("resp_on_b")));
    assert_eq!(b.last().path, "/v1/responses/resp_on_b");
    assert!(a.received().is_empty());
    // Continued on its own backend: passed through.
    respond(
        &proxy,
        json!({"model": "b-1", "previous_response_id": "resp_on_b", "input": "Again"}),
    )
    .await;
    assert_eq!(b.last().body["previous_response_id"], "resp_on_b");
    // On the other: a 400 that says where it is.
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "a-1", "previous_response_id": "resp_on_b", "input": "Again"}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("kept by the upstream of backend \"b\""),
        "{v}"
    );
    assert!(a.received().is_empty());
    b.script([Reply::Json(
        200,
        json!({"id": "resp_on_b", "object": "response.deleted", "deleted": true}),
        vec![],
    )]);
    let (status, _) = proxy.call(Method::DELETE, "/v1/responses/resp_on_b").await;
    assert_eq!(status, 200);
    assert_eq!(b.last().method, "DELETE");
    // Forgotten here too: with two stateful backends, nobody to ask.
    let (status, _) = proxy.call(Method::GET, "/v1/responses/resp_on_b").await;
    assert_eq!(status, 404);
}

/// `rediss://`: TLS to Redis, the server's certificate checked against the
/// CA in `ca_file`; without that CA the store is unreachable (503 for
/// chained requests) and nothing is sent in the clear.
#[tokio::test]
async fn redis_over_tls() {
    let Some(redis) = RedisServer::start_tls().await else {
        return;
    };
    let responses = format!(
        "[responses]\nstore = \"redis\"\nurl = \"{}\"\nca_file = {:?}\n",
        redis.url(),
        redis.ca_file()
    );
    let (up, _vertex, proxy) = setup(&responses).await;
    let r1 = respond(&proxy, json!({"model": "gpt-4o", "input": "Hi"})).await;
    assert_eq!(r1["store"], true);
    respond(
        &proxy,
        json!({"model": "gpt-4o", "previous_response_id": r1["id"], "input": "Over TLS"}),
    )
    .await;
    assert_eq!(chat_turns(&up.last().body).len(), 3);
    // Two responses, and their output items' keys.
    assert_eq!(redis.keys(), 2 * 2);

    // The system's roots do not know this CA.
    let untrusted = format!(
        "[responses]\nstore = \"redis\"\nurl = \"{}\"\n",
        redis.url()
    );
    let (_up, _vertex, proxy) = setup(&untrusted).await;
    let r = respond(&proxy, json!({"model": "gpt-4o", "input": "Hi"})).await;
    assert_eq!(r["store"], false);
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gpt-4o", "previous_response_id": r1["id"], "input": "x"}),
        )
        .await;
    assert_eq!(status, 503, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("over TLS) is unavailable: invalid peer certificate"),
        "{message}"
    );
    assert_eq!(redis.keys(), 2 * 2);
}

/// `item_reference` input items (what the AI SDK sends for items of stored
/// responses) become the items they name on a backend that keeps no state,
/// streamed or not; an unknown one is a 400 naming it; a stateful backend
/// gets them as they are.
#[tokio::test]
async fn item_references_resolve_from_the_store() {
    let (up, vertex, proxy) = setup("").await;
    for (model, streamed) in [("gpt-x", false), ("gemini-3-pro", true)] {
        let ask = json!({"model": model, "input": "weather in Paris?", "tools": tools()});
        let first = if streamed {
            respond_streamed(&proxy, ask).await
        } else {
            respond(&proxy, ask).await
        };
        // Every output item by reference (Gemini 3's signed reasoning too).
        let mut input = vec![json!({"role": "user", "content": "weather in Paris?"})];
        let mut call_id = String::new();
        for item in first["output"].as_array().unwrap() {
            input.push(json!({"type": "item_reference", "id": item["id"]}));
            if item["type"] == "function_call" {
                call_id = item["call_id"].as_str().unwrap().to_string();
            }
        }
        assert!(!call_id.is_empty(), "{first}");
        input.push(json!({"type": "function_call_output", "call_id": call_id, "output": "18C"}));
        let second = respond(
            &proxy,
            json!({"model": model, "input": input, "tools": tools(), "store": false}),
        )
        .await;
        assert!(second["output"].to_string().contains("18C"), "{second}");
    }
    // The Chat upstream got the call back; Gemini 3 its signature.
    let messages = up.last().body["messages"].clone();
    assert!(
        messages.to_string().contains("\"tool_calls\""),
        "{messages}"
    );
    assert!(!vertex.replayed().is_empty(), "the signature came back");

    let unknown =
        json!({"model": "gpt-x", "input": [{"type": "item_reference", "id": "fc_nowhere_1"}]});
    let (status, _, v) = proxy.post("/v1/responses", &unknown).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "item_not_found");
    assert_eq!(v["error"]["param"], "input[0]");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("'fc_nowhere_1'"),
        "{v}"
    );
    // A hostile id is quoted back escaped and shortened, and never with a
    // secret in it.
    let secret = llmproxy::Secret::new("sk-itemref-secret-0042");
    let hostile = format!(
        "fc_\u{1b}[31m\r\nX-Evil: 1 {}{}",
        secret.expose(),
        "z".repeat(300)
    );
    let (status, _, v) = proxy
        .post(
            "/v1/responses",
            &json!({"model": "gpt-x", "input": [{"type": "item_reference", "id": hostile}]}),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        !message.contains('\u{1b}') && !message.contains('\r') && !message.contains('\n'),
        "{message:?}"
    );
    assert!(
        message.contains("\\r\\n") && message.contains("...") && message.len() < 400,
        "{message}"
    );
    assert!(!message.contains(secret.expose()), "{message}");
    // Ids of item keys are no response ids.
    let (status, _) = proxy
        .call(Method::GET, "/v1/responses/item:fc_nowhere_1")
        .await;
    assert_eq!(status, 404);

    // Without a store there is nothing to resolve from.
    let (_, _, off) = setup("[responses]\nstore = \"off\"\n").await;
    let (status, _, v) = off.post("/v1/responses", &unknown).await;
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("keeps no responses"),
        "{v}"
    );

    // A stateful upstream resolves them itself.
    let stateful = FakeUpstream::start().await;
    let proxy = TestProxy::start(&single(&stateful.base_url)).await;
    let (status, _, _) = proxy.post("/v1/responses", &unknown).await;
    assert_eq!(status, 200);
    assert_eq!(stateful.last().body["input"][0]["type"], "item_reference");
}
