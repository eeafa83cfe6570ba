//! Model tests: fd pairs (pipe, socketpair), sockets, anonymous inodes, and the PTY ioctls.

use super::*;

// ---------------------------------------------------------------------------------------------
// fd pairs, sockets, anonymous inodes

#[test]
fn pipe_and_pipe2_take_their_fds_from_aux() {
    let mut t = T::new();
    t.sys_aux(ROOT, K::Pipe, 0, &[0x7ffd0000], [3, 4]);
    t.sys_aux(ROOT, K::Pipe2, 0, &[0x7ffd0000, O_CLOEXEC], [5, 6]);
    t.sys_aux(ROOT, K::Pipe2, 0, &[0x7ffd0000, 0], [7, 8]);
    // Failed: aux is garbage and must be ignored.
    t.sys_aux(ROOT, K::Pipe2, neg(EINVAL), &[0x7ffd0000, 0xffff], [9, 10]);
    assert_eq!(t.fds(ROOT), vec![3, 4, 5, 6, 7, 8]);
    for fd in 3..=8 {
        assert_eq!(t.e(ROOT, fd).kind, FdKind::Pipe);
        assert_eq!(t.e(ROOT, fd).cloexec, fd == 5 || fd == 6, "fd {fd}");
    }
}

#[test]
fn socket_socketpair_accept_accept4() {
    let mut t = T::new();
    t.sys(
        ROOT,
        K::Socket,
        3,
        &[AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0],
    );
    t.sys(ROOT, K::Socket, 4, &[AF_UNIX, SOCK_STREAM, 0]);
    t.sys_aux(
        ROOT,
        K::SocketPair,
        0,
        &[AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, 0x7ffd],
        [5, 6],
    );
    t.sys_aux(
        ROOT,
        K::SocketPair,
        0,
        &[AF_UNIX, SOCK_STREAM, 0, 0x7ffd],
        [7, 8],
    );
    t.sys(ROOT, K::Accept4, 9, &[3, 0, 0, SOCK_CLOEXEC]);
    t.sys(ROOT, K::Accept4, 10, &[3, 0, 0, 0]);
    t.sys(ROOT, K::Accept, 11, &[3, 0, 0]);
    t.sys(ROOT, K::Accept4, neg(EINVAL), &[3, 0, 0, SOCK_CLOEXEC]);
    t.sys(ROOT, K::Socket, neg(EINVAL), &[AF_UNIX, SOCK_STREAM, 0]);
    assert_eq!(t.fds(ROOT), (3..=11).collect::<Vec<_>>());
    let cloexec: Vec<i32> = (3..=11).filter(|&fd| t.e(ROOT, fd).cloexec).collect();
    assert_eq!(cloexec, vec![3, 5, 6, 9]);
    assert!((3..=11).all(|fd| t.e(ROOT, fd).kind == FdKind::Socket));
}

#[test]
fn anon_inode_makers() {
    let mut t = T::new();
    t.sys(ROOT, K::EventFd2, 3, &[0, O_CLOEXEC]);
    t.sys(ROOT, K::EventFd2, 4, &[0, 0]);
    t.sys(ROOT, K::EpollCreate1, 5, &[O_CLOEXEC]);
    t.sys(ROOT, K::TimerfdCreate, 6, &[1, O_CLOEXEC]);
    // signalfd4(-1, ...) makes a new fd ...
    t.sys(ROOT, K::Signalfd4, 7, &[NO_FD, 0x7ffd, 8, O_CLOEXEC]);
    let opened = t.e(ROOT, 7).opened_ns;
    // ... signalfd4(7, ...) updates fd 7 and returns it: no new fd, same entry.
    t.sys(ROOT, K::Signalfd4, 7, &[7, 0x7ffd, 8, 0]);
    assert_eq!(t.e(ROOT, 7).opened_ns, opened);
    assert!(t.e(ROOT, 7).cloexec);
    t.sys(ROOT, K::Signalfd, 8, &[NO_FD, 0x7ffd, 8]);
    t.sys(ROOT, K::MemfdCreate, 9, &[0x7ffd, 1 /* MFD_CLOEXEC */]);
    t.sys(ROOT, K::MemfdCreate, 10, &[0x7ffd, 0]);
    t.sys(ROOT, K::PidfdOpen, 11, &[1234, 0]);
    t.sys(ROOT, K::InotifyInit1, 12, &[O_CLOEXEC]);
    t.sys(ROOT, K::InotifyInit1, neg(EINVAL), &[0xdead]);
    assert_eq!(t.fds(ROOT), (3..=12).collect::<Vec<_>>());
    let want = [
        (3, FdKind::AnonInode, true, "anon_inode:[eventfd]"),
        (4, FdKind::AnonInode, false, "anon_inode:[eventfd]"),
        (5, FdKind::AnonInode, true, "anon_inode:[eventpoll]"),
        (6, FdKind::AnonInode, true, "anon_inode:[timerfd]"),
        (7, FdKind::AnonInode, true, "anon_inode:[signalfd]"),
        (8, FdKind::AnonInode, false, "anon_inode:[signalfd]"),
        (9, FdKind::Memfd, true, "/memfd:"),
        (10, FdKind::Memfd, false, "/memfd:"),
        (11, FdKind::AnonInode, true, "anon_inode:[pidfd]"),
        (12, FdKind::AnonInode, true, "anon_inode:inotify"),
    ];
    for (fd, kind, cloexec, target) in want {
        let e = t.e(ROOT, fd);
        assert_eq!(
            (e.kind, e.cloexec, e.target.as_str()),
            (kind, cloexec, target),
            "fd {fd}"
        );
    }
    assert_eq!(t.m.counts(ROOT), (10, 0, 0));
    assert_eq!(t.m.stats.drift, 0);
}

