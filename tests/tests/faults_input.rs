//! Fault matrix of issue 12, input rows: bad values are refused before anything is traced
//! (row 15), and secrets in the command lines of traced processes never reach the JSONL or the
//! `PTY_TRACE_DEBUG_EVENTS` print (row 3).
//!
//! Row 15's tests need no BPF: as root they run the binary as `nobody`, where loading BPF
//! would fail with exit code 4, so an exit code 6 shows the value was refused first; and the
//! command given to `run` must not have run, nor the `--jsonl` file have been created.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    sync::OnceLock,
};

use pty_trace_tests::*;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// The binary where `nobody` can run it (the build tree may be unreadable to it).
fn unprivileged_bin() -> &'static PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = scratch("faults-input-bin");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let bin = dir.join("pty-trace");
        std::fs::copy(pty_trace_bin(), &bin).unwrap();
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        bin
    })
}

/// `pty-trace ARGS` as `nobody` when we are root (through setpriv), else as ourselves.
fn pty_trace_unprivileged(args: &[&str]) -> std::process::Output {
    let mut c = if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups"]).arg(unprivileged_bin());
        c
    } else {
        Command::new(pty_trace_bin())
    };
    c.args(args).output().expect("running pty-trace (setpriv from util-linux when root)")
}

/// A scratch directory anyone may write to (so that a `run` that wrongly started would leave
/// its marker and its JSONL there).
fn open_dir(name: &str) -> PathBuf {
    let dir = scratch(name);
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    dir
}

/// Writes a config file `nobody` can read.
fn config(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    p.display().to_string()
}

/// `pty-trace run --no-tui --jsonl DIR/out.jsonl ARGS -- touch DIR/ran` must be refused
/// with exit code 6 and one line, before it loads, creates or starts anything. Returns the line.
fn refused(case: &str, dir: &Path, args: &[&str]) -> String {
    let jsonl = dir.join("out.jsonl");
    let marker = dir.join("ran");
    let (jsonl_s, marker_s) = (jsonl.display().to_string(), marker.display().to_string());
    let mut all = vec!["run", "--no-tui", "--jsonl", &jsonl_s];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--", "/usr/bin/touch", &marker_s]);
    let out = pty_trace_unprivileged(&all);
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(!err.contains("panicked"), "issue 12 row 15, {case}: a panic: {err}");
    assert_eq!(out.status.code(), Some(6), "issue 12 row 15, {case}: exit code 6 expected (4 would mean it tried to load BPF): {err}");
    assert_eq!(err.lines().count(), 1, "issue 12 row 15, {case}: one line expected: {err}");
    assert!(err.starts_with("pty-trace: "), "issue 12 row 15, {case}: {err}");
    assert!(!marker.exists(), "issue 12 row 15, {case}: the command ran although the input was refused");
    assert!(!jsonl.exists(), "issue 12 row 15, {case}: the --jsonl file was created although the input was refused");
    err
}

fn assert_says(case: &str, err: &str, needle: &str) {
    assert!(err.contains(needle), "issue 12 row 15, {case}: {err:?} should contain {needle:?}");
}

#[test]
fn duration_zero_is_refused_before_tracing() {
    let dir = open_dir("duration-zero");
    for v in ["0", "0s", "0ms"] {
        let case = format!("--duration {v}");
        let err = refused(&case, &dir, &["--duration", v]);
        assert_says(&case, &err, "--duration must be more than 0");
    }
    let err = refused("--duration 400days", &dir, &["--duration", "400days"]);
    assert_says("--duration 400days", &err, "--duration is too long");
}

#[test]
fn alert_health_nan_is_refused() {
    let dir = open_dir("alert-nan");
    for v in ["nan", "NaN", "inf"] {
        let case = format!("--alert-health {v}");
        let err = refused(&case, &dir, &["--alert-health", v]);
        assert_says(&case, &err, "--alert-health: alert_health (");
        assert_says(&case, &err, "must be a number from 0 to 100");
    }
}

#[test]
fn alert_health_negative_is_refused() {
    let dir = open_dir("alert-negative");
    for args in [&["--alert-health", "-5"][..], &["--alert-health=-5"]] {
        let case = args.join(" ");
        let err = refused(&case, &dir, args);
        assert_says(&case, &err, "--alert-health: alert_health (-5) must be a number from 0 to 100");
    }
    let err = refused("--rotate-health -1", &dir, &["--rotate-health", "-1"]);
    assert_says("--rotate-health -1", &err, "--rotate-health: rotate_health (-1)");
}

