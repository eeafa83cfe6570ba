//! Privileged end-to-end tests of the probe backends (issue 13): `--probes auto|fentry|tracepoint`
//! picks the kernel hooks, the `start` record and `doctor` say which, a forced backend that
//! cannot load is one line and exit 12, and the trampoline backend puts no program on the
//! syscall tracepoints (so processes outside the session keep the syscall fast path).
//!
//! What the kernel allows differs: this machine's kernel refuses BPF trampolines, Debian's
//! kernels under `cargo xtask vmtest` allow them. Each test asks the real kernel (through
//! `pty-trace doctor --probes fentry`) and requires the behaviour that answer implies, so the
//! same test is exact in both places.

use std::{
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pty_trace_tests::*;
use serde_json::Value;

/// Whether this kernel lets pty-trace load and attach the programs of `backend`: doctor's
/// `probes` row with the backend forced.
fn backend_allowed(backend: &str) -> bool {
    let out = Command::new(pty_trace_bin()).args(["doctor", "--probes", backend]).env_remove("PTY_TRACE_PROBES").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let row = text.lines().find(|l| l.starts_with("probes ")).unwrap_or_else(|| panic!("no probes row in doctor's output:\n{text}"));
    row.contains("PASS")
}

fn trampolines_allowed() -> bool {
    backend_allowed("fentry")
}

/// A forced backend this kernel refuses: one line naming the kernel, exit 12, no records.
fn assert_refused_in_one_line(code: Option<i32>, err: &str, recs: &[Value], needle: &str) {
    assert_eq!(code, Some(12), "a forced backend the kernel refuses: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    assert!(lines[0].starts_with("pty-trace: kernel ") && lines[0].contains(release.trim()), "{err}");
    assert!(lines[0].contains(needle), "{err}");
    assert!(recs.is_empty(), "a failed start writes no records");
}

/// `pty-trace run --probes CHOICE` of `true`: (exit code, stderr, records).
fn run_with(choice: &str, name: &str) -> (Option<i32>, String, Vec<Value>) {
    let jsonl = scratch(name).join("out.jsonl");
    let out = Command::new(pty_trace_bin())
        .args(["run", "--no-tui", "--probes", choice, "--jsonl"])
        .arg(&jsonl)
        .args(["--", "sh", "-c", "exec 3</dev/null; true"])
        .env_remove("PTY_TRACE_PROBES")
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned(), read_jsonl(&jsonl))
}

#[test]
fn each_backend_is_named_in_the_start_record_or_refused_in_one_line() {
    if !bpf_available("each_backend_is_named_in_the_start_record_or_refused_in_one_line") {
        return;
    }
    let allowed = trampolines_allowed();
    // Forced tracepoints: there from 5.15 (5.10 lacks two helpers they need).
    let (code, err, recs) = run_with("tracepoint", "forced-tracepoint");
    if backend_allowed("tracepoint") {
        assert_eq!(code, Some(0), "{err}");
        let start = of_type(&recs, "start")[0];
        assert_eq!(start["probes"], "tracepoint");
        assert!(start.get("probes_fallback").is_none(), "nothing fell back: {start}");
        if lossless(summary(&recs), "forced tracepoint") {
            assert_eq!(summary(&recs)["drift"], 0);
        }
    } else {
        assert!(allowed, "doctor passed, so one backend loads");
        assert_refused_in_one_line(code, &err, &recs, "which the tracepoint probes need");
    }

    let (code, err, recs) = run_with("fentry", "forced-fentry");
    if allowed {
        assert_eq!(code, Some(0), "{err}");
        let start = of_type(&recs, "start")[0];
        assert_eq!(start["probes"], "fentry");
        if lossless(summary(&recs), "forced fentry") {
            assert_eq!(summary(&recs)["drift"], 0, "{}", summary(&recs)["drift_by_cause"]);
        }
    } else {
        assert_refused_in_one_line(code, &err, &recs, "BPF trampolines refused");
    }

    // auto: the fast path where it loads, else tracepoints with the reason kept.
    let (code, err, recs) = run_with("auto", "auto");
    assert_eq!(code, Some(0), "{err}");
    let start = of_type(&recs, "start")[0];
    if allowed {
        assert_eq!(start["probes"], "fentry");
        assert!(start.get("probes_fallback").is_none(), "{start}");
    } else {
        assert_eq!(start["probes"], "tracepoint");
        let why = start["probes_fallback"].as_str().expect("auto says why it fell back");
        assert!(why.contains("BPF trampolines refused"), "{why}");
    }
}

#[test]
fn doctor_says_which_backend_tracing_will_use() {
    if !bpf_available("doctor_says_which_backend_tracing_will_use") {
        return;
    }
    let allowed = trampolines_allowed();
    let out = Command::new(pty_trace_bin()).arg("doctor").env_remove("PTY_TRACE_PROBES").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let row = |name: &str| text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("no {name} row:\n{text}")).to_string();
    if allowed {
        assert!(row("probes").contains("PASS") && row("probes").contains("fentry probes load and attach"), "{text}");
        assert!(row("fast-path").contains("PASS") && row("fast-path").contains("BPF trampolines"), "{text}");
    } else {
        assert!(row("probes").contains("PASS") && row("probes").contains("tracepoint probes load and attach"), "{text}");
        assert!(row("fast-path").contains("WARN") && row("fast-path").contains("BPF trampolines refused"), "{text}");
    }
    // A bad value is clap's usage error, naming the choices.
    let out = Command::new(pty_trace_bin()).args(["doctor"]).env("PTY_TRACE_PROBES", "kprobe").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kprobe") && err.contains("fentry") && err.contains("tracepoint"), "{err}");
}

