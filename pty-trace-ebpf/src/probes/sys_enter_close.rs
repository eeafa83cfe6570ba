//! `pty_sys_enter_close`, `pty_sys_enter_close_range`: the syscalls that free fd numbers,
//! reported when they are entered.
//!
//! Why at entry: threads (and `CLONE_FILES` processes) share one fd table, and the kernel
//! hands out the lowest free number. Thread A's `close(5)` frees 5 inside the syscall; thread
//! B's `open` can get 5 and reach its `sys_exit` before A reaches its own. Reported from
//! `sys_exit`, userspace would read "open 5, close 5" and lose B's fd. The record made here is
//! reserved before the number is freed, so it precedes every record of its reuse: the ring
//! buffer hands records to userspace in reservation order. The outcome is not needed: a close
//! failing with EINTR or EIO has freed the fd anyway, one failing with EBADF had nothing to
//! free, and userspace checks close_range's arguments the way the kernel does
//! (`SyscallKind::reported_at_entry`).
//!
//! These are the per-syscall `syscalls:sys_enter_*` tracepoints: they run for these two
//! syscalls only, so nothing else pays for them. Compat (32-bit) syscalls do not fire them,
//! as `sys_exit` skips them too. `sys_exit` does not report these kinds (userspace leaves them
//! out of `SYSCALL_KINDS`).

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::tracepoint, programs::TracePointContext};
use pty_trace_common::{Counter, EventType, SYSCALL_ENTER_ARGS_OFFSET, SyscallEvent, SyscallKind};

use crate::{EVENTS, count, header, tracked, wakeup_flag};

#[tracepoint]
pub fn pty_sys_enter_close(ctx: TracePointContext) -> u32 {
    // None is the normal "not traced" exit; loss is counted where it happens.
    let _ = try_enter::<1>(&ctx, SyscallKind::Close);
    0
}

#[tracepoint]
pub fn pty_sys_enter_close_range(ctx: TracePointContext) -> u32 {
    let _ = try_enter::<3>(&ctx, SyscallKind::CloseRange);
    0
}

/// Sends the first `N` arguments of the syscall being entered as a [`SyscallEvent`].
#[inline(always)]
fn try_enter<const N: usize>(ctx: &TracePointContext, kind: SyscallKind) -> Option<()> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let session = tracked((pid_tgid >> 32) as u32)?;
    // SAFETY: fault-tolerant read inside the tracepoint record (`unsigned long args[]`).
    let read: [u64; N] = unsafe { ctx.read_at::<[u64; N]>(SYSCALL_ENTER_ARGS_OFFSET as usize).ok()? };
    let mut args = [0u64; 6];
    args[..N].copy_from_slice(&read);
    report_entry(pid_tgid, session, kind, args)
}

/// Reports that a traced process entered `kind` (close or close_range) with `args`. Shared
/// by both backends: these tracepoints and the fentry trampolines (`trampolines.rs`).
#[inline(always)]
pub(crate) fn report_entry(pid_tgid: u64, session: u32, kind: SyscallKind, args: [u64; 6]) -> Option<()> {
    let Some(mut entry) = EVENTS.reserve::<SyscallEvent>(0) else {
        count(Counter::LostEvents);
        return None;
    };
    entry.write(SyscallEvent {
        header: header(EventType::Syscall, pid_tgid, session),
        syscall: kind as u32,
        _pad: 0,
        ret: 0,
        args,
        aux: [-1, -1],
        user_flags: 0,
    });
    entry.submit(wakeup_flag());
    Some(())
}
