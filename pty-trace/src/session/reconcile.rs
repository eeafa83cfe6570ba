//! Reconciliation with /proc, once per interval.
//!
//! Ordering matters: /proc is scanned first, then the ring buffer is drained, and only then
//! are scan and model compared, so every event stamped before the scan has been applied and
//! every fd touched during it is skipped (see `core::model::reconcile`).
//! `PTY_TRACE_DEBUG_DRIFT=1` prints every correction to stderr.

use std::{collections::BTreeSet, time::Duration};

use super::Tracer;
use crate::{clock::monotonic_ns, procfs};

impl Tracer {
    /// Compares every traced process with /proc and repairs the model, then finds the PTY
    /// indexes of masters still without one.
    pub(super) fn reconcile_with_proc(&mut self) {
        // Lost events mean the model may be wrong anywhere: check every process now.
        let mut pids: BTreeSet<u32> = self.model.procs.keys().copied().collect();
        pids.extend(self.model.take_needs_reconcile());
        let mut observed = Vec::new();
        let mut gone = Vec::new();
        let mut children = Vec::new();
        let scan_start = monotonic_ns();
        let mut denied = 0;
        for pid in pids {
            match procfs::scan(pid) {
                procfs::Scan::Seen(o) => observed.push(o),
                procfs::Scan::Gone => gone.push(pid),
                // Counted and shown, never read as an empty table; its counts stay the events'.
                procfs::Scan::Denied => denied += 1,
            }
            for c in procfs::children(pid) {
                children.push((c, pid));
            }
        }
        self.unreadable_procs = denied;
        self.unreadable_procs_max = self.unreadable_procs_max.max(denied);
        // Everything stamped before the scan ended is in the ring buffer now (events are
        // submitted microseconds after their timestamp): apply it before comparing.
        std::thread::sleep(Duration::from_millis(2));
        self.drain();
        let debug_drift = std::env::var_os("PTY_TRACE_DEBUG_DRIFT").is_some();
        let mut unseeded = Vec::new();
        for o in &observed {
            let before = if debug_drift { self.model.table_of(o.pid).cloned() } else { None };
            let r = self.model.reconcile(o);
            if r.skipped_process && self.model.procs.get(&o.pid).is_some_and(|p| !p.seeded) {
                unseeded.push(o.pid);
            }
            if debug_drift && r.seeding {
                eprintln!("pty-trace: seeded pid {} at {} with fds {:?}", o.pid, o.scan_start_ns, o.fds.keys().collect::<Vec<_>>());
            }
            if debug_drift && !r.seeding && r.corrections() > 0 {
                for fd in r.added.iter().chain(&r.removed).chain(&r.corrected).chain(&r.cloexec_corrected) {
                    let model = before.as_ref().and_then(|t| t.fds.get(fd).cloned());
                    let p = self.model.procs.get(&o.pid);
                    let exec_ts = p.and_then(|p| p.command).and_then(|c| self.model.command(c)).map(|c| c.ts_ns);
                    eprintln!(
                        "pty-trace: drift pid {} fd {fd}: model {:?} /proc {:?} (process started {:?}, its exec at {exec_ts:?}, seeded at {:?}, scan at {})",
                        o.pid,
                        model,
                        o.fds.get(fd),
                        p.map(|p| p.started_ns),
                        p.map(|p| p.seeded_at),
                        o.scan_start_ns
                    );
                }
            }
        }
        // A seed put off because an exec or close_range overlapped the scan would leave the
        // process reported from events alone (a partial table) until the next interval: scan
        // it once more now; the change that overlapped is over.
        if !unseeded.is_empty() {
            let again: Vec<_> = unseeded.iter().filter_map(|&pid| procfs::observe(pid)).collect();
            std::thread::sleep(Duration::from_millis(2));
            self.drain();
            for o in &again {
                self.model.reconcile(o);
            }
        }
        for pid in gone {
            if procfs::proc_info(pid).is_none_or(|i| i.zombie) && self.model.procs.contains_key(&pid) {
                if debug_drift {
                    eprintln!("pty-trace: drift: process {pid} vanished from /proc without an exit event");
                }
                self.model.process_vanished(pid, scan_start);
            }
        }
        for (c, ppid) in children {
            // pty-trace itself, when it traces one of its ancestors: never traced.
            if c == std::process::id() {
                continue;
            }
            if !self.model.procs.contains_key(&c)
                && let Some(info) = procfs::proc_info(c)
                && !info.zombie
                && info.ppid == ppid
                && self.model.process_discovered(c, ppid, &info.comm, scan_start)
            {
                if debug_drift {
                    eprintln!(
                        "pty-trace: drift: process {c} ({}) child of {ppid} missing from the model (in TRACKED: {}, state: {:?})",
                        info.comm,
                        self.tracked.contains(c),
                        std::fs::read_to_string(format!("/proc/{c}/stat")).ok().and_then(|s| s.split(") ").nth(1).map(|x| x.chars().next()))
                    );
                }
                let session = self.model.procs[&c].session;
                let _ = self.tracked.insert(c, session);
            }
        }
        for (pid, fd) in self.model.masters_without_index() {
            if let Some(i) = procfs::tty_index(pid, fd) {
                self.model.set_pty_index(pid, fd, i);
            }
        }
    }

}
