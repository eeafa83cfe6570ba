//! Drawing: [`render`] reads the view state and the UI state and draws one frame. It never
//! changes either, so it is tested with ratatui's `TestBackend` (see `tests/tui_render/`).

use std::collections::VecDeque;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Clear, Paragraph, Row, Sparkline, Table, TableState, Wrap},
};

use crate::core::records::{ProbeBackend, Verdict};

use super::{
    state::{FdView, FeedKind, ProcView, ViewState},
    update::{SortKey, UiState, visible_procs},
    widgets::{Palette, age, centered, details_geometry, gauge_spans, health_band, short_command},
};

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
            Span::raw(format!(" {}", s.verdict)),
        ]));
        lines.push(Line::from(format!("PTYs {} held (machine {} of {})", s.ptys, state.pty_nr, state.pty_max)));
    }
    if state.sessions.is_empty() {
        lines.push(Line::from("waiting for the first snapshot..."));
    }
    lines.push(Line::from(format!("lost events {}  untracked {}  drift {}", state.lost_events, state.untracked_children, state.drift)));
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
    let mut rest = vec![
        sep(),
        Span::styled(format!("lost events {}", state.lost_events), p.alarm(state.lost_events > 0, Color::Red)),
    ];
    // Children that ran untraced (TRACKED was full) are rare: shown, in red, once there are any.
    if state.untracked_children > 0 {
        rest.extend([sep(), Span::styled(format!("untracked {}", state.untracked_children), p.alarm(true, Color::Red))]);
    }
    // Processes whose fds /proc would not show (no CAP_SYS_PTRACE): their counts are unchecked.
    if state.unreadable_procs > 0 {
        rest.extend([sep(), Span::styled(format!("unreadable {}", state.unreadable_procs), p.alarm(true, Color::Red))]);
    }
    rest.extend([sep(), Span::styled(format!("drift {}", state.drift), p.alarm(state.drift > 0, Color::Yellow))]);
    // Which kernel hooks: the slow path is worth a colour, every process on the machine pays for
    // it. Shown before the legend is: the legend goes first when the line is short of room.
    if let Some(b) = state.probes {
        rest.extend([sep(), Span::styled(format!("probes {b}"), p.alarm(b == ProbeBackend::Tracepoint, Color::Yellow))]);
    }
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
        let verdict = s.verdict;
        let health_style = p.fg(c).add_modifier(Modifier::BOLD);
        let mut a = vec![
            Span::styled(format!("session {}", s.root), p.bold()),
            Span::raw("  "),
            Span::styled(format!("{verdict:<13}"), p.fg(if s.verdict == Verdict::LeakDetected { Color::Red } else { Color::Green }).add_modifier(Modifier::BOLD)),
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
            more.push(Span::raw(format!(" {} PTYs {}", s.verdict, s.ptys)));
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
            let leaking = r.leaking;
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
        .map(|item| {
            let time = item.ts.get(11..19).unwrap_or(&item.ts);
            let c = match item.kind {
                FeedKind::Rotate => Color::Red,
                FeedKind::Alert => Color::Yellow,
            };
            Line::from(vec![Span::styled(format!("{time} "), p.dim()), Span::styled(item.text(), p.fg(c))])
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
        let on = fd.instance.map_or(String::new(), |d| format!(" on devpts {d}"));
        let t = match fd.pty_index {
            Some(i) if fd.kind == "pty_master" => format!("{} (pts/{i}{on})", fd.target),
            _ if fd.instance.is_some() => format!("{} ({})", fd.target, on.trim_start()),
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
    lines.push(Line::from(format!(
        "! marks the process holding PTYs it abandoned or left behind (a session leaks above leak score {:.0})",
        state.leak_threshold
    )));
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
