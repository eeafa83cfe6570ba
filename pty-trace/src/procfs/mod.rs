//! Ground truth from /proc: process identity and tree, fd tables, PTY indexes, limits.
//!
//! Thin edge over the `procfs` crate and a few raw reads (`readlink` of `/proc/PID/fd/N`
//! keeps the exact link text that `lsof` and `ls -l` show). Every function tolerates a process
//! that exits mid-read: it returns `None`/empty rather than an error.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
};

pub mod machine;
pub mod pty_identity;

use ::procfs::process::Process;

use crate::{
    core::machine::pty_key::slave_index,
    core::model::pty::PtySlot,
    error::{AppError, AppResult},
    clock::monotonic_ns,
    core::model::reconcile::{ObservedFd, ObservedProcess},
};

/// `PF_KTHREAD` in `/proc/PID/stat` flags.
const PF_KTHREAD: u32 = 0x0020_0000;


/// Identity of a live process.
#[derive(Clone, Debug)]
pub struct ProcInfo {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub zombie: bool,
}

pub fn proc_info(pid: u32) -> Option<ProcInfo> {
    let st = Process::new(pid as i32).ok()?.stat().ok()?;
    Some(ProcInfo { pid, ppid: st.ppid as u32, comm: st.comm, zombie: st.state == 'Z' || st.state == 'X' })
}

/// Checks that `pid` names a user process that can be traced.
pub fn validate_target(pid: i32) -> AppResult<ProcInfo> {
    if pid <= 0 {
        return Err(AppError::BadTarget(format!("invalid PID {pid}: PIDs are positive integers")));
    }
    let proc = Process::new(pid).map_err(|_| AppError::NoSuchPid(pid))?;
    let st = proc.stat().map_err(|_| AppError::NoSuchPid(pid))?;
    if st.flags & PF_KTHREAD != 0 {
        return Err(AppError::KernelThread(pid, st.comm));
    }
    if st.state == 'Z' || st.state == 'X' {
        return Err(AppError::BadTarget(format!("PID {pid} ({}) has already exited (zombie)", st.comm)));
    }
    Ok(ProcInfo { pid: pid as u32, ppid: st.ppid as u32, comm: st.comm, zombie: false })
}

/// Direct children of every thread of `pid`.
pub fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else { return out };
    for t in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|c| c.parse::<u32>().ok()));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// `root` and all its live descendants, parents before children.
pub fn descendants(root: u32) -> Vec<ProcInfo> {
    let mut out = Vec::new();
    let mut queue = vec![root];
    let mut seen = BTreeSet::new();
    while let Some(pid) = queue.pop() {
        if !seen.insert(pid) {
            continue;
        }
        if let Some(info) = proc_info(pid) {
            if info.zombie {
                continue;
            }
            queue.extend(children(pid));
            out.push(info);
        }
    }
    out
}

/// `tty-index:` of `/proc/PID/fdinfo/FD` (PTY masters only).
/// `/proc/PID/cmdline` as argv; None when it cannot be read or is empty (a zombie, a kernel
/// thread, a process that is gone).
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let argv = Process::new(pid as i32).ok()?.cmdline().ok()?;
    (!argv.is_empty()).then_some(argv)
}

pub fn tty_index(pid: u32, fd: i32) -> Option<u32> {
    fdinfo(pid, fd).and_then(|(_, idx)| idx)
}

/// (close-on-exec, tty-index) from `/proc/PID/fdinfo/FD`.
pub fn fdinfo(pid: u32, fd: i32) -> Option<(bool, Option<u32>)> {
    let s = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    Some(parse_fdinfo(&s))
}

/// Parses fdinfo text: `flags:` is octal and carries O_CLOEXEC (0o2000000) for this fd.
pub fn parse_fdinfo(s: &str) -> (bool, Option<u32>) {
    let flags = s
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0);
    let idx = s.lines().find_map(|l| l.strip_prefix("tty-index:")).and_then(|v| v.trim().parse().ok());
    (flags & 0o2000000 != 0, idx)
}

/// What one scan of a process's fd table found.
#[derive(Debug)]
pub enum Scan {
    Seen(ObservedProcess),
    /// Gone, or a zombie.
    Gone,
    /// /proc refused (EACCES/EPERM): another user's process and no CAP_SYS_PTRACE plus
    /// CAP_DAC_READ_SEARCH. Never read as "no fds".
    Denied,
}

