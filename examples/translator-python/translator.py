"""An llmproxy translator in Python, for Ollama's native chat API.

Ollama also serves an OpenAI-compatible API (use `kind = "openai"` for that);
its own `/api/chat` additionally takes `options` such as `num_ctx` and
`keep_alive`, which the backend's settings pass through here:

    settings = { options = { num_ctx = 32768 }, keep_alive = "30m" }

Build (componentize-py from PyPI):

    componentize-py -d ../../wit -w translator-component componentize translator -o ollama.wasm

Ollama is always asked for a whole answer (`stream: false`); when the client
asked for a stream, llmproxy replays the answer as canonical stream events.
Images given as URLs are fetched by llmproxy on request (`needs-media`).
"""

import base64
import json
import os

from componentize_py_types import Err
from wit_world import exports
from wit_world.exports import translator as t

SETTINGS = {"options", "keep_alive"}
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


def invalid(message, param=None):
    return Err(t.Error_InvalidRequest(t.ErrorInfo(message, param, None)))


def new_id(prefix):
    return prefix + "_" + os.urandom(12).hex()


def text_of(content):
    """A message's text, and the base64 images or image URLs it holds."""
    if isinstance(content, str):
        return content, []
    texts, images = [], []
    for part in content or []:
        kind = part.get("type")
        if kind in ("input_text", "output_text"):
            texts.append(part.get("text", ""))
        elif kind == "input_image" and part.get("image_url"):
            images.append(part["image_url"])
        elif kind != "refusal":
            raise Err(t.Error_Unsupported(t.ErrorInfo(f"content part {kind!r} is not supported by Ollama", "input", None)))
    return "\n".join(texts), images


def image_data(url, ctx, missing):
    """Ollama takes images as bare base64."""
    if url.startswith("data:"):
        return url.partition(",")[2]
    for media in ctx.media:
        if media.url == url:
            return media.data_base64
    missing.append(url)
    return ""


def messages_of(ctx, req):
    messages, names, missing = [], {}, []
    if req.get("instructions"):
        messages.append({"role": "system", "content": req["instructions"]})
    items = req.get("input", "")
    if isinstance(items, str):
        items = [{"type": "message", "role": "user", "content": items}]
    for item in items:
        kind = item.get("type", "message")
        if kind == "message":
            text, images = text_of(item.get("content"))
            message = {"role": ROLES.get(item.get("role"), "user"), "content": text}
            if images:
                message["images"] = [image_data(url, ctx, missing) for url in images]
            messages.append(message)
        elif kind == "function_call":
            names[item["call_id"]] = item["name"]
            call = {"function": {"name": item["name"], "arguments": json.loads(item.get("arguments") or "{}")}}
            last = messages[-1] if messages else None
            if last and last["role"] == "assistant" and not last.get("images"):
                last.setdefault("tool_calls", []).append(call)
            else:
                messages.append({"role": "assistant", "content": "", "tool_calls": [call]})
        elif kind == "function_call_output":
            output = item.get("output", "")
            if not isinstance(output, str):
                output = text_of(output)[0]
            messages.append({"role": "tool", "content": output, "tool_name": names.get(item["call_id"], "")})
        elif kind != "reasoning":
            raise Err(t.Error_Unsupported(t.ErrorInfo(f"input item {kind!r} is not supported by Ollama", "input", None)))
    if missing:
        raise Err(t.Error_NeedsMedia(missing))
    return messages


