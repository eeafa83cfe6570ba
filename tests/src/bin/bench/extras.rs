//! Results beyond the main matrix: the extra measures (a)-(g) ([`Extra`]) and how each is taken,
//! including the per-program BPF stats read with bpftool.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::{
    hygiene::{BpfStatsGuard, Proc, check_stop},
    util::{fmt_int, now_ms, parse_ns_file, read_jsonl, rfc3339_ms, tail, trace_info},
    workloads::{Config, Ctx, Workload},
};

#[derive(Default)]
pub(crate) struct Extra {
    // (a)/(b)
    pub(crate) rate_loops_n: u64,
    pub(crate) rate_events: u64,
    pub(crate) rate_loop_s: f64,
    pub(crate) rate_lost: u64,
    pub(crate) rate_cpu_s: f64,
    pub(crate) rate_duration_s: f64,
    pub(crate) rate_note: String,
    // (c)
    pub(crate) rss_kib: u64,
    pub(crate) rss_processes: u64,
    pub(crate) rss_note: String,
    // (d)
    pub(crate) attach_ready_ms: Vec<f64>,
    pub(crate) attach_load_ms: Vec<f64>,
    pub(crate) attach_note: String,
    // (e)
    pub(crate) outside_base_ns: Vec<f64>,
    pub(crate) outside_traced_ns: Vec<f64>,
    pub(crate) outside_base_cpu: Vec<f64>,
    pub(crate) outside_traced_cpu: Vec<f64>,
    /// Runs that had another tracer (not ours) on the machine.
    pub(crate) outside_disturbed: usize,
    pub(crate) outside_n: u64,
    // (f)
    pub(crate) report_lines: u64,
    pub(crate) report_bytes: u64,
    pub(crate) report_s: Vec<f64>,
    // (g)
    pub(crate) progs: Vec<ProgStat>,
    pub(crate) progs_iterations: u64,
    pub(crate) progs_note: String,
    pub(crate) progs_loop_ns: u128,
}

#[derive(Clone, Debug)]
pub(crate) struct ProgStat {
    pub(crate) id: u64,
    pub(crate) name: String,
    pub(crate) run_cnt: u64,
    pub(crate) run_time_ns: u64,
}

/// Program ids held open by `pid` (from /proc/PID/fdinfo), i.e. that pty-trace's own programs.
fn prog_ids_of(pid: i32) -> Vec<u64> {
    let mut ids = Vec::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else { return ids };
    for e in dir.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else { continue };
        for l in text.lines() {
            if let Some(v) = l.strip_prefix("prog_id:").and_then(|v| v.trim().parse::<u64>().ok())
                && !ids.contains(&v)
            {
                ids.push(v);
            }
        }
    }
    ids
}

