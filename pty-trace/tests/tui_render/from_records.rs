//! The view state built from snapshot records (`ViewState::build`): tree order, per-fd
//! details, verdicts, the feed, and the leak marker under the configured thresholds.

use std::collections::BTreeMap;

use pty_trace::{
    core::{
        machine::DevId,
        records::{Evidence, EvidenceKind, FdKind, FdRec, Holder, ProbeBackend, ProcessRec, PtyPair, SnapshotRec, Totals, Verdict},
        score::Thresholds,
    },
    tui::{FeedItem, FeedKind, UiState, ViewInput, ViewState},
};

use crate::fixtures::{ROOT, draw, text, ui};

const HOST: DevId = DevId { major: 0, minor: 26 };
const BOX: DevId = DevId { major: 0, minor: 40 };

// ---------------------------------------------------------------- the view state from records

/// A snapshot as the tracer writes it: the agent (root) holds `masters` PTY masters, the
/// first `orphaned` of them abandoned (the shell under it holds inherited copies of them);
/// a shell under it, and a process whose parent is gone.
fn snapshot(masters: usize, orphaned: usize) -> SnapshotRec {
    let proc_ = |pid: u32, ppid: u32, comm: &str, fds: usize, m: usize| ProcessRec {
        pid,
        ppid,
        comm: comm.into(),
        fds,
        pty_masters: m,
        pty_slaves: 0,
        command: Some(vec![comm.into()]),
        age_s: 2.0,
    };
    let ptys = (0..masters)
        .map(|i| PtyPair {
            index: Some(i as u32),
            devpts: None,
            masters: if i < orphaned {
                vec![Holder { pid: ROOT, fd: 10 + i as i32 }, Holder { pid: 4250, fd: 10 + i as i32 }]
            } else {
                vec![Holder { pid: ROOT, fd: 10 + i as i32 }]
            },
            slaves: vec![],
            slave_held_outside: false,
            orphaned: i < orphaned,
        })
        .collect();
    SnapshotRec {
        session: ROOT,
        // Out of tree order on purpose: the view puts them in order.
        processes: vec![proc_(4300, 4299, "lost", 1, 0), proc_(4251, 4250, "make", 4, 0), proc_(4250, ROOT, "sh", 3, 0), proc_(ROOT, 1, "node", 3 + masters, masters)],
        totals: Totals { processes: 4, fds: 11 + masters, pty_masters: masters, pty_slaves: 0, ptys: masters, orphaned_ptys: orphaned },
        ptys,
        commands: 3,
        execs: 4,
        health: 80.0,
        leak_score: 0.0,
        pty_per_command: 0.0,
        fd_per_command: 0.0,
        est_seconds_to_exhaustion: None,
        reasons: vec![],
        pty_nr: 7,
        pty_max: 4096,
        lost_events: 1,
        untracked_children: 2,
        unreadable_procs: 0,
        drift: 0,
        drift_by_cause: BTreeMap::new(),
        residual_ptys: orphaned,
        evidence: (0..orphaned)
            .map(|i| Evidence {
                kind: EvidenceKind::AbandonedPty,
                pty: Some(i as u32),
                pid: Some(ROOT),
                fd: Some(10 + i as i32),
                command: Some(vec!["sh".into()]),
                since_s: 6.0,
                commands_since: 2,
                ended: None,
                why: format!("PTY {i}: abandoned"),
            })
            .collect(),
        leaking: false,
        early: false,
    }
}

fn build(snap: &SnapshotRec, th: &Thresholds) -> ViewState {
    let fds = BTreeMap::from([(
        ROOT,
        vec![
            FdRec { fd: 0, kind: FdKind::PtySlave, target: "/dev/pts/0".into(), age_s: 9.0, command: None, from_proc: true, pty_index: Some(0), pty_devpts: Some(HOST), orphaned: false },
            FdRec { fd: 10, kind: FdKind::PtyMaster, target: "/dev/ptmx".into(), age_s: 1.0, command: Some(vec!["node".into(), "a.js".into()]), from_proc: false, pty_index: Some(0), pty_devpts: Some(BOX), orphaned: true },
        ],
    )]);
    let verdicts = BTreeMap::from([(ROOT, Verdict::LeakDetected)]);
    ViewState::build(ViewInput {
        snapshots: std::slice::from_ref(snap),
        fd_details: &fds,
        feed: vec![
            FeedItem::new(FeedKind::Rotate, "2026-11-21T12:00:05.000Z", ROOT, 40.0, &["r".into()]),
            FeedItem::new(FeedKind::Alert, "2026-11-21T12:00:01.000Z", ROOT, 60.0, &["a".into()]),
        ],
        verdicts: &verdicts,
        drift: 0,
        lost_events: snap.lost_events,
        untracked_children: snap.untracked_children,
        thresholds: th,
        probes: ProbeBackend::Fentry,
    })
}

