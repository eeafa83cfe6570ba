//! Keys from the terminal: stdin polled without blocking and the bytes decoded by
//! [`parse_keys`].
//!
//! Not crossterm's event reader: crossterm 0.28's mio source drops a ready tty when a SIGWINCH
//! is ready in the same poll, so a key typed while the terminal is resized waited for the
//! next key (seen with tmux: `q` did nothing until another key came).

use std::io;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

/// Decodes what a terminal sends for keys (raw mode) into key events: printable UTF-8,
/// Enter, Backspace, Tab, Ctrl-letter, Esc (an ESC that ends the input), Alt-key (ESC + key),
/// and the CSI/SS3 sequences of arrows, Home/End, Page Up/Down, Delete (with or without
/// modifier parameters). Other sequences are skipped whole; an incomplete one at the end is
/// dropped.
pub fn parse_keys(bytes: &[u8]) -> Vec<KeyEvent> {
    let key = |code: KeyCode, m: KeyModifiers| KeyEvent::new(code, m);
    let none = KeyModifiers::NONE;
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            0x1b => match bytes.get(i + 1) {
                None | Some(0x1b) => {
                    out.push(key(KeyCode::Esc, none));
                    i += 1;
                }
                Some(&intro @ (b'[' | b'O')) => {
                    // Parameters and intermediates, then a final byte in 0x40..=0x7e.
                    let Some(len) = bytes[i + 2..].iter().position(|c| (0x40..=0x7e).contains(c)) else {
                        if i + 2 == bytes.len() {
                            // `ESC [` / `ESC O` alone: Alt-[ / Alt-O.
                            out.push(key(KeyCode::Char(intro as char), KeyModifiers::ALT));
                        }
                        break;
                    };
                    let fin = bytes[i + 2 + len];
                    let params: Vec<u16> = std::str::from_utf8(&bytes[i + 2..i + 2 + len])
                        .unwrap_or("")
                        .split(';')
                        .map(|p| p.parse().unwrap_or(0))
                        .collect();
                    let first = params.first().copied().unwrap_or(0);
                    let mut mods = KeyModifiers::NONE;
                    if let Some(&m) = params.get(1)
                        && m >= 2
                    {
                        let m = m - 1;
                        mods.set(KeyModifiers::SHIFT, m & 1 != 0);
                        mods.set(KeyModifiers::ALT, m & 2 != 0);
                        mods.set(KeyModifiers::CONTROL, m & 4 != 0);
                    }
                    let code = match (fin, first) {
                        (b'A', _) => Some(KeyCode::Up),
                        (b'B', _) => Some(KeyCode::Down),
                        (b'C', _) => Some(KeyCode::Right),
                        (b'D', _) => Some(KeyCode::Left),
                        (b'H', _) => Some(KeyCode::Home),
                        (b'F', _) => Some(KeyCode::End),
                        (b'Z', _) => Some(KeyCode::BackTab),
                        (b'~', 1 | 7) => Some(KeyCode::Home),
                        (b'~', 4 | 8) => Some(KeyCode::End),
                        (b'~', 3) => Some(KeyCode::Delete),
                        (b'~', 5) => Some(KeyCode::PageUp),
                        (b'~', 6) => Some(KeyCode::PageDown),
                        _ => None,
                    };
                    if let Some(c) = code {
                        out.push(key(c, mods));
                    }
                    i += 3 + len;
                }
                Some(_) => {
                    // Alt + the next key.
                    let (mut next, used) = decode_one(&bytes[i + 1..]);
                    if let Some(k) = next.as_mut() {
                        k.modifiers |= KeyModifiers::ALT;
                        out.push(*k);
                    }
                    i += 1 + used;
                }
            },
            _ => {
                let (k, used) = decode_one(&bytes[i..]);
                out.extend(k);
                i += used;
            }
        }
    }
    out
}

/// One key that is not an escape sequence: (the key if it means one, bytes used).
fn decode_one(bytes: &[u8]) -> (Option<KeyEvent>, usize) {
    let none = KeyModifiers::NONE;
    let Some(&b) = bytes.first() else { return (None, 0) };
    let k = match b {
        b'\r' | b'\n' => KeyEvent::new(KeyCode::Enter, none),
        0x7f | 0x08 => KeyEvent::new(KeyCode::Backspace, none),
        b'\t' => KeyEvent::new(KeyCode::Tab, none),
        0x01..=0x1a => KeyEvent::new(KeyCode::Char((b - 1 + b'a') as char), KeyModifiers::CONTROL),
        0x00 | 0x1b..=0x1f => return (None, 1),
        0x20..=0x7e => KeyEvent::new(KeyCode::Char(b as char), none),
        _ => {
            let len = match b {
                0xc0..=0xdf => 2,
                0xe0..=0xef => 3,
                0xf0..=0xf7 => 4,
                _ => return (None, 1),
            };
            let Some(ch) = bytes.get(..len).and_then(|s| std::str::from_utf8(s).ok()).and_then(|s| s.chars().next()) else {
                return (None, 1);
            };
            return (Some(KeyEvent::new(KeyCode::Char(ch), none)), len);
        }
    };
    (Some(k), 1)
}

/// Everything stdin has ready now, without blocking.
pub fn read_pending_input() -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while out.len() < (1 << 16) {
        let mut pfd = libc::pollfd { fd: libc::STDIN_FILENO, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd, no timeout.
        let r = unsafe { libc::poll(&mut pfd, 1, 0) };
        if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if r <= 0 || pfd.revents & libc::POLLIN == 0 {
            break;
        }
        // SAFETY: reading into a buffer we own; poll said it will not block.
        let n = unsafe { libc::read(libc::STDIN_FILENO, buf.as_mut_ptr().cast(), buf.len()) };
        if n <= 0 {
            break;
        }
        out.extend_from_slice(&buf[..n as usize]);
    }
    out
}
