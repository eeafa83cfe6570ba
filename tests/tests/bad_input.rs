//! Bad input gets one clear line naming the problem and a documented exit code, never a panic:
//! missing PID, kernel thread, missing or non-executable command, no permission to load BPF,
//! tracefs missing, bad durations, bad config, unreadable or empty recordings.

use std::process::{Command, Output};

use pty_trace_tests::*;

fn pty_trace(args: &[&str]) -> Output {
    Command::new(pty_trace_bin()).args(args).output().expect("running pty-trace")
}

/// Exit code and stderr; asserts the message is one line without a panic or backtrace.
fn judged(out: &Output) -> (i32, String) {
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!err.contains("panicked"), "a panic: {err}");
    assert!(!err.contains("RUST_BACKTRACE"), "{err}");
    assert_eq!(err.lines().count(), 1, "one line expected, got: {err}");
    (out.status.code().expect("exited, not killed"), err)
}

#[test]
fn bad_targets_and_commands() {
    let cases: &[(&[&str], i32, &str)] = &[
        (&["attach", "--no-tui", "999999999"], 3, "no process with PID 999999999"),
        (&["attach", "--no-tui", "abc"], 3, "invalid PID \"abc\""),
        (&["attach", "--no-tui", "0"], 3, "invalid PID 0"),
        (&["run", "--no-tui", "--", "/nonexistent/tool"], 127, "command not found: /nonexistent/tool"),
        (&["run", "--no-tui", "--", "no-such-command-pty-trace"], 127, "command not found"),
        (&["report", "/nonexistent/recording.jsonl"], 6, "cannot open /nonexistent/recording.jsonl"),
        (&["attach", "--no-tui", "--config", "/etc/hostname", "1"], 6, "config /etc/hostname"),
        (&["attach", "--no-tui", "--rotate-health", "90", "1"], 6, "rotate health (90) must not be above alert health (70)"),
    ];
    for (args, code, needle) in cases {
        let (got, err) = judged(&pty_trace(args));
        assert_eq!(got, *code, "pty-trace {args:?}: {err}");
        assert!(err.contains(needle), "pty-trace {args:?}: {err:?} should contain {needle:?}");
    }
    // A file that is not executable.
    let dir = scratch("not-exec");
    let f = dir.join("data.txt");
    std::fs::write(&f, "just data\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (got, err) = judged(&pty_trace(&["run", "--no-tui", "--", f.to_str().unwrap()]));
    assert_eq!(got, 126, "{err}");
    assert!(err.contains("cannot execute") && err.contains("not an executable file"), "{err}");
    // A kernel thread (kthreadd is PID 2 on Linux).
    if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
        let (got, err) = judged(&pty_trace(&["attach", "--no-tui", "2"]));
        assert_eq!(got, 3);
        assert!(err.contains("kernel thread (kthreadd)"), "{err}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for args in [&["attach", "--interval", "5x", "1"][..], &["attach"], &["run"], &["frobnicate"], &["attach", "--ring-buffer-size", "1000", "1"]] {
        let out = pty_trace(args);
        assert_eq!(out.status.code(), Some(2), "pty-trace {args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("error:"), "{err}");
    }
}

#[test]
fn recordings_without_valid_records_are_errors() {
    let dir = scratch("bad-report");
    let p = dir.join("garbage.jsonl");
    std::fs::write(&p, "not json\n{\"type\":\n\n").unwrap();
    let (got, err) = judged(&pty_trace(&["report", p.to_str().unwrap()]));
    assert_eq!(got, 6);
    assert!(err.contains("no valid pty-trace record in 3 line(s)"), "{err}");
    let empty = dir.join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    assert_eq!(judged(&pty_trace(&["report", empty.to_str().unwrap()])).0, 6);
}

#[test]
fn no_permission_to_load_bpf_is_exit_4() {
    if !bpf_available("no_permission_to_load_bpf_is_exit_4") {
        return;
    }
    // The binary may live under a directory `nobody` cannot read: copy it somewhere it can.
    let dir = scratch("nobody");
    let bin = dir.join("pty-trace");
    std::fs::copy(pty_trace_bin(), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"])
        .arg(&bin)
        .args(["run", "--no-tui", "--", "/bin/true"])
        .output()
        .expect("setpriv (util-linux)");
    let (got, err) = judged(&out);
    assert_eq!(got, 4, "{err}");
    assert!(err.contains("not allowed") && err.contains("sudo"), "{err}");
}

#[test]
fn tracefs_missing_is_exit_5_with_the_fix() {
    if !bpf_available("tracefs_missing_is_exit_5_with_the_fix") {
        return;
    }
    // Unmount tracefs in a private mount namespace only: the machine's mount is untouched.
    let bin = pty_trace_bin();
    let script = format!(
        "for m in $(awk '$3==\"tracefs\" {{print $2}}' /proc/mounts | sort -r); do umount \"$m\" || exit 90; done; exec {} run --no-tui -- /bin/true",
        bin.display()
    );
    let out = Command::new("unshare").args(["-m", "--propagation", "private", "sh", "-c", &script]).output().expect("unshare (util-linux)");
    assert_ne!(out.status.code(), Some(90), "could not unmount tracefs in a private namespace");
    let (got, err) = judged(&out);
    assert_eq!(got, 5, "{err}");
    assert!(err.contains("tracefs") && err.contains("doctor --fix"), "{err}");
}
