//! The tasks built on `setup`: `build`, `demo`, `test` and `bench`. Each prints what it runs and
//! how long it took; failures name the step and pass the child's exit code through.

use std::{
    os::unix::process::CommandExt,
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    setup,
    util::{self, CommandFailed, cargo_command, root_command, run_checked, secs, workspace_root},
};

/// The eBPF crate is `no_std`/`no_main` for `bpfel-unknown-none` (pty-trace's build.rs builds
/// it); compiling it for the host, as `cargo test --workspace` would, cannot work.
const HOST_EXCLUDED: &str = "pty-trace-ebpf";

/// `cargo xtask build [--debug]`.
pub fn build(release: bool) -> Result<()> {
    setup::run()?;
    build_binary(release)?;
    Ok(())
}

/// `cargo build -p pty-trace` for `release` or debug; prints and returns the binary's path.
pub(crate) fn build_binary(release: bool) -> Result<PathBuf> {
    let start = Instant::now();
    let profile = if release { "release" } else { "debug" };
    let mut cmd = cargo_command();
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    cmd.args(["-p", "pty-trace"]);
    let what = format!(
        "cargo build{} -p pty-trace",
        if release { " --release" } else { "" }
    );
    run_checked(&mut cmd, &what)?;
    let binary = util::target_dir().join(profile).join("pty-trace");
    if !binary.is_file() {
        bail!("{what} succeeded but {} does not exist", binary.display());
    }
    eprintln!(
        "build: {} ({profile}) in {}",
        display_relative(&binary),
        secs(start.elapsed())
    );
    Ok(binary)
}

/// `cargo xtask demo [-- ARGS]`: replaces this process with `pty-trace demo ARGS` (as root), so
/// the TUI owns the terminal and Ctrl-C and the exit code behave as if it had been run directly.
pub fn demo(args: &[String]) -> Result<()> {
    setup::run()?;
    let binary = build_binary(true)?;
    let mut cmd = root_command(&binary, "pty-trace demo (loading eBPF programs)")?;
    cmd.arg("demo").args(args);
    let err = cmd.exec();
    Err(err).with_context(|| format!("could not start {} demo", binary.display()))
}

/// `cargo xtask test [-- ARGS]`: setup; the pure core's tests built without the eBPF toolchain;
/// release build; then the whole workspace's tests as root (the end-to-end tests load eBPF
/// programs). `--no-fail-fast` so that one failing test binary does not hide the others'
/// `test result:` lines. Prints one summary line at the end, with the count of skipped tests.
pub fn test(args: &[String]) -> Result<()> {
    let start = Instant::now();
    setup::run()?;
    let setup_time = start.elapsed();
    let core_start = Instant::now();
    test_core_without_ebpf_toolchain()?;
    let core_time = core_start.elapsed();
    let build_start = Instant::now();
    let binary = build_binary(true)?;
    let build_time = build_start.elapsed();

    let test_start = Instant::now();
    let skip_log = util::target_dir().join("pty-trace-test-skips.log");
    match std::fs::remove_file(&skip_log) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", skip_log.display())),
    }
    let mut cmd = root_command(
        util::cargo_program(),
        "the end-to-end tests (loading eBPF programs)",
    )?;
    cmd.current_dir(workspace_root())
        .env("PATH", util::path_with_cargo_bin())
        .env("PTY_TRACE_BIN", &binary)
        .env("PTY_TRACE_SKIP_LOG", &skip_log)
        .args([
            "test",
            "--workspace",
            "--no-fail-fast",
            "--exclude",
            HOST_EXCLUDED,
        ])
        .args(args);
    let result = run_checked(&mut cmd, "cargo test");
    let timings = Timings {
        setup: setup_time,
        core: core_time,
        build: build_time,
        test: test_start.elapsed(),
    };
    let skipped = skipped_tests(&skip_log)?;
    for (name, why) in &skipped {
        eprintln!("test: SKIPPED {name}: {why}");
    }
    let skips = format!("{} skipped", skipped.len());
    match &result {
        Ok(()) => eprintln!("test: ok, {skips} ({})", timings.line(start.elapsed())),
        Err(e) => {
            let code = e.downcast_ref::<CommandFailed>().and_then(|f| f.code);
            let code = code.map_or("killed".to_string(), |c| format!("exit code {c}"));
            eprintln!(
                "test: FAILED, cargo test {code}, {skips} ({})",
                timings.line(start.elapsed())
            );
        }
    }
    result
}

