//! The JSONL records, defined once: the tracer writes them (`output::jsonl`), `report` reads
//! them back (`core::report`), the tests parse them, and `schema/pty-trace.schema.json`
//! describes them (a test checks records the real tracer wrote against it). docs/jsonl.md
//! documents every field.
//!
//! Every line is an object `{"type": KIND, "schema": SCHEMA_VERSION, "ts": RFC3339, ...body}`.
//! Adding a field is not a schema change (readers ignore what they do not know, and fields
//! added later carry `#[serde(default)]` so older recordings still read); removing or
//! changing one is, and bumps [`SCHEMA_VERSION`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use super::model::{
    FdKind,
    pty::{Holder, PtyPair},
};
pub use super::score::Scores;

/// Version of the record layout; bumped on any incompatible change (see docs/jsonl.md).
pub const SCHEMA_VERSION: u32 = 1;

/// What a line is; its `type` field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    Start,
    Snapshot,
    Alert,
    Decision,
    Summary,
    /// `pty-trace top`'s machine-wide view (see `core::machine`).
    Machine,
}

impl RecordKind {
    /// The kind named `name`; `None` for a kind this version does not know.
    pub fn from_name(name: &str) -> Option<RecordKind> {
        Some(match name {
            "start" => RecordKind::Start,
            "snapshot" => RecordKind::Snapshot,
            "alert" => RecordKind::Alert,
            "decision" => RecordKind::Decision,
            "summary" => RecordKind::Summary,
            "machine" => RecordKind::Machine,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Start => "start",
            RecordKind::Snapshot => "snapshot",
            RecordKind::Alert => "alert",
            RecordKind::Decision => "decision",
            RecordKind::Summary => "summary",
            RecordKind::Machine => "machine",
        }
    }
}

/// Wraps a record body with the fields every line has (the write side).
#[derive(Serialize)]
pub struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: RecordKind,
    pub schema: u32,
    pub ts: &'a str,
    #[serde(flatten)]
    pub body: &'a T,
}

/// The fields every line has (the read side: the body is read separately, as its kind's
/// type, from the same line). `kind` is `None` for a `type` this version does not know.
#[derive(Deserialize)]
pub struct Head<'a> {
    #[serde(rename = "type", deserialize_with = "known_kind")]
    pub kind: Option<RecordKind>,
    pub schema: u32,
    #[serde(borrow)]
    pub ts: std::borrow::Cow<'a, str>,
}

fn known_kind<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<RecordKind>, D::Error> {
    let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
    Ok(RecordKind::from_name(&s))
}

