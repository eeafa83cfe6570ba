//! The forensic report: recording lines in, per-session aggregates out (pure; reading the
//! file, in parallel byte ranges, is `recording.rs`'s job).
//!
//! Lines are parsed as the same record types the tracer writes (`core::records`), so the
//! report cannot read a field the tracer does not write. Per session it keeps running
//! aggregates and a timeline thinned to at most `TIMELINE_POINTS` points (every other point is
//! dropped when full), so memory stays bounded however long the recording. Malformed lines are
//! counted and listed by number; lines of a newer schema than this version knows are counted
//! and skipped, never guessed at; records of a type this version does not know are counted by
//! type name and skipped.
//!
//! The verdict is a summary's: a session without one (the recording was cut short) is
//! `INCOMPLETE`, with what its snapshots show beside it, and a report with neither a snapshot
//! nor a summary to judge from is `UNKNOWN` (see [`ReportVerdict`]).

use std::{borrow::Cow, collections::BTreeMap};

use serde::{Deserialize, Serialize, de::IgnoredAny};
use serde_json::value::RawValue;

use super::machine::{MachineRec, history::MachineHistory};
use super::evidence::clip;
use super::records::{
    AlertRec, DecisionRec, DescendantRec, Evidence, EvidenceKind, GateRec, Head, LeakedFd, Metrics, ProcessRec, RecordKind,
    SCHEMA_VERSION, SnapshotRec, SummaryRec, Verdict,
};

pub const TIMELINE_POINTS: usize = 64;
/// The leak score line of the default thresholds, for recordings cut short before their
/// summary (a recording does not carry its thresholds).
const DEFAULT_LEAK_SCORE: f64 = 10.0;
/// Malformed line numbers listed individually (the rest are counted).
const MAX_LISTED_BAD_LINES: usize = 20;
/// Unknown record types named individually (records of further types are counted).
const MAX_LISTED_UNKNOWN_TYPES: usize = 20;
/// Longest unknown type name kept (a longer one is clipped).
const MAX_TYPE_NAME_CHARS: usize = 40;

/// A snapshot as the report reads it: the process list stays raw JSON until the session
/// reaches a new PTY peak, and the PTY list is skipped.
type LazySnapshot<'a> = SnapshotRec<&'a RawValue, IgnoredAny>;

/// The `type` of a record this version does not know (read only to name it).
#[derive(Deserialize)]
struct TypeName<'a> {
    #[serde(rename = "type", borrow)]
    name: Cow<'a, str>,
}

/// What the report reads of a `start` record: the sessions it announces.
#[derive(Deserialize)]
struct StartSessions {
    #[serde(default)]
    sessions: Vec<u32>,
    /// `run`: the command line (redacted when recorded).
    #[serde(default)]
    command: Option<Vec<String>>,
}

/// The report's verdict, for the whole recording and for each session: the `summary`'s
/// verdict when there is one, else what the report can tell without it.
#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReportVerdict {
    #[serde(rename = "HEALTHY")]
    Healthy,
    #[serde(rename = "LEAK DETECTED")]
    LeakDetected,
    #[serde(rename = "LEAKED EARLIER, RECOVERED")]
    Recovered,
    /// No summary (for some session): the recording was cut short. `observed_verdict` says
    /// what the snapshots show.
    #[serde(rename = "INCOMPLETE")]
    Incomplete,
    /// Nothing to judge from: no snapshot and no summary this version reads (only a `start`,
    /// records of unknown types, or of a newer schema).
    #[default]
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

impl ReportVerdict {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportVerdict::Healthy => "HEALTHY",
            ReportVerdict::LeakDetected => "LEAK DETECTED",
            ReportVerdict::Recovered => "LEAKED EARLIER, RECOVERED",
            ReportVerdict::Incomplete => "INCOMPLETE",
            ReportVerdict::Unknown => "UNKNOWN",
        }
    }
}

impl From<Verdict> for ReportVerdict {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Healthy => ReportVerdict::Healthy,
            Verdict::LeakDetected => ReportVerdict::LeakDetected,
            Verdict::Recovered => ReportVerdict::Recovered,
        }
    }
}

impl std::fmt::Display for ReportVerdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The worst of some verdicts (a leak at the end over a recovered one over none).
fn worst(verdicts: impl IntoIterator<Item = Verdict>) -> Option<Verdict> {
    let rank = |v: &Verdict| match v {
        Verdict::Healthy => 0,
        Verdict::Recovered => 1,
        Verdict::LeakDetected => 2,
    };
    verdicts.into_iter().max_by_key(rank)
}

#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct Point {
    pub ts: String,
    pub health: f64,
    pub fds: u64,
    pub ptys: u64,
}

/// The process holding the most PTY masters at the session's PTY peak.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Culprit {
    pub pid: u32,
    pub comm: String,
    pub command: Option<Vec<String>>,
    pub pty_masters: u64,
    pub fds: u64,
}

#[derive(Serialize, Debug, Default, Clone)]
pub struct SessionReport {
    pub session: u32,
    /// The `summary`'s verdict; `INCOMPLETE` without a summary (the recording was cut short),
    /// `UNKNOWN` without a snapshot either.
    pub verdict: ReportVerdict,
    /// Without a summary: the verdict the snapshots show (judged as the tracer would have);
    /// `None` when the summary gives it or there is no snapshot.
    pub observed_verdict: Option<Verdict>,
    /// From the session's `summary`, while aggregating.
    #[serde(skip)]
    summary_verdict: Option<Verdict>,
    pub first_ts: String,
    pub last_ts: String,
    pub snapshots: u64,
    pub commands: u64,
    pub health_min: f64,
    pub health_final: f64,
    pub pty_peak: u64,
    pub fd_peak: u64,
    pub orphaned_peak: u64,
    /// Most PTYs held without use (abandoned + left behind) at a snapshot.
    pub residual_peak: u64,
    /// Residual PTYs at the last snapshot.
    pub residual_last: u64,
    /// Highest leak score of a snapshot.
    pub leak_score_peak: f64,
    /// Some snapshot was leaking (its `leaking` flag; older recordings lack it).
    pub leaking_seen: bool,
    /// What the verdict rests on: the summary's evidence, or the last snapshot's when the
    /// recording has no summary.
    pub evidence: Vec<Evidence>,
    /// Evidence the session cleared itself.
    pub recovered: Vec<Evidence>,
    pub timeline: Vec<Point>,
    #[serde(skip)]
    stride: u64,
    pub alerts: Vec<AlertRec>,
    pub decisions: Vec<DecisionRec>,
    pub top_holder: Option<Culprit>,
    pub est_seconds_to_exhaustion: Option<f64>,
    pub leaked_at_end: Vec<LeakedFd>,
    pub descendants_left_running: Vec<DescendantRec>,
    pub lost_events: u64,
    pub untracked_children: u64,
    pub drift: u64,
    pub summary_metrics: Option<Metrics>,
    /// `run --fail-on-leak`: the leak gate's verdict, from the summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateRec>,
    /// `run`: the command's exit status, from the summary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    pub recommendations: Vec<String>,
}

