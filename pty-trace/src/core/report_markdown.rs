//! `pty-trace report --format markdown`: the report as GitHub-flavoured Markdown, for a CI
//! step summary (`>> $GITHUB_STEP_SUMMARY`) or a merge-request comment. It says, in this order:
//! the verdict and the leak gate's outcome, the command, the budget, what leaked (by whom and
//! which command opened it), what was left open, and what to do. Pure: a `Report` in, text out.

use std::fmt::Write;

use super::{
    evidence::clip,
    records::{EvidenceKind, GateRec},
    report::{Report, ReportVerdict, SessionReport, leaking_process},
};

/// Rows of a table before the rest is only counted.
const MAX_ROWS: usize = 20;
/// Longest command line shown in a cell.
const MAX_COMMAND: usize = 80;

/// The Markdown report.
pub fn render_markdown(r: &Report) -> String {
    let mut o = String::new();
    let gates: Vec<&GateRec> = r.sessions.iter().filter_map(|s| s.gate.as_ref()).collect();
    let gate_failed = gates.iter().any(|g| !g.passed);
    let mark = match (r.verdict, gate_failed) {
        (_, true) | (ReportVerdict::LeakDetected, _) => ":x:",
        (ReportVerdict::Healthy | ReportVerdict::Recovered, false) => ":white_check_mark:",
        _ => ":warning:",
    };
    let _ = writeln!(o, "## {mark} pty-trace: {}\n", r.verdict);
    if let Some(why) = r.verdict_reason() {
        let _ = writeln!(o, "> {}\n", cell(&why));
    }
    if let Some(c) = &r.command {
        let _ = writeln!(o, "**Command:** {}  ", code(&c.join(" "), 200));
    }
    if !gates.is_empty() {
        let outcome = if gate_failed {
            format!("**FAILED** (exit status {})", crate::error::exit_code::LEAK_GATE)
        } else {
            "passed".to_string()
        };
        let _ = writeln!(o, "**Leak gate:** {outcome}  ");
        let g = gates[0];
        let fds = g.budget_fds.map_or("any number of fds".to_string(), |n| format!("{n} fd(s)"));
        let _ = writeln!(o, "**Budget:** {} PTY(s), {fds} left open when the command ends  ", g.budget_ptys);
        if gates.iter().any(|g| g.stopped) {
            let _ = writeln!(o, "**Judged** by what the command's tree held when pty-trace stopped it (`--duration` or a signal)  ");
        }
        for f in gates.iter().flat_map(|g| &g.failures) {
            let _ = writeln!(o, "- {}", cell(f));
        }
    }
    let _ = writeln!(o, "**Recording:** {} ({} records)\n", code(&r.file, 120), r.counts.valid_records);

    let _ = writeln!(o, "| Session | Verdict | Commands | PTY peak | fd peak | Health min / final | Left open (PTYs / fds) | Exit status |");
    let _ = writeln!(o, "|---:|---|---:|---:|---:|---:|---:|---:|");
    for s in &r.sessions {
        let left = s.gate.as_ref().map_or_else(|| s.leaked_at_end.len().to_string() + " fd(s)", |g| format!("{} / {}", g.open_ptys, g.open_fds));
        let exit = s.exit_status.map_or("-".to_string(), |c| c.to_string());
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {:.0} / {:.0} | {left} | {exit} |",
            s.session, s.verdict, s.commands, s.pty_peak, s.fd_peak, s.health_min, s.health_final
        );
    }
    for s in &r.sessions {
        session(&mut o, s);
    }
    if r.counts.malformed_lines > 0 {
        let _ = writeln!(o, "\n{} malformed line(s) in the recording were skipped.", r.counts.malformed_lines);
    }
    o
}

