//! Comparing a process's modelled fd table with what /proc showed, and repairing the model.
//!
//! A /proc scan is not atomic and events are in flight while it runs, so a difference is only
//! a correction when it cannot be explained by timing: fd numbers changed by an event stamped at
//! or after the scan started are skipped (the next scan looks again), and so is a whole table
//! changed in bulk (exec, close_range, unshare) during the scan. The first scan of a process
//! found at attach time seeds it and is not drift; every later correction is.

use std::collections::BTreeMap;

use super::{
    Model,
    fd::{FdEntry, FdKind, PtyRole, classify_link_target},
};

/// One fd as /proc shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedFd {
    /// `readlink /proc/PID/fd/N`.
    pub target: String,
    /// `tty-index:` from `/proc/PID/fdinfo/N` (PTY masters).
    pub tty_index: Option<u32>,
    /// The devpts instance of a PTY end (a slave's `st_dev`, a master's peer's), when read.
    pub devpts: Option<crate::core::machine::DevId>,
    /// Close-on-exec as fdinfo's `flags:` line shows it; `None` when unread. `Some(false)` is
    /// proof, `Some(true)` only likely (see `cloexec_wrong`).
    pub cloexec: Option<bool>,
}

impl ObservedFd {
    /// The fd entry /proc describes: kind and PTY index from the link and fdinfo, and the
    /// devpts instance when the fd is a PTY end.
    pub fn entry(&self, cloexec: bool) -> FdEntry {
        let (kind, index) = classify_link_target(&self.target, self.tty_index);
        let mut e = FdEntry::new(kind, self.target.clone(), cloexec);
        e.pty_index = index;
        if kind.pty_role() != PtyRole::None {
            e.pty_devpts = self.devpts;
        }
        e
    }
}

/// A process as /proc showed it during `[scan_start_ns, scan_end_ns]` (CLOCK_MONOTONIC).
#[derive(Clone, Debug, Default)]
pub struct ObservedProcess {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub fds: BTreeMap<i32, ObservedFd>,
    pub scan_start_ns: u64,
    pub scan_end_ns: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ReconcileOutcome {
    /// Fds /proc had and the model did not.
    pub added: Vec<i32>,
    /// Fds the model had and /proc did not.
    pub removed: Vec<i32>,
    /// Fds whose PTY role or index the model had wrong.
    pub corrected: Vec<i32>,
    /// Fds whose close-on-exec flag the model had wrong (exec would have kept or dropped them
    /// wrongly).
    pub cloexec_corrected: Vec<i32>,
    /// Fds not compared because an event touched them during the scan.
    pub skipped: usize,
    /// Differences seen for the first time: corrected only if the next scan confirms them.
    pub suspected: usize,
    /// True when this scan seeded the process (its corrections are not drift).
    pub seeding: bool,
    /// True when the whole process was skipped (unknown, too new, or changed in bulk).
    pub skipped_process: bool,
}

impl ReconcileOutcome {
    pub fn corrections(&self) -> usize {
        self.added.len() + self.removed.len() + self.corrected.len() + self.cloexec_corrected.len()
    }
}

impl Model {
    /// Compares `obs` with the model and repairs the model. Returns what changed.
    pub fn reconcile(&mut self, obs: &ObservedProcess) -> ReconcileOutcome {
        let out = self.reconcile_fds(obs);
        self.settle_pty_drops_of(obs.pid);
        let masters: Vec<u32> = self
            .table_of(obs.pid)
            .map(|t| t.fds.values().filter(|e| e.kind == FdKind::PtyMaster).filter_map(|e| e.pty_index).collect())
            .unwrap_or_default();
        for i in masters {
            self.note_master(i);
        }
        out
    }

