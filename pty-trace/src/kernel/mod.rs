//! The kernel edge: loading and attaching pty-trace's eBPF programs, the maps they share with
//! userspace (TRACKED, the counters, the ring buffer), the followed-syscall table, and tracefs.
//! Records are decoded by the pure core (`core::model::event`), not here.

mod attach;
mod attach_tracepoints;
mod attach_trampolines;
pub mod backend;
pub mod features;
pub mod kernel_log;
pub mod probes;
pub mod syscalls;
pub mod tracefs;
