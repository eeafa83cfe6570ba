//! The trampoline backend's hooks (BPF fentry/fexit, the fast path): `kernel_clone` and
//! `execve`/`execveat` for what the scheduler hooks read, then fentry on close and close_range
//! and fexit on every other followed syscall's `__x64_sys_*` function. One program of the
//! object is loaded once per function (see `attach_trampoline`).

use aya::{
    Btf, Ebpf,
    programs::{FEntry, FExit, ProgramError},
};
use anyhow::anyhow;
use pty_trace_common::{
    PROG_FENTRY_CLONE, PROG_FENTRY_CLOSE, PROG_FENTRY_EXEC, PROG_FEXIT_CLONE, PROG_FEXIT_SYSCALL, SyscallKind,
};

use super::{
    backend,
    attach::{Attached, Link, keep_fd, load_error, program},
    features::kernel_release,
};
use crate::{
    core::records::ProbeBackend,
    error::{AppError, AppResult},
};

/// The kernel's BTF, which trampolines are attached by.
fn kernel_btf() -> AppResult<Btf> {
    Btf::from_sys_fs().map_err(|e| {
        AppError::UnsupportedKernel(format!("kernel {}: cannot read its BTF ({e}): {}", kernel_release(), backend::fix_for(ProbeBackend::Fentry)))
    })
}

/// Loads one trampoline program on kernel function `func` and keeps its link: false when the
/// kernel's BTF has no such function (nothing can sit on it). The same program is loaded once
/// per function: the kernel ties a tracing program to its target at load time, so it is
/// unloaded again once attached (the link keeps it alive).
fn attach_trampoline(ebpf: &mut Ebpf, btf: &Btf, prog: &str, func: &str, exit: bool, out: &mut Attached<'_>, verbose: bool) -> AppResult<bool> {
    let b = ProbeBackend::Fentry;
    let what = format!("{prog} on {func}");
    let attach_error = |e: ProgramError| {
        AppError::UnsupportedKernel(format!("kernel {}: BPF trampolines refused: attaching {what}: {e:#}", kernel_release()))
    };
    let load_result = if exit {
        program::<FExit>(ebpf, prog)?.load(func, btf)
    } else {
        program::<FEntry>(ebpf, prog)?.load(func, btf)
    };
    match load_result {
        Ok(()) => {}
        Err(ProgramError::Btf(aya::BtfError::UnknownBtfTypeName { .. })) => return Ok(false),
        Err(e) => return Err(load_error(b, &what, &e, verbose)),
    }
    if exit {
        let p: &mut FExit = program(ebpf, prog)?;
        let id = p.attach().map_err(attach_error)?;
        out.links.push(Link::Exit(p.take_link(id).map_err(|e| anyhow!("{what}: {e}"))?));
        out.prog_fds.push(keep_fd(p.fd())?);
        p.unload().map_err(|e| anyhow!("{what}: {e}"))?;
    } else {
        let p: &mut FEntry = program(ebpf, prog)?;
        let id = p.attach().map_err(attach_error)?;
        out.links.push(Link::Entry(p.take_link(id).map_err(|e| anyhow!("{what}: {e}"))?));
        out.prog_fds.push(keep_fd(p.fd())?);
        p.unload().map_err(|e| anyhow!("{what}: {e}"))?;
    }
    Ok(true)
}

/// A kernel function every kernel the trampoline backend supports has: its absence is an error.
fn attach_required_trampoline(ebpf: &mut Ebpf, btf: &Btf, prog: &str, func: &str, exit: bool, out: &mut Attached<'_>, verbose: bool) -> AppResult<()> {
    if attach_trampoline(ebpf, btf, prog, func, exit, out, verbose)? {
        return Ok(());
    }
    Err(AppError::UnsupportedKernel(format!(
        "kernel {}: its BTF has no function {func}, which the fentry probes hook: {}",
        kernel_release(),
        backend::fix_for(ProbeBackend::Fentry)
    )))
}

/// The trampoline backend's hooks that keep what the scheduler hooks read: `kernel_clone`'s
/// flags, the registers of `execve`/`execveat`.
pub(super) fn attach_trampoline_helpers(ebpf: &mut Ebpf, out: &mut Attached<'_>, verbose: bool) -> AppResult<()> {
    let btf = kernel_btf()?;
    attach_required_trampoline(ebpf, &btf, PROG_FENTRY_CLONE, "kernel_clone", false, out, verbose)?;
    attach_required_trampoline(ebpf, &btf, PROG_FEXIT_CLONE, "kernel_clone", true, out, verbose)?;
    for func in ["__x64_sys_execve", "__x64_sys_execveat"] {
        attach_required_trampoline(ebpf, &btf, PROG_FENTRY_EXEC, func, false, out, verbose)?;
    }
    Ok(())
}

/// The trampoline backend's syscall hooks: fentry on close and close_range, then fexit on the
/// other followed syscalls. Returns the followed syscalls whose function the kernel's BTF does
/// not have (left to /proc reconciliation, like syscalls the kernel lacks).
pub(super) fn attach_syscall_trampolines(
    ebpf: &mut Ebpf,
    followed: &[(&'static str, SyscallKind)],
    out: &mut Attached<'_>,
    verbose: bool,
) -> AppResult<Vec<&'static str>> {
    let btf = kernel_btf()?;
    let mut missing = Vec::new();
    // Entry hooks first, for the reason `attach_syscall_tracepoints` gives.
    let (entry, exit): (Vec<_>, Vec<_>) = followed.iter().partition(|(_, k)| k.reported_at_entry());
    for (list, is_exit) in [(entry, false), (exit, true)] {
        for &(name, kind) in list {
            // fork and vfork make no fd; their flags come from `kernel_clone`.
            if matches!(kind, SyscallKind::Fork | SyscallKind::Vfork) {
                continue;
            }
            let func = format!("__x64_sys_{name}");
            let prog = if is_exit { PROG_FEXIT_SYSCALL } else { PROG_FENTRY_CLOSE };
            if !attach_trampoline(ebpf, &btf, prog, &func, is_exit, out, verbose)? {
                missing.push(name);
            }
        }
    }
    Ok(missing)
}
