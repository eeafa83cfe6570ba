//! Command-line interface (clap). Parsing only: no behaviour lives here.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    core::score::Thresholds,
    error::{AppError, AppResult},
    kernel::backend::ProbeChoice,
};

const EXAMPLES: &str = "\
Examples:
  sudo pty-trace top                              who holds this machine's PTYs (no PID needed)
  sudo pty-trace attach 4242                      watch a running agent and all its children
  sudo pty-trace attach $(tmux list-panes -a -F '#{pane_pid}')   one session per tmux pane
  sudo pty-trace run -- node agent.js             start a command traced from its first instruction
  sudo pty-trace run --no-tui --jsonl out.jsonl --duration 10m -- ./ci-job.sh
  pty-trace report out.jsonl                      forensic report of a recording
  sudo pty-trace doctor --fix                     check (and fix) what tracing needs
  sudo pty-trace demo                             see what a PTY leak looks like

Exit codes: 0 ok; 1 failure; 2 usage; 3 bad PID (missing, kernel thread, exited);
4 not allowed to load BPF (run with sudo); 5 tracefs missing (pty-trace doctor --fix);
6 bad input file or config; 7 report: INCOMPLETE (no summary); 8 report: UNKNOWN (nothing to
judge from); 10 --exit-on-rotate fired; 11 doctor found a blocking problem; 12 the kernel lacks
what the probes need (too old, no BTF, trampolines refused for --probes fentry);
13 run --fail-on-leak: the leak gate failed (LEAK DETECTED, or PTYs/fds left over budget);
126/127 run: command not executable/not found; 141 the JSONL reader on stdout went away (EPIPE);
otherwise run exits with the command's status.";

#[derive(Parser, Debug)]
#[command(
    name = "pty-trace",
    version,
    about = "Find the process that leaks PTYs and file descriptors in a long-lived terminal session, live, with eBPF",
    after_help = EXAMPLES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Trace running processes and all their descendants (one session per PID).
    #[command(after_help = "q, Esc or Ctrl-C detaches and leaves the targets running.\n\nExample:\n  sudo pty-trace attach 4242 --jsonl leak.jsonl")]
    Attach {
        /// PIDs of the session roots.
        #[arg(required = true, value_name = "PID")]
        pids: Vec<String>,
        #[command(flatten)]
        common: TraceArgs,
    },
    /// Start a command and trace it and its descendants from its first instruction.
    #[command(after_help = "The command is registered with the kernel probes before it execs, so it never runs untraced.\n\
