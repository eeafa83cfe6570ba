//! The live leak monitor (ratatui on crossterm).
//!
//! State, update, view: [`ViewState`] is plain data built from the model each interval,
//! [`UiState`] holds what the keys change, [`on_key`] applies a key (pure) and [`render`] only
//! draws (tested with ratatui's `TestBackend`, see `tests/tui_render.rs`). [`LiveView`] is the
//! thin edge that owns the terminal: raw mode and the alternate screen are restored on close,
//! on drop and from a panic hook.
//!
//! Layout at 80x24 (from 120 columns the history and the feed move to the right of the table;
//! below 40x10 a compact summary is shown instead; no size panics):
//!
//! ```text
//! pty-trace │ machine PTYs 43/4096 (pty/nr of pty/max) │ lost events 0 │ drift 0
//! session 4242  LEAK DETECTED  health  31 [████████░░░░░░░░░░░░░░░░░] MUST ROTATE
//!   cmds 40  PTYs 40 held (machine 43 of 4096)  orphaned 40  fds 46  leak 120.0
//! ┌ processes 1 · sort tree ─────────────────────────────────────────────────────┐
//! │  PID     COMMAND                              FDS   PTM PTS ORPH LEAK  AGE   │
//! │! 4242    node /opt/agent/cli.js --session 7   46    40  3   40   154   5m01s │
//! └──────────────────────────────────────────────────────────────────────────────┘
//!  PTYs 40 · s4242 ───────────────────┌ alerts & decisions 2 ────────────────────┐
//!      ▁▂▂▃▃▄▅▅▆▆▇████████████████████│12:00:05 ROTATE s4242 health 44: 14 ...   │
//!  fds 65 ────────────────────────────│12:00:03 ALERT s4242 health 62: 8 ...     │
//! ▇▇▇█████████████████████████████████└──────────────────────────────────────────┘
//! q quit  ↑↓/jk select  Enter details  p pause  s sort  / filter  e export  ? help
//! ```
//!
//! Enter opens the selected process's open fds (number, kind, target, age, the command that
//! opened it) over the table; `?` the help.
//!
//! Nothing relies on colour alone: health bands are spelled out (`ALERT`, `MUST ROTATE`),
//! leaking rows carry a `!` marker and orphaned PTYs an `ORPH` count, and `NO_COLOR` turns all
//! colours off.

use std::{
    collections::{BTreeMap, VecDeque},
    io::{self, BufWriter, Stdout, Write},
    sync::atomic::{AtomicBool, Ordering},
};

use crossterm::{
    event::{KeyCode, KeyEvent, KeyModifiers},
    execute, queue,
    terminal::{
        BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode,
        enable_raw_mode,
    },
};
use ratatui::{
    Frame, Terminal,
    backend::CrosstermBackend,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap},
};

use crate::{
    model::Model,
    records::{self, SnapshotRec},
};

/// One session's header lines.
#[derive(Clone, Debug, Default)]
pub struct SessionView {
    pub root: u32,
    pub health: f64,
    pub leak_score: f64,
    /// The scorer has seen a leak in this session: the verdict is `LEAK DETECTED`.
    pub leak_seen: bool,
    pub commands: usize,
    /// PTY masters held by the session's processes.
    pub ptys: usize,
    pub orphaned: usize,
    pub fds: usize,
    pub reasons: Vec<String>,
}

/// One open fd of a process, for the details pane.
#[derive(Clone, Debug, Default)]
pub struct FdView {
    pub fd: i32,
    pub kind: &'static str,
    pub target: String,
    pub age_s: f64,
    /// The command that opened it (`(before tracing)` for fds found in /proc).
    pub command: String,
    /// The `N` of `/dev/pts/N` for PTY ends, when known.
    pub pty_index: Option<u32>,
    /// A PTY master nobody holds the slave of.
    pub orphaned: bool,
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
    /// Orphaned PTY masters this process holds.
    pub orphaned: usize,
    pub age_s: f64,
    pub leak_score: f64,
    pub fd_list: Vec<FdView>,
}

/// A process row at or above this leak score is marked as leaking (as is any row holding an
/// orphaned PTY).
pub const LEAK_ROW: f64 = 10.0;
/// PTY masters one process may hold before its row's leak score grows.
const PTYS_PER_PROCESS: usize = 6;

impl ProcView {
    pub fn leaking(&self) -> bool {
        self.orphaned > 0 || self.leak_score >= LEAK_ROW
    }
}

/// Everything the view shows, as plain data.
#[derive(Clone, Debug, Default)]
pub struct ViewState {
    pub sessions: Vec<SessionView>,
    pub procs: Vec<ProcView>,
    /// (RFC 3339 time, text) of alerts and decisions, oldest first.
    pub feed: Vec<(String, String)>,
    pub lost_events: u64,
    pub drift: u64,
    /// `/proc/sys/kernel/pty/nr` and `pty/max`: PTYs in use on the machine and its limit.
    pub pty_nr: u64,
    pub pty_max: u64,
    /// (alert health, rotate health).
    pub thresholds: (f64, f64),
}

