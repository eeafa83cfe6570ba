//! `cargo xtask vmtest`: pty-trace on the Debian kernels users run, each booted under QEMU.
//!
//! Setup, the release build of `pty-trace` and the end-to-end test executables of
//! `pty-trace-tests`; then for each kernel (5.10, 6.1, 6.12, sid by default) one boot that runs,
//! for each probe backend (fentry, tracepoint), `pty-trace doctor` and a subset of the
//! end-to-end tests with `PTY_TRACE_PROBES=<backend>`. The guest runs the host's own binaries
//! (chrooted into the host's root over 9p), so nothing is built for the guest. Prints the
//! matrix on stderr and writes it to `target/vmtest/matrix.md`; fails if any cell that is
//! expected to work does not. `docs/vmtest.md` describes it for users.
//!
//! One file per job: `kernels.rs` fetches and unpacks Debian's kernel packages,
//! `initramfs.rs` packs the initramfs and its /init, `guest.rs` writes the plan the guest runs
//! and reads its results back, `qemu.rs` boots and watches the VM, `results.rs` judges and
//! renders the matrix. This file chooses what to run and ties them together.

mod guest;
mod initramfs;
mod kernels;
mod qemu;
mod results;

use std::{
    fs,
    path::{Path, PathBuf},
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    setup, tasks,
    util::{self, cargo_command, secs},
};
use guest::{Plan, TestRun};
use kernels::{SUITES, Suite};
use qemu::Accel;
use results::{Cell, Doctor, Expect};

/// pty-trace's kernel backends, as `PTY_TRACE_PROBES` names them.
pub const BACKENDS: &[&str] = &["fentry", "tracepoint"];

/// What each cell must do. 5.10 has no `bpf_get_current_task_btf` (helper 158, new in 5.11),
/// which the tracepoint backend's programs use, so there only fentry is required; everything
/// else must work everywhere.
pub fn expectation(kernel_label: &str, backend: &str) -> Expect {
    match (kernel_label, backend) {
        ("5.10", "tracepoint") => Expect::Optional,
        _ => Expect::Required,
    }
}

/// The end-to-end tests run in each cell by default: `(test target, test, why)`. The whole
/// suite does not fit the time budget under TCG (an emulated CPU about 3x slower than the host,
/// two backends per kernel, four kernels, and CI's whole budget is 45 minutes), so these are the
/// tests that exercise the kernel side in ways a backend or a kernel version could break.
/// Guest seconds per test, measured under single-threaded TCG on 6.1 and 6.12, are in
/// brackets: about 110 s per cell today, about 170 s once the churn test passes all ten seeds
/// (it fails under TCG on a snapshot gap after one or two, 7 s each). Left out: `real_pty_users_match_proc` (8 s; its
/// 1.2 s settle is shorter than program loading under TCG, 1.3 s), `tmux_server_...` (17 s)
/// and `reparented_...` (10 s), whose kernel paths the churn test covers, `on_rotate_...`
/// (11 s), `a_bad_tracked_max_...` (2 s) and `the_traced_process_exiting_...` (8 s), which
/// are userspace behaviour that no kernel changes. `--full` runs everything, `--tests FILTER`
/// a choice.
pub const SUBSET: &[(&str, &str, &str)] = &[
    (
        "accounting",
        "counts_exact_opens_of_dev_null_and_ptmx",
        "[6 s] exact counts of opens and closes of ptmx and /dev/null: every hooked syscall path",
    ),
    (
        "accounting",
        "randomized_workloads_match_proc_for_every_seed",
        "[~70 s] the key one: randomized fork/dup/close/exec churn vs /proc, no drift, no loss",
    ),
    (
        "accounting",
        "forced_ring_buffer_overflow_is_counted_and_repaired",
        "[9 s] lost events are counted and repaired: ring buffer behaviour is the kernel's",
    ),
    (
        "faults_threads",
        "threads_reusing_fd_numbers_need_no_correction",
        "[20 s] threads racing on one fd table: event order across CPUs in a real scheduler",
    ),
    (
        "scoring",
        "leaky_agent_is_detected_with_a_rotate_decision_and_one_pty_per_command",
        "[17 s] the product's promise end to end: a leaking agent is caught",
    ),
    (
        "scoring",
        "agent_that_closes_its_masters_is_healthy",
        "[14 s] and a healthy one is not flagged (no false positive from missed closes)",
    ),
    (
        "kernel_counters",
        "children_the_tracked_map_cannot_hold_are_counted_and_logged",
        "[6 s] the kernel programs' map-full path is counted, not dropped",
    ),
    (
        "kernel_counters",
        "without_debug_kernel_the_programs_log_nothing",
        "[5 s] the kernel programs' logging stays off without --debug-kernel",
    ),
    (
        "signals",
        "sigint_and_sigterm_stop_run_cleanly",
        "[6 s] programs detach cleanly on SIGINT and SIGTERM",
    ),
    (
        "signals",
        "sigint_detaches_attach_and_leaves_the_target_running",
        "[5 s] attach mode (seeded from /proc) detaches and leaves the target alone",
    ),
];