/// What became of the lines of a recording (or of a run of them).
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct LineCounts {
    pub lines: u64,
    pub valid_records: u64,
    pub malformed_lines: u64,
    /// The first malformed lines' numbers (the rest are counted).
    pub malformed_line_numbers: Vec<u64>,
    /// Lines written by a newer pty-trace (a `schema` above [`SCHEMA_VERSION`]): skipped.
    pub newer_schema_lines: u64,
    /// The newest schema seen among them.
    pub newer_schema: Option<u32>,
    /// Records of a `type` this version does not know (a compatible addition): skipped.
    pub unknown_type_records: u64,
    /// Those records by type name (the first names seen; records of further names are only
    /// counted in `unknown_type_records`).
    pub unknown_types: BTreeMap<String, u64>,
}

impl LineCounts {
    fn malformed(&mut self) {
        self.malformed_lines += 1;
        if self.malformed_line_numbers.len() < MAX_LISTED_BAD_LINES {
            self.malformed_line_numbers.push(self.lines);
        }
    }

    fn unknown_type(&mut self, name: &str, n: u64) {
        self.unknown_type_records += n;
        let name = clip(name, MAX_TYPE_NAME_CHARS);
        if let Some(c) = self.unknown_types.get_mut(&name) {
            *c += n;
        } else if self.unknown_types.len() < MAX_LISTED_UNKNOWN_TYPES {
            self.unknown_types.insert(name, n);
        }
    }

    /// Appends the counts of the lines that follow these (whose numbers start again at 1).
    fn merge(&mut self, later: LineCounts) {
        for n in later.malformed_line_numbers {
            if self.malformed_line_numbers.len() < MAX_LISTED_BAD_LINES {
                self.malformed_line_numbers.push(self.lines + n);
            }
        }
        self.lines += later.lines;
        self.valid_records += later.valid_records;
        self.malformed_lines += later.malformed_lines;
        self.newer_schema_lines += later.newer_schema_lines;
        self.newer_schema = self.newer_schema.max(later.newer_schema);
        // Records of names the later run could not list stay counted, unnamed.
        self.unknown_type_records += later.unknown_type_records - later.unknown_types.values().sum::<u64>();
        for (name, n) in later.unknown_types {
            self.unknown_type(&name, n);
        }
    }
}

#[derive(Serialize, Debug, Default)]
pub struct Report {
    pub file: String,
    #[serde(flatten)]
    pub counts: LineCounts,
    /// The worst session verdict when every session has its summary; `INCOMPLETE` when a
    /// session has none; `UNKNOWN` when no session has a snapshot or a summary (or there is no
    /// session at all).
    pub verdict: ReportVerdict,
    /// With `INCOMPLETE`: the worst verdict the summaries and snapshots show; `None` otherwise.
    pub observed_verdict: Option<Verdict>,
    /// `run`: the command traced (from the first `start`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    pub sessions: Vec<SessionReport>,
    /// From `pty-trace top`'s `machine` records: the pool and who drained it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machine: Option<MachineHistory>,
}

impl Report {
    /// The one line that says newer records were skipped, when there were any.
    pub fn newer_schema_warning(&self) -> Option<String> {
        let v = self.counts.newer_schema?;
        Some(format!(
            "{}: {} record(s) use schema {v}, newer than the schema {SCHEMA_VERSION} this pty-trace reads: skipped them (upgrade pty-trace to read them)",
            self.file, self.counts.newer_schema_lines
        ))
    }

    /// The one line that names the record types this version does not know, when there were any.
    pub fn unknown_types_note(&self) -> Option<String> {
        let c = &self.counts;
        if c.unknown_type_records == 0 {
            return None;
        }
        let mut names: Vec<String> = c.unknown_types.iter().map(|(t, n)| format!("{t:?} ({n})")).collect();
        if c.unknown_types.values().sum::<u64>() < c.unknown_type_records {
            names.push("others".into());
        }
        Some(format!(
            "{} record(s) of a type this pty-trace does not know, skipped: {}",
            c.unknown_type_records,
            names.join(", ")
        ))
    }

    /// Why the verdict is `INCOMPLETE` or `UNKNOWN`, in words; `None` for a summary's verdict.
    pub fn verdict_reason(&self) -> Option<String> {
        match self.verdict {
            ReportVerdict::Incomplete => {
                let cut: Vec<String> =
                    self.sessions.iter().filter(|s| s.summary_verdict.is_none()).map(|s| s.session.to_string()).collect();
                let seen = self.observed_verdict.map(|v| format!("; up to the cut it shows {v}")).unwrap_or_default();
                Some(format!(
                    "no summary for session{} {}: the recording was cut short{seen}",
                    if cut.len() == 1 { "" } else { "s" },
                    cut.join(", ")
                ))
            }
            ReportVerdict::Unknown => Some("no snapshot and no summary this pty-trace can read: nothing to judge from".into()),
            _ => None,
        }
    }
}

impl SessionReport {
    fn new(session: u32, ts: &str) -> Self {
        SessionReport { session, health_min: 100.0, health_final: 100.0, first_ts: ts.to_string(), ..SessionReport::default() }
    }

    /// The verdict to act on: the summary's, else what the snapshots show.
    pub fn judged(&self) -> Option<Verdict> {
        self.summary_verdict.or(self.observed_verdict)
    }

    fn push_point(&mut self, ts: &str, health: f64, fds: u64, ptys: u64) {
        self.snapshots += 1;
        if self.stride == 0 {
            self.stride = 1;
        }
        if !(self.snapshots - 1).is_multiple_of(self.stride) {
            return;
        }
        self.timeline.push(Point { ts: ts.to_string(), health, fds, ptys });
        if self.timeline.len() >= TIMELINE_POINTS {
            // Keep every other point and sample half as often from now on.
            thin(&mut self.timeline);
            self.stride *= 2;
        }
    }

