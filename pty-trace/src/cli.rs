//! Command-line interface (clap). Parsing only: no behaviour lives here.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

use crate::{
    core::score::Thresholds,
    error::{AppError, AppResult},
};

const EXAMPLES: &str = "\
Examples:
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
judge from); 10 --exit-on-rotate fired; 11 doctor found a blocking problem;
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
Example:\n  sudo pty-trace run --jsonl run.jsonl -- bash -c 'for i in 1 2 3; do script -qc true /dev/null; done'")]
    Run {
        #[command(flatten)]
        common: TraceArgs,
        /// Send the command's stdout and stderr to this file (created 0600; never through a symlink). Without it they go to pty-trace's own (stdout to stderr when JSONL is on stdout), or nowhere under the live view.
        #[arg(long, value_name = "FILE")]
        child_output: Option<PathBuf>,
        /// The command and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true, value_name = "CMD")]
        cmd: Vec<String>,
    },
    /// Forensic report of a JSONL recording.
    #[command(after_help = "Exit status 0 for a summary's verdict (HEALTHY, LEAK DETECTED, LEAKED EARLIER, RECOVERED), 7 for INCOMPLETE (a session has no summary: the recording was cut short), 8 for UNKNOWN (no snapshot and no summary to judge from), 6 if the file has no valid record.\n\nExample:\n  pty-trace report leak.jsonl\n  pty-trace report --json leak.jsonl | jq .verdict\n  ssh host cat agent.jsonl | pty-trace report -")]
    Report {
        /// The recording; `-` reads standard input (pipes and FIFOs are streamed too).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Print the report as one JSON object.
        #[arg(long)]
        json: bool,
    },
    /// Check that this machine can trace (kernel, BTF, tracefs, BPF permission, tracepoints, limits).
    #[command(after_help = "Exit status 0 only if tracing can work.\n\nExample:\n  sudo pty-trace doctor --fix")]
    Doctor {
        /// Fix what can be fixed (mount tracefs).
        #[arg(long)]
        fix: bool,
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

#[derive(Args, Debug, Clone)]
pub struct TraceArgs {
    /// Headless: no live view (the default when stdout is not a terminal).
    #[arg(long)]
    pub no_tui: bool,
    /// Write JSONL records to PATH (`-` = stdout). Headless runs default to stdout.
    #[arg(long, value_name = "PATH|-")]
    pub jsonl: Option<String>,
    /// Snapshot period, e.g. 250ms, 1s, 2m.
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// Stop after this long.
    #[arg(long, value_parser = parse_duration)]
    pub duration: Option<Duration>,
    /// Kernel ring buffer size in bytes (power of two, at least 4096).
    #[arg(long, default_value_t = pty_trace_common::DEFAULT_RING_BYTES, value_parser = parse_ring_size)]
    pub ring_buffer_size: u32,
    /// Print the kernel programs' diagnostics (rare failures: a tracepoint field they cannot
    /// read, a child the TRACKED map has no room for) to stderr.
    #[arg(long)]
    pub debug_kernel: bool,
    /// Scoring thresholds from a TOML file (see docs/health.md).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Alert when health drops below this.
    #[arg(long)]
    pub alert_health: Option<f64>,
    /// Decide "rotate" when health drops below this.
    #[arg(long)]
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
}

impl TraceArgs {
    /// The scoring thresholds: defaults, then `--config FILE`, then the threshold flags;
    /// checked for consistency.
    pub fn thresholds(&self) -> AppResult<Thresholds> {
        let a = self;
    let mut th = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| AppError::BadInput(format!("cannot read config {}: {e}", p.display())))?;
            toml::from_str(&text).map_err(|e| {
                AppError::BadInput(format!("config {}: {}", p.display(), e.message()))
            })?
        }
        None => Thresholds::default(),
    };
    if let Some(v) = a.alert_health {
        th.alert_health = v;
    }
    if let Some(v) = a.rotate_health {
        th.rotate_health = v;
    }
    if let Some(v) = a.max_ptys {
        th.max_ptys = v;
    }
    for (key, v) in [("abandon_grace_s", th.abandon_grace_s), ("overtaken_after_s", th.overtaken_after_s)] {
        if !(v.is_finite() && v >= 0.0) {
            return Err(AppError::BadInput(format!("{key} ({v}) must be a number of seconds, 0 or more")));
        }
    }
    if th.window_commands < th.min_commands {
        return Err(AppError::BadInput(format!(
            "window_commands ({}) must be at least min_commands ({})",
            th.window_commands, th.min_commands
        )));
    }
    if th.rotate_health > th.alert_health {
        return Err(AppError::BadInput(format!(
            "rotate health ({}) must not be above alert health ({})",
            th.rotate_health, th.alert_health
        )));
    }
    Ok(th)
}
}

pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim()).map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 250ms, 5s, 2m"))
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let d = parse_duration(s)?;
    if d < Duration::from_millis(10) {
        return Err(format!("interval {s:?} is too short: the minimum is 10ms"));
    }
    Ok(d)
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
        assert!(parse_interval("1ms").is_err());
        assert!(parse_ring_size("1000").is_err());
        assert_eq!(parse_ring_size("4096").unwrap(), 4096);
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