fn denied(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

/// Reads a process's fd table. `None` when the process is gone, a zombie, or unreadable.
pub fn observe(pid: u32) -> Option<ObservedProcess> {
    match scan(pid) {
        Scan::Seen(o) => Some(o),
        Scan::Gone | Scan::Denied => None,
    }
}

/// Reads a process's fd table, telling a process that is gone from one /proc will not show.
pub fn scan(pid: u32) -> Scan {
    let scan_start_ns = monotonic_ns();
    let Some(info) = proc_info(pid) else { return Scan::Gone };
    if info.zombie {
        return Scan::Gone;
    }
    let dir = match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(d) => d,
        Err(e) if denied(&e) => return Scan::Denied,
        Err(_) => return Scan::Gone,
    };
    let mut fds = BTreeMap::new();
    for ent in dir.flatten() {
        let Some(fd) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let target = match fs::read_link(ent.path()) {
            Ok(t) => t.to_string_lossy().into_owned(),
            Err(e) if denied(&e) => return Scan::Denied,
            // Closed between readdir and readlink: simply not there.
            Err(_) => continue,
        };
        fds.insert(fd, observed(pid, fd, target));
    }
    // A process that exited during the scan shows an empty or partial table: not evidence.
    match proc_info(pid) {
        Some(still) if !still.zombie => {}
        _ => return Scan::Gone,
    }
    Scan::Seen(ObservedProcess {
        pid,
        ppid: info.ppid,
        comm: info.comm,
        fds,
        scan_start_ns,
        scan_end_ns: monotonic_ns(),
    })
}

/// One fd of `pid` as /proc shows it now (`None` when it is not open or not readable).
pub fn observe_fd(pid: u32, fd: i32) -> Option<ObservedFd> {
    let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?.to_string_lossy().into_owned();
    Some(observed(pid, fd, target))
}

/// An fd whose link reads `target`, with what its fdinfo adds (nothing when it is unreadable).
fn observed(pid: u32, fd: i32, target: String) -> ObservedFd {
    let (cloexec, tty_index) = match fdinfo(pid, fd) {
        Some((c, i)) => (Some(c), i),
        None => (None, None),
    };
    let devpts = pty_identity::end_devpts(pid, fd, &target, tty_index);
    ObservedFd { target, tty_index, devpts, cloexec }
}

/// Checks at start that /proc shows `pid`'s open files to us, with the fix when it does not.
pub fn check_fds_readable(pid: u32, comm: &str) -> AppResult<()> {
    match scan(pid) {
        Scan::Seen(_) => Ok(()),
        Scan::Gone => Err(AppError::NoSuchPid(pid as i32)),
        Scan::Denied => {
            let uid = Process::new(pid as i32).ok().and_then(|p| p.uid().ok());
            let owner = uid.map_or(String::new(), |u| format!(", uid {u}"));
            Err(AppError::NoPermission(format!(
                "cannot read the open files of PID {pid} ({comm}{owner}): /proc/{pid}/fd: permission denied; \
                 reading another user's fds needs CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH besides CAP_BPF and CAP_PERFMON: \
                 run pty-trace with sudo, or as {}",
                uid.map_or("that user".to_string(), |u| format!("uid {u}"))
            )))
        }
    }
}

/// The PTYs among `wanted` whose slave some process not in `exclude` holds: each slave is
/// named by its own inode (`stat`: instance and index), so a container's `/dev/pts/3` is not
/// the host's. A wanted PTY of unknown instance matches a slave of its index on any.
pub fn outside_slave_holders(wanted: &BTreeSet<PtySlot>, exclude: &BTreeSet<u32>) -> BTreeSet<PtySlot> {
    let mut found = BTreeSet::new();
    if wanted.is_empty() {
        return found;
    }
    let indexes: BTreeSet<u32> = wanted.iter().map(|w| w.1).collect();
    let Ok(procs) = fs::read_dir("/proc") else { return found };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        if exclude.contains(&pid) {
            continue;
        }
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            // Only links that look like a slave are stat'ed (the link text may be another
            // namespace's path; the inode is not).
            let Some(fd_no) = fd.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let Ok(t) = fs::read_link(fd.path()) else { continue };
            let Some(i) = t.to_str().and_then(|s| s.strip_prefix("/dev/pts/")).and_then(|s| s.parse::<u32>().ok()) else { continue };
            if !indexes.contains(&i) {
                continue;
            }
            let Some(st) = pty_identity::stat_fd_of(pid, fd_no) else { continue };
            let Some(index) = slave_index(st.rdev) else { continue };
            let dev = st.dev;
            if wanted.contains(&(Some(dev), index)) {
                found.insert((Some(dev), index));
            }
            if wanted.contains(&(None, index)) {
                found.insert((None, index));
            }
        }
        if found.len() == wanted.len() {
            break;
        }
    }
    found
}

