//! What each followed syscall does to an fd table, from its arguments and return value.
//!
//! This is the one place that knows Linux fd semantics (dup2 closing its target, which flags
//! mean close-on-exec, which `bpf` commands return fds, ...). Constants are spelled out because
//! they are ABI and must match the kernel exactly.

use crate::core::machine::DevId;
use pty_trace_common::{CLONE_FILES, FIOCLEX, FIONCLEX, SyscallKind, TIOCGPTN, TIOCGPTPEER};

use super::{Model, fd::FdEntry, fd::FdKind, fd::classify_open_path, event::Header};

const O_CLOEXEC: u64 = 0o2000000;
const O_DIRECTORY: u64 = 0o200000;
const AT_FDCWD: i64 = -100;
const EBADF: i64 = 9;
const F_DUPFD: u64 = 0;
const F_SETFD: u64 = 2;
const F_DUPFD_CLOEXEC: u64 = 1030;
const FD_CLOEXEC: u64 = 1;
const CLOSE_RANGE_UNSHARE: u64 = 1 << 1;
const CLOSE_RANGE_CLOEXEC: u64 = 1 << 2;
const SOCK_CLOEXEC: u64 = O_CLOEXEC;
const MFD_CLOEXEC: u64 = 1;
const FAN_CLOEXEC: u64 = 1;
const PERF_FLAG_FD_CLOEXEC: u64 = 8;
const FS_CLOEXEC: u64 = 1; // FSOPEN_CLOEXEC, FSMOUNT_CLOEXEC, FSPICK_CLOEXEC
const LANDLOCK_CREATE_RULESET_VERSION: u64 = 1;
/// `bpf(2)` commands whose return value is a new fd.
const SECCOMP_SET_MODE_FILTER: u64 = 1;
const SECCOMP_FILTER_FLAG_NEW_LISTENER: u64 = 1 << 3;
const BPF_FD_COMMANDS: &[u64] = &[0, 5, 7, 13, 14, 17, 18, 19, 28, 30, 32, 33, 36];

pub(super) fn apply_open(m: &mut Model, h: &Header, fd: i32, dirfd: i64, flags: u64, path: &str, devpts: Option<DevId>) {
    let full = resolve(m, h.tgid, dirfd, path);
    let (kind, pty_index) = classify_open_path(&full, flags & O_DIRECTORY != 0);
    let mut e = FdEntry::new(kind, full, flags & O_CLOEXEC != 0);
    e.pty_index = pty_index;
    if kind.pty_role() != super::fd::PtyRole::None {
        e.pty_devpts = devpts;
    }
    install(m, h, fd, e);
}

/// fds `recvmsg` installed (`SCM_RIGHTS`), each as /proc showed it when the event was read, or
/// of unknown kind when it was gone by then (its close is on its way as an event).
pub(super) fn apply_received(m: &mut Model, h: &Header, fds: &[super::event::ReceivedFd], cloexec: bool) {
    for r in fds {
        let e = match &r.seen {
            Some(o) => o.entry(cloexec),
            None => FdEntry::new(FdKind::Unknown, "scm_rights", cloexec),
        };
        let master = (e.kind == FdKind::PtyMaster).then_some(e.pty_index).flatten();
        install(m, h, r.fd, e);
        if let Some(i) = master {
            m.note_master(i);
        }
    }
}

/// Joins a relative path with its directory fd's target when the model knows it.
fn resolve(m: &Model, pid: u32, dirfd: i64, path: &str) -> String {
    if path.starts_with('/') || dirfd == AT_FDCWD {
        return path.to_string();
    }
    match m.table_of(pid).and_then(|t| t.fds.get(&(dirfd as i32))) {
        Some(d) if d.kind == FdKind::Directory && d.target.starts_with('/') => {
            format!("{}/{}", d.target.trim_end_matches('/'), path)
        }
        _ => path.to_string(),
    }
}

