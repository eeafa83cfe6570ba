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

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Write as _,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Interruption and process hygiene
// ---------------------------------------------------------------------------------------------

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic (async-signal-safe).
        unsafe { libc::signal(sig, on_signal as *const () as libc::sighandler_t) };
    }
}

fn check_stop() -> Result<()> {
    if STOP.load(Ordering::SeqCst) {
        bail!("interrupted");
    }
    Ok(())
}

/// A child started in its own process group. Dropping it without a successful `wait` stops it
/// (SIGINT first for tracers, which then stop their own command) and kills whatever is left of
/// its group, so nothing is left behind on any exit path.
struct Proc {
    child: Child,
    name: String,
    status: Option<ExitStatus>,
    /// Send SIGINT and give it time before SIGKILL (pty-trace detaching takes seconds).
    graceful: bool,
    started: Instant,
}

impl Proc {
    fn spawn(cmd: &mut Command, name: &str, graceful: bool) -> Result<Proc> {
        cmd.process_group(0);
        let program = cmd.get_program().to_string_lossy().into_owned();
        let child = cmd.spawn().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => anyhow!("{name}: `{program}` not found (cargo xtask setup installs the tools)"),
            _ => anyhow!("{name}: cannot start `{program}`: {e}"),
        })?;
        Ok(Proc { child, name: name.to_string(), status: None, graceful, started: Instant::now() })
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn poll(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.status = Some(st);
            self.kill_group_leftovers();
        }
        self.status
    }

    /// Waits for the exit, polling (so that SIGINT to the bench is noticed) every 10 ms.
    fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        loop {
            if let Some(st) = self.poll() {
                return Ok(st);
            }
            check_stop()?;
            if self.started.elapsed() > timeout {
                bail!("{} did not finish within {:.0} s", self.name, timeout.as_secs_f64());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, sig: i32) {
        if self.status.is_none() {
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(self.pid(), sig) };
        }
    }

    /// SIGINT, then wait up to `grace`; SIGKILL (the whole group) after that.
    fn stop(&mut self, grace: Duration) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.signal(libc::SIGINT);
            let until = Instant::now() + grace;
            while Instant::now() < until && self.poll().is_none() {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        if self.status.is_none() {
            // SAFETY: the group we created (pgid == the child's pid while it is unreaped).
            unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
            self.status = self.child.wait().ok();
        }
        self.kill_group_leftovers();
        self.status
    }

    /// After the leader was reaped, members of its group may remain (a killed tracer's command).
    fn kill_group_leftovers(&self) {
        let pgid = self.pid();
        // SAFETY: probing and killing the process group we created.
        unsafe {
            if libc::kill(-pgid, 0) == 0 {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.status.is_none() {
            if self.graceful {
                self.stop(Duration::from_secs(20));
            } else {
                // SAFETY: killing the group we created.
                unsafe { libc::kill(-self.pid(), libc::SIGKILL) };
                let _ = self.child.wait();
            }
        }
        self.kill_group_leftovers();
    }
}

/// Restores `kernel.bpf_stats_enabled` to its previous value on every exit path.
struct BpfStatsGuard {
    previous: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStatsGuard {
    fn enable() -> Result<BpfStatsGuard> {
        let previous = std::fs::read_to_string(BPF_STATS).with_context(|| format!("reading {BPF_STATS}"))?;
        std::fs::write(BPF_STATS, "1").with_context(|| format!("sysctl -w kernel.bpf_stats_enabled=1 ({BPF_STATS})"))?;
        Ok(BpfStatsGuard { previous: previous.trim().to_string() })
    }
}

impl Drop for BpfStatsGuard {
    fn drop(&mut self) {
        let v = if self.previous.is_empty() { "0" } else { self.previous.as_str() };
        if let Err(e) = std::fs::write(BPF_STATS, v) {
            eprintln!("bench: WARNING: could not restore kernel.bpf_stats_enabled={v}: {e}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Workloads and configurations
// ---------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Workload {
    OpenClose,
    Ptys,
    ForkExec,
    Agent,
}

const WORKLOADS: [Workload; 4] = [Workload::OpenClose, Workload::Ptys, Workload::ForkExec, Workload::Agent];

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::OpenClose => "openclose",
            Workload::Ptys => "ptys",
            Workload::ForkExec => "forkexec",
            Workload::Agent => "agent",
        }
    }
    fn what(self) -> &'static str {
        match self {
            Workload::OpenClose => "tight loop: open+close /dev/null",
            Workload::Ptys => "PTY pairs: ptmx, grantpt/unlockpt, TIOCGPTN, slave, close both",
            Workload::ForkExec => "fork/exec storm: fork + exec /bin/true + waitpid",
            Workload::Agent => "agent session: one fresh PTY per shell command (git status / ls -la /usr/bin / python3)",
        }
    }
    fn n(self, quick: bool) -> u64 {
        match (self, quick) {
            (Workload::OpenClose, false) => 300_000,
            (Workload::OpenClose, true) => 20_000,
            (Workload::Ptys, false) => 5_000,
            (Workload::Ptys, true) => 500,
            (Workload::ForkExec, false) => 3_000,
            (Workload::ForkExec, true) => 300,
            (Workload::Agent, false) => 200,
            (Workload::Agent, true) => 15,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Config {
    Untraced,
    PtyTrace,
    Bpftrace,
    Strace,
}

const CONFIGS: [Config; 4] = [Config::Untraced, Config::PtyTrace, Config::Bpftrace, Config::Strace];

impl Config {
    fn name(self) -> &'static str {
        match self {
            Config::Untraced => "untraced",
            Config::PtyTrace => "pty-trace",
            Config::Bpftrace => "bpftrace",
            Config::Strace => "strace -f",
        }
    }
}

/// strace runs the tight loop at N/STRACE_OPENCLOSE_DIV iterations (scaled up, labelled).
const STRACE_OPENCLOSE_DIV: u64 = 100;

/// What a `pty-trace` session's JSONL said about itself.
#[derive(Clone, Debug, Default)]
struct TraceInfo {
    ready_ms: f64,
    load_ms: f64,
    attached_tracepoints: u64,
    events: u64,
    lost_events: u64,
    decode_errors: u64,
    drift: u64,
    cpu_s: f64,
    max_rss_kib: u64,
    ring_buffer_bytes: u64,
    duration_s: f64,
    processes_seen: u64,
    /// Wall time of the pty-trace process itself (spawn to exit).
    process_wall_s: f64,
}

/// One timed run of one configuration.
#[derive(Clone, Debug)]
struct Sample {
    config: Config,
    round: usize,
    /// Per workload: (iterations run, loop wall ns, loop CPU ns of the workload process).
    times: BTreeMap<Workload, (u64, u128, u128)>,
    trace: Option<TraceInfo>,
    /// bpftrace: syscall entries it counted (a sanity check of its filter).
    bt_events: Option<u64>,
    /// Other tracers (not ours) running at the start or end of the sample.
    foreign: Vec<String>,
    /// CPU time used on the machine during the sample by processes that are not ours, in cores.
    background_cores: f64,
}

struct Ctx {
    quick: bool,
    rounds: usize,
    root: PathBuf,
    pty_trace: PathBuf,
    benchload: PathBuf,
    work: PathBuf,
    bt_arrow: bool,
    bt_version: String,
    strace_version: String,
    timeout: Duration,
    /// How long one sample waits for other tracers to finish ...
    quiet_wait: Duration,
    /// ... and how long all samples together may wait (the machine may be shared all along).
    quiet_budget: std::cell::Cell<Duration>,
    notes: Vec<String>,
}

// ---------------------------------------------------------------------------------------------
// Small helpers
// ---------------------------------------------------------------------------------------------

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path).map(|d| d.join(tool)).find(|p| p.is_file())
}

fn first_line_of(cmd: &mut Command) -> Option<String> {
    let out = cmd.stdin(Stdio::null()).stderr(Stdio::piped()).stdout(Stdio::piped()).output().ok()?;
    let text = if out.stdout.is_empty() { out.stderr } else { out.stdout };
    String::from_utf8_lossy(&text).lines().next().map(|s| s.trim().to_string())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let v: Vec<&str> = text.lines().filter(|l| !l.contains("RLIMIT_MEMLOCK")).collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let m = s.len() / 2;
    if s.len() % 2 == 1 { s[m] } else { (s[m - 1] + s[m]) / 2.0 }
}

fn fmt_secs(s: f64) -> String {
    if !s.is_finite() {
        "-".into()
    } else if s >= 10.0 {
        format!("{s:.1} s")
    } else if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.0} ms", s * 1e3)
    }
}

