//! `cargo xtask bench [--quick]`: pty-trace's benchmark suite. Writes docs/BENCHMARKS.md.
//!
//! Every workload (`benchload`, see its docs) times its own loop, so tracer start-up and attach
//! are never counted. Each workload runs untraced, under `pty-trace run`, under an equivalent
//! bpftrace script (in-kernel counting on the same tracepoints, filtered to the process tree) and
//! under `strace -f`; configurations are interleaved (the order rotates each round) and the
//! report gives medians and ratios to the untraced runs of the same invocation. Then come the
//! extra measures (a)-(g): event rate and loss, tracer CPU, RSS, attach latency, cost outside
//! the session, `report` throughput and per-program BPF cost (BPF_ENABLE_STATS).
//!
//! Needs root, pty-trace (`PTY_TRACE_BIN`, else target/release/pty-trace), bpftrace, strace,
//! bpftool, git and /usr/bin/python3. Every process it starts runs in its own process group and
//! is killed (group included) on every exit path; `kernel.bpf_stats_enabled` is restored.
//!
//! Options: `--quick` (small N, one round, all workloads in one traced session per
//! configuration; writes target/BENCHMARKS.quick.md unless `--out` is given), `--out PATH`.
//! `bench soak [--minutes N] [--sample-s S] [--out PATH]` runs the memory soak instead (see
//! `soak.rs`; writes target/BENCHMARKS.soak.md), which needs only pty-trace and `script`.
//! `bench backends [--quick] [--out PATH]` compares the two probe backends in one boot (see
//! `backends.rs`; `cargo xtask bench --vm KERNEL` runs it in a VM), with pty-trace and
//! `benchload` only (`BENCHLOAD_BIN` names a prebuilt one: a VM's root is read-only).
//! `bench top [--quick] [--procs N] [--fds N] [--out PATH]` measures `pty-trace top` (see
//! `top.rs`): its CPU with 1,000 extra processes of 50 fds, and how soon it sees a new PTY.

mod backends;

mod extras;
mod hygiene;
mod report;
mod run;
mod soak;
mod top;
mod util;
mod workloads;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};

use crate::{
    extras::Extra,
    hygiene::{BPF_STATS, install_signal_handlers},
    report::render,
    util::{first_line_of, fmt_int, fmt_secs, foreign_tracers, median, now_ms, rfc3339_ms, which},
    workloads::{CONFIGS, Config, Ctx, STRACE_OPENCLOSE_DIV, Sample, WORKLOADS, Workload},
};

fn main() {
    install_signal_handlers();
    match real_main() {
        Ok(()) => {}
        Err(e) => {
            eprintln!("bench: error: {e:#}");
            std::process::exit(1);
        }
    }
}

fn usage() -> ! {
    eprintln!("usage: bench [--quick] [--out PATH] | bench soak [--watch] [--minutes N] [--sample-s S] [--out PATH] | bench backends [--quick] [--out PATH] | bench top [--quick] [--procs N] [--fds N] [--out PATH]");
    std::process::exit(2)
}

