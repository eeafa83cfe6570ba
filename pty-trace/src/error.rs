//! Errors that end the program, each with a documented exit code (see README "Exit codes").
//!
//! Every failure a user can cause or fix gets one line that names the problem and, where there
//! is one, the fix. `main` prints `pty-trace: <message>` and exits with [`AppError::exit_code`].

use thiserror::Error;

/// Exit codes. `run` otherwise exits with the child's own status (128+N when killed by signal N),
/// like `strace` and `time`.
pub mod exit_code {
    pub const OK: i32 = 0;
    /// Anything unexpected (an I/O error while tracing, a bug).
    pub const FAILURE: i32 = 1;
    /// Bad command line (clap's own code).
    pub const USAGE: i32 = 2;
    /// A PID that does not exist, is a kernel thread, or cannot be traced.
    pub const BAD_TARGET: i32 = 3;
    /// Not allowed to load or attach BPF programs.
    pub const NO_PERMISSION: i32 = 4;
    /// tracefs (or a required tracepoint) is missing.
    pub const NO_TRACEFS: i32 = 5;
    /// Bad input file or data (report on a file with no valid record, bad config).
    pub const BAD_INPUT: i32 = 6;
    /// `report`: a session has no `summary` (the recording was cut short): the verdict is
    /// `INCOMPLETE`, with what the snapshots show.
    pub const REPORT_INCOMPLETE: i32 = 7;
    /// `report`: no snapshot and no summary to judge from: the verdict is `UNKNOWN`.
    pub const REPORT_UNKNOWN: i32 = 8;
    /// `--exit-on-rotate`: a session must be rotated.
    pub const ROTATE: i32 = 10;
    /// The reader of the JSONL stream on stdout went away (EPIPE, `| head`): 128 + SIGPIPE,
    /// what a shell reports for a tool that SIGPIPE ended. Nothing is printed for it.
    pub const OUTPUT_CLOSED: i32 = 141;
    /// `doctor`: at least one check failed so tracing cannot work.
    pub const DOCTOR_FAILED: i32 = 11;
    /// The kernel lacks what the probe backend needs (a BPF helper, the ring buffer, BTF,
    /// trampolines for `--probes fentry`): one line names the kernel, what is missing and the fix.
    pub const UNSUPPORTED_KERNEL: i32 = 12;
    /// `run --fail-on-leak`: the leak gate failed (the verdict is LEAK DETECTED, or the command's
    /// tree left more PTYs or fds open than the budget). Not a status a shell gives a command
    /// by itself (those are 0-125, 126, 127 and 128+N), so CI can tell it from the command's.
    pub const LEAK_GATE: i32 = 13;
    /// `run`: the command was found but could not be executed.
    pub const CANNOT_EXEC: i32 = 126;
    /// `run`: the command was not found.
    pub const NOT_FOUND: i32 = 127;
}

#[derive(Debug, Error)]
pub enum AppError {
    #[error("no process with PID {0}")]
    NoSuchPid(i32),
    #[error("PID {0} is a kernel thread ({1}); only user processes have fd tables to trace")]
    KernelThread(i32, String),
    #[error("{0}")]
    BadTarget(String),
    #[error("{0}")]
    NoPermission(String),
    #[error("{0}")]
    NoTracefs(String),
    #[error("{0}")]
    UnsupportedKernel(String),
    #[error("{0}")]
    BadInput(String),
    #[error("command not found: {0}")]
    CommandNotFound(String),
    #[error("cannot execute {0}: {1}")]
    CannotExec(String, String),
    #[error("doctor: tracing cannot work on this machine (see the failed checks above)")]
    DoctorFailed,
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl AppError {
    pub fn exit_code(&self) -> i32 {
        use exit_code::*;
        match self {
            AppError::NoSuchPid(_) | AppError::KernelThread(..) | AppError::BadTarget(_) => BAD_TARGET,
            AppError::NoPermission(_) => NO_PERMISSION,
            AppError::NoTracefs(_) => NO_TRACEFS,
            AppError::UnsupportedKernel(_) => UNSUPPORTED_KERNEL,
            AppError::BadInput(_) => BAD_INPUT,
            AppError::CommandNotFound(_) => NOT_FOUND,
            AppError::CannotExec(..) => CANNOT_EXEC,
            AppError::DoctorFailed => DOCTOR_FAILED,
            AppError::Other(_) => FAILURE,
        }
    }
}

pub type AppResult<T> = Result<T, AppError>;

/// "Operation not permitted" rather than std's "Operation not permitted (os error 1)": the
/// number means nothing to the reader of a one-line detail.
pub fn os_error_text(err: &std::io::Error) -> String {
    let s = err.to_string();
    match s.rfind(" (os error ") {
        Some(i) if s.ends_with(')') => s[..i].to_string(),
        _ => s,
    }
}
