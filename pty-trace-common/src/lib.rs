//! Every record that crosses the kernel/userspace boundary, defined once.
//!
//! The eBPF side (`pty-trace-ebpf`) writes these into the `EVENTS` ring buffer and reads the
//! configuration maps; userspace (`pty-trace`) decodes them. Layouts are `#[repr(C)]` with
//! explicit padding, and `tests` below pin their sizes so the two sides cannot drift apart.
//!
//! The kernel side deliberately does not interpret syscalls: it reports "syscall K returned R
//! with arguments A" plus the few values that only it can read (user memory such as paths and
//! `pipe` fd pairs). What that means for fd tables is decided by pure userspace code.
#![no_std]

pub mod config;
pub mod event;
pub mod syscall;

pub use config::*;
pub use event::*;
pub use syscall::*;
