//! What `pty-trace report` makes of a `top` recording's `machine` records: how the pool went,
//! and which process drained it, from when. Built from runs of lines and merged in file order,
//! like the session aggregates.

use std::collections::BTreeMap;

use serde::Serialize;

use super::MachineRec;

/// One process across the recording.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HolderHistory {
    pub pid: u32,
    pub command: String,
    pub container: Option<String>,
    pub first_ts: String,
    pub last_ts: String,
    pub masters_first: u64,
    pub masters_last: u64,
    pub masters_peak: u64,
    pub orphaned_last: u64,
    /// The first record where it held more masters than when it was first seen.
    pub growing_since: Option<String>,
    /// New peaks: (ts, masters), kept to find `growing_since` across merged runs.
    #[serde(skip)]
    peaks: Vec<(String, u64)>,
}

/// The machine part of a report.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct MachineHistory {
    pub records: u64,
    pub first_ts: String,
    pub last_ts: String,
    pub pty_nr_first: u64,
    pub pty_nr_last: u64,
    pub pty_nr_peak: u64,
    pub pty_max: u64,
    /// The process that gained the most masters and still holds orphaned ones, if any: the
    /// one that drained the pool.
    pub culprit: Option<HolderHistory>,
    /// Every process seen holding PTYs, most masters gained first.
    pub holders: Vec<HolderHistory>,
    #[serde(skip)]
    by_pid: BTreeMap<(u32, String), HolderHistory>,
}

impl MachineHistory {
    pub fn record(&mut self, ts: &str, rec: &MachineRec) {
        let m = &rec.machine;
        if self.records == 0 {
            self.first_ts = ts.to_string();
            self.pty_nr_first = m.pty_nr;
        }
        self.records += 1;
        self.last_ts = ts.to_string();
        self.pty_nr_last = m.pty_nr;
        self.pty_nr_peak = self.pty_nr_peak.max(m.pty_nr);
        self.pty_max = m.pty_max;
        for r in rec.processes.iter().filter(|r| r.masters + r.slaves > 0) {
            let h = self.by_pid.entry((r.pid, r.command.clone())).or_insert_with(|| HolderHistory {
                pid: r.pid,
                command: r.command.clone(),
                container: r.container.clone(),
                first_ts: ts.to_string(),
                masters_first: r.masters,
                ..Default::default()
            });
            h.last_ts = ts.to_string();
            h.masters_last = r.masters;
            h.orphaned_last = r.orphaned;
            if r.masters > h.masters_peak || h.peaks.is_empty() {
                h.masters_peak = r.masters;
                h.peaks.push((ts.to_string(), r.masters));
            }
        }
    }

    /// Appends the history of the lines that follow these.
    pub fn merge(&mut self, later: MachineHistory) {
        if later.records == 0 {
            return;
        }
        if self.records == 0 {
            *self = later;
            return;
        }
        self.records += later.records;
        self.last_ts = later.last_ts;
        self.pty_nr_last = later.pty_nr_last;
        self.pty_nr_peak = self.pty_nr_peak.max(later.pty_nr_peak);
        self.pty_max = later.pty_max;
        for (k, b) in later.by_pid {
            match self.by_pid.get_mut(&k) {
                None => {
                    self.by_pid.insert(k, b);
                }
                Some(a) => {
                    a.last_ts = b.last_ts;
                    a.masters_last = b.masters_last;
                    a.orphaned_last = b.orphaned_last;
                    for (ts, n) in b.peaks {
                        if n > a.masters_peak {
                            a.masters_peak = n;
                            a.peaks.push((ts, n));
                        }
                    }
                }
            }
        }
    }

