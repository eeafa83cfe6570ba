//! Builds the eBPF object (`pty-trace-ebpf`) and hands its path to the userspace crate, which
//! embeds it with `include_bytes_aligned!`.
//!
//! rustup's toolchains here have no `rust-src`, so `-Z build-std=core` for `bpfel-unknown-none`
//! uses Debian's `rustc-web`/`cargo-web` (which ship the library source) and `bpf-linker`.
//! `cargo xtask setup` installs all of it; `docs/toolchain.md` explains why.
//! `PTY_TRACE_EBPF_OBJECT=/path/to/obj` skips the build and embeds that object instead.
//! Without the `ebpf` feature (`--no-default-features`) nothing is built and an empty object is
//! embedded: the pure core and its tests then need no eBPF toolchain at all, and the tracing
//! commands fail with a line saying how to build the real thing (`kernel::probes`).
use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

fn main() {
    if let Err(e) = run() {
        // One clear message instead of a backtrace from deep inside cargo.
        println!("cargo::error=building the eBPF object failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?);
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let dest = out_dir.join("pty-trace-ebpf.o");
    println!("cargo::rerun-if-env-changed=PTY_TRACE_EBPF_OBJECT");
    if env::var_os("CARGO_FEATURE_EBPF").is_none() {
        std::fs::write(&dest, b"").with_context(|| format!("writing {}", dest.display()))?;
        return Ok(());
    }
    if let Ok(prebuilt) = env::var("PTY_TRACE_EBPF_OBJECT") {
        println!("cargo::rerun-if-changed={prebuilt}");
        std::fs::copy(&prebuilt, &dest).with_context(|| format!("copying {prebuilt}"))?;
        return Ok(());
    }
    let ebpf_dir = manifest.join("../pty-trace-ebpf");
    for p in ["../pty-trace-ebpf/src", "../pty-trace-ebpf/Cargo.toml", "../pty-trace-common/src"] {
        println!("cargo::rerun-if-changed={}", manifest.join(p).display());
    }
    let cargo = env::var("PTY_TRACE_EBPF_CARGO").unwrap_or_else(|_| "/usr/bin/cargo".into());
    let rustc = env::var("PTY_TRACE_EBPF_RUSTC").unwrap_or_else(|_| "/usr/bin/rustc".into());
    println!("cargo::rerun-if-env-changed=PTY_TRACE_EBPF_CARGO");
    println!("cargo::rerun-if-env-changed=PTY_TRACE_EBPF_RUSTC");
    for tool in [&cargo, &rustc] {
        if !Path::new(tool).exists() {
            bail!("{tool} not found (Debian's rustc-web/cargo-web): run `cargo xtask setup`");
        }
    }
    let linker_dir = find_bpf_linker()
        .context("bpf-linker not found on PATH or in ~/.cargo/bin: run `cargo xtask setup`")?;
    let path = format!("{}:{}", linker_dir.display(), env::var("PATH").unwrap_or_default());
    let target_dir = out_dir.join("ebpf-target");
    let mut cmd = Command::new(&cargo);
    // The outer (rustup) cargo's variables would point the inner build at the wrong compiler.
    for var in [
        "RUSTC", "RUSTC_WRAPPER", "RUSTC_WORKSPACE_WRAPPER", "RUSTUP_TOOLCHAIN", "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS", "CARGO_BUILD_TARGET", "CARGO_TARGET_DIR", "RUSTDOC",
        "CARGO_BUILD_RUSTFLAGS", "CARGO_PROFILE_RELEASE_DEBUG",
    ] {
        cmd.env_remove(var);
    }
    cmd.current_dir(&ebpf_dir)
        .env("RUSTC", &rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("PATH", path)
        .env("CARGO_ENCODED_RUSTFLAGS", "-Cdebuginfo=2\x1f-Clink-arg=--btf")
        .args(["build", "--release", "--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(["-p", "pty-trace-ebpf", "--bin", "pty-trace", "--target-dir"])
        .arg(&target_dir);
    let status = cmd.status().with_context(|| format!("running {cargo}"))?;
    if !status.success() {
        bail!("{cargo} build of pty-trace-ebpf exited with {status}");
    }
    let obj = target_dir.join("bpfel-unknown-none/release/pty-trace");
    std::fs::copy(&obj, &dest).with_context(|| format!("copying {}", obj.display()))?;
    Ok(())
}

fn find_bpf_linker() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = env::split_paths(&env::var_os("PATH")?).collect();
    if let Some(home) = env::var_os("CARGO_HOME") {
        dirs.push(PathBuf::from(home).join("bin"));
    }
    if let Some(home) = env::var_os("HOME") {
        dirs.push(PathBuf::from(home).join(".cargo/bin"));
    }
    dirs.into_iter().find(|d| d.join("bpf-linker").is_file())
}
