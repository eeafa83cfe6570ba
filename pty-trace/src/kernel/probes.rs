//! Loading and attaching the eBPF programs, and the handles userspace keeps on their maps.
//!
//! Thin edge: it turns the embedded object into attached programs of one backend
//! (`backend.rs` says which and why; `attach_tracepoints.rs` and `attach_trampolines.rs` attach
//! each backend's syscall hooks) plus three handles — the `TRACKED` map (which processes
//! the kernel reports on), the `EVENTS` ring buffer and the `COUNTERS`. Before loading, the
//! features the backend needs are probed (`features.rs`), so an old kernel gets one line and
//! not a verifier log. Failures become one-line [`AppError`]s naming the fix.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use pty_trace_common::{
    COUNTER_SLOTS, Counter, MAP_COUNTERS, MAP_EVENTS, MAP_OFFSETS, MAP_SYSCALL_KINDS, MAP_TRACKED, PROG_EXEC,
    PROG_EXEC_TRAMP, PROG_EXIT, PROG_FORK, PROG_FORK_TRAMP, TracepointOffsets,
};

use super::{
    attach::{Attached, Link, keep_fd, load_error, permission_error, program},
    attach_tracepoints, attach_trampolines,
    backend::{self, ProbeChoice},
    features::{self, kernel_release},
    kernel_log::{self, KernelLog},
    syscalls::followed_syscalls,
    tracefs::{self, kernel_has_syscall, tracepoint_offsets},
};
use crate::{
    core::records::ProbeBackend,
    error::{AppError, AppResult},
};

/// The compiled eBPF object (built by build.rs from `pty-trace-ebpf`); empty in a build
/// without the `ebpf` feature.
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pty-trace-ebpf.o"));

/// `PTY_TRACE_TRACKED_MAX=N`: a smaller TRACKED map than `MAX_TRACKED`. A testing knob: the
/// end-to-end tests fill it to see `untracked_children` counted and logged.
fn tracked_max() -> AppResult<Option<u32>> {
    let Some(v) = std::env::var_os("PTY_TRACE_TRACKED_MAX") else { return Ok(None) };
    match v.to_str().and_then(|s| s.parse::<u32>().ok()).filter(|&n| n > 0) {
        Some(n) => Ok(Some(n)),
        None => Err(AppError::BadInput(format!("PTY_TRACE_TRACKED_MAX={v:?}: expected a positive number of processes"))),
    }
}

/// The embedded object, or why there is none.
fn ebpf_object() -> AppResult<&'static [u8]> {
    if EBPF_OBJECT.is_empty() {
        return Err(AppError::Other(anyhow!(
            "this pty-trace was built without its eBPF programs (cargo feature `ebpf` off): build it with `cargo xtask build`"
        )));
    }
    Ok(EBPF_OBJECT)
}

/// How to load the probes.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    pub ring_bytes: u32,
    /// `--debug-kernel`: the programs' diagnostics on stderr.
    pub debug_kernel: bool,
    pub choice: ProbeChoice,
    /// `--verbose`: a program that does not load prints the verifier's whole log.
    pub verbose: bool,
    /// `watch`: execs of untracked processes are reported too (session 0).
    pub watch_execs: bool,
}

impl LoadOptions {
    /// The smallest ring buffer, no diagnostics: enough to prove that everything loads.
    pub fn check(choice: ProbeChoice) -> LoadOptions {
        LoadOptions { ring_bytes: 64 * 1024, debug_kernel: false, choice, verbose: false, watch_execs: false }
    }
}