    /// Orders the holders and names the culprit.
    pub fn finish(mut self) -> MachineHistory {
        let mut holders: Vec<HolderHistory> = std::mem::take(&mut self.by_pid)
            .into_values()
            .map(|mut h| {
                h.growing_since = h.peaks.iter().find(|(_, n)| *n > h.masters_first).map(|(ts, _)| ts.clone());
                h
            })
            .collect();
        let gained = |h: &HolderHistory| h.masters_last.saturating_sub(h.masters_first);
        holders.sort_by(|a, b| gained(b).cmp(&gained(a)).then(b.masters_last.cmp(&a.masters_last)).then(a.pid.cmp(&b.pid)));
        self.culprit = holders.iter().find(|h| gained(h) > 0 && h.orphaned_last > 0).cloned();
        self.holders = holders;
        self
    }

    /// The pool drained: some process gained masters it left orphaned.
    pub fn draining(&self) -> bool {
        self.culprit.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::machine::{HolderRow, MachineState};

    fn rec(nr: u64, rows: &[(u32, u64, u64)]) -> MachineRec {
        MachineRec {
            machine: MachineState {
                pty_nr: nr,
                pty_max: 4096,
                pty_reserve: 1024,
                pty_growth_per_min: None,
                pty_exhaustion_eta_s: None,
                file_nr: 0,
                file_max: 0,
                devpts: vec![],
                processes_seen: 0,
                unreadable: 0,
                holders: 0,
                masters: 0,
                orphaned: 0,
                masters_instance_unknown: 0,
            },
            processes: rows
                .iter()
                .map(|&(pid, masters, orphaned)| HolderRow {
                    pid,
                    ppid: 1,
                    uid: 0,
                    user: None,
                    command: format!("cmd{pid}"),
                    masters,
                    orphaned,
                    slaves: 0,
                    fds: masters,
                    nofile: None,
                    masters_per_min: None,
                    age_s: 0.0,
                    container: None,
                    devpts: vec![],
                    near_fd_limit: false,
                })
                .collect(),
        }
    }

    fn lines() -> Vec<(String, MachineRec)> {
        (0..10u64)
            .map(|i| {
                // pid 7 holds 2 (its terminal) until t3, then leaks one a record; pid 9 holds 5, stable.
                let leak = if i <= 3 { 2 } else { 2 + (i - 3) };
                (format!("t{i}"), rec(10 + leak, &[(7, leak, leak.saturating_sub(2)), (9, 5, 0)]))
            })
            .collect()
    }

    #[test]
    fn the_culprit_is_the_process_that_gained_orphaned_masters_and_since_when() {
        let mut h = MachineHistory::default();
        for (ts, r) in lines() {
            h.record(&ts, &r);
        }
        let h = h.finish();
        let c = h.culprit.as_ref().unwrap();
        assert_eq!((c.pid, c.masters_first, c.masters_last, c.orphaned_last), (7, 2, 8, 6));
        assert_eq!(c.growing_since.as_deref(), Some("t4"));
        assert_eq!((h.pty_nr_first, h.pty_nr_last, h.pty_nr_peak), (12, 18, 18));
        assert_eq!(h.holders[1].growing_since, None, "the stable holder never grew");
        assert!(h.draining());
    }

    #[test]
    fn merged_runs_give_the_same_history_as_one_run() {
        let all = lines();
        for split in 1..all.len() {
            let (mut a, mut b) = (MachineHistory::default(), MachineHistory::default());
            for (ts, r) in &all[..split] {
                a.record(ts, r);
            }
            for (ts, r) in &all[split..] {
                b.record(ts, r);
            }
            a.merge(b);
            let mut one = MachineHistory::default();
            for (ts, r) in &all {
                one.record(ts, r);
            }
            assert_eq!(a.finish(), one.finish(), "split at {split}");
        }
    }

    #[test]
    fn a_stable_machine_has_no_culprit() {
        let mut h = MachineHistory::default();
        for i in 0..5 {
            h.record(&format!("t{i}"), &rec(3, &[(1, 3, 0)]));
        }
        assert!(!h.finish().draining());
    }
}
