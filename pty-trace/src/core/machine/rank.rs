//! Rows from one machine scan: each PTY master judged orphaned against every slave held on
//! the machine (same instance, same index), the processes near their RLIMIT_NOFILE, and the
//! order `top` shows them in.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::{DevId, DevptsMount, Holding, HolderRow, InstanceState, MachineScan, PtyKey};
use crate::core::redact::redact_argv;

/// A process without PTYs is listed once it holds more than this share of its RLIMIT_NOFILE.
pub const NEAR_FD_LIMIT: f64 = 0.8;

/// What the rows are ranked by (`s` cycles through them in the live view).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum TopSort {
    /// PTY masters held (then orphaned).
    #[default]
    Masters,
    /// Masters gained per minute.
    Growth,
    /// Orphaned masters.
    Orphans,
    /// Open fds.
    Fds,
}

impl TopSort {
    pub fn next(self) -> TopSort {
        match self {
            TopSort::Masters => TopSort::Growth,
            TopSort::Growth => TopSort::Orphans,
            TopSort::Orphans => TopSort::Fds,
            TopSort::Fds => TopSort::Masters,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            TopSort::Masters => "masters",
            TopSort::Growth => "growth",
            TopSort::Orphans => "orphans",
            TopSort::Fds => "fds",
        }
    }
}

/// Whether `fds` is above [`NEAR_FD_LIMIT`] of `nofile`.
pub fn near_fd_limit(fds: u64, nofile: Option<u64>) -> bool {
    nofile.is_some_and(|n| n > 0 && fds as f64 > NEAR_FD_LIMIT * n as f64)
}

/// Whether `scan` explains the whole PTY pool: as many distinct masters found, each on a known
/// instance, as `pty/nr` counts, and none of them orphaned. Then a process whose fd count did not
/// change cannot hold a PTY master nobody has seen, and the only thing a same-count swap could
/// hide (a slave taken by a process not read again) would not change any orphan verdict, so the
/// scanner may re-read such processes rarely. Anything unexplained (a PTY whose master no
/// readable process holds, an instance unknown, an orphan whose slave may be held by a process
/// not read again) keeps the frequent re-read.
pub fn pool_explained(scan: &MachineScan) -> bool {
    let slaves: BTreeSet<PtyKey> = scan.procs.iter().flat_map(|p| p.slaves.iter().filter_map(|s| s.key())).collect();
    let mut masters = BTreeSet::new();
    for m in scan.procs.iter().flat_map(|p| &p.masters) {
        let Some(key) = m.key() else { return false };
        if !slaves.contains(&key) {
            return false;
        }
        masters.insert(key);
    }
    scan.unreadable == 0 && masters.len() as u64 >= scan.pool.nr
}

/// The rows of `scan` (processes holding a PTY end, or near their fd limit) sorted by `sort`,
/// and the state of each devpts instance. `growth` gives a process's masters per minute.
pub fn rows(scan: &MachineScan, growth: impl Fn(&Holding) -> Option<f64>, sort: TopSort) -> (Vec<HolderRow>, Vec<InstanceState>) {
    let slaves: BTreeSet<PtyKey> = scan.procs.iter().flat_map(|p| p.slaves.iter().filter_map(|s| s.key())).collect();
    // Distinct PTYs per instance (a master shared by a fork or a dup is one PTY), and of them
    // the orphaned.
    let mut per_instance: BTreeMap<DevId, (BTreeSet<PtyKey>, BTreeSet<PtyKey>)> = BTreeMap::new();
    let mut out = Vec::new();
    for p in &scan.procs {
        let mut orphaned = 0;
        let mut devpts = BTreeSet::new();
        for m in &p.masters {
            let Some(key) = m.key() else { continue };
            let orphan = !slaves.contains(&key);
            orphaned += orphan as u64;
            let e = per_instance.entry(key.devpts).or_default();
            e.0.insert(key);
            if orphan {
                e.1.insert(key);
            }
            devpts.insert(key.devpts);
        }
        let near = near_fd_limit(p.fds, p.nofile);
        if p.masters.is_empty() && p.slaves.is_empty() && !near {
            continue;
        }
        let host: BTreeSet<DevId> = scan.instances.iter().filter(|i| i.host).map(|i| i.devpts).collect();
        let command = if p.argv.is_empty() { format!("[{}]", p.comm) } else { redact_argv(&p.argv).join(" ") };
        out.push(HolderRow {
            pid: p.pid,
            ppid: p.ppid,
            uid: p.uid,
            user: p.user.clone(),
            command,
            masters: p.masters.len() as u64,
            orphaned,
            slaves: p.slaves.len() as u64,
            fds: p.fds,
            nofile: p.nofile,
            masters_per_min: growth(p),
            age_s: p.age_s,
            container: p.container.clone(),
            devpts: if devpts.is_subset(&host) { Vec::new() } else { devpts.into_iter().collect() },
            near_fd_limit: near,
        });
    }
    sort_rows(&mut out, sort);
    let mut instances: Vec<InstanceState> = scan
        .instances
        .iter()
        .map(|i| {
            let (ptys, orphaned) = per_instance.remove(&i.devpts).unwrap_or_default();
            InstanceState { instance: i.clone(), ptys: ptys.len() as u64, orphaned: orphaned.len() as u64 }
        })
        .collect();
    // Masters in an instance no mount table showed (its mount namespace is gone, or was not
    // readable): listed, unnamed.
    instances.extend(per_instance.into_iter().map(|(devpts, (ptys, orphaned))| InstanceState {
        instance: DevptsMount { devpts, mount: "?".into(), host: false, max: None, container: None },
        ptys: ptys.len() as u64,
        orphaned: orphaned.len() as u64,
    }));
    (out, instances)
}

