//! `pty-trace report FILE [--json]`: a forensic report from a JSONL recording.
//!
//! Streams the file line by line in constant memory: per session it keeps running aggregates
//! and a timeline thinned to at most `TIMELINE_POINTS` points (every other point is dropped when
//! full). Malformed lines are reported with their line numbers and skipped.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{BufRead, BufReader},
    path::Path,
};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

use crate::error::{AppError, AppResult};

const TIMELINE_POINTS: usize = 64;
/// Malformed line numbers listed individually (the rest are counted).
const MAX_LISTED_BAD_LINES: usize = 20;

/// The fields the report reads; everything else in a line is skipped without allocating.
/// Strings borrow from the line where they can, and a snapshot's `processes` stays raw JSON
/// until it is needed (only when the session reaches a new PTY peak).
#[derive(Deserialize)]
struct Line<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(default, borrow)]
    ts: Cow<'a, str>,
    #[serde(default)]
    session: Option<u32>,
    #[serde(default)]
    health: Option<f64>,
    #[serde(default)]
    totals: Option<Totals>,
    #[serde(default, borrow)]
    processes: Option<&'a RawValue>,
    #[serde(default)]
    reasons: Option<Vec<String>>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    verdict: Option<String>,
    #[serde(default)]
    commands: Option<u64>,
    #[serde(default)]
    est_seconds_to_exhaustion: Option<f64>,
    #[serde(default)]
    lost_events: Option<u64>,
    #[serde(default)]
    drift: Option<u64>,
    #[serde(default)]
    leaked_at_end: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    descendants_left_running: Option<Vec<serde_json::Value>>,
    #[serde(default)]
    metrics: Option<serde_json::Value>,
}

#[derive(Deserialize, Clone, Copy, Default)]
struct Totals {
    #[serde(default)]
    fds: u64,
    #[serde(default)]
    pty_masters: u64,
    /// Distinct PTYs (newer recordings); older ones only have master fds.
    #[serde(default)]
    ptys: Option<u64>,
    #[serde(default)]
    orphaned_ptys: u64,
}

#[derive(Deserialize)]
struct Proc {
    pid: u32,
    #[serde(default)]
    comm: String,
    #[serde(default)]
    pty_masters: u64,
    #[serde(default)]
    fds: u64,
    #[serde(default)]
    command: Option<Vec<String>>,
}

#[derive(Serialize, Clone, Debug)]
pub struct Point {
    pub ts: String,
    pub health: f64,
    pub fds: u64,
    pub ptys: u64,
}

#[derive(Serialize, Clone, Debug, Default)]
pub struct Culprit {
    pub pid: u32,
    pub comm: String,
    pub command: Option<Vec<String>>,
    pub pty_masters: u64,
    pub fds: u64,
}

#[derive(Serialize, Debug, Default)]
pub struct SessionReport {
    pub session: u32,
    pub verdict: String,
    pub first_ts: String,
    pub last_ts: String,
    pub snapshots: u64,
    pub commands: u64,
    pub health_min: f64,
    pub health_final: f64,
    pub pty_peak: u64,
    pub fd_peak: u64,
    pub orphaned_peak: u64,
    pub timeline: Vec<Point>,
    #[serde(skip)]
    stride: u64,
    pub alerts: Vec<(String, f64, Vec<String>)>,
    pub decisions: Vec<(String, String, f64, Vec<String>)>,
    /// The process holding the most PTY masters at the session's PTY peak.
    pub top_holder: Option<Culprit>,
    pub est_seconds_to_exhaustion: Option<f64>,
    pub leaked_at_end: Vec<serde_json::Value>,
    pub descendants_left_running: Vec<serde_json::Value>,
    pub lost_events: u64,
    pub drift: u64,
    pub summary_metrics: Option<serde_json::Value>,
    pub recommendations: Vec<String>,
}

#[derive(Serialize, Debug, Default)]
pub struct Report {
    pub file: String,
    pub lines: u64,
    pub valid_records: u64,
    pub malformed_lines: u64,
    pub malformed_line_numbers: Vec<u64>,
    pub verdict: String,
    pub sessions: Vec<SessionReport>,
}