fn bpftool_stats(ids: &[u64]) -> Result<Vec<ProgStat>> {
    let out = Command::new("bpftool")
        .args(["prog", "show", "-j"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow!("running bpftool (cargo xtask setup installs it): {e}"))?;
    if !out.status.success() {
        bail!("bpftool prog show -j failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let v: Value = serde_json::from_slice(&out.stdout).context("parsing `bpftool prog show -j`")?;
    let mut stats = Vec::new();
    for p in v.as_array().into_iter().flatten() {
        let id = p["id"].as_u64().unwrap_or(0);
        let name = p["name"].as_str().unwrap_or("").to_string();
        if ids.contains(&id) && name.starts_with("pty_") {
            stats.push(ProgStat {
                id,
                name,
                run_cnt: p["run_cnt"].as_u64().unwrap_or(0),
                run_time_ns: p["run_time_ns"].as_u64().unwrap_or(0),
            });
        }
    }
    stats.sort_by_key(|s| s.id);
    Ok(stats)
}

/// Waits until every file exists (the workloads of a lingering session are done).
fn wait_files(files: &[PathBuf], p: &mut Proc, timeout: Duration) -> Result<()> {
    let t0 = Instant::now();
    while !files.iter().all(|f| parse_ns_file(f).is_some()) {
        check_stop()?;
        if let Some(st) = p.poll() {
            bail!("{} exited ({st}) before its workloads finished", p.name);
        }
        if t0.elapsed() > timeout {
            bail!("{}: workloads did not finish within {:.0} s", p.name, timeout.as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Waits until pty-trace has written its start record (the probes are attached).
fn wait_started(jsonl: &Path, p: &mut Proc) -> Result<()> {
    let t0 = Instant::now();
    while !read_jsonl(jsonl).iter().any(|r| r["type"] == "start") {
        check_stop()?;
        if let Some(st) = p.poll() {
            bail!("{} exited ({st}) before writing its start record", p.name);
        }
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("{}: no start record after 30 s", p.name);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn spawn_sleep(secs: u32) -> Result<Proc> {
    let mut c = Command::new("sleep");
    c.arg(secs.to_string()).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    Proc::spawn(&mut c, "sleep", false)
}

impl Ctx {
    /// (a) events/s and loss with two parallel tight loops in one session, (b) the tracer's CPU;
    /// in --quick also (g), in the same session.
    pub(crate) fn measure_rate(&self, ex: &mut Extra, n_each: u64, with_stats: bool) -> Result<()> {
        eprintln!("bench: (a/b) 2 parallel openclose x {} under one pty-trace session{}", fmt_int(n_each), if with_stats { " (+ (g) BPF stats)" } else { "" });
        let items = [(Workload::OpenClose, n_each), (Workload::OpenClose, n_each)];
        for i in 0..2 {
            let _ = std::fs::remove_file(self.out_file(i));
        }
        let _ = std::fs::remove_file(self.jsonl());
        let argv = self.target_argv(&items, true, with_stats)?;
        let mut cmd = self.command(Config::PtyTrace, &argv, &self.work.join("unused"));
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(self.work.join("stderr"))?);
        let _ = self.wait_quiet()?;
        let stats_guard = if with_stats { Some(BpfStatsGuard::enable()?) } else { None };
        let mut p = Proc::spawn(&mut cmd, "2 x openclose under pty-trace", true)?;
        if with_stats {
            wait_files(&[self.out_file(0), self.out_file(1)], &mut p, self.timeout)?;
            ex.progs = bpftool_stats(&prog_ids_of(p.pid()))?;
            drop(stats_guard);
            ex.progs_iterations = 2 * n_each;
            ex.progs_loop_ns = parse_ns_file(&self.out_file(0)).unwrap_or(0).max(parse_ns_file(&self.out_file(1)).unwrap_or(0));
            ex.progs_note = format!("--quick: measured in the (a) session, 2 x openclose {} in parallel", fmt_int(n_each));
            p.stop(Duration::from_secs(30));
        } else {
            let st = p.wait(self.timeout)?;
            if !st.success() {
                bail!("2 x openclose under pty-trace failed ({st}):\n{}", tail(&self.work.join("stderr"), 15));
            }
        }
        let t = trace_info(&self.jsonl())?;
        let loop_ns = (0..2)
            .map(|i| parse_ns_file(&self.out_file(i)).ok_or_else(|| anyhow!("(a): loop {i} reported no time")))
            .collect::<Result<Vec<_>>>()?;
        ex.rate_loops_n = n_each;
        ex.rate_events = t.events;
        ex.rate_loop_s = loop_ns.iter().copied().max().unwrap_or(0) as f64 / 1e9;
        ex.rate_lost = t.lost_events;
        ex.rate_cpu_s = t.cpu_s;
        ex.rate_duration_s = t.duration_s;
        if with_stats {
            ex.rate_note = "--quick: short run, BPF stats enabled, session kept open briefly after the loops".into();
        }
        Ok(())
    }

    /// (c) peak RSS after a session that saw many processes.
    pub(crate) fn measure_rss(&self, ex: &mut Extra, n: u64) -> Result<()> {
        eprintln!("bench: (c) forkexec {} under pty-trace", fmt_int(n));
        let s = self.sample(Config::PtyTrace, 0, &[(Workload::ForkExec, n)])?;
        let t = s.trace.expect("pty-trace sample has trace info");
        ex.rss_kib = t.max_rss_kib;
        ex.rss_processes = t.processes_seen;
        Ok(())
    }

    /// (d) `attach --duration 1s` to a sleep: ready_ms of the start record.
    pub(crate) fn measure_attach(&self, ex: &mut Extra) -> Result<()> {
        eprintln!("bench: (d) pty-trace attach --duration 1s to a sleep");
        let mut sleeper = spawn_sleep(60)?;
        let _ = std::fs::remove_file(self.jsonl());
        let mut c = Command::new(&self.pty_trace);
        c.args(["attach", "--no-tui", "--jsonl"])
            .arg(self.jsonl())
            .args(["--duration", "1s", "--interval", "1s"])
            .arg(sleeper.pid().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.work.join("stderr"))?);
        let _ = self.wait_quiet()?;
        let mut p = Proc::spawn(&mut c, "pty-trace attach", true)?;
        let st = p.wait(self.timeout)?;
        if !st.success() {
            bail!("pty-trace attach failed ({st}):\n{}", tail(&self.work.join("stderr"), 15));
        }
        let t = trace_info(&self.jsonl())?;
        ex.attach_ready_ms.push(t.ready_ms);
        ex.attach_load_ms.push(t.load_ms);
        sleeper.stop(Duration::ZERO);
        Ok(())
    }

    /// (e) the tight loop outside any session, with pty-trace attached to an unrelated sleep vs
    /// with no tracer at all: k runs before, k while attached, k after. In --quick the attach
    /// also gives (d).
    pub(crate) fn measure_outside(&self, ex: &mut Extra, n: u64, k: usize) -> Result<()> {
        eprintln!("bench: (e) openclose {} outside a pty-trace session: {k} runs before, {k} while tracing a sleep, {k} after", fmt_int(n));
        ex.outside_n = n;
        let run = |ex: &mut Extra, traced: bool| -> Result<()> {
            let s = self.sample(Config::Untraced, 0, &[(Workload::OpenClose, n)])?;
            let (_, ns, cpu) = s.times[&Workload::OpenClose];
            if traced {
                ex.outside_traced_ns.push(ns as f64);
                ex.outside_traced_cpu.push(cpu as f64);
            } else {
                ex.outside_base_ns.push(ns as f64);
                ex.outside_base_cpu.push(cpu as f64);
            }
            if !s.foreign.is_empty() {
                ex.outside_disturbed += 1;
            }
            Ok(())
        };
        for _ in 0..k {
            run(ex, false)?;
        }
        let mut sleeper = spawn_sleep(300)?;
        let jsonl = self.work.join("outside.jsonl");
        let _ = std::fs::remove_file(&jsonl);
        let mut c = Command::new(&self.pty_trace);
        c.args(["attach", "--no-tui", "--jsonl"])
            .arg(&jsonl)
            .args(["--interval", "1s"])
            .args(self.probes.get().map(|p| ["--probes", p]).into_iter().flatten())
            .arg(sleeper.pid().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.work.join("outside.stderr"))?);
        let mut tracer = Proc::spawn(&mut c, "pty-trace attach (outside-session test)", true)?;
        wait_started(&jsonl, &mut tracer)?;
        for _ in 0..k {
            run(ex, true)?;
        }
        tracer.stop(Duration::from_secs(30));
        sleeper.stop(Duration::ZERO);
        if self.quick
            && let Ok(t) = trace_info(&jsonl)
        {
            ex.attach_ready_ms.push(t.ready_ms);
            ex.attach_load_ms.push(t.load_ms);
            ex.attach_note = "--quick: from the attach of (e) (no --duration)".into();
        }
        for _ in 0..k {
            run(ex, false)?;
        }
        Ok(())
    }

    /// (f) `pty-trace report` on a generated recording of `lines` lines.
    pub(crate) fn measure_report(&self, ex: &mut Extra, source: &Path, lines: u64, repeats: usize) -> Result<()> {
        let recs: Vec<String> = std::fs::read_to_string(source)
            .with_context(|| format!("reading the recording {}", source.display()))?
            .lines()
            .map(String::from)
            .collect();
        let kind = |l: &str| serde_json::from_str::<Value>(l).ok().and_then(|v| v["type"].as_str().map(String::from)).unwrap_or_default();
        let start = recs.iter().find(|l| kind(l) == "start").ok_or_else(|| anyhow!("(f): recording has no start record"))?;
        let summary = recs.iter().find(|l| kind(l) == "summary").ok_or_else(|| anyhow!("(f): recording has no summary record"))?;
        let body: Vec<&String> = recs.iter().filter(|l| !matches!(kind(l).as_str(), "start" | "summary")).collect();
        if body.is_empty() {
            bail!("(f): the recording has no snapshot records to replicate");
        }
        // Splits a line around its `"ts":"...Z"` value so the timestamp can be replaced.
        let split = |l: &str| -> Result<(String, String)> {
            let i = l.find("\"ts\":\"").ok_or_else(|| anyhow!("(f): record without ts"))? + 6;
            let j = i + l[i..].find('"').ok_or_else(|| anyhow!("(f): unterminated ts"))?;
            Ok((l[..i].to_string(), l[j..].to_string()))
        };
        let body: Vec<(String, String)> = body.iter().map(|l| split(l)).collect::<Result<_>>()?;
        let path = std::env::temp_dir().join(format!("pty-trace-bench-report-{}.jsonl", std::process::id()));
        let file = std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let t0 = now_ms() - lines * 1000;
        let (a, b) = split(start)?;
        writeln!(w, "{a}{}{b}", rfc3339_ms(t0))?;
        let mut ts = t0;
        for i in 0..lines.saturating_sub(2) {
            // One snapshot per second, cycling over the recording's records.
            ts += 1000 / body.len().max(1) as u64;
            let (a, b) = &body[(i as usize) % body.len()];
            writeln!(w, "{a}{}{b}", rfc3339_ms(ts))?;
        }
        let (a, b) = split(summary)?;
        writeln!(w, "{a}{}{b}", rfc3339_ms(ts + 1))?;
        w.flush()?;
        drop(w);
        ex.report_lines = lines;
        ex.report_bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        eprintln!("bench: (f) pty-trace report on {} lines ({:.0} MB, {})", fmt_int(lines), ex.report_bytes as f64 / 1e6, path.display());
        let result = (|| -> Result<()> {
            for _ in 0..repeats {
                let mut c = Command::new(&self.pty_trace);
                c.arg("report").arg(&path).stdin(Stdio::null()).stdout(Stdio::null()).stderr(std::fs::File::create(self.work.join("stderr"))?);
                let _ = self.wait_quiet()?;
                let t = Instant::now();
                let mut p = Proc::spawn(&mut c, "pty-trace report", false)?;
                let st = p.wait(self.timeout)?;
                let s = t.elapsed().as_secs_f64();
                if !st.success() {
                    bail!("pty-trace report failed ({st}):\n{}", tail(&self.work.join("stderr"), 10));
                }
                ex.report_s.push(s);
            }
            Ok(())
        })();
        let _ = std::fs::remove_file(&path);
        result
    }

    /// (g) per-program cost with BPF_ENABLE_STATS during one traced tight loop.
    pub(crate) fn measure_prog_stats(&self, ex: &mut Extra, n: u64) -> Result<()> {
        eprintln!("bench: (g) BPF_ENABLE_STATS during openclose {} under pty-trace", fmt_int(n));
        let items = [(Workload::OpenClose, n)];
        let _ = std::fs::remove_file(self.out_file(0));
        let _ = std::fs::remove_file(self.jsonl());
        let argv = self.target_argv(&items, false, true)?;
        let mut cmd = self.command(Config::PtyTrace, &argv, &self.work.join("unused"));
        cmd.stdout(Stdio::null()).stderr(std::fs::File::create(self.work.join("stderr"))?);
        let _ = self.wait_quiet()?;
        let guard = BpfStatsGuard::enable()?;
        let mut p = Proc::spawn(&mut cmd, "openclose under pty-trace (BPF stats)", true)?;
        wait_files(&[self.out_file(0)], &mut p, self.timeout)?;
        let ids = prog_ids_of(p.pid());
        ex.progs = bpftool_stats(&ids)?;
        drop(guard);
        ex.progs_iterations = n;
        ex.progs_loop_ns = parse_ns_file(&self.out_file(0)).unwrap_or(0);
        p.stop(Duration::from_secs(30));
        if ex.progs.is_empty() {
            bail!("(g): found none of pty-trace's programs (pid {}, prog ids {ids:?}) in `bpftool prog show`", p.pid());
        }
        Ok(())
    }
}
