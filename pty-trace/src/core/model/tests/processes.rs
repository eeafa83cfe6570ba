//! Model tests: fork, clone, threads, unshare, exec, exit, and processes the model did not know.

use super::*;

// ---------------------------------------------------------------------------------------------
// fork, clone, threads, unshare

#[test]
fn fork_copies_the_table() {
    let mut t = T::new();
    t.files(ROOT, &[0, 1, 2], false);
    t.open(ROOT, 3, "/dev/ptmx", O_RDWR);
    t.fork(ROOT, 101, Some(SIGCHLD));
    let c = &t.m.procs[&101];
    assert_eq!((c.ppid, c.session, c.seeded), (ROOT, SID, true));
    assert_eq!(t.m.sessions[&SID].processes_seen, 2);
    assert_ne!(t.table_id(ROOT), t.table_id(101));
    assert_eq!(t.fds(101), vec![0, 1, 2, 3]);
    // Independent afterwards.
    t.sys(101, K::Close, 0, &[3]);
    t.open(ROOT, 4, "/tmp/x", 0);
    assert_eq!(t.fds(ROOT), vec![0, 1, 2, 3, 4]);
    assert_eq!(t.fds(101), vec![0, 1, 2]);
    // Unknown clone flags (clone entered before tracing): a copy, like fork.
    t.fork(ROOT, 102, None);
    assert_ne!(t.table_id(ROOT), t.table_id(102));
    assert_eq!(t.fds(102), vec![0, 1, 2, 3, 4]);
    // A second fork event for a known child is ignored.
    t.fork(ROOT, 101, Some(SIGCHLD));
    assert_eq!(t.fds(101), vec![0, 1, 2]);
    assert_eq!(t.m.stats.drift, 0);
}

#[test]
fn fork_of_an_unseeded_parent_schedules_the_child_for_a_scan() {
    let mut m = Model::new();
    m.add_session(SID, 1);
    m.add_process(ROOT, 1, SID, "bash", 1);
    m.take_needs_reconcile();
    m.apply(&Event::Fork {
        h: Header {
            tgid: ROOT,
            tid: ROOT,
            session: SID,
            ts_ns: 5,
        },
        child: 101,
        clone_flags: Some(SIGCHLD),
    });
    assert!(!m.procs[&101].seeded);
    assert!(m.take_needs_reconcile().contains(&101));
}

#[test]
fn clone_files_shares_the_table_until_exec() {
    let mut t = T::new();
    t.files(ROOT, &[0, 1, 2], false);
    t.open(ROOT, 3, "/tmp/ce", O_CLOEXEC);
    t.fork(ROOT, 101, Some(CLONE_VM | CLONE_FILES | SIGCHLD));
    assert_eq!(t.table_id(ROOT), t.table_id(101));
    assert_eq!(t.m.tables[&t.table_id(ROOT)].refs, 2);
    // Changes by either are seen by both.
    t.open(101, 4, "/dev/ptmx", O_RDWR);
    t.sys(ROOT, K::Close, 0, &[0]);
    assert_eq!(t.fds(ROOT), vec![1, 2, 3, 4]);
    assert_eq!(t.fds(101), vec![1, 2, 3, 4]);
    assert_eq!(t.m.counts(ROOT), t.m.counts(101));

    // A third sharer exits: the table stays for the others.
    t.fork(ROOT, 102, Some(CLONE_FILES));
    assert_eq!(t.m.tables[&t.table_id(ROOT)].refs, 3);
    t.exit(102);
    assert_eq!(t.m.tables[&t.table_id(ROOT)].refs, 2);
    assert_eq!(t.fds(101), vec![1, 2, 3, 4]);

    // exec unshares first, then drops cloexec fds in the private copy only.
    t.exec(101, 101, "/bin/sh");
    assert_ne!(t.table_id(ROOT), t.table_id(101));
    assert_eq!(t.fds(101), vec![1, 2, 4]);
    assert_eq!(t.fds(ROOT), vec![1, 2, 3, 4]);
    assert_eq!(t.m.tables[&t.table_id(ROOT)].refs, 1);
    t.sys(101, K::Close, 0, &[4]);
    assert_eq!(t.fds(ROOT), vec![1, 2, 3, 4]);

    // Exit of the last user of a table frees it.
    let id = t.table_id(101);
    t.exit(101);
    assert!(!t.m.tables.contains_key(&id));
    assert_eq!(t.m.stats.drift, 0);
}

#[test]
fn exit_of_a_sharer_keeps_the_table_for_the_other() {
    let mut t = T::new();
    t.files(ROOT, &[3, 4], false);
    t.fork(ROOT, 101, Some(CLONE_FILES));
    let id = t.table_id(ROOT);
    t.exit(ROOT);
    assert!(t.m.tables.contains_key(&id));
    assert_eq!(t.fds(101), vec![3, 4]);
    assert_eq!(t.m.tables[&id].refs, 1);
}

