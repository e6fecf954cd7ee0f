#!/usr/bin/env bash
# `just container-test`: proves a built image works without `podman run`
# (which needs runc and lowered ulimits on some hosts, see
# container/containers.conf). Exports the image's filesystem, runs its
# entrypoint in a chroot as the image's user against a fake OpenResponses
# upstream (container/fake_upstream.py), and checks /healthz, /v1/models,
# client auth, and /v1/responses (plain and streamed) and
# /v1/chat/completions going through to the upstream. Needs root (chroot),
# podman, python3 and curl. Exits non-zero on the first failed check.
#
#   container/test.sh [IMAGE]        (default llmproxy:dev)
set -euo pipefail
image=${1:-llmproxy:dev}
here=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d /var/tmp/llmproxy-container-test.XXXXXX)
cid= fake_pid= proxy_pid=
cleanup() {
    local pid
    for pid in $proxy_pid $fake_pid; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ -n "$cid" ]; then podman rm "$cid" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "container-test: FAIL: $*" >&2
    if [ -s "$work/proxy.log" ]; then echo "--- proxy log:" >&2; tail -20 "$work/proxy.log" >&2; fi
    exit 1
}
ok() { echo "container-test: ok: $*"; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# What the image says about itself.
inspect() { podman image inspect --format "$1" "$image"; }
user=$(inspect '{{.Config.User}}')
mapfile -t entrypoint < <(inspect '{{range .Config.Entrypoint}}{{println .}}{{end}}' | grep .)
size=$(inspect '{{.Size}}')
echo "container-test: $image: user $user, entrypoint ${entrypoint[*]}, size $size bytes"
[ "$user" = "65532:65532" ] || fail "image user is '$user', want 65532:65532"
[ "${entrypoint[*]}" = /usr/local/bin/llmproxy ] || fail "unexpected entrypoint ${entrypoint[*]}"

# The image's filesystem.
cid=$(podman create "$image")
podman export -o "$work/image.tar" "$cid"
podman rm "$cid" >/dev/null
cid=
mkdir "$work/rootfs"
tar -C "$work/rootfs" -xf "$work/image.tar"
rm "$work/image.tar"
echo "container-test: rootfs $(du -sh "$work/rootfs" | cut -f1)"
[ ! -e "$work/rootfs/bin/sh" ] || fail "the image has a shell"
# The image's environment (PATH, SSL_CERT_FILE, ...), as podman would set it.
mapfile -t image_env < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" | grep .)

# A fake upstream and the proxy in front of it.
python3 "$here/fake_upstream.py" >"$work/fake.port" 2>"$work/fake.log" &
fake_pid=$!
for _ in $(seq 50); do [ -s "$work/fake.port" ] && break; sleep 0.1; done
fake_port=$(cat "$work/fake.port")
[ -n "$fake_port" ] || fail "the fake upstream did not start"
port=$(free_port)
key=container-test-key
# The entrypoint, as the image's user, with the image's environment only.
env -i "${image_env[@]}" LLMPROXY_API_KEY=$key \
    chroot --userspec="$user" "$work/rootfs" "${entrypoint[@]}" \
    --listen "127.0.0.1:$port" --backend openresponses \
    --base-url "http://127.0.0.1:$fake_port/v1" --no-api-key >"$work/proxy.log" 2>&1 &
proxy_pid=$!
base=http://127.0.0.1:$port
for _ in $(seq 100); do
    curl -fsS "$base/healthz" >/dev/null 2>&1 && break
    kill -0 "$proxy_pid" 2>/dev/null || fail "the proxy exited"
    sleep 0.1
done

# Checks.
expect() { # NAME, PYTHON EXPRESSION over `r` (the parsed JSON) or `t` (the text), FILE
    python3 - "$3" "$2" <<'PY' || fail "$1: $(head -c 600 "$3")"
import json, sys
t = open(sys.argv[1]).read()
try:
    r = json.loads(t)
except ValueError:
    r = None
sys.exit(0 if eval(sys.argv[2]) else 1)
PY
    ok "$1"
}
call() { # WANTED STATUS, OUT, curl args...
    local want=$1 out=$2 code
    shift 2
    code=$(curl -sS --max-time 30 -o "$work/$out" -w '%{http_code}' "$@") || fail "curl $*"
    [ "$code" = "$want" ] || fail "curl $*: status $code, want $want: $(head -c 600 "$work/$out")"
}
auth=(-H "authorization: Bearer $key" -H 'content-type: application/json')

call 200 healthz "$base/healthz"
expect "GET /healthz" 'r == {"status": "ok", "backends": 1}' "$work/healthz"
# env and chroot exec, so the background job is llmproxy itself.
read -r comm uid < <(ps -o comm=,uid= -p "$proxy_pid") || fail "no process $proxy_pid"
[ "$comm" = llmproxy ] && [ "$uid" = "${user%%:*}" ] || fail "pid $proxy_pid is $comm with uid $uid"
ok "the proxy runs as uid $uid"
call 401 noauth -X POST "$base/v1/responses" -H 'content-type: application/json' -d '{"model":"m","input":"hi"}'
ok "POST /v1/responses without the key is 401"
call 200 models "${auth[@]}" "$base/v1/models"
expect "GET /v1/models" 'r["object"] == "list"' "$work/models"
call 200 resp "${auth[@]}" -X POST "$base/v1/responses" -d '{"model":"qwen3","input":"hi"}'
expect "POST /v1/responses via the upstream" \
    'r["status"] == "completed" and r["output"][0]["content"][0]["text"] == "Hello from qwen3" and r["model"] == "qwen3"' "$work/resp"
call 200 stream "${auth[@]}" -N -X POST "$base/v1/responses" -d '{"model":"qwen3","input":"hi","stream":true}'
expect "POST /v1/responses streamed" \
    '"event: response.completed" in t and "".join(json.loads(l[6:])["delta"] for l in t.splitlines() if l.startswith("data: {") and "output_text.delta" in l) == "Hello from qwen3"' "$work/stream"
call 200 chat "${auth[@]}" -X POST "$base/v1/chat/completions" -d '{"model":"qwen3","messages":[{"role":"user","content":"hi"}]}'
expect "POST /v1/chat/completions via the upstream" \
    'r["object"] == "chat.completion" and r["choices"][0]["message"]["content"] == "Hello from qwen3"' "$work/chat"
[ "$(grep -c 'POST /v1/responses' "$work/fake.log")" = 3 ] || fail "the upstream saw $(grep -c 'POST /v1/responses' "$work/fake.log") requests, want 3"
ok "the upstream got $(grep -c 'POST /v1/responses' "$work/fake.log") requests"
echo "container-test: PASS ($image, $size bytes)"
