//! pty-trace: find the process that leaks PTYs and file descriptors in a long-lived terminal
//! session, live, with eBPF.
//!
//! The crate is a pure core surrounded by edges that each have one job:
//!
//! | room | what lives there | I/O |
//! |---|---|---|
//! | [`core`] | the model (process tree, fd tables, PTYs, reconciliation), the scorer, redaction, the JSONL record types, snapshot assembly, report aggregation | none, and no clock reads |
//! | [`kernel`] | loading and attaching the eBPF programs, the ring buffer, the TRACKED map, tracefs | BPF, tracefs |
//! | [`procfs`] | ground truth from /proc: seeding, reconciliation scans, slave holders | /proc |
//! | [`session`] | the tracing runtime: spawn, the event loop, the rotate hook | processes, signals |
//! | [`output`] | the JSONL writer | files, stdout |
//! | [`tui`] | the live view: state, update, view, input, terminal | the terminal |
//! | [`doctor`] | `pty-trace doctor`: checks and their table | the machine |
//! | [`cli`] | clap types and the validated configuration they turn into | config file |
//!
//! An event's path: decoded in `core::model::event`, applied in `core::model`, scored in
//! `core::score`, shaped into records in `core::snapshot`, written by `output::jsonl`, drawn
//! by `tui`, all driven by `session`.

pub mod cli;
pub mod clock;
pub mod core;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod kernel;
pub mod output;
pub mod procfs;
pub mod recording;
pub mod session;
pub mod top;
pub mod sudo;
pub mod tui;
