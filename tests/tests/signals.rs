//! Ctrl-C (SIGINT) and SIGTERM end tracing cleanly: the JSONL is complete (every line parses,
//! a summary closes it), `attach` leaves its target running, `run` stops its child the way
//! strace does and exits with the child's status.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use pty_trace_tests::*;

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2).
    assert_eq!(unsafe { libc::kill(pid as i32, sig) }, 0);
}

fn wait_for_snapshot(path: &std::path::Path) {
    let until = Instant::now() + Duration::from_millis(slow_ms(10_000));
    while Instant::now() < until {
        if of_type(&read_jsonl(path), "snapshot").len() >= 2 {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no snapshots in {}", path.display());
}

#[test]
fn sigint_and_sigterm_stop_run_cleanly() {
    if !bpf_available("sigint_and_sigterm_stop_run_cleanly") {
        return;
    }
    for (sig, name) in [(libc::SIGINT, "int"), (libc::SIGTERM, "term")] {
        let dir = scratch(&format!("sig-{name}"));
        let jsonl = dir.join("out.jsonl");
        let mut c = Command::new(pty_trace_bin())
            .args(["run", "--no-tui", "--interval", "100ms", "--jsonl"])
            .arg(&jsonl)
            .args(["--", "sleep", "60"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_snapshot(&jsonl);
        let child_pid = of_type(&read_jsonl(&jsonl), "start")[0]["sessions"][0].as_u64().unwrap() as u32;
        let t = Instant::now();
        signal(c.id(), sig);
        let status = c.wait().unwrap();
        assert!(t.elapsed() < Duration::from_millis(slow_ms(5000)), "stopped in {:?}", t.elapsed());
        // The child got SIGTERM and the exit status says so (128 + 15).
        assert_eq!(status.code(), Some(128 + libc::SIGTERM), "SIG{name}");
        assert!(proc_counts(child_pid).is_none(), "the child is gone");
        let recs = read_jsonl(&jsonl);
        let s = of_type(&recs, "summary");
        assert_eq!(s.len(), 1, "SIG{name}: complete JSONL ends with a summary");
        assert_eq!(recs.last().unwrap()["type"], "summary");
        assert_eq!(s[0]["end_reason"], "interrupted");
        assert_eq!(s[0]["exit_status"], 128 + libc::SIGTERM);
    }
}

#[test]
fn sigint_detaches_attach_and_leaves_the_target_running() {
    if !bpf_available("sigint_detaches_attach_and_leaves_the_target_running") {
        return;
    }
    let mut target = Command::new("sleep").arg("30").spawn().unwrap();
    let dir = scratch("sig-attach");
    let jsonl = dir.join("out.jsonl");
    let mut c = Command::new(pty_trace_bin())
        .args(["attach", "--no-tui", "--interval", "100ms", "--jsonl"])
        .arg(&jsonl)
        .arg(target.id().to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    wait_for_snapshot(&jsonl);
    signal(c.id(), libc::SIGINT);
    let status = c.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert!(target.try_wait().unwrap().is_none(), "attach must leave the target running");
    let recs = read_jsonl(&jsonl);
    assert_eq!(recs.last().unwrap()["type"], "summary");
    assert_eq!(recs.last().unwrap()["end_reason"], "interrupted");
    target.kill().unwrap();
    target.wait().unwrap();
}

#[test]
fn the_traced_process_exiting_ends_run_with_its_status() {
    if !bpf_available("the_traced_process_exiting_ends_run_with_its_status") {
        return;
    }
    let dir = scratch("exit-status");
    let jsonl = dir.join("out.jsonl");
    let out = run_traced(&jsonl, &["--interval", "100ms"], &["sh", "-c", "sleep 0.3; exit 7"]);
    assert_eq!(out.status.code(), Some(7));
    let recs = read_jsonl(&jsonl);
    let s = &of_type(&recs, "summary")[0];
    assert_eq!(s["exit_status"], 7);
    assert_eq!(s["end_reason"], "root_exited");
    // A --duration stop is a clean end too.
    let jsonl = dir.join("duration.jsonl");
    let t = Instant::now();
    let out = run_traced(&jsonl, &["--interval", "100ms", "--duration", "700ms"], &["sleep", "30"]);
    assert!(t.elapsed() < Duration::from_millis(slow_ms(6000)), "stopped in {:?}", t.elapsed());
    assert_eq!(out.status.code(), Some(128 + libc::SIGTERM));
    let recs = read_jsonl(&jsonl);
    assert_eq!(of_type(&recs, "summary")[0]["end_reason"], "duration");
}
