//! The live leak monitor (ratatui on crossterm).
//!
//! State, update, view: [`ViewState`] is plain data built from the model each interval,
//! [`UiState`] holds what the keys change, and [`render`] only draws (tested with ratatui's
//! `TestBackend`). [`LiveView`] is the thin edge that owns the terminal: raw mode and the
//! alternate screen are restored on close, on drop and from a panic hook.

use std::{
    collections::{BTreeMap, VecDeque},
    io::{self, Stdout},
    time::Duration,
};

use crossterm::{
    event::{self, Event as TermEvent, KeyCode, KeyEvent, KeyModifiers},
    execute,
    terminal::{EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode},
};
use ratatui::{
    Frame, Terminal,
    backend::CrosstermBackend,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Gauge, Paragraph, Row, Sparkline, Table, TableState, Wrap},
};

use crate::{
    model::{Model, PtyRole},
    records::SnapshotRec,
};

/// One session's header line.
#[derive(Clone, Debug, Default)]
pub struct SessionView {
    pub root: u32,
    pub health: f64,
    pub leak_score: f64,
    pub leak_seen: bool,
    pub commands: usize,
    pub ptys: usize,
    pub orphaned: usize,
    pub fds: usize,
    pub reasons: Vec<String>,
}

#[derive(Clone, Debug, Default)]
pub struct FdView {
    pub fd: i32,
    pub kind: &'static str,
    pub target: String,
    pub age_s: f64,
    pub command: String,
}

#[derive(Clone, Debug, Default)]
pub struct ProcView {
    pub pid: u32,
    pub session: u32,
    pub depth: usize,
    pub comm: String,
    pub command: String,
    pub fds: usize,
    pub masters: usize,
    pub slaves: usize,
    pub orphaned: usize,
    pub age_s: f64,
    pub leak_score: f64,
    pub fd_list: Vec<FdView>,
}

/// Everything the view shows, as plain data.
#[derive(Clone, Debug, Default)]
pub struct ViewState {
    pub sessions: Vec<SessionView>,
    pub procs: Vec<ProcView>,
    /// (time, text) of alerts and decisions, oldest first.
    pub feed: Vec<(String, String)>,
    pub lost_events: u64,
    pub drift: u64,
    pub pty_nr: u64,
    pub pty_max: u64,
    pub thresholds: (f64, f64),
}

