//! Model tests: reconciliation with /proc: seeding, drift, and what it must not correct.

use super::*;

// ---------------------------------------------------------------------------------------------
// reconciliation

#[test]
fn reconcile_first_scan_seeds_without_drift() {
    let mut m = Model::new();
    m.add_session(SID, 1);
    m.add_process(ROOT, 1, SID, "bash", 1);
    assert!(m.take_needs_reconcile().contains(&ROOT));
    let mut o = obs(
        ROOT,
        100,
        &[
            (0, "/dev/pts/3", None),
            (1, "/dev/pts/3", None),
            (2, "/dev/pts/3", None),
            (5, "/dev/ptmx", Some(9)),
            (6, "pipe:[77]", None),
        ],
    );
    o.ppid = 50;
    o.comm = "zsh".into();
    let out = m.reconcile(&o);
    assert!(out.seeding);
    assert_eq!(out.added, vec![0, 1, 2, 5, 6]);
    assert_eq!(m.stats.drift, 0);
    assert_eq!(m.counts(ROOT), (5, 1, 3));
    let p = &m.procs[&ROOT];
    assert!(p.seeded);
    assert_eq!((p.ppid, p.comm.as_str()), (50, "zsh"));
    let t = m.table_of(ROOT).unwrap();
    assert_eq!(t.fds[&5].pty_index, Some(9));
    assert_eq!(t.fds[&0].pty_index, Some(3));
    assert!(t.fds[&6].from_proc);
    assert_eq!(t.fds[&6].kind, FdKind::Pipe);
    // The same scan again: nothing to do.
    let out = m.reconcile(&obs(
        ROOT,
        200,
        &[
            (0, "/dev/pts/3", None),
            (1, "/dev/pts/3", None),
            (2, "/dev/pts/3", None),
            (5, "/dev/ptmx", Some(9)),
            (6, "pipe:[77]", None),
        ],
    ));
    assert!(!out.seeding);
    assert_eq!(out.corrections(), 0);
    assert_eq!(m.stats.drift, 0);
}

#[test]
fn reconcile_counts_missing_and_extra_fds_as_drift() {
    let mut t = T::new();
    t.files(ROOT, &[3, 4], false);
    // /proc: 4 is gone (a missed close), 7 exists (a missed open).
    let seen = [(3, "/tmp/f3", None), (7, "/dev/ptmx", Some(2))];
    // The first scan only suspects: an event stamped before it may still be in flight.
    let first = t.m.reconcile(&obs(ROOT, t.ts + 50, &seen));
    assert_eq!((first.suspected, first.corrections()), (2, 0));
    assert_eq!(t.m.stats.drift, 0);
    assert_eq!(t.fds(ROOT), vec![3, 4]);
    let scan = t.ts + 100;
    let out = t.m.reconcile(&obs(ROOT, scan, &seen));
    assert_eq!(out.added, vec![7]);
    assert_eq!(out.removed, vec![4]);
    assert!(!out.seeding && !out.skipped_process);
    assert_eq!(t.m.stats.drift, 2);
    assert_eq!(t.m.stats.drift_by_cause.get("missing_fd"), Some(&1));
    assert_eq!(t.m.stats.drift_by_cause.get("extra_fd"), Some(&1));
    assert_eq!(t.fds(ROOT), vec![3, 7]);
    let e = t.e(ROOT, 7);
    assert_eq!(
        (e.kind, e.pty_index, e.from_proc),
        (FdKind::PtyMaster, Some(2), true)
    );
    assert_eq!(e.opened_ns, scan);
}

#[test]
fn reconcile_skips_fds_touched_during_the_scan() {
    let mut t = T::new();
    t.files(ROOT, &[3], false);
    let scan = t.ts + 5;
    // Events stamped after the scan began: the scan may or may not have seen them.
    t.open(ROOT, 4, "/tmp/new", 0); // opened at ts >= scan: /proc did not show it
    t.sys(ROOT, K::Close, 0, &[3]); // closed at ts >= scan: /proc still showed it
    let out = t.m.reconcile(&obs(ROOT, scan, &[(3, "/tmp/f3", None)]));
    assert_eq!(out.skipped, 2);
    assert_eq!(out.corrections(), 0);
    assert_eq!(t.m.stats.drift, 0);
    assert_eq!(t.fds(ROOT), vec![4]);
    // An fd changed exactly at scan start is skipped too.
    let at = t.ts + 10;
    t.open(ROOT, 5, "/tmp/at", 0);
    let out = t.m.reconcile(&obs(ROOT, at, &[(4, "/tmp/new", None)]));
    assert_eq!(out.skipped, 1);
    assert_eq!(t.m.stats.drift, 0);
    // Later scans that still disagree are drift (the first suspects, the second confirms).
    let later = t.ts + 100;
    let out = t.m.reconcile(&obs(ROOT, later, &[(4, "/tmp/new", None)]));
    assert_eq!((out.suspected, t.m.stats.drift), (1, 0));
    let out = t.m.reconcile(&obs(ROOT, later + 100, &[(4, "/tmp/new", None)]));
    assert_eq!(out.removed, vec![5]);
    assert_eq!(t.m.stats.drift, 1);
}

