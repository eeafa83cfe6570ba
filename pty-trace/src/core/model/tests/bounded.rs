//! Bounded memory (issue 12, "Model::commands must be bounded"): over 100k commands the command
//! records and the session timeline stay below a bound, and pruning never changes what a
//! snapshot, an fd detail or a summary says (a model pruned every third event against one
//! never pruned, on generated sessions with careful and leaked PTYs, hung commands, kept fds
//! and nested execs).

use rand::{Rng, SeedableRng, rngs::StdRng};

use super::*;
use crate::core::{
    records::{EndReason, EvidenceKind, TracerCost},
    sim_events::SessionEvents,
    score::{Crossing, Thresholds},
    snapshot::{self, Facts, SessionBook, SummaryContext},
};

const MS: u64 = 1_000_000;
const S: u64 = 1_000_000_000;

/// What the generated session does, step by step (events are applied as they come; a
/// snapshot is taken at each `Snapshot`).
#[derive(Clone, Debug)]
enum Step {
    Event(Event),
    Snapshot(u64),
}

/// Builds a session's events with a clock, pids, fds and PTY indexes (reused like the kernel's).
struct Script {
    steps: Vec<Step>,
    ts: u64,
    next_snapshot: u64,
    interval: u64,
    next_pid: u32,
    next_fd: i32,
    free_ptys: BTreeSet<i32>,
    next_pty: i32,
}

impl Script {
    fn new(interval: u64) -> Script {
        Script { steps: Vec::new(), ts: 0, next_snapshot: interval, interval, next_pid: ROOT + 1, next_fd: 10, free_ptys: BTreeSet::new(), next_pty: 0 }
    }

    fn wait(&mut self, ns: u64) {
        let until = self.ts + ns;
        while self.next_snapshot <= until {
            self.ts = self.next_snapshot;
            self.steps.push(Step::Snapshot(self.ts));
            self.next_snapshot += self.interval;
        }
        self.ts = until;
    }

    fn fd(&mut self) -> i32 {
        self.next_fd += 1;
        self.next_fd
    }

    /// A PTY master at `fd` in `pid`; returns its index.
    fn master(&mut self, pid: u32, fd: i32) -> i32 {
        let index = self.free_ptys.pop_first().unwrap_or_else(|| {
            self.next_pty += 1;
            self.next_pty - 1
        });
        self.open(pid, fd, "/dev/ptmx", O_RDWR | O_CLOEXEC);
        self.ptn(pid, fd, index);
        index
    }

    fn close_master(&mut self, fd: i32, index: i32) {
        self.close(ROOT, fd);
        self.free_ptys.insert(index);
    }
}

impl SessionEvents for Script {
    fn h(&mut self, pid: u32) -> Header {
        self.ts += 10_000;
        Header { tgid: pid, tid: pid, session: SID, ts_ns: self.ts }
    }

    fn emit(&mut self, ev: Event) {
        self.steps.push(Step::Event(ev));
    }

    fn new_pid(&mut self) -> u32 {
        self.next_pid += 1;
        self.next_pid - 1
    }
}

/// How leaky the generated agent is.
#[derive(Clone, Copy)]
struct Mix {
    commands: usize,
    /// Of 100 commands: through a PTY closed after, through a PTY kept (leaked), left hung.
    pty: u32,
    leak: u32,
    hang: u32,
    /// Leaked masters and hung commands alive at once at most (the oldest is given back).
    max_live: usize,
}