/// Records a new fd with its provenance. Overwriting an fd the model thought open means a
/// close was missed: that is drift.
fn install(m: &mut Model, h: &Header, fd: i32, mut e: FdEntry) {
    if fd < 0 {
        return;
    }
    e.opened_ns = h.ts_ns;
    e.opener_pid = h.tgid;
    e.command = m.procs.get(&h.tgid).and_then(|p| p.command);
    let Some(t) = m.table_mut(h.tgid) else { return };
    let Some(old) = t.install(fd, e, h.ts_ns) else { return };
    // An fd a /proc scan found, which started before this event was stamped, may be this very
    // fd seen early: replacing it is no evidence of a missed close.
    if old.from_proc && old.opened_ns <= h.ts_ns {
        return;
    }
    let new = t.fds.get(&fd).map(|e| format!("{} {}", e.kind.as_str(), e.target)).unwrap_or_default();
    m.stats.drift("missed_close", 1);
    m.stats.example(|| {
        format!(
            "missed_close: pid {} got fd {fd} ({new}) while the model had {} {} (cloexec {}, opened by {})",
            h.tgid,
            old.kind.as_str(),
            old.target,
            old.cloexec,
            old.opener_pid
        )
    });
}

/// A copy of `old` at `new` (dup family). When `old` is unknown to the model (opened before
/// tracing and not yet seeded) the copy is `Unknown` and /proc fills it in.
fn dup(m: &mut Model, h: &Header, old: i32, new: i32, cloexec: bool) {
    if old == new {
        return;
    }
    let src = m.table_of(h.tgid).and_then(|t| t.fds.get(&old)).cloned();
    let mut e = match src {
        Some(e) => e,
        None => {
            m.request_reconcile(h.tgid);
            FdEntry::new(FdKind::Unknown, format!("dup of fd {old}"), false)
        }
    };
    e.cloexec = cloexec;
    // A copy of a PTY end is the same PTY: it keeps when and by whom the PTY was opened, so
    // the leak evidence sees one PTY, not one per fd.
    let provenance = (e.kind.pty_role() != super::fd::PtyRole::None).then_some((e.opened_ns, e.opener_pid, e.command));
    // dup2/dup3 close the target silently first; that is not a missed close.
    if let Some(t) = m.table_mut(h.tgid) {
        t.remove(new, h.ts_ns);
    }
    install(m, h, new, e);
    if let Some((opened_ns, opener_pid, command)) = provenance
        && let Some(e) = m.table_mut(h.tgid).and_then(|t| t.fds.get_mut(&new))
    {
        (e.opened_ns, e.opener_pid, e.command) = (opened_ns, opener_pid, command);
    }
}

fn new_fd(m: &mut Model, h: &Header, ret: i64, kind: FdKind, target: &str, cloexec: bool) {
    if ret >= 0 && ret <= i32::MAX as i64 {
        install(m, h, ret as i32, FdEntry::new(kind, target, cloexec));
    }
}

