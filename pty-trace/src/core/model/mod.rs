//! The pure core: sessions, their process trees, fd tables, PTYs and commands.
//!
//! `Model::apply` takes one kernel [`Event`] and updates the state; `Model::reconcile` compares
//! a process with what /proc showed and repairs (and counts) any difference. No I/O and no clock
//! reads happen here: time comes in with the events and scans, so everything is testable with
//! generated event sequences (see `tests/` here and `pty-trace/tests/model_reference/`).

pub mod event;
pub mod fd;
pub mod history;
pub mod lifecycle;
pub mod pty;
pub mod reconcile;
mod syscalls;
pub mod table;
pub mod units;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use pty_trace_common::{CLONE_FILES, CLONE_THREAD};

pub use event::{Event, Header};
pub use fd::{CommandId, FdEntry, FdKind, PtyRole};
pub use history::{CommandLog, Timeline};
pub use lifecycle::PtyRelease;
pub use table::FdTable;

use crate::core::redact::redact_argv;

pub type TableId = u64;

/// A traced session: a root process and all its descendants.
#[derive(Clone, Debug)]
pub struct Session {
    pub root: u32,
    pub started_ns: u64,
    /// Set when the root process exits.
    pub ended_ns: Option<u64>,
    /// Execs seen in the session (chained ones included).
    pub execs: u64,
    /// The session's commands, in order (see `units` for the rule). What a command starts in
    /// turn (`sh -c 'ls'` forking `ls`) belongs to it. This is the unit of "growth per
    /// command": an agent's tool calls, the commands typed in a pane's shell. The oldest are
    /// forgotten once nothing can ask about them (see `history`); `len()` counts them all.
    pub commands: Timeline,
    /// Processes ever seen in the session (including the root).
    pub processes_seen: u64,
    /// The process whose children's execs are commands: the root, or the process a wrapper
    /// root started (see `units`).
    pub work_root: u32,
    /// Live processes that belong to no command: the root, its helpers, the wrappers. What
    /// they hold is what the session keeps between commands.
    pub core_pids: BTreeSet<u32>,
    /// Each command's end, with what the session's own processes held then.
    pub command_ends: Vec<CommandEnd>,
    /// The latest PTY releases (see `lifecycle`), at most `MAX_PTY_RELEASES`; the leak
    /// evidence reads the ones it has not seen by their number (`pty_releases_total`).
    pub pty_releases: std::collections::VecDeque<PtyRelease>,
    /// Releases ever pushed.
    pub pty_releases_total: u64,
    /// Releases the session's leak evidence has judged (it sets this through `&Model`, see
    /// `evidence`): they are never read again, so they keep nothing alive (see `history`).
    pub pty_releases_read: std::cell::Cell<u64>,
    /// PTYs that lost their last slave holder while their master is held: (index, commands
    /// started then, when). See `Model::take_due_orphans`.
    pub orphan_candidates: Vec<(u32, usize, u64)>,
}

/// A command ended (its process exited).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommandEnd {
    pub command: CommandId,
    pub ts_ns: u64,
    /// fds other than PTY ends held by the session's own processes (`core_pids`) right then.
    pub core_fds: usize,
}

/// An image of the work root shorter-lived than this that exec'd again was a shim: what it ran
/// were helpers, not commands (see `units`).
pub const SHIM_IMAGE_NS: u64 = 2_000_000_000;

/// Most PTY releases kept per session (far more than happen between two snapshots).
pub const MAX_PTY_RELEASES: usize = 4096;

/// Most command ends kept per session (the growth window needs far fewer).
pub const MAX_COMMAND_ENDS: usize = 512;

/// A live process of a session.
#[derive(Clone, Debug)]
pub struct Process {
    pub pid: u32,
    pub ppid: u32,
    pub session: u32,
    pub comm: String,
    pub table: TableId,
    /// The exec running now (None for processes older than tracing, until /proc says).
    pub command: Option<CommandId>,
    pub started_ns: u64,
    /// False until the first /proc scan filled in fds opened before tracing; corrections made
    /// by that first scan are seeding, not drift.
    pub seeded: bool,
    /// Start of the /proc scan that seeded it (0: never seeded by a scan). fd events stamped
    /// before it are already part of that scan and are not applied again, even when they
    /// reach userspace late (a BPF program can be preempted between stamping and submitting).
    pub seeded_at: u64,
    /// It has exec'd since tracing began (a further exec is chained).
    pub execed: bool,
    /// The command it belongs to (None: the session's own processes).
    pub unit: Option<CommandId>,
    /// The image its parent was running when it forked it.
    pub parent_image: Option<CommandId>,
}

