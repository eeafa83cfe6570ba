//! The tracing loop shared by `attach`, `run` and `demo`.
//!
//! Ties the edges to the core: ring buffer records -> `Model::apply`; every interval a /proc
//! reconciliation, a score per session, and `snapshot` records; at the end a `summary` per
//! session. It owns no fd semantics (the model does) and no formatting of fields (records).
//!
//! Reconciliation ordering matters: /proc is scanned first, then the ring buffer is drained,
//! and only then are scan and model compared, so every event stamped before the scan has been
//! applied and every fd touched during it is skipped (see `model::reconcile`).

use std::{
    collections::{BTreeMap, BTreeSet},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::{Child, Command},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    bpf::{Probes, Tracked},
    error::{AppError, AppResult, exit_code},
    jsonl::{JsonlWriter, rfc3339_ms},
    model::{Model, event::decode, pty::orphaned_indexes},
    procfs_scan::{self, monotonic_ns},
    records::{self, AlertRec, DecisionRec, DescendantRec, HookRec, Metrics, SnapshotRec, SummaryRec},
    score::{Crossing, Sample, Scorer, Thresholds},
    view::{Action, LiveView, ViewState},
};

/// How often the ring buffer is drained when the kernel has not woken us.
const DRAIN_PERIOD: Duration = Duration::from_millis(20);