    fn reconcile_fds(&mut self, obs: &ObservedProcess) -> ReconcileOutcome {
        let mut out = ReconcileOutcome::default();
        let t0 = obs.scan_start_ns;
        self.proc_suspects.remove(&obs.pid);
        let Some(p) = self.procs.get_mut(&obs.pid) else {
            out.skipped_process = true;
            return out;
        };
        if obs.ppid != 0 {
            p.ppid = obs.ppid;
        }
        if !obs.comm.is_empty() {
            p.comm = obs.comm.clone();
        }
        let seeding = !p.seeded;
        let (table_id, pid, command) = (p.table, p.pid, p.command);
        // A process created after the scan started was not what the scan saw.
        if p.started_ns >= t0 && !seeding {
            out.skipped_process = true;
            return out;
        }
        let Some(t) = self.tables.get_mut(&table_id) else {
            out.skipped_process = true;
            return out;
        };
        if t.bulk_touched >= t0 {
            out.skipped_process = true;
            self.needs_reconcile.insert(pid);
            return out;
        }
        out.seeding = seeding;
        let mut numbers: Vec<i32> = t.fds.keys().copied().collect();
        numbers.extend(obs.fds.keys().copied());
        numbers.sort_unstable();
        numbers.dedup();
        // Corrections of the index alone (the role was right), counted as `pty_index`.
        let mut index_only = 0u64;
        for fd in numbers {
            if t.touched.get(&fd).is_some_and(|&ts| ts >= t0) {
                // Events since the scan only changed attributes of an fd the model does not
                // know yet: the scan still proves the fd exists; the events say the rest.
                if seeding
                    && !t.fds.contains_key(&fd)
                    && let (Some(a), Some(o)) = (t.amends.get(&fd).copied(), obs.fds.get(&fd))
                {
                    let mut e = entry_from_proc(o, obs.scan_start_ns, pid, command);
                    if let Some(c) = a.cloexec {
                        e.cloexec = c;
                    }
                    if let Some(i) = a.pty_index {
                        e.kind = FdKind::PtyMaster;
                        e.pty_index = Some(i);
                    }
                    t.fds.insert(fd, e);
                    out.added.push(fd);
                }
                out.skipped += 1;
                continue;
            }
            let model = t.fds.get(&fd);
            let seen = obs.fds.get(&fd);
            if !seeding && differs(model, seen) {
                // An event stamped before the scan may still be on its way (a BPF program can be
                // preempted between stamping and submitting): a difference is only corrected when
                // the next scan shows it again and no event touched the fd in between.
                let confirmed = t.suspects.get(&fd).is_some_and(|&first| {
                    first < t0 && t.touched.get(&fd).is_none_or(|&ts| ts < first)
                });
                if !confirmed {
                    t.suspects.entry(fd).or_insert(t0);
                    out.suspected += 1;
                    continue;
                }
            }
            t.suspects.remove(&fd);
            match (t.fds.get_mut(&fd), seen) {
                (Some(m), Some(o)) => {
                    let (kind, index) = classify_link_target(&o.target, o.tty_index);
                    let role_wrong = role_differs(m, kind);
                    let index_wrong = index_differs(m, index);
                    if role_wrong || index_wrong {
                        out.corrected.push(fd);
                        index_only += u64::from(!role_wrong);
                    }
                    // Enrichment: /proc knows the absolute path and the precise kind, except
                    // that a directory's link is a plain path (`/dev/pts` classifies as a device).
                    if m.kind != FdKind::Directory
                        || !matches!(kind, FdKind::File | FdKind::CharDevice)
                    {
                        m.kind = kind;
                    }
                    m.target = o.target.clone();
                    // fdinfo can only prove an fd is *not* close-on-exec (see `cloexec_wrong`).
                    if cloexec_wrong(m, o) {
                        m.cloexec = false;
                        out.cloexec_corrected.push(fd);
                    }
                    if index.is_some() || o.target.ends_with(" (deleted)") {
                        m.pty_index = index;
                    }
                    // The instance is enrichment too: events carry the opener's /dev/pts
                    // instance, /proc the PTY's own.
                    if o.devpts.is_some() && m.kind.pty_role() != PtyRole::None {
                        m.pty_devpts = o.devpts;
                    }
                }
                (None, Some(o)) => {
                    t.fds.insert(fd, entry_from_proc(o, obs.scan_start_ns, pid, command));
                    out.added.push(fd);
                }
                (Some(_), None) => {
                    if let Some(gone) = t.fds.remove(&fd) {
                        t.note_drop(&gone, obs.scan_start_ns);
                    }
                    out.removed.push(fd);
                }
                (None, None) => {}
            }
        }
        // Suspicions about fds that now agree (or vanished from both) are dropped above; keep
        // change times as far back as the oldest open suspicion needs them.
        let keep_from = t.suspects.values().copied().min().unwrap_or(t0).min(t0);
        t.prune_touched(keep_from);
        if seeding {
            // Seeded: from now on every change comes from events.
            t.amends.clear();
            if let Some(p) = self.procs.get_mut(&obs.pid) {
                p.seeded = true;
                p.seeded_at = t0;
            }
        } else {
            if out.corrections() > 0 {
                let (pid, added, removed, corrected, cloexec) =
                    (obs.pid, &out.added, &out.removed, &out.corrected, &out.cloexec_corrected);
                self.stats.example(|| {
                    format!("reconcile pid {pid}: missing fds {added:?}, extra fds {removed:?}, PTY role/index {corrected:?}, cloexec {cloexec:?}")
                });
            }
            self.stats.drift("missing_fd", out.added.len() as u64);
            self.stats.drift("extra_fd", out.removed.len() as u64);
            self.stats.drift("pty_role", out.corrected.len() as u64 - index_only);
            self.stats.drift("pty_index", index_only);
            self.stats.drift("cloexec", out.cloexec_corrected.len() as u64);
        }
        out
    }