impl<'a> Head<'a> {
    /// The envelope read off the start of a line laid out the way [`Envelope`] writes it
    /// (`{"type":"K","schema":N,"ts":"T",...`), without parsing the rest: the report reads
    /// each line once, as its body type, after this. `None` for any other layout (a line
    /// written by hand or by another tool), which is then parsed as JSON instead.
    pub fn peek(line: &'a str) -> Option<Head<'a>> {
        let rest = line.strip_prefix("{\"type\":\"")?;
        let (kind, rest) = rest.split_once('"')?;
        let rest = rest.strip_prefix(",\"schema\":")?;
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let schema = rest[..digits].parse().ok()?;
        let (ts, _) = rest[digits..].strip_prefix(",\"ts\":\"")?.split_once('"')?;
        if kind.contains('\\') || ts.contains('\\') {
            return None;
        }
        Some(Head { kind: RecordKind::from_name(kind), schema, ts: std::borrow::Cow::Borrowed(ts) })
    }
}

/// RFC 3339 UTC with milliseconds, from a wall-clock time in ns since the epoch.
pub fn rfc3339_ms(unix_ns: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(unix_ns as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// `start`: written once, when tracing begins.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StartRec {
    pub version: String,
    /// Session ids (root pids).
    pub sessions: Vec<u32>,
    /// `run`: the command (redacted).
    pub command: Option<Vec<String>>,
    pub ring_buffer_bytes: u32,
    /// The kernel hooks that report the events (absent in recordings made before there was
    /// a choice: those are `tracepoint`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<ProbeBackend>,
    /// `--probes auto` fell back to tracepoints: why the trampolines could not be used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes_fallback: Option<String>,
    /// Programs attached (tracepoints and trampolines alike; the name is the first schema's).
    pub attached_tracepoints: usize,
    /// Followed syscalls this kernel does not have.
    pub syscalls_not_followed: Vec<String>,
    pub tracefs: String,
    pub load_ms: f64,
    pub ready_ms: f64,
    pub interval_ms: u64,
    /// `attach`: processes whose /proc cmdline could not be read (their command shows empty).
    #[serde(default)]
    pub unreadable_cmdlines: u64,
}

/// Which kernel hooks report the events: BPF trampolines on the followed syscalls' functions
/// (`fentry`, the fast path), or the raw `sys_exit` and `sys_enter_close*` tracepoints, which
/// put every task of the machine on the syscall slow path while attached (`tracepoint`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProbeBackend {
    Fentry,
    Tracepoint,
}

impl ProbeBackend {
    pub const fn name(self) -> &'static str {
        match self {
            ProbeBackend::Fentry => "fentry",
            ProbeBackend::Tracepoint => "tracepoint",
        }
    }
}

impl std::fmt::Display for ProbeBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One process of a session at a snapshot.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ProcessRec {
    pub pid: u32,
    pub ppid: u32,
    pub comm: String,
    pub fds: usize,
    pub pty_masters: usize,
    pub pty_slaves: usize,
    /// The running command's argv (redacted), when its exec was seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    pub age_s: f64,
}

#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Totals {
    pub processes: usize,
    pub fds: usize,
    pub pty_masters: usize,
    pub pty_slaves: usize,
    /// Distinct PTYs whose master a session process holds (a master fd inherited by a forked
    /// child counts once); what `max_ptys`, `pty_peak` and PTY growth are measured in.
    /// Recordings from before it was written lack it (read as 0; `report` then counts master fds).
    #[serde(default)]
    pub ptys: usize,
    pub orphaned_ptys: usize,
}

/// `snapshot`: a session's state every interval.
///
/// `P` and `Y` are the types of the two bulky lists. The tracer writes them in full (the
/// defaults); `report` reads them as raw JSON it parses only when it needs them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct SnapshotRec<P = Vec<ProcessRec>, Y = Vec<PtyPair>> {
    pub session: u32,
    pub processes: P,
    pub totals: Totals,
    pub ptys: Y,
    /// Commands started (see `model::Session::commands`).
    pub commands: usize,
    /// All execs, chained ones included.
    pub execs: usize,
    pub health: f64,
    pub leak_score: f64,
    pub pty_per_command: f64,
    pub fd_per_command: f64,
    /// Labelled an estimate: extrapolated from the current growth rate.
    pub est_seconds_to_exhaustion: Option<f64>,
    pub reasons: Vec<String>,
    pub pty_nr: u64,
    pub pty_max: u64,
    pub lost_events: u64,
    /// Children the kernel could not add to its TRACKED map (it was full): they run untraced.
    #[serde(default)]
    pub untracked_children: u64,
    /// Traced processes whose fd table /proc refused to show (EACCES: pty-trace lacks
    /// CAP_SYS_PTRACE for another user's process) in this interval's scan: their counts are
    /// from kernel events alone, not checked.
    #[serde(default)]
    pub unreadable_procs: u64,
    pub drift: u64,
    #[serde(default)]
    pub drift_by_cause: BTreeMap<String, u64>,
    /// PTYs held without use now: abandoned plus left behind (see `core::evidence`).
    #[serde(default)]
    pub residual_ptys: usize,
    /// What the scores rest on (empty when healthy).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// The scorer judged this sample leaking (see docs/health.md).
    #[serde(default)]
    pub leaking: bool,
    /// Taken between intervals, because an orphaned PTY came due as evidence (a leak is named
    /// as soon as its evidence holds, whatever the interval).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub early: bool,
}

