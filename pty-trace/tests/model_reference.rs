//! `pty_trace::core::model::Model` against a deliberately simple reference of Linux fd semantics.
//!
//! Random operations (opens, closes, the dup family, pipes, sockets, PTY ioctls, close_range,
//! fork with and without CLONE_FILES, threads, exec, exit, unshare) are decided against the
//! reference, which also computes what the kernel would return (lowest free fd first, EBADF on
//! a closed fd, ...). The same operations are then fed to the model as the `Event`s the eBPF
//! side would emit, and the two must agree exactly with zero drift. A second test drops events
//! (ring-buffer loss) and checks that reconciling with "/proc" (built from the reference)
//! repairs the model.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use proptest::prelude::*;
use pty_trace::core::model::reconcile::{ObservedFd, ObservedProcess};
use pty_trace::core::model::{Event, Header, Model, PtyRole};
use pty_trace_common::{
    CLONE_FILES, CLONE_PIDFD, CLONE_THREAD, CLONE_VFORK, CLONE_VM, FIOCLEX, FIONCLEX,
    SyscallKind as K, TIOCGPTN, TIOCGPTPEER,
};
use rand::{Rng, SeedableRng, rngs::StdRng};

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
const EINTR: i64 = 4;
const EIO: i64 = 5;
const EBADF: i64 = 9;
const EINVAL: i64 = 22;
const ENOTTY: i64 = 25;
const F_DUPFD: u64 = 0;
const F_SETFD: u64 = 2;
const F_DUPFD_CLOEXEC: u64 = 1030;
const FD_CLOEXEC: u64 = 1;
const CLOSE_RANGE_UNSHARE: u64 = 2;
const CLOSE_RANGE_CLOEXEC: u64 = 4;
const CLONE_SIGHAND: u64 = 0x800;
const SIGCHLD: u64 = 17;
const ALL_FDS: u64 = u32::MAX as u64;

/// Session roots. Each starts with fds 0-2 on its terminal, `/dev/pts/<index>`.
const SESSIONS: [(u32, u32); 2] = [(100, 0), (200, 1)];

// ---------------------------------------------------------------------------------------------
// The reference

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    None,
    Master,
    Slave,
}

#[derive(Clone, Debug)]
struct RFd {
    role: Role,
    cloexec: bool,
    /// The PTY index as the events revealed it (what the model can know).
    index: Option<u32>,
    /// The PTY index the kernel really allocated.
    true_index: Option<u32>,
    /// A `/proc/PID/fd` link target for the file.
    target: String,
    /// A directory fd on `/dev/pts` (usable as an openat dirfd).
    dir: bool,
}

impl RFd {
    fn new(role: Role, cloexec: bool, target: impl Into<String>) -> RFd {
        RFd {
            role,
            cloexec,
            index: None,
            true_index: None,
            target: target.into(),
            dir: false,
        }
    }
}

/// An fd table: slot `n` is fd `n`.
type RTable = Vec<Option<RFd>>;

fn lowest_free(t: &RTable, min: usize) -> usize {
    (min..)
        .find(|&i| t.get(i).is_none_or(|e| e.is_none()))
        .unwrap()
}

fn put(t: &mut RTable, fd: usize, e: RFd) {
    if t.len() <= fd {
        t.resize(fd + 1, None);
    }
    t[fd] = Some(e);
}

fn get(t: &RTable, fd: usize) -> Option<&RFd> {
    t.get(fd).and_then(Option::as_ref)
}

fn open_fds(t: &RTable) -> Vec<usize> {
    t.iter()
        .enumerate()
        .filter(|(_, e)| e.is_some())
        .map(|(i, _)| i)
        .collect()
}

#[derive(Clone, Debug)]
struct RProc {
    session: u32,
    table: u64,
    /// Threads besides the leader.
    threads: Vec<u32>,
    /// argv of the running exec (None: not exec'd while traced).
    argv: Option<Vec<String>>,
}

