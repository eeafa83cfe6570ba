//! Model tests: open, close, close_range, dup, fcntl: one fd at a time.

use super::*;

// ---------------------------------------------------------------------------------------------
// open family

#[test]
fn open_openat_openat2_creat_classify_and_record_provenance() {
    let mut t = T::new();
    t.open_kind(ROOT, K::Open, 3, AT_FDCWD, "/dev/ptmx", O_RDWR);
    t.open_kind(
        ROOT,
        K::OpenAt,
        4,
        AT_FDCWD,
        "/dev/pts/4",
        O_RDWR | O_CLOEXEC,
    );
    t.open_kind(
        ROOT,
        K::OpenAt2,
        5,
        AT_FDCWD,
        "/etc",
        O_DIRECTORY | O_CLOEXEC,
    );
    t.open_kind(ROOT, K::Creat, 6, AT_FDCWD, "/tmp/out.txt", 0o1101);
    t.open_kind(ROOT, K::OpenAt, 7, AT_FDCWD, "/dev/null", 0);

    let m3 = t.e(ROOT, 3);
    assert_eq!(
        (m3.kind, m3.pty_index, m3.cloexec),
        (FdKind::PtyMaster, None, false)
    );
    assert_eq!(m3.target, "/dev/ptmx");
    assert_eq!(m3.opener_pid, ROOT);
    assert_eq!(m3.opened_ns, 20);
    assert!(!m3.from_proc);
    let s4 = t.e(ROOT, 4);
    assert_eq!(
        (s4.kind, s4.pty_index, s4.cloexec),
        (FdKind::PtySlave, Some(4), true)
    );
    let d5 = t.e(ROOT, 5);
    assert_eq!((d5.kind, d5.cloexec), (FdKind::Directory, true));
    let f6 = t.e(ROOT, 6);
    assert_eq!((f6.kind, f6.cloexec), (FdKind::File, false));
    assert_eq!(t.e(ROOT, 7).kind, FdKind::CharDevice);
    assert_eq!(t.m.counts(ROOT), (5, 1, 1));
    assert_eq!(t.m.stats.events, 5);
    assert_eq!(t.m.stats.drift, 0);
}

#[test]
fn failed_open_changes_nothing() {
    let mut t = T::new();
    t.open_kind(ROOT, K::OpenAt, neg(ENOENT), AT_FDCWD, "/nope", 0);
    t.open_kind(ROOT, K::OpenAt, neg(EBADF), 42, "rel", 0);
    assert!(t.fds(ROOT).is_empty());
    assert_eq!(t.m.stats.drift, 0);
}

#[test]
fn openat_relative_to_a_directory_fd_is_resolved() {
    let mut t = T::new();
    t.open(ROOT, 3, "/dev/pts/", O_DIRECTORY);
    t.open(ROOT, 4, "/tmp/plain", 0);
    // openat(3, "7") is /dev/pts/7; openat(3, "ptmx") is the multiplexer.
    t.open_kind(ROOT, K::OpenAt, 5, 3, "7", O_RDWR);
    t.open_kind(ROOT, K::OpenAt2, 6, 3, "ptmx", O_RDWR | O_CLOEXEC);
    // Relative to a non-directory or to AT_FDCWD: kept as given.
    t.open_kind(ROOT, K::OpenAt, 7, 4, "x", 0);
    t.open_kind(ROOT, K::OpenAt, 8, AT_FDCWD, "rel.txt", 0);
    // An absolute path ignores dirfd.
    t.open_kind(ROOT, K::OpenAt, 9, 3, "/etc/passwd", 0);

    assert_eq!(t.e(ROOT, 3).kind, FdKind::Directory);
    let s = t.e(ROOT, 5);
    assert_eq!(
        (s.kind, s.pty_index, s.target.as_str()),
        (FdKind::PtySlave, Some(7), "/dev/pts/7")
    );
    let m = t.e(ROOT, 6);
    assert_eq!(
        (m.kind, m.cloexec, m.target.as_str()),
        (FdKind::PtyMaster, true, "/dev/pts/ptmx")
    );
    assert_eq!(t.e(ROOT, 7).target, "x");
    assert_eq!(t.e(ROOT, 8).target, "rel.txt");
    assert_eq!(t.e(ROOT, 9).target, "/etc/passwd");
    assert_eq!(t.m.counts(ROOT), (7, 1, 1));
}

