//! Model + scorer -> records: what a session's `snapshot` and `summary` say, and the fd
//! details the live view shows. Pure: the few facts that come from /proc or the kernel
//! (machine PTY usage, RLIMIT_NOFILE of each process, slave holders outside the model, loss
//! counters, timestamps) are passed in by the session runtime.

use std::collections::{BTreeMap, BTreeSet};

use super::{
    evidence::{Findings, LeakEvidence},
    model::{FdKind, Model, pty::{PtySlot, is_orphaned, orphaned_slots}},
    records::{
        AlertRec, DecisionAction, DecisionRec, DescendantRec, EndReason, Evidence, FdRec, HookRec, LeakedFd, Metrics,
        ProcessRec, PtyPair, SnapshotRec, SummaryRec, Totals, TracerCost, Verdict,
    },
    score::{Crossing, Sample, Scorer, Thresholds},
};

/// What /proc and the kernel said at this interval, for every session.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    pub now_ns: u64,
    /// `/proc/sys/kernel/pty/nr` and `pty/max` (read for snapshots; a summary does not use them).
    pub pty_nr: u64,
    pub pty_max: u64,
    /// RLIMIT_NOFILE (soft) of the sessions' processes, where it could be read (snapshots only).
    pub nofile_limits: BTreeMap<u32, u64>,
    /// PTY indexes whose slave some untraced process holds.
    pub slaves_held_outside: BTreeSet<PtySlot>,
    pub lost_events: u64,
    pub untracked_children: u64,
    /// Traced processes whose fd table /proc refused to show in the latest scan.
    pub unreadable_procs: u64,
}

/// One session's scoring state beyond the model: its scorer, peaks, and what it decided.
#[derive(Clone, Debug)]
pub struct SessionBook {
    pub root: u32,
    pub scorer: Scorer,
    pub fd_peak: usize,
    pub pty_peak: usize,
    pub alerts: Vec<AlertRec>,
    pub actions: Vec<DecisionRec>,
    pub summarized: bool,
    /// What the scores rest on (see `evidence`).
    evidence: LeakEvidence,
    /// The findings of the latest snapshot, for the alerts and decisions it causes.
    pub findings: Findings,
}

impl SessionBook {
    pub fn new(root: u32, thresholds: Thresholds) -> Self {
        SessionBook {
            root,
            scorer: Scorer::new(thresholds),
            fd_peak: 0,
            pty_peak: 0,
            alerts: Vec::new(),
            actions: Vec::new(),
            summarized: false,
            evidence: LeakEvidence::default(),
            findings: Findings::default(),
        }
    }

    /// The sample the scorer takes from the evidence.
    fn sample(&self, model: &Model, facts: &Facts, rows: &[ProcessRec], f: &Findings, died_holding: u64) -> Sample {
        let root = self.root;
        // Headroom of the session's own processes that can open anything at all: a sandboxed
        // helper running with RLIMIT_NOFILE at or below its open fds opens nothing more.
        let core = model.sessions.get(&root).map(|s| &s.core_pids);
        let nofile_headroom = rows
            .iter()
            .filter(|r| core.is_some_and(|c| c.contains(&r.pid)))
            .filter_map(|r| facts.nofile_limits.get(&r.pid).map(|l| (*l, r.fds as u64)))
            .filter(|(limit, fds)| limit > fds)
            .map(|(limit, fds)| limit - fds)
            .min();
        let root_command = model.procs.get(&root).and_then(|p| p.command);
        let lingering = model
            .processes_in(root)
            .filter(|p| p.pid != root && p.command.is_some() && p.command == root_command && p.ppid == 1)
            .count() as u64;
        Sample {
            ts_ns: facts.now_ns,
            abandoned_ptys: f.abandoned.len() as u64,
            left_behind_ptys: f.left_behind.len() as u64,
            died_holding,
            pty_per_command: f.pty_per_command,
            fd_per_command: f.fd_per_command,
            fd_growth_sustained: f.fd_growth.is_some(),
            pty_per_minute: f.pty_per_minute,
            fd_per_minute: f.fd_per_minute,
            lingering,
            nofile_headroom,
            pty_headroom: (facts.pty_max > 0).then(|| facts.pty_max.saturating_sub(facts.pty_nr)),
        }
    }

