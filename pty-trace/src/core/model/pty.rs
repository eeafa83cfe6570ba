//! The PTY registry of a session: each PTY by index, who holds its master and who its slave.
//!
//! A PTY is *orphaned* when a session process holds its master and no process on the machine
//! holds its slave: the signature of the agent and node-pty leaks (the child exited, the parent
//! forgot the master). Slave holders outside the model are passed in by the caller, which scans
//! /proc for them; the model only knows traced processes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Model, fd::FdKind};

/// An fd holding one end of a PTY.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, PartialOrd, Ord)]
pub struct Holder {
    pub pid: u32,
    pub fd: i32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyPair {
    /// The `N` of `/dev/pts/N`; `None` for masters whose index is not known yet.
    pub index: Option<u32>,
    pub masters: Vec<Holder>,
    /// Slave holders among traced processes (any session).
    pub slaves: Vec<Holder>,
    /// Some process outside the traced sessions holds the slave.
    pub slave_held_outside: bool,
    pub orphaned: bool,
}

impl Model {
    /// PTYs with at least one end held by a process of `session`. `outside_slave_holders` is the
    /// set of PTY indexes whose slave some untraced process holds.
    pub fn pty_registry(&self, session: u32, outside_slave_holders: &BTreeSet<u32>) -> Vec<PtyPair> {
        let mut by_index: BTreeMap<Option<u32>, PtyPair> = BTreeMap::new();
        let mut unknown = Vec::new();
        // Slaves held anywhere in the model count, masters only in this session.
        for p in self.procs.values() {
            let Some(t) = self.tables.get(&p.table) else { continue };
            for (fd, e) in &t.fds {
                let holder = Holder { pid: p.pid, fd: *fd };
                match (e.kind, e.pty_index) {
                    (FdKind::PtyMaster, None) if p.session == session => unknown.push(holder),
                    (FdKind::PtyMaster, Some(i)) if p.session == session => {
                        entry(&mut by_index, Some(i)).masters.push(holder)
                    }
                    (FdKind::PtySlave, Some(i)) => entry(&mut by_index, Some(i)).slaves.push(holder),
                    _ => {}
                }
            }
        }
        let session_pids: BTreeSet<u32> = self.processes_in(session).map(|p| p.pid).collect();
        let mut out: Vec<PtyPair> = by_index
            .into_values()
            .filter(|pair| {
                !pair.masters.is_empty() || pair.slaves.iter().any(|h| session_pids.contains(&h.pid))
            })
            .map(|mut pair| {
                pair.slave_held_outside =
                    pair.index.is_some_and(|i| outside_slave_holders.contains(&i));
                pair.orphaned =
                    !pair.masters.is_empty() && pair.slaves.is_empty() && !pair.slave_held_outside;
                pair
            })
            .collect();
        // Masters of unknown index cannot be judged orphaned; they are listed on their own.
        for h in unknown {
            out.push(PtyPair {
                index: None,
                masters: vec![h],
                slaves: Vec::new(),
                slave_held_outside: false,
                orphaned: false,
            });
        }
        out
    }

    /// Indexes of PTY masters held in `session`, for which the caller should look for slave
    /// holders outside the model.
    pub fn master_indexes(&self, session: u32) -> BTreeSet<u32> {
        let mut out = BTreeSet::new();
        for p in self.processes_in(session) {
            if let Some(t) = self.tables.get(&p.table) {
                out.extend(
                    t.fds.values().filter(|e| e.kind == FdKind::PtyMaster).filter_map(|e| e.pty_index),
                );
            }
        }
        out
    }
}

/// Indexes of the orphaned PTYs in a registry.
pub fn orphaned_indexes(ptys: &[PtyPair]) -> BTreeSet<u32> {
    ptys.iter().filter(|p| p.orphaned).filter_map(|p| p.index).collect()
}

fn entry(map: &mut BTreeMap<Option<u32>, PtyPair>, index: Option<u32>) -> &mut PtyPair {
    map.entry(index).or_insert_with(|| PtyPair {
        index,
        masters: Vec::new(),
        slaves: Vec::new(),
        slave_held_outside: false,
        orphaned: false,
    })
}
