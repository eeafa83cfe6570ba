//! The CI leak gate (`run --fail-on-leak`): does a finished run pass?
//!
//! Two rules, either one fails the run:
//! - the session's verdict is `LEAK DETECTED` (the scorer's evidence, see `core::evidence`);
//! - more PTYs or fds opened *during the run* are still open in the command's tree when it ends
//!   than the budget allows (`--budget-ptys`, default 0; `--budget-fds`, default unlimited).
//!   Fds found in /proc (inherited from the runner) are not the command's doing and never count.
//!
//! Pure: [`open_at_end`] reads the model, [`judge`] compares with the budget; the record it
//! makes, [`GateRec`], is one of the JSONL's (`records`).

use std::collections::BTreeSet;

use super::{
    model::{FdKind, Model, pty::PtySlot},
    records::{GateRec, OpenFd, Verdict},
};

/// What a run may leave open in its tree when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// Distinct PTYs (either end held).
    pub ptys: u64,
    /// Fds of any kind; `None`: no limit.
    pub fds: Option<u64>,
}

/// What the run's tree still holds at its end, among the fds it opened itself.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OpenAtEnd {
    /// Distinct PTYs with an end still held.
    pub ptys: u64,
    pub fds: Vec<OpenFd>,
}

/// What the tracer could not see, which a gate must not pass over in silence.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Blind {
    pub lost_events: u64,
    pub untracked_children: u64,
}

/// Fds named in a gate record; more are counted in `open_fds`.
pub const MAX_LISTED: usize = 20;

/// The fds opened while traced (not found in /proc) that live processes of `session` still hold.
/// A table shared by several processes (CLONE_FILES) is counted once.
pub fn open_at_end(model: &Model, session: u32) -> OpenAtEnd {
    let mut ptys: BTreeSet<PtySlot> = BTreeSet::new();
    let mut fds = Vec::new();
    for (p, fd, e) in model.session_fds(session).filter(|(_, _, e)| !e.from_proc) {
        if matches!(e.kind, FdKind::PtyMaster | FdKind::PtySlave) {
            // An end whose index is unknown still names one PTY: keyed by its fd.
            let slot = e.pty_index.map_or((None, u32::MAX - (fds.len() as u32)), |i| (e.pty_devpts, i));
            ptys.insert(slot);
        }
        fds.push(OpenFd {
            pid: p.pid,
            comm: p.comm.clone(),
            fd,
            kind: e.kind,
            target: e.target.clone(),
            command: e.command.and_then(|c| model.command(c)).map(|c| c.argv.clone()),
        });
    }
    OpenAtEnd { ptys: ptys.len() as u64, fds }
}

