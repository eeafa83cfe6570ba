//! Workloads and configurations: the [`Workload`]s and tracer [`Config`]s of the matrix, what one
//! timed run records ([`Sample`], [`TraceInfo`]) and the suite's context ([`Ctx`]).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Workload {
    OpenClose,
    Ptys,
    ForkExec,
    Agent,
}

pub(crate) const WORKLOADS: [Workload; 4] = [Workload::OpenClose, Workload::Ptys, Workload::ForkExec, Workload::Agent];

impl Workload {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Workload::OpenClose => "openclose",
            Workload::Ptys => "ptys",
            Workload::ForkExec => "forkexec",
            Workload::Agent => "agent",
        }
    }
    pub(crate) fn what(self) -> &'static str {
        match self {
            Workload::OpenClose => "tight loop: open+close /dev/null",
            Workload::Ptys => "PTY pairs: ptmx, grantpt/unlockpt, TIOCGPTN, slave, close both",
            Workload::ForkExec => "fork/exec storm: fork + exec /bin/true + waitpid",
            Workload::Agent => "agent session: one fresh PTY per shell command (git status / ls -la /usr/bin / python3)",
        }
    }
    pub(crate) fn n(self, quick: bool) -> u64 {
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
pub(crate) enum Config {
    Untraced,
    PtyTrace,
    Bpftrace,
    Strace,
}

pub(crate) const CONFIGS: [Config; 4] = [Config::Untraced, Config::PtyTrace, Config::Bpftrace, Config::Strace];

impl Config {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Config::Untraced => "untraced",
            Config::PtyTrace => "pty-trace",
            Config::Bpftrace => "bpftrace",
            Config::Strace => "strace -f",
        }
    }
}

/// strace runs the tight loop at N/STRACE_OPENCLOSE_DIV iterations (scaled up, labelled).
pub(crate) const STRACE_OPENCLOSE_DIV: u64 = 100;

/// What a `pty-trace` session's JSONL said about itself.
#[derive(Clone, Debug, Default)]
pub(crate) struct TraceInfo {
    pub(crate) ready_ms: f64,
    pub(crate) load_ms: f64,
    pub(crate) attached_tracepoints: u64,
    pub(crate) events: u64,
    pub(crate) lost_events: u64,
    pub(crate) decode_errors: u64,
    pub(crate) drift: u64,
    pub(crate) cpu_s: f64,
    pub(crate) max_rss_kib: u64,
    pub(crate) ring_buffer_bytes: u64,
    pub(crate) duration_s: f64,
    pub(crate) processes_seen: u64,
    /// Wall time of the pty-trace process itself (spawn to exit).
    pub(crate) process_wall_s: f64,
}

/// One timed run of one configuration.
#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub(crate) config: Config,
    pub(crate) round: usize,
    /// Per workload: (iterations run, loop wall ns, loop CPU ns of the workload process).
    pub(crate) times: BTreeMap<Workload, (u64, u128, u128)>,
    pub(crate) trace: Option<TraceInfo>,
    /// bpftrace: syscall entries it counted (a sanity check of its filter).
    pub(crate) bt_events: Option<u64>,
    /// Other tracers (not ours) running at the start or end of the sample.
    pub(crate) foreign: Vec<String>,
    /// CPU time used on the machine during the sample by processes that are not ours, in cores.
    pub(crate) background_cores: f64,
}

pub(crate) struct Ctx {
    pub(crate) quick: bool,
    pub(crate) rounds: usize,
    pub(crate) root: PathBuf,
    pub(crate) pty_trace: PathBuf,
    pub(crate) benchload: PathBuf,
    pub(crate) work: PathBuf,
    pub(crate) bt_arrow: bool,
    pub(crate) bt_version: String,
    pub(crate) strace_version: String,
    pub(crate) timeout: Duration,
    /// How long one sample waits for other tracers to finish ...
    pub(crate) quiet_wait: Duration,
    /// ... and how long all samples together may wait (the machine may be shared all along).
    pub(crate) quiet_budget: std::cell::Cell<Duration>,
    pub(crate) notes: Vec<String>,
    /// `--probes` for the pty-trace runs (`bench backends` sets it per sample; None: pty-trace's
    /// own choice).
    pub(crate) probes: std::cell::Cell<Option<&'static str>>,
}
