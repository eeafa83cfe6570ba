//! `bench backends`: the two probe backends side by side in one boot (issue 13). Each workload
//! runs untraced, under `pty-trace run --probes fentry` and under `--probes tracepoint`, the
//! order rotating each round; then the tight loop runs outside any session while pty-trace
//! traces an unrelated `sleep` with each backend, against the same loop with no tracer before
//! and after. Ratios to the untraced runs of the same boot are what it reports: `cargo xtask
//! bench --vm KERNEL` runs it in a Debian kernel under QEMU, where the CPU is emulated and
//! absolute times mean nothing.
//!
//! A backend the kernel refuses is reported as such (one line from pty-trace), not measured.

use std::{fmt::Write as _, process::Command, time::Duration};

use anyhow::Result;

use crate::{
    extras::Extra,
    util::{fmt_int, fmt_ratio, fmt_secs, median},
    workloads::{Config, Ctx, Workload},
};

/// The backends, as `--probes` names them.
pub(crate) const BACKENDS: [&str; 2] = ["fentry", "tracepoint"];

/// The workloads and their sizes: smaller than the host bench's, an emulated CPU runs them
/// several times slower.
fn workloads(quick: bool) -> Vec<(Workload, u64)> {
    let k = if quick { 10 } else { 1 };
    // fork/exec and the agent's commands are the slowest under TCG (24 s for 300 fork/execs):
    // sized so that one round takes about two minutes there.
    vec![
        (Workload::OpenClose, 100_000 / k),
        (Workload::Ptys, 1_000 / k),
        (Workload::ForkExec, 60 / k.min(6)),
        (Workload::Agent, 10 / k.min(5)),
    ]
}

/// One configuration of the comparison: untraced, or pty-trace with a backend.
fn label(probes: Option<&str>) -> String {
    match probes {
        None => "untraced".into(),
        Some(b) => format!("pty-trace --probes {b}"),
    }
}

/// Whether pty-trace can run `backend` here, or its one-line reason.
fn usable(ctx: &Ctx, backend: &str) -> Result<(), String> {
    let out = Command::new(&ctx.pty_trace)
        .args(["run", "--no-tui", "--jsonl", "/dev/null", "--probes", backend, "--", "true"])
        .output()
        .map_err(|e| format!("cannot run pty-trace: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).lines().next().unwrap_or("failed").to_string())
    }
}

/// Runs the comparison and returns it as markdown.
pub(crate) fn run(ctx: &Ctx, kernel: &str) -> Result<String> {
    let mut available = Vec::new();
    let mut refused = Vec::new();
    for b in BACKENDS {
        match usable(ctx, b) {
            Ok(()) => available.push(b),
            Err(why) => refused.push((b, why)),
        }
    }
    let mut configs: Vec<Option<&str>> = vec![None];
    configs.extend(available.iter().map(|&b| Some(b)));
    // (config, workload) -> loop ns per iteration, one per round.
    let mut per_iter: std::collections::BTreeMap<(String, Workload), Vec<f64>> = Default::default();
    let mut lost = 0u64;
    let mut drift = 0u64;
    for round in 0..ctx.rounds {
        for (w, n) in workloads(ctx.quick) {
            for k in 0..configs.len() {
                let probes = configs[(k + round) % configs.len()];
                ctx.probes.set(probes);
                let config = if probes.is_some() { Config::PtyTrace } else { Config::Untraced };
                let s = ctx.sample(config, round, &[(w, n)])?;
                let (n, ns, _) = s.times[&w];
                if let Some(t) = &s.trace {
                    lost += t.lost_events;
                    drift += t.drift;
                }
                eprintln!("bench: backends round {}/{} {:<26} {} x{} {}", round + 1, ctx.rounds, label(probes), w.name(), fmt_int(n), fmt_secs(ns as f64 / 1e9));
                per_iter.entry((label(probes), w)).or_default().push(ns as f64 / n as f64);
            }
        }
    }
    // Outside the session: the tight loop in an unrelated process.
    let n_outside = workloads(ctx.quick)[0].1;
    let mut outside = Vec::new();
    for &b in &available {
        ctx.probes.set(Some(b));
        let mut ex = Extra::default();
        ctx.measure_outside(&mut ex, n_outside, if ctx.quick { 2 } else { 3 })?;
        outside.push((b, median(&ex.outside_base_ns), median(&ex.outside_traced_ns)));
    }
    ctx.probes.set(None);

    let mut md = String::new();
    writeln!(md, "### {kernel}\n")?;
    for (b, why) in &refused {
        writeln!(md, "- `--probes {b}` not available on this kernel: {why}")?;
    }
    if !refused.is_empty() {
        writeln!(md)?;
    }
    write!(md, "| workload |")?;
    for b in &available {
        write!(md, " {b} / untraced |")?;
    }
    writeln!(md)?;
    writeln!(md, "|---|{}", "---|".repeat(available.len()))?;
    for (w, n) in workloads(ctx.quick) {
        let base = median(per_iter.get(&(label(None), w)).map(Vec::as_slice).unwrap_or(&[]));
        write!(md, "| {} (x{}) |", w.what(), fmt_int(n))?;
        for &b in &available {
            let t = median(per_iter.get(&(label(Some(b)), w)).map(Vec::as_slice).unwrap_or(&[]));
            write!(md, " {} |", fmt_ratio(t / base))?;
        }
        writeln!(md)?;
    }
    write!(md, "| tight loop (x{}) in a process outside every session, while pty-trace traces a `sleep` |", fmt_int(n_outside))?;
    for (_, base, traced) in &outside {
        write!(md, " {} |", fmt_ratio(traced / base))?;
    }
    writeln!(md)?;
    writeln!(
        md,
        "\nRatios only: each is a median of {} interleaved rounds (order rotating each round) against the untraced runs of the same boot; absolute times of an emulated CPU mean nothing. The outside row compares the loop while tracing with the same loop before and after (medians of {} runs each). Events lost in the traced runs: {lost}; drift: {drift}.",
        ctx.rounds,
        if ctx.quick { 4 } else { 6 }
    )?;
    Ok(md)
}

/// The markers around the per-backend section of docs/BENCHMARKS.md that `cargo xtask bench
/// --vm` writes (one subsection per kernel) and the host bench keeps when it rewrites the file.
pub(crate) const VM_BEGIN: &str = "<!-- bench --vm: begin -->";
pub(crate) const VM_END: &str = "<!-- bench --vm: end -->";

/// The per-backend section of a BENCHMARKS.md text, markers included.
pub(crate) fn vm_block(doc: &str) -> Option<&str> {
    let start = doc.find(VM_BEGIN)?;
    let end = doc[start..].find(VM_END)? + start + VM_END.len();
    Some(&doc[start..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vm_block_is_found_with_its_markers() {
        let doc = format!("# b\n\n## Raw\nx\n{VM_BEGIN}\n## per backend\n| a |\n{VM_END}\ntail\n");
        assert_eq!(vm_block(&doc), Some(format!("{VM_BEGIN}\n## per backend\n| a |\n{VM_END}").as_str()));
        assert_eq!(vm_block("# b\nno block\n"), None);
        assert_eq!(vm_block(&format!("{VM_BEGIN} unterminated")), None);
    }
}

/// How long a backends run may take per sample (the emulated CPU is slow).
pub(crate) const TIMEOUT: Duration = Duration::from_secs(900);
