//! The PTY registry of a session: each PTY by (devpts instance, index), who holds its master
//! and who its slave. Indexes repeat across devpts instances (every container mounts its
//! own), so a slave counts for a master only on the same instance; an end whose instance is
//! not known yet matches on the index alone.
//!
//! A PTY is *orphaned* when a session process holds its master and no process on the machine
//! holds its slave: the signature of the agent and node-pty leaks (the child exited, the parent
//! forgot the master). Slave holders outside the model are passed in by the caller, which scans
//! /proc for them; the model only knows traced processes.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{Model, fd::FdKind};
use crate::core::machine::DevId;

/// A PTY as the registry keys it: (instance, index).
pub type PtySlot = (Option<DevId>, u32);

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
    /// Its devpts instance (`st_dev`, `0:26`), when known.
    #[serde(default)]
    pub devpts: Option<DevId>,
    pub masters: Vec<Holder>,
    /// Slave holders among traced processes (any session).
    pub slaves: Vec<Holder>,
    /// Some process outside the traced sessions holds the slave.
    pub slave_held_outside: bool,
    pub orphaned: bool,
}

impl Model {
    /// PTYs with at least one end held by a process of `session`. `outside_slave_holders` is the
    /// set of PTYs whose slave some untraced process holds.
    pub fn pty_registry(&self, session: u32, outside_slave_holders: &BTreeSet<PtySlot>) -> Vec<PtyPair> {
        let mut by_slot: BTreeMap<PtySlot, PtyPair> = BTreeMap::new();
        let mut unknown = Vec::new();
        // Slaves held anywhere in the model count, masters only in this session.
        for p in self.procs.values() {
            let Some(t) = self.tables.get(&p.table) else { continue };
            for (fd, e) in &t.fds {
                let holder = Holder { pid: p.pid, fd: *fd };
                match (e.kind, e.pty_index) {
                    (FdKind::PtyMaster, None) if p.session == session => unknown.push(holder),
                    (FdKind::PtyMaster, Some(i)) if p.session == session => {
                        entry(&mut by_slot, (e.pty_devpts, i)).masters.push(holder)
                    }
                    (FdKind::PtySlave, Some(i)) => entry(&mut by_slot, (e.pty_devpts, i)).slaves.push(holder),
                    _ => {}
                }
            }
        }
        // An end of unknown instance belongs to the PTY of that index on a known one, when
        // there is exactly one such: it is the same PTY seen before /proc named its instance.
        let known: Vec<PtySlot> = by_slot.keys().filter(|k| k.0.is_some()).copied().collect();
        for (dev, i) in by_slot.keys().filter(|k| k.0.is_none()).copied().collect::<Vec<_>>() {
            let _ = dev;
            let mut same = known.iter().filter(|k| k.1 == i);
            if let (Some(&only), None) = (same.next(), same.next())
                && let Some(loose) = by_slot.remove(&(None, i))
            {
                let pair = entry(&mut by_slot, only);
                pair.masters.extend(loose.masters);
                pair.slaves.extend(loose.slaves);
            }
        }
        let session_pids: BTreeSet<u32> = self.processes_in(session).map(|p| p.pid).collect();
        let mut out: Vec<PtyPair> = by_slot
            .into_values()
            .filter(|pair| {
                !pair.masters.is_empty() || pair.slaves.iter().any(|h| session_pids.contains(&h.pid))
            })
            .map(|mut pair| {
                pair.slave_held_outside = pair.index.is_some_and(|i| held_outside(outside_slave_holders, pair.devpts, i));
                pair.orphaned =
                    !pair.masters.is_empty() && pair.slaves.is_empty() && !pair.slave_held_outside;
                pair
            })
            .collect();
        // Masters of unknown index cannot be judged orphaned; they are listed on their own.
        for h in unknown {
            out.push(PtyPair {
                index: None,
                devpts: None,
                masters: vec![h],
                slaves: Vec::new(),
                slave_held_outside: false,
                orphaned: false,
            });
        }
        out
    }

    /// The PTYs whose masters `session` holds, for which the caller should look for slave
    /// holders outside the model.
    pub fn master_slots(&self, session: u32) -> BTreeSet<PtySlot> {
        let mut out = BTreeSet::new();
        for p in self.processes_in(session) {
            if let Some(t) = self.tables.get(&p.table) {
                out.extend(
                    t.fds
                        .values()
                        .filter(|e| e.kind == FdKind::PtyMaster)
                        .filter_map(|e| e.pty_index.map(|i| (e.pty_devpts, i))),
                );
            }
        }
        out
    }
}

/// Whether some untraced process holds the slave of (`devpts`, `index`): on the same instance,
/// or on any when either side's instance is unknown.
fn held_outside(holders: &BTreeSet<PtySlot>, devpts: Option<DevId>, index: u32) -> bool {
    match devpts {
        Some(d) => holders.contains(&(Some(d), index)) || holders.contains(&(None, index)),
        None => holders.iter().any(|&(_, i)| i == index),
    }
}

/// The orphaned PTYs of a registry.
pub fn orphaned_slots(ptys: &[PtyPair]) -> BTreeSet<PtySlot> {
    ptys.iter().filter(|p| p.orphaned).filter_map(|p| p.index.map(|i| (p.devpts, i))).collect()
}

/// Whether the PTY end (`devpts`, `index`) is one of `orphaned` (on its instance; by index
/// alone when the end's instance is unknown).
pub fn is_orphaned(orphaned: &BTreeSet<PtySlot>, devpts: Option<DevId>, index: u32) -> bool {
    match devpts {
        Some(_) => orphaned.contains(&(devpts, index)),
        None => orphaned.iter().any(|&(_, i)| i == index),
    }
}

fn entry(map: &mut BTreeMap<PtySlot, PtyPair>, slot: PtySlot) -> &mut PtyPair {
    map.entry(slot).or_insert_with(|| PtyPair {
        index: Some(slot.1),
        devpts: slot.0,
        masters: Vec::new(),
        slaves: Vec::new(),
        slave_held_outside: false,
        orphaned: false,
    })
}
