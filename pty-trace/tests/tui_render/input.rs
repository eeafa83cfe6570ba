//! Terminal input decoding tests: raw bytes into key events (`parse_keys`), and what those
//! keys do in the view.

use crossterm::event::{KeyCode, KeyModifiers};
use pty_trace::tui::{UserAction, on_key};

use crate::fixtures::{ch, leaking, ui};

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
