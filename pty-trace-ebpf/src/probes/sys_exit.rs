//! `pty_sys_exit`: every followed syscall that changed an fd table, from one raw tracepoint
//! (except the ones that free fd numbers, reported at entry: `sys_enter_close.rs`).

use aya_ebpf::{
    helpers::{bpf_get_current_pid_tgid, bpf_probe_read_kernel, bpf_probe_read_user, generated},
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use pty_trace_common::{
    CLONE_PIDFD, CMSG_HEADER_BYTES, Counter, EventType, MSG_CMSG_CLOEXEC, MSGHDR_CONTROL_OFFSET, OpenEvent, PATH_CAPACITY,
    RECEIVED_CAPACITY, ReceivedEvent, SCM_RIGHTS, SOL_SOCKET, SyscallEvent, SyscallKind, TIOCGPTN,
};

use crate::{EVENTS, ORIG_AX_OFFSET, count, header, read_regs, syscall_args, syscall_kind, tracked, wakeup_flag};

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

/// On `raw_syscalls:sys_exit` as a raw tracepoint: one program for every syscall, which reads
/// the number and the arguments from the saved user registers (`ret` is in `ax`; the argument
/// registers are unchanged at exit). Compared with a `sys_enter_X`/`sys_exit_X` pair per
/// followed syscall it builds no perf record, stashes nothing between entry and exit and needs
/// no entry program; in exchange every syscall of every task runs it up to a 24-byte read of
/// the syscall number and one array lookup. (`cargo xtask bench` measures both costs.)
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn pty_sys_exit(ctx: RawTracePointContext) -> i32 {
    // None is the normal "not followed / not traced" exit; loss is counted where it happens.
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
    report_exit(pid_tgid, session, kind, syscall_args(&read_regs(regs)?), ret)
}

/// Reports a followed syscall `kind` of a traced process that returned `ret` with arguments
/// `args`. Shared by both backends: the raw `sys_exit` tracepoint here and the fexit
/// trampolines (`trampolines.rs`).
#[inline(always)]
pub(crate) fn report_exit(pid_tgid: u64, session: u32, kind: SyscallKind, args: [u64; 6], ret: i64) -> Option<()> {
    // Failures change no fd table (close and close_range, whose failures may, are reported
    // at entry by `sys_enter_close.rs` and never reach here). A clone returning 0 is the
    // child's side of it.
    if ret < 0 {
        return None;
    }
    if ret == 0 && kind.is_clone() {
        return None;
    }
    if kind == SyscallKind::RecvMsg {
        return report_received(pid_tgid, session, kind, &args);
    }
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

/// Control messages looked at per `recvmsg` (SCM_RIGHTS may follow SCM_CREDENTIALS).
const MAX_CMSGS: usize = 2;

/// fds a returned `recvmsg` installed: the `SCM_RIGHTS` control message it wrote into the
/// caller's buffer (`msg_controllen` is what the kernel wrote). A `ReceivedEvent` only when
/// there are fds: most `recvmsg` calls carry none, and cost nothing more than two reads.
#[inline(always)]
fn report_received(pid_tgid: u64, session: u32, kind: SyscallKind, args: &[u64; 6]) -> Option<()> {
    // SAFETY: user memory is read with the fault-tolerant helper.
    let [control, controllen]: [u64; 2] = unsafe { bpf_probe_read_user((args[1] + MSGHDR_CONTROL_OFFSET) as *const [u64; 2]).ok()? };
    if control == 0 {
        return None;
    }
    let mut off: u64 = 0;
    for _ in 0..MAX_CMSGS {
        if off + CMSG_HEADER_BYTES > controllen {
            return None;
        }
        // SAFETY: as above.
        let [len, level_type]: [u64; 2] = unsafe { bpf_probe_read_user((control + off) as *const [u64; 2]).ok()? };
        if len < CMSG_HEADER_BYTES || off + len > controllen {
            return None;
        }
        if level_type as u32 as i32 == SOL_SOCKET && (level_type >> 32) as u32 as i32 == SCM_RIGHTS {
            let n = (len - CMSG_HEADER_BYTES) / 4;
            emit_received(pid_tgid, session, kind, control + off + CMSG_HEADER_BYTES, n, args[2] & MSG_CMSG_CLOEXEC != 0);
            return Some(());
        }
        // CMSG_ALIGN: the next header starts at the next multiple of 8.
        off += (len + 7) & !7;
    }
    None
}

#[inline(always)]
fn emit_received(pid_tgid: u64, session: u32, kind: SyscallKind, data: u64, n: u64, cloexec: bool) {
    let Some(mut entry) = EVENTS.reserve::<ReceivedEvent>(0) else {
        count(Counter::LostEvents);
        return;
    };
    let ev = entry.as_mut_ptr();
    let count = if n > RECEIVED_CAPACITY as u64 { RECEIVED_CAPACITY as u64 } else { n };
    // SAFETY: `ev` points at reserved ring buffer memory sized for ReceivedEvent; the fds are
    // read from user memory with the fault-tolerant helper, at most the array's size.
    unsafe {
        (*ev).header = header(EventType::Received, pid_tgid, session);
        (*ev).syscall = kind as u32;
        (*ev).truncated = (n > RECEIVED_CAPACITY as u64) as u32;
        (*ev).cloexec = cloexec as u32;
        (*ev).fds = [-1; RECEIVED_CAPACITY];
        let bytes = ((count * 4) & (RECEIVED_CAPACITY as u64 * 4 * 2 - 1)) as u32;
        let read = if bytes == 0 || bytes > (RECEIVED_CAPACITY * 4) as u32 {
            -1
        } else {
            generated::bpf_probe_read_user((&raw mut (*ev).fds).cast(), bytes, data as *const _)
        };
        (*ev).count = if read == 0 { count as u32 } else { 0 };
    }
    entry.submit(wakeup_flag());
}

#[inline(always)]
fn emit_open(pid_tgid: u64, kind: SyscallKind, p: &Finished, ret: i64) {
    let Some(mut entry) = EVENTS.reserve::<OpenEvent>(0) else {
        count(Counter::LostEvents);
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
        count(Counter::LostEvents);
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