    /// Scores the session now and builds its `snapshot`; returns the threshold crossings for
    /// the runtime to act on (write, run the hook) and then [`record_alert`](Self::record_alert)
    /// / [`record_decision`](Self::record_decision).
    pub fn snapshot(&mut self, model: &Model, facts: &Facts) -> (SnapshotRec, Vec<Crossing>) {
        let root = self.root;
        let now = facts.now_ns;
        let ptys = model.pty_registry(root, &facts.slaves_held_outside);
        let (rows, mut totals) = session_counts(model, root, now);
        totals.orphaned_ptys = ptys.iter().filter(|p| p.orphaned).count();
        totals.ptys = distinct_ptys(&ptys);
        let (commands, execs) = model.sessions.get(&root).map(|s| (s.commands.len(), s.execs as usize)).unwrap_or((0, 0));
        let findings = self.evidence.observe(model, root, &ptys, now, &self.scorer.th);
        let sample = self.sample(model, facts, &rows, &findings, 0);
        let (scores, crossings) = self.scorer.observe(&sample);
        let residual_ptys = findings.residual_ptys();
        let evidence = findings.live_evidence();
        self.findings = findings;
        self.fd_peak = self.fd_peak.max(totals.fds);
        self.pty_peak = self.pty_peak.max(totals.ptys);
        let snap = SnapshotRec {
            session: root,
            processes: rows,
            totals,
            ptys,
            commands,
            execs,
            health: scores.health,
            leak_score: scores.leak_score,
            pty_per_command: scores.pty_per_command,
            fd_per_command: scores.fd_per_command,
            est_seconds_to_exhaustion: scores.est_seconds_to_exhaustion,
            reasons: scores.reasons,
            pty_nr: facts.pty_nr,
            pty_max: facts.pty_max,
            lost_events: facts.lost_events,
            untracked_children: facts.untracked_children,
            unreadable_procs: facts.unreadable_procs,
            drift: model.stats.drift,
            drift_by_cause: drift_by_cause(model),
            residual_ptys,
            evidence,
            leaking: scores.leaking,
            early: false,
        };
        (snap, crossings)
    }

    /// Keeps an alert for the summary and returns its record.
    pub fn record_alert(&mut self, ts: &str, health: f64, reasons: Vec<String>) -> AlertRec {
        let evidence = self.findings.live_evidence();
        let a = AlertRec { session: self.root, ts: ts.to_string(), health, reasons, evidence };
        self.alerts.push(a.clone());
        AlertRec { ts: String::new(), ..a }
    }

    /// Keeps a rotate decision for the summary and returns its record.
    pub fn record_decision(&mut self, ts: &str, health: f64, reasons: Vec<String>, hook: Option<HookRec>) -> DecisionRec {
        let evidence = self.findings.live_evidence();
        let d = DecisionRec { action: DecisionAction::Rotate, session: self.root, ts: ts.to_string(), health, reasons, evidence, hook };
        self.actions.push(d.clone());
        DecisionRec { ts: String::new(), ..d }
    }

    /// The verdict as it stands (the live view's): leaking now if the latest snapshot still has
    /// evidence.
    pub fn verdict_so_far(&self) -> Verdict {
        let f = &self.findings;
        Verdict::of(self.scorer.leak_seen, self.scorer.leak_seen && (f.residual_ptys() > 0 || f.fd_growth.is_some()))
    }

