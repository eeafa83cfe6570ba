//! The verdict end to end in the pure core: event sequences shaped like the real software
//! (careful and leaky agents, multiplexers, hung commands, bursts, slow leaks, long sessions)
//! go through the model, the evidence and the scorer exactly as the tracer drives them, at
//! several snapshot intervals. The same sequence must give the same verdict at every interval.

use std::collections::BTreeSet;

use super::{
    model::{Event, Header, Model},
    sim_events::SessionEvents,
    records::{EndReason, EvidenceKind, SummaryRec, TracerCost, Verdict},
    score::{Crossing, Thresholds},
    snapshot::{Facts, SessionBook, SummaryContext},
};

const ROOT: u32 = 1000;
const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;
const O_RDWR: u64 = 2;
const O_CLOEXEC: u64 = 0o2000000;

/// A session driven by events, snapshotted every `interval` as the tracer would.
struct Sim {
    m: Model,
    book: SessionBook,
    ts: u64,
    interval: u64,
    next_snapshot: u64,
    next_pid: u32,
    next_pty: i32,
    alerts: usize,
    rotates: usize,
    /// Command count when the first alert fired.
    first_alert_at: Option<usize>,
    slaves_outside: BTreeSet<crate::core::model::pty::PtySlot>,
}

impl Sim {
    fn new(interval: u64) -> Sim {
        Self::with(interval, Thresholds::default())
    }

    fn with(interval: u64, th: Thresholds) -> Sim {
        Self::named(interval, th, "agent")
    }

    fn named(interval: u64, th: Thresholds, comm: &str) -> Sim {
        let mut m = Model::new();
        m.add_session(ROOT, 0);
        m.add_process(ROOT, 1, ROOT, comm, 0);
        Sim {
            m,
            book: SessionBook::new(ROOT, th),
            ts: 0,
            interval,
            next_snapshot: interval,
            next_pid: ROOT + 1,
            next_pty: 0,
            alerts: 0,
            rotates: 0,
            first_alert_at: None,
            slaves_outside: BTreeSet::new(),
        }
    }

    /// Moves the clock, taking every snapshot due on the way.
    fn wait(&mut self, ns: u64) {
        let until = self.ts + ns;
        while self.next_snapshot <= until {
            self.ts = self.next_snapshot;
            self.snapshot();
            self.next_snapshot += self.interval;
        }
        self.ts = until;
    }

    fn facts(&self) -> Facts {
        Facts { now_ns: self.ts, pty_nr: 10, pty_max: 4096, slaves_held_outside: self.slaves_outside.clone(), ..Facts::default() }
    }

    fn snapshot(&mut self) {
        let facts = self.facts();
        let (_, crossings) = self.book.snapshot(&self.m, &facts);
        for c in crossings {
            match c {
                Crossing::Alert { health, reasons } => {
                    self.alerts += 1;
                    self.first_alert_at.get_or_insert(self.m.sessions[&ROOT].commands.len());
                    self.book.record_alert("t", health, reasons);
                }
                Crossing::Rotate { health, reasons } => {
                    self.rotates += 1;
                    self.book.record_decision("t", health, reasons, None);
                }
            }
        }
    }

    /// Applies an event and, like the tracer after each drain, scores at once when an orphaned
    /// PTY has come due.
    fn apply(&mut self, ev: Event) {
        self.m.apply(&ev);
        let th = &self.book.scorer.th;
        let (commands, grace) = (th.abandon_commands, (th.abandon_grace_s * 1e9) as u64);
        let min = (th.overtaken_after_s * 1e9) as u64;
        if self.m.take_due_orphans(ROOT, commands, min, grace, self.ts) {
            self.snapshot();
        }
    }

    /// A new PTY master at `fd` in `pid`; returns its index.
    fn master(&mut self, pid: u32, fd: i32, cloexec: bool) -> i32 {
        let index = self.next_pty;
        self.next_pty += 1;
        self.open(pid, fd, "/dev/ptmx", O_RDWR | if cloexec { O_CLOEXEC } else { 0 });
        self.ptn(pid, fd, index);
        index
    }

