//! Prometheus metrics (`--metrics ADDR`): what a scrape shows, built from the same records the
//! JSONL carries at the same interval, so the two always agree.
//!
//! The tracer (or `top`) hands each interval's records to [`Metrics`]; a scrape encodes the
//! latest values with `prometheus-client` in the Prometheus text format (0.0.4). The metrics
//! are a `Collector` over a plain state rather than long-lived `Family`s: a session or process
//! that is gone disappears from the next scrape instead of lingering as a stale series, and a
//! counter is the tracer's own total, never re-counted here.
//!
//! Names follow Prometheus conventions: `pty_trace_` prefix, base units, `_total` on counters
//! (added by the encoder), an `_info` gauge. Labels are bounded: per-process series only for
//! the `max_processes` processes holding the most PTY masters (then fds); sessions are bounded
//! by the tracer's own cap (`watch --max-sessions`).

use std::{
    collections::BTreeMap,
    fmt::Error as FmtError,
    sync::{Arc, Mutex},
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};

use crate::core::{
    machine::MachineRec,
    records::{ProbeBackend, SnapshotRec},
};

/// Per-process series by default (`--metrics-max-processes`).
pub const DEFAULT_MAX_PROCESSES: usize = 20;

/// One session's latest snapshot, as metrics.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionSample {
    pub comm: String,
    pub health: f64,
    pub leak_score: f64,
    pub pty_masters: u64,
    pub orphaned_ptys: u64,
    pub fds: u64,
    pub processes: u64,
    pub commands: u64,
    pub ptys_per_command: f64,
    pub fds_per_command: f64,
    pub exhaustion_estimate_s: Option<f64>,
    pub must_rotate: bool,
}

/// One process, as metrics (a session's, or a `top` holder).
#[derive(Clone, Debug, PartialEq)]
pub struct ProcessSample {
    /// Its session's root; empty for `top`.
    pub session: String,
    pub pid: u32,
    pub comm: String,
    /// Empty for the host.
    pub container: String,
    pub fds: u64,
    pub pty_masters: u64,
    /// Only `top` knows orphans per process.
    pub orphaned_ptys: Option<u64>,
}

/// The tracer's own totals.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct TracerSample {
    pub events: u64,
    pub lost_events: u64,
    pub drift: u64,
    pub untracked_children: u64,
    pub cpu_s: f64,
    pub unreadable_processes: u64,
}

/// One devpts instance (from `top`).
#[derive(Clone, Debug, PartialEq)]
pub struct DevptsSample {
    pub devpts: String,
    pub container: String,
    pub ptys: u64,
    pub orphaned: u64,
}

/// Everything a scrape shows.
#[derive(Clone, Debug, Default)]
pub struct MetricsState {
    pub version: String,
    pub probes: String,
    pub sessions: BTreeMap<u32, SessionSample>,
    pub sessions_ended: u64,
    pub session_processes: BTreeMap<u32, Vec<ProcessSample>>,
    /// `top`'s holders.
    pub holders: Vec<ProcessSample>,
    /// `kernel.pty.nr`, `kernel.pty.max`.
    pub pool: Option<(u64, u64)>,
    pub devpts: Vec<DevptsSample>,
    pub tracer: Option<TracerSample>,
    /// `watch`: matches not followed because `--max-sessions` were followed already, and
    /// execs of untracked processes the kernel could not report (ring buffer full).
    pub watch_skipped: Option<u64>,
    pub watch_execs_lost: u64,
    pub max_processes: usize,
}

impl MetricsState {
    /// The processes with series: the most PTY masters, then fds, at most `max_processes`.
    pub fn top_processes(&self) -> Vec<&ProcessSample> {
        let mut all: Vec<&ProcessSample> = self.session_processes.values().flatten().chain(&self.holders).collect();
        all.sort_by(|a, b| (b.pty_masters, b.fds, a.pid).cmp(&(a.pty_masters, a.fds, b.pid)));
        all.truncate(self.max_processes);
        all
    }
}

/// The metrics of one pty-trace process: cheap to clone (one shared state).
#[derive(Clone, Debug)]
pub struct Metrics {
    state: Arc<Mutex<MetricsState>>,
    registry: Arc<Registry>,
}