#[test]
fn alert_health_500_in_a_config_file_is_refused_with_its_line() {
    let dir = open_dir("alert-500");
    let p = config(&dir, "t.toml", "# thresholds\nalert_health = 500\n");
    let err = refused("alert_health = 500", &dir, &["--config", &p]);
    assert_says("alert_health = 500", &err, &format!("config {p}:2: alert_health (500) must be a number from 0 to 100"));
    // The flag overrides the file, and is the one named.
    let err = refused("--alert-health 101 over a file", &dir, &["--config", &p, "--alert-health", "101"]);
    assert_says("--alert-health 101 over a file", &err, "--alert-health: alert_health (101)");
}

#[test]
fn every_threshold_in_a_config_file_is_range_checked() {
    let dir = open_dir("every-threshold");
    let cases = [
        ("rotate_health = 150", "rotate_health (150) must be a number from 0 to 100"),
        ("hysteresis = -1", "hysteresis (-1) must be a number from 0 to 100"),
        ("pty_growth_per_command = -0.5", "pty_growth_per_command (-0.5) must be a number, 0 or more"),
        ("fd_growth_per_command = nan", "fd_growth_per_command (NaN) must be a number, 0 or more"),
        ("leak_score = -inf", "leak_score (-inf) must be a number, 0 or more"),
        ("abandon_grace_s = -5", "abandon_grace_s (-5) must be a number of seconds, 0 or more"),
        ("overtaken_after_s = nan", "overtaken_after_s (NaN) must be a number of seconds, 0 or more"),
        ("abandon_commands = 0", "abandon_commands (0) must be at least 1"),
        ("min_commands = 0", "min_commands (0) must be at least 6"),
        ("window_commands = 100000", "window_commands (100000) must be from 6 to 512"),
        ("window_commands = 8\nmin_commands = 10", "window_commands (8) must be at least min_commands (10)"),
        ("rotate_health = 80", "rotate health (80) must not be above alert health (70)"),
        ("max_ptys = -1", "invalid value: integer `-1`, expected u64"),
        ("max_ptys = 6.5", "invalid type: floating point `6.5`, expected u64"),
    ];
    for (i, (text, needle)) in cases.iter().enumerate() {
        let p = config(&dir, &format!("t{i}.toml"), &format!("{text}\n"));
        let err = refused(text, &dir, &["--config", &p]);
        assert_says(text, &err, &format!("config {p}:1"));
        assert_says(text, &err, needle);
    }
}

#[test]
fn an_unknown_config_key_is_named_with_its_line_and_column() {
    let dir = open_dir("unknown-key");
    let p = config(&dir, "t.toml", "alert_health = 60\n\n  alert_helth = 50\n");
    let err = refused("alert_helth", &dir, &["--config", &p]);
    assert_says("alert_helth", &err, &format!("config {p}:3:3: unknown field `alert_helth`"));
}

#[test]
fn a_toml_syntax_error_gives_its_line_and_column() {
    let dir = open_dir("toml-syntax");
    let p = config(&dir, "t.toml", "max_ptys = 6\nrotate_health = = 3\n");
    let err = refused("rotate_health = = 3", &dir, &["--config", &p]);
    assert_says("rotate_health = = 3", &err, &format!("config {p}:2:17: "));
    let p = config(&dir, "u.toml", "alert_health = \"high\"\n");
    let err = refused("alert_health = \"high\"", &dir, &["--config", &p]);
    assert_says("alert_health = \"high\"", &err, &format!("config {p}:1:16: invalid type: string \"high\", expected f64"));
}

