//! Rendering tests: each screen (sessions header, process table, details, help, filter,
//! sort, pause, status line) drawn at various sizes, with and without colour, and checked
//! by the buffer's text and styles.

use crossterm::event::KeyCode;
use pty_trace::{
    core::records::{ProbeBackend, Verdict},
    tui::{SortKey, UiState, UserAction, ViewState, on_key, render, visible_procs},
};
use ratatui::{Terminal, backend::TestBackend, buffer::Buffer, style::Color};

use crate::fixtures::{
    AGENT_CMD, ROOT, TH, assert_has, ch, child, draw, healthy, key, leaking, line_with, lines, must_rotate, number_after,
    proc_line, session, text, ui,
};

// ---------------------------------------------------------------- header and sessions

#[test]
fn the_header_names_the_probe_backend() {
    // Wide enough for everything: the backend and the legend.
    let mut state = healthy();
    state.probes = Some(ProbeBackend::Fentry);
    let b = draw(&state, &ui(), 120, 24);
    let (_, l) = line_with(&b, "machine PTYs");
    assert!(l.contains("probes fentry") && l.contains("(pty/nr of pty/max)"), "{l}");
    // At 80 columns the legend gives way; the backend stays.
    state.probes = Some(ProbeBackend::Tracepoint);
    let b = draw(&state, &ui(), 80, 24);
    let (_, l) = line_with(&b, "machine PTYs 3/4096");
    assert!(l.contains("probes tracepoint") && !l.contains("pty/nr of pty/max"), "{l}");
}

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

// ---------------------------------------------------------------- whole screens

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
