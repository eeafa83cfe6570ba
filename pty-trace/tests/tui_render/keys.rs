//! Key handling tests: `on_key` on a `UiState` (quit, selection, details, pause, sort,
//! help, filter editing).

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use pty_trace::tui::{SortKey, UiState, UserAction, ViewState, on_key, selected_proc, visible_procs};

use crate::fixtures::{ch, draw, healthy, key, leaking, proc_line, ui};

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