/// What to trace.
#[derive(Clone, Debug)]
pub enum Target {
    Attach(Vec<i32>),
    Run(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Options {
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub ring_bytes: u32,
    pub thresholds: Thresholds,
    pub tui: bool,
    /// `run` with a live view: where the child's stdout/stderr go (the view owns the terminal).
    pub child_output: Option<std::path::PathBuf>,
    /// Command run when a session must rotate (argv, or a shell command with `on_rotate_shell`).
    pub on_rotate: Option<String>,
    pub on_rotate_shell: bool,
    /// Stop tracing (exit code 10) after the first rotate decision.
    pub exit_on_rotate: bool,
}

/// Per-session bookkeeping beyond the model.
struct SessionBook {
    scorer: Scorer,
    fd_peak: usize,
    pty_peak: usize,
    alerts: Vec<AlertRec>,
    actions: Vec<DecisionRec>,
    summarized: bool,
    /// PTY indexes orphaned at the previous snapshot. The scorer counts a PTY as orphaned only
    /// when it still is one interval later: a healthy agent holds a master without slave for a
    /// moment between reaping its child and closing the master.
    orphaned_before: BTreeSet<u32>,
}

/// Maps the kernel's monotonic clock to wall time for record timestamps.
#[derive(Clone, Copy)]
pub struct Clock {
    mono0: u64,
    wall0: u64,
}

impl Clock {
    pub fn now() -> Self {
        let wall0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock { mono0: monotonic_ns(), wall0 }
    }
    pub fn wall(&self, mono: u64) -> u64 {
        self.wall0.wrapping_add(mono.wrapping_sub(self.mono0))
    }
    pub fn ts(&self, mono: u64) -> String {
        rfc3339_ms(self.wall(mono))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum StopReason {
    RootExited,
    Duration,
    Interrupted,
    /// `--exit-on-rotate` after a rotate decision.
    Rotate,
}

impl StopReason {
    fn as_str(self) -> &'static str {
        match self {
            StopReason::RootExited => "root_exited",
            StopReason::Duration => "duration",
            StopReason::Interrupted => "interrupted",
            StopReason::Rotate => "rotate",
        }
    }
}

pub struct Tracer {
    model: Model,
    books: BTreeMap<u32, SessionBook>,
    tracked: Tracked,
    ring: Option<AsyncFd<RingBuf<MapData>>>,
    probes: Probes,
    out: JsonlWriter,
    opts: Options,
    clock: Clock,
    decode_errors: u64,
    lost_events: u64,
    child: Option<Child>,
    exit_status: Option<i32>,
    /// A rotate decision was made (for `--exit-on-rotate`).
    rotate_fired: bool,
    /// When tracing was stopped by us (signal, quit key, --duration, --exit-on-rotate).
    stopped_at: Option<u64>,
    pub view: Option<LiveView>,
}

/// Result of a finished trace: the exit code `main` should use, and what to print after.
pub struct Outcome {
    pub exit_code: i32,
    pub summaries: Vec<SummaryRec>,
    /// Still attached: detaching takes a second or more (RCU grace periods), so the caller
    /// prints the summary first and then calls `Probes::detach`.
    pub probes: Probes,
}

impl Tracer {
    /// Loads the probes and starts tracing `target` (attach: registers the processes; run:
    /// starts the child registered before it execs).
    pub fn start(target: &Target, opts: Options, out: JsonlWriter) -> AppResult<Tracer> {
        let t0 = Instant::now();
        // Bad input is reported before anything is loaded: it needs no privileges to check.
        let roots = match target {
            Target::Attach(pids) => pids.iter().map(|&pid| procfs_scan::validate_target(pid)).collect::<AppResult<Vec<_>>>()?,
            Target::Run(argv) => {
                let program = argv.first().ok_or_else(|| AppError::BadInput("run: no command given".into()))?;
                resolve_program(program)?;
                Vec::new()
            }
        };
        let mut probes = Probes::load(opts.ring_bytes)?;
        let clock = Clock::now();
        let tracked = probes.tracked.clone();
        let events = probes.events.take().ok_or_else(|| anyhow!("ring buffer already taken"))?;
        let mut tr = Tracer {
            model: Model::new(),
            books: BTreeMap::new(),
            tracked,
            ring: None,
            probes,
            out,
            opts,
            clock,
            decode_errors: 0,
            lost_events: 0,
            child: None,
            exit_status: None,
            rotate_fired: false,
            stopped_at: None,
            view: None,
        };
        // SAFETY: the AsyncFd owns the ring buffer, so its fd stays open as long as it is
        // registered with the reactor.
        let watched = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) };
        tr.ring = Some(watched.context("watching the ring buffer")?);
        match target {
            Target::Attach(_) => tr.attach(&roots)?,
            Target::Run(argv) => tr.run_child(argv)?,
        }
        let sessions: Vec<u32> = tr.books.keys().copied().collect();
        let start = serde_json::json!({
            "version": env!("CARGO_PKG_VERSION"),
            "sessions": sessions,
            "command": match target { Target::Run(a) => Some(crate::redact::redact_argv(a)), _ => None },
            "ring_buffer_bytes": tr.opts.ring_bytes,
            "attached_tracepoints": tr.probes.attached_tracepoints,
            "syscalls_not_followed": tr.probes.missing_syscalls,
            "tracefs": tr.probes.tracefs.display().to_string(),
            "load_ms": tr.probes.load_time.as_secs_f64() * 1e3,
            "ready_ms": t0.elapsed().as_secs_f64() * 1e3,
            "interval_ms": tr.opts.interval.as_millis() as u64,
        });
        let ts = tr.clock.ts(monotonic_ns());
        tr.out.write("start", &ts, &start)?;
        tr.out.flush()?;
        Ok(tr)
    }

    fn new_session(&mut self, root: u32) {
        self.model.add_session(root, monotonic_ns());
        self.books.insert(
            root,
            SessionBook {
                scorer: Scorer::new(self.opts.thresholds.clone()),
                fd_peak: 0,
                pty_peak: 0,
                alerts: Vec::new(),
                actions: Vec::new(),
                summarized: false,
                orphaned_before: BTreeSet::new(),
            },
        );
    }

    /// Registers validated session roots and their live descendants.
    fn attach(&mut self, infos: &[procfs_scan::ProcInfo]) -> AppResult<()> {
        for info in infos {
            if self.books.contains_key(&info.pid) {
                continue;
            }
            self.new_session(info.pid);
            self.model.add_process(info.pid, info.ppid, info.pid, &info.comm, monotonic_ns());
            self.tracked.insert(info.pid, info.pid)?;
        }
        // Descendants alive now. Once a process is in TRACKED the kernel tracks its new children
        // itself, so repeating the walk until it finds nothing new closes the race with forks.
        for _ in 0..10 {
            let mut added = false;
            for root in self.books.keys().copied().collect::<Vec<_>>() {
                for d in procfs_scan::descendants(root) {
                    if self.model.procs.contains_key(&d.pid) {
                        continue;
                    }
                    if !self.model.procs.contains_key(&d.ppid) {
                        continue;
                    }
                    let session = self.model.procs[&d.ppid].session;
                    self.model.add_process(d.pid, d.ppid, session, &d.comm, monotonic_ns());
                    self.tracked.insert(d.pid, session)?;
                    added = true;
                }
            }
            if !added {
                break;
            }
        }
        Ok(())
    }

    /// Starts the command `start` has already resolved.
    fn run_child(&mut self, argv: &[String]) -> AppResult<()> {
        let program = argv.first().ok_or_else(|| AppError::BadInput("run: no command given".into()))?;
        let mut cmd = Command::new(program);
        cmd.args(&argv[1..]);
        if self.opts.tui {
            // The live view owns the terminal: the child must not draw on it.
            let out = match &self.opts.child_output {
                Some(p) => std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
                None => std::fs::File::create("/dev/null").context("opening /dev/null")?,
            };
            cmd.stdin(std::process::Stdio::null()).stdout(out.try_clone().context("dup")?).stderr(out);
        } else if !self.out.is_discard() && self.out.path().is_none() {
            // JSONL goes to stdout: keep the child's output off it so the stream stays parseable.
            cmd.stdout(std::process::Stdio::from(std::io::stderr().as_fd_owned()?));
        }
        let (child, pid) = spawn_registered(cmd, &self.tracked, program)?;
        self.new_session(pid);
        self.model.add_process(pid, std::process::id(), pid, &crate::model::comm_of(program), monotonic_ns());
        self.child = Some(child);
        Ok(())
    }

    /// Drains every record in the ring buffer into the model.
    fn drain(&mut self) {
        let Some(ring) = self.ring.as_mut() else { return };
        let rb = ring.get_mut();
        let debug = std::env::var_os("PTY_TRACE_DEBUG_EVENTS").is_some();
        while let Some(item) = rb.next() {
            match decode(&item) {
                Ok(ev) => {
                    if debug {
                        let text = format!("{ev:?}");
                        match std::env::var("PTY_TRACE_DEBUG_EVENTS").ok().filter(|f| !f.is_empty() && f != "1") {
                            Some(f) if !text.contains(&f) => {}
                            _ => eprintln!("pty-trace: event {text}"),
                        }
                    }
                    self.model.apply(&ev)
                }
                Err(_) => self.decode_errors += 1,
            }
        }
    }

    /// One interval's work: reconcile with /proc, score, write snapshots.
    fn tick(&mut self) -> anyhow::Result<()> {
        self.lost_events = self.probes.lost_events();
        // Lost events mean the model may be wrong anywhere: check every process now.
        let mut pids: BTreeSet<u32> = self.model.procs.keys().copied().collect();
        pids.extend(self.model.take_needs_reconcile());
        let mut observed = Vec::new();
        let mut gone = Vec::new();
        let mut children = Vec::new();
        let scan_start = monotonic_ns();
        for pid in pids {
            match procfs_scan::observe(pid) {
                Some(o) => observed.push(o),
                None => gone.push(pid),
            }
            for c in procfs_scan::children(pid) {
                children.push((c, pid));
            }
        }
        // Everything stamped before the scan ended is in the ring buffer now (events are
        // submitted microseconds after their timestamp): apply it before comparing.
        std::thread::sleep(Duration::from_millis(2));
        self.drain();
        let debug_drift = std::env::var_os("PTY_TRACE_DEBUG_DRIFT").is_some();
        let mut unseeded = Vec::new();
        for o in &observed {
            let before = if debug_drift { self.model.table_of(o.pid).cloned() } else { None };
            let r = self.model.reconcile(o);
            if r.skipped_process && self.model.procs.get(&o.pid).is_some_and(|p| !p.seeded) {
                unseeded.push(o.pid);
            }
            if debug_drift && r.seeding {
                eprintln!("pty-trace: seeded pid {} at {} with fds {:?}", o.pid, o.scan_start_ns, o.fds.keys().collect::<Vec<_>>());
            }
            if debug_drift && !r.seeding && r.corrections() > 0 {
                for fd in r.added.iter().chain(&r.removed).chain(&r.corrected).chain(&r.cloexec_corrected) {
                    let model = before.as_ref().and_then(|t| t.fds.get(fd).cloned());
                    eprintln!("pty-trace: drift pid {} fd {fd}: model {:?} /proc {:?}", o.pid, model, o.fds.get(fd));
                }
            }
        }
        // A seed put off because an exec or close_range overlapped the scan would leave the
        // process reported from events alone (a partial table) until the next interval: scan
        // it once more now; the change that overlapped is over.
        if !unseeded.is_empty() {
            let again: Vec<_> = unseeded.iter().filter_map(|&pid| procfs_scan::observe(pid)).collect();
            std::thread::sleep(Duration::from_millis(2));
            self.drain();
            for o in &again {
                self.model.reconcile(o);
            }
        }
        for pid in gone {
            if procfs_scan::proc_info(pid).is_none_or(|i| i.zombie) && self.model.procs.contains_key(&pid) {
                if debug_drift {
                    eprintln!("pty-trace: drift: process {pid} vanished from /proc without an exit event");
                }
                self.model.process_vanished(pid, scan_start);
            }
        }
        for (c, ppid) in children {
            if !self.model.procs.contains_key(&c)
                && let Some(info) = procfs_scan::proc_info(c)
                && !info.zombie
                && info.ppid == ppid
                && self.model.process_discovered(c, ppid, &info.comm, scan_start)
            {
                if debug_drift {
                    let ended = self.model.ended.iter().any(|e| e.pid == c);
                    eprintln!(
                        "pty-trace: drift: process {c} ({}) child of {ppid} missing from the model (in TRACKED: {}, seen ending: {ended}, state: {:?})",
                        info.comm,
                        self.tracked.contains(c),
                        std::fs::read_to_string(format!("/proc/{c}/stat")).ok().and_then(|s| s.split(") ").nth(1).map(|x| x.chars().next()))
                    );
                }
                let session = self.model.procs[&c].session;
                let _ = self.tracked.insert(c, session);
            }
        }
        for (pid, fd) in self.model.masters_without_index() {
            if let Some(i) = procfs_scan::tty_index(pid, fd) {
                self.model.set_pty_index(pid, fd, i);
            }
        }
        self.write_snapshots()
    }

    fn write_snapshots(&mut self) -> anyhow::Result<()> {
        let now = monotonic_ns();
        let ts = self.clock.ts(now);
        let (pty_nr, pty_max) = procfs_scan::pty_usage();
        let roots: Vec<u32> = self.books.iter().filter(|(_, b)| !b.summarized).map(|(r, _)| *r).collect();
        let outside = self.slaves_held_outside(&roots);
        let mut states = Vec::new();
        for root in roots {
            let ptys = self.model.pty_registry(root, &outside);
            let (rows, mut totals) = records::session_counts(&self.model, root, now);
            totals.orphaned_ptys = ptys.iter().filter(|p| p.orphaned).count();
            totals.ptys = records::distinct_ptys(&ptys);
            let orphaned_now = orphaned_indexes(&ptys);
            let persistent_orphans = match self.books.get_mut(&root) {
                Some(b) => {
                    let n = orphaned_now.intersection(&b.orphaned_before).count() as u64;
                    b.orphaned_before = orphaned_now;
                    n
                }
                None => 0,
            };
            let headroom = rows
                .iter()
                .filter_map(|r| procfs_scan::nofile_limit(r.pid).map(|l| l.saturating_sub(r.fds as u64)))
                .min();
            let session = &self.model.sessions[&root];
            let root_command = self.model.procs.get(&root).and_then(|p| p.command);
            let lingering = self
                .model
                .processes_in(root)
                .filter(|p| p.pid != root && p.command.is_some() && p.command == root_command && p.ppid == 1)
                .count() as u64;
            let sample = Sample {
                ts_ns: now,
                commands: session.commands.len() as u64,
                fds: totals.fds as u64,
                ptys: totals.ptys as u64,
                orphaned_ptys: persistent_orphans,
                lingering,
                nofile_headroom: headroom,
                pty_headroom: Some(pty_max.saturating_sub(pty_nr)),
            };
            let commands = session.commands.len();
            let execs = session.execs.len();
            let Some(book) = self.books.get_mut(&root) else { continue };
            let (scores, crossings) = book.scorer.observe(&sample);
            book.fd_peak = book.fd_peak.max(totals.fds);
            book.pty_peak = book.pty_peak.max(totals.ptys);
            for c in crossings {
                let book = self.books.get_mut(&root).expect("book per session");
                match c {
                    Crossing::Alert { health, reasons } => {
                        let mut a = AlertRec { session: root, ts: String::new(), health, reasons };
                        self.out.write("alert", &ts, &a)?;
                        a.ts = ts.clone();
                        book.alerts.push(a);
                    }
                    Crossing::Rotate { health, reasons } => {
                        let hook = self.opts.on_rotate.as_ref().map(|cmd| {
                            run_rotate_hook(cmd, self.opts.on_rotate_shell, root, health, &reasons)
                        });
                        self.rotate_fired = true;
                        let mut d = DecisionRec { action: "rotate", session: root, ts: String::new(), health, reasons, hook };
                        self.out.write("decision", &ts, &d)?;
                        d.ts = ts.clone();
                        book.actions.push(d);
                    }
                }
            }
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
                reasons: scores.reasons.clone(),
                pty_nr,
                pty_max,
                lost_events: self.lost_events,
                drift: self.model.stats.drift,
                drift_by_cause: self.model.stats.drift_by_cause.clone(),
            };
            self.out.write("snapshot", &ts, &snap)?;
            states.push(snap);
        }
        self.out.flush()?;
        if let Some(v) = self.view.as_mut() {
            let feed: Vec<_> = self
                .books
                .values()
                .flat_map(|b| {
                    b.alerts
                        .iter()
                        .map(|a| (a.ts.clone(), format!("ALERT s{} health {:.0}: {}", a.session, a.health, a.reasons.join("; "))))
                        .chain(b.actions.iter().map(|d| {
                            (d.ts.clone(), format!("ROTATE s{} health {:.0}: {}", d.session, d.health, d.reasons.join("; ")))
                        }))
                })
                .collect();
            let leak_seen = self.books.iter().map(|(k, b)| (*k, b.scorer.leak_seen)).collect();
            let th = (self.opts.thresholds.alert_health, self.opts.thresholds.rotate_health);
            v.update(ViewState::build(&self.model, &states, feed, self.lost_events, now, &leak_seen, th));
        }
        Ok(())
    }