    fn snapshot(&mut self, ts: &str, rec: LazySnapshot<'_>) {
        let t = rec.totals;
        // Distinct PTYs; recordings from before `ptys` was written have 0 there and count
        // master fds instead.
        let ptys = if t.ptys > 0 || t.pty_masters == 0 { t.ptys } else { t.pty_masters } as u64;
        self.health_min = self.health_min.min(rec.health);
        self.health_final = rec.health;
        self.fd_peak = self.fd_peak.max(t.fds as u64);
        self.orphaned_peak = self.orphaned_peak.max(t.orphaned_ptys as u64);
        self.residual_peak = self.residual_peak.max(rec.residual_ptys as u64);
        self.residual_last = rec.residual_ptys as u64;
        self.leak_score_peak = self.leak_score_peak.max(rec.leak_score);
        self.leaking_seen |= rec.leaking;
        if self.summary_verdict.is_none() {
            self.evidence = rec.evidence;
        }
        self.commands = rec.commands as u64;
        self.est_seconds_to_exhaustion = rec.est_seconds_to_exhaustion;
        self.lost_events = rec.lost_events;
        self.untracked_children = rec.untracked_children;
        self.drift = rec.drift;
        // The processes are parsed only at a new PTY peak (or to name a first holder).
        if ptys > self.pty_peak || (self.top_holder.is_none() && ptys == self.pty_peak) {
            self.pty_peak = ptys;
            let procs: Option<Vec<ProcessRec>> = serde_json::from_str(rec.processes.get()).ok();
            if let Some(top) = procs.as_ref().and_then(|ps| ps.iter().max_by_key(|p| (p.pty_masters, p.fds))) {
                self.top_holder = Some(Culprit {
                    pid: top.pid,
                    comm: top.comm.clone(),
                    command: top.command.clone(),
                    pty_masters: top.pty_masters as u64,
                    fds: top.fds as u64,
                });
            }
        }
        self.push_point(ts, rec.health, t.fds as u64, ptys);
    }

    fn summary(&mut self, rec: SummaryRec) {
        self.summary_verdict = Some(rec.verdict);
        self.evidence = rec.evidence;
        self.recovered = rec.recovered;
        self.leaked_at_end = rec.leaked_at_end;
        self.descendants_left_running = rec.descendants_left_running;
        self.summary_metrics = Some(rec.metrics);
        self.gate = rec.gate;
        self.exit_status = rec.exit_status;
        self.lost_events = rec.lost_events;
        self.untracked_children = rec.untracked_children;
        self.drift = rec.drift;
    }

    /// Joins the aggregates of the next range of the file into these.
    fn merge(&mut self, b: SessionReport) {
        if b.snapshots > 0 {
            self.health_final = b.health_final;
            self.commands = b.commands;
            self.est_seconds_to_exhaustion = b.est_seconds_to_exhaustion;
            self.residual_last = b.residual_last;
            if self.summary_verdict.is_none() {
                self.evidence = b.evidence.clone();
            }
        }
        self.residual_peak = self.residual_peak.max(b.residual_peak);
        self.leak_score_peak = self.leak_score_peak.max(b.leak_score_peak);
        self.leaking_seen |= b.leaking_seen;
        if !b.last_ts.is_empty() {
            self.last_ts = b.last_ts;
        }
        self.health_min = self.health_min.min(b.health_min);
        self.fd_peak = self.fd_peak.max(b.fd_peak);
        self.orphaned_peak = self.orphaned_peak.max(b.orphaned_peak);
        if b.pty_peak > self.pty_peak || (self.top_holder.is_none() && b.top_holder.is_some()) {
            self.pty_peak = self.pty_peak.max(b.pty_peak);
            self.top_holder = b.top_holder;
        }
        self.snapshots += b.snapshots;
        self.timeline.extend(b.timeline);
        while self.timeline.len() >= TIMELINE_POINTS {
            thin(&mut self.timeline);
        }
        self.alerts.extend(b.alerts);
        self.decisions.extend(b.decisions);
        if b.summary_verdict.is_some() {
            self.summary_verdict = b.summary_verdict;
            self.evidence = b.evidence;
            self.recovered = b.recovered;
            self.leaked_at_end = b.leaked_at_end;
            self.descendants_left_running = b.descendants_left_running;
            self.summary_metrics = b.summary_metrics;
            self.gate = b.gate;
            self.exit_status = b.exit_status;
        }
        self.lost_events = self.lost_events.max(b.lost_events);
        self.untracked_children = self.untracked_children.max(b.untracked_children);
        self.drift = self.drift.max(b.drift);
    }
}

/// The session's aggregates, created at its first record; its last timestamp moved to `ts`.
fn session<'s>(sessions: &'s mut BTreeMap<u32, SessionReport>, sid: u32, ts: &str) -> &'s mut SessionReport {
    let s = sessions.entry(sid).or_insert_with(|| SessionReport::new(sid, ts));
    // Reuses the buffer: no allocation per line.
    s.last_ts.clear();
    s.last_ts.push_str(ts);
    s
}

/// Drops every other point.
fn thin(points: &mut Vec<Point>) {
    let mut i = 0;
    points.retain(|_| {
        i += 1;
        i % 2 == 1
    });
}

/// What a run of consecutive lines contributes; runs are merged in file order.
#[derive(Default, Debug)]
pub struct Aggregate {
    /// Line numbers relative to the run's first line.
    pub counts: LineCounts,
    sessions: BTreeMap<u32, SessionReport>,
    /// Sessions a `start` announced, with its timestamp.
    started: BTreeMap<u32, String>,
    /// The first `start`'s command (`run`), and how many `start`s named one (`watch` writes one
    /// per session: no single command is the recording's).
    command: Option<Vec<String>>,
    command_starts: u64,
    machine: MachineHistory,
}

impl Aggregate {
    /// Takes one line (its newline may be included). Blank lines count as lines and nothing
    /// else; a line that is not UTF-8 or not a record is malformed.
    pub fn line(&mut self, raw: &[u8]) {
        self.counts.lines += 1;
        if raw.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        match std::str::from_utf8(raw).ok().map(str::trim).map(|l| self.record(l)) {
            Some(Ok(())) => {}
            _ => self.counts.malformed(),
        }
    }

