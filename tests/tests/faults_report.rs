//! Issue 12 row 14: `pty-trace report` on recordings that cannot give a summary's verdict, on
//! inputs that cannot seek, and on a reader that goes away.
//!
//! A record of an unknown type alone, a recording of a newer schema, a `start` alone: verdict
//! `UNKNOWN`, exit status 8, never `HEALTHY`. A recording cut short before its summary:
//! `INCOMPLETE` with what the snapshots show, exit status 7. `report -` from a pipe, `report
//! <(cat f)` (`/dev/fd/N`) and a FIFO give the file's own report. `report f | head -c 10` ends
//! quietly with the report's status; a full disk is one line and exit status 1.
//!
//! The recordings are real (`pty-trace run` on a few `script(1)` sessions), so most tests need
//! BPF; the unknown-type test does not.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::OnceLock,
};

use pty_trace_tests::*;
use serde_json::Value;

/// The assertion message prefix of a case.
fn case(name: &str) -> String {
    format!("issue 12 row 14 ({name})")
}

fn report(args: &[&str]) -> Output {
    Command::new(pty_trace_bin()).arg("report").args(args).output().expect("running pty-trace report")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A complete recording of `run` on three `script(1)` sessions, made once for all the tests
/// here (each test checks BPF first, with its own name).
fn recording() -> &'static Path {
    static REC: OnceLock<PathBuf> = OnceLock::new();
    REC.get_or_init(|| {
        let dir = scratch("faults-report");
        let f = dir.join("rec.jsonl");
        let out = run_traced(&f, &["--interval", "250ms"], &["bash", "-c", "for i in 1 2 3; do script -qc true /dev/null; sleep 0.3; done"]);
        assert!(out.status.success(), "recording failed: {}", text(&out.stderr));
        let recs = read_jsonl(&f);
        assert_eq!(recs.first().map(|r| r["type"].clone()), Some("start".into()), "{}", f.display());
        assert_eq!(summary(&recs)["verdict"], "HEALTHY", "the recording's own verdict");
        assert!(of_type(&recs, "snapshot").len() >= 2, "a few snapshots in {}", f.display());
        f
    })
}

/// The recording's lines.
fn recording_lines() -> Vec<String> {
    std::fs::read_to_string(recording()).unwrap().lines().map(str::to_string).collect()
}

