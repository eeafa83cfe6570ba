//! Interruption and process hygiene: the stop flag set by SIGINT/SIGTERM/SIGHUP, [`Proc`] (a child
//! in its own process group, stopped and killed with its group on every exit path) and
//! [`BpfStatsGuard`] (restores `kernel.bpf_stats_enabled`).

use std::{
    os::unix::process::CommandExt,
    process::{Child, Command, ExitStatus},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub(crate) fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

pub(crate) fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// A child started in its own process group. Dropping it without a successful `wait` stops it
/// (SIGINT first for tracers, which then stop their own command) and kills whatever is left of
/// its group, so nothing is left behind on any exit path.
pub(crate) struct Proc {
    child: Child,
    pub(crate) name: String,
    status: Option<ExitStatus>,
    /// Send SIGINT and give it time before SIGKILL (pty-trace detaching takes seconds).
    graceful: bool,
    started: Instant,
}

impl Proc {
    pub(crate) fn spawn(cmd: &mut Command, name: &str, graceful: bool) -> Result<Proc> {
        cmd.process_group(0);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!("{name}: `{program}` not found (cargo xtask setup installs the tools)"),
            _ => anyhow!("{name}: cannot start `{program}`: {e}"),
        })?;
        Ok(Proc { child, name: name.to_string(), status: None, graceful, started: Instant::now() })
    }

    pub(crate) fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub(crate) fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.status = Some(st);
            self.kill_group_leftovers();
        }
        self.status
    }

    /// Waits for the exit, polling (so that SIGINT to the bench is noticed) every 10 ms.
    pub(crate) fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        loop {
            if let Some(st) = self.poll() {
                return Ok(st);
            }
            check_stop()?;
            if self.started.elapsed() > timeout {
                bail!("{} did not finish within {:.0} s", self.name, timeout.as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// SIGINT, then wait up to `grace`; SIGKILL (the whole group) after that.
    pub(crate) fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.signal(libc::SIGINT);
            let until = Instant::now() + grace;
            while Instant::now() < until && self.poll().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.status.is_none() {
            // SAFETY: the group we created (pgid == the child's pid while it is unreaped).
            unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
            self.status = self.child.wait().ok();
        }
        self.kill_group_leftovers();
        self.status
    }

    /// After the leader was reaped, members of its group may remain (a killed tracer's command).
    fn kill_group_leftovers(&self) {
        let pgid = self.pid();
        // SAFETY: probing and killing the process group we created.
        unsafe {
            if libc::kill(-pgid, 0) == 0 {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            if self.graceful {
                self.stop(Duration::from_secs(20));
            } else {
                // SAFETY: killing the group we created.
                unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
                let _ = self.child.wait();
            }
        }
        self.kill_group_leftovers();
    }
}

/// Restores `kernel.bpf_stats_enabled` to its previous value on every exit path.
pub(crate) struct BpfStatsGuard {
    previous: String,
}

pub(crate) const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStatsGuard {
    pub(crate) fn enable() -> Result<BpfStatsGuard> {
        let previous = std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, "1").with_context(|| format!("sysctl -w kernel.bpf_stats_enabled=1 ({BPF_STATS})"))?;
        Ok(BpfStatsGuard { previous: previous.trim().to_string() })
    }
}

impl Drop for BpfStatsGuard {
    fn drop(&mut self) {
        let v = if self.previous.is_empty() { "0" } else { self.previous.as_str() };
        if let Err(e) = std::fs::write(BPF_STATS, v) {
            eprintln!("bench: WARNING: could not restore kernel.bpf_stats_enabled={v}: {e}");
        }
    }
}
