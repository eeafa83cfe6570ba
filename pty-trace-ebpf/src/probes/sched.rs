//! The scheduler hooks: `pty_sched_fork` (a new child is tracked before it first runs),
//! `pty_sched_exec` (the new image and its argv), `pty_sched_exit` (a process is gone).
//!
//! Fork and exec read the syscall's saved user registers (the clone flags; the new stack,
//! where argv lies). The tracepoint backend finds them with `bpf_task_pt_regs` (5.15+); the
//! trampoline backend's `_tramp` variants take what its fentry programs kept for the task
//! (`trampolines.rs`: the flags `kernel_clone` was given, the registers of `execve`), and so
//! need no helper newer than 5.8.

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, generated},
    macros::tracepoint,
    programs::TracePointContext,
};
use pty_trace_common::{
    ARG_CAPACITY, ARGV_CAPACITY, ARGV_MAX_ARGS, CLONE_THREAD, CLONE_VFORK, CLONE_VM, Counter, EventType,
    ExecArgvEvent, ExecEvent, ExitEvent, ForkEvent, SyscallKind,
};

use aya_log_ebpf::{error, warn};

use super::trampolines::{CLONE_FLAGS, EXEC_REGS};
use crate::{
    CS, DI, EVENTS, ORIG_AX, REGS_SLOTS, SP, TRACKED, count, current_regs, header, offsets, read_regs, syscall_kind,
    tracked, wakeup_flag,
};

/// Sends the argv array at user address `argv` (NULL-terminated).
#[inline(always)]
fn emit_argv(pid_tgid: u64, session: u32, argv: u64) {
    let Some(mut entry) = EVENTS.reserve::<ExecArgvEvent>(0) else {
        count(Counter::LostEvents);
        return;
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at reserved ring buffer memory sized for ExecArgvEvent.
    unsafe {
        (*ev).header = header(EventType::ExecArgv, pid_tgid, session);
        (*ev).argc = 0;
        (*ev).truncated = 0;
        (*ev)._pad = 0;
        let mut off: usize = 0;
        let mut argc: u32 = 0;
        for i in 0..ARGV_MAX_ARGS {
            let ptr: u64 = bpf_probe_read_user((argv + (i as u64) * 8) as *const u64).unwrap_or(0);
            if ptr == 0 {
                break;
            }
            if off > ARGV_CAPACITY - ARG_CAPACITY {
                (*ev).truncated = 1;
                break;
            }
            let dst = (&raw mut (*ev).argv).cast::<u8>().add(off);
            let n = generated::bpf_probe_read_user_str(
                dst.cast(),
                ARG_CAPACITY as u32,
                ptr as *const _,
            );
            if n <= 0 {
                break;
            }
            if n as usize == ARG_CAPACITY {
                (*ev).truncated = 1;
            }
            off += (n as usize) & (ARG_CAPACITY * 2 - 1);
            argc += 1;
            if i == ARGV_MAX_ARGS - 1 {
                (*ev).truncated = 1;
            }
        }
        (*ev).argc = argc;
        (*ev).len = off as u32;
    }
    entry.submit(wakeup_flag());
}

/// A field of the tracepoint's record, at the offset userspace read from tracefs. A read
/// that fails means the offsets do not fit this kernel: logged (`--debug-kernel`), and the
/// event is not sent, so /proc reconciliation repairs what it would have said.
#[inline(always)]
fn field<T>(ctx: &TracePointContext, what: &str, offset: u32) -> Result<T, i32> {
    // SAFETY: a fault-tolerant read inside the tracepoint record.
    unsafe { ctx.read_at::<T>(offset as usize) }.map_err(|e| {
        error!(ctx, "{}: cannot read offset {}: {}", what, offset, e);
        0
    })
}

// Each program's `try_` function returns early (Err/None) for the normal "not ours" case (a
// process that is not traced); the failures worth knowing are counted or logged where they
// happen, so the result is dropped on purpose.

#[tracepoint]
pub fn pty_sched_fork(ctx: TracePointContext) -> u32 {
    let _ = try_sched_fork(&ctx, clone_flags_from_regs);
    0
}

#[tracepoint]
pub fn pty_sched_fork_tramp(ctx: TracePointContext) -> u32 {
    let _ = try_sched_fork(&ctx, stashed_clone_flags);
    0
}

/// The flags of the clone being made and whether they are known, from the parent's saved
/// user registers. The tracepoint runs inside the parent's clone syscall: its arguments say
/// whether the child is a thread and whether it shares the fd table. (A task created by the
/// kernel on a process's behalf, an io_uring worker, comes from another syscall: flags
/// unknown.)
#[inline(always)]
fn clone_flags_from_regs(_tid: u32) -> (u64, u32) {
    let regs = current_regs();
    let kind = regs.as_ref().and_then(|w| syscall_kind(w[ORIG_AX], w[CS]));
    match (kind, regs) {
        (Some(SyscallKind::Clone), Some(w)) => (w[DI], 1),
        // SAFETY: fault-tolerant user read of `clone_args.flags`.
        (Some(SyscallKind::Clone3), Some(w)) => {
            match unsafe { bpf_probe_read_user(w[DI] as *const u64) } {
                Ok(f) => (f, 1),
                Err(_) => (0, 0),
            }
        }
        (Some(SyscallKind::Fork), _) => (0, 1),
        (Some(SyscallKind::Vfork), _) => (CLONE_VM | CLONE_VFORK, 1),
        _ => (0, 0),
    }
}

/// The flags `kernel_clone` was given by this thread (kept by `pty_fentry_clone`). Every
/// fork, vfork, clone and clone3 goes through `kernel_clone`; an io_uring worker does not,
/// and finds nothing: flags unknown, as with registers.
#[inline(always)]
fn stashed_clone_flags(tid: u32) -> (u64, u32) {
    // SAFETY: plain u64 value, copied out immediately.
    match unsafe { CLONE_FLAGS.get(&tid) } {
        Some(f) => (*f, 1),
        None => (0, 0),
    }
}

#[inline(always)]
fn try_sched_fork(ctx: &TracePointContext, flags_of: impl FnOnce(u32) -> (u64, u32)) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let session = tracked((pid_tgid >> 32) as u32).ok_or(0)?;
    let off = offsets().ok_or(0)?;
    let child: i32 = field(ctx, "sched_process_fork: child_pid", off.fork_child_pid)?;
    let (flags, known) = flags_of(pid_tgid as u32);
    if flags & CLONE_THREAD == 0 {
        // Before the child's first instruction: it can never run untraced, unless TRACKED is
        // full, and then it is counted (userspace shows `untracked_children`).
        if let Err(e) = TRACKED.insert(&(child as u32), &session, 0) {
            count(Counter::UntrackedChildren);
            warn!(ctx, "TRACKED has no room: pid {} of session {} runs untraced ({})", child, session, e);
        }
    }
    let Some(mut entry) = EVENTS.reserve::<ForkEvent>(0) else {
        count(Counter::LostEvents);
        return Ok(());
    };
    entry.write(ForkEvent {
        header: header(EventType::Fork, pid_tgid, session),
        child_tid: child as u32,
        flags_known: known,
        clone_flags: flags,
    });
    entry.submit(wakeup_flag());
    Ok(())
}