/// `alert`: health fell below `alert_health`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct AlertRec {
    pub session: u32,
    /// Omitted in the `alert` record itself, whose envelope carries `ts`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ts: String,
    pub health: f64,
    pub reasons: Vec<String>,
    /// What the reasons rest on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
}

/// What a decision asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionAction {
    /// Restart the session (agent, terminal) before it runs out of fds or PTYs.
    Rotate,
}

impl DecisionAction {
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionAction::Rotate => "rotate",
        }
    }
}

/// `decision`: health fell below `rotate_health`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DecisionRec {
    pub action: DecisionAction,
    pub session: u32,
    /// Omitted in the `decision` record itself, whose envelope carries `ts`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ts: String,
    pub health: f64,
    pub reasons: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// What `--on-rotate` did, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hook: Option<HookRec>,
}

/// The `--on-rotate` command that was started for a decision.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct HookRec {
    pub argv: Vec<String>,
    pub pid: Option<u32>,
    pub error: Option<String>,
}

/// A session's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Verdict {
    #[default]
    #[serde(rename = "HEALTHY")]
    Healthy,
    /// Leaking at the end: evidence still held, or given back only by its holder's exit.
    #[serde(rename = "LEAK DETECTED")]
    LeakDetected,
    /// Leaking at some point, and by the end the session had given back what it leaked.
    #[serde(rename = "LEAKED EARLIER, RECOVERED")]
    Recovered,
}

impl Verdict {
    pub fn of(leak_seen: bool, leaking_at_end: bool) -> Verdict {
        match (leak_seen || leaking_at_end, leaking_at_end) {
            (false, _) => Verdict::Healthy,
            (true, true) => Verdict::LeakDetected,
            (true, false) => Verdict::Recovered,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Healthy => "HEALTHY",
            Verdict::LeakDetected => "LEAK DETECTED",
            Verdict::Recovered => "LEAKED EARLIER, RECOVERED",
        }
    }
}

/// What a piece of leak evidence is (see `core::evidence`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// Master held, nothing uses the slave, past the grace period.
    AbandonedPty,
    /// In use only by a command the session moved on from.
    LeftBehindPty,
    /// The session's own processes keep fds per command, sustained.
    FdGrowth,
}

/// How evidence about a PTY ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceEnd {
    /// The session closed it (recovered).
    Closed,
    /// Released only because its holder exited.
    HolderExited,
}

/// One piece of evidence behind a score, an alert, a decision or a verdict.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub kind: EvidenceKind,
    /// The `N` of `/dev/pts/N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pty: Option<u32>,
    /// The holder (of the master, or of the leaked fds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fd: Option<i32>,
    /// The command it was opened for or left behind with (redacted argv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    /// How long the condition has held, in seconds.
    pub since_s: f64,
    /// Commands started while it held.
    pub commands_since: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended: Option<EvidenceEnd>,
    /// The evidence in words.
    pub why: String,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why tracing of a session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndReason {
    /// The session's root process exited.
    RootExited,
    /// `--duration` passed.
    Duration,
    /// A signal or the quit key.
    Interrupted,
    /// `--exit-on-rotate` after a rotate decision.
    Rotate,
    /// The reader of the JSONL stream went away (EPIPE, `| head`).
    OutputClosed,
    /// An error stopped tracing (a write error such as ENOSPC, the live view failing); the
    /// summary's `error` says which.
    Failed,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::RootExited => "root_exited",
            EndReason::Duration => "duration",
            EndReason::Interrupted => "interrupted",
            EndReason::Rotate => "rotate",
            EndReason::OutputClosed => "output_closed",
            EndReason::Failed => "failed",
        }
    }
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct Metrics {
    pub total_commands: usize,
    pub total_execs: usize,
    pub fd_peak: usize,
    pub pty_peak: usize,
    pub health_score_min: f64,
    pub health_score_final: f64,
}

