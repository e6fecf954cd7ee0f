//! Builds the bundled translators (`plugins/*`) for `wasm32-wasip2`,
//! precompiles them for this machine, and generates `bundled.rs`, which embeds
//! both the portable `.wasm` and the precompiled `.cwasm` in the binary.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

include!("src/translator/engine_config.rs");

const WASM_TARGET: &str = "wasm32-wasip2";
/// The test-only translator built with the bundled ones.
const TEST_TRANSLATOR: &str = "llmproxy-test-hostile";

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env_var("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .ok_or("host crate has no parent directory")?
        .to_path_buf();
    let out_dir = PathBuf::from(env_var("OUT_DIR")?);
    for dir in ["wit", "api", "sdk", "plugins", "host/tests/translators"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!(
        "cargo:rerun-if-changed={}",
        root.join("Cargo.lock").display()
    );
    println!("cargo:rerun-if-changed=src/translator/engine_config.rs");

    let plugins = plugin_crates(&root.join("plugins"))?;
    let shared_target = env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target_dir = shared_target.join("plugins");
    build_plugins(&root, &target_dir, &plugins)?;
    // Built alongside, never embedded: the misbehaving translator the
    // sandbox tests load from a file.
    println!(
        "cargo:rustc-env=LLMPROXY_TEST_HOSTILE_WASM={}",
        target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", TEST_TRANSLATOR.replace('-', "_")))
            .display()
    );
    // Where .ci/run builds the example translators of `examples/`.
    println!(
        "cargo:rustc-env=LLMPROXY_TEST_EXAMPLES_DIR={}",
        shared_target.join("examples").display()
    );

    let engine = wasmtime::Engine::new(&code_config()).map_err(|e| e.to_string())?;
    let mut generated = String::from(
        "/// Translators built from `plugins/*`.\npub(crate) static BUNDLED: &[Bundled] = &[\n",
    );
    for (kind, krate) in &plugins {
        let wasm_path = target_dir
            .join(WASM_TARGET)
            .join("release")
            .join(format!("{}.wasm", krate.replace('-', "_")));
        let wasm =
            fs::read(&wasm_path).map_err(|e| format!("reading {}: {e}", wasm_path.display()))?;
        let cwasm = engine
            .precompile_component(&wasm)
            .map_err(|e| format!("precompiling {kind}: {e:#}"))?;
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

/// `(kind, crate name)` for each `plugins/<kind>/Cargo.toml`, sorted.
fn plugin_crates(plugins_dir: &Path) -> Result<Vec<(String, String)>, String> {
    let mut found = Vec::new();
    let entries =
        fs::read_dir(plugins_dir).map_err(|e| format!("reading {}: {e}", plugins_dir.display()))?;
    for entry in entries {
        let dir = entry.map_err(|e| e.to_string())?.path();
        if !dir.join("Cargo.toml").is_file() {
            continue;
        }
        let kind = dir
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| format!("odd plugin directory {}", dir.display()))?
            .to_string();
        found.push((kind.clone(), format!("llmproxy-plugin-{kind}")));
    }
    found.sort();
    Ok(found)
}

fn build_plugins(
    root: &Path,
    target_dir: &Path,
    plugins: &[(String, String)],
) -> Result<(), String> {
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--release",
            "--target",
            WASM_TARGET,
            "--target-dir",
        ])
        .arg(target_dir);
    for (_, krate) in plugins {
        cmd.args(["-p", krate]);
    }
    cmd.args(["-p", TEST_TRANSLATOR]);
    // The outer build's flags and wrappers (clippy, coverage, a --target for
    // the host) must not leak into the Wasm build.
    for var in [
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "CARGO_LLVM_COV",
        "CARGO_LLVM_COV_TARGET_DIR",
        "LLVM_PROFILE_FILE",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .map_err(|e| format!("running cargo for the bundled translators: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "building the bundled translators for {WASM_TARGET} failed ({status}). \
             If the target is missing, run `rustup target add {WASM_TARGET}`."
        ))
    }
}

fn write_if_changed(path: &Path, bytes: &[u8]) -> Result<(), String> {
    if fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    fs::write(path, bytes).map_err(|e| format!("writing {}: {e}", path.display()))
}
