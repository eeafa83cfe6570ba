//! The summary people read when tracing ends (the JSONL `summary` records say the same, for
//! programs): one line per session, then its decisions and what was still open.

use crate::core::records::SummaryRec;

/// The text for `sums`, one block per session.
pub fn render_summaries(sums: &[SummaryRec]) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for s in sums {
        let _ = writeln!(
            o,
            "pty-trace: session {} {} after {:.1}s ({}): {} commands, PTY peak {}, fd peak {}, health min {:.0} final {:.0}, lost events {}, drift {}",
            s.session,
            s.verdict,
            s.duration_s,
            s.end_reason,
            s.metrics.total_commands,
            s.metrics.pty_peak,
            s.metrics.fd_peak,
            s.metrics.health_score_min,
            s.metrics.health_score_final,
            s.lost_events,
            s.drift
        );
        if s.untracked_children > 0 {
            let _ = writeln!(
                o,
                "  untracked children: {} (the kernel's TRACKED map was full; they ran untraced, counts may be low)",
                s.untracked_children
            );
        }
        if s.unreadable_procs > 0 {
            let _ = writeln!(
                o,
                "  unreadable processes: {} (/proc refused their fd tables: pty-trace lacks CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH for another user's process; their counts are from kernel events alone)",
                s.unreadable_procs
            );
        }
        for a in &s.actions {
            let _ = writeln!(o, "  decision: {} at {} (health {:.0}): {}", a.action.as_str(), a.ts, a.health, a.reasons.join("; "));
        }
        if !s.leaked_at_end.is_empty() {
            let _ = writeln!(o, "  still open at the end: {}", s.leaked_at_end.len());
        }
        if let Some(g) = &s.gate {
            let budget = format!(
                "budget {} PTY(s), {} fd(s); left open {} PTY(s), {} fd(s){}",
                g.budget_ptys,
                g.budget_fds.map_or("any number of".to_string(), |n| n.to_string()),
                g.open_ptys,
                g.open_fds,
                if g.stopped { " when it was stopped" } else { "" }
            );
            if g.passed {
                let _ = writeln!(o, "  leak gate: passed ({budget})");
            } else {
                let _ = writeln!(
                    o,
                    "  leak gate: FAILED (exit status {}): {} ({budget})",
                    crate::error::exit_code::LEAK_GATE,
                    g.failures.join("; ")
                );
            }
        }
    }
    o
}
