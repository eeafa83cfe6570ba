//! pty-trace: find the process that leaks PTYs and file descriptors in a long-lived terminal
//! session, live, with eBPF.
//!
//! Layout: `model` is the pure core (process tree, fd tables, PTY registry, reconciliation) and
//! `score` the pure scorer; `records` shapes their state into JSONL bodies. The edges around
//! them: `bpf` (loading, attaching, the ring buffer), `procfs_scan` (ground truth from /proc),
//! `jsonl` (the writer), `view` (the live terminal view), `tracer` (the loop that ties them),
//! and the subcommands `doctor`, `report` and `demo`, parsed by `cli`.

pub mod bpf;
pub mod cli;
pub mod demo;
pub mod doctor;
pub mod error;
pub mod jsonl;
pub mod model;
pub mod procfs_scan;
pub mod records;
pub mod redact;
pub mod report;
pub mod score;
pub mod tracer;
pub mod view;