    fn summaries(&mut self, reason: StopReason) -> anyhow::Result<Vec<SummaryRec>> {
        let now = monotonic_ns();
        let ts = self.clock.ts(now);
        let mut out = Vec::new();
        let roots: Vec<u32> = self.books.iter().filter(|(_, b)| !b.summarized).map(|(r, _)| *r).collect();
        let outside = self.slaves_held_outside(&roots);
        for root in roots {
            let Some(s) = self.model.sessions.get(&root) else { continue };
            let ended = s.ended_ns.unwrap_or(now);
            // A root that ended only because we stopped it (run/demo) keeps our reason.
            let ended_by_itself = s.ended_ns.is_some_and(|e| self.stopped_at.is_none_or(|stop| e < stop));
            let reason = if ended_by_itself { StopReason::RootExited } else { reason };
            // Descendants outliving their session: only meaningful once the root is gone.
            let root_gone = s.ended_ns.is_some();
            let descendants: Vec<DescendantRec> = self
                .model
                .processes_in(root)
                .filter(|p| root_gone && p.pid != root)
                .map(|p| DescendantRec {
                    pid: p.pid,
                    comm: p.comm.clone(),
                    command: p.command.and_then(|c| self.model.command(c)).map(|c| c.argv.clone()),
                })
                .collect();
            let orphaned = orphaned_indexes(&self.model.pty_registry(root, &outside));
            let leaked = records::leaked_at_end(&self.model, root, now, &orphaned);
            let exit_status = if Some(root) == self.child_pid() { self.exit_status } else { None };
            let book = self.books.get_mut(&root).expect("book per session");
            book.summarized = true;
            let sum = SummaryRec {
                session: root,
                start: self.clock.ts(s.started_ns),
                end: self.clock.ts(ended),
                duration_s: ended.saturating_sub(s.started_ns) as f64 / 1e9,
                verdict: records::verdict(book.scorer.leak_seen),
                end_reason: reason.as_str(),
                metrics: Metrics {
                    total_commands: s.commands.len(),
                    total_execs: s.execs.len(),
                    fd_peak: book.fd_peak,
                    pty_peak: book.pty_peak,
                    health_score_min: book.scorer.health_min,
                    health_score_final: book.scorer.last.health,
                },
                alerts: book.alerts.clone(),
                actions: book.actions.clone(),
                leaked_at_end: leaked,
                descendants_left_running: descendants,
                processes_seen: s.processes_seen,
                lost_events: self.lost_events,
                drift: self.model.stats.drift,
                drift_by_cause: self.model.stats.drift_by_cause.clone(),
                drift_examples: self.model.stats.drift_examples.clone(),
                exit_status,
                final_scores: book.scorer.last.clone(),
                tracer: {
                    let (cpu_s, max_rss_kib) = records::own_usage();
                    records::TracerCost {
                        events: self.model.stats.events,
                        decode_errors: self.decode_errors,
                        cpu_s,
                        max_rss_kib,
                        ring_buffer_bytes: self.opts.ring_bytes,
                    }
                },
            };
            self.out.write("summary", &ts, &sum)?;
            out.push(sum);
        }
        self.out.flush()?;
        Ok(out)
    }