/// One successful exec.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub id: CommandId,
    pub pid: u32,
    pub session: u32,
    /// argv with secrets redacted (or `[filename]` when argv was not captured).
    pub argv: Vec<String>,
    pub filename: String,
    pub ts_ns: u64,
    /// argv was cut off by the kernel-side capture limits.
    pub truncated: bool,
    /// This exec replaced an image the same process had already exec'd while traced: it
    /// continues that command rather than starting one.
    pub chained: bool,
    /// It starts one of the session's commands (see `Session::commands`).
    pub top_level: bool,
    /// A shell with no script: it waits at a prompt by design (see `units`).
    pub interactive: bool,
    /// Read from /proc at attach time: the process was running it before tracing began.
    pub preexisting: bool,
    /// The image the parent was running when it forked this process.
    pub parent_image: Option<CommandId>,
    /// When its process exited (top-level commands only).
    pub ended_ns: Option<u64>,
}

/// Counters exported as `drift`, `lost_events` and friends.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub events: u64,
    /// Corrections made to the model by /proc reconciliation (0 in a healthy steady state).
    pub drift: u64,
    /// Drift by cause (`missing_fd`, `extra_fd`, `pty_role`, `pty_index`, `cloexec`,
    /// `missed_close`, `missing_process`, `vanished_process`, `unknown_process`).
    pub drift_by_cause: BTreeMap<&'static str, u64>,
    /// The first few corrections in words, for a bug report (bounded).
    pub drift_examples: Vec<String>,
    /// Session command starts forgotten while a PTY could still count from them (see
    /// `history`): its "later commands" are a lower bound.
    pub timeline_evicted: u64,
}

/// Most drift examples kept.
pub const MAX_DRIFT_EXAMPLES: usize = 20;

impl Stats {
    pub(crate) fn example(&mut self, text: impl FnOnce() -> String) {
        if self.drift_examples.len() < MAX_DRIFT_EXAMPLES {
            self.drift_examples.push(text());
        }
    }

    pub(crate) fn drift(&mut self, cause: &'static str, n: u64) {
        if n > 0 {
            self.drift += n;
            *self.drift_by_cause.entry(cause).or_default() += n;
        }
    }
}

#[derive(Default)]
pub struct Model {
    pub sessions: BTreeMap<u32, Session>,
    pub procs: BTreeMap<u32, Process>,
    pub tables: HashMap<TableId, FdTable>,
    next_table: TableId,
    /// The command records (execs, and commands read from /proc at attach) that something still
    /// refers to (see `history`).
    pub commands: CommandLog,
    /// Command records at which the model prunes next (see `history`).
    prune_at: usize,
    /// argv of an exec whose `Exec` event has not been applied yet, by pid. The kernel sends
    /// `ExecArgv` just before `Exec` from the same hook, but another CPU's records can come
    /// between them. An entry whose `Exec` was lost goes when its process does.
    pending_argv: HashMap<u32, (Vec<String>, bool)>,
    pub stats: Stats,
    /// Processes to compare with /proc soon (after an exec, or when first seen).
    needs_reconcile: BTreeSet<u32>,
    /// pid -> start of the scan that first saw it missing from /proc (or from the model).
    pub(crate) proc_suspects: HashMap<u32, u64>,
    /// PTY index -> when a holder of its slave last let go of it (see `lifecycle`).
    pub(crate) slave_last_drop: HashMap<u32, u64>,
    /// PTY indexes some table of the model holds a master of (a superset: an index leaves it
    /// when its last master fd goes). Slave drops of other PTYs (the terminal the traced
    /// processes run in) need no look at the holders.
    pub(crate) master_indexes: HashSet<u32>,
    /// What the running kernel's syscalls accept where a record made at entry cannot say
    /// whether they failed (see [`KernelAbi`]).
    pub abi: KernelAbi,
}

