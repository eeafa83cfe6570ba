//! Small std-only helpers shared by the tasks: workspace paths, PATH handling, root detection,
//! and running child processes with checked exit statuses.

use std::{
    env,
    ffi::{OsStr, OsString},
    fmt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context, Result, bail};

/// A child process that ran but exited unsuccessfully. `main` passes `code` through.
#[derive(Debug)]
pub struct CommandFailed {
    pub what: String,
    pub code: Option<i32>,
}

impl fmt::Display for CommandFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => write!(f, "{} failed (exit code {code})", self.what),
            None => write!(f, "{} was killed by a signal", self.what),
        }
    }
}

impl std::error::Error for CommandFailed {}

/// Runs `cmd` with inherited stdio; an error names `what` if it cannot start or exits non-zero.
pub fn run_checked(cmd: &mut Command, what: &str) -> Result<()> {
    let status = cmd
        .status()
        .with_context(|| format!("could not start {what} ({})", cmd.get_program().display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(CommandFailed {
            what: what.to_string(),
            code: status.code(),
        }
        .into())
    }
}

/// The workspace root (this crate lives in `<root>/xtask`).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Cargo's target directory for this workspace, honouring `CARGO_TARGET_DIR`.
pub fn target_dir() -> PathBuf {
    match env::var_os("CARGO_TARGET_DIR").or_else(|| env::var_os("CARGO_BUILD_TARGET_DIR")) {
        Some(dir) => workspace_root().join(dir),
        None => workspace_root().join("target"),
    }
}

/// The directory `cargo install` puts binaries in: `$CARGO_HOME/bin`, else `~/.cargo/bin`.
pub fn cargo_bin_dir() -> Option<PathBuf> {
    if let Some(home) = env::var_os("CARGO_HOME").filter(|h| !h.is_empty()) {
        return Some(PathBuf::from(home).join("bin"));
    }
    env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo/bin"))
}

/// `$PATH` with the cargo bin directory appended when it is missing, so that build scripts
/// (pty-trace's build.rs looks for `bpf-linker`) and the tests find what `setup` installed.
/// Appended rather than prepended: rustup's `cargo` there must not shadow anything new.
pub fn path_with_cargo_bin() -> OsString {
    let current = env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = env::split_paths(&current).collect();
    if let Some(bin) = cargo_bin_dir()
        && !dirs.contains(&bin)
    {
        dirs.push(bin);
    }
    env::join_paths(dirs).unwrap_or(current)
}

/// Finds an executable named `name` in `path_with_cargo_bin()`, in PATH order.
pub fn find_program(name: &str) -> Option<PathBuf> {
    env::split_paths(&path_with_cargo_bin())
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The cargo to run nested builds with: the one running xtask (`$CARGO`), else `cargo`.
pub fn cargo_program() -> OsString {
    env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// A cargo command in the workspace root with the PATH build scripts need.
pub fn cargo_command() -> Command {
    let mut cmd = Command::new(cargo_program());
    cmd.current_dir(workspace_root())
        .env("PATH", path_with_cargo_bin());
    cmd
}

/// The effective uid from the text of `/proc/self/status` (`Uid: real effective saved fs`).
pub fn effective_uid(proc_status: &str) -> Option<u32> {
    proc_status
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .and_then(|euid| euid.parse().ok())
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| effective_uid(&s))
        == Some(0)
}

/// A command that runs `program` as root: directly when we are root, else through `sudo`
/// (keeping the environment and this PATH, which sudo would otherwise reset).
/// `why` names what needs root, for the error when there is no sudo.
pub fn root_command(program: impl AsRef<OsStr>, why: &str) -> Result<Command> {
    if is_root() {
        return Ok(Command::new(program));
    }
    let Some(sudo) = find_program("sudo") else {
        bail!("{why} needs root and sudo is not installed: re-run as root");
    };
    let mut path_arg = OsString::from("PATH=");
    path_arg.push(path_with_cargo_bin());
    let mut cmd = Command::new(sudo);
    cmd.args(["-E", "env"]).arg(path_arg).arg(program);
    Ok(cmd)
}

/// Seconds with one decimal, for timing lines.
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_uid_field() {
        let status =
            "Name:\tcat\nUmask:\t0022\nUid:\t1000\t0\t0\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Uid:\t1000\t1000\t1000\t1000\n"), Some(1000));
    }

    #[test]
    fn effective_uid_missing_or_malformed() {
        assert_eq!(effective_uid(""), None);
        assert_eq!(effective_uid("Uid:\t1000\n"), None);
        assert_eq!(effective_uid("Uid:\tx\ty\n"), None);
    }

    #[test]
    fn command_failed_names_what_and_code() {
        let e = CommandFailed {
            what: "cargo test".into(),
            code: Some(101),
        };
        assert_eq!(e.to_string(), "cargo test failed (exit code 101)");
        let e = CommandFailed {
            what: "demo".into(),
            code: None,
        };
        assert_eq!(e.to_string(), "demo was killed by a signal");
    }
}
