"""Drives llmproxy's Messages endpoint with the official Anthropic Python SDK:
a message, a streamed message (the SDK's own stream accumulation), a tool
loop, and a token count.

Usage: PROXY_URL=http://127.0.0.1:PORT MODEL=... python anthropic_sdk.py
Prints one JSON line with what it saw; raises on any failure.
"""

import json
import os

import anthropic

model = os.environ["MODEL"]
client = anthropic.Anthropic(base_url=os.environ["PROXY_URL"], api_key=os.environ["LLMPROXY_API_KEY"], max_retries=0)

plain = client.messages.create(model=model, max_tokens=100, system="Be brief.", messages=[{"role": "user", "content": "hi"}])

with client.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": "hi"}]) as stream:
    streamed = stream.get_final_message()

tools = [
    {"name": "get_weather", "description": "Weather by city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}},
    {"name": "now", "description": "The time", "input_schema": {"type": "object", "properties": {}}},
]
messages = [{"role": "user", "content": "Call both tools"}]
first = client.messages.create(model=model, max_tokens=1000, tools=tools, messages=messages)
calls = [b for b in first.content if b.type == "tool_use"]
messages += [
    {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": c.id, "content": out} for c, out in zip(calls, ["18C", "noon"])]},
]
with client.messages.stream(model=model, max_tokens=1000, tools=tools, messages=messages) as stream:
    second = stream.get_final_message()

count = client.messages.count_tokens(model=model, messages=[{"role": "user", "content": "How many tokens is this?"}])

text = lambda m: "".join(b.text for b in m.content if b.type == "text")
print(json.dumps({
    "plain": [text(plain), plain.stop_reason, plain.model],
    "streamed": [text(streamed), streamed.stop_reason, streamed.usage.output_tokens > 0],
    "calls": [[c.name, c.input] for c in calls],
    "first_stop": first.stop_reason,
    "after_tools": text(second),
    "counted": count.input_tokens > 0,
}))