/// Sorts rows best-first for `sort`; ties go to the most masters, then the lowest pid.
pub fn sort_rows(rows: &mut [HolderRow], sort: TopSort) {
    let g = |r: &HolderRow| r.masters_per_min.unwrap_or(f64::NEG_INFINITY);
    rows.sort_by(|a, b| {
        let primary = match sort {
            TopSort::Masters => b.masters.cmp(&a.masters).then(b.orphaned.cmp(&a.orphaned)),
            TopSort::Growth => g(b).total_cmp(&g(a)),
            TopSort::Orphans => b.orphaned.cmp(&a.orphaned),
            TopSort::Fds => b.fds.cmp(&a.fds),
        };
        primary.then(b.masters.cmp(&a.masters)).then(a.pid.cmp(&b.pid))
    });
}

#[cfg(test)]
mod tests {
    use super::super::{DevptsMount, MachineBook, PtyEnd, PtyPool};
    use super::*;

    const HOST: DevId = DevId { major: 0, minor: 26 };
    const BOX: DevId = DevId { major: 0, minor: 40 };

    fn end(dev: DevId, index: u32) -> PtyEnd {
        PtyEnd { devpts: Some(dev), index: Some(index) }
    }

    fn proc(pid: u32, masters: Vec<PtyEnd>, slaves: Vec<PtyEnd>) -> Holding {
        Holding { pid, comm: format!("p{pid}"), argv: vec![format!("p{pid}"), "--token=hunter2".into()], fds: 10, nofile: Some(1024), masters, slaves, ..Default::default() }
    }

    fn scan(procs: Vec<Holding>) -> MachineScan {
        MachineScan {
            instances: vec![
                DevptsMount { devpts: HOST, mount: "/dev/pts".into(), host: true, max: None, container: None },
                DevptsMount { devpts: BOX, mount: "/dev/pts".into(), host: false, max: Some(10), container: Some("mnt:4026532301".into()) },
            ],
            procs,
            ..Default::default()
        }
    }

    #[test]
    fn a_master_is_orphaned_only_when_no_process_holds_its_slave_in_the_same_instance() {
        let s = scan(vec![
            // Host master 3, whose slave only a container process "holds" as its own /dev/pts/3.
            proc(10, vec![end(HOST, 3), end(HOST, 4)], vec![]),
            proc(11, vec![], vec![end(HOST, 4)]),
            proc(20, vec![end(BOX, 0)], vec![end(BOX, 3)]),
            // An unknown instance cannot be judged: never called orphaned.
            proc(30, vec![PtyEnd { devpts: None, index: Some(7) }], vec![]),
        ]);
        let (rows, inst) = rows(&s, |_| None, TopSort::Masters);
        let by = |pid| rows.iter().find(|r| r.pid == pid).unwrap();
        assert_eq!((by(10).masters, by(10).orphaned), (2, 1), "host 3 is orphaned although box 3 is held");
        assert_eq!((by(20).masters, by(20).orphaned, by(20).slaves), (1, 1, 1), "box 0's slave is held by nobody");
        assert_eq!((by(11).masters, by(11).slaves), (0, 1));
        assert_eq!((by(30).masters, by(30).orphaned), (1, 0));
        assert_eq!(by(20).devpts, vec![BOX], "a container instance is named on its rows");
        assert!(by(10).devpts.is_empty(), "the host's is not");
        assert_eq!((inst[0].ptys, inst[0].orphaned, inst[1].ptys, inst[1].orphaned), (2, 1, 1, 1));
        assert!(!by(10).command.contains("hunter2"), "commands are redacted: {}", by(10).command);
    }