    fn record(&mut self, line: &str) -> Result<(), serde_json::Error> {
        let head = Head::peek(line).map_or_else(|| serde_json::from_str::<Head>(line), Ok)?;
        if head.schema > SCHEMA_VERSION {
            self.counts.newer_schema_lines += 1;
            self.counts.newer_schema = self.counts.newer_schema.max(Some(head.schema));
            return Ok(());
        }
        let ts = head.ts.as_ref();
        // Each body type ignores the envelope's fields.
        match head.kind {
            Some(RecordKind::Snapshot) => {
                let rec: LazySnapshot = serde_json::from_str(line)?;
                session(&mut self.sessions, rec.session, ts).snapshot(ts, rec);
            }
            Some(RecordKind::Alert) => {
                let rec: AlertRec = serde_json::from_str(line)?;
                session(&mut self.sessions, rec.session, ts).alerts.push(AlertRec { ts: ts.to_string(), ..rec });
            }
            Some(RecordKind::Decision) => {
                let rec: DecisionRec = serde_json::from_str(line)?;
                session(&mut self.sessions, rec.session, ts).decisions.push(DecisionRec { ts: ts.to_string(), ..rec });
            }
            Some(RecordKind::Summary) => {
                let rec: SummaryRec = serde_json::from_str(line)?;
                session(&mut self.sessions, rec.session, ts).summary(rec);
            }
            // `start` names the sessions (one without any later record is UNKNOWN).
            Some(RecordKind::Start) => {
                let rec: StartSessions = serde_json::from_str(line)?;
                if rec.command.is_some() {
                    self.command_starts += 1;
                }
                if self.command.is_none() {
                    self.command = rec.command;
                }
                for sid in rec.sessions {
                    self.started.entry(sid).or_insert_with(|| ts.to_string());
                }
            }
            Some(RecordKind::Machine) => {
                let rec: MachineRec = serde_json::from_str(line)?;
                self.machine.record(ts, &rec);
            }
            // A kind this version does not know (added without a schema bump) is a valid
            // record to skip, counted by name. It must still be JSON.
            None => {
                let rec: TypeName = serde_json::from_str(line)?;
                self.counts.unknown_type(&rec.name, 1);
            }
        }
        self.counts.valid_records += 1;
        Ok(())
    }

    /// Appends the aggregate of the lines that follow these in the file.
    pub fn merge(&mut self, later: Aggregate) {
        self.counts.merge(later.counts);
        self.machine.merge(later.machine);
        self.command_starts += later.command_starts;
        if self.command.is_none() {
            self.command = later.command;
        }
        for (sid, ts) in later.started {
            self.started.entry(sid).or_insert(ts);
        }
        for (sid, b) in later.sessions {
            match self.sessions.get_mut(&sid) {
                Some(a) => a.merge(b),
                None => {
                    self.sessions.insert(sid, b);
                }
            }
        }
    }

    /// The report, or why there is none (no record in the file).
    pub fn finish(self, file: &str) -> Result<Report, String> {
        if self.counts.valid_records == 0 && self.counts.newer_schema_lines == 0 {
            return Err(format!("{file}: no valid pty-trace record in {} line(s)", self.counts.lines));
        }
        let command = if self.command_starts == 1 { self.command } else { None };
        let mut r = Report { file: file.to_string(), counts: self.counts, command, ..Report::default() };
        let mut sessions = self.sessions;
        for (sid, ts) in self.started {
            // Announced, and cut short before its first record.
            sessions.entry(sid).or_insert_with(|| SessionReport { last_ts: ts.clone(), ..SessionReport::new(sid, &ts) });
        }
        for mut s in sessions.into_values() {
            s.verdict = match s.summary_verdict {
                Some(v) => v.into(),
                None if s.snapshots == 0 => ReportVerdict::Unknown,
                None => {
                    // Cut short before its summary: judge from what the snapshots showed. A
                    // leak was seen if a snapshot was leaking (older recordings: its leak score
                    // passed the default line, 10) or the tracer decided to rotate; it was still
                    // leaking if the last snapshot still had evidence.
                    let seen = s.leaking_seen || s.leak_score_peak > DEFAULT_LEAK_SCORE || !s.decisions.is_empty();
                    s.observed_verdict = Some(Verdict::of(seen, seen && (s.residual_last > 0 || !s.evidence.is_empty())));
                    ReportVerdict::Incomplete
                }
            };
            s.recommendations = recommend(&s);
            r.sessions.push(s);
        }
        let observed = worst(r.sessions.iter().filter_map(SessionReport::judged));
        let machine = (self.machine.records > 0).then(|| self.machine.finish());
        (r.verdict, r.observed_verdict) = match observed {
            // A `top` recording: LEAK DETECTED when a process drained the pool.
            None if r.sessions.is_empty() && machine.is_some() => {
                let draining = machine.as_ref().is_some_and(MachineHistory::draining);
                (if draining { ReportVerdict::LeakDetected } else { ReportVerdict::Healthy }, None)
            }
            None => (ReportVerdict::Unknown, None),
            Some(v) if r.sessions.iter().all(|s| s.summary_verdict.is_some()) => (v.into(), None),
            Some(v) => (ReportVerdict::Incomplete, Some(v)),
        };
        r.machine = machine;
        Ok(r)
    }
}

/// The process behind most of the evidence: (pid, comm, command, pieces of evidence).
pub fn leaking_process(s: &SessionReport) -> Option<(u32, String, Option<Vec<String>>, usize)> {
    let mut by_pid: BTreeMap<u32, usize> = BTreeMap::new();
    for e in s.evidence.iter().filter(|e| e.kind != EvidenceKind::FdGrowth) {
        if let Some(pid) = e.pid {
            *by_pid.entry(pid).or_default() += 1;
        }
    }
    let (pid, n) = by_pid.into_iter().max_by_key(|(_, n)| *n)?;
    let holder = s.top_holder.as_ref().filter(|c| c.pid == pid);
    Some((pid, holder.map(|c| c.comm.clone()).unwrap_or_default(), holder.and_then(|c| c.command.clone()), n))
}

fn first_command(evidence: &[&Evidence]) -> String {
    evidence
        .iter()
        .find_map(|e| e.command.as_ref())
        .map(|c| format!(" (e.g. `{}`)", clip(&c.join(" "), 50)))
        .unwrap_or_default()
}