    /// The session's `summary`. Marks the book summarized.
    pub fn summary(&mut self, model: &Model, facts: &Facts, end: &SummaryContext<'_>) -> Option<SummaryRec> {
        let root = self.root;
        let now = facts.now_ns;
        let s = model.sessions.get(&root)?;
        let ended = s.ended_ns.unwrap_or(now);
        // A root that ended only because we stopped it (run/demo) keeps our reason.
        let ended_by_itself = s.ended_ns.is_some_and(|e| end.stopped_at_ns.is_none_or(|stop| e < stop));
        let reason = if ended_by_itself { EndReason::RootExited } else { end.reason };
        // Descendants outliving their session: only meaningful once the root is gone.
        let root_gone = s.ended_ns.is_some();
        let descendants: Vec<DescendantRec> = model
            .processes_in(root)
            .filter(|p| root_gone && p.pid != root)
            .map(|p| DescendantRec {
                pid: p.pid,
                comm: p.comm.clone(),
                command: p.command.and_then(|c| model.command(c)).map(|c| c.argv.clone()),
            })
            .collect();
        let registry = model.pty_registry(root, &facts.slaves_held_outside);
        let orphaned = orphaned_slots(&registry);
        // A last look: PTYs released since the last snapshot (at the root's exit, say) are
        // judged as they were when released.
        let findings = self.evidence.observe(model, root, &registry, now, &self.scorer.th);
        let root_end = s.ended_ns.unwrap_or(u64::MAX);
        let mut at_end: Vec<Evidence> = findings.died_holding_since(root_end).cloned().collect();
        let (teardown, closed_earlier) = findings.closes(model, root, s.ended_ns, &self.scorer.th);
        at_end.extend(teardown);
        // A summary's facts carry no RLIMIT_NOFILE (it estimates nothing): no rows needed.
        let sample = self.sample(model, facts, &[], &findings, at_end.len() as u64);
        self.scorer.observe(&sample);
        let mut evidence = findings.pty_evidence();
        evidence.extend(at_end);
        evidence.extend(findings.fd_growth.iter().cloned());
        let leaking_at_end = self.scorer.leak_seen && !evidence.is_empty();
        let verdict = Verdict::of(self.scorer.leak_seen, leaking_at_end);
        let mut recovered = closed_earlier;
        recovered.extend(findings.died_holding_before(root_end).cloned());
        self.findings = findings;
        self.summarized = true;
        Some(SummaryRec {
            session: root,
            start: (end.ts_of)(s.started_ns),
            end: (end.ts_of)(ended),
            duration_s: ended.saturating_sub(s.started_ns) as f64 / 1e9,
            verdict,
            end_reason: reason,
            metrics: Metrics {
                total_commands: s.commands.len(),
                total_execs: s.execs as usize,
                fd_peak: self.fd_peak,
                pty_peak: self.pty_peak,
                health_score_min: self.scorer.health_min,
                health_score_final: self.scorer.last.health,
            },
            alerts: self.alerts.clone(),
            actions: self.actions.clone(),
            leaked_at_end: leaked_at_end(model, root, now, &orphaned),
            descendants_left_running: descendants,
            processes_seen: s.processes_seen,
            lost_events: facts.lost_events,
            untracked_children: facts.untracked_children,
            unreadable_procs: end.unreadable_procs,
            dropped_records: end.dropped_records,
            error: end.error.clone(),
            drift: model.stats.drift,
            drift_by_cause: drift_by_cause(model),
            drift_examples: model.stats.drift_examples.clone(),
            exit_status: if Some(root) == end.child { end.exit_status } else { None },
            final_scores: self.scorer.last.clone(),
            evidence,
            recovered,
            tracer: end.cost.clone(),
            gate: end.budget.map(|b| {
                // Stopped by us: what the tree held before it was killed (see `Tracer::finish`).
                let at_stop = end.open_at_stop.and_then(|m| m.get(&root));
                let open = at_stop.cloned().unwrap_or_else(|| super::gate::open_at_end(model, root));
                let blind = super::gate::Blind { lost_events: facts.lost_events, untracked_children: facts.untracked_children };
                super::records::GateRec { stopped: at_stop.is_some(), ..super::gate::judge(verdict, &open, b, blind) }
            }),
        })
    }
}

