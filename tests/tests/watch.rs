//! Privileged end-to-end tests of `pty-trace watch`: real processes, matched when they exec,
//! followed as sessions until they exit; the service survives churn and rotates its JSONL.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use pty_trace_tests::*;
use serde_json::Value;

/// A `pty-trace watch` process, stopped (SIGKILL) if the test ends early.
struct Watch {
    child: Child,
    dir: PathBuf,
}

impl Watch {
    fn start(name: &str, args: &[&str]) -> Watch {
        Self::start_under(name, &[], args)
    }

    /// Started by `wrapper` (a program that runs the rest of its command line as its child).
    fn start_under(name: &str, wrapper: &[&str], args: &[&str]) -> Watch {
        let dir = scratch(name);
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(pty_trace_bin());
                c
            }
            None => Command::new(pty_trace_bin()),
        };
        let child = cmd
            .arg("watch")
            .arg("--jsonl-dir")
            .arg(&dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting pty-trace watch");
        let w = Watch { child, dir };
        // Up once its first `start` record (written after the probes attach) is there.
        wait_until(Duration::from_secs(30 * slowdown()), "watch's first start record", || !w.records().is_empty());
        w
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn log(&self) -> PathBuf {
        self.dir.join("watch.jsonl")
    }

    fn records(&self) -> Vec<Value> {
        read_jsonl(&self.log())
    }

    fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, sig) };
    }

    /// SIGTERM, then its exit status and stderr.
    fn stop(mut self) -> (Option<i32>, String, Vec<Value>) {
        self.signal(libc::SIGTERM);
        let t = Instant::now();
        let status = loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                break st;
            }
            assert!(t.elapsed() < Duration::from_secs(20 * slowdown()), "watch did not end within 20 s of SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        // What it printed for people (its summary lines), stdout and stderr together.
        let mut err = String::new();
        use std::io::Read;
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut err);
        }
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut err);
        }
        let recs = self.records();
        (status.code(), err, recs)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(limit: Duration, what: &str, mut ok: impl FnMut() -> bool) {
    let t = Instant::now();
    while !ok() {
        assert!(t.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A workload: holds `ptys` PTY pairs for `hold_ms`, then exits. `tag` ends its command line.
fn workload(tag: &str, ptys: u32, hold_ms: u64) -> Child {
    let script = "import os, pty, sys, time\nkept = [pty.openpty() for _ in range(int(sys.argv[1]))]\ntime.sleep(int(sys.argv[2]) / 1000)";
    Command::new(python3())
        .args(["-c", script, &ptys.to_string(), &hold_ms.to_string(), tag])
        .stdout(Stdio::null())
        .spawn()
        .expect("starting a workload")
}

/// `(session, ts)` of the `start` records of sessions whose command line contains `tag`.
fn starts_of<'a>(recs: &'a [Value], tag: &str) -> Vec<(u64, &'a str)> {
    of_type(recs, "start")
        .into_iter()
        .filter(|r| r["command"].as_array().is_some_and(|a| a.iter().any(|x| x.as_str() == Some(tag))))
        .map(|r| (r["sessions"][0].as_u64().unwrap(), r["ts"].as_str().unwrap()))
        .collect()
}

fn summary_of(recs: &[Value], session: u64) -> Vec<&Value> {
    of_type(recs, "summary").into_iter().filter(|s| s["session"] == session).collect()
}

#[test]
fn watch_follows_matching_processes_from_their_exec_and_ignores_others() {
    if !bpf_available("watch_follows_matching_processes_from_their_exec_and_ignores_others") {
        return;
    }
    let me = std::process::id();
    let (yes, no, late) = (format!("watch-yes-{me}"), format!("watch-no-{me}"), format!("watch-late-{me}"));
    // Under `timeout`, whose own command line (it is pty-trace's parent) holds the pattern: as
    // `sudo` would; pty-trace's ancestors are never followed. It passes SIGTERM on.
    let pattern = format!("(watch-yes|watch-late)-{me}");
    let w = Watch::start_under(
        "watch-follow",
        &["timeout", "--preserve-status", "600"],
        &["--match", &pattern, "--interval", &interval_arg(200)],
    );
    let spawned_ms = ts_ms(&now_rfc3339());
    let mut a = workload(&yes, 2, slow_ms(1500));
    let mut b = workload(&no, 2, slow_ms(1500));
    let c = workload(&late, 1, 60_000);
    assert!(a.wait().unwrap().success() && b.wait().unwrap().success());
    let (pa, pc) = (a.id() as u64, c.id() as u64);
    // The ended session's summary comes at the next interval after its exit.
    wait_until(Duration::from_secs(10 * slowdown()), "the first workload's summary", || !summary_of(&w.records(), pa).is_empty());
    let mut c = c;
    let (code, err, recs) = w.stop();
    let _ = c.kill();
    let _ = c.wait();
    assert_eq!(code, Some(0), "{err}");

    let s = starts_of(&recs, &yes);
    assert_eq!(s.iter().map(|x| x.0).collect::<Vec<_>>(), [pa], "one session for the matching process: {recs:?}");
    // Seen when it exec'd, not by a later look at /proc (every 5 s): its session starts
    // before it has been running a second.
    let started = ts_ms(s[0].1);
    assert!(started < spawned_ms + slow_ms(1000), "start {} ms after it was spawned", started.saturating_sub(spawned_ms));
    assert!(starts_of(&recs, &no).is_empty(), "the non-matching process is not followed");
    assert!(of_type(&recs, "snapshot").iter().all(|r| r["session"] != b.id()), "no snapshot of the non-matching process");
    let sa = summary_of(&recs, pa);
    assert_eq!(sa.len(), 1, "one summary");
    assert_eq!(sa[0]["end_reason"], "root_exited");
    assert_eq!(sa[0]["metrics"]["pty_peak"], 2, "{}", sa[0]);
    // The one still running at SIGTERM ends with its summary too.
    assert_eq!(starts_of(&recs, &late).iter().map(|x| x.0).collect::<Vec<_>>(), [pc]);
    let sc = summary_of(&recs, pc);
    assert_eq!(sc.len(), 1);
    assert_eq!(sc[0]["end_reason"], "interrupted");
    assert_eq!(sc[0]["metrics"]["pty_peak"], 1);
    assert!(err.contains(&format!("session {pc} HEALTHY")), "the summary line on stderr/stdout: {err}");
    assert!(err.contains("watch: 2 session(s) followed: 1 ended earlier"), "{err}");
    // Nothing else was followed: not `timeout`, pty-trace's parent, whose command line matches.
    assert_eq!(of_type(&recs, "start").len(), 3, "watch's own start and the two sessions: {recs:?}");
}

#[test]
fn watch_survives_200_matching_processes_coming_and_going() {
    if !bpf_available("watch_survives_200_matching_processes_coming_and_going") {
        return;
    }
    let me = std::process::id();
    let tag = format!("watch-churn-{me}");
    let w = Watch::start("watch-churn", &["--match", &tag, "--interval", &interval_arg(250), "--max-sessions", "64"]);
    let rss = |pid: u32| -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap_or(0)
    };
    const TOTAL: usize = 200;
    let mut alive: Vec<Child> = Vec::new();
    let mut pids = Vec::new();
    let mut samples = Vec::new();
    for i in 0..TOTAL {
        while alive.len() >= 10 {
            alive.retain_mut(|c| c.try_wait().unwrap().is_none());
            std::thread::sleep(Duration::from_millis(10));
        }
        let c = workload(&tag, (i % 3) as u32, slow_ms(150 + (i as u64 % 4) * 50));
        pids.push(c.id() as u64);
        alive.push(c);
        if i % 20 == 19 {
            samples.push(rss(w.pid()));
        }
    }
    for mut c in alive {
        let _ = c.wait();
    }
    wait_until(Duration::from_secs(15 * slowdown()), "every session's summary", || {
        let recs = w.records();
        of_type(&recs, "summary").len() >= starts_of(&recs, &tag).len() && !starts_of(&recs, &tag).is_empty()
    });
    samples.push(rss(w.pid()));
    let (code, err, recs) = w.stop();
    assert_eq!(code, Some(0), "{err}");
    let started: Vec<u64> = starts_of(&recs, &tag).iter().map(|x| x.0).collect();
    // Every one of them was seen at its exec and followed to its end.
    let missed: Vec<&u64> = pids.iter().filter(|p| !started.contains(p)).collect();
    assert!(missed.is_empty(), "{} of {TOTAL} not followed: {missed:?}", missed.len());
    for p in &pids {
        let s = summary_of(&recs, *p);
        assert_eq!(s.len(), 1, "session {p}: one summary");
        assert_eq!(s[0]["end_reason"], "root_exited", "{}", s[0]);
        assert_eq!(s[0]["lost_events"], 0);
    }
    // Memory: flat once warmed up (a session is forgotten when it ends).
    let warm = samples[samples.len() / 2];
    let last = *samples.last().unwrap();
    eprintln!("watch RSS KiB every 20 processes: {samples:?}");
    assert!(last <= warm + warm / 5 + 2048, "RSS grew from {warm} KiB (half way) to {last} KiB: {samples:?}");
}

#[test]
fn watch_rotates_its_jsonl_and_reopens_it_on_sighup() {
    if !bpf_available("watch_rotates_its_jsonl_and_reopens_it_on_sighup") {
        return;
    }
    let tag = format!("watch-rotate-{}", std::process::id());
    let w = Watch::start("watch-rotate", &["--match", &tag, "--interval", "50ms", "--rotate-size", "8K", "--retain", "2"]);
    let mut holder = workload(&tag, 1, 120_000);
    let rotated = |n: u32| w.dir.join(format!("watch.jsonl.{n}"));
    wait_until(Duration::from_secs(30 * slowdown()), "two rotations", || rotated(2).exists());
    // logrotate's move, then SIGHUP: the next records go to a new watch.jsonl.
    let moved = w.dir.join("moved.jsonl");
    std::fs::rename(w.log(), &moved).unwrap();
    w.signal(libc::SIGHUP);
    wait_until(Duration::from_secs(10 * slowdown()), "watch.jsonl opened again", || w.log().exists() && !w.records().is_empty());
    let _ = holder.kill();
    let _ = holder.wait();
    let dir = w.dir.clone();
    let (code, err, _) = w.stop();
    assert_eq!(code, Some(0), "SIGHUP did not end it, SIGTERM did: {err}");
    let mut names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(!names.contains(&"watch.jsonl.3".to_string()), "at most --retain 2 rotated files: {names:?}");
    for n in &names {
        let p = dir.join(n);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.is_empty() || text.ends_with('\n'), "{n}: whole lines");
        if n.starts_with("watch.jsonl.") {
            assert!(text.len() >= 8192, "{n} was rotated at 8K: {} bytes", text.len());
        }
        let _ = read_jsonl(&p);
    }
    // The session's summary is in the reopened file.
    let recs = read_jsonl(&dir.join("watch.jsonl"));
    assert_eq!(summary_of(&recs, holder.id() as u64).len(), 1, "the summary after SIGHUP: {recs:?}");
}

