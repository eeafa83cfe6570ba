//! The bodies of JSONL records, built from the model and the scorer (pure; the field names are
//! the public schema, documented in docs/jsonl.md and schema/pty-trace.schema.json).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::{
    model::{FdKind, Model, pty::PtyPair},
    score::Scores,
};

#[derive(Clone, Debug, Serialize)]
pub struct ProcessRec {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub fds: usize,
    pub pty_masters: usize,
    pub pty_slaves: usize,
    /// The running command's argv (redacted), when its exec was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    pub age_s: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Totals {
    pub processes: usize,
    pub fds: usize,
    pub pty_masters: usize,
    pub pty_slaves: usize,
    /// Distinct PTYs whose master a session process holds (a master fd inherited by a forked
    /// child counts once); what `max_ptys`, `pty_peak` and PTY growth are measured in.
    pub ptys: usize,
    pub orphaned_ptys: usize,
}

#[derive(Clone, Debug, Serialize)]
pub struct SnapshotRec {
    pub session: u32,
    pub processes: Vec<ProcessRec>,
    pub totals: Totals,
    pub ptys: Vec<PtyPair>,
    /// Commands started (see `model::Session::commands`).
    pub commands: usize,
    /// All execs, chained ones included.
    pub execs: usize,
    pub health: f64,
    pub leak_score: f64,
    pub pty_per_command: f64,
    pub fd_per_command: f64,
    /// Labelled an estimate: extrapolated from the current growth rate.
    pub est_seconds_to_exhaustion: Option<f64>,
    pub reasons: Vec<String>,
    pub pty_nr: u64,
    pub pty_max: u64,
    pub lost_events: u64,
    pub drift: u64,
    pub drift_by_cause: BTreeMap<&'static str, u64>,
}

/// Per-process rows and totals for a session.
pub fn session_counts(model: &Model, session: u32, now_ns: u64) -> (Vec<ProcessRec>, Totals) {
    let mut rows = Vec::new();
    let mut totals = Totals::default();
    let mut tables_counted = BTreeSet::new();
    for p in model.processes_in(session) {
        let (fds, masters, slaves) = model.counts(p.pid);
        rows.push(ProcessRec {
            pid: p.pid,
            ppid: p.ppid,
            comm: p.comm.clone(),
            fds,
            pty_masters: masters,
            pty_slaves: slaves,
            command: p.command.and_then(|c| model.command(c)).map(|c| c.argv.clone()),
            age_s: now_ns.saturating_sub(p.started_ns) as f64 / 1e9,
        });
        totals.processes += 1;
        // A table shared through CLONE_FILES holds its fds once.
        if tables_counted.insert(p.table) {
            totals.fds += fds;
            totals.pty_masters += masters;
            totals.pty_slaves += slaves;
        }
    }
    (rows, totals)
}

#[derive(Clone, Debug, Serialize)]
pub struct LeakedFd {
    pub pid: u32,
    pub comm: String,
    pub fd: i32,
    pub kind: &'static str,
    pub target: String,
    pub pty_index: Option<u32>,
    pub opener_pid: u32,
    pub command: Option<Vec<String>>,
    pub age_s: f64,
}