pub(super) fn apply_syscall(
    m: &mut Model,
    h: &Header,
    kind: SyscallKind,
    ret: i64,
    a: &[u64; 6],
    aux: [i32; 2],
    user_flags: u64,
) {
    use FdKind::*;
    use SyscallKind as S;
    let fd0 = a[0] as i32;
    let ce = |flags: u64, bit: u64| flags & bit != 0;
    match kind {
        // Both come from the kernel when entered, with `ret` 0 (`SyscallKind::reported_at_entry`):
        // a close frees the fd whatever it returns (EINTR, EIO), and one that will fail with
        // EBADF has no fd to free. A `ret` from the syscall's exit is honoured all the same.
        S::Close => {
            if ret != -EBADF
                && let Some(t) = m.table_mut(h.tgid)
            {
                t.remove(fd0, h.ts_ns);
            }
        }
        // close_range fails (EINVAL) before touching anything when its arguments are bad; the
        // kernel reports it before knowing, so the arguments are checked here as it checks them.
        S::CloseRange if ret == 0 && close_range_valid(a, m.abi) => {
            if a[2] & CLOSE_RANGE_UNSHARE != 0 {
                m.unshare_table(h.tgid);
            }
            if let Some(t) = m.table_mut(h.tgid) {
                t.close_range(a[0] as u32, a[1] as u32, a[2] & CLOSE_RANGE_CLOEXEC != 0, h.ts_ns);
            }
        }
        // A failed dup changed nothing (a failed dup2/dup3 does not close its target).
        S::Dup if ret >= 0 => dup(m, h, fd0, ret as i32, false),
        S::Dup2 if ret >= 0 => dup(m, h, fd0, a[1] as i32, false),
        S::Dup3 if ret >= 0 => dup(m, h, fd0, a[1] as i32, ce(a[2], O_CLOEXEC)),
        S::Fcntl => match a[1] & 0xffff_ffff {
            F_DUPFD if ret >= 0 => dup(m, h, fd0, ret as i32, false),
            F_DUPFD_CLOEXEC if ret >= 0 => dup(m, h, fd0, ret as i32, true),
            F_SETFD => {
                if let Some(t) = m.table_mut(h.tgid) {
                    t.set_cloexec(fd0, a[2] & FD_CLOEXEC != 0, h.ts_ns);
                }
            }
            _ => {}
        },
        S::Pipe | S::Pipe2 if ret == 0 => {
            let cloexec = kind == S::Pipe2 && ce(a[1], O_CLOEXEC);
            for fd in aux {
                new_fd(m, h, fd as i64, Pipe, "pipe", cloexec);
            }
        }
        S::SocketPair if ret == 0 => {
            for fd in aux {
                new_fd(m, h, fd as i64, Socket, "socket", ce(a[1], SOCK_CLOEXEC));
            }
        }
        S::Socket => new_fd(m, h, ret, Socket, "socket", ce(a[1], SOCK_CLOEXEC)),
        S::Accept => new_fd(m, h, ret, Socket, "socket", false),
        S::Accept4 => new_fd(m, h, ret, Socket, "socket", ce(a[3], SOCK_CLOEXEC)),
        S::EventFd => new_fd(m, h, ret, AnonInode, "anon_inode:[eventfd]", false),
        S::EventFd2 => new_fd(m, h, ret, AnonInode, "anon_inode:[eventfd]", ce(a[1], O_CLOEXEC)),
        S::EpollCreate => new_fd(m, h, ret, AnonInode, "anon_inode:[eventpoll]", false),
        S::EpollCreate1 => {
            new_fd(m, h, ret, AnonInode, "anon_inode:[eventpoll]", ce(a[0], O_CLOEXEC))
        }
        S::TimerfdCreate => {
            new_fd(m, h, ret, AnonInode, "anon_inode:[timerfd]", ce(a[1], O_CLOEXEC))
        }
        // signalfd on an existing signalfd (fd != -1) updates it and returns the same fd.
        S::Signalfd if fd0 == -1 => new_fd(m, h, ret, AnonInode, "anon_inode:[signalfd]", false),
        S::Signalfd4 if fd0 == -1 => {
            new_fd(m, h, ret, AnonInode, "anon_inode:[signalfd]", ce(a[3], O_CLOEXEC))
        }
        S::MemfdCreate => new_fd(m, h, ret, Memfd, "/memfd:", ce(a[1], MFD_CLOEXEC)),
        S::MemfdSecret => new_fd(m, h, ret, Memfd, "/secretmem", ce(a[0], O_CLOEXEC)),
        S::PidfdOpen => new_fd(m, h, ret, AnonInode, "anon_inode:[pidfd]", true),
        S::PidfdGetfd => new_fd(m, h, ret, Unknown, "pidfd_getfd", true),
        S::InotifyInit => new_fd(m, h, ret, AnonInode, "anon_inode:inotify", false),
        S::InotifyInit1 => new_fd(m, h, ret, AnonInode, "anon_inode:inotify", ce(a[0], O_CLOEXEC)),
        S::FanotifyInit => {
            new_fd(m, h, ret, AnonInode, "anon_inode:[fanotify]", ce(a[0], FAN_CLOEXEC))
        }
        S::PerfEventOpen => new_fd(
            m,
            h,
            ret,
            AnonInode,
            "anon_inode:[perf_event]",
            ce(a[4], PERF_FLAG_FD_CLOEXEC),
        ),
        S::Userfaultfd => new_fd(m, h, ret, AnonInode, "anon_inode:[userfaultfd]", ce(a[0], O_CLOEXEC)),
        S::IoUringSetup => new_fd(m, h, ret, AnonInode, "anon_inode:[io_uring]", true),
        S::OpenTree => new_fd(m, h, ret, File, "open_tree", ce(a[2], O_CLOEXEC)),
        S::Fsopen => new_fd(m, h, ret, AnonInode, "anon_inode:[fscontext]", ce(a[1], FS_CLOEXEC)),
        S::Fsmount => new_fd(m, h, ret, File, "fsmount", ce(a[1], FS_CLOEXEC)),
        S::Fspick => new_fd(m, h, ret, AnonInode, "anon_inode:[fscontext]", ce(a[2], FS_CLOEXEC)),
        S::LandlockCreateRuleset if a[2] & LANDLOCK_CREATE_RULESET_VERSION == 0 => {
            new_fd(m, h, ret, AnonInode, "anon_inode:[landlock-ruleset]", true)
        }
        S::MqOpen => new_fd(m, h, ret, File, "mqueue", true),
        S::Bpf if BPF_FD_COMMANDS.contains(&(a[0] & 0xffff_ffff)) => {
            new_fd(m, h, ret, AnonInode, "anon_inode:bpf", true)
        }
        // The supervisor's end of a user-notification filter; the kernel makes it close-on-exec.
        S::Seccomp if a[0] == SECCOMP_SET_MODE_FILTER && a[1] & SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 && ret > 0 => {
            new_fd(m, h, ret, AnonInode, "anon_inode:seccomp notify", true)
        }
        S::OpenByHandleAt => new_fd(m, h, ret, File, "open_by_handle_at", ce(a[2], O_CLOEXEC)),
        S::Ioctl => apply_ioctl(m, h, ret, a, aux),
        S::Clone | S::Clone3 => {
            // The pidfd of clone(CLONE_PIDFD) is installed in the parent after the child's
            // table was copied, so it lands in the parent only (or in both, when shared).
            if ret > 0 && aux[0] >= 0 {
                let flags = if kind == S::Clone { a[0] } else { user_flags };
                if flags & pty_trace_common::CLONE_PIDFD != 0 {
                    new_fd(m, h, aux[0] as i64, AnonInode, "anon_inode:[pidfd]", true);
                }
            }
        }
        S::Unshare if ret == 0 && a[0] & CLONE_FILES != 0 => m.unshare_table(h.tgid),
        _ => {}
    }
}

