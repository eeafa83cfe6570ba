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

pub mod bench;
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

/// Where a test of the subset runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// In every backend's cell.
    Every,
    /// Only in the fentry cell. Only these VMs can test the fentry backend (the project's
    /// machines refuse BPF trampolines), while `cargo xtask test` runs the whole suite with the
    /// tracepoint backend on the host; so the longest tests run for fentry alone.
    Fentry,
    /// Once per kernel, in the first backend's cell: tests that choose backends themselves, or
    /// that check what the kernel does whichever programs are loaded.
    Once,
}

/// One test of the default subset.
#[derive(Debug, Clone, Copy)]
pub struct Pick {
    pub target: &'static str,
    pub test: &'static str,
    pub scope: Scope,
    /// Guest seconds measured on 6.1 under TCG with `PTY_TRACE_TEST_SLOWDOWN=3` in the fentry
    /// cell, and why the test is in.
    pub why: &'static str,
}

const fn pick(target: &'static str, test: &'static str, scope: Scope, why: &'static str) -> Pick {
    Pick {
        target,
        test,
        scope,
        why,
    }
}

/// The end-to-end tests run by default. The whole suite does not fit CI's budget under TCG:
/// the emulated CPU is about 3x slower, the timing tests stretch their windows 3x
/// (`PTY_TRACE_TEST_SLOWDOWN`), starting pty-trace with the fentry backend takes seconds
/// (attaching about 50 trampolines), and there are eight cells. These are the tests that
/// exercise what a kernel version or a backend can break: about 11 minutes of guest time per
/// kernel, two kernels at a time. Left out (seconds as below): `agent_that_closes_its_masters_is_healthy`
/// (39), `without_debug_kernel_the_programs_log_nothing` (22),
/// `sigint_detaches_attach_and_leaves_the_target_running` (23),
/// `doctor_says_which_backend_tracing_will_use` (34); `real_pty_users_match_proc`,
/// `tmux_server_with_several_windows_matches_proc` and `reparented_descendants_...`, whose
/// kernel paths the churn test covers; and the userspace behaviour no kernel changes
/// (`on_rotate_...`, `a_bad_tracked_max_...`, `the_traced_process_exiting_...`). `--full` runs
/// everything, `--tests FILTER` a choice.
pub const SUBSET: &[Pick] = &[
    pick(
        "accounting",
        "counts_exact_opens_of_dev_null_and_ptmx",
        Scope::Every,
        "[27 s] exact counts of opens and closes of ptmx and /dev/null: every hooked syscall path",
    ),
    pick(
        "faults_threads",
        "threads_reusing_fd_numbers_need_no_correction",
        Scope::Every,
        "[82 s] threads racing on one fd table: event order across CPUs in a real scheduler",
    ),
    pick(
        "scoring",
        "leaky_agent_is_detected_with_a_rotate_decision_and_one_pty_per_command",
        Scope::Every,
        "[46 s] the product's promise end to end: a leaking agent is caught",
    ),
    pick(
        "accounting",
        "randomized_workloads_match_proc_for_every_seed",
        Scope::Fentry,
        "[~310 s] the key one: randomized fork/dup/close/exec churn vs /proc, no drift, no loss",
    ),
    pick(
        "signals",
        "sigint_and_sigterm_stop_run_cleanly",
        Scope::Fentry,
        "[35 s] the trampolines detach cleanly on SIGINT and SIGTERM",
    ),
    pick(
        "probes",
        "each_backend_is_named_in_the_start_record_or_refused_in_one_line",
        Scope::Once,
        "[46 s] which backends this kernel loads, named in `start` or refused in one line",
    ),
    pick(
        "probes",
        "the_trampoline_backend_leaves_the_syscall_tracepoints_alone",
        Scope::Once,
        "[25 s] the point of fentry: no program on the syscall tracepoints",
    ),
    pick(
        "accounting",
        "forced_ring_buffer_overflow_is_counted_and_repaired",
        Scope::Once,
        "[35 s] lost events are counted and repaired: the ring buffer is the kernel's",
    ),
    pick(
        "kernel_counters",
        "children_the_tracked_map_cannot_hold_are_counted_and_logged",
        Scope::Once,
        "[28 s] a full BPF map is counted, not dropped",
    ),
    pick(
        "watch",
        "watch_follows_matching_processes_from_their_exec_and_ignores_others",
        Scope::Every,
        "[~20 s] watch: each backend's exec program reports an untraced process's exec (session 0)",
    ),
];

