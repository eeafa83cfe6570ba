//! Small drawing helpers shared by the view and the key handling: the palette (which honours
//! `NO_COLOR`), the health band, text gauges, short ages and commands, and the geometry of the
//! details pane (the keys need it to bound scrolling).

use ratatui::{
    layout::Rect,
    style::{Color, Modifier, Style},
    text::Span,
};

/// The health band, spelled out so it does not depend on colour.
pub fn health_band(h: f64, th: (f64, f64)) -> (&'static str, Color) {
    if h < th.1 {
        ("MUST ROTATE", Color::Red)
    } else if h < th.0 {
        ("ALERT", Color::Yellow)
    } else {
        ("OK", Color::Green)
    }
}

/// A short age: `42s`, `3m07s`, `2h05m`, `3d04h`.
pub fn age(s: f64) -> String {
    let s = if s.is_finite() { s.max(0.0).round() as u64 } else { 0 };
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A command line for a narrow column: the program's directory dropped
/// (`/usr/bin/python3 x.py` -> `python3 x.py`). The details pane shows it whole.
pub fn short_command(cmd: &str) -> String {
    match cmd.split_once(' ') {
        Some((prog, args)) if prog.starts_with('/') => {
            format!("{} {args}", prog.rsplit('/').next().filter(|b| !b.is_empty()).unwrap_or(prog))
        }
        None if cmd.starts_with('/') => cmd.rsplit('/').next().filter(|b| !b.is_empty()).unwrap_or(cmd).to_string(),
        _ => cmd.to_string(),
    }
}

/// `v * pct / 100` without overflow.
pub fn pct(v: u16, pct: u16) -> u16 {
    (u32::from(v) * u32::from(pct) / 100) as u16
}

/// A `w` x `h` rectangle centred in `area` (clamped to it).
pub fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

/// A text gauge: `[████░░░░]`, readable without colour.
pub fn gauge_spans(ratio: f64, width: usize, style: Style, dim: Style) -> Vec<Span<'static>> {
    if width < 6 {
        return Vec::new();
    }
    let inner = width - 2;
    let ratio = if ratio.is_finite() { ratio.clamp(0.0, 1.0) } else { 0.0 };
    let filled = ((ratio * inner as f64).round() as usize).min(inner);
    vec![
        Span::raw("["),
        Span::styled("█".repeat(filled), style),
        Span::styled("░".repeat(inner - filled), dim),
        Span::raw("]"),
    ]
}

/// Styles that honour `NO_COLOR` (modifiers are kept: they are not colour).
pub struct Palette {
    color: bool,
}

impl Palette {
    pub fn new(color: bool) -> Self {
        Palette { color }
    }
    pub fn fg(&self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }
    pub fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    pub fn dim(&self) -> Style {
        Style::default().add_modifier(Modifier::DIM)
    }
    /// Red when `bad`, plain otherwise.
    pub fn alarm(&self, bad: bool, c: Color) -> Style {
        if bad { self.fg(c).add_modifier(Modifier::BOLD) } else { Style::default() }
    }
}

/// Where the details pane of a process with `n` fds goes, and how many fd rows it shows.
pub fn details_geometry(area: Rect, n: usize) -> (Rect, usize) {
    let w = area.width.saturating_sub(4).clamp(60, 150);
    let h = u16::try_from(n).unwrap_or(u16::MAX).saturating_add(7).clamp(9, pct(area.height, 85).max(9));
    let popup = centered(area, w, h);
    // Borders, two info lines and the table header.
    (popup, popup.height.saturating_sub(5) as usize)
}

/// The largest useful `detail_scroll` for `n` fds on a `screen` (width, height); without a
/// known screen size, the last fd.
pub fn max_detail_scroll(screen: (u16, u16), n: usize) -> usize {
    if screen.0 == 0 || screen.1 == 0 {
        return n.saturating_sub(1);
    }
    let (_, visible) = details_geometry(Rect::new(0, 0, screen.0, screen.1), n);
    n.saturating_sub(visible.max(1))
}