impl ViewState {
    pub fn build(
        model: &Model,
        snaps: &[SnapshotRec],
        mut feed: Vec<(String, String)>,
        lost_events: u64,
        now_ns: u64,
        leak_seen: &BTreeMap<u32, bool>,
        thresholds: (f64, f64),
    ) -> ViewState {
        // Alerts and decisions of all sessions, in time order (RFC 3339 UTC sorts as text).
        feed.sort_by(|a, b| a.0.cmp(&b.0));
        let mut v = ViewState { feed, lost_events, drift: model.stats.drift, thresholds, ..ViewState::default() };
        for s in snaps {
            v.pty_nr = s.pty_nr;
            v.pty_max = s.pty_max;
            v.sessions.push(SessionView {
                root: s.session,
                health: s.health,
                leak_score: s.leak_score,
                leak_seen: leak_seen.get(&s.session).copied().unwrap_or(false),
                commands: s.commands,
                ptys: s.totals.ptys,
                orphaned: s.totals.orphaned_ptys,
                fds: s.totals.fds,
                reasons: s.reasons.clone(),
            });
            let orphan_holders: std::collections::BTreeSet<(u32, i32)> =
                s.ptys.iter().filter(|p| p.orphaned).flat_map(|p| p.masters.iter().map(|h| (h.pid, h.fd))).collect();
            // Depth-first order so the tree reads top-down.
            let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
            for p in &s.processes {
                if p.pid != s.session {
                    children.entry(p.ppid).or_default().push(p.pid);
                }
            }
            let by_pid: BTreeMap<u32, &crate::records::ProcessRec> = s.processes.iter().map(|p| (p.pid, p)).collect();
            let mut stack: Vec<(u32, usize)> = vec![(s.session, 0)];
            // Processes whose parent is not in the session hang under the root.
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
                let orphaned = orphan_holders.iter().filter(|(hp, _)| *hp == pid).count();
                let fd_list: Vec<FdView> = model
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
                                pty_index: e.pty_index,
                                orphaned: orphan_holders.contains(&(pid, *fd)),
                            })
                            .collect()
                    })
                    .unwrap_or_default();
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
                    leak_score: 3.0 * orphaned as f64 + p.pty_masters.saturating_sub(PTYS_PER_PROCESS) as f64,
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
    Leak,
    Pid,
}

impl SortKey {
    pub fn next(self) -> Self {
        match self {
            SortKey::Tree => SortKey::Fds,
            SortKey::Fds => SortKey::Ptys,
            SortKey::Ptys => SortKey::Leak,
            SortKey::Leak => SortKey::Pid,
            SortKey::Pid => SortKey::Tree,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            SortKey::Tree => "tree",
            SortKey::Fds => "fds",
            SortKey::Ptys => "ptys",
            SortKey::Leak => "leak",
            SortKey::Pid => "pid",
        }
    }
}

/// What the keys change.
#[derive(Clone, Debug, Default)]
pub struct UiState {
    /// Index into [`visible_procs`] (clamped when drawn).
    pub selected: usize,
    pub paused: bool,
    pub sort: SortKey,
    pub filter: String,
    pub editing_filter: bool,
    pub help: bool,
    pub details: bool,
    /// First fd row shown in the details pane.
    pub detail_scroll: usize,
    /// The terminal's (width, height) when known (set by [`LiveView`]), to bound scrolling.
    pub screen: (u16, u16),
    pub color: bool,
    /// (fds, ptys) per session over time, newest last.
    pub history: BTreeMap<u32, VecDeque<(u64, u64)>>,
    /// A one-off message for the footer (cleared by the next key).
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

/// The process under the cursor, if any.
pub fn selected_proc<'a>(state: &'a ViewState, ui: &UiState) -> Option<&'a ProcView> {
    let rows = visible_procs(state, ui);
    let i = ui.selected.min(rows.len().saturating_sub(1));
    rows.get(i).copied()
}

/// Puts the cursor back on `pid` if it is still shown (after a sort, a filter or new data),
/// else keeps the index within the rows.
pub fn reselect(ui: &mut UiState, state: &ViewState, pid: Option<u32>) {
    let rows = visible_procs(state, ui);
    if let Some(pid) = pid
        && let Some(i) = rows.iter().position(|p| p.pid == pid)
    {
        ui.selected = i;
    } else {
        ui.selected = ui.selected.min(rows.len().saturating_sub(1));
    }
}

