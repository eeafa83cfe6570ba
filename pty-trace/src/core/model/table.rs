//! One fd table (`struct files_struct` in the kernel): the open fds of one process, or of
//! several processes that share it through `CLONE_FILES`.
//!
//! Besides the fds it remembers *when* each fd number was last changed by an event, so that a
//! /proc scan taken while events were in flight is never mistaken for drift (see `reconcile`).

use std::collections::{BTreeMap, HashMap};

use super::fd::{FdEntry, FdKind, PtyRole};

#[derive(Clone, Debug, Default)]
pub struct FdTable {
    pub fds: BTreeMap<i32, FdEntry>,
    /// Processes using this table (CLONE_FILES sharers).
    pub(crate) refs: u32,
    /// Kernel timestamp of the last event that changed each fd number.
    pub(crate) touched: HashMap<i32, u64>,
    /// Kernel timestamp of the last event that changed many fds at once (exec, close_range,
    /// unshare). A scan overlapping it is skipped as a whole.
    pub(crate) bulk_touched: u64,
    /// fd -> start of the scan that first saw it differ from /proc (awaiting confirmation).
    pub(crate) suspects: HashMap<i32, u64>,
    /// Attribute changes (close-on-exec, PTY index) that events made to fds the model does not
    /// know yet (the process is not seeded): the scan that seeds such an fd may be older than
    /// the change, so the seed takes the fd from /proc and these attributes from the events.
    pub(crate) amends: HashMap<i32, Amend>,
    /// PTY ends (with a known index) this table let go of since the model last looked: the
    /// model turns them into PTY lifecycle facts (a slave's last holder gone, a master released).
    pub(crate) pty_drops: Vec<PtyDrop>,
}

/// A PTY end (master or slave, index known) leaving a table, with what the model knew of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PtyDrop {
    pub kind: FdKind,
    pub index: u32,
    pub ts: u64,
    pub opened_ns: u64,
    pub opener_pid: u32,
    pub command: Option<super::fd::CommandId>,
}

impl PtyDrop {
    fn of(e: &FdEntry, ts: u64) -> Option<PtyDrop> {
        if e.kind.pty_role() == PtyRole::None {
            return None;
        }
        Some(PtyDrop { kind: e.kind, index: e.pty_index?, ts, opened_ns: e.opened_ns, opener_pid: e.opener_pid, command: e.command })
    }
}

/// See [`FdTable::amends`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Amend {
    pub cloexec: Option<bool>,
    pub pty_index: Option<u32>,
}

impl FdTable {
    /// A copy for a forked child or an unshare: same fds, fresh bookkeeping.
    pub fn fork_copy(&self) -> FdTable {
        FdTable {
            fds: self.fds.clone(),
            refs: 1,
            touched: self.touched.clone(),
            bulk_touched: self.bulk_touched,
            suspects: HashMap::new(),
            amends: self.amends.clone(),
            pty_drops: Vec::new(),
        }
    }

    pub(crate) fn note_drop(&mut self, e: &FdEntry, ts: u64) {
        self.pty_drops.extend(PtyDrop::of(e, ts));
    }

    /// Every PTY end the table holds, as drops at `ts` (the table itself is going away).
    pub(crate) fn drop_all(&mut self, ts: u64) {
        let ends: Vec<PtyDrop> = self.fds.values().filter_map(|e| PtyDrop::of(e, ts)).collect();
        self.pty_drops.extend(ends);
    }

    /// Installs `entry` at `fd`, returning the entry it replaced (a close the model missed).
    pub fn install(&mut self, fd: i32, entry: FdEntry, ts: u64) -> Option<FdEntry> {
        self.touched.insert(fd, ts);
        self.amends.remove(&fd);
        let old = self.fds.insert(fd, entry);
        if let Some(o) = &old {
            self.note_drop(o, ts);
        }
        old
    }

    pub fn remove(&mut self, fd: i32, ts: u64) -> Option<FdEntry> {
        self.touched.insert(fd, ts);
        self.amends.remove(&fd);
        let old = self.fds.remove(&fd);
        if let Some(o) = &old {
            self.note_drop(o, ts);
        }
        old
    }