    /// PTY indexes, among the masters the given sessions hold, whose slave some untraced process
    /// holds: one /proc scan for all sessions.
    fn slaves_held_outside(&self, roots: &[u32]) -> BTreeSet<u32> {
        let traced: BTreeSet<u32> = self.model.procs.keys().copied().collect();
        let masters: BTreeSet<u32> = roots.iter().flat_map(|r| self.model.master_indexes(*r)).collect();
        procfs_scan::outside_slave_holders(&masters, &traced)
    }

    fn child_pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    fn all_ended(&self) -> bool {
        self.model.sessions.values().all(|s| s.ended_ns.is_some())
    }

    /// Reaps the `run` child if it has exited.
    fn poll_child(&mut self) {
        if let Some(c) = self.child.as_mut()
            && self.exit_status.is_none()
            && let Ok(Some(st)) = c.try_wait()
        {
            self.exit_status = Some(status_code(st));
        }
    }

    /// Runs until every session's root has exited, `--duration` passes, or a signal/quit key.
    pub async fn run(mut self) -> AppResult<Outcome> {
        let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
        let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
        let mut sigchld = signal(SignalKind::child()).context("installing SIGCHLD handler")?;
        let mut tick = tokio::time::interval(self.opts.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = self.opts.duration.map(|d| tokio::time::Instant::now() + d);
        let mut redraw = tokio::time::interval(Duration::from_millis(100));
        // The kernel wakes us only when a burst fills an eighth of the buffer; a steady trickle
        // of records is picked up here.
        let mut drain_timer = tokio::time::interval(DRAIN_PERIOD);
        drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut reason = StopReason::RootExited;
        // The first snapshot comes after the first scan seeds the model.
        self.drain();
        loop {
            if self.all_ended() {
                break;
            }
            let ring = self.ring.as_ref().expect("ring buffer watched");
            tokio::select! {
                guard = ring.readable() => {
                    let mut g = guard.context("waiting for the ring buffer")?;
                    g.clear_ready();
                    drop(g);
                    self.drain();
                }
                _ = drain_timer.tick() => self.drain(),
                _ = tick.tick() => {
                    self.drain();
                    self.tick()?;
                    if self.opts.exit_on_rotate && self.rotate_fired {
                        reason = StopReason::Rotate;
                        break;
                    }
                }
                _ = sigint.recv() => { reason = StopReason::Interrupted; break; }
                _ = sigterm.recv() => { reason = StopReason::Interrupted; break; }
                _ = sigchld.recv() => { self.poll_child(); }
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    reason = StopReason::Duration;
                    break;
                }
                _ = redraw.tick(), if self.view.is_some() => {
                    let action = self.view.as_mut().map(|v| v.handle_input()).transpose()?.unwrap_or(Action::None);
                    match action {
                        Action::Quit => { reason = StopReason::Interrupted; break; }
                        Action::Export => {
                            self.write_snapshots()?;
                            let msg = match self.out.path() {
                                Some(p) => format!("wrote snapshots to {}", p.display()),
                                None if self.out.is_discard() => "no --jsonl output: nothing written".to_string(),
                                None => "wrote snapshots to stdout".to_string(),
                            };
                            if let Some(v) = self.view.as_mut() { v.set_status(msg); }
                        }
                        Action::None => {}
                    }
                }
            }
            if self.exit_status.is_some()
                && let Some(pid) = self.child_pid()
                && self.model.sessions.get(&pid).is_some_and(|s| s.ended_ns.is_none())
            {
                // The exit event should already be in the buffer; if it was lost, end anyway.
                self.drain();
                if let Some(s) = self.model.sessions.get_mut(&pid)
                    && s.ended_ns.is_none()
                {
                    self.model.process_vanished(pid, monotonic_ns());
                }
            }
        }
        self.finish(reason).await
    }

