//! Responses conversation state (`previous_response_id`, stored responses)
//! for backends that keep none themselves.
//!
//! A response the proxy keeps is a [`Record`]: the input items its request
//! added, the whole response (output items verbatim, reasoning state
//! included) and the id of the response it continued. A request naming a
//! `previous_response_id` has its input expanded to every earlier record's
//! input and output, oldest first, followed by its own input, before any
//! translator sees it; the items are canonical, so whichever backend the
//! model routes to can continue. `instructions` are never inherited.
//!
//! For a backend whose upstream keeps state, the proxy passes
//! `previous_response_id` through and keeps only a pointer (which backend
//! holds the response), for `GET`/`DELETE /v1/responses/{id}`.

use crate::backend::Backend;
use crate::config::StateKeeper;
use crate::error::Error;
use crate::ingress::RequestHead;
use crate::store::{Store, StoreError};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use llmproxy_api::events::ResponseEvent;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::sync::Arc;

/// One kept response.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Record {
    /// The backend that produced it.
    pub backend: String,
    /// The response it continued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_response_id: Option<String>,
    /// Only a pointer: the backend's upstream keeps the response.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub upstream: bool,
    /// The input items its own request added.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input: Vec<Value>,
    /// The response object, as the client got it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<Map<String, Value>>,
    /// Make its output items findable by id (`item_reference`): only for
    /// backends whose item ids are the proxy's own, unguessable ones.
    #[serde(skip)]
    pub index_items: bool,
}

/// The `previous_response_id` of a stored record.
fn previous_of(record: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Link {
        previous_response_id: Option<String>,
    }
    serde_json::from_slice::<Link>(record)
        .ok()
        .and_then(|l| l.previous_response_id)
}

fn decode(record: &[u8]) -> Result<Record, Error> {
    serde_json::from_slice(record)
        .map_err(|e| Error::Internal(format!("a stored response cannot be read: {e}")))
}

/// Where the id of the response holding output item `id` is kept. Response
/// ids never contain `:`, so these keys cannot be read as responses.
fn item_key(id: &str) -> String {
    format!("item:{id}")
}

/// Whether a client-given response id would name an item key.
fn is_item_key(id: &str) -> bool {
    id.starts_with("item:")
}

/// The 404 for a response this proxy does not keep.
pub(crate) fn response_not_found(id: &str, detail: &str) -> Error {
    Error::NotFound {
        message: format!("Response with id '{id}' not found{detail}."),
        param: None,
        code: "response_not_found",
    }
}

fn unavailable(e: StoreError) -> Error {
    Error::StoreUnavailable(format!(
        "{e}. Requests without previous_response_id are still served."
    ))
}

/// What one request does with conversation state.
#[derive(Debug)]
pub(crate) struct Plan {
    /// The request for the translator (input expanded when chained).
    pub body: Bytes,
    /// Keep the response: the record without its response.
    pub keep: Option<Record>,
    /// The proxy names the response (it keeps it; upstream ids may repeat).
    pub mint_id: bool,
    /// The response whose conversation `body` was expanded with.
    pub continued: Option<String>,
}

/// The conversations this proxy keeps, in its response store. Cheap to
/// clone; a reload's new configuration keeps the same store.
#[derive(Debug, Clone)]
pub(crate) struct Conversations {
    pub store: Arc<Store>,
    /// Where store operations are counted.
    pub metrics: Arc<crate::metrics::Metrics>,
}

impl Conversations {
    /// Counts a store operation's result.
    fn counted<T>(&self, operation: &str, result: Result<T, StoreError>) -> Result<T, StoreError> {
        self.metrics.store(operation, result.is_ok());
        result
    }
}