    /// Sets close-on-exec. The change time is recorded even for an fd the model does not know
    /// yet (not seeded): a scan older than this change must not seed its old flag.
    pub fn set_cloexec(&mut self, fd: i32, on: bool, ts: u64) {
        self.touched.insert(fd, ts);
        match self.fds.get_mut(&fd) {
            Some(e) => e.cloexec = on,
            None => self.amends.entry(fd).or_default().cloexec = Some(on),
        }
    }

    /// The fd answered TIOCGPTN: a PTY master with this index.
    pub fn set_pty_master(&mut self, fd: i32, index: u32, ts: u64) {
        self.touched.insert(fd, ts);
        match self.fds.get_mut(&fd) {
            Some(e) => {
                e.kind = FdKind::PtyMaster;
                e.pty_index = Some(index);
            }
            None => self.amends.entry(fd).or_default().pty_index = Some(index),
        }
    }

    /// Closes every fd in `first..=last`.
    pub fn close_range(&mut self, first: u32, last: u32, cloexec_only: bool, ts: u64) {
        self.bulk_touched = ts;
        let first = first.min(i32::MAX as u32) as i32;
        let last = last.min(i32::MAX as u32) as i32;
        if first > last {
            return;
        }
        if cloexec_only {
            for e in self.fds.range_mut(first..=last).map(|(_, e)| e) {
                e.cloexec = true;
            }
        } else {
            let doomed: Vec<i32> = self.fds.range(first..=last).map(|(fd, _)| *fd).collect();
            for fd in doomed {
                if let Some(o) = self.fds.remove(&fd) {
                    self.note_drop(&o, ts);
                }
            }
        }
    }

    /// What exec does: drop every close-on-exec fd.
    pub fn exec(&mut self, ts: u64) {
        self.bulk_touched = ts;
        let doomed: Vec<i32> = self.fds.iter().filter(|(_, e)| e.cloexec).map(|(fd, _)| *fd).collect();
        for fd in doomed {
            if let Some(o) = self.fds.remove(&fd) {
                self.note_drop(&o, ts);
            }
        }
    }

    pub fn count_role(&self, role: PtyRole) -> usize {
        self.fds.values().filter(|e| e.kind.pty_role() == role).count()
    }

    /// Forgets change times older than `ts`: no scan that started before them is pending.
    pub(crate) fn prune_touched(&mut self, ts: u64) {
        self.touched.retain(|_, t| *t >= ts);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(kind: FdKind, cloexec: bool) -> FdEntry {
        FdEntry::new(kind, "x", cloexec)
    }

    #[test]
    fn close_range_and_exec() {
        let mut t = FdTable::default();
        for fd in 0..10 {
            t.install(fd, e(FdKind::File, fd % 2 == 0), 1);
        }
        t.close_range(3, 5, false, 2);
        assert_eq!(t.fds.keys().copied().collect::<Vec<_>>(), vec![0, 1, 2, 6, 7, 8, 9]);
        t.close_range(7, u32::MAX, true, 3);
        t.exec(4);
        assert_eq!(t.fds.keys().copied().collect::<Vec<_>>(), vec![1]);
        assert_eq!(t.bulk_touched, 4);
        t.close_range(9, 3, false, 5); // first > last: nothing
        assert_eq!(t.fds.len(), 1);
    }

    #[test]
    fn cloexec_change_on_an_unknown_fd_is_still_a_touch() {
        let mut t = FdTable::default();
        t.set_cloexec(251, true, 7);
        assert_eq!(t.touched.get(&251), Some(&7));
        assert!(t.fds.is_empty());
    }

    #[test]
    fn install_over_open_fd_reports_missed_close() {
        let mut t = FdTable::default();
        assert!(t.install(3, e(FdKind::Pipe, false), 1).is_none());
        assert!(t.install(3, e(FdKind::File, false), 2).is_some());
        assert_eq!(t.fds[&3].kind, FdKind::File);
        t.prune_touched(3);
        assert!(t.touched.is_empty());
    }
}