/// End-to-end tests that choose the backends themselves (`--probes`), so they run once per
/// kernel, in the first backend's cell: `(test target, test, why)`.
pub const ONCE_PER_KERNEL: &[(&str, &str, &str)] = &[
    (
        "probes",
        "each_backend_is_named_in_the_start_record_or_refused_in_one_line",
        "which backends this kernel can load, named in `start` or refused in one line (exit 12)",
    ),
    (
        "probes",
        "doctor_says_which_backend_tracing_will_use",
        "doctor's probes row agrees with what `run` does on this kernel",
    ),
    (
        "probes",
        "the_trampoline_backend_leaves_the_syscall_tracepoints_alone",
        "the point of fentry: no program on the syscall tracepoints",
    ),
];

/// Guest-side limits: one test of the subset, one test executable (filter or `--full`), doctor.
const TEST_TIMEOUT_SECS: u64 = 300;
const EXE_TIMEOUT_SECS: u64 = 1800;
const DOCTOR_TIMEOUT_SECS: u64 = 120;
/// Environment variables passed from the host into the guest's steps when set.
const PASSED_ENV: &[&str] = &[
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "TERM",
    "PYENV_ROOT",
    "PYENV_VERSION",
];

/// `cargo xtask vmtest`'s options.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// `--kernel` values (5.10, 6.1, 6.12, sid); empty: all.
    pub kernels: Vec<String>,
    /// `--backend` values; empty: both.
    pub backends: Vec<String>,
    /// `--tests` libtest filters; empty: the subset.
    pub tests: Vec<String>,
    pub full: bool,
    /// `--kvm`: use KVM without probing; `--tcg`: never.
    pub kvm: bool,
    pub tcg: bool,
    /// `--refresh`: re-resolve the kernel packages (apt-get update).
    pub refresh: bool,
    /// `--timeout SECS`: each VM's wall-clock limit.
    pub timeout: Option<u64>,
    /// `--keep-scratch`: the tests' scratch files come back (see `guest::Plan::keep_scratch`).
    pub keep_scratch: bool,
    /// `--slowdown N`: `PTY_TRACE_TEST_SLOWDOWN` in the guest (default: `TCG_SLOWDOWN` under
    /// TCG, 1 under KVM).
    pub slowdown: Option<u32>,
}

/// How many times slower than the host the tests run under TCG: vm.md measured a tight
/// syscall loop about 3x slower in a TCG guest than on the host.
pub const TCG_SLOWDOWN: u32 = 3;

/// `PTY_TRACE_TEST_SLOWDOWN` for a guest on `accel`, unless `--slowdown` says.
pub fn slowdown(accel: Accel, forced: Option<u32>) -> u32 {
    forced.unwrap_or(match accel {
        Accel::Tcg => TCG_SLOWDOWN,
        Accel::Kvm => 1,
    })
}

/// The suites `--kernel` names (all when none), in the matrix's order.
pub fn select_kernels(wanted: &[String]) -> Result<Vec<&'static Suite>> {
    if wanted.is_empty() {
        return Ok(SUITES.iter().collect());
    }
    for w in wanted {
        if !SUITES.iter().any(|s| s.label == w || s.codename == w) {
            let known: Vec<&str> = SUITES.iter().map(|s| s.label).collect();
            bail!("unknown kernel {w:?}: expected one of {}", known.join(", "));
        }
    }
    Ok(SUITES
        .iter()
        .filter(|s| wanted.iter().any(|w| s.label == w || s.codename == w))
        .collect())
}