/// An agent running `mix.commands` shell commands: plain ones that open and close a file,
/// some through a fresh PTY (closed after, or kept), some hung and killed later, some forking a
/// nested exec; the agent keeps a file now and then; a snapshot every second.
fn generate(seed: u64, mix: Mix) -> Vec<Step> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut s = Script::new(S);
    let mut leaked: Vec<(i32, i32)> = Vec::new();
    let mut hung: Vec<(u32, i32, i32)> = Vec::new();
    let mut kept_files: Vec<i32> = Vec::new();
    for i in 0..mix.commands {
        let roll = rng.gen_range(0..100);
        let script = format!("step {i} --token t{i}");
        if roll < mix.pty + mix.leak + mix.hang {
            let fd = s.fd();
            let index = s.master(ROOT, fd);
            let child = s.spawn(ROOT, &["/bin/bash", "-c", &script]);
            s.open(child, 0, &format!("/dev/pts/{index}"), O_RDWR);
            if roll < mix.hang {
                hung.push((child, fd, index));
            } else {
                s.wait(rng.gen_range(5..200) * MS);
                s.exit(child);
                if roll < mix.hang + mix.leak {
                    leaked.push((fd, index));
                } else if roll % 4 == 0 {
                    // Orphaned across a quick burst of commands, then closed with no event in
                    // between: judged only from its release.
                    for j in 0..3 {
                        let burst = s.spawn(ROOT, &["/bin/true", &format!("burst {i}.{j}")]);
                        s.wait(5 * MS);
                        s.exit(burst);
                    }
                    s.wait(300 * MS);
                    s.close_master(fd, index);
                } else {
                    s.wait(rng.gen_range(1..30) * MS);
                    s.close_master(fd, index);
                }
            }
        } else {
            let child = s.spawn(ROOT, &["/bin/sh", "-c", &script]);
            s.open(child, 3, "/etc/hosts", O_CLOEXEC);
            if roll % 7 == 0 {
                // A nested exec: not one of the session's commands.
                let grandchild = s.spawn(child, &["/usr/bin/git", "status"]);
                s.wait(rng.gen_range(1..20) * MS);
                s.exit(grandchild);
            } else if roll % 13 == 0 {
                // A nested exec that opens a lock and execs again: the fd names an image no
                // process runs any more.
                let grandchild = s.spawn(child, &["/usr/bin/flock", "/tmp/x.lock", "ssh-agent"]);
                s.open(grandchild, 4, "/tmp/x.lock", 0);
                s.exec(grandchild, &["ssh-agent", "-D"], "/usr/bin/ssh-agent");
                s.wait(1500 * MS);
                s.exit(grandchild);
            }
            s.close(child, 3);
            s.wait(rng.gen_range(1..150) * MS);
            s.exit(child);
        }
        if roll % 11 == 0 {
            let fd = s.fd();
            s.open(ROOT, fd, &format!("/var/cache/agent/{i}"), O_CLOEXEC);
            kept_files.push(fd);
        }
        if kept_files.len() > 8 {
            let fd = kept_files.remove(0);
            s.close(ROOT, fd);
        }
        if leaked.len() > mix.max_live {
            let (fd, index) = leaked.remove(0);
            s.close_master(fd, index);
        }
        if hung.len() > mix.max_live {
            let (child, fd, index) = hung.remove(0);
            s.exit(child);
            s.close_master(fd, index);
        }
        s.wait(rng.gen_range(0..400) * MS);
    }
    s.wait(6 * S);
    s.steps
}

/// Everything the session says while `steps` are applied (snapshots, fd details, crossings,
/// the summary), with the model pruned after every third event or never.
fn replay(steps: &[Step], prune_often: bool) -> (Vec<serde_json::Value>, Model) {
    let mut m = Model::new();
    m.add_session(SID, 0);
    m.add_process(ROOT, 1, SID, "agent", 0);
    if !prune_often {
        m.never_prune();
    }
    let mut book = SessionBook::new(ROOT, Thresholds::default());
    let th = Thresholds::default();
    let (grace, min) = ((th.abandon_grace_s * 1e9) as u64, (th.overtaken_after_s * 1e9) as u64);
    fn snap(m: &Model, book: &mut SessionBook, now: u64, out: &mut Vec<serde_json::Value>) {
        let facts = Facts { now_ns: now, pty_nr: 10, pty_max: 4096, ..Facts::default() };
        let (rec, crossings) = book.snapshot(m, &facts);
        let details = snapshot::fd_details(m, &rec, now);
        out.push(serde_json::json!({ "snapshot": rec, "fd_details": details, "crossings": format!("{crossings:?}") }));
        for c in crossings {
            let _ = match c {
                Crossing::Alert { health, reasons } => book.record_alert("t", health, reasons).ts,
                Crossing::Rotate { health, reasons } => book.record_decision("t", health, reasons, None).ts,
            };
        }
    }
    let mut out = Vec::new();
    let mut now = 0;
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Event(ev) => {
                now = ev.header().ts_ns;
                m.apply(ev);
                if prune_often && i % 3 == 0 {
                    m.prune();
                }
                if m.take_due_orphans(ROOT, th.abandon_commands, min, grace, now) {
                    snap(&m, &mut book, now, &mut out);
                }
            }
            Step::Snapshot(ts) => {
                now = *ts;
                snap(&m, &mut book, now, &mut out);
            }
        }
    }
    let ts_of = |_: u64| String::from("t");
    let end = SummaryContext {
        reason: EndReason::Interrupted,
        stopped_at_ns: Some(now),
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
    let facts = Facts { now_ns: now, ..Facts::default() };
    out.push(serde_json::to_value(book.summary(&m, &facts, &end)).unwrap());
    (out, m)
}

