//! The trampoline backend (BPF fentry/fexit): the same events as the tracepoint backend, from
//! programs attached to the followed syscalls' own functions, so that nothing else pays.
//!
//! The tracepoint backend's `sys_exit` and `sys_enter_close*` hooks put every task of the
//! machine on the syscall slow path while attached, and run a program on every syscall of
//! every process. Here each program sits on one kernel function (a BPF trampoline is a direct
//! call patched into it): a process outside every session pays for a followed syscall only,
//! with one `TRACKED` lookup, and for nothing else.
//!
//! - `pty_fexit_syscall`: fexit of `__x64_sys_<name>` for every followed syscall reported at
//!   exit (userspace loads this one program once per function). Its argument is the task's
//!   saved user registers, exactly what the raw `sys_exit` tracepoint gets, and its return
//!   value the syscall's: the report is the same (`sys_exit::report_exit`).
//! - `pty_fentry_close`: fentry of `__x64_sys_close` and `__x64_sys_close_range`, reported
//!   when entered for the reason `sys_enter_close.rs` gives.
//! - `pty_fentry_clone` / `pty_fexit_clone`: `kernel_clone`, which every fork, vfork, clone and
//!   clone3 goes through, keeps its flags for `sched.rs`'s `pty_sched_fork_tramp` (the child
//!   must be tracked before it first runs, which only the `sched_process_fork` tracepoint
//!   guarantees) and forgets them on return.
//! - `pty_fentry_exec`: `__x64_sys_execve` / `__x64_sys_execveat` keep the address of the
//!   task's saved registers for `pty_sched_exec_tramp`, which reads the new image's argv from
//!   the stack pointer found there.
//!
//! With these two stashes the backend needs no `bpf_get_current_task_btf` (5.11) and no
//! `bpf_task_pt_regs` (5.15): it runs from 5.10 (ring buffer 5.8, trampolines 5.5, the name
//! `kernel_clone` 5.10).

use aya_ebpf::{
    EbpfContext,
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel},
    macros::{fentry, fexit, map},
    maps::HashMap,
    programs::{FEntryContext, FExitContext},
};
use pty_trace_common::MAX_TRACKED;

use super::{sys_enter_close::report_entry, sys_exit::report_exit};
use crate::{CS, ORIG_AX, read_regs, syscall_args, syscall_kind, tracked};

/// Thread id -> the flags its `kernel_clone` in progress was given.
#[map]
pub(crate) static CLONE_FLAGS: HashMap<u32, u64> = HashMap::with_max_entries(MAX_TRACKED, 0);

/// Thread id -> the address of its saved user registers, kept at execve/execveat entry.
#[map]
pub(crate) static EXEC_REGS: HashMap<u32, u64> = HashMap::with_max_entries(MAX_TRACKED, 0);

/// The `n`th 8-byte slot of a trampoline's context: the function's arguments, then (fexit) its
/// return value. Read with `bpf_probe_read_kernel`, not loaded directly: a direct load is
/// checked against the argument's BTF type, and 5.10 refuses it where a compilation unit only
/// forward-declares `struct pt_regs` ("arg0 type FWD is not a struct": `__x64_sys_execveat`
/// and others); a read through the helper is not typed.
#[inline(always)]
fn ctx_slot(ctx: &impl EbpfContext, n: usize) -> Option<u64> {
    // SAFETY: fault-tolerant kernel read inside the trampoline's argument array.
    unsafe { bpf_probe_read_kernel((ctx.as_ptr() as *const u64).add(n)).ok() }
}

/// The traced thread-group's session, and the thread id, of the current task.
#[inline(always)]
fn current_session() -> Option<(u64, u32)> {
    let pid_tgid = bpf_get_current_pid_tgid();
    Some((pid_tgid, tracked((pid_tgid >> 32) as u32)?))
}

#[fexit]
pub fn pty_fexit_syscall(ctx: FExitContext) -> i32 {
    // None is the normal "not traced" exit; loss is counted where it happens.
    let _ = try_fexit_syscall(&ctx);
    0
}

#[inline(always)]
fn try_fexit_syscall(ctx: &FExitContext) -> Option<()> {
    // The `TRACKED` lookup first: it is all a process outside every session pays.
    let (pid_tgid, session) = current_session()?;
    // `long __x64_sys_X(const struct pt_regs *regs)`: the registers, then the return value.
    let regs = ctx_slot(ctx, 0)?;
    let ret = ctx_slot(ctx, 1)? as i64;
    let w = read_regs(regs)?;
    // The number in the registers says which syscall this is (one program serves them all).
    let kind = syscall_kind(w[ORIG_AX], w[CS])?;
    if kind.reported_at_entry() {
        return None;
    }
    report_exit(pid_tgid, session, kind, syscall_args(&w), ret)
}

#[fentry]
pub fn pty_fentry_close(ctx: FEntryContext) -> i32 {
    let _ = try_fentry_close(&ctx);
    0
}

#[inline(always)]
fn try_fentry_close(ctx: &FEntryContext) -> Option<()> {
    let (pid_tgid, session) = current_session()?;
    let w = read_regs(ctx_slot(ctx, 0)?)?;
    let kind = syscall_kind(w[ORIG_AX], w[CS])?;
    if !kind.reported_at_entry() {
        return None;
    }
    report_entry(pid_tgid, session, kind, syscall_args(&w))
}

#[fentry]
pub fn pty_fentry_clone(ctx: FEntryContext) -> i32 {
    if let Some((pid_tgid, _)) = current_session() {
        // `pid_t kernel_clone(struct kernel_clone_args *args)`: `u64 flags` is the first
        // field of `kernel_clone_args` on every kernel that has the function (5.10+).
        // SAFETY: fault-tolerant kernel read.
        if let Some(Ok(flags)) = ctx_slot(&ctx, 0).map(|args| unsafe { bpf_probe_read_kernel(args as *const u64) }) {
            // A full map leaves the flags unknown, as for an io_uring worker: the fork event
            // says so and /proc reconciliation covers it.
            let _ = CLONE_FLAGS.insert(&(pid_tgid as u32), &flags, 0);
        }
    }
    0
}

#[fexit]
pub fn pty_fexit_clone(_ctx: FExitContext) -> i32 {
    if let Some((pid_tgid, _)) = current_session() {
        let _ = CLONE_FLAGS.remove(&(pid_tgid as u32));
    }
    0
}

#[fentry]
pub fn pty_fentry_exec(ctx: FEntryContext) -> i32 {
    if let Some((pid_tgid, _)) = current_session() {
        // The registers stay where they are through the exec; `start_thread` sets the new
        // stack pointer in them before `sched_process_exec` fires.
        if let Some(regs) = ctx_slot(&ctx, 0) {
            let _ = EXEC_REGS.insert(&(pid_tgid as u32), &regs, 0);
        }
    }
    0
}
