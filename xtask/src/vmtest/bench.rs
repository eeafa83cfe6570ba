//! `cargo xtask bench --vm KERNEL`: the probe backends side by side in one boot of a Debian
//! kernel (the bench binary's `backends` mode, see `tests/src/bin/bench/backends.rs`), written
//! into docs/BENCHMARKS.md between its VM markers, one subsection per kernel, next to the
//! host's figures. The guest's CPU is emulated: the section says so and gives ratios only.

use std::{fs, path::Path, time::Duration};

use anyhow::{Context, Result, bail};

use super::{Prepared, choose_accel, guest, initramfs, prepare, qemu, select_kernels, Options};
use crate::{
    setup, tasks,
    util::{self, cargo_command, run_checked, workspace_root},
};

/// The markers the bench binary keeps when the host bench rewrites the file (same text as
/// `tests/src/bin/bench/backends.rs`).
const VM_BEGIN: &str = "<!-- bench --vm: begin -->";
const VM_END: &str = "<!-- bench --vm: end -->";

/// The section's heading and what it is.
const SECTION_HEAD: &str = "## Probe backends per kernel (`cargo xtask bench --vm KERNEL`)\n\n\
Each kernel booted under QEMU with an emulated CPU (TCG): the absolute times mean nothing, the \
ratios (each against the untraced runs of the same boot) are what to read. `fentry` is the \
BPF-trampoline backend, `tracepoint` the raw syscall tracepoints (see the README, \"Kernels and \
probe backends\").\n";