/// Syscall behaviour that differs between the kernels pty-trace runs on, for the records made
/// when a syscall is entered (close_range): the model checks the arguments as the running
/// kernel does. Set from the kernel release by the session (`KernelAbi::of_release`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelAbi {
    /// `CLOSE_RANGE_CLOEXEC` (5.11): before it, close_range with that flag fails with EINVAL.
    pub close_range_cloexec: bool,
}

impl Default for KernelAbi {
    fn default() -> Self {
        KernelAbi { close_range_cloexec: true }
    }
}

impl KernelAbi {
    /// From a release such as `5.10.0-46-amd64` (an unparsable one: today's kernels).
    pub fn of_release(release: &str) -> KernelAbi {
        let mut it = release.split(|c: char| !c.is_ascii_digit()).filter(|s| !s.is_empty()).map(|s| s.parse::<u32>().unwrap_or(0));
        match (it.next(), it.next()) {
            (Some(major), Some(minor)) => KernelAbi { close_range_cloexec: (major, minor) >= (5, 11) },
            _ => KernelAbi::default(),
        }
    }
}

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    /// A model for a kernel whose syscalls behave as `abi` says.
    pub fn with_abi(abi: KernelAbi) -> Self {
        Model { abi, ..Self::default() }
    }

    pub fn add_session(&mut self, root: u32, ts_ns: u64) {
        self.sessions.entry(root).or_insert(Session {
            root,
            started_ns: ts_ns,
            ended_ns: None,
            execs: 0,
            commands: Timeline::default(),
            processes_seen: 0,
            work_root: root,
            core_pids: BTreeSet::new(),
            command_ends: Vec::new(),
            pty_releases: std::collections::VecDeque::new(),
            pty_releases_total: 0,
            pty_releases_read: std::cell::Cell::new(0),
            orphan_candidates: Vec::new(),
        });
    }

    /// Adds a process found in /proc (attach-time seeding) or started by `run`. Its fds come
    /// from the first reconciliation. No-op if it is already known.
    pub fn add_process(&mut self, pid: u32, ppid: u32, session: u32, comm: &str, ts_ns: u64) {
        if self.procs.contains_key(&pid) {
            return;
        }
        let table = self.new_table(FdTable { refs: 1, ..FdTable::default() });
        if let Some(s) = self.sessions.get_mut(&session) {
            s.processes_seen += 1;
            s.core_pids.insert(pid);
        }
        self.procs.insert(
            pid,
            Process {
                pid,
                ppid,
                session,
                comm: comm.to_string(),
                table,
                command: None,
                started_ns: ts_ns,
                seeded: false,
                seeded_at: 0,
                execed: false,
                unit: None,
                parent_image: None,
            },
        );
        self.needs_reconcile.insert(pid);
    }

    /// What a process found at attach time was running, from its /proc cmdline: shown with
    /// its fds and rows, never counted as a command. A child of the work root is a command in
    /// flight, and what it holds is its own, not the session's.
    pub fn set_preexisting_command(&mut self, pid: u32, argv: &[String]) {
        let Some(p) = self.procs.get(&pid) else { return };
        if p.command.is_some() || argv.is_empty() {
            return;
        }
        let (session, ppid) = (p.session, p.ppid);
        let id = self.commands.next_id();
        let filename = argv[0].clone();
        let in_flight = self.sessions.get(&session).is_some_and(|s| s.work_root == ppid);
        self.commands.push(Command {
            id,
            pid,
            session,
            argv: redact_argv(argv),
            interactive: units::is_interactive(&filename, argv),
            filename,
            ts_ns: 0,
            truncated: false,
            chained: false,
            top_level: false,
            preexisting: true,
            parent_image: None,
            ended_ns: None,
        });
        let p = self.procs.get_mut(&pid).expect("checked above");
        p.command = Some(id);
        if in_flight {
            p.unit = Some(id);
            if let Some(s) = self.sessions.get_mut(&session) {
                s.core_pids.remove(&pid);
            }
        }
        // Entries seeded before the command line was known belong to it too.
        if let Some(t) = self.table_mut(pid) {
            for e in t.fds.values_mut() {
                if e.from_proc && e.command.is_none() {
                    e.command = Some(id);
                }
            }
        }
    }

    /// The session's work root runs a terminal multiplexer or server (see `units`).
    pub fn work_root_is_multiplexer(&self, session: u32) -> bool {
        let Some(w) = self.sessions.get(&session).and_then(|s| self.procs.get(&s.work_root)) else { return false };
        units::is_multiplexer(&w.comm) || w.command.and_then(|c| self.commands.get(c)).is_some_and(|c| units::is_multiplexer(&c.filename))
    }

    /// Attach: processes found under a command in flight belong to it (their fds are its, not
    /// the session's own). Call after `set_preexisting_command`.
    pub fn inherit_units(&mut self, session: u32) {
        let Some(work_root) = self.sessions.get(&session).map(|s| s.work_root) else { return };
        for _ in 0..64 {
            let moves: Vec<(u32, CommandId)> = self
                .processes_in(session)
                .filter(|p| p.unit.is_none() && p.pid != session && p.pid != work_root)
                .filter_map(|p| Some((p.pid, self.procs.get(&p.ppid)?.unit?)))
                .collect();
            if moves.is_empty() {
                return;
            }
            for (pid, unit) in moves {
                if let Some(p) = self.procs.get_mut(&pid) {
                    p.unit = Some(unit);
                }
                if let Some(s) = self.sessions.get_mut(&session) {
                    s.core_pids.remove(&pid);
                }
            }
        }
    }

    /// Looks through a wrapper root (see `units`): while the work root runs a wrapper program
    /// and has exactly one child, that child becomes the work root. Called after attach-time
    /// seeding; execs keep it up to date afterwards.
    pub fn look_through_wrappers(&mut self, session: u32) {
        for _ in 0..8 {
            let Some(w) = self.sessions.get(&session).map(|s| s.work_root) else { return };
            let Some(wp) = self.procs.get(&w) else { return };
            let runs_wrapper = wp.command.and_then(|c| self.commands.get(c)).is_some_and(|c| units::is_wrapper(&c.filename))
                || units::is_wrapper(&wp.comm);
            let children: Vec<u32> = self.procs.values().filter(|p| p.ppid == w && p.session == session).map(|p| p.pid).collect();
            if !runs_wrapper || children.len() != 1 {
                return;
            }
            let child = children[0];
            if let Some(s) = self.sessions.get_mut(&session) {
                s.work_root = child;
                s.core_pids.insert(child);
            }
            if let Some(c) = self.procs.get_mut(&child) {
                c.unit = None;
            }
        }
    }

    fn new_table(&mut self, t: FdTable) -> TableId {
        self.next_table += 1;
        self.tables.insert(self.next_table, t);
        self.next_table
    }

    pub fn table_of(&self, pid: u32) -> Option<&FdTable> {
        self.procs.get(&pid).and_then(|p| self.tables.get(&p.table))
    }

    pub(crate) fn table_mut(&mut self, pid: u32) -> Option<&mut FdTable> {
        let id = self.procs.get(&pid)?.table;
        self.tables.get_mut(&id)
    }

    /// Processes whose state should be checked against /proc soon; clears the set.
    pub fn take_needs_reconcile(&mut self) -> BTreeSet<u32> {
        std::mem::take(&mut self.needs_reconcile)
    }

    pub fn request_reconcile(&mut self, pid: u32) {
        self.needs_reconcile.insert(pid);
    }

    pub fn processes_in(&self, session: u32) -> impl Iterator<Item = &Process> {
        self.procs.values().filter(move |p| p.session == session)
    }

    /// The open fds of a session's live processes, with the process holding them: a table
    /// shared by several processes (CLONE_FILES) is listed once, under the first of them.
    pub fn session_fds(&self, session: u32) -> impl Iterator<Item = (&Process, i32, &FdEntry)> {
        let mut tables = BTreeSet::new();
        self.processes_in(session)
            .filter(move |p| tables.insert(p.table))
            .filter_map(|p| Some((p, self.tables.get(&p.table)?)))
            .flat_map(|(p, t)| t.fds.iter().map(move |(fd, e)| (p, *fd, e)))
    }

    pub fn command(&self, id: CommandId) -> Option<&Command> {
        self.commands.get(id)
    }

    /// Applies one kernel event.
    pub fn apply(&mut self, ev: &Event) {
        self.stats.events += 1;
        match ev {
            Event::Syscall { h, kind, ret, args, aux, user_flags } => {
                if self.ensure_process(h) && !self.in_seed(h) {
                    syscalls::apply_syscall(self, h, *kind, *ret, args, *aux, *user_flags);
                }
            }
            Event::Open { h, kind: _, ret, dirfd, flags, path, devpts } => {
                if *ret >= 0 && self.ensure_process(h) && !self.in_seed(h) {
                    syscalls::apply_open(self, h, *ret as i32, *dirfd, *flags, path, *devpts);
                }
            }
            Event::Fork { h, child, clone_flags } => self.on_fork(h, *child, *clone_flags),
            Event::Exec { h, filename, .. } => {
                self.on_exec(h, filename);
                self.prune_if_due();
            }
            Event::ExecArgv { h, argv, truncated } => {
                self.pending_argv.insert(h.tgid, (argv.clone(), *truncated));
            }
            Event::Exit { h } => self.on_exit(h),
            Event::Received { h, fds, cloexec, truncated: _ } => {
                if self.ensure_process(h) && !self.in_seed(h) {
                    syscalls::apply_received(self, h, fds, *cloexec);
                }
            }
        }
        self.settle_pty_drops_of(ev.header().tgid);
    }

    /// The event happened before the scan that seeded its process: its effect is in the seed.
    fn in_seed(&self, h: &Header) -> bool {
        self.procs.get(&h.tgid).is_some_and(|p| h.ts_ns < p.seeded_at)
    }

    /// Makes sure the event's process is known. An unknown process of a known session means a
    /// fork event was lost: it is created (counted as drift) and scheduled for a /proc scan.
    /// Returns false when the event cannot be placed in any session.
    fn ensure_process(&mut self, h: &Header) -> bool {
        if self.procs.contains_key(&h.tgid) {
            return true;
        }
        if !self.sessions.contains_key(&h.session) {
            return false;
        }
        self.stats.drift("unknown_process", 1);
        self.add_process(h.tgid, 0, h.session, "?", h.ts_ns);
        // It was created by a fork the model missed, not found at attach: what it holds is
        // known only from here on, and any difference /proc shows is real drift.
        if let Some(p) = self.procs.get_mut(&h.tgid) {
            p.seeded = true;
        }
        true
    }

    fn on_fork(&mut self, h: &Header, child: u32, clone_flags: Option<u64>) {
        let flags = clone_flags.unwrap_or(0);
        if !self.ensure_process(h) {
            return;
        }
        if flags & CLONE_THREAD != 0 {
            return;
        }
        if self.procs.contains_key(&child) {
            return;
        }
        self.proc_suspects.remove(&child);
        let parent = self.procs[&h.tgid].clone();
        let table = if flags & CLONE_FILES != 0 {
            if let Some(t) = self.tables.get_mut(&parent.table) {
                t.refs += 1;
            }
            parent.table
        } else {
            let copy = self.tables.get(&parent.table).map(FdTable::fork_copy).unwrap_or_default();
            self.new_table(copy)
        };
        if let Some(s) = self.sessions.get_mut(&parent.session) {
            s.processes_seen += 1;
            if parent.unit.is_none() {
                s.core_pids.insert(child);
            }
        }
        self.procs.insert(
            child,
            Process {
                pid: child,
                ppid: h.tgid,
                session: parent.session,
                comm: parent.comm.clone(),
                table,
                command: parent.command,
                started_ns: h.ts_ns,
                seeded: parent.seeded,
                seeded_at: 0,
                execed: false,
                unit: parent.unit,
                parent_image: parent.command,
            },
        );
        if !parent.seeded {
            self.needs_reconcile.insert(child);
        }
    }

    fn on_exec(&mut self, h: &Header, filename: &str) {
        if !self.ensure_process(h) {
            return;
        }
        let (argv, truncated) = match self.pending_argv.remove(&h.tgid) {
            Some((argv, truncated)) if !argv.is_empty() => (argv, truncated),
            _ => (vec![filename.to_string()], false),
        };
        let pid = h.tgid;
        let (session, ppid, chained, parent_image, unit, previous_image) = {
            let p = &self.procs[&pid];
            (p.session, p.ppid, p.execed, p.parent_image, p.unit, p.command)
        };
        let work_root = self.sessions.get(&session).map_or(session, |s| s.work_root);
        let interactive = units::is_interactive(filename, &argv);
        let helper = units::is_helper(filename);
        let wrapper_root = ppid == work_root
            && self.procs.get(&work_root).and_then(|w| w.command).and_then(|c| self.commands.get(c)).is_some_and(|c| units::is_wrapper(&c.filename))
            && self.sessions.get(&session).is_some_and(|s| s.commands.is_empty());
        let top_level = !chained && pid != session && ppid == work_root && unit.is_none() && !helper && !wrapper_root;
        let id = self.commands.next_id();
        self.commands.push(Command {
            id,
            pid,
            session,
            argv: redact_argv(&argv),
            filename: filename.to_string(),
            ts_ns: h.ts_ns,
            truncated,
            chained,
            top_level,
            interactive,
            preexisting: false,
            parent_image,
            ended_ns: None,
        });
        if let Some(s) = self.sessions.get_mut(&session) {
            s.execs += 1;
            if top_level {
                s.commands.push(id, h.ts_ns);
                s.core_pids.remove(&pid);
            }
            if wrapper_root {
                // The wrapper's child does the work: its children's execs are the commands.
                s.work_root = pid;
            }
        }
        if top_level && let Some(p) = self.procs.get_mut(&pid) {
            p.unit = Some(id);
        }
        // A shim on its way to the real program runs for moments; a root that re-execs after
        // real work (a supervisor restarting itself) keeps its commands.
        let short_lived = previous_image
            .and_then(|c| self.commands.get(c))
            .is_some_and(|c| !c.preexisting && h.ts_ns.saturating_sub(c.ts_ns) < SHIM_IMAGE_NS);
        if pid == work_root && short_lived {
            self.forget_earlier_image_commands(session, id);
        }
        if self.in_seed(h) {
            // The seed scan already shows the table after this exec.
            let p = self.procs.get_mut(&pid).expect("ensured above");
            p.command = Some(id);
            p.execed = true;
            p.comm = comm_of(filename);
            return;
        }
        // exec gives a process sharing its table (CLONE_FILES) a private copy first.
        self.unshare_table(pid);
        let p = self.procs.get_mut(&pid).expect("ensured above");
        p.command = Some(id);
        p.execed = true;
        p.comm = comm_of(filename);
        if let Some(t) = self.table_mut(pid) {
            t.exec(h.ts_ns);
        }
        self.needs_reconcile.insert(pid);
    }

    /// The work root exec'd again: what it ran in its earlier images (a shim's helpers on its
    /// way to the real program) were not the session's commands.
    fn forget_earlier_image_commands(&mut self, session: u32, image: CommandId) {
        let Some(s) = self.sessions.get_mut(&session) else { return };
        let mut forgotten = Vec::new();
        s.commands.retain(|c| {
            // A record no longer kept is an old command, not a shim's.
            let keep = self.commands.get(c).is_none_or(|cmd| cmd.parent_image == Some(image));
            if !keep {
                forgotten.push(c);
            }
            keep
        });
        s.command_ends.retain(|e| !forgotten.contains(&e.command));
        for c in forgotten {
            let Some(cmd) = self.commands.get_mut(c) else { continue };
            cmd.top_level = false;
            let pid = cmd.pid;
            if let Some(p) = self.procs.get_mut(&pid)
                && p.unit == Some(c)
            {
                p.unit = None;
                s.core_pids.insert(pid);
            }
        }
    }

    pub(crate) fn unshare_table(&mut self, pid: u32) {
        let Some(id) = self.procs.get(&pid).map(|p| p.table) else { return };
        let Some(t) = self.tables.get_mut(&id) else { return };
        if t.refs <= 1 {
            return;
        }
        t.refs -= 1;
        let copy = t.fork_copy();
        let new = self.new_table(copy);
        if let Some(p) = self.procs.get_mut(&pid) {
            p.table = new;
        }
    }

    fn on_exit(&mut self, h: &Header) {
        self.remove_process(h.tgid, h.ts_ns);
    }

    /// Forgets a session once its summary is written (`watch` follows sessions for weeks): its
    /// processes still alive (descendants that outlived the root) leave the model, and what only
    /// it referred to is pruned. Returns those processes, for the caller to stop tracking them.
    pub fn forget_session(&mut self, root: u32, ts_ns: u64) -> Vec<u32> {
        let pids: Vec<u32> = self.processes_in(root).map(|p| p.pid).collect();
        for &pid in &pids {
            self.remove_process(pid, ts_ns);
            self.proc_suspects.remove(&pid);
        }
        self.sessions.remove(&root);
        self.prune();
        pids
    }

    /// The process is gone: its fds are released (unless another process shares the table).
    pub fn remove_process(&mut self, pid: u32, ts_ns: u64) {
        self.pending_argv.remove(&pid);
        let Some(p) = self.procs.remove(&pid) else { return };
        let mut dying = None;
        if let Some(t) = self.tables.get_mut(&p.table) {
            t.refs = t.refs.saturating_sub(1);
            if t.refs == 0 {
                dying = self.tables.remove(&p.table);
            }
        }
        if let Some(mut t) = dying {
            t.drop_all(ts_ns);
            let drops = std::mem::take(&mut t.pty_drops);
            self.settle_pty_drops(drops, p.session, true);
        }
        if let Some(s) = self.sessions.get_mut(&p.session) {
            s.core_pids.remove(&pid);
            if s.root == pid && s.ended_ns.is_none() {
                s.ended_ns = Some(ts_ns);
            }
        }
        if let Some(c) = p.unit
            && let Some(cmd) = self.commands.get_mut(c).filter(|cmd| cmd.pid == pid && cmd.ended_ns.is_none())
        {
            cmd.ended_ns = Some(ts_ns);
            let top_level = cmd.top_level;
            let core_fds = self.core_fds(p.session);
            if let Some(s) = self.sessions.get_mut(&p.session)
                && top_level
            {
                s.command_ends.push(CommandEnd { command: c, ts_ns, core_fds });
                if s.command_ends.len() > MAX_COMMAND_ENDS {
                    s.command_ends.remove(0);
                }
            }
        }
    }

    /// fds other than PTY ends held by the session's own processes (see `Session::core_pids`).
    pub fn core_fds(&self, session: u32) -> usize {
        let Some(s) = self.sessions.get(&session) else { return 0 };
        let mut tables = BTreeSet::new();
        s.core_pids
            .iter()
            .filter_map(|pid| self.procs.get(pid))
            .filter(|p| tables.insert(p.table))
            .filter_map(|p| self.tables.get(&p.table))
            .map(|t| t.fds.values().filter(|e| e.kind.pty_role() == PtyRole::None).count())
            .sum()
    }

    /// Counts for one process: (fds, PTY masters, PTY slaves).
    pub fn counts(&self, pid: u32) -> (usize, usize, usize) {
        match self.table_of(pid) {
            Some(t) => (t.fds.len(), t.count_role(PtyRole::Master), t.count_role(PtyRole::Slave)),
            None => (0, 0, 0),
        }
    }

    /// Fills in the index of a PTY master found by reading fdinfo (enrichment, not drift).
    pub fn set_pty_index(&mut self, pid: u32, fd: i32, index: u32) {
        if let Some(e) = self.table_mut(pid).and_then(|t| t.fds.get_mut(&fd))
            && e.kind.pty_role() != PtyRole::None
        {
            e.pty_index = Some(index);
            if e.kind == FdKind::PtyMaster {
                self.master_indexes.insert(index);
            }
        }
    }

    /// PTY masters whose index is still unknown: (pid, fd).
    pub fn masters_without_index(&self) -> Vec<(u32, i32)> {
        let mut out = Vec::new();
        for p in self.procs.values() {
            if let Some(t) = self.tables.get(&p.table) {
                for (fd, e) in &t.fds {
                    if e.kind == FdKind::PtyMaster && e.pty_index.is_none() {
                        out.push((p.pid, *fd));
                    }
                }
            }
        }
        out
    }
}

/// The kernel sets `comm` to the basename of the executed file, cut to 15 bytes.
pub fn comm_of(filename: &str) -> String {
    let base = filename.rsplit('/').next().unwrap_or(filename);
    let mut end = base.len().min(15);
    while !base.is_char_boundary(end) {
        end -= 1;
    }
    base[..end].to_string()
}

#[cfg(test)]
mod tests;
