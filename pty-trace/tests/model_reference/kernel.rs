//! What the kernel does: the Linux constants the operations use, and `Ref::step_events`, which
//! performs one operation on the reference (lowest free fd first, EBADF on a closed fd, ...) and
//! appends the events the eBPF side would emit for it.

use pty_trace::core::model::Event;
use pty_trace_common::{
    CLONE_FILES, CLONE_PIDFD, CLONE_THREAD, CLONE_VFORK, CLONE_VM, FIOCLEX, FIONCLEX,
    SyscallKind as K, TIOCGPTN, TIOCGPTPEER,
};

use crate::ops::{Op, OpKind, op_kind};
use crate::reference::{RFd, RProc, Ref, Role, SESSIONS, get, lowest_free, put};

const O_WRONLY: u64 = 0o1;
const O_RDWR: u64 = 0o2;
const O_CREAT: u64 = 0o100;
const O_NOCTTY: u64 = 0o400;
const O_TRUNC: u64 = 0o1000;
const O_DIRECTORY: u64 = 0o200000;
const O_CLOEXEC: u64 = 0o2000000;
const SOCK_STREAM: u64 = 1;
const SOCK_CLOEXEC: u64 = O_CLOEXEC;
const AF_UNIX: u64 = 1;
const MFD_CLOEXEC: u64 = 1;
const AT_FDCWD: i64 = -100;
const ENOENT: i64 = 2;
const EIO: i64 = 5;
const EBADF: i64 = 9;
const EINVAL: i64 = 22;
const ENOTTY: i64 = 25;
const F_DUPFD: u64 = 0;
const F_SETFD: u64 = 2;
const F_DUPFD_CLOEXEC: u64 = 1030;
const FD_CLOEXEC: u64 = 1;
pub(crate) const CLOSE_RANGE_UNSHARE: u64 = 2;
const CLOSE_RANGE_CLOEXEC: u64 = 4;
const CLONE_SIGHAND: u64 = 0x800;
const SIGCHLD: u64 = 17;
const ALL_FDS: u64 = u32::MAX as u64;