    async fn finish(mut self, reason: StopReason) -> AppResult<Outcome> {
        if reason != StopReason::RootExited {
            self.stopped_at = Some(monotonic_ns());
        }
        // Stop a `run` child still running, the way strace does when interrupted: it gets the
        // signal (SIGTERM), then SIGKILL if it has not gone after two seconds.
        if reason != StopReason::RootExited
            && let Some(pid) = self.child_pid()
            && self.exit_status.is_none()
        {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(2);
            while Instant::now() < until && self.exit_status.is_none() {
                tokio::time::sleep(Duration::from_millis(20)).await;
                self.poll_child();
            }
            if self.exit_status.is_none() {
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                if let Some(c) = self.child.as_mut()
                    && let Ok(st) = c.wait()
                {
                    self.exit_status = Some(status_code(st));
                }
            }
        }
        self.poll_child();
        if self.child.is_some() && self.exit_status.is_none()
            && let Some(c) = self.child.as_mut()
            && let Ok(st) = c.wait()
        {
            self.exit_status = Some(status_code(st));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.drain();
        // A last snapshot for sessions still alive, with everything seen so far.
        if self.model.sessions.values().any(|s| s.ended_ns.is_none()) {
            self.tick()?;
        }
        if let Some(v) = self.view.take() {
            v.close()?;
        }
        let summaries = self.summaries(reason)?;
        for pid in self.model.procs.keys() {
            self.tracked.remove(*pid);
        }
        drop(self.ring.take());
        let exit_code = match (self.exit_status, reason) {
            (_, StopReason::Rotate) => exit_code::ROTATE,
            (Some(st), _) => st,
            (None, _) => exit_code::OK,
        };
        Ok(Outcome { exit_code, summaries, probes: self.probes })
    }
}

/// Runs the `--on-rotate` command without waiting for it: without a shell unless asked, as the
/// user who invoked sudo (SUDO_UID/SUDO_GID) rather than root, with the decision in its
/// environment. Its outcome is recorded in the decision record.
fn run_rotate_hook(cmd: &str, shell: bool, session: u32, health: f64, reasons: &[String]) -> HookRec {
    use std::os::unix::process::CommandExt;
    let argv: Vec<String> = if shell {
        vec!["/bin/sh".into(), "-c".into(), cmd.into()]
    } else {
        match shlex::split(cmd) {
            Some(v) if !v.is_empty() => v,
            _ => return HookRec { argv: vec![cmd.into()], pid: None, error: Some("cannot split the command line (unbalanced quotes?)".into()) },
        }
    };
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .env("PTY_TRACE_SESSION", session.to_string())
        .env("PTY_TRACE_HEALTH", format!("{health:.1}"))
        .env("PTY_TRACE_REASON", reasons.join("; "))
        .stdin(std::process::Stdio::null());
    let id = |v: &str| std::env::var(v).ok().and_then(|s| s.parse::<u32>().ok());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0
        && let (Some(uid), Some(gid)) = (id("SUDO_UID"), id("SUDO_GID"))
    {
        c.uid(uid).gid(gid);
    }
    match c.spawn() {
        Ok(child) => {
            let pid = child.id();
            // Reaped in the background so it never becomes a zombie of ours.
            std::thread::spawn(move || {
                let mut child = child;
                let _ = child.wait();
            });
            HookRec { argv: crate::redact::redact_argv(&argv), pid: Some(pid), error: None }
        }
        Err(e) => HookRec { argv: crate::redact::redact_argv(&argv), pid: None, error: Some(e.to_string()) },
    }
}

/// `128+N` for a signal, like a shell.
fn status_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// Finds `program` the way exec will, to give "not found" / "not executable" up front.
fn resolve_program(program: &str) -> AppResult<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let check = |p: &std::path::Path| -> Option<AppResult<std::path::PathBuf>> {
        let md = std::fs::metadata(p).ok()?;
        if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
            return Some(Err(AppError::CannotExec(program.into(), "permission denied (not an executable file)".into())));
        }
        Some(Ok(p.to_path_buf()))
    };
    if program.contains('/') {
        return check(std::path::Path::new(program)).unwrap_or_else(|| Err(AppError::CommandNotFound(program.into())));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        if let Some(r) = check(&dir.join(program)) {
            return r;
        }
    }
    Err(AppError::CommandNotFound(program.into()))
}