#[test]
fn reconcile_skips_a_table_changed_in_bulk_during_the_scan() {
    let mut t = T::new();
    t.files(ROOT, &[3, 4], true);
    let scan = t.ts + 5;
    t.exec(ROOT, ROOT, "/bin/sh");
    t.m.take_needs_reconcile();
    let out =
        t.m.reconcile(&obs(ROOT, scan, &[(3, "/tmp/f3", None), (9, "/x", None)]));
    assert!(out.skipped_process);
    assert_eq!(out.corrections(), 0);
    assert_eq!(t.m.stats.drift, 0);
    assert!(t.m.take_needs_reconcile().contains(&ROOT), "rescheduled");
    // close_range is a bulk change too.
    t.files(ROOT, &[3], false);
    let scan = t.ts + 5;
    t.sys(ROOT, K::CloseRange, 0, &[0, ALL, 0]);
    assert!(
        t.m.reconcile(&obs(ROOT, scan, &[(3, "/tmp/f3", None)]))
            .skipped_process
    );
    assert_eq!(t.m.stats.drift, 0);
}

#[test]
fn reconcile_skips_a_process_created_after_the_scan_started() {
    let mut t = T::new();
    let scan = t.ts + 5;
    t.fork(ROOT, 101, Some(SIGCHLD));
    let out = t.m.reconcile(&obs(101, scan, &[(3, "/x", None)]));
    assert!(out.skipped_process);
    assert_eq!(t.m.stats.drift, 0);
    // Unknown pid.
    assert!(t.m.reconcile(&obs(4242, scan, &[])).skipped_process);
}

#[test]
fn reconcile_corrects_pty_roles_and_indexes() {
    let mut t = T::new();
    // A master the classifier took for a file (no TIOCGPTN seen) and a slave with a wrong index.
    t.open(ROOT, 3, "/run/ptmx-alias", O_RDWR);
    t.open(ROOT, 4, "/dev/pts/4", O_RDWR);
    t.open(ROOT, 5, "/dev/null", O_RDWR);
    let seen = [(3, "/dev/ptmx", Some(8)), (4, "/dev/pts/5", None), (5, "/dev/null", None)];
    assert_eq!(t.m.reconcile(&obs(ROOT, t.ts + 50, &seen)).suspected, 2);
    let scan = t.ts + 100;
    let out = t.m.reconcile(&obs(ROOT, scan, &seen));
    assert_eq!(out.corrected, vec![3, 4]);
    assert_eq!(t.m.stats.drift, 2);
    // fd 3 had the wrong role, fd 4 the right role but the wrong index.
    assert_eq!(t.m.stats.drift_by_cause.get("pty_role"), Some(&1));
    assert_eq!(t.m.stats.drift_by_cause.get("pty_index"), Some(&1));
    let (m, s) = (t.e(ROOT, 3), t.e(ROOT, 4));
    assert_eq!(
        (m.kind, m.pty_index, m.target.as_str()),
        (FdKind::PtyMaster, Some(8), "/dev/ptmx")
    );
    assert_eq!((s.kind, s.pty_index), (FdKind::PtySlave, Some(5)));
    assert_eq!(t.m.counts(ROOT), (3, 1, 1));
    // Learning a master's index from fdinfo is enrichment, not a correction.
    t.open(ROOT, 6, "/dev/ptmx", O_RDWR);
    let scan = t.ts + 100;
    let out = t.m.reconcile(&obs(
        ROOT,
        scan,
        &[
            (3, "/dev/ptmx", Some(8)),
            (4, "/dev/pts/5", None),
            (5, "/dev/null", None),
            (6, "/dev/ptmx", Some(9)),
        ],
    ));
    assert_eq!(out.corrections(), 0);
    assert_eq!(t.e(ROOT, 6).pty_index, Some(9));
    assert_eq!(t.m.stats.drift, 2);
    // A directory stays a directory (/proc shows it as a path).
    t.open(ROOT, 7, "/etc", O_DIRECTORY);
    let scan = t.ts + 100;
    let mut fds: Vec<(i32, &str, Option<u32>)> = vec![
        (3, "/dev/ptmx", Some(8)),
        (4, "/dev/pts/5", None),
        (5, "/dev/null", None),
        (6, "/dev/ptmx", Some(9)),
    ];
    fds.push((7, "/etc", None));
    t.m.reconcile(&obs(ROOT, scan, &fds));
    assert_eq!(t.e(ROOT, 7).kind, FdKind::Directory);
}

