//! Comparison of the model with the reference (counts and fd numbers, then everything else),
//! and the `Driver` that feeds the reference's events and scans to the model and checks it
//! after every operation.

use std::collections::BTreeSet;

use pty_trace::core::model::reconcile::ObservedProcess;
use pty_trace::core::model::{Event, Model, PtyRole};

use crate::ops::{Op, op_kind};
use crate::reference::{RTable, Ref, Role, SESSIONS, open_fds};

// ---------------------------------------------------------------------------------------------
// Comparison

pub(crate) fn role_of(r: PtyRole) -> Role {
    match r {
        PtyRole::None => Role::None,
        PtyRole::Master => Role::Master,
        PtyRole::Slave => Role::Slave,
    }
}

fn ref_counts(t: &RTable) -> (usize, usize, usize) {
    let fds = t.iter().flatten();
    let n = |role| t.iter().flatten().filter(|e| e.role == role).count();
    (fds.count(), n(Role::Master), n(Role::Slave))
}

/// Per-process (counts, fd numbers) differences; empty when they agree.
pub(crate) fn count_diffs(m: &Model, r: &Ref) -> Vec<String> {
    let mut diffs = Vec::new();
    let mp: BTreeSet<u32> = m.procs.keys().copied().collect();
    let rp: BTreeSet<u32> = r.procs.keys().copied().collect();
    if mp != rp {
        diffs.push(format!("live pids: model {mp:?}, reference {rp:?}"));
    }
    for &pid in &rp {
        let t = r.table(pid);
        if m.counts(pid) != ref_counts(t) {
            diffs.push(format!(
                "pid {pid} counts: model {:?}, reference {:?}",
                m.counts(pid),
                ref_counts(t)
            ));
        }
        let mfds: Vec<i32> = m
            .table_of(pid)
            .map(|t| t.fds.keys().copied().collect())
            .unwrap_or_default();
        let rfds: Vec<i32> = open_fds(t).into_iter().map(|fd| fd as i32).collect();
        if mfds != rfds {
            diffs.push(format!("pid {pid} fds: model {mfds:?}, reference {rfds:?}"));
        }
    }
    diffs
}

/// Everything the model should agree with the reference on when no event was lost.
fn full_diffs(m: &Model, r: &Ref) -> Vec<String> {
    let mut diffs = count_diffs(m, r);
    if m.stats.drift != 0 {
        diffs.push(format!(
            "drift {} {:?}",
            m.stats.drift, m.stats.drift_by_cause
        ));
    }
    for (&pid, rp) in &r.procs {
        let Some(mt) = m.table_of(pid) else { continue };
        for (fd, e) in r.table(pid).iter().enumerate() {
            let (Some(e), Some(me)) = (e, mt.fds.get(&(fd as i32))) else {
                continue;
            };
            let got = (role_of(me.kind.pty_role()), me.cloexec, me.pty_index);
            let want = (e.role, e.cloexec, e.index);
            // A scan may have taught the model the true index before the events did.
            let index_ok = me.pty_index == e.index || me.pty_index == e.true_index;
            if (got.0, got.1) != (want.0, want.1) || !index_ok {
                diffs.push(format!(
                    "pid {pid} fd {fd}: model {got:?} ({:?}), reference {want:?}",
                    me.kind
                ));
            }
        }
        // CLONE_FILES sharing: same partition of processes into tables.
        for (&other, op) in r.procs.range(pid + 1..) {
            let (Some(a), Some(b)) = (m.procs.get(&pid), m.procs.get(&other)) else {
                continue;
            };
            if (a.table == b.table) != (rp.table == op.table) {
                diffs.push(format!("pids {pid} and {other}: table sharing differs"));
            }
        }
        let argv = m
            .procs
            .get(&pid)
            .and_then(|p| p.command)
            .map(|id| m.commands[id].argv.clone());
        if argv != rp.argv {
            diffs.push(format!(
                "pid {pid} command: model {argv:?}, reference {:?}",
                rp.argv
            ));
        }
    }
    for (root, _) in SESSIONS {
        let ended = m.sessions[&root].ended_ns.is_some();
        if ended == r.procs.contains_key(&root) {
            diffs.push(format!("session {root}: ended {ended}"));
        }
    }
    diffs
}

/// The reference and the model side by side, with at most one late scan in flight (scans of
/// one table are reconciled in the order they started, as the tracer does).
pub(crate) struct Driver {
    pub(crate) r: Ref,
    m: Model,
    late: Option<(usize, ObservedProcess)>,
    pub(crate) events: Vec<Event>,
    pub(crate) scans: usize,
}

impl Driver {
    pub(crate) fn new() -> Driver {
        let (r, m) = Ref::new();
        Driver {
            r,
            m,
            late: None,
            events: Vec::new(),
            scans: 0,
        }
    }

    fn deliver_late(&mut self) -> Result<(), String> {
        if let Some((_, obs)) = self.late.take() {
            self.scans += 1;
            let out = self.m.reconcile(&obs);
            if out.seeding || out.corrections() != 0 {
                return Err(format!(
                    "late scan of pid {} (started {}) found {out:?}: {:?}",
                    obs.pid,
                    obs.scan_start_ns,
                    full_diffs(&self.m, &self.r)
                ));
            }
        }
        Ok(())
    }

    pub(crate) fn op(&mut self, i: usize, op: Op) -> Result<(), String> {
        if self.late.as_ref().is_some_and(|(at, _)| i >= *at) {
            self.deliver_late()?;
        }
        self.events.clear();
        let scan = self.r.step(op, &mut self.events);
        for ev in &self.events {
            self.m.apply(ev);
        }
        match scan {
            Some((obs, 0)) => {
                self.deliver_late()?;
                self.scans += 1;
                let out = self.m.reconcile(&obs);
                if out.corrections() != 0 || out.skipped != 0 || out.skipped_process || out.seeding
                {
                    return Err(format!(
                        "after op {i}: scan of pid {} found {out:?}: {:?}",
                        obs.pid,
                        full_diffs(&self.m, &self.r)
                    ));
                }
            }
            Some((obs, delay)) => {
                self.deliver_late()?;
                self.late = Some((i + delay, obs));
            }
            None => {}
        }
        // Cheap check after every step, the full one at the end.
        if self.m.stats.drift != 0 || self.m.procs.len() != self.r.procs.len() {
            return Err(format!(
                "after op {i} {op:?} ({:?}): {:?}",
                op_kind(op.code),
                full_diffs(&self.m, &self.r)
            ));
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> Result<(), String> {
        self.deliver_late()?;
        let diffs = full_diffs(&self.m, &self.r);
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs.join("\n"))
        }
    }
}

pub(crate) fn run(ops: &[Op]) -> Result<(), String> {
    let mut d = Driver::new();
    for (i, &op) in ops.iter().enumerate() {
        d.op(i, op)?;
    }
    d.finish()
}
