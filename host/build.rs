//! Precompiles the bundled translators (`translators/<kind>.wasm`, built
//! from `plugins/*` by `just translators` and committed) for this machine,
//! and generates `bundled.rs`, which embeds both the portable `.wasm` and the
//! precompiled `.cwasm` in the binary.
//!
//! No Wasm toolchain is needed here: building `llmproxy` needs only the
//! host target (`.ci/run` checks that the committed files equal a fresh
//! build of `plugins/`).

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

include!("src/translator/engine_config.rs");

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    let translators = manifest_dir.join("translators");
    println!("cargo:rerun-if-changed={}", translators.display());
    println!("cargo:rerun-if-changed=src/translator/engine_config.rs");

    // A cross build precompiles for the target when this wasmtime can;
    // else the binary compiles the translators when it loads them.
    let (target, host) = (env_var("TARGET")?, env_var("HOST")?);
    let mut config = code_config();
    let engine = if target == host {
        Some(wasmtime::Engine::new(&config).map_err(|e| e.to_string())?)
    } else {
        config
            .target(&target)
            .ok()
            .and_then(|c| wasmtime::Engine::new(c).ok())
    };
    if engine.is_none() {
        println!(
            "cargo:warning=cannot precompile the bundled translators for {target}; the binary compiles them when it starts"
        );
    }
    let mut generated = String::from(
        "/// Translators built from `plugins/*` (`translators/*.wasm`).\npub(crate) static BUNDLED: &[Bundled] = &[\n",
    );
    for (kind, wasm_path) in bundled(&translators)? {
        let wasm =
            fs::read(&wasm_path).map_err(|e| format!("reading {}: {e}", wasm_path.display()))?;
        let cwasm = match &engine {
            Some(engine) => engine
                .precompile_component(&wasm)
                .map_err(|e| format!("precompiling {kind}: {e:#}"))?,
            None => Vec::new(),
        };
        let wasm_out = out_dir.join(format!("{kind}.wasm"));
        let cwasm_out = out_dir.join(format!("{kind}.cwasm"));
        write_if_changed(&wasm_out, &wasm)?;
        write_if_changed(&cwasm_out, &cwasm)?;
        writeln!(
            generated,
            "    Bundled {{ kind: {kind:?}, wasm: include_bytes!({:?}), cwasm: include_bytes!({:?}) }},",
            wasm_out.display().to_string(),
            cwasm_out.display().to_string(),
        )
        .map_err(|e| e.to_string())?;
    }
    generated.push_str("];\n");
    write_if_changed(&out_dir.join("bundled.rs"), generated.as_bytes())
}

fn env_var(name: &str) -> Result<String, String> {
    env::var(name).map_err(|_| format!("{name} is not set"))
}

/// `(kind, path)` for each `translators/<kind>.wasm`, sorted.
fn bundled(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut found = Vec::new();
    let entries = fs::read_dir(dir).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().is_none_or(|e| e != "wasm") {
            continue;
        }
        let kind = path
            .file_stem()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("odd translator file {}", path.display()))?
            .to_string();
        found.push((kind, path));
    }
    if found.is_empty() {
        return Err(format!(
            "no bundled translators in {}: run `just translators`",
            dir.display()
        ));
    }
    found.sort();
    Ok(found)
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}