impl Conversations {
    /// Resolves `previous_response_id` and decides what to keep, for a
    /// request routed to `backend`. `responses_client`: the request came as
    /// a Responses request (Chat requests are never stored).
    pub(crate) async fn plan(
        &self,
        body: Bytes,
        head: &mut RequestHead,
        backend: &Backend,
        responses_client: bool,
    ) -> Result<Plan, Error> {
        let store = &self.store;
        let keep = responses_client && head.store() && store.is_on();
        let local_keeper = backend.state == StateKeeper::Proxy;
        // What a stateful upstream answers is kept as a pointer to it.
        let pointer = || {
            keep.then(|| Record {
                backend: backend.name.clone(),
                upstream: true,
                ..Record::default()
            })
        };
        // Item references name items of responses kept here; a backend
        // that keeps no state gets the items themselves.
        let mut body = body;
        if local_keeper && head.may_reference_items() {
            let items = self.resolve_references(head.take_input()).await?;
            head.set_input(&items);
            body = with_input(&body, items, false)?;
        }
        let Some(previous) = head.previous_response_id() else {
            if keep && local_keeper {
                let record = Record {
                    backend: backend.name.clone(),
                    input: head.take_input(),
                    index_items: backend.mints_item_ids,
                    ..Record::default()
                };
                return Ok(Plan {
                    body,
                    keep: Some(record),
                    mint_id: true,
                    continued: None,
                });
            }
            head.forget_input();
            return Ok(Plan {
                body,
                keep: pointer(),
                mint_id: false,
                continued: None,
            });
        };
        if is_item_key(&previous) {
            return Err(not_found(&previous, None));
        }
        let chain = self
            .counted("read", store.chain(&previous, previous_of).await)
            .map_err(unavailable)?;
        let records = chain
            .records
            .iter()
            .map(|bytes| decode(bytes))
            .collect::<Result<Vec<Record>, Error>>()?;
        let elsewhere = |kept_by: &str| Error::InvalidRequest {
            message: format!(
                "Previous response with id '{previous}' is kept by the upstream of backend {kept_by:?}, so it cannot be continued on backend {:?}. Use a model that backend serves, or send the whole conversation in `input`.",
                backend.name
            ),
            param: Some("previous_response_id".into()),
            code: Some("previous_response_not_found".into()),
        };
        match records.first() {
            // Not kept here, or only as a pointer: the upstream has it.
            None if !local_keeper => {}
            Some(first) if first.upstream && !local_keeper => {
                if first.backend != backend.name {
                    return Err(elsewhere(&first.backend));
                }
            }
            Some(first) if first.upstream => return Err(elsewhere(&first.backend)),
            Some(_) => {}
            None if !store.is_on() => {
                return Err(Error::InvalidRequest {
                    message: format!(
                        "previous_response_id cannot be used with backend {:?}: this proxy keeps no responses ([responses] store = \"off\"). Send the whole conversation in `input` instead.",
                        backend.name
                    ),
                    param: Some("previous_response_id".into()),
                    code: Some("previous_response_not_found".into()),
                });
            }
            None => return Err(not_found(&previous, None)),
        }
        if records.first().is_none_or(|r| r.upstream) {
            head.forget_input();
            return Ok(Plan {
                body,
                keep: pointer(),
                mint_id: false,
                continued: None,
            });
        }
        if let Some(missing) = &chain.missing {
            return Err(not_found(&previous, Some(missing)));
        }
        let own = head.take_input();
        let mut items = Vec::new();
        for record in records.iter().rev() {
            items.extend(record.input.iter().cloned());
            if let Some(Value::Array(output)) =
                record.response.as_ref().and_then(|r| r.get("output"))
            {
                items.extend(output.iter().cloned());
            }
        }
        items.extend(own.iter().cloned());
        let body = with_input(&body, items, true)?;
        Ok(Plan {
            body,
            // Kept by the proxy whoever answers: the conversation is here.
            mint_id: keep,
            continued: Some(previous.clone()),
            keep: keep.then(|| Record {
                backend: backend.name.clone(),
                previous_response_id: Some(previous),
                upstream: false,
                input: own,
                response: None,
                index_items: backend.mints_item_ids,
            }),
        })
    }

