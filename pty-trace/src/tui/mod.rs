//! The live leak monitor (ratatui on crossterm).
//!
//! State, update, view, each in its own file:
//! - `state.rs`: [`ViewState`], plain data built each interval from the snapshot records the
//!   tracer wrote (plus the fd details of their processes);
//! - `update.rs`: [`UiState`], what the keys change, and [`on_key`], which applies one (pure);
//! - `view.rs`: [`render`], which only draws (tested with ratatui's `TestBackend`, see
//!   `tests/tui_render/`), with small helpers in `widgets.rs`;
//! - `input.rs`: stdin polled and decoded into keys;
//! - `terminal.rs`: [`LiveView`], the thin edge that owns the terminal: raw mode and the
//!   alternate screen are restored on close, on drop and from a panic hook.
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
//! colours off. Children that ran untraced (the kernel's TRACKED map was full) are counted
//! in the header (`untracked N`, red) once there are any.


mod input;
mod state;
mod terminal;
pub mod top_view;
mod update;
mod view;
mod widgets;

pub use input::parse_keys;
pub use state::{FdView, FeedItem, FeedKind, ProcView, SessionView, ViewInput, ViewState};
pub use terminal::{LiveView, Screen, color_wanted};
pub use input::read_pending_input;
pub use update::{SortKey, UiState, UserAction, on_key, reselect, selected_proc, visible_procs};
pub use view::render;
pub use widgets::{age, health_band};