/// An fd still open at the end that looks leaked (see `core::snapshot::leaked_at_end`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct LeakedFd {
    pub pid: u32,
    pub comm: String,
    pub fd: i32,
    pub kind: FdKind,
    pub target: String,
    pub pty_index: Option<u32>,
    pub opener_pid: u32,
    pub command: Option<Vec<String>>,
    pub age_s: f64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct DescendantRec {
    pub pid: u32,
    pub comm: String,
    pub command: Option<Vec<String>>,
}

/// What tracing cost.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub struct TracerCost {
    /// Kernel events decoded and applied to the model (all sessions).
    pub events: u64,
    /// Records that could not be decoded (should be 0).
    pub decode_errors: u64,
    /// CPU seconds pty-trace itself used (user + system), from getrusage.
    pub cpu_s: f64,
    /// pty-trace's peak resident set size in KiB.
    pub max_rss_kib: u64,
    /// Kernel ring buffer size in bytes.
    pub ring_buffer_bytes: u32,
}

/// `summary`: one per session, last.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct SummaryRec {
    pub session: u32,
    pub start: String,
    pub end: String,
    pub duration_s: f64,
    pub verdict: Verdict,
    pub end_reason: EndReason,
    pub metrics: Metrics,
    pub alerts: Vec<AlertRec>,
    pub actions: Vec<DecisionRec>,
    pub leaked_at_end: Vec<LeakedFd>,
    pub descendants_left_running: Vec<DescendantRec>,
    pub processes_seen: u64,
    pub lost_events: u64,
    /// See [`SnapshotRec::untracked_children`].
    #[serde(default)]
    pub untracked_children: u64,
    /// Most processes /proc refused to show in one scan (see [`SnapshotRec::unreadable_procs`]).
    #[serde(default)]
    pub unreadable_procs: u64,
    /// Records not written: the JSONL reader was too slow (the queue was full) or the output
    /// failed. Counted up to this summary; the count on stderr includes the ones after it.
    #[serde(default)]
    pub dropped_records: u64,
    /// Why tracing stopped early, when it failed (`end_reason` `failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub drift: u64,
    #[serde(default)]
    pub drift_by_cause: BTreeMap<String, u64>,
    /// The first corrections in words: attach them to a bug report.
    #[serde(default)]
    pub drift_examples: Vec<String>,
    /// `run`: the command's exit status (128+N when killed by signal N).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<i32>,
    pub final_scores: Scores,
    /// What the verdict rests on: PTYs abandoned or left behind (still held, or given back
    /// only by their holder's exit), sustained fd growth.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
    /// Evidence the session later cleared itself (PTYs it closed after abandoning them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recovered: Vec<Evidence>,
    /// What tracing cost: events applied and the tracer's own resources. Recordings from
    /// before it was written lack it (read as zeros).
    #[serde(default)]
    pub tracer: TracerCost,
    /// `run --fail-on-leak`: the leak gate's verdict (absent without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateRec>,
}

/// `run --fail-on-leak`: the leak gate's verdict, in the session's `summary` (`gate`; see
/// `core::gate`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct GateRec {
    pub passed: bool,
    pub verdict: Verdict,
    /// PTYs and fds opened during the run and still open in its tree at the end.
    pub open_ptys: u64,
    pub open_fds: u64,
    pub budget_ptys: u64,
    /// `None`: no fd budget.
    pub budget_fds: Option<u64>,
    /// Why it failed, one line per rule broken (empty when it passed).
    pub failures: Vec<String>,
    /// Up to `gate::MAX_LISTED` of the fds left open (the rest only counted).
    pub left_open: Vec<OpenFd>,
    /// pty-trace stopped the command (`--duration`, a signal, the quit key): what its tree held
    /// at that moment is what is counted, before it was killed.
    #[serde(default)]
    pub stopped: bool,
}