/// Fds still open at the end that look leaked: masters of orphaned PTYs (`orphaned` = their
/// indexes), slaves of dead PTYs, and fds opened while traced by a command that is no longer
/// running anywhere in the session. Fds that existed before tracing and live PTY pairs (a
/// terminal multiplexer's panes) are not leaks.
pub fn leaked_at_end(model: &Model, session: u32, now_ns: u64, orphaned: &BTreeSet<u32>) -> Vec<LeakedFd> {
    let running: BTreeSet<usize> = model.processes_in(session).filter_map(|p| p.command).collect();
    let mut out = Vec::new();
    let mut tables = BTreeSet::new();
    for p in model.processes_in(session) {
        if !tables.insert(p.table) {
            continue;
        }
        let Some(t) = model.table_of(p.pid) else { continue };
        for (fd, e) in &t.fds {
            let orphan_master = e.kind == FdKind::PtyMaster && e.pty_index.is_some_and(|i| orphaned.contains(&i));
            let dead_slave = e.kind == FdKind::PtySlave && e.target.ends_with(" (deleted)");
            let command_ended = !e.from_proc && e.command.is_some_and(|c| !running.contains(&c));
            if orphan_master || dead_slave || command_ended {
                out.push(LeakedFd {
                    pid: p.pid,
                    comm: p.comm.clone(),
                    fd: *fd,
                    kind: e.kind.as_str(),
                    target: e.target.clone(),
                    pty_index: e.pty_index,
                    opener_pid: e.opener_pid,
                    command: e.command.and_then(|c| model.command(c)).map(|c| c.argv.clone()),
                    age_s: now_ns.saturating_sub(e.opened_ns) as f64 / 1e9,
                });
            }
        }
    }
    out
}

/// Distinct PTYs with a master held in the session.
pub fn distinct_ptys(ptys: &[PtyPair]) -> usize {
    ptys.iter().filter(|p| !p.masters.is_empty()).count()
}

#[derive(Clone, Debug, Serialize)]
pub struct Metrics {
    pub total_commands: usize,
    pub total_execs: usize,
    pub fd_peak: usize,
    pub pty_peak: usize,
    pub health_score_min: f64,
    pub health_score_final: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct AlertRec {
    pub session: u32,
    /// Omitted in the `alert` record itself, whose envelope carries `ts`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ts: String,
    pub health: f64,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DecisionRec {
    pub action: &'static str,
    pub session: u32,
    /// Omitted in the `decision` record itself, whose envelope carries `ts`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ts: String,
    pub health: f64,
    pub reasons: Vec<String>,
    /// What `--on-rotate` did, when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookRec>,
}

/// The `--on-rotate` command that was started for a decision.
#[derive(Clone, Debug, Serialize)]
pub struct HookRec {
    pub argv: Vec<String>,
    pub pid: Option<u32>,
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct DescendantRec {
    pub pid: u32,
    pub comm: String,
    pub command: Option<Vec<String>>,
}

#[derive(Clone, Debug, Serialize)]
pub struct SummaryRec {
    pub session: u32,
    pub start: String,
    pub end: String,
    pub duration_s: f64,
    pub verdict: &'static str,
    /// Why tracing of this session ended: `root_exited`, `duration`, `interrupted`, `rotate`.
    pub end_reason: &'static str,
    pub metrics: Metrics,
    pub alerts: Vec<AlertRec>,
    pub actions: Vec<DecisionRec>,
    pub leaked_at_end: Vec<LeakedFd>,
    pub descendants_left_running: Vec<DescendantRec>,
    pub processes_seen: u64,
    pub lost_events: u64,
    pub drift: u64,
    pub drift_by_cause: BTreeMap<&'static str, u64>,
    /// The first corrections in words: attach them to a bug report.
    pub drift_examples: Vec<String>,
    /// `run`: the command's exit status (128+N when killed by signal N).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    pub final_scores: Scores,
    /// What tracing cost: events applied and the tracer's own resources.
    pub tracer: TracerCost,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TracerCost {
    /// Kernel events decoded and applied to the model (all sessions).
    pub events: u64,
    /// Records that could not be decoded (should be 0).
    pub decode_errors: u64,
    /// CPU seconds pty-trace itself used (user + system), from getrusage.
    pub cpu_s: f64,
    /// pty-trace's peak resident set size in KiB.
    pub max_rss_kib: u64,
    /// Kernel ring buffer size in bytes.
    pub ring_buffer_bytes: u32,
}

/// CPU seconds and peak RSS (KiB) of this process so far.
pub fn own_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss as u64)
}

pub fn verdict(leak_seen: bool) -> &'static str {
    if leak_seen { "LEAK DETECTED" } else { "HEALTHY" }
}