#[test]
fn interval_bounds_are_checked() {
    let dir = open_dir("interval");
    for (v, needle) in [("1ms", "--interval 1ms is too short: the minimum is 10ms"), ("0", "--interval 0s is too short"), ("2h", "--interval 2h is too long: the maximum is 1h")] {
        let case = format!("--interval {v}");
        let err = refused(&case, &dir, &["--interval", v]);
        assert_says(&case, &err, needle);
    }
    // What is not a duration at all stays a usage error (clap's, exit 2).
    let out = pty_trace_unprivileged(&["run", "--no-tui", "--interval", "5x", "--", "true"]);
    assert_eq!(out.status.code(), Some(2), "issue 12 row 15, --interval 5x: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn attach_refuses_bad_values_before_tracing_too() {
    for (case, args) in [("attach --duration 0", &["attach", "--no-tui", "--duration", "0", "1"][..]), ("attach --alert-health nan", &["attach", "--no-tui", "--alert-health", "nan", "1"])] {
        let out = pty_trace_unprivileged(args);
        let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
        assert_eq!(out.status.code(), Some(6), "issue 12 row 15, {case}: {err}");
        assert_eq!(err.lines().count(), 1, "issue 12 row 15, {case}: {err}");
    }
}

/// Secrets in the argv of real child processes (each alive across a few snapshots), every gap
/// of row 3 among them.
const SECRET_COMMANDS: &[&str] = &[
    "mysql -pXSECRETX01",
    "mysql -p XSECRETX02",
    "curl -u admin:XSECRETX03 https://h",
    "curl --user admin:XSECRETX04",
    "curl -H 'Authorization:Bearer XSECRETX05' https://h",
    "curl -H 'X-Auth-Token: XSECRETX06' https://h",
    "curl -H 'Cookie: sid=XSECRETX07' https://h",
    "git clone https://XSECRETX08@github.com/o/r",
    "sshpass -p XSECRETX09 ssh h",
    "openssl rsa -passin pass:XSECRETX10 -passout env:PW",
    "docker login -u me -p XSECRETX11 registry",
    "x PGPASSWORD=XSECRETX12 --token XSECRETX13",
];

/// What the redacted argv of each looks like in the JSONL (proof that they were there).
const REDACTED: &[&str] = &[
    "\"-p<redacted>\"",
    "\"mysql\",\"-p\",\"<redacted>\"",
    "\"admin:<redacted>\"",
    "\"--user\",\"admin:<redacted>\"",
    "\"Authorization:Bearer <redacted>\"",
    "\"X-Auth-Token: <redacted>\"",
    "\"Cookie: <redacted>\"",
    "\"https://<redacted>@github.com/o/r\"",
    "\"sshpass\",\"-p\",\"<redacted>\"",
    "\"pass:<redacted>\"",
    "\"login\",\"-u\",\"me\",\"-p\",\"<redacted>\"",
    "\"PGPASSWORD=<redacted>\",\"--token\",\"<redacted>\"",
];

#[test]
fn secrets_in_exec_argv_reach_neither_the_jsonl_nor_the_debug_print() {
    if !bpf_available("secrets_in_exec_argv_reach_neither_the_jsonl_nor_the_debug_print") {
        return;
    }
    let dir = scratch("row3-secrets");
    let jsonl = dir.join("out.jsonl");
    // Each line runs `bash -c 'sleep 1; true' ARGS...`: bash stays alive (two commands, no
    // exec) with the secret in its argv; `env` execs another program with it too.
    let mut script = String::new();
    for c in SECRET_COMMANDS {
        script.push_str(&format!("bash -c 'sleep 1; true' {c} &\n"));
    }
    script.push_str("env true mysql -pXSECRETX14 sshpass -p XSECRETX15\nwait\n");
    let out = Command::new(pty_trace_bin())
        .args(["run", "--no-tui", "--interval", "100ms", "--jsonl"])
        .arg(&jsonl)
        .args(["--", "bash", "-c", &script])
        .env("PTY_TRACE_DEBUG_EVENTS", "1")
        .output()
        .expect("running pty-trace");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "issue 12 row 3: the traced script failed: {}", stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | "));
    let text = std::fs::read_to_string(&jsonl).expect("the JSONL");
    read_jsonl(&jsonl);
    if let Some(line) = text.lines().find(|l| l.contains("XSECRETX")) {
        panic!("issue 12 row 3: a secret reached the JSONL: {line}");
    }
    for needle in REDACTED {
        assert!(text.contains(needle), "issue 12 row 3: {needle} not in the JSONL: the command never showed up, so it proves nothing");
    }
    assert!(text.contains("\"type\":\"start\"") && text.contains("<redacted>"), "issue 12 row 3: start.command");
    let exec_lines: Vec<&str> = stderr.lines().filter(|l| l.starts_with("pty-trace: event ExecArgv")).collect();
    assert!(exec_lines.len() >= SECRET_COMMANDS.len(), "issue 12 row 3: PTY_TRACE_DEBUG_EVENTS printed {} exec events", exec_lines.len());
    if let Some(line) = stderr.lines().find(|l| l.contains("XSECRETX")) {
        panic!("issue 12 row 3: a secret reached stderr with PTY_TRACE_DEBUG_EVENTS=1: {line}");
    }
    assert!(exec_lines.iter().any(|l| l.contains("\"-p<redacted>\"")), "issue 12 row 3: the debug print shows the redacted argv");
}
