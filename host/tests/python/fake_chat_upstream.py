"""A minimal OpenAI-compatible Chat Completions server on 127.0.0.1 (an
ephemeral port, printed as the first line of stdout), for the checks of
.ci/packaging: it answers every chat request with one fixed text, as JSON
or as a stream, and nothing else."""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = "Bonjour from the fake upstream"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        if self.path != "/v1/chat/completions" or "messages" not in body:
            self.send_error(404)
            return
        head = {"id": "chatcmpl-fake", "created": 1767000000, "model": body.get("model", "?")}
        usage = {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
        if body.get("stream"):
            chunks = [
                {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ANSWER}, "finish_reason": None}]},
                {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
                {"choices": [], "usage": usage},
            ]
            text = "".join(
                "data: " + json.dumps({**head, "object": "chat.completion.chunk", **c}) + "\n\n" for c in chunks
            ) + "data: [DONE]\n\n"
            self.reply("text/event-stream", text)
        else:
            message = {"role": "assistant", "content": ANSWER}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self.reply(
                "application/json",
                json.dumps({**head, "object": "chat.completion", "choices": [choice], "usage": usage}),
            )

    def reply(self, content_type, text):
        data = text.encode()
        self.send_response(200)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
sys.stdout.close()
server.serve_forever()
