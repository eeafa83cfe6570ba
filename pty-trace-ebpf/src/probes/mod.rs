//! One file per hook.

mod doctor;
mod sched;
mod sys_enter_close;
mod sys_exit;
