//! pty-trace's kernel side: the maps shared with userspace and the helpers every probe uses.
//! One file per hook under `probes/`; two backends report the same events, and userspace
//! loads one of them (`kernel::backend` picks it):
//!
//! - **trampolines** (`trampolines.rs`, fentry/fexit, the fast path): programs on the
//!   followed syscalls' own functions and on `kernel_clone`/`execve`; a process outside every
//!   session pays one `TRACKED` lookup per followed syscall and nothing else.
//! - **tracepoints** (kernels that refuse BPF trampolines): `pty_sys_exit`, a raw tracepoint
//!   on `sys_exit` that reads the syscall number and arguments from the saved user registers
//!   and reports every followed syscall that changed an fd table, except close and
//!   close_range; `pty_sys_enter_close`, `pty_sys_enter_close_range` report those when
//!   entered, before the fd numbers they free can be reused by another thread sharing the
//!   table. While attached, every syscall of every task takes the syscall slow path.
//!
//! Both use the scheduler tracepoints: `pty_sched_fork` adds a new child process to `TRACKED`
//! *before it first runs* (the tracepoint fires before `wake_up_new_task`), so no descendant
//! runs untraced; `pty_sched_exec` (with the new image's argv) and `pty_sched_exit` report
//! exec and process death (`_tramp` variants for the trampoline backend: `sched.rs`).
//! Every program is filtered by the `TRACKED` map of thread-group ids.
//!
//! Nothing here interprets fd semantics; userspace does (pure, tested code). What the kernel
//! side could not do (a failed ring buffer reservation, a child TRACKED had no room for) is
//! counted in the per-CPU `COUNTERS` map: loss is never silent.
#![no_std]
#![no_main]

mod probes;

use aya_ebpf::{
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{bpf_ktime_get_ns, bpf_probe_read_kernel, generated},
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use pty_trace_common::{
    COUNTER_SLOTS, Counter, DEFAULT_RING_BYTES, EventHeader, EventType, MAX_SYSCALL_NR, MAX_TRACKED, SyscallKind,
    TracepointOffsets,
};

/// Events to userspace. Userspace may resize it at load time (`--ring-buffer-size`).
#[map]
pub(crate) static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Thread-group ids of traced processes -> session id (the root's pid).
#[map]
pub(crate) static TRACKED: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TRACKED, 0);

/// Syscall number -> `SyscallKind` code (0: not followed). Filled by userspace per arch.
#[map]
pub(crate) static SYSCALL_KINDS: Array<u32> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// What the kernel side could not do, per CPU, one slot per [`Counter`].
#[map]
pub(crate) static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

/// Scheduler tracepoint field offsets, read from tracefs by userspace.
#[map]
pub(crate) static OFFSETS: Array<TracepointOffsets> = Array::with_max_entries(1, 0);

/// x86_64 `struct pt_regs` (the user registers saved at syscall entry, a fixed layout): the
/// byte offset of a window that holds every register the programs read, and where each sits
/// in it, in u64 slots. Userspace refuses to run on other architectures.
pub(crate) const REGS_WINDOW: u64 = 56;
pub(crate) const R10: usize = 0;
pub(crate) const R9: usize = 1;
pub(crate) const R8: usize = 2;
pub(crate) const DX: usize = 5;
pub(crate) const SI: usize = 6;
pub(crate) const DI: usize = 7;
pub(crate) const ORIG_AX: usize = 8;
pub(crate) const CS: usize = 10;
pub(crate) const SP: usize = 12;
pub(crate) const REGS_SLOTS: usize = 13;
/// `__USER_CS`: a 64-bit task. 32-bit (compat) tasks use another syscall table; they are
/// skipped and left to /proc reconciliation.
pub(crate) const USER_CS: u64 = 0x33;

/// The saved user registers at `regs`, in one helper call.
#[inline(always)]
pub(crate) fn read_regs(regs: u64) -> Option<[u64; REGS_SLOTS]> {
    // SAFETY: fault-tolerant kernel read.
    unsafe { bpf_probe_read_kernel((regs + REGS_WINDOW) as *const [u64; REGS_SLOTS]).ok() }
}

/// The current task's saved user registers (inside a syscall: its number and arguments).
#[inline(always)]
pub(crate) fn current_regs() -> Option<[u64; REGS_SLOTS]> {
    // SAFETY: helpers without memory arguments; the task pointer comes from the kernel.
    let regs = unsafe { generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()) };
    if regs == 0 {
        None
    } else {
        read_regs(regs as u64)
    }
}

#[inline(always)]
pub(crate) fn syscall_args(w: &[u64; REGS_SLOTS]) -> [u64; 6] {
    [w[DI], w[SI], w[DX], w[R10], w[R8], w[R9]]
}

/// The followed syscall with number `nr` (`orig_ax`) made by a task with code segment `cs`.
#[inline(always)]
pub(crate) fn syscall_kind(nr: u64, cs: u64) -> Option<SyscallKind> {
    if cs != USER_CS {
        return None;
    }
    // orig_ax is -1 outside a syscall (and has a high bit set for x32): out of the array.
    if nr >= MAX_SYSCALL_NR as u64 {
        return None;
    }
    SyscallKind::from_u32(*SYSCALL_KINDS.get(nr as u32)?)
}

/// Offset of `orig_ax` in `struct pt_regs`; `ip` and `cs` follow it.
pub(crate) const ORIG_AX_OFFSET: u64 = REGS_WINDOW + ORIG_AX as u64 * 8;

#[inline(always)]
pub(crate) fn tracked(tgid: u32) -> Option<u32> {
    // SAFETY: plain u32 value, copied out immediately.
    unsafe { TRACKED.get(&tgid).copied() }
}

/// Counts one thing the kernel side could not do.
#[inline(always)]
pub(crate) fn count(what: Counter) {
    if let Some(p) = COUNTERS.get_ptr_mut(what as u32) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *p += 1 };
    }
}

/// Wake userspace only when enough data waits (see `TracepointOffsets::wakeup_bytes`).
#[inline(always)]
pub(crate) fn wakeup_flag() -> u64 {
    let threshold = OFFSETS.get(0).map(|o| o.wakeup_bytes).unwrap_or(0) as u64;
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
pub(crate) fn header(event_type: EventType, pid_tgid: u64, session: u32) -> EventHeader {
    EventHeader {
        event_type: event_type as u32,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        session,
        // SAFETY: helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Scheduler tracepoint field offsets (read by userspace from tracefs).
#[inline(always)]
pub(crate) fn offsets() -> Option<TracepointOffsets> {
    OFFSETS.get(0).copied()
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