// ---------------------------------------------------------------------------------------------
// close, close_range

#[test]
fn close_success_eintr_and_ebadf() {
    let mut t = T::new();
    t.files(ROOT, &[3, 4, 5], false);
    t.sys(ROOT, K::Close, 0, &[3]);
    assert_eq!(t.fds(ROOT), vec![4, 5]);
    // EINTR (and EIO): the fd is released anyway.
    t.sys(ROOT, K::Close, neg(EINTR), &[4]);
    assert_eq!(t.fds(ROOT), vec![5]);
    // EBADF: the kernel changed nothing, neither does the model.
    t.sys(ROOT, K::Close, neg(EBADF), &[5]);
    assert_eq!(t.fds(ROOT), vec![5]);
    // Closing an fd the model does not know is harmless.
    t.sys(ROOT, K::Close, 0, &[77]);
    assert_eq!(t.fds(ROOT), vec![5]);
    assert_eq!(t.m.stats.drift, 0);
}

#[test]
fn close_range_plain() {
    let mut t = T::new();
    t.files(ROOT, &[0, 1, 2, 3, 4, 5, 6, 7, 8], false);
    t.sys(ROOT, K::CloseRange, 0, &[4, 6, 0]);
    assert_eq!(t.fds(ROOT), vec![0, 1, 2, 3, 7, 8]);
    // A failed close_range (EINVAL: first > last) changes nothing.
    t.sys(ROOT, K::CloseRange, neg(EINVAL), &[8, 3, 0]);
    assert_eq!(t.fds(ROOT), vec![0, 1, 2, 3, 7, 8]);
    t.sys(ROOT, K::CloseRange, 0, &[3, ALL, 0]);
    assert_eq!(t.fds(ROOT), vec![0, 1, 2]);
    let ts = t.ts;
    assert_eq!(t.m.table_of(ROOT).unwrap().bulk_touched, ts);
}

#[test]
fn close_range_reported_at_entry_checks_its_arguments() {
    // The kernel reports close_range when entered, with ret 0: what its own checks would
    // refuse (EINVAL) must change nothing.
    let mut t = T::new();
    t.files(ROOT, &[0, 1, 2, 3, 4, 5], false);
    t.sys(ROOT, K::CloseRange, 0, &[1_000_000, 3, 0]);
    t.sys(ROOT, K::CloseRange, 0, &[3, ALL, 1 << 7]);
    assert_eq!(t.fds(ROOT), vec![0, 1, 2, 3, 4, 5]);
    t.sys(ROOT, K::CloseRange, 0, &[4, 4, 0]);
    assert_eq!(t.fds(ROOT), vec![0, 1, 2, 3, 5]);
    assert_eq!(t.m.stats.drift, 0);
}

#[test]
fn a_number_closed_on_one_thread_and_reused_on_another() {
    // Threads 150 and 151 share ROOT's table. Thread 150's close(5) arrives when entered,
    // before thread 151's open that got 5 returns: the new fd is kept, nothing was missed.
    let mut t = T::new();
    t.fork(ROOT, 150, Some(CLONE_VM | CLONE_FILES | CLONE_THREAD));
    t.fork(ROOT, 151, Some(CLONE_VM | CLONE_FILES | CLONE_THREAD));
    t.files(ROOT, &[3, 4, 5], false);
    let h = t.hdr(ROOT, 150);
    t.m.apply(&Event::Syscall { h, kind: K::Close, ret: 0, args: [5, 0, 0, 0, 0, 0], aux: [-1, -1], user_flags: 0 });
    let h = t.hdr(ROOT, 151);
    t.m.apply(&Event::Open { h, kind: K::OpenAt, ret: 5, dirfd: AT_FDCWD, flags: 0, path: "/dev/ptmx".into(), devpts: None });
    assert_eq!(t.fds(ROOT), vec![3, 4, 5]);
    assert_eq!(t.e(ROOT, 5).kind, FdKind::PtyMaster);
    assert_eq!(t.m.stats.drift, 0);
}