/// Guest-side limits: one test of the subset, one test executable (filter or `--full`), doctor.
const TEST_TIMEOUT_SECS: u64 = 900;
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

/// `cargo xtask vmtest`'s options (its command line).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Options {
    /// Kernels: 5.10, 6.1, 6.12, sid (repeatable or comma-separated; default all four).
    #[arg(long = "kernel", value_name = "KERNEL", value_delimiter = ',')]
    pub kernels: Vec<String>,
    /// Probe backends: fentry, tracepoint (repeatable or comma-separated; default both).
    #[arg(long = "backend", value_name = "BACKEND", value_delimiter = ',')]
    pub backends: Vec<String>,
    /// Run each test executable with this libtest filter instead of the default subset
    /// (repeatable).
    #[arg(long = "tests", value_name = "FILTER", conflicts_with = "full")]
    pub tests: Vec<String>,
    /// Run the whole end-to-end suite instead of the default subset.
    #[arg(long)]
    pub full: bool,
    /// Use KVM without probing for it first.
    #[arg(long, conflicts_with = "tcg")]
    pub kvm: bool,
    /// Never use KVM (no probe).
    #[arg(long)]
    pub tcg: bool,
    /// Resolve the kernel packages again (apt-get update) instead of using the cached ones.
    #[arg(long)]
    pub refresh: bool,
    /// Wall-clock limit of each VM in seconds (default: from the number of test runs).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<u64>,
    /// Bring the tests' scratch files (JSONL recordings) back to target/vmtest/out/ (the
    /// guest then writes them over 9p, which is slower than its tmpfs).
    #[arg(long)]
    pub keep_scratch: bool,
    /// PTY_TRACE_TEST_SLOWDOWN for the tests in the guest: how many times slower than the
    /// host it runs (default: 3 under TCG, 1 under KVM).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub slowdown: Option<u32>,
    /// VMs booted at once (default: one per host core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=16))]
    pub jobs: Option<u64>,
    /// Print the default test subset (where each test runs, its time, why) and exit.
    #[arg(long)]
    pub list: bool,
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

/// The default subset as text, for `--list`: one line per test under its scope.
pub fn render_subset() -> String {
    let mut s = String::new();
    for (scope, title) in [
        (Scope::Every, "in every cell"),
        (Scope::Fentry, "in the fentry cell only"),
        (Scope::Once, "once per kernel, in the first backend's cell"),
    ] {
        s += &format!("{title}:\n");
        for p in SUBSET.iter().filter(|p| p.scope == scope) {
            s += &format!("  {}::{}\n      {}\n", p.target, p.test, p.why);
        }
    }
    s
}

/// The test runs of a cell: the subset (one run per test, `--exact`, placed by its scope
/// among `backends`), or each executable with the filters in every cell, or each whole
/// executable (`full`). `executables` are `(target, path)`.
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
    let mut runs = Vec::new();
    for p in SUBSET {
        let only_backend = match p.scope {
            Scope::Every => None,
            Scope::Fentry if backends.iter().any(|b| b == "fentry") => Some("fentry".to_string()),
            Scope::Fentry => continue,
            Scope::Once => backends.first().cloned(),
        };
        let exe = executables
            .iter()
            .find(|(t, _)| t == p.target)
            .map(|(_, e)| e.clone())
            .with_context(|| {
                format!(
                    "test target {} of vmtest's SUBSET was not built: \
                     update SUBSET in xtask/src/vmtest/mod.rs",
                    p.target
                )
            })?;
        runs.push(TestRun {
            name: format!("{}.{}", p.target, p.test),
            exe,
            args: vec!["--exact".into(), p.test.to_string()],
            timeout_secs: TEST_TIMEOUT_SECS,
            only_backend,
        });
    }
    Ok(runs)
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

/// A kernel ready to boot, or the cells that say why it is not.
pub(super) enum Prepared {
    Ready {
        label: &'static str,
        kernel: kernels::Kernel,
        initrd: PathBuf,
    },
    Failed(Vec<Cell>),
}

/// What one boot needs besides its kernel.
struct Boot<'a> {
    plan: &'a Plan,
    runs: &'a [TestRun],
    backends: &'a [String],
    accel: Accel,
    limit: Duration,
    silence: Duration,
    root: &'a Path,
}

