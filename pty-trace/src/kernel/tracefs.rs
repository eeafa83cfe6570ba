//! tracefs: where it is mounted, the field offsets of the scheduler tracepoints, and which
//! syscalls this kernel has. Used by the probe loader and by `doctor` (which may also mount it).
//! The mount-table parser lives in `tracefs_mounts.rs`, which `xtask` shares by path.

use std::{
    ffi::CString,
    fs, io,
    path::{Path, PathBuf},
};

use pty_trace_common::{SYSCALL_ENTER_ARGS_OFFSET, TracepointOffsets};

use crate::error::{AppError, AppResult, os_error_text};

#[path = "tracefs_mounts.rs"]
pub mod mounts;

use mounts::{TRACEFS_DEFAULT, TRACEFS_UNDER_DEBUGFS, choose_tracefs, parse_mounts_of_type, parse_tracefs_mounts};

pub const PROC_MOUNTS: &str = "/proc/self/mounts";
pub const TRACEFS_FIX: &str =
    "sudo pty-trace doctor --fix  (or: sudo mount -t tracefs nodev /sys/kernel/tracing)";


/// Used by the tracer before loading BPF: returns Ok(path of tracefs) or Err(one-line message
/// with the fix).
pub fn find() -> Result<PathBuf, String> {
    match locate() {
        Ok(Some(path)) => Ok(path),
        Ok(None) => Err(format!("tracefs is not mounted; fix: {TRACEFS_FIX}")),
        Err(e) => Err(format!(
            "cannot read {PROC_MOUNTS} to find tracefs: {e}; is /proc mounted?"
        )),
    }
}

/// Where tracefs is mounted, if it is. Reading /proc/self/mounts (not probing paths) tells a
/// mounted-but-empty directory apart from a real tracefs.
pub fn locate() -> io::Result<Option<PathBuf>> {
    let mounts = fs::read_to_string(PROC_MOUNTS)?;
    if let Some(p) = choose_tracefs(&parse_tracefs_mounts(&mounts)) {
        return Ok(Some(p));
    }
    // With debugfs mounted, /sys/kernel/debug/tracing is an automount point: walking into it
    // mounts tracefs. Touch it once (only when debugfs is mounted, so this never creates
    // anything) and look again.
    if parse_mounts_of_type(&mounts, "debugfs")
        .iter()
        .any(|p| p == Path::new("/sys/kernel/debug"))
    {
        let _ = fs::metadata(Path::new(TRACEFS_UNDER_DEBUGFS).join("events"));
        let mounts = fs::read_to_string(PROC_MOUNTS)?;
        return Ok(choose_tracefs(&parse_tracefs_mounts(&mounts)));
    }
    Ok(None)
}

/// mount -t tracefs nodev /sys/kernel/tracing
pub fn mount() -> Result<(), String> {
    if !Path::new(TRACEFS_DEFAULT).is_dir() {
        // sysfs creates this directory only when the kernel has tracefs.
        return Err(format!(
            "{TRACEFS_DEFAULT} does not exist (kernel without CONFIG_TRACING, or /sys not mounted)"
        ));
    }
    let (Ok(src), Ok(target), Ok(fstype)) = (
        CString::new("nodev"),
        CString::new(TRACEFS_DEFAULT),
        CString::new("tracefs"),
    ) else {
        return Err("internal error building mount arguments".to_string());
    };
    // SAFETY: all strings are valid NUL-terminated C strings that outlive the call, and a
    // null data pointer is allowed for tracefs.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    let text = os_error_text(&err);
    Err(match err.raw_os_error() {
        Some(libc::EPERM) => format!("{text} (needs root)"),
        Some(libc::ENODEV) => format!("{text} (kernel has no tracefs)"),
        _ => text,
    })
}

/// Reads the byte offset of `field` from a tracefs `format` file's text.
pub fn field_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?;
        let (decl, rest) = decl.split_once(';')?;
        let name = decl.split_whitespace().last()?.split('[').next()?;
        if name != field {
            return None;
        }
        rest.trim()
            .strip_prefix("offset:")?
            .split(';')
            .next()?
            .trim()
            .parse()
            .ok()
    })
}