/// One random operation; its fields are interpreted against the current reference state.
#[derive(Clone, Copy, Debug)]
struct Op {
    code: u8,
    x: u32,
    y: u32,
    z: u32,
    b: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OpKind {
    OpenPtmx,
    OpenPts,
    OpenFile,
    Close,
    Dup,
    Dup2,
    Dup3,
    FcntlDup,
    SetCloexec,
    Pipe,
    Single,
    Tiocgptn,
    Tiocgptpeer,
    CloseRange,
    Fork,
    ForkFiles,
    Thread,
    Exec,
    Exit,
    Unshare,
    /// A /proc scan of one process (after all events so far): nothing to correct.
    Scan,
    /// A /proc scan of one process taken now and delivered a few operations later, after
    /// events stamped after the scan started: the timing rules must explain every difference.
    LateScan,
}

/// Operation kinds with their weights.
const OPS: &[(OpKind, u8)] = &[
    (OpKind::OpenPtmx, 3),
    (OpKind::OpenPts, 2),
    (OpKind::OpenFile, 3),
    (OpKind::Close, 4),
    (OpKind::Dup, 2),
    (OpKind::Dup2, 2),
    (OpKind::Dup3, 1),
    (OpKind::FcntlDup, 1),
    (OpKind::SetCloexec, 1),
    (OpKind::Pipe, 1),
    (OpKind::Single, 2),
    (OpKind::Tiocgptn, 2),
    (OpKind::Tiocgptpeer, 2),
    (OpKind::CloseRange, 1),
    (OpKind::Fork, 2),
    (OpKind::ForkFiles, 1),
    (OpKind::Thread, 1),
    (OpKind::Exec, 2),
    (OpKind::Exit, 2),
    (OpKind::Unshare, 1),
    (OpKind::Scan, 1),
    (OpKind::LateScan, 1),
];

fn op_kind(code: u8) -> OpKind {
    let total: u32 = OPS.iter().map(|o| o.1 as u32).sum();
    let mut c = code as u32 % total;
    for &(k, w) in OPS {
        if c < w as u32 {
            return k;
        }
        c -= w as u32;
    }
    unreachable!()
}

struct Ref {
    procs: BTreeMap<u32, RProc>,
    tables: HashMap<u64, RTable>,
    next_table: u64,
    next_pid: u32,
    next_pty: u32,
    ts: u64,
    serial: u32,
}

impl Ref {
    /// The reference and the model in the same starting state: both session roots seeded from
    /// "/proc" with their terminal on fds 0-2.
    fn new() -> (Ref, Model) {
        let mut r = Ref {
            procs: BTreeMap::new(),
            tables: HashMap::new(),
            next_table: 0,
            next_pid: 1000,
            next_pty: SESSIONS.len() as u32,
            ts: 100,
            serial: 0,
        };
        let mut m = Model::new();
        for (root, tty) in SESSIONS {
            let mut t = RTable::new();
            for fd in 0..3 {
                let mut e = RFd::new(Role::Slave, false, format!("/dev/pts/{tty}"));
                e.index = Some(tty);
                e.true_index = Some(tty);
                put(&mut t, fd, e);
            }
            r.next_table += 1;
            r.tables.insert(r.next_table, t);
            r.procs.insert(
                root,
                RProc {
                    session: root,
                    table: r.next_table,
                    threads: Vec::new(),
                    argv: None,
                },
            );
            m.add_session(root, 1);
            m.add_process(root, 1, root, "bash", 1);
            let out = m.reconcile(&r.observe(root, 2));
            assert!(out.seeding);
        }
        assert_eq!(m.stats.drift, 0);
        (r, m)
    }

    fn hdr(&mut self, pid: u32, tid: u32) -> Header {
        self.ts += 1000;
        Header {
            tgid: pid,
            tid,
            session: self.procs[&pid].session,
            ts_ns: self.ts,
        }
    }

    fn table(&self, pid: u32) -> &RTable {
        &self.tables[&self.procs[&pid].table]
    }