fn session(o: &mut String, s: &SessionReport) {
    let leaked = !s.evidence.is_empty() || s.gate.as_ref().is_some_and(|g| !g.left_open.is_empty()) || !s.leaked_at_end.is_empty();
    if !leaked && s.recommendations.is_empty() {
        return;
    }
    let _ = writeln!(o, "\n### Session {}", s.session);
    if let Some((pid, comm, cmd, n)) = leaking_process(s) {
        let cmd = cmd.map(|c| format!(" {}", code(&c.join(" "), MAX_COMMAND))).unwrap_or_default();
        let _ = writeln!(o, "\nLeaking process: pid {pid} `{}`{cmd}: {n} PTY(s) abandoned or left behind.", cell(&comm));
    }
    if !s.evidence.is_empty() {
        let _ = writeln!(o, "\n| What leaked | PTY | PID | fd | Opened by command | For | Why |");
        let _ = writeln!(o, "|---|---:|---:|---:|---|---:|---|");
        for e in s.evidence.iter().take(MAX_ROWS) {
            let kind = match e.kind {
                EvidenceKind::AbandonedPty => "abandoned PTY",
                EvidenceKind::LeftBehindPty => "left-behind PTY",
                EvidenceKind::FdGrowth => "fd growth",
            };
            let _ = writeln!(
                o,
                "| {kind} | {} | {} | {} | {} | {:.1} s | {} |",
                opt(e.pty),
                opt(e.pid),
                opt(e.fd),
                e.command.as_ref().map_or("-".to_string(), |c| code(&c.join(" "), MAX_COMMAND)),
                e.since_s,
                cell(&e.why)
            );
        }
        more(o, s.evidence.len());
    }
    if let Some(g) = s.gate.as_ref().filter(|g| !g.left_open.is_empty()) {
        let _ = writeln!(o, "\nOpened during the run and still open when it ended ({} fd(s), {} PTY(s)):\n", g.open_fds, g.open_ptys);
        let _ = writeln!(o, "| PID | Process | fd | Kind | Target | Opened by command |");
        let _ = writeln!(o, "|---:|---|---:|---|---|---|");
        for f in &g.left_open {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} |",
                f.pid,
                cell(&f.comm),
                f.fd,
                f.kind.as_str(),
                code(&f.target, 60),
                f.command.as_ref().map_or("-".to_string(), |c| code(&c.join(" "), MAX_COMMAND))
            );
        }
        more(o, g.open_fds as usize);
    }
    if !s.recommendations.is_empty() {
        let _ = writeln!(o);
        for r in &s.recommendations {
            let _ = writeln!(o, "- {}", cell(r));
        }
    }
}

fn more(o: &mut String, total: usize) {
    if total > MAX_ROWS {
        let _ = writeln!(o, "\n... and {} more (see `pty-trace report --json`).", total - MAX_ROWS);
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map_or("-".to_string(), |v| v.to_string())
}

/// Text safe in a table cell: no line breaks, `|` escaped, control characters shown as `?`.
fn cell(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c if c.is_control() => '?',
            c => c,
        })
        .collect::<String>()
        .replace('|', "\\|")
}

