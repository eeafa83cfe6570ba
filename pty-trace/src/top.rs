//! `pty-trace top`: the machine scanner on a timer, each scan turned into a `machine` record
//! (`core::machine`) and sent to the live view, a JSONL file or stdout; or one scan printed
//! (`--once`, `--json`).
//!
//! Enter in the live view attaches to the selected process: the view gives the terminal
//! back, the caller runs the session view (`attach`) until it is left (Esc, q), and `top`
//! comes back with its history intact. Every way out (q, Ctrl-C, SIGTERM, SIGHUP,
//! `--duration`, an output error) restores the terminal and completes the JSONL.

use std::{
    io::{IsTerminal, Write},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, anyhow};
use tokio::signal::unix::{SignalKind, signal};

use crate::{
    clock::{Clock, monotonic_ns},
    core::{
        machine::{MachineBook, MachineRec, TopSort, rank::sort_rows},
        records::RecordKind,
    },
    error::{AppError, AppResult, exit_code},
    output::{
        jsonl::{JsonlWriter, OutputFailure},
        machine_table,
    },
    procfs::machine::MachineScanner,
    tui::{
        Screen, color_wanted, parse_keys, read_pending_input,
        top_view::{TopAction, TopUi, on_top_key, render_top},
    },
};

/// `pty-trace top`'s options: its command line (`cli::Cmd::Top`).
#[derive(clap::Args, Clone, Debug)]
pub struct TopOptions {
    /// Print the table once and exit.
    #[arg(long, conflicts_with_all = ["json", "no_tui", "jsonl", "duration", "metrics"])]
    pub once: bool,
    /// Print one JSON document (`{"machine": ..., "processes": [...]}`) and exit.
    #[arg(long, conflicts_with_all = ["no_tui", "jsonl", "duration", "metrics"])]
    pub json: bool,
    /// Headless: write `machine` JSONL records every interval (the default without a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Write the `machine` records to PATH (`-` = stdout; created 0600, never through a symlink).
    #[arg(long, value_name = "PATH|-")]
    pub jsonl: Option<String>,
    /// Scan period, e.g. 1s, 5s (10ms to 1h).
    #[arg(long, default_value = "1s", value_parser = crate::cli::parse_duration)]
    pub interval: Duration,
    /// Stop after this long.
    #[arg(long, value_parser = crate::cli::parse_duration)]
    pub duration: Option<Duration>,
    /// What the rows are ranked by.
    #[arg(long, value_enum, default_value = "masters")]
    pub sort: TopSort,
    #[command(flatten)]
    pub metrics: crate::cli::MetricsArgs,
}

/// Why a run of the loop ended.
enum TopEnd {
    Done,
    Attach(u32),
}

/// What lives across attaches.
struct Top {
    scanner: MachineScanner,
    book: MachineBook,
    clock: Clock,
    out: JsonlWriter,
    last: Option<MachineRec>,
    ui: TopUi,
    deadline: Option<tokio::time::Instant>,
    /// `--metrics`: updated with every record.
    metrics: Option<crate::output::metrics::Metrics>,
}

impl Top {
    fn scan(&mut self) -> MachineRec {
        let now = monotonic_ns();
        let scan = self.scanner.scan(now);
        let rec = self.book.update(&scan, self.ui.sort);
        let ts = self.clock.ts(now);
        self.out.write(RecordKind::Machine, &ts, &rec);
        self.out.flush();
        if let Some(m) = &self.metrics {
            m.machine(&rec);
        }
        rec
    }
}