/// Applies a key to the UI state (pure: `state` is only read, for the rows shown).
pub fn on_key(ui: &mut UiState, key: KeyEvent, state: &ViewState) -> Action {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
        return Action::Quit;
    }
    if ui.editing_filter {
        let before = selected_proc(state, ui).map(|p| p.pid);
        match key.code {
            KeyCode::Enter => ui.editing_filter = false,
            KeyCode::Esc => {
                ui.editing_filter = false;
                ui.filter.clear();
            }
            KeyCode::Backspace => {
                ui.filter.pop();
            }
            KeyCode::Char('u') if ctrl => ui.filter.clear(),
            KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => ui.filter.push(c),
            _ => {}
        }
        reselect(ui, state, before);
        return Action::None;
    }
    if ui.help {
        // Any key closes the help.
        ui.help = false;
        return Action::None;
    }
    let rows = visible_procs(state, ui).len();
    if ui.details {
        let fds = selected_proc(state, ui).map(|p| p.fd_list.len()).unwrap_or(0);
        let max = max_detail_scroll(ui.screen, fds);
        let scroll = ui.detail_scroll.min(max);
        let to = match key.code {
            KeyCode::Esc | KeyCode::Enter => {
                ui.details = false;
                return Action::None;
            }
            KeyCode::Down | KeyCode::Char('j') => scroll + 1,
            KeyCode::Up | KeyCode::Char('k') => scroll.saturating_sub(1),
            KeyCode::PageDown => scroll + 10,
            KeyCode::PageUp => scroll.saturating_sub(10),
            KeyCode::Home | KeyCode::Char('g') => 0,
            KeyCode::End | KeyCode::Char('G') => max,
            _ => usize::MAX,
        };
        if to != usize::MAX {
            ui.detail_scroll = to.min(max);
            return Action::None;
        }
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return Action::Quit,
        KeyCode::Down | KeyCode::Char('j') => ui.selected = (ui.selected + 1).min(rows.saturating_sub(1)),
        KeyCode::Up | KeyCode::Char('k') => ui.selected = ui.selected.min(rows.saturating_sub(1)).saturating_sub(1),
        KeyCode::PageDown => ui.selected = (ui.selected + 10).min(rows.saturating_sub(1)),
        KeyCode::PageUp => ui.selected = ui.selected.min(rows.saturating_sub(1)).saturating_sub(10),
        KeyCode::Home | KeyCode::Char('g') => ui.selected = 0,
        KeyCode::End | KeyCode::Char('G') => ui.selected = rows.saturating_sub(1),
        KeyCode::Enter if rows > 0 => {
            ui.details = true;
            ui.detail_scroll = 0;
        }
        KeyCode::Char('p') => ui.paused = !ui.paused,
        KeyCode::Char('s') => {
            let before = selected_proc(state, ui).map(|p| p.pid);
            ui.sort = ui.sort.next();
            reselect(ui, state, before);
        }
        KeyCode::Char('/') => {
            let before = selected_proc(state, ui).map(|p| p.pid);
            ui.editing_filter = true;
            ui.details = false;
            ui.filter.clear();
            reselect(ui, state, before);
        }
        KeyCode::Char('?') => ui.help = true,
        KeyCode::Char('e') => return Action::Export,
        _ => {}
    }
    Action::None
}

/// The rows shown, after filter and sort.
pub fn visible_procs<'a>(state: &'a ViewState, ui: &UiState) -> Vec<&'a ProcView> {
    let f = ui.filter.trim().to_lowercase();
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
    // Stable sorts: ties keep the tree order.
    match ui.sort {
        SortKey::Tree => {}
        SortKey::Fds => rows.sort_by_key(|p| std::cmp::Reverse(p.fds)),
        SortKey::Ptys => rows.sort_by_key(|p| std::cmp::Reverse(p.masters + p.slaves)),
        SortKey::Leak => rows.sort_by(|a, b| b.leak_score.total_cmp(&a.leak_score)),
        SortKey::Pid => rows.sort_by_key(|p| p.pid),
    }
    rows
}

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
fn short_command(cmd: &str) -> String {
    match cmd.split_once(' ') {
        Some((prog, args)) if prog.starts_with('/') => {
            format!("{} {args}", prog.rsplit('/').next().filter(|b| !b.is_empty()).unwrap_or(prog))
        }
        None if cmd.starts_with('/') => cmd.rsplit('/').next().filter(|b| !b.is_empty()).unwrap_or(cmd).to_string(),
        _ => cmd.to_string(),
    }
}

/// `v * pct / 100` without overflow.
fn pct(v: u16, pct: u16) -> u16 {
    (u32::from(v) * u32::from(pct) / 100) as u16
}

/// A `w` x `h` rectangle centred in `area` (clamped to it).
fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let w = w.min(area.width);
    let h = h.min(area.height);
    Rect { x: area.x + (area.width - w) / 2, y: area.y + (area.height - h) / 2, width: w, height: h }
}

/// A text gauge: `[████░░░░]`, readable without colour.
fn gauge_spans(ratio: f64, width: usize, style: Style, dim: Style) -> Vec<Span<'static>> {
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

/// Smallest size the full layout is drawn at; below it a compact summary is shown.
const FULL_MIN: (u16, u16) = (40, 10);

/// Draws the whole screen. Reads state, never changes it.
pub fn render(f: &mut Frame, state: &ViewState, ui: &UiState) {
    let area = f.area();
    if area.width == 0 || area.height == 0 {
        return;
    }
    let p = Palette::new(ui.color);
    if area.width < FULL_MIN.0 || area.height < FULL_MIN.1 {
        render_compact(f, area, state, ui, &p);
        return;
    }

    // How many sessions get their two header lines; the rest are counted in the title.
    let room = if area.height >= 40 { 4 } else if area.height >= 20 { 2 } else { 1 };
    let shown = state.sessions.len().min(room);
    let hidden = u16::from(state.sessions.len() > shown && shown > 0);
    let header_h = 1 + if shown == 0 { 1 } else { 2 * shown as u16 } + hidden;
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(header_h), Constraint::Min(0), Constraint::Length(1)]).areas(area);

    render_header(f, header, state, ui, &p, shown);
    let rows = visible_procs(state, ui);
    let selected = ui.selected.min(rows.len().saturating_sub(1));
    render_body(f, body, state, ui, &p, &rows, selected);
    render_footer(f, footer, ui, &p);

    if ui.details
        && let Some(proc_) = rows.get(selected)
    {
        render_details(f, area, proc_, ui, &p);
    }
    if ui.help {
        render_help(f, area, state, &p);
    }
}