/// How tracing ended, for the summaries.
pub struct SummaryContext<'a> {
    pub reason: EndReason,
    /// When we stopped tracing (signal, quit, --duration, --exit-on-rotate); `None` when every
    /// root exited by itself.
    pub stopped_at_ns: Option<u64>,
    /// The `run` child's pid and exit status.
    pub child: Option<u32>,
    pub exit_status: Option<i32>,
    pub cost: TracerCost,
    /// Most processes /proc refused to show in one scan.
    pub unreadable_procs: u64,
    /// JSONL records not written so far.
    pub dropped_records: u64,
    /// What stopped tracing, for `EndReason::Failed`.
    pub error: Option<String>,
    /// Monotonic ns -> RFC 3339.
    pub ts_of: &'a dyn Fn(u64) -> String,
    /// `run --fail-on-leak`: judge each session against this budget.
    pub budget: Option<super::gate::Budget>,
    /// With a budget, when tracing stopped the command: what each session's tree held just
    /// before it was stopped.
    pub open_at_stop: Option<&'a BTreeMap<u32, super::gate::OpenAtEnd>>,
}

fn drift_by_cause(model: &Model) -> BTreeMap<String, u64> {
    model.stats.drift_by_cause.iter().map(|(k, v)| (k.to_string(), *v)).collect()
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

/// Fds still open at the end that look leaked: masters of orphaned PTYs (`orphaned` = their
/// indexes), slaves of dead PTYs, and fds opened while traced by a command that is no longer
/// running anywhere in the session. Fds that existed before tracing and live PTY pairs (a
/// terminal multiplexer's panes) are not leaks.
pub fn leaked_at_end(model: &Model, session: u32, now_ns: u64, orphaned: &BTreeSet<PtySlot>) -> Vec<LeakedFd> {
    let running: BTreeSet<usize> = model.processes_in(session).filter_map(|p| p.command).collect();
    let mut out = Vec::new();
    for (p, fd, e) in model.session_fds(session) {
        let orphan_master = e.kind == FdKind::PtyMaster && e.pty_index.is_some_and(|i| is_orphaned(orphaned, e.pty_devpts, i));
        let dead_slave = e.kind == FdKind::PtySlave && e.target.ends_with(" (deleted)");
        let command_ended = !e.from_proc && e.command.is_some_and(|c| !running.contains(&c));
        if orphan_master || dead_slave || command_ended {
            out.push(LeakedFd {
                pid: p.pid,
                comm: p.comm.clone(),
                fd,
                kind: e.kind,
                target: e.target.clone(),
                pty_index: e.pty_index,
                opener_pid: e.opener_pid,
                command: e.command.and_then(|c| model.command(c)).map(|c| c.argv.clone()),
                age_s: now_ns.saturating_sub(e.opened_ns) as f64 / 1e9,
            });
        }
    }
    out
}

/// Distinct PTYs with a master held in the session.
pub fn distinct_ptys(ptys: &[PtyPair]) -> usize {
    ptys.iter().filter(|p| !p.masters.is_empty()).count()
}

/// The open fds of every process of a snapshot, for the live view's details pane.
pub fn fd_details(model: &Model, snap: &SnapshotRec, now_ns: u64) -> BTreeMap<u32, Vec<FdRec>> {
    let orphan_holders: BTreeSet<(u32, i32)> =
        snap.ptys.iter().filter(|p| p.orphaned).flat_map(|p| p.masters.iter().map(|h| (h.pid, h.fd))).collect();
    snap.processes
        .iter()
        .filter_map(|p| {
            let t = model.table_of(p.pid)?;
            let fds = t
                .fds
                .iter()
                .map(|(fd, e)| FdRec {
                    fd: *fd,
                    kind: e.kind,
                    target: e.target.clone(),
                    age_s: now_ns.saturating_sub(e.opened_ns) as f64 / 1e9,
                    command: e.command.and_then(|c| model.command(c)).map(|c| c.argv.clone()),
                    from_proc: e.from_proc,
                    pty_index: e.pty_index,
                    pty_devpts: e.pty_devpts,
                    orphaned: orphan_holders.contains(&(p.pid, *fd)),
                })
                .collect();
            Some((p.pid, fds))
        })
        .collect()
}
