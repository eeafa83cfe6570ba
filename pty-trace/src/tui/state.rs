//! What the view shows, as plain data: built each interval from the records the tracer has
//! just written (`SnapshotRec`s), the fd details of their processes (`FdRec`s), and the
//! alerts and decisions so far. Nothing here reads the model: the view shows what the JSONL
//! says, so the two cannot disagree.

use std::collections::{BTreeMap, BTreeSet};

use crate::core::{
    machine::DevId,
    records::{EvidenceKind, FdRec, ProbeBackend, ProcessRec, SnapshotRec, Verdict},
    score::Thresholds,
};

/// One session's header lines.
#[derive(Clone, Debug, Default)]
pub struct SessionView {
    pub root: u32,
    pub health: f64,
    pub leak_score: f64,
    /// The session's verdict so far.
    pub verdict: Verdict,
    pub commands: usize,
    /// Distinct PTYs whose master the session's processes hold.
    pub ptys: usize,
    pub orphaned: usize,
    pub fds: usize,
    pub reasons: Vec<String>,
}

/// One open fd of a process, for the details pane.
#[derive(Clone, Debug, Default)]
pub struct FdView {
    pub fd: i32,
    pub kind: &'static str,
    pub target: String,
    pub age_s: f64,
    /// The command that opened it (`(before tracing)` for fds found in /proc).
    pub command: String,
    /// The `N` of `/dev/pts/N` for PTY ends, when known.
    pub pty_index: Option<u32>,
    /// The PTY end's devpts instance, set only when the session's PTYs span several (then
    /// `/dev/pts/3` alone would be ambiguous).
    pub instance: Option<DevId>,
    /// A PTY master nobody holds the slave of.
    pub orphaned: bool,
}

impl From<&FdRec> for FdView {
    fn from(e: &FdRec) -> Self {
        FdView {
            fd: e.fd,
            kind: e.kind.as_str(),
            target: e.target.clone(),
            age_s: e.age_s,
            command: match &e.command {
                Some(argv) => argv.join(" "),
                None if e.from_proc => "(before tracing)".into(),
                None => "-".into(),
            },
            pty_index: e.pty_index,
            instance: None,
            orphaned: e.orphaned,
        }
    }
}

/// One row of the process table.
#[derive(Clone, Debug, Default)]
pub struct ProcView {
    pub pid: u32,
    pub session: u32,
    pub depth: usize,
    pub comm: String,
    pub command: String,
    pub fds: usize,
    pub masters: usize,
    pub slaves: usize,
    /// Abandoned PTYs this process is the holder of (the one that opened the master, not a
    /// child that inherited a copy).
    pub orphaned: usize,
    pub age_s: f64,
    /// This process's share of the leak score: 3 per PTY it abandoned or left behind (the
    /// weight the session's leak score gives them).
    pub leak_score: f64,
    /// Marked `!`: the evidence names it as the holder of an abandoned or left-behind PTY.
    pub leaking: bool,
    pub fd_list: Vec<FdView>,
}

/// What kind of line the alerts & decisions feed shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedKind {
    Alert,
    Rotate,
}

impl FeedKind {
    pub fn label(self) -> &'static str {
        match self {
            FeedKind::Alert => "ALERT",
            FeedKind::Rotate => "ROTATE",
        }
    }
}

/// One alert or decision.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedItem {
    /// RFC 3339 time.
    pub ts: String,
    pub kind: FeedKind,
    pub session: u32,
    pub health: f64,
    pub reasons: Vec<String>,
}

impl FeedItem {
    pub fn new(kind: FeedKind, ts: &str, session: u32, health: f64, reasons: &[String]) -> Self {
        FeedItem { ts: ts.to_string(), kind, session, health, reasons: reasons.to_vec() }
    }

    /// `ROTATE s4242 health 44: reason; reason`
    pub fn text(&self) -> String {
        format!("{} s{} health {:.0}: {}", self.kind.label(), self.session, self.health, self.reasons.join("; "))
    }
}

/// Everything the tracer hands the view each interval.
pub struct ViewInput<'a> {
    pub snapshots: &'a [SnapshotRec],
    /// Open fds by pid, for the processes of `snapshots`.
    pub fd_details: &'a BTreeMap<u32, Vec<FdRec>>,
    /// Alerts and decisions of all sessions so far (any order).
    pub feed: Vec<FeedItem>,
    pub verdicts: &'a BTreeMap<u32, Verdict>,
    pub drift: u64,
    pub lost_events: u64,
    pub untracked_children: u64,
    pub thresholds: &'a Thresholds,
    /// The kernel hooks in use.
    pub probes: ProbeBackend,
}

