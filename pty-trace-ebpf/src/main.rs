//! pty-trace's kernel side.
//!
//! Four programs, all filtered first by the `TRACKED` map of thread-group ids so that nothing
//! outside a traced session costs more than one hash lookup:
//! - `pty_sys_exit`: a raw tracepoint on `sys_exit`. It reads the syscall number and arguments
//!   from the saved user registers and reports every followed syscall that changed an fd table.
//! - `pty_sched_fork`: adds a new child process to `TRACKED` *before it first runs* (the
//!   tracepoint fires before `wake_up_new_task`), so no descendant runs untraced.
//! - `pty_sched_exec` (with the new image's argv), `pty_sched_exit`: exec and process death.
//!
//! Nothing here interprets fd semantics; userspace does (pure, tested code). Every failed ring
//! buffer reservation is counted in the per-CPU `LOST` map: loss is never silent.
//!
//! Why not BTF trampolines (fentry/fexit), which would spare other processes the syscall slow
//! path: on kernels that refuse tracing programs (the machines this was built on answer
//! BPF_PROG_LOAD of any BPF_PROG_TYPE_TRACING with EPERM), they are not there to be used.
#![no_std]
#![no_main]

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_RB_AVAIL_DATA, BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::{
        bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_kernel_str_bytes, bpf_probe_read_user, generated,
    },
    macros::{fentry, map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{FEntryContext, RawTracePointContext, TracePointContext},
};
use pty_trace_common::{
    ARG_CAPACITY, ARGV_CAPACITY, ARGV_MAX_ARGS, CLONE_PIDFD, CLONE_THREAD, CLONE_VFORK, CLONE_VM,
    DEFAULT_RING_BYTES, EventHeader, EventType, ExecArgvEvent, ExecEvent, ExitEvent, ForkEvent,
    MAX_SYSCALL_NR, MAX_TRACKED, OpenEvent, PATH_CAPACITY, SyscallEvent, SyscallKind, TIOCGPTN,
    TracepointOffsets,
};

/// Events to userspace. Userspace may resize it at load time (`--ring-buffer-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_BYTES, 0);

/// Thread-group ids of traced processes -> session id (the root's pid).
#[map]
static TRACKED: HashMap<u32, u32> = HashMap::with_max_entries(MAX_TRACKED, 0);

/// Syscall number -> `SyscallKind` code (0: not followed). Filled by userspace per arch.
#[map]
static SYSCALL_KINDS: Array<u32> = Array::with_max_entries(MAX_SYSCALL_NR, 0);

/// Failed ring buffer reservations, per CPU.
#[map]
static LOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Scheduler tracepoint field offsets, read from tracefs by userspace.
#[map]
static OFFSETS: Array<TracepointOffsets> = Array::with_max_entries(1, 0);

/// What userspace needs to know of a finished syscall: its arguments plus the flags that clone3
/// and openat2 keep in user memory.
struct Finished {
    session: u32,
    args: [u64; 6],
    /// `clone3`'s `clone_args.flags` or `openat2`'s `open_how.flags`.
    user_flags: u64,
    /// `clone3`'s `clone_args.pidfd` pointer.
    user_ptr: u64,
}

/// `-EBADF`: a close that failed with it changed nothing.
const EBADF: i64 = 9;

/// x86_64 `struct pt_regs` (the user registers saved at syscall entry, a fixed layout): the
/// byte offset of a window that holds every register the programs read, and where each sits
/// in it, in u64 slots. Userspace refuses to run on other architectures.
const REGS_WINDOW: u64 = 56;
const R10: usize = 0;
const R9: usize = 1;
const R8: usize = 2;
const DX: usize = 5;
const SI: usize = 6;
const DI: usize = 7;
const ORIG_AX: usize = 8;
const CS: usize = 10;
const SP: usize = 12;
const REGS_SLOTS: usize = 13;
/// `__USER_CS`: a 64-bit task. 32-bit (compat) tasks use another syscall table; they are
/// skipped and left to /proc reconciliation.
const USER_CS: u64 = 0x33;

