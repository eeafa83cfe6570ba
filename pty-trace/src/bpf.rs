//! Loading and attaching the eBPF programs, and the handles userspace keeps on their maps.
//!
//! Thin edge: it turns the embedded object into attached programs plus three handles — the
//! `TRACKED` map (which processes the kernel reports on), the `EVENTS` ring buffer and the
//! `LOST` counters. Failures become one-line [`AppError`]s naming the fix.

use std::{
    path::{Path, PathBuf},
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
    MAP_EVENTS, MAP_LOST, MAP_OFFSETS, MAP_SYSCALL_KINDS, MAP_TRACKED, PROG_DOCTOR_FENTRY,
    PROG_EXEC, PROG_EXIT, PROG_FORK, PROG_SYS_EXIT, SyscallKind, TracepointOffsets,
};

use crate::error::{AppError, AppResult};

/// The compiled eBPF object (built by build.rs from `pty-trace-ebpf`).
static EBPF_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/pty-trace-ebpf.o"));

/// Every followed syscall: name, this architecture's number, and its kind.
pub fn followed_syscalls() -> Vec<(&'static str, i64, SyscallKind)> {
    use SyscallKind as K;
    #[allow(unused_mut)]
    let mut v: Vec<(&'static str, i64, SyscallKind)> = vec![
        ("openat", libc::SYS_openat, K::OpenAt),
        ("openat2", libc::SYS_openat2, K::OpenAt2),
        (
            "open_by_handle_at",
            libc::SYS_open_by_handle_at,
            K::OpenByHandleAt,
        ),
        ("close", libc::SYS_close, K::Close),
        ("close_range", libc::SYS_close_range, K::CloseRange),
        ("dup", libc::SYS_dup, K::Dup),
        ("dup3", libc::SYS_dup3, K::Dup3),
        ("fcntl", libc::SYS_fcntl, K::Fcntl),
        ("pipe2", libc::SYS_pipe2, K::Pipe2),
        ("socket", libc::SYS_socket, K::Socket),
        ("socketpair", libc::SYS_socketpair, K::SocketPair),
        ("accept", libc::SYS_accept, K::Accept),
        ("accept4", libc::SYS_accept4, K::Accept4),
        ("eventfd2", libc::SYS_eventfd2, K::EventFd2),
        ("epoll_create1", libc::SYS_epoll_create1, K::EpollCreate1),
        ("timerfd_create", libc::SYS_timerfd_create, K::TimerfdCreate),
        ("signalfd4", libc::SYS_signalfd4, K::Signalfd4),
        ("memfd_create", libc::SYS_memfd_create, K::MemfdCreate),
        ("memfd_secret", 447, K::MemfdSecret),
        ("pidfd_open", libc::SYS_pidfd_open, K::PidfdOpen),
        ("pidfd_getfd", libc::SYS_pidfd_getfd, K::PidfdGetfd),
        ("inotify_init1", libc::SYS_inotify_init1, K::InotifyInit1),
        ("fanotify_init", libc::SYS_fanotify_init, K::FanotifyInit),
        (
            "perf_event_open",
            libc::SYS_perf_event_open,
            K::PerfEventOpen,
        ),
        ("userfaultfd", libc::SYS_userfaultfd, K::Userfaultfd),
        ("io_uring_setup", libc::SYS_io_uring_setup, K::IoUringSetup),
        ("open_tree", libc::SYS_open_tree, K::OpenTree),
        ("fsopen", libc::SYS_fsopen, K::Fsopen),
        ("fsmount", libc::SYS_fsmount, K::Fsmount),
        ("fspick", libc::SYS_fspick, K::Fspick),
        ("landlock_create_ruleset", 444, K::LandlockCreateRuleset),
        ("mq_open", libc::SYS_mq_open, K::MqOpen),
        ("bpf", libc::SYS_bpf, K::Bpf),
        ("ioctl", libc::SYS_ioctl, K::Ioctl),
        ("clone", libc::SYS_clone, K::Clone),
        ("clone3", libc::SYS_clone3, K::Clone3),
        ("unshare", libc::SYS_unshare, K::Unshare),
        ("execve", libc::SYS_execve, K::Execve),
        ("execveat", libc::SYS_execveat, K::Execveat),
    ];
    // Legacy syscalls that only some architectures have.
    #[cfg(target_arch = "x86_64")]
    v.extend([
        ("open", libc::SYS_open, K::Open),
        ("creat", libc::SYS_creat, K::Creat),
        ("dup2", libc::SYS_dup2, K::Dup2),
        ("pipe", libc::SYS_pipe, K::Pipe),
        ("eventfd", libc::SYS_eventfd, K::EventFd),
        ("epoll_create", libc::SYS_epoll_create, K::EpollCreate),
        ("signalfd", libc::SYS_signalfd, K::Signalfd),
        ("inotify_init", libc::SYS_inotify_init, K::InotifyInit),
        ("fork", libc::SYS_fork, K::Fork),
        ("vfork", libc::SYS_vfork, K::Vfork),
    ]);
    v
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
        exec_pid: need(&exec, "sched_process_exec", "pid")?,
        exec_old_pid: need(&exec, "sched_process_exec", "old_pid")?,
        exit_pid: need(&exit, "sched_process_exit", "pid")?,
        exit_group_dead: field_offset(&exit, "group_dead").unwrap_or(u32::MAX),
        wakeup_bytes: 0,
        _pad: 0,
    })
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
    lost: PerCpuArray<MapData, u64>,
    /// Followed syscalls this kernel does not have.
    pub missing_syscalls: Vec<&'static str>,
    pub attached_tracepoints: usize,
    pub tracefs: PathBuf,
    pub load_time: Duration,
}

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
    pub fn load(ring_bytes: u32) -> AppResult<Probes> {
        let start = Instant::now();
        if !cfg!(target_arch = "x86_64") {
            return Err(AppError::Other(anyhow!(
                "tracing is x86_64 only for now (the kernel side reads x86_64 syscall registers); this is {}",
                std::env::consts::ARCH
            )));
        }
        let tracefs = crate::doctor::find_tracefs().map_err(AppError::NoTracefs)?;
        let offsets = tracepoint_offsets(&tracefs)?;
        // RLIMIT_MEMLOCK cannot be raised without CAP_SYS_RESOURCE and is not needed on kernels
        // with memcg accounting (5.11+): try, and ignore a refusal.
        let rlim = libc::rlimit {
            rlim_cur: libc::RLIM_INFINITY,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: plain syscall with a valid pointer.
        unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };

        let mut ebpf = EbpfLoader::new()
            .map_max_entries(MAP_EVENTS, ring_bytes)
            .load(EBPF_OBJECT)
            .map_err(|e| permission_error("load the eBPF programs", format!("{e:#}")))?;

        let mut kinds: Array<&mut MapData, u32> = Array::try_from(
            ebpf.map_mut(MAP_SYSCALL_KINDS)
                .ok_or_else(|| anyhow!("map {MAP_SYSCALL_KINDS} missing"))?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        let mut missing = Vec::new();
        for (name, nr, kind) in followed_syscalls() {
            if !kernel_has_syscall(&tracefs, name) {
                missing.push(name);
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
        let lost = PerCpuArray::try_from(
            ebpf.take_map(MAP_LOST)
                .ok_or_else(|| anyhow!("map {MAP_LOST} missing"))?,
        )
        .map_err(|e| anyhow!("{e}"))?;
        Ok(Probes {
            _ebpf: ebpf,
            tracked: Tracked(Arc::new(Mutex::new(tracked))),
            events: Some(events),
            lost,
            missing_syscalls: missing,
            attached_tracepoints: links.len(),
            tracefs,
            load_time: start.elapsed(),
            links,
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

    /// Total failed ring buffer reservations over all CPUs.
    pub fn lost_events(&self) -> u64 {
        self.lost.get(&0, 0).map(|v| v.iter().sum()).unwrap_or(0)
    }
}

/// Whether the kernel lets us load a BTF trampoline (an fentry program on `vfs_read`): the
/// kernel's error when it does not.
pub fn trampolines_allowed() -> Result<(), String> {
    let btf = aya::Btf::from_sys_fs().map_err(|e| format!("reading kernel BTF: {e}"))?;
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(MAP_EVENTS, 64 * 1024)
        .load(EBPF_OBJECT)
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

/// Whether this kernel has the syscall `name`: every syscall it has comes with tracepoint
/// metadata in tracefs (only looked at, never enabled).
pub fn kernel_has_syscall(tracefs: &Path, name: &str) -> bool {
    tracefs.join("events/syscalls").join(format!("sys_exit_{name}")).is_dir()
}

/// Names of the followed syscalls, for `doctor`.
pub fn followed_syscall_names() -> Vec<&'static str> {
    followed_syscalls().into_iter().map(|(n, _, _)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORK_6_18: &str = "name: sched_process_fork\nID: 366\nformat:\n\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\tfield:__data_loc char[] child_comm;\toffset:16;\tsize:4;\tsigned:0;\n\tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
    const FORK_OLD: &str = "\tfield:char parent_comm[16];\toffset:8;\tsize:16;\tsigned:1;\n\tfield:pid_t parent_pid;\toffset:24;\tsize:4;\tsigned:1;\n\tfield:char child_comm[16];\toffset:28;\tsize:16;\tsigned:1;\n\tfield:pid_t child_pid;\toffset:44;\tsize:4;\tsigned:1;\n";

    #[test]
    fn reads_offsets_from_both_layouts() {
        assert_eq!(field_offset(FORK_6_18, "child_pid"), Some(20));
        assert_eq!(field_offset(FORK_6_18, "parent_comm"), Some(8));
        assert_eq!(field_offset(FORK_OLD, "child_pid"), Some(44));
        assert_eq!(field_offset(FORK_OLD, "child_comm"), Some(28));
        assert_eq!(field_offset(FORK_OLD, "group_dead"), None);
    }

    #[test]
    fn syscall_table_is_consistent() {
        let all = followed_syscalls();
        let mut names: Vec<_> = all.iter().map(|x| x.0).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "duplicate syscall name");
        for (name, nr, _) in &all {
            assert!(
                *nr >= 0 && (*nr as u32) < pty_trace_common::MAX_SYSCALL_NR,
                "{name} nr {nr}"
            );
        }
        // The required minimum of the foundation issue.
        for n in ["openat", "close", "ioctl"] {
            assert!(names.contains(&n));
        }
    }
}