/// The backends `--backend` names (both when none), in `BACKENDS`'s order.
pub fn select_backends(wanted: &[String]) -> Result<Vec<String>> {
    for w in wanted {
        if !BACKENDS.contains(&w.as_str()) {
            bail!(
                "unknown backend {w:?}: expected one of {}",
                BACKENDS.join(", ")
            );
        }
    }
    Ok(BACKENDS
        .iter()
        .filter(|b| wanted.is_empty() || wanted.iter().any(|w| w == *b))
        .map(|b| b.to_string())
        .collect())
}

/// The test runs of a cell: the subset (one run per test, `--exact`) and `ONCE_PER_KERNEL`
/// in the first of `backends`, or each executable with the filters, or each whole executable
/// (`full`). `executables` are `(target, path)`.
pub fn select_runs(
    executables: &[(String, PathBuf)],
    filters: &[String],
    full: bool,
    backends: &[String],
) -> Result<Vec<TestRun>> {
    if full || !filters.is_empty() {
        return Ok(executables
            .iter()
            .map(|(target, exe)| TestRun {
                name: target.clone(),
                exe: exe.clone(),
                args: if full { Vec::new() } else { filters.to_vec() },
                timeout_secs: EXE_TIMEOUT_SECS,
                only_backend: None,
            })
            .collect());
    }
    let every = SUBSET.iter().map(|p| (p, None));
    let once = ONCE_PER_KERNEL
        .iter()
        .map(|p| (p, backends.first().cloned()));
    every
        .chain(once)
        .map(|((target, test, _), only_backend)| {
            let exe = executables
                .iter()
                .find(|(t, _)| t == target)
                .map(|(_, e)| e.clone())
                .with_context(|| {
                    format!(
                        "test target {target} of vmtest's subset was not built: \
                         update SUBSET or ONCE_PER_KERNEL in xtask/src/vmtest/mod.rs"
                    )
                })?;
            Ok(TestRun {
                name: format!("{target}.{test}"),
                exe,
                args: vec!["--exact".into(), test.to_string()],
                timeout_secs: TEST_TIMEOUT_SECS,
                only_backend,
            })
        })
        .collect()
}

/// The test executables in `cargo test --no-run --message-format=json` output: `(target,
/// executable)` for each integration test target (kind `test`).
pub fn test_executables(cargo_json: &str) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    for line in cargo_json.lines() {
        if !line.contains("\"reason\":\"compiler-artifact\"") {
            continue;
        }
        let Some(target) = line.find("\"target\":{").map(|i| &line[i..]) else {
            continue;
        };
        if !target.starts_with("\"target\":{\"kind\":[\"test\"]") {
            continue;
        }
        let (Some(name), Some(exe)) =
            (json_string(target, "name"), json_string(line, "executable"))
        else {
            continue;
        };
        if !found.iter().any(|(n, _)| n == &name) {
            found.push((name, PathBuf::from(exe)));
        }
    }
    found
}