/// The saved user registers at `regs`, in one helper call.
#[inline(always)]
fn read_regs(regs: u64) -> Option<[u64; REGS_SLOTS]> {
    // SAFETY: fault-tolerant kernel read.
    unsafe { bpf_probe_read_kernel((regs + REGS_WINDOW) as *const [u64; REGS_SLOTS]).ok() }
}

/// The current task's saved user registers (inside a syscall: its number and arguments).
#[inline(always)]
fn current_regs() -> Option<[u64; REGS_SLOTS]> {
    // SAFETY: helpers without memory arguments; the task pointer comes from the kernel.
    let regs = unsafe { generated::bpf_task_pt_regs(generated::bpf_get_current_task_btf()) };
    if regs == 0 {
        None
    } else {
        read_regs(regs as u64)
    }
}

#[inline(always)]
fn syscall_args(w: &[u64; REGS_SLOTS]) -> [u64; 6] {
    [w[DI], w[SI], w[DX], w[R10], w[R8], w[R9]]
}

/// The followed syscall with number `nr` (`orig_ax`) made by a task with code segment `cs`.
#[inline(always)]
fn syscall_kind(nr: u64, cs: u64) -> Option<SyscallKind> {
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
const ORIG_AX_OFFSET: u64 = REGS_WINDOW + ORIG_AX as u64 * 8;

#[inline(always)]
fn tracked(tgid: u32) -> Option<u32> {
    // SAFETY: plain u32 value, copied out immediately.
    unsafe { TRACKED.get(&tgid).copied() }
}

#[inline(always)]
fn count_lost() {
    if let Some(p) = LOST.get_ptr_mut(0) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while we run.
        unsafe { *p += 1 };
    }
}