/// The loaded and attached programs with the maps userspace uses.
pub struct Probes {
    /// Our programs, kept open to read what the kernel says of them (`recursion_misses`).
    prog_fds: Vec<std::os::fd::OwnedFd>,
    /// The backend in use.
    pub backend: ProbeBackend,
    /// `--probes auto` fell back to tracepoints: why the trampolines could not be used.
    pub fallback: Option<String>,
    /// Every attachment, owned: dropping one detaches it.
    links: Vec<Link>,
    /// Kept alive: dropping it detaches everything.
    _ebpf: Ebpf,
    pub tracked: Tracked,
    /// Taken by the tracer, which watches it with an `AsyncFd`.
    pub events: Option<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    /// Followed syscalls this kernel does not have.
    pub missing_syscalls: Vec<&'static str>,
    pub attached_tracepoints: usize,
    pub tracefs: PathBuf,
    pub load_time: Duration,
    /// `--debug-kernel`: the programs' log, printed as it comes.
    pub kernel_log: Option<KernelLog>,
}

/// The kernel side's `COUNTERS`, summed over CPUs (see [`Counter`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// Ring buffer reservations that failed, plus runs of our programs the kernel skipped
    /// (`recursion_misses`: a program already running on that CPU, preempted, made the kernel
    /// drop the next run rather than nest it): events lost either way.
    pub lost_events: u64,
    /// Children TRACKED had no room for: they run untraced.
    pub untracked_children: u64,
    /// `watch`: execs of untracked processes not reported (ring buffer full).
    pub watch_execs_lost: u64,
}

const _: () = assert!(COUNTER_SLOTS == 3, "KernelCounters reads every slot");

/// Shared handle on the `TRACKED` map (the `run` handshake registers the child from a thread).
#[derive(Clone)]
pub struct Tracked(Arc<Mutex<BpfHashMap<MapData, u32, u32>>>);

impl Tracked {
    pub fn insert(&self, tgid: u32, session: u32) -> anyhow::Result<()> {
        let mut m = self
            .0
            .lock()
            .map_err(|_| anyhow!("TRACKED map lock poisoned"))?;
        m.insert(tgid, session, 0)
            .with_context(|| format!("adding pid {tgid} to the TRACKED map"))
    }

    pub fn remove(&self, tgid: u32) {
        if let Ok(mut m) = self.0.lock() {
            let _ = m.remove(&tgid);
        }
    }

    /// Removes every process registered under `session` (`watch` forgetting a session: also
    /// those the model never saw, a fork whose event was lost, a root that exited before it
    /// was registered). Returns how many there were.
    pub fn remove_session(&self, session: u32) -> usize {
        let Ok(mut m) = self.0.lock() else { return 0 };
        let stale: Vec<u32> = m.iter().filter_map(Result::ok).filter(|&(_, s)| s == session).map(|(pid, _)| pid).collect();
        for pid in &stale {
            let _ = m.remove(pid);
        }
        stale.len()
    }

    pub fn contains(&self, tgid: u32) -> bool {
        self.0
            .lock()
            .map(|m| m.get(&tgid, 0).is_ok())
            .unwrap_or(false)
    }
}

