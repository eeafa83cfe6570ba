//! What the keys do: [`UiState`] (selection, sort, filter, panes) and [`on_key`], which applies
//! one key to it (pure: the view state is only read, for the rows shown), returning what the
//! key asks the tracer to do.

use std::collections::{BTreeMap, VecDeque};

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::{
    state::{ProcView, ViewState},
    widgets::max_detail_scroll,
};

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
pub enum UserAction {
    None,
    Quit,
    Export,
}

/// Points of fds/PTYs history kept per session (one per interval).
pub const HISTORY: usize = 240;

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
pub fn on_key(ui: &mut UiState, key: KeyEvent, state: &ViewState) -> UserAction {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
        return UserAction::Quit;
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
        return UserAction::None;
    }
    if ui.help {
        // Any key closes the help.
        ui.help = false;
        return UserAction::None;
    }
    let rows = visible_procs(state, ui).len();
    if ui.details {
        let fds = selected_proc(state, ui).map(|p| p.fd_list.len()).unwrap_or(0);
        let max = max_detail_scroll(ui.screen, fds);
        let scroll = ui.detail_scroll.min(max);
        let to = match key.code {
            KeyCode::Esc | KeyCode::Enter => {
                ui.details = false;
                return UserAction::None;
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
            return UserAction::None;
        }
    }
    match key.code {
        KeyCode::Char('q') | KeyCode::Esc => return UserAction::Quit,
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
        KeyCode::Char('e') => return UserAction::Export,
        _ => {}
    }
    UserAction::None
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
