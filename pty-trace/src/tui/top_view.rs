//! `pty-trace top`'s live view: state of the keys ([`TopUi`], [`on_top_key`], pure) and the
//! drawing ([`render_top`], only draws). The machine record it draws is the one `--json`
//! prints; the header lines and the row layout are `--once`'s (`output::machine_table`).
//!
//! ```text
//! pty-trace top │ 1s │ sort masters
//! PTYs 43 of 4096 (1.0%, pty/nr of pty/max; 1024 reserved for the host's devpts)  growth +30.0/min, full in ~2h15m (estimates)
//! fds 3424 of 9223372036854775807 (fs/file-nr of file-max)
//! devpts 0:26 /dev/pts (host): 40 PTYs held, 40 orphaned
//! 65 processes; 1 hold PTY ends; 40 PTYs have a master held, 40 of them orphaned (no process holds the slave)
//! ┌ holders 1 ───────────────────────────────────────────────────────────────────┐
//! │    PID USER       PTM  ORPH  PTS   FDS/LIMIT   PTM/MIN      AGE CONTAINER   …│
//! │!  4242 dev          40    40    0     46/1024     +30.0    5m01s -          …│
//! └──────────────────────────────────────────────────────────────────────────────┘
//! q quit  ↑↓/jk select  Enter attach  s sort  p pause  ? help
//! ```

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Clear, Paragraph, Wrap},
};

use super::widgets::centered;
use crate::{
    core::machine::{HolderRow, MachineRec, TopSort},
    output::machine_table::{COLUMNS, header_lines, row_line},
};

/// What the keys change.
#[derive(Clone, Debug, Default)]
pub struct TopUi {
    pub sort: TopSort,
    /// The selected process (kept across re-sorts and new scans).
    pub selected: Option<u32>,
    pub paused: bool,
    pub help: bool,
    pub status: Option<String>,
    pub color: bool,
    pub interval: String,
}

/// What a key asks the runtime to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopAction {
    None,
    Quit,
    /// Attach to this process's tree.
    Attach(u32),
    /// The sort changed: rank the rows again.
    Resort,
}

/// Applies one key.
pub fn on_top_key(ui: &mut TopUi, key: KeyEvent, rows: &[HolderRow]) -> TopAction {
    if ui.help {
        ui.help = false;
        return TopAction::None;
    }
    let at = ui.selected.and_then(|p| rows.iter().position(|r| r.pid == p));
    let select = |ui: &mut TopUi, i: usize| ui.selected = rows.get(i).map(|r| r.pid);
    match (key.code, key.modifiers) {
        // Esc is not a way out here: it is the key that leaves an attached session, and a
        // second press (or a held key) must not end `top` as well.
        (KeyCode::Char('c'), KeyModifiers::CONTROL) | (KeyCode::Char('q'), _) => return TopAction::Quit,
        (KeyCode::Down | KeyCode::Char('j'), _) => select(ui, at.map_or(0, |i| (i + 1).min(rows.len().saturating_sub(1)))),
        (KeyCode::Up | KeyCode::Char('k'), _) => select(ui, at.map_or(0, |i| i.saturating_sub(1))),
        (KeyCode::Home | KeyCode::Char('g'), _) => select(ui, 0),
        (KeyCode::End | KeyCode::Char('G'), _) => select(ui, rows.len().saturating_sub(1)),
        (KeyCode::PageDown, _) => select(ui, at.map_or(0, |i| (i + 10).min(rows.len().saturating_sub(1)))),
        (KeyCode::PageUp, _) => select(ui, at.map_or(0, |i| i.saturating_sub(10))),
        (KeyCode::Enter, _) => {
            let pid = ui.selected.filter(|p| rows.iter().any(|r| r.pid == *p)).or(rows.first().map(|r| r.pid));
            return match pid {
                Some(p) => TopAction::Attach(p),
                None => {
                    ui.status = Some("no process to attach to".into());
                    TopAction::None
                }
            };
        }
        (KeyCode::Char('s'), _) => {
            ui.sort = ui.sort.next();
            return TopAction::Resort;
        }
        (KeyCode::Char('p'), _) => ui.paused = !ui.paused,
        (KeyCode::Char('?'), _) => ui.help = true,
        _ => {}
    }
    TopAction::None
}

