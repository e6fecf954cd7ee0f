#!/usr/bin/env python3
"""A fake OpenResponses server for `just container-test` (stdlib only).

POST /v1/responses answers "Hello from <model>" as a Responses object, or as
an SSE stream when the request has "stream": true. Anything else, or a body
without "model" and "input", gets a 4xx. Prints the bound port on stdout.

    fake_upstream.py [PORT]     (0, the default, picks a free port)
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def response_object(model, text, status="completed"):
    return {
        "id": "resp_fake_1",
        "object": "response",
        "created_at": 1767000000,
        "completed_at": 1767000001,
        "status": status,
        "model": model,
        "output": [
            {
                "type": "message",
                "id": "msg_fake_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        ],
        "usage": {
            "input_tokens": 5,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 3,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 8,
        },
        "error": None,
        "incomplete_details": None,
    }


def stream_events(model, text):
    snapshot = {"id": "resp_fake_1", "object": "response", "created_at": 1767000000,
                "status": "in_progress", "model": model, "output": []}
    item = {"type": "message", "id": "msg_fake_1", "status": "in_progress",
            "role": "assistant", "content": []}
    part = {"type": "output_text", "text": text, "annotations": []}
    where = {"item_id": "msg_fake_1", "output_index": 0, "content_index": 0}
    events = [
        {"type": "response.created", "response": snapshot},
        {"type": "response.in_progress", "response": snapshot},
        {"type": "response.output_item.added", "output_index": 0, "item": item},
        {"type": "response.content_part.added", **where,
         "part": {"type": "output_text", "text": "", "annotations": []}},
    ]
    for word in text.split(" "):
        events.append({"type": "response.output_text.delta", **where,
                       "delta": word if word == text.split(" ")[-1] else word + " ",
                       "logprobs": []})
    events += [
        {"type": "response.output_text.done", **where, "text": text, "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": 0,
         "item": {**item, "status": "completed", "content": [part]}},
        {"type": "response.completed", "response": response_object(model, text)},
    ]
    for i, e in enumerate(events):
        e["sequence_number"] = i
    return events


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("fake upstream: " + (fmt % args) + "\n")

    def reply(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def error(self, status, message):
        self.reply(status, {"error": {"message": message, "type": "invalid_request_error"}})

    def do_GET(self):
        self.error(404, f"no route for GET {self.path}")

    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("content-length", 0)))
        if self.path != "/v1/responses":
            return self.error(404, f"no route for POST {self.path}")
        if not self.headers.get("content-type", "").startswith("application/json"):
            return self.error(415, "expected application/json")
        try:
            req = json.loads(raw)
        except ValueError as e:
            return self.error(400, f"bad JSON: {e}")
        if not isinstance(req, dict) or "model" not in req or "input" not in req:
            return self.error(400, "a Responses request needs model and input")
        text = f"Hello from {req['model']}"
        if not req.get("stream"):
            return self.reply(200, response_object(req["model"], text))
        sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n"
                      for e in stream_events(req["model"], text))
        self.reply(200, sse.encode(), "text/event-stream")


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