    /// fork + exec of `argv` under `parent`; returns the child's pid.
    /// One command through a fresh PTY, the agent's way: master opened (close-on-exec, as
    /// node-pty and pty.openpty do), the child takes the slave as its terminal, runs for
    /// `runs`, exits; then the agent closes the master after `close_after` (None: keeps it).
    fn pty_command(&mut self, fd: i32, runs: u64, close_after: Option<u64>) -> u32 {
        let index = self.master(ROOT, fd, true);
        let child = self.spawn(ROOT, &["/bin/bash", "-c", "echo step"]);
        self.open(child, 0, &format!("/dev/pts/{index}"), O_RDWR);
        self.wait(runs);
        self.exit(child);
        if let Some(after) = close_after {
            self.wait(after);
            self.close(ROOT, fd);
        }
        child
    }

    fn summary(&mut self, stopped: bool) -> SummaryRec {
        let facts = self.facts();
        let ts_of = |_: u64| String::from("t");
        let end = SummaryContext {
            reason: if stopped { EndReason::Interrupted } else { EndReason::RootExited },
            stopped_at_ns: stopped.then_some(self.ts),
            child: None,
            exit_status: None,
            cost: TracerCost::default(),
            unreadable_procs: 0,
            dropped_records: 0,
            error: None,
            ts_of: &ts_of,
            budget: None,
            open_at_stop: None,
        };
        self.book.summary(&self.m, &facts, &end).expect("a summary")
    }

    fn commands(&self) -> usize {
        self.m.sessions[&ROOT].commands.len()
    }
}

impl SessionEvents for Sim {
    fn h(&mut self, pid: u32) -> Header {
        self.ts += 10_000;
        Header { tgid: pid, tid: pid, session: ROOT, ts_ns: self.ts }
    }

    fn emit(&mut self, ev: Event) {
        self.apply(ev);
    }

    fn new_pid(&mut self) -> u32 {
        self.next_pid += 1;
        self.next_pid - 1
    }
}

const INTERVALS: [u64; 3] = [150 * MS, 250 * MS, S];

#[test]
fn a_careful_agent_is_healthy_at_every_interval() {
    for interval in INTERVALS {
        let mut sim = Sim::new(interval);
        // The master is closed a moment after the child is reaped: orphaned for 20 ms.
        for i in 0..30 {
            sim.pty_command(20 + i % 3, 120 * MS, Some(20 * MS));
            sim.wait(30 * MS);
        }
        sim.wait(2 * S);
        sim.exit(ROOT);
        let s = sim.summary(false);
        assert_eq!(s.verdict, Verdict::Healthy, "interval {interval}: {:?}", s.evidence);
        assert_eq!((sim.alerts, sim.rotates), (0, 0));
        assert_eq!(s.metrics.total_commands, 30);
    }
}

#[test]
fn a_leaky_agent_is_caught_at_every_interval_even_when_it_exits_between_snapshots() {
    for interval in INTERVALS {
        // 16 commands in about 1.5 s, then the agent exits: at 1 s only one snapshot sees it.
        let mut sim = Sim::new(interval);
        for i in 0..16 {
            sim.pty_command(20 + i, 60 * MS, None);
            sim.wait(30 * MS);
        }
        sim.exit(ROOT);
        let s = sim.summary(false);
        assert_eq!(s.verdict, Verdict::LeakDetected, "interval {interval}");
        // Every PTY that stayed unused for 250 ms while two later commands started: all but
        // the last three (90 ms apart).
        let abandoned = s.evidence.iter().filter(|e| e.kind == EvidenceKind::AbandonedPty).count();
        assert_eq!(abandoned, 13, "interval {interval}: {:#?}", s.evidence);
        assert!(s.evidence.iter().all(|e| e.command.as_deref() == Some(&["/bin/bash".to_string(), "-c".into(), "echo step".into()][..])));
    }
}

