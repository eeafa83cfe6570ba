//! Fixtures (the `ViewState`s of a healthy, a leaking and a must-rotate session, and the
//! `UiState` they are drawn with) and the helpers that draw into ratatui's `TestBackend` and
//! read the buffer back (`draw`, `text`, `line_with`, `proc_line`, ...), plus key events.

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pty_trace::{
    core::records::Verdict,
    tui::{FdView, FeedItem, FeedKind, ProcView, SessionView, UiState, ViewState, render},
};
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer};

pub(crate) const TH: (f64, f64) = (70.0, 50.0);
pub(crate) const ROOT: u32 = 4242;
pub(crate) const AGENT_CMD: &str = "node /opt/agent/cli.js --session 7";

// ---------------------------------------------------------------- fixtures

fn fd(fd: i32, kind: &'static str, target: &str, age_s: f64, command: &str) -> FdView {
    FdView { fd, kind, target: target.into(), age_s, command: command.into(), pty_index: None, instance: None, orphaned: false }
}

fn std_fds(tty: &str) -> Vec<FdView> {
    vec![
        fd(0, "pty_slave", tty, 300.0, "(before tracing)"),
        fd(1, "pty_slave", tty, 300.0, "(before tracing)"),
        fd(2, "pty_slave", tty, 300.0, "(before tracing)"),
        fd(3, "file", "/home/dev/.agent/log.txt", 290.0, AGENT_CMD),
        fd(4, "socket", "socket:[81234]", 288.0, AGENT_CMD),
        fd(5, "pipe", "pipe:[81240]", 120.0, AGENT_CMD),
    ]
}

/// The agent holding `masters` PTY masters, `orphaned` of them with no slave holder left.
fn agent(masters: usize, orphaned: usize) -> ProcView {
    let mut fd_list = std_fds("/dev/pts/0");
    for i in 0..masters {
        let n = 7 + i as i32;
        fd_list.push(FdView {
            fd: n,
            kind: "pty_master",
            target: "/dev/ptmx".into(),
            age_s: 100.0 - i as f64,
            command: AGENT_CMD.into(),
            pty_index: Some(5 + i as u32),
            instance: None,
            orphaned: i < orphaned,
        });
    }
    ProcView {
        pid: ROOT,
        session: ROOT,
        depth: 0,
        comm: "node".into(),
        command: AGENT_CMD.into(),
        fds: fd_list.len(),
        masters,
        slaves: 3,
        orphaned,
        age_s: 301.0,
        leak_score: 3.0 * orphaned as f64 + masters.saturating_sub(6) as f64,
        leaking: orphaned > 0 || 3.0 * orphaned as f64 + masters.saturating_sub(6) as f64 >= 10.0,
        fd_list,
    }
}

pub(crate) fn child(pid: u32, depth: usize, comm: &str, command: &str, tty: &str, fds: usize) -> ProcView {
    let fd_list: Vec<FdView> = (0..fds as i32)
        .map(|i| fd(i, if i < 3 { "pty_slave" } else { "file" }, if i < 3 { tty } else { "/usr/lib/os-release" }, 0.4, command))
        .collect();
    ProcView {
        pid,
        session: ROOT,
        depth,
        comm: comm.into(),
        command: command.into(),
        fds,
        masters: 0,
        slaves: 3.min(fds),
        orphaned: 0,
        age_s: 0.4,
        leak_score: 0.0,
        leaking: false,
        fd_list,
    }
}

pub(crate) fn session(health: f64, leak_seen: bool, ptys: usize, orphaned: usize, fds: usize, commands: usize) -> SessionView {
    SessionView {
        root: ROOT,
        health,
        leak_score: 3.0 * orphaned as f64,
        verdict: Verdict::of(leak_seen, leak_seen),
        commands,
        ptys,
        orphaned,
        fds,
        reasons: if orphaned > 0 {
            vec![format!("{orphaned} orphaned PTY(s): master held, no process holds the slave")]
        } else {
            vec![]
        },
    }
}

fn feed(kind: FeedKind, ts: &str, health: f64, reason: &str) -> FeedItem {
    FeedItem::new(kind, ts, ROOT, health, &[reason.to_string()])
}