#[test]
fn close_range_cloexec_then_exec_drops_them() {
    let mut t = T::new();
    t.files(ROOT, &[0, 1, 2, 3, 4, 5], false);
    t.sys(ROOT, K::CloseRange, 0, &[3, ALL, CLOSE_RANGE_CLOEXEC]);
    assert_eq!(t.fds(ROOT), vec![0, 1, 2, 3, 4, 5], "CLOEXEC only marks");
    assert!(t.e(ROOT, 3).cloexec && t.e(ROOT, 5).cloexec && !t.e(ROOT, 2).cloexec);
    t.exec(ROOT, ROOT, "/bin/true");
    assert_eq!(t.fds(ROOT), vec![0, 1, 2]);
}

#[test]
fn close_range_unshare_gives_a_private_table() {
    let mut t = T::new();
    t.files(ROOT, &[0, 1, 2, 3, 4], false);
    t.fork(ROOT, 101, Some(CLONE_FILES | SIGCHLD));
    assert_eq!(t.table_id(ROOT), t.table_id(101));
    t.sys(101, K::CloseRange, 0, &[3, ALL, CLOSE_RANGE_UNSHARE]);
    assert_ne!(t.table_id(ROOT), t.table_id(101));
    assert_eq!(t.fds(101), vec![0, 1, 2]);
    assert_eq!(
        t.fds(ROOT),
        vec![0, 1, 2, 3, 4],
        "the other sharer keeps its fds"
    );
    assert_eq!(t.m.tables[&t.table_id(ROOT)].refs, 1);
    assert_eq!(t.m.tables[&t.table_id(101)].refs, 1);
    // UNSHARE|CLOEXEC: private copy, then marked.
    t.fork(ROOT, 102, Some(CLONE_FILES));
    t.sys(
        102,
        K::CloseRange,
        0,
        &[0, ALL, CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC],
    );
    assert!(t.e(102, 0).cloexec);
    assert!(!t.e(ROOT, 0).cloexec);
    // UNSHARE on a table that is not shared keeps it.
    let id = t.table_id(101);
    t.sys(101, K::CloseRange, 0, &[2, 2, CLOSE_RANGE_UNSHARE]);
    assert_eq!(t.table_id(101), id);
    assert_eq!(t.fds(101), vec![0, 1]);
}

// ---------------------------------------------------------------------------------------------
// dup family, fcntl