impl SessionReport {
    fn push_point(&mut self, ts: &str, health: f64, fds: u64, ptys: u64) {
        self.snapshots += 1;
        if self.stride == 0 {
            self.stride = 1;
        }
        if (self.snapshots - 1) % self.stride != 0 {
            return;
        }
        self.timeline.push(Point { ts: ts.to_string(), health, fds, ptys });
        if self.timeline.len() >= TIMELINE_POINTS {
            // Keep every other point and sample half as often from now on.
            let mut i = 0;
            self.timeline.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
        }
    }
}

/// What one byte range of the file contributes; ranges are merged in file order.
#[derive(Default)]
struct Partial {
    lines: u64,
    valid_records: u64,
    malformed_lines: u64,
    /// Line numbers relative to the range's first line.
    malformed_line_numbers: Vec<u64>,
    sessions: BTreeMap<u32, SessionReport>,
}

/// Files smaller than this are read by one thread.
const PARALLEL_MIN_BYTES: u64 = 8 << 20;

/// Reads `path` and builds the report. Large files are split into one byte range per core
/// (on line boundaries), each aggregated in bounded memory, then merged in order.
pub fn build(path: &Path) -> AppResult<Report> {
    let len = std::fs::metadata(path)
        .map_err(|e| AppError::BadInput(format!("cannot open {}: {e}", path.display())))?
        .len();
    let threads = if len < PARALLEL_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8) as u64
    };
    build_with(path, len, threads)
}

fn build_with(path: &Path, len: u64, threads: u64) -> AppResult<Report> {
    let bounds: Vec<(u64, u64)> = (0..threads).map(|i| (len * i / threads, len * (i + 1) / threads)).collect();
    let partials: Vec<AppResult<Partial>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds.iter().map(|&(a, b)| scope.spawn(move || scan_range(path, a, b))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(AppError::BadInput("report worker failed".into()))))
            .collect()
    });
    let mut r = Report { file: path.display().to_string(), ..Report::default() };
    let mut sessions: BTreeMap<u32, SessionReport> = BTreeMap::new();
    for p in partials {
        let p = p?;
        for n in p.malformed_line_numbers {
            if r.malformed_line_numbers.len() < MAX_LISTED_BAD_LINES {
                r.malformed_line_numbers.push(r.lines + n);
            }
        }
        r.lines += p.lines;
        r.valid_records += p.valid_records;
        r.malformed_lines += p.malformed_lines;
        for (sid, later) in p.sessions {
            let merged = match sessions.remove(&sid) {
                Some(earlier) => merge(earlier, later),
                None => later,
            };
            sessions.insert(sid, merged);
        }
    }
    if r.valid_records == 0 {
        return Err(AppError::BadInput(format!(
            "{}: no valid pty-trace record in {} line(s)",
            path.display(),
            r.lines
        )));
    }
    for mut s in sessions.into_values() {
        if s.verdict.is_empty() {
            s.verdict = if s.orphaned_peak > 0 || !s.decisions.is_empty() { "LEAK DETECTED" } else { "HEALTHY" }.into();
        }
        s.recommendations = recommend(&s);
        r.sessions.push(s);
    }
    r.verdict = if r.sessions.iter().any(|s| s.verdict == "LEAK DETECTED") { "LEAK DETECTED" } else { "HEALTHY" }.into();
    Ok(r)
}