fn real_main() -> Result<()> {
    let t_all = Instant::now();
    let mut quick = false;
    let mut out_path: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().is_some_and(|a| a == "soak") {
        args.next();
        return soak_main(soak::SoakOpts::parse(&mut args)?);
    }
    if args.peek().is_some_and(|a| a == "backends") {
        args.next();
        return backends_main(&mut args);
    }
    if args.peek().is_some_and(|a| a == "top") {
        args.next();
        return top_main(&mut args);
    }
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out_path = Some(args.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            _ => {
                eprintln!("bench: unknown argument {a:?}");
                usage()
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let out_path = out_path.unwrap_or_else(|| if quick { root.join("target/BENCHMARKS.quick.md") } else { root.join("docs/BENCHMARKS.md") });

    // --- Preconditions, each with a clear error.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark loads eBPF programs and sets kernel.bpf_stats_enabled: run it as root (cargo xtask bench does)");
    }
    let pty_trace = match std::env::var_os("PTY_TRACE_BIN") {
        Some(p) => PathBuf::from(p),
        None => root.join("target/release/pty-trace"),
    };
    if !pty_trace.is_file() {
        bail!("pty-trace binary not found at {} (build it with `cargo xtask build`, or set PTY_TRACE_BIN)", pty_trace.display());
    }
    let mut missing = Vec::new();
    for tool in ["bpftrace", "strace", "bpftool", "git", "sleep"] {
        if which(tool).is_none() {
            missing.push(tool);
        }
    }
    for f in ["/usr/bin/python3", "/bin/sh", "/bin/true", "/dev/ptmx"] {
        if !Path::new(f).exists() {
            missing.push(f);
        }
    }
    if !missing.is_empty() {
        bail!("missing: {} (cargo xtask setup installs bpftrace, strace and bpftool; git and python3 come from the distribution)", missing.join(", "));
    }
    if !Path::new(BPF_STATS).exists() {
        bail!("{BPF_STATS} does not exist: this kernel cannot report per-program BPF stats");
    }
    let benchload = build_benchload(&root)?;
    for p in [&pty_trace, &benchload] {
        if p.to_string_lossy().contains(char::is_whitespace) {
            bail!("{} contains whitespace: bpftrace -c cannot run it", p.display());
        }
    }
    let bt_version = first_line_of(Command::new("bpftrace").arg("--version")).unwrap_or_else(|| "bpftrace (unknown version)".into());
    let bt_arrow = bpftrace_needs_arrow(&bt_version);
    let strace_version = first_line_of(Command::new("strace").arg("-V")).unwrap_or_else(|| "strace (unknown version)".into());
    let pty_trace_version = first_line_of(Command::new(&pty_trace).arg("--version")).unwrap_or_else(|| "unknown".into());

    let work = fresh_work_dir("bench")?;
    let ctx = Ctx {
        quick,
        rounds: if quick { 1 } else { 3 },
        root: root.clone(),
        pty_trace,
        benchload,
        work: work.clone(),
        bt_arrow,
        bt_version,
        strace_version,
        timeout: Duration::from_secs(if quick { 120 } else { 600 }),
        quiet_wait: Duration::from_secs(if quick { 0 } else { 10 }),
        quiet_budget: std::cell::Cell::new(Duration::from_secs(if quick { 0 } else { 120 })),
        notes: Vec::new(),
        probes: std::cell::Cell::new(None),
    };
    let result = run_suite(ctx, &out_path, &pty_trace_version, t_all);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// An empty scratch directory for this run, `$TMPDIR/pty-trace-KIND-PID`.
fn fresh_work_dir(kind: &str) -> Result<PathBuf> {
    let work = std::env::temp_dir().join(format!("pty-trace-{kind}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    Ok(work)
}

/// The workspace root and the pty-trace binary (`PTY_TRACE_BIN`, else the release build), once
/// this runs as root (`not_root` is the error otherwise).
fn root_and_pty_trace(not_root: &str) -> Result<(PathBuf, PathBuf)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("{not_root}");
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf();
    let pty_trace = std::env::var_os("PTY_TRACE_BIN").map(PathBuf::from).unwrap_or_else(|| root.join("target/release/pty-trace"));
    if !pty_trace.is_file() {
        bail!("pty-trace binary not found at {} (build it with `cargo xtask build`, or set PTY_TRACE_BIN)", pty_trace.display());
    }
    Ok((root, pty_trace))
}

/// `bench soak`: root and pty-trace only.
fn soak_main(o: soak::SoakOpts) -> Result<()> {
    let (root, pty_trace) = root_and_pty_trace("the soak loads eBPF programs: run it as root (cargo xtask bench -- soak does)")?;
    let version = first_line_of(Command::new(&pty_trace).arg("--version")).unwrap_or_else(|| "unknown".into());
    let work = fresh_work_dir("soak")?;
    let result = soak::run_soak(&o, &pty_trace, &version, &work);
    let _ = std::fs::remove_dir_all(&work);
    let doc = result?;
    println!("{doc}");
    let out = o.out.clone().unwrap_or_else(|| root.join("target/BENCHMARKS.soak.md"));
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(&out, &doc).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("bench: wrote {}", out.display());
    Ok(())
}

/// `bench backends [--quick] [--out PATH]`: root, pty-trace and benchload only.
fn backends_main(args: &mut dyn Iterator<Item = String>) -> Result<()> {
    let mut quick = false;
    let mut out: Option<PathBuf> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--quick" => quick = true,
            "--out" => out = Some(args.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let (root, pty_trace) = root_and_pty_trace("the benchmark loads eBPF programs: run it as root")?;
    let benchload = match std::env::var_os("BENCHLOAD_BIN") {
        Some(p) => PathBuf::from(p),
        None => build_benchload(&root)?,
    };
    if !benchload.is_file() {
        bail!("benchload not found at {}", benchload.display());
    }
    let work = fresh_work_dir("bench")?;
    let ctx = Ctx {
        quick,
        rounds: if quick { 1 } else { 3 },
        root,
        pty_trace,
        benchload,
        work: work.clone(),
        bt_arrow: false,
        bt_version: String::new(),
        strace_version: String::new(),
        timeout: backends::TIMEOUT,
        quiet_wait: Duration::ZERO,
        quiet_budget: std::cell::Cell::new(Duration::ZERO),
        notes: Vec::new(),
        probes: std::cell::Cell::new(None),
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_string()).unwrap_or_else(|_| "unknown kernel".into());
    let result = backends::run(&ctx, &kernel);
    let _ = std::fs::remove_dir_all(&work);
    let doc = result?;
    println!("{doc}");
    if let Some(out) = out {
        std::fs::write(&out, &doc).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("bench: wrote {}", out.display());
    }
    Ok(())
}

/// `bench top [--quick] [--procs N] [--fds N] [--out PATH]`: root and pty-trace only.
fn top_main(args: &mut dyn Iterator<Item = String>) -> Result<()> {
    let mut o = top::TopOpts { quick: false, procs: 1000, fds: 50, out: None };
    while let Some(a) = args.next() {
        let mut num = |what: &str| -> Result<usize> {
            args.next().and_then(|v| v.parse().ok()).ok_or_else(|| anyhow!("bench top: {what} needs a number"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--procs" => o.procs = num("--procs")?.max(2),
            "--fds" => o.fds = num("--fds")?,
            "--out" => o.out = Some(args.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            _ => usage(),
        }
    }
    let (_, pty_trace) = root_and_pty_trace("pty-trace top reads every process's fds: run the benchmark as root")?;
    let work = fresh_work_dir("bench-top")?;
    let result = top::run(&o, &pty_trace, &work);
    let _ = std::fs::remove_dir_all(&work);
    let doc = result?;
    println!("{doc}");
    if let Some(out) = &o.out {
        std::fs::write(out, &doc).with_context(|| format!("writing {}", out.display()))?;
        eprintln!("bench: wrote {}", out.display());
    }
    Ok(())
}

/// `bpftrace` before 0.20 wants `args->field`; later ones `args.field`.
fn bpftrace_needs_arrow(version: &str) -> bool {
    let v = version.split_whitespace().find_map(|w| w.strip_prefix('v')).unwrap_or("0.0");
    let mut it = v.split('.').map(|x| x.parse::<u32>().unwrap_or(0));
    let (major, minor) = (it.next().unwrap_or(0), it.next().unwrap_or(0));
    major == 0 && minor < 20
}

/// Builds `benchload` (release) next to this binary; `cargo run --bin bench` builds only bench.
fn build_benchload(root: &Path) -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench binary")?;
    let dir = exe.parent().ok_or_else(|| anyhow!("bench binary has no directory"))?.to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let profile = if dir.ends_with("release") { "--release" } else { "--profile=dev" };
    eprintln!("bench: building benchload");
    let st = Command::new(&cargo)
        .args(["build", "--quiet", profile, "-p", "pty-trace-tests", "--bin", "benchload"])
        .current_dir(root)
        .stdin(Stdio::null())
        .status()
        .map_err(|e| anyhow!("running {} to build benchload: {e}", Path::new(&cargo).display()))?;
    if !st.success() {
        bail!("building benchload failed ({st})");
    }
    let p = dir.join("benchload");
    if !p.is_file() {
        bail!("benchload not found at {} after building it", p.display());
    }
    Ok(p)
}

fn run_suite(mut ctx: Ctx, out_path: &Path, pty_trace_version: &str, t_all: Instant) -> Result<()> {
    let date = rfc3339_ms(now_ms());
    let foreign0 = foreign_tracers();
    if !foreign0.is_empty() {
        eprintln!(
            "bench: note: other tracers are running on this machine ({}): a sample waits up to {:.0} s for them to finish ({:.0} s in all), and is flagged otherwise",
            foreign0.join(", "),
            ctx.quiet_wait.as_secs_f64(),
            ctx.quiet_budget.get().as_secs_f64()
        );
    }
    let mut samples: Vec<Sample> = Vec::new();
    let mut agent_recording: Option<PathBuf> = None;

    // --- Main matrix: interleaved configurations, rotating order each round.
    for round in 0..ctx.rounds {
        let groups: Vec<Vec<Workload>> = if ctx.quick { vec![WORKLOADS.to_vec()] } else { WORKLOADS.iter().map(|w| vec![*w]).collect() };
        for (gi, group) in groups.iter().enumerate() {
            for k in 0..CONFIGS.len() {
                let config = CONFIGS[(k + round + gi) % CONFIGS.len()];
                let items: Vec<(Workload, u64)> = group
                    .iter()
                    .map(|&w| {
                        let n = w.n(ctx.quick);
                        let n = if config == Config::Strace && w == Workload::OpenClose && !ctx.quick { n / STRACE_OPENCLOSE_DIV } else { n };
                        (w, n)
                    })
                    .collect();
                let s = ctx.sample(config, round, &items)?;
                let mut line = format!("bench: round {}/{} {:<9} ", round + 1, ctx.rounds, config.name());
                for (w, (n, ns, _)) in &s.times {
                    let _ = write!(line, " {} x{} {}", w.name(), fmt_int(*n), fmt_secs(*ns as f64 / 1e9));
                }
                if let Some(t) = &s.trace {
                    let _ = write!(line, "  [events {}, lost {}, ready {:.0} ms, exit {:.1} s after the command]", fmt_int(t.events), t.lost_events, t.ready_ms, t.process_wall_s - t.duration_s - t.ready_ms / 1e3);
                    if group.contains(&Workload::Agent) {
                        let keep = ctx.work.join("agent-recording.jsonl");
                        std::fs::copy(ctx.jsonl(), &keep)?;
                        agent_recording = Some(keep);
                    }
                }
                if !s.foreign.is_empty() {
                    let _ = write!(line, "  (other tracers running: {})", s.foreign.join(", "));
                }
                eprintln!("{line}");
                samples.push(s);
            }
        }
    }

    // --- Extras.
    let mut ex = Extra::default();
    let med_ns = |cfg: Config, w: Workload| -> f64 {
        median(&samples.iter().filter(|s| s.config == cfg).filter_map(|s| s.times.get(&w).map(|(n, ns, _)| *ns as f64 / *n as f64)).collect::<Vec<_>>())
    };
    if ctx.quick {
        ctx.measure_rate(&mut ex, 100_000, true)?;
        let s = samples.iter().find(|s| s.config == Config::PtyTrace).and_then(|s| s.trace.clone()).unwrap_or_default();
        ex.rss_kib = s.max_rss_kib;
        ex.rss_processes = s.processes_seen;
        ex.rss_note = "--quick: the all-workloads session, far fewer than 10k processes".into();
        ctx.measure_outside(&mut ex, 100_000, 2)?;
    } else {
        // Aim for >= 10 s of two loops: N from the single-loop traced per-iteration time.
        let per_iter = med_ns(Config::PtyTrace, Workload::OpenClose);
        let n_each = if per_iter.is_finite() && per_iter > 0.0 { (10.5e9 / per_iter).ceil() as u64 } else { 3_000_000 };
        ctx.measure_rate(&mut ex, n_each, false)?;
        ctx.measure_rss(&mut ex, 10_000)?;
        for _ in 0..3 {
            ctx.measure_attach(&mut ex)?;
        }
        ctx.measure_outside(&mut ex, Workload::OpenClose.n(false), 5)?;
        ctx.measure_prog_stats(&mut ex, Workload::OpenClose.n(false))?;
    }
    match &agent_recording {
        Some(src) => {
            let lines = if ctx.quick { 200_000 } else { 1_000_000 };
            ctx.measure_report(&mut ex, src, lines, if ctx.quick { 1 } else { 3 })?;
        }
        None => bail!("(f): no agent recording to build the report input from"),
    }

    if ctx.quick {
        ctx.notes.push("--quick: one round, small N, all four workloads in one process tree per configuration (one tracer session each); a smoke test of the suite, not numbers to quote.".into());
    }
    let mut doc = render(&ctx, &samples, &ex, &date, pty_trace_version, t_all.elapsed());
    // The per-backend figures from VMs (`cargo xtask bench --vm`) are another run's: kept.
    if let Some(block) = std::fs::read_to_string(out_path).ok().as_deref().and_then(backends::vm_block) {
        doc.push('\n');
        doc.push_str(block);
        doc.push('\n');
    }
    println!("{doc}");
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out_path, &doc).with_context(|| format!("writing {}", out_path.display()))?;
    eprintln!("bench: wrote {} ({} in all)", out_path.display(), fmt_secs(t_all.elapsed().as_secs_f64()));
    Ok(())
}
