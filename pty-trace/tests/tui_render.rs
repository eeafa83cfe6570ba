//! Rendering tests of the live view: `render` into ratatui's `TestBackend`, then assertions on
//! the buffer's text and styles. Plus the pure key handling (`on_key`).

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pty_trace::{
    core::{
        records::{FdKind, FdRec, Holder, ProcessRec, PtyPair, SnapshotRec, Totals, Verdict},
        score::Thresholds,
    },
    tui::{
        FdView, FeedItem, FeedKind, ProcView, SessionView, SortKey, UiState, UserAction, ViewInput, ViewState, on_key,
        render, selected_proc, visible_procs,
    },
};
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer, style::Color};

const TH: (f64, f64) = (70.0, 50.0);
const ROOT: u32 = 4242;
const AGENT_CMD: &str = "node /opt/agent/cli.js --session 7";

// ---------------------------------------------------------------- fixtures

fn fd(fd: i32, kind: &'static str, target: &str, age_s: f64, command: &str) -> FdView {
    FdView { fd, kind, target: target.into(), age_s, command: command.into(), pty_index: None, orphaned: false }
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

fn child(pid: u32, depth: usize, comm: &str, command: &str, tty: &str, fds: usize) -> ProcView {
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

fn session(health: f64, leak_seen: bool, ptys: usize, orphaned: usize, fds: usize, commands: usize) -> SessionView {
    SessionView {
        root: ROOT,
        health,
        leak_score: 3.0 * orphaned as f64,
        verdict: Verdict::from_leak_seen(leak_seen),
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

fn healthy() -> ViewState {
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
        drift: 0,
        pty_nr: 3,
        pty_max: 4096,
        thresholds: TH,
        leak_threshold: 10.0,
    }
}

fn leaking() -> ViewState {
    ViewState {
        sessions: vec![session(62.0, true, 9, 8, 19, 9)],
        procs: vec![agent(9, 8), child(4260, 1, "sh", "sh -c cat /proc/loadavg", "/dev/pts/13", 3)],
        feed: vec![feed(FeedKind::Alert, "2026-11-21T12:00:03.250Z", 62.0, "8 orphaned PTY(s): master held, no process holds the slave")],
        lost_events: 0,
        untracked_children: 0,
        drift: 0,
        pty_nr: 11,
        pty_max: 4096,
        thresholds: TH,
        leak_threshold: 10.0,
    }
}

fn must_rotate() -> ViewState {
    ViewState {
        sessions: vec![session(31.0, true, 40, 40, 46, 40)],
        procs: vec![agent(40, 40)],
        feed: vec![
            feed(FeedKind::Alert, "2026-11-21T12:00:03.250Z", 62.0, "8 orphaned PTY(s)"),
            feed(FeedKind::Rotate, "2026-11-21T12:00:05.500Z", 44.0, "14 orphaned PTY(s); PTYs grow 1.00 per command"),
        ],
        lost_events: 3,
        untracked_children: 0,
        drift: 2,
        pty_nr: 43,
        pty_max: 4096,
        thresholds: TH,
        leak_threshold: 10.0,
    }
}

fn ui() -> UiState {
    let mut history = BTreeMap::new();
    let h: VecDeque<(u64, u64)> = (0..60u64).map(|i| (6 + i, i.min(40))).collect();
    history.insert(ROOT, h);
    UiState { color: true, history, ..UiState::default() }
}

// ---------------------------------------------------------------- helpers

fn draw(state: &ViewState, ui: &UiState, w: u16, h: u16) -> Buffer {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| render(f, state, ui)).unwrap();
    t.backend().buffer().clone()
}

fn lines(buf: &Buffer) -> Vec<String> {
    let a = buf.area;
    (0..a.height).map(|y| (0..a.width).map(|x| buf[(x, y)].symbol()).collect::<String>()).collect()
}

fn text(buf: &Buffer) -> String {
    lines(buf).join("\n")
}

fn line_with(buf: &Buffer, needle: &str) -> (usize, String) {
    lines(buf)
        .into_iter()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with {needle:?} in\n{}", text(buf)))
}

fn assert_has(buf: &Buffer, needles: &[&str]) {
    let t = text(buf);
    for n in needles {
        assert!(t.contains(n), "missing {n:?} in\n{t}");
    }
}

/// The process table row of `pid` (the line with `│` + flag + pid).
fn proc_line(buf: &Buffer, pid: u32) -> (usize, String) {
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

fn key(c: KeyCode) -> KeyEvent {
    KeyEvent::new(c, KeyModifiers::NONE)
}

fn ch(c: char) -> KeyEvent {
    key(KeyCode::Char(c))
}

/// Number after `label` on the screen (e.g. `health  38` -> 38).
fn number_after(t: &str, label: &str) -> Option<u64> {
    let i = t.find(label)? + label.len();
    t[i..].trim_start().chars().take_while(|c| c.is_ascii_digit()).collect::<String>().parse().ok()
}

// ---------------------------------------------------------------- header and sessions

#[test]
fn healthy_session_at_80x24() {
    let b = draw(&healthy(), &ui(), 80, 24);
    assert_has(
        &b,
        &[
            "pty-trace",
            "machine PTYs 3/4096 (pty/nr of pty/max)",
            "lost events 0",
            "drift 0",
            "session 4242",
            "HEALTHY",
            "PTYs 1 held (machine 3 of 4096)",
            "orphaned 0",
            "cmds 12",
            "no alerts",
            "q quit",
            "? help",
            "PID",
            "COMMAND",
            "ORPH",
        ],
    );
    let t = text(&b);
    assert_eq!(number_after(&t, "health"), Some(100));
    assert!(!t.contains("LEAK DETECTED") && !t.contains("MUST ROTATE") && !t.contains("ALERT"), "{t}");
    // The gauge is full and its band says OK.
    let (_, l) = line_with(&b, "session 4242");
    assert!(l.contains("██████████") && !l.contains('░') && l.trim_end().ends_with("OK"), "{l}");
    // Tree: the agent, its shell, the shell's make; none marked as leaking.
    let (ya, la) = proc_line(&b, ROOT);
    let (ys, ls) = proc_line(&b, 4250);
    let (ym, lm) = proc_line(&b, 4251);
    assert!(ya < ys && ys < ym, "tree order");
    assert!(ls.contains("└ sh -c make test") && lm.contains("  └ make test"), "{ls}\n{lm}");
    for l in [&la, &ls, &lm] {
        assert!(!l.contains('!'), "healthy row marked: {l}");
    }
    assert!(la.contains("node /opt/agent/cli.js"), "{la}");
    // Each line fits: nothing is drawn past 80 columns and the footer is on the last line.
    assert!(lines(&b)[23].contains("q quit"), "{t}");
}

#[test]
fn leaking_session_at_80x24() {
    let b = draw(&leaking(), &ui(), 80, 24);
    assert_has(&b, &["LEAK DETECTED", "ALERT", "PTYs 9 held (machine 11 of 4096)", "orphaned 8", "12:00:03 ALERT s4242 health 62"]);
    let t = text(&b);
    assert_eq!(number_after(&t, "health"), Some(62));
    assert_eq!(number_after(&t, "PTYs"), Some(11), "the title's machine count comes first: {t}");
    assert_eq!(number_after(&t[t.find("session 4242").unwrap()..], "PTYs"), Some(9));
    let (_, hdr) = line_with(&b, "session 4242");
    assert!(hdr.contains("█") && hdr.contains("░") && hdr.trim_end().ends_with("ALERT"), "{hdr}");
    // The leaking row carries the `!` marker and its orphan count, and is red and bold.
    let (y, l) = proc_line(&b, ROOT);
    assert!(l.contains("│! 4242"), "{l}");
    let cols: Vec<&str> = l.split_whitespace().collect();
    assert!(cols.contains(&"8") && cols.contains(&"27"), "ORPH 8 and LEAK 27 in {l}");
    let red_cells = (0..80).filter(|&x| b[(x, y as u16)].fg == Color::Red).count();
    assert!(red_cells > 20, "leaking row should be red: {red_cells} red cells");
    // The shell child is not marked.
    let (_, ls) = proc_line(&b, 4260);
    assert!(!ls.contains('!'), "{ls}");
}

#[test]
fn must_rotate_session_at_80x24_and_200x60() {
    for (w, h) in [(80, 24), (200, 60)] {
        let b = draw(&must_rotate(), &ui(), w, h);
        assert_has(&b, &["LEAK DETECTED", "MUST ROTATE", "PTYs 40 held (machine 43 of 4096)", "orphaned 40", "lost events 3", "drift 2"]);
        let t = text(&b);
        assert_eq!(number_after(&t, "health"), Some(31), "{w}x{h}");
        // Newest decision first, with its time.
        let rot = t.find("12:00:05 ROTATE s4242").unwrap_or_else(|| panic!("{t}"));
        let alert = t.find("12:00:03 ALERT s4242").unwrap_or_else(|| panic!("{t}"));
        assert!(rot < alert, "newest first");
        let (y, l) = line_with(&b, "session 4242");
        assert!(l.trim_end().ends_with("MUST ROTATE"), "{l}");
        let band_x = l.find("MUST ROTATE").unwrap();
        // The band and health are red.
        let x = l[..band_x].chars().count() as u16;
        assert_eq!(b[(x, y as u16)].fg, Color::Red);
        assert!(proc_line(&b, ROOT).1.contains("│! 4242"));
    }
}

#[test]
fn large_terminal_puts_history_beside_the_table() {
    let b = draw(&leaking(), &ui(), 200, 60);
    let (y, l) = line_with(&b, " processes ");
    assert!(l.contains(" PTYs 40 · s4242 "), "history beside the table: {l}");
    // The full command fits, sparklines are drawn, the feed is there.
    assert_has(&b, &[AGENT_CMD, "sh -c cat /proc/loadavg", "fds 65", "alerts & decisions 1"]);
    let t = text(&b);
    assert!(lines(&b)[y + 1..y + 10].iter().any(|l| l.contains('█')), "sparkline bars\n{t}");
    assert_eq!(lines(&b).len(), 60);
    assert!(lines(&b)[59].contains("q quit"));
    // The reason is shown in the header when there is room.
    assert_has(&b, &["8 orphaned PTY(s): master held"]);
}

#[test]
fn several_sessions_show_each_verdict() {
    let mut s = leaking();
    let mut other = session(100.0, false, 0, 0, 5, 2);
    other.root = 5000;
    let mut third = session(45.0, true, 12, 12, 20, 12);
    third.root = 6000;
    s.sessions.push(other.clone());
    s.sessions.push(third.clone());
    let b = draw(&s, &ui(), 80, 24);
    let (_, l1) = line_with(&b, "session 4242");
    let (_, l2) = line_with(&b, "session 5000");
    assert!(l1.contains("LEAK DETECTED") && l1.contains("ALERT"), "{l1}");
    assert!(l2.contains("HEALTHY") && l2.trim_end().ends_with("OK"), "{l2}");
    let (_, more) = line_with(&b, "+1 more:");
    assert!(more.contains("session 6000 health 45 MUST ROTATE LEAK DETECTED PTYs 12"), "{more}");
    // With room, all three.
    let b = draw(&s, &ui(), 120, 40);
    let (_, l3) = line_with(&b, "session 6000");
    assert!(l3.contains("LEAK DETECTED") && l3.contains("MUST ROTATE"), "{l3}");
    assert!(!text(&b).contains("more:"));
}

#[test]
fn long_program_paths_are_shortened_in_the_table_only() {
    let mut s = healthy();
    s.procs[0].command = "/opt/very/long/install/prefix/bin/agent-cli --model big --session 7".into();
    let b = draw(&s, &ui(), 80, 24);
    let (_, l) = proc_line(&b, ROOT);
    assert!(l.contains("agent-cli --model big") && !l.contains("/opt/very"), "{l}");
    let b = draw(&s, &UiState { details: true, ..ui() }, 80, 24);
    assert_has(&b, &["/opt/very/long/install/prefix/bin/agent-cli --model big --session 7"]);
    // The filter still matches the whole command line.
    let u = UiState { filter: "prefix/bin".into(), ..ui() };
    assert_eq!(visible_procs(&s, &u).len(), 1);
}

#[test]
fn waiting_before_the_first_snapshot() {
    let b = draw(&ViewState { thresholds: TH, ..ViewState::default() }, &UiState::default(), 80, 24);
    assert_has(&b, &["waiting for the first snapshot", "no processes yet", "lost events 0", "drift 0"]);
}

// ---------------------------------------------------------------- details, help, filter, sort, pause

#[test]
fn details_pane_lists_open_fds() {
    let mut u = ui();
    u.details = true;
    let b = draw(&leaking(), &u, 80, 24);
    assert_has(
        &b,
        &[
            "pid 4242 node",
            "open fds",
            "FD",
            "KIND",
            "AGE",
            "TARGET",
            "OPENED BY",
            "pty_slave",
            "/dev/pts/0",
            "(before tracing)",
            "socket:[81234]",
            "pty_master",
            "/dev/ptmx (pts/5)",
            "orphaned 8",
        ],
    );
    let (_, l) = line_with(&b, "(pts/5)");
    assert!(l.contains("!") && l.contains("orphaned") && l.contains("node /opt/agent"), "{l}");
    assert!(l.contains("1m40s"), "age of the fd: {l}");
    let (_, l) = line_with(&b, "socket:[81234]");
    assert!(l.contains("  4 ") && l.contains("socket") && l.contains("4m48s") && !l.contains('!'), "{l}");
    // 15 fds do not all fit at 80x24: the range is shown.
    assert_has(&b, &["fds 1-"]);
    assert!(text(&b).contains(" of 15 "), "{}", text(&b));

    // The details follow the selection.
    u.selected = 1;
    let b = draw(&leaking(), &u, 80, 24);
    assert_has(&b, &["pid 4260 sh", "sh -c cat /proc/loadavg", "/dev/pts/13"]);
    assert!(!text(&b).contains("pty_master"));
}

#[test]
fn details_pane_scrolls() {
    let state = must_rotate();
    let mut u = ui();
    u.details = true;
    let b = draw(&state, &u, 80, 24);
    assert!(text(&b).contains(" of 46 "), "{}", text(&b));
    assert_has(&b, &["fds 1-"]);
    for _ in 0..20 {
        assert_eq!(on_key(&mut u, ch('j'), &state), UserAction::None);
    }
    assert!(u.details, "j scrolls, it does not close");
    let b = draw(&state, &u, 80, 24);
    assert_has(&b, &["fds 21-"]);
    // Past the end it stops with the last fd shown.
    for _ in 0..100 {
        on_key(&mut u, key(KeyCode::Down), &state);
    }
    let b = draw(&state, &u, 80, 24);
    assert!(text(&b).contains("-46 of 46 "), "{}", text(&b));
    assert_has(&b, &["(pts/44)"]);
    // Knowing the screen, scrolling stops where the last fd is at the bottom, so one k
    // moves the view back at once.
    u.screen = (80, 24);
    for _ in 0..100 {
        on_key(&mut u, ch('j'), &state);
    }
    on_key(&mut u, ch('k'), &state);
    let b = draw(&state, &u, 80, 24);
    assert!(!text(&b).contains("-46 of 46 "), "{}", text(&b));
    assert!(text(&b).contains("-45 of 46 "), "{}", text(&b));
    on_key(&mut u, ch('g'), &state);
    assert_eq!(u.detail_scroll, 0);
    on_key(&mut u, ch('G'), &state);
    assert!(text(&draw(&state, &u, 80, 24)).contains("-46 of 46 "));
    on_key(&mut u, key(KeyCode::Esc), &state);
    assert!(!u.details);
    assert!(!text(&draw(&state, &u, 80, 24)).contains("OPENED BY"));
}

#[test]
fn help_popup() {
    let mut u = ui();
    u.help = true;
    for (w, h) in [(80, 24), (200, 60)] {
        let b = draw(&leaking(), &u, w, h);
        assert_has(
            &b,
            &["help", "quit", "pause the display", "cycle sort: tree, fds, ptys, leak, pid", "filter by command or pid", "write the current state to the JSONL output", "below 70: ALERT", "below 50: MUST ROTATE"],
        );
    }
}

#[test]
fn filter_by_command_or_pid() {
    let mut u = ui();
    u.filter = "make".into();
    let b = draw(&healthy(), &u, 80, 24);
    assert_has(&b, &["processes 2", "filter \"make\"", "sh -c make test"]);
    assert!(!text(&b).contains("node /opt/agent"), "{}", text(&b));
    u.filter = "4251".into();
    let b = draw(&healthy(), &u, 80, 24);
    assert_has(&b, &["processes 1", "make test"]);
    assert!(!text(&b).contains("sh -c make"));
    u.filter = "no-such".into();
    assert_has(&draw(&healthy(), &u, 80, 24), &["processes 0", "no process matches the filter"]);
    // While typing, the footer shows the filter being edited.
    u.filter = "mak".into();
    u.editing_filter = true;
    let b = draw(&healthy(), &u, 80, 24);
    assert!(lines(&b)[23].contains("filter: mak_"), "{}", lines(&b)[23]);
}

#[test]
fn sort_orders_the_rows() {
    let state = healthy();
    let mut u = ui();
    let order = |u: &UiState| visible_procs(&state, u).iter().map(|p| p.pid).collect::<Vec<_>>();
    assert_eq!(order(&u), [4242, 4250, 4251]);
    u.sort = SortKey::Fds;
    let b = draw(&state, &u, 80, 24);
    assert_has(&b, &["sort fds"]);
    assert_eq!(order(&u), [4242, 4251, 4250]);
    let (y1, _) = proc_line(&b, 4251);
    let (y2, _) = proc_line(&b, 4250);
    assert!(y1 < y2);
    // Not in tree order, so no indentation.
    assert!(!text(&b).contains("└ "), "{}", text(&b));
    u.sort = SortKey::Pid;
    assert_eq!(order(&u), [4242, 4250, 4251]);
    u.sort = SortKey::Leak;
    let st = leaking();
    assert_eq!(visible_procs(&st, &u)[0].pid, ROOT);
}

#[test]
fn pause_marker() {
    let mut u = ui();
    u.paused = true;
    let b = draw(&leaking(), &u, 80, 24);
    let (y, l) = line_with(&b, "PAUSED");
    assert_eq!(y, 0, "in the title line: {l}");
    assert_has(&b, &["· PAUSED", "p resume"]);
    u.paused = false;
    assert!(!text(&draw(&leaking(), &u, 80, 24)).contains("PAUSED"));
}

#[test]
fn status_message_replaces_the_keys() {
    let mut u = ui();
    u.status = Some("wrote snapshots to /tmp/x.jsonl".into());
    let b = draw(&leaking(), &u, 80, 24);
    assert!(lines(&b)[23].contains("wrote snapshots to /tmp/x.jsonl"));
}

// ---------------------------------------------------------------- colour

fn colours(b: &Buffer) -> Vec<(u16, u16, Color, Color)> {
    let a = b.area;
    let mut v = Vec::new();
    for y in 0..a.height {
        for x in 0..a.width {
            let c = &b[(x, y)];
            if c.fg != Color::Reset || c.bg != Color::Reset || c.underline_color != Color::Reset {
                v.push((x, y, c.fg, c.bg));
            }
        }
    }
    v
}

#[test]
fn no_color_draws_no_colours() {
    for state in [healthy(), leaking(), must_rotate()] {
        for (details, help) in [(false, false), (true, false), (false, true)] {
            for (w, h) in [(80, 24), (200, 60), (30, 8)] {
                let u = UiState { color: false, details, help, ..ui() };
                let b = draw(&state, &u, w, h);
                let c = colours(&b);
                assert!(c.is_empty(), "colours with NO_COLOR at {w}x{h}: {:?}\n{}", &c[..c.len().min(5)], text(&b));
            }
        }
    }
    // Without colour the leak is still visible: markers and words.
    let b = draw(&must_rotate(), &UiState { color: false, ..ui() }, 80, 24);
    assert_has(&b, &["│! 4242", "MUST ROTATE", "LEAK DETECTED"]);
    // With colour there is colour.
    assert!(!colours(&draw(&must_rotate(), &ui(), 80, 24)).is_empty());
}

// ---------------------------------------------------------------- sizes

#[test]
fn tiny_and_odd_sizes_do_not_panic() {
    let sizes = [
        (0, 0),
        (1, 1),
        (0, 24),
        (80, 0),
        (20, 5),
        (10, 2),
        (39, 9),
        (40, 10),
        (41, 11),
        (60, 15),
        (79, 23),
        (80, 5),
        (5, 80),
        (119, 30),
        (120, 11),
        (120, 12),
        (300, 3),
        (1000, 30),
        (u16::MAX, 2),
    ];
    let many = {
        let mut s = must_rotate();
        for i in 0..7 {
            let mut x = s.sessions[0].clone();
            x.root = 7000 + i;
            s.sessions.push(x);
        }
        for i in 0..200 {
            s.procs.push(child(10_000 + i, (i % 12) as usize, "sh", "sh -c 'a very long command line that goes on and on'", "/dev/pts/9", 3));
        }
        s
    };
    for state in [ViewState::default(), healthy(), leaking(), many] {
        for (w, h) in sizes {
            for (details, help, editing_filter, paused) in
                [(false, false, false, false), (true, false, false, true), (false, true, false, false), (true, true, true, true)]
            {
                let u = UiState { details, help, editing_filter, paused, selected: 500, detail_scroll: 10_000, ..ui() };
                let b = draw(&state, &u, w, h);
                assert_eq!((b.area.width, b.area.height), (w, h));
            }
        }
    }
    // Small terminals get a compact summary that still says what matters.
    let b = draw(&must_rotate(), &ui(), 30, 8);
    assert_has(&b, &["pty-trace", "health 31", "MUST", "PTYs 40 held"]);
}

#[test]
fn redraws_after_resize() {
    let state = leaking();
    let u = ui();
    let mut t = Terminal::new(TestBackend::new(120, 40)).unwrap();
    t.draw(|f| render(f, &state, &u)).unwrap();
    for (w, h) in [(80, 24), (20, 5), (200, 60), (0, 0), (80, 24)] {
        t.backend_mut().resize(w, h);
        t.draw(|f| render(f, &state, &u)).unwrap();
        let b = t.backend().buffer().clone();
        assert_eq!((b.area.width, b.area.height), (w, h));
        if w >= 80 {
            assert_has(&b, &["LEAK DETECTED", "PTYs 9 held", "q quit"]);
        }
    }
}

// ---------------------------------------------------------------- keys

#[test]
fn quit_keys() {
    let s = healthy();
    for k in [ch('q'), key(KeyCode::Esc), KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)] {
        assert_eq!(on_key(&mut ui(), k, &s), UserAction::Quit, "{k:?}");
    }
    // Ctrl-C quits from anywhere, even while typing a filter or reading the help.
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(on_key(&mut UiState { editing_filter: true, ..ui() }, ctrl_c, &s), UserAction::Quit);
    assert_eq!(on_key(&mut UiState { help: true, ..ui() }, ctrl_c, &s), UserAction::Quit);
    assert_eq!(on_key(&mut UiState { details: true, ..ui() }, ctrl_c, &s), UserAction::Quit);
    // q while typing a filter is a letter.
    let mut u = UiState { editing_filter: true, ..ui() };
    assert_eq!(on_key(&mut u, ch('q'), &s), UserAction::None);
    assert_eq!(u.filter, "q");
    assert_eq!(on_key(&mut ui(), ch('e'), &s), UserAction::Export);
}

#[test]
fn selection_moves_and_clamps() {
    let s = healthy();
    let mut u = ui();
    on_key(&mut u, key(KeyCode::Up), &s);
    assert_eq!(u.selected, 0);
    on_key(&mut u, ch('j'), &s);
    assert_eq!(u.selected, 1);
    on_key(&mut u, key(KeyCode::Down), &s);
    on_key(&mut u, key(KeyCode::Down), &s);
    on_key(&mut u, ch('j'), &s);
    assert_eq!(u.selected, 2, "clamped to the last row");
    on_key(&mut u, ch('k'), &s);
    assert_eq!(u.selected, 1);
    on_key(&mut u, ch('G'), &s);
    assert_eq!(u.selected, 2);
    on_key(&mut u, ch('g'), &s);
    assert_eq!(u.selected, 0);
    // The selected row is drawn reversed.
    u.selected = 1;
    let b = draw(&s, &u, 80, 24);
    let (y, l) = proc_line(&b, 4250);
    let x = l[..l.find("4250").unwrap()].chars().count() as u16;
    assert!(b[(x, y as u16)].modifier.contains(ratatui::style::Modifier::REVERSED));
    assert_eq!(selected_proc(&s, &u).unwrap().pid, 4250);
}

#[test]
fn enter_opens_details_and_esc_closes_them() {
    let s = leaking();
    let mut u = ui();
    assert_eq!(on_key(&mut u, key(KeyCode::Enter), &s), UserAction::None);
    assert!(u.details);
    assert_eq!(on_key(&mut u, key(KeyCode::Esc), &s), UserAction::None, "Esc closes the details, it does not quit");
    assert!(!u.details);
    on_key(&mut u, key(KeyCode::Enter), &s);
    on_key(&mut u, key(KeyCode::Enter), &s);
    assert!(!u.details, "Enter toggles");
    assert_eq!(on_key(&mut u, key(KeyCode::Esc), &s), UserAction::Quit);
    // Nothing to show: Enter does nothing (so Esc still quits).
    let empty = ViewState::default();
    let mut u = ui();
    on_key(&mut u, key(KeyCode::Enter), &empty);
    assert!(!u.details);
    // Opening resets the scroll.
    let mut u = UiState { detail_scroll: 7, ..ui() };
    on_key(&mut u, key(KeyCode::Enter), &s);
    assert_eq!(u.detail_scroll, 0);
}

#[test]
fn pause_sort_help_keys() {
    let s = healthy();
    let mut u = ui();
    on_key(&mut u, ch('p'), &s);
    assert!(u.paused);
    on_key(&mut u, ch('p'), &s);
    assert!(!u.paused);

    let mut seen = vec![u.sort];
    for _ in 0..5 {
        on_key(&mut u, ch('s'), &s);
        seen.push(u.sort);
    }
    assert_eq!(seen, [SortKey::Tree, SortKey::Fds, SortKey::Ptys, SortKey::Leak, SortKey::Pid, SortKey::Tree]);

    // The cursor stays on the same process when the order changes.
    u.selected = 2; // make (4251) in tree order
    on_key(&mut u, ch('s'), &s); // fds: 4242, 4251, 4250
    assert_eq!(u.sort, SortKey::Fds);
    assert_eq!(selected_proc(&s, &u).unwrap().pid, 4251);
    assert_eq!(u.selected, 1);

    on_key(&mut u, ch('?'), &s);
    assert!(u.help);
    assert_eq!(on_key(&mut u, ch('q'), &s), UserAction::None, "any key closes the help first");
    assert!(!u.help);
    on_key(&mut u, ch('?'), &s);
    on_key(&mut u, key(KeyCode::Esc), &s);
    assert!(!u.help);
}

#[test]
fn filter_editing() {
    let s = healthy();
    let mut u = UiState { filter: "old".into(), ..ui() };
    on_key(&mut u, ch('/'), &s);
    assert!(u.editing_filter && u.filter.is_empty(), "/ starts a new filter");
    for c in "makx".chars() {
        on_key(&mut u, ch(c), &s);
    }
    on_key(&mut u, key(KeyCode::Backspace), &s);
    assert_eq!(u.filter, "mak");
    assert_eq!(visible_procs(&s, &u).len(), 2);
    assert_eq!(on_key(&mut u, key(KeyCode::Enter), &s), UserAction::None);
    assert!(!u.editing_filter);
    assert_eq!(u.filter, "mak", "Enter keeps the filter");
    // j/k select within the filtered rows.
    on_key(&mut u, ch('j'), &s);
    on_key(&mut u, ch('j'), &s);
    assert_eq!(selected_proc(&s, &u).unwrap().pid, 4251);
    // Esc while typing clears the filter (and does not quit).
    on_key(&mut u, ch('/'), &s);
    on_key(&mut u, ch('4'), &s);
    assert_eq!(on_key(&mut u, key(KeyCode::Esc), &s), UserAction::None);
    assert!(!u.editing_filter && u.filter.is_empty());
    assert_eq!(visible_procs(&s, &u).len(), 3);
    // Filtering by pid.
    on_key(&mut u, ch('/'), &s);
    for c in "4250".chars() {
        on_key(&mut u, ch(c), &s);
    }
    assert_eq!(visible_procs(&s, &u).iter().map(|p| p.pid).collect::<Vec<_>>(), [4250]);
    assert_eq!(selected_proc(&s, &u).unwrap().pid, 4250);
}

#[test]
fn health_and_pty_numbers_are_parseable() {
    // The end-to-end test reads these numbers off the screen; keep them next to their labels.
    let b = draw(&must_rotate(), &ui(), 120, 40);
    let t = text(&b);
    let (_, hdr) = line_with(&b, "session 4242");
    assert_eq!(number_after(&hdr, "health"), Some(31));
    let (_, l2) = line_with(&b, " held (machine ");
    assert_eq!(number_after(&l2, "PTYs"), Some(40));
    assert!(t.contains("PTYs 40 held"));
}

/// Every screen the view can show draws its frame at every size without losing the parts
/// that say what is wrong. `PTY_TRACE_SHOW_SCREENS=1` also prints them, to look at the layout
/// (`cargo test -p pty-trace --test tui_render -- --nocapture every_screen`).
#[test]
fn every_screen_keeps_its_verdict_and_keys() {
    let mut many = must_rotate();
    let mut other = session(100.0, false, 0, 0, 5, 2);
    other.root = 5000;
    many.sessions.push(other);
    let mut third = session(45.0, true, 12, 12, 20, 12);
    third.root = 6000;
    many.sessions.push(third);
    let cases: Vec<(&str, ViewState, UiState, u16, u16)> = vec![
        ("healthy 80x24", healthy(), ui(), 80, 24),
        ("leaking 80x24 details", leaking(), UiState { details: true, ..ui() }, 80, 24),
        ("rotate 80x24 help", must_rotate(), UiState { help: true, ..ui() }, 80, 24),
        ("3 sessions 80x24 paused", many.clone(), UiState { paused: true, ..ui() }, 80, 24),
        ("rotate 200x60 details", must_rotate(), UiState { details: true, ..ui() }, 200, 60),
        ("leaking 120x40", leaking(), ui(), 120, 40),
        ("compact 30x8", must_rotate(), ui(), 30, 8),
        ("50x12", leaking(), ui(), 50, 12),
    ];
    let show = std::env::var_os("PTY_TRACE_SHOW_SCREENS").is_some();
    for (name, s, u, w, h) in cases {
        let t = text(&draw(&s, &u, w, h));
        if show {
            println!("== {name}\n{t}\n");
        }
        assert!(t.contains("pty-trace"), "{name}: no title\n{t}");
        let worst = s.sessions.iter().map(|x| x.verdict).max_by_key(|v| *v == Verdict::LeakDetected).unwrap();
        if !u.help && !u.details {
            assert!(t.contains(worst.as_str()), "{name}: the verdict {worst} is not shown\n{t}");
        }
        if w >= 40 && h >= 10 && !u.help && !u.details {
            assert!(t.contains("q quit") || t.contains("q quit"), "{name}: no key help in the footer\n{t}");
        }
    }
}

// ---------------------------------------------------------------- terminal input

#[test]
fn parses_terminal_input_into_keys() {
    use pty_trace::tui::parse_keys;
    let codes = |b: &[u8]| parse_keys(b).into_iter().map(|k| (k.code, k.modifiers)).collect::<Vec<_>>();
    let n = KeyModifiers::NONE;
    assert_eq!(codes(b"jk?q/"), [(ch('j').code, n), (ch('k').code, n), (ch('?').code, n), (ch('q').code, n), (ch('/').code, n)]);
    assert_eq!(codes(b"\r\n\x7f\x08\t"), [
        (KeyCode::Enter, n),
        (KeyCode::Enter, n),
        (KeyCode::Backspace, n),
        (KeyCode::Backspace, n),
        (KeyCode::Tab, n)
    ]);
    assert_eq!(codes(b"\x03\x15"), [(KeyCode::Char('c'), KeyModifiers::CONTROL), (KeyCode::Char('u'), KeyModifiers::CONTROL)]);
    // A lone ESC is Esc; ESC ESC is two.
    assert_eq!(codes(b"\x1b"), [(KeyCode::Esc, n)]);
    assert_eq!(codes(b"\x1b\x1b"), [(KeyCode::Esc, n), (KeyCode::Esc, n)]);
    // Arrows in normal and application mode, Home/End/PgUp/PgDn, with modifiers.
    assert_eq!(codes(b"\x1b[A\x1b[B\x1bOA\x1bOB"), [(KeyCode::Up, n), (KeyCode::Down, n), (KeyCode::Up, n), (KeyCode::Down, n)]);
    assert_eq!(codes(b"\x1b[H\x1b[F\x1b[1~\x1b[4~\x1b[5~\x1b[6~\x1b[3~"), [
        (KeyCode::Home, n),
        (KeyCode::End, n),
        (KeyCode::Home, n),
        (KeyCode::End, n),
        (KeyCode::PageUp, n),
        (KeyCode::PageDown, n),
        (KeyCode::Delete, n)
    ]);
    assert_eq!(codes(b"\x1b[1;5B"), [(KeyCode::Down, KeyModifiers::CONTROL)]);
    // Alt-key, unknown sequences skipped, incomplete ones dropped, UTF-8 kept.
    assert_eq!(codes(b"\x1bq"), [(KeyCode::Char('q'), KeyModifiers::ALT)]);
    assert_eq!(codes(b"\x1b[200~x\x1bOPj"), [(KeyCode::Char('x'), n), (KeyCode::Char('j'), n)]);
    assert_eq!(codes(b"j\x1b[1;"), [(KeyCode::Char('j'), n)]);
    assert_eq!(codes("é✓".as_bytes()), [(KeyCode::Char('é'), n), (KeyCode::Char('✓'), n)]);
    assert_eq!(codes(b"\xff\x00a"), [(KeyCode::Char('a'), n)]);
    // What the view gets from tmux send-keys for the e2e test's keys does what it should.
    let s = leaking();
    let mut u = ui();
    let actions: Vec<UserAction> = parse_keys(b"j\rk\x1b").into_iter().map(|k| on_key(&mut u, k, &s)).collect();
    assert_eq!(actions, [UserAction::None; 4]);
    assert!(!u.details);
    assert_eq!(parse_keys(b"\x03").into_iter().map(|k| on_key(&mut u, k, &s)).collect::<Vec<_>>(), [UserAction::Quit]);
}

// ---------------------------------------------------------------- the view state from records

/// A snapshot as the tracer writes it: the agent (root) holds `masters` PTY masters, the
/// first `orphaned` of them orphaned; a shell under it, and a process whose parent is gone.
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
            masters: vec![Holder { pid: ROOT, fd: 10 + i as i32 }],
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
        drift: 0,
        drift_by_cause: BTreeMap::new(),
    }
}

