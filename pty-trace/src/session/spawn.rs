//! Starting the `run` command so that the kernel traces it from its first instruction, and
//! finding it on PATH first so a typo is a clear error before any BPF is loaded.
//!
//! The handshake: the child (between fork and exec) writes its pid to a pipe and waits for a
//! go byte; a helper thread adds the pid to the kernel's TRACKED map and then sends it. So the
//! child execs only once it is tracked, and every process it forks is tracked too.
//!
//! The child is held by a [`RunChild`] guard: whatever way tracing ends, its `Drop` kills the
//! child's process group if nobody has stopped it yet, so no error path leaves it running
//! untraced.

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
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/bin:/usr/bin:/bin".into());
    locate(program, &path).map_err(|e| match e {
        Unrunnable::NotFound => AppError::CommandNotFound(program.into()),
        Unrunnable::NotExecutable => AppError::CannotExec(program.into(), "permission denied (not an executable file)".into()),
    })
}

/// Why [`locate`] found nothing to run.
#[derive(Debug, PartialEq, Eq)]
pub enum Unrunnable {
    NotFound,
    /// The first file of that name is a directory or has no execute bit.
    NotExecutable,
}

/// `program` itself when it has a `/`, else the first `dir/program` on `path` that exists.
pub fn locate(program: &str, path: &std::ffi::OsStr) -> Result<std::path::PathBuf, Unrunnable> {
    use std::os::unix::fs::PermissionsExt;
    let check = |p: &std::path::Path| -> Option<Result<std::path::PathBuf, Unrunnable>> {
        let md = std::fs::metadata(p).ok()?;
        if md.is_dir() || md.permissions().mode() & 0o111 == 0 {
            return Some(Err(Unrunnable::NotExecutable));
        }
        Some(Ok(p.to_path_buf()))
    };
    if program.contains('/') {
        return check(std::path::Path::new(program)).unwrap_or(Err(Unrunnable::NotFound));
    }
    std::env::split_paths(path).find_map(|dir| check(&dir.join(program))).unwrap_or(Err(Unrunnable::NotFound))
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
///
/// With `own_group`, the child leads a new process group (like `timeout(1)`), so that stopping
/// it reaches everything it started in that group. Interactive runs (a terminal on stdin and
/// no live view) keep it in ours so that it can read the terminal.
pub fn spawn_registered(mut cmd: Command, tracked: &Tracked, program: &str, own_group: bool) -> AppResult<RunChild> {
    use std::os::unix::process::CommandExt;
    if own_group {
        cmd.process_group(0);
    }
    // SAFETY: getpid has no preconditions.
    let tracer = unsafe { libc::getpid() };
    let (pid_r, pid_w) = pipe_cloexec()?;
    let (go_r, go_w) = pipe_cloexec()?;
    let (pid_w_raw, go_r_raw) = (pid_w.as_raw_fd(), go_r.as_raw_fd());
    // SAFETY: the closure only calls async-signal-safe functions (getpid, write, read).
    unsafe {
        cmd.pre_exec(move || {
            // If pty-trace is killed outright (SIGKILL), the child is told rather than left
            // running untraced. (The parent here is the main thread, which lives as long as
            // the process.)
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong, 0, 0, 0) != 0 || libc::getppid() != tracer {
                return Err(std::io::Error::other("pty-trace exited while starting the command"));
            }
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
    let pgid = own_group.then_some(child.id() as i32);
    // From here on, an error drops the guard, which kills the child.
    let guard = RunChild { child, pgid, status: None };
    let pid = registered?;
    if pid != guard.pid() {
        return Err(anyhow!("registered pid {pid} but spawned {}", guard.pid()).into());
    }
    Ok(guard)
}

/// The `run` child. Dropping it without [`RunChild::reaped`] kills its process group (or it)
/// with SIGKILL and reaps it.
pub struct RunChild {
    child: Child,
    /// Its process group, when it leads one.
    pgid: Option<i32>,
    status: Option<i32>,
}

impl RunChild {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status once it has exited (`128+N` for signal N).
    pub fn status(&self) -> Option<i32> {
        self.status
    }

    /// Reaps it if it has exited; returns the status.
    pub fn try_reap(&mut self) -> Option<i32> {
        if self.status.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.status = Some(status_code(st));
        }
        self.status
    }

    /// Waits for it (blocking).
    pub fn wait(&mut self) -> Option<i32> {
        if self.status.is_none()
            && let Ok(st) = self.child.wait()
        {
            self.status = Some(status_code(st));
        }
        self.status
    }

    /// Whether `pid` is in the process group the child leads.
    pub fn has_in_group(&self, pid: u32) -> bool {
        // SAFETY: getpgid has no preconditions; -1 (gone) matches no group.
        self.pgid.is_some_and(|g| unsafe { libc::getpgid(pid as i32) } == g)
    }

    /// Sends `sig` to its process group if it leads one (also once it has been reaped: the
    /// rest of the group may live on, and a group id is not reused while any member lives),
    /// else to it alone while it has not been reaped (its pid may be someone else's after).
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child or the group it created.
        unsafe {
            match self.pgid {
                Some(g) => {
                    libc::kill(-g, sig);
                }
                None if self.status.is_none() => {
                    libc::kill(self.child.id() as i32, sig);
                }
                None => {}
            }
        }
    }
}

impl Drop for RunChild {
    fn drop(&mut self) {
        if self.try_reap().is_none() {
            self.signal(libc::SIGKILL);
            self.wait();
        }
    }
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
