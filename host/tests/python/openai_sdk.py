"""Drives llmproxy with the official OpenAI Python SDK, as the README shows:
Chat Completions (plain, streamed with usage, a tool loop) and Responses,
including a conversation continued with previous_response_id and the stored
response read back, listed and deleted.

Usage: PROXY_URL=http://127.0.0.1:PORT python openai_sdk.py
Prints one JSON line with what it saw; raises on any failure.
"""

import json
import os

import openai
from openai import OpenAI

client = OpenAI(base_url=os.environ["PROXY_URL"] + "/v1", api_key=os.environ.get("LLMPROXY_API_KEY", "unused"))

plain = client.chat.completions.create(model="gpt-x", messages=[{"role": "user", "content": "hi"}])

text, usage = "", None
for chunk in client.chat.completions.create(
    model="gpt-x",
    messages=[{"role": "user", "content": "hi"}],
    stream=True,
    stream_options={"include_usage": True},
):
    if chunk.choices and chunk.choices[0].delta.content:
        text += chunk.choices[0].delta.content
    if chunk.usage:
        usage = chunk.usage.total_tokens

tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
messages = [{"role": "user", "content": "weather in Paris?"}]
first = client.chat.completions.create(model="gpt-x", messages=messages, tools=tools)
call = first.choices[0].message.tool_calls[0]
messages += [first.choices[0].message.model_dump(exclude_none=True), {"role": "tool", "tool_call_id": call.id, "content": "18C"}]
second = client.chat.completions.create(model="gpt-x", messages=messages, tools=tools)

response = client.responses.create(model="gpt-x", input="hi")
events = [e.type for e in client.responses.create(model="gpt-x", input="hi", stream=True)]

# A conversation the proxy keeps: the second turn sends only its new input.
followup = client.responses.create(model="gpt-x", input="and again?", previous_response_id=response.id)
retrieved = client.responses.retrieve(followup.id)
items = client.responses.input_items.list(followup.id, order="asc")
client.responses.delete(response.id)
try:
    client.responses.retrieve(response.id)
    deleted = "still there"
except openai.NotFoundError as e:
    deleted = e.status_code

print(json.dumps({
    "plain": plain.choices[0].message.content,
    "streamed": text,
    "usage": usage,
    "call": [call.function.name, json.loads(call.function.arguments)],
    "after_tool": second.choices[0].message.content,
    "responses": response.output_text,
    "last_event": events[-1],
    "followup": [followup.previous_response_id == response.id, retrieved.output_text],
    "input_items": [item.type for item in items.data],
    "deleted": deleted,
}))
