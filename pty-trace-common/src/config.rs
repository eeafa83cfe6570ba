//! Load-time configuration the eBPF programs read, and the names of maps and programs.

/// Field offsets of scheduler tracepoints, read by userspace from tracefs `format` files at
/// load time (they changed across kernels: 6.x moved `sched_process_fork`'s comms to
/// `__data_loc`), because Rust eBPF cannot emit CO-RE relocations.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct TracepointOffsets {
    pub fork_child_pid: u32,
    pub exec_filename_loc: u32,
    pub exec_old_pid: u32,
    /// `u32::MAX` when the kernel's `sched_process_exit` has no `group_dead` field; the
    /// programs then treat the exit of the thread-group leader as the process's exit.
    pub exit_group_dead: u32,
    /// Records are submitted without waking userspace until this many bytes are waiting
    /// (userspace drains on a short timer anyway): one wakeup per record would cost more than
    /// the record.
    pub wakeup_bytes: u32,
    /// Non-zero (`pty-trace watch`): an exec by an untracked process is sent too, with session
    /// 0 and no argv, so userspace can match it and start following it as a new session.
    pub watch_execs: u32,
}

#[cfg(feature = "user")]
unsafe impl aya::Pod for TracepointOffsets {}

/// Map names (the eBPF statics and userspace lookups must agree).
pub const MAP_EVENTS: &str = "EVENTS";
pub const MAP_TRACKED: &str = "TRACKED";
pub const MAP_SYSCALL_KINDS: &str = "SYSCALL_KINDS";
pub const MAP_COUNTERS: &str = "COUNTERS";
pub const MAP_OFFSETS: &str = "OFFSETS";

/// Program names.
pub const PROG_SYS_EXIT: &str = "pty_sys_exit";
pub const PROG_SYS_ENTER_CLOSE: &str = "pty_sys_enter_close";
pub const PROG_SYS_ENTER_CLOSE_RANGE: &str = "pty_sys_enter_close_range";
pub const PROG_FORK: &str = "pty_sched_fork";
pub const PROG_EXEC: &str = "pty_sched_exec";
pub const PROG_EXIT: &str = "pty_sched_exit";
/// The trampoline backend's programs and its variants of the fork and exec tracepoints.
pub const PROG_FEXIT_SYSCALL: &str = "pty_fexit_syscall";
pub const PROG_FENTRY_CLOSE: &str = "pty_fentry_close";
pub const PROG_FENTRY_CLONE: &str = "pty_fentry_clone";
pub const PROG_FEXIT_CLONE: &str = "pty_fexit_clone";
pub const PROG_FENTRY_EXEC: &str = "pty_fentry_exec";
pub const PROG_FORK_TRAMP: &str = "pty_sched_fork_tramp";
pub const PROG_EXEC_TRAMP: &str = "pty_sched_exec_tramp";

/// Size of the `SYSCALL_KINDS` array (covers every syscall number on x86_64 and arm64).
pub const MAX_SYSCALL_NR: u32 = 1024;
/// Default ring buffer size (bytes, a power of two multiple of the page size).
pub const DEFAULT_RING_BYTES: u32 = 16 * 1024 * 1024;
/// Most processes tracked at once.
pub const MAX_TRACKED: u32 = 65536;

/// Slots of the per-CPU `COUNTERS` map: what the kernel side could not do. Userspace sums
/// each slot over the CPUs and reports it (snapshot, summary, live view): loss is never silent.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// A ring buffer reservation failed (the buffer was full): the event is lost.
    LostEvents = 0,
    /// A new child could not be added to `TRACKED` (the map was full): it runs untraced.
    UntrackedChildren = 1,
    /// `watch`: an untracked process's exec could not be reported (the ring buffer was full):
    /// if it matched, it is found by the next look through /proc instead, late.
    WatchExecsLost = 2,
}

/// Number of `COUNTERS` slots.
pub const COUNTER_SLOTS: u32 = 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_pinned() {
        assert_eq!(core::mem::size_of::<TracepointOffsets>(), 6 * 4);
        assert_eq!(Counter::LostEvents as u32, 0);
        assert_eq!(Counter::WatchExecsLost as u32 + 1, COUNTER_SLOTS, "COUNTER_SLOTS covers every counter");
    }
}