    fn table_mut(&mut self, pid: u32) -> &mut RTable {
        let id = self.procs[&pid].table;
        self.tables.get_mut(&id).unwrap()
    }

    fn sharers(&self, table: u64) -> usize {
        self.procs.values().filter(|p| p.table == table).count()
    }

    fn unshare(&mut self, pid: u32) {
        let id = self.procs[&pid].table;
        if self.sharers(id) > 1 {
            let copy = self.tables[&id].clone();
            self.next_table += 1;
            self.tables.insert(self.next_table, copy);
            self.procs.get_mut(&pid).unwrap().table = self.next_table;
        }
    }

    fn drop_unused_tables(&mut self) {
        let used: BTreeSet<u64> = self.procs.values().map(|p| p.table).collect();
        self.tables.retain(|id, _| used.contains(id));
    }

    fn master_alive(&self, index: u32) -> bool {
        self.tables
            .values()
            .flatten()
            .flatten()
            .any(|e| e.role == Role::Master && e.true_index == Some(index))
    }

    /// What /proc would show for `pid` (link targets and fdinfo tty-index).
    fn observe(&self, pid: u32, scan_start_ns: u64) -> ObservedProcess {
        let fds = self
            .table(pid)
            .iter()
            .enumerate()
            .filter_map(|(fd, e)| {
                let e = e.as_ref()?;
                let tty_index = if e.role == Role::Master {
                    e.true_index
                } else {
                    None
                };
                Some((
                    fd as i32,
                    ObservedFd {
                        target: e.target.clone(),
                        tty_index,
                        cloexec: Some(e.cloexec),
                    },
                ))
            })
            .collect();
        ObservedProcess {
            pid,
            ppid: 0,
            comm: String::new(),
            fds,
            scan_start_ns,
            scan_end_ns: scan_start_ns + 10,
        }
    }

    fn syscall(
        &mut self,
        out: &mut Vec<Event>,
        (pid, tid): (u32, u32),
        kind: K,
        ret: i64,
        args: &[u64],
        aux: [i32; 2],
    ) {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        let h = self.hdr(pid, tid);
        out.push(Event::Syscall {
            h,
            kind,
            ret,
            args: a,
            aux,
            user_flags: 0,
        });
    }

    #[allow(clippy::too_many_arguments)]
    fn open_event(
        &mut self,
        out: &mut Vec<Event>,
        (pid, tid): (u32, u32),
        kind: K,
        ret: i64,
        dirfd: i64,
        flags: u64,
        path: String,
    ) {
        let h = self.hdr(pid, tid);
        out.push(Event::Open {
            h,
            kind,
            ret,
            dirfd,
            flags,
            path,
        });
    }

    /// An fd of the table: usually an open one, sometimes any small number (maybe closed).
    fn pick_fd(t: &RTable, y: u32) -> usize {
        let open = open_fds(t);
        if open.is_empty() || y.is_multiple_of(6) {
            (y / 6 % 16) as usize
        } else {
            open[(y / 6) as usize % open.len()]
        }
    }

    /// Like `pick_fd` but prefers PTY masters.
    fn pick_master(t: &RTable, y: u32) -> usize {
        let masters: Vec<usize> = open_fds(t)
            .into_iter()
            .filter(|&fd| get(t, fd).unwrap().role == Role::Master)
            .collect();
        if masters.is_empty() || y.is_multiple_of(4) {
            Self::pick_fd(t, y / 4)
        } else {
            masters[(y / 4) as usize % masters.len()]
        }
    }

    fn dir_fd(t: &RTable, z: u32) -> Option<usize> {
        let dirs: Vec<usize> = open_fds(t)
            .into_iter()
            .filter(|&fd| get(t, fd).unwrap().dir)
            .collect();
        (!dirs.is_empty()).then(|| dirs[z as usize % dirs.len()])
    }

