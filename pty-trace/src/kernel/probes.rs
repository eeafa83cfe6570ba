//! Loading and attaching the eBPF programs, and the handles userspace keeps on their maps.
//!
//! Thin edge: it turns the embedded object into attached programs plus three handles — the
//! `TRACKED` map (which processes the kernel reports on), the `EVENTS` ring buffer and the
//! `COUNTERS`. Failures become one-line [`AppError`]s naming the fix.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::{
        RawTracePoint, TracePoint, raw_trace_point::RawTracePointLink, trace_point::TracePointLink,
    },
};
use pty_trace_common::{
    COUNTER_SLOTS, Counter, MAP_COUNTERS, MAP_EVENTS, MAP_OFFSETS, MAP_SYSCALL_KINDS, MAP_TRACKED, PROG_DOCTOR_FENTRY,
    PROG_EXEC, PROG_EXIT, PROG_FORK, PROG_SYS_ENTER_CLOSE, PROG_SYS_ENTER_CLOSE_RANGE, PROG_SYS_EXIT,
    TracepointOffsets,
};

use super::{
    kernel_log::{self, KernelLog},
    syscalls::followed_syscalls,
    tracefs::{self, check_syscall_enter_layout, kernel_has_syscall, tracepoint_offsets},
};
use crate::error::{AppError, AppResult};

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

/// The loaded and attached programs with the maps userspace uses.
pub struct Probes {
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
    /// Ring buffer reservations that failed: events lost.
    pub lost_events: u64,
    /// Children TRACKED had no room for: they run untraced.
    pub untracked_children: u64,
}

const _: () = assert!(COUNTER_SLOTS == 2, "KernelCounters reads every slot");

/// An attachment; dropping it detaches.
#[allow(dead_code)] // held only to be dropped
enum Link {
    Tp(TracePointLink),
    Raw(RawTracePointLink),
}

/// A program of the object, as its type.
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> AppResult<&'a mut T>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let p = ebpf
        .program_mut(name)
        .ok_or_else(|| anyhow!("program {name} missing from the object"))?;
    Ok(p.try_into().map_err(|e| anyhow!("{name}: {e}"))?)
}

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

    pub fn contains(&self, tgid: u32) -> bool {
        self.0
            .lock()
            .map(|m| m.get(&tgid, 0).is_ok())
            .unwrap_or(false)
    }
}

