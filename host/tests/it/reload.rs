//! Replacing the configuration of a running proxy (`ReloadableProxy`, what
//! SIGHUP does): requests in flight finish where they started.

use crate::support::*;
use serde_json::json;
use std::time::Duration;

fn config(base_url: &str) -> llmproxy::Config {
    llmproxy::Config::from_toml(&format!(
        "[[backends]]\nname = \"main\"\nkind = \"openresponses\"\nbase_url = \"{base_url}\"\nmodels = [\"*\"]\n"
    ))
    .unwrap()
}

#[tokio::test]
async fn requests_in_flight_finish_on_the_old_config() {
    let (old, new) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let chunk = |t: &str| {
        format!(
            "event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"item_id\":\"m1\",\"output_index\":0,\"content_index\":0,\"delta\":\"{t}\"}}\n\n"
        )
    };
    old.script([Reply::Sse {
        chunks: vec![
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"output\":[]}}\n\n".into(),
            "event: response.output_item.added\ndata: {\"type\":\"response.output_item.added\",\"output_index\":0,\"item\":{\"type\":\"message\",\"id\":\"m1\",\"role\":\"assistant\",\"status\":\"in_progress\",\"content\":[]}}\n\n".into(),
            chunk("slow "),
            chunk("answer"),
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"output\":[{\"type\":\"message\",\"id\":\"m1\",\"role\":\"assistant\",\"status\":\"completed\",\"content\":[{\"type\":\"output_text\",\"text\":\"slow answer\",\"annotations\":[]}]}]}}\n\n".into(),
        ],
        delay: Duration::from_millis(300),
        then_hang: false,
    }]);
    let (proxy, url, http) = serve(config(&old.base_url)).await;
    let slow = http
        .post(format!("{url}/v1/responses"))
        .json(&json!({"model": "m", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 200);

    // Reload while the answer is streaming.
    proxy.reload(config(&new.base_url)).await.unwrap();
    let (status, _, v) = proxy_post(&http, &url).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        new.received().len(),
        1,
        "new requests go to the new upstream"
    );

    let body = slow.text().await.unwrap();
    assert!(
        body.contains("\"delta\":\"answer\"") && body.contains("response.completed"),
        "{body}"
    );
    assert_eq!(old.received().len(), 1);

    // A config that does not load changes nothing.
    let bad = llmproxy::Config::from_toml(
        "[[backends]]\nname = \"x\"\ntranslator = { path = \"/nonexistent.wasm\" }\nmodels = [\"*\"]\nbase_url = \"http://127.0.0.1:9\"\n",
    )
    .unwrap();
    let e = proxy.reload(bad).await.unwrap_err().to_string();
    assert!(e.contains("/nonexistent.wasm: cannot read it"), "{e}");
    let (status, _, _) = proxy_post(&http, &url).await;
    assert_eq!(status, 200);
    assert_eq!(new.received().len(), 2);
}

/// Serves `config` reloadably on 127.0.0.1: the proxy, its URL, a client.
async fn serve(config: llmproxy::Config) -> (llmproxy::ReloadableProxy, String, reqwest::Client) {
    let proxy = llmproxy::ReloadableProxy::new(llmproxy::Proxy::new(config).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(axum::serve(listener, proxy.router()).into_future());
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(no_tls())
        .build()
        .unwrap();
    (proxy, url, http)
}

async fn proxy_post(http: &reqwest::Client, url: &str) -> (u16, (), serde_json::Value) {
    let r = http
        .post(format!("{url}/v1/responses"))
        .json(&json!({"model": "m", "input": "hi"}))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), (), r.json().await.unwrap())
}

/// Stored responses outlive a reload: a conversation started before it
/// continues after it, on the new upstream.
#[tokio::test]
async fn stored_responses_survive_a_reload() {
    let (old, new) = (FakeUpstream::start().await, FakeUpstream::start().await);
    let chat = |base_url: &str, ttl: u32| {
        llmproxy::Config::from_toml(&format!(
            "[responses]\nttl_secs = {ttl}\n[[backends]]\nname = \"main\"\nkind = \"openai\"\nauth = \"none\"\nbase_url = \"{base_url}\"\nmodels = [\"*\"]\n"
        ))
        .unwrap()
    };
    let (proxy, url, http) = serve(chat(&old.base_url, 3600)).await;
    let (status, _, r1) = proxy_post(&http, &url).await;
    assert_eq!(status, 200, "{r1}");
    // A changed [responses] table waits for a restart; the store stays.
    proxy.reload(chat(&new.base_url, 1)).await.unwrap();
    let r = http
        .post(format!("{url}/v1/responses"))
        .json(&json!({"model": "m", "previous_response_id": r1["id"], "input": "again"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let messages = new.last().body["messages"].as_array().unwrap().len();
    assert_eq!(messages, 3, "hi, the answer, again");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let r = http
        .get(format!("{url}/v1/responses/{}", r1["id"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "still the first ttl_secs (3600)");
}
