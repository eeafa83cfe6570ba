//! Helpers for pty-trace's privileged end-to-end tests: find the binary, make sure BPF can be
//! loaded (or fail saying why), run traced commands and read their JSONL, read /proc.
//!
//! These tests run real processes under the real binary with real kernel probes. They never
//! skip silently: without BPF they fail with the reason, unless a person sets
//! `PTY_TRACE_SKIP_BPF_TESTS=1`. Then each privileged test that does not run says so:
//!
//! - a `SKIPPED <test> ...: <reason>` line on the terminal, written to stderr directly, so
//!   that it shows without `--nocapture` (libtest captures only the `print!`/`eprint!`
//!   macros of a passing test, not writes to `std::io::stderr()`), and
//! - when `PTY_TRACE_SKIP_LOG` names a file, one line `<test>\t<reason>` appended to it
//!   (created if missing; a skip that cannot be written there fails the test). `cargo xtask`
//!   sets it and prints the number of skipped tests in its final summary line.
//!
//! Each privileged test starts with `if !bpf_available("its_name") { return; }`.

pub mod prometheus;
use std::{
    fs::OpenOptions,
    io::Write,
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::OnceLock,
};

use serde_json::Value;

/// The pty-trace binary under test: `$PTY_TRACE_BIN`, or the workspace's target dir.
pub fn pty_trace_bin() -> PathBuf {
    if let Ok(p) = std::env::var("PTY_TRACE_BIN") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let target = std::env::var("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|_| root.join("target"));
    for profile in ["debug", "release"] {
        let p = target.join(profile).join("pty-trace");
        if p.exists() {
            return p;
        }
    }
    panic!("pty-trace binary not found under {}: run `cargo build -p pty-trace` (cargo xtask test does)", target.display());
}

/// True when the privileged test `test` (its function name) should run. Panics with the reason
/// when BPF cannot be used, unless `PTY_TRACE_SKIP_BPF_TESTS=1` is set: then it reports the
/// skip (see the module doc) and returns false.
pub fn bpf_available(test: &str) -> bool {
    // libtest names each test's thread after the test: catch a call site passing another name,
    // which would put a wrong name in the skip log.
    if let Some(thread) = std::thread::current().name()
        && thread != "main"
    {
        assert!(
            thread == test || thread.ends_with(&format!("::{test}")),
            "bpf_available({test:?}) called from test {thread:?}: pass the test's own name"
        );
    }
    // Ok, or Err((one-line reason, doctor's full output)).
    static CHECK: OnceLock<Result<(), (String, String)>> = OnceLock::new();
    let skip = std::env::var("PTY_TRACE_SKIP_BPF_TESTS").is_ok_and(|v| v == "1");
    let r = CHECK.get_or_init(|| {
        let bin = pty_trace_bin();
        let out = Command::new(&bin).arg("doctor").output().map_err(|e| (format!("cannot run {} doctor: {e}", bin.display()), String::new()))?;
        if out.status.success() {
            return Ok(());
        }
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let failing: Vec<String> =
            stdout.lines().filter(|l| l.contains("FAIL")).map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")).collect();
        let why = if !failing.is_empty() {
            failing.join(" | ")
        } else if !stdout.trim().is_empty() {
            stdout.split_whitespace().collect::<Vec<_>>().join(" ")
        } else {
            "no output".to_string()
        };
        Err((format!("`{} doctor` says tracing cannot work here ({}): {why}", bin.display(), out.status), stdout))
    });
    match (r, skip) {
        (Ok(()), _) => true,
        (Err((why, _)), true) => {
            report_skip(test, why);
            false
        }
        (Err((why, doctor)), false) => panic!(
            "{why}\n{doctor}\nThe privileged tests need root and BPF; set PTY_TRACE_SKIP_BPF_TESTS=1 to skip them deliberately."
        ),
    }
}

/// Reports a deliberate skip on stderr and in `$PTY_TRACE_SKIP_LOG` (see the module doc).
fn report_skip(test: &str, reason: &str) {
    let reason = reason.replace(['\t', '\n', '\r'], " ");
    // One write each, so that lines of tests running in parallel do not interleave.
    let notice = format!("SKIPPED {test} (PTY_TRACE_SKIP_BPF_TESTS=1): {reason}\n");
    std::io::stderr().write_all(notice.as_bytes()).unwrap_or_else(|e| panic!("cannot report the skip of {test} on stderr: {e}"));
    if let Some(log) = std::env::var_os("PTY_TRACE_SKIP_LOG") {
        let line = format!("{test}\t{reason}\n");
        if let Err(e) = OpenOptions::new().append(true).create(true).open(&log).and_then(|mut f| f.write_all(line.as_bytes())) {
            panic!("cannot record the skip of {test} in PTY_TRACE_SKIP_LOG={}: {e}", Path::new(&log).display());
        }
    }
}

/// `PTY_TRACE_TEST_SLOWDOWN=N` (default 1): how much slower than a real machine of this
/// kind the tests run, as a whole number. `cargo xtask vmtest` sets it under TCG, where the
/// emulated CPU runs the same code several times slower: the timing tests stretch their holds,
/// snapshot intervals and settle windows by it, so that they judge the same thing (a snapshot
/// taken while the workload is quiet) instead of the emulator's speed.
pub fn slowdown() -> u64 {
    static FACTOR: OnceLock<u64> = OnceLock::new();
    *FACTOR.get_or_init(|| match std::env::var("PTY_TRACE_TEST_SLOWDOWN") {
        Err(_) => 1,
        Ok(v) => v.parse::<u64>().ok().filter(|&n| (1..=20).contains(&n)).unwrap_or_else(|| {
            panic!("PTY_TRACE_TEST_SLOWDOWN={v:?}: expected a whole number from 1 to 20")
        }),
    })
}

/// `PTY_TRACE_TEST_SEEDS=N`: how many seeds the seeded churn tests run (default `default`).
pub fn seeds(default: u64) -> u64 {
    match std::env::var("PTY_TRACE_TEST_SEEDS") {
        Err(_) => default,
        Ok(v) => v.parse::<u64>().ok().filter(|&n| n >= 1).unwrap_or_else(|| panic!("PTY_TRACE_TEST_SEEDS={v:?}: expected a number, 1 or more")),
    }
}

/// `PTY_TRACE_TEST_KERNEL_SKIPS=1` (set by `cargo xtask vmtest` on an emulated CPU): the kernel
/// may skip runs of pty-trace's programs (a program preempted on a CPU makes the kernel drop
/// the next run there: `recursion_misses`, which pty-trace counts as lost events). The
/// exactness tests then accept lost events, print them, and require exact counts once /proc
/// reconciliation has repaired them; without it, any loss fails them.
pub fn kernel_skips_tolerated() -> bool {
    std::env::var("PTY_TRACE_TEST_KERNEL_SKIPS").is_ok_and(|v| v == "1")
}

/// Whether the run of `summary` lost no events, so that the checks only a lossless run passes
/// (no drift, exact counts from the first quiet snapshot) apply. Some lost: a failure, unless
/// [`kernel_skips_tolerated`], when it is printed and false is returned.
pub fn lossless(summary: &Value, what: &str) -> bool {
    let lost = summary["lost_events"].as_u64().unwrap_or(0);
    if lost == 0 {
        return true;
    }
    assert!(kernel_skips_tolerated(), "{what}: {lost} events lost");
    eprintln!("{what}: {lost} events lost (the kernel skipped program runs): only the checks a lossy run must pass apply");
    false
}

/// `ms` milliseconds stretched by [`slowdown`].
pub fn slow_ms(ms: u64) -> u64 {
    ms * slowdown()
}

/// `--interval` for `ms` milliseconds stretched by [`slowdown`].
pub fn interval_arg(ms: u64) -> String {
    format!("{}ms", slow_ms(ms))
}

/// A fresh scratch directory for one test.
pub fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pty-trace-e2e-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Parses a JSONL file, panicking on any line that is not JSON (the tool must never write one).
pub fn read_jsonl(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: not JSON ({e}): {l}", path.display(), i + 1)))
        .collect()
}

pub fn of_type<'a>(recs: &'a [Value], t: &str) -> Vec<&'a Value> {
    recs.iter().filter(|r| r["type"] == t).collect()
}