/// `cargo xtask vmtest`: builds, prepares every kernel (one after the other: network and
/// disk), then boots them `jobs` at a time (each single-threaded TCG VM keeps about one host
/// core busy, and less while the guest waits).
pub fn run(opts: &Options) -> Result<()> {
    if opts.list {
        print!("{}", render_subset());
        return Ok(());
    }
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
    let mut prepared = Vec::new();
    let mut accel: Option<Accel> = None;
    for suite in &suites {
        let p = prepare(suite, &backends, &cache, &root, opts.refresh);
        if let (Prepared::Ready { kernel, initrd, .. }, None) = (&p, accel) {
            accel = Some(choose_accel(opts, &kernel.vmlinuz, initrd, &root)?);
        }
        prepared.push(p);
    }
    let accel = accel.unwrap_or(Accel::Tcg);
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
        slowdown: slowdown(accel, opts.slowdown),
    };
    let boot = Boot {
        plan: &plan,
        runs: &runs,
        backends: &backends,
        accel,
        limit,
        silence,
        root: &root,
    };
    let booting = prepared
        .iter()
        .filter(|p| matches!(p, Prepared::Ready { .. }))
        .count();
    let jobs = opts
        .jobs
        .map_or_else(default_jobs, |j| j as usize)
        .clamp(1, booting.max(1));
    if booting > 0 {
        eprintln!(
            "vmtest: booting {booting} kernel(s), {jobs} at a time ({}, slowdown {}, {} backend(s) x {} test run(s), limit {}s per VM)",
            accel.name(),
            plan.slowdown,
            backends.len(),
            runs.len(),
            limit.as_secs()
        );
    }
    // One slot per kernel, filled by whichever worker boots it.
    type Slot = Option<(Vec<Cell>, Option<String>)>;
    let slots: Vec<std::sync::Mutex<Slot>> = prepared
        .iter()
        .map(|_| std::sync::Mutex::new(None))
        .collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let Some(p) = prepared.get(i) else { break };
                    let done = match p {
                        Prepared::Failed(cells) => (cells.clone(), None),
                        Prepared::Ready {
                            label,
                            kernel,
                            initrd,
                        } => boot_one(&boot, label, kernel, initrd),
                    };
                    *slots[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(done);
                }
            });
        }
    });
    let mut cells: Vec<Cell> = Vec::new();
    let mut extra: Vec<String> = Vec::new();
    for slot in slots {
        if let Some((c, line)) = slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            cells.extend(c);
            extra.extend(line);
        }
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

/// VMs booted at once by default: one per host core (each keeps at most one busy).
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The cells of a kernel that could not be booted: every backend failed with `why`.
fn failed_cells(label: &str, backends: &[String], why: &str) -> Vec<Cell> {
    backends
        .iter()
        .map(|b| Cell {
            kernel: label.to_string(),
            backend: b.clone(),
            expect: expectation(label, b),
            doctor: Doctor::Missing,
            steps: Vec::new(),
            secs: 0.0,
            vm_problem: Some(why.to_string()),
            known_failures: results::KNOWN_FAILURES,
        })
        .collect()
}

/// Fetches `suite`'s kernel and builds its initramfs.
pub(super) fn prepare(
    suite: &'static Suite,
    backends: &[String],
    cache: &Path,
    root: &Path,
    refresh: bool,
) -> Prepared {
    let label = suite.label;
    let start = Instant::now();
    let kernel = match kernels::fetch(suite, cache, refresh) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("vmtest: {label}: {e:#}");
            let why = format!("kernel not fetched: {e:#}");
            return Prepared::Failed(failed_cells(label, backends, &why));
        }
    };
    let initrd = root
        .join("initramfs")
        .join(format!("{}.cpio.gz", kernel.release));
    let modules = match initramfs::build(&kernel, &initrd) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("vmtest: {label}: {e:#}");
            let why = format!("no initramfs: {e:#}");
            return Prepared::Failed(failed_cells(label, backends, &why));
        }
    };
    eprintln!(
        "vmtest: {label}: {} ({}) ready in {} (9p modules: {})",
        kernel.release,
        kernel.packages.join(", "),
        secs(start.elapsed()),
        if modules.is_empty() {
            "none".to_string()
        } else {
            modules.join(" ")
        }
    );
    Prepared::Ready {
        label,
        kernel,
        initrd,
    }
}