    #[test]
    fn the_pool_is_explained_only_when_every_pty_has_a_found_master_and_none_is_orphaned() {
        let with_nr = |procs: Vec<Holding>, nr: u64| MachineScan { pool: PtyPool { nr, max: 4096, reserve: 1024 }, ..scan(procs) };
        let pair = || vec![proc(10, vec![end(HOST, 1)], vec![]), proc(11, vec![], vec![end(HOST, 1)])];
        assert!(pool_explained(&with_nr(pair(), 1)));
        // A second PTY allocated on the machine whose master no process shown holds.
        assert!(!pool_explained(&with_nr(pair(), 2)));
        // The same master held twice (a fork) is one PTY.
        let mut twice = pair();
        twice.push(proc(12, vec![end(HOST, 1)], vec![]));
        assert!(pool_explained(&with_nr(twice, 1)));
        // An orphan: a process not read again may hold its slave.
        assert!(!pool_explained(&with_nr(vec![proc(10, vec![end(HOST, 1)], vec![])], 1)));
        // The box's 1 is not the host's 1.
        assert!(!pool_explained(&with_nr(vec![proc(10, vec![end(HOST, 1)], vec![]), proc(11, vec![], vec![end(BOX, 1)])], 1)));
        // A master whose instance is unknown cannot be judged.
        let unknown = PtyEnd { devpts: None, index: Some(1) };
        assert!(!pool_explained(&with_nr(vec![proc(10, vec![unknown], vec![]), proc(11, vec![], vec![end(HOST, 1)])], 1)));
        // Processes /proc would not show may hold anything.
        assert!(!pool_explained(&MachineScan { unreadable: 1, ..with_nr(pair(), 1) }));
        assert!(pool_explained(&with_nr(vec![], 0)));
    }

    #[test]
    fn rows_are_ranked_by_the_chosen_key_and_processes_near_their_fd_limit_show() {
        let mut a = proc(1, vec![end(HOST, 1), end(HOST, 2)], vec![]);
        a.fds = 50;
        let mut b = proc(2, vec![end(HOST, 3)], vec![]);
        b.fds = 900;
        let mut c = proc(3, vec![], vec![]);
        c.fds = 900; // 88% of 1024, no PTY: shown
        let mut d = proc(4, vec![], vec![]);
        d.fds = 700; // 68%: not shown
        let s = scan(vec![a, b, c, d]);
        let growth = |p: &Holding| Some(if p.pid == 2 { 30.0 } else { 1.0 });
        let order = |sort| rows(&s, growth, sort).0.iter().map(|r| r.pid).collect::<Vec<_>>();
        assert_eq!(order(TopSort::Masters), [1, 2, 3]);
        assert_eq!(order(TopSort::Growth), [2, 1, 3]);
        assert_eq!(order(TopSort::Fds), [2, 3, 1]);
        assert_eq!(order(TopSort::Orphans), [1, 2, 3]);
        assert!(rows(&s, growth, TopSort::Fds).0.iter().find(|r| r.pid == 3).unwrap().near_fd_limit);
        assert_eq!(TopSort::Masters.next().next().next().next(), TopSort::Masters);
    }

    #[test]
    fn the_book_gives_rates_per_process_and_for_the_pool_and_forgets_exited_processes() {
        let mut book = MachineBook::default();
        let mut last = None;
        for i in 0..11u64 {
            let masters = (0..i as u32).map(|k| end(HOST, k)).collect();
            let mut s = scan(vec![proc(7, masters, vec![])]);
            s.now_ns = i * 1_000_000_000;
            s.pool = PtyPool { nr: 100 + i, max: 4096, reserve: 1024 };
            last = Some(book.update(&s, TopSort::Masters));
        }
        let rec = last.unwrap();
        let g = rec.processes[0].masters_per_min.unwrap();
        assert!((g - 60.0).abs() < 1e-6, "one a second is 60 a minute: {g}");
        assert!((rec.machine.pty_growth_per_min.unwrap() - 60.0).abs() < 1e-6);
        let eta = rec.machine.pty_exhaustion_eta_s.unwrap();
        assert!((eta - (4096.0 - 110.0)).abs() < 1e-6, "{eta}");
        assert_eq!((rec.machine.masters, rec.machine.orphaned, rec.machine.holders), (10, 10, 1));
        // Same pid, a new process (another start): its trend starts over.
        let mut s = scan(vec![Holding { start_ticks: 99, ..proc(7, vec![end(HOST, 0)], vec![]) }]);
        s.now_ns = 11_000_000_000;
        assert_eq!(book.update(&s, TopSort::Masters).processes[0].masters_per_min, None);
    }
}