fn read_format(tracefs: &Path, category: &str, name: &str) -> AppResult<String> {
    let p = tracefs
        .join("events")
        .join(category)
        .join(name)
        .join("format");
    std::fs::read_to_string(&p).map_err(|e| match e.kind() {
        // tracefs is mode 0700: an unprivileged user cannot even read the formats.
        std::io::ErrorKind::PermissionDenied => AppError::NoPermission(format!(
            "not allowed to read {} (tracefs is root-only): run with sudo, or grant CAP_BPF, CAP_PERFMON and read access to tracefs",
            p.display()
        )),
        _ => AppError::NoTracefs(format!(
            "cannot read {}: {e}: tracepoint missing or tracefs not mounted; try `sudo pty-trace doctor --fix`",
            p.display()
        )),
    })
}

/// Field offsets of the scheduler tracepoints on this kernel.
pub fn tracepoint_offsets(tracefs: &Path) -> AppResult<TracepointOffsets> {
    let fork = read_format(tracefs, "sched", "sched_process_fork")?;
    let exec = read_format(tracefs, "sched", "sched_process_exec")?;
    let exit = read_format(tracefs, "sched", "sched_process_exit")?;
    let need = |fmt: &str, tp: &str, f: &str| {
        field_offset(fmt, f).ok_or_else(|| {
            AppError::NoTracefs(format!("tracepoint {tp} has no field {f} on this kernel"))
        })
    };
    Ok(TracepointOffsets {
        fork_child_pid: need(&fork, "sched_process_fork", "child_pid")?,
        exec_filename_loc: need(&exec, "sched_process_exec", "filename")?,
        exec_old_pid: need(&exec, "sched_process_exec", "old_pid")?,
        exit_group_dead: field_offset(&exit, "group_dead").unwrap_or(u32::MAX),
        wakeup_bytes: 0,
        watch_execs: 0,
    })
}

/// Checks that the `syscalls` tracepoint `event` (a `sys_enter_X`) keeps its arguments where
/// the programs read them ([`SYSCALL_ENTER_ARGS_OFFSET`]).
pub fn check_syscall_enter_layout(tracefs: &Path, event: &str) -> AppResult<()> {
    let format = read_format(tracefs, "syscalls", event)?;
    match syscall_enter_args_offset(&format) {
        Some(SYSCALL_ENTER_ARGS_OFFSET) => Ok(()),
        other => Err(AppError::Other(anyhow::anyhow!(
            "tracepoint syscalls:{event} has its arguments at offset {other:?}, not {SYSCALL_ENTER_ARGS_OFFSET}: this kernel's syscall tracepoints are not supported"
        ))),
    }
}

/// Offset of the first syscall argument in a `sys_enter_X` tracepoint's `format` text: the
/// first field after the common ones and `__syscall_nr`.
fn syscall_enter_args_offset(format: &str) -> Option<u32> {
    let first = format
        .lines()
        .filter_map(|l| l.trim().strip_prefix("field:"))
        .filter_map(|l| l.split_once(';').and_then(|(decl, _)| decl.split_whitespace().last()))
        .find(|name| !name.starts_with("common_") && *name != "__syscall_nr")?;
    field_offset(format, first)
}

/// Whether this kernel has the syscall `name`: every syscall it has comes with tracepoint
/// metadata in tracefs (only looked at, never enabled).
pub fn kernel_has_syscall(tracefs: &Path, name: &str) -> bool {
    tracefs.join("events/syscalls").join(format!("sys_exit_{name}")).is_dir()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_6_18: &str = "name: sched_process_fork\nID: 366\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
    const FORK_OLD: &str = "\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:1;\n\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:1;\n\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";

    const ENTER_CLOSE_6_18: &str = "name: sys_enter_close\nID: 776\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;\n\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;\n\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;\n\n\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;\n\tfield:unsigned int fd;\toffset:16;\tsize:8;\tsigned:0;\n";

    #[test]
    fn finds_the_arguments_of_a_syscall_tracepoint() {
        assert_eq!(syscall_enter_args_offset(ENTER_CLOSE_6_18), Some(SYSCALL_ENTER_ARGS_OFFSET));
        assert_eq!(syscall_enter_args_offset("\tfield:int __syscall_nr;\toffset:8;\tsize:4;\n"), None);
    }

    #[test]
    fn reads_offsets_from_both_layouts() {
        assert_eq!(field_offset(FORK_6_18, "child_pid"), Some(20));
        assert_eq!(field_offset(FORK_6_18, "parent_comm"), Some(8));
        assert_eq!(field_offset(FORK_OLD, "child_pid"), Some(44));
        assert_eq!(field_offset(FORK_OLD, "child_comm"), Some(28));
        assert_eq!(field_offset(FORK_OLD, "group_dead"), None);
    }
}