/// The pure core's tests with pty-trace built `--no-default-features`: no eBPF object, and the
/// eBPF compiler pointed at paths that do not exist, so a change that makes the core need the
/// eBPF toolchain (Debian's rustc-web, bpf-linker) fails here. The one test that runs the real
/// binary is ignored in such a build (and runs in the full run).
fn test_core_without_ebpf_toolchain() -> Result<()> {
    let mut cmd = cargo_command();
    cmd.env("PTY_TRACE_EBPF_CARGO", "/nonexistent/cargo")
        .env("PTY_TRACE_EBPF_RUSTC", "/nonexistent/rustc")
        .args([
            "test",
            "-p",
            "pty-trace",
            "--no-default-features",
        ]);
    run_checked(&mut cmd, "cargo test -p pty-trace --no-default-features (the pure core, no eBPF toolchain)")
}

/// `(test, reason)` for every line of the skip log the tests append to (see
/// `tests/src/lib.rs`): none when the file does not exist.
fn skipped_tests(log: &std::path::Path) -> Result<Vec<(String, String)>> {
    let text = match std::fs::read_to_string(log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", log.display())),
    };
    Ok(parse_skips(&text))
}

fn parse_skips(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| match l.split_once('\t') {
            Some((name, why)) => (name.to_string(), why.to_string()),
            None => (l.to_string(), String::new()),
        })
        .collect()
}

/// Step timings for `test`'s summary line.
struct Timings {
    setup: Duration,
    core: Duration,
    build: Duration,
    test: Duration,
}

impl Timings {
    fn line(&self, total: Duration) -> String {
        format!(
            "setup {}, core tests {}, build {}, cargo test {}, total {}",
            secs(self.setup),
            secs(self.core),
            secs(self.build),
            secs(self.test),
            secs(total)
        )
    }
}

/// `cargo xtask bench [--quick] [-- ARGS]`: runs `pty-trace-tests`'s `bench` binary once it
/// exists (`-- soak --minutes 10`: the memory soak).
pub fn bench(quick: bool, args: &[String]) -> Result<()> {
    let Some(source) = bench_source() else {
        bail!(
            "bench: not implemented yet (pty-trace-tests has no `bench` binary; \
             expected tests/src/bin/bench/main.rs)"
        );
    };
    setup::run()?;
    let binary = build_binary(true)?;
    let start = Instant::now();
    let mut cmd = root_command(
        util::cargo_program(),
        "the benchmark (loading eBPF programs)",
    )?;
    cmd.current_dir(workspace_root())
        .env("PATH", util::path_with_cargo_bin())
        .env("PTY_TRACE_BIN", &binary)
        .args([
            "run",
            "--release",
            "-p",
            "pty-trace-tests",
            "--bin",
            "bench",
            "--",
        ]);
    if quick {
        cmd.arg("--quick");
    }
    cmd.args(args);
    run_checked(&mut cmd, &format!("bench ({})", display_relative(&source)))?;
    eprintln!("bench: done in {}", secs(start.elapsed()));
    Ok(())
}

/// Where the `bench` binary's source is, if it exists: `tests/src/bin/bench.rs`,
/// `tests/src/bin/bench/main.rs`, or a `[[bin]]` named `bench` in `tests/Cargo.toml`.
fn bench_source() -> Option<PathBuf> {
    let tests = workspace_root().join("tests");
    let candidates = [
        tests.join("src/bin/bench.rs"),
        tests.join("src/bin/bench/main.rs"),
    ];
    if let Some(found) = candidates.into_iter().find(|p| p.is_file()) {
        return Some(found);
    }
    let manifest = tests.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).ok()?;
    declares_bin(&text, "bench").then_some(manifest)
}

/// Whether a Cargo.toml's text declares a `[[bin]]` named `name`.
fn declares_bin(manifest: &str, name: &str) -> bool {
    let mut in_bin = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_bin = line == "[[bin]]";
        } else if in_bin
            && let Some((key, value)) = line.split_once('=')
            && key.trim() == "name"
            && value.trim().trim_matches('"') == name
        {
            return true;
        }
    }
    false
}

/// `path` relative to the workspace root when it is inside it (shorter output).
fn display_relative(path: &std::path::Path) -> String {
    path.strip_prefix(workspace_root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_lines() {
        assert_eq!(
            parse_skips("a\tno BPF\n\nb\n"),
            [("a".to_string(), "no BPF".to_string()), ("b".to_string(), String::new())]
        );
        assert!(parse_skips("").is_empty());
    }

    #[test]
    fn bin_declarations() {
        let m =
            "[package]\nname = \"pty-trace-tests\"\n\n[[bin]]\nname = \"bench\"\npath = \"x.rs\"\n";
        assert!(declares_bin(m, "bench"));
        assert!(!declares_bin(m, "pty-trace-tests"));
        assert!(!declares_bin("[package]\nname = \"bench\"\n", "bench"));
    }
}
