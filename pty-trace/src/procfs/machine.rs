//! One look at the whole machine for `pty-trace top`: the PTY pool, the devpts instances,
//! and every process holding a PTY end or nearly all of its RLIMIT_NOFILE.
//!
//! Reading every fd of every process each interval costs too much (about 5 µs a link: a
//! machine with 1,000 processes of 50 fds would take a quarter of a core at 1 s), so the scan
//! is incremental:
//!
//! - every process, every interval: one `stat` of `/proc/PID/fd`, whose size is its number of
//!   open fds (Linux 6.2; before, the directory is counted);
//! - its fd table (a link and, for PTYs, fdinfo each) only when that number changed, when it
//!   is new, when it holds a PTY end (those are few and are what `top` is for), and once every
//!   [`REFRESH_TICKS`] intervals otherwise (spread over the intervals by pid): an fd swapped
//!   for another of the same count is seen within that time. When the last scan explained
//!   the whole pool (`rank::pool_explained`: every PTY's master found, none orphaned), such a
//!   swap cannot hide a master or change an orphan verdict, and the re-read comes only every
//!   [`EXPLAINED_REFRESH_TICKS`] intervals: on a machine of many processes and few PTYs this
//!   is most of the work saved (`cargo xtask bench -- top`);
//! - its identity, command, limits and container only when it is new or refreshed.
//!
//! A pid that disappears from /proc is forgotten; its start time tells a reused pid apart.

use std::{
    collections::{BTreeMap, HashMap},
    fs,
    io,
    os::unix::fs::MetadataExt,
};

use ::procfs::process::Process;

use super::pty_identity::{self, DevptsMountInfo};
use crate::core::machine::{
    DevId, DevptsMount, FileTable, Holding, MachineScan, PtyEnd, PtyPool, container,
    rank::{near_fd_limit, pool_explained},
};

/// A process without PTY ends has its fd table read again at least this often (intervals).
pub const REFRESH_TICKS: u64 = 60;
/// The same while the pool is explained (see the module's doc).
pub const EXPLAINED_REFRESH_TICKS: u64 = 300;
/// Mount tables are read again this often (intervals): containers come and go.
const MOUNTS_REFRESH_TICKS: u64 = 30;

/// What is remembered of a process between scans.
#[derive(Debug)]
struct Known {
    holding: Holding,
    /// Its mount namespace (the inode of `/proc/PID/ns/mnt`).
    mnt_ns: u64,
    /// The fd count when its table was last read.
    fds_read: u64,
    /// The inode of its `/proc/PID/fd` then: a new process with the same pid (and maybe the
    /// same count) has a new one, so it is not taken for the old.
    fd_dir_ino: u64,
}

/// A mount namespace's devpts mounts, the tick they were read at, and its container's name.
type NsMounts = (Vec<DevptsMountInfo>, u64, Option<String>);

/// The scanner and what it remembers.
#[derive(Debug)]
pub struct MachineScanner {
    tick: u64,
    procs: HashMap<u32, Known>,
    /// Devpts mounts per mount namespace, and the tick they were read at.
    mounts: HashMap<u64, NsMounts>,
    host_mnt_ns: u64,
    /// `stat` of `/proc/PID/fd` gives the fd count (Linux 6.2 and later).
    count_by_stat: bool,
    users: BTreeMap<u32, String>,
    ticks_per_s: f64,
    /// Masters whose instance is known: (pid, start, fd, tty-index, mnt_id) → instance.
    master_devpts: HashMap<(u32, u64, i32, u32, u64), DevId>,
    /// Masters whose instance the kernel would not give (pidfd_getfd refused or missing).
    pub instance_failures: u64,
    /// Whether the last scan explained the whole pool (re-reads of quiet processes are rare).
    explained: bool,
}

impl Default for MachineScanner {
    fn default() -> Self {
        MachineScanner::new()
    }
}

impl MachineScanner {
    pub fn new() -> MachineScanner {
        let count_by_stat = fs::metadata("/proc/self/fd").is_ok_and(|m| m.size() > 0);
        MachineScanner {
            tick: 0,
            procs: HashMap::new(),
            mounts: HashMap::new(),
            // PID 1's namespace is the host's; where it cannot be read (a sandbox that hides
            // PID 1 even from root), pty-trace's own stands in.
            host_mnt_ns: pty_identity::mnt_ns(1).or_else(|| pty_identity::mnt_ns(std::process::id())).unwrap_or(0),
            count_by_stat,
            users: read_users(),
            ticks_per_s: ::procfs::ticks_per_second() as f64,
            master_devpts: HashMap::new(),
            instance_failures: 0,
            explained: false,
        }
    }

