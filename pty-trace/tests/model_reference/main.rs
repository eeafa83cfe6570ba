//! `pty_trace::core::model::Model` against a deliberately simple reference of Linux fd semantics.
//!
//! Random operations (opens, closes, the dup family, pipes, sockets, PTY ioctls, close_range,
//! fork with and without CLONE_FILES, threads, exec, exit, unshare) are decided against the
//! reference, which also computes what the kernel would return (lowest free fd first, EBADF on
//! a closed fd, ...). The same operations are then fed to the model as the `Event`s the eBPF
//! side would emit, and the two must agree exactly with zero drift. A second test drops events
//! (ring-buffer loss) and checks that reconciling with "/proc" (built from the reference)
//! repairs the model.
//!
//! Layout: `reference` is the reference model of processes and fd tables, `kernel` what each
//! operation does to it and which events it emits, `ops` the random operations, and `compare`
//! the model-vs-reference comparison and the driver running both side by side. The tests are
//! here.

mod compare;
mod kernel;
mod ops;
mod reference;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use pty_trace::core::model::Event;
use pty_trace_common::SyscallKind as K;
use rand::{Rng, SeedableRng, rngs::StdRng};

use compare::{Driver, count_diffs, role_of, run};
use kernel::CLOSE_RANGE_UNSHARE;
use ops::{OPS, op_kind, op_strategy, random_op};
use reference::Ref;

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn model_matches_reference(ops in proptest::collection::vec(op_strategy(), 1..240)) {
        if let Err(e) = run(&ops) {
            return Err(TestCaseError::fail(e));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Lost events and reconciliation

/// Events whose loss affects only fd contents (not processes, table sharing or commands).
fn droppable(ev: &Event) -> bool {
    match ev {
        Event::Open { .. } => true,
        Event::Syscall { kind, args, .. } => match kind {
            K::Unshare => false,
            K::CloseRange => args[2] & CLOSE_RANGE_UNSHARE == 0,
            _ => true,
        },
        _ => false,
    }
}

#[test]
fn lost_events_are_repaired_by_reconcile() {
    for seed in 0..16u64 {
        let mut rng = StdRng::seed_from_u64(0x5eed_0000 + seed);
        let (mut r, mut m) = Ref::new();
        let mut dropped = 0;
        let mut events = Vec::new();
        for _ in 0..300 {
            events.clear();
            // Scans are left for the end: a scan in between would repair losses early.
            let _ = r.step(random_op(&mut rng), &mut events);
            for ev in &events {
                if droppable(ev) && rng.gen_bool(0.15) {
                    dropped += 1;
                } else {
                    m.apply(ev);
                }
            }
        }
        assert!(dropped > 0, "seed {seed}: nothing dropped");
        let before = count_diffs(&m, &r);
        assert!(
            !before.is_empty(),
            "seed {seed}: {dropped} lost events left no trace"
        );
        let drift_before = m.stats.drift;

        // Two /proc scans of every live process, after all events: the first only suspects
        // (an event might still be in flight), the second confirms and repairs.
        let pids: Vec<u32> = r.procs.keys().copied().collect();
        for &pid in &pids {
            let out = m.reconcile(&r.observe(pid, r.ts + 500));
            assert_eq!(
                out.corrections(),
                0,
                "seed {seed} pid {pid}: first scan only suspects"
            );
        }
        assert_eq!(m.stats.drift, drift_before);
        let scan = r.ts + 1_000;
        for &pid in &pids {
            let out = m.reconcile(&r.observe(pid, scan));
            assert!(
                !out.skipped_process && !out.seeding,
                "seed {seed} pid {pid}: {out:?}"
            );
        }
        let after = count_diffs(&m, &r);
        assert!(
            after.is_empty(),
            "seed {seed}: still differs after reconcile: {after:?}"
        );
        assert!(
            m.stats.drift > drift_before,
            "seed {seed}: repairs must count as drift"
        );
        // PTY roles per fd agree too.
        for &pid in &pids {
            let mt = m.table_of(pid).unwrap();
            for (fd, e) in r.table(pid).iter().enumerate() {
                if let Some(e) = e {
                    assert_eq!(
                        role_of(mt.fds[&(fd as i32)].kind.pty_role()),
                        e.role,
                        "seed {seed} pid {pid} fd {fd}"
                    );
                }
            }
        }
        // A second scan finds nothing more.
        let drift = m.stats.drift;
        for &pid in &pids {
            assert_eq!(m.reconcile(&r.observe(pid, scan + 1_000)).corrections(), 0);
        }
        assert_eq!(m.stats.drift, drift);
    }
}

/// The generator exercises what it claims to: every operation kind appears, processes are
/// forked and exit, and PTYs are opened and closed.
#[test]
fn generator_covers_all_operations() {
    let mut rng = StdRng::seed_from_u64(7);
    let mut seen = BTreeSet::new();
    let mut d = Driver::new();
    let mut kinds: BTreeMap<String, usize> = BTreeMap::new();
    let mut max_procs = 0;
    for i in 0..3000 {
        let op = random_op(&mut rng);
        seen.insert(format!("{:?}", op_kind(op.code)));
        d.op(i, op).unwrap();
        max_procs = max_procs.max(d.r.procs.len());
        for ev in &d.events {
            let name = match ev {
                Event::Syscall { kind, ret, .. } => {
                    format!("{kind:?}{}", if *ret < 0 { " err" } else { "" })
                }
                Event::Open { ret, .. } => format!("Open{}", if *ret < 0 { " err" } else { "" }),
                other => format!("{other:?}")
                    .split([' ', '{'])
                    .next()
                    .unwrap()
                    .to_string(),
            };
            *kinds.entry(name).or_default() += 1;
        }
    }
    d.finish().unwrap();
    assert!(d.scans > 100, "{} scans", d.scans);
    assert!(max_procs >= 4, "at most {max_procs} processes at once");
    assert_eq!(seen.len(), OPS.len());
    for k in [
        // Close and CloseRange come with ret 0 whatever their outcome (reported at entry).
        "Close",
        "Dup2",
        "Dup2 err",
        "Dup3 err",
        "Ioctl",
        "Ioctl err",
        "Pipe2",
        "SocketPair",
        "CloseRange",
        "Clone",
        "Clone3",
        "Fork",
        "Exec",
        "ExecArgv",
        "Exit",
        "Unshare",
        "Open",
        "Open err",
    ] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no {k} event in {kinds:?}"
        );
    }
}
