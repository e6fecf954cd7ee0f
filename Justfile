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
# llmproxy beside the mock called directly, a plain relay, LiteLLM and the
# Portkey gateway (installed into target/bench on first use, with pip and
# npm; `just bench --no-litellm` / `--no-portkey` skip them): prints the
# tables and writes BENCHMARKS.md. `--quick` for a short run.
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

# Rebuild the bundled translators from plugins/ into host/translators/*.wasm
# (commit the result; .ci/run fails when they differ from a fresh build).
translators:
    bash .ci/translators

# Build the example translators (examples/) the way .ci/run does.
examples:
    cargo build --release --target wasm32-wasip2 --locked --manifest-path examples/translator-template/Cargo.toml --target-dir target/examples
    host/tests/python/.venv/bin/componentize-py -d wit -w translator-component componentize -p examples/translator-python translator -o target/examples/ollama.wasm

# Container image. The base images are build arguments; the defaults are
# local images that `container-bases` makes on hosts without a registry
# (override e.g. BUILD_BASE=docker.io/library/rust:1.95-bookworm
# RUNTIME_BASE=gcr.io/distroless/cc-debian12:nonroot). Needs podman; making
# the local bases needs root and debootstrap.
build_base := env("BUILD_BASE", "localhost/debian-base:bookworm")
runtime_base := env("RUNTIME_BASE", "localhost/debian-runtime:bookworm")

# Make the local base images (container/bases.sh) that do not exist yet.
container-bases:
    #!/usr/bin/env bash
    set -euo pipefail
    export BUILD_BASE={{build_base}}
    for kind in build runtime; do
        image=$([ $kind = build ] && echo {{build_base}} || echo {{runtime_base}})
        case $image in localhost/*) ;; *) continue ;; esac
        podman image exists "$image" || container/bases.sh $kind "$image"
    done

# The host's toolchain (`rustc --print sysroot`, with the wasm32-wasip2
# target) is bind-mounted at /opt/rust, for build bases without Rust;
# LLMPROXY_TOOLCHAIN= (empty) uses the build base's own. The host's CA bundle
# reaches cargo as a build secret (LLMPROXY_BUILD_CA to choose another, e.g.
# behind a TLS-intercepting proxy); it is never stored in an image.
# Build the container image (Containerfile), making missing local bases first.
container-build tag="llmproxy:dev": container-bases
    #!/usr/bin/env bash
    set -euo pipefail
    args=(--build-arg BUILD_BASE={{build_base}} --build-arg RUNTIME_BASE={{runtime_base}})
    toolchain=${LLMPROXY_TOOLCHAIN-$(rustc --print sysroot)}
    if [ -n "$toolchain" ]; then args+=(-v "$(realpath "$toolchain"):/opt/rust:ro"); fi
    ca=${LLMPROXY_BUILD_CA-/etc/ssl/certs/ca-certificates.crt}
    if [ -f "$ca" ]; then args+=(--secret "id=build_ca,src=$ca"); fi
    nice -n 10 podman build --isolation chroot -f Containerfile "${args[@]}" -t {{tag}} .
    echo "{{tag}}: $(podman image inspect --format '{{{{.Size}}' {{tag}}) bytes"

# container/test.sh: no `podman run`; export + chroot, so it needs root.
# Build the image, then check its entrypoint against a fake upstream.
container-test tag="llmproxy:dev": (container-build tag)
    container/test.sh {{tag}}

# Uses container/containers.conf (runc, lower ulimits) when runc is installed
# and CONTAINERS_CONF is unset; see that file.
# Run the image: `just container-run llmproxy:dev --backend openai`.
container-run tag="llmproxy:dev" *args="":
    #!/usr/bin/env bash
    set -euo pipefail
    if [ -z "${CONTAINERS_CONF:-}" ] && command -v runc >/dev/null; then
        export CONTAINERS_CONF={{justfile_directory()}}/container/containers.conf
    fi
    exec podman run --rm -p 8080:8080 {{tag}} {{args}}