/// Everything the view shows, as plain data.
#[derive(Clone, Debug, Default)]
pub struct ViewState {
    pub sessions: Vec<SessionView>,
    pub procs: Vec<ProcView>,
    /// Alerts and decisions, oldest first.
    pub feed: Vec<FeedItem>,
    pub lost_events: u64,
    pub untracked_children: u64,
    /// Traced processes /proc refused to show in the latest scan (from the snapshots).
    pub unreadable_procs: u64,
    pub drift: u64,
    /// `/proc/sys/kernel/pty/nr` and `pty/max`: PTYs in use on the machine and its limit.
    pub pty_nr: u64,
    pub pty_max: u64,
    /// (alert health, rotate health).
    pub thresholds: (f64, f64),
    /// A session whose leak score passes this is leaking (`Thresholds::leak_score`).
    pub leak_threshold: f64,
    /// The kernel hooks in use (none before the first update).
    pub probes: Option<ProbeBackend>,
}

impl ViewState {
    pub fn build(input: ViewInput<'_>) -> ViewState {
        let mut feed = input.feed;
        // RFC 3339 UTC sorts as text.
        feed.sort_by(|a, b| a.ts.cmp(&b.ts));
        let th = input.thresholds;
        let mut v = ViewState {
            feed,
            lost_events: input.lost_events,
            untracked_children: input.untracked_children,
            unreadable_procs: input.snapshots.iter().map(|s| s.unreadable_procs).max().unwrap_or(0),
            drift: input.drift,
            thresholds: (th.alert_health, th.rotate_health),
            leak_threshold: th.leak_score,
            probes: Some(input.probes),
            ..ViewState::default()
        };
        for s in input.snapshots {
            v.pty_nr = s.pty_nr;
            v.pty_max = s.pty_max;
            v.sessions.push(SessionView {
                root: s.session,
                health: s.health,
                leak_score: s.leak_score,
                verdict: input.verdicts.get(&s.session).copied().unwrap_or_default(),
                commands: s.commands,
                ptys: s.totals.ptys,
                orphaned: s.totals.orphaned_ptys,
                fds: s.totals.fds,
                reasons: s.reasons.clone(),
            });
            // Inherited copies do not make a process leaky: the evidence names each PTY's holder.
            let named = |pid: u32, kind: EvidenceKind| s.evidence.iter().filter(|e| e.kind == kind && e.pid == Some(pid)).count();
            // Instances are named in the fd list only when the session has PTYs on several.
            let several = s.ptys.iter().filter_map(|p| p.devpts).collect::<BTreeSet<_>>().len() > 1;
            for (p, depth) in tree_order(s) {
                let orphaned = named(p.pid, EvidenceKind::AbandonedPty);
                let left_behind = named(p.pid, EvidenceKind::LeftBehindPty);
                let leak_score = 3.0 * (orphaned + left_behind) as f64;
                v.procs.push(ProcView {
                    pid: p.pid,
                    session: s.session,
                    depth,
                    comm: p.comm.clone(),
                    command: p.command.as_ref().map(|a| a.join(" ")).unwrap_or_default(),
                    fds: p.fds,
                    masters: p.pty_masters,
                    slaves: p.pty_slaves,
                    orphaned,
                    age_s: p.age_s,
                    leak_score,
                    leaking: orphaned + left_behind > 0,
                    fd_list: input
                        .fd_details
                        .get(&p.pid)
                        .map(|l| {
                            l.iter()
                                .map(|e| FdView { instance: e.pty_devpts.filter(|_| several), ..FdView::from(e) })
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
        }
        v
    }
}

/// The snapshot's processes depth-first from the root, with their depth, so the tree reads
/// top-down. Processes whose parent is not in the session hang under the root.
fn tree_order(s: &SnapshotRec) -> Vec<(&ProcessRec, usize)> {
    let by_pid: BTreeMap<u32, &ProcessRec> = s.processes.iter().map(|p| (p.pid, p)).collect();
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for p in &s.processes {
        if p.pid != s.session {
            children.entry(p.ppid).or_default().push(p.pid);
        }
    }
    let mut stack: Vec<(u32, usize)> = vec![(s.session, 0)];
    for p in &s.processes {
        if p.pid != s.session && !by_pid.contains_key(&p.ppid) {
            stack.insert(0, (p.pid, 1));
        }
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    while let Some((pid, depth)) = stack.pop() {
        if !seen.insert(pid) {
            continue;
        }
        let Some(p) = by_pid.get(&pid) else { continue };
        out.push((*p, depth));
        for c in children.get(&pid).into_iter().flatten().rev() {
            stack.push((*c, depth + 1));
        }
    }
    out
}
