//! The terminal edge: [`LiveView`] owns raw mode and the alternate screen (restored on close,
//! on drop and from a panic hook), draws frames, and turns pending keys into actions.

use std::{
    collections::{BTreeMap, VecDeque},
    io::{self, BufWriter, Stdout, Write},
    sync::atomic::{AtomicBool, Ordering},
};

use crossterm::{
    event::KeyEvent,
    execute, queue,
    terminal::{
        BeginSynchronizedUpdate, EndSynchronizedUpdate, EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode,
        enable_raw_mode,
    },
};
use ratatui::{Terminal, backend::CrosstermBackend};

use super::{
    input::{parse_keys, read_pending_input},
    state::{ViewInput, ViewState},
    update::{HISTORY, UiState, UserAction, on_key, reselect, selected_proc},
    view::render,
};

type Backend = CrosstermBackend<BufWriter<Stdout>>;

/// The terminal while a view is shown: raw mode and the alternate screen, given back on
/// [`Screen::close`], on drop and from a panic hook. Shared by the session view and `top`.
pub struct Screen {
    terminal: Terminal<Backend>,
    closed: bool,
    /// The size of the last frame drawn, and when a whole repaint is due after it changed.
    drawn_size: (u16, u16),
    repaint_at: Option<std::time::Instant>,
}

/// How long after a resize the whole screen is painted again. ratatui repaints everything
/// when it sees the new size, but a frame written while the terminal was being resized can
/// land in the old grid (seen with tmux: two overlapping frames), and ratatui, drawing only
/// the cells it changed, would never write over it.
const REPAINT_AFTER_RESIZE: std::time::Duration = std::time::Duration::from_millis(300);

/// Owns the terminal while the view is shown.
pub struct LiveView {
    screen: Screen,
    /// What is drawn (frozen while paused).
    pub state: ViewState,
    pub ui: UiState,
    /// The newest state received while paused, shown on resume.
    latest: Option<ViewState>,
    /// (fds, ptys) per session, recorded even while paused; copied to `ui.history` when shown.
    history: BTreeMap<u32, VecDeque<(u64, u64)>>,
    /// Keys read but not handled yet (after a key that asked the tracer to act).
    pending: VecDeque<KeyEvent>,
}

/// True while a `Screen` holds the terminal: the panic hook only restores it then.
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

impl Screen {
    pub fn open() -> anyhow::Result<Screen> {
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
        match opened {
            Ok(terminal) => Ok(Screen { terminal, closed: false, drawn_size: (0, 0), repaint_at: None }),
            Err(e) => {
                ACTIVE.store(false, Ordering::SeqCst);
                restore_terminal();
                Err(e)
            }
        }
    }

    /// (columns, rows).
    pub fn size(&self) -> (u16, u16) {
        self.terminal.size().map(|s| (s.width, s.height)).unwrap_or_default()
    }

    /// A whole repaint is due (a resize settled): the caller should draw.
    pub fn repaint_due(&self) -> bool {
        self.repaint_at.is_some_and(|t| std::time::Instant::now() >= t)
    }

    /// Draws one frame as a synchronized update (the whole screen when a repaint is due).
    pub fn draw(&mut self, render: impl FnOnce(&mut ratatui::Frame)) -> anyhow::Result<()> {
        let size = self.size();
        if size != self.drawn_size {
            self.drawn_size = size;
            self.repaint_at = Some(std::time::Instant::now() + REPAINT_AFTER_RESIZE);
        } else if self.repaint_due() {
            self.repaint_at = None;
            self.terminal.clear()?;
        }
        queue!(self.terminal.backend_mut(), BeginSynchronizedUpdate)?;
        let drawn = self.terminal.draw(render).map(|_| ());
        execute!(self.terminal.backend_mut(), EndSynchronizedUpdate)?;
        drawn?;
        Ok(())
    }

    /// Gives the terminal back (raw mode off, main screen, cursor shown).
    pub fn close(mut self) {
        self.release();
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

impl Drop for Screen {
    fn drop(&mut self) {
        self.release();
    }
}

impl LiveView {
    pub fn open() -> anyhow::Result<LiveView> {
        let screen = Screen::open()?;
        let ui = UiState { color: color_wanted(), screen: screen.size(), ..UiState::default() };
        let mut v = LiveView {
            screen,
            state: ViewState::default(),
            ui,
            latest: None,
            history: BTreeMap::new(),
            pending: VecDeque::new(),
        };
        v.draw()?;
        Ok(v)
    }

    /// New data for the view (each interval). While paused it is kept, not shown.
    pub fn update(&mut self, input: ViewInput<'_>) {
        let state = ViewState::build(input);
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
        self.screen.draw(|f| render(f, state, ui))
    }

    /// Handles pending keys and resizes without blocking.
    ///
    /// Keys are read from stdin with a level-triggered `poll(2)` and decoded by
    /// [`parse_keys`], not with crossterm's event reader: crossterm 0.28's mio source drops a
    /// ready tty when a SIGWINCH is ready in the same poll, so a key typed while the terminal is
    /// resized waited for the next key (seen with tmux: `q` did nothing until another key came).
    /// Resizes are found by comparing the terminal size; ratatui redraws everything on a change.
    pub fn handle_input(&mut self) -> anyhow::Result<UserAction> {
        let mut dirty = false;
        let sz = self.screen.size();
        if sz != self.ui.screen {
            self.ui.screen = sz;
            dirty = true;
        }
        dirty |= self.screen.repaint_due();
        self.pending.extend(parse_keys(&read_pending_input()));
        let mut action = UserAction::None;
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
            if action != UserAction::None {
                // The rest waits for the next call, after the tracer has acted.
                break;
            }
        }
        if dirty && action != UserAction::Quit {
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
    pub fn close(self) -> anyhow::Result<()> {
        self.screen.close();
        Ok(())
    }
}