    /// Performs `op` on the reference and appends the events the kernel side would emit.
    /// Performs `op`: appends the events the kernel side would emit, or returns the /proc
    /// observation of a scan and after how many more operations it is to be reconciled.
    fn step(&mut self, op: Op, out: &mut Vec<Event>) -> Option<(ObservedProcess, usize)> {
        let kind = op_kind(op.code);
        if kind != OpKind::Scan && kind != OpKind::LateScan {
            self.step_events(op, out);
            return None;
        }
        let pids: Vec<u32> = self.procs.keys().copied().collect();
        let pid = pids[op.x as usize % pids.len()];
        let obs = self.observe(pid, self.ts + 1);
        if kind == OpKind::LateScan {
            return Some((obs, 1 + (op.z % 8) as usize));
        }
        // The scan tells the model every PTY index (fdinfo for masters, links for slaves).
        let id = self.procs[&pid].table;
        for e in self.tables.get_mut(&id).unwrap().iter_mut().flatten() {
            if e.role != Role::None {
                e.index = e.true_index;
            }
        }
        Some((obs, 0))
    }

    fn step_events(&mut self, op: Op, out: &mut Vec<Event>) {
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
                let ret = match t.get_mut(fd).and_then(Option::take) {
                    // EINTR: the fd is gone all the same.
                    Some(_) if z % 7 == 0 => -EINTR,
                    Some(_) => 0,
                    None => -EBADF,
                };
                self.syscall(out, who, K::Close, ret, &[fd as u64], [-1, -1]);
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
                let ret = if first > last {
                    -EINVAL
                } else {
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
                    0
                };
                self.syscall(
                    out,
                    who,
                    K::CloseRange,
                    ret,
                    &[first, last, flags],
                    [-1, -1],
                );
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

// ---------------------------------------------------------------------------------------------
// Comparison

fn role_of(r: PtyRole) -> Role {
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
fn count_diffs(m: &Model, r: &Ref) -> Vec<String> {
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
struct Driver {
    r: Ref,
    m: Model,
    late: Option<(usize, ObservedProcess)>,
    events: Vec<Event>,
    scans: usize,
}

impl Driver {
    fn new() -> Driver {
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

    fn op(&mut self, i: usize, op: Op) -> Result<(), String> {
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

    fn finish(&mut self) -> Result<(), String> {
        self.deliver_late()?;
        let diffs = full_diffs(&self.m, &self.r);
        if diffs.is_empty() {
            Ok(())
        } else {
            Err(diffs.join("\n"))
        }
    }
}

fn run(ops: &[Op]) -> Result<(), String> {
    let mut d = Driver::new();
    for (i, &op) in ops.iter().enumerate() {
        d.op(i, op)?;
    }
    d.finish()
}

fn op_strategy() -> impl Strategy<Value = Op> {
    (
        any::<u8>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<bool>(),
    )
        .prop_map(|(code, x, y, z, b)| Op { code, x, y, z, b })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn model_matches_reference(ops in proptest::collection::vec(op_strategy(), 1..240)) {
        if let Err(e) = run(&ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lost events and reconciliation

fn random_op(rng: &mut StdRng) -> Op {
    Op {
        code: rng.r#gen(),
        x: rng.r#gen(),
        y: rng.r#gen(),
        z: rng.r#gen(),
        b: rng.r#gen(),
    }
}

/// Events whose loss affects only fd contents (not processes, table sharing or commands).
fn droppable(ev: &Event) -> bool {
    match ev {
        Event::Open { .. } => true,
        Event::Syscall { kind, args, .. } => match kind {
            K::Unshare => false,
            K::CloseRange => args[2] & CLOSE_RANGE_UNSHARE == 0,
            _ => true,
        },
        _ => false,
    }
}

#[test]
fn lost_events_are_repaired_by_reconcile() {
    for seed in 0..16u64 {
        let mut rng = StdRng::seed_from_u64(0x5eed_0000 + seed);
        let (mut r, mut m) = Ref::new();
        let mut dropped = 0;
        let mut events = Vec::new();
        for _ in 0..300 {
            events.clear();
            // Scans are left for the end: a scan in between would repair losses early.
            let _ = r.step(random_op(&mut rng), &mut events);
            for ev in &events {
                if droppable(ev) && rng.gen_bool(0.15) {
                    dropped += 1;
                } else {
                    m.apply(ev);
                }
            }
        }
        assert!(dropped > 0, "seed {seed}: nothing dropped");
        let before = count_diffs(&m, &r);
        assert!(
            !before.is_empty(),
            "seed {seed}: {dropped} lost events left no trace"
        );
        let drift_before = m.stats.drift;

        // Two /proc scans of every live process, after all events: the first only suspects
        // (an event might still be in flight), the second confirms and repairs.
        let pids: Vec<u32> = r.procs.keys().copied().collect();
        for &pid in &pids {
            let out = m.reconcile(&r.observe(pid, r.ts + 500));
            assert_eq!(out.corrections(), 0, "seed {seed} pid {pid}: first scan only suspects");
        }
        assert_eq!(m.stats.drift, drift_before);
        let scan = r.ts + 1_000;
        for &pid in &pids {
            let out = m.reconcile(&r.observe(pid, scan));
            assert!(
                !out.skipped_process && !out.seeding,
                "seed {seed} pid {pid}: {out:?}"
            );
        }
        let after = count_diffs(&m, &r);
        assert!(
            after.is_empty(),
            "seed {seed}: still differs after reconcile: {after:?}"
        );
        assert!(
            m.stats.drift > drift_before,
            "seed {seed}: repairs must count as drift"
        );
        // PTY roles per fd agree too.
        for &pid in &pids {
            let mt = m.table_of(pid).unwrap();
            for (fd, e) in r.table(pid).iter().enumerate() {
                if let Some(e) = e {
                    assert_eq!(
                        role_of(mt.fds[&(fd as i32)].kind.pty_role()),
                        e.role,
                        "seed {seed} pid {pid} fd {fd}"
                    );
                }
            }
        }
        // A second scan finds nothing more.
        let drift = m.stats.drift;
        for &pid in &pids {
            assert_eq!(m.reconcile(&r.observe(pid, scan + 1_000)).corrections(), 0);
        }
        assert_eq!(m.stats.drift, drift);
    }
}

/// The generator exercises what it claims to: every operation kind appears, processes are
/// forked and exit, and PTYs are opened and closed.
#[test]
fn generator_covers_all_operations() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut seen = BTreeSet::new();
    let mut d = Driver::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut max_procs = 0;
    for i in 0..3000 {
        let op = random_op(&mut rng);
        seen.insert(format!("{:?}", op_kind(op.code)));
        d.op(i, op).unwrap();
        max_procs = max_procs.max(d.r.procs.len());
        for ev in &d.events {
            let name = match ev {
                Event::Syscall { kind, ret, .. } => {
                    format!("{kind:?}{}", if *ret < 0 { " err" } else { "" })
                }
                Event::Open { ret, .. } => format!("Open{}", if *ret < 0 { " err" } else { "" }),
                other => format!("{other:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_string(),
            };
            *kinds.entry(name).or_default() += 1;
        }
    }
    d.finish().unwrap();
    assert!(d.scans > 100, "{} scans", d.scans);
    assert!(max_procs >= 4, "at most {max_procs} processes at once");
    assert_eq!(seen.len(), OPS.len());
    for k in [
        "Close",
        "Close err",
        "Dup2",
        "Dup2 err",
        "Dup3 err",
        "Ioctl",
        "Ioctl err",
        "Pipe2",
        "SocketPair",
        "CloseRange",
        "CloseRange err",
        "Clone",
        "Clone3",
        "Fork",
        "Exec",
        "ExecArgv",
        "Exit",
        "Unshare",
        "Open",
        "Open err",
    ] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no {k} event in {kinds:?}"
        );
    }
}