fn build(snap: &SnapshotRec, th: &Thresholds) -> ViewState {
    let fds = BTreeMap::from([(
        ROOT,
        vec![
            FdRec { fd: 0, kind: FdKind::PtySlave, target: "/dev/pts/0".into(), age_s: 9.0, command: None, from_proc: true, pty_index: Some(0), orphaned: false },
            FdRec { fd: 10, kind: FdKind::PtyMaster, target: "/dev/ptmx".into(), age_s: 1.0, command: Some(vec!["node".into(), "a.js".into()]), from_proc: false, pty_index: Some(0), orphaned: true },
        ],
    )]);
    let verdicts = BTreeMap::from([(ROOT, Verdict::LeakDetected)]);
    ViewState::build(&ViewInput {
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
fn the_leak_marker_follows_the_configured_thresholds() {
    // 8 masters, none orphaned: 2 above the default max_ptys of 6, leak 2 < 10: not marked.
    let snap = snapshot(8, 0);
    let v = build(&snap, &Thresholds::default());
    assert_eq!((v.procs[0].leak_score, v.procs[0].leaking), (2.0, false));
    // With max_ptys 2 and leak_score 5 the same process is 6 above, and marked.
    let th = Thresholds { max_ptys: 2, leak_score: 5.0, ..Thresholds::default() };
    let v = build(&snap, &th);
    assert_eq!((v.procs[0].leak_score, v.procs[0].leaking), (6.0, true));
    assert_eq!(v.leak_threshold, 5.0);
    assert!(text(&draw(&v, &UiState { help: true, ..ui() }, 100, 30)).contains("leak score >= 5"));
}