#[test]
fn a_leak_seen_live_raises_one_alert_and_one_decision_naming_its_evidence() {
    let mut sim = Sim::new(250 * MS);
    for i in 0..20 {
        sim.pty_command(20 + i, 100 * MS, None);
        sim.wait(100 * MS);
    }
    assert_eq!((sim.alerts, sim.rotates), (1, 1));
    let a = &sim.book.alerts[0];
    assert!(!a.evidence.is_empty() && a.evidence.iter().all(|e| e.kind == EvidenceKind::AbandonedPty));
    assert!(a.evidence[0].why.contains("PTY 0: master held by agent"), "{}", a.evidence[0].why);
    // Three abandoned PTYs (a steady leak: health 66) first hold once the 5th command has
    // started; at 200 ms per command the next 250 ms snapshot comes during the 5th or the 6th.
    assert!(matches!(sim.first_alert_at, Some(5 | 6)), "{:?}", sim.first_alert_at);
}

#[test]
fn a_multiplexer_holding_a_pty_per_window_is_healthy() {
    for interval in INTERVALS {
        let mut sim = Sim::new(interval);
        let mut windows = Vec::new();
        // 8 windows (more than max_ptys), each a login shell holding its slave, plus the
        // utempter helper tmux runs per window; two windows closed and one opened later.
        for i in 0..8 {
            let index = sim.master(ROOT, 20 + i, true);
            let shell = sim.spawn(ROOT, &["-bash"]);
            sim.open(shell, 0, &format!("/dev/pts/{index}"), O_RDWR);
            let helper = sim.spawn(ROOT, &["/usr/lib/x86_64-linux-gnu/utempter/utempter", "add"]);
            sim.exit(helper);
            windows.push((20 + i, shell));
            sim.wait(300 * MS);
        }
        sim.wait(10 * S);
        for (fd, shell) in windows.drain(..2) {
            sim.exit(shell);
            sim.close(ROOT, fd);
        }
        let index = sim.master(ROOT, 40, true);
        let shell = sim.spawn(ROOT, &["/bin/bash"]);
        sim.open(shell, 0, &format!("/dev/pts/{index}"), O_RDWR);
        sim.wait(10 * S);
        let s = sim.summary(true);
        assert_eq!(s.verdict, Verdict::Healthy, "interval {interval}: {:?}", s.final_scores);
        assert_eq!((sim.alerts, sim.rotates), (0, 0));
        assert_eq!(s.metrics.total_commands, 9, "a window's shell is a command, utempter is not");
    }
}

#[test]
fn commands_hung_at_a_prompt_and_given_up_on_are_left_behind() {
    for interval in INTERVALS {
        let mut sim = Sim::new(interval);
        // Each command waits at a y/N prompt forever; the agent gives up after 1 s, starts the
        // next one, and keeps the IPty (no kill).
        for i in 0..12 {
            let index = sim.master(ROOT, 20 + i, true);
            let child = sim.spawn(ROOT, &["/bin/bash", "-c", "read -p 'continue? [y/N] '"]);
            sim.open(child, 0, &format!("/dev/pts/{index}"), O_RDWR);
            sim.wait(S);
        }
        sim.wait(5 * S);
        let s = sim.summary(true);
        assert_eq!(s.verdict, Verdict::LeakDetected, "interval {interval}");
        let left = s.evidence.iter().filter(|e| e.kind == EvidenceKind::LeftBehindPty).count();
        assert_eq!(left, 10, "all but the last two: {:#?}", s.evidence);
    }
}

#[test]
fn a_burst_of_parallel_commands_is_healthy() {
    for interval in INTERVALS {
        let mut sim = Sim::new(interval);
        for _round in 0..5 {
            let mut running = Vec::new();
            for i in 0..8 {
                let index = sim.master(ROOT, 20 + i, true);
                let child = sim.spawn(ROOT, &["/bin/sh", "-c", "make -j1 part"]);
                sim.open(child, 0, &format!("/dev/pts/{index}"), O_RDWR);
                running.push((20 + i, child));
            }
            // Long ones: longer than the grace period.
            sim.wait(8 * S);
            for (fd, child) in running {
                sim.exit(child);
                sim.wait(50 * MS);
                sim.close(ROOT, fd);
            }
            sim.wait(200 * MS);
        }
        sim.exit(ROOT);
        let s = sim.summary(false);
        assert_eq!(s.verdict, Verdict::Healthy, "interval {interval}: {:?}", s.evidence);
        assert_eq!((sim.alerts, sim.rotates), (0, 0));
    }
}

