//! PTY lifecycle facts, from events: when a PTY's slave lost its last holder, and when its
//! master was released, by a close or by its holder exiting.
//!
//! The leak evidence (`core::evidence`) needs the moment a PTY became orphaned, not the moment a
//! snapshot happened to see it: a PTY orphaned and released between two snapshots must count
//! the same at 250 ms and at 1 s. Tables log the PTY ends they drop (`FdTable::pty_drops`);
//! the model settles them right after the event that dropped them, while the rest of the
//! machine's tables are as they were at that moment.

use super::{Model, fd::CommandId, fd::FdKind, table::PtyDrop};

/// A PTY whose last master fd in the model went away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PtyRelease {
    pub index: u32,
    /// When the master was opened (or first seen in /proc), by whom, in which command.
    pub opened_ns: u64,
    pub opener_pid: u32,
    pub command: Option<CommandId>,
    pub released_ns: u64,
    /// Released because its last holder exited (or exec'd with close-on-exec), not by a close.
    pub by_exit: bool,
    /// No process held its slave when it was released: orphaned since then (the later of the
    /// master's opening and its slave's last holder going away).
    pub orphaned_since: Option<u64>,
    /// The commands (`Process::unit`) of the processes holding its slave when it was released
    /// (None: a process of no command).
    pub slave_units: Vec<Option<CommandId>>,
}

impl Model {
    /// Settles the PTY ends the table of `pid` dropped (see the module doc).
    pub(crate) fn settle_pty_drops_of(&mut self, pid: u32) {
        let Some(p) = self.procs.get(&pid) else { return };
        let session = p.session;
        let Some(t) = self.tables.get_mut(&p.table) else { return };
        if t.pty_drops.is_empty() {
            return;
        }
        let drops = std::mem::take(&mut t.pty_drops);
        self.settle_pty_drops(drops, session, false);
    }

    /// `by_exit`: the drops come from a table that went away with its last process.
    pub(crate) fn settle_pty_drops(&mut self, drops: Vec<PtyDrop>, session: u32, by_exit: bool) {
        // Slaves first: a table dropping both ends of a PTY at once leaves it without a slave.
        let mut seen = std::collections::BTreeSet::new();
        for d in drops.iter().filter(|d| d.kind == FdKind::PtySlave) {
            self.slave_last_drop.insert(d.index, d.ts);
            // A master still held with no slave left: it may become abandoned before the next
            // snapshot (see `take_due_orphans`). Only PTYs whose master the model holds are
            // looked at (not the terminal the traced processes run in), once per settle.
            if self.master_indexes.contains(&d.index)
                && seen.insert(d.index)
                && drops.iter().all(|m| m.kind != FdKind::PtyMaster || m.index != d.index)
                && let (1.., 0) = self.pty_holders(d.index)
                && let Some(s) = self.sessions.get_mut(&session)
            {
                let commands = s.commands.len();
                s.orphan_candidates.push((d.index, commands, d.ts));
            }
        }
        let mut released = std::collections::BTreeSet::new();
        for d in drops.iter().filter(|d| d.kind == FdKind::PtyMaster) {
            // Several master fds of one PTY dropped at once (an exit, close_range) release it once.
            if !released.insert(d.index) {
                continue;
            }
            let (masters, slaves) = self.pty_holders(d.index);
            if masters > 0 {
                continue;
            }
            self.master_indexes.remove(&d.index);
            let orphaned_since = (slaves == 0).then(|| {
                let drop = self.slave_last_drop.get(&d.index).copied().unwrap_or(0);
                drop.max(d.opened_ns)
            });
            if slaves == 0 {
                // The PTY is gone; its index may be handed out again.
                self.slave_last_drop.remove(&d.index);
            }
            for s in self.sessions.values_mut() {
                s.orphan_candidates.retain(|c| c.0 != d.index);
            }
            let slave_units = if slaves > 0 { self.slave_holder_units(d.index) } else { Vec::new() };
            if let Some(s) = self.sessions.get_mut(&session) {
                if s.pty_releases.len() >= super::MAX_PTY_RELEASES {
                    s.pty_releases.pop_front();
                }
                s.pty_releases_total += 1;
                s.pty_releases.push_back(PtyRelease {
                    index: d.index,
                    opened_ns: d.opened_ns,
                    opener_pid: d.opener_pid,
                    command: d.command,
                    released_ns: d.ts,
                    by_exit,
                    orphaned_since,
                    slave_units,
                });
            }
        }
    }

    /// (master fds, slave fds) of PTY `index` in every table of the model.
    pub fn pty_holders(&self, index: u32) -> (usize, usize) {
        let (mut m, mut s) = (0, 0);
        for t in self.tables.values() {
            for e in t.fds.values() {
                if e.pty_index == Some(index) {
                    match e.kind {
                        FdKind::PtyMaster => m += 1,
                        FdKind::PtySlave => s += 1,
                        _ => {}
                    }
                }
            }
        }
        (m, s)
    }

    /// The commands of the processes holding PTY `index`'s slave.
    fn slave_holder_units(&self, index: u32) -> Vec<Option<CommandId>> {
        self.procs
            .values()
            .filter(|p| {
                self.tables
                    .get(&p.table)
                    .is_some_and(|t| t.fds.values().any(|e| e.kind == FdKind::PtySlave && e.pty_index == Some(index)))
            })
            .map(|p| p.unit)
            .collect()
    }

    /// Whether a PTY orphaned since the last look has come due: `commands` later commands have
    /// started or `grace_ns` has passed since it lost its last slave holder. The due ones are
    /// taken; the tracer then scores the session at once instead of at the next interval, so
    /// how soon a leak is named does not depend on the interval.
    pub fn take_due_orphans(&mut self, session: u32, commands: u64, min_ns: u64, grace_ns: u64, now: u64) -> bool {
        let Some(s) = self.sessions.get_mut(&session) else { return false };
        let started = s.commands.len();
        let before = s.orphan_candidates.len();
        s.orphan_candidates.retain(|&(_, at, ts)| {
            let age = now.saturating_sub(ts);
            let by_commands = (started - at.min(started)) as u64 >= commands && age >= min_ns;
            !(by_commands || age >= grace_ns)
        });
        s.orphan_candidates.len() < before
    }

    /// Records that PTY `index` has a master in the model (see `master_indexes`).
    pub(crate) fn note_master(&mut self, index: u32) {
        self.master_indexes.insert(index);
    }

    /// When PTY `index`'s slave last lost a holder, if that is known.
    pub fn slave_last_dropped(&self, index: u32) -> Option<u64> {
        self.slave_last_drop.get(&index).copied()
    }
}