impl ViewState {
    pub fn build(
        model: &Model,
        snaps: &[SnapshotRec],
        feed: Vec<(String, String)>,
        lost_events: u64,
        now_ns: u64,
        leak_seen: &BTreeMap<u32, bool>,
        thresholds: (f64, f64),
    ) -> ViewState {
        let mut v = ViewState {
            feed,
            lost_events,
            drift: model.stats.drift,
            thresholds,
            ..ViewState::default()
        };
        for s in snaps {
            v.pty_nr = s.pty_nr;
            v.pty_max = s.pty_max;
            v.sessions.push(SessionView {
                root: s.session,
                health: s.health,
                leak_score: s.leak_score,
                leak_seen: leak_seen.get(&s.session).copied().unwrap_or(false),
                commands: s.commands,
                ptys: s.totals.pty_masters,
                orphaned: s.totals.orphaned_ptys,
                fds: s.totals.fds,
                reasons: s.reasons.clone(),
            });
            let orphan_by_pid: BTreeMap<u32, usize> = s
                .ptys
                .iter()
                .filter(|p| p.orphaned)
                .flat_map(|p| p.masters.iter().map(|h| h.pid))
                .fold(BTreeMap::new(), |mut m, pid| {
                    *m.entry(pid).or_default() += 1;
                    m
                });
            // Depth-first order so the tree reads top-down.
            let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for p in &s.processes {
                if p.pid != s.session {
                    children.entry(p.ppid).or_default().push(p.pid);
                }
            }
            let by_pid: BTreeMap<u32, &crate::records::ProcessRec> = s.processes.iter().map(|p| (p.pid, p)).collect();
            let mut stack: Vec<(u32, usize)> = vec![(s.session, 0)];
            // Orphans whose parent is not in the session hang under the root.
            for p in &s.processes {
                if p.pid != s.session && !by_pid.contains_key(&p.ppid) {
                    stack.insert(0, (p.pid, 1));
                }
            }
            let mut seen = std::collections::BTreeSet::new();
            while let Some((pid, depth)) = stack.pop() {
                if !seen.insert(pid) {
                    continue;
                }
                let Some(p) = by_pid.get(&pid) else { continue };
                let orphaned = orphan_by_pid.get(&pid).copied().unwrap_or(0);
                let fd_list = model
                    .table_of(pid)
                    .map(|t| {
                        t.fds
                            .iter()
                            .map(|(fd, e)| FdView {
                                fd: *fd,
                                kind: e.kind.as_str(),
                                target: e.target.clone(),
                                age_s: now_ns.saturating_sub(e.opened_ns) as f64 / 1e9,
                                command: e
                                    .command
                                    .and_then(|c| model.command(c))
                                    .map(|c| c.argv.join(" "))
                                    .unwrap_or_else(|| if e.from_proc { "(before tracing)".into() } else { "-".into() }),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let ptys_here = model
                    .table_of(pid)
                    .map(|t| t.fds.values().filter(|e| e.kind.pty_role() == PtyRole::Master).count())
                    .unwrap_or(0);
                v.procs.push(ProcView {
                    pid,
                    session: s.session,
                    depth,
                    comm: p.comm.clone(),
                    command: p.command.as_ref().map(|a| a.join(" ")).unwrap_or_default(),
                    fds: p.fds,
                    masters: p.pty_masters,
                    slaves: p.pty_slaves,
                    orphaned,
                    age_s: p.age_s,
                    leak_score: 3.0 * orphaned as f64 + ptys_here.saturating_sub(6) as f64,
                    fd_list,
                });
                for c in children.get(&pid).into_iter().flatten().rev() {
                    stack.push((*c, depth + 1));
                }
            }
        }
        v
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SortKey {
    #[default]
    Tree,
    Fds,
    Ptys,
    Pid,
}

impl SortKey {
    fn next(self) -> Self {
        match self {
            SortKey::Tree => SortKey::Fds,
            SortKey::Fds => SortKey::Ptys,
            SortKey::Ptys => SortKey::Pid,
            SortKey::Pid => SortKey::Tree,
        }
    }
    fn as_str(self) -> &'static str {
        match self {
            SortKey::Tree => "tree",
            SortKey::Fds => "fds",
            SortKey::Ptys => "ptys",
            SortKey::Pid => "pid",
        }
    }
}

/// What the keys change.
#[derive(Clone, Debug, Default)]
pub struct UiState {
    pub selected: usize,
    pub paused: bool,
    pub sort: SortKey,
    pub filter: String,
    pub editing_filter: bool,
    pub help: bool,
    pub details: bool,
    pub color: bool,
    /// (fds, ptys) per session over time, newest last.
    pub history: BTreeMap<u32, VecDeque<(u64, u64)>>,
    pub status: Option<String>,
}

/// What a key asks the tracer to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    Export,
}

const HISTORY: usize = 240;

/// Applies a key to the UI state (pure).
pub fn on_key(ui: &mut UiState, key: KeyEvent, rows: usize) -> Action {
    if ui.editing_filter {
        match key.code {
            KeyCode::Enter | KeyCode::Esc => ui.editing_filter = false,
            KeyCode::Backspace => {
                ui.filter.pop();
            }
            KeyCode::Char(c) => ui.filter.push(c),
            _ => {}
        }
        ui.selected = 0;
        return Action::None;
    }
    if ui.help {
        ui.help = false;
        return Action::None;
    }
    match key.code {
        KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => return Action::Quit,
        KeyCode::Char('q') => return Action::Quit,
        KeyCode::Esc if ui.details => ui.details = false,
        KeyCode::Esc => return Action::Quit,
        KeyCode::Down | KeyCode::Char('j') => ui.selected = (ui.selected + 1).min(rows.saturating_sub(1)),
        KeyCode::Up | KeyCode::Char('k') => ui.selected = ui.selected.saturating_sub(1),
        KeyCode::Enter => ui.details = !ui.details,
        KeyCode::Char('p') => ui.paused = !ui.paused,
        KeyCode::Char('s') => ui.sort = ui.sort.next(),
        KeyCode::Char('/') => {
            ui.editing_filter = true;
            ui.filter.clear();
        }
        KeyCode::Char('?') => ui.help = true,
        KeyCode::Char('e') => return Action::Export,
        _ => {}
    }
    Action::None
}

/// The rows shown, after filter and sort.
pub fn visible_procs<'a>(state: &'a ViewState, ui: &UiState) -> Vec<&'a ProcView> {
    let f = ui.filter.to_lowercase();
    let mut rows: Vec<&ProcView> = state
        .procs
        .iter()
        .filter(|p| {
            f.is_empty()
                || p.pid.to_string().contains(&f)
                || p.comm.to_lowercase().contains(&f)
                || p.command.to_lowercase().contains(&f)
        })
        .collect();
    match ui.sort {
        SortKey::Tree => {}
        SortKey::Fds => rows.sort_by(|a, b| b.fds.cmp(&a.fds)),
        SortKey::Ptys => rows.sort_by(|a, b| (b.masters + b.slaves).cmp(&(a.masters + a.slaves))),
        SortKey::Pid => rows.sort_by_key(|p| p.pid),
    }
    rows
}

fn health_color(h: f64, th: (f64, f64)) -> Color {
    if h < th.1 {
        Color::Red
    } else if h < th.0 {
        Color::Yellow
    } else {
        Color::Green
    }
}

fn age(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.0}s")
    } else if s < 3600.0 {
        format!("{:.0}m", s / 60.0)
    } else {
        format!("{:.1}h", s / 3600.0)
    }
}