#[test]
fn a_slow_leak_of_one_pty_per_20_commands_is_caught_within_100_commands() {
    let mut sim = Sim::new(S);
    for i in 0..200 {
        let keep = i % 20 == 19;
        sim.pty_command(100 + i, 20 * MS, if keep { None } else { Some(5 * MS) });
        sim.wait(40 * MS);
    }
    // The third kept PTY (command 60) is abandoned once two more commands started and it has
    // been unused for 250 ms (65 ms per command: command 64): the alert comes then, not at the
    // next 1 s snapshot.
    let at = sim.first_alert_at.expect("the slow leak must alert");
    assert_eq!(at, 64, "alerted at command {at}");
    sim.exit(ROOT);
    assert_eq!(sim.summary(false).verdict, Verdict::LeakDetected);
}

#[test]
fn a_long_healthy_session_of_1000_commands_never_alerts() {
    let mut sim = Sim::new(S);
    // The root also opens a few things on first use (a cache, a log), once.
    sim.open(ROOT, 5, "/var/cache/agent.db", 0);
    for i in 0..1000 {
        if i == 3 {
            for fd in 6..26 {
                sim.open(ROOT, fd, "/home/u/.agent/log", 0);
            }
        }
        sim.pty_command(50, 8 * MS, Some(2 * MS));
        sim.wait(5 * MS);
    }
    sim.exit(ROOT);
    let s = sim.summary(false);
    assert_eq!(s.verdict, Verdict::Healthy, "{:?}", s.evidence);
    assert_eq!((sim.alerts, sim.rotates, s.metrics.total_commands), (0, 0, 1000));
}

#[test]
fn fds_kept_by_the_session_per_command_are_a_sustained_leak() {
    let mut sim = Sim::new(250 * MS);
    let mut fd = 10;
    for _ in 0..30 {
        let child = sim.spawn(ROOT, &["/bin/sh", "-c", "curl -s x"]);
        // The agent opens two pipes per command and forgets to close them.
        for _ in 0..2 {
            sim.open(ROOT, fd, "/tmp/agent-fifo", 0);
            fd += 1;
        }
        sim.wait(80 * MS);
        sim.exit(child);
        sim.wait(20 * MS);
    }
    sim.wait(S);
    let s = sim.summary(true);
    assert_eq!(s.verdict, Verdict::LeakDetected);
    let e = s.evidence.iter().find(|e| e.kind == EvidenceKind::FdGrowth).expect("fd growth evidence");
    assert!(e.why.contains("2.00 fds per command"), "{}", e.why);
    assert!((s.final_scores.fd_per_command - 2.0).abs() < 1e-9);
}

#[test]
fn abandoned_ptys_closed_later_are_a_recovery() {
    let mut sim = Sim::new(250 * MS);
    for i in 0..8 {
        sim.pty_command(20 + i, 100 * MS, None);
        sim.wait(100 * MS);
    }
    sim.wait(6 * S);
    assert!(sim.book.scorer.leak_seen);
    // The agent's garbage collector finally closes them all.
    for i in 0..8 {
        sim.close(ROOT, 20 + i);
    }
    sim.wait(S);
    let s = sim.summary(true);
    assert_eq!(s.verdict, Verdict::Recovered);
    assert!(s.evidence.is_empty(), "{:?}", s.evidence);
    assert_eq!(s.recovered.len(), 8);
}

#[test]
fn a_sandboxed_process_that_can_open_nothing_gives_no_estimate() {
    let mut sim = Sim::new(S);
    let sandbox = sim.spawn(ROOT, &["/usr/sbin/sshd", "-R"]);
    for fd in 0..9 {
        sim.open(sandbox, fd, "/dev/null", 0);
    }
    sim.wait(3 * S);
    let mut facts = sim.facts();
    facts.nofile_limits.insert(sandbox, 1);
    facts.nofile_limits.insert(ROOT, 1024);
    let (snap, _) = sim.book.snapshot(&sim.m, &facts);
    assert_eq!(snap.est_seconds_to_exhaustion, None);
    assert_eq!(snap.health, 100.0, "{:?}", snap.reasons);
}