fn pipe_cloexec() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(anyhow!("pipe2: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts `cmd` so that it is in the kernel's TRACKED map before it execs: the child reports its
/// pid through a pipe and waits for a go byte, which a helper thread sends after registering it.
fn spawn_registered(mut cmd: Command, tracked: &Tracked, program: &str) -> AppResult<(Child, u32)> {
    use std::os::unix::process::CommandExt;
    let (pid_r, pid_w) = pipe_cloexec()?;
    let (go_r, go_w) = pipe_cloexec()?;
    let (pid_w_raw, go_r_raw) = (pid_w.as_raw_fd(), go_r.as_raw_fd());
    // SAFETY: the closure only calls async-signal-safe functions (getpid, write, read).
    unsafe {
        cmd.pre_exec(move || {
            let pid = libc::getpid();
            let b = pid.to_ne_bytes();
            if libc::write(pid_w_raw, b.as_ptr().cast(), 4) != 4 {
                return Err(std::io::Error::last_os_error());
            }
            let mut go = [0u8; 1];
            if libc::read(go_r_raw, go.as_mut_ptr().cast(), 1) != 1 || go[0] != b'g' {
                return Err(std::io::Error::other("pty-trace could not register the child for tracing"));
            }
            Ok(())
        });
    }
    let t = tracked.clone();
    let registrar = std::thread::spawn(move || -> anyhow::Result<u32> {
        let mut b = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            // SAFETY: reading into a valid buffer from a pipe we own.
            let n = unsafe { libc::read(pid_r.as_raw_fd(), b[got..].as_mut_ptr().cast(), 4 - got) };
            if n <= 0 {
                return Err(anyhow!("the child exited before it could be registered"));
            }
            got += n as usize;
        }
        let pid = i32::from_ne_bytes(b) as u32;
        let reply = if t.insert(pid, pid).is_ok() { b"g" } else { b"n" };
        // SAFETY: writing one byte from a valid buffer.
        unsafe { libc::write(go_w.as_raw_fd(), reply.as_ptr().cast(), 1) };
        Ok(pid)
    });
    let spawned = cmd.spawn();
    // Our copies of the child's ends: closing them lets the registrar see EOF if spawn failed.
    drop(pid_w);
    drop(go_r);
    let registered = registrar.join().map_err(|_| anyhow!("registrar thread panicked"))?;
    let child = spawned.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AppError::CommandNotFound(program.into()),
        std::io::ErrorKind::PermissionDenied => AppError::CannotExec(program.into(), e.to_string()),
        _ => AppError::CannotExec(program.into(), e.to_string()),
    })?;
    let pid = registered?;
    if pid != child.id() {
        return Err(anyhow!("registered pid {pid} but spawned {}", child.id()).into());
    }
    Ok((child, pid))
}

trait AsFdOwned {
    fn as_fd_owned(&self) -> anyhow::Result<OwnedFd>;
}

impl AsFdOwned for std::io::Stderr {
    fn as_fd_owned(&self) -> anyhow::Result<OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned().context("duplicating stderr")
    }
}