/// Styles that honour `NO_COLOR` (modifiers are kept: they are not colour).
struct Palette {
    color: bool,
}

impl Palette {
    fn new(color: bool) -> Self {
        Palette { color }
    }
    fn fg(&self, c: Color) -> Style {
        if self.color { Style::default().fg(c) } else { Style::default() }
    }
    fn bold(&self) -> Style {
        Style::default().add_modifier(Modifier::BOLD)
    }
    fn dim(&self) -> Style {
        Style::default().add_modifier(Modifier::DIM)
    }
    /// Red when `bad`, plain otherwise.
    fn alarm(&self, bad: bool, c: Color) -> Style {
        if bad { self.fg(c).add_modifier(Modifier::BOLD) } else { Style::default() }
    }
}

fn render_compact(f: &mut Frame, area: Rect, state: &ViewState, ui: &UiState, p: &Palette) {
    let mut lines = vec![Line::from(vec![
        Span::styled("pty-trace", p.bold()),
        Span::raw(if ui.paused { " PAUSED" } else { "" }),
    ])];
    for s in &state.sessions {
        let (band, c) = health_band(s.health, state.thresholds);
        lines.push(Line::from(vec![
            Span::raw(format!("s{} ", s.root)),
            Span::styled(format!("health {:.0} {band}", s.health), p.fg(c).add_modifier(Modifier::BOLD)),
            Span::raw(format!(" {}", records::verdict(s.leak_seen))),
        ]));
        lines.push(Line::from(format!("PTYs {} held (machine {} of {})", s.ptys, state.pty_nr, state.pty_max)));
    }
    if state.sessions.is_empty() {
        lines.push(Line::from("waiting for the first snapshot..."));
    }
    lines.push(Line::from(format!("lost events {}  drift {}", state.lost_events, state.drift)));
    lines.push(Line::styled(
        format!("terminal {}x{}: enlarge to {}x{}+ · q quit", area.width, area.height, 80, 24),
        p.dim(),
    ));
    f.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }), area);
}

fn render_header(f: &mut Frame, header: Rect, state: &ViewState, ui: &UiState, p: &Palette, shown: usize) {
    let sep = || Span::styled(" │ ", p.dim());
    let mut title = vec![Span::styled("pty-trace", p.bold())];
    if ui.paused {
        title.push(Span::raw(" "));
        title.push(Span::styled(" PAUSED ", Style::default().add_modifier(Modifier::REVERSED | Modifier::BOLD)));
    }
    title.extend([sep(), Span::raw(format!("machine PTYs {}/{}", state.pty_nr, state.pty_max))]);
    let legend = Span::styled(" (pty/nr of pty/max)", p.dim());
    let rest = [
        sep(),
        Span::styled(format!("lost events {}", state.lost_events), p.alarm(state.lost_events > 0, Color::Red)),
        sep(),
        Span::styled(format!("drift {}", state.drift), p.alarm(state.drift > 0, Color::Yellow)),
    ];
    let needed: usize = title.iter().chain(rest.iter()).chain([&legend]).map(Span::width).sum();
    if needed <= header.width as usize {
        title.push(legend);
    }
    title.extend(rest);
    let mut lines = vec![Line::from(title)];
    if state.sessions.is_empty() {
        lines.push(Line::styled("waiting for the first snapshot...", p.dim()));
    }
    let width = header.width as usize;
    for s in state.sessions.iter().take(shown) {
        let (band, c) = health_band(s.health, state.thresholds);
        let verdict = records::verdict(s.leak_seen);
        let health_style = p.fg(c).add_modifier(Modifier::BOLD);
        let mut a = vec![
            Span::styled(format!("session {}", s.root), p.bold()),
            Span::raw("  "),
            Span::styled(format!("{verdict:<13}"), p.fg(if s.leak_seen { Color::Red } else { Color::Green }).add_modifier(Modifier::BOLD)),
            Span::raw("  "),
            Span::styled(format!("health {:>3.0} ", s.health), health_style),
        ];
        let used: usize = a.iter().map(Span::width).sum::<usize>() + 1 + band.len();
        let bar = width.saturating_sub(used + 1).min(42);
        a.extend(gauge_spans(s.health / 100.0, bar, p.fg(c), p.dim()));
        a.push(Span::raw(" "));
        a.push(Span::styled(band, health_style));
        lines.push(Line::from(a));

        let mut b = vec![
            Span::raw(format!("  cmds {}  ", s.commands)),
            Span::styled(format!("PTYs {} held", s.ptys), p.bold()),
            Span::raw(format!(" (machine {} of {})  ", state.pty_nr, state.pty_max)),
            Span::styled(format!("orphaned {}", s.orphaned), p.alarm(s.orphaned > 0, Color::Red)),
            Span::raw(format!("  fds {}  leak {:.1}", s.fds, s.leak_score)),
        ];
        let used: usize = b.iter().map(Span::width).sum();
        if let Some(r) = s.reasons.first()
            && width >= used + 24
        {
            b.push(Span::styled(format!("  — {r}"), p.dim()));
        }
        lines.push(Line::from(b));
    }
    if state.sessions.len() > shown && shown > 0 {
        // The others in one line: enough to see which one needs a look.
        let mut more = vec![Span::raw(format!("+{} more:", state.sessions.len() - shown))];
        for s in &state.sessions[shown..] {
            let (band, c) = health_band(s.health, state.thresholds);
            more.push(Span::raw(format!("  session {} ", s.root)));
            more.push(Span::styled(format!("health {:.0} {band}", s.health), p.fg(c).add_modifier(Modifier::BOLD)));
            more.push(Span::raw(format!(" {} PTYs {}", records::verdict(s.leak_seen), s.ptys)));
        }
        lines.push(Line::from(more));
    }
    f.render_widget(Paragraph::new(lines), header);
}