    /// Looks at the machine once.
    pub fn scan(&mut self, now_ns: u64) -> MachineScan {
        self.tick += 1;
        let uptime_s = fs::read_to_string("/proc/uptime")
            .ok()
            .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse::<f64>().ok()))
            .unwrap_or(0.0);
        let mut seen = 0;
        let mut unreadable = 0;
        let mut live = std::collections::HashSet::new();
        let pids: Vec<u32> = fs::read_dir("/proc")
            .map(|d| d.flatten().filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok())).collect())
            .unwrap_or_default();
        // pty-trace itself is read too: the slave of the terminal `top` runs in is held by it, and
        // leaving it out would call that terminal's master orphaned. (Its transient fds, the
        // pidfd and the peer opened `O_PATH`, exist only while another process is read.)
        for pid in pids {
            let (count, ino) = match self.fd_count(pid) {
                Ok(c) => c,
                Err(e) if denied(&e) => {
                    unreadable += 1;
                    seen += 1;
                    continue;
                }
                Err(_) => continue,
            };
            seen += 1;
            if count == 0 {
                // Kernel threads and zombies: nothing to hold.
                continue;
            }
            live.insert(pid);
            let table_due = self.table_due(pid);
            let fresh = match self.procs.get_mut(&pid) {
                Some(k) => {
                    let holds = !k.holding.masters.is_empty() || !k.holding.slaves.is_empty();
                    if count == k.fds_read && ino == k.fd_dir_ino && !holds && !table_due {
                        k.holding.fds = count;
                        k.holding.age_s = age(uptime_s, k.holding.start_ticks, self.ticks_per_s);
                        continue;
                    }
                    false
                }
                None => true,
            };
            match self.read_process(pid, (count, ino), uptime_s, fresh) {
                Ok(k) => {
                    self.procs.insert(pid, k);
                }
                Err(e) if denied(&e) => {
                    unreadable += 1;
                    live.remove(&pid);
                }
                Err(_) => {
                    live.remove(&pid);
                }
            }
        }
        self.procs.retain(|pid, _| live.contains(pid));
        let alive: std::collections::HashSet<(u32, u64)> = self.procs.values().map(|k| (k.holding.pid, k.holding.start_ticks)).collect();
        self.master_devpts.retain(|k, _| alive.contains(&(k.0, k.1)));
        let instances = self.instances();
        let scan = MachineScan {
            now_ns,
            pool: pty_pool(),
            files: file_table(),
            instances,
            procs: self
                .procs
                .values()
                .filter(|k| {
                    let h = &k.holding;
                    !h.masters.is_empty() || !h.slaves.is_empty() || near_fd_limit(h.fds, h.nofile)
                })
                .map(|k| k.holding.clone())
                .collect(),
            processes_seen: seen,
            unreadable,
        };
        self.explained = pool_explained(&scan);
        scan
    }

    /// Whether a quiet process's fd table is due to be read again this interval (spread over
    /// the intervals by pid).
    fn table_due(&self, pid: u32) -> bool {
        let every = if self.explained { EXPLAINED_REFRESH_TICKS } else { REFRESH_TICKS };
        (self.tick + pid as u64).is_multiple_of(every)
    }

    /// The number of open fds of `pid`, and the inode of its `/proc/PID/fd`.
    fn fd_count(&self, pid: u32) -> io::Result<(u64, u64)> {
        let path = format!("/proc/{pid}/fd");
        let m = fs::metadata(&path)?;
        if self.count_by_stat {
            return Ok((m.size(), m.ino()));
        }
        Ok((fs::read_dir(&path)?.count() as u64, m.ino()))
    }

    /// Reads a process: its fd table always; who it is only when `fresh` or due.
    fn read_process(&mut self, pid: u32, (count, ino): (u64, u64), uptime_s: f64, fresh: bool) -> io::Result<Known> {
        let old = self.procs.remove(&pid);
        let stat = Process::new(pid as i32).and_then(|p| p.stat()).map_err(|_| io::Error::from(io::ErrorKind::NotFound))?;
        let start_ticks = stat.starttime;
        let same = old.as_ref().filter(|k| !fresh && k.holding.start_ticks == start_ticks);
        let due = (self.tick + pid as u64).is_multiple_of(REFRESH_TICKS);
        let (mut holding, mnt) = match same {
            Some(k) if !due => (k.holding.clone(), k.mnt_ns),
            _ => {
                // The real uid from `status`: `/proc/PID` of a non-dumpable process is root's.
                let uid = real_uid(pid)?;
                let mnt = pty_identity::mnt_ns(pid).unwrap_or(0);
                let cgroup = fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
                let container = container::from_cgroup(&cgroup)
                    .or_else(|| (mnt != 0 && mnt != self.host_mnt_ns).then(|| container::from_mount_ns(mnt)));
                let h = Holding {
                    pid,
                    ppid: stat.ppid as u32,
                    uid,
                    user: self.users.get(&uid).cloned(),
                    comm: stat.comm.clone(),
                    argv: super::cmdline(pid).unwrap_or_default(),
                    start_ticks,
                    nofile: super::nofile_limit(pid),
                    container,
                    ..Default::default()
                };
                if mnt != 0 && !self.mounts.contains_key(&mnt) {
                    let list = pty_identity::devpts_mounts(pid).unwrap_or_default();
                    self.mounts.insert(mnt, (list, self.tick, h.container.clone()));
                }
                (h, mnt)
            }
        };
        holding.age_s = age(uptime_s, start_ticks, self.ticks_per_s);
        let (masters, slaves, fds) = self.read_ptys(pid, start_ticks)?;
        holding.masters = masters;
        holding.slaves = slaves;
        holding.fds = if self.count_by_stat { count } else { fds };
        Ok(Known { holding, mnt_ns: mnt, fds_read: count, fd_dir_ino: ino })
    }

    /// The PTY ends in a process's fd table, and how many fds it has.
    fn read_ptys(&mut self, pid: u32, start: u64) -> io::Result<(Vec<PtyEnd>, Vec<PtyEnd>, u64)> {
        let dir = fs::read_dir(format!("/proc/{pid}/fd"))?;
        let (mut masters, mut slaves, mut n) = (Vec::new(), Vec::new(), 0);
        let mut pidfd = None;
        for ent in dir.flatten() {
            let Some(fd) = ent.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            n += 1;
            let Ok(link) = fs::read_link(ent.path()) else { continue };
            let link = link.to_string_lossy();
            if link == "/dev/ptmx" || link.ends_with("/ptmx") {
                let Some((index, mnt_id)) = fdinfo_tty(pid, fd) else { continue };
                let key = (pid, start, fd, index, mnt_id);
                let devpts = match self.master_devpts.get(&key) {
                    Some(d) => Some(*d),
                    None => {
                        if pidfd.is_none() {
                            pidfd = pty_identity::pidfd(pid).ok();
                        }
                        match pidfd.as_ref().map(|p| pty_identity::master_devpts(p, fd)) {
                            Some(Ok(d)) => {
                                self.master_devpts.insert(key, d);
                                Some(d)
                            }
                            _ => {
                                self.instance_failures += 1;
                                None
                            }
                        }
                    }
                };
                masters.push(PtyEnd { devpts, index: Some(index) });
            } else if may_be_slave(&link)
                && let Some(end) = pty_identity::slave_end(pid, fd)
            {
                slaves.push(end);
            }
        }
        Ok((masters, slaves, n))
    }

    /// The devpts instances of every mount namespace seen (mount tables re-read now and then).
    fn instances(&mut self) -> Vec<DevptsMount> {
        // A process of each namespace still alive, through which its mount table is read again
        // when due (a namespace whose processes are all gone is forgotten).
        let mut live_ns: HashMap<u64, (u32, Option<String>)> = HashMap::new();
        for k in self.procs.values().filter(|k| k.mnt_ns != 0) {
            live_ns.entry(k.mnt_ns).or_insert((k.holding.pid, k.holding.container.clone()));
        }
        self.mounts.retain(|ns, _| live_ns.contains_key(ns) || *ns == self.host_mnt_ns);
        for (ns, (pid, label)) in live_ns {
            let due = self.mounts.get(&ns).is_none_or(|(_, at, _)| *at + MOUNTS_REFRESH_TICKS <= self.tick);
            if due && ns != self.host_mnt_ns
                && let Ok(list) = pty_identity::devpts_mounts(pid)
            {
                self.mounts.insert(ns, (list, self.tick, label));
            }
        }
        if self.mounts.get(&self.host_mnt_ns).is_some_and(|(_, at, _)| *at + MOUNTS_REFRESH_TICKS <= self.tick) {
            self.mounts.remove(&self.host_mnt_ns);
        }
        if !self.mounts.contains_key(&self.host_mnt_ns) {
            let list = pty_identity::devpts_mounts(1).or_else(|_| pty_identity::devpts_mounts(std::process::id())).unwrap_or_default();
            self.mounts.insert(self.host_mnt_ns, (list, self.tick, None));
        }
        let host = self.mounts.get(&self.host_mnt_ns).and_then(|(m, _, _)| pty_identity::dev_pts(m));
        let mut out: BTreeMap<DevId, DevptsMount> = BTreeMap::new();
        // The host's namespace first, so an instance also mounted there is named by the host.
        let mut order: Vec<(&u64, &NsMounts)> = self.mounts.iter().collect();
        order.sort_by_key(|(ns, _)| (**ns != self.host_mnt_ns, **ns));
        for (ns, (list, _, label)) in order {
            for m in list {
                out.entry(m.devpts).or_insert_with(|| DevptsMount {
                    devpts: m.devpts,
                    mount: m.mount_point.clone(),
                    host: Some(m.devpts) == host,
                    max: m.max,
                    container: (*ns != self.host_mnt_ns).then(|| label.clone().unwrap_or_else(|| container::from_mount_ns(*ns))),
                });
            }
        }
        out.into_values().collect()
    }
}