#[test]
fn pruning_never_changes_a_snapshot_or_a_summary() {
    let mixes = [
        Mix { commands: 1500, pty: 15, leak: 5, hang: 3, max_live: 4 },
        Mix { commands: 1200, pty: 60, leak: 10, hang: 5, max_live: 12 },
        Mix { commands: 1500, pty: 30, leak: 0, hang: 0, max_live: 0 },
    ];
    for (seed, mix) in mixes.into_iter().enumerate() {
        let steps = generate(seed as u64, mix);
        let (pruned, pm) = replay(&steps, true);
        let (reference, rm) = replay(&steps, false);
        assert_eq!(pruned.len(), reference.len());
        for (i, (a, b)) in pruned.iter().zip(&reference).enumerate() {
            assert!(a == b, "seed {seed}: output {i} differs once pruned:\npruned:    {a}\nreference: {b}");
        }
        assert_eq!(rm.commands.len(), rm.commands.total(), "the reference keeps every record");
        assert!(pm.commands.len() * 4 < rm.commands.len(), "seed {seed}: pruning kept {} of {} records", pm.commands.len(), rm.commands.len());
        assert!(pm.sessions[&SID].commands.kept() < rm.sessions[&SID].commands.kept());
        assert_eq!(pm.stats.timeline_evicted, 0, "no PTY outlived {MAX} commands", MAX = history::MAX_TIMELINE);
        // Evidence was there to compare: leaks, and words naming commands.
        let text = serde_json::to_string(&reference).unwrap();
        if mix.leak > 0 {
            assert!(text.contains("abandoned_pty") && text.contains("(command "), "seed {seed}: no PTY evidence to compare");
        }
    }
}

/// Applies 100k commands to a model that prunes itself as the tracer's does; returns it, with
/// the last snapshot.
fn hundred_thousand(mix: Mix, leak_at_start: bool) -> (Model, crate::core::records::SnapshotRec) {
    let mut s = Script::new(u64::MAX);
    let mut m = Model::new();
    m.add_session(SID, 0);
    m.add_process(ROOT, 1, SID, "agent", 0);
    let mut book = SessionBook::new(ROOT, Thresholds::default());
    if leak_at_start {
        // Command 1 gets a PTY that is never closed after it ends (abandoned); command 2 hangs
        // on its own PTY for the whole session (left behind).
        let fd = s.fd();
        let index = s.master(ROOT, fd);
        let child = s.spawn(ROOT, &["/bin/bash", "-c", "npm test"]);
        s.open(child, 0, &format!("/dev/pts/{index}"), O_RDWR);
        s.wait(S);
        s.exit(child);
        let fd = s.fd();
        let index = s.master(ROOT, fd);
        let hung = s.spawn(ROOT, &["/bin/bash", "-c", "read -p continue?"]);
        s.open(hung, 0, &format!("/dev/pts/{index}"), O_RDWR);
    }
    for step in std::mem::take(&mut s.steps) {
        let Step::Event(ev) = step else { continue };
        m.apply(&ev);
    }
    let mut sizes = Vec::new();
    let mut rng = StdRng::seed_from_u64(7);
    let mut last = None;
    for i in 0..mix.commands {
        let script = format!("step {i} --password p{i}");
        if rng.gen_range(0..100) < mix.pty {
            let fd = s.fd();
            let index = s.master(ROOT, fd);
            let child = s.spawn(ROOT, &["/bin/bash", "-c", &script]);
            s.open(child, 0, &format!("/dev/pts/{index}"), O_RDWR);
            s.wait(20 * MS);
            s.exit(child);
            s.close_master(fd, index);
        } else {
            let child = s.spawn(ROOT, &["/bin/true", &script]);
            s.open(child, 3, "/etc/hosts", O_CLOEXEC);
            s.wait(2 * MS);
            s.exit(child);
        }
        s.wait(3 * MS);
        for step in std::mem::take(&mut s.steps) {
            let Step::Event(ev) = step else { continue };
            m.apply(&ev);
        }
        if i % 1000 == 999 {
            let facts = Facts { now_ns: s.ts, pty_nr: 10, pty_max: 4096, ..Facts::default() };
            last = Some(book.snapshot(&m, &facts).0);
            sizes.push((m.commands.len(), m.sessions[&SID].commands.kept()));
        }
    }
    let (max_records, max_timeline) = sizes.iter().fold((0, 0), |a, b| (a.0.max(b.0), a.1.max(b.1)));
    eprintln!("100k commands (leak at start: {leak_at_start}): at most {max_records} records and {max_timeline} timeline entries kept");
    (m, last.expect("snapshots"))
}

