//! Unit tests of `Model::apply` (one test per syscall family and process event), the PTY
//! registry and reconciliation. Events carry `SyscallKind` directly, as the decoder gives them.

use std::collections::BTreeSet;

use pty_trace_common::{
    CLONE_FILES, CLONE_PIDFD, CLONE_THREAD, CLONE_VM, FIOCLEX, FIONCLEX, SyscallKind as K,
    TIOCGPTN, TIOCGPTPEER,
};

use super::reconcile::{ObservedFd, ObservedProcess};
use super::*;

const O_RDWR: u64 = 0o2;
const O_CLOEXEC: u64 = 0o2000000;
const O_DIRECTORY: u64 = 0o200000;
const SOCK_STREAM: u64 = 1;
const SOCK_CLOEXEC: u64 = O_CLOEXEC;
const AF_UNIX: u64 = 1;
const AT_FDCWD: i64 = -100;
const EBADF: i64 = 9;
const EINTR: i64 = 4;
const EINVAL: i64 = 22;
const ENOENT: i64 = 2;
const ENOTTY: i64 = 25;
const F_DUPFD: u64 = 0;
const F_SETFD: u64 = 2;
const F_DUPFD_CLOEXEC: u64 = 1030;
const FD_CLOEXEC: u64 = 1;
const CLOSE_RANGE_UNSHARE: u64 = 2;
const CLOSE_RANGE_CLOEXEC: u64 = 4;
const SIGCHLD: u64 = 17;
/// `~0U` as close_range's `max_fd` register holds it.
const ALL: u64 = u32::MAX as u64;
/// `(u64)-1` as an `int fd` argument of -1 arrives in a register.
const NO_FD: u64 = u64::MAX;

const SID: u32 = 100;
const ROOT: u32 = 100;

/// A model with one session (root `ROOT`, already seeded) and a clock.
struct T {
    m: Model,
    ts: u64,
}

impl T {
    fn new() -> T {
        let mut m = Model::new();
        m.add_session(SID, 1);
        m.add_process(ROOT, 1, SID, "bash", 1);
        // The first /proc scan seeds the root (an empty table here): no drift.
        let out = m.reconcile(&obs(ROOT, 2, &[]));
        assert!(out.seeding);
        assert_eq!(m.stats.drift, 0);
        m.take_needs_reconcile();
        T { m, ts: 10 }
    }

    fn hdr(&mut self, tgid: u32, tid: u32) -> Header {
        self.ts += 10;
        Header {
            tgid,
            tid,
            session: SID,
            ts_ns: self.ts,
        }
    }

    fn sys_aux(&mut self, pid: u32, kind: K, ret: i64, args: &[u64], aux: [i32; 2]) {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        let h = self.hdr(pid, pid);
        self.m.apply(&Event::Syscall {
            h,
            kind,
            ret,
            args: a,
            aux,
            user_flags: 0,
        });
    }

    fn sys(&mut self, pid: u32, kind: K, ret: i64, args: &[u64]) {
        self.sys_aux(pid, kind, ret, args, [-1, -1]);
    }

    fn open_kind(&mut self, pid: u32, kind: K, ret: i64, dirfd: i64, path: &str, flags: u64) {
        let h = self.hdr(pid, pid);
        self.m.apply(&Event::Open {
            h,
            kind,
            ret,
            dirfd,
            flags,
            path: path.into(),
        });
    }

    /// `openat(AT_FDCWD, path, flags) = fd`.
    fn open(&mut self, pid: u32, fd: i32, path: &str, flags: u64) {
        self.open_kind(pid, K::OpenAt, fd as i64, AT_FDCWD, path, flags);
    }

    fn fork(&mut self, pid: u32, child: u32, flags: Option<u64>) {
        let h = self.hdr(pid, pid);
        self.m.apply(&Event::Fork {
            h,
            child,
            clone_flags: flags,
        });
    }

    fn argv(&mut self, pid: u32, tid: u32, argv: &[&str]) {
        let h = self.hdr(pid, tid);
        let argv = argv.iter().map(|s| s.to_string()).collect();
        self.m.apply(&Event::ExecArgv {
            h,
            argv,
            truncated: false,
        });
    }

    /// A completed exec: the header's tid is the tgid, `old_tid` the thread that called it.
    fn exec(&mut self, pid: u32, old_tid: u32, filename: &str) {
        let h = self.hdr(pid, pid);
        self.m.apply(&Event::Exec {
            h,
            old_tid,
            filename: filename.into(),
        });
    }

    fn exit(&mut self, pid: u32) {
        let h = self.hdr(pid, pid);
        self.m.apply(&Event::Exit { h });
    }

    fn fds(&self, pid: u32) -> Vec<i32> {
        self.m
            .table_of(pid)
            .map(|t| t.fds.keys().copied().collect())
            .unwrap_or_default()
    }

    fn e(&self, pid: u32, fd: i32) -> &FdEntry {
        self.m
            .table_of(pid)
            .and_then(|t| t.fds.get(&fd))
            .unwrap_or_else(|| panic!("pid {pid} has no fd {fd}: {:?}", self.fds(pid)))
    }

    /// `pid` holds a plain file at each of `fds` (cloexec as given).
    fn files(&mut self, pid: u32, fds: &[i32], cloexec: bool) {
        for &fd in fds {
            self.open(
                pid,
                fd,
                &format!("/tmp/f{fd}"),
                if cloexec { O_CLOEXEC } else { 0 },
            );
        }
    }

    fn table_id(&self, pid: u32) -> TableId {
        self.m.procs[&pid].table
    }
}

fn obs(pid: u32, scan_start_ns: u64, fds: &[(i32, &str, Option<u32>)]) -> ObservedProcess {
    ObservedProcess {
        pid,
        ppid: 0,
        comm: String::new(),
        fds: fds
            .iter()
            .map(|&(fd, target, tty_index)| {
                (
                    fd,
                    ObservedFd {
                        target: target.into(),
                        tty_index,
                        cloexec: None,
                    },
                )
            })
            .collect(),
        scan_start_ns,
        scan_end_ns: scan_start_ns + 5,
    }
}

fn neg(errno: i64) -> i64 {
    -errno
}

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
    assert_eq!(t.m.master_indexes(SID), BTreeSet::from([5]));

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
    assert_eq!(t.m.sessions[&SID].commands, vec![id]);
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
    });
    // 7: slave held outside the model: not orphaned.
    ptm(&mut t, ROOT, 5, 7);
    // 8: master and slave in the same process (via TIOCGPTPEER): not orphaned.
    ptm(&mut t, ROOT, 6, 8);
    t.sys(ROOT, K::Ioctl, 7, &[6, TIOCGPTPEER, O_RDWR]);
    // A master of unknown index: listed on its own, never judged.
    t.open(ROOT, 8, "/dev/ptmx", O_RDWR);

    let outside = BTreeSet::from([7]);
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
    assert_eq!(t.m.master_indexes(SID), BTreeSet::from([5, 6, 7, 8]));

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