/// Whether a link may name a PTY slave (then its inode decides): `/dev/pts/N`, devpts mounted
/// elsewhere (a chroot's, a container's seen from outside), `/dev/tty*` names and the
/// `/dev/console` a container runtime bind-mounts from a host slave.
fn may_be_slave(link: &str) -> bool {
    link.starts_with('/') && (link.contains("/pts/") || link.starts_with("/dev/tty") || link == "/dev/console")
}

fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM))
}

fn age(uptime_s: f64, start_ticks: u64, ticks_per_s: f64) -> f64 {
    (uptime_s - start_ticks as f64 / ticks_per_s).max(0.0)
}

/// The real uid of `pid` (`Uid:` in `/proc/PID/status`).
pub(crate) fn real_uid(pid: u32) -> io::Result<u32> {
    let s = fs::read_to_string(format!("/proc/{pid}/status"))?;
    s.lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| io::Error::from(io::ErrorKind::InvalidData))
}

/// (tty-index, mnt_id) of a PTY master's fdinfo (the index parsed as everywhere else).
fn fdinfo_tty(pid: u32, fd: i32) -> Option<(u32, u64)> {
    let s = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}")).ok()?;
    let mnt_id = s.lines().find_map(|l| l.strip_prefix("mnt_id:")).and_then(|v| v.trim().parse().ok());
    Some((super::parse_fdinfo(&s).1?, mnt_id.unwrap_or(0)))
}

/// `/proc/sys/kernel/pty/{nr,max,reserve}`.
pub fn pty_pool() -> PtyPool {
    let (nr, max) = super::pty_usage();
    PtyPool { nr, max, reserve: super::proc_u64("/proc/sys/kernel/pty/reserve") }
}

/// `/proc/sys/fs/file-nr`: allocated, free (always 0 since 2.6), max.
pub fn file_table() -> FileTable {
    let s = fs::read_to_string("/proc/sys/fs/file-nr").unwrap_or_default();
    let v: Vec<u64> = s.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    FileTable { allocated: v.first().copied().unwrap_or(0), max: v.get(2).copied().unwrap_or(0) }
}

/// uid → name from /etc/passwd (names only; a uid it lacks is shown as a number).
fn read_users() -> BTreeMap<u32, String> {
    fs::read_to_string("/etc/passwd")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some((f.get(2)?.parse().ok()?, f.first()?.to_string()))
        })
        .collect()
}