class Translator(exports.Translator):
    def configure(self, settings):
        """Checks the settings. Ollama's native API is no client's, so no
        request passes through: every one is translated."""
        unknown = set(json.loads(settings)) - SETTINGS
        if unknown:
            raise Err(f"unknown setting(s) {', '.join(sorted(unknown))}; this translator takes {', '.join(sorted(SETTINGS))}")
        return []

    def adapt(self, ctx, api, body):
        """Never called: `configure` declares no passthrough."""
        raise Err(t.Error_Unsupported(t.ErrorInfo("Ollama's native API is no client's", None, None)))

    def request(self, ctx, body):
        req = json.loads(body)
        settings = json.loads(ctx.settings)
        extras = json.loads(ctx.extras or "{}").get("chat") or {}
        for param in ("n", "logit_bias", "modalities", "audio", "prediction", "web_search_options"):
            if extras.get(param) not in (None, 1):
                raise Err(t.Error_Unsupported(t.ErrorInfo(f"`{param}` is not supported by Ollama", param, None)))
        out = {"model": ctx.upstream_model, "messages": messages_of(ctx, req), "stream": False}
        options = dict(settings.get("options", {}))
        for ours, theirs in (("temperature", "temperature"), ("top_p", "top_p"), ("max_output_tokens", "num_predict")):
            if req.get(ours) is not None:
                options[theirs] = req[ours]
        for param in ("seed", "stop"):
            if extras.get(param) is not None:
                options[param] = extras[param] if param != "stop" or isinstance(extras[param], list) else [extras[param]]
        if options:
            out["options"] = options
        if "keep_alive" in settings:
            out["keep_alive"] = settings["keep_alive"]
        tools = [
            {"type": "function", "function": {k: tool[k] for k in ("name", "description", "parameters") if k in tool}}
            for tool in req.get("tools") or []
        ]
        if any(tool.get("type") != "function" for tool in req.get("tools") or []):
            raise Err(t.Error_Unsupported(t.ErrorInfo("Ollama runs only function tools", "tools", None)))
        if tools and req.get("tool_choice", "auto") != "none":
            out["tools"] = tools
        effort = (req.get("reasoning") or {}).get("effort")
        if effort:
            out["think"] = effort not in ("none", "minimal")
        fmt = (req.get("text") or {}).get("format") or {}
        if fmt.get("type") == "json_schema":
            out["format"] = fmt.get("schema", {})
        elif fmt.get("type") == "json_object":
            out["format"] = "json"
        return t.UpstreamRequest("POST", "/api/chat", [("content-type", "application/json")], json.dumps(out).encode(), "")

    def response(self, ctx, state, response):
        try:
            answer = json.loads(response.body)
        except ValueError:
            answer = {"error": response.body[:200].decode("utf-8", "replace")}
        if not 200 <= response.status < 300 or "error" in answer:
            status = response.status if response.status >= 400 else 502
            raise Err(t.Error_Upstream(t.UpstreamError(status, str(answer.get("error")), None, None, None, None)))
        message = answer.get("message") or {}
        output = []
        if message.get("thinking"):
            output.append({"type": "reasoning", "id": new_id("rs"), "summary": [{"type": "summary_text", "text": message["thinking"]}]})
        if message.get("content"):
            part = {"type": "output_text", "text": message["content"], "annotations": [], "logprobs": []}
            output.append({"type": "message", "id": new_id("msg"), "role": "assistant", "status": "completed", "content": [part]})
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            output.append({
                "type": "function_call", "id": new_id("fc"), "call_id": call.get("id") or new_id("call"),
                "name": function.get("name", ""), "arguments": json.dumps(function.get("arguments") or {}), "status": "completed",
            })
        used_in, used_out = answer.get("prompt_eval_count", 0), answer.get("eval_count", 0)
        truncated = answer.get("done_reason") == "length"
        return json.dumps({
            "status": "incomplete" if truncated else "completed",
            "incomplete_details": {"reason": "max_output_tokens"} if truncated else None,
            "output": output,
            "usage": {
                "input_tokens": used_in, "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": used_out, "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": used_in + used_out,
            },
        }).encode()


class EventStream(t.EventStream):
    """Never used: Ollama is asked for whole answers, which llmproxy replays."""

    def __init__(self, ctx, state, status, headers):
        pass

    def push(self, event, data):
        raise Err(t.Error_Internal("this translator does not read streams"))

    def finish(self):
        return []