/// `cargo xtask bench --vm KERNEL`.
pub fn run(kernel: &str) -> Result<()> {
    setup::run()?;
    let binary = tasks::build_binary(true)?;
    let mut cmd = cargo_command();
    cmd.args(["build", "--release", "-p", "pty-trace-tests", "--bin", "bench", "--bin", "benchload"]);
    run_checked(&mut cmd, "cargo build --release -p pty-trace-tests --bin bench --bin benchload")?;
    let release_dir = util::target_dir().join("release");
    let (bench, benchload) = (release_dir.join("bench"), release_dir.join("benchload"));
    let suites = select_kernels(&[kernel.to_string()])?;
    let root = util::target_dir().join("vmtest");
    let (label, kernel, initrd) = match prepare(suites[0], &[], &root.join("cache"), &root, false) {
        Prepared::Ready { label, kernel, initrd } => (label, kernel, initrd),
        Prepared::Failed(_) => bail!("bench --vm {kernel}: the kernel could not be prepared (see above)"),
    };
    let out = root.join("out").join(format!("bench-{label}"));
    if out.exists() {
        fs::remove_dir_all(&out).with_context(|| format!("removing {}", out.display()))?;
    }
    fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    fs::write(out.join(initramfs::PLAN_FILE), plan(&binary, &bench, &benchload))
        .with_context(|| format!("writing the plan in {}", out.display()))?;
    let accel = choose_accel(&Options { tcg: false, kvm: false, ..Default::default() }, &kernel.vmlinuz, &initrd, &root)?;
    eprintln!("bench: --vm {label}: booting {} ({})", kernel.release, accel.name());
    let vm = qemu::Vm {
        vmlinuz: kernel.vmlinuz.clone(),
        initrd,
        out_dir: Some(out.clone()),
        console_log: out.join("console.log"),
        accel,
        limit: Duration::from_secs(3600),
        silence: Duration::from_secs(1200),
        extra_append: None,
        progress: Some(format!("bench: --vm {label}:")),
    };
    let outcome = qemu::run(&vm)?;
    if let Some(p) = outcome.problem() {
        bail!("bench --vm {label}: {p}; console: {}\n{}", vm.console_log.display(), outcome.tail);
    }
    let section = fs::read_to_string(out.join("bench.md")).with_context(|| {
        let log = fs::read_to_string(out.join("bench.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        format!("bench --vm {label}: the guest wrote no bench.md; its log ends:\n{}", tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
    })?;
    let doc_path = workspace_root().join("docs/BENCHMARKS.md");
    let doc = fs::read_to_string(&doc_path).unwrap_or_default();
    fs::write(&doc_path, splice(&doc, &kernel.release, &section)).with_context(|| format!("writing {}", doc_path.display()))?;
    eprintln!("{section}");
    eprintln!("bench: --vm {label}: wrote {} (VM {})", doc_path.display(), util::secs(outcome.wall));
    Ok(())
}

/// The guest's plan: the bench's `backends` mode, its report into the results directory.
fn plan(pty_trace: &Path, bench: &Path, benchload: &Path) -> String {
    let q = |p: &Path| guest::sh_quote(&p.display().to_string());
    let path = std::env::var("PATH").unwrap_or_default();
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    format!(
        "#!/bin/sh\n# `cargo xtask bench --vm` (xtask/src/vmtest/bench.rs), run in the guest chrooted into the host's root.\n\
         OUT={out}\nexport PATH={path}\nexport HOME={home}\ncd /tmp\n\
         env PTY_TRACE_BIN={pt} BENCHLOAD_BIN={bl} {b} backends --out \"$OUT/bench.md\" > \"$OUT/bench.log\" 2>&1\n",
        out = initramfs::GUEST_OUT_DIR,
        path = guest::sh_quote(&path),
        home = guest::sh_quote(&home),
        pt = q(pty_trace),
        bl = q(benchload),
        b = q(bench),
    )
}

/// `doc` with `section` (the bench's markdown, starting `### <release>`) in the VM block:
/// replacing that kernel's earlier subsection, or added after the others; the block is made
/// at the end of the file when there is none.
pub fn splice(doc: &str, release: &str, section: &str) -> String {
    let heading = format!("### {release}");
    let (before, inner, after) = match (doc.find(VM_BEGIN), doc.find(VM_END)) {
        (Some(b), Some(e)) if b < e => (&doc[..b], &doc[b + VM_BEGIN.len()..e], &doc[e + VM_END.len()..]),
        _ => (doc, "", "\n"),
    };
    // Subsections of the block, by their `### ` headings; the section head is made anew.
    let mut parts: Vec<String> = Vec::new();
    for chunk in inner.split("\n### ").skip(1) {
        parts.push(format!("### {}", chunk.trim_end()));
    }
    let new = section.trim().to_string();
    match parts.iter().position(|p| p.lines().next() == Some(heading.as_str())) {
        Some(i) => parts[i] = new,
        None => parts.push(new),
    }
    let before = before.trim_end();
    let sep = if before.is_empty() { "" } else { "\n\n" };
    format!("{before}{sep}{VM_BEGIN}\n{SECTION_HEAD}\n{}\n{VM_END}{after}", parts.join("\n\n") + "\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_section_is_added_then_replaced() {
        let host = "# pty-trace benchmarks\n\n## Raw samples\nx\n";
        let one = splice(host, "6.12.1", "### 6.12.1\n\n| a | 1.10 |\n");
        assert!(one.starts_with(host.trim_end()) && one.contains(VM_BEGIN) && one.contains("| a | 1.10 |"), "{one}");
        let two = splice(&one, "5.10.0", "### 5.10.0\n\n| a | 1.20 |\n");
        assert!(two.contains("| a | 1.10 |") && two.contains("| a | 1.20 |"), "{two}");
        let again = splice(&two, "6.12.1", "### 6.12.1\n\n| a | 1.05 |\n");
        assert!(!again.contains("| a | 1.10 |") && again.contains("| a | 1.05 |") && again.contains("| a | 1.20 |"), "{again}");
        assert_eq!(again.matches(VM_BEGIN).count(), 1);
        assert_eq!(again.matches("## Probe backends per kernel").count(), 1);
        assert!(again.starts_with("# pty-trace benchmarks"));
    }

    #[test]
    fn the_plan_runs_the_backends_mode() {
        let p = plan(Path::new("/w/pty-trace"), Path::new("/w/bench"), Path::new("/w/benchload"));
        assert!(p.contains("'/w/bench' backends --out \"$OUT/bench.md\""), "{p}");
        assert!(p.contains("PTY_TRACE_BIN='/w/pty-trace' BENCHLOAD_BIN='/w/benchload'"), "{p}");
    }
}