    /// Keeps `response` as `record` says. A store that fails loses the
    /// response, not the answer: it is logged, and the response says
    /// `store: false`.
    pub(crate) async fn keep(&self, record: &Record, response: &mut Map<String, Value>) {
        // An upstream's id that looks like an item key is not kept (it would
        // take over a reference).
        let Some(id) = response
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !is_item_key(id))
            .map(str::to_string)
        else {
            return;
        };
        let mut record = record.clone();
        if !record.upstream {
            record.response = Some(response.clone());
        }
        let mut result = match serde_json::to_vec(&record) {
            Ok(bytes) => self.counted("write", self.store.put(&id, bytes).await),
            Err(e) => Err(StoreError(e.to_string())),
        };
        // Each output item can be referenced (`item_reference`) later.
        let items = record
            .response
            .as_ref()
            .filter(|_| record.index_items)
            .and_then(|r| r.get("output"))
            .and_then(Value::as_array);
        for item_id in items
            .into_iter()
            .flatten()
            .filter_map(|i| i.get("id").and_then(Value::as_str))
        {
            if result.is_err() {
                break;
            }
            result = self.counted(
                "write",
                self.store
                    .put(&item_key(item_id), id.clone().into_bytes())
                    .await,
            );
        }
        if let Err(e) = result {
            tracing::warn!(response = %id, "the response was not stored: {e}");
            if !record.upstream {
                response.insert("store".into(), Value::Bool(false));
            }
        }
    }

    /// `items` with every `item_reference` replaced by the item it names,
    /// from the responses kept here; a 400 naming the first id not found.
    async fn resolve_references(&self, items: Vec<Value>) -> Result<Vec<Value>, Error> {
        let store = &self.store;
        let mut out = Vec::with_capacity(items.len());
        let mut records: Vec<(String, Record)> = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            if item.get("type").and_then(Value::as_str) != Some("item_reference") {
                out.push(item);
                continue;
            }
            let Some(id) = item.get("id").and_then(Value::as_str) else {
                return Err(Error::InvalidRequest {
                    message: "an item_reference needs the `id` of the item".into(),
                    param: Some(format!("input[{i}].id")),
                    code: None,
                });
            };
            // The id as the client sent it, unchecked: escaped, shortened
            // and scrubbed before it is quoted back.
            let shown = crate::redact::redact(id)
                .chars()
                .take(64)
                .collect::<String>()
                .escape_debug()
                .to_string()
                + if id.chars().count() > 64 { "..." } else { "" };
            let unknown = |detail: &str| Error::InvalidRequest {
                message: format!(
                    "Item with id '{shown}' not found{detail}. Send the item itself instead of a reference."
                ),
                param: Some(format!("input[{i}]")),
                code: Some("item_not_found".into()),
            };
            if !store.is_on() {
                return Err(unknown(
                    ": this proxy keeps no responses ([responses] store = \"off\")",
                ));
            }
            let owner = self
                .counted("read", store.chain(&item_key(id), |_| None).await)
                .map_err(unavailable)?
                .records
                .into_iter()
                .next()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| unknown(""))?;
            if !records.iter().any(|(r, _)| *r == owner) {
                let record = match self.stored(&owner).await {
                    Ok(record) => record,
                    Err(e @ Error::StoreUnavailable(_)) => return Err(e),
                    Err(_) => return Err(unknown("")),
                };
                records.push((owner.clone(), record));
            }
            let found = records
                .iter()
                .filter(|(r, _)| *r == owner)
                .flat_map(|(_, record)| {
                    record
                        .response
                        .as_ref()
                        .and_then(|r| r.get("output"))
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                })
                .find(|o| o.get("id").and_then(Value::as_str) == Some(id))
                .cloned()
                .ok_or_else(|| unknown(""))?;
            out.push(found);
        }
        Ok(out)
    }

    /// `events`, keeping the response of the terminal event before it goes
    /// out (so that a client continuing at once finds it).
    pub(crate) fn keep_stream(
        &self,
        record: Record,
        events: BoxStream<'static, ResponseEvent>,
    ) -> BoxStream<'static, ResponseEvent> {
        let state = Arc::new((self.clone(), record));
        events
            .then(move |mut event| {
                let state = state.clone();
                async move {
                    if let Some(response) = event.terminal_mut()
                        && let Ok(Value::Object(mut kept)) = serde_json::to_value(&*response)
                    {
                        state.0.keep(&state.1, &mut kept).await;
                        // What keeping decided (`store: false` when it failed).
                        if let Some(store) = kept.remove("store") {
                            response.extra.insert("store".into(), store);
                        }
                    }
                    event
                }
            })
            .boxed()
    }

    /// The record kept for `id`: a 404 naming it when there is none.
    pub(crate) async fn stored(&self, id: &str) -> Result<Record, Error> {
        if is_item_key(id) {
            return Err(response_not_found(id, ""));
        }
        let chain = self
            .counted("read", self.store.chain(id, |_| None).await)
            .map_err(unavailable)?;
        match chain.records.first() {
            Some(bytes) => decode(bytes),
            None => Err(response_not_found(id, "")),
        }
    }

    /// Forgets the response `id`; whether it was kept.
    pub(crate) async fn forget(&self, id: &str) -> Result<bool, Error> {
        if is_item_key(id) {
            return Ok(false);
        }
        self.counted("delete", self.store.delete(id).await)
            .map_err(unavailable)
    }

    /// Every input item of a kept response, in order: those of the
    /// responses it continues (their input and output) and its own.
    pub(crate) async fn input_items(&self, id: &str) -> Result<Vec<Value>, Error> {
        if is_item_key(id) {
            return Err(response_not_found(id, ""));
        }
        let chain = self
            .counted("read", self.store.chain(id, previous_of).await)
            .map_err(unavailable)?;
        if let Some(missing) = chain.missing.as_deref().filter(|m| *m != id) {
            return Err(response_not_found(
                id,
                &format!(" whole: it continues '{missing}', which has expired or was deleted"),
            ));
        }
        let records = chain
            .records
            .iter()
            .map(|bytes| decode(bytes))
            .collect::<Result<Vec<Record>, Error>>()?;
        if records.first().is_none_or(|r| r.upstream) {
            return Err(response_not_found(id, " among those this proxy keeps"));
        }
        let newest = records.len() - 1;
        let mut items = Vec::new();
        for (n, record) in records.into_iter().rev().enumerate() {
            let owner = record
                .response
                .as_ref()
                .and_then(|r| r.get("id"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            for (i, item) in record.input.into_iter().enumerate() {
                items.push(listed(item, &owner, i));
            }
            // The newest record's output is not its input.
            if n < newest
                && let Some(Value::Array(output)) =
                    record.response.and_then(|mut r| r.remove("output"))
            {
                items.extend(output);
            }
        }
        Ok(items)
    }
}

/// The 404 for a `previous_response_id` whose chain is not all kept.
fn not_found(id: &str, missing: Option<&str>) -> Error {
    let message = match missing {
        Some(m) if m != id => format!(
            "Previous response with id '{id}' not found: it continues '{m}', which has expired or was deleted. Start a new conversation, or send it whole in `input`."
        ),
        _ => format!(
            "Previous response with id '{id}' not found. It was never stored here (store: false, or another proxy's memory), has expired ([responses] ttl_secs) or was deleted."
        ),
    };
    Error::NotFound {
        message,
        param: Some("previous_response_id".into()),
        code: "previous_response_not_found",
    }
}

/// `body` with `input` replaced by `items` and, when `chained`,
/// `previous_response_id` removed.
fn with_input(body: &[u8], items: Vec<Value>, chained: bool) -> Result<Bytes, Error> {
    let mut obj: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| Error::Internal(format!("cannot expand the request: {e}")))?;
    obj.insert("input".into(), Value::Array(items));
    if chained {
        obj.remove("previous_response_id");
    }
    serde_json::to_vec(&obj)
        .map(Bytes::from)
        .map_err(|e| Error::Internal(format!("cannot expand the request: {e}")))
}