    /// A modelled process that /proc no longer has, and whose exit event never came. Like fd
    /// differences it must be seen at two scans (`ts` = scan start) before the model drops it.
    /// Returns true when it was removed.
    pub fn process_vanished(&mut self, pid: u32, ts_ns: u64) -> bool {
        if !self.procs.contains_key(&pid) {
            self.proc_suspects.remove(&pid);
            return false;
        }
        match self.proc_suspects.get(&pid) {
            Some(&first) if first < ts_ns => {
                self.proc_suspects.remove(&pid);
                self.stats.drift("vanished_process", 1);
                self.remove_process(pid, ts_ns);
                true
            }
            _ => {
                self.proc_suspects.entry(pid).or_insert(ts_ns);
                false
            }
        }
    }

    /// A descendant /proc has and the model missed (its fork event was lost), seen at two scans
    /// (`ts` = scan start). Returns true when it was added.
    pub fn process_discovered(&mut self, pid: u32, ppid: u32, comm: &str, ts_ns: u64) -> bool {
        if self.procs.contains_key(&pid) {
            self.proc_suspects.remove(&pid);
            return false;
        }
        let Some(session) = self.procs.get(&ppid).map(|p| p.session) else { return false };
        match self.proc_suspects.get(&pid) {
            Some(&first) if first < ts_ns => {
                self.proc_suspects.remove(&pid);
                self.stats.drift("missing_process", 1);
                self.add_process(pid, ppid, session, comm, ts_ns);
                true
            }
            _ => {
                self.proc_suspects.entry(pid).or_insert(ts_ns);
                false
            }
        }
    }
}

/// The model says close-on-exec and /proc proves otherwise. fdinfo's `flags:` is the open
/// file's `f_flags` ORed with the fd's close-on-exec bit, and files created with `O_CLOEXEC`
/// in their flags (`TIOCGPTPEER`, `eventfd2(EFD_CLOEXEC)`, other anonymous inodes) keep it in
/// `f_flags`, so every fd on them, `dup`s included, *shows* `O_CLOEXEC`. Only its absence is
/// proof: the other direction is never a correction.
fn cloexec_wrong(m: &FdEntry, o: &ObservedFd) -> bool {
    m.cloexec && o.cloexec == Some(false)
}

/// The PTY index /proc reports disagrees with a known one.
fn index_differs(m: &FdEntry, index: Option<u32>) -> bool {
    m.kind.pty_role() != PtyRole::None && m.pty_index.is_some() && index.is_some() && m.pty_index != index
}

/// Model and /proc disagree about an fd in a way that matters: presence, PTY role or index, or
/// close-on-exec (what the next exec will drop).
fn differs(model: Option<&FdEntry>, seen: Option<&ObservedFd>) -> bool {
    match (model, seen) {
        (Some(m), Some(o)) => {
            let (kind, index) = classify_link_target(&o.target, o.tty_index);
            role_differs(m, kind) || index_differs(m, index) || cloexec_wrong(m, o)
        }
        (None, None) => false,
        _ => true,
    }
}

/// Whether the model claims a PTY role for the fd that /proc contradicts. An `Unknown` entry
/// (a copy of an fd the model did not know, an fd gone before /proc could say what it was)
/// claims nothing: /proc naming it is enrichment, not a correction.
fn role_differs(m: &FdEntry, seen: FdKind) -> bool {
    m.kind != FdKind::Unknown && m.kind.pty_role() != seen.pty_role()
}

/// A model entry for an fd only /proc has shown.
fn entry_from_proc(o: &ObservedFd, scan_start_ns: u64, pid: u32, command: Option<usize>) -> FdEntry {
    let mut e = o.entry(o.cloexec.unwrap_or(false));
    e.opened_ns = scan_start_ns;
    e.opener_pid = pid;
    e.command = command;
    e.from_proc = true;
    e
}