/// Boots one kernel with the plan; its cells and its line for the notes.
fn boot_one(
    boot: &Boot,
    label: &str,
    kernel: &kernels::Kernel,
    initrd: &Path,
) -> (Vec<Cell>, Option<String>) {
    let expects: Vec<(String, Expect)> = boot
        .backends
        .iter()
        .map(|b| (b.clone(), expectation(label, b)))
        .collect();
    let out = boot.root.join("out").join(label);
    let written = (|| -> Result<()> {
        if out.exists() {
            fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
        }
        fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
        let plan_file = out.join(initramfs::PLAN_FILE);
        fs::write(&plan_file, guest::render(boot.plan))
            .with_context(|| format!("writing {}", plan_file.display()))
    })();
    if let Err(e) = written {
        eprintln!("vmtest: {label}: {e:#}");
        return (failed_cells(label, boot.backends, &format!("{e:#}")), None);
    }
    eprintln!("vmtest: {label}: booting {}", kernel.release);
    let vm = qemu::Vm {
        vmlinuz: kernel.vmlinuz.clone(),
        initrd: initrd.to_path_buf(),
        out_dir: Some(out.clone()),
        console_log: out.join("console.log"),
        accel: boot.accel,
        limit: boot.limit,
        silence: boot.silence,
        extra_append: None,
        progress: Some(format!("vmtest: {label}:")),
    };
    let outcome = match qemu::run(&vm) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("vmtest: {label}: {e:#}");
            return (failed_cells(label, boot.backends, &format!("{e:#}")), None);
        }
    };
    let problem = outcome.problem();
    if let Some(p) = &problem {
        eprintln!(
            "vmtest: {label}: {p}; the console's last lines ({}):\n{}",
            vm.console_log.display(),
            outcome.tail
        );
    }
    let cells = guest::read_cells(&out, label, &expects, boot.runs, problem.as_deref());
    let line = format!(
        "{}: VM {} ({}; /init after {}){}",
        kernel.release,
        secs(outcome.wall),
        boot.accel.name(),
        outcome.boot_secs.map_or("?".into(), |b| format!("{b:.1}s")),
        problem.map_or(String::new(), |p| format!("; {p}"))
    );
    (cells, Some(line))
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
pub(super) fn choose_accel(opts: &Options, vmlinuz: &Path, initrd: &Path, root: &Path) -> Result<Accel> {
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
            "watch",
        ]
        .iter()
        .map(|t| (t.to_string(), PathBuf::from(format!("/t/{t}-0a1b"))))
        .collect()
    }

    fn both() -> Vec<String> {
        select_backends(&[]).unwrap()
    }

    #[test]
    fn subset_listing() {
        let text = render_subset();
        assert!(text.starts_with(
            "in every cell:\n  accounting::counts_exact_opens_of_dev_null_and_ptmx\n"
        ));
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
                .count(),
            SUBSET.len()
        );
        for p in SUBSET {
            assert!(text.contains(p.why));
        }
    }

    #[test]
    fn run_selection() {
        let subset = select_runs(&exes(), &[], false, &both()).unwrap();
        assert_eq!(subset.len(), SUBSET.len());
        for (run, pick) in subset.iter().zip(SUBSET) {
            let want = match pick.scope {
                Scope::Every => None,
                Scope::Fentry | Scope::Once => Some("fentry"),
            };
            assert_eq!(run.only_backend.as_deref(), want, "{}", run.name);
        }
        let tracepoint = select_runs(&exes(), &[], false, &["tracepoint".into()]).unwrap();
        assert!(tracepoint.iter().all(|r| r.runs_in("tracepoint")));
        let fentry_only = SUBSET.iter().filter(|p| p.scope == Scope::Fentry).count();
        assert_eq!(tracepoint.len(), SUBSET.len() - fentry_only);
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
            ("watch", include_str!("../../../tests/tests/watch.rs")),
        ];
        for Pick {
            target, test, why, ..
        } in SUBSET
        {
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
        let every = SUBSET.iter().filter(|p| p.scope == Scope::Every).count();
        assert_eq!(
            default_limit(&subset, &both()),
            120 + 2 * 120 + 90 * (SUBSET.len() + every) as u64
        );
    }
}