impl Ref {
    pub(crate) fn step_events(&mut self, op: Op, out: &mut Vec<Event>) {
        let pids: Vec<u32> = self.procs.keys().copied().collect();
        let pid = pids[op.x as usize % pids.len()];
        let threads = &self.procs[&pid].threads;
        let tid = if op.b && !threads.is_empty() {
            threads[(op.x / 7) as usize % threads.len()]
        } else {
            pid
        };
        let who = (pid, tid);
        let (y, z) = (op.y, op.z);
        self.serial += 1;
        let serial = self.serial;
        let cloexec = y & 1 == 1;
        let cloexec_flag = if cloexec { O_CLOEXEC } else { 0 };
        match op_kind(op.code) {
            OpKind::OpenPtmx => {
                let index = self.next_pty;
                self.next_pty += 1;
                let t = self.table_mut(pid);
                let fd = lowest_free(t, 0);
                let mut e = RFd::new(Role::Master, cloexec, "/dev/ptmx");
                e.true_index = Some(index);
                let dir = Self::dir_fd(t, z);
                put(t, fd, e);
                let (kind, dirfd, path) = match (z % 4, dir) {
                    (0, Some(d)) => (K::OpenAt, d as i64, "ptmx"),
                    (1, _) => (K::OpenAt2, AT_FDCWD, "/dev/pts/ptmx"),
                    (2, _) => (K::Open, AT_FDCWD, "/dev/ptmx"),
                    _ => (K::OpenAt, AT_FDCWD, "/dev/ptmx"),
                };
                let flags = O_RDWR | O_NOCTTY | cloexec_flag;
                self.open_event(out, who, kind, fd as i64, dirfd, flags, path.into());
            }
            OpKind::OpenPts => {
                let n = y % self.next_pty;
                // A slave can be opened only while its master is open (else EIO).
                let alive = (n as usize) < SESSIONS.len() || self.master_alive(n);
                let t = self.table_mut(pid);
                let (dirfd, path) = match Self::dir_fd(t, z) {
                    Some(d) if z % 2 == 0 => (d as i64, n.to_string()),
                    _ => (AT_FDCWD, format!("/dev/pts/{n}")),
                };
                let ret = if alive {
                    let fd = lowest_free(t, 0);
                    let mut e = RFd::new(Role::Slave, cloexec, format!("/dev/pts/{n}"));
                    e.index = Some(n);
                    e.true_index = Some(n);
                    put(t, fd, e);
                    fd as i64
                } else {
                    -EIO
                };
                self.open_event(out, who, K::OpenAt, ret, dirfd, O_RDWR | cloexec_flag, path);
            }
            OpKind::OpenFile => {
                let t = self.table_mut(pid);
                let fd = lowest_free(t, 0);
                let (kind, ret, flags, path) = match z % 7 {
                    0 => {
                        let mut e = RFd::new(Role::None, cloexec, "/dev/pts");
                        e.dir = true;
                        put(t, fd, e);
                        (
                            K::OpenAt,
                            fd as i64,
                            O_DIRECTORY | cloexec_flag,
                            "/dev/pts".to_string(),
                        )
                    }
                    1 => (K::OpenAt, -ENOENT, cloexec_flag, "/nonexistent".to_string()),
                    2 => {
                        put(t, fd, RFd::new(Role::None, cloexec, "/dev/null"));
                        (
                            K::Open,
                            fd as i64,
                            O_RDWR | cloexec_flag,
                            "/dev/null".to_string(),
                        )
                    }
                    3 => {
                        let path = format!("/tmp/out{serial}");
                        put(t, fd, RFd::new(Role::None, false, path.clone()));
                        (K::Creat, fd as i64, O_CREAT | O_WRONLY | O_TRUNC, path)
                    }
                    _ => {
                        let path = format!("/tmp/f{serial}");
                        put(t, fd, RFd::new(Role::None, cloexec, path.clone()));
                        let kind = if z % 2 == 0 { K::OpenAt } else { K::OpenAt2 };
                        (kind, fd as i64, cloexec_flag, path)
                    }
                };
                self.open_event(out, who, kind, ret, AT_FDCWD, flags, path);
            }
            OpKind::Close => {
                let t = self.table_mut(pid);
                let fd = Self::pick_fd(t, y);
                // Whatever it returns (EINTR: the fd is gone all the same; EBADF: there was
                // none), the kernel side reports it when entered, with ret 0.
                t.get_mut(fd).and_then(Option::take);
                self.syscall(out, who, K::Close, 0, &[fd as u64], [-1, -1]);
            }
            OpKind::Dup => {
                let t = self.table_mut(pid);
                let old = Self::pick_fd(t, y);
                let ret = match get(t, old).cloned() {
                    Some(mut e) => {
                        let new = lowest_free(t, 0);
                        e.cloexec = false;
                        put(t, new, e);
                        new as i64
                    }
                    None => -EBADF,
                };
                self.syscall(out, who, K::Dup, ret, &[old as u64], [-1, -1]);
            }
            OpKind::Dup2 | OpKind::Dup3 => {
                let dup3 = op_kind(op.code) == OpKind::Dup3;
                let t = self.table_mut(pid);
                let old = Self::pick_fd(t, y);
                let new = (z % 16) as usize;
                let ret = match get(t, old).cloned() {
                    _ if dup3 && old == new => -EINVAL,
                    None => -EBADF,
                    Some(_) if old == new => new as i64,
                    Some(mut e) => {
                        e.cloexec = dup3 && cloexec;
                        put(t, new, e);
                        new as i64
                    }
                };
                if dup3 {
                    self.syscall(
                        out,
                        who,
                        K::Dup3,
                        ret,
                        &[old as u64, new as u64, cloexec_flag],
                        [-1, -1],
                    );
                } else {
                    self.syscall(out, who, K::Dup2, ret, &[old as u64, new as u64], [-1, -1]);
                }
            }
            OpKind::FcntlDup => {
                let t = self.table_mut(pid);
                let old = Self::pick_fd(t, y);
                let min = (z % 12) as usize;
                let ret = match get(t, old).cloned() {
                    Some(mut e) => {
                        let new = lowest_free(t, min);
                        e.cloexec = cloexec;
                        put(t, new, e);
                        new as i64
                    }
                    None => -EBADF,
                };
                let cmd = if cloexec { F_DUPFD_CLOEXEC } else { F_DUPFD };
                self.syscall(
                    out,
                    who,
                    K::Fcntl,
                    ret,
                    &[old as u64, cmd, min as u64],
                    [-1, -1],
                );
            }
            OpKind::SetCloexec => {
                let t = self.table_mut(pid);
                let fd = Self::pick_fd(t, y);
                let on = z & 1 == 1;
                let ret = match t.get_mut(fd).and_then(Option::as_mut) {
                    Some(e) => {
                        e.cloexec = on;
                        0
                    }
                    None => -EBADF,
                };
                if z & 2 == 0 {
                    let arg = if on { FD_CLOEXEC } else { 0 };
                    self.syscall(
                        out,
                        who,
                        K::Fcntl,
                        ret,
                        &[fd as u64, F_SETFD, arg],
                        [-1, -1],
                    );
                } else {
                    let req = if on { FIOCLEX } else { FIONCLEX };
                    self.syscall(out, who, K::Ioctl, ret, &[fd as u64, req], [-1, -1]);
                }
            }
            OpKind::Pipe => {
                let pipe2 = z % 3 != 0;
                let cloexec = pipe2 && cloexec;
                let t = self.table_mut(pid);
                let r = lowest_free(t, 0);
                put(
                    t,
                    r,
                    RFd::new(Role::None, cloexec, format!("pipe:[{serial}]")),
                );
                let w = lowest_free(t, 0);
                put(
                    t,
                    w,
                    RFd::new(Role::None, cloexec, format!("pipe:[{serial}]")),
                );
                let aux = [r as i32, w as i32];
                if pipe2 {
                    self.syscall(out, who, K::Pipe2, 0, &[0x7ffd_0000, cloexec_flag], aux);
                } else {
                    self.syscall(out, who, K::Pipe, 0, &[0x7ffd_0000], aux);
                }
            }
            OpKind::Single => {
                let t = self.table_mut(pid);
                let fd = lowest_free(t, 0);
                if z % 8 == 0 {
                    // socketpair: two fds through user memory.
                    put(
                        t,
                        fd,
                        RFd::new(Role::None, cloexec, format!("socket:[{serial}]")),
                    );
                    let fd2 = lowest_free(t, 0);
                    put(
                        t,
                        fd2,
                        RFd::new(Role::None, cloexec, format!("socket:[{serial}1]")),
                    );
                    let sock_flag = if cloexec { SOCK_CLOEXEC } else { 0 };
                    let args = [AF_UNIX, SOCK_STREAM | sock_flag, 0, 0x7ffd_0000];
                    self.syscall(out, who, K::SocketPair, 0, &args, [fd as i32, fd2 as i32]);
                    return;
                }
                let (kind, args, target, cloexec): (K, Vec<u64>, String, bool) = match z % 8 {
                    1 => (
                        K::Socket,
                        vec![AF_UNIX, SOCK_STREAM | cloexec_flag],
                        format!("socket:[{serial}]"),
                        cloexec,
                    ),
                    2 => (
                        K::EventFd2,
                        vec![0, cloexec_flag],
                        "anon_inode:[eventfd]".into(),
                        cloexec,
                    ),
                    3 => (
                        K::EpollCreate1,
                        vec![cloexec_flag],
                        "anon_inode:[eventpoll]".into(),
                        cloexec,
                    ),
                    4 => (
                        K::InotifyInit1,
                        vec![cloexec_flag],
                        "anon_inode:inotify".into(),
                        cloexec,
                    ),
                    5 => (
                        K::MemfdCreate,
                        vec![0x7ffd_0000, if cloexec { MFD_CLOEXEC } else { 0 }],
                        "/memfd:x (deleted)".into(),
                        cloexec,
                    ),
                    6 => (
                        K::PidfdOpen,
                        vec![pid as u64, 0],
                        "anon_inode:[pidfd]".into(),
                        true,
                    ),
                    _ => (
                        K::TimerfdCreate,
                        vec![1, cloexec_flag],
                        "anon_inode:[timerfd]".into(),
                        cloexec,
                    ),
                };
                put(t, fd, RFd::new(Role::None, cloexec, target));
                self.syscall(out, who, kind, fd as i64, &args, [-1, -1]);
            }
            OpKind::Tiocgptn => {
                let t = self.table_mut(pid);
                let fd = Self::pick_master(t, y);
                let (ret, aux) = match t.get_mut(fd).and_then(Option::as_mut) {
                    Some(e) if e.role == Role::Master => {
                        e.index = e.true_index;
                        (0, [e.true_index.unwrap() as i32, -1])
                    }
                    Some(_) => (-ENOTTY, [-1, -1]),
                    None => (-EBADF, [-1, -1]),
                };
                self.syscall(
                    out,
                    who,
                    K::Ioctl,
                    ret,
                    &[fd as u64, TIOCGPTN, 0x7ffd_0000],
                    aux,
                );
            }
            OpKind::Tiocgptpeer => {
                let t = self.table_mut(pid);
                let fd = Self::pick_master(t, y);
                let ret = match get(t, fd).cloned() {
                    Some(m) if m.role == Role::Master => {
                        let new = lowest_free(t, 0);
                        let n = m.true_index.unwrap();
                        let mut e = RFd::new(Role::Slave, cloexec, format!("/dev/pts/{n}"));
                        e.index = m.index;
                        e.true_index = m.true_index;
                        put(t, new, e);
                        new as i64
                    }
                    Some(_) => -ENOTTY,
                    None => -EBADF,
                };
                let args = [fd as u64, TIOCGPTPEER, O_RDWR | O_NOCTTY | cloexec_flag];
                self.syscall(out, who, K::Ioctl, ret, &args, [-1, -1]);
            }
            OpKind::CloseRange => {
                let first = (y % 12) as u64;
                let last = match z % 4 {
                    0 => ALL_FDS,
                    1 if first > 0 => first - 1, // EINVAL
                    _ => first + (z / 4 % 6) as u64,
                };
                let flags = [
                    0,
                    CLOSE_RANGE_CLOEXEC,
                    CLOSE_RANGE_UNSHARE,
                    CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC,
                ][(z / 32 % 4) as usize];
                // EINVAL when first > last; reported when entered all the same, with ret 0.
                if first <= last {
                    if flags & CLOSE_RANGE_UNSHARE != 0 {
                        self.unshare(pid);
                    }
                    let t = self.table_mut(pid);
                    let end = (last as usize).min(t.len().saturating_sub(1));
                    for slot in t.iter_mut().take(end + 1).skip(first as usize) {
                        if let Some(e) = slot {
                            if flags & CLOSE_RANGE_CLOEXEC != 0 {
                                e.cloexec = true;
                            } else {
                                *slot = None;
                            }
                        }
                    }
                    self.drop_unused_tables();
                }
                self.syscall(out, who, K::CloseRange, 0, &[first, last, flags], [-1, -1]);
            }
            OpKind::Fork | OpKind::ForkFiles => {
                let share = op_kind(op.code) == OpKind::ForkFiles;
                let child = self.next_pid;
                self.next_pid += 1;
                let mut flags = match (share, z % 3) {
                    (false, 0) => None, // flags not captured: a plain copy
                    (false, 1) => Some(CLONE_VM | CLONE_VFORK | SIGCHLD),
                    (false, _) => Some(SIGCHLD),
                    (true, 0) => Some(CLONE_VM | CLONE_FILES | SIGCHLD),
                    (true, _) => Some(CLONE_FILES | SIGCHLD),
                };
                let pidfd = flags.is_some() && z / 3 % 3 == 0;
                if pidfd {
                    flags = flags.map(|f| f | CLONE_PIDFD);
                }
                let parent = self.procs[&pid].clone();
                let table = if share {
                    parent.table
                } else {
                    let copy = self.tables[&parent.table].clone();
                    self.next_table += 1;
                    self.tables.insert(self.next_table, copy);
                    self.next_table
                };
                self.procs.insert(
                    child,
                    RProc {
                        session: parent.session,
                        table,
                        threads: Vec::new(),
                        argv: parent.argv.clone(),
                    },
                );
                let h = self.hdr(pid, tid);
                out.push(Event::Fork {
                    h,
                    child,
                    clone_flags: flags,
                });
                if pidfd {
                    // Reserved in the parent after the child's table was copied.
                    let t = self.table_mut(pid);
                    let fd = lowest_free(t, 0);
                    put(t, fd, RFd::new(Role::None, true, "anon_inode:[pidfd]"));
                    let flags = flags.unwrap();
                    let h = self.hdr(pid, tid);
                    let (kind, args, user_flags) = if z % 2 == 0 {
                        (K::Clone, [flags, 0, 0x7ffd_0000, 0, 0, 0], 0)
                    } else {
                        (K::Clone3, [0x7ffd_0000, 88, 0, 0, 0, 0], flags)
                    };
                    out.push(Event::Syscall {
                        h,
                        kind,
                        ret: child as i64,
                        args,
                        aux: [fd as i32, -1],
                        user_flags,
                    });
                }
            }
            OpKind::Thread => {
                let thread = self.next_pid;
                self.next_pid += 1;
                self.procs.get_mut(&pid).unwrap().threads.push(thread);
                let h = self.hdr(pid, tid);
                let flags = CLONE_VM | CLONE_FILES | CLONE_SIGHAND | CLONE_THREAD;
                out.push(Event::Fork {
                    h,
                    child: thread,
                    clone_flags: Some(flags),
                });
            }
            OpKind::Exec => {
                let filename = format!("/usr/bin/prog{serial}");
                let argv = vec![format!("prog{serial}"), format!("--n={serial}")];
                let argv = if z % 7 != 0 {
                    let h = self.hdr(pid, tid);
                    out.push(Event::ExecArgv {
                        h,
                        argv: argv.clone(),
                        truncated: false,
                    });
                    argv
                } else {
                    vec![filename.clone()] // argv not captured
                };
                self.unshare(pid);
                for slot in self.table_mut(pid).iter_mut() {
                    if slot.as_ref().is_some_and(|e| e.cloexec) {
                        *slot = None;
                    }
                }
                let p = self.procs.get_mut(&pid).unwrap();
                p.threads.clear();
                p.argv = Some(argv);
                self.drop_unused_tables();
                // After exec the caller has the leader's id; old_tid is the id it had.
                let h = self.hdr(pid, pid);
                out.push(Event::Exec {
                    h,
                    old_tid: tid,
                    filename,
                });
            }
            OpKind::Exit => {
                if self.procs.len() <= 1 {
                    return;
                }
                let h = self.hdr(pid, tid);
                self.procs.remove(&pid);
                self.drop_unused_tables();
                out.push(Event::Exit { h });
            }
            OpKind::Scan | OpKind::LateScan => unreachable!("handled by step"),
            OpKind::Unshare => {
                self.unshare(pid);
                self.syscall(out, who, K::Unshare, 0, &[CLONE_FILES], [-1, -1]);
            }
        }
    }
}
