//! One file per hook.

mod doctor;
mod sched;
mod sys_exit;