/// What to do, from the evidence (never from totals: a multiplexer holding a PTY per window is
/// not told to reuse one).
fn recommend(s: &SessionReport) -> Vec<String> {
    let mut out = Vec::new();
    let of = |k: EvidenceKind| s.evidence.iter().filter(|e| e.kind == k).collect::<Vec<_>>();
    let abandoned = of(EvidenceKind::AbandonedPty);
    let left = of(EvidenceKind::LeftBehindPty);
    let fds = of(EvidenceKind::FdGrowth);
    let holder = leaking_process(s).map(|(pid, comm, _, _)| if comm.is_empty() { format!("pid {pid}") } else { format!("pid {pid} ({comm})") });
    let holder = holder.unwrap_or_else(|| "the session".into());
    if !abandoned.is_empty() {
        out.push(format!(
            "{holder} keeps PTY masters after nothing uses them any more ({} abandoned PTY(s){}): close the master when its child is reaped (node-pty: let onExit fire and do not keep the IPty; pexpect: close())",
            abandoned.len(),
            first_command(&abandoned)
        ));
    }
    if !left.is_empty() {
        out.push(format!(
            "{} command(s) were given up on but left running, each holding its PTY{}: kill a command's process group when it times out",
            left.len(),
            first_command(&left)
        ));
    }
    if let Some(e) = fds.first() {
        out.push(format!("{}: close what each command opens", e.why));
    }
    if !s.recovered.is_empty() && s.judged() != Some(Verdict::LeakDetected) {
        out.push(format!(
            "{} PTY(s) were abandoned for a while and given back later: nothing to do now, but the pattern may recur",
            s.recovered.len()
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
    if s.untracked_children > 0 {
        out.push(format!(
            "{} child process(es) ran untraced (the kernel's TRACKED map was full): counts may be low",
            s.untracked_children
        ));
    }
    out
}

/// Human-readable rendering.
pub fn render_text(r: &Report) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    let _ = writeln!(o, "pty-trace report: {}  ({} lines, {} records)", r.file, r.counts.lines, r.counts.valid_records);
    if r.counts.malformed_lines > 0 {
        let _ = writeln!(o, "  {} malformed line(s) skipped: {:?}", r.counts.malformed_lines, r.counts.malformed_line_numbers);
    }
    if let Some(w) = r.newer_schema_warning() {
        let _ = writeln!(o, "  {w}");
    }
    if let Some(w) = r.unknown_types_note() {
        let _ = writeln!(o, "  {w}");
    }
    match r.verdict_reason() {
        Some(why) => {
            let _ = writeln!(o, "VERDICT: {} ({why})", r.verdict);
        }
        None => {
            let _ = writeln!(o, "VERDICT: {}", r.verdict);
        }
    }
    if let Some(m) = &r.machine {
        render_machine(&mut o, m);
    }
    for s in &r.sessions {
        let why = match (s.verdict, s.observed_verdict) {
            (ReportVerdict::Incomplete, Some(v)) => format!(" (no summary; its snapshots show {v})"),
            (ReportVerdict::Unknown, _) => " (no snapshot and no summary)".to_string(),
            _ => String::new(),
        };
        let _ = writeln!(o, "\nsession {}: {}{why}  ({} .. {})", s.session, s.verdict, s.first_ts, s.last_ts);
        // A session with no snapshot and no summary measured nothing: no figures to show.
        let measured = s.snapshots > 0 || s.summary_verdict.is_some();
        if measured {
            let _ = writeln!(
                o,
                "  commands {}  PTY peak {}  fd peak {}  orphaned PTYs peak {}  abandoned/left-behind PTYs peak {}  health min {:.0} final {:.0}",
                s.commands, s.pty_peak, s.fd_peak, s.orphaned_peak, s.residual_peak, s.health_min, s.health_final
            );
        }
        match (s.judged(), leaking_process(s)) {
            (Some(Verdict::LeakDetected | Verdict::Recovered), Some((pid, comm, cmd, n))) => {
                let cmd = cmd.map(|a| a.join(" ")).unwrap_or_default();
                let _ = writeln!(o, "  leaking process: pid {pid} {comm} ({cmd}): {n} PTY(s) abandoned or left behind");
            }
            _ => {
                if let Some(c) = &s.top_holder {
                    let cmd = c.command.as_ref().map(|a| a.join(" ")).unwrap_or_default();
                    let _ = writeln!(o, "  largest PTY holder at the peak: pid {} {} ({cmd}), {} PTY master fd(s), {} fds", c.pid, c.comm, c.pty_masters, c.fds);
                }
            }
        }
        for e in &s.evidence {
            let _ = writeln!(o, "  evidence: {}", e.why);
        }
        for e in &s.recovered {
            let _ = writeln!(o, "  recovered: {}", e.why);
        }
        if let Some(e) = s.est_seconds_to_exhaustion {
            let _ = writeln!(o, "  time to exhaustion (estimate): {:.0} s", e);
        }
        if measured {
            let _ = writeln!(o, "  timeline (health / fds / PTYs):");
        }
        for p in &s.timeline {
            let _ = writeln!(o, "    {}  {:>5.0}  {:>5}  {:>4}", p.ts, p.health, p.fds, p.ptys);
        }
        for a in &s.alerts {
            let _ = writeln!(o, "  ALERT {} health {:.0}: {}", a.ts, a.health, a.reasons.join("; "));
        }
        for d in &s.decisions {
            let _ = writeln!(o, "  DECISION {} {} (health {:.0}): {}", d.ts, d.action.as_str(), d.health, d.reasons.join("; "));
        }
        if !s.leaked_at_end.is_empty() {
            let _ = writeln!(o, "  still open at the end: {} fd(s)/PTY(s)", s.leaked_at_end.len());
        }
        if measured {
            let _ = writeln!(o, "  lost events {}  untracked children {}  drift {}", s.lost_events, s.untracked_children, s.drift);
        }
        for rec in &s.recommendations {
            let _ = writeln!(o, "  -> {rec}");
        }
    }
    o
}

/// The machine part of a report: the pool, then who drained it, from when.
fn render_machine(o: &mut String, m: &MachineHistory) {
    use std::fmt::Write;
    let _ = writeln!(
        o,
        "\nmachine: {} records ({} .. {}): PTYs {} -> {} (peak {} of {})",
        m.records, m.first_ts, m.last_ts, m.pty_nr_first, m.pty_nr_last, m.pty_nr_peak, m.pty_max
    );
    match &m.culprit {
        Some(c) => {
            let since = c.growing_since.as_deref().unwrap_or(&c.first_ts);
            let container = c.container.as_ref().map_or(String::new(), |x| format!(" in {x}"));
            let _ = writeln!(
                o,
                "  drained by pid {} ({}){container}: PTY masters {} -> {} since {since}, {} orphaned at the end",
                c.pid, c.command, c.masters_first, c.masters_last, c.orphaned_last
            );
        }
        None => {
            let _ = writeln!(o, "  no process gained PTY masters it left orphaned");
        }
    }
    for h in m.holders.iter().take(10) {
        let _ = writeln!(o, "    pid {:>7}  masters {:>5} -> {:<5} orphaned {:>5}  {}", h.pid, h.masters_first, h.masters_last, h.orphaned_last, h.command);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::core::records::{Envelope, Totals};

    /// A `snapshot` line as the tracer writes it.
    pub(crate) fn snapshot_line(ts: &str, session: u32, health: f64, commands: usize, fds: usize, ptys: usize, orphaned: usize) -> String {
        let rec: SnapshotRec = SnapshotRec {
            session,
            processes: vec![ProcessRec {
                pid: 100 + ptys as u32,
                ppid: 1,
                comm: "agent".into(),
                fds,
                pty_masters: ptys,
                pty_slaves: 0,
                command: Some(vec!["node".into(), "agent.js".into()]),
                age_s: 1.0,
            }],
            totals: Totals { processes: 1, fds, pty_masters: ptys, pty_slaves: 0, ptys, orphaned_ptys: orphaned },
            ptys: Vec::new(),
            commands,
            execs: commands,
            health,
            leak_score: 3.0 * orphaned as f64,
            pty_per_command: 0.0,
            fd_per_command: 0.0,
            est_seconds_to_exhaustion: None,
            reasons: vec![],
            pty_nr: 0,
            pty_max: 4096,
            lost_events: 0,
            untracked_children: 0,
            unreadable_procs: 0,
            drift: 0,
            drift_by_cause: BTreeMap::new(),
            residual_ptys: orphaned,
            evidence: (0..orphaned)
                .map(|i| Evidence {
                    kind: EvidenceKind::AbandonedPty,
                    pty: Some(i as u32),
                    pid: Some(100 + ptys as u32),
                    fd: Some(10 + i as i32),
                    command: Some(vec!["sh".into(), "-c".into(), "ls".into()]),
                    since_s: 6.0,
                    commands_since: 3,
                    ended: None,
                    why: format!("PTY {i}: abandoned"),
                })
                .collect(),
            leaking: false,
            early: false,
        };
        serde_json::to_string(&Envelope { kind: RecordKind::Snapshot, schema: SCHEMA_VERSION, ts, body: &rec }).unwrap()
    }

    /// A `summary` line with `verdict` (everything else empty).
    pub(crate) fn summary_line(ts: &str, session: u32, verdict: Verdict) -> String {
        use crate::core::records::{EndReason, Metrics, Scores, TracerCost};
        let sum = SummaryRec {
            session,
            start: "t0".into(),
            end: ts.into(),
            duration_s: 1.0,
            verdict,
            end_reason: EndReason::RootExited,
            metrics: Metrics::default(),
            alerts: vec![],
            actions: vec![],
            leaked_at_end: vec![],
            descendants_left_running: vec![],
            processes_seen: 1,
            lost_events: 0,
            untracked_children: 0,
            unreadable_procs: 0,
            dropped_records: 0,
            error: None,
            drift: 0,
            drift_by_cause: BTreeMap::new(),
            drift_examples: vec![],
            exit_status: None,
            final_scores: Scores::default(),
            evidence: vec![],
            recovered: vec![],
            tracer: TracerCost::default(),
            gate: None,
        };
        serde_json::to_string(&Envelope { kind: RecordKind::Summary, schema: SCHEMA_VERSION, ts, body: &sum }).unwrap()
    }

    pub(crate) fn alert_line(ts: &str, session: u32, health: f64) -> String {
        let rec = AlertRec { session, ts: String::new(), health, reasons: vec!["x".into()], evidence: Vec::new() };
        serde_json::to_string(&Envelope { kind: RecordKind::Alert, schema: SCHEMA_VERSION, ts, body: &rec }).unwrap()
    }

    fn aggregate(text: &str) -> Aggregate {
        let mut a = Aggregate::default();
        for l in text.split_inclusive('\n') {
            a.line(l.as_bytes());
        }
        a
    }

    #[test]
    fn empty_or_garbage_is_an_error() {
        let e = aggregate("not json\n{\"no_type\":1}\n").finish("f").unwrap_err();
        assert!(e.contains("no valid pty-trace record in 2 line(s)"), "{e}");
    }

    #[test]
    fn malformed_lines_are_counted_with_numbers() {
        let good = snapshot_line("t1", 5, 40.0, 4, 9, 4, 4);
        let r = aggregate(&format!("{good}\n{{broken\n\n{good}\n")).finish("f").unwrap();
        assert_eq!(r.counts.malformed_lines, 1);
        assert_eq!(r.counts.malformed_line_numbers, vec![2]);
        assert_eq!(r.counts.valid_records, 2);
        // No summary: cut short, with what the snapshots show.
        assert_eq!((r.verdict, r.observed_verdict), (ReportVerdict::Incomplete, Some(Verdict::LeakDetected)));
        let s = &r.sessions[0];
        assert_eq!(s.top_holder.as_ref().unwrap().comm, "agent");
        assert!(s.recommendations.iter().any(|x| x.contains("close the master when its child is reaped")), "{:?}", s.recommendations);
        assert!(s.recommendations[0].starts_with("pid 104 (agent) keeps PTY masters"), "{:?}", s.recommendations);
        // A line the fast path accepts but that is cut short is malformed, whatever its kind.
        let cut = &good[..good.len() - 10];
        let start_cut = r#"{"type":"start","schema":1,"ts":"t","version":"#;
        let r = aggregate(&format!("{good}\n{cut}\n{start_cut}\n")).finish("f").unwrap();
        assert_eq!(r.counts.malformed_line_numbers, vec![2, 3]);
    }

    #[test]
    fn recordings_without_distinct_ptys_count_master_fds() {
        let old = snapshot_line("t1", 5, 60.0, 3, 9, 3, 0).replace("\"ptys\":3,", "");
        assert!(!old.contains("\"ptys\":3"), "{old}");
        let r = aggregate(&format!("{old}\n")).finish("f").unwrap();
        assert_eq!((r.counts.valid_records, r.sessions[0].pty_peak), (1, 3));
    }

    #[test]
    fn summaries_from_before_the_tracer_cost_still_give_the_verdict() {
        let mut v: serde_json::Value = serde_json::from_str(&summary_line("t1", 5, Verdict::LeakDetected)).unwrap();
        assert!(v.as_object_mut().unwrap().remove("tracer").is_some());
        let r = aggregate(&format!("{v}\n")).finish("f").unwrap();
        assert_eq!((r.counts.valid_records, r.counts.malformed_lines), (1, 0));
        assert_eq!(r.sessions[0].verdict, ReportVerdict::LeakDetected, "the summary's verdict, not a guess");
        assert_eq!((r.verdict, r.observed_verdict), (ReportVerdict::LeakDetected, None));
    }

    #[test]
    fn newer_schema_lines_are_skipped_and_named() {
        let good = snapshot_line("t1", 5, 90.0, 1, 3, 0, 0);
        let newer = good.replace("\"schema\":1", "\"schema\":2").replace("\"health\":90.0", "\"health\":5.0");
        let r = aggregate(&format!("{good}\n{newer}\n{newer}\n")).finish("rec.jsonl").unwrap();
        let c = &r.counts;
        assert_eq!((c.valid_records, c.newer_schema_lines, c.newer_schema, c.malformed_lines), (1, 2, Some(2), 0));
        assert_eq!(r.sessions[0].health_min, 90.0, "the newer records were not read");
        let w = r.newer_schema_warning().unwrap();
        assert!(w.contains("2 record(s) use schema 2, newer than the schema 1"), "{w}");
        assert!(render_text(&r).contains(&w));
        // Only newer records: still a report (saying so), not "no valid record".
        let r = aggregate(&format!("{newer}\n")).finish("f").unwrap();
        assert_eq!(r.counts.newer_schema_lines, 1);
    }

    /// The text report's `VERDICT:` line.
    fn verdict_line(r: &Report) -> String {
        render_text(r).lines().find(|l| l.starts_with("VERDICT:")).unwrap_or_default().to_string()
    }

    const START: &str = r#"{"type":"start","schema":1,"ts":"t0","version":"0.1.0","sessions":[7],"command":null,"ring_buffer_bytes":1,"attached_tracepoints":4,"syscalls_not_followed":[],"tracefs":"/sys/kernel/tracing","load_ms":1.0,"ready_ms":1.0,"interval_ms":1000}"#;

    // Issue 12 row 14: what `report` says when a recording cannot give a summary's verdict.

    #[test]
    fn a_record_of_an_unknown_type_alone_is_unknown_and_named() {
        let r = aggregate("{\"type\":\"hello\",\"schema\":1,\"ts\":\"t\"}\n").finish("f").unwrap();
        assert_eq!((r.verdict, r.observed_verdict), (ReportVerdict::Unknown, None), "issue 12 row 14: hello-only");
        assert_eq!((r.counts.unknown_type_records, r.counts.unknown_types.get("hello")), (1, Some(&1)));
        let text = render_text(&r);
        assert!(!text.contains("HEALTHY"), "{text}");
        assert!(text.contains(r#"1 record(s) of a type this pty-trace does not know, skipped: "hello" (1)"#), "{text}");
        assert!(verdict_line(&r).starts_with("VERDICT: UNKNOWN (no snapshot and no summary"), "{text}");
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!((&json["verdict"], &json["unknown_type_records"], &json["unknown_types"]["hello"]), (&"UNKNOWN".into(), &1.into(), &1.into()));
        // Without the envelope it is not a pty-trace record at all.
        let e = aggregate("{\"type\":\"hello\"}\n").finish("f").unwrap_err();
        assert!(e.contains("no valid pty-trace record in 1 line(s)"), "{e}");
    }

    #[test]
    fn unknown_types_beside_a_complete_recording_are_counted_and_the_verdict_stands() {
        let text = format!(
            "{START}\n{}\n{{\"type\":\"hello\",\"schema\":1,\"ts\":\"t\"}}\n{{\"type\":\"metrics\",\"schema\":1,\"ts\":\"t\",\"x\":[1]}}\n{{\"type\":\"hello\",\"schema\":1,\"ts\":\"t\"}}\n{}\n",
            snapshot_line("t1", 7, 100.0, 1, 3, 0, 0),
            summary_line("t2", 7, Verdict::Healthy)
        );
        let r = aggregate(&text).finish("f").unwrap();
        assert_eq!((r.verdict, r.counts.valid_records, r.counts.malformed_lines), (ReportVerdict::Healthy, 6, 0));
        assert_eq!(r.counts.unknown_type_records, 3);
        assert_eq!(r.counts.unknown_types, BTreeMap::from([("hello".to_string(), 2), ("metrics".to_string(), 1)]));
        assert!(render_text(&r).contains(r#"3 record(s) of a type this pty-trace does not know, skipped: "hello" (2), "metrics" (1)"#));
        // An unknown type that is not JSON is still malformed.
        let r = aggregate(&format!("{text}{{\"type\":\"hello\",\"schema\":1,\"ts\":\"t\",\n")).finish("f").unwrap();
        assert_eq!((r.counts.unknown_type_records, r.counts.malformed_line_numbers.clone()), (3, vec![7]));
    }

    #[test]
    fn unknown_type_names_are_bounded_across_merged_ranges() {
        let line = |i: usize| format!("{{\"type\":\"kind{i:02}\",\"schema\":1,\"ts\":\"t\"}}\n");
        let mut a = aggregate(&(0..15).map(line).collect::<String>());
        a.merge(aggregate(&(10..40).map(line).collect::<String>()));
        let r = a.finish("f").unwrap();
        assert_eq!(r.counts.unknown_type_records, 45);
        assert_eq!(r.counts.unknown_types.len(), MAX_LISTED_UNKNOWN_TYPES);
        assert_eq!(r.counts.unknown_types["kind12"], 2);
        assert!(r.unknown_types_note().unwrap().ends_with(", others"), "{:?}", r.unknown_types_note());
        let long = format!("{{\"type\":\"{}\",\"schema\":1,\"ts\":\"t\"}}\n", "x".repeat(500));
        let r = aggregate(&long).finish("f").unwrap();
        assert!(r.counts.unknown_types.keys().all(|k| k.chars().count() == MAX_TYPE_NAME_CHARS), "{:?}", r.counts.unknown_types);
    }

    #[test]
    fn a_recording_entirely_of_a_newer_schema_is_unknown() {
        let newer = snapshot_line("t1", 5, 90.0, 1, 3, 0, 0).replace("\"schema\":1", "\"schema\":99");
        let sum = summary_line("t2", 5, Verdict::Healthy).replace("\"schema\":1", "\"schema\":99");
        let r = aggregate(&format!("{newer}\n{sum}\n")).finish("f").unwrap();
        assert_eq!(r.verdict, ReportVerdict::Unknown, "issue 12 row 14: schema-99");
        assert!(r.sessions.is_empty());
        let text = render_text(&r);
        assert!(!text.contains("HEALTHY"), "{text}");
        assert!(text.contains("2 record(s) use schema 99"), "{text}");
    }

    #[test]
    fn a_start_alone_is_unknown_and_names_its_sessions() {
        let r = aggregate(&format!("{START}\n")).finish("f").unwrap();
        assert_eq!((r.verdict, r.observed_verdict), (ReportVerdict::Unknown, None), "issue 12 row 14: start-only");
        assert_eq!(r.sessions.len(), 1);
        let s = &r.sessions[0];
        assert_eq!((s.session, s.verdict, s.observed_verdict, s.snapshots), (7, ReportVerdict::Unknown, None, 0));
        assert_eq!((s.first_ts.as_str(), s.last_ts.as_str()), ("t0", "t0"));
        let text = render_text(&r);
        assert!(!text.contains("HEALTHY"), "{text}");
        assert!(text.contains("session 7: UNKNOWN (no snapshot and no summary)"), "{text}");
        assert!(!text.contains("health min"), "no figures for a session that measured nothing: {text}");
        // A session with alerts only measured nothing either.
        let r = aggregate(&format!("{START}\n{}\n", alert_line("t1", 7, 60.0))).finish("f").unwrap();
        assert_eq!((r.verdict, r.sessions[0].verdict), (ReportVerdict::Unknown, ReportVerdict::Unknown));
        assert!(render_text(&r).contains("ALERT t1 health 60"), "{}", render_text(&r));
    }

    #[test]
    fn a_recording_cut_short_is_incomplete_with_what_its_snapshots_show() {
        let healthy = format!("{START}\n{}\n{}\n", snapshot_line("t1", 7, 100.0, 1, 3, 0, 0), snapshot_line("t2", 7, 100.0, 2, 3, 0, 0));
        let r = aggregate(&healthy).finish("f").unwrap();
        assert_eq!((r.verdict, r.observed_verdict), (ReportVerdict::Incomplete, Some(Verdict::Healthy)), "issue 12 row 14: cut-off");
        assert_eq!((r.sessions[0].verdict, r.sessions[0].observed_verdict), (ReportVerdict::Incomplete, Some(Verdict::Healthy)));
        assert_eq!(
            verdict_line(&r),
            "VERDICT: INCOMPLETE (no summary for session 7: the recording was cut short; up to the cut it shows HEALTHY)"
        );
        assert!(render_text(&r).contains("session 7: INCOMPLETE (no summary; its snapshots show HEALTHY)  (t1 .. t2)"), "{}", render_text(&r));
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!((&json["verdict"], &json["observed_verdict"]), (&"INCOMPLETE".into(), &"HEALTHY".into()));
        assert_eq!(json["sessions"][0]["verdict"], "INCOMPLETE");
        // Leaking at the cut.
        let leaky = format!("{START}\n{}\n", snapshot_line("t1", 7, 40.0, 4, 9, 4, 4));
        let r = aggregate(&leaky).finish("f").unwrap();
        assert_eq!((r.verdict, r.observed_verdict), (ReportVerdict::Incomplete, Some(Verdict::LeakDetected)));
        assert!(render_text(&r).contains("leaking process: pid 104 agent"), "{}", render_text(&r));
        // The same recording with its summary is complete.
        let r = aggregate(&format!("{healthy}{}\n", summary_line("t3", 7, Verdict::Healthy))).finish("f").unwrap();
        assert_eq!((r.verdict, r.observed_verdict, r.sessions[0].observed_verdict), (ReportVerdict::Healthy, None, None));
        assert_eq!(verdict_line(&r), "VERDICT: HEALTHY");
    }

    #[test]
    fn one_session_cut_short_makes_the_report_incomplete_with_the_worst_seen() {
        let text = format!(
            "{}\n{}\n{}\n",
            snapshot_line("t1", 1, 100.0, 1, 3, 0, 0),
            snapshot_line("t1", 2, 100.0, 1, 3, 0, 0),
            summary_line("t2", 2, Verdict::LeakDetected)
        );
        let r = aggregate(&text).finish("f").unwrap();
        assert_eq!((r.verdict, r.observed_verdict), (ReportVerdict::Incomplete, Some(Verdict::LeakDetected)));
        let v: Vec<_> = r.sessions.iter().map(|s| (s.session, s.verdict, s.observed_verdict)).collect();
        assert_eq!(v, vec![(1, ReportVerdict::Incomplete, Some(Verdict::Healthy)), (2, ReportVerdict::LeakDetected, None)]);
        assert!(verdict_line(&r).contains("no summary for session 1:"), "{}", verdict_line(&r));
        // A session the start announced and nothing else: the others still judge.
        let text = format!("{START}\n{}\n{}\n", snapshot_line("t1", 2, 100.0, 1, 3, 0, 0), summary_line("t2", 2, Verdict::Healthy));
        let r = aggregate(&text).finish("f").unwrap();
        assert_eq!((r.verdict, r.observed_verdict), (ReportVerdict::Incomplete, Some(Verdict::Healthy)));
        assert_eq!(r.sessions[1].verdict, ReportVerdict::Unknown);
        // Complete sessions: the worst summary.
        let text = format!("{}\n{}\n", summary_line("t2", 1, Verdict::Recovered), summary_line("t2", 2, Verdict::Healthy));
        assert_eq!(aggregate(&text).finish("f").unwrap().verdict, ReportVerdict::Recovered);
    }

    #[test]
    fn split_ranges_keep_the_start_and_the_cut() {
        let text = format!("{START}\n{}\n{}\n", snapshot_line("t1", 7, 100.0, 1, 3, 0, 0), snapshot_line("t2", 7, 100.0, 2, 3, 0, 0));
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        let mut a = aggregate(lines[0]);
        a.merge(aggregate(&lines[1..].concat()));
        let r = a.finish("f").unwrap();
        assert_eq!((r.verdict, r.sessions.len(), r.sessions[0].snapshots), (ReportVerdict::Incomplete, 1, 2));
        assert_eq!(r.sessions[0].first_ts, "t1");
    }

    #[test]
    fn timeline_stays_bounded() {
        let mut a = Aggregate::default();
        for i in 0..10_000 {
            a.line(snapshot_line(&i.to_string(), 1, 100.0, 0, i, 0, 0).as_bytes());
        }
        let r = a.finish("f").unwrap();
        assert!(r.sessions[0].timeline.len() < TIMELINE_POINTS);
        assert_eq!(r.sessions[0].snapshots, 10_000);
        assert_eq!(r.sessions[0].fd_peak, 9_999);
    }
}