fn fmt_ratio(r: f64) -> String {
    if r.is_finite() { format!("{r:.2}") } else { "-".into() }
}

fn fmt_int(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` of a Unix time in milliseconds.
fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86400) as i64;
    let rem = secs % 86400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Busy jiffies of the whole machine (user+nice+system+irq+softirq+steal) and the jiffy rate.
fn machine_busy_s() -> f64 {
    let text = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = text.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy: u64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    busy as f64 / hz
}

/// CPU seconds used by this process and its reaped descendants.
fn own_cpu_s() -> f64 {
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let mut total = 0.0;
    for who in [libc::RUSAGE_SELF, libc::RUSAGE_CHILDREN] {
        // SAFETY: getrusage fills a struct we own.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut ru) };
        total += tv(ru.ru_utime) + tv(ru.ru_stime);
    }
    total
}

/// Tracers on the machine that are not ours (another pty-trace, bpftrace, strace or perf): their
/// probes fire on every process, so they would skew an "untraced" number.
fn foreign_tracers() -> Vec<String> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return out };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) else { continue };
        let comm = comm.trim();
        if !matches!(comm, "pty-trace" | "bpftrace" | "strace" | "perf") {
            continue;
        }
        // Ours if we are an ancestor.
        let mut p = pid;
        let mut ours = false;
        for _ in 0..64 {
            if p == me {
                ours = true;
                break;
            }
            let Some(pp) = std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.split_whitespace().nth(1).and_then(|x| x.parse::<i32>().ok())))
            else {
                break;
            };
            if pp <= 1 {
                break;
            }
            p = pp;
        }
        if !ours {
            out.push(format!("{comm}[{pid}]"));
        }
    }
    out.sort();
    out
}

/// A workload's `BENCHLOAD_OUT` file: (loop wall ns, loop CPU ns).
fn parse_timing(path: &Path) -> Option<(u128, u128)> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut it = text.split_whitespace().map(|x| x.parse::<u128>().ok());
    Some((it.next()??, it.next()??))
}

fn parse_ns_file(path: &Path) -> Option<u128> {
    parse_timing(path).map(|t| t.0)
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn trace_info(jsonl: &Path) -> Result<TraceInfo> {
    let recs = read_jsonl(jsonl);
    let start = recs
        .iter()
        .find(|r| r["type"] == "start")
        .ok_or_else(|| anyhow!("{}: no start record", jsonl.display()))?;
    let mut t = TraceInfo {
        ready_ms: start["ready_ms"].as_f64().unwrap_or(f64::NAN),
        load_ms: start["load_ms"].as_f64().unwrap_or(f64::NAN),
        attached_tracepoints: start["attached_tracepoints"].as_u64().unwrap_or(0),
        ..Default::default()
    };
    if let Some(s) = recs.iter().rev().find(|r| r["type"] == "summary") {
        t.events = s["tracer"]["events"].as_u64().unwrap_or(0);
        t.decode_errors = s["tracer"]["decode_errors"].as_u64().unwrap_or(0);
        t.cpu_s = s["tracer"]["cpu_s"].as_f64().unwrap_or(f64::NAN);
        t.max_rss_kib = s["tracer"]["max_rss_kib"].as_u64().unwrap_or(0);
        t.ring_buffer_bytes = s["tracer"]["ring_buffer_bytes"].as_u64().unwrap_or(0);
        t.lost_events = s["lost_events"].as_u64().unwrap_or(0);
        t.drift = s["drift"].as_u64().unwrap_or(0);
        t.duration_s = s["duration_s"].as_f64().unwrap_or(f64::NAN);
        t.processes_seen = s["processes_seen"].as_u64().unwrap_or(0);
    } else {
        bail!("{}: no summary record", jsonl.display());
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// Running things
// ---------------------------------------------------------------------------------------------

impl Ctx {
    fn out_file(&self, i: usize) -> PathBuf {
        self.work.join(format!("out-{i}"))
    }

    fn jsonl(&self) -> PathBuf {
        self.work.join("trace.jsonl")
    }

    fn bpftrace_script(&self) -> String {
        let a = if self.bt_arrow { "args->" } else { "args." };
        format!(
            "BEGIN {{ @t[cpid] = 1; }}\n\
             tracepoint:sched:sched_process_fork /@t[pid]/ {{ @t[{a}child_pid] = 1; }}\n\
             tracepoint:sched:sched_process_exit /tid == pid && @t[pid]/ {{ delete(@t[pid]); }}\n\
             tracepoint:syscalls:sys_enter_openat, tracepoint:syscalls:sys_enter_close, tracepoint:syscalls:sys_enter_ioctl /@t[pid]/ {{ @enter = count(); }}\n\
             tracepoint:syscalls:sys_exit_openat, tracepoint:syscalls:sys_exit_close, tracepoint:syscalls:sys_exit_ioctl /@t[pid]/ {{ @exit = count(); }}\n\
             END {{ clear(@t); }}\n"
        )
    }

    /// The command line of the traced program for `items`: benchload itself for one workload,
    /// else `/bin/sh SCRIPT` running them in turn (`parallel`: all at once, then `wait`).
    /// `linger`: the script ends in `exec sleep 300`, so the session (and its probes) stays up
    /// until we stop it.
    fn target_argv(&self, items: &[(Workload, u64)], parallel: bool, linger: bool) -> Result<Vec<String>> {
        let bl = self.benchload.to_string_lossy().into_owned();
        if items.len() == 1 && !parallel && !linger {
            let (w, n) = items[0];
            return Ok(vec![bl, w.name().into(), n.to_string()]);
        }
        let mut s = String::from("# generated by pty-trace's bench\n");
        for (i, (w, n)) in items.iter().enumerate() {
            let amp = if parallel && i + 1 < items.len() { " &" } else { "" };
            writeln!(s, "BENCHLOAD_OUT={} {bl} {} {n} >/dev/null || exit 1{amp}", self.out_file(i).display(), w.name())?;
        }
        if parallel {
            s.push_str("wait\n");
        }
        if linger {
            s.push_str("exec sleep 300\n");
        }
        let script = self.work.join("run.sh");
        std::fs::write(&script, s).with_context(|| format!("writing {}", script.display()))?;
        Ok(vec!["/bin/sh".into(), script.to_string_lossy().into_owned()])
    }

    fn command(&self, config: Config, argv: &[String], out0: &Path) -> Command {
        let mut c = match config {
            Config::Untraced => {
                let mut c = Command::new(&argv[0]);
                c.args(&argv[1..]);
                c
            }
            Config::PtyTrace => {
                let mut c = Command::new(&self.pty_trace);
                c.args(["run", "--no-tui", "--jsonl"]).arg(self.jsonl()).args(["--interval", "1s", "--"]).args(argv);
                c
            }
            Config::Bpftrace => {
                let mut c = Command::new("bpftrace");
                c.arg("-c").arg(argv.join(" ")).arg("-e").arg(self.bpftrace_script());
                c
            }
            Config::Strace => {
                let mut c = Command::new("strace");
                c.args(["-f", "-qq", "-o", "/dev/null"]).args(argv);
                c
            }
        };
        c.env("BENCHLOAD_OUT", out0).stdin(Stdio::null());
        c
    }

    /// Waits (up to `quiet_wait`, within what is left of `quiet_budget`) until no foreign
    /// tracer runs; returns those still running.
    fn wait_quiet(&self) -> Result<Vec<String>> {
        let t0 = Instant::now();
        let limit = self.quiet_wait.min(self.quiet_budget.get());
        let result = loop {
            let f = foreign_tracers();
            if f.is_empty() || t0.elapsed() >= limit {
                break f;
            }
            if let Err(e) = check_stop() {
                self.quiet_budget.set(self.quiet_budget.get().saturating_sub(t0.elapsed()));
                return Err(e);
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        self.quiet_budget.set(self.quiet_budget.get().saturating_sub(t0.elapsed()));
        Ok(result)
    }

    /// One timed run of `items` under `config`.
    fn sample(&self, config: Config, round: usize, items: &[(Workload, u64)]) -> Result<Sample> {
        check_stop()?;
        for i in 0..items.len() {
            let _ = std::fs::remove_file(self.out_file(i));
        }
        let _ = std::fs::remove_file(self.jsonl());
        let argv = self.target_argv(items, false, false)?;
        let stdout = self.work.join("stdout");
        let stderr = self.work.join("stderr");
        let mut cmd = self.command(config, &argv, &self.out_file(0));
        cmd.stdout(std::fs::File::create(&stdout)?).stderr(std::fs::File::create(&stderr)?);
        let mut foreign = self.wait_quiet()?;
        let (busy0, own0, t0) = (machine_busy_s(), own_cpu_s(), Instant::now());
        let label = format!("{} under {}", items.iter().map(|(w, _)| w.name()).collect::<Vec<_>>().join("+"), config.name());
        let mut p = Proc::spawn(&mut cmd, &label, config == Config::PtyTrace)?;
        let st = p.wait(self.timeout)?;
        let wall = t0.elapsed().as_secs_f64();
        let background = ((machine_busy_s() - busy0) - (own_cpu_s() - own0)).max(0.0) / wall.max(1e-9);
        for f in foreign_tracers() {
            if !foreign.contains(&f) {
                foreign.push(f);
            }
        }
        if !st.success() {
            bail!("{label} failed ({st}):\n{}\n{}", tail(&stderr, 15), tail(&stdout, 5));
        }
        let mut times = BTreeMap::new();
        for (i, (w, n)) in items.iter().enumerate() {
            let (ns, cpu) = parse_timing(&self.out_file(i)).ok_or_else(|| {
                anyhow!("{label}: {} reported no time:\n{}", w.name(), tail(&stderr, 15))
            })?;
            times.insert(*w, (*n, ns, cpu));
        }
        let trace = if config == Config::PtyTrace {
            let mut t = trace_info(&self.jsonl()).with_context(|| label.clone())?;
            t.process_wall_s = wall;
            Some(t)
        } else {
            None
        };
        let bt_events = if config == Config::Bpftrace {
            let text = std::fs::read_to_string(&stdout).unwrap_or_default();
            let n = text
                .lines()
                .find_map(|l| l.strip_prefix("@enter:").and_then(|x| x.trim().parse::<u64>().ok()))
                .unwrap_or(0);
            if n == 0 {
                bail!("{label}: the bpftrace script counted no events (its process filter failed):\n{}", tail(&stderr, 10));
            }
            Some(n)
        } else {
            None
        };
        Ok(Sample { config, round, times, trace, bt_events, foreign, background_cores: background })
    }
}

// ---------------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------------

#[derive(Default)]
struct Extra {
    // (a)/(b)
    rate_loops_n: u64,
    rate_events: u64,
    rate_loop_s: f64,
    rate_lost: u64,
    rate_cpu_s: f64,
    rate_duration_s: f64,
    rate_note: String,
    // (c)
    rss_kib: u64,
    rss_processes: u64,
    rss_note: String,
    // (d)
    attach_ready_ms: Vec<f64>,
    attach_load_ms: Vec<f64>,
    attach_note: String,
    // (e)
    outside_base_ns: Vec<f64>,
    outside_traced_ns: Vec<f64>,
    outside_base_cpu: Vec<f64>,
    outside_traced_cpu: Vec<f64>,
    /// Runs that had another tracer (not ours) on the machine.
    outside_disturbed: usize,
    outside_n: u64,
    // (f)
    report_lines: u64,
    report_bytes: u64,
    report_s: Vec<f64>,
    // (g)
    progs: Vec<ProgStat>,
    progs_iterations: u64,
    progs_note: String,
    progs_loop_ns: u128,
}

#[derive(Clone, Debug)]
struct ProgStat {
    id: u64,
    name: String,
    run_cnt: u64,
    run_time_ns: u64,
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
    fn measure_rate(&self, ex: &mut Extra, n_each: u64, with_stats: bool) -> Result<()> {
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
    fn measure_rss(&self, ex: &mut Extra, n: u64) -> Result<()> {
        eprintln!("bench: (c) forkexec {} under pty-trace", fmt_int(n));
        let s = self.sample(Config::PtyTrace, 0, &[(Workload::ForkExec, n)])?;
        let t = s.trace.expect("pty-trace sample has trace info");
        ex.rss_kib = t.max_rss_kib;
        ex.rss_processes = t.processes_seen;
        Ok(())
    }

    /// (d) `attach --duration 1s` to a sleep: ready_ms of the start record.
    fn measure_attach(&self, ex: &mut Extra) -> Result<()> {
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
    fn measure_outside(&self, ex: &mut Extra, n: u64, k: usize) -> Result<()> {
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
    fn measure_report(&self, ex: &mut Extra, source: &Path, lines: u64, repeats: usize) -> Result<()> {
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
    fn measure_prog_stats(&self, ex: &mut Extra, n: u64) -> Result<()> {
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

// ---------------------------------------------------------------------------------------------
// Machine and report
// ---------------------------------------------------------------------------------------------

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

fn git_commit(root: &Path) -> String {
    // Read from .git directly (no git process): HEAD -> ref -> loose or packed ref.
    let git = root.join(".git");
    let Ok(head) = std::fs::read_to_string(git.join("HEAD")) else { return "unknown (no .git)".into() };
    let head = head.trim();
    let Some(r) = head.strip_prefix("ref: ") else { return head.to_string() };
    if let Ok(c) = std::fs::read_to_string(git.join(r)) {
        return format!("{} ({})", c.trim(), r.trim_start_matches("refs/heads/"));
    }
    if let Ok(p) = std::fs::read_to_string(git.join("packed-refs"))
        && let Some(c) = p.lines().find_map(|l| l.strip_suffix(r).map(|c| c.trim().to_string()))
    {
        return format!("{c} ({})", r.trim_start_matches("refs/heads/"));
    }
    format!("unknown ({r} has no commit yet)")
}

struct Verdict {
    name: String,
    measured: String,
    target: String,
    pass: Option<bool>,
    by: String,
}

fn upper(name: &str, measured: f64, limit: f64, shown: String, target: String, unit: &str) -> Verdict {
    let pass = measured.is_finite().then_some(measured <= limit);
    let by = if !measured.is_finite() {
        "not measured".into()
    } else if measured <= limit {
        format!("{:.1}% under the limit", (1.0 - measured / limit) * 100.0)
    } else {
        format!("over by {:.2}{unit} ({:.1}%)", measured - limit, (measured / limit - 1.0) * 100.0)
    };
    Verdict { name: name.into(), measured: shown, target, pass, by }
}

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
    eprintln!("usage: bench [--quick] [--out PATH]");
    std::process::exit(2)
}

fn real_main() -> Result<()> {
    let t_all = Instant::now();
    let mut quick = false;
    let mut out_path: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
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

    let work = std::env::temp_dir().join(format!("pty-trace-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
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
    };
    let result = run_suite(ctx, &out_path, &pty_trace_version, t_all);
    let _ = std::fs::remove_dir_all(&work);
    result
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
    let doc = render(&ctx, &samples, &ex, &date, pty_trace_version, t_all.elapsed());
    println!("{doc}");
    if let Some(dir) = out_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out_path, &doc).with_context(|| format!("writing {}", out_path.display()))?;
    eprintln!("bench: wrote {} ({} in all)", out_path.display(), fmt_secs(t_all.elapsed().as_secs_f64()));
    Ok(())
}

fn render(ctx: &Ctx, samples: &[Sample], ex: &Extra, date: &str, version: &str, took: Duration) -> String {
    let mut d = String::new();
    let per_iter = |cfg: Config, w: Workload| -> f64 {
        median(&samples.iter().filter(|s| s.config == cfg).filter_map(|s| s.times.get(&w).map(|(n, ns, _)| *ns as f64 / *n as f64)).collect::<Vec<_>>())
    };
    let per_iter_cpu = |cfg: Config, w: Workload| -> f64 {
        median(&samples.iter().filter(|s| s.config == cfg).filter_map(|s| s.times.get(&w).map(|(n, _, cpu)| *cpu as f64 / *n as f64)).collect::<Vec<_>>())
    };
    let traces: Vec<&TraceInfo> = samples.iter().filter_map(|s| s.trace.as_ref()).collect();
    // SAFETY: sysconf has no preconditions.
    let nproc = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();

    let _ = writeln!(d, "# pty-trace benchmarks\n");
    let _ = writeln!(
        d,
        "Generated by `cargo xtask bench{}` (tests/src/bin/bench.rs; workloads in tests/src/bin/benchload.rs). \
         Do not edit by hand: rerun it.\n",
        if ctx.quick { " --quick" } else { "" }
    );
    let _ = writeln!(d, "## Machine\n");
    let _ = writeln!(d, "| | |\n|---|---|");
    let _ = writeln!(d, "| date | {date} |");
    let _ = writeln!(d, "| CPUs (nproc) | {nproc} |");
    let _ = writeln!(d, "| CPU model | {} |", cpu_model());
    let _ = writeln!(d, "| kernel (`uname -r`) | {kernel} |");
    let _ = writeln!(d, "| pty-trace | {version}, commit {} |", git_commit(&ctx.root));
    let _ = writeln!(d, "| bpftrace | {} |", ctx.bt_version);
    let _ = writeln!(d, "| strace | {} |", ctx.strace_version);
    let _ = writeln!(d, "| mode | {} ({} round{}), suite took {} |", if ctx.quick { "--quick" } else { "full" }, ctx.rounds, if ctx.rounds > 1 { "s" } else { "" }, fmt_secs(took.as_secs_f64()));
    let disturbed = samples.iter().filter(|s| !s.foreign.is_empty()).count();
    let bg: Vec<f64> = samples.iter().map(|s| s.background_cores).collect();
    let _ = writeln!(
        d,
        "| background | other tracers running during {disturbed} of {} samples; CPU used by other processes during a sample: median {:.2}, max {:.2} cores |",
        samples.len(),
        median(&bg),
        bg.iter().copied().fold(0.0, f64::max)
    );
    let _ = writeln!(d);

    // --- Main table.
    let _ = writeln!(d, "## Workloads\n");
    let _ = writeln!(
        d,
        "Each workload times its own loop (tracer start-up and attach excluded). Median of {} round{}; \
         configurations interleaved, order rotated each round; ratio = median / untraced median of the same run.\n",
        ctx.rounds,
        if ctx.rounds > 1 { "s" } else { "" }
    );
    let _ = writeln!(d, "| workload | N | untraced | pty-trace | ratio | bpftrace | ratio | strace -f | ratio | pty-trace lost events |");
    let _ = writeln!(d, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios: BTreeMap<(Workload, Config), f64> = BTreeMap::new();
    for w in WORKLOADS {
        let n = w.n(ctx.quick);
        let base = per_iter(Config::Untraced, w);
        let mut row = format!("| {} | {} | {} ", w.name(), fmt_int(n), fmt_secs(base * n as f64 / 1e9));
        for cfg in [Config::PtyTrace, Config::Bpftrace, Config::Strace] {
            let v = per_iter(cfg, w);
            let r = v / base;
            ratios.insert((w, cfg), r);
            let scaled = cfg == Config::Strace && w == Workload::OpenClose && !ctx.quick;
            let _ = write!(row, "| {}{} | {} ", fmt_secs(v * n as f64 / 1e9), if scaled { " †" } else { "" }, fmt_ratio(r));
        }
        let lost: Vec<u64> = samples.iter().filter(|s| s.config == Config::PtyTrace && s.times.contains_key(&w)).filter_map(|s| s.trace.as_ref().map(|t| t.lost_events)).collect();
        let _ = writeln!(row, "| {} |", lost.iter().map(|l| l.to_string()).collect::<Vec<_>>().join(" / "));
        d.push_str(&row);
    }
    let _ = writeln!(d);
    if !ctx.quick {
        let n = Workload::OpenClose.n(false);
        let _ = writeln!(
            d,
            "† strace on the tight loop runs N/{STRACE_OPENCLOSE_DIV} = {} iterations and is scaled ×{STRACE_OPENCLOSE_DIV} (the full N would take minutes).\n",
            fmt_int(n / STRACE_OPENCLOSE_DIV)
        );
    }
    for w in WORKLOADS {
        let _ = writeln!(d, "- `{}`: {}", w.name(), w.what());
    }
    let _ = writeln!(
        d,
        "\nPer-iteration medians in µs (wall), and the ratio of the workload process's own CPU time in its loop \
         (children excluded; less sensitive to other load on the machine than wall time):\n"
    );
    let _ = writeln!(d, "| workload | untraced | pty-trace | bpftrace | strace -f | pty-trace − untraced | bpftrace − untraced | CPU ratio pty-trace | CPU ratio bpftrace |");
    let _ = writeln!(d, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for w in WORKLOADS {
        let u = per_iter(Config::Untraced, w) / 1e3;
        let p = per_iter(Config::PtyTrace, w) / 1e3;
        let b = per_iter(Config::Bpftrace, w) / 1e3;
        let s = per_iter(Config::Strace, w) / 1e3;
        let cu = per_iter_cpu(Config::Untraced, w);
        let _ = writeln!(
            d,
            "| {} | {u:.2} | {p:.2} | {b:.2} | {s:.2} | {:+.2} | {:+.2} | {} | {} |",
            w.name(),
            p - u,
            b - u,
            fmt_ratio(per_iter_cpu(Config::PtyTrace, w) / cu),
            fmt_ratio(per_iter_cpu(Config::Bpftrace, w) / cu)
        );
    }

    // --- Targets.
    let mut v: Vec<Verdict> = Vec::new();
    {
        let r = ratios[&(Workload::OpenClose, Config::PtyTrace)];
        let b = ratios[&(Workload::OpenClose, Config::Bpftrace)];
        let pass = r.is_finite() && r <= 1.30 && r < b;
        let by = if pass {
            format!("{:.1}% under 1.30, {:.2} below bpftrace", (1.0 - r / 1.30) * 100.0, b - r)
        } else {
            let mut why = Vec::new();
            if r > 1.30 {
                why.push(format!("over 1.30 by {:.2} ({:.1}%)", r - 1.30, (r / 1.30 - 1.0) * 100.0));
            }
            if r >= b {
                why.push(format!("{:.2} above bpftrace's {b:.2}", r - b));
            }
            why.join("; ")
        };
        v.push(Verdict {
            name: "tight loop (openclose): pty-trace / untraced".into(),
            measured: format!("{} (bpftrace {})", fmt_ratio(r), fmt_ratio(b)),
            target: "≤ 1.30 and below bpftrace's ratio".into(),
            pass: r.is_finite().then_some(pass),
            by,
        });
    }
    let r = ratios[&(Workload::Agent, Config::PtyTrace)];
    v.push(upper("agent session: pty-trace / untraced", r, 1.05, fmt_ratio(r), "≤ 1.05".into(), ""));
    let r = ratios[&(Workload::ForkExec, Config::PtyTrace)];
    v.push(upper("fork/exec storm: pty-trace / untraced", r, 1.20, fmt_ratio(r), "≤ 1.20".into(), ""));
    let rate = ex.rate_events as f64 / ex.rate_loop_s.max(1e-9);
    {
        let reached = rate >= 500_000.0 && ex.rate_loop_s >= 10.0;
        let pass = reached && ex.rate_lost == 0;
        let by = if pass {
            "0 lost".into()
        } else if ex.rate_lost > 0 {
            format!("{} events lost", fmt_int(ex.rate_lost))
        } else {
            let mut why = Vec::new();
            if rate < 500_000.0 {
                why.push(format!("0 lost, but only {:.0}k events/s reached ({:.1}% short of 500k)", rate / 1e3, (1.0 - rate / 500_000.0) * 100.0));
            }
            if ex.rate_loop_s < 10.0 {
                why.push(format!("ran {:.1} s, not 10 s", ex.rate_loop_s));
            }
            why.join("; ")
        };
        v.push(Verdict {
            name: "lost events at ≥ 500k events/s for 10 s, default ring buffer".into(),
            measured: format!("{} lost at {:.0}k events/s for {:.1} s", fmt_int(ex.rate_lost), rate / 1e3, ex.rate_loop_s),
            target: "0 (at ≥ 500k/s, ≥ 10 s)".into(),
            pass: Some(pass),
            by,
        });
    }
    let cpu_frac = ex.rate_cpu_s / ex.rate_duration_s.max(1e-9);
    let cpu_at_100k = cpu_frac * 100.0 * 100_000.0 / rate.max(1.0);
    v.push(upper(
        "tracer CPU at 100k events/s (userspace, normalised)",
        cpu_at_100k,
        10.0,
        format!("{cpu_at_100k:.2}% of a core ({:.1}% at {:.0}k/s)", cpu_frac * 100.0, rate / 1e3),
        "≤ 10% of one core".into(),
        " points",
    ));
    let rss_mb = ex.rss_kib as f64 * 1024.0 / 1e6;
    v.push(upper(
        "tracer peak RSS after 10k processes",
        rss_mb,
        50.0,
        format!("{rss_mb:.1} MB ({} processes seen)", fmt_int(ex.rss_processes)),
        "≤ 50 MB".into(),
        " MB",
    ));
    let attach = median(&ex.attach_ready_ms);
    let run_ready = median(&traces.iter().map(|t| t.ready_ms).collect::<Vec<_>>());
    v.push(upper("attach latency (`attach` ready_ms)", attach, 300.0, format!("{attach:.0} ms (run: {run_ready:.0} ms)"), "≤ 300 ms".into(), " ms"));
    let rep_s = median(&ex.report_s);
    let lps = ex.report_lines as f64 / rep_s;
    v.push(Verdict {
        name: "`pty-trace report` throughput".into(),
        measured: format!("{:.2}M lines/s", lps / 1e6),
        target: "≥ 1M lines/s".into(),
        pass: lps.is_finite().then_some(lps >= 1e6),
        by: if lps >= 1e6 { format!("{:.1}% above", (lps / 1e6 - 1.0) * 100.0) } else { format!("{:.1}% short", (1.0 - lps / 1e6) * 100.0) },
    });
    // (e) is judged on the loop's CPU time (what the probes cost the process); wall time is shown
    // too. Noise band: half the range of the no-tracer runs, at least 1%.
    let band = |v: &[f64]| {
        let m = median(v);
        let (lo, hi) = v.iter().fold((f64::MAX, 0.0f64), |(lo, hi), &x| (lo.min(x), hi.max(x)));
        ((hi - lo) / 2.0 / m).max(0.01)
    };
    let base = median(&ex.outside_base_ns);
    let traced = median(&ex.outside_traced_ns);
    let out_ratio = traced / base;
    let noise = band(&ex.outside_base_ns);
    let base_cpu = median(&ex.outside_base_cpu);
    let traced_cpu = median(&ex.outside_traced_cpu);
    let out_cpu_ratio = traced_cpu / base_cpu;
    let noise_cpu = band(&ex.outside_base_cpu);
    let within = (out_cpu_ratio - 1.0).abs() <= noise_cpu;
    let caveat = if ex.outside_disturbed > 0 {
        format!("; other tracers were attached during {} of {} runs, so the baseline was not tracer-free", ex.outside_disturbed, ex.outside_base_ns.len() + ex.outside_traced_ns.len())
    } else {
        String::new()
    };
    v.push(Verdict {
        name: "cost outside the session (openclose, tracer attached elsewhere)".into(),
        measured: format!(
            "CPU {} ({:+.1}%), wall {} ({:+.1}%, noise ±{:.1}%)",
            fmt_ratio(out_cpu_ratio),
            (out_cpu_ratio - 1.0) * 100.0,
            fmt_ratio(out_ratio),
            (out_ratio - 1.0) * 100.0,
            noise * 100.0
        ),
        target: format!("no difference beyond noise (CPU ±{:.1}%)", noise_cpu * 100.0),
        pass: out_cpu_ratio.is_finite().then_some(within),
        by: if within {
            format!("within noise{caveat}")
        } else {
            format!("{:.1} points beyond the noise band{caveat}", ((out_cpu_ratio - 1.0).abs() - noise_cpu) * 100.0)
        },
    });

    let _ = writeln!(d, "\n## Targets\n");
    let _ = writeln!(d, "| target | measured | limit | result | by how much |");
    let _ = writeln!(d, "|---|---|---|---|---|");
    for t in &v {
        let res = match t.pass {
            Some(true) => "PASS",
            Some(false) => "MISS",
            None => "n/a",
        };
        let _ = writeln!(d, "| {} | {} | {} | **{res}** | {} |", t.name, t.measured, t.target, t.by);
    }

    // --- Details of the extras.
    let _ = writeln!(d, "\n## Event rate and tracer cost (a, b)\n");
    let _ = writeln!(
        d,
        "Two `benchload openclose {}` loops in parallel under one `pty-trace run` session (`sh -c 'A & B; wait'`), \
         default ring buffer ({} MiB).\n",
        fmt_int(ex.rate_loops_n),
        traces.first().map(|t| t.ring_buffer_bytes).unwrap_or(0) / (1024 * 1024)
    );
    let _ = writeln!(d, "| | |\n|---|---|");
    let _ = writeln!(d, "| events applied (`tracer.events`) | {} |", fmt_int(ex.rate_events));
    let _ = writeln!(d, "| loop wall time (slower loop) | {:.2} s |", ex.rate_loop_s);
    let _ = writeln!(d, "| sustained rate | {:.0}k events/s |", rate / 1e3);
    let _ = writeln!(d, "| lost events | {} |", fmt_int(ex.rate_lost));
    let _ = writeln!(d, "| tracer CPU (`tracer.cpu_s` / session `duration_s`) | {:.3} s / {:.2} s = {:.1}% of one core |", ex.rate_cpu_s, ex.rate_duration_s, cpu_frac * 100.0);
    let _ = writeln!(d, "| normalised to 100k events/s | {cpu_at_100k:.2}% of one core |");
    if !ex.rate_note.is_empty() {
        let _ = writeln!(d, "| note | {} |", ex.rate_note);
    }
    let cpu_per_event_ns = ex.rate_cpu_s * 1e9 / ex.rate_events.max(1) as f64;
    let _ = writeln!(d, "\nUserspace spends {cpu_per_event_ns:.0} ns of CPU per event (start-up included). This is only the tracer process: the kernel-side cost is charged to the traced processes (see (g)).");

    let _ = writeln!(d, "\n## Memory (c)\n");
    let _ = writeln!(d, "`tracer.max_rss_kib` after `benchload forkexec` under `pty-trace run`: {} KiB = {rss_mb:.1} MB with {} processes seen.{}", fmt_int(ex.rss_kib), fmt_int(ex.rss_processes), if ex.rss_note.is_empty() { String::new() } else { format!(" ({})", ex.rss_note) });
    let rss_all: Vec<String> = samples.iter().filter_map(|s| s.trace.as_ref().map(|t| (s, t))).map(|(s, t)| format!("{} {:.1} MB", s.times.keys().map(|w| w.name()).collect::<Vec<_>>().join("+"), t.max_rss_kib as f64 * 1024.0 / 1e6)).collect();
    let _ = writeln!(d, "\nPeak RSS of the other pty-trace runs: {}.", rss_all.join(", "));

    let _ = writeln!(d, "\n## Attach and exit latency (d)\n");
    let _ = writeln!(d, "| | median | all |\n|---|---:|---|");
    let list = |v: &[f64]| v.iter().map(|x| format!("{x:.0}")).collect::<Vec<_>>().join(", ");
    let _ = writeln!(d, "| `attach --duration 1s <sleep>`: `ready_ms` | {attach:.0} ms | {} |", list(&ex.attach_ready_ms));
    let _ = writeln!(d, "| `attach`: `load_ms` (load + attach the programs) | {:.0} ms | {} |", median(&ex.attach_load_ms), list(&ex.attach_load_ms));
    let rr: Vec<f64> = traces.iter().map(|t| t.ready_ms).collect();
    let _ = writeln!(d, "| `run`: `ready_ms` | {run_ready:.0} ms | {} |", list(&rr));
    let exits: Vec<f64> = traces.iter().map(|t| t.process_wall_s - t.duration_s - t.ready_ms / 1e3).collect();
    let _ = writeln!(
        d,
        "| `run`: exit after the command ended (process wall − ready − session duration) | {:.2} s | {} |",
        median(&exits),
        exits.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ")
    );
    if !ex.attach_note.is_empty() {
        let _ = writeln!(d, "\n{}", ex.attach_note);
    }
    let tps = traces.first().map(|t| t.attached_tracepoints).unwrap_or(0);
    let _ = writeln!(d, "\npty-trace attaches {tps} tracepoints (raw `sys_exit` and three scheduler tracepoints), detached in parallel at exit.");

    let _ = writeln!(d, "\n## Cost outside the session (e)\n");
    let _ = writeln!(
        d,
        "`benchload openclose {}` run untraced: {} times with no tracer (before and after), {} times while `pty-trace attach` traces an unrelated `sleep`.\n",
        fmt_int(ex.outside_n),
        ex.outside_base_ns.len(),
        ex.outside_traced_ns.len()
    );
    let ms = |v: &[f64]| v.iter().map(|x| format!("{:.0}", x / 1e6)).collect::<Vec<_>>().join(", ");
    let _ = writeln!(d, "| | wall median | wall runs (ms) | loop CPU median | CPU runs (ms) |\n|---|---:|---|---:|---|");
    let _ = writeln!(d, "| no tracer | {} | {} | {} | {} |", fmt_secs(base / 1e9), ms(&ex.outside_base_ns), fmt_secs(base_cpu / 1e9), ms(&ex.outside_base_cpu));
    let _ = writeln!(
        d,
        "| pty-trace tracing another session | {} | {} | {} | {} |",
        fmt_secs(traced / 1e9),
        ms(&ex.outside_traced_ns),
        fmt_secs(traced_cpu / 1e9),
        ms(&ex.outside_traced_cpu)
    );
    let _ = writeln!(
        d,
        "\nCPU ratio {} ({:+.0} ns of CPU per open+close pair), wall ratio {} ({:+.0} ns). Noise band: half the range of the \
         no-tracer runs, at least 1% (CPU ±{:.1}%, wall ±{:.1}%).{}",
        fmt_ratio(out_cpu_ratio),
        (traced_cpu - base_cpu) / ex.outside_n as f64,
        fmt_ratio(out_ratio),
        (traced - base) / ex.outside_n as f64,
        noise_cpu * 100.0,
        noise * 100.0,
        if ex.outside_disturbed > 0 {
            format!(" Other tracers (their probes also fire for this loop) were running during {} of these runs.", ex.outside_disturbed)
        } else {
            String::new()
        }
    );

    let _ = writeln!(d, "\n## `pty-trace report` throughput (f)\n");
    let _ = writeln!(
        d,
        "Input: {} lines ({:.0} MB), the records of a real `agent` recording replicated with increasing timestamps (in /tmp, deleted afterwards). \
         Runs: {} s → median {:.2}M lines/s, {:.0} MB/s.",
        fmt_int(ex.report_lines),
        ex.report_bytes as f64 / 1e6,
        ex.report_s.iter().map(|s| format!("{s:.2}")).collect::<Vec<_>>().join(", "),
        lps / 1e6,
        ex.report_bytes as f64 / 1e6 / rep_s
    );

    let _ = writeln!(d, "\n## Per-program cost (g)\n");
    let _ = writeln!(
        d,
        "`kernel.bpf_stats_enabled=1` during one `pty-trace run` of `benchload openclose {}`, then `bpftool prog show -j` \
         for the programs that pty-trace process holds (restored afterwards). Counts include every process on the machine \
         hitting a followed syscall (filtered out in the kernel) during the session.{}\n",
        fmt_int(ex.progs_iterations),
        if ex.progs_note.is_empty() { String::new() } else { format!(" {}.", ex.progs_note) }
    );
    let _ = writeln!(d, "| program | id | run_cnt | run_time_ns | ns/run | ns per loop iteration |");
    let _ = writeln!(d, "|---|---:|---:|---:|---:|---:|");
    let mut total_ns = 0u64;
    for p in &ex.progs {
        total_ns += p.run_time_ns;
        let _ = writeln!(
            d,
            "| {} | {} | {} | {} | {:.0} | {:.0} |",
            p.name,
            p.id,
            fmt_int(p.run_cnt),
            fmt_int(p.run_time_ns),
            p.run_time_ns as f64 / p.run_cnt.max(1) as f64,
            p.run_time_ns as f64 / ex.progs_iterations.max(1) as f64
        );
    }
    let bpf_per_iter = total_ns as f64 / ex.progs_iterations.max(1) as f64;
    let _ = writeln!(d, "| **all** | | | {} | | {bpf_per_iter:.0} |", fmt_int(total_ns));

    // --- Overhead breakdown.
    let u = per_iter(Config::Untraced, Workload::OpenClose);
    let p = per_iter(Config::PtyTrace, Workload::OpenClose);
    let b = per_iter(Config::Bpftrace, Workload::OpenClose);
    let added = p - u;
    let _ = writeln!(d, "\n## Where the tight loop's overhead goes\n");
    let _ = writeln!(d, "| per open+close iteration | ns |\n|---|---:|");
    let _ = writeln!(d, "| untraced | {u:.0} |");
    let _ = writeln!(d, "| added by pty-trace | {added:.0} |");
    let _ = writeln!(d, "| … of which BPF program run time (g) | {bpf_per_iter:.0} ({:.0}%) |", bpf_per_iter / added * 100.0);
    let _ = writeln!(d, "| … rest: tracepoint dispatch, ring buffer wake-ups, the tracer competing for the CPUs | {:.0} |", added - bpf_per_iter);
    let _ = writeln!(d, "| added by bpftrace (4 counting programs) | {:.0} |", b - u);
    let _ = writeln!(
        d,
        "| floor: pty-trace's probes firing with the filter missing, CPU (e) | {:.0} |",
        (median(&ex.outside_traced_cpu) - median(&ex.outside_base_cpu)) / ex.outside_n.max(1) as f64
    );
    let _ = writeln!(d, "| tracer userspace CPU per event (a) | {cpu_per_event_ns:.0} |");

    // --- Reproduce.
    let _ = writeln!(d, "\n## How it is measured\n");
    let _ = writeln!(d, "- untraced: `benchload W N`");
    let _ = writeln!(d, "- pty-trace: `pty-trace run --no-tui --jsonl FILE --interval 1s -- benchload W N`");
    let _ = writeln!(d, "- strace: `strace -f -qq -o /dev/null benchload W N`");
    let _ = writeln!(d, "- bpftrace: `bpftrace -c 'benchload W N' -e '<script>'` with the script below (`pid` is the forking process; `child_pid` the new task):\n");
    let _ = writeln!(d, "```\n{}```\n", ctx.bpftrace_script());
    let _ = writeln!(
        d,
        "- A sample waits up to {:.0} s ({:.0} s in all per suite) for other tracers (pty-trace, bpftrace, strace, perf not started by the bench) to finish: their probes fire for every process. The background line above says how many samples still ran alongside one, and how much CPU other processes used.",
        ctx.quiet_wait.as_secs_f64(),
        if ctx.quick { 0 } else { 120 }
    );
    let _ = writeln!(d, "- `cargo xtask bench --quick` (CI smoke test) writes target/BENCHMARKS.quick.md instead of this file; `--out PATH` overrides either.");
    for n in &ctx.notes {
        let _ = writeln!(d, "- {n}");
    }

    // --- Raw samples.
    let _ = writeln!(d, "\n## Raw samples\n");
    let _ = writeln!(d, "| round | config | workload | N | loop time | loop CPU | tracer's own numbers | background cores | other tracers |");
    let _ = writeln!(d, "|---:|---|---|---:|---:|---:|---|---:|---|");
    for s in samples {
        for (w, (n, ns, cpu)) in &s.times {
            let t = match (&s.trace, s.bt_events) {
                (Some(t), _) => format!("events {} / lost {} / cpu_s {:.3} / ready_ms {:.0}", fmt_int(t.events), t.lost_events, t.cpu_s, t.ready_ms),
                (None, Some(n)) => format!("counted {} syscall entries", fmt_int(n)),
                _ => String::new(),
            };
            let _ = writeln!(
                d,
                "| {} | {} | {} | {} | {} | {} | {t} | {:.2} | {} |",
                s.round + 1,
                s.config.name(),
                w.name(),
                fmt_int(*n),
                fmt_secs(*ns as f64 / 1e9),
                fmt_secs(*cpu as f64 / 1e9),
                s.background_cores,
                s.foreign.join(", ")
            );
        }
    }
    d
}
