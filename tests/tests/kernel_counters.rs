//! What the kernel side could not do is counted and shown, never dropped: children the TRACKED
//! map has no room for (`untracked_children`, made to happen with a small map through
//! `PTY_TRACE_TRACKED_MAX`), in the snapshot, the summary, the human summary and, with
//! `--debug-kernel`, the kernel programs' own log line for each.

use std::process::{Command, Output};

use pty_trace_tests::{bpf_available, of_type, pty_trace_bin, read_jsonl, scratch, summary};
use serde_json::Value;

/// `pty-trace run --no-tui --interval 200ms EXTRA -- sh -c SCRIPT` with a TRACKED map of
/// `tracked_max` entries; returns its output and records.
fn run_with_small_map(name: &str, tracked_max: &str, extra: &[&str], script: &str) -> (Output, Vec<Value>) {
    let jsonl = scratch(name).join("run.jsonl");
    let out = Command::new(pty_trace_bin())
        .env("PTY_TRACE_TRACKED_MAX", tracked_max)
        .args(["run", "--no-tui", "--interval", "200ms"])
        .args(extra)
        .arg("--jsonl")
        .arg(&jsonl)
        .args(["--", "sh", "-c", script])
        .output()
        .expect("running pty-trace");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    (out, read_jsonl(&jsonl))
}

#[test]
fn children_the_tracked_map_cannot_hold_are_counted_and_logged() {
    if !bpf_available("children_the_tracked_map_cannot_hold_are_counted_and_logged") {
        return;
    }
    // The shell takes one TRACKED entry of four; six children need six more.
    let (out, recs) =
        run_with_small_map("untracked", "4", &["--debug-kernel"], "for i in 1 2 3 4 5 6; do sleep 1 & done; wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let s = summary(&recs);
    let untracked = s["untracked_children"].as_u64().expect("untracked_children in the summary");
    // Three entries were free for six children; a child that exits frees its entry for a later one.
    assert!((3..=6).contains(&untracked), "untracked_children {untracked}\n{stderr}");
    pty_trace_tests::lossless(s, "full TRACKED map");
    let last = of_type(&recs, "snapshot").last().copied().expect("a snapshot");
    assert!(last["untracked_children"].as_u64().is_some_and(|n| n > 0 && n <= untracked), "{last}");
    let logged = stderr.lines().filter(|l| l.starts_with("pty-trace: kernel: WARN TRACKED has no room: pid ")).count() as u64;
    assert_eq!(logged, untracked, "one kernel log line per untracked child:\n{stderr}");
    assert!(stdout.contains(&format!("untracked children: {untracked}")), "the human summary says so:\n{stdout}");
}

#[test]
fn without_debug_kernel_the_programs_log_nothing() {
    if !bpf_available("without_debug_kernel_the_programs_log_nothing") {
        return;
    }
    let (out, recs) = run_with_small_map("untracked-quiet", "2", &[], "sleep 0.3 & sleep 0.3 & wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(summary(&recs)["untracked_children"].as_u64().is_some_and(|n| n > 0), "still counted");
    assert!(!stderr.contains("pty-trace: kernel:"), "{stderr}");
}

#[test]
fn a_bad_tracked_max_is_a_clear_error() {
    let out = Command::new(pty_trace_bin())
        .env("PTY_TRACE_TRACKED_MAX", "lots")
        .args(["run", "--no-tui", "--", "true"])
        .output()
        .expect("running pty-trace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("PTY_TRACE_TRACKED_MAX=\"lots\": expected a positive number"), "{stderr}");
}