#[test]
fn reconcile_of_a_shared_table_repairs_both_sharers() {
    let mut t = T::new();
    t.files(ROOT, &[3], false);
    t.fork(ROOT, 101, Some(CLONE_FILES));
    let scan = t.ts + 100;
    let o = [(3, "/tmp/f3", None), (4, "pipe:[1]", None)];
    assert_eq!(t.m.reconcile(&obs(101, scan - 50, &o)).suspected, 1);
    assert_eq!(t.m.reconcile(&obs(101, scan, &o)).added, vec![4]);
    assert_eq!(t.fds(ROOT), vec![3, 4]);
    assert_eq!(t.m.reconcile(&obs(ROOT, scan, &o)).corrections(), 0);
    assert_eq!(t.m.stats.drift, 1);
}

#[test]
fn vanished_and_discovered_processes_are_drift() {
    let mut t = T::new();
    t.fork(ROOT, 101, Some(SIGCHLD));
    // Seen gone at one scan: only suspected; a scan that sees it again clears the suspicion.
    assert!(!t.m.process_vanished(101, 990));
    assert!(t.m.procs.contains_key(&101));
    t.m.reconcile(&obs(101, 995, &[]));
    assert!(!t.m.process_vanished(101, 997), "suspicion was cleared by the scan");
    assert!(t.m.process_vanished(101, 999), "gone at two scans");
    assert!(!t.m.procs.contains_key(&101));
    assert!(!t.m.process_vanished(101, 1001));
    assert_eq!(t.m.stats.drift_by_cause.get("vanished_process"), Some(&1));
    assert!(!t.m.process_discovered(102, ROOT, "cat", 999), "first sighting is a suspicion");
    assert!(t.m.process_discovered(102, ROOT, "cat", 1000));
    assert!(
        !t.m.process_discovered(102, ROOT, "cat", 1000),
        "already known"
    );
    assert!(
        !t.m.process_discovered(103, 4242, "cat", 1000),
        "parent outside the model"
    );
    assert_eq!(t.m.stats.drift_by_cause.get("missing_process"), Some(&1));
    assert_eq!(t.m.procs[&102].session, SID);
    assert_eq!(t.m.stats.drift, 2);
}

#[test]
fn missed_close_is_drift() {
    let mut t = T::new();
    t.open(ROOT, 3, "/tmp/a", 0);
    // The kernel returned 3 again: the close of 3 was lost.
    t.open(ROOT, 3, "/tmp/b", 0);
    assert_eq!(t.m.stats.drift_by_cause.get("missed_close"), Some(&1));
    assert_eq!(t.e(ROOT, 3).target, "/tmp/b");
}

#[test]
fn reconcile_keeps_a_directory_under_dev_usable_as_a_dirfd() {
    let mut t = T::new();
    t.open(ROOT, 3, "/dev/pts", O_DIRECTORY);
    // /proc shows a directory's link as its path, which classifies as a device under /dev.
    let scan = t.ts + 100;
    let out = t.m.reconcile(&obs(ROOT, scan, &[(3, "/dev/pts", None)]));
    assert_eq!(out.corrections(), 0);
    assert_eq!(t.e(ROOT, 3).kind, FdKind::Directory);
    t.ts = scan + 10;
    t.open_kind(ROOT, K::OpenAt, 4, 3, "5", O_RDWR);
    let s = t.e(ROOT, 4);
    assert_eq!((s.kind, s.pty_index), (FdKind::PtySlave, Some(5)));
    // A genuine device found by /proc where the model had a plain file is still reclassified.
    t.open(ROOT, 5, "/tmp/x", 0);
    let scan = t.ts + 100;
    t.m.reconcile(&obs(
        ROOT,
        scan,
        &[
            (3, "/dev/pts", None),
            (4, "/dev/pts/5", None),
            (5, "/dev/null", None),
        ],
    ));
    assert_eq!(t.e(ROOT, 5).kind, FdKind::CharDevice);
    assert_eq!(t.m.stats.drift, 0);
}