#[test]
fn clone_thread_creates_no_process() {
    let mut t = T::new();
    t.files(ROOT, &[3], false);
    t.fork(ROOT, 150, Some(CLONE_VM | CLONE_FILES | CLONE_THREAD));
    assert!(!t.m.procs.contains_key(&150));
    assert_eq!(t.m.procs.len(), 1);
    assert_eq!(t.m.sessions[&SID].processes_seen, 1);
    // The thread's syscalls land in its process's table.
    let h = t.hdr(ROOT, 150);
    t.m.apply(&Event::Open {
        h,
        kind: K::OpenAt,
        ret: 4,
        dirfd: AT_FDCWD,
        flags: 0,
        path: "/dev/ptmx".into(),
        devpts: None,
    });
    assert_eq!(t.m.counts(ROOT), (2, 1, 0));
    assert_eq!(t.m.stats.drift, 0, "a thread's events are its process's, not an unknown process's");
}

#[test]
fn unshare_files_syscall() {
    let mut t = T::new();
    t.files(ROOT, &[3], false);
    t.fork(ROOT, 101, Some(CLONE_FILES));
    t.sys(101, K::Unshare, neg(EINVAL), &[CLONE_FILES]);
    assert_eq!(t.table_id(ROOT), t.table_id(101));
    t.sys(101, K::Unshare, 0, &[CLONE_FILES]);
    assert_ne!(t.table_id(ROOT), t.table_id(101));
    t.open(101, 4, "/tmp/x", 0);
    assert_eq!(t.fds(ROOT), vec![3]);
    assert_eq!(t.fds(101), vec![3, 4]);
}

#[test]
fn clone_pidfd_lands_in_the_parent_only() {
    let mut t = T::new();
    t.files(ROOT, &[0, 1, 2], false);
    t.fork(ROOT, 101, Some(CLONE_PIDFD | SIGCHLD));
    t.sys_aux(ROOT, K::Clone, 101, &[CLONE_PIDFD | SIGCHLD], [3, -1]);
    assert_eq!(t.fds(ROOT), vec![0, 1, 2, 3]);
    assert!(t.e(ROOT, 3).cloexec);
    assert_eq!(t.fds(101), vec![0, 1, 2]);
    // Without CLONE_PIDFD aux means nothing.
    t.fork(ROOT, 102, Some(SIGCHLD));
    t.sys_aux(ROOT, K::Clone, 102, &[SIGCHLD], [4, -1]);
    assert_eq!(t.fds(ROOT), vec![0, 1, 2, 3]);
}

// ---------------------------------------------------------------------------------------------
// exec

#[test]
fn exec_drops_cloexec_fds_and_records_the_command() {
    let mut t = T::new();
    t.files(ROOT, &[0, 1, 2], false);
    t.open(ROOT, 3, "/dev/ptmx", O_RDWR | O_CLOEXEC);
    t.open(ROOT, 4, "/dev/ptmx", O_RDWR);
    // argv captured at entry by a non-leader thread (tid 150), exec completes as the leader.
    t.argv(
        ROOT,
        150,
        &["gh", "--token", "s3cr3t", "API_KEY=abc", "repo"],
    );
    t.exec(ROOT, 150, "/usr/bin/gh");
    assert_eq!(t.fds(ROOT), vec![0, 1, 2, 4]);
    assert_eq!(t.m.counts(ROOT), (4, 1, 0));
    let p = &t.m.procs[&ROOT];
    assert_eq!(p.comm, "gh");
    let id = p.command.expect("a command");
    let c = t.m.command(id).unwrap();
    assert_eq!(
        c.argv,
        vec!["gh", "--token", "<redacted>", "API_KEY=<redacted>", "repo"]
    );
    assert_eq!(
        (c.pid, c.session, c.filename.as_str()),
        (ROOT, SID, "/usr/bin/gh")
    );
    assert!(!c.truncated);
    assert!(t.m.sessions[&SID].commands.is_empty(), "the root's own exec is the session, not one of its commands");
    assert_eq!(t.m.sessions[&SID].execs, 1, "exec {id} counted in the session");
    assert!(t.m.pending_argv.is_empty());
    assert!(t.m.take_needs_reconcile().contains(&ROOT));
    // fds opened afterwards belong to the new command; inherited ones keep theirs.
    t.open(ROOT, 5, "/tmp/new", 0);
    assert_eq!(t.e(ROOT, 5).command, Some(id));
    assert_eq!(t.e(ROOT, 4).command, None);
    // Children inherit the running command.
    t.fork(ROOT, 101, Some(SIGCHLD));
    assert_eq!(t.m.procs[&101].command, Some(id));
}