#[tracepoint]
pub fn pty_sched_exec(ctx: TracePointContext) -> u32 {
    let _ = try_sched_exec(&ctx, |_| current_regs());
    0
}

#[tracepoint]
pub fn pty_sched_exec_tramp(ctx: TracePointContext) -> u32 {
    let _ = try_sched_exec(&ctx, stashed_exec_regs);
    0
}

/// The saved user registers of the thread that called execve/execveat (kept by
/// `pty_fentry_exec` under its thread id, which the exec may have changed: `old_tid`).
#[inline(always)]
fn stashed_exec_regs(old_tid: u32) -> Option<[u64; REGS_SLOTS]> {
    // SAFETY: plain u64 value, copied out immediately.
    let regs = unsafe { EXEC_REGS.get(&old_tid).copied() }?;
    let _ = EXEC_REGS.remove(&old_tid);
    read_regs(regs)
}

#[inline(always)]
fn try_sched_exec(ctx: &TracePointContext, regs_of: impl FnOnce(u32) -> Option<[u64; REGS_SLOTS]>) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let off = offsets().ok_or(0)?;
    // `watch`: an untracked process's exec goes up as session 0 (no argv: userspace reads
    // /proc/PID/cmdline, only for the execs it matches); otherwise only traced processes'.
    let session = match tracked((pid_tgid >> 32) as u32) {
        Some(s) => s,
        None if off.watch_execs != 0 => 0,
        None => return Err(0),
    };
    let loc: u32 = field(ctx, "sched_process_exec: filename", off.exec_filename_loc)?;
    let old_tid: i32 = field(ctx, "sched_process_exec: old_pid", off.exec_old_pid)?;
    // The new image is in place and its stack pointer points at argc, then the argv array:
    // argv as the program (and `ps`) sees it, read before anything can change it.
    if session != 0
        && let Some(w) = regs_of(old_tid as u32)
    {
        emit_argv(pid_tgid, session, w[SP] + 8);
    }
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count(if session == 0 { Counter::WatchExecsLost } else { Counter::LostEvents });
        return Ok(());
    };
    let ev = entry.as_mut_ptr();
    // SAFETY: `ev` points at reserved memory sized for ExecEvent; the `__data_loc` string lies
    // inside the tracepoint record.
    unsafe {
        (*ev).header = header(EventType::Exec, pid_tgid, session);
        (*ev).old_tid = old_tid as u32;
        let src = ctx.as_ptr().cast::<u8>().add((loc & 0xffff) as usize);
        let n = bpf_probe_read_kernel_str_bytes(src, &mut (*ev).filename)
            .map(|s| s.len())
            .unwrap_or(0);
        (*ev).filename_len = n as u32;
    }
    entry.submit(wakeup_flag());
    Ok(())
}

#[tracepoint]
pub fn pty_sched_exit(ctx: TracePointContext) -> u32 {
    let _ = try_sched_exit(&ctx);
    0
}

fn try_sched_exit(ctx: &TracePointContext) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let tgid = (pid_tgid >> 32) as u32;
    let tid = pid_tgid as u32;
    let session = tracked(tgid).ok_or(0)?;
    let off = offsets().ok_or(0)?;
    let group_dead = if off.exit_group_dead == u32::MAX {
        tid == tgid
    } else {
        field::<u8>(ctx, "sched_process_exit: group_dead", off.exit_group_dead)? != 0
    };
    if tid != tgid {
        // A thread created before its flags were known may have been added by its tid.
        let _ = TRACKED.remove(&tid);
    }
    // What the trampoline backend kept for this thread (a clone or an exec that failed).
    let _ = CLONE_FLAGS.remove(&tid);
    let _ = EXEC_REGS.remove(&tid);
    if !group_dead {
        return Ok(());
    }
    let _ = TRACKED.remove(&tgid);
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count(Counter::LostEvents);
        return Ok(());
    };
    entry.write(ExitEvent {
        header: header(EventType::Exit, pid_tgid, session),
    });
    entry.submit(wakeup_flag());
    Ok(())
}