fn permission_error(what: &str, e: impl std::fmt::Display) -> AppError {
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

impl Probes {
    /// Loads the object with an `EVENTS` ring buffer of `ring_bytes` and attaches everything.
    ///
    /// `debug_kernel` turns on the programs' diagnostics (see `kernel_log`).
    pub fn load(ring_bytes: u32, debug_kernel: bool) -> AppResult<Probes> {
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

        let log_level = kernel_log::level(debug_kernel);
        let mut loader = EbpfLoader::new();
        loader.map_max_entries(MAP_EVENTS, ring_bytes);
        if let Some(n) = tracked_max {
            loader.map_max_entries(MAP_TRACKED, n);
        }
        let mut ebpf = loader
            .override_global("AYA_LOG_LEVEL", &log_level, true)
            .load(object)
            .map_err(|e| permission_error("load the eBPF programs", format!("{e:#}")))?;
        let kernel_log = if debug_kernel { Some(KernelLog::take(&mut ebpf)?) } else { None };

        let mut kinds: Array<&mut MapData, u32> = Array::try_from(
            ebpf.map_mut(MAP_SYSCALL_KINDS)
                .ok_or_else(|| anyhow!("map {MAP_SYSCALL_KINDS} missing"))?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        let mut missing = Vec::new();
        // The syscalls that free fd numbers, reported when entered, by their own tracepoint.
        let mut at_entry = Vec::new();
        for (name, nr, kind) in followed_syscalls() {
            if !kernel_has_syscall(&tracefs, name) {
                missing.push(name);
                continue;
            }
            if kind.reported_at_entry() {
                // Left out of SYSCALL_KINDS: `sys_exit` must not report them a second time.
                at_entry.push(name);
                continue;
            }
            kinds
                .set(nr as u32, kind as u32, 0)
                .map_err(|e| anyhow!("filling {MAP_SYSCALL_KINDS}: {e}"))?;
        }
        let mut offs: Array<&mut MapData, TracepointOffsets> = Array::try_from(
            ebpf.map_mut(MAP_OFFSETS)
                .ok_or_else(|| anyhow!("map {MAP_OFFSETS} missing"))?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        let offsets = TracepointOffsets {
            wakeup_bytes: wakeup_bytes(ring_bytes),
            ..offsets
        };
        offs.set(0, offsets, 0)
            .map_err(|e| anyhow!("filling {MAP_OFFSETS}: {e}"))?;

        let mut links = Vec::new();
        // The scheduler hooks go first: once a process is tracked, its children must be.
        for (prog, name) in [
            (PROG_FORK, "sched_process_fork"),
            (PROG_EXEC, "sched_process_exec"),
            (PROG_EXIT, "sched_process_exit"),
        ] {
            let p: &mut TracePoint = program(&mut ebpf, prog)?;
            p.load()
                .map_err(|e| permission_error(&format!("load program {prog}"), format!("{e:#}")))?;
            let id = p.attach("sched", name).map_err(|e| {
                permission_error(&format!("attach {prog} to sched:{name}"), format!("{e:#}"))
            })?;
            links.push(Link::Tp(
                p.take_link(id).map_err(|e| anyhow!("{prog}: {e}"))?,
            ));
        }
        // Attached before sys_exit: there is no moment when the opens that reuse a freed fd
        // number are reported and the closes that free it are not.
        for (prog, name) in [(PROG_SYS_ENTER_CLOSE, "close"), (PROG_SYS_ENTER_CLOSE_RANGE, "close_range")] {
            if !at_entry.contains(&name) {
                continue;
            }
            let event = format!("sys_enter_{name}");
            check_syscall_enter_layout(&tracefs, &event)?;
            let p: &mut TracePoint = program(&mut ebpf, prog)?;
            p.load()
                .map_err(|e| permission_error(&format!("load program {prog}"), format!("{e:#}")))?;
            let id = p.attach("syscalls", &event).map_err(|e| {
                permission_error(&format!("attach {prog} to syscalls:{event}"), format!("{e:#}"))
            })?;
            links.push(Link::Tp(p.take_link(id).map_err(|e| anyhow!("{prog}: {e}"))?));
        }
        let p: &mut RawTracePoint = program(&mut ebpf, PROG_SYS_EXIT)?;
        p.load().map_err(|e| {
            permission_error(&format!("load program {PROG_SYS_EXIT}"), format!("{e:#}"))
        })?;
        let id = p.attach("sys_exit").map_err(|e| {
            permission_error(
                &format!("attach {PROG_SYS_EXIT} to raw tracepoint sys_exit"),
                format!("{e:#}"),
            )
        })?;
        links.push(Link::Raw(
            p.take_link(id)
                .map_err(|e| anyhow!("{PROG_SYS_EXIT}: {e}"))?,
        ));

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
        KernelCounters {
            lost_events: slot(Counter::LostEvents),
            untracked_children: slot(Counter::UntrackedChildren),
        }
    }
}

/// Whether the kernel lets us load a BTF trampoline (an fentry program on `vfs_read`): the
/// kernel's error when it does not.
pub fn trampolines_allowed() -> Result<(), String> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading kernel BTF: {e}"))?;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_EVENTS, 64 * 1024)
        .load(ebpf_object().map_err(|e| e.to_string())?)
        .map_err(|e| format!("{e:#}"))?;
    let p: &mut aya::programs::FEntry =
        program(&mut ebpf, PROG_DOCTOR_FENTRY).map_err(|e| e.to_string())?;
    p.load("vfs_read", &btf).map_err(|e| {
        // aya appends an empty verifier log; the kernel's answer is the useful part.
        let msg = format!("{e:#}");
        msg.split(". Verifier output")
            .next()
            .unwrap_or(&msg)
            .to_string()
    })
}

/// Waiting bytes that make the kernel wake the reader: an eighth of the buffer, so a burst
/// is drained long before it fills, while a steady trickle is picked up by the drain timer.
pub fn wakeup_bytes(ring_bytes: u32) -> u32 {
    (ring_bytes / 8).max(4096)
}