/// The first `"key":"value"` string in `json` (enough for cargo's flat messages; handles
/// escapes).
fn json_string(json: &str, key: &str) -> Option<String> {
    let start = json.find(&format!("\"{key}\":\""))? + key.len() + 4;
    let mut out = String::new();
    let mut chars = json[start..].chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

/// Builds the test executables of `pty-trace-tests`; `(target, path)` for each.
fn build_test_executables() -> Result<Vec<(String, PathBuf)>> {
    let start = Instant::now();
    let mut cmd = cargo_command();
    cmd.args([
        "test",
        "-p",
        "pty-trace-tests",
        "--no-run",
        "--message-format=json",
    ])
    .stdout(Stdio::piped());
    let out = cmd
        .output()
        .context("could not start cargo test --no-run")?;
    if !out.status.success() {
        bail!(
            "cargo test -p pty-trace-tests --no-run failed ({})",
            out.status
        );
    }
    let exes = test_executables(&String::from_utf8_lossy(&out.stdout));
    if exes.is_empty() {
        bail!("cargo test -p pty-trace-tests --no-run built no test executable");
    }
    eprintln!(
        "vmtest: {} test executables of pty-trace-tests in {}",
        exes.len(),
        secs(start.elapsed())
    );
    Ok(exes)
}

/// Every path the guest runs must be visible in it: the guest mounts its own tmpfs on /tmp.
fn check_visible(paths: &[&Path]) -> Result<()> {
    for p in paths {
        if p.starts_with("/tmp") {
            bail!(
                "{} is under /tmp, which the guest's own tmpfs hides: set CARGO_TARGET_DIR elsewhere",
                p.display()
            );
        }
    }
    Ok(())
}

/// `cargo xtask vmtest`.
pub fn run(opts: &Options) -> Result<()> {
    let start = Instant::now();
    let suites = select_kernels(&opts.kernels)?;
    let backends = select_backends(&opts.backends)?;
    if opts.kvm && opts.tcg {
        bail!("--kvm and --tcg exclude each other");
    }
    setup::run()?;
    let binary = tasks::build_binary(true)?;
    let executables = build_test_executables()?;
    let runs = select_runs(&executables, &opts.tests, opts.full, &backends)?;
    let mut visible: Vec<&Path> = vec![&binary];
    visible.extend(runs.iter().map(|r| r.exe.as_path()));
    check_visible(&visible)?;
    let env: Vec<(String, String)> = std::iter::once((
        "PATH".to_string(),
        util::path_with_cargo_bin().to_string_lossy().into_owned(),
    ))
    .chain(
        PASSED_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v))),
    )
    .collect();
    let plan = Plan {
        binary: binary.clone(),
        backends: backends.clone(),
        runs: runs.clone(),
        env,
        doctor_timeout_secs: DOCTOR_TIMEOUT_SECS,
        nofile: fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|l| guest::nofile_limits(&l)),
        keep_scratch: opts.keep_scratch,
        slowdown: 1,
    };
    let longest_step = runs
        .iter()
        .map(|r| r.timeout_secs)
        .chain([DOCTOR_TIMEOUT_SECS])
        .max()
        .unwrap_or(DOCTOR_TIMEOUT_SECS);
    let limit = Duration::from_secs(
        opts.timeout
            .unwrap_or_else(|| default_limit(&runs, &backends)),
    );
    // A step prints a console line when it starts and ends; the guest's timeout stops it
    // (TERM, then KILL 10 s later), so more silence than that means the guest is stuck.
    let silence = Duration::from_secs(longest_step + 60);

    let root = util::target_dir().join("vmtest");
    let cache = root.join("cache");
    let mut accel: Option<Accel> = None;
    let mut cells: Vec<Cell> = Vec::new();
    let mut extra: Vec<String> = Vec::new();
    for suite in suites {
        let label = suite.label;
        let expects: Vec<(String, Expect)> = backends
            .iter()
            .map(|b| (b.clone(), expectation(label, b)))
            .collect();
        let failed_cells = |why: String| -> Vec<Cell> {
            expects
                .iter()
                .map(|(b, e)| Cell {
                    kernel: label.to_string(),
                    backend: b.clone(),
                    expect: *e,
                    doctor: Doctor::Missing,
                    steps: Vec::new(),
                    secs: 0.0,
                    vm_problem: Some(why.clone()),
                })
                .collect()
        };
        let fetch_start = Instant::now();
        let kernel = match kernels::fetch(suite, &cache, opts.refresh) {
            Ok(k) => k,
            Err(e) => {
                eprintln!("vmtest: {label}: {e:#}");
                cells.extend(failed_cells(format!("kernel not fetched: {e:#}")));
                continue;
            }
        };
        let initrd = root
            .join("initramfs")
            .join(format!("{}.cpio.gz", kernel.release));
        let modules = match initramfs::build(&kernel, &initrd) {
            Ok(m) => m,
            Err(e) => {
                eprintln!("vmtest: {label}: {e:#}");
                cells.extend(failed_cells(format!("no initramfs: {e:#}")));
                continue;
            }
        };
        eprintln!(
            "vmtest: {label}: {} ({}) ready in {} (9p modules: {})",
            kernel.release,
            kernel.packages.join(", "),
            secs(fetch_start.elapsed()),
            if modules.is_empty() {
                "none".to_string()
            } else {
                modules.join(" ")
            }
        );
        let accel = match accel {
            Some(a) => a,
            None => {
                let a = choose_accel(opts, &kernel.vmlinuz, &initrd, &root)?;
                accel = Some(a);
                a
            }
        };

        let out = root.join("out").join(label);
        if out.exists() {
            fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
        }
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let plan_file = out.join(initramfs::PLAN_FILE);
        let plan = Plan {
            slowdown: slowdown(accel, opts.slowdown),
            ..plan.clone()
        };
        fs::write(&plan_file, guest::render(&plan))
            .with_context(|| format!("writing {}", plan_file.display()))?;
        eprintln!(
            "vmtest: {label}: booting {} ({}, slowdown {}, {} backend(s) x {} test run(s), limit {}s)",
            kernel.release,
            accel.name(),
            plan.slowdown,
            backends.len(),
            runs.len(),
            limit.as_secs()
        );
        let vm = qemu::Vm {
            vmlinuz: kernel.vmlinuz.clone(),
            initrd: initrd.clone(),
            out_dir: Some(out.clone()),
            console_log: out.join("console.log"),
            accel,
            limit,
            silence,
            extra_append: None,
            progress: Some(format!("vmtest: {label}:")),
        };
        let outcome = qemu::run(&vm)?;
        let problem = outcome.problem();
        if let Some(p) = &problem {
            eprintln!(
                "vmtest: {label}: {p}; the console's last lines ({}):\n{}",
                vm.console_log.display(),
                outcome.tail
            );
        }
        let kernel_cells = guest::read_cells(&out, label, &expects, &runs, problem.as_deref());
        extra.push(format!(
            "{}: VM {} ({}; /init after {}){}",
            kernel.release,
            secs(outcome.wall),
            accel.name(),
            outcome.boot_secs.map_or("?".into(), |b| format!("{b:.1}s")),
            problem.map_or(String::new(), |p| format!("; {p}"))
        ));
        cells.extend(kernel_cells);
    }

    extra.push(format!("pty-trace at {}", workspace_commit()));
    extra.push(format!(
        "total {} (results in {})",
        secs(start.elapsed()),
        root.join("out").display()
    ));
    eprint!("{}", results::render_text(&cells, &extra));
    let matrix = root.join("matrix.md");
    fs::write(&matrix, results::render_markdown(&cells, &extra))
        .with_context(|| format!("writing {}", matrix.display()))?;
    if !results::all_acceptable(&cells) {
        let failed = cells
            .iter()
            .filter(|c| matches!(c.verdict(), results::Verdict::Fail(_)))
            .count();
        bail!(
            "vmtest: {failed} of {} cells failed (see {})",
            cells.len(),
            matrix.display()
        );
    }
    eprintln!(
        "vmtest: ok ({} cells) in {}",
        cells.len(),
        secs(start.elapsed())
    );
    Ok(())
}