q, Esc or Ctrl-C stops the command like strace does: it gets SIGTERM, then SIGKILL after 2 s.\n\
pty-trace exits with the command's exit status (128+N if killed by signal N).\n\n\
Example:\n  sudo pty-trace run --jsonl run.jsonl -- bash -c 'for i in 1 2 3; do script -qc true /dev/null; done'\n  sudo pty-trace run --no-tui --jsonl ci.jsonl --fail-on-leak --budget-fds 5 -- npm test   # a CI leak gate (exit 13)")]
    Run {
        #[command(flatten)]
        common: TraceArgs,
        /// Send the command's stdout and stderr to this file (created 0600; never through a symlink). Without it they go to pty-trace's own (stdout to stderr when JSONL is on stdout), or nowhere under the live view.
        #[arg(long, value_name = "FILE")]
        child_output: Option<PathBuf>,
        #[command(flatten)]
        gate: GateArgs,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Every process on the machine holding PTYs, live: the pool, who drains it, containers told apart.
    #[command(after_help = "No PID needed: the first command to run when forkpty fails.\n\
Keys: Up/Down or j/k select, Enter attaches to the selected process's tree (the session view;\n\
Esc or q there comes back), s cycles the sort (masters, growth, orphans, fds), p pauses, ? help,\n\
q or Ctrl-C quits. Without a terminal (or with --no-tui) it writes `machine` JSONL records.\n\
Run as root to see every user's processes; others' are counted as unreadable.\n\n\
Examples:\n  sudo pty-trace top\n  sudo pty-trace top --once          # a table to paste into a bug report\n\
  sudo pty-trace top --json | jq '.processes[0]'\n  sudo pty-trace top --no-tui --jsonl pool.jsonl --interval 5s --duration 1h")]
    Top(crate::top::TopOptions),
    /// A service: follow every process matching --match as a session, from its exec until it
    /// exits, with JSONL into --jsonl-dir and metrics for Prometheus (--metrics).
    #[command(after_help = "A process matches when a --match regular expression finds its command name or its command\n\
line (argv joined by spaces). It is seen in the kernel when it execs (no polling); processes\n\
already running at start are matched too, and every 5 s /proc is looked through for those that\n\
renamed themselves without exec (tmux's server). Each match is a session: its own `start`,\n\
snapshots every interval, its `summary` when its root exits, then it is forgotten.\n\
SIGHUP reopens the JSONL file (after logrotate moved it); SIGTERM or Ctrl-C ends every session\n\
with its summary. Systemd unit: deploy/systemd/pty-trace-watch.service.\n\n\
Example:\n  sudo pty-trace watch --match 'claude|gemini|codex|copilot' --match '^tmux: server' \\\n      --metrics 127.0.0.1:9464 --jsonl-dir /var/log/pty-trace")]
    Watch {
        /// A regular expression (Rust regex syntax) matched against each process's command name
        /// and command line. Repeatable: any one matching is enough.
        #[arg(long = "match", value_name = "REGEX", required = true)]
        matches: Vec<String>,
        /// Only processes of this user (name or uid; their real uid).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// Most sessions followed at once; further matches are counted and skipped.
        #[arg(long, value_name = "N", default_value_t = 256)]
        max_sessions: usize,
        /// Write JSONL to DIR/watch.jsonl (appended; rotated by --rotate-size).
        #[arg(long, value_name = "DIR", conflicts_with = "jsonl")]
        jsonl_dir: Option<PathBuf>,
        /// Rotate DIR/watch.jsonl to watch.jsonl.1 once it reaches this size (e.g. 64M, 1G, 500K).
        #[arg(long, value_name = "SIZE", default_value = "64M", value_parser = parse_size, requires = "jsonl_dir")]
        rotate_size: u64,
        /// Rotated files kept (watch.jsonl.1 .. watch.jsonl.N).
        #[arg(long, value_name = "N", default_value_t = 5, requires = "jsonl_dir")]
        retain: u32,
        #[command(flatten)]
        common: TraceArgs,
    },
    /// Forensic report of a JSONL recording.
    #[command(after_help = "Exit status 0 for a summary's verdict (HEALTHY, LEAK DETECTED, LEAKED EARLIER, RECOVERED), 7 for INCOMPLETE (a session has no summary: the recording was cut short), 8 for UNKNOWN (no snapshot and no summary to judge from), 6 if the file has no valid record.\n\nExample:\n  pty-trace report leak.jsonl\n  pty-trace report --json leak.jsonl | jq .verdict\n  pty-trace report --format markdown ci.jsonl >> \"$GITHUB_STEP_SUMMARY\"\n  ssh host cat agent.jsonl | pty-trace report -")]
    Report {
        /// The recording; `-` reads standard input (pipes and FIFOs are streamed too).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print the report as one JSON object (the same as --format json).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// text (for people), json (one object), markdown (a CI step summary: verdict, leak
        /// gate, what leaked, which command, the budget).
        #[arg(long, value_enum, default_value = "text", value_name = "text|json|markdown")]
        format: ReportFormat,
    },
    /// Check that this machine can trace (kernel, BTF, tracefs, BPF permission, tracepoints, limits).
    #[command(after_help = "Exit status 0 only if tracing can work.\n\nExample:\n  sudo pty-trace doctor --fix")]
    Doctor {
        /// Fix what can be fixed (mount tracefs).
        #[arg(long)]
        fix: bool,
        /// The backend whose programs the `probes` row loads (`auto`: the one tracing would use).
        #[arg(long, value_enum, default_value = "auto", env = "PTY_TRACE_PROBES", value_name = "auto|fentry|tracepoint")]
        probes: ProbeChoice,
    },
    /// Run a built-in leaky "agent" (a fresh PTY per shell command, masters never closed), traced.
    #[command(after_help = "Without a terminal (or with --no-tui) it prints JSONL and the final summary.\n\nExample:\n  sudo pty-trace demo --commands 40\n  sudo pty-trace demo --fixed      # the same agent closing its masters: HEALTHY")]
    Demo {
        #[command(flatten)]
        common: TraceArgs,
        /// Shell commands the agent runs.
        #[arg(long, default_value_t = 30)]
        commands: u32,
        /// Pause between commands.
        #[arg(long, default_value = "150ms", value_parser = parse_duration)]
        delay: Duration,
        /// Close each PTY master after its command (the fixed agent).
        #[arg(long)]
        fixed: bool,
    },
    /// The demo's agent process (internal).
    #[command(name = "__demo-agent", hide = true)]
    DemoAgent {
        #[arg(long)]
        commands: u32,
        #[arg(long, value_parser = parse_duration)]
        delay: Duration,
        #[arg(long)]
        fixed: bool,
    },
}

/// `--metrics` (attach, run, demo, top, watch).
#[derive(Args, Debug, Clone, Default)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics: PORT (binds 127.0.0.1), HOST:PORT,
    /// or [IPv6]:PORT. Off by default.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Per-process series only for this many processes (those holding the most PTY masters,
    /// then fds), to keep the series bounded.
    #[arg(long, value_name = "N", default_value_t = crate::output::metrics::DEFAULT_MAX_PROCESSES, requires = "metrics")]
    pub metrics_max_processes: usize,
}