/// Aggregates the lines whose first byte lies in `[start, end)`.
fn scan_range(path: &Path, start: u64, end: u64) -> AppResult<Partial> {
    use std::io::{Seek, SeekFrom};
    let io_err = |e: std::io::Error| AppError::BadInput(format!("reading {}: {e}", path.display()));
    let mut f = File::open(path).map_err(|e| AppError::BadInput(format!("cannot open {}: {e}", path.display())))?;
    if start > 0 {
        f.seek(SeekFrom::Start(start - 1)).map_err(io_err)?;
    }
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut pos = start;
    if start > 0 {
        // Skip the rest of the line that began before this range (the previous range owns it).
        let mut skipped = Vec::new();
        pos = start - 1 + reader.read_until(b'\n', &mut skipped).map_err(io_err)? as u64;
    }
    let mut r = Partial::default();
    let sessions = &mut r.sessions;
    let mut raw = Vec::new();
    while pos < end {
        raw.clear();
        let n = reader.read_until(b'\n', &mut raw).map_err(io_err)?;
        if n == 0 {
            break;
        }
        pos += n as u64;
        r.lines += 1;
        // A line that is not UTF-8 or not a record is malformed: counted, listed, skipped.
        let parsed = std::str::from_utf8(&raw).ok().map(str::trim).filter(|l| !l.is_empty()).map(serde_json::from_str::<Line>);
        let rec = match parsed {
            None if raw.iter().all(u8::is_ascii_whitespace) => continue,
            Some(Ok(rec)) => rec,
            _ => {
                r.malformed_lines += 1;
                if r.malformed_line_numbers.len() < MAX_LISTED_BAD_LINES {
                    r.malformed_line_numbers.push(r.lines);
                }
                continue;
            }
        };
        r.valid_records += 1;
        let Some(sid) = rec.session else { continue };
        let s = sessions.entry(sid).or_insert_with(|| SessionReport {
            session: sid,
            health_min: 100.0,
            health_final: 100.0,
            first_ts: rec.ts.to_string(),
            ..SessionReport::default()
        });
        // Reuses the buffer: no allocation per line.
        s.last_ts.clear();
        s.last_ts.push_str(&rec.ts);
        match rec.kind.as_ref() {
            "snapshot" => {
                let mut t = rec.totals.unwrap_or_default();
                if let Some(n) = t.ptys {
                    t.pty_masters = n;
                }
                let h = rec.health.unwrap_or(100.0);
                s.health_min = s.health_min.min(h);
                s.health_final = h;
                s.fd_peak = s.fd_peak.max(t.fds);
                s.orphaned_peak = s.orphaned_peak.max(t.orphaned_ptys);
                if let Some(c) = rec.commands {
                    s.commands = c;
                }
                s.est_seconds_to_exhaustion = rec.est_seconds_to_exhaustion;
                s.lost_events = rec.lost_events.unwrap_or(s.lost_events);
                s.drift = rec.drift.unwrap_or(s.drift);
                // The processes are parsed only at a new PTY peak (or to name a first holder).
                if t.pty_masters > s.pty_peak || (s.top_holder.is_none() && t.pty_masters == s.pty_peak) {
                    s.pty_peak = t.pty_masters;
                    let procs: Option<Vec<Proc>> = rec.processes.and_then(|raw| serde_json::from_str(raw.get()).ok());
                    if let Some(top) = procs.as_ref().and_then(|ps| ps.iter().max_by_key(|p| (p.pty_masters, p.fds))) {
                        s.top_holder = Some(Culprit {
                            pid: top.pid,
                            comm: top.comm.clone(),
                            command: top.command.clone(),
                            pty_masters: top.pty_masters,
                            fds: top.fds,
                        });
                    }
                }
                s.push_point(&rec.ts, h, t.fds, t.pty_masters);
            }
            "alert" => s.alerts.push((rec.ts.to_string(), rec.health.unwrap_or(0.0), rec.reasons.unwrap_or_default())),
            "decision" => s.decisions.push((
                rec.ts.to_string(),
                rec.action.unwrap_or_default(),
                rec.health.unwrap_or(0.0),
                rec.reasons.unwrap_or_default(),
            )),
            "summary" => {
                if let Some(v) = rec.verdict {
                    s.verdict = v;
                }
                s.leaked_at_end = rec.leaked_at_end.unwrap_or_default();
                s.descendants_left_running = rec.descendants_left_running.unwrap_or_default();
                s.summary_metrics = rec.metrics;
                s.lost_events = rec.lost_events.unwrap_or(s.lost_events);
                s.drift = rec.drift.unwrap_or(s.drift);
            }
            _ => {}
        }
    }
    Ok(r)
}

/// Joins the aggregates of two consecutive ranges of one session.
fn merge(mut a: SessionReport, b: SessionReport) -> SessionReport {
    if b.snapshots > 0 {
        a.health_final = b.health_final;
        a.commands = b.commands;
        a.est_seconds_to_exhaustion = b.est_seconds_to_exhaustion;
    }
    if !b.last_ts.is_empty() {
        a.last_ts = b.last_ts;
    }
    a.health_min = a.health_min.min(b.health_min);
    a.fd_peak = a.fd_peak.max(b.fd_peak);
    a.orphaned_peak = a.orphaned_peak.max(b.orphaned_peak);
    if b.pty_peak > a.pty_peak || (a.top_holder.is_none() && b.top_holder.is_some()) {
        a.pty_peak = a.pty_peak.max(b.pty_peak);
        a.top_holder = b.top_holder;
    }
    a.snapshots += b.snapshots;
    a.timeline.extend(b.timeline);
    while a.timeline.len() >= TIMELINE_POINTS {
        let mut i = 0;
        a.timeline.retain(|_| {
            i += 1;
            i % 2 == 1
        });
    }
    a.alerts.extend(b.alerts);
    a.decisions.extend(b.decisions);
    if !b.verdict.is_empty() {
        a.verdict = b.verdict;
        a.leaked_at_end = b.leaked_at_end;
        a.descendants_left_running = b.descendants_left_running;
        a.summary_metrics = b.summary_metrics;
    }
    a.lost_events = a.lost_events.max(b.lost_events);
    a.drift = a.drift.max(b.drift);
    a
}