/// Wake userspace only when enough data waits (see `TracepointOffsets::wakeup_bytes`).
#[inline(always)]
fn wakeup_flag() -> u64 {
    let threshold = OFFSETS.get(0).map(|o| o.wakeup_bytes).unwrap_or(0) as u64;
    if EVENTS.query(BPF_RB_AVAIL_DATA as u64) >= threshold {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

#[inline(always)]
fn header(event_type: EventType, pid_tgid: u64, session: u32) -> EventHeader {
    EventHeader {
        event_type: event_type as u32,
        tgid: (pid_tgid >> 32) as u32,
        tid: pid_tgid as u32,
        session,
        // SAFETY: helper without arguments.
        ts_ns: unsafe { bpf_ktime_get_ns() },
    }
}

/// Sends the argv array at user address `argv` (NULL-terminated).
#[inline(always)]
fn emit_argv(pid_tgid: u64, session: u32, argv: u64) {
    let Some(mut entry) = EVENTS.reserve::<ExecArgvEvent>(0) else {
        count_lost();
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

/// On `raw_syscalls:sys_exit` as a raw tracepoint: one program for every syscall, which reads
/// the number and the arguments from the saved user registers (`ret` is in `ax`; the argument
/// registers are unchanged at exit). Compared with a `sys_enter_X`/`sys_exit_X` pair per
/// followed syscall it builds no perf record, stashes nothing between entry and exit and needs
/// no entry program; in exchange every syscall of every task runs it up to a 24-byte read of
/// the syscall number and one array lookup. (`cargo xtask bench` measures both costs.)
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn pty_sys_exit(ctx: RawTracePointContext) -> i32 {
    let _ = try_sys_exit(&ctx);
    0
}

fn try_sys_exit(ctx: &RawTracePointContext) -> Option<()> {
    let regs: u64 = ctx.arg(0);
    // Cheapest test first: most syscalls on the machine (read, write, futex, ...) are not
    // followed, and they are done after one 24-byte read and one array lookup, before the
    // `TRACKED` hash lookup.
    // SAFETY: fault-tolerant kernel read of orig_ax, ip, cs.
    let nr_ip_cs: [u64; 3] = unsafe { bpf_probe_read_kernel((regs + ORIG_AX_OFFSET) as *const [u64; 3]).ok()? };
    let kind = syscall_kind(nr_ip_cs[0], nr_ip_cs[2])?;
    let pid_tgid = bpf_get_current_pid_tgid();
    let session = tracked((pid_tgid >> 32) as u32)?;
    let ret: i64 = ctx.arg(1);
    // Failures change no fd table, except close (the fd is gone even on EINTR/EIO). A clone
    // returning 0 is the child's side of it. Exec is reported by `sched_process_exec` (with its
    // argv) and only when it succeeded: its syscall exit says nothing more.
    if kind.is_exec() || (ret < 0 && !(kind == SyscallKind::Close && ret != -EBADF)) {
        return None;
    }
    if ret == 0 && kind.is_clone() {
        return None;
    }
    let args = syscall_args(&read_regs(regs)?);
    let mut f = Finished {
        session,
        args,
        user_flags: 0,
        user_ptr: 0,
    };
    // SAFETY: user pointers are read with the fault-tolerant helper.
    match kind {
        SyscallKind::Clone3 => unsafe {
            f.user_flags = bpf_probe_read_user(args[0] as *const u64).unwrap_or(0);
            f.user_ptr = bpf_probe_read_user((args[0] + 8) as *const u64).unwrap_or(0);
        },
        SyscallKind::OpenAt2 => unsafe {
            f.user_flags = bpf_probe_read_user(args[2] as *const u64).unwrap_or(0);
        },
        _ => {}
    }
    if kind.is_path_open() {
        emit_open(pid_tgid, kind, &f, ret);
    } else {
        emit_syscall(pid_tgid, kind, &f, ret);
    }
    Some(())
}

#[inline(always)]
fn emit_open(pid_tgid: u64, kind: SyscallKind, p: &Finished, ret: i64) {
    let Some(mut entry) = EVENTS.reserve::<OpenEvent>(0) else {
        count_lost();
        return;
    };
    let ev = entry.as_mut_ptr();
    let (dirfd, path, flags) = match kind {
        SyscallKind::Open => (-100i64, p.args[0], p.args[1]),
        // creat(path, mode) == open(path, O_CREAT|O_WRONLY|O_TRUNC, mode)
        SyscallKind::Creat => (-100i64, p.args[0], 0o1101),
        SyscallKind::OpenAt2 => (p.args[0] as i32 as i64, p.args[1], p.user_flags),
        _ => (p.args[0] as i32 as i64, p.args[1], p.args[2]),
    };
    // SAFETY: `ev` points at reserved ring buffer memory sized for OpenEvent.
    unsafe {
        (*ev).header = header(EventType::Open, pid_tgid, p.session);
        (*ev).syscall = kind as u32;
        (*ev).ret = ret;
        (*ev).dirfd = dirfd;
        (*ev).flags = flags;
        let n = generated::bpf_probe_read_user_str(
            (&raw mut (*ev).path).cast(),
            PATH_CAPACITY as u32,
            path as *const _,
        );
        (*ev).path_len = if n > 0 { (n - 1) as u32 } else { 0 };
    }
    entry.submit(wakeup_flag());
}

#[inline(always)]
fn emit_syscall(pid_tgid: u64, kind: SyscallKind, p: &Finished, ret: i64) {
    let mut aux = [-1i32; 2];
    // SAFETY: user pointers are read with the fault-tolerant helper.
    unsafe {
        if let Some(arg) = kind.fd_pair_arg() {
            aux = bpf_probe_read_user(p.args[arg] as *const [i32; 2]).unwrap_or([-1, -1]);
        } else if kind == SyscallKind::Ioctl && p.args[1] as u32 as u64 == TIOCGPTN {
            aux[0] = bpf_probe_read_user(p.args[2] as *const i32).unwrap_or(-1);
        } else if kind == SyscallKind::Clone && p.args[0] & CLONE_PIDFD != 0 {
            aux[0] = bpf_probe_read_user(p.args[2] as *const i32).unwrap_or(-1);
        } else if kind == SyscallKind::Clone3 && p.user_flags & CLONE_PIDFD != 0 {
            aux[0] = bpf_probe_read_user(p.user_ptr as *const i32).unwrap_or(-1);
        }
    }
    let Some(mut entry) = EVENTS.reserve::<SyscallEvent>(0) else {
        count_lost();
        return;
    };
    entry.write(SyscallEvent {
        header: header(EventType::Syscall, pid_tgid, p.session),
        syscall: kind as u32,
        _pad: 0,
        ret,
        args: p.args,
        aux,
        user_flags: p.user_flags,
    });
    entry.submit(wakeup_flag());
}

#[inline(always)]
fn offsets() -> Option<TracepointOffsets> {
    OFFSETS.get(0).copied()
}

#[tracepoint]
pub fn pty_sched_fork(ctx: TracePointContext) -> u32 {
    let _ = try_sched_fork(&ctx);
    0
}

fn try_sched_fork(ctx: &TracePointContext) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let session = tracked((pid_tgid >> 32) as u32).ok_or(0)?;
    let off = offsets().ok_or(0)?;
    // SAFETY: offset read from this kernel's tracefs format file.
    let child: i32 = unsafe { ctx.read_at(off.fork_child_pid as usize)? };
    // The tracepoint runs inside the parent's clone syscall: its arguments, in the parent's
    // saved user registers, say whether the child is a thread and whether it shares the fd
    // table. (A task created by the kernel on a process's behalf, an io_uring worker, comes
    // from another syscall: flags unknown.)
    let regs = current_regs();
    let kind = regs.as_ref().and_then(|w| syscall_kind(w[ORIG_AX], w[CS]));
    let (flags, known) = match (kind, regs) {
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
    };
    if flags & CLONE_THREAD == 0 {
        // Before the child's first instruction: it can never run untraced.
        let _ = TRACKED.insert(&(child as u32), &session, 0);
    }
    let Some(mut entry) = EVENTS.reserve::<ForkEvent>(0) else {
        count_lost();
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
    let _ = try_sched_exec(&ctx);
    0
}

fn try_sched_exec(ctx: &TracePointContext) -> Result<(), i32> {
    let pid_tgid = bpf_get_current_pid_tgid();
    let session = tracked((pid_tgid >> 32) as u32).ok_or(0)?;
    let off = offsets().ok_or(0)?;
    // SAFETY: offsets read from this kernel's tracefs format file.
    let loc: u32 = unsafe { ctx.read_at(off.exec_filename_loc as usize)? };
    let old_tid: i32 = unsafe { ctx.read_at(off.exec_old_pid as usize)? };
    // The new image is in place and its stack pointer points at argc, then the argv array:
    // argv as the program (and `ps`) sees it, read before anything can change it.
    if let Some(w) = current_regs() {
        emit_argv(pid_tgid, session, w[SP] + 8);
    }
    let Some(mut entry) = EVENTS.reserve::<ExecEvent>(0) else {
        count_lost();
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
        // SAFETY: offset read from this kernel's tracefs format file.
        unsafe { ctx.read_at::<u8>(off.exit_group_dead as usize)? != 0 }
    };
    if tid != tgid {
        // A thread created before its flags were known may have been added by its tid.
        let _ = TRACKED.remove(&tid);
    }
    if !group_dead {
        return Ok(());
    }
    let _ = TRACKED.remove(&tgid);
    let Some(mut entry) = EVENTS.reserve::<ExitEvent>(0) else {
        count_lost();
        return Ok(());
    };
    entry.write(ExitEvent {
        header: header(EventType::Exit, pid_tgid, session),
    });
    entry.submit(wakeup_flag());
    Ok(())
}

/// Not used for tracing: `pty-trace doctor` loads it to find out whether this kernel allows
/// BTF trampolines (the fast path of the fast-path row).
#[fentry]
pub fn pty_doctor_fentry(_ctx: FEntryContext) -> u32 {
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