impl MetricsArgs {
    /// Binds and serves the endpoint when `--metrics` is given (`probes`: the backend's name,
    /// set again once the probes are loaded).
    pub fn start(&self, probes: &str) -> AppResult<Option<crate::output::metrics::Metrics>> {
        match &self.metrics {
            Some(addr) => crate::output::metrics_http::start(addr, probes, self.metrics_max_processes).map(Some),
            None => Ok(None),
        }
    }
}

/// `report --format`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ReportFormat {
    #[default]
    Text,
    Json,
    Markdown,
}

/// `run`'s leak gate for CI.
#[derive(Args, Debug, Clone, Default)]
pub struct GateArgs {
    /// Exit with status 13 (not the command's) when the verdict is LEAK DETECTED or the
    /// command's tree leaves more PTYs/fds open at its end than the budgets; otherwise exit
    /// with the command's status.
    #[arg(long)]
    pub fail_on_leak: bool,
    /// PTYs opened during the run that may still be open in its tree when it ends.
    #[arg(long, value_name = "N", default_value_t = 0, requires = "fail_on_leak")]
    pub budget_ptys: u64,
    /// Fds opened during the run that may still be open in its tree when it ends (default: any number).
    #[arg(long, value_name = "N", requires = "fail_on_leak")]
    pub budget_fds: Option<u64>,
}

impl GateArgs {
    pub fn budget(&self) -> Option<crate::core::gate::Budget> {
        self.fail_on_leak.then_some(crate::core::gate::Budget { ptys: self.budget_ptys, fds: self.budget_fds })
    }
}

#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// Headless: no live view (the default when stdout is not a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Write JSONL records to PATH (`-` = stdout). Headless runs default to stdout.
    #[arg(long, value_name = "PATH|-")]
    pub jsonl: Option<String>,
    /// Snapshot period, e.g. 250ms, 1s, 2m (10ms to 1h).
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// Stop after this long (more than 0, at most a year).
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Kernel ring buffer size in bytes (power of two, at least 4096).
    #[arg(long, default_value_t = pty_trace_common::DEFAULT_RING_BYTES, value_parser = parse_ring_size)]
    pub ring_buffer_size: u32,
    /// Print the kernel programs' diagnostics (rare failures: a tracepoint field they cannot
    /// read, a child the TRACKED map has no room for) to stderr.
    #[arg(long)]
    pub debug_kernel: bool,
    /// Kernel hooks: `fentry` (BPF trampolines on the followed syscalls: only traced processes
    /// pay), `tracepoint` (raw syscall tracepoints: every syscall on the machine takes the slow
    /// path), or `auto` (fentry where the kernel allows it). A forced backend that cannot load
    /// is an error (exit 12).
    #[arg(long, value_enum, default_value = "auto", env = "PTY_TRACE_PROBES", value_name = "auto|fentry|tracepoint")]
    pub probes: ProbeChoice,
    /// When a kernel program does not load, print the verifier's whole log, not just its line.
    #[arg(long)]
    pub verbose: bool,
    /// Scoring thresholds from a TOML file (see docs/health.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Alert when health drops below this (0-100).
    #[arg(long, allow_negative_numbers = true)]
    pub alert_health: Option<f64>,
    /// Decide "rotate" when health drops below this (0-100, not above --alert-health).
    #[arg(long, allow_negative_numbers = true)]
    pub rotate_health: Option<f64>,
    /// More PTYs than this in one session is red.
    #[arg(long)]
    pub max_ptys: Option<u64>,
    /// Run this command when a session must rotate (no shell; as the sudo-invoking user) with
    /// PTY_TRACE_SESSION, PTY_TRACE_HEALTH and PTY_TRACE_REASON in its environment.
    #[arg(long, value_name = "CMD")]
    pub on_rotate: Option<String>,
    /// Run --on-rotate through /bin/sh -c.
    #[arg(long, requires = "on_rotate")]
    pub on_rotate_shell: bool,
    /// Exit with code 10 after the first rotate decision (run: the command is stopped).
    #[arg(long)]
    pub exit_on_rotate: bool,
    #[command(flatten)]
    pub metrics: MetricsArgs,
}