#[allow(clippy::too_many_arguments)]
fn render_body(f: &mut Frame, body: Rect, state: &ViewState, ui: &UiState, p: &Palette, rows: &[&ProcView], selected: usize) {
    if body.height == 0 {
        return;
    }
    let wide = body.width >= 120 && body.height >= 12;
    let (table_area, side) = if wide {
        let [a, b] = Layout::horizontal([Constraint::Percentage(62), Constraint::Percentage(38)]).areas(body);
        (a, b)
    } else {
        let side_h = if body.height >= 16 {
            7
        } else if body.height >= 11 {
            5
        } else {
            0
        };
        let [a, b] = Layout::vertical([Constraint::Min(0), Constraint::Length(side_h)]).areas(body);
        (a, b)
    };

    // Processes.
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|r| {
            let leaking = r.leaking();
            let indent = if ui.sort == SortKey::Tree && r.depth > 0 {
                format!("{}└ ", "  ".repeat(r.depth.saturating_sub(1).min(5)))
            } else {
                String::new()
            };
            let name = if r.command.is_empty() { format!("[{}]", r.comm) } else { short_command(&r.command) };
            let row = Row::new(vec![
                Cell::from(if leaking { "!" } else { " " }),
                Cell::from(r.pid.to_string()),
                Cell::from(format!("{indent}{name}")),
                Cell::from(r.fds.to_string()),
                Cell::from(r.masters.to_string()),
                Cell::from(r.slaves.to_string()),
                Cell::from(if r.orphaned > 0 { r.orphaned.to_string() } else { "-".into() }),
                Cell::from(format!("{:.0}", r.leak_score)),
                Cell::from(age(r.age_s)),
            ]);
            if leaking { row.style(p.fg(Color::Red).add_modifier(Modifier::BOLD)) } else { row }
        })
        .collect();
    let mut title = format!(" processes {} · sort {} ", rows.len(), ui.sort.as_str());
    if !ui.filter.is_empty() {
        title.push_str(&format!("· filter \"{}\" ", ui.filter));
    }
    if ui.paused {
        title.push_str("· PAUSED ");
    }
    let table = Table::new(
        table_rows,
        [
            Constraint::Length(1),
            Constraint::Length(7),
            Constraint::Min(10),
            Constraint::Length(5),
            Constraint::Length(3),
            Constraint::Length(3),
            Constraint::Length(4),
            Constraint::Length(5),
            Constraint::Length(6),
        ],
    )
    .header(Row::new(vec!["", "PID", "COMMAND", "FDS", "PTM", "PTS", "ORPH", "LEAK", "AGE"]).style(p.bold()))
    .row_highlight_style(Style::default().add_modifier(Modifier::REVERSED))
    .block(Block::default().borders(Borders::ALL).title(title));
    let mut ts = TableState::default();
    if !rows.is_empty() {
        ts.select(Some(selected));
    }
    f.render_stateful_widget(table, table_area, &mut ts);
    if rows.is_empty() && table_area.height > 3 && table_area.width > 4 {
        let msg = if state.procs.is_empty() { "no processes yet" } else { "no process matches the filter" };
        let inner = Rect { x: table_area.x + 2, y: table_area.y + 2, width: table_area.width - 4, height: 1 };
        f.render_widget(Paragraph::new(msg).style(p.dim()), inner);
    }

    if side.height == 0 || side.width == 0 {
        return;
    }
    let [hist, feed_area] = if wide {
        Layout::vertical([Constraint::Length(10.min(side.height / 2)), Constraint::Min(0)]).areas(side)
    } else {
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(side)
    };

    // History of the selected process's session (the first session when nothing is selected).
    let root = rows
        .get(selected)
        .map(|r| r.session)
        .or_else(|| state.sessions.first().map(|s| s.root))
        .unwrap_or(0);
    let empty = VecDeque::new();
    let h = ui.history.get(&root).unwrap_or(&empty);
    let ptys: Vec<u64> = h.iter().map(|x| x.1).collect();
    let fds: Vec<u64> = h.iter().map(|x| x.0).collect();
    let [h1, h2] = Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(hist);
    let last = |v: &[u64]| v.last().copied().unwrap_or(0);
    let tail = |v: &[u64], w: u16| v[v.len().saturating_sub(w as usize)..].to_vec();
    f.render_widget(
        Sparkline::default()
            .data(tail(&ptys, h1.width))
            .style(p.fg(Color::Magenta))
            .block(Block::default().borders(Borders::TOP).title(format!(" PTYs {} · s{root} ", last(&ptys)))),
        h1,
    );
    f.render_widget(
        Sparkline::default()
            .data(tail(&fds, h2.width))
            .style(p.fg(Color::Cyan))
            .block(Block::default().borders(Borders::TOP).title(format!(" fds {} ", last(&fds)))),
        h2,
    );

    // Alerts and decisions, newest first.
    let feed_lines: Vec<Line> = state
        .feed
        .iter()
        .rev()
        .take(feed_area.height as usize)
        .map(|(t, s)| {
            let time = t.get(11..19).unwrap_or(t);
            let c = if s.starts_with("ROTATE") { Color::Red } else { Color::Yellow };
            Line::from(vec![Span::styled(format!("{time} "), p.dim()), Span::styled(s.clone(), p.fg(c))])
        })
        .collect();
    let feed = if feed_lines.is_empty() { vec![Line::styled("no alerts", p.dim())] } else { feed_lines };
    f.render_widget(
        Paragraph::new(feed)
            .wrap(Wrap { trim: true })
            .block(Block::default().borders(Borders::ALL).title(format!(" alerts & decisions {} ", state.feed.len()))),
        feed_area,
    );
}