fn recommend(s: &SessionReport) -> Vec<String> {
    let mut out = Vec::new();
    let holder = s.top_holder.as_ref().map(|c| format!("pid {} ({})", c.pid, c.comm)).unwrap_or_else(|| "the session root".into());
    if s.orphaned_peak > 0 {
        out.push(format!(
            "{holder} keeps PTY masters after their child exits ({} orphaned at peak): close the master when the child is reaped",
            s.orphaned_peak
        ));
    }
    if s.commands > 0 && s.pty_peak as f64 / s.commands as f64 >= 0.5 {
        out.push(format!(
            "about {:.1} PTY per command ({} PTYs over {} commands): reuse one PTY or destroy each after use",
            s.pty_peak as f64 / s.commands as f64,
            s.pty_peak,
            s.commands
        ));
    }
    if !s.descendants_left_running.is_empty() {
        out.push(format!(
            "{} descendant(s) outlived the session: kill the process group when a command ends",
            s.descendants_left_running.len()
        ));
    }
    if !s.decisions.is_empty() {
        out.push("rotate the session (restart the agent/terminal) before fds or PTYs run out".into());
    }
    if s.lost_events > 0 {
        out.push(format!("{} events were lost: re-run with a larger --ring-buffer-size", s.lost_events));
    }
    out
}

