//! One file per hook; `trampolines.rs` holds the fentry/fexit backend's programs.

mod sched;
mod sys_enter_close;
mod sys_exit;
mod trampolines;
