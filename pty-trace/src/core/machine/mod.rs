//! The machine-wide view behind `pty-trace top`: who holds this machine's PTYs, how fast the
//! pool drains, and which devpts instance (host or container) each PTY lives in.
//!
//! Pure: [`MachineScan`] is what one look at /proc found (the edge, `procfs::machine`, fills
//! it); [`MachineBook`] keeps the little history the rates need and turns each scan into a
//! [`MachineRec`], the row set `top` draws, `--json` prints and `--jsonl` records.
//!
//! - `pty_key.rs`: [`DevId`] and [`PtyKey`], a PTY named by (devpts instance, index);
//! - `rank.rs`: rows from a scan: orphans across the whole machine, the RLIMIT_NOFILE rule, sorting;
//! - `trend.rs`: growth per minute and the estimated time to exhaustion;
//! - `container.rs`: a container's name from a process's cgroup path.

pub mod container;
pub mod history;
pub mod pty_key;
pub mod rank;
pub mod trend;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use pty_key::{DevId, PtyEnd, PtyKey};
pub use rank::{TopSort, rows};
use trend::Trend;

/// The kernel's PTY pool (`/proc/sys/kernel/pty/{nr,max,reserve}`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtyPool {
    pub nr: u64,
    pub max: u64,
    /// PTYs only the initial devpts instance may use: other instances stop at `max - reserve`.
    pub reserve: u64,
}

/// The machine's file table (`/proc/sys/fs/file-nr`: allocated, free, max).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileTable {
    pub allocated: u64,
    pub max: u64,
}

/// One mounted devpts instance.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevptsMount {
    pub devpts: DevId,
    /// Where it is mounted, in the mount namespace it was found in.
    pub mount: String,
    /// The host's instance (the one at /dev/pts in PID 1's mount namespace).
    pub host: bool,
    /// Its `max=` mount option, when set.
    pub max: Option<u64>,
    /// The container whose mount namespace it was found in (not the host's).
    pub container: Option<String>,
}

/// One process as one scan saw it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Holding {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    /// The user's name, when the password database has it.
    pub user: Option<String>,
    pub comm: String,
    /// argv, unredacted (the rows redact it).
    pub argv: Vec<String>,
    /// Its start, in clock ticks since boot (`/proc/PID/stat` field 22): with the pid, what
    /// tells this process from a later one with the same pid.
    pub start_ticks: u64,
    pub age_s: f64,
    pub fds: u64,
    /// Soft RLIMIT_NOFILE; `None` when unlimited or unreadable.
    pub nofile: Option<u64>,
    pub masters: Vec<PtyEnd>,
    pub slaves: Vec<PtyEnd>,
    pub container: Option<String>,
}

/// What one look at the machine found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MachineScan {
    /// Monotonic time of the scan, ns.
    pub now_ns: u64,
    pub pool: PtyPool,
    pub files: FileTable,
    pub instances: Vec<DevptsMount>,
    /// Processes that hold a PTY end or many fds (others need not be passed in).
    pub procs: Vec<Holding>,
    /// Every process looked at.
    pub processes_seen: u64,
    /// Processes whose fds /proc would not show (another user's, without the capabilities):
    /// they may hold PTYs that are not counted, so orphans are then a best effort.
    pub unreadable: u64,
}

/// One devpts instance in a machine record: the mount as found, and what it holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InstanceState {
    #[serde(flatten)]
    pub instance: DevptsMount,
    /// Distinct PTYs of this instance whose master some process holds.
    pub ptys: u64,
    /// Of them, those whose slave no process holds.
    pub orphaned: u64,
}