/// The BPF links pty-trace `pid` holds, from its fdinfo: (link_type, tp_name) each.
fn links_of(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let Ok(target) = std::fs::read_link(e.path()) else { continue };
        if target.to_string_lossy() != "anon_inode:bpf_link" {
            continue;
        }
        let Ok(info) = std::fs::read_to_string(Path::new(&format!("/proc/{pid}/fdinfo")).join(e.file_name())) else { continue };
        let field = |k: &str| info.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string()).unwrap_or_default();
        out.push((field("link_type:"), field("tp_name:")));
    }
    out
}

#[test]
fn the_trampoline_backend_leaves_the_syscall_tracepoints_alone() {
    if !bpf_available("the_trampoline_backend_leaves_the_syscall_tracepoints_alone") {
        return;
    }
    // Whichever backend `auto` picks, its attachments are exactly that backend's: the fast path
    // must not also sit on a syscall tracepoint (every task would take the slow path).
    let dir = scratch("links");
    let jsonl = dir.join("out.jsonl");
    let mut c = Command::new(pty_trace_bin())
        .args(["run", "--no-tui", "--interval", &interval_arg(100), "--jsonl"])
        .arg(&jsonl)
        .args(["--", "sleep", "30"])
        .env_remove("PTY_TRACE_PROBES")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let until = Instant::now() + Duration::from_millis(slow_ms(10_000));
    while of_type(&read_jsonl(&jsonl), "snapshot").is_empty() {
        assert!(Instant::now() < until, "no snapshot");
        std::thread::sleep(Duration::from_millis(50));
    }
    let links = links_of(c.id());
    // SAFETY: plain kill(2) of our own child.
    unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
    c.wait().unwrap();
    let recs = read_jsonl(&jsonl);
    let start = of_type(&recs, "start")[0];
    // fdinfo names a perf link's tracepoint only from about 6.15 on; before, the link types and
    // their numbers tell the backends apart.
    let links_of_type = |t: &str| links.iter().filter(|(lt, _)| lt == t).collect::<Vec<_>>();
    let (perf, raw, tracing) = (links_of_type("perf"), links_of_type("raw_tracepoint"), links_of_type("tracing"));
    let named = |l: &[&(String, String)]| l.iter().all(|(_, tp)| !tp.is_empty());
    if start["probes"] == "fentry" {
        // The three scheduler tracepoints, and trampolines for the rest.
        assert!(raw.is_empty(), "fentry must not use the raw sys_exit tracepoint: {links:?}");
        if named(&perf) {
            assert!(perf.iter().all(|(_, tp)| tp.starts_with("sched_process_")), "only the scheduler tracepoints: {links:?}");
        }
        // One per followed syscall the kernel has, plus kernel_clone twice and execve/execveat
        // (5.10 shows a perf tracepoint's link differently: only the trampolines are counted).
        assert!(tracing.len() >= 40, "trampolines: {links:?}");
        assert!(tracing.len() <= start["attached_tracepoints"].as_u64().unwrap() as usize, "{links:?}");
    } else {
        // sys_exit (raw), sys_enter_close and _close_range and the three scheduler tracepoints.
        assert_eq!((raw.len(), perf.len(), tracing.len()), (1, 5, 0), "{links:?}");
        if named(&raw) {
            assert_eq!(raw[0].1, "sys_exit");
        }
        if named(&perf) {
            let names: Vec<&str> = perf.iter().map(|(_, tp)| tp.as_str()).collect();
            for n in ["sys_enter_close", "sys_enter_close_range", "sched_process_fork", "sched_process_exec", "sched_process_exit"] {
                assert!(names.contains(&n), "{n} missing: {links:?}");
            }
        }
    }
}
