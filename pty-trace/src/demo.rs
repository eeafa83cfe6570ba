//! `pty-trace demo`: a built-in leaky "agent", so a newcomer sees what a leak looks like.
//!
//! The agent does what the buggy coding-agent CLIs in the public reports do: for every shell
//! command it opens a fresh PTY (posix_openpt), runs `sh -c CMD` on the slave as a new session
//! with it as controlling terminal, reads the output from the master until the child is gone,
//! reaps it, and then forgets to close the master. `--fixed` closes it: the healthy agent.

use std::{
    ffi::CStr,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    os::unix::process::CommandExt,
    process::{Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};

/// The shell commands the agent cycles through (what an agent typically runs).
pub const DEMO_COMMANDS: &[&str] = &[
    "echo building",
    "ls /",
    "uname -r",
    "date +%s",
    "cat /proc/loadavg",
    "true",
];

fn open_pty() -> anyhow::Result<(OwnedFd, OwnedFd, u32)> {
    // SAFETY: plain libc PTY calls; every returned fd is wrapped in OwnedFd at once.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            bail!("posix_openpt: {}", std::io::Error::last_os_error());
        }
        let master = OwnedFd::from_raw_fd(m);
        if libc::grantpt(m) != 0 || libc::unlockpt(m) != 0 {
            bail!("grantpt/unlockpt: {}", std::io::Error::last_os_error());
        }
        let mut buf = [0 as libc::c_char; 64];
        if libc::ptsname_r(m, buf.as_mut_ptr(), buf.len()) != 0 {
            bail!("ptsname_r: {}", std::io::Error::last_os_error());
        }
        let name = CStr::from_ptr(buf.as_ptr());
        let index: u32 = name.to_string_lossy().rsplit('/').next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let s = libc::open(name.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if s < 0 {
            bail!("open {}: {}", name.to_string_lossy(), std::io::Error::last_os_error());
        }
        Ok((master, OwnedFd::from_raw_fd(s), index))
    }
}

/// Runs one command on a fresh PTY; returns the master (still open) and the output.
fn run_on_pty(cmd: &str) -> anyhow::Result<(OwnedFd, String)> {
    let (master, slave, _) = open_pty()?;
    let mut c = Command::new("/bin/sh");
    c.arg("-c").arg(cmd);
    c.stdin(Stdio::from(slave.try_clone()?)).stdout(Stdio::from(slave.try_clone()?)).stderr(Stdio::from(slave.try_clone()?));
    // SAFETY: setsid and ioctl are async-signal-safe.
    unsafe {
        c.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::ioctl(0, libc::TIOCSCTTY, 0);
            Ok(())
        });
    }
    let mut child = c.spawn().with_context(|| format!("spawning sh -c {cmd:?}"))?;
    drop(c);
    drop(slave);
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a valid buffer from an fd we own.
        let n = unsafe { libc::read(master.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break; // EIO once the child side is closed
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    child.wait().context("waiting for the command")?;
    Ok((master, String::from_utf8_lossy(&out).into_owned()))
}

/// The agent's main loop (`pty-trace __demo-agent`).
pub fn agent(commands: u32, delay: Duration, fixed: bool) -> anyhow::Result<()> {
    let mut kept = Vec::new();
    for i in 0..commands {
        let cmd = DEMO_COMMANDS[i as usize % DEMO_COMMANDS.len()];
        let (master, _output) = run_on_pty(cmd)?;
        if fixed {
            drop(master);
        } else {
            // The bug: the master outlives the command that used it.
            kept.push(master);
        }
        std::thread::sleep(delay);
    }
    // Stay a moment so the last snapshot shows the final state before the agent exits.
    std::thread::sleep(Duration::from_millis(300).max(delay));
    drop(kept);
    Ok(())
}

/// argv that `demo` runs under `run`.
pub fn agent_argv(commands: u32, delay: Duration, fixed: bool) -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("finding pty-trace's own executable")?;
    let mut v = vec![
        exe.to_string_lossy().into_owned(),
        "__demo-agent".into(),
        "--commands".into(),
        commands.to_string(),
        "--delay".into(),
        format!("{}ms", delay.as_millis()),
    ];
    if fixed {
        v.push("--fixed".into());
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_a_command_on_a_real_pty() {
        let (master, out) = run_on_pty("echo hello-from-pty").unwrap();
        assert!(out.contains("hello-from-pty"), "{out:?}");
        let target = std::fs::read_link(format!("/proc/self/fd/{}", master.as_raw_fd())).unwrap();
        assert_eq!(target.to_string_lossy(), "/dev/ptmx");
    }
}