#[test]
fn dup_dup2_dup3_and_fcntl() {
    let mut t = T::new();
    t.open(ROOT, 3, "/dev/ptmx", O_RDWR | O_CLOEXEC);
    t.sys_aux(ROOT, K::Ioctl, 0, &[3, TIOCGPTN], [9, -1]);
    t.open(ROOT, 4, "/tmp/a", 0);

    // dup: lowest free fd, never cloexec, same file.
    t.sys(ROOT, K::Dup, 5, &[3]);
    let d = t.e(ROOT, 5);
    assert_eq!(
        (d.kind, d.pty_index, d.cloexec),
        (FdKind::PtyMaster, Some(9), false)
    );
    // dup2 onto an open fd replaces it silently (no missed close).
    t.sys(ROOT, K::Dup2, 4, &[3, 4]);
    assert_eq!(t.e(ROOT, 4).kind, FdKind::PtyMaster);
    assert!(!t.e(ROOT, 4).cloexec);
    assert_eq!(t.m.stats.drift, 0);
    // dup2(fd, fd) is a no-op that keeps cloexec.
    t.sys(ROOT, K::Dup2, 3, &[3, 3]);
    assert!(t.e(ROOT, 3).cloexec);
    // dup3 with O_CLOEXEC.
    t.sys(ROOT, K::Dup3, 6, &[4, 6, O_CLOEXEC]);
    assert!(t.e(ROOT, 6).cloexec);
    t.sys(ROOT, K::Dup3, 7, &[3, 7, 0]);
    assert!(!t.e(ROOT, 7).cloexec);
    // fcntl F_DUPFD / F_DUPFD_CLOEXEC: the kernel picks >= arg; the model uses the return.
    t.sys(ROOT, K::Fcntl, 10, &[3, F_DUPFD, 10]);
    assert!(!t.e(ROOT, 10).cloexec);
    assert_eq!(t.e(ROOT, 10).pty_index, Some(9));
    t.sys(ROOT, K::Fcntl, 11, &[4, F_DUPFD_CLOEXEC, 10]);
    assert!(t.e(ROOT, 11).cloexec);
    // F_SETFD sets and clears.
    t.sys(ROOT, K::Fcntl, 0, &[10, F_SETFD, FD_CLOEXEC]);
    assert!(t.e(ROOT, 10).cloexec);
    t.sys(ROOT, K::Fcntl, 0, &[10, F_SETFD, 0]);
    assert!(!t.e(ROOT, 10).cloexec);
    // Other fcntl commands (F_GETFL = 3) change nothing.
    t.sys(ROOT, K::Fcntl, 2, &[10, 3, 0]);
    assert_eq!(t.fds(ROOT), vec![3, 4, 5, 6, 7, 10, 11]);
    assert_eq!(t.m.counts(ROOT), (7, 7, 0));
    assert_eq!(t.m.stats.drift, 0);
}

#[test]
fn failed_dups_change_nothing() {
    let mut t = T::new();
    t.open(ROOT, 3, "/dev/ptmx", O_RDWR);
    t.open(ROOT, 4, "/tmp/a", O_CLOEXEC);
    // dup2(9, 4) with 9 not open: EBADF, fd 4 is NOT closed.
    t.sys(ROOT, K::Dup2, neg(EBADF), &[9, 4]);
    // dup3(9, 4, O_CLOEXEC): EBADF too; dup3(3, 3, 0): EINVAL.
    t.sys(ROOT, K::Dup3, neg(EBADF), &[9, 4, O_CLOEXEC]);
    t.sys(ROOT, K::Dup3, neg(EINVAL), &[3, 3, 0]);
    t.sys(ROOT, K::Dup, neg(EBADF), &[9]);
    t.sys(ROOT, K::Fcntl, neg(EBADF), &[9, F_DUPFD, 0]);
    t.sys(
        ROOT,
        K::Fcntl,
        neg(EINVAL),
        &[3, F_DUPFD_CLOEXEC, u32::MAX as u64],
    );
    assert_eq!(t.fds(ROOT), vec![3, 4]);
    assert_eq!(t.e(ROOT, 4).kind, FdKind::File);
    assert!(t.e(ROOT, 4).cloexec);
    assert_eq!(t.m.counts(ROOT), (2, 1, 0));
    assert!(
        t.m.take_needs_reconcile().is_empty(),
        "a failed dup is no reason to rescan"
    );
    assert_eq!(t.m.stats.drift, 0);
}

#[test]
fn dup_of_an_fd_unknown_to_the_model_is_unknown_and_requests_a_scan() {
    let mut t = T::new();
    t.sys(ROOT, K::Dup2, 1, &[0, 1]);
    assert_eq!(t.e(ROOT, 1).kind, FdKind::Unknown);
    assert!(t.m.take_needs_reconcile().contains(&ROOT));
}