fn now_rfc3339() -> String {
    let out = Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%S.%3NZ"]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `--user`: only that user's matching processes are followed (their real uid, read when they
/// exec): the same command run as root is not.
#[test]
fn watch_user_restricts_to_that_users_processes() {
    if !bpf_available("watch_user_restricts_to_that_users_processes") {
        return;
    }
    assert!(Path::new("/usr/bin/setpriv").exists(), "setpriv (util-linux) is missing: run `cargo xtask setup`");
    let tag = format!("watch-user-{}", std::process::id());
    let w = Watch::start("watch-user", &["--match", &tag, "--user", "nobody", "--interval", &interval_arg(200)]);
    let script = "import time, sys\ntime.sleep(int(sys.argv[1]) / 1000)";
    let hold = slow_ms(1500).to_string();
    // setpriv's own exec (as root) matches the pattern too; its exec of python as nobody is
    // judged again.
    let mut as_nobody = Command::new("/usr/bin/setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", python3(), "-c", script, &hold, &tag])
        .spawn()
        .unwrap();
    let mut as_root = Command::new(python3()).args(["-c", script, &hold, &tag]).spawn().unwrap();
    assert!(as_nobody.wait().unwrap().success() && as_root.wait().unwrap().success());
    let nobody = as_nobody.id() as u64;
    wait_until(Duration::from_secs(10 * slowdown()), "the nobody session's summary", || !summary_of(&w.records(), nobody).is_empty());
    let (code, err, recs) = w.stop();
    assert_eq!(code, Some(0), "{err}");
    let followed: Vec<u64> = starts_of(&recs, &tag).iter().map(|x| x.0).collect();
    assert_eq!(followed, [nobody], "only nobody's process (not root's {}): {recs:?}", as_root.id());
}