/// (`/proc/sys/kernel/pty/nr`, `/proc/sys/kernel/pty/max`).
pub fn pty_usage() -> (u64, u64) {
    (proc_u64("/proc/sys/kernel/pty/nr"), proc_u64("/proc/sys/kernel/pty/max"))
}

/// A number in a /proc file (a sysctl); 0 when unreadable.
pub(crate) fn proc_u64(path: &str) -> u64 {
    fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

/// Soft RLIMIT_NOFILE of a process (`/proc/PID/limits`).
pub fn nofile_limit(pid: u32) -> Option<u64> {
    let limits = Process::new(pid as i32).ok()?.limits().ok()?;
    match limits.max_open_files.soft_limit {
        procfs::process::LimitValue::Value(v) => Some(v),
        procfs::process::LimitValue::Unlimited => None,
    }
}

/// Every process's PID (`/proc/[0-9]*`).
pub fn all_pids() -> Vec<u32> {
    let Ok(dir) = fs::read_dir("/proc") else { return Vec::new() };
    let mut pids: Vec<u32> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    pids.sort_unstable();
    pids
}

/// A live user process's `stat`, for `watch`: its name, parent and start time (clock ticks
/// after boot: with the PID, names this process and no other); `None` for a kernel thread, a
/// zombie, or a process gone.
pub struct WatchStat {
    pub info: ProcInfo,
    pub start_ticks: u64,
}

pub fn watch_stat(pid: u32) -> Option<WatchStat> {
    let st = Process::new(pid as i32).ok()?.stat().ok()?;
    if st.flags & PF_KTHREAD != 0 || st.state == 'Z' || st.state == 'X' {
        return None;
    }
    Some(WatchStat { info: ProcInfo { pid, ppid: st.ppid as u32, comm: st.comm, zombie: false }, start_ticks: st.starttime })
}

/// The parent, grandparent, ... of `pid` up to PID 1 (at most 64; fewer if one is gone).
pub fn ancestors(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let mut at = pid;
    while out.len() < 64 {
        let Some(parent) = proc_info(at).map(|i| i.ppid).filter(|&p| p > 0 && p != at) else { break };
        out.push(parent);
        if parent == 1 {
            break;
        }
        at = parent;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observes_own_process_including_a_real_pty() {
        // SAFETY: plain libc calls on fds this test owns.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY) };
        assert!(master >= 0, "posix_openpt failed");
        let me = std::process::id();
        let obs = observe(me).expect("own process is observable");
        let e = &obs.fds[&master];
        assert_eq!(e.target, "/dev/ptmx");
        assert!(e.tty_index.is_some(), "fdinfo has tty-index for a master");
        assert!(obs.scan_end_ns >= obs.scan_start_ns);
        unsafe { libc::close(master) };
    }

    #[test]
    fn parses_fdinfo() {
        let master = "pos:\t0\nflags:\t02100002\nmnt_id:\t25\nino:\t2\ntty-index:\t7\n";
        assert_eq!(parse_fdinfo(master), (true, Some(7)));
        assert_eq!(parse_fdinfo("pos:\t0\nflags:\t0100000\n"), (false, None));
        assert_eq!(parse_fdinfo("garbage"), (false, None));
    }

    #[test]
    fn rejects_bad_targets() {
        assert!(matches!(validate_target(0), Err(AppError::BadTarget(_))));
        assert!(matches!(validate_target(i32::MAX), Err(AppError::NoSuchPid(_))));
        // kthreadd is PID 2 on Linux.
        if let Some(info) = proc_info(2)
            && info.comm == "kthreadd"
        {
            assert!(matches!(validate_target(2), Err(AppError::KernelThread(2, _))));
        }
        assert!(validate_target(std::process::id() as i32).is_ok());
    }

    #[test]
    fn finds_children() {
        let mut child = std::process::Command::new("sleep").arg("5").spawn().unwrap();
        let kids = children(std::process::id());
        assert!(kids.contains(&child.id()));
        let d = descendants(std::process::id());
        assert!(d.iter().any(|p| p.pid == child.id() && p.comm == "sleep"));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