impl TraceArgs {
    /// The scoring thresholds: defaults, then `--config FILE`, then the threshold flags, the
    /// result range-checked ([`Thresholds::validate`]); `--interval` and `--duration` are
    /// checked here too. Any bad value is one line naming it (with the file's line and column)
    /// and exit code 6, before anything is loaded, started or opened.
    pub fn thresholds(&self) -> AppResult<Thresholds> {
        check_times(self.interval, self.duration).map_err(AppError::BadInput)?;
        let mut config = None;
        let mut th = match &self.config {
            Some(p) => {
                let text = read_config(p)?;
                let th = toml::from_str(&text).map_err(|e| AppError::BadInput(toml_error(p, &text, &e)))?;
                config = Some((p, text));
                th
            }
            None => Thresholds::default(),
        };
        if let Some(v) = self.alert_health {
            th.alert_health = v;
        }
        if let Some(v) = self.rotate_health {
            th.rotate_health = v;
        }
        if let Some(v) = self.max_ptys {
            th.max_ptys = v;
        }
        th.validate().map_err(|e| {
            let flag = match e.key {
                "alert_health" if self.alert_health.is_some() => Some("--alert-health"),
                "rotate_health" if self.rotate_health.is_some() => Some("--rotate-health"),
                "max_ptys" if self.max_ptys.is_some() => Some("--max-ptys"),
                _ => None,
            };
            let at = match (flag, &config) {
                (Some(flag), _) => format!("{flag}: "),
                (None, Some((p, text))) => match key_line(text, e.key) {
                    Some(line) => format!("config {}:{line}: ", p.display()),
                    None => format!("config {}: ", p.display()),
                },
                (None, None) => String::new(),
            };
            AppError::BadInput(format!("{at}{e}"))
        })?;
        Ok(th)
    }
}

/// Shortest and longest `--interval`, longest `--duration`.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);
pub const MAX_INTERVAL: Duration = Duration::from_secs(3600);
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 86400);
/// Largest `--config` file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// `--interval` from 10 ms to an hour; `--duration`, when given, more than 0 and at most a year.
pub fn check_times(interval: Duration, duration: Option<Duration>) -> Result<(), String> {
    let show = |d: Duration| humantime::format_duration(d).to_string();
    if interval < MIN_INTERVAL {
        return Err(format!("--interval {} is too short: the minimum is {}", show(interval), show(MIN_INTERVAL)));
    }
    if interval > MAX_INTERVAL {
        return Err(format!("--interval {} is too long: the maximum is {}", show(interval), show(MAX_INTERVAL)));
    }
    match duration {
        Some(d) if d.is_zero() => {
            Err("--duration must be more than 0 (leave it out to trace until the command ends or Ctrl-C)".to_string())
        }
        Some(d) if d > MAX_DURATION => Err(format!("--duration is too long: the maximum is {} days", MAX_DURATION.as_secs() / 86400)),
        _ => Ok(()),
    }
}