#[test]
fn exec_argv_of_the_leader_and_truncation() {
    let mut t = T::new();
    let h = t.hdr(ROOT, ROOT);
    t.m.apply(&Event::ExecArgv {
        h,
        argv: vec!["ls".into(), "-la".into()],
        truncated: true,
    });
    t.exec(ROOT, ROOT, "/bin/ls");
    let c = t.m.commands.last().unwrap();
    assert_eq!(c.argv, vec!["ls", "-la"]);
    assert!(c.truncated);
    // A very long command name is cut to 15 bytes like the kernel's comm.
    t.exec(ROOT, ROOT, "/opt/a-very-long-program-name");
    assert_eq!(t.m.procs[&ROOT].comm, "a-very-long-pro");
}

#[test]
fn exec_without_argv_uses_the_filename() {
    let mut t = T::new();
    t.exec(ROOT, ROOT, "/bin/true");
    assert_eq!(t.m.commands[0].argv, vec!["/bin/true"]);
}

#[test]
fn argv_waits_for_its_own_process_exec() {
    // Another CPU's records can come between a process's ExecArgv and its Exec.
    let mut t = T::new();
    t.fork(ROOT, 101, Some(SIGCHLD));
    t.argv(ROOT, ROOT, &["/bin/echo", "root"]);
    t.argv(101, 101, &["/bin/echo", "child"]);
    t.exec(101, 101, "/bin/echo");
    t.exec(ROOT, ROOT, "/bin/echo");
    let argv: Vec<_> = t.m.commands.iter().map(|c| (c.pid, c.argv[1].clone())).collect();
    assert_eq!(argv, vec![(101, "child".to_string()), (ROOT, "root".to_string())]);
    assert!(t.m.pending_argv.is_empty());
    // An argv whose Exec was lost goes with its process.
    t.argv(101, 101, &["/bin/lost"]);
    t.exit(101);
    assert!(t.m.pending_argv.is_empty());
}

// ---------------------------------------------------------------------------------------------
// exit, unknown processes

#[test]
fn exit_removes_the_process_and_the_root_ends_the_session() {
    let mut t = T::new();
    t.files(ROOT, &[0, 1, 2], false);
    t.fork(ROOT, 101, Some(SIGCHLD));
    t.argv(101, 101, &["sleep", "1"]);
    t.exit(101);
    assert!(!t.m.procs.contains_key(&101));
    assert!(
        t.m.pending_argv.is_empty(),
        "argv of a dead thread is dropped"
    );
    assert_eq!(t.m.counts(101), (0, 0, 0));
    assert_eq!(
        t.m.sessions[&SID].ended_ns, None,
        "a child exit does not end the session"
    );
    let end = t.ts + 10;
    t.exit(ROOT);
    assert!(t.m.procs.is_empty());
    assert_eq!(t.m.sessions[&SID].ended_ns, Some(end));
    assert_eq!(t.m.tables.len(), 0);
    // A second exit event is harmless.
    t.exit(ROOT);
    assert!(t.m.procs.is_empty());
    assert_eq!(t.m.sessions[&SID].ended_ns, Some(end));
}

#[test]
fn events_from_an_unknown_process_of_a_known_session_create_it_as_drift() {
    let mut t = T::new();
    t.open(555, 3, "/dev/ptmx", O_RDWR);
    assert_eq!(t.m.stats.drift, 1);
    assert_eq!(t.m.stats.drift_by_cause.get("unknown_process"), Some(&1));
    let p = &t.m.procs[&555];
    assert_eq!((p.session, p.seeded), (SID, true));
    assert_eq!(t.m.counts(555), (1, 1, 0));
    assert!(t.m.take_needs_reconcile().contains(&555));
    // A fork from an unknown parent creates the parent too.
    t.fork(556, 557, Some(SIGCHLD));
    assert!(t.m.procs.contains_key(&556) && t.m.procs.contains_key(&557));
    assert_eq!(t.m.stats.drift_by_cause.get("unknown_process"), Some(&2));
    // An unknown process of an unknown session is ignored.
    let h = Header {
        tgid: 900,
        tid: 900,
        session: 42,
        ts_ns: 1000,
    };
    t.m.apply(&Event::Open {
        h,
        kind: K::OpenAt,
        ret: 3,
        dirfd: AT_FDCWD,
        flags: 0,
        path: "/dev/ptmx".into(),
        devpts: None,
    });
    t.m.apply(&Event::Exec {
        h,
        old_tid: 900,
        filename: "/bin/x".into(),
    });
    t.m.apply(&Event::Exit { h });
    assert!(!t.m.procs.contains_key(&900));
    assert_eq!(t.m.stats.drift_by_cause.get("unknown_process"), Some(&2));
    // A failed open from an unknown process creates nothing.
    t.open_kind(777, K::OpenAt, neg(ENOENT), AT_FDCWD, "/x", 0);
    assert!(!t.m.procs.contains_key(&777));
}