/// The run's one `summary` record (a complete recording has exactly one per session).
pub fn summary(recs: &[Value]) -> &Value {
    let s = of_type(recs, "summary");
    assert_eq!(s.len(), 1, "exactly one summary record");
    s[0]
}

/// Runs `pty-trace run --no-tui --jsonl FILE <extra> -- <cmd>` to completion.
pub fn run_traced(jsonl: &Path, extra: &[&str], cmd: &[&str]) -> Output {
    let mut c = Command::new(pty_trace_bin());
    c.arg("run").arg("--no-tui").arg("--jsonl").arg(jsonl).args(extra).arg("--").args(cmd);
    c.output().expect("running pty-trace")
}

/// Milliseconds since the epoch of an RFC 3339 `...THH:MM:SS.mmmZ` timestamp (same day math
/// is enough: tests compare timestamps seconds apart).
pub fn ts_ms(ts: &str) -> u64 {
    let date = &ts[..10];
    let time = &ts[11..23];
    let days = days_from_civil(date[0..4].parse().unwrap(), date[5..7].parse().unwrap(), date[8..10].parse().unwrap());
    let h: u64 = time[0..2].parse().unwrap();
    let m: u64 = time[3..5].parse().unwrap();
    let s: u64 = time[6..8].parse().unwrap();
    let ms: u64 = time[9..12].parse().unwrap();
    (days as u64 * 86400 + h * 3600 + m * 60 + s) * 1000 + ms
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// (fds, PTY masters, PTY slaves) of a live process, from /proc.
pub fn proc_counts(pid: u32) -> Option<(u64, u64, u64)> {
    count_fds(&format!("/proc/{pid}/fd"), None)
}

/// [`proc_counts`] of this process, without the directory fd its own listing opens (its link
/// target is `/proc/<pid>/fd`).
pub fn own_counts() -> (u64, u64, u64) {
    let own_dir = format!("/proc/{}/fd", std::process::id());
    count_fds("/proc/self/fd", Some(&own_dir)).expect("read /proc/self/fd")
}

/// Counts the fds listed in `dir`, skipping any whose target is `skip`.
fn count_fds(dir: &str, skip: Option<&str>) -> Option<(u64, u64, u64)> {
    let entries = std::fs::read_dir(dir).ok()?;
    let (mut fds, mut m, mut s) = (0, 0, 0);
    for e in entries.flatten() {
        let Ok(t) = std::fs::read_link(e.path()) else { continue };
        let t = t.to_string_lossy();
        if Some(t.as_ref()) == skip {
            continue;
        }
        fds += 1;
        if t == "/dev/ptmx" || t == "/dev/pts/ptmx" {
            m += 1;
        } else if t.strip_prefix("/dev/pts/").is_some_and(|r| r.trim_end_matches(" (deleted)").parse::<u32>().is_ok()) {
            s += 1;
        }
    }
    Some((fds, m, s))
}

/// Writes this process's ground truth to `path`: `pid fds masters slaves unix_ms`, the line
/// [`ground_truth`] reads back.
pub fn write_own_ground_truth(path: &Path) {
    let (fds, masters, slaves) = own_counts();
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis();
    let mut f = std::fs::File::create(path).expect("create ground truth file");
    writeln!(f, "{} {fds} {masters} {slaves} {ms}", std::process::id()).unwrap();
}

/// The process rows of `pid` in the snapshots stamped from `lo` to `hi` (ms since the epoch),
/// with their stamps: where a test compares pty-trace with the ground truth of a pause.
pub fn rows_between(recs: &[Value], pid: u32, lo: u64, hi: u64) -> Vec<(u64, &Value)> {
    of_type(recs, "snapshot")
        .into_iter()
        .filter_map(|s| {
            let t = ts_ms(s["ts"].as_str().unwrap());
            if t < lo || t > hi {
                return None;
            }
            s["processes"].as_array().unwrap().iter().find(|p| p["pid"] == pid).map(|p| (t, p))
        })
        .collect()
}

/// A process row of a snapshot: (fds, masters, slaves).
pub fn row_counts(row: &Value) -> (u64, u64, u64) {
    (row["fds"].as_u64().unwrap(), row["pty_masters"].as_u64().unwrap(), row["pty_slaves"].as_u64().unwrap())
}

/// Ground truth files written by the workload: pid -> (fds, masters, slaves, unix_ms).
pub fn ground_truth(dir: &Path) -> Vec<(u32, (u64, u64, u64), u64)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let text = std::fs::read_to_string(e.path()).unwrap();
        let v: Vec<u64> = text.split_whitespace().map(|x| x.parse().unwrap()).collect();
        out.push((v[0] as u32, (v[1], v[2], v[3]), v[4]));
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps() {
        assert_eq!(ts_ms("1970-01-01T00:00:01.250Z"), 1250);
        assert_eq!(ts_ms("2026-11-21T12:00:00.000Z") - ts_ms("2026-11-20T12:00:00.000Z"), 86_400_000);
    }
}

/// Debian's python3 when present: not a version-manager shim (pyenv), which runs commands of
/// its own and execs again under another command line.
pub fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// An agent-like Python program (independent of pty-trace's own demo), run as
/// `python3 -c AGENT N MODE HOLD_S [MARKER...]`: N shell commands, each on a fresh PTY; MODE
/// `close` closes each master after its command, anything else keeps it (the leak); then it
/// says `holding` on stdout and sleeps HOLD_S seconds, every forgotten master orphaned at once.
/// A MARKER (ignored) lets `watch --match` select it.
pub const AGENT: &str = r#"
import os, pty, subprocess, sys, time
n, close, hold = int(sys.argv[1]), sys.argv[2] == "close", float(sys.argv[3])
kept = []
for i in range(n):
    m, s = pty.openpty()
    p = subprocess.Popen(["sh", "-c", "echo step; ls / > /dev/null"], stdin=s, stdout=s, stderr=s,
                         start_new_session=True)
    os.close(s)
    try:
        while os.read(m, 4096):
            pass
    except OSError:
        pass
    p.wait()
    if close:
        os.close(m)
    else:
        kept.append(m)
    time.sleep(0.08)
print("holding", flush=True)
time.sleep(hold)
"#;