/// Draws the whole screen. Reads state, never changes it.
pub fn render(f: &mut Frame, state: &ViewState, ui: &UiState) {
    let area = f.area();
    let st = |c: Color| if ui.color { Style::default().fg(c) } else { Style::default() };
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let header_h = 2 + state.sessions.len().clamp(1, 4) as u16;
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(header_h + 1), Constraint::Min(6), Constraint::Length(1)]).areas(area);

    // Header: one gauge line per session and a machine line.
    let mut lines = Vec::new();
    for s in state.sessions.iter().take(4) {
        let verdict = if s.leak_seen { "LEAK DETECTED" } else { "HEALTHY" };
        lines.push(Line::from(vec![
            Span::styled(format!("session {} ", s.root), bold),
            Span::styled(format!("health {:>3.0}/100 ", s.health), st(health_color(s.health, state.thresholds)).add_modifier(Modifier::BOLD)),
            Span::styled(format!("{verdict} "), st(if s.leak_seen { Color::Red } else { Color::Green })),
            Span::raw(format!("cmds {}  PTYs {}  orphaned {}  fds {}  leak {:.1}", s.commands, s.ptys, s.orphaned, s.fds, s.leak_score)),
        ]));
    }
    if state.sessions.is_empty() {
        lines.push(Line::from("waiting for the first snapshot..."));
    }
    lines.push(Line::from(vec![
        Span::raw(format!("machine PTYs {}/{}  ", state.pty_nr, state.pty_max)),
        Span::styled(format!("lost events {}  ", state.lost_events), st(if state.lost_events > 0 { Color::Red } else { Color::Reset })),
        Span::styled(format!("drift {}", state.drift), st(if state.drift > 0 { Color::Yellow } else { Color::Reset })),
        Span::raw(if ui.paused { "  [PAUSED]" } else { "" }),
    ]));
    let [hdr_text, gauge_area] = Layout::vertical([Constraint::Min(1), Constraint::Length(1)]).areas(header);
    f.render_widget(Paragraph::new(lines).block(Block::default().title(" pty-trace ").borders(Borders::TOP)), hdr_text);
    if let Some(s) = state.sessions.first() {
        let g = Gauge::default()
            .gauge_style(st(health_color(s.health, state.thresholds)))
            .ratio((s.health / 100.0).clamp(0.0, 1.0))
            .label(format!("health {:.0}", s.health));
        f.render_widget(g, gauge_area);
    }

    // Body: process table (left/top), history + feed (right/bottom).
    let wide = body.width >= 120;
    let (table_area, side) = if wide {
        let [a, b] = Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(body);
        (a, b)
    } else {
        let [a, b] = Layout::vertical([Constraint::Min(4), Constraint::Length(7)]).areas(body);
        (a, b)
    };
    let rows = visible_procs(state, ui);
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|p| {
            let indent = if ui.sort == SortKey::Tree { "  ".repeat(p.depth.min(6)) } else { String::new() };
            let mark = if p.orphaned > 0 { format!(" !{} orphaned", p.orphaned) } else { String::new() };
            let row = Row::new(vec![
                Cell::from(p.pid.to_string()),
                Cell::from(format!("{indent}{}{mark}", if p.command.is_empty() { &p.comm } else { &p.command })),
                Cell::from(p.fds.to_string()),
                Cell::from(p.masters.to_string()),
                Cell::from(p.slaves.to_string()),
                Cell::from(format!("{:.0}", p.leak_score)),
                Cell::from(age(p.age_s)),
            ]);
            if p.orphaned > 0 || p.leak_score > 10.0 { row.style(st(Color::Red).add_modifier(Modifier::BOLD)) } else { row }
        })
        .collect();
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(8),
            Constraint::Min(16),
            Constraint::Length(5),
            Constraint::Length(4),
            Constraint::Length(4),
            Constraint::Length(5),
            Constraint::Length(5),
        ],
    )
    .header(Row::new(vec!["PID", "COMMAND", "FDS", "PTM", "PTS", "LEAK", "AGE"]).style(bold))
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(Block::default().borders(Borders::ALL).title(format!(
        " processes ({}) sort:{}{} ",
        rows.len(),
        ui.sort.as_str(),
        if ui.filter.is_empty() { String::new() } else { format!(" filter:{}", ui.filter) }
    )));
    let mut ts = TableState::default();
    if !rows.is_empty() {
        ts.select(Some(ui.selected.min(rows.len() - 1)));
    }
    f.render_stateful_widget(table, table_area, &mut ts);

    let [hist, feed_area] = if wide {
        Layout::vertical([Constraint::Length(8), Constraint::Min(3)]).areas(side)
    } else {
        Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(side)
    };
    let root = state.sessions.first().map(|s| s.root).unwrap_or(0);
    let empty = VecDeque::new();
    let h = ui.history.get(&root).unwrap_or(&empty);
    let ptys: Vec<u64> = h.iter().map(|x| x.1).collect();
    let fds: Vec<u64> = h.iter().map(|x| x.0).collect();
    let [h1, h2] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(hist);
    let last = |v: &Vec<u64>| v.last().copied().unwrap_or(0);
    f.render_widget(
        Sparkline::default().data(&ptys[ptys.len().saturating_sub(h1.width as usize)..]).style(st(Color::Magenta))
            .block(Block::default().borders(Borders::TOP).title(format!(" PTYs {} ", last(&ptys)))),
        h1,
    );
    f.render_widget(
        Sparkline::default().data(&fds[fds.len().saturating_sub(h2.width as usize)..]).style(st(Color::Cyan))
            .block(Block::default().borders(Borders::TOP).title(format!(" fds {} ", last(&fds)))),
        h2,
    );
    let feed_lines: Vec<Line> = state
        .feed
        .iter()
        .rev()
        .take(feed_area.height as usize)
        .map(|(t, s)| {
            let time = t.get(11..19).unwrap_or(t);
            Line::from(vec![Span::raw(format!("{time} ")), Span::styled(s.clone(), st(if s.starts_with("ROTATE") { Color::Red } else { Color::Yellow }))])
        })
        .collect();
    f.render_widget(
        Paragraph::new(if feed_lines.is_empty() { vec![Line::from("no alerts")] } else { feed_lines })
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title(" alerts & decisions ")),
        feed_area,
    );

    let keys = if ui.editing_filter {
        format!("filter: {}_  (Enter/Esc to finish)", ui.filter)
    } else if let Some(s) = &ui.status {
        s.clone()
    } else {
        "q quit  ↑↓/jk select  Enter details  p pause  s sort  / filter  e export  ? help".into()
    };
    f.render_widget(Paragraph::new(keys).style(Style::default().add_modifier(Modifier::DIM)), footer);

    if ui.details
        && let Some(p) = rows.get(ui.selected.min(rows.len().saturating_sub(1)))
    {
        let popup = centered(area, 90, 70);
        f.render_widget(Clear, popup);
        let mut lines = vec![Line::from(Span::styled(format!("pid {} {}  fds {}", p.pid, p.command, p.fds), bold))];
        lines.push(Line::from("  FD  KIND        AGE    TARGET  <- opened by"));
        for fd in p.fd_list.iter().take(popup.height.saturating_sub(4) as usize) {
            let style = if fd.kind.starts_with("pty") { st(Color::Magenta) } else { Style::default() };
            lines.push(Line::from(Span::styled(
                format!("{:>4}  {:<10} {:>5}  {}  <- {}", fd.fd, fd.kind, age(fd.age_s), fd.target, fd.command),
                style,
            )));
        }
        f.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" open fds (Esc/Enter to close) ")),
            popup,
        );
    }
    if ui.help {
        let popup = centered(area, 70, 60);
        f.render_widget(Clear, popup);
        let text = vec![
            Line::from("q / Esc / Ctrl-C  quit (attach: detach; run/demo: stop the child)"),
            Line::from("↑ ↓ / j k         select a process"),
            Line::from("Enter             open fds of the selected process"),
            Line::from("p                 pause the display (tracing goes on)"),
            Line::from("s                 cycle sort: tree, fds, ptys, pid"),
            Line::from("/                 filter by command or pid"),
            Line::from("e                 write the current state to the JSONL output"),
            Line::from("health < alert line: yellow; < rotate line: red"),
            Line::from("PTM/PTS: PTY masters/slaves held; ! marks orphaned PTYs"),
        ];
        f.render_widget(Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(" help (any key) ")), popup);
    }
}