/// `--on-rotate` runs once per session that must rotate, with that session's id, in `watch`
/// as in `attach`; a healthy session runs nothing.
#[test]
fn watch_runs_the_rotate_hook_once_per_leaking_session() {
    if !bpf_available("watch_runs_the_rotate_hook_once_per_leaking_session") {
        return;
    }
    let tag = format!("watch-hook-{}", std::process::id());
    let hold = format!("{}", 1.5 * slowdown() as f64);
    let dir = scratch("watch-hook-marker");
    let marker = dir.join("rotated");
    // The hook's own command line matches too: pty-trace's hooks are never followed.
    let hook = format!(": {tag}; echo \"$PTY_TRACE_SESSION\" >> {}", marker.display());
    let w = Watch::start("watch-hook", &["--match", &tag, "--interval", &interval_arg(150), "--on-rotate", &hook, "--on-rotate-shell"]);
    let agents: Vec<Child> =
        ["leak", "leak", "close"].iter().map(|mode| Command::new(python3()).args(["-c", AGENT, "16", mode, &hold, &tag]).stdout(Stdio::null()).spawn().unwrap()).collect();
    let pids: Vec<u64> = agents.iter().map(|c| c.id() as u64).collect();
    for mut c in agents {
        assert!(c.wait().unwrap().success());
    }
    wait_until(Duration::from_secs(10 * slowdown()), "three summaries", || of_type(&w.records(), "summary").len() >= 3);
    let (code, err, recs) = w.stop();
    assert_eq!(code, Some(0), "{err}");
    // The hooks run detached; give them a moment.
    wait_until(Duration::from_secs(5), "two hook runs", || std::fs::read_to_string(&marker).is_ok_and(|t| t.lines().count() >= 2));
    std::thread::sleep(Duration::from_millis(300));
    let mut ran: Vec<u64> = std::fs::read_to_string(&marker).unwrap().lines().map(|l| l.trim().parse().unwrap()).collect();
    ran.sort_unstable();
    let mut leaky = pids[..2].to_vec();
    leaky.sort_unstable();
    assert_eq!(ran, leaky, "once per leaking session, none for the healthy one");
    for (pid, verdict) in [(pids[0], "LEAK DETECTED"), (pids[1], "LEAK DETECTED"), (pids[2], "HEALTHY")] {
        let s = summary_of(&recs, pid);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0]["verdict"], verdict, "{}", s[0]);
    }
    let decisions: Vec<u64> = of_type(&recs, "decision").iter().map(|d| d["session"].as_u64().unwrap()).collect();
    assert_eq!(decisions.len(), 2, "{decisions:?}");
    let mut followed: Vec<u64> = of_type(&recs, "start").iter().filter_map(|s| s["sessions"][0].as_u64()).collect();
    followed.sort_unstable();
    let mut agents = pids.clone();
    agents.sort_unstable();
    assert_eq!(followed, agents, "the three agents, not the hooks");
}