/// Writes `lines` (each with its newline) to a fresh file of the test `name`.
fn write_lines(name: &str, lines: &[String]) -> PathBuf {
    let f = scratch(name).join("input.jsonl");
    std::fs::write(&f, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    f
}

/// Asserts `report FILE` and `report --json FILE` give `verdict` and exit status `code`,
/// without a panic and never saying HEALTHY; returns the text report.
fn assert_verdict(what: &str, f: &Path, verdict: &str, code: i32) -> String {
    let out = report(&[f.to_str().unwrap()]);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!stderr.contains("panicked"), "{}: a panic: {stderr}", case(what));
    assert!(stdout.contains(&format!("VERDICT: {verdict}")), "{}: expected VERDICT: {verdict}, got (stderr {stderr:?}):\n{stdout}", case(what));
    assert!(!stdout.contains("HEALTHY") || verdict == "INCOMPLETE", "{}: must not say HEALTHY:\n{stdout}", case(what));
    assert_eq!(out.status.code(), Some(code), "{}: exit status (stderr {stderr:?}):\n{stdout}", case(what));
    let out = report(&["--json", f.to_str().unwrap()]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{}: --json is not JSON ({e}): {}", case(what), text(&out.stdout)));
    assert_eq!(v["verdict"], verdict, "{}: --json verdict", case(what));
    assert_eq!(out.status.code(), Some(code), "{}: --json exit status", case(what));
    stdout
}

#[test]
fn hello_only_is_unknown_and_names_the_type() {
    let dir = scratch("report-hello");
    let f = dir.join("hello.jsonl");
    std::fs::write(&f, "{\"type\":\"hello\",\"schema\":1,\"ts\":\"2026-12-01T00:00:00.000Z\"}\n").unwrap();
    let out = assert_verdict("hello-only", &f, "UNKNOWN", 8);
    assert!(out.contains("1 record(s) of a type this pty-trace does not know, skipped: \"hello\" (1)"), "{}: the type is named:\n{out}", case("hello-only"));
    let v: Value = serde_json::from_slice(&report(&["--json", f.to_str().unwrap()]).stdout).unwrap();
    assert_eq!((&v["unknown_type_records"], &v["unknown_types"]["hello"]), (&1.into(), &1.into()), "{}: {v}", case("hello-only"));
    // Without the envelope it is no pty-trace record at all: the bad-input error.
    let bare = dir.join("bare.jsonl");
    std::fs::write(&bare, "{\"type\":\"hello\"}\n").unwrap();
    let out = report(&[bare.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(6), "{}: bare {{\"type\":\"hello\"}}: {}", case("hello-only"), text(&out.stderr));
    assert!(!text(&out.stdout).contains("HEALTHY"), "{}", case("hello-only"));
}

#[test]
fn schema_99_is_unknown_and_says_so() {
    if !bpf_available("schema_99_is_unknown_and_says_so") {
        return;
    }
    let lines: Vec<String> = recording_lines().iter().map(|l| l.replacen("\"schema\":1,", "\"schema\":99,", 1)).collect();
    let f = write_lines("report-schema-99", &lines);
    let out = report(&[f.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert!(err.contains(&format!("{} record(s) use schema 99", lines.len())), "{}: the warning on stderr: {err:?}", case("schema-99"));
    let out = assert_verdict("schema-99", &f, "UNKNOWN", 8);
    assert!(out.contains("use schema 99, newer than the schema 1"), "{}:\n{out}", case("schema-99"));
}

#[test]
fn start_only_is_unknown() {
    if !bpf_available("start_only_is_unknown") {
        return;
    }
    let lines = recording_lines();
    let sid = serde_json::from_str::<Value>(&lines[0]).unwrap()["sessions"][0].clone();
    let f = write_lines("report-start-only", &lines[..1]);
    let out = assert_verdict("start-only", &f, "UNKNOWN", 8);
    assert!(out.contains(&format!("session {sid}: UNKNOWN (no snapshot and no summary)")), "{}: the announced session:\n{out}", case("start-only"));
}

#[test]
fn cut_off_recording_is_incomplete_with_what_the_snapshots_show() {
    if !bpf_available("cut_off_recording_is_incomplete_with_what_the_snapshots_show") {
        return;
    }
    let lines: Vec<String> = recording_lines().into_iter().filter(|l| !l.starts_with("{\"type\":\"summary\"")).collect();
    let f = write_lines("report-cut-off", &lines);
    let out = assert_verdict("cut-off", &f, "INCOMPLETE", 7);
    assert!(out.contains("the recording was cut short; up to the cut it shows HEALTHY"), "{}: what the snapshots show:\n{out}", case("cut-off"));
    let v: Value = serde_json::from_slice(&report(&["--json", f.to_str().unwrap()]).stdout).unwrap();
    assert_eq!((&v["observed_verdict"], &v["sessions"][0]["verdict"]), (&"HEALTHY".into(), &"INCOMPLETE".into()), "{}: {v}", case("cut-off"));
    // Cut in the middle of its last snapshot, too.
    let mut text = lines.join("\n");
    text.truncate(text.len() - 40);
    let f2 = f.with_file_name("mid-line.jsonl");
    std::fs::write(&f2, text).unwrap();
    let out = assert_verdict("cut-off mid-line", &f2, "INCOMPLETE", 7);
    assert!(out.contains("1 malformed line(s) skipped"), "{}:\n{out}", case("cut-off mid-line"));
}

/// Asserts a report read through a pipe, FIFO or `/dev/fd/N` is the file's own.
fn assert_same_report(what: &str, out: &Output) {
    let want = report(&[recording().to_str().unwrap()]);
    let body = |o: &[u8]| text(o).lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(out.status.code(), Some(0), "{}: exit status, stderr {:?}, stdout:\n{}", case(what), text(&out.stderr), text(&out.stdout));
    assert_eq!(text(&out.stderr), "", "{}: stderr", case(what));
    assert!(text(&out.stdout).contains("VERDICT: HEALTHY"), "{}:\n{}", case(what), text(&out.stdout));
    assert_eq!(body(&out.stdout), body(&want.stdout), "{}: the same report as the file's (after its first line)", case(what));
}

#[test]
fn report_dash_reads_a_pipe() {
    if !bpf_available("report_dash_reads_a_pipe") {
        return;
    }
    let mut cat = Command::new("cat").arg(recording()).stdout(Stdio::piped()).spawn().unwrap();
    let out = Command::new(pty_trace_bin()).args(["report", "-"]).stdin(cat.stdout.take().unwrap()).output().unwrap();
    let _ = cat.wait();
    assert_same_report("report - from a pipe", &out);
    assert!(text(&out.stdout).starts_with("pty-trace report: standard input "), "{}: {}", case("report -"), text(&out.stdout));
}

#[test]
fn report_dev_fd_reads_a_process_substitution() {
    if !bpf_available("report_dev_fd_reads_a_process_substitution") {
        return;
    }
    let out = Command::new("bash")
        .args(["-c", "exec \"$0\" report <(cat \"$1\")"])
        .arg(pty_trace_bin())
        .arg(recording())
        .output()
        .unwrap();
    assert_same_report("report <(cat f)", &out);
    assert!(text(&out.stdout).starts_with("pty-trace report: /dev/fd/"), "{}: {}", case("report <(cat f)"), text(&out.stdout));
}

#[test]
fn report_reads_a_fifo() {
    if !bpf_available("report_reads_a_fifo") {
        return;
    }
    let fifo = scratch("report-fifo").join("rec.fifo");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0, "mkfifo {}: {}", fifo.display(), std::io::Error::last_os_error());
    // The writer is a process, so that a reader that never opens the FIFO cannot hang the test.
    let mut writer = Command::new("sh").args(["-c", "exec cat \"$1\" > \"$2\"", "sh"]).arg(recording()).arg(&fifo).spawn().unwrap();
    let out = report(&[fifo.to_str().unwrap()]);
    let _ = writer.kill();
    let _ = writer.wait();
    assert_same_report("report FIFO", &out);
}

#[test]
fn report_into_head_ends_quietly() {
    if !bpf_available("report_into_head_ends_quietly") {
        return;
    }
    // More report than a pipe holds (64 KiB): the recording with 5000 alerts before its
    // summary, one report line each, so `head` goes away while the report is being written.
    let mut lines = recording_lines();
    let sum = lines.pop().unwrap();
    let sid = serde_json::from_str::<Value>(&sum).unwrap()["session"].clone();
    for i in 0..5000 {
        lines.push(format!(
            "{{\"type\":\"alert\",\"schema\":1,\"ts\":\"2026-12-01T00:00:{:02}.{:03}Z\",\"session\":{sid},\"health\":60.0,\"reasons\":[\"health 60 below the alert line 70: a long enough reason to fill the pipe\"]}}",
            i / 1000,
            i % 1000
        ));
    }
    lines.push(sum);
    let f = write_lines("report-head", &lines);
    let full = report(&[f.to_str().unwrap()]);
    assert!(full.stdout.len() > 256 << 10, "{}: a report bigger than a pipe ({} bytes)", case("| head -c 10"), full.stdout.len());
    for json in [false, true] {
        let what = if json { "report --json f | head -c 10" } else { "report f | head -c 10" };
        let mut cmd = Command::new(pty_trace_bin());
        cmd.arg("report");
        if json {
            cmd.arg("--json");
        }
        let mut rep = cmd.arg(&f).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        let head = Command::new("head").args(["-c", "10"]).stdin(rep.stdout.take().unwrap()).output().unwrap();
        let out = rep.wait_with_output().unwrap();
        assert_eq!(head.stdout.len(), 10, "{}: head got {:?}", case(what), text(&head.stdout));
        assert_eq!(text(&out.stderr), "", "{}: stderr must be empty", case(what));
        assert_eq!(out.status.code(), Some(0), "{}: exit status 0 (the report's: a complete recording), got {:?}", case(what), out.status);
    }
}

#[test]
fn report_to_a_full_disk_is_one_line_and_exit_1() {
    if !bpf_available("report_to_a_full_disk_is_one_line_and_exit_1") {
        return;
    }
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let out = Command::new(pty_trace_bin()).arg("report").arg(recording()).stdout(full).output().unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{}: exit status, stderr {err:?}", case("> /dev/full"));
    assert_eq!(err, "pty-trace: writing the report to standard output: No space left on device\n", "{}: one line", case("> /dev/full"));
}