// ---------------------------------------------------------------------------------------------
// PTY registry

#[test]
fn pty_registry_orphan_detection() {
    let mut t = T::new();
    // Another session whose process holds a slave.
    t.m.add_session(200, 1);
    t.m.add_process(200, 1, 200, "zsh", 1);
    t.m.procs.get_mut(&200).unwrap().seeded = true;

    let ptm = |t: &mut T, pid: u32, fd: i32, idx: i32| {
        t.open(pid, fd, "/dev/ptmx", O_RDWR);
        t.sys_aux(pid, K::Ioctl, 0, &[fd as u64, TIOCGPTN], [idx, -1]);
    };
    // 5: master in the session, slave nowhere: orphaned.
    ptm(&mut t, ROOT, 3, 5);
    // 6: slave held by another modelled process (in another session): not orphaned.
    ptm(&mut t, ROOT, 4, 6);
    let h = Header {
        tgid: 200,
        tid: 200,
        session: 200,
        ts_ns: 500,
    };
    t.m.apply(&Event::Open {
        h,
        kind: K::OpenAt,
        ret: 3,
        dirfd: AT_FDCWD,
        flags: 0,
        path: "/dev/pts/6".into(),
        devpts: None,
    });
    // 7: slave held outside the model: not orphaned.
    ptm(&mut t, ROOT, 5, 7);
    // 8: master and slave in the same process (via TIOCGPTPEER): not orphaned.
    ptm(&mut t, ROOT, 6, 8);
    t.sys(ROOT, K::Ioctl, 7, &[6, TIOCGPTPEER, O_RDWR]);
    // A master of unknown index: listed on its own, never judged.
    t.open(ROOT, 8, "/dev/ptmx", O_RDWR);

    let outside = BTreeSet::from([(None, 7)]);
    let reg = t.m.pty_registry(SID, &outside);
    let by = |i: Option<u32>| reg.iter().find(|p| p.index == i).unwrap();
    let p5 = by(Some(5));
    assert!(p5.orphaned);
    assert_eq!(p5.masters, vec![pty::Holder { pid: ROOT, fd: 3 }]);
    assert!(p5.slaves.is_empty());
    let p6 = by(Some(6));
    assert!(!p6.orphaned);
    assert_eq!(p6.slaves, vec![pty::Holder { pid: 200, fd: 3 }]);
    let p7 = by(Some(7));
    assert!(!p7.orphaned && p7.slave_held_outside);
    let p8 = by(Some(8));
    assert!(!p8.orphaned);
    assert_eq!(p8.slaves, vec![pty::Holder { pid: ROOT, fd: 7 }]);
    let unknown = by(None);
    assert!(!unknown.orphaned);
    assert_eq!(unknown.masters, vec![pty::Holder { pid: ROOT, fd: 8 }]);
    assert_eq!(reg.len(), 5);
    assert_eq!(reg.iter().filter(|p| p.orphaned).count(), 1);
    assert_eq!(t.m.master_slots(SID), BTreeSet::from([(None, 5), (None, 6), (None, 7), (None, 8)]));

    // Session 200 sees only the PTY its process holds the slave of (no masters: no orphan).
    let reg200 = t.m.pty_registry(200, &BTreeSet::new());
    assert_eq!(reg200.len(), 1);
    assert_eq!(reg200[0].index, Some(6));
    assert!(!reg200[0].orphaned);

    // When the slave holder exits, PTY 6 becomes orphaned.
    let h = Header {
        tgid: 200,
        tid: 200,
        session: 200,
        ts_ns: 5000,
    };
    t.m.apply(&Event::Exit { h });
    let reg = t.m.pty_registry(SID, &outside);
    assert!(reg.iter().find(|p| p.index == Some(6)).unwrap().orphaned);
    // Without the outside holder, 7 is orphaned too.
    let reg = t.m.pty_registry(SID, &BTreeSet::new());
    assert_eq!(reg.iter().filter(|p| p.orphaned).count(), 3);
}

#[test]
fn set_pty_index_enriches_masters_only() {
    let mut t = T::new();
    t.open(ROOT, 3, "/dev/ptmx", O_RDWR);
    t.open(ROOT, 4, "/tmp/x", 0);
    t.m.set_pty_index(ROOT, 3, 11);
    t.m.set_pty_index(ROOT, 4, 12);
    t.m.set_pty_index(ROOT, 9, 13);
    assert_eq!(t.e(ROOT, 3).pty_index, Some(11));
    assert_eq!(t.e(ROOT, 4).pty_index, None);
    assert_eq!(t.m.stats.drift, 0);
}
