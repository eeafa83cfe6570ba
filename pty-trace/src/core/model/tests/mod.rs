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
            devpts: None,
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
                        devpts: None,
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

mod fds;
mod pairs_and_ioctl;
mod commands_and_lifecycle;
mod processes;
mod against_proc;
mod bounded;

impl T {
    /// `posix_openpt` at `fd` and its TIOCGPTN: PTY `index`'s master.
    fn master(&mut self, pid: u32, fd: i32, index: i32) {
        self.open(pid, fd, "/dev/ptmx", O_RDWR | O_CLOEXEC);
        self.sys_aux(pid, K::Ioctl, 0, &[fd as u64, TIOCGPTN, 0x7ffd], [index, -1]);
    }

    /// fork + exec of `argv` in a new child.
    fn spawn(&mut self, parent: u32, child: u32, argv: &[&str]) {
        self.fork(parent, child, Some(SIGCHLD));
        self.argv(child, child, argv);
        self.exec(child, child, argv[0]);
    }
}