#[test]
fn a_pty_whose_slave_an_untraced_process_holds_is_in_use() {
    let mut sim = Sim::new(250 * MS);
    for i in 0..6 {
        let index = sim.master(ROOT, 20 + i, true);
        sim.slaves_outside.insert((None, index as u32));
        sim.wait(S);
    }
    sim.wait(10 * S);
    let s = sim.summary(true);
    assert_eq!(s.verdict, Verdict::Healthy, "{:?}", s.evidence);
    assert_eq!(sim.commands(), 0);
}

#[test]
fn prompts_given_up_on_quickly_are_caught_at_every_interval_when_the_agent_exits() {
    // node-pty's leaky agent: each command hangs at a prompt, the agent waits 200 ms for the
    // prompt, moves on, and exits after 14 commands (under 3 s): no snapshot needs to see it.
    for interval in INTERVALS {
        let mut sim = Sim::new(interval);
        for i in 0..14 {
            let index = sim.master(ROOT, 20 + i, false);
            let child = sim.spawn(ROOT, &["/bin/bash", "-c", "read -p 'Apply? y/N ' a"]);
            sim.open(child, 0, &format!("/dev/pts/{index}"), O_RDWR);
            sim.wait(200 * MS);
        }
        sim.exit(ROOT);
        let s = sim.summary(false);
        assert_eq!(s.verdict, Verdict::LeakDetected, "interval {interval}: {:?}", s.final_scores);
        // Overtaken twice, 250 ms or more after it started (the 2nd and 3rd commands after it,
        // at 200 ms apart): the first 11 of 14.
        let left = s.evidence.iter().filter(|e| e.kind == EvidenceKind::LeftBehindPty).count();
        assert_eq!(left, 11, "interval {interval}: {:#?}", s.evidence);
        assert!(s.evidence[0].why.contains("given up on"), "{}", s.evidence[0].why);
    }
}

#[test]
fn a_pool_of_long_parallel_commands_refilled_as_they_end_is_healthy() {
    for interval in INTERVALS {
        let mut sim = Sim::new(interval);
        // 6 slots; each command runs 3 s; a new one starts as soon as one ends. The first six
        // start 100 ms apart (a staggered start).
        let mut slots = Vec::new();
        for i in 0..6 {
            let index = sim.master(ROOT, 20 + i, true);
            let child = sim.spawn(ROOT, &["/bin/sh", "-c", "pytest shard"]);
            sim.open(child, 0, &format!("/dev/pts/{index}"), O_RDWR);
            slots.push((20 + i, child));
            sim.wait(100 * MS);
        }
        for round in 0..24 {
            sim.wait(400 * MS);
            let (fd, child) = slots.remove(0);
            sim.exit(child);
            sim.close(ROOT, fd);
            if round < 18 {
                let index = sim.master(ROOT, fd, true);
                let child = sim.spawn(ROOT, &["/bin/sh", "-c", "pytest shard"]);
                sim.open(child, 0, &format!("/dev/pts/{index}"), O_RDWR);
                slots.push((fd, child));
            }
        }
        sim.exit(ROOT);
        let s = sim.summary(false);
        assert_eq!(s.verdict, Verdict::Healthy, "interval {interval}: {:#?}", s.evidence);
        assert_eq!((sim.alerts, sim.rotates), (0, 0));
    }
}

#[test]
fn masters_closed_only_as_the_agent_exits_are_not_a_recovery() {
    // pexpect's spawn objects close their masters in `__del__` at interpreter shutdown.
    for interval in INTERVALS {
        let mut sim = Sim::new(interval);
        for i in 0..12 {
            sim.pty_command(20 + i, 100 * MS, None);
            sim.wait(100 * MS);
        }
        for i in 0..12 {
            sim.close(ROOT, 20 + i);
        }
        sim.exit(ROOT);
        let s = sim.summary(false);
        assert_eq!(s.verdict, Verdict::LeakDetected, "interval {interval}");
        assert!(s.recovered.is_empty());
        assert!(s.evidence.iter().any(|e| e.why.ends_with("closed only as the session ended")), "{:#?}", s.evidence);
    }
}