pub(crate) fn healthy() -> ViewState {
    ViewState {
        sessions: vec![session(100.0, false, 1, 0, 13, 12)],
        procs: vec![
            agent(1, 0),
            child(4250, 1, "sh", "sh -c make test", "/dev/pts/5", 3),
            child(4251, 2, "make", "make test", "/dev/pts/5", 4),
        ],
        feed: vec![],
        lost_events: 0,
        untracked_children: 0,
        unreadable_procs: 0,
        drift: 0,
        pty_nr: 3,
        pty_max: 4096,
        thresholds: TH,
        leak_threshold: 10.0,
        probes: None,
    }
}

pub(crate) fn leaking() -> ViewState {
    ViewState {
        sessions: vec![session(62.0, true, 9, 8, 19, 9)],
        procs: vec![agent(9, 8), child(4260, 1, "sh", "sh -c cat /proc/loadavg", "/dev/pts/13", 3)],
        feed: vec![feed(FeedKind::Alert, "2026-11-21T12:00:03.250Z", 62.0, "8 orphaned PTY(s): master held, no process holds the slave")],
        lost_events: 0,
        untracked_children: 0,
        unreadable_procs: 0,
        drift: 0,
        pty_nr: 11,
        pty_max: 4096,
        thresholds: TH,
        leak_threshold: 10.0,
        probes: None,
    }
}

pub(crate) fn must_rotate() -> ViewState {
    ViewState {
        sessions: vec![session(31.0, true, 40, 40, 46, 40)],
        procs: vec![agent(40, 40)],
        feed: vec![
            feed(FeedKind::Alert, "2026-11-21T12:00:03.250Z", 62.0, "8 orphaned PTY(s)"),
            feed(FeedKind::Rotate, "2026-11-21T12:00:05.500Z", 44.0, "14 orphaned PTY(s); PTYs grow 1.00 per command"),
        ],
        lost_events: 3,
        untracked_children: 0,
        unreadable_procs: 0,
        drift: 2,
        pty_nr: 43,
        pty_max: 4096,
        thresholds: TH,
        leak_threshold: 10.0,
        probes: None,
    }
}

pub(crate) fn ui() -> UiState {
    let mut history = BTreeMap::new();
    let h: VecDeque<(u64, u64)> = (0..60u64).map(|i| (6 + i, i.min(40))).collect();
    history.insert(ROOT, h);
    UiState { color: true, history, ..UiState::default() }
}

// ---------------------------------------------------------------- helpers

pub(crate) fn draw(state: &ViewState, ui: &UiState, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(f, state, ui)).unwrap();
    t.backend().buffer().clone()
}

pub(crate) fn lines(buf: &Buffer) -> Vec<String> {
    let a = buf.area;
    (0..a.height).map(|y| (0..a.width).map(|x| buf[(x, y)].symbol()).collect::<String>()).collect()
}

pub(crate) fn text(buf: &Buffer) -> String {
    lines(buf).join("\n")
}

pub(crate) fn line_with(buf: &Buffer, needle: &str) -> (usize, String) {
    lines(buf)
        .into_iter()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", text(buf)))
}

pub(crate) fn assert_has(buf: &Buffer, needles: &[&str]) {
    let t = text(buf);
    for n in needles {
        assert!(t.contains(n), "missing {n:?} in\n{t}");
    }
}

/// The process table row of `pid` (the line with `│` + flag + pid).
pub(crate) fn proc_line(buf: &Buffer, pid: u32) -> (usize, String) {
    let pid = pid.to_string();
    lines(buf)
        .into_iter()
        .enumerate()
        .find(|(_, l)| {
            if !l.starts_with('│') {
                return false;
            }
            let mut it = l.split_whitespace();
            // "│!4242 ..." or "│ 4242 ..." or "││ 4242" after a left border.
            it.any(|w| w.trim_start_matches(['│', '!']) == pid)
        })
        .unwrap_or_else(|| panic!("no process row for {pid} in\n{}", text(buf)))
}

pub(crate) fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

pub(crate) fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// Number after `label` on the screen (e.g. `health  38` -> 38).
pub(crate) fn number_after(t: &str, label: &str) -> Option<u64> {
    let i = t.find(label)? + label.len();
    t[i..].trim_start().chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
}