fn read_config(p: &std::path::Path) -> AppResult<String> {
    use std::io::Read;
    let cannot = |e: &dyn std::fmt::Display| AppError::BadInput(format!("cannot read config {}: {e}", p.display()));
    let f = std::fs::File::open(p).map_err(|e| cannot(&e))?;
    let mut bytes = Vec::new();
    f.take(MAX_CONFIG_BYTES + 1).read_to_end(&mut bytes).map_err(|e| cannot(&e))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(cannot(&format_args!("larger than {MAX_CONFIG_BYTES} bytes")));
    }
    String::from_utf8(bytes).map_err(|_| AppError::BadInput(format!("config {}: not UTF-8 text", p.display())))
}

/// `config FILE:LINE:COLUMN: message` for a TOML error (its span is a byte range of `text`).
fn toml_error(p: &std::path::Path, text: &str, e: &toml::de::Error) -> String {
    let message = e.message().trim().replace('\n', "; ");
    match e.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            format!("config {}:{line}:{column}: {message}", p.display())
        }
        None => format!("config {}: {message}", p.display()),
    }
}

/// The line (from 1) where `key = ...` is set in a TOML text.
fn key_line(text: &str, key: &str) -> Option<usize> {
    text.lines().position(|l| {
        let l = l.trim_start();
        let rest = l.strip_prefix(key).or_else(|| l.strip_prefix(&format!("\"{key}\"")));
        rest.is_some_and(|r| r.trim_start().starts_with('='))
    })
    .map(|i| i + 1)
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 250ms, 5s, 2m"))
}

/// A size in bytes: a number with an optional K, M or G (powers of 1024), at least 4 KiB.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&t[..i], 1u64 << 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&t[..i], 1 << 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| format!("invalid size {s:?}: give bytes or a number with K, M or G, e.g. 64M"))?;
    let bytes = n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))?;
    if bytes < 4096 {
        return Err(format!("size {s:?} is too small: at least 4K"));
    }
    Ok(bytes)
}