/// The machine-wide numbers of a `machine` record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineState {
    pub pty_nr: u64,
    pub pty_max: u64,
    pub pty_reserve: u64,
    /// Estimate: growth of `pty/nr` per minute (least squares over the last minute); `None`
    /// until two scans 2 s apart.
    pub pty_growth_per_min: Option<f64>,
    /// Estimate: seconds until `pty/nr` reaches `pty/max` at that growth; `None` when not growing.
    pub pty_exhaustion_eta_s: Option<f64>,
    pub file_nr: u64,
    pub file_max: u64,
    pub devpts: Vec<InstanceState>,
    pub processes_seen: u64,
    pub unreadable: u64,
    /// Processes holding at least one PTY end.
    pub holders: u64,
    /// Distinct PTYs whose master some process holds (a master shared by a fork or a dup
    /// counts once; masters of an unknown instance once each).
    pub masters: u64,
    /// Of them, those whose slave no process holds.
    pub orphaned: u64,
    /// Masters whose devpts instance the kernel would not give (`pidfd_getfd` refused, or
    /// Linux < 5.6): counted in `masters`, never judged orphaned.
    #[serde(default)]
    pub masters_instance_unknown: u64,
}

/// One process row of a machine record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HolderRow {
    pub pid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub user: Option<String>,
    /// The command line, redacted.
    pub command: String,
    pub masters: u64,
    /// Masters whose slave no process on the machine holds.
    pub orphaned: u64,
    pub slaves: u64,
    pub fds: u64,
    pub nofile: Option<u64>,
    /// Estimate: masters gained per minute over the last minute.
    pub masters_per_min: Option<f64>,
    pub age_s: f64,
    /// Not the host's: a container's name, or its mount namespace.
    pub container: Option<String>,
    /// The devpts instances its masters live in, when not only the host's.
    pub devpts: Vec<DevId>,
    /// Holds more than 80% of its RLIMIT_NOFILE.
    pub near_fd_limit: bool,
}

/// `{"machine": ..., "processes": [...]}`: what `top --json` prints and a `machine` record holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MachineRec {
    pub machine: MachineState,
    pub processes: Vec<HolderRow>,
}

/// The history the rates need, across scans.
#[derive(Debug, Default)]
pub struct MachineBook {
    pool: Trend,
    /// Masters held, per (pid, start): a reused pid starts a new trend.
    masters: BTreeMap<(u32, u64), Trend>,
}

impl MachineBook {
    /// The record of `scan`, rows sorted by `sort`.
    pub fn update(&mut self, scan: &MachineScan, sort: TopSort) -> MachineRec {
        self.pool.push(scan.now_ns, scan.pool.nr as f64);
        let live: std::collections::BTreeSet<(u32, u64)> = scan.procs.iter().map(|p| (p.pid, p.start_ticks)).collect();
        self.masters.retain(|k, _| live.contains(k));
        for p in &scan.procs {
            self.masters.entry((p.pid, p.start_ticks)).or_default().push(scan.now_ns, p.masters.len() as f64);
        }
        let growth = |p: &Holding| self.masters.get(&(p.pid, p.start_ticks)).and_then(Trend::per_min);
        let (processes, instances) = rows(scan, growth, sort);
        let unknown = scan.procs.iter().flat_map(|p| &p.masters).filter(|m| m.key().is_none()).count() as u64;
        let per_min = self.pool.per_min();
        let eta = per_min.and_then(|g| trend::eta_s(scan.pool.nr, scan.pool.max, g));
        MachineRec {
            machine: MachineState {
                pty_nr: scan.pool.nr,
                pty_max: scan.pool.max,
                pty_reserve: scan.pool.reserve,
                pty_growth_per_min: per_min,
                pty_exhaustion_eta_s: eta,
                file_nr: scan.files.allocated,
                file_max: scan.files.max,
                holders: processes.iter().filter(|r| r.masters + r.slaves > 0).count() as u64,
                masters: instances.iter().map(|i| i.ptys).sum::<u64>() + unknown,
                orphaned: instances.iter().map(|i| i.orphaned).sum(),
                masters_instance_unknown: unknown,
                devpts: instances,
                processes_seen: scan.processes_seen,
                unreadable: scan.unreadable,
            },
            processes,
        }
    }
}
