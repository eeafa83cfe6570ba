//! Ring-buffer records: a common [`EventHeader`] followed by one payload per event type.

/// Longest path captured by `open`-family events (bytes, including the trailing NUL).
pub const PATH_CAPACITY: usize = 256;
/// Bytes of argv captured per exec (NUL-separated arguments).
pub const ARGV_CAPACITY: usize = 1024;
/// Most fds one `ReceivedEvent` carries (the rest are left to /proc reconciliation).
pub const RECEIVED_CAPACITY: usize = 16;
/// Most argv entries read per exec (the verifier needs a bound).
pub const ARGV_MAX_ARGS: usize = 24;
/// Longest single argument captured.
pub const ARG_CAPACITY: usize = 256;

/// What follows the header. One name per kind, used the same on both sides.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// A tracked syscall returned (close and close_range: was entered, see
    /// [`crate::SyscallKind::reported_at_entry`]): [`SyscallEvent`].
    Syscall = 1,
    /// An `open`-family syscall returned: [`OpenEvent`] (carries the path).
    Open = 2,
    /// A tracked task forked a process or thread: [`ForkEvent`].
    Fork = 3,
    /// A tracked process completed an exec: [`ExecEvent`].
    Exec = 4,
    /// The argv of an `execve`/`execveat` about to run: [`ExecArgvEvent`].
    ExecArgv = 5,
    /// The last thread of a tracked process exited: [`ExitEvent`].
    Exit = 6,
    /// A tracked task received fds over a unix socket (`recvmsg` with `SCM_RIGHTS`):
    /// [`ReceivedEvent`].
    Received = 7,
}

impl EventType {
    pub fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            1 => Self::Syscall,
            2 => Self::Open,
            3 => Self::Fork,
            4 => Self::Exec,
            5 => Self::ExecArgv,
            6 => Self::Exit,
            7 => Self::Received,
            _ => return None,
        })
    }
}

/// Common prefix of every record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventType`] as `u32`.
    pub event_type: u32,
    /// Process id (thread-group id) of the task that caused the event.
    pub tgid: u32,
    /// Thread id of that task.
    pub tid: u32,
    /// Session (root pid) the kernel's `TRACKED` map has for `tgid`; 0 when unknown.
    pub session: u32,
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds, comparable with userspace's clock.
    pub ts_ns: u64,
}

/// A tracked syscall returned, or for the kinds [`crate::SyscallKind::reported_at_entry`], was
/// entered. `syscall` is a [`crate::SyscallKind`] code.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SyscallEvent {
    pub header: EventHeader,
    pub syscall: u32,
    pub _pad: u32,
    /// The syscall's return value (negative errno on failure); 0 for a record made at entry.
    pub ret: i64,
    /// Raw arguments, read from the saved user registers at syscall exit (at entry: from the
    /// syscall tracepoint's record; the arguments the syscall does not have are 0).
    pub args: [u64; 6],
    /// Values read from user memory at exit: the two fds of `pipe`/`pipe2`/`socketpair`,
    /// the PTY index written by `ioctl(TIOCGPTN)`, the pidfd written by `clone(CLONE_PIDFD)`.
    pub aux: [i32; 2],
    /// Flags read from user memory at exit (`clone3`'s `clone_args.flags`, `openat2`'s
    /// `open_how.flags`).
    pub user_flags: u64,
}

/// An `open`-family syscall returned.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OpenEvent {
    pub header: EventHeader,
    pub syscall: u32,
    /// Bytes of `path` used, without the trailing NUL (0 when unreadable).
    pub path_len: u32,
    pub ret: i64,
    /// Directory fd the path is relative to (`AT_FDCWD` = -100 for `open`/`creat`).
    pub dirfd: i64,
    /// Open flags (`O_CLOEXEC`, `O_DIRECTORY`, ...).
    pub flags: u64,
    pub path: [u8; PATH_CAPACITY],
}

/// A tracked task created a process or a thread (scheduler `sched_process_fork`).
/// The header's `tgid`/`tid` are the parent's.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForkEvent {
    pub header: EventHeader,
    pub child_tid: u32,
    /// 1 when the flags below were known from the clone syscall's arguments.
    pub flags_known: u32,
    /// `CLONE_*` flags of the clone/clone3/fork/vfork that created the child.
    pub clone_flags: u64,
}

/// A tracked process completed an exec (scheduler `sched_process_exec`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecEvent {
    pub header: EventHeader,
    /// Thread id before the exec (differs from `header.tid` when a non-leader thread execs).
    pub old_tid: u32,
    pub filename_len: u32,
    pub filename: [u8; PATH_CAPACITY],
}

/// argv of a successful exec, read from the new image's stack by `sched_process_exec` just
/// before its `ExecEvent`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ExecArgvEvent {
    pub header: EventHeader,
    /// Arguments captured (at most [`ARGV_MAX_ARGS`]).
    pub argc: u32,
    /// Bytes of `argv` used.
    pub len: u32,
    /// 1 when arguments were cut off (too many or too long).
    pub truncated: u32,
    pub _pad: u32,
    /// NUL-separated arguments.
    pub argv: [u8; ARGV_CAPACITY],
}

/// fds installed in a tracked process by `recvmsg` (`SCM_RIGHTS`), read from the control
/// message it returned. Which files they are is not known here: userspace looks them up.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceivedEvent {
    pub header: EventHeader,
    /// The syscall (a [`crate::SyscallKind`] code).
    pub syscall: u32,
    /// fds in `fds` (at most [`RECEIVED_CAPACITY`]).
    pub count: u32,
    /// 1 when the message carried more fds than `fds` holds.
    pub truncated: u32,
    /// 1 when they were received close-on-exec (`MSG_CMSG_CLOEXEC`).
    pub cloexec: u32,
    pub fds: [i32; RECEIVED_CAPACITY],
}

/// The last thread of a tracked process exited (`sched_process_exit` with `group_dead`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub header: EventHeader,
}

#[cfg(feature = "user")]
mod pod {
    unsafe impl aya::Pod for super::EventHeader {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::size_of;

    #[test]
    fn record_sizes_are_pinned() {
        assert_eq!(size_of::<EventHeader>(), 24);
        assert_eq!(size_of::<SyscallEvent>(), 24 + 8 + 8 + 48 + 8 + 8);
        assert_eq!(size_of::<OpenEvent>(), 24 + 8 + 8 + 8 + 8 + PATH_CAPACITY);
        assert_eq!(size_of::<ForkEvent>(), 24 + 16);
        assert_eq!(size_of::<ExecEvent>(), 24 + 8 + PATH_CAPACITY);
        assert_eq!(size_of::<ExecArgvEvent>(), 24 + 16 + ARGV_CAPACITY);
        assert_eq!(size_of::<ExitEvent>(), 24);
        assert_eq!(size_of::<ReceivedEvent>(), 24 + 16 + 4 * RECEIVED_CAPACITY);
    }

    #[test]
    fn event_type_round_trips() {
        for t in [
            EventType::Syscall,
            EventType::Open,
            EventType::Fork,
            EventType::Exec,
            EventType::ExecArgv,
            EventType::Exit,
            EventType::Received,
        ] {
            assert_eq!(EventType::from_u32(t as u32), Some(t));
        }
        assert_eq!(EventType::from_u32(0), None);
        assert_eq!(EventType::from_u32(99), None);
    }
}
