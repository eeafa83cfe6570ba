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
    /// Fds not compared because an event touched them during the scan.
    pub skipped: usize,
    /// True when this scan seeded the process (its corrections are not drift).
    pub seeding: bool,
    /// True when the whole process was skipped (unknown, too new, or changed in bulk).
    pub skipped_process: bool,
}

impl ReconcileOutcome {
    pub fn corrections(&self) -> usize {
        self.added.len() + self.removed.len() + self.corrected.len()
    }
}

impl Model {
    /// Compares `obs` with the model and repairs the model. Returns what changed.
    pub fn reconcile(&mut self, obs: &ObservedProcess) -> ReconcileOutcome {
        let mut out = ReconcileOutcome::default();
        let t0 = obs.scan_start_ns;
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
        for fd in numbers {
            if t.touched.get(&fd).is_some_and(|&ts| ts >= t0) {
                out.skipped += 1;
                continue;
            }
            match (t.fds.get_mut(&fd), obs.fds.get(&fd)) {
                (Some(m), Some(o)) => {
                    let (kind, index) = classify_link_target(&o.target, o.tty_index);
                    let role_wrong = m.kind.pty_role() != kind.pty_role();
                    let index_wrong = m.kind.pty_role() != PtyRole::None
                        && m.pty_index.is_some()
                        && index.is_some()
                        && m.pty_index != index;
                    if role_wrong || index_wrong {
                        out.corrected.push(fd);
                    }
                    // Enrichment: /proc knows the absolute path and the precise kind.
                    if m.kind != FdKind::Directory || kind != FdKind::File {
                        m.kind = kind;
                    }
                    m.target = o.target.clone();
                    if index.is_some() {
                        m.pty_index = index;
                    }
                }
                (None, Some(o)) => {
                    let (kind, index) = classify_link_target(&o.target, o.tty_index);
                    let mut e = FdEntry::new(kind, o.target.clone(), false);
                    e.pty_index = index;
                    e.opened_ns = obs.scan_start_ns;
                    e.opener_pid = pid;
                    e.command = command;
                    e.from_proc = true;
                    t.fds.insert(fd, e);
                    out.added.push(fd);
                }
                (Some(_), None) => {
                    t.fds.remove(&fd);
                    out.removed.push(fd);
                }
                (None, None) => {}
            }
        }
        t.prune_touched(t0);
        if seeding {
            if let Some(p) = self.procs.get_mut(&obs.pid) {
                p.seeded = true;
            }
        } else {
            self.stats.drift("missing_fd", out.added.len() as u64);
            self.stats.drift("extra_fd", out.removed.len() as u64);
            self.stats.drift("pty_role", out.corrected.len() as u64);
        }
        out
    }

    /// A modelled process that /proc no longer has, and whose exit event never came.
    pub fn process_vanished(&mut self, pid: u32, ts_ns: u64) {
        if self.procs.contains_key(&pid) {
            self.stats.drift("vanished_process", 1);
            self.remove_process(pid, ts_ns);
        }
    }

    /// A descendant /proc has and the model missed (its fork event was lost). Returns true when
    /// it was added.
    pub fn process_discovered(&mut self, pid: u32, ppid: u32, comm: &str, ts_ns: u64) -> bool {
        if self.procs.contains_key(&pid) {
            return false;
        }
        let Some(session) = self.procs.get(&ppid).map(|p| p.session) else { return false };
        self.stats.drift("missing_process", 1);
        self.add_process(pid, ppid, session, comm, ts_ns);
        true
    }
}