/// Runs `top`; `attach` runs the session view for a pid (the caller owns tracing).
pub fn command(o: TopOptions, attach: &mut dyn FnMut(u32) -> AppResult<()>) -> AppResult<i32> {
    crate::cli::check_times(o.interval, o.duration).map_err(AppError::BadInput)?;
    if o.once || o.json {
        let mut scanner = MachineScanner::new();
        let now = monotonic_ns();
        let rec = MachineBook::default().update(&scanner.scan(now), o.sort);
        let text = if o.json {
            let mut s = serde_json::to_string_pretty(&rec).map_err(|e| AppError::Other(e.into()))?;
            s.push('\n');
            s
        } else {
            machine_table::render(&rec, &Clock::now().ts(now))
        };
        let mut out = std::io::stdout();
        return match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => Ok(exit_code::OK),
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit_code::OUTPUT_CLOSED),
            Err(e) => Err(AppError::Other(anyhow!("writing to stdout: {e}"))),
        };
    }
    let tty = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let tui = tty && !o.no_tui && o.jsonl.as_deref() != Some("-");
    let out = match o.jsonl.as_deref() {
        Some("-") => JsonlWriter::stdout().map_err(|e| AppError::Other(anyhow!("duplicating stdout: {e}")))?,
        Some(p) => JsonlWriter::create(std::path::Path::new(p)).map_err(AppError::BadInput)?,
        None if tui => JsonlWriter::discard(),
        None => JsonlWriter::stdout().map_err(|e| AppError::Other(anyhow!("duplicating stdout: {e}")))?,
    };
    let metrics = o.metrics.start("none")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| AppError::Other(e.into()))?;
    let mut top = Top {
        scanner: MachineScanner::new(),
        book: MachineBook::default(),
        clock: Clock::now(),
        out,
        last: None,
        ui: TopUi { sort: o.sort, color: color_wanted(), interval: humantime::format_duration(o.interval).to_string(), ..Default::default() },
        deadline: None,
        metrics,
    };
    top.deadline = o.duration.map(|d| tokio::time::Instant::now() + d);
    // A signal that ends `top` may arrive while an attached session runs (the session ends on
    // it and returns here) or between two runs of the loop, when tokio's streams do not exist
    // to see it: this flag keeps it.
    let stopped = Arc::new(AtomicBool::new(false));
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT] {
        signal_hook::flag::register(sig, Arc::clone(&stopped)).context("installing a signal handler")?;
    }
    // The session view runs its own runtime, so an attach happens between runs of this one.
    let result = loop {
        if stopped.load(Ordering::Relaxed) {
            break Ok(());
        }
        match rt.block_on(run(&mut top, o.interval, tui)) {
            Ok(TopEnd::Done) => break Ok(()),
            Ok(TopEnd::Attach(pid)) => {
                if let Err(e) = attach(pid) {
                    top.ui.status = Some(format!("attach {pid}: {e}"));
                }
            }
            Err(e) => break Err(e),
        }
    };
    top.out.close(Duration::from_secs(2));
    result?;
    match top.out.failure() {
        Some(OutputFailure::Closed) => Ok(exit_code::OUTPUT_CLOSED),
        Some(OutputFailure::Error(e)) => Err(AppError::Other(anyhow!(e))),
        None => Ok(exit_code::OK),
    }
}

/// The loop, until a way out or an attach.
async fn run(top: &mut Top, interval: Duration, tui: bool) -> AppResult<TopEnd> {
    let listen = |kind: SignalKind, name: &str| signal(kind).with_context(|| format!("installing the {name} handler"));
    let mut sigint = listen(SignalKind::interrupt(), "SIGINT")?;
    let mut sigterm = listen(SignalKind::terminate(), "SIGTERM")?;
    let mut sighup = listen(SignalKind::hangup(), "SIGHUP")?;
    let mut sigquit = listen(SignalKind::quit(), "SIGQUIT")?;
    let mut screen = if tui { Some(Screen::open().map_err(AppError::Other)?) } else { None };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut input = tokio::time::interval(Duration::from_millis(50));
    let draw = |screen: &mut Option<Screen>, top: &Top| {
        if let Some(s) = screen.as_mut() {
            let _ = s.draw(|f| render_top(f, top.last.as_ref(), &top.ui));
        }
    };
    draw(&mut screen, top);
    let mut size = screen.as_ref().map(Screen::size);
    let deadline = top.deadline;
    loop {
        if let Some(f) = top.out.failure() {
            return match f {
                OutputFailure::Closed => Ok(TopEnd::Done),
                OutputFailure::Error(e) => Err(AppError::Other(anyhow!(e))),
            };
        }
        tokio::select! {
            _ = tick.tick() => {
                let rec = top.scan();
                if !top.ui.paused || top.last.is_none() {
                    top.last = Some(rec);
                }
                draw(&mut screen, top);
            }
            _ = input.tick(), if screen.is_some() => {
                let keys = parse_keys(&read_pending_input());
                let now = screen.as_ref().map(Screen::size);
                let mut dirty = now != size || screen.as_ref().is_some_and(Screen::repaint_due);
                size = now;
                for k in keys {
                    top.ui.status = None;
                    dirty = true;
                    let rows = top.last.as_ref().map(|r| r.processes.as_slice()).unwrap_or(&[]);
                    match on_top_key(&mut top.ui, k, rows) {
                        TopAction::None => {}
                        TopAction::Quit => return Ok(TopEnd::Done),
                        TopAction::Resort => {
                            if let Some(r) = top.last.as_mut() {
                                sort_rows(&mut r.processes, top.ui.sort);
                            }
                        }
                        TopAction::Attach(pid) => {
                            if let Some(s) = screen.take() {
                                s.close();
                            }
                            return Ok(TopEnd::Attach(pid));
                        }
                    }
                }
                if dirty {
                    draw(&mut screen, top);
                }
            }
            _ = sigint.recv() => return Ok(TopEnd::Done),
            _ = sigterm.recv() => return Ok(TopEnd::Done),
            _ = sighup.recv() => return Ok(TopEnd::Done),
            _ = sigquit.recv() => return Ok(TopEnd::Done),
            _ = async { match deadline { Some(d) => tokio::time::sleep_until(d).await, None => std::future::pending().await } } => {
                return Ok(TopEnd::Done);
            }
        }
    }
}