/// Draws `rec` (none yet: the first scan is under way).
pub fn render_top(f: &mut Frame, rec: Option<&MachineRec>, ui: &TopUi) {
    let area = f.area();
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let paint = |c: Color| if ui.color { Style::default().fg(c) } else { Style::default() };
    let Some(rec) = rec else {
        f.render_widget(Paragraph::new("pty-trace top: scanning /proc ..."), area);
        return;
    };
    let mut head: Vec<Line> = vec![Line::from(vec![
        Span::styled("pty-trace top", bold),
        Span::raw(format!(" │ every {} │ sort {}{}", ui.interval, ui.sort.name(), if ui.paused { " │ PAUSED" } else { "" })),
    ])];
    let m = &rec.machine;
    for (i, l) in header_lines(m).into_iter().enumerate() {
        let style = match i {
            0 if m.pty_max > 0 && m.pty_nr * 100 >= m.pty_max * 80 => paint(Color::Red).add_modifier(Modifier::BOLD),
            0 if m.pty_growth_per_min.is_some_and(|g| g > 0.0) => paint(Color::Yellow),
            _ if l.contains("orphaned") && !l.contains(" 0 orphaned") => paint(Color::Yellow),
            _ => Style::default(),
        };
        head.push(Line::styled(l, style));
    }
    let head_h = (head.len() as u16).min(area.height.saturating_sub(4));
    let [top, table, foot] = Layout::vertical([Constraint::Length(head_h), Constraint::Min(3), Constraint::Length(1)]).areas(area);
    f.render_widget(Paragraph::new(head).wrap(Wrap { trim: false }), top);
    draw_table(f, table, rec, ui);
    let footer = ui.status.clone().unwrap_or_else(|| "q quit  ↑↓/jk select  Enter attach  s sort  p pause  ? help".into());
    f.render_widget(Paragraph::new(footer).style(Style::default().add_modifier(Modifier::REVERSED)), foot);
    if ui.help {
        let r = centered(area, 64.min(area.width), 12.min(area.height));
        f.render_widget(Clear, r);
        let text = vec![
            Line::from("Every process holding a PTY end, or above 80% of its fd limit."),
            Line::from("PTM masters held; ORPH masters whose slave no process holds;"),
            Line::from("PTS slaves held; FDS/LIMIT open fds of RLIMIT_NOFILE;"),
            Line::from("PTM/MIN masters gained per minute (an estimate)."),
            Line::from("CONTAINER: not the host's (runtime:id, or mnt:NS)."),
            Line::from(""),
            Line::from("Enter  attach to the process's tree (Esc there returns)"),
            Line::from("s      sort: masters, growth, orphans, fds"),
            Line::from("p      pause   q  quit   any key closes this"),
        ];
        f.render_widget(Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" help ")), r);
    }
}