/// Judges a finished run: its verdict, then what it left open against the budget. A run the
/// tracer did not see whole (events lost, children untracked) cannot pass: what it left open
/// may be more than was counted.
pub fn judge(verdict: Verdict, open: &OpenAtEnd, budget: Budget, blind: Blind) -> GateRec {
    let mut failures = Vec::new();
    if verdict == Verdict::LeakDetected {
        failures.push("the verdict is LEAK DETECTED".to_string());
    }
    if blind.lost_events > 0 || blind.untracked_children > 0 {
        failures.push(format!(
            "the trace is incomplete ({} kernel event(s) lost, {} child process(es) untracked): the counts may be low, so the gate cannot pass (a larger --ring-buffer-size helps)",
            blind.lost_events, blind.untracked_children
        ));
    }
    if open.ptys > budget.ptys {
        failures.push(format!("{} PTY(s) opened during the run still open at its end (budget {})", open.ptys, budget.ptys));
    }
    let open_fds = open.fds.len() as u64;
    if let Some(max) = budget.fds
        && open_fds > max
    {
        failures.push(format!("{open_fds} fd(s) opened during the run still open at its end (budget {max})"));
    }
    GateRec {
        passed: failures.is_empty(),
        verdict,
        open_ptys: open.ptys,
        open_fds,
        budget_ptys: budget.ptys,
        budget_fds: budget.fds,
        failures,
        left_open: open.fds.iter().take(MAX_LISTED).cloned().collect(),
        stopped: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fd(n: i32, kind: FdKind) -> OpenFd {
        OpenFd { pid: 7, comm: "agent".into(), fd: n, kind, target: format!("t{n}"), command: None }
    }

    const DEFAULT: Budget = Budget { ptys: 0, fds: None };

    #[test]
    fn healthy_with_nothing_left_passes() {
        let g = judge(Verdict::Healthy, &OpenAtEnd::default(), DEFAULT, Blind::default());
        assert!(g.passed && g.failures.is_empty());
        assert_eq!((g.open_ptys, g.open_fds, g.budget_ptys, g.budget_fds), (0, 0, 0, None));
    }

    #[test]
    fn a_leak_verdict_fails_whatever_the_budget() {
        let g = judge(Verdict::LeakDetected, &OpenAtEnd::default(), Budget { ptys: 100, fds: Some(100) }, Blind::default());
        assert!(!g.passed);
        assert_eq!(g.failures, ["the verdict is LEAK DETECTED"]);
        // Recovered is not a failure: the run gave back what it took.
        assert!(judge(Verdict::Recovered, &OpenAtEnd::default(), DEFAULT, Blind::default()).passed);
    }

    #[test]
    fn by_default_no_pty_may_be_left_but_fds_may() {
        let open = OpenAtEnd { ptys: 1, fds: vec![fd(3, FdKind::PtyMaster), fd(4, FdKind::Pipe), fd(5, FdKind::Pipe)] };
        let g = judge(Verdict::Healthy, &open, DEFAULT, Blind::default());
        assert!(!g.passed);
        assert_eq!(g.failures, ["1 PTY(s) opened during the run still open at its end (budget 0)"]);
        assert_eq!(g.open_fds, 3);
        assert_eq!(g.left_open.len(), 3);
        // Within budget: passes; one over: fails, naming both rules broken.
        assert!(judge(Verdict::Healthy, &open, Budget { ptys: 1, fds: Some(3) }, Blind::default()).passed);
        let g = judge(Verdict::LeakDetected, &open, Budget { ptys: 0, fds: Some(2) }, Blind::default());
        assert_eq!(g.failures.len(), 3, "{:?}", g.failures);
        assert!(g.failures[2].starts_with("3 fd(s) opened during the run"), "{:?}", g.failures);
    }

    #[test]
    fn a_trace_with_losses_cannot_pass() {
        for blind in [Blind { lost_events: 3, untracked_children: 0 }, Blind { lost_events: 0, untracked_children: 1 }] {
            let g = judge(Verdict::Healthy, &OpenAtEnd::default(), DEFAULT, blind);
            assert!(!g.passed, "{blind:?}");
            assert!(g.failures[0].starts_with("the trace is incomplete ("), "{:?}", g.failures);
        }
    }

    #[test]
    fn the_list_is_capped_but_the_count_is_not() {
        let open = OpenAtEnd { ptys: 0, fds: (0..50).map(|n| fd(n, FdKind::File)).collect() };
        let g = judge(Verdict::Healthy, &open, Budget { ptys: 0, fds: Some(10) }, Blind::default());
        assert_eq!((g.open_fds, g.left_open.len()), (50, MAX_LISTED));
        assert!(!g.passed);
    }

    /// A model driven the way the kernel drives it.
    struct Sim {
        m: Model,
        ts: u64,
        next_pid: u32,
    }

    impl crate::core::sim_events::SessionEvents for Sim {
        fn h(&mut self, pid: u32) -> crate::core::model::Header {
            self.ts += 10_000;
            crate::core::model::Header { tgid: pid, tid: pid, session: 10, ts_ns: self.ts }
        }
        fn emit(&mut self, ev: crate::core::model::Event) {
            self.m.apply(&ev);
        }
        fn new_pid(&mut self) -> u32 {
            self.next_pid += 1;
            self.next_pid
        }
    }

    #[test]
    fn open_at_end_counts_only_what_the_run_opened_in_live_processes() {
        use crate::core::{model::fd::FdEntry, sim_events::SessionEvents};
        let mut s = Sim { m: Model::default(), ts: 0, next_pid: 100 };
        s.m.add_session(10, 0);
        s.m.add_process(10, 1, 10, "sh", 0);
        // Found in /proc (inherited from the runner): never counted.
        let inherited = FdEntry { from_proc: true, pty_index: Some(0), ..FdEntry::new(FdKind::PtySlave, "/dev/pts/0", false) };
        s.m.table_mut(10).expect("a table").fds.insert(0, inherited);
        // Opened while traced: counted; a master and its slave are one PTY.
        s.open(10, 3, "/dev/ptmx", 2);
        s.ptn(10, 3, 5);
        s.open(10, 4, "/dev/pts/5", 2);
        s.open(10, 5, "/tmp/log", 2);
        // A child that opens a PTY and exits: gone with it.
        let child = s.spawn(10, &["script", "-qc", "true"]);
        s.open(child, 6, "/dev/ptmx", 2);
        s.ptn(child, 6, 6);
        s.exit(child);
        let open = open_at_end(&s.m, 10);
        assert_eq!(open.ptys, 1, "{open:?}");
        assert_eq!(open.fds.iter().map(|f| (f.fd, f.kind)).collect::<Vec<_>>(), [(3, FdKind::PtyMaster), (4, FdKind::PtySlave), (5, FdKind::File)]);
        let g = judge(Verdict::Healthy, &open, DEFAULT, Blind::default());
        assert_eq!(g.failures, ["1 PTY(s) opened during the run still open at its end (budget 0)"]);
        // The root exits: nothing is left open.
        s.exit(10);
        assert_eq!(open_at_end(&s.m, 10), OpenAtEnd::default());
    }
}