#[test]
fn tmux_windows_running_programs_are_never_left_behind() {
    for interval in INTERVALS {
        let mut sim = Sim::named(interval, Thresholds::default(), "tmux: server");
        // `tmux new-window 'htop'`: each window runs `sh -c CMD`, opened 6 s apart.
        for i in 0..5 {
            let index = sim.master(ROOT, 20 + i, true);
            let w = sim.spawn(ROOT, &["/bin/sh", "-c", "htop"]);
            sim.open(w, 0, &format!("/dev/pts/{index}"), O_RDWR);
            sim.wait(6 * S);
        }
        let s = sim.summary(true);
        assert_eq!(s.verdict, Verdict::Healthy, "interval {interval}: {:#?}", s.evidence);
    }
}

#[test]
fn a_pool_that_starts_the_next_command_before_closing_the_last_master_is_healthy() {
    for interval in INTERVALS {
        let mut sim = Sim::new(interval);
        let mut slots: Vec<(i32, u32)> = Vec::new();
        let mut fd = 20;
        for _ in 0..4 {
            let index = sim.master(ROOT, fd, true);
            let c = sim.spawn(ROOT, &["/bin/sh", "-c", "job"]);
            sim.open(c, 0, &format!("/dev/pts/{index}"), O_RDWR);
            slots.push((fd, c));
            fd += 1;
        }
        for _ in 0..40 {
            sim.wait(150 * MS);
            // Two jobs end; their exit handlers start two more, then close the old masters.
            let done: Vec<(i32, u32)> = slots.drain(..2).collect();
            for (_, c) in &done {
                sim.exit(*c);
            }
            for _ in 0..2 {
                let index = sim.master(ROOT, fd, true);
                let c = sim.spawn(ROOT, &["/bin/sh", "-c", "job"]);
                sim.open(c, 0, &format!("/dev/pts/{index}"), O_RDWR);
                slots.push((fd, c));
                fd += 1;
            }
            sim.wait(3 * MS);
            for (old, _) in done {
                sim.close(ROOT, old);
            }
        }
        sim.exit(ROOT);
        let s = sim.summary(false);
        assert_eq!(s.verdict, Verdict::Healthy, "interval {interval}: {:#?}", s.evidence);
        assert_eq!((sim.alerts, sim.rotates), (0, 0));
    }
}

#[test]
fn masters_closed_well_before_the_end_are_a_recovery() {
    let mut sim = Sim::new(250 * MS);
    for i in 0..6 {
        sim.pty_command(20 + i, 100 * MS, None);
        sim.wait(100 * MS);
    }
    sim.wait(6 * S);
    for i in 0..6 {
        sim.close(ROOT, 20 + i);
    }
    // The agent idles for a minute, then exits: its closes were not its teardown.
    sim.wait(60 * S);
    sim.exit(ROOT);
    let s = sim.summary(false);
    assert_eq!(s.verdict, Verdict::Recovered, "{:#?}", s.evidence);
    assert_eq!(s.recovered.len(), 6);
}

#[test]
fn a_careful_node_pty_agent_with_a_long_command_holding_inherited_masters_is_healthy() {
    let mut sim = Sim::new(250 * MS);
    // node-pty: masters are not close-on-exec. A long build starts first and inherits nothing
    // earlier; later commands inherit the build's master, and the build inherits nothing later.
    // Then short commands, each inheriting the masters open at its start, each closed after.
    let build_pty = sim.master(ROOT, 20, false);
    let build = sim.spawn(ROOT, &["/bin/bash", "-c", "cargo build"]);
    sim.open(build, 0, &format!("/dev/pts/{build_pty}"), O_RDWR);
    for _ in 0..20 {
        let index = sim.master(ROOT, 21, false);
        let c = sim.spawn(ROOT, &["/bin/bash", "-c", "git status"]);
        sim.open(c, 0, &format!("/dev/pts/{index}"), O_RDWR);
        // A grandchild that outlives its command holds the inherited copies for a while.
        let straggler = sim.spawn(c, &["/usr/bin/sleep", "5"]);
        sim.wait(100 * MS);
        sim.exit(c);
        sim.wait(10 * MS);
        sim.close(ROOT, 21);
        let _ = straggler;
        sim.wait(100 * MS);
    }
    sim.wait(8 * S);
    let s = sim.summary(true);
    assert_eq!(s.verdict, Verdict::Healthy, "{:#?}", s.evidence);
}