fn draw_table(f: &mut Frame, area: Rect, rec: &MachineRec, ui: &TopUi) {
    let block = Block::default().borders(Borders::ALL).title(format!(" holders {} ", rec.processes.len()));
    let inner = block.inner(area);
    f.render_widget(block, area);
    let width = inner.width as usize;
    let cmd_width = width.saturating_sub(COLUMNS.find("COMMAND").unwrap_or(0) + 1);
    let rows_fit = inner.height.saturating_sub(1) as usize;
    let sel = ui.selected.and_then(|p| rec.processes.iter().position(|r| r.pid == p)).unwrap_or(0);
    let first = sel.saturating_sub(rows_fit.saturating_sub(1));
    let mut lines = vec![Line::styled(format!(" {COLUMNS}"), Style::default().add_modifier(Modifier::BOLD))];
    for (i, r) in rec.processes.iter().enumerate().skip(first).take(rows_fit) {
        let mark = if r.orphaned > 0 { "!" } else if r.near_fd_limit { "+" } else { " " };
        let mut style = if r.orphaned > 0 && ui.color {
            Style::default().fg(Color::Red)
        } else if r.near_fd_limit && ui.color {
            Style::default().fg(Color::Yellow)
        } else {
            Style::default()
        };
        if i == sel {
            style = style.add_modifier(Modifier::REVERSED);
        }
        lines.push(Line::styled(format!("{mark}{}", row_line(r, cmd_width)), style));
    }
    if rec.processes.is_empty() {
        lines.push(Line::from(" (no process holds a PTY end or nears its fd limit)"));
    }
    f.render_widget(Paragraph::new(lines), inner);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::machine::MachineState;
    use ratatui::{Terminal, backend::TestBackend};

    fn row(pid: u32, masters: u64) -> HolderRow {
        HolderRow {
            pid,
            ppid: 1,
            uid: 0,
            user: Some("root".into()),
            command: format!("agent --n {pid}"),
            masters,
            orphaned: masters,
            slaves: 0,
            fds: 10,
            nofile: Some(1024),
            masters_per_min: None,
            age_s: 5.0,
            container: None,
            devpts: vec![],
            near_fd_limit: false,
        }
    }

    fn rec(rows: Vec<HolderRow>) -> MachineRec {
        MachineRec {
            machine: MachineState {
                pty_nr: 5,
                pty_max: 4096,
                pty_reserve: 1024,
                pty_growth_per_min: None,
                pty_exhaustion_eta_s: None,
                file_nr: 100,
                file_max: 1000,
                devpts: vec![],
                processes_seen: 3,
                unreadable: 0,
                holders: rows.len() as u64,
                masters: rows.iter().map(|r| r.masters).sum(),
                orphaned: 0,
                masters_instance_unknown: 0,
            },
            processes: rows,
        }
    }

    fn key(c: KeyCode) -> KeyEvent {
        KeyEvent::new(c, KeyModifiers::NONE)
    }

    #[test]
    fn keys_select_sort_attach_and_quit() {
        let rows = vec![row(10, 5), row(20, 3), row(30, 1)];
        let mut ui = TopUi::default();
        assert_eq!(on_top_key(&mut ui, key(KeyCode::Down), &rows), TopAction::None);
        assert_eq!(ui.selected, Some(10), "the first Down selects the first row");
        on_top_key(&mut ui, key(KeyCode::Down), &rows);
        assert_eq!(on_top_key(&mut ui, key(KeyCode::Enter), &rows), TopAction::Attach(20));
        on_top_key(&mut ui, key(KeyCode::End), &rows);
        on_top_key(&mut ui, key(KeyCode::Down), &rows);
        assert_eq!(ui.selected, Some(30), "stays on the last row");
        assert_eq!(on_top_key(&mut ui, key(KeyCode::Char('s')), &rows), TopAction::Resort);
        assert_eq!(ui.sort, TopSort::Growth);
        assert_eq!(on_top_key(&mut ui, key(KeyCode::Char('?')), &rows), TopAction::None);
        assert_eq!(on_top_key(&mut ui, key(KeyCode::Char('q')), &rows), TopAction::None, "a key first closes the help");
        assert_eq!(on_top_key(&mut ui, key(KeyCode::Char('q')), &rows), TopAction::Quit);
        assert_eq!(on_top_key(&mut TopUi::default(), key(KeyCode::Enter), &[]), TopAction::None);
        assert_eq!(on_top_key(&mut ui, KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL), &rows), TopAction::Quit);
        // Esc leaves an attached session; pressed again (or held) it must not end `top` too.
        assert_eq!(on_top_key(&mut ui, key(KeyCode::Esc), &rows), TopAction::None);
    }

    #[test]
    fn the_selection_follows_the_process_when_the_ranking_changes() {
        let mut ui = TopUi { selected: Some(20), ..Default::default() };
        let reordered = vec![row(20, 9), row(10, 5), row(30, 1)];
        on_top_key(&mut ui, key(KeyCode::Down), &reordered);
        assert_eq!(ui.selected, Some(10));
        // The selected process is gone: Enter takes the first row.
        ui.selected = Some(99);
        assert_eq!(on_top_key(&mut ui, key(KeyCode::Enter), &reordered), TopAction::Attach(20));
    }

    #[test]
    fn renders_rows_at_any_size_without_panicking() {
        let r = rec((1..40).map(|i| row(i, 40 - i as u64)).collect());
        let ui = TopUi { selected: Some(35), interval: "1s".into(), ..Default::default() };
        for (w, h) in [(80, 24), (120, 40), (30, 8), (10, 3), (1, 1)] {
            let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
            t.draw(|f| render_top(f, Some(&r), &ui)).unwrap();
        }
        let mut t = Terminal::new(TestBackend::new(120, 30)).unwrap();
        t.draw(|f| render_top(f, Some(&r), &ui)).unwrap();
        let text: String = t.backend().buffer().content().iter().map(|c| c.symbol()).collect();
        assert!(text.contains("PTYs 5 of 4096"), "{text}");
        assert!(text.contains("agent --n 35"), "the selected row is scrolled into view");
        assert!(text.contains("Enter attach"));
    }
}