#[test]
fn a_hundred_thousand_commands_keep_the_model_bounded() {
    let mix = Mix { commands: 100_000, pty: 20, leak: 0, hang: 0, max_live: 0 };
    let (m, snap) = hundred_thousand(mix, false);
    let s = &m.sessions[&SID];
    assert_eq!((s.commands.len(), s.execs), (100_000, 100_000), "every command and exec counted");
    assert_eq!(m.commands.total(), 100_000);
    // Between two prunes the records at most double (and the first prune waits for 1024).
    let bound = 2 * (history::RECENT_COMMANDS + 64) + 1024;
    assert!(m.commands.len() < bound, "{} command records kept", m.commands.len());
    assert!(s.commands.kept() < bound, "{} timeline entries kept", s.commands.kept());
    assert!(s.command_ends.len() <= MAX_COMMAND_ENDS && s.pty_releases.len() <= MAX_PTY_RELEASES);
    assert_eq!(m.stats.timeline_evicted, 0);
    assert_eq!((snap.commands, snap.execs, snap.residual_ptys), (100_000, 100_000, 0));
    assert!(snap.evidence.is_empty(), "{:?}", snap.evidence);
    assert_eq!(m.procs.len(), 1, "only the root is alive");
}

#[test]
fn a_pty_kept_for_a_hundred_thousand_commands_is_still_named() {
    let mix = Mix { commands: 100_000, pty: 20, leak: 0, hang: 0, max_live: 0 };
    let (m, snap) = hundred_thousand(mix, true);
    let s = &m.sessions[&SID];
    assert_eq!(s.commands.len(), 100_002);
    // The abandoned PTY holds the timeline back from its opening: capped, and counted.
    assert!(s.commands.kept() <= history::MAX_TIMELINE * 5 / 4 + 1, "{}", s.commands.kept());
    assert!(m.stats.timeline_evicted > 0);
    assert!(m.commands.len() < 2 * (history::RECENT_COMMANDS + 64) + 1024, "{} records", m.commands.len());
    let abandoned = snap.evidence.iter().find(|e| e.kind == EvidenceKind::AbandonedPty).expect("the PTY of command 1");
    assert!(abandoned.why.contains("opened for `/bin/bash -c npm test` (command 1)"), "{}", abandoned.why);
    assert_eq!(abandoned.command.as_deref(), Some(&["/bin/bash".to_string(), "-c".into(), "npm test".into()][..]));
    assert!(abandoned.commands_since >= history::MAX_TIMELINE as u64, "a lower bound once evicted: {}", abandoned.commands_since);
    let left = snap.evidence.iter().find(|e| e.kind == EvidenceKind::LeftBehindPty).expect("the hung command 2");
    assert!(left.why.contains("(command 2)"), "{}", left.why);
    assert!(left.commands_since >= history::MAX_TIMELINE as u64, "{}", left.commands_since);
    assert_eq!(snap.residual_ptys, 2);
    assert!(snap.health < 100.0);
}

/// `watch` follows sessions for weeks: each one, once summarized, is forgotten with the
/// descendants that outlived its root, and nothing of it stays behind in the model.
#[test]
fn forgotten_sessions_leave_nothing_behind() {
    use crate::core::sim_events::SessionEvents;
    struct Sim {
        m: Model,
        ts: u64,
        next_pid: u32,
        session: u32,
    }
    impl SessionEvents for Sim {
        fn h(&mut self, pid: u32) -> Header {
            self.ts += 10_000;
            Header { tgid: pid, tid: pid, session: self.session, ts_ns: self.ts }
        }
        fn emit(&mut self, ev: Event) {
            self.m.apply(&ev);
        }
        fn new_pid(&mut self) -> u32 {
            self.next_pid += 1;
            self.next_pid
        }
    }
    let mut s = Sim { m: Model::default(), ts: 0, next_pid: 1000, session: 0 };
    for round in 0..300u32 {
        let root = s.new_pid();
        s.session = root;
        s.m.add_session(root, s.ts);
        s.m.add_process(root, 1, root, "agent", s.ts);
        for c in 0..5 {
            let child = s.spawn(root, &["sh", "-c", "ls"]);
            s.open(child, 3, "/dev/ptmx", 2);
            s.ptn(child, 3, ((round * 5 + c) % 4000) as i32);
            if c < 4 {
                s.exit(child);
            }
        }
        // The root exits; one child outlives it holding its PTY.
        s.exit(root);
        let left = s.m.forget_session(root, s.ts);
        assert_eq!(left.len(), 1, "round {round}: the child that outlived the root");
        assert!(s.m.sessions.is_empty() && s.m.procs.is_empty(), "round {round}");
        assert!(s.m.tables.is_empty(), "round {round}: {} tables left", s.m.tables.len());
    }
    assert!(s.m.commands.len() <= super::super::history::RECENT_COMMANDS, "{} command records kept", s.m.commands.len());
}
