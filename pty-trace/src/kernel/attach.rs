//! What attaching a program of the object leaves behind, shared by the loader (`probes.rs`) and
//! each backend's hooks (`attach_tracepoints.rs`, `attach_trampolines.rs`): the links, our
//! programs' fds, and the one-line errors a load or attach failure becomes.

use anyhow::anyhow;
use aya::{
    Ebpf,
    programs::{
        ProgramError, fentry::FEntryLink, fexit::FExitLink, raw_trace_point::RawTracePointLink,
        trace_point::TracePointLink,
    },
};

use super::{backend, features::kernel_release};
use crate::{
    core::records::ProbeBackend,
    error::{AppError, AppResult},
};

/// An attachment; dropping it detaches.
#[allow(dead_code)] // held only to be dropped
pub(super) enum Link {
    Tp(TracePointLink),
    Raw(RawTracePointLink),
    Entry(FEntryLink),
    Exit(FExitLink),
}

/// A program of the object, as its type.
pub(super) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> AppResult<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
    Ok(p.try_into().map_err(|e| anyhow!("{name}: {e}"))?)
}

/// A load or attach failure: a permission problem, a missing tracefs, or anything else.
pub(super) fn permission_error(what: &str, e: impl std::fmt::Display) -> AppError {
    let msg = e.to_string();
    let lower = msg.to_lowercase();
    if lower.contains("operation not permitted")
        || lower.contains("permission denied")
        || lower.contains("eperm")
    {
        AppError::NoPermission(format!(
            "not allowed to {what} ({msg}): run as root (sudo) or grant CAP_BPF, CAP_PERFMON and CAP_SYS_RESOURCE"
        ))
    } else if lower.contains("tracefs") || lower.contains("debugfs") {
        AppError::NoTracefs(format!(
            "{what} failed ({msg}): tracefs is not mounted; fix: sudo pty-trace doctor --fix"
        ))
    } else {
        AppError::Other(anyhow!("{what} failed: {msg:#}"))
    }
}

/// What attaching produces: the links (dropping one detaches it) and our programs' fds.
pub(super) struct Attached<'a> {
    pub(super) links: &'a mut Vec<Link>,
    pub(super) prog_fds: &'a mut Vec<std::os::fd::OwnedFd>,
}

/// A copy of a loaded program's fd, kept to read its `recursion_misses`.
pub(super) fn keep_fd(fd: Result<&aya::programs::ProgramFd, ProgramError>) -> AppResult<std::os::fd::OwnedFd> {
    use std::os::fd::AsFd;
    let fd = fd.map_err(|e| anyhow!("program fd: {e}"))?;
    Ok(fd.as_fd().try_clone_to_owned().map_err(|e| anyhow!("duplicating a program fd: {e}"))?)
}

/// One line for a program of `backend` that did not load. The trampoline backend's refusals
/// (EPERM on kernels that refuse BPF_PROG_TYPE_TRACING, a missing BTF function) are answers
/// about this kernel, not about permissions: `auto` falls back on them.
pub(super) fn load_error(backend: ProbeBackend, prog: &str, e: &ProgramError, verbose: bool) -> AppError {
    let line = match e {
        ProgramError::LoadError { io_error, verifier_log } => {
            backend::load_failure_line(&io_error.to_string(), &verifier_log.to_string(), verbose)
        }
        other => format!("{other:#}"),
    };
    match backend {
        ProbeBackend::Fentry => AppError::UnsupportedKernel(format!(
            "kernel {}: BPF trampolines refused: loading {prog}: {line}",
            kernel_release()
        )),
        ProbeBackend::Tracepoint => permission_error(&format!("load program {prog}"), line),
    }
}
