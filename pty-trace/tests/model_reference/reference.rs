//! The reference: a deliberately simple model of processes and their fd tables (`Ref`), its
//! starting state, what "/proc" would show for a process, the helpers that emit events, and
//! `Ref::step`. What each operation does to the tables is in `kernel`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use pty_trace::core::model::reconcile::{ObservedFd, ObservedProcess};
use pty_trace::core::model::{Event, Header, Model};
use pty_trace_common::SyscallKind as K;

use crate::ops::{Op, OpKind, op_kind};

/// Session roots. Each starts with fds 0-2 on its terminal, `/dev/pts/<index>`.
pub(crate) const SESSIONS: [(u32, u32); 2] = [(100, 0), (200, 1)];

// ---------------------------------------------------------------------------------------------
// The reference

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    None,
    Master,
    Slave,
}

#[derive(Clone, Debug)]
pub(crate) struct RFd {
    pub(crate) role: Role,
    pub(crate) cloexec: bool,
    /// The PTY index as the events revealed it (what the model can know).
    pub(crate) index: Option<u32>,
    /// The PTY index the kernel really allocated.
    pub(crate) true_index: Option<u32>,
    /// A `/proc/PID/fd` link target for the file.
    pub(crate) target: String,
    /// A directory fd on `/dev/pts` (usable as an openat dirfd).
    pub(crate) dir: bool,
}

impl RFd {
    pub(crate) fn new(role: Role, cloexec: bool, target: impl Into<String>) -> RFd {
        RFd {
            role,
            cloexec,
            index: None,
            true_index: None,
            target: target.into(),
            dir: false,
        }
    }
}

/// An fd table: slot `n` is fd `n`.
pub(crate) type RTable = Vec<Option<RFd>>;

pub(crate) fn lowest_free(t: &RTable, min: usize) -> usize {
    (min..)
        .find(|&i| t.get(i).is_none_or(|e| e.is_none()))
        .unwrap()
}

pub(crate) fn put(t: &mut RTable, fd: usize, e: RFd) {
    if t.len() <= fd {
        t.resize(fd + 1, None);
    }
    t[fd] = Some(e);
}

pub(crate) fn get(t: &RTable, fd: usize) -> Option<&RFd> {
    t.get(fd).and_then(Option::as_ref)
}

pub(crate) fn open_fds(t: &RTable) -> Vec<usize> {
    t.iter()
        .enumerate()
        .filter(|(_, e)| e.is_some())
        .map(|(i, _)| i)
        .collect()
}

#[derive(Clone, Debug)]
pub(crate) struct RProc {
    pub(crate) session: u32,
    pub(crate) table: u64,
    /// Threads besides the leader.
    pub(crate) threads: Vec<u32>,
    /// argv of the running exec (None: not exec'd while traced).
    pub(crate) argv: Option<Vec<String>>,
}

pub(crate) struct Ref {
    pub(crate) procs: BTreeMap<u32, RProc>,
    pub(crate) tables: HashMap<u64, RTable>,
    pub(crate) next_table: u64,
    pub(crate) next_pid: u32,
    pub(crate) next_pty: u32,
    pub(crate) ts: u64,
    pub(crate) serial: u32,
}

impl Ref {
    /// The reference and the model in the same starting state: both session roots seeded from
    /// "/proc" with their terminal on fds 0-2.
    pub(crate) fn new() -> (Ref, Model) {
        let mut r = Ref {
            procs: BTreeMap::new(),
            tables: HashMap::new(),
            next_table: 0,
            next_pid: 1000,
            next_pty: SESSIONS.len() as u32,
            ts: 100,
            serial: 0,
        };
        let mut m = Model::new();
        for (root, tty) in SESSIONS {
            let mut t = RTable::new();
            for fd in 0..3 {
                let mut e = RFd::new(Role::Slave, false, format!("/dev/pts/{tty}"));
                e.index = Some(tty);
                e.true_index = Some(tty);
                put(&mut t, fd, e);
            }
            r.next_table += 1;
            r.tables.insert(r.next_table, t);
            r.procs.insert(
                root,
                RProc {
                    session: root,
                    table: r.next_table,
                    threads: Vec::new(),
                    argv: None,
                },
            );
            m.add_session(root, 1);
            m.add_process(root, 1, root, "bash", 1);
            let out = m.reconcile(&r.observe(root, 2));
            assert!(out.seeding);
        }
        assert_eq!(m.stats.drift, 0);
        (r, m)
    }

    pub(crate) fn hdr(&mut self, pid: u32, tid: u32) -> Header {
        self.ts += 1000;
        Header {
            tgid: pid,
            tid,
            session: self.procs[&pid].session,
            ts_ns: self.ts,
        }
    }

    pub(crate) fn table(&self, pid: u32) -> &RTable {
        &self.tables[&self.procs[&pid].table]
    }

    pub(crate) fn table_mut(&mut self, pid: u32) -> &mut RTable {
        let id = self.procs[&pid].table;
        self.tables.get_mut(&id).unwrap()
    }