impl Metrics {
    /// `probes`: the backend's name, `none` for `top`.
    pub fn new(probes: &str, max_processes: usize) -> Metrics {
        let state = Arc::new(Mutex::new(MetricsState {
            version: env!("CARGO_PKG_VERSION").to_string(),
            probes: probes.to_string(),
            max_processes,
            ..MetricsState::default()
        }));
        let mut registry = Registry::with_prefix("pty_trace");
        registry.register_collector(Box::new(StateCollector(Arc::clone(&state))));
        Metrics { state, registry: Arc::new(registry) }
    }

    fn with<R>(&self, f: impl FnOnce(&mut MetricsState) -> R) -> R {
        // A panic elsewhere while holding the lock leaves values that are still numbers.
        let mut g = self.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    pub fn set_probes(&self, backend: ProbeBackend) {
        self.with(|s| s.probes = backend.name().to_string());
    }

    /// A session's snapshot, as written to the JSONL. `comm`: its root's command name (`None`
    /// once the root has exited: the name seen before is kept); `rotate_health`: below it the
    /// session must rotate (the scorer's rule).
    pub fn session(&self, snap: &SnapshotRec, comm: Option<&str>, rotate_health: f64) {
        let t = &snap.totals;
        let known = comm.map(str::to_string).or_else(|| self.with(|s| s.sessions.get(&snap.session).map(|x| x.comm.clone())));
        let sample = SessionSample {
            comm: known.unwrap_or_default(),
            health: snap.health,
            leak_score: snap.leak_score,
            pty_masters: t.pty_masters as u64,
            orphaned_ptys: t.orphaned_ptys as u64,
            fds: t.fds as u64,
            processes: t.processes as u64,
            commands: snap.commands as u64,
            ptys_per_command: snap.pty_per_command,
            fds_per_command: snap.fd_per_command,
            exhaustion_estimate_s: snap.est_seconds_to_exhaustion,
            must_rotate: snap.health < rotate_health,
        };
        let procs = snap
            .processes
            .iter()
            .map(|p| ProcessSample {
                session: snap.session.to_string(),
                pid: p.pid,
                comm: p.comm.clone(),
                container: String::new(),
                fds: p.fds as u64,
                pty_masters: p.pty_masters as u64,
                orphaned_ptys: None,
            })
            .collect();
        self.with(|s| {
            s.sessions.insert(snap.session, sample);
            s.session_processes.insert(snap.session, procs);
            s.pool = Some((snap.pty_nr, snap.pty_max));
        });
    }

    /// A session that ended (its summary was written): its series go.
    pub fn session_ended(&self, session: u32) {
        self.with(|s| {
            if s.sessions.remove(&session).is_some() {
                s.sessions_ended += 1;
            }
            s.session_processes.remove(&session);
        });
    }

    pub fn tracer(&self, t: TracerSample) {
        self.with(|s| s.tracer = Some(t));
    }

    /// `watch`'s own counts.
    pub fn watch(&self, skipped: u64, execs_lost: u64) {
        self.with(|s| {
            s.watch_skipped = Some(skipped);
            s.watch_execs_lost = execs_lost;
        });
    }

    /// `kernel.pty.nr` and `kernel.pty.max`, read every interval.
    pub fn pool(&self, nr: u64, max: u64) {
        self.with(|s| s.pool = Some((nr, max)));
    }

    /// `top`'s record: the pool, each devpts instance, the holders.
    pub fn machine(&self, rec: &MachineRec) {
        let m = &rec.machine;
        let devpts = m
            .devpts
            .iter()
            .map(|i| DevptsSample {
                devpts: i.instance.devpts.to_string(),
                container: i.instance.container.clone().unwrap_or_default(),
                ptys: i.ptys,
                orphaned: i.orphaned,
            })
            .collect();
        let holders = rec
            .processes
            .iter()
            .map(|h| ProcessSample {
                session: String::new(),
                pid: h.pid,
                comm: comm_of_command(&h.command),
                container: h.container.clone().unwrap_or_default(),
                fds: h.fds,
                pty_masters: h.masters,
                orphaned_ptys: Some(h.orphaned),
            })
            .collect();
        self.with(|s| {
            s.pool = Some((m.pty_nr, m.pty_max));
            s.devpts = devpts;
            s.holders = holders;
            s.tracer.get_or_insert_with(TracerSample::default).unreadable_processes = m.unreadable;
        });
    }

    /// The Prometheus text format (0.0.4) of everything now.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; the collector's own errors are none either.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }

    /// A copy of the state (tests, the live view).
    pub fn state(&self) -> MetricsState {
        self.with(|s| s.clone())
    }
}

/// A command name for a `top` holder: its program's base name, at most 15 bytes like comm.
fn comm_of_command(command: &str) -> String {
    let program = command.split_whitespace().next().unwrap_or("");
    let base = program.rsplit('/').next().unwrap_or(program);
    base.chars().take(15).collect()
}

#[derive(Debug)]
struct StateCollector(Arc<Mutex<MetricsState>>);

type Labels = Vec<(&'static str, String)>;
/// A per-session gauge: its name, its help, and its value (none: no series) from a sample.
type SessionGauge<'a> = (&'a str, &'a str, &'a dyn Fn(&SessionSample) -> Option<f64>);

/// Encodes one metric family: `name`, its help and type, one sample per label set.
fn family<M: EncodeMetric>(e: &mut DescriptorEncoder, name: &str, help: &str, kind: MetricType, samples: Vec<(Labels, M)>) -> Result<(), FmtError> {
    if samples.is_empty() {
        return Ok(());
    }
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in samples {
        v.encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauge(v: f64) -> ConstGauge<f64> {
    ConstGauge::new(v)
}

fn counter(v: f64) -> ConstCounter<f64> {
    ConstCounter::new(v)
}

impl Collector for StateCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> Result<(), FmtError> {
        let s = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let g = MetricType::Gauge;
        let c = MetricType::Counter;
        family(
            &mut e,
            "build_info",
            "pty-trace's version and kernel probe backend (fentry, tracepoint, or none for top); always 1",
            g,
            vec![(vec![("version", s.version.clone()), ("probes", s.probes.clone())], gauge(1.0))],
        )?;

        // Sessions.
        let labels = |root: &u32, x: &SessionSample| vec![("session", root.to_string()), ("comm", x.comm.clone())];
        let per = |f: &dyn Fn(&SessionSample) -> Option<f64>| -> Vec<(Labels, ConstGauge<f64>)> {
            s.sessions.iter().filter_map(|(r, x)| f(x).map(|v| (labels(r, x), gauge(v)))).collect()
        };
        let gauges: [SessionGauge; 10] = [
            ("session_health", "Session health score, 0 (must rotate) to 100 (healthy), as in the JSONL snapshot", &|x| Some(x.health)),
            ("session_leak_score", "Session leak score (0 = no leak evidence), as in the JSONL snapshot", &|x| Some(x.leak_score)),
            ("session_pty_masters", "PTY master fds held by the session's processes", &|x| Some(x.pty_masters as f64)),
            ("session_orphaned_ptys", "PTYs whose master the session holds while no process holds the slave", &|x| Some(x.orphaned_ptys as f64)),
            ("session_fds", "Open fds of the session's processes", &|x| Some(x.fds as f64)),
            ("session_processes", "Processes in the session", &|x| Some(x.processes as f64)),
            ("session_ptys_per_command", "PTYs gained per command (recent window)", &|x| Some(x.ptys_per_command)),
            ("session_fds_per_command", "Fds gained per command (recent window)", &|x| Some(x.fds_per_command)),
            (
                "session_exhaustion_estimate_seconds",
                "Estimate: seconds until the PTY pool or the fd limit runs out at the current rate (absent when not growing)",
                &|x| x.exhaustion_estimate_s,
            ),
            ("session_must_rotate", "1 when the session's health is below the rotate threshold", &|x| Some(if x.must_rotate { 1.0 } else { 0.0 })),
        ];
        for (name, help, f) in gauges {
            family(&mut e, name, help, g, per(f))?;
        }
        let commands = s.sessions.iter().map(|(r, x)| (labels(r, x), counter(x.commands as f64))).collect();
        family(&mut e, "session_commands", "Commands (execs the session's work root started) so far", c, commands)?;
        // `top` traces no session.
        if s.probes != "none" {
            family(&mut e, "sessions", "Sessions being traced now", g, vec![(vec![], gauge(s.sessions.len() as f64))])?;
            family(&mut e, "sessions_ended", "Sessions that ended (their summary was written)", c, vec![(vec![], counter(s.sessions_ended as f64))])?;
        }

        if let Some(n) = s.watch_skipped {
            family(&mut e, "watch_skipped", "watch: matching processes not followed (--max-sessions reached)", c, vec![(vec![], counter(n as f64))])?;
            family(
                &mut e,
                "watch_execs_lost",
                "watch: execs of untraced processes the kernel could not report (ring buffer full); a match among them is found later by the look through /proc",
                c,
                vec![(vec![], counter(s.watch_execs_lost as f64))],
            )?;
        }

        // Processes: the top N only.
        let top = s.top_processes();
        let plabels = |p: &ProcessSample| {
            vec![("session", p.session.clone()), ("pid", p.pid.to_string()), ("comm", p.comm.clone()), ("container", p.container.clone())]
        };
        family(&mut e, "process_fds", "Open fds of a process (the top N by PTY masters, then fds)", g, top.iter().map(|p| (plabels(p), gauge(p.fds as f64))).collect())?;
        family(
            &mut e,
            "process_pty_masters",
            "PTY master fds a process holds (the top N)",
            g,
            top.iter().map(|p| (plabels(p), gauge(p.pty_masters as f64))).collect(),
        )?;
        family(
            &mut e,
            "process_orphaned_ptys",
            "PTY masters a process holds whose slave no process holds (top only)",
            g,
            top.iter().filter_map(|p| p.orphaned_ptys.map(|o| (plabels(p), gauge(o as f64)))).collect(),
        )?;

        // The machine.
        if let Some((nr, max)) = s.pool {
            family(&mut e, "pty_pool_used", "PTYs allocated on the machine (kernel.pty.nr)", g, vec![(vec![], gauge(nr as f64))])?;
            family(&mut e, "pty_pool_max", "PTYs the machine allows (kernel.pty.max)", g, vec![(vec![], gauge(max as f64))])?;
        }
        let dlabels = |d: &DevptsSample| vec![("devpts", d.devpts.clone()), ("container", d.container.clone())];
        family(&mut e, "devpts_ptys", "PTYs with a master held, per devpts instance", g, s.devpts.iter().map(|d| (dlabels(d), gauge(d.ptys as f64))).collect())?;
        family(
            &mut e,
            "devpts_orphaned_ptys",
            "PTYs whose master is held while no process holds the slave, per devpts instance",
            g,
            s.devpts.iter().map(|d| (dlabels(d), gauge(d.orphaned as f64))).collect(),
        )?;

        // The tracer itself.
        if let Some(t) = s.tracer {
            if s.probes != "none" {
                family(&mut e, "events", "Kernel events the tracer applied", c, vec![(vec![], counter(t.events as f64))])?;
                family(&mut e, "lost_events", "Kernel events lost (ring buffer full or a map full); counts may be low", c, vec![(vec![], counter(t.lost_events as f64))])?;
                family(&mut e, "drift", "Corrections /proc made to the model", c, vec![(vec![], counter(t.drift as f64))])?;
                family(
                    &mut e,
                    "untracked_children",
                    "Children the kernel could not track (TRACKED map full)",
                    c,
                    vec![(vec![], counter(t.untracked_children as f64))],
                )?;
                family(&mut e, "cpu_seconds", "CPU seconds the tracer used (user + system)", c, vec![(vec![], counter(t.cpu_s))])?;
            }
            family(
                &mut e,
                "unreadable_processes",
                "Processes whose /proc entries the tracer could not read in the latest scan",
                g,
                vec![(vec![], gauge(t.unreadable_processes as f64))],
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::records::{ProcessRec, Totals};

    fn snap(session: u32, health: f64, masters: usize, procs: &[(u32, usize, usize)]) -> SnapshotRec {
        SnapshotRec {
            session,
            processes: procs
                .iter()
                .map(|&(pid, fds, m)| ProcessRec {
                    pid,
                    ppid: 1,
                    comm: format!("p{pid}"),
                    fds,
                    pty_masters: m,
                    pty_slaves: 0,
                    command: None,
                    age_s: 1.0,
                })
                .collect(),
            totals: Totals { processes: procs.len(), fds: 10, pty_masters: masters, orphaned_ptys: masters, ..Totals::default() },
            commands: 7,
            health,
            leak_score: 12.5,
            pty_per_command: 1.0,
            est_seconds_to_exhaustion: (masters > 0).then_some(3600.0),
            pty_nr: 40,
            pty_max: 4096,
            ..SnapshotRec::default()
        }
    }

    fn line<'a>(text: &'a str, start: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(start)).collect()
    }

    #[test]
    fn a_scrape_shows_the_snapshot_values_with_conventional_names() {
        let m = Metrics::new("tracepoint", DEFAULT_MAX_PROCESSES);
        m.session(&snap(42, 30.0, 5, &[(42, 10, 5)]), Some("agent"), 50.0);
        m.session(&snap(43, 100.0, 0, &[(43, 4, 0)]), Some("tmux: server"), 50.0);
        m.tracer(TracerSample { events: 1000, lost_events: 0, drift: 2, untracked_children: 0, cpu_s: 0.25, unreadable_processes: 1 });
        let t = m.encode();
        assert!(t.contains("# TYPE pty_trace_build_info gauge\npty_trace_build_info{version=\"0.1.0\",probes=\"tracepoint\"} 1"), "{t}");
        assert_eq!(line(&t, "pty_trace_session_health{"), [
            "pty_trace_session_health{session=\"42\",comm=\"agent\"} 30.0",
            "pty_trace_session_health{session=\"43\",comm=\"tmux: server\"} 100.0"
        ]);
        assert_eq!(line(&t, "pty_trace_session_must_rotate{"), [
            "pty_trace_session_must_rotate{session=\"42\",comm=\"agent\"} 1.0",
            "pty_trace_session_must_rotate{session=\"43\",comm=\"tmux: server\"} 0.0"
        ]);
        assert!(t.contains("# TYPE pty_trace_session_commands_total counter\n"), "{t}");
        assert!(t.contains("pty_trace_session_commands_total{session=\"42\",comm=\"agent\"} 7.0"), "{t}");
        // Only the session that has an estimate has the series.
        assert_eq!(line(&t, "pty_trace_session_exhaustion_estimate_seconds{").len(), 1, "{t}");
        assert!(t.contains("pty_trace_pty_pool_used 40.0\n") && t.contains("pty_trace_pty_pool_max 4096.0\n"), "{t}");
        assert!(t.contains("pty_trace_events_total 1000.0\n") && t.contains("pty_trace_lost_events_total 0.0\n"), "{t}");
        assert!(t.contains("pty_trace_cpu_seconds_total 0.25\n") && t.contains("pty_trace_drift_total 2.0\n"), "{t}");
        assert!(t.contains("pty_trace_sessions 2.0\n"), "{t}");
        // Every sample line is NAME{labels} VALUE or NAME VALUE, every family has HELP and TYPE.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let (name, value) = l.rsplit_once(' ').unwrap();
            assert!(name.starts_with("pty_trace_"), "{l}");
            assert!(value.parse::<f64>().is_ok(), "{l}");
        }
        assert_eq!(t.matches("# HELP").count(), t.matches("# TYPE").count());
    }

    #[test]
    fn an_ended_session_leaves_the_scrape_and_is_counted() {
        let m = Metrics::new("fentry", DEFAULT_MAX_PROCESSES);
        m.session(&snap(42, 30.0, 5, &[(42, 10, 5)]), Some("agent"), 50.0);
        m.session_ended(42);
        m.session_ended(42);
        let t = m.encode();
        assert!(!t.contains("session=\"42\""), "{t}");
        assert!(t.contains("pty_trace_sessions_ended_total 1.0\n") && t.contains("pty_trace_sessions 0.0\n"), "{t}");
    }

    #[test]
    fn per_process_series_are_capped_to_the_biggest_holders() {
        let m = Metrics::new("fentry", 2);
        m.session(&snap(1, 100.0, 0, &[(1, 5, 0), (2, 50, 0), (3, 6, 9)]), Some("a"), 50.0);
        m.session(&snap(10, 100.0, 0, &[(10, 100, 1)]), Some("b"), 50.0);
        let t = m.encode();
        let pids: Vec<&str> = line(&t, "pty_trace_process_pty_masters{").iter().map(|l| l.split("pid=\"").nth(1).unwrap().split('"').next().unwrap()).collect();
        assert_eq!(pids, ["3", "10"], "most masters first, then fds: {t}");
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new("fentry", 20);
        m.session(&snap(1, 100.0, 0, &[]), Some("a\"b\\c\nd"), 50.0);
        let t = m.encode();
        assert!(t.contains(r#"comm="a\"b\\c\nd""#), "{t}");
    }
}