fn centered(area: Rect, pct_x: u16, pct_y: u16) -> Rect {
    let w = area.width * pct_x / 100;
    let h = area.height * pct_y / 100;
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

/// Owns the terminal while the view is shown.
pub struct LiveView {
    terminal: Terminal<CrosstermBackend<Stdout>>,
    pub state: ViewState,
    pub ui: UiState,
    closed: bool,
}

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), LeaveAlternateScreen, crossterm::cursor::Show);
}

impl LiveView {
    pub fn open() -> anyhow::Result<LiveView> {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore_terminal();
            prev(info);
        }));
        enable_raw_mode()?;
        execute!(io::stdout(), EnterAlternateScreen, crossterm::cursor::Hide)?;
        let terminal = Terminal::new(CrosstermBackend::new(io::stdout()))?;
        let ui = UiState { color: std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()), ..UiState::default() };
        let mut v = LiveView { terminal, state: ViewState::default(), ui, closed: false };
        v.draw()?;
        Ok(v)
    }

    pub fn update(&mut self, state: ViewState) {
        for s in &state.sessions {
            let h = self.ui.history.entry(s.root).or_default();
            h.push_back((s.fds as u64, s.ptys as u64));
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
        if !self.ui.paused {
            self.state = state;
        }
        let _ = self.draw();
    }

    fn draw(&mut self) -> anyhow::Result<()> {
        let (state, ui) = (&self.state, &self.ui);
        self.terminal.draw(|f| render(f, state, ui))?;
        Ok(())
    }

    /// Handles pending keys and resizes without blocking.
    pub fn handle_input(&mut self) -> anyhow::Result<Action> {
        let mut action = Action::None;
        let mut dirty = false;
        while event::poll(Duration::ZERO)? {
            match event::read()? {
                TermEvent::Key(k) if k.kind == event::KeyEventKind::Press => {
                    let rows = visible_procs(&self.state, &self.ui).len();
                    self.ui.status = None;
                    match on_key(&mut self.ui, k, rows) {
                        Action::None => {}
                        a => action = a,
                    }
                    dirty = true;
                }
                TermEvent::Resize(..) => dirty = true,
                _ => {}
            }
            if action == Action::Quit {
                break;
            }
        }
        if dirty {
            self.draw()?;
        }
        Ok(action)
    }

    pub fn set_status(&mut self, s: String) {
        self.ui.status = Some(s);
        let _ = self.draw();
    }

    pub fn close(mut self) -> anyhow::Result<()> {
        self.closed = true;
        restore_terminal();
        Ok(())
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        if !self.closed {
            restore_terminal();
        }
    }
}
