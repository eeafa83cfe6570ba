//! `pty_doctor_fentry`: never attached for tracing.

use aya_ebpf::{macros::fentry, programs::FEntryContext};

/// Not used for tracing: `pty-trace doctor` loads it to find out whether this kernel allows
/// BTF trampolines (the fast path of the fast-path row).
#[fentry]
pub fn pty_doctor_fentry(_ctx: FEntryContext) -> u32 {
    0
}