    fn sharers(&self, table: u64) -> usize {
        self.procs.values().filter(|p| p.table == table).count()
    }

    pub(crate) fn unshare(&mut self, pid: u32) {
        let id = self.procs[&pid].table;
        if self.sharers(id) > 1 {
            let copy = self.tables[&id].clone();
            self.next_table += 1;
            self.tables.insert(self.next_table, copy);
            self.procs.get_mut(&pid).unwrap().table = self.next_table;
        }
    }

    pub(crate) fn drop_unused_tables(&mut self) {
        let used: BTreeSet<u64> = self.procs.values().map(|p| p.table).collect();
        self.tables.retain(|id, _| used.contains(id));
    }

    pub(crate) fn master_alive(&self, index: u32) -> bool {
        self.tables
            .values()
            .flatten()
            .flatten()
            .any(|e| e.role == Role::Master && e.true_index == Some(index))
    }

    /// What /proc would show for `pid` (link targets and fdinfo tty-index).
    pub(crate) fn observe(&self, pid: u32, scan_start_ns: u64) -> ObservedProcess {
        let fds = self
            .table(pid)
            .iter()
            .enumerate()
            .filter_map(|(fd, e)| {
                let e = e.as_ref()?;
                let tty_index = if e.role == Role::Master {
                    e.true_index
                } else {
                    None
                };
                Some((
                    fd as i32,
                    ObservedFd {
                        target: e.target.clone(),
                        tty_index,
                        devpts: None,
                        cloexec: Some(e.cloexec),
                    },
                ))
            })
            .collect();
        ObservedProcess {
            pid,
            ppid: 0,
            comm: String::new(),
            fds,
            scan_start_ns,
            scan_end_ns: scan_start_ns + 10,
        }
    }

    pub(crate) fn syscall(
        &mut self,
        out: &mut Vec<Event>,
        (pid, tid): (u32, u32),
        kind: K,
        ret: i64,
        args: &[u64],
        aux: [i32; 2],
    ) {
        let mut a = [0u64; 6];
        a[..args.len()].copy_from_slice(args);
        let h = self.hdr(pid, tid);
        out.push(Event::Syscall {
            h,
            kind,
            ret,
            args: a,
            aux,
            user_flags: 0,
        });
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open_event(
        &mut self,
        out: &mut Vec<Event>,
        (pid, tid): (u32, u32),
        kind: K,
        ret: i64,
        dirfd: i64,
        flags: u64,
        path: String,
    ) {
        let h = self.hdr(pid, tid);
        out.push(Event::Open {
            h,
            kind,
            ret,
            dirfd,
            flags,
            path,
            devpts: None,
        });
    }

    /// An fd of the table: usually an open one, sometimes any small number (maybe closed).
    pub(crate) fn pick_fd(t: &RTable, y: u32) -> usize {
        let open = open_fds(t);
        if open.is_empty() || y.is_multiple_of(6) {
            (y / 6 % 16) as usize
        } else {
            open[(y / 6) as usize % open.len()]
        }
    }

    /// Like `pick_fd` but prefers PTY masters.
    pub(crate) fn pick_master(t: &RTable, y: u32) -> usize {
        let masters: Vec<usize> = open_fds(t)
            .into_iter()
            .filter(|&fd| get(t, fd).unwrap().role == Role::Master)
            .collect();
        if masters.is_empty() || y.is_multiple_of(4) {
            Self::pick_fd(t, y / 4)
        } else {
            masters[(y / 4) as usize % masters.len()]
        }
    }

    pub(crate) fn dir_fd(t: &RTable, z: u32) -> Option<usize> {
        let dirs: Vec<usize> = open_fds(t)
            .into_iter()
            .filter(|&fd| get(t, fd).unwrap().dir)
            .collect();
        (!dirs.is_empty()).then(|| dirs[z as usize % dirs.len()])
    }

    /// Performs `op` on the reference and appends the events the kernel side would emit.
    /// Performs `op`: appends the events the kernel side would emit, or returns the /proc
    /// observation of a scan and after how many more operations it is to be reconciled.
    pub(crate) fn step(
        &mut self,
        op: Op,
        out: &mut Vec<Event>,
    ) -> Option<(ObservedProcess, usize)> {
        let kind = op_kind(op.code);
        if kind != OpKind::Scan && kind != OpKind::LateScan {
            self.step_events(op, out);
            return None;
        }
        let pids: Vec<u32> = self.procs.keys().copied().collect();
        let pid = pids[op.x as usize % pids.len()];
        let obs = self.observe(pid, self.ts + 1);
        if kind == OpKind::LateScan {
            return Some((obs, 1 + (op.z % 8) as usize));
        }
        // The scan tells the model every PTY index (fdinfo for masters, links for slaves).
        let id = self.procs[&pid].table;
        for e in self.tables.get_mut(&id).unwrap().iter_mut().flatten() {
            if e.role != Role::None {
                e.index = e.true_index;
            }
        }
        Some((obs, 0))
    }
}