fn render_footer(f: &mut Frame, footer: Rect, ui: &UiState, p: &Palette) {
    let line = if ui.editing_filter {
        Line::from(vec![
            Span::styled("filter: ", p.bold()),
            Span::raw(format!("{}_", ui.filter)),
            Span::styled("  Enter keep · Esc clear", p.dim()),
        ])
    } else if let Some(s) = &ui.status {
        Line::styled(s.clone(), p.bold())
    } else {
        let keys: &[(&str, &str)] = if ui.details {
            &[("Esc", "close"), ("↑↓/jk", "scroll"), ("s", "sort"), ("p", "pause"), ("e", "export"), ("q", "quit")]
        } else {
            &[
                ("q", "quit"),
                ("↑↓/jk", "select"),
                ("Enter", "details"),
                ("p", if ui.paused { "resume" } else { "pause" }),
                ("s", "sort"),
                ("/", "filter"),
                ("e", "export"),
                ("?", "help"),
            ]
        };
        let full: usize = keys.iter().map(|(k, w)| k.chars().count() + 1 + w.len() + 2).sum::<usize>() - 2;
        let gap = if full <= footer.width as usize { "  " } else { " " };
        let mut spans = Vec::new();
        for (i, (k, what)) in keys.iter().enumerate() {
            if i > 0 {
                spans.push(Span::raw(gap));
            }
            spans.push(Span::styled(*k, p.bold()));
            spans.push(Span::styled(format!(" {what}"), p.dim()));
        }
        Line::from(spans)
    };
    f.render_widget(Paragraph::new(line), footer);
}

/// Where the details pane of a process with `n` fds goes, and how many fd rows it shows.
fn details_geometry(area: Rect, n: usize) -> (Rect, usize) {
    let w = area.width.saturating_sub(4).clamp(60, 150);
    let h = u16::try_from(n).unwrap_or(u16::MAX).saturating_add(7).clamp(9, pct(area.height, 85).max(9));
    let popup = centered(area, w, h);
    // Borders, two info lines and the table header.
    (popup, popup.height.saturating_sub(5) as usize)
}

/// The largest useful `detail_scroll` for `n` fds on a `screen` (width, height); without a
/// known screen size, the last fd.
fn max_detail_scroll(screen: (u16, u16), n: usize) -> usize {
    if screen.0 == 0 || screen.1 == 0 {
        return n.saturating_sub(1);
    }
    let (_, visible) = details_geometry(Rect::new(0, 0, screen.0, screen.1), n);
    n.saturating_sub(visible.max(1))
}

