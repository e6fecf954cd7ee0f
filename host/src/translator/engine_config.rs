// Engine settings that shape generated machine code. This file is shared with
// `build.rs`, which precompiles the bundled translators with exactly these
// settings so that the binary can load them in well under a millisecond.
// Anything that only matters at run time (pooling, limits) is set elsewhere.

/// The code-generation settings of llmproxy's Wasm engine.
pub fn code_config() -> wasmtime::Config {
    let mut config = wasmtime::Config::new();
    config.wasm_component_model(true);
    // Per-call deadlines: the host bumps the epoch from a ticker thread.
    config.epoch_interruption(true);
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    config
}
