//! The fault matrix of issue 12, as tests that stay: each test is one row, tried the way a
//! careful user or a hostile local user would (root, real processes, real signals, real
//! symlinks, FIFOs and a full tmpfs), and fails with a message naming its row.
//!
//! Rows elsewhere: 3 and 15 in `faults_input.rs`, 12 in `faults_threads.rs`, 14 in
//! `faults_report.rs`, and the live view's half of row 5 in `tui.rs`.

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use pty_trace_tests::*;
use serde_json::Value;

fn signal(pid: u32, sig: i32) {
    // SAFETY: plain kill(2).
    unsafe { libc::kill(pid as i32, sig) };
}

/// `pty-trace` started in the background, its stdout and stderr going to files (a pipe
/// would keep a reader waiting for every process that inherited it).
struct Traced {
    child: Child,
    out: PathBuf,
    err: PathBuf,
}

impl Traced {
    fn id(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn spawn(args: &[&str], env: &[(&str, &str)]) -> Traced {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("pty-trace-e2e-{}-faults-out", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let (out, err) = (d.join(format!("{n}.out")), d.join(format!("{n}.err")));
    let mut c = Command::new(pty_trace_bin());
    c.args(args)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap());
    for (k, v) in env {
        c.env(k, v);
    }
    Traced { child: c.spawn().expect("starting pty-trace"), out, err }
}

fn pty_trace(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(pty_trace_bin());
    c.args(args).stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("running pty-trace")
}

/// Kills (SIGKILL) every process still running one of the markers when a test ends, pass or
/// fail, so a failing row does not leave sleeps behind for the next.
struct Markers(Vec<String>);

impl Markers {
    fn new(bases: &[u32]) -> Markers {
        Markers(bases.iter().map(|&b| marker(b)).collect())
    }

    fn get(&self, i: usize) -> &str {
        &self.0[i]
    }
}

impl Drop for Markers {
    fn drop(&mut self) {
        for m in &self.0 {
            for pid in pids_running(m) {
                signal(pid, libc::SIGKILL);
            }
        }
    }
}

/// Waits until `path` holds at least `n` snapshots and returns its records.
fn wait_for_snapshots(path: &Path, n: usize, row: &str) -> Vec<Value> {
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let recs = read_jsonl(path);
        if of_type(&recs, "snapshot").len() >= n {
            return recs;
        }
        assert!(Instant::now() < until, "{row}: no {n} snapshots in {}", path.display());
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits for `t` to exit within `limit`; kills it and fails naming `row` otherwise. Returns
/// its exit code and what it printed (stdout, where the summary goes when the JSONL goes to a
/// file, then stderr).
fn wait_exit(t: &mut Traced, limit: Duration, row: &str) -> (i32, String) {
    let code = wait_child(&mut t.child, limit, row);
    let text = std::fs::read_to_string(&t.out).unwrap_or_default() + &std::fs::read_to_string(&t.err).unwrap_or_default();
    (code, text)
}

fn wait_child(child: &mut Child, limit: Duration, row: &str) -> i32 {
    let until = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st.code().unwrap_or(-1);
        }
        if Instant::now() > until {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{row}: pty-trace did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// PIDs of live processes whose command line contains `needle`.
fn pids_running(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')));
        if cmd.contains(needle) && !zombie {
            out.push(pid);
        }
    }
    out
}

/// Polls until no process runs `needle` or `limit` passes; returns the ones left.
fn gone_within(needle: &str, limit: Duration) -> Vec<u32> {
    let until = Instant::now() + limit;
    loop {
        let left = pids_running(needle);
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A number no other test (or person) uses, for `sleep N` markers.
fn marker(base: u32) -> String {
    format!("{base}.{}", std::process::id() % 100_000)
}

const NOBODY: u32 = 65534;

// ---- Security ----------------------------------------------------------------------------

#[test]
fn row1_output_paths_never_follow_links_or_give_files_away() {
    if !bpf_available("row1_output_paths_never_follow_links_or_give_files_away") {
        return;
    }
    let row = "issue 12 row 1";
    let d = scratch("row1");
    let precious = d.join("precious");
    std::fs::write(&precious, "precious\n").unwrap();
    let sudo = [("SUDO_UID", "65534"), ("SUDO_GID", "65534")];
    let sym = d.join("o.jsonl");
    std::os::unix::fs::symlink(&precious, &sym).unwrap();
    let unchanged = |what: &str| {
        assert_eq!(std::fs::read_to_string(&precious).unwrap(), "precious\n", "{row}: {what} overwrote the target");
        assert_eq!(std::fs::metadata(&precious).unwrap().uid(), 0, "{row}: {what} gave the target away");
    };
    // The repro: a planted symlink as --jsonl, under sudo.
    let out = pty_trace(&["run", "--no-tui", "--jsonl", sym.to_str().unwrap(), "--", "true"], &sudo);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{row}: a symlinked --jsonl must be refused: {err}");
    assert!(err.contains("symbolic link") && err.lines().count() == 1, "{row}: one line naming the symlink: {err}");
    unchanged("--jsonl through a symlink");
    // The same as --child-output.
    let sym2 = d.join("child.out");
    std::os::unix::fs::symlink(&precious, &sym2).unwrap();
    let ok = d.join("ok.jsonl");
    let out = pty_trace(&["run", "--no-tui", "--jsonl", ok.to_str().unwrap(), "--child-output", sym2.to_str().unwrap(), "--", "echo", "pwned"], &sudo);
    assert_eq!(out.status.code(), Some(6), "{row}: a symlinked --child-output must be refused: {}", String::from_utf8_lossy(&out.stderr));
    unchanged("--child-output through a symlink");
    // A hard link to someone else's file.
    let hard = d.join("hard.jsonl");
    std::fs::hard_link(&precious, &hard).unwrap();
    let out = pty_trace(&["run", "--no-tui", "--jsonl", hard.to_str().unwrap(), "--", "true"], &sudo);
    assert_eq!(out.status.code(), Some(6), "{row}: a hard-linked --jsonl must be refused");
    unchanged("--jsonl through a hard link");
    // A file another user owns is not overwritten (they would read what root writes there).
    let theirs = d.join("theirs.jsonl");
    std::fs::write(&theirs, "theirs\n").unwrap();
    std::os::unix::fs::chown(&theirs, Some(1234), Some(1234)).unwrap();
    let out = pty_trace(&["run", "--no-tui", "--jsonl", theirs.to_str().unwrap(), "--", "true"], &sudo);
    assert_eq!(out.status.code(), Some(6), "{row}: another user's file must be refused");
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "theirs\n", "{row}: another user's file was overwritten");
    // A new file: created 0600 and handed to the sudo user, by fd.
    let out = pty_trace(&["run", "--no-tui", "--jsonl", ok.to_str().unwrap(), "--", "true"], &sudo);
    assert!(out.status.success(), "{row}: {}", String::from_utf8_lossy(&out.stderr));
    let md = std::fs::metadata(&ok).unwrap();
    assert_eq!((md.uid(), md.gid(), md.permissions().mode() & 0o777), (NOBODY, NOBODY, 0o600), "{row}: a new file belongs to the sudo user, 0600");
    // Their existing file: kept theirs, made 0600, truncated and written.
    std::fs::set_permissions(&ok, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = pty_trace(&["run", "--no-tui", "--jsonl", ok.to_str().unwrap(), "--", "true"], &sudo);
    assert!(out.status.success(), "{row}: {}", String::from_utf8_lossy(&out.stderr));
    let md = std::fs::metadata(&ok).unwrap();
    assert_eq!((md.uid(), md.permissions().mode() & 0o777), (NOBODY, 0o600), "{row}: the sudo user's file stays theirs, 0600");
    assert_eq!(summary(&read_jsonl(&ok))["end_reason"], "root_exited");
    // A device: /dev/null is a stream (never chowned), any other device is refused.
    let null_before = std::fs::metadata("/dev/null").unwrap();
    let out = pty_trace(&["run", "--no-tui", "--jsonl", "/dev/null", "--", "true"], &sudo);
    assert!(out.status.success(), "{row}: /dev/null is a valid sink: {}", String::from_utf8_lossy(&out.stderr));
    let null_after = std::fs::metadata("/dev/null").unwrap();
    assert_eq!((null_after.uid(), null_after.mode()), (null_before.uid(), null_before.mode()), "{row}: /dev/null was chowned or chmodded");
    let out = pty_trace(&["run", "--no-tui", "--jsonl", "/dev/zero", "--", "true"], &sudo);
    assert_eq!(out.status.code(), Some(6), "{row}: a device other than /dev/null or a tty must be refused");
    assert_eq!(std::fs::metadata("/dev/zero").unwrap().uid(), 0, "{row}: /dev/zero was chowned");
}

#[test]
fn row2_the_hook_runs_as_the_user_in_a_clean_environment() {
    if !bpf_available("row2_the_hook_runs_as_the_user_in_a_clean_environment") {
        return;
    }
    let row = "issue 12 row 2";
    let d = scratch("row2");
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mark = d.join("hook.env");
    let jsonl = d.join("out.jsonl");
    let hook = format!("sh -c 'env > {m}.tmp; echo CWD=$(pwd) >> {m}.tmp; echo UID=$(id -u) GROUPS=$(id -G) >> {m}.tmp; mv {m}.tmp {m}'", m = mark.display());
    let sudo = [("SUDO_UID", "65534"), ("SUDO_GID", "65534"), ("AWS_SECRET_ACCESS_KEY", "hunter2-secret"), ("HOME", "/root"), ("USER", "root")];
    let bin = pty_trace_bin();
    let out = pty_trace(
        &[
            "run", "--no-tui", "--interval", "100ms", "--jsonl", jsonl.to_str().unwrap(), "--on-rotate", &hook, "--exit-on-rotate", "--",
            bin.to_str().unwrap(), "__demo-agent", "--commands", "60", "--delay", "20ms",
        ],
        &sudo,
    );
    assert_eq!(out.status.code(), Some(10), "{row}: the leaky demo agent should rotate: {}", String::from_utf8_lossy(&out.stderr));
    let until = Instant::now() + Duration::from_secs(10);
    while !mark.exists() {
        assert!(Instant::now() < until, "{row}: the hook never ran");
        std::thread::sleep(Duration::from_millis(20));
    }
    let text = std::fs::read_to_string(&mark).unwrap();
    let var = |k: &str| text.lines().find_map(|l| l.strip_prefix(&format!("{k}="))).map(str::to_string);
    assert!(!text.contains("hunter2-secret"), "{row}: root's secrets reached the hook:\n{text}");
    assert!(!text.contains("SUDO_"), "{row}: SUDO_* reached the hook:\n{text}");
    assert_eq!(var("USER").as_deref(), Some("nobody"), "{row}:\n{text}");
    assert_eq!(var("LOGNAME").as_deref(), Some("nobody"), "{row}:\n{text}");
    assert_eq!(var("HOME").as_deref(), Some("/nonexistent"), "{row}: HOME from nobody's passwd entry:\n{text}");
    assert_eq!(var("PATH").as_deref(), Some("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"), "{row}:\n{text}");
    assert_eq!(var("CWD").as_deref(), Some("/"), "{row}: nobody's home does not exist, so cwd is /:\n{text}");
    assert_eq!(var("UID").as_deref().map(|u| u.split_whitespace().next().unwrap_or("")), Some("65534"), "{row}:\n{text}");
    assert!(!text.contains("GROUPS=0") && !text.contains(" 0 "), "{row}: root's groups reached the hook:\n{text}");
    assert!(var("PTY_TRACE_SESSION").is_some() && var("PTY_TRACE_HEALTH").is_some(), "{row}:\n{text}");
    // Checked at start: a bad --on-rotate is one line and exit 6 before anything runs.
    for bad in ["notify 'unbalanced", "/nonexistent/rotate-hook", "no-such-hook-program-xyz"] {
        let j = d.join("bad.jsonl");
        let out = pty_trace(&["run", "--no-tui", "--jsonl", j.to_str().unwrap(), "--on-rotate", bad, "--", "true"], &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(6), "{row}: --on-rotate {bad:?} must be refused at start: {err}");
        assert!(err.contains("--on-rotate") && err.lines().count() == 1, "{row}: {err}");
        assert!(!j.exists(), "{row}: a refused start must not create the output");
    }
}

#[test]
fn row4_unreadable_proc_is_refused_or_counted_never_healthy_zeros() {
    if !bpf_available("row4_unreadable_proc_is_refused_or_counted_never_healthy_zeros") {
        return;
    }
    let row = "issue 12 row 4";
    let marks = Markers::new(&[401]);
    let n = marks.get(0).to_string();
    let mut target = Command::new("setpriv").args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "sleep", &n]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = target.id().to_string();
    let bin = pty_trace_bin();
    let limited = |caps: &str, args: &[&str]| {
        Command::new("setpriv")
            .args(["--bounding-set", &format!("-all,{caps}"), "--inh-caps", "-all", "--"])
            .arg(&bin)
            .args(args)
            .output()
            .unwrap()
    };
    // CAP_BPF and CAP_PERFMON only: another user's fds cannot be read. Refused, with the fix.
    let out = limited("+bpf,+perfmon", &["attach", "--no-tui", "--duration", "1s", &pid]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{row}: attach without CAP_SYS_PTRACE must be refused (exit 4): {err}");
    assert!(err.contains("CAP_SYS_PTRACE") && err.contains("CAP_DAC_READ_SEARCH") && err.contains("uid 65534"), "{row}: {err}");
    assert!(out.stdout.is_empty(), "{row}: nothing traced");
    // With the documented set it works and the counts are real.
    let out = limited("+bpf,+perfmon,+sys_ptrace,+dac_read_search", &["attach", "--no-tui", "--interval", "200ms", "--duration", "1s", &pid]);
    assert!(out.status.success(), "{row}: the documented capability set must work: {}", String::from_utf8_lossy(&out.stderr));
    let recs: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let snaps = of_type(&recs, "snapshot");
    let fds = snaps.last().expect("snapshots")["processes"][0]["fds"].as_u64().unwrap();
    assert_eq!(fds, proc_counts(target.id()).unwrap().0, "{row}: counts from /proc with the capability set");
    let _ = target.kill();
    let _ = target.wait();
    // A traced child that becomes another user mid-run: every scan counts it, none reads zeros.
    let out = limited(
        "+bpf,+perfmon,+setuid,+setgid",
        &["run", "--no-tui", "--interval", "150ms", "--", "setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "sleep", "1.2"],
    );
    assert!(out.status.success(), "{row}: {}", String::from_utf8_lossy(&out.stderr));
    let recs: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let counted = of_type(&recs, "snapshot").iter().filter(|s| s["unreadable_procs"].as_u64() == Some(1)).count();
    assert!(counted >= 3, "{row}: the unreadable process must be counted in the snapshots: {counted}");
    assert_eq!(summary(&recs)["unreadable_procs"], 1, "{row}: and in the summary");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unreadable processes: 1"), "{row}: and in the summary people read: {err}");
}

// ---- Every way out ends like Ctrl-C ------------------------------------------------------

/// Checks a run stopped by pty-trace: exit 143 (the child's SIGTERM), a complete JSONL with
/// its summary last, `end_reason`, and no process of `needle` left.
fn assert_stopped_cleanly(row: &str, code: i32, jsonl: &Path, reason: &str, needle: &str) {
    assert_eq!(code, 128 + libc::SIGTERM, "{row}: exit with the child's status (SIGTERM)");
    let recs = read_jsonl(jsonl);
    assert_eq!(recs.last().map(|r| r["type"].clone()), Some(Value::from("summary")), "{row}: the JSONL ends with its summary");
    assert_eq!(summary(&recs)["end_reason"], reason, "{row}");
    let left = gone_within(needle, Duration::from_secs(3));
    assert!(left.is_empty(), "{row}: processes of the run left behind: {left:?}");
}

#[test]
fn row5_sighup_and_sigquit_end_like_sigterm() {
    if !bpf_available("row5_sighup_and_sigquit_end_like_sigterm") {
        return;
    }
    for (sig, name) in [(libc::SIGHUP, "SIGHUP"), (libc::SIGQUIT, "SIGQUIT")] {
        let row = format!("issue 12 row 5 ({name})");
        let d = scratch(&format!("row5-{name}"));
        let jsonl = d.join("out.jsonl");
        let marks = Markers::new(&[501, 502]);
        let (a, b) = (marks.get(0).to_string(), marks.get(1).to_string());
        let script = format!("sleep {a} & sleep {b}");
        let mut c = spawn(&["run", "--no-tui", "--interval", "100ms", "--jsonl", jsonl.to_str().unwrap(), "--", "bash", "-c", &script], &[]);
        wait_for_snapshots(&jsonl, 2, &row);
        signal(c.id(), sig);
        let (code, err) = wait_exit(&mut c, Duration::from_secs(10), &row);
        assert!(err.contains("(interrupted)"), "{row}: the summary is printed: {err}");
        assert_stopped_cleanly(&row, code, &jsonl, "interrupted", &a);
        assert!(gone_within(&b, Duration::from_secs(1)).is_empty(), "{row}: the child was left running");
    }
}

#[test]
fn row6_output_errors_end_like_ctrl_c_without_partial_lines() {
    if !bpf_available("row6_output_errors_end_like_ctrl_c_without_partial_lines") {
        return;
    }
    // EPIPE: `| head` closes the stream. Quiet (no error line), exit 141, the child stopped,
    // the summary on stderr.
    let row = "issue 12 row 6 (EPIPE)";
    let marks = Markers::new(&[601, 602, 603]);
    let n = marks.get(0).to_string();
    // stderr to a file: a child abandoned by a failing tracer would hold a pipe open.
    let errf = scratch("row6-epipe").join("stderr");
    let mut c = Command::new(pty_trace_bin())
        .args(["run", "--no-tui", "--interval", "50ms", "--", "sleep", &n])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(c.stdout.as_mut().unwrap()).read_line(&mut first).unwrap();
    assert!(first.contains("\"type\":\"start\""), "{row}: {first}");
    drop(c.stdout.take());
    let code = wait_child(&mut c, Duration::from_secs(10), row);
    let err = std::fs::read_to_string(&errf).unwrap();
    assert_eq!(code, 141, "{row}: exit 141 like a tool ended by SIGPIPE: {err}");
    assert!(err.contains("(output_closed)"), "{row}: the summary goes to stderr: {err}");
    assert!(!err.contains("Broken pipe") && !err.contains("panicked"), "{row}: quiet: {err}");
    assert!(gone_within(&n, Duration::from_secs(3)).is_empty(), "{row}: the child was abandoned");

    // /dev/full as stdout: one clear line, exit 1, the child stopped.
    let row = "issue 12 row 6 (/dev/full)";
    let n = marks.get(1).to_string();
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    let errf = scratch("row6-full").join("stderr");
    let mut c = Command::new(pty_trace_bin())
        .args(["run", "--no-tui", "--interval", "50ms", "--", "sleep", &n])
        .stdin(Stdio::null())
        .stdout(full)
        .stderr(std::fs::File::create(&errf).unwrap())
        .spawn()
        .unwrap();
    let code = wait_child(&mut c, Duration::from_secs(10), row);
    let err = std::fs::read_to_string(&errf).unwrap();
    assert_eq!(code, 1, "{row}: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.contains("No space left on device")).collect();
    assert_eq!(errors.len(), 1, "{row}: one line naming the error: {err}");
    assert!(err.contains("(failed)"), "{row}: the summary still goes to stderr: {err}");
    assert!(gone_within(&n, Duration::from_secs(3)).is_empty(), "{row}: the child was abandoned");

    // ENOSPC on a real (tiny) tmpfs: the file ends with a whole line.
    let row = "issue 12 row 6 (ENOSPC)";
    let d = scratch("row6-tmpfs");
    let st = Command::new("mount").args(["-t", "tmpfs", "-o", "size=48k", "pty-trace-e2e", d.to_str().unwrap()]).status().unwrap();
    assert!(st.success(), "{row}: cannot mount a tmpfs on {}", d.display());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(d.clone());
    let jsonl = d.join("out.jsonl");
    let n = marks.get(2).to_string();
    let script = format!("for i in $(seq 400); do exec 3</dev/null; exec 3<&-; true; done; sleep {n}");
    let mut c = spawn(&["run", "--no-tui", "--interval", "10ms", "--jsonl", jsonl.to_str().unwrap(), "--", "bash", "-c", &script], &[]);
    let (code, err) = wait_exit(&mut c, Duration::from_secs(30), row);
    assert_eq!(code, 1, "{row}: {err}");
    assert!(err.contains("No space left on device") && err.contains(jsonl.to_str().unwrap()), "{row}: names the file and the error: {err}");
    let bytes = std::fs::read(&jsonl).unwrap();
    assert!(!bytes.is_empty() && bytes.ends_with(b"\n"), "{row}: a partial last line was left ({} bytes)", bytes.len());
    read_jsonl(&jsonl); // every line parses
    assert!(gone_within(&n, Duration::from_secs(3)).is_empty(), "{row}: the child was abandoned");
}

#[test]
fn row7_a_stalled_reader_never_blocks_signals_and_drops_are_counted() {
    if !bpf_available("row7_a_stalled_reader_never_blocks_signals_and_drops_are_counted") {
        return;
    }
    let row = "issue 12 row 7";
    let d = scratch("row7");
    let fifo = d.join("fifo");
    let st = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(st.success());
    // A reader that opens the FIFO and then stops reading (SIGSTOP).
    let reader = Command::new("sh").arg("-c").arg(format!("exec 3<{}; kill -STOP $$; cat <&3 >/dev/null", fifo.display())).spawn().unwrap();
    struct KillOnDrop(Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let _reader = KillOnDrop(reader);
    let marks = Markers::new(&[701]);
    let n = marks.get(0).to_string();
    let script = format!("for i in $(seq 200); do true; done; sleep {n}");
    let mut c = spawn(
        &["run", "--no-tui", "--interval", "10ms", "--jsonl", fifo.to_str().unwrap(), "--", "bash", "-c", &script],
        &[("PTY_TRACE_OUTPUT_QUEUE_BYTES", "100000")],
    );
    // Long enough to fill the pipe and the queue (hundreds of snapshots).
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    signal(c.id(), libc::SIGINT);
    let (code, err) = wait_exit(&mut c, Duration::from_secs(10), row);
    assert!(t.elapsed() < Duration::from_secs(6), "{row}: SIGINT took {:?}", t.elapsed());
    assert_eq!(code, 128 + libc::SIGTERM, "{row}: {err}");
    let dropped: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("pty-trace: ").and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).filter(|_| l.contains("records were not written")))
        .unwrap_or_else(|| panic!("{row}: dropped records are not counted: {err}"));
    assert!(dropped > 0, "{row}");
    assert!(gone_within(&n, Duration::from_secs(3)).is_empty(), "{row}: the child was abandoned");
}

#[test]
fn row8_stopping_run_stops_grandchildren_too() {
    if !bpf_available("row8_stopping_run_stops_grandchildren_too") {
        return;
    }
    let row = "issue 12 row 8";
    let d = scratch("row8");
    let marks = Markers::new(&[801, 802, 803, 804]);
    let (a, b, c_, e) = (marks.get(0).to_string(), marks.get(1).to_string(), marks.get(2).to_string(), marks.get(3).to_string());
    // A background job, one that ignores SIGTERM, one that left the process group (setsid),
    // and the foreground command.
    let script = format!("sleep {a} & (trap '' TERM; exec sleep {b}) & setsid sleep {c_} & sleep {e}");
    for how in ["duration", "ctrl-c"] {
        let jsonl = d.join(format!("{how}.jsonl"));
        let mut args = vec!["run", "--no-tui", "--interval", "100ms", "--jsonl", jsonl.to_str().unwrap()];
        if how == "duration" {
            args.extend(["--duration", "1500ms"]);
        }
        args.extend(["--", "bash", "-c", &script]);
        let mut c = spawn(&args, &[]);
        wait_for_snapshots(&jsonl, 3, row);
        if how == "ctrl-c" {
            signal(c.id(), libc::SIGINT);
        }
        let (code, _) = wait_exit(&mut c, Duration::from_secs(15), row);
        let reason = if how == "duration" { "duration" } else { "interrupted" };
        for m in [&a, &b, &c_] {
            let left = gone_within(m, Duration::from_secs(1));
            assert!(left.is_empty(), "{row} ({how}): `sleep {m}` still running: {left:?}");
        }
        assert_stopped_cleanly(&format!("{row} ({how})"), code, &jsonl, reason, &e);
    }
}

#[test]
fn row9_error_paths_stop_the_child_and_write_the_summary() {
    if !bpf_available("row9_error_paths_stop_the_child_and_write_the_summary") {
        return;
    }
    let row = "issue 12 row 9";
    let d = scratch("row9");
    // An error of the event loop after the child started (injected: no real input fails the
    // loop on demand).
    let jsonl = d.join("loop.jsonl");
    let marks = Markers::new(&[901, 902]);
    let n = marks.get(0).to_string();
    let mut c = spawn(&["run", "--no-tui", "--interval", "100ms", "--jsonl", jsonl.to_str().unwrap(), "--", "sleep", &n], &[("PTY_TRACE_INJECT_FAULT", "loop")]);
    let (code, err) = wait_exit(&mut c, Duration::from_secs(15), row);
    assert_eq!(code, 1, "{row}: {err}");
    assert!(err.lines().last().is_some_and(|l| l.contains("injected fault: the event loop failed")), "{row}: the error, last: {err}");
    let recs = read_jsonl(&jsonl);
    let s = summary(&recs);
    assert_eq!(s["end_reason"], "failed", "{row}");
    assert!(s["error"].as_str().is_some_and(|e| e.contains("event loop failed")), "{row}: {s}");
    assert!(gone_within(&n, Duration::from_secs(3)).is_empty(), "{row}: the child was left running");
    // The live view failing to open once the child runs (in a real terminal: `script`).
    let jsonl = d.join("view.jsonl");
    let n = marks.get(1).to_string();
    let cmd = format!("timeout -s KILL 20 {} run --jsonl {} -- sleep {n}", pty_trace_bin().display(), jsonl.display());
    let out = Command::new("script").args(["-qec", &cmd, "/dev/null"]).env("PTY_TRACE_INJECT_FAULT", "view").stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("opening the live view"), "{row}: the view error is reported: {text}");
    assert_eq!(summary(&read_jsonl(&jsonl))["end_reason"], "failed", "{row}");
    assert!(gone_within(&n, Duration::from_secs(3)).is_empty(), "{row}: the child was left running after the view failed");
}

#[test]
fn row10_a_failed_start_leaves_an_existing_output_alone() {
    if !bpf_available("row10_a_failed_start_leaves_an_existing_output_alone") {
        return;
    }
    let row = "issue 12 row 10";
    let d = scratch("row10");
    let jsonl = d.join("precious.jsonl");
    let old = "{\"type\":\"start\"}\n";
    for (args, code) in [
        (vec!["run", "--no-tui", "--jsonl", "J", "--", "no-such-command-xyz"], 127),
        (vec!["attach", "--no-tui", "--jsonl", "J", "999999999"], 3),
        (vec!["attach", "--no-tui", "--jsonl", "J", "2"], 3),
        (vec!["run", "--no-tui", "--jsonl", "J", "--on-rotate", "'", "--", "true"], 6),
        (vec!["run", "--no-tui", "--jsonl", "J", "--config", "/nonexistent.toml", "--", "true"], 6),
    ] {
        std::fs::write(&jsonl, old).unwrap();
        let args: Vec<&str> = args.iter().map(|a| if *a == "J" { jsonl.to_str().unwrap() } else { a }).collect();
        let out = pty_trace(&args, &[]);
        assert_eq!(out.status.code(), Some(code), "{row}: {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read_to_string(&jsonl).unwrap(), old, "{row}: {args:?} truncated the existing output");
    }
}

#[test]
fn row11_hook_output_stays_out_of_the_jsonl_stream() {
    if !bpf_available("row11_hook_output_stays_out_of_the_jsonl_stream") {
        return;
    }
    let row = "issue 12 row 11";
    let bin = pty_trace_bin();
    let out = pty_trace(
        &[
            "run", "--no-tui", "--interval", "100ms", "--jsonl", "-", "--on-rotate", "seq 100000", "--exit-on-rotate", "--",
            bin.to_str().unwrap(), "__demo-agent", "--commands", "60", "--delay", "20ms",
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(10), "{row}: {}", String::from_utf8_lossy(&out.stderr));
    // Every line of stdout is a record; the hook's 100,000 lines went to stderr.
    let stdout = String::from_utf8_lossy(&out.stdout);
    for (i, l) in stdout.lines().enumerate() {
        let v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{row}: stdout line {} is not a record ({e}): {l}", i + 1));
        assert!(v["type"].is_string(), "{row}");
    }
    assert!(stdout.lines().last().is_some_and(|l| l.contains("\"type\":\"summary\"")), "{row}: the stream ends with its summary");
    // The hook runs detached: its output reaches stderr while pty-trace exits; some of it is there.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.lines().any(|l| l.trim() == "1"), "{row}: the hook's output belongs on stderr");
}

#[test]
fn row13_attach_refuses_itself_and_never_traces_itself() {
    if !bpf_available("row13_attach_refuses_itself_and_never_traces_itself") {
        return;
    }
    let row = "issue 12 row 13";
    let bin = pty_trace_bin();
    // Its own PID: `exec` makes the shell's PID pty-trace's.
    let out = Command::new("sh").arg("-c").arg(format!("exec {} attach --no-tui --duration 1s $$", bin.display())).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{row}: attaching to itself must be refused: {err}");
    assert!(err.contains("pty-trace itself"), "{row}: {err}");
    // An ancestor (the shell that started it): pty-trace is not among the traced processes
    // and its own work does not flood the session with events.
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("{} attach --no-tui --interval 100ms --duration 1500ms $$; true", bin.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{row}: {}", String::from_utf8_lossy(&out.stderr));
    let recs: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let comms: Vec<String> = of_type(&recs, "snapshot")
        .iter()
        .flat_map(|s| s["processes"].as_array().cloned().unwrap_or_default())
        .map(|p| p["comm"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!comms.iter().any(|c| c == "pty-trace"), "{row}: pty-trace traced itself: {comms:?}");
    let events = summary(&recs)["tracer"]["events"].as_u64().unwrap();
    assert!(events < 200, "{row}: {events} events from a shell that only waits: self-inflicted");
}

#[test]
fn sigkill_of_the_tracer_leaves_no_bpf_object_behind() {
    if !bpf_available("sigkill_of_the_tracer_leaves_no_bpf_object_behind") {
        return;
    }
    let row = "issue 12 (SIGKILL leaves nothing behind)";
    let d = scratch("sigkill");
    let jsonl = d.join("out.jsonl");
    let marks = Markers::new(&[1001]);
    let n = marks.get(0).to_string();
    let mut c = spawn(&["run", "--no-tui", "--interval", "100ms", "--jsonl", jsonl.to_str().unwrap(), "--", "sleep", &n], &[]);
    wait_for_snapshots(&jsonl, 2, row);
    // The BPF objects it holds, by id, from its fdinfo.
    let mut ids: Vec<(&str, u32)> = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{}/fdinfo", c.id())).unwrap().flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        for (key, kind) in [("prog_id:", "prog"), ("map_id:", "map"), ("link_id:", "link")] {
            if let Some(id) = text.lines().find_map(|l| l.strip_prefix(key)).and_then(|v| v.trim().parse().ok()) {
                ids.push((kind, id));
            }
        }
    }
    assert!(ids.iter().filter(|(k, _)| *k == "prog").count() >= 2, "{row}: expected the tracer to hold its programs: {ids:?}");
    assert!(ids.iter().any(|(k, _)| *k == "map"), "{row}: expected the tracer to hold its maps: {ids:?}");
    assert!(ids.iter().all(|&(k, id)| bpf_object_exists(k, id)), "{row}: the ids must name live objects first");
    signal(c.id(), libc::SIGKILL);
    let _ = c.child.wait();
    // The kernel frees them after an RCU grace period.
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let left: Vec<_> = ids.iter().filter(|&&(k, id)| bpf_object_exists(k, id)).collect();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < until, "{row}: still loaded 20 s after SIGKILL: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The `run` child is told (PR_SET_PDEATHSIG) rather than left running untraced.
    assert!(gone_within(&n, Duration::from_secs(3)).is_empty(), "{row}: the run child outlived a SIGKILLed tracer");
}

/// Whether the BPF object `kind` `id` still exists (BPF_*_GET_FD_BY_ID).
fn bpf_object_exists(kind: &str, id: u32) -> bool {
    const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
    const BPF_MAP_GET_FD_BY_ID: libc::c_long = 14;
    const BPF_LINK_GET_FD_BY_ID: libc::c_long = 30;
    let cmd = match kind {
        "prog" => BPF_PROG_GET_FD_BY_ID,
        "map" => BPF_MAP_GET_FD_BY_ID,
        _ => BPF_LINK_GET_FD_BY_ID,
    };
    // union bpf_attr { struct { __u32 id; __u32 next_id; __u32 open_flags; }; ... }
    let attr: [u32; 4] = [id, 0, 0, 0];
    // SAFETY: the bpf(2) syscall with a valid attr of the size given.
    let fd = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_ptr(), std::mem::size_of_val(&attr) as u32) };
    if fd >= 0 {
        // SAFETY: closing the fd bpf(2) just returned.
        unsafe { libc::close(fd as i32) };
        return true;
    }
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOENT)
}