fn render_details(f: &mut Frame, area: Rect, proc_: &ProcView, ui: &UiState, p: &Palette) {
    let n = proc_.fd_list.len();
    let (popup, visible) = details_geometry(area, n);
    if popup.width < 3 || popup.height < 3 {
        return;
    }
    f.render_widget(Clear, popup);
    let first = ui.detail_scroll.min(n.saturating_sub(visible.max(1)));
    let last = (first + visible).min(n);
    let range = if n == 0 { " no fds ".to_string() } else { format!(" fds {}-{} of {n} ", first + 1, last) };
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" pid {} {} · open fds · Esc close · j/k scroll ", proc_.pid, proc_.comm))
        .title_bottom(Line::from(range).right_aligned());
    let inner = block.inner(popup);
    f.render_widget(block, popup);
    if inner.height == 0 || inner.width == 0 {
        return;
    }
    let [info, table_area] = Layout::vertical([Constraint::Length(2.min(inner.height)), Constraint::Min(0)]).areas(inner);
    let cmd = if proc_.command.is_empty() { format!("[{}]", proc_.comm) } else { proc_.command.clone() };
    f.render_widget(
        Paragraph::new(vec![
            Line::styled(cmd, p.bold()),
            Line::from(vec![
                Span::raw(format!("fds {}  PTY masters {}  slaves {}  ", proc_.fds, proc_.masters, proc_.slaves)),
                Span::styled(format!("orphaned {}", proc_.orphaned), p.alarm(proc_.orphaned > 0, Color::Red)),
                Span::raw(format!("  leak {:.0}  age {}", proc_.leak_score, age(proc_.age_s))),
            ]),
        ]),
        info,
    );
    if n == 0 {
        if table_area.height > 0 {
            f.render_widget(Paragraph::new("no open fds known for this process").style(p.dim()), table_area);
        }
        return;
    }
    let target_of = |fd: &FdView| {
        let t = match fd.pty_index {
            Some(i) if fd.kind == "pty_master" => format!("{} (pts/{i})", fd.target),
            _ => fd.target.clone(),
        };
        if fd.orphaned { format!("{t} orphaned") } else { t }
    };
    let shown = &proc_.fd_list[first..last];
    let target_w = shown.iter().map(|fd| target_of(fd).chars().count()).max().unwrap_or(0).clamp(6, 40) as u16;
    let rows: Vec<Row> = shown
        .iter()
        .map(|fd| {
            let target = target_of(fd);
            let row = Row::new(vec![
                Cell::from(if fd.orphaned { "!" } else { " " }),
                Cell::from(fd.fd.to_string()),
                Cell::from(fd.kind),
                Cell::from(age(fd.age_s)),
                Cell::from(target),
                Cell::from(fd.command.clone()),
            ]);
            if fd.orphaned {
                row.style(p.fg(Color::Red).add_modifier(Modifier::BOLD))
            } else if fd.kind.starts_with("pty") {
                row.style(p.fg(Color::Magenta))
            } else {
                row
            }
        })
        .collect();
    let table = Table::new(
        rows,
        [
            Constraint::Length(1),
            Constraint::Length(5),
            Constraint::Length(10),
            Constraint::Length(6),
            Constraint::Length(target_w),
            Constraint::Min(10),
        ],
    )
    .header(Row::new(vec!["", "FD", "KIND", "AGE", "TARGET", "OPENED BY"]).style(p.bold()));
    f.render_widget(table, table_area);
}