fn parse_ring_size(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|_| format!("invalid ring buffer size {s:?}: give bytes, e.g. 16777216"))?;
    if v < 4096 || !v.is_power_of_two() {
        return Err(format!("ring buffer size {v} must be a power of two and at least 4096"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("soon").unwrap_err().contains("invalid duration"));
        assert!(check_times(parse_duration("1ms").unwrap(), None).is_err());
        assert!(parse_ring_size("1000").is_err());
        assert_eq!(parse_size("64M").unwrap(), 64 << 20);
        assert_eq!(parse_size("500k").unwrap(), 500 << 10);
        assert_eq!(parse_size("8192").unwrap(), 8192);
        assert!(parse_size("1").unwrap_err().contains("too small"));
        assert!(parse_size("lots").unwrap_err().contains("invalid size"));
        assert!(parse_size("99999999999G").unwrap_err().contains("too large"));
        assert_eq!(parse_ring_size("4096").unwrap(), 4096);
    }

    /// `pty-trace run ARGS -- true`'s thresholds (and time checks), as one error line.
    fn thresholds_of(args: &[&str]) -> Result<Thresholds, String> {
        let argv = ["pty-trace", "run"].iter().chain(args).chain(&["--", "true"]).copied().collect::<Vec<_>>();
        let Cmd::Run { common, .. } = Cli::try_parse_from(argv).map_err(|e| format!("clap: {e}"))?.command else { panic!("run") };
        common.thresholds().map_err(|e| {
            assert_eq!(e.exit_code(), crate::error::exit_code::BAD_INPUT, "{e}");
            let text = e.to_string();
            assert_eq!(text.lines().count(), 1, "one line: {text}");
            text
        })
    }

    fn config_file(name: &str, text: &str) -> String {
        let p = std::env::temp_dir().join(format!("pty-trace-cli-{}-{name}.toml", std::process::id()));
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    #[test]
    fn threshold_flags_are_range_checked_and_named() {
        for (args, needle) in [
            (&["--alert-health", "nan"][..], "--alert-health: alert_health (NaN) must be a number from 0 to 100"),
            (&["--alert-health", "-5"], "--alert-health: alert_health (-5) must be a number from 0 to 100"),
            (&["--alert-health=-5"], "--alert-health: alert_health (-5)"),
            (&["--alert-health", "500"], "--alert-health: alert_health (500)"),
            (&["--rotate-health", "inf"], "--rotate-health: rotate_health (inf)"),
            (&["--rotate-health", "90"], "--rotate-health: rotate health (90) must not be above alert health (70)"),
        ] {
            let e = thresholds_of(args).expect_err(needle);
            assert!(e.contains(needle), "{args:?}: {e:?} should contain {needle:?}");
        }
        let th = thresholds_of(&["--alert-health", "80", "--rotate-health", "0", "--max-ptys", "0"]).unwrap();
        assert_eq!((th.alert_health, th.rotate_health, th.max_ptys), (80.0, 0.0, 0));
    }

    #[test]
    fn duration_and_interval_bounds() {
        for (args, needle) in [
            (&["--duration", "0"][..], "--duration must be more than 0"),
            (&["--duration", "0s"], "--duration must be more than 0"),
            (&["--duration", "400days"], "--duration is too long: the maximum is 365 days"),
            (&["--interval", "1ms"], "--interval 1ms is too short: the minimum is 10ms"),
            (&["--interval", "0"], "--interval 0s is too short"),
            (&["--interval", "2h"], "--interval 2h is too long: the maximum is 1h"),
        ] {
            let e = thresholds_of(args).expect_err(needle);
            assert!(e.contains(needle), "{args:?}: {e:?} should contain {needle:?}");
        }
        assert!(thresholds_of(&["--duration", "1ms", "--interval", "10ms"]).is_ok());
        assert!(thresholds_of(&["--interval", "1h", "--duration", "365days"]).is_ok());
        // Not a duration at all: clap's usage error (exit 2), not ours.
        assert!(thresholds_of(&["--duration", "soon"]).unwrap_err().starts_with("clap: "));
    }

    #[test]
    fn config_errors_give_line_and_column_and_name_the_key() {
        let unknown = config_file("unknown", "alert_health = 60.0\n\nalert_helth = 50\n");
        let e = thresholds_of(&["--config", &unknown]).unwrap_err();
        assert!(e.starts_with(&format!("config {unknown}:3:1: unknown field `alert_helth`")), "{e}");
        let syntax = config_file("syntax", "max_ptys = 6\nrotate_health = = 3\n");
        let e = thresholds_of(&["--config", &syntax]).unwrap_err();
        assert!(e.starts_with(&format!("config {syntax}:2:")), "{e}");
        let negative = config_file("negative", "max_ptys = -1\n");
        let e = thresholds_of(&["--config", &negative]).unwrap_err();
        assert!(e.starts_with(&format!("config {negative}:1:12: ")) && e.contains("-1"), "{e}");
        let range = config_file("range", "# thresholds\nalert_health = 500\n");
        let e = thresholds_of(&["--config", &range]).unwrap_err();
        assert_eq!(e, format!("config {range}:2: alert_health (500) must be a number from 0 to 100"));
        let nan = config_file("nan", "abandon_grace_s = nan\n");
        let e = thresholds_of(&["--config", &nan]).unwrap_err();
        assert_eq!(e, format!("config {nan}:1: abandon_grace_s (NaN) must be a number of seconds, 0 or more"));
        // A flag overrides the file, and is what the message names.
        let e = thresholds_of(&["--config", &range, "--alert-health", "-1"]).unwrap_err();
        assert!(e.starts_with("--alert-health: alert_health (-1)"), "{e}");
        assert_eq!(thresholds_of(&["--config", &range, "--alert-health", "60"]).unwrap().alert_health, 60.0);
        let e = thresholds_of(&["--config", "/nonexistent/t.toml"]).unwrap_err();
        assert!(e.starts_with("cannot read config /nonexistent/t.toml"), "{e}");
        for p in [unknown, syntax, negative, range, nan] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn run_takes_the_rest_of_the_line() {
        let c = Cli::try_parse_from(["pty-trace", "run", "--no-tui", "--", "ls", "-la", "--jsonl"]).unwrap();
        match c.command {
            Cmd::Run { cmd, common, .. } => {
                assert_eq!(cmd, vec!["ls", "-la", "--jsonl"]);
                assert!(common.no_tui);
            }
            _ => panic!("expected run"),
        }
        let c = Cli::try_parse_from(["pty-trace", "run", "sleep", "1"]).unwrap();
        assert!(matches!(c.command, Cmd::Run { .. }));
        assert!(Cli::try_parse_from(["pty-trace", "attach"]).is_err());
    }
}