/// One fd the run opened that is still open at its end.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct OpenFd {
    pub pid: u32,
    pub comm: String,
    pub fd: i32,
    pub kind: FdKind,
    pub target: String,
    /// The command (argv) that opened it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
}

/// One open fd of a process, for the live view's details pane (not written to JSONL: a
/// snapshot carries counts, the view needs the fds of the process under the cursor).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct FdRec {
    pub fd: i32,
    pub kind: FdKind,
    pub target: String,
    pub age_s: f64,
    /// The command that opened it; `None` for fds found in /proc before tracing saw them.
    pub command: Option<Vec<String>>,
    /// Found in /proc (opened before tracing, or by an event that was lost).
    pub from_proc: bool,
    /// The `N` of `/dev/pts/N` for PTY ends, when known.
    pub pty_index: Option<u32>,
    /// The devpts instance of a PTY end, when known.
    #[serde(default)]
    pub pty_devpts: Option<crate::core::machine::DevId>,
    /// A PTY master nobody holds the slave of.
    pub orphaned: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_763_726_400_123_456_789), "2025-11-21T12:00:00.123Z");
    }

    #[test]
    fn names_match_serde() {
        for k in [RecordKind::Start, RecordKind::Snapshot, RecordKind::Alert, RecordKind::Decision, RecordKind::Summary] {
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
        for r in [EndReason::RootExited, EndReason::Duration, EndReason::Interrupted, EndReason::Rotate, EndReason::OutputClosed, EndReason::Failed] {
            assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
        }
        for v in [Verdict::Healthy, Verdict::LeakDetected] {
            assert_eq!(serde_json::to_value(v).unwrap(), v.as_str());
        }
        assert_eq!(serde_json::to_value(DecisionAction::Rotate).unwrap(), "rotate");
    }

    #[test]
    fn head_reads_unknown_kinds_as_none() {
        let h: Head = serde_json::from_str(r#"{"type":"snapshot","schema":1,"ts":"T","x":[1]}"#).unwrap();
        assert_eq!((h.kind, h.schema, h.ts.as_ref()), (Some(RecordKind::Snapshot), 1, "T"));
        let h: Head = serde_json::from_str(r#"{"type":"later","schema":2,"ts":"T"}"#).unwrap();
        assert_eq!(h.kind, None);
        assert!(serde_json::from_str::<Head>(r#"{"type":"snapshot","ts":"T"}"#).is_err());
    }

    #[test]
    fn peek_reads_what_the_writer_writes_and_nothing_else() {
        #[derive(Serialize)]
        struct B {
            session: u32,
        }
        for kind in [RecordKind::Start, RecordKind::Snapshot, RecordKind::Summary] {
            let line = serde_json::to_string(&Envelope { kind, schema: SCHEMA_VERSION, ts: "2026-12-01T00:00:00.000Z", body: &B { session: 3 } }).unwrap();
            let h = Head::peek(&line).expect("the writer's layout");
            let full: Head = serde_json::from_str(&line).unwrap();
            assert_eq!((h.kind, h.schema, h.ts.as_ref()), (full.kind, full.schema, full.ts.as_ref()), "{line}");
        }
        assert!(Head::peek(r#"{"schema":1,"type":"snapshot","ts":"T"}"#).is_none(), "other order");
        assert!(Head::peek(r#"{"type":"snapshot","schema":x,"ts":"T"}"#).is_none());
        assert!(Head::peek(r#"{"type":"snap\"shot","schema":1,"ts":"T"}"#).is_none());
        assert_eq!(Head::peek(r#"{"type":"snapshot","schema":7,"ts":"T","a":1}"#).unwrap().schema, 7);
    }
}
