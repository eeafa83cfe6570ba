//! The tracepoint backend's syscall hooks (kernels that refuse BPF trampolines): the
//! `syscalls:sys_enter_close` and `_close_range` tracepoints, then the raw `sys_exit` one.
//! While they are attached every task of the machine takes the syscall slow path.

use aya::{
    Ebpf,
    programs::{RawTracePoint, TracePoint},
};
use anyhow::anyhow;
use pty_trace_common::{PROG_SYS_ENTER_CLOSE, PROG_SYS_ENTER_CLOSE_RANGE, PROG_SYS_EXIT, SyscallKind};

use super::{
    attach::{Attached, Link, keep_fd, load_error, permission_error, program},
    tracefs::check_syscall_enter_layout,
};
use crate::{core::records::ProbeBackend, error::AppResult};

/// The tracepoint backend's syscall hooks: `syscalls:sys_enter_close` and `_close_range`, then
/// the raw `sys_exit` tracepoint.
pub(super) fn attach_syscall_tracepoints(
    ebpf: &mut Ebpf,
    tracefs: &std::path::Path,
    followed: &[(&'static str, SyscallKind)],
    out: &mut Attached<'_>,
    verbose: bool,
) -> AppResult<()> {
    let b = ProbeBackend::Tracepoint;
    // Attached before sys_exit: there is no moment when the opens that reuse a freed fd
    // number are reported and the closes that free it are not.
    for (prog, name) in [(PROG_SYS_ENTER_CLOSE, "close"), (PROG_SYS_ENTER_CLOSE_RANGE, "close_range")] {
        if !followed.iter().any(|&(n, _)| n == name) {
            continue;
        }
        let event = format!("sys_enter_{name}");
        check_syscall_enter_layout(tracefs, &event)?;
        let p: &mut TracePoint = program(ebpf, prog)?;
        p.load().map_err(|e| load_error(b, prog, &e, verbose))?;
        out.prog_fds.push(keep_fd(p.fd())?);
        let id = p.attach("syscalls", &event).map_err(|e| {
            permission_error(&format!("attach {prog} to syscalls:{event}"), format!("{e:#}"))
        })?;
        out.links.push(Link::Tp(p.take_link(id).map_err(|e| anyhow!("{prog}: {e}"))?));
    }
    let p: &mut RawTracePoint = program(ebpf, PROG_SYS_EXIT)?;
    p.load().map_err(|e| load_error(b, PROG_SYS_EXIT, &e, verbose))?;
    out.prog_fds.push(keep_fd(p.fd())?);
    let id = p.attach("sys_exit").map_err(|e| {
        permission_error(&format!("attach {PROG_SYS_EXIT} to raw tracepoint sys_exit"), format!("{e:#}"))
    })?;
    out.links.push(Link::Raw(p.take_link(id).map_err(|e| anyhow!("{PROG_SYS_EXIT}: {e}"))?));
    Ok(())
}