/// Inline code, clipped: a backtick in the text lengthens the fence (CommonMark).
fn code(text: &str, max: usize) -> String {
    let t = cell(&clip(text, max));
    let longest = t.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    let pad = if t.starts_with('`') || t.ends_with('`') { " " } else { "" };
    format!("{fence}{pad}{t}{pad}{fence}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        gate::{Budget, OpenAtEnd, judge},
        model::FdKind,
        records::{OpenFd, Verdict},
        report::Aggregate,
    };

    fn report_of(lines: &[String]) -> Report {
        let mut a = Aggregate::default();
        for l in lines {
            a.line(l.as_bytes());
        }
        a.finish("ci.jsonl").unwrap()
    }

    fn with_gate(line: String, gate: GateRec) -> String {
        let mut v: serde_json::Value = serde_json::from_str(&line).unwrap();
        v["gate"] = serde_json::to_value(gate).unwrap();
        v["exit_status"] = 0.into();
        v.to_string()
    }

    #[test]
    fn a_failed_gate_names_the_verdict_the_budget_and_what_was_left() {
        use crate::core::report::tests::summary_line;
        let open = OpenAtEnd {
            ptys: 1,
            fds: vec![OpenFd {
                pid: 42,
                comm: "node".into(),
                fd: 23,
                kind: FdKind::PtyMaster,
                target: "/dev/ptmx".into(),
                command: Some(vec!["bash".into(), "-c".into(), "echo a|b `x`".into()]),
            }],
        };
        let gate = judge(Verdict::LeakDetected, &open, Budget { ptys: 0, fds: None }, Default::default());
        let start = r#"{"type":"start","schema":1,"ts":"t0","version":"0.1.0","sessions":[42],"command":["node","agent.js"],"ring_buffer_bytes":4096,"tracefs":"/sys/kernel/tracing","load_ms":1,"ready_ms":1,"interval_ms":1000}"#;
        let r = report_of(&[start.to_string(), with_gate(summary_line("t1", 42, Verdict::LeakDetected), gate)]);
        let md = render_markdown(&r);
        assert!(md.starts_with("## :x: pty-trace: LEAK DETECTED\n"), "{md}");
        assert!(md.contains("**Command:** `node agent.js`"), "{md}");
        assert!(md.contains("**Leak gate:** **FAILED** (exit status 13)"), "{md}");
        assert!(md.contains("**Budget:** 0 PTY(s), any number of fds"), "{md}");
        assert!(md.contains("- the verdict is LEAK DETECTED\n"), "{md}");
        assert!(md.contains("- 1 PTY(s) opened during the run still open at its end (budget 0)"), "{md}");
        assert!(md.contains("| 42 | LEAK DETECTED | 0 | 0 | 0 | 100 / 100 | 1 / 1 | 0 |"), "{md}");
        // The pipe in the command is escaped and the backtick lengthens the fence.
        assert!(md.contains("| 42 | node | 23 | pty_master | `/dev/ptmx` | `` bash -c echo a\\|b `x` `` |"), "{md}");
        // Every table row has as many cells as its header.
        for table in md.split("\n\n").filter(|b| b.starts_with('|')) {
            let cols: Vec<usize> = table.lines().map(|l| l.replace("\\|", "").matches('|').count()).collect();
            assert!(cols.iter().all(|&c| c == cols[0]), "ragged table:\n{table}");
        }
    }

    #[test]
    fn a_clean_run_passes_and_says_so() {
        use crate::core::report::tests::summary_line;
        let gate = judge(Verdict::Healthy, &OpenAtEnd::default(), Budget { ptys: 0, fds: Some(3) }, Default::default());
        let md = render_markdown(&report_of(&[with_gate(summary_line("t1", 7, Verdict::Healthy), gate)]));
        assert!(md.starts_with("## :white_check_mark: pty-trace: HEALTHY\n"), "{md}");
        assert!(md.contains("**Leak gate:** passed"), "{md}");
        assert!(md.contains("**Budget:** 0 PTY(s), 3 fd(s) left open"), "{md}");
        assert!(!md.contains("### Session"), "nothing leaked, nothing to list: {md}");
    }

    #[test]
    fn without_a_gate_or_a_summary() {
        use crate::core::report::tests::snapshot_line;
        let md = render_markdown(&report_of(&[snapshot_line("t1", 9, 80.0, 1, 5, 0, 0)]));
        assert!(md.starts_with("## :warning: pty-trace: INCOMPLETE\n"), "{md}");
        assert!(md.contains("> no summary for session 9"), "{md}");
        assert!(!md.contains("Leak gate"), "{md}");
    }

    #[test]
    fn code_spans_survive_backticks_and_control_characters() {
        assert_eq!(code("ls", 10), "`ls`");
        assert_eq!(code("a`b", 10), "``a`b``");
        assert_eq!(code("`a", 10), "`` `a ``");
        assert_eq!(cell("a\nb|c\u{1b}"), "a b\\|c?");
    }
}
