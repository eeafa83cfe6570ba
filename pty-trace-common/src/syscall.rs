//! The syscalls pty-trace follows, as stable codes shared by both sides.
//!
//! Userspace fills the `SYSCALL_KINDS` array map (indexed by the architecture's syscall number)
//! with these codes; the eBPF programs dispatch on the code, never on raw syscall numbers, so the
//! kernel side is the same on every architecture.

macro_rules! syscall_kinds {
    ($($name:ident = $code:expr),* $(,)?) => {
        /// One code per followed syscall. `0` (absent) means "not followed".
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum SyscallKind { $($name = $code),* }

        impl SyscallKind {
            pub const ALL: &'static [SyscallKind] = &[$(SyscallKind::$name),*];
            pub fn from_u32(v: u32) -> Option<Self> {
                match v { $($code => Some(SyscallKind::$name),)* _ => None }
            }
        }
    };
}

syscall_kinds! {
    // Path-based opens: the kernel side captures the path.
    Open = 1, OpenAt = 2, Creat = 3, OpenAt2 = 4, OpenByHandleAt = 5,
    // Dropping fds.
    Close = 10, CloseRange = 11,
    // Duplicating fds.
    Dup = 20, Dup2 = 21, Dup3 = 22, Fcntl = 23,
    // Pairs written to user memory.
    Pipe = 30, Pipe2 = 31, SocketPair = 33,
    // Sockets.
    Socket = 32, Accept = 34, Accept4 = 35,
    // fds received over a unix socket (SCM_RIGHTS): a `ReceivedEvent`, only when there are any.
    RecvMsg = 36,
    // Anonymous-inode and other "the return value is a new fd" makers.
    EventFd = 40, EventFd2 = 41, EpollCreate = 42, EpollCreate1 = 43, TimerfdCreate = 44,
    Signalfd = 45, Signalfd4 = 46, MemfdCreate = 47, MemfdSecret = 48, PidfdOpen = 49,
    PidfdGetfd = 50, InotifyInit = 51, InotifyInit1 = 52, FanotifyInit = 53,
    PerfEventOpen = 54, Userfaultfd = 55, IoUringSetup = 56, OpenTree = 57, Fsopen = 58,
    Fsmount = 59, Fspick = 60, LandlockCreateRuleset = 61, MqOpen = 62, Bpf = 63,
    // seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER): the listener fd.
    Seccomp = 64,
    // PTYs: TIOCGPTN reveals a master's index, TIOCGPTPEER opens its slave; FIOCLEX/FIONCLEX.
    Ioctl = 70,
    // Process creation and fd-table sharing.
    Clone = 80, Clone3 = 81, Fork = 82, Vfork = 83, Unshare = 84,
    // Exec is not a followed syscall: `sched_process_exec` reports the exec that succeeded,
    // with its argv, and a failed one changes no fd table.
}

impl SyscallKind {
    /// The kernel side reads a path argument for these and emits an `OpenEvent`.
    pub const fn is_path_open(self) -> bool {
        matches!(self, Self::Open | Self::OpenAt | Self::Creat | Self::OpenAt2)
    }

    /// Index of the path argument for path-based opens.
    pub const fn path_arg(self) -> usize {
        match self {
            Self::Open | Self::Creat => 0,
            _ => 1,
        }
    }

    /// The kernel side reads an `int[2]` from user memory at exit, at this argument.
    pub const fn fd_pair_arg(self) -> Option<usize> {
        match self {
            Self::Pipe | Self::Pipe2 => Some(0),
            Self::SocketPair => Some(3),
            _ => None,
        }
    }

    /// Reported when the syscall is entered (from `syscalls:sys_enter_close` and
    /// `sys_enter_close_range`), not when it returns: these free fd numbers, and threads sharing
    /// the fd table may reuse a freed number before the syscall returns. Reported at exit, the
    /// close would reach userspace after the open that reused its number. Reported at entry,
    /// it precedes every reuse (the ring buffer keeps reservation order). Their records carry
    /// `ret` 0: the effect does not depend on it (a close failing with EINTR or EIO has freed
    /// the fd anyway; one failing with EBADF had no fd to free).
    pub const fn reported_at_entry(self) -> bool {
        matches!(self, Self::Close | Self::CloseRange)
    }

    /// Creates a process or thread: `sched_process_fork` reads its flags from the parent's
    /// registers.
    pub const fn is_clone(self) -> bool {
        matches!(self, Self::Clone | Self::Clone3 | Self::Fork | Self::Vfork)
    }
}

/// Byte offset of the arguments (`unsigned long args[]`) in the record of a
/// `syscalls:sys_enter_*` tracepoint (`struct syscall_trace_enter`: the 8-byte common header,
/// `int nr`, padding). Stable across kernels; the loader checks it against tracefs anyway.
pub const SYSCALL_ENTER_ARGS_OFFSET: u32 = 16;

/// `ioctl` request that returns a PTY master's index (`ptsname` uses it).
pub const TIOCGPTN: u64 = 0x8004_5430;
/// `ioctl` request that opens the slave of a PTY master and returns the new fd.
pub const TIOCGPTPEER: u64 = 0x5441;
/// `ioctl` requests that set / clear close-on-exec.
pub const FIOCLEX: u64 = 0x5451;
pub const FIONCLEX: u64 = 0x5450;

/// `recvmsg` flag: received fds are close-on-exec.
pub const MSG_CMSG_CLOEXEC: u64 = 0x4000_0000;
/// `SOL_SOCKET` and `SCM_RIGHTS`: a control message carrying fds.
pub const SOL_SOCKET: i32 = 1;
pub const SCM_RIGHTS: i32 = 1;
/// `struct user_msghdr`: byte offsets of `msg_control` and `msg_controllen` (x86_64).
pub const MSGHDR_CONTROL_OFFSET: u64 = 32;
/// `struct cmsghdr`: `cmsg_len` (8 bytes), `cmsg_level`, `cmsg_type`, then the data.
pub const CMSG_HEADER_BYTES: u64 = 16;

/// Linux `CLONE_*` bits that matter to fd accounting.
pub const CLONE_VM: u64 = 0x0000_0100;
pub const CLONE_FILES: u64 = 0x0000_0400;
pub const CLONE_VFORK: u64 = 0x0000_4000;
pub const CLONE_THREAD: u64 = 0x0001_0000;
pub const CLONE_PIDFD: u64 = 0x0000_1000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_are_unique() {
        for (i, k) in SyscallKind::ALL.iter().enumerate() {
            assert_eq!(SyscallKind::from_u32(*k as u32), Some(*k));
            for other in &SyscallKind::ALL[i + 1..] {
                assert_ne!(*k as u32, *other as u32);
            }
        }
        assert_eq!(SyscallKind::from_u32(0), None);
    }
}