impl Probes {
    /// Loads the object and attaches the programs of the backend `opts.choice` names: with
    /// `auto`, the trampolines, else the tracepoints (with the reason kept in `fallback`).
    pub fn load(opts: LoadOptions) -> AppResult<Probes> {
        let mut fallback: Option<String> = None;
        let mut last_error = None;
        for &b in opts.choice.candidates() {
            match Self::load_backend(b, opts) {
                Ok(mut p) => {
                    p.fallback = fallback;
                    return Ok(p);
                }
                Err(e) if opts.choice == ProbeChoice::Auto && b == ProbeBackend::Fentry && backend::worth_falling_back(&e) => {
                    fallback = Some(e.to_string());
                    last_error = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_error.unwrap_or_else(|| AppError::Other(anyhow!("no probe backend to try"))))
    }

    fn load_backend(backend: ProbeBackend, opts: LoadOptions) -> AppResult<Probes> {
        let start = Instant::now();
        if !cfg!(target_arch = "x86_64") {
            return Err(AppError::Other(anyhow!(
                "tracing is x86_64 only for now (the kernel side reads x86_64 syscall registers); this is {}",
                std::env::consts::ARCH
            )));
        }
        let tracked_max = tracked_max()?;
        let object = ebpf_object()?;
        let tracefs = tracefs::find().map_err(AppError::NoTracefs)?;
        let offsets = tracepoint_offsets(&tracefs)?;
        // RLIMIT_MEMLOCK cannot be raised without CAP_SYS_RESOURCE and is not needed on kernels
        // with memcg accounting (5.11+): try, and ignore a refusal.
        let rlim = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain syscall with a valid pointer.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
        check_features(backend)?;

        let log_level = kernel_log::level(opts.debug_kernel);
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(MAP_EVENTS, opts.ring_bytes);
        if let Some(n) = tracked_max {
            loader.map_max_entries(MAP_TRACKED, n);
        }
        let mut ebpf = loader
            .override_global("AYA_LOG_LEVEL", &log_level, true)
            .load(object)
            .map_err(|e| permission_error("load the eBPF programs", format!("{e:#}")))?;
        let kernel_log = if opts.debug_kernel { Some(KernelLog::take(&mut ebpf)?) } else { None };

        let mut kinds: Array<&mut MapData, u32> = Array::try_from(
            ebpf.map_mut(MAP_SYSCALL_KINDS)
                .ok_or_else(|| anyhow!("map {MAP_SYSCALL_KINDS} missing"))?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        let mut missing = Vec::new();
        let mut followed = Vec::new();
        for (name, nr, kind) in followed_syscalls() {
            if !kernel_has_syscall(&tracefs, name) {
                missing.push(name);
                continue;
            }
            // The tracepoint backend reports close and close_range from their own entry
            // tracepoints: left out of SYSCALL_KINDS, `sys_exit` does not report them again.
            if backend == ProbeBackend::Tracepoint && kind.reported_at_entry() {
                followed.push((name, kind));
                continue;
            }
            kinds
                .set(nr as u32, kind as u32, 0)
                .map_err(|e| anyhow!("filling {MAP_SYSCALL_KINDS}: {e}"))?;
            followed.push((name, kind));
        }
        let mut offs: Array<&mut MapData, TracepointOffsets> = Array::try_from(
            ebpf.map_mut(MAP_OFFSETS)
                .ok_or_else(|| anyhow!("map {MAP_OFFSETS} missing"))?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        let offsets = TracepointOffsets {
            wakeup_bytes: wakeup_bytes(opts.ring_bytes),
            watch_execs: u32::from(opts.watch_execs),
            ..offsets
        };
        offs.set(0, offsets, 0)
            .map_err(|e| anyhow!("filling {MAP_OFFSETS}: {e}"))?;

        let mut links = Vec::new();
        let mut prog_fds = Vec::new();
        let (fork, exec) = match backend {
            ProbeBackend::Tracepoint => (PROG_FORK, PROG_EXEC),
            ProbeBackend::Fentry => (PROG_FORK_TRAMP, PROG_EXEC_TRAMP),
        };
        if backend == ProbeBackend::Fentry {
            // Before the scheduler hooks, which read what these keep.
            attach_trampolines::attach_trampoline_helpers(&mut ebpf, &mut Attached { links: &mut links, prog_fds: &mut prog_fds }, opts.verbose)?;
        }
        // The scheduler hooks go first: once a process is tracked, its children must be.
        for (prog, name) in [
            (fork, "sched_process_fork"),
            (exec, "sched_process_exec"),
            (PROG_EXIT, "sched_process_exit"),
        ] {
            let p: &mut TracePoint = program(&mut ebpf, prog)?;
            p.load()
                .map_err(|e| load_error(backend, prog, &e, opts.verbose))?;
            prog_fds.push(keep_fd(p.fd())?);
            let id = p.attach("sched", name).map_err(|e| {
                permission_error(&format!("attach {prog} to sched:{name}"), format!("{e:#}"))
            })?;
            links.push(Link::Tp(
                p.take_link(id).map_err(|e| anyhow!("{prog}: {e}"))?,
            ));
        }
        match backend {
            ProbeBackend::Tracepoint => attach_tracepoints::attach_syscall_tracepoints(
                &mut ebpf,
                &tracefs,
                &followed,
                &mut Attached { links: &mut links, prog_fds: &mut prog_fds },
                opts.verbose,
            )?,
            ProbeBackend::Fentry => missing.extend(attach_trampolines::attach_syscall_trampolines(
                &mut ebpf,
                &followed,
                &mut Attached { links: &mut links, prog_fds: &mut prog_fds },
                opts.verbose,
            )?),
        }

        let tracked: BpfHashMap<MapData, u32, u32> = BpfHashMap::try_from(
            ebpf.take_map(MAP_TRACKED)
                .ok_or_else(|| anyhow!("map {MAP_TRACKED} missing"))?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        let events = RingBuf::try_from(
            ebpf.take_map(MAP_EVENTS)
                .ok_or_else(|| anyhow!("map {MAP_EVENTS} missing"))?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        let counters = PerCpuArray::try_from(
            ebpf.take_map(MAP_COUNTERS)
                .ok_or_else(|| anyhow!("map {MAP_COUNTERS} missing"))?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        Ok(Probes {
            prog_fds,
            backend,
            fallback: None,
            _ebpf: ebpf,
            tracked: Tracked(Arc::new(Mutex::new(tracked))),
            events: Some(events),
            counters,
            missing_syscalls: missing,
            attached_tracepoints: links.len(),
            tracefs,
            load_time: start.elapsed(),
            links,
            kernel_log,
        })
    }

    /// Detaches everything, in parallel: each detach waits for an RCU grace period (50-150 ms
    /// here), and from separate threads the waits overlap.
    pub fn detach(mut self) {
        let threads: Vec<_> = std::mem::take(&mut self.links)
            .into_iter()
            .map(|l| std::thread::spawn(move || drop(l)))
            .collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// What the kernel side could not do so far, summed over all CPUs.
    pub fn counters(&self) -> KernelCounters {
        let slot = |c: Counter| self.counters.get(&(c as u32), 0).map(|v| v.iter().sum()).unwrap_or(0);
        use std::os::fd::AsRawFd;
        let missed: u64 = self
            .prog_fds
            .iter()
            .map(|fd| std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd())).map_or(0, |t| recursion_misses(&t)))
            .sum();
        KernelCounters {
            lost_events: slot(Counter::LostEvents) + missed,
            untracked_children: slot(Counter::UntrackedChildren),
            watch_execs_lost: slot(Counter::WatchExecsLost),
        }
    }
}

/// `recursion_misses:` of `/proc/self/fdinfo/FD` for a BPF program (0 when the kernel does
/// not say: before 5.12).
pub fn recursion_misses(fdinfo: &str) -> u64 {
    fdinfo.lines().find_map(|l| l.strip_prefix("recursion_misses:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

/// Probes what `backend` needs before anything loads (see `features.rs`).
fn check_features(backend: ProbeBackend) -> AppResult<()> {
    let missing = features::missing_for(backend)
        .map_err(|e| permission_error("probe the kernel's BPF features", e.to_string()))?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(AppError::UnsupportedKernel(format!(
        "kernel {} lacks {}, which the {backend} probes need: {}",
        kernel_release(),
        missing.join(" and "),
        backend::fix_for(backend)
    )))
}

/// Waiting bytes that make the kernel wake the reader: an eighth of the buffer, so a burst
/// is drained long before it fills, while a steady trickle is picked up by the drain timer.
pub fn wakeup_bytes(ring_bytes: u32) -> u32 {
    (ring_bytes / 8).max(4096)
}




#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recursion_misses_from_fdinfo() {
        let info = "pos:\t0\nflags:\t02000002\nprog_type:\t26\nprog_jited:\t1\nrun_time_ns:\t0\nrun_cnt:\t0\nrecursion_misses:\t17\nverified_insns:\t409\n";
        assert_eq!(recursion_misses(info), 17);
        // Kernels before 5.12 do not say: nothing missed that we could know of.
        assert_eq!(recursion_misses("pos:\t0\nprog_type:\t5\n"), 0);
    }
}
