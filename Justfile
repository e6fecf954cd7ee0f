# Recipes for llmproxy. `just` itself: `pip install rust-just`.

# Everything CI runs: fmt check, clippy (host and Wasm), all tests.
ci:
    bash .ci/run

# Build the release binary (bundled translators included).
build:
    cargo build --release -p llmproxy

# Run against an OpenResponses server, e.g. `just run http://127.0.0.1:11434/v1`.
run base_url:
    cargo run --release -p llmproxy -- --backend openresponses --base-url {{base_url}}

test:
    cargo test --workspace --features llmproxy/internals

fmt:
    cargo fmt --all

lint:
    cargo clippy --workspace --all-targets --features llmproxy/internals -- -D warnings

# Benchmarks printing tables: startup, and translator cost in vs out of the sandbox.
# llmproxy beside the mock called directly, a plain relay and LiteLLM
# (installed into target/bench on first use; `just bench --no-litellm` skips
# it): prints the tables and writes BENCHMARKS.md. `--quick` for a short run.
bench *args="":
    cargo build --release --locked -p llmproxy -p llmproxy-bench
    target/release/llmproxy-bench run {{args}}

# Fuzz the ingress parsers and every translator's mappings for SECS seconds
# in all (proptest; failures land in host/tests/it/fuzz.proptest-regressions).
fuzz secs="600":
    LLMPROXY_FUZZ_SECS={{secs}} cargo test -p llmproxy --features internals --test it fuzz:: -- --nocapture

# One instance through 1000 concurrent streams, then SECS of steady load at
# RATE requests/s: prints errors, latency and RSS per minute.
soak secs="600" rate="300":
    cargo build --release --locked -p llmproxy -p llmproxy-bench
    target/release/llmproxy-bench soak --secs {{secs}} --rate {{rate}}

# Micro-benchmarks: startup; translator cost in vs out of the sandbox; and
# (criterion) routing, conversions, every bundled translator native vs Wasm.
bench-micro:
    cargo bench -p llmproxy --features internals --bench startup --bench translator --bench micro

# Build the example translators (examples/) the way .ci/run does.
examples:
    cargo build --release --target wasm32-wasip2 --locked --manifest-path examples/translator-template/Cargo.toml --target-dir target/examples
    host/tests/python/.venv/bin/componentize-py -d wit -w translator-component componentize -p examples/translator-python translator -o target/examples/ollama.wasm

container-build tag="llmproxy:dev":
    podman build --isolation chroot -f Containerfile -t {{tag}} .

container-run tag="llmproxy:dev" *args="":
    podman run --rm -p 8080:8080 {{tag}} {{args}}