/// Found by the randomized end-to-end test: an unseeded process changes the close-on-exec flag
/// of an fd it inherited, and that event reaches the model after the scan that will seed the
/// process started but before the seed is applied. The fd was skipped by the seed (an event
/// touched it after the scan) and never installed by the event (the model did not know it):
/// lost, and a child forked afterwards inherited the hole.
#[test]
fn attribute_change_on_an_unseeded_fd_during_the_seed_scan_keeps_the_fd() {
    let mut m = Model::new();
    m.add_session(SID, 1);
    m.add_process(ROOT, 1, SID, "workload", 1);
    m.take_needs_reconcile();
    let h = |ts_ns| Header {
        tgid: ROOT,
        tid: ROOT,
        session: SID,
        ts_ns,
    };
    let sys = |kind, ret, a: [u64; 6], aux| Event::Syscall {
        h: h(0),
        kind,
        ret,
        args: a,
        aux,
        user_flags: 0,
    };
    // Scan starts at 100 and sees 0, 10 (a /dev/null fd without close-on-exec) and 11 (a PTY
    // master whose index /proc could not give). Before the seed is applied, events stamped
    // after the scan start set close-on-exec on 10 and ask 11 for its index.
    let mut setfd = sys(K::Fcntl, 0, [10, F_SETFD, FD_CLOEXEC, 0, 0, 0], [-1, -1]);
    if let Event::Syscall { h, .. } = &mut setfd {
        h.ts_ns = 150;
    }
    m.apply(&setfd);
    let mut ptn = sys(K::Ioctl, 0, [11, TIOCGPTN, 0, 0, 0, 0], [7, -1]);
    if let Event::Syscall { h, .. } = &mut ptn {
        h.ts_ns = 160;
    }
    m.apply(&ptn);
    let mut o = obs(
        ROOT,
        100,
        &[
            (0, "/dev/null", None),
            (10, "/dev/null", None),
            (11, "/dev/ptmx", None),
        ],
    );
    o.fds.get_mut(&10).unwrap().cloexec = Some(false);
    let out = m.reconcile(&o);
    assert!(out.seeding);
    let t = m.table_of(ROOT).unwrap();
    assert_eq!(t.fds.keys().copied().collect::<Vec<_>>(), vec![0, 10, 11]);
    assert!(
        t.fds[&10].cloexec,
        "the event's flag wins over the older scan's"
    );
    assert_eq!(
        (t.fds[&11].kind, t.fds[&11].pty_index),
        (FdKind::PtyMaster, Some(7))
    );
    // A later scan agrees with the model: nothing to correct.
    let mut o = obs(
        ROOT,
        300,
        &[
            (0, "/dev/null", None),
            (10, "/dev/null", None),
            (11, "/dev/ptmx", Some(7)),
        ],
    );
    o.fds.get_mut(&10).unwrap().cloexec = Some(true);
    for _ in 0..2 {
        m.reconcile(&o);
    }
    assert_eq!(m.stats.drift, 0);
    // And a fork copies the whole table.
    m.apply(&Event::Fork {
        h: h(400),
        child: 101,
        clone_flags: Some(SIGCHLD),
    });
    assert_eq!(
        m.table_of(101)
            .unwrap()
            .fds
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![0, 10, 11]
    );
}

/// The amendment only applies to an fd the scan saw: an attribute change to an fd that is not
/// there (it was closed and the close is still on its way) installs nothing.
#[test]
fn attribute_change_on_an_fd_the_seed_scan_did_not_see_installs_nothing() {
    let mut m = Model::new();
    m.add_session(SID, 1);
    m.add_process(ROOT, 1, SID, "workload", 1);
    m.take_needs_reconcile();
    m.apply(&Event::Syscall {
        h: Header {
            tgid: ROOT,
            tid: ROOT,
            session: SID,
            ts_ns: 150,
        },
        kind: K::Fcntl,
        ret: 0,
        args: [12, F_SETFD, FD_CLOEXEC, 0, 0, 0],
        aux: [-1, -1],
        user_flags: 0,
    });
    let out = m.reconcile(&obs(ROOT, 100, &[(0, "/dev/null", None)]));
    assert!(out.seeding);
    assert_eq!(
        m.table_of(ROOT)
            .unwrap()
            .fds
            .keys()
            .copied()
            .collect::<Vec<_>>(),
        vec![0]
    );
    assert!(
        m.table_of(ROOT).unwrap().amends.is_empty(),
        "amendments end with the seed"
    );
}

