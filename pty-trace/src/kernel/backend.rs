//! Which kernel hooks to use (`--probes auto|fentry|tracepoint`, `PTY_TRACE_PROBES`), and how
//! a failure to load them is told in one line.
//!
//! `auto` tries the trampoline backend first (load *and* attach: some kernels have the program
//! type and refuse the attach) and falls back to the tracepoint backend, saying why; a forced
//! backend that cannot load is an error. Pure: the loading itself is `probes.rs`.

use crate::core::records::ProbeBackend;

/// `--probes`: the backend to use, or `auto`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeChoice {
    /// BPF trampolines where the kernel allows them, else tracepoints.
    #[default]
    Auto,
    /// BPF trampolines (fentry/fexit) only.
    Fentry,
    /// The raw sys_exit and sys_enter_close* tracepoints only.
    Tracepoint,
}

impl ProbeChoice {
    /// The backends to try, in order.
    pub fn candidates(self) -> &'static [ProbeBackend] {
        match self {
            ProbeChoice::Auto => &[ProbeBackend::Fentry, ProbeBackend::Tracepoint],
            ProbeChoice::Fentry => &[ProbeBackend::Fentry],
            ProbeChoice::Tracepoint => &[ProbeBackend::Tracepoint],
        }
    }
}

/// What to do for `--probes auto` about a failed trampoline backend: fall back, unless the
/// failure says that no BPF could load at all (the fallback would fail the same way, and the
/// first error is the one to show).
pub fn worth_falling_back(error: &crate::error::AppError) -> bool {
    !matches!(error, crate::error::AppError::NoPermission(_) | crate::error::AppError::BadInput(_))
}

/// The fix to print when `backend` lacks kernel features.
pub fn fix_for(backend: ProbeBackend) -> &'static str {
    match backend {
        ProbeBackend::Fentry => {
            "use a kernel with BTF and BPF trampolines (Linux 5.10+, CONFIG_DEBUG_INFO_BTF=y), or --probes tracepoint on Linux 5.15+"
        }
        ProbeBackend::Tracepoint => "use --probes fentry (Linux 5.10+ with BPF trampolines) or a kernel >= 5.15",
    }
}

/// One line from a program that did not load: the syscall's error and, from the verifier's
/// log, the line that says why (a missing helper, a refused attach). The whole log only with
/// `verbose`.
pub fn load_failure_line(syscall_error: &str, verifier_log: &str, verbose: bool) -> String {
    // The verifier ends its log with statistics; the reason is the last line before them that
    // says what was refused.
    const STATS: &[&str] = &["processed ", "verification time", "stack depth", "max_states_per_insn"];
    const REASONS: &[&str] = &["invalid func ", "unknown func ", "invalid ", "is not ", "not supported", "not allowed", "refused", "too large", "unknown"];
    let lines: Vec<&str> = verifier_log.lines().map(str::trim).filter(|l| !l.is_empty() && !STATS.iter().any(|s| l.starts_with(s))).collect();
    let reason = REASONS
        .iter()
        .find_map(|r| lines.iter().rev().find(|l| l.contains(r)))
        .or_else(|| lines.last());
    let mut line = match reason {
        Some(r) => format!("{syscall_error} ({r})"),
        None => syscall_error.to_string(),
    };
    if verbose && !verifier_log.trim().is_empty() {
        line.push_str("\nverifier log:\n");
        line.push_str(verifier_log.trim_end());
    } else if !verifier_log.trim().is_empty() {
        line.push_str("; --verbose prints the verifier's log");
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tries_trampolines_first() {
        assert_eq!(ProbeChoice::Auto.candidates(), &[ProbeBackend::Fentry, ProbeBackend::Tracepoint]);
        assert_eq!(ProbeChoice::Fentry.candidates(), &[ProbeBackend::Fentry]);
        assert_eq!(ProbeChoice::Tracepoint.candidates(), &[ProbeBackend::Tracepoint]);
    }

    #[test]
    fn a_verifier_log_becomes_one_line() {
        // What 5.10 answers a program calling bpf_get_current_task_btf (abridged).
        let log = "func#0 @0\n0: R1=ctx(id=0,off=0,imm=0) R10=fp0\n0: (85) call unknown#158\ninvalid func unknown#158\nprocessed 1 insns (limit 1000000)\n";
        let line = load_failure_line("Invalid argument (os error 22)", log, false);
        assert_eq!(line, "Invalid argument (os error 22) (invalid func unknown#158); --verbose prints the verifier's log");
        assert_eq!(line.lines().count(), 1);
        let verbose = load_failure_line("Invalid argument (os error 22)", log, true);
        assert!(verbose.contains("0: (85) call unknown#158") && verbose.lines().count() > 3, "{verbose}");
        assert_eq!(load_failure_line("Operation not permitted (os error 1)", "", false), "Operation not permitted (os error 1)");
        // What 5.10 answered a typed load of a trampoline's argument (abridged): the reason, not
        // the statistics after it.
        let log = "arg#0 type is not a struct\n12: (79) r1 = *(u64 *)(r6 +0)\nfunc '__x64_sys_execveat' arg0 type FWD is not a struct\ninvalid bpf_context access off=0 size=8\nverification time 9908 usec\nstack depth 16\nprocessed 12 insns (limit 1000000)\n";
        let line = load_failure_line("Permission denied (os error 13)", log, false);
        assert!(line.starts_with("Permission denied (os error 13) (invalid bpf_context access off=0 size=8)"), "{line}");
    }

    #[test]
    fn no_fallback_when_nothing_could_load() {
        use crate::error::AppError;
        assert!(!worth_falling_back(&AppError::NoPermission("x".into())));
        assert!(worth_falling_back(&AppError::UnsupportedKernel("x".into())));
        assert!(worth_falling_back(&AppError::Other(anyhow::anyhow!("x"))));
    }
}
