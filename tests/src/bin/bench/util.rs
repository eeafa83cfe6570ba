//! Small helpers: tool lookup, medians and number formatting, timestamps, CPU accounting, the
//! detection of other tracers, and reading the workloads' timing files and pty-trace's JSONL.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{SystemTime, UNIX_EPOCH},
};

use anyhow::{Result, anyhow, bail};
use serde_json::Value;

use crate::workloads::TraceInfo;

pub(crate) fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

pub(crate) fn first_line_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).stdout(Stdio::piped()).output().ok()?;
    let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
    String::from_utf8_lossy(&text).lines().next().map(|s| s.trim().to_string())
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().filter(|l| !l.contains("RLIMIT_MEMLOCK")).collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 }
}

pub(crate) fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        "-".into()
    } else if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1e3)
    }
}

pub(crate) fn fmt_ratio(r: f64) -> String {
    if r.is_finite() { format!("{r:.2}") } else { "-".into() }
}

pub(crate) fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of a Unix time in milliseconds.
pub(crate) fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Busy jiffies of the whole machine (user+nice+system+irq+softirq+steal) and the jiffy rate.
pub(crate) fn machine_busy_s() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy as f64 / hz
}

/// CPU seconds used by this process and its reaped descendants.
pub(crate) fn own_cpu_s() -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills a struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        total += tv(ru.ru_utime) + tv(ru.ru_stime);
    }
    total
}

/// Tracers on the machine that are not ours (another pty-trace, bpftrace, strace or perf): their
/// probes fire on every process, so they would skew an "untraced" number.
pub(crate) fn foreign_tracers() -> Vec<String> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        let comm = comm.trim();
        if !matches!(comm, "pty-trace" | "bpftrace" | "strace" | "perf") {
            continue;
        }
        // Ours if we are an ancestor.
        let mut p = pid;
        let mut ours = false;
        for _ in 0..64 {
            if p == me {
                ours = true;
                break;
            }
            let Some(pp) = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.split_whitespace().nth(1).and_then(|x| x.parse::<i32>().ok())))
            else {
                break;
            };
            if pp <= 1 {
                break;
            }
            p = pp;
        }
        if !ours {
            out.push(format!("{comm}[{pid}]"));
        }
    }
    out.sort();
    out
}

/// A workload's `BENCHLOAD_OUT` file: (loop wall ns, loop CPU ns).
pub(crate) fn parse_timing(path: &Path) -> Option<(u128, u128)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse::<u128>().ok());
    Some((it.next()??, it.next()??))
}

pub(crate) fn parse_ns_file(path: &Path) -> Option<u128> {
    parse_timing(path).map(|t| t.0)
}

pub(crate) fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

pub(crate) fn trace_info(jsonl: &Path) -> Result<TraceInfo> {
    let recs = read_jsonl(jsonl);
    let start = recs
        .iter()
        .find(|r| r["type"] == "start")
        .ok_or_else(|| anyhow!("{}: no start record", jsonl.display()))?;
    let mut t = TraceInfo {
        ready_ms: start["ready_ms"].as_f64().unwrap_or(f64::NAN),
        load_ms: start["load_ms"].as_f64().unwrap_or(f64::NAN),
        attached_tracepoints: start["attached_tracepoints"].as_u64().unwrap_or(0),
        ..Default::default()
    };
    if let Some(s) = recs.iter().rev().find(|r| r["type"] == "summary") {
        t.events = s["tracer"]["events"].as_u64().unwrap_or(0);
        t.decode_errors = s["tracer"]["decode_errors"].as_u64().unwrap_or(0);
        t.cpu_s = s["tracer"]["cpu_s"].as_f64().unwrap_or(f64::NAN);
        t.max_rss_kib = s["tracer"]["max_rss_kib"].as_u64().unwrap_or(0);
        t.ring_buffer_bytes = s["tracer"]["ring_buffer_bytes"].as_u64().unwrap_or(0);
        t.lost_events = s["lost_events"].as_u64().unwrap_or(0);
        t.drift = s["drift"].as_u64().unwrap_or(0);
        t.duration_s = s["duration_s"].as_f64().unwrap_or(f64::NAN);
        t.processes_seen = s["processes_seen"].as_u64().unwrap_or(0);
    } else {
        bail!("{}: no summary record", jsonl.display());
    }
    Ok(t)
}