// ---------------------------------------------------------------------------------------------
// ioctl

#[test]
fn tiocgptn_sets_the_index_and_upgrades_a_misclassified_fd() {
    let mut t = T::new();
    t.open(ROOT, 3, "/dev/ptmx", O_RDWR);
    assert_eq!(t.m.masters_without_index(), vec![(ROOT, 3)]);
    t.sys_aux(ROOT, K::Ioctl, 0, &[3, TIOCGPTN, 0x7ffd], [5, -1]);
    assert_eq!(t.e(ROOT, 3).pty_index, Some(5));
    assert!(t.m.masters_without_index().is_empty());
    assert_eq!(t.m.master_slots(SID), BTreeSet::from([(None, 5)]));

    // A master opened through a path the classifier cannot recognise (a symlink, say).
    t.open(ROOT, 4, "/run/my-ptmx-link", O_RDWR);
    assert_eq!(t.e(ROOT, 4).kind, FdKind::File);
    t.sys_aux(ROOT, K::Ioctl, 0, &[4, TIOCGPTN, 0x7ffd], [6, -1]);
    assert_eq!(
        (t.e(ROOT, 4).kind, t.e(ROOT, 4).pty_index),
        (FdKind::PtyMaster, Some(6))
    );
    assert_eq!(t.m.counts(ROOT), (2, 2, 0));

    // Failed TIOCGPTN (ENOTTY on a regular file) changes nothing.
    t.open(ROOT, 5, "/tmp/f", 0);
    t.sys_aux(
        ROOT,
        K::Ioctl,
        neg(ENOTTY),
        &[5, TIOCGPTN, 0x7ffd],
        [-1, -1],
    );
    assert_eq!(t.e(ROOT, 5).kind, FdKind::File);
    // TIOCGPTN on an fd the model does not know: no fd appears.
    t.sys_aux(ROOT, K::Ioctl, 0, &[9, TIOCGPTN, 0x7ffd], [7, -1]);
    assert_eq!(t.fds(ROOT), vec![3, 4, 5]);
    // The request is an unsigned int: high register bits are ignored.
    t.sys_aux(
        ROOT,
        K::Ioctl,
        0,
        &[3, TIOCGPTN | 0xffff_ffff_0000_0000, 0x7ffd],
        [8, -1],
    );
    assert_eq!(t.e(ROOT, 3).pty_index, Some(8));
}

#[test]
fn tiocgptpeer_opens_the_slave_with_the_masters_index() {
    let mut t = T::new();
    t.open(ROOT, 3, "/dev/ptmx", O_RDWR);
    // Before TIOCGPTN the index is unknown.
    t.sys(ROOT, K::Ioctl, 4, &[3, TIOCGPTPEER, O_RDWR]);
    let s = t.e(ROOT, 4);
    assert_eq!(
        (s.kind, s.pty_index, s.cloexec),
        (FdKind::PtySlave, None, false)
    );
    assert_eq!(s.target, "/dev/pts/?");
    t.sys_aux(ROOT, K::Ioctl, 0, &[3, TIOCGPTN, 0x7ffd], [12, -1]);
    t.sys(ROOT, K::Ioctl, 5, &[3, TIOCGPTPEER, O_RDWR | O_CLOEXEC]);
    let s = t.e(ROOT, 5);
    assert_eq!(
        (s.kind, s.pty_index, s.cloexec),
        (FdKind::PtySlave, Some(12), true)
    );
    assert_eq!(s.target, "/dev/pts/12");
    // Failed TIOCGPTPEER adds nothing.
    t.sys(ROOT, K::Ioctl, neg(ENOTTY), &[5, TIOCGPTPEER, O_RDWR]);
    assert_eq!(t.m.counts(ROOT), (3, 1, 2));
}

#[test]
fn fioclex_and_fionclex() {
    let mut t = T::new();
    t.open(ROOT, 3, "/tmp/a", 0);
    t.sys(ROOT, K::Ioctl, 0, &[3, FIOCLEX]);
    assert!(t.e(ROOT, 3).cloexec);
    t.sys(ROOT, K::Ioctl, 0, &[3, FIONCLEX]);
    assert!(!t.e(ROOT, 3).cloexec);
    t.sys(ROOT, K::Ioctl, neg(EBADF), &[3, FIOCLEX]);
    assert!(!t.e(ROOT, 3).cloexec);
    // On an unknown fd: nothing appears.
    t.sys(ROOT, K::Ioctl, 0, &[8, FIOCLEX]);
    assert_eq!(t.fds(ROOT), vec![3]);
}
