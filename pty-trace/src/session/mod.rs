//! The tracing runtime shared by `attach`, `run` and `demo`: it owns the probes, the model
//! and the outputs, and runs the event loop.
//!
//! Each turn of the loop does one of: drain the ring buffer into `Model::apply`; every
//! interval, reconcile with /proc (`reconcile.rs`), score and write a `snapshot` per session
//! (`core::snapshot` builds them); react to a signal, a key of the live view, the `run`
//! child's exit or `--duration`. At the end: one `summary` per session. It owns no fd
//! semantics (the model does) and builds no record fields itself (the core does).
//!
//! Every way out goes through [`Tracer::finish`]: the quit key, SIGINT, SIGTERM, SIGHUP and
//! SIGQUIT, `--duration`, the target exiting, an output error, an error of the loop itself, the
//! live view failing to open. `finish` stops a `run` child (its process group, then every
//! traced descendant still alive, like `timeout(1)`), closes the view, writes the summaries and
//! closes the JSONL writer. The child is also a guard (`spawn::RunChild`) whose drop kills it,
//! should anything still get past `finish`.

mod hook;
mod reconcile;
mod spawn;

use std::{
    collections::BTreeMap,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use self::{
    hook::RotateHook,
    spawn::{AsFdOwned, RunChild, resolve_program, spawn_registered},
};
use crate::{
    clock::{Clock, monotonic_ns},
    core::{
        model::{
            KernelAbi, Model,
            event::{Event, decode},
        },
        records::{EndReason, RecordKind, StartRec, SummaryRec, TracerCost},
        redact::redact_argv,
        score::{Crossing, Thresholds},
        snapshot::{self, Facts, SessionBook, SummaryContext},
        watch::WatchRule,
    },
    error::{AppError, AppResult, exit_code},
    kernel::{
        backend::ProbeChoice,
        probes::{KernelCounters, LoadOptions, Probes, Tracked},
    },
    output::{
        jsonl::{JsonlWriter, OutputFailure, Rotation},
        metrics::{Metrics, TracerSample},
        safe_open::open_output,
    },
    procfs,
    tui::{FeedItem, FeedKind, LiveView, UserAction, ViewInput},
};

/// How often the ring buffer is drained when the kernel has not woken us.
const DRAIN_PERIOD: Duration = Duration::from_millis(20);
/// Least time between two early snapshots (see `Tracer::early_snapshots`).
const EARLY_SNAPSHOT_SPACING: Duration = Duration::from_millis(250);
/// How long a stopped `run` child and its traced descendants get between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long the summaries may wait for a slow JSONL reader at the end.
const OUTPUT_CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Where the JSONL records go. Opened by [`Tracer::start`] once everything else has been
/// checked, so a failed start leaves an existing file untouched.
#[derive(Clone, Debug)]
pub enum Output {
    Stdout,
    File(std::path::PathBuf),
    /// `watch --jsonl-dir`: appended to, rotated by size, reopened on SIGHUP.
    Rotating(std::path::PathBuf, Option<Rotation>),
    /// Built for the live view, not written.
    Discard,
}

/// What to trace.
#[derive(Clone, Debug)]
pub enum Target {
    Attach(Vec<i32>),
    Run(Vec<String>),
    /// Every process that matches, from its exec (or found running at start) until it exits.
    Watch(WatchTarget),
}

/// `pty-trace watch`: what to follow and how many at once.
#[derive(Clone, Debug)]
pub struct WatchTarget {
    pub rule: WatchRule,
    /// Most sessions followed at once; matches beyond it are counted, not followed.
    pub max_sessions: usize,
}

/// How often `watch` also looks through /proc for matching processes it has not seen exec:
/// those that renamed themselves without exec (`tmux: server` is a forked client that calls
/// setproctitle). Exec, seen in the kernel, is how the others are found at once.
const WATCH_RESCAN: Duration = Duration::from_secs(5);

/// `watch`'s running state.
struct Watch {
    target: WatchTarget,
    /// Matching processes not followed because `max_sessions` were followed already: each
    /// counted once (`skipped`), and followed later if a place frees up.
    skipped_full: u64,
    skipped: std::collections::HashSet<(u32, u64)>,
    /// Sessions ended and forgotten.
    ended: u64,
    /// Execs of untracked processes to judge (from the ring buffer).
    pending: Vec<u32>,
    /// Processes judged not to match, by (pid, start time), with the command name they had:
    /// judged again only when they exec or their name changes.
    rejected: std::collections::HashMap<(u32, u64), String>,
    /// pty-trace's own ancestors (sudo, the shell, systemd): never followed, though their
    /// command lines hold the very patterns.
    ancestors: std::collections::HashSet<u32>,
    next_rescan: Instant,
}

/// Most entries of `Watch::rejected` and `Watch::skipped` before the dead are dropped.
const WATCH_CACHE_MAX: usize = 65_536;

#[derive(Clone, Debug)]
pub struct Options {
    pub interval: Duration,
    pub duration: Option<Duration>,
    pub ring_bytes: u32,
    /// `--debug-kernel`: print the kernel programs' diagnostics.
    pub debug_kernel: bool,
    /// `--probes`: which kernel hooks.
    pub probes: ProbeChoice,
    /// `--verbose`: a program that does not load prints the verifier's log.
    pub verbose: bool,
    pub thresholds: Thresholds,
    pub tui: bool,
    /// `run` with a live view: where the child's stdout/stderr go (the view owns the terminal).
    pub child_output: Option<std::path::PathBuf>,
    /// Command run when a session must rotate (argv, or a shell command with `on_rotate_shell`).
    pub on_rotate: Option<String>,
    pub on_rotate_shell: bool,
    /// Stop tracing (exit code 10) after the first rotate decision.
    pub exit_on_rotate: bool,
    /// `run --fail-on-leak`: each summary carries the leak gate's verdict against this budget.
    pub budget: Option<crate::core::gate::Budget>,
    /// `--metrics`: updated with every snapshot, the tracer's totals every interval.
    pub metrics: Option<Metrics>,
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
    /// The kernel side's loss counters, read every interval.
    counters: KernelCounters,
    child: Option<RunChild>,
    /// The checked `--on-rotate` command.
    hook: Option<RotateHook>,
    /// Traced processes /proc refused to show in the latest scan, and the most in one scan.
    unreadable_procs: u64,
    unreadable_procs_max: u64,
    /// A rotate decision was made (for `--exit-on-rotate`).
    rotate_fired: bool,
    /// When tracing was stopped by us (signal, quit key, --duration, --exit-on-rotate).
    stopped_at: Option<u64>,
    view: Option<LiveView>,
    /// `attach`: processes whose /proc cmdline could not be read (shown in `start`).
    unreadable_cmdlines: u64,
    /// No early snapshot before this (monotonic ns).
    next_early_ns: u64,
    /// `PTY_TRACE_DEBUG_EVENTS`: print decoded events (all, or those containing the filter).
    debug_events: Option<Option<String>>,
    /// `PTY_TRACE_INJECT_FAULT`, read once at start.
    fault: Option<Fault>,
    /// `watch`: follows matching processes as they appear.
    watch: Option<Watch>,
    /// `run --fail-on-leak` stopped by us: what each tree held just before it was stopped.
    open_at_stop: Option<BTreeMap<u32, crate::core::gate::OpenAtEnd>>,
}

/// Result of a finished trace: the exit code `main` should use, and what to print after.
pub struct Outcome {
    pub exit_code: i32,
    pub summaries: Vec<SummaryRec>,
    /// What stopped tracing when it was an error (one line, printed after the summary).
    pub error: Option<AppError>,
    /// The JSONL output failed or its reader went away: the summary goes to stderr.
    pub output_failed: bool,
    /// Records not written (queue full, output failed, still queued at the end).
    pub dropped_records: u64,
    /// Still attached: detaching takes a second or more (RCU grace periods), so the caller
    /// prints the summary first and then calls `Probes::detach`.
    pub probes: Probes,
    /// `watch`: matches not followed because `--max-sessions` were followed already.
    pub watch_skipped: u64,
    /// `watch`: sessions that ended (and were summarized, in the JSONL) before the end.
    pub watch_ended: Option<u64>,
}

impl Tracer {
    /// Loads the probes and starts tracing `target` (attach: registers the processes; run:
    /// starts the child registered before it execs).
    pub fn start(target: &Target, opts: Options, output: &Output) -> AppResult<Tracer> {
        let t0 = Instant::now();
        // Bad input is reported before anything is loaded or opened: it needs no privileges
        // to check, and an existing output file is not truncated by a start that fails.
        let roots = match target {
            Target::Attach(pids) => {
                let me = std::process::id() as i32;
                let mut roots = Vec::new();
                for &pid in pids {
                    if pid == me {
                        return Err(AppError::BadTarget(format!("PID {pid} is pty-trace itself: give the PID of the process to watch")));
                    }
                    let info = procfs::validate_target(pid)?;
                    procfs::check_fds_readable(info.pid, &info.comm)?;
                    roots.push(info);
                }
                roots
            }
            Target::Run(argv) => {
                let program = argv.first().ok_or_else(|| AppError::BadInput("run: no command given".into()))?;
                resolve_program(program)?;
                Vec::new()
            }
            Target::Watch(_) => Vec::new(),
        };
        let hook = match &opts.on_rotate {
            Some(cmd) => Some(RotateHook::prepare(cmd, opts.on_rotate_shell, opts.tui)?),
            None => None,
        };
        let mut probes = Probes::load(LoadOptions {
            ring_bytes: opts.ring_bytes,
            debug_kernel: opts.debug_kernel,
            choice: opts.probes,
            verbose: opts.verbose,
            watch_execs: matches!(target, Target::Watch(_)),
        })?;
        if let Some(m) = &opts.metrics {
            m.set_probes(probes.backend);
        }
        let out = open_jsonl(output)?;
        let clock = Clock::now();
        let tracked = probes.tracked.clone();
        let events = probes.events.take().ok_or_else(|| anyhow!("ring buffer already taken"))?;
        let mut tr = Tracer {
            model: Model::with_abi(KernelAbi::of_release(&crate::kernel::features::kernel_release())),
            books: BTreeMap::new(),
            tracked,
            ring: None,
            probes,
            out,
            opts,
            clock,
            decode_errors: 0,
            counters: KernelCounters::default(),
            child: None,
            hook,
            unreadable_procs: 0,
            unreadable_procs_max: 0,
            rotate_fired: false,
            stopped_at: None,
            view: None,
            unreadable_cmdlines: 0,
            next_early_ns: 0,
            debug_events: std::env::var_os("PTY_TRACE_DEBUG_EVENTS")
                .map(|_| std::env::var("PTY_TRACE_DEBUG_EVENTS").ok().filter(|f| !f.is_empty() && f != "1")),
            fault: injected_fault(),
            watch: match target {
                Target::Watch(w) => Some(Watch {
                    target: w.clone(),
                    skipped_full: 0,
                    skipped: Default::default(),
                    ended: 0,
                    pending: Vec::new(),
                    rejected: Default::default(),
                    ancestors: procfs::ancestors(std::process::id()).into_iter().collect(),
                    next_rescan: Instant::now() + WATCH_RESCAN,
                }),
                _ => None,
            },
            open_at_stop: None,
        };
        // SAFETY: the AsyncFd owns the ring buffer, so its fd stays open as long as it is
        // registered with the reactor.
        let watched = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) };
        tr.ring = Some(watched.context("watching the ring buffer")?);
        match target {
            Target::Attach(_) => tr.attach(&roots)?,
            Target::Run(argv) => tr.run_child(argv)?,
            Target::Watch(_) => {}
        }
        let command = match target {
            Target::Run(a) => Some(redact_argv(a)),
            Target::Attach(_) | Target::Watch(_) => None,
        };
        let start = StartRec {
            ready_ms: t0.elapsed().as_secs_f64() * 1e3,
            unreadable_cmdlines: tr.unreadable_cmdlines,
            ..tr.start_rec(tr.books.keys().copied().collect(), command)
        };
        let ts = tr.clock.ts(monotonic_ns());
        tr.out.write(RecordKind::Start, &ts, &start);
        tr.out.flush();
        if tr.watch.is_some() {
            // What already runs: after the probes are attached, so that a process exec'ing now
            // is either seen here or its exec reaches the ring buffer.
            let all = procfs::all_pids();
            tr.follow_matches(all);
        }
        Ok(tr)
    }

    /// A `start` record for `sessions`: how the probes loaded, the interval (`ready_ms` and
    /// `unreadable_cmdlines` 0: the first `start` sets them).
    fn start_rec(&self, sessions: Vec<u32>, command: Option<Vec<String>>) -> StartRec {
        StartRec {
            version: env!("CARGO_PKG_VERSION").to_string(),
            sessions,
            command,
            ring_buffer_bytes: self.opts.ring_bytes,
            probes: Some(self.probes.backend),
            probes_fallback: self.probes.fallback.clone(),
            attached_tracepoints: self.probes.attached_tracepoints,
            syscalls_not_followed: self.probes.missing_syscalls.iter().map(|s| s.to_string()).collect(),
            tracefs: self.probes.tracefs.display().to_string(),
            load_ms: self.probes.load_time.as_secs_f64() * 1e3,
            ready_ms: 0.0,
            interval_ms: self.opts.interval.as_millis() as u64,
            unreadable_cmdlines: 0,
        }
    }

    /// `watch`: starts a session for each of `pids` that matches and is not traced yet, with a
    /// `start` record of its own. A process is read from /proc once per name: its `stat` first
    /// (its name and start time), its command line and owner only if it was not judged before
    /// under that name.
    fn follow_matches(&mut self, pids: Vec<u32>) {
        // Stopping: no new session (the last snapshots and summaries are being written).
        if self.stopped_at.is_some() {
            return;
        }
        let me = std::process::id();
        for pid in pids {
            let Some(w) = self.watch.as_mut() else { return };
            if pid == me || w.ancestors.contains(&pid) || self.model.procs.contains_key(&pid) || self.tracked.contains(pid) {
                continue;
            }
            let Some(st) = procfs::watch_stat(pid) else { continue };
            let key = (pid, st.start_ticks);
            if w.rejected.get(&key).is_some_and(|comm| *comm == st.info.comm) {
                continue;
            }
            let argv = procfs::cmdline(pid);
            let uid = procfs::machine::real_uid(pid).ok();
            let candidate = crate::core::watch::Candidate { comm: &st.info.comm, argv: argv.as_deref().unwrap_or(&[]), uid };
            // Our own children (the --on-rotate hooks) are not the user's processes.
            if !w.target.rule.matches(candidate) || procfs::ancestors(pid).contains(&me) {
                w.rejected.insert(key, st.info.comm.clone());
                continue;
            }
            let live = self.books.values().filter(|b| !b.summarized).count();
            if live >= w.target.max_sessions {
                if w.skipped.insert(key) {
                    w.skipped_full += 1;
                }
                continue;
            }
            w.skipped.remove(&key);
            // It may have exited since: then there is nothing to follow.
            if procfs::validate_target(pid as i32).is_err() {
                continue;
            }
            if self.attach(std::slice::from_ref(&st.info)).is_err() {
                // TRACKED refused it (full): undo the half-made session.
                for p in self.model.forget_session(pid, monotonic_ns()) {
                    self.tracked.remove(p);
                }
                self.books.remove(&pid);
                continue;
            }
            let start = self.start_rec(vec![pid], argv.as_deref().map(redact_argv));
            let ts = self.clock.ts(monotonic_ns());
            self.out.write(RecordKind::Start, &ts, &start);
        }
        self.out.flush();
        // Bounded: forget what is known of processes that are gone.
        if let Some(w) = self.watch.as_mut()
            && (w.rejected.len() > WATCH_CACHE_MAX || w.skipped.len() > WATCH_CACHE_MAX)
        {
            let alive = |pid: u32| std::path::Path::new(&format!("/proc/{pid}")).exists();
            w.rejected.retain(|(pid, _), _| alive(*pid));
            w.skipped.retain(|(pid, _)| alive(*pid));
        }
    }

    /// `watch`: each session whose root has exited gets its last snapshot and its summary, and
    /// is then forgotten, with the descendants that outlived the root (no longer traced).
    fn summarize_ended(&mut self) {
        if self.watch.is_none() {
            return;
        }
        let ended: Vec<u32> = self
            .books
            .iter()
            .filter(|(r, b)| !b.summarized && self.model.sessions.get(r).is_some_and(|s| s.ended_ns.is_some()))
            .map(|(r, _)| *r)
            .collect();
        if ended.is_empty() {
            return;
        }
        // Their last snapshot was written by this interval's `write_snapshots`.
        self.summaries_of(ended.clone(), EndReason::RootExited, None);
        let now = monotonic_ns();
        for root in ended {
            for pid in self.model.forget_session(root, now) {
                self.tracked.remove(pid);
            }
            // And those the model never saw (a fork whose event was lost, say).
            self.tracked.remove_session(root);
            self.books.remove(&root);
            if let Some(w) = self.watch.as_mut() {
                w.ended += 1;
            }
        }
    }

    fn new_session(&mut self, root: u32) {
        self.model.add_session(root, monotonic_ns());
        self.books.insert(root, SessionBook::new(root, self.opts.thresholds.clone()));
    }

    /// Registers validated session roots and their live descendants (`watch` calls it for each
    /// new match: only the new roots' trees are walked and read).
    fn attach(&mut self, infos: &[procfs::ProcInfo]) -> AppResult<()> {
        let before: std::collections::BTreeSet<u32> = self.model.procs.keys().copied().collect();
        let mut roots = Vec::new();
        for info in infos {
            if self.books.contains_key(&info.pid) {
                continue;
            }
            self.new_session(info.pid);
            self.model.add_process(info.pid, info.ppid, info.pid, &info.comm, monotonic_ns());
            self.tracked.insert(info.pid, info.pid)?;
            roots.push(info.pid);
        }
        // Descendants alive now. Once a process is in TRACKED the kernel tracks its new children
        // itself, so repeating the walk until it finds nothing new closes the race with forks.
        for _ in 0..10 {
            let mut added = false;
            for &root in &roots {
                for d in procfs::descendants(root) {
                    // Attached to an ancestor of its own: the tracer does not trace itself
                    // (nor, through it, its own rotate hooks).
                    if self.model.procs.contains_key(&d.pid) || d.pid == std::process::id() {
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
        // What the processes found here were running: the kernel saw none of their execs. The
        // wrappers are looked through first, so that the work root's children are the commands
        // in flight, and what runs under those belongs to them.
        for &root in &roots {
            self.model.look_through_wrappers(root);
        }
        let mut pids: Vec<u32> = self.model.procs.keys().copied().filter(|p| !before.contains(p)).collect();
        pids.sort_unstable();
        for pid in pids {
            match procfs::cmdline(pid) {
                Some(argv) => self.model.set_preexisting_command(pid, &argv),
                None => self.unreadable_cmdlines += 1,
            }
        }
        for &root in &roots {
            self.model.inherit_units(root);
        }
        Ok(())
    }

    /// Starts the command `start` has already resolved.
    fn run_child(&mut self, argv: &[String]) -> AppResult<()> {
        let program = argv.first().ok_or_else(|| AppError::BadInput("run: no command given".into()))?;
        let mut cmd = Command::new(program);
        cmd.args(&argv[1..]);
        if let Some(p) = &self.opts.child_output {
            let out = open_output(p, "child output file").map_err(AppError::BadInput)?.file;
            cmd.stdout(out.try_clone().context("duplicating the child output fd")?).stderr(out);
            if self.opts.tui {
                cmd.stdin(std::process::Stdio::null());
            }
        } else if self.opts.tui {
            // The live view owns the terminal: the child must not draw on it.
            let out = std::fs::File::create("/dev/null").context("opening /dev/null")?;
            cmd.stdin(std::process::Stdio::null()).stdout(out.try_clone().context("dup")?).stderr(out);
        } else if !self.out.is_discard() && self.out.path().is_none() {
            // JSONL goes to stdout: keep the child's output off it so the stream stays parseable.
            cmd.stdout(std::process::Stdio::from(std::io::stderr().as_fd_owned()?));
        }
        // A child that reads the terminal (no live view, a terminal on stdin) stays in our
        // process group, the terminal's foreground group; any other leads its own group.
        use std::io::IsTerminal;
        let own_group = self.opts.tui || !std::io::stdin().is_terminal();
        let child = spawn_registered(cmd, &self.tracked, program, own_group)?;
        let pid = child.pid();
        self.new_session(pid);
        self.model.add_process(pid, std::process::id(), pid, &crate::core::model::comm_of(program), monotonic_ns());
        self.child = Some(child);
        Ok(())
    }

    /// Drains every record in the ring buffer into the model.
    fn drain(&mut self) {
        if let Some(log) = self.probes.kernel_log.as_mut() {
            log.flush();
        }
        let Some(ring) = self.ring.as_mut() else { return };
        let rb = ring.get_mut();
        while let Some(item) = rb.next() {
            match decode(&item) {
                // `watch`: an untracked process exec'd; judged once the buffer is drained.
                Ok(Event::Exec { h, .. }) if h.session == 0 => {
                    if let Some(w) = self.watch.as_mut() {
                        w.pending.push(h.tgid);
                    }
                }
                Ok(mut ev) => {
                    // Received fds: the kernel side knows their numbers; /proc says what they
                    // are, read now, before any later event of the process is applied.
                    if let Event::Received { h, fds, .. } = &mut ev {
                        for r in fds.iter_mut() {
                            r.seen = procfs::observe_fd(h.tgid, r.fd);
                        }
                    }
                    // A PTY opened by path: its devpts instance is the one at /dev/pts in the
                    // opener's mount namespace (a container's own); the kernel side cannot say.
                    if let Event::Open { h, path, devpts, .. } = &mut ev
                        && procfs::pty_identity::is_pty_path(path)
                    {
                        *devpts = procfs::pty_identity::dev_pts_of(h.tgid);
                    }
                    if let Some(filter) = &self.debug_events {
                        let text = format!("{:?}", ev.redacted());
                        match filter {
                            Some(f) if !text.contains(f.as_str()) => {}
                            _ => eprintln!("pty-trace: event {text}"),
                        }
                    }
                    self.model.apply(&ev)
                }
                Err(_) => self.decode_errors += 1,
            }
        }
        if let Some(w) = self.watch.as_mut()
            && !w.pending.is_empty()
        {
            let mut pids = std::mem::take(&mut w.pending);
            pids.sort_unstable();
            pids.dedup();
            // An exec is a new image: judge it again even if its old one did not match.
            w.rejected.retain(|(pid, _), _| pids.binary_search(pid).is_err());
            self.follow_matches(pids);
        }
    }

    /// One interval's work: reconcile with /proc, score, write snapshots.
    fn tick(&mut self) {
        self.counters = self.probes.counters();
        self.reconcile_with_proc();
        self.write_snapshots();
        self.summarize_ended();
        if let Some(w) = self.watch.as_mut()
            && Instant::now() >= w.next_rescan
        {
            w.next_rescan = Instant::now() + WATCH_RESCAN;
            self.follow_matches(procfs::all_pids());
        }
        if let Some(m) = &self.opts.metrics {
            m.tracer(TracerSample {
                events: self.model.stats.events,
                lost_events: self.counters.lost_events,
                drift: self.model.stats.drift,
                untracked_children: self.counters.untracked_children,
                cpu_s: own_usage().0,
                unreadable_processes: self.unreadable_procs,
            });
            // The pool, whether or not a session wrote a snapshot this interval.
            let (nr, max) = procfs::pty_usage();
            m.pool(nr, max);
            if let Some(w) = &self.watch {
                m.watch(w.skipped_full, self.counters.watch_execs_lost);
            }
        }
    }

    /// What /proc and the kernel say now, for a snapshot of the sessions in `roots`: machine
    /// PTY usage and the RLIMIT_NOFILE of their processes on top of [`Self::end_facts`].
    fn facts(&self, roots: &[u32]) -> Facts {
        let (pty_nr, pty_max) = procfs::pty_usage();
        let nofile_limits = roots
            .iter()
            .flat_map(|&r| self.model.processes_in(r))
            .filter_map(|p| procfs::nofile_limit(p.pid).map(|l| (p.pid, l)))
            .collect();
        Facts { pty_nr, pty_max, nofile_limits, ..self.end_facts(roots) }
    }

    /// The facts a `summary` uses: the time, slave holders outside the sessions, and the
    /// kernel's counters (no limits or PTY usage: a summary scores nothing).
    fn end_facts(&self, roots: &[u32]) -> Facts {
        Facts {
            now_ns: monotonic_ns(),
            slaves_held_outside: self.slaves_held_outside(roots),
            lost_events: self.counters.lost_events,
            untracked_children: self.counters.untracked_children,
            unreadable_procs: self.unreadable_procs,
            ..Facts::default()
        }
    }

    fn unsummarized(&self) -> Vec<u32> {
        self.books.iter().filter(|(_, b)| !b.summarized).map(|(r, _)| *r).collect()
    }

    fn write_snapshots(&mut self) {
        let roots = self.unsummarized();
        self.write_snapshots_of(roots, false);
    }

    /// Scores at once the sessions where an orphaned PTY has come due (see
    /// `Model::take_due_orphans`), at most every `EARLY_SNAPSHOT_SPACING`: a leak is named as
    /// soon as its evidence holds, whatever the interval.
    fn early_snapshots(&mut self) {
        let now = monotonic_ns();
        if now < self.next_early_ns {
            return;
        }
        let th = &self.opts.thresholds;
        let (commands, grace) = (th.abandon_commands, (th.abandon_grace_s * 1e9) as u64);
        let min = (th.overtaken_after_s * 1e9) as u64;
        let due: Vec<u32> = self
            .unsummarized()
            .into_iter()
            .filter(|&r| self.model.take_due_orphans(r, commands, min, grace, now))
            .collect();
        if due.is_empty() {
            return;
        }
        self.next_early_ns = now + EARLY_SNAPSHOT_SPACING.as_nanos() as u64;
        self.write_snapshots_of(due, true);
    }

    /// Scores `roots` and writes their snapshots (and any alert or decision); `early`: between
    /// intervals (the live view waits for the next interval).
    fn write_snapshots_of(&mut self, roots: Vec<u32>, early: bool) {
        let facts = self.facts(&roots);
        let ts = self.clock.ts(facts.now_ns);
        let mut snaps = Vec::new();
        for root in roots {
            let Some(book) = self.books.get_mut(&root) else { continue };
            let (mut snap, crossings) = book.snapshot(&self.model, &facts);
            snap.early = early;
            for c in crossings {
                match c {
                    Crossing::Alert { health, reasons } => {
                        let a = book.record_alert(&ts, health, reasons);
                        self.out.write(RecordKind::Alert, &ts, &a);
                    }
                    Crossing::Rotate { health, reasons } => {
                        let hook = self.hook.as_ref().map(|h| h.run(root, health, &reasons));
                        self.rotate_fired = true;
                        let d = book.record_decision(&ts, health, reasons, hook);
                        self.out.write(RecordKind::Decision, &ts, &d);
                    }
                }
            }
            self.out.write(RecordKind::Snapshot, &ts, &snap);
            if let Some(m) = &self.opts.metrics {
                let comm = self.model.procs.get(&root).map(|p| p.comm.clone());
                m.session(&snap, comm.as_deref(), self.opts.thresholds.rotate_health);
            }
            snaps.push(snap);
        }
        self.out.flush();
        if early {
            return;
        }
        if let Some(v) = self.view.as_mut() {
            let fd_details = snaps.iter().flat_map(|s| snapshot::fd_details(&self.model, s, facts.now_ns)).collect();
            let feed = self
                .books
                .values()
                .flat_map(|b| {
                    let alerts = b.alerts.iter().map(|a| FeedItem::new(FeedKind::Alert, &a.ts, a.session, a.health, &a.reasons));
                    let actions = b.actions.iter().map(|d| FeedItem::new(FeedKind::Rotate, &d.ts, d.session, d.health, &d.reasons));
                    alerts.chain(actions)
                })
                .collect();
            let verdicts = self.books.iter().map(|(k, b)| (*k, b.verdict_so_far())).collect();
            v.update(ViewInput {
                snapshots: &snaps,
                fd_details: &fd_details,
                feed,
                verdicts: &verdicts,
                drift: self.model.stats.drift,
                lost_events: facts.lost_events,
                untracked_children: facts.untracked_children,
                thresholds: &self.opts.thresholds,
                probes: self.probes.backend,
            });
        }
    }

    fn summaries(&mut self, reason: EndReason, error: Option<String>) -> Vec<SummaryRec> {
        let roots = self.unsummarized();
        self.summaries_of(roots, reason, error)
    }

    fn summaries_of(&mut self, roots: Vec<u32>, reason: EndReason, error: Option<String>) -> Vec<SummaryRec> {
        let facts = self.end_facts(&roots);
        let ts = self.clock.ts(facts.now_ns);
        let (cpu_s, max_rss_kib) = own_usage();
        let clock = self.clock;
        let ts_of = move |mono: u64| clock.ts(mono);
        let end = SummaryContext {
            reason,
            stopped_at_ns: self.stopped_at,
            child: self.child_pid(),
            exit_status: self.exit_status(),
            cost: TracerCost {
                events: self.model.stats.events,
                decode_errors: self.decode_errors,
                cpu_s,
                max_rss_kib,
                ring_buffer_bytes: self.opts.ring_bytes,
            },
            unreadable_procs: self.unreadable_procs_max,
            dropped_records: self.out.dropped_records(),
            error,
            ts_of: &ts_of,
            budget: self.opts.budget,
            open_at_stop: self.open_at_stop.as_ref(),
        };
        let mut out = Vec::new();
        for root in roots {
            let Some(book) = self.books.get_mut(&root) else { continue };
            if let Some(sum) = book.summary(&self.model, &facts, &end) {
                self.out.write(RecordKind::Summary, &ts, &sum);
                if let Some(m) = &self.opts.metrics {
                    m.session_ended(root);
                }
                out.push(sum);
            }
        }
        self.out.flush();
        out
    }

    /// PTY indexes, among the masters the given sessions hold, whose slave some untraced process
    /// holds: one /proc scan for all sessions.
    fn slaves_held_outside(&self, roots: &[u32]) -> std::collections::BTreeSet<crate::core::model::pty::PtySlot> {
        let traced = self.model.procs.keys().copied().collect();
        let masters = roots.iter().flat_map(|r| self.model.master_slots(*r)).collect();
        procfs::outside_slave_holders(&masters, &traced)
    }

    fn child_pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid())
    }

    fn exit_status(&self) -> Option<i32> {
        self.child.as_ref().and_then(|c| c.status())
    }

    /// Every session's root has exited (`watch` never ends this way: it waits for more).
    fn all_ended(&self) -> bool {
        self.watch.is_none() && self.model.sessions.values().all(|s| s.ended_ns.is_some())
    }

    /// Reaps the `run` child if it has exited.
    fn poll_child(&mut self) {
        if let Some(c) = self.child.as_mut() {
            c.try_reap();
        }
    }

    /// Runs until every session's root has exited, `--duration` passes, a signal, the quit
    /// key, or an error; every one of them ends in [`Self::finish`]. With `view`, the live view
    /// is opened first (its failure ends tracing the same way).
    pub async fn run(mut self, view: bool) -> Outcome {
        let ended = if view {
            let opened = match self.fault {
                Some(Fault::View) => Err(anyhow!("injected fault: the live view cannot open")),
                _ => LiveView::open(),
            };
            match opened {
                Ok(v) => {
                    self.view = Some(v);
                    self.event_loop().await
                }
                Err(e) => Err(AppError::Other(e.context("opening the live view"))),
            }
        } else {
            self.event_loop().await
        };
        match ended {
            Ok(reason) => self.finish(reason, None).await,
            Err(e) => self.finish(EndReason::Failed, Some(e)).await,
        }
    }

    /// The event loop; returns why it stopped.
    async fn event_loop(&mut self) -> AppResult<EndReason> {
        let listen = |kind: SignalKind, name: &str| signal(kind).with_context(|| format!("installing the {name} handler"));
        let mut sigint = listen(SignalKind::interrupt(), "SIGINT")?;
        let mut sigterm = listen(SignalKind::terminate(), "SIGTERM")?;
        // A closed terminal or tmux pane (SIGHUP) and Ctrl-\ (SIGQUIT) end like SIGTERM, as
        // they do for strace: the child is stopped, the summary written, the terminal restored.
        let mut sighup = listen(SignalKind::hangup(), "SIGHUP")?;
        let mut sigquit = listen(SignalKind::quit(), "SIGQUIT")?;
        let mut sigchld = listen(SignalKind::child(), "SIGCHLD")?;
        let mut tick = tokio::time::interval(self.opts.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = self.opts.duration.map(|d| tokio::time::Instant::now() + d);
        let mut redraw = tokio::time::interval(Duration::from_millis(100));
        // The kernel wakes us only when a burst fills an eighth of the buffer; a steady trickle
        // of records is picked up here.
        let mut drain_timer = tokio::time::interval(DRAIN_PERIOD);
        drain_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The first snapshot comes after the first scan seeds the model.
        self.drain();
        loop {
            if self.all_ended() {
                return Ok(EndReason::RootExited);
            }
            match self.out.failure() {
                Some(OutputFailure::Closed) => return Ok(EndReason::OutputClosed),
                Some(OutputFailure::Error(e)) => return Err(AppError::Other(anyhow!(e))),
                None => {}
            }
            let ring = self.ring.as_ref().ok_or_else(|| anyhow!("the ring buffer is not watched"))?;
            tokio::select! {
                guard = ring.readable() => {
                    let mut g = guard.context("waiting for the ring buffer")?;
                    g.clear_ready();
                    drop(g);
                    self.drain();
                    self.early_snapshots();
                }
                _ = drain_timer.tick() => {
                    self.drain();
                    self.early_snapshots();
                }
                _ = tick.tick() => {
                    self.drain();
                    self.tick();
                    if self.fault == Some(Fault::Loop) {
                        return Err(AppError::Other(anyhow!("injected fault: the event loop failed")));
                    }
                    if self.opts.exit_on_rotate && self.rotate_fired {
                        return Ok(EndReason::Rotate);
                    }
                }
                _ = sigint.recv() => return Ok(EndReason::Interrupted),
                _ = sigterm.recv() => return Ok(EndReason::Interrupted),
                // `watch` is a service: SIGHUP reopens its JSONL file (logrotate), like syslogd.
                _ = sighup.recv() => {
                    if self.watch.is_none() {
                        return Ok(EndReason::Interrupted);
                    }
                    self.out.reopen();
                }
                _ = sigquit.recv() => return Ok(EndReason::Interrupted),
                _ = sigchld.recv() => { self.poll_child(); }
                _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                    return Ok(EndReason::Duration);
                }
                _ = redraw.tick(), if self.view.is_some() => {
                    let action = self.view.as_mut().map(|v| v.handle_input()).transpose()?.unwrap_or(UserAction::None);
                    match action {
                        UserAction::Quit => return Ok(EndReason::Interrupted),
                        UserAction::Export => {
                            self.write_snapshots();
                            let msg = match self.out.path() {
                                Some(p) => format!("wrote snapshots to {}", p.display()),
                                None if self.out.is_discard() => "no --jsonl output: nothing written".to_string(),
                                None => "wrote snapshots to stdout".to_string(),
                            };
                            if let Some(v) = self.view.as_mut() { v.set_status(msg); }
                        }
                        UserAction::None => {}
                    }
                }
            }
            if self.exit_status().is_some()
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
    }

    /// The one way out: stops a `run` child, writes the last snapshots and the summaries,
    /// gives the terminal back and closes the output. Nothing here returns early.
    async fn finish(mut self, reason: EndReason, error: Option<AppError>) -> Outcome {
        if reason != EndReason::RootExited {
            self.stopped_at = Some(monotonic_ns());
            if self.opts.budget.is_some() {
                // The gate counts what the tree held when it was stopped, not after the kill.
                self.drain();
                let roots = self.unsummarized();
                self.open_at_stop = Some(roots.into_iter().map(|r| (r, crate::core::gate::open_at_end(&self.model, r))).collect());
            }
            self.stop_run_child().await;
        }
        // The child exited by itself: reap it (its exit is what ended the loop).
        if let Some(c) = self.child.as_mut()
            && c.try_reap().is_none()
            && reason == EndReason::RootExited
        {
            c.wait();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.drain();
        // A last snapshot for sessions still alive, with everything seen so far.
        if self.model.sessions.values().any(|s| s.ended_ns.is_none()) {
            self.tick();
        }
        if let Some(v) = self.view.take() {
            let _ = v.close();
        }
        let output_failure = self.out.failure();
        let error_line = error.as_ref().map(|e| format!("{e:#}"));
        let summaries = self.summaries(reason, error_line);
        for pid in self.model.procs.keys() {
            self.tracked.remove(*pid);
        }
        drop(self.ring.take());
        self.out.close(OUTPUT_CLOSE_WAIT);
        let exit_code = match (&error, reason, self.exit_status()) {
            (Some(e), _, _) => e.exit_code(),
            (None, EndReason::Rotate, _) => exit_code::ROTATE,
            (None, EndReason::OutputClosed, _) => exit_code::OUTPUT_CLOSED,
            (None, _, Some(st)) => st,
            (None, _, None) => exit_code::OK,
        };
        Outcome {
            exit_code,
            summaries,
            error,
            output_failed: output_failure.is_some(),
            dropped_records: self.out.dropped_records(),
            watch_skipped: self.watch.as_ref().map_or(0, |w| w.skipped_full),
            watch_ended: self.watch.as_ref().map(|w| w.ended),
            probes: self.probes,
        }
    }

    /// Stops the `run` child the way `timeout(1)` does, and what it started: SIGTERM to its
    /// process group and to every traced descendant still alive (some leave the group:
    /// `setsid`, daemons), up to [`STOP_GRACE`] for all of them to go, then SIGKILL to whatever
    /// is left. Only processes still in the kernel's TRACKED map are signalled: an exited
    /// process leaves it, so a reused PID is never hit.
    async fn stop_run_child(&mut self) {
        let Some(root) = self.child_pid() else { return };
        let term_sent = Instant::now();
        if let Some(c) = self.child.as_ref() {
            c.signal(libc::SIGTERM);
        }
        // Those still in the child's group have it already: a second SIGTERM means "force
        // quit" to many programs.
        for pid in self.traced_alive(root) {
            if !self.child.as_ref().is_some_and(|c| c.has_in_group(pid)) {
                // SAFETY: plain kill(2) on a traced process (see above).
                unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            }
        }
        loop {
            self.poll_child();
            self.drain();
            let child_done = self.exit_status().is_some();
            if child_done && self.traced_alive(root).is_empty() {
                break;
            }
            if term_sent.elapsed() >= STOP_GRACE {
                if let Some(c) = self.child.as_ref() {
                    c.signal(libc::SIGKILL);
                }
                for pid in self.traced_alive(root) {
                    // SAFETY: as above.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
                if let Some(c) = self.child.as_mut() {
                    c.wait();
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Processes of session `root` that the kernel still tracks (alive), the root excepted
    /// (it is the child, signalled through its guard).
    fn traced_alive(&self, root: u32) -> Vec<u32> {
        self.model.processes_in(root).map(|p| p.pid).filter(|&pid| pid != root && self.tracked.contains(pid)).collect()
    }
}

/// Faults the fault-matrix tests inject through `PTY_TRACE_INJECT_FAULT`, to reach error
/// paths no real input reaches on demand: `view` (the live view fails to open once the child
/// runs) and `loop` (the event loop fails after its first interval).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    View,
    Loop,
}

fn injected_fault() -> Option<Fault> {
    match std::env::var("PTY_TRACE_INJECT_FAULT").ok()?.as_str() {
        "view" => Some(Fault::View),
        "loop" => Some(Fault::Loop),
        _ => None,
    }
}

/// Opens the JSONL output (see `output::safe_open`).
fn open_jsonl(output: &Output) -> AppResult<JsonlWriter> {
    let w = match output {
        Output::Stdout => JsonlWriter::stdout().map_err(|e| AppError::Other(anyhow!("duplicating stdout: {e}")))?,
        Output::File(p) => JsonlWriter::create(p).map_err(AppError::BadInput)?,
        Output::Rotating(p, rotation) => JsonlWriter::appending(p, *rotation).map_err(AppError::BadInput)?,
        Output::Discard => return Ok(JsonlWriter::discard()),
    };
    // Tests of back-pressure use a small queue.
    match std::env::var("PTY_TRACE_OUTPUT_QUEUE_BYTES").ok().map(|v| v.parse::<u64>()) {
        Some(Ok(n)) => Ok(w.with_queue_limit(n)),
        Some(Err(_)) => Err(AppError::BadInput("PTY_TRACE_OUTPUT_QUEUE_BYTES must be a number of bytes".into())),
        None => Ok(w),
    }
}

/// CPU seconds and peak RSS (KiB) of this process so far.
fn own_usage() -> (f64, u64) {
    // SAFETY: getrusage fills the struct we own.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    (tv(ru.ru_utime) + tv(ru.ru_stime), ru.ru_maxrss as u64)
}