/// close_range(first, last, flags) gets past its argument checks: known flags, first <= last.
/// (With CLOSE_RANGE_UNSHARE it can still fail with ENOMEM when copying the table: negligible,
/// and /proc reconciliation would repair it.)
fn close_range_valid(a: &[u64; 6], abi: super::KernelAbi) -> bool {
    let known = if abi.close_range_cloexec { CLOSE_RANGE_UNSHARE | CLOSE_RANGE_CLOEXEC } else { CLOSE_RANGE_UNSHARE };
    a[2] & !known == 0 && a[0] as u32 <= a[1] as u32
}

fn apply_ioctl(m: &mut Model, h: &Header, ret: i64, a: &[u64; 6], aux: [i32; 2]) {
    let fd = a[0] as i32;
    let request = a[1] & 0xffff_ffff;
    if request == TIOCGPTN && ret == 0 && aux[0] >= 0 {
        // Only a PTY master answers TIOCGPTN: this also corrects a master opened through a
        // path the classifier could not recognise.
        if let Some(t) = m.table_mut(h.tgid) {
            // Recorded even when the fd is not known yet: an older scan must not seed it.
            t.set_pty_master(fd, aux[0] as u32, h.ts_ns);
            m.note_master(aux[0] as u32);
        }
    } else if request == TIOCGPTPEER && ret >= 0 {
        let master = m.table_of(h.tgid).and_then(|t| t.fds.get(&fd));
        let (index, devpts) = (master.and_then(|e| e.pty_index), master.and_then(|e| e.pty_devpts));
        let target = index.map_or_else(|| "/dev/pts/?".to_string(), |i| format!("/dev/pts/{i}"));
        let mut e = FdEntry::new(FdKind::PtySlave, target, a[2] & O_CLOEXEC != 0);
        e.pty_index = index;
        // The peer lives on its master's instance.
        e.pty_devpts = devpts;
        install(m, h, ret as i32, e);
    } else if (request == FIOCLEX || request == FIONCLEX)
        && ret == 0
        && let Some(t) = m.table_mut(h.tgid)
    {
        t.set_cloexec(fd, request == FIOCLEX, h.ts_ns);
    }
}