/// An input item as `input_items` lists it: with an `id` (derived from
/// its response and position, so that pages stay stable) and, for
/// messages, a `status`.
fn listed(mut item: Value, owner: &str, index: usize) -> Value {
    if let Value::Object(obj) = &mut item {
        let kind = obj.get("type").and_then(Value::as_str).unwrap_or("message");
        let prefix = match kind {
            "message" => "msg",
            "function_call_output" => "fco",
            _ => "item",
        };
        if kind == "message" {
            obj.entry("type").or_insert(json!("message"));
            obj.entry("status").or_insert(json!("completed"));
        }
        if !obj.get("id").is_some_and(Value::is_string) {
            let tail = owner.strip_prefix("resp_").unwrap_or(owner);
            obj.insert("id".into(), json!(format!("{prefix}_{tail}_{index}")));
        }
    }
    item
}

/// The `GET /v1/responses/{id}/input_items` query.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    pub after: Option<String>,
    pub before: Option<String>,
    pub limit: Option<usize>,
    pub order: Option<String>,
}

/// One page of `items` as an OpenAI list object.
pub(crate) fn page(mut items: Vec<Value>, query: &ListQuery) -> Result<Value, Error> {
    let invalid = |message: String, param: &str| Error::InvalidRequest {
        message,
        param: Some(param.into()),
        code: Some("invalid_value".into()),
    };
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(invalid(
            format!("limit must be between 1 and 100, not {limit}."),
            "limit",
        ));
    }
    match query.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => {
            return Err(invalid(
                format!("order must be \"asc\" or \"desc\", not {other:?}."),
                "order",
            ));
        }
    }
    let position = |id: &str, param: &str| {
        items
            .iter()
            .position(|i| i.get("id").and_then(Value::as_str) == Some(id))
            .ok_or_else(|| invalid(format!("No input item with id '{id}'."), param))
    };
    let start = match &query.after {
        Some(id) => position(id, "after")? + 1,
        None => 0,
    };
    let end = match &query.before {
        Some(id) => position(id, "before")?,
        None => items.len(),
    };
    let end = end.max(start);
    let has_more = end - start > limit;
    let data: Vec<Value> = items.drain(start..end).take(limit).collect();
    let id_of = |v: Option<&Value>| v.and_then(|i| i.get("id")).cloned().unwrap_or(Value::Null);
    Ok(json!({
        "object": "list",
        "first_id": id_of(data.first()),
        "last_id": id_of(data.last()),
        "has_more": has_more,
        "data": data,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("i{i}")})).collect()
    }

    fn ids(page: &Value) -> Vec<&str> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect()
    }

    #[cfg(feature = "server")]
    #[test]
    fn pages_walk_both_ways() {
        let q = |after: Option<&str>, limit, order: &str| ListQuery {
            after: after.map(str::to_string),
            before: None,
            limit: Some(limit),
            order: Some(order.into()),
        };
        let p = page(items(5), &q(None, 2, "asc")).unwrap();
        assert_eq!((ids(&p), &p["has_more"]), (vec!["i0", "i1"], &json!(true)));
        let p = page(items(5), &q(Some("i1"), 2, "asc")).unwrap();
        assert_eq!(ids(&p), ["i2", "i3"]);
        let p = page(items(5), &q(Some("i3"), 2, "asc")).unwrap();
        assert_eq!((ids(&p), &p["has_more"]), (vec!["i4"], &json!(false)));
        let p = page(items(5), &ListQuery::default()).unwrap();
        assert_eq!(
            ids(&p),
            ["i4", "i3", "i2", "i1", "i0"],
            "newest first by default"
        );
        assert_eq!(
            (&p["first_id"], &p["last_id"]),
            (&json!("i4"), &json!("i0"))
        );
        let before = ListQuery {
            before: Some("i3".into()),
            order: Some("asc".into()),
            ..ListQuery::default()
        };
        assert_eq!(ids(&page(items(5), &before).unwrap()), ["i0", "i1", "i2"]);
        assert!(page(items(5), &q(Some("nope"), 2, "asc")).is_err());
        assert!(page(items(5), &q(None, 0, "asc")).is_err());
        assert!(page(items(5), &q(None, 2, "sideways")).is_err());
    }

    #[test]
    fn listed_items_get_stable_ids_and_a_status() {
        let item = listed(json!({"role": "user", "content": "hi"}), "resp_abc", 3);
        assert_eq!(item["id"], "msg_abc_3");
        assert_eq!(item["status"], "completed");
        let output = listed(
            json!({"type": "function_call_output", "call_id": "c", "output": "x"}),
            "resp_abc",
            0,
        );
        assert_eq!(output["id"], "fco_abc_0");
        let kept = listed(json!({"type": "reasoning", "id": "rs_1"}), "resp_abc", 1);
        assert_eq!(kept["id"], "rs_1");
    }
}