/// Found by the asciinema corpus test under `attach` (about one run in eight): bash, found at
/// attach, runs `read < fifo` while the scan that will seed it is under way. It saves its stdin
/// (the PTY slave) with `fcntl(0, F_DUPFD, 10) = 11`, reads, restores it with `dup2(11, 0)` and
/// closes 11; all those events are stamped after the scan started, so the seed leaves fds 0 and
/// 11 to them, and they copy an fd 0 the model did not know yet: `Unknown`. The next time bash
/// saves its stdin, fd 11 is an `Unknown` copy too, while /proc shows a slave. An `Unknown`
/// entry makes no claim on what the fd is: /proc naming it is enrichment, not a correction.
#[test]
fn an_fd_the_model_could_not_know_is_filled_in_from_proc_without_drift() {
    let mut m = Model::new();
    m.add_session(SID, 1);
    m.add_process(ROOT, 1, SID, "bash", 1);
    m.take_needs_reconcile();
    let sys = |ts_ns, kind, ret, a: [u64; 6]| Event::Syscall {
        h: Header { tgid: ROOT, tid: ROOT, session: SID, ts_ns },
        kind,
        ret,
        args: a,
        aux: [-1, -1],
        user_flags: 0,
    };
    const F_DUPFD: u64 = 0;
    // The scan starts at 100; bash's `read < fifo` runs from 110 to 150.
    m.apply(&Event::Open { h: Header { tgid: ROOT, tid: ROOT, session: SID, ts_ns: 110 }, kind: K::OpenAt, ret: 3, dirfd: -100, flags: 0, path: "/tmp/go.fifo".into(), devpts: None });
    m.apply(&sys(120, K::Fcntl, 11, [0, F_DUPFD, 10, 0, 0, 0]));
    m.apply(&sys(125, K::Dup2, 0, [3, 0, 0, 0, 0, 0]));
    m.apply(&sys(130, K::Close, 0, [3, 0, 0, 0, 0, 0]));
    m.apply(&sys(140, K::Dup2, 0, [11, 0, 0, 0, 0, 0]));
    m.apply(&sys(150, K::Close, 0, [11, 0, 0, 0, 0, 0]));
    // The scan read fd 0 while it was the fifo.
    let out = m.reconcile(&obs(ROOT, 100, &[(0, "/tmp/go.fifo", None), (1, "/dev/pts/3", None), (2, "/dev/pts/3", None)]));
    assert!(out.seeding);
    assert_eq!(m.table_of(ROOT).unwrap().fds[&0].kind, FdKind::Unknown, "neither the scan nor the events could say");
    // Later, quiet: /proc names fd 0 (the slave again), in one scan, without drift.
    let out = m.reconcile(&obs(ROOT, 300, &[(0, "/dev/pts/3", None), (1, "/dev/pts/3", None), (2, "/dev/pts/3", None)]));
    let e = &m.table_of(ROOT).unwrap().fds[&0];
    assert_eq!((e.kind, e.pty_index), (FdKind::PtySlave, Some(3)));
    assert_eq!((out.corrections(), out.suspected, m.stats.drift), (0, 0, 0));
    // A copy made before that scan: the same, once /proc shows it.
    m.apply(&sys(400, K::Fcntl, 11, [0, F_DUPFD, 10, 0, 0, 0]));
    assert_eq!(m.table_of(ROOT).unwrap().fds[&11].kind, FdKind::PtySlave);
    // A claim that is wrong is still drift: fd 1 said to be a file, /proc says slave, twice.
    m.table_mut(ROOT).unwrap().fds.get_mut(&1).unwrap().kind = FdKind::File;
    m.reconcile(&obs(ROOT, 500, &[(0, "/dev/pts/3", None), (1, "/dev/pts/3", None), (2, "/dev/pts/3", None), (11, "/dev/pts/3", None)]));
    m.reconcile(&obs(ROOT, 600, &[(0, "/dev/pts/3", None), (1, "/dev/pts/3", None), (2, "/dev/pts/3", None), (11, "/dev/pts/3", None)]));
    assert_eq!(m.stats.drift, 1);
}
