//! Starting the `run` command so that the kernel traces it from its first instruction, and
//! finding it on PATH first so a typo is a clear error before any BPF is loaded.
//!
//! The handshake: the child (between fork and exec) writes its pid to a pipe and waits for a
//! go byte; a helper thread adds the pid to the kernel's TRACKED map and then sends it. So the
//! child execs only once it is tracked, and every process it forks is tracked too.

use std::{
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
    process::{Child, Command},
};

use anyhow::{Context, anyhow};

use crate::{
    error::{AppError, AppResult},
    kernel::probes::Tracked,
};

/// `128+N` for a signal, like a shell.
pub fn status_code(st: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
}

/// Finds `program` the way exec will, to give "not found" / "not executable" up front.
pub fn resolve_program(program: &str) -> AppResult<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let check = |p: &std::path::Path| -> Option<AppResult<std::path::PathBuf>> {
        let md = std::fs::metadata(p).ok()?;
        if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
            return Some(Err(AppError::CannotExec(program.into(), "permission denied (not an executable file)".into())));
        }
        Some(Ok(p.to_path_buf()))
    };
    if program.contains('/') {
        return check(std::path::Path::new(program)).unwrap_or_else(|| Err(AppError::CommandNotFound(program.into())));
    }
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    for dir in std::env::split_paths(&path) {
        if let Some(r) = check(&dir.join(program)) {
            return r;
        }
    }
    Err(AppError::CommandNotFound(program.into()))
}

fn pipe_cloexec() -> anyhow::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0i32; 2];
    // SAFETY: valid array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(anyhow!("pipe2: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: both fds were just created and are owned here.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Starts `cmd` so that it is in the kernel's TRACKED map before it execs: the child reports its
/// pid through a pipe and waits for a go byte, which a helper thread sends after registering it.
pub fn spawn_registered(mut cmd: Command, tracked: &Tracked, program: &str) -> AppResult<(Child, u32)> {
    use std::os::unix::process::CommandExt;
    let (pid_r, pid_w) = pipe_cloexec()?;
    let (go_r, go_w) = pipe_cloexec()?;
    let (pid_w_raw, go_r_raw) = (pid_w.as_raw_fd(), go_r.as_raw_fd());
    // SAFETY: the closure only calls async-signal-safe functions (getpid, write, read).
    unsafe {
        cmd.pre_exec(move || {
            let pid = libc::getpid();
            let b = pid.to_ne_bytes();
            if libc::write(pid_w_raw, b.as_ptr().cast(), 4) != 4 {
                return Err(std::io::Error::last_os_error());
            }
            let mut go = [0u8; 1];
            if libc::read(go_r_raw, go.as_mut_ptr().cast(), 1) != 1 || go[0] != b'g' {
                return Err(std::io::Error::other("pty-trace could not register the child for tracing"));
            }
            Ok(())
        });
    }
    let t = tracked.clone();
    let registrar = std::thread::spawn(move || -> anyhow::Result<u32> {
        let mut b = [0u8; 4];
        let mut got = 0;
        while got < 4 {
            // SAFETY: reading into a valid buffer from a pipe we own.
            let n = unsafe { libc::read(pid_r.as_raw_fd(), b[got..].as_mut_ptr().cast(), 4 - got) };
            if n <= 0 {
                return Err(anyhow!("the child exited before it could be registered"));
            }
            got += n as usize;
        }
        let pid = i32::from_ne_bytes(b) as u32;
        let reply = if t.insert(pid, pid).is_ok() { b"g" } else { b"n" };
        // SAFETY: writing one byte from a valid buffer.
        unsafe { libc::write(go_w.as_raw_fd(), reply.as_ptr().cast(), 1) };
        Ok(pid)
    });
    let spawned = cmd.spawn();
    // Our copies of the child's ends: closing them lets the registrar see EOF if spawn failed.
    drop(pid_w);
    drop(go_r);
    let registered = registrar.join().map_err(|_| anyhow!("registrar thread panicked"))?;
    let child = spawned.map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => AppError::CommandNotFound(program.into()),
        std::io::ErrorKind::PermissionDenied => AppError::CannotExec(program.into(), e.to_string()),
        _ => AppError::CannotExec(program.into(), e.to_string()),
    })?;
    let pid = registered?;
    if pid != child.id() {
        return Err(anyhow!("registered pid {pid} but spawned {}", child.id()).into());
    }
    Ok((child, pid))
}

pub trait AsFdOwned {
    fn as_fd_owned(&self) -> anyhow::Result<OwnedFd>;
}

impl AsFdOwned for std::io::Stderr {
    fn as_fd_owned(&self) -> anyhow::Result<OwnedFd> {
        use std::os::fd::AsFd;
        self.as_fd().try_clone_to_owned().context("duplicating stderr")
    }
}