#[test]
fn the_view_state_is_built_from_snapshot_records() {
    let v = build(&snapshot(2, 1), &Thresholds::default());
    let order: Vec<(u32, usize)> = v.procs.iter().map(|p| (p.pid, p.depth)).collect();
    assert_eq!(order, [(ROOT, 0), (4250, 1), (4251, 2), (4300, 1)], "tree order, the orphan under the root");
    let root = &v.procs[0];
    assert_eq!((root.masters, root.orphaned, root.leaking), (2, 1, true), "an orphaned PTY marks the row");
    assert_eq!(root.fd_list.len(), 2);
    assert_eq!(root.fd_list[0].command, "(before tracing)");
    assert_eq!((root.fd_list[1].kind, root.fd_list[1].command.as_str(), root.fd_list[1].orphaned), ("pty_master", "node a.js", true));
    assert!(v.procs[1].fd_list.is_empty(), "no details sent for it");
    assert_eq!(v.sessions[0].verdict, Verdict::LeakDetected);
    assert_eq!((v.pty_nr, v.lost_events, v.untracked_children), (7, 1, 2));
    let kinds: Vec<FeedKind> = v.feed.iter().map(|f| f.kind).collect();
    assert_eq!(kinds, [FeedKind::Alert, FeedKind::Rotate], "oldest first");
    assert_eq!(v.feed[1].text(), "ROTATE s4242 health 40: r");
    // The untracked count is on screen.
    assert!(text(&draw(&v, &ui(), 120, 30)).contains("untracked 2"));
}

#[test]
fn the_leak_marker_follows_the_evidence_not_the_totals() {
    // 8 masters in use, none abandoned: a multiplexer's windows. Not marked.
    let v = build(&snapshot(8, 0), &Thresholds::default());
    assert_eq!((v.procs[0].leak_score, v.procs[0].leaking), (0.0, false));
    // 3 abandoned: the root, which the evidence names, is marked; the shell holding inherited
    // copies of the same masters is not.
    let v = build(&snapshot(4, 3), &Thresholds::default());
    assert_eq!((v.procs[0].pid, v.procs[0].orphaned, v.procs[0].leak_score, v.procs[0].leaking), (ROOT, 3, 9.0, true));
    assert_eq!((v.procs[1].pid, v.procs[1].leaking), (4250, false));
    let th = Thresholds { leak_score: 5.0, ..Thresholds::default() };
    let v = build(&snapshot(4, 3), &th);
    assert_eq!(v.leak_threshold, 5.0);
    assert!(text(&draw(&v, &UiState { help: true, ..ui() }, 120, 30)).contains("leak score 5"));
}

#[test]
fn fd_details_name_the_devpts_instance_only_when_the_session_spans_several() {
    let one = build(&snapshot(2, 1), &Thresholds::default());
    assert!(one.procs[0].fd_list.iter().all(|f| f.instance.is_none()), "one instance (or none known): /dev/pts/N is enough");
    let mut snap = snapshot(2, 1);
    snap.ptys[0].devpts = Some(BOX);
    snap.ptys[1].devpts = Some(HOST);
    let v = build(&snap, &Thresholds::default());
    let fds = &v.procs[0].fd_list;
    assert_eq!((fds[0].instance, fds[1].instance), (Some(HOST), Some(BOX)));
    let mut u = ui();
    u.details = true;
    let screen = text(&draw(&v, &u, 120, 30));
    assert!(screen.contains("/dev/ptmx (pts/0 on devpts 0:40)"), "{screen}");
    assert!(screen.contains("/dev/pts/0 (on devpts 0:26)"), "{screen}");
}