fn render_help(f: &mut Frame, area: Rect, state: &ViewState, p: &Palette) {
    let (alert, rotate) = state.thresholds;
    let keys: &[(&str, &str)] = &[
        ("q Esc Ctrl-C", "quit (attach: detach; run/demo: stop the command)"),
        ("↑ ↓  j k", "select a process (details: scroll its fds)"),
        ("g G Home End", "first / last process (or fd)"),
        ("Enter", "open fds of the selected process (Esc closes)"),
        ("p", "pause the display (tracing and JSONL go on)"),
        ("s", "cycle sort: tree, fds, ptys, leak, pid"),
        ("/", "filter by command or pid (Enter keep, Esc clear)"),
        ("e", "write the current state to the JSONL output"),
        ("?", "this help; any key closes it"),
    ];
    let mut lines: Vec<Line> =
        keys.iter().map(|(k, what)| Line::from(vec![Span::styled(format!("{k:<13} "), p.bold()), Span::raw(*what)])).collect();
    lines.push(Line::from(""));
    lines.push(Line::from(format!("health below {alert:.0}: ALERT (yellow); below {rotate:.0}: MUST ROTATE (red)")));
    lines.push(Line::from("PTYs held: PTY masters open in the session; machine: pty/nr of pty/max"));
    lines.push(Line::from(format!("! marks a leaking process (orphaned PTYs or leak score >= {LEAK_ROW:.0})")));
    lines.push(Line::from("PTM/PTS: PTY masters/slaves; ORPH: masters whose slave nobody holds"));
    let w = (lines.iter().map(Line::width).max().unwrap_or(0) as u16).saturating_add(4);
    let popup = centered(area, w, lines.len() as u16 + 2);
    if popup.width < 3 || popup.height < 3 {
        return;
    }
    f.render_widget(Clear, popup);
    f.render_widget(
        Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title(" help · any key closes ")),
        popup,
    );
}

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
fn read_pending_input() -> Vec<u8> {
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

type Backend = CrosstermBackend<BufWriter<Stdout>>;

/// Owns the terminal while the view is shown.
pub struct LiveView {
    terminal: Terminal<Backend>,
    /// What is drawn (frozen while paused).
    pub state: ViewState,
    pub ui: UiState,
    /// The newest state received while paused, shown on resume.
    latest: Option<ViewState>,
    /// (fds, ptys) per session, recorded even while paused; copied to `ui.history` when shown.
    history: BTreeMap<u32, VecDeque<(u64, u64)>>,
    /// Keys read but not handled yet (after a key that asked the tracer to act).
    pending: VecDeque<KeyEvent>,
    closed: bool,
}

/// True while a `LiveView` holds the terminal: the panic hook only restores it then.
static ACTIVE: AtomicBool = AtomicBool::new(false);
static HOOK: std::sync::Once = std::sync::Once::new();

fn restore_terminal() {
    let _ = disable_raw_mode();
    let _ = execute!(io::stdout(), EndSynchronizedUpdate, LeaveAlternateScreen, crossterm::cursor::Show);
}

/// Whether to draw in colour: `NO_COLOR` set to anything non-empty turns colour off.
pub fn color_wanted() -> bool {
    std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

impl LiveView {
    pub fn open() -> anyhow::Result<LiveView> {
        HOOK.call_once(|| {
            let prev = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if ACTIVE.swap(false, Ordering::SeqCst) {
                    restore_terminal();
                }
                prev(info);
            }));
        });
        enable_raw_mode()?;
        ACTIVE.store(true, Ordering::SeqCst);
        let opened = (|| -> anyhow::Result<Terminal<Backend>> {
            execute!(io::stdout(), EnterAlternateScreen, crossterm::cursor::Hide)?;
            // One buffered write per frame (plus synchronized updates) avoids tearing.
            Ok(Terminal::new(CrosstermBackend::new(BufWriter::with_capacity(1 << 16, io::stdout())))?)
        })();
        let terminal = match opened {
            Ok(t) => t,
            Err(e) => {
                ACTIVE.store(false, Ordering::SeqCst);
                restore_terminal();
                return Err(e);
            }
        };
        let screen = terminal.size().map(|s| (s.width, s.height)).unwrap_or_default();
        let ui = UiState { color: color_wanted(), screen, ..UiState::default() };
        let mut v = LiveView {
            terminal,
            state: ViewState::default(),
            ui,
            latest: None,
            history: BTreeMap::new(),
            pending: VecDeque::new(),
            closed: false,
        };
        v.draw()?;
        Ok(v)
    }

    /// New data for the view (each interval). While paused it is kept, not shown.
    pub fn update(&mut self, state: ViewState) {
        for s in &state.sessions {
            let h = self.history.entry(s.root).or_default();
            h.push_back((s.fds as u64, s.ptys as u64));
            while h.len() > HISTORY {
                h.pop_front();
            }
        }
        if self.ui.paused {
            self.latest = Some(state);
            return;
        }
        self.show(state);
        let _ = self.draw();
    }

    fn show(&mut self, state: ViewState) {
        let pid = selected_proc(&self.state, &self.ui).map(|p| p.pid);
        self.state = state;
        self.ui.history = self.history.clone();
        reselect(&mut self.ui, &self.state, pid);
    }

    fn draw(&mut self) -> anyhow::Result<()> {
        let (state, ui) = (&self.state, &self.ui);
        queue!(self.terminal.backend_mut(), BeginSynchronizedUpdate)?;
        let drawn = self.terminal.draw(|f| render(f, state, ui)).map(|_| ());
        execute!(self.terminal.backend_mut(), EndSynchronizedUpdate)?;
        drawn?;
        Ok(())
    }

    /// Handles pending keys and resizes without blocking.
    ///
    /// Keys are read from stdin with a level-triggered `poll(2)` and decoded by
    /// [`parse_keys`], not with crossterm's event reader: crossterm 0.28's mio source drops a
    /// ready tty when a SIGWINCH is ready in the same poll, so a key typed while the terminal is
    /// resized waited for the next key (seen with tmux: `q` did nothing until another key came).
    /// Resizes are found by comparing the terminal size; ratatui redraws everything on a change.
    pub fn handle_input(&mut self) -> anyhow::Result<Action> {
        let mut dirty = false;
        if let Ok(sz) = self.terminal.size() {
            let sz = (sz.width, sz.height);
            if sz != self.ui.screen {
                self.ui.screen = sz;
                dirty = true;
            }
        }
        self.pending.extend(parse_keys(&read_pending_input()));
        let mut action = Action::None;
        while let Some(k) = self.pending.pop_front() {
            self.ui.status = None;
            let was_paused = self.ui.paused;
            action = on_key(&mut self.ui, k, &self.state);
            if was_paused && !self.ui.paused {
                match self.latest.take() {
                    Some(s) => self.show(s),
                    None => self.ui.history = self.history.clone(),
                }
            }
            dirty = true;
            if action != Action::None {
                // The rest waits for the next call, after the tracer has acted.
                break;
            }
        }
        if dirty && action != Action::Quit {
            self.draw()?;
        }
        Ok(action)
    }

    pub fn set_status(&mut self, s: String) {
        self.ui.status = Some(s);
        let _ = self.draw();
    }

    /// Gives the terminal back (raw mode off, main screen, cursor shown). Print the summary
    /// after this.
    pub fn close(mut self) -> anyhow::Result<()> {
        self.release();
        Ok(())
    }

    fn release(&mut self) {
        if !self.closed {
            self.closed = true;
            let _ = self.terminal.backend_mut().flush();
            ACTIVE.store(false, Ordering::SeqCst);
            restore_terminal();
        }
    }
}

impl Drop for LiveView {
    fn drop(&mut self) {
        self.release();
    }
}