/// Human-readable rendering.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "pty-trace report: {}  ({} lines, {} records)", r.file, r.lines, r.valid_records);
    if r.malformed_lines > 0 {
        let _ = writeln!(o, "  {} malformed line(s) skipped: {:?}", r.malformed_lines, r.malformed_line_numbers);
    }
    let _ = writeln!(o, "VERDICT: {}", r.verdict);
    for s in &r.sessions {
        let _ = writeln!(o, "\nsession {}: {}  ({} .. {})", s.session, s.verdict, s.first_ts, s.last_ts);
        let _ = writeln!(
            o,
            "  commands {}  PTY peak {}  fd peak {}  orphaned PTYs peak {}  health min {:.0} final {:.0}",
            s.commands, s.pty_peak, s.fd_peak, s.orphaned_peak, s.health_min, s.health_final
        );
        if let Some(c) = &s.top_holder {
            let cmd = c.command.as_ref().map(|a| a.join(" ")).unwrap_or_default();
            let _ = writeln!(o, "  leaking process: pid {} {} ({cmd}) held {} PTY masters, {} fds", c.pid, c.comm, c.pty_masters, c.fds);
        }
        if let Some(e) = s.est_seconds_to_exhaustion {
            let _ = writeln!(o, "  time to exhaustion (estimate): {:.0} s", e);
        }
        let _ = writeln!(o, "  timeline (health / fds / PTYs):");
        for p in &s.timeline {
            let _ = writeln!(o, "    {}  {:>5.0}  {:>5}  {:>4}", p.ts, p.health, p.fds, p.ptys);
        }
        for (ts, h, reasons) in &s.alerts {
            let _ = writeln!(o, "  ALERT {ts} health {h:.0}: {}", reasons.join("; "));
        }
        for (ts, a, h, reasons) in &s.decisions {
            let _ = writeln!(o, "  DECISION {ts} {a} (health {h:.0}): {}", reasons.join("; "));
        }
        if !s.leaked_at_end.is_empty() {
            let _ = writeln!(o, "  still open at the end: {} fd(s)/PTY(s)", s.leaked_at_end.len());
        }
        let _ = writeln!(o, "  lost events {}  drift {}", s.lost_events, s.drift);
        for rec in &s.recommendations {
            let _ = writeln!(o, "  -> {rec}");
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let p = std::env::temp_dir().join(format!("pty-trace-report-{}-{name}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn empty_or_garbage_file_is_an_error() {
        let p = write("garbage", "not json\n{\"no_type\":1}\n");
        match build(&p) {
            Err(AppError::BadInput(m)) => assert!(m.contains("no valid pty-trace record"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn malformed_lines_are_counted_with_numbers() {
        let good = r#"{"type":"snapshot","schema":1,"ts":"t1","session":5,"health":40,"commands":4,"totals":{"fds":9,"pty_masters":4,"orphaned_ptys":4},"processes":[{"pid":5,"comm":"agent","pty_masters":4,"fds":9}]}"#;
        let p = write("mixed", &format!("{good}\n{{broken\n\n{good}\n"));
        let r = build(&p).unwrap();
        assert_eq!(r.malformed_lines, 1);
        assert_eq!(r.malformed_line_numbers, vec![2]);
        assert_eq!(r.valid_records, 2);
        assert_eq!(r.verdict, "LEAK DETECTED");
        let s = &r.sessions[0];
        assert_eq!(s.top_holder.as_ref().unwrap().comm, "agent");
        assert!(s.recommendations.iter().any(|x| x.contains("close the master when the child is reaped")));
    }

    #[test]
    fn split_ranges_give_the_same_report_as_one_pass() {
        let good = |i: u64, ptys: u64| {
            format!("{{\"type\":\"snapshot\",\"ts\":\"t{i}\",\"session\":{},\"health\":{},\"commands\":{i},\"totals\":{{\"fds\":{},\"pty_masters\":{ptys},\"ptys\":{ptys},\"orphaned_ptys\":{}}},\"processes\":[{{\"pid\":{},\"comm\":\"a\",\"pty_masters\":{ptys},\"fds\":3}}]}}\n", 1 + i % 2, 100 - (i % 50), i % 97, ptys / 2, 100 + ptys)
        };
        let mut text = String::new();
        for i in 0..3000u64 {
            text.push_str(&good(i, (i * 7) % 40));
            if i % 401 == 0 {
                text.push_str("{broken line\n");
            }
            if i == 1500 {
                text.push_str("{\"type\":\"alert\",\"ts\":\"ta\",\"session\":1,\"health\":60,\"reasons\":[\"x\"]}\n");
            }
        }
        let p = write("split", &text);
        let len = std::fs::metadata(&p).unwrap().len();
        let one = build_with(&p, len, 1).unwrap();
        for threads in [2, 3, 7] {
            let many = build_with(&p, len, threads).unwrap();
            assert_eq!((many.lines, many.valid_records, many.malformed_lines), (one.lines, one.valid_records, one.malformed_lines));
            assert_eq!(many.malformed_line_numbers, one.malformed_line_numbers, "{threads} threads");
            assert_eq!(many.sessions.len(), one.sessions.len());
            for (a, b) in one.sessions.iter().zip(&many.sessions) {
                assert_eq!((a.snapshots, a.pty_peak, a.fd_peak, a.orphaned_peak, a.commands), (b.snapshots, b.pty_peak, b.fd_peak, b.orphaned_peak, b.commands));
                assert_eq!((a.health_min, a.health_final, &a.first_ts, &a.last_ts), (b.health_min, b.health_final, &b.first_ts, &b.last_ts));
                assert_eq!(a.top_holder.as_ref().map(|c| c.pid), b.top_holder.as_ref().map(|c| c.pid));
                assert_eq!(a.alerts.len(), b.alerts.len());
                assert!(b.timeline.len() < TIMELINE_POINTS);
            }
        }
        assert_eq!(one.malformed_lines, 8);
        assert_eq!(one.malformed_line_numbers[0], 2);
    }

    #[test]
    fn timeline_stays_bounded() {
        let mut text = String::new();
        for i in 0..10_000 {
            text.push_str(&format!("{{\"type\":\"snapshot\",\"ts\":\"{i}\",\"session\":1,\"health\":100,\"totals\":{{\"fds\":{i},\"pty_masters\":0}}}}\n"));
        }
        let r = build(&write("long", &text)).unwrap();
        assert!(r.sessions[0].timeline.len() < TIMELINE_POINTS);
        assert_eq!(r.sessions[0].snapshots, 10_000);
        assert_eq!(r.sessions[0].fd_peak, 9_999);
    }
}