#[test]
fn a_seccomp_listener_is_a_close_on_exec_fd_and_other_seccomp_calls_make_none() {
    let mut t = T::new();
    const FILTER: u64 = 1;
    const NEW_LISTENER: u64 = 1 << 3;
    const TSYNC: u64 = 1;
    // seccomp(SECCOMP_SET_MODE_FILTER, NEW_LISTENER, prog) = 5: the supervisor's fd.
    t.sys(ROOT, K::Seccomp, 5, &[FILTER, NEW_LISTENER, 0x7000]);
    assert_eq!(t.fds(ROOT), vec![5]);
    let e = t.m.table_of(ROOT).unwrap().fds[&5].clone();
    assert_eq!(e.kind, crate::core::model::fd::FdKind::AnonInode);
    assert!(e.cloexec, "the kernel makes the listener close-on-exec");
    // A filter without a listener returns 0 (or a thread id with TSYNC): no fd.
    t.sys(ROOT, K::Seccomp, 0, &[FILTER, 0, 0x7000]);
    t.sys(ROOT, K::Seccomp, 1234, &[FILTER, TSYNC, 0x7000]);
    // SECCOMP_SET_MODE_STRICT, SECCOMP_GET_ACTION_AVAIL: no fd either.
    t.sys(ROOT, K::Seccomp, 0, &[0, 0, 0]);
    t.sys(ROOT, K::Seccomp, 0, &[2, 0, 0x7000]);
    assert_eq!(t.fds(ROOT), vec![5]);
}

#[test]
fn fds_received_over_scm_rights_take_their_kind_from_what_proc_showed() {
    use crate::core::model::{
        event::{Event, ReceivedFd},
        fd::FdKind,
        reconcile::ObservedFd,
    };
    let mut t = T::new();
    let seen = |target: &str, tty: Option<u32>| Some(ObservedFd { target: target.into(), tty_index: tty, devpts: None, cloexec: Some(true) });
    let h = t.hdr(ROOT, ROOT);
    t.m.apply(&Event::Received {
        h,
        fds: vec![
            ReceivedFd { fd: 5, seen: seen("/dev/ptmx", Some(7)) },
            ReceivedFd { fd: 6, seen: seen("pipe:[1234]", None) },
            // Closed again before /proc was read: counted, its kind unknown until its close.
            ReceivedFd { fd: 7, seen: None },
        ],
        cloexec: true,
        truncated: false,
    });
    assert_eq!(t.fds(ROOT), vec![5, 6, 7]);
    let table = t.m.table_of(ROOT).unwrap();
    assert_eq!((table.fds[&5].kind, table.fds[&5].pty_index), (FdKind::PtyMaster, Some(7)));
    assert_eq!(table.fds[&6].kind, FdKind::Pipe);
    assert_eq!(table.fds[&7].kind, FdKind::Unknown);
    assert!(table.fds.values().all(|e| e.cloexec), "MSG_CMSG_CLOEXEC");
    assert_eq!(t.m.stats.drift, 0);
    t.sys(ROOT, K::Close, 0, &[7]);
    assert_eq!(t.fds(ROOT), vec![5, 6]);
}

#[test]
fn close_range_cloexec_is_refused_by_kernels_before_5_11() {
    use crate::core::model::KernelAbi;
    const CLOEXEC: u64 = 1 << 2;
    assert!(!KernelAbi::of_release("5.10.0-46-amd64").close_range_cloexec);
    assert!(KernelAbi::of_release("5.11.0").close_range_cloexec);
    assert!(KernelAbi::of_release("6.18.44-fc-v1045").close_range_cloexec);
    assert!(KernelAbi::of_release("weird").close_range_cloexec);
    for (abi, marked) in [(KernelAbi { close_range_cloexec: true }, true), (KernelAbi { close_range_cloexec: false }, false)] {
        let mut t = T::new();
        t.m.abi = abi;
        t.files(ROOT, &[3, 4], false);
        // Reported at entry with ret 0: the model decides as the kernel would.
        t.sys(ROOT, K::CloseRange, 0, &[3, 4, CLOEXEC]);
        assert_eq!(t.fds(ROOT), vec![3, 4], "CLOEXEC closes nothing");
        let table = t.m.table_of(ROOT).unwrap();
        assert_eq!(table.fds[&3].cloexec && table.fds[&4].cloexec, marked, "{abi:?}");
    }
}