/// A VM's default wall-clock limit, a backstop (a hung guest is caught sooner by the silence
/// watchdog): 2 minutes to boot, plus per backend 2 minutes for doctor and 90 s per test of
/// the subset (the slowest measured takes 75 s under TCG), or 10 minutes per test executable
/// for `--full` and `--tests`.
pub fn default_limit(runs: &[TestRun], backends: &[String]) -> u64 {
    let per_backend = |backend: &String| -> u64 {
        120 + runs
            .iter()
            .filter(|r| r.runs_in(backend))
            .map(|r| {
                if r.timeout_secs == TEST_TIMEOUT_SECS {
                    90
                } else {
                    600
                }
            })
            .sum::<u64>()
    };
    120 + backends.iter().map(per_backend).sum::<u64>()
}

/// The workspace's `git describe --always --dirty`, or "unknown commit" outside git.
fn workspace_commit() -> String {
    std::process::Command::new("git")
        .arg("-C")
        .arg(util::workspace_root())
        .args(["describe", "--always", "--dirty"])
        .stderr(Stdio::null())
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown commit".into())
}

/// TCG unless `--kvm`, or a cached probe boot shows KVM works here (see `qemu::kvm_works`).
fn choose_accel(opts: &Options, vmlinuz: &Path, initrd: &Path, root: &Path) -> Result<Accel> {
    if opts.tcg {
        return Ok(Accel::Tcg);
    }
    if opts.kvm {
        return Ok(Accel::Kvm);
    }
    Ok(
        if qemu::kvm_works(vmlinuz, initrd, &root.join("kvm-probe.txt"))? {
            Accel::Kvm
        } else {
            Accel::Tcg
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_selection() {
        let all: Vec<&str> = select_kernels(&[])
            .unwrap()
            .iter()
            .map(|s| s.label)
            .collect();
        assert_eq!(all, ["5.10", "6.1", "6.12", "sid"]);
        let some: Vec<&str> = select_kernels(&["sid".into(), "6.12".into(), "trixie".into()])
            .unwrap()
            .iter()
            .map(|s| s.label)
            .collect();
        assert_eq!(some, ["6.12", "sid"]);
        let err = select_kernels(&["6.6".into()]).unwrap_err().to_string();
        assert_eq!(
            err,
            "unknown kernel \"6.6\": expected one of 5.10, 6.1, 6.12, sid"
        );
    }

    #[test]
    fn backend_selection() {
        assert_eq!(select_backends(&[]).unwrap(), ["fentry", "tracepoint"]);
        assert_eq!(
            select_backends(&["tracepoint".into()]).unwrap(),
            ["tracepoint"]
        );
        assert!(select_backends(&["kprobe".into()]).is_err());
    }

    #[test]
    fn slowdowns() {
        assert_eq!(slowdown(Accel::Tcg, None), TCG_SLOWDOWN);
        assert_eq!(slowdown(Accel::Kvm, None), 1);
        assert_eq!(slowdown(Accel::Tcg, Some(5)), 5);
    }

    #[test]
    fn expectations() {
        assert_eq!(expectation("5.10", "fentry"), Expect::Required);
        assert_eq!(expectation("5.10", "tracepoint"), Expect::Optional);
        for k in ["6.1", "6.12", "sid"] {
            for b in BACKENDS {
                assert_eq!(expectation(k, b), Expect::Required);
            }
        }
    }

    fn exes() -> Vec<(String, PathBuf)> {
        [
            "accounting",
            "faults_threads",
            "scoring",
            "kernel_counters",
            "signals",
            "probes",
            "tui",
        ]
        .iter()
        .map(|t| (t.to_string(), PathBuf::from(format!("/t/{t}-0a1b"))))
        .collect()
    }

    fn both() -> Vec<String> {
        select_backends(&[]).unwrap()
    }

    #[test]
    fn run_selection() {
        let subset = select_runs(&exes(), &[], false, &both()).unwrap();
        assert_eq!(subset.len(), SUBSET.len() + ONCE_PER_KERNEL.len());
        assert!(
            subset[..SUBSET.len()]
                .iter()
                .all(|r| r.only_backend.is_none())
        );
        assert!(
            subset[SUBSET.len()..]
                .iter()
                .all(|r| r.only_backend.as_deref() == Some("fentry"))
        );
        let tracepoint_only = select_runs(&exes(), &[], false, &["tracepoint".into()]).unwrap();
        assert!(tracepoint_only.iter().all(|r| r.runs_in("tracepoint")));
        assert_eq!(
            subset[0].name,
            "accounting.counts_exact_opens_of_dev_null_and_ptmx"
        );
        assert_eq!(
            subset[0].args,
            ["--exact", "counts_exact_opens_of_dev_null_and_ptmx"]
        );
        assert_eq!(subset[0].exe, PathBuf::from("/t/accounting-0a1b"));
        let filtered = select_runs(&exes(), &["leaky".into()], false, &both()).unwrap();
        assert_eq!(filtered.len(), exes().len());
        assert!(filtered.iter().all(|r| r.args == ["leaky"]));
        let full = select_runs(&exes(), &[], true, &both()).unwrap();
        assert!(
            full.iter()
                .all(|r| r.args.is_empty() && r.timeout_secs == EXE_TIMEOUT_SECS)
        );
        let err = select_runs(&exes()[1..], &[], false, &both())
            .unwrap_err()
            .to_string();
        assert!(err.contains("accounting"), "{err}");
    }

    #[test]
    fn subset_names_real_tests() {
        let sources = [
            (
                "accounting",
                include_str!("../../../tests/tests/accounting.rs"),
            ),
            (
                "faults_threads",
                include_str!("../../../tests/tests/faults_threads.rs"),
            ),
            ("scoring", include_str!("../../../tests/tests/scoring.rs")),
            (
                "kernel_counters",
                include_str!("../../../tests/tests/kernel_counters.rs"),
            ),
            ("signals", include_str!("../../../tests/tests/signals.rs")),
            ("probes", include_str!("../../../tests/tests/probes.rs")),
        ];
        for (target, test, why) in SUBSET.iter().chain(ONCE_PER_KERNEL) {
            assert!(!why.is_empty());
            let (_, src) = sources
                .iter()
                .find(|(t, _)| t == target)
                .unwrap_or_else(|| panic!("{target} is not in this test's list"));
            assert!(
                src.contains(&format!("fn {test}()")),
                "{target}::{test} does not exist"
            );
        }
    }

    #[test]
    fn cargo_messages() {
        let json = concat!(
            r#"{"reason":"compiler-artifact","package_id":"path+file:///w/tests#pty-trace-tests@0.1.0","manifest_path":"/w/tests/Cargo.toml","target":{"kind":["lib"],"crate_types":["lib"],"name":"pty_trace_tests","src_path":"/w/tests/src/lib.rs","edition":"2024","doctest":true,"test":true},"profile":{"test":true},"features":[],"filenames":["/w/target/debug/deps/pty_trace_tests-1"],"executable":"/w/target/debug/deps/pty_trace_tests-1","fresh":true}"#,
            "\n",
            r#"{"reason":"compiler-artifact","package_id":"x","manifest_path":"/w/tests/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"accounting","src_path":"/w/tests/tests/accounting.rs","edition":"2024","doctest":false,"test":true},"profile":{"test":true},"features":[],"filenames":["/w/target/debug/deps/accounting-2"],"executable":"/w/target/debug/deps/accounting-2","fresh":false}"#,
            "\n",
            r#"{"reason":"compiler-artifact","package_id":"x","manifest_path":"/w/tests/Cargo.toml","target":{"kind":["bin"],"crate_types":["bin"],"name":"workload","src_path":"/w/tests/src/bin/workload.rs","edition":"2024","doctest":false,"test":true},"profile":{"test":false},"features":[],"filenames":["/w/target/debug/workload"],"executable":"/w/target/debug/workload","fresh":true}"#,
            "\n",
            r#"{"reason":"compiler-artifact","package_id":"x","manifest_path":"/w/tests/Cargo.toml","target":{"kind":["test"],"crate_types":["bin"],"name":"signals","src_path":"/w/tests/tests/signals.rs","edition":"2024","doctest":false,"test":true},"profile":{"test":true},"features":[],"filenames":["/w/t \"q\"/signals-3"],"executable":"/w/t \"q\"/signals-3","fresh":true}"#,
            "\n",
            r#"{"reason":"build-finished","success":true}"#,
            "\n"
        );
        assert_eq!(
            test_executables(json),
            [
                (
                    "accounting".to_string(),
                    PathBuf::from("/w/target/debug/deps/accounting-2")
                ),
                ("signals".to_string(), PathBuf::from("/w/t \"q\"/signals-3")),
            ]
        );
        assert_eq!(
            json_string(r#"{"a":"x\u0041\\"}"#, "a").as_deref(),
            Some("xA\\")
        );
    }

    #[test]
    fn visibility_and_limits() {
        assert!(check_visible(&[Path::new("/work/target/release/pty-trace")]).is_ok());
        let err = check_visible(&[Path::new("/tmp/t/release/pty-trace")]).unwrap_err();
        assert!(err.to_string().contains("CARGO_TARGET_DIR"), "{err}");
        let subset = select_runs(&exes(), &[], false, &both()).unwrap();
        assert_eq!(
            default_limit(&subset, &both()),
            120 + 2 * (120 + 90 * SUBSET.len() as u64) + 90 * ONCE_PER_KERNEL.len() as u64
        );
    }
}
