//! The JSONL records against `schema/pty-trace.schema.json`.
//!
//! (a) every line of `docs/examples/*.jsonl` validates; (b) hand-made invalid records are
//! rejected; (c) records built by the tracer's own assembly (a `Model` fed with events,
//! `SessionBook`, `JsonlWriter`) validate and read back as the same record types, without
//! root; (d) the real binary's output validates and reads back the same. (d) needs BPF: when
//! `pty-trace doctor` says tracing cannot work, it fails with the reason, unless
//! `PTY_TRACE_SKIP_BPF_TESTS=1`, in which case it prints `SKIPPED <test> (...): <reason>` and
//! appends the skip to `$PTY_TRACE_SKIP_LOG`.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use jsonschema::Validator;
use pty_trace::{
    core::{
        machine::MachineRec,
        model::{
            Event, FdKind, Header, Model,
            reconcile::{ObservedFd, ObservedProcess},
        },
        records::{
            AlertRec, DecisionRec, EndReason, Head, HookRec, RecordKind, SCHEMA_VERSION, SnapshotRec, StartRec,
            SummaryRec, TracerCost, rfc3339_ms,
        },
        score::{Crossing, Thresholds},
        snapshot::{Facts, SessionBook, SummaryContext},
    },
    output::jsonl::JsonlWriter,
};
use pty_trace_common::{SyscallKind as K, TIOCGPTN};
use serde_json::{Value, json};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn schema() -> Value {
    let path = workspace().join("schema/pty-trace.schema.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

fn validator() -> Validator {
    jsonschema::draft202012::new(&schema()).expect("the schema compiles")
}

/// All validation errors of `v`, one per line (empty when valid).
fn errors(val: &Validator, v: &Value) -> Vec<String> {
    val.iter_errors(v)
        .map(|e| format!("{e} (at {})", e.instance_path()))
        .collect()
}

/// Validates every line of a JSONL text; returns the records' types in order.
fn validate_jsonl(val: &Validator, text: &str, what: &str) -> Vec<String> {
    let mut types = Vec::new();
    let mut failures = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("{what}:{}: not JSON ({e}): {line}", i + 1));
        let errs = errors(val, &v);
        if !errs.is_empty() {
            failures.push(format!("{what}:{}: {}\n    {line}", i + 1, errs.join("; ")));
        }
        types.push(v["type"].as_str().unwrap_or("?").to_string());
    }
    assert!(
        failures.is_empty(),
        "records that do not match the schema:\n{}",
        failures.join("\n")
    );
    types
}

#[test]
fn schema_is_a_valid_draft_2020_12_schema() {
    let s = schema();
    if let Err(e) = jsonschema::meta::validate(&s) {
        panic!(
            "schema/pty-trace.schema.json is not a valid JSON Schema: {e} (at {})",
            e.instance_path()
        );
    }
    assert_eq!(
        s["properties"]["schema"]["const"],
        json!(SCHEMA_VERSION),
        "schema const must follow jsonl::SCHEMA_VERSION"
    );
}

// ---------------------------------------------------------------------------------------------
// (a) the committed examples

#[test]
fn example_recordings_validate() {
    let val = validator();
    let dir = workspace().join("docs/examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in ["healthy.jsonl", "leaky.jsonl"] {
        assert!(
            names.iter().any(|n| n == want),
            "docs/examples/{want} missing (have {names:?})"
        );
    }
    let mut seen = BTreeSet::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(!text.trim().is_empty(), "{} is empty", f.display());
        let types = validate_jsonl(&val, &text, &f.display().to_string());
        assert_eq!(
            types.first().map(String::as_str),
            Some("start"),
            "{}: first record must be start",
            f.display()
        );
        assert_eq!(
            types.last().map(String::as_str),
            Some("summary"),
            "{}: last record must be summary",
            f.display()
        );
        seen.extend(types);
    }
    // Between them the examples show every record type.
    for t in ["start", "snapshot", "alert", "decision", "summary"] {
        assert!(seen.contains(t), "no {t} record in docs/examples");
    }
}

// ---------------------------------------------------------------------------------------------
// (b) invalid records are rejected

fn valid_snapshot() -> Value {
    json!({
        "type": "snapshot", "schema": 1, "ts": "2026-11-21T12:00:00.123Z",
        "session": 100,
        "processes": [{"pid": 100, "ppid": 1, "comm": "bash", "fds": 4, "pty_masters": 1, "pty_slaves": 0, "age_s": 1.5}],
        "totals": {"processes": 1, "fds": 4, "pty_masters": 1, "pty_slaves": 0, "ptys": 1, "orphaned_ptys": 1},
        "ptys": [{"index": 3, "masters": [{"pid": 100, "fd": 3}], "slaves": [], "slave_held_outside": false, "orphaned": true}],
        "commands": 1, "execs": 1, "health": 92.0, "leak_score": 3.0,
        "pty_per_command": 0.0, "fd_per_command": 0.0, "est_seconds_to_exhaustion": null,
        "reasons": ["1 orphaned PTY(s): master held, no process holds the slave"],
        "pty_nr": 1, "pty_max": 4096, "lost_events": 0, "drift": 0, "drift_by_cause": {}
    })
}

fn valid_decision() -> Value {
    json!({"type": "decision", "schema": 1, "ts": "2026-11-21T12:00:00.123Z", "action": "rotate", "session": 100, "health": 46.0, "reasons": ["x"]})
}

fn valid_summary() -> Value {
    json!({
        "type": "summary", "schema": 1, "ts": "2026-11-21T12:00:09.000Z",
        "session": 100, "start": "2026-11-21T12:00:00.000Z", "end": "2026-11-21T12:00:09.000Z",
        "duration_s": 9.0, "verdict": "LEAK DETECTED", "end_reason": "interrupted",
        "metrics": {"total_commands": 3, "total_execs": 4, "fd_peak": 9, "pty_peak": 3, "health_score_min": 40.0, "health_score_final": 40.0},
        "alerts": [{"session": 100, "ts": "2026-11-21T12:00:02.000Z", "health": 60.0, "reasons": ["x"]}],
        "actions": [{"action": "rotate", "session": 100, "ts": "2026-11-21T12:00:03.000Z", "health": 40.0, "reasons": ["x"]}],
        "leaked_at_end": [{"pid": 100, "comm": "node", "fd": 3, "kind": "pty_master", "target": "/dev/ptmx", "pty_index": 3,
                           "opener_pid": 100, "command": ["node", "agent.js"], "age_s": 8.5}],
        "descendants_left_running": [{"pid": 101, "comm": "sleep", "command": null}],
        "processes_seen": 4, "lost_events": 0, "drift": 0, "drift_by_cause": {}, "drift_examples": [],
        "final_scores": {"health": 40.0, "leak_score": 19.0, "pty_per_command": 1.0, "fd_per_command": 1.0, "fd_per_minute": 6.0,
                         "est_seconds_to_exhaustion": 12345.6, "reasons": ["x"], "leaking": true},
        "tracer": {"events": 778, "decode_errors": 0, "cpu_s": 0.16, "max_rss_kib": 45640, "ring_buffer_bytes": 16777216}
    })
}

fn assert_rejected(val: &Validator, v: &Value, why: &str) {
    assert!(!val.is_valid(v), "accepted a record with {why}: {v}");
}

#[test]
fn hand_made_records_are_judged() {
    let val = validator();
    for v in [valid_snapshot(), valid_decision(), valid_summary()] {
        let errs = errors(&val, &v);
        assert!(
            errs.is_empty(),
            "a valid record was rejected: {errs:?}\n{v}"
        );
    }

    // Forward compatibility: unknown fields are fine, at the top and nested.
    let mut v = valid_snapshot();
    v["future_field"] = json!({"anything": [1, 2]});
    v["processes"][0]["cgroup"] = json!("/user.slice");
    assert!(errors(&val, &v).is_empty(), "{:?}", errors(&val, &v));
    // exit_status may be absent or an integer, never null.
    let mut v = valid_summary();
    v["exit_status"] = json!(130);
    assert!(val.is_valid(&v));
    v["exit_status"] = Value::Null;
    assert_rejected(&val, &v, "exit_status null");

    // A decision may carry what --on-rotate started.
    let mut v = valid_decision();
    v["hook"] = json!({"argv": ["notify-send", "rotate"], "pid": 4242, "error": null});
    assert!(errors(&val, &v).is_empty(), "{:?}", errors(&val, &v));
    v["hook"] = json!({"argv": ["notify-send"], "pid": null, "error": "No such file or directory (os error 2)"});
    assert!(errors(&val, &v).is_empty(), "{:?}", errors(&val, &v));
    v["hook"]["pid"] = json!("4242");
    assert_rejected(&val, &v, "a hook pid that is a string");

    let mut v = valid_snapshot();
    v.as_object_mut().unwrap().remove("session");
    assert_rejected(&val, &v, "no session (snapshot)");
    let mut v = valid_decision();
    v.as_object_mut().unwrap().remove("session");
    assert_rejected(&val, &v, "no session (decision)");
    let mut v = valid_summary();
    v.as_object_mut().unwrap().remove("session");
    assert_rejected(&val, &v, "no session (summary)");

    let mut v = valid_summary();
    v["verdict"] = json!("LEAKY");
    assert_rejected(&val, &v, "a bad verdict");
    let mut v = valid_summary();
    v["verdict"] = json!("healthy");
    assert_rejected(&val, &v, "a lower-case verdict");
    let mut v = valid_summary();
    v["end_reason"] = json!("killed");
    assert_rejected(&val, &v, "a bad end_reason");

    for mut v in [valid_snapshot(), valid_decision(), valid_summary()] {
        v["schema"] = json!(2);
        assert_rejected(&val, &v, "schema 2");
        v["schema"] = json!("1");
        assert_rejected(&val, &v, "schema as a string");
        v.as_object_mut().unwrap().remove("schema");
        assert_rejected(&val, &v, "no schema");
    }

    let mut v = valid_decision();
    v["action"] = json!("kill");
    assert_rejected(&val, &v, "an unknown action");
    let mut v = valid_snapshot();
    v["type"] = json!("snapshots");
    assert_rejected(&val, &v, "an unknown type");
    let mut v = valid_snapshot();
    v["ts"] = json!("2026-11-21 12:00:00");
    assert_rejected(&val, &v, "a ts that is not RFC 3339 UTC with ms");
    let mut v = valid_snapshot();
    v["processes"][0]
        .as_object_mut()
        .unwrap()
        .remove("pty_masters");
    assert_rejected(&val, &v, "a process without pty_masters");
    let mut v = valid_snapshot();
    v["processes"][0]["command"] = Value::Null;
    assert_rejected(&val, &v, "a process command null (it is omitted instead)");
    let mut v = valid_snapshot();
    v["health"] = json!(101.0);
    assert_rejected(&val, &v, "health above 100");
    let mut v = valid_snapshot();
    v["lost_events"] = json!(-1);
    assert_rejected(&val, &v, "negative lost_events");
    let mut v = valid_snapshot();
    v.as_object_mut().unwrap().remove("drift");
    assert_rejected(&val, &v, "no drift");
    let mut v = valid_summary();
    v["metrics"].as_object_mut().unwrap().remove("pty_peak");
    assert_rejected(&val, &v, "metrics without pty_peak");
    let mut v = valid_summary();
    v["leaked_at_end"][0]
        .as_object_mut()
        .unwrap()
        .remove("opener_pid");
    assert_rejected(&val, &v, "a leaked fd without opener_pid");
    let mut v = valid_summary();
    v["actions"][0].as_object_mut().unwrap().remove("ts");
    assert_rejected(&val, &v, "a summary action without ts");
    let mut v = valid_summary();
    v["final_scores"]["est_seconds_to_exhaustion"] = json!("soon");
    assert_rejected(&val, &v, "a non-numeric estimate");
}

// ---------------------------------------------------------------------------------------------
// (c) records from the library's own code paths

const ROOT: u32 = 100;
const AGENT: u32 = 101;
const SHELL: u32 = 102;
const O_RDWR: u64 = 0o2;
const O_CLOEXEC: u64 = 0o2000000;
const AT_FDCWD: i64 = -100;
const SIGCHLD: u64 = 17;

/// A model of one session fed with events: a shell (the root) starts an agent (with a secret
/// on its command line), which opens a PTY, runs `sh -c ls` on its slave, and never closes the
/// master after the shell exited.
struct Sim {
    m: Model,
    ts: u64,
}

impl Sim {
    fn hdr(&mut self, pid: u32) -> Header {
        self.ts += 1_000_000;
        Header {
            tgid: pid,
            tid: pid,
            session: ROOT,
            ts_ns: self.ts,
        }
    }
    fn open(&mut self, pid: u32, fd: i64, path: &str, flags: u64) {
        let h = self.hdr(pid);
        self.m.apply(&Event::Open {
            h,
            kind: K::OpenAt,
            ret: fd,
            dirfd: AT_FDCWD,
            flags,
            path: path.into(),
            devpts: None,
        });
    }
    fn exec(&mut self, pid: u32, filename: &str, argv: &[&str]) {
        let h = self.hdr(pid);
        self.m.apply(&Event::ExecArgv {
            h,
            argv: argv.iter().map(|s| s.to_string()).collect(),
            truncated: false,
        });
        let h = self.hdr(pid);
        self.m.apply(&Event::Exec {
            h,
            old_tid: pid,
            filename: filename.into(),
        });
    }
    fn fork(&mut self, parent: u32, child: u32) {
        let h = self.hdr(parent);
        self.m.apply(&Event::Fork {
            h,
            child,
            clone_flags: Some(SIGCHLD),
        });
    }
    fn exit(&mut self, pid: u32) {
        let h = self.hdr(pid);
        self.m.apply(&Event::Exit { h });
    }
    /// One leaky agent command: a PTY whose master stays open after the shell is gone.
    fn leaky_command(&mut self, shell: u32, master_fd: i64, index: i32) {
        self.open(AGENT, master_fd, "/dev/ptmx", O_RDWR | O_CLOEXEC);
        let h = self.hdr(AGENT);
        self.m.apply(&Event::Syscall {
            h,
            kind: K::Ioctl,
            ret: 0,
            args: [master_fd as u64, TIOCGPTN, 0x7ffd_0000, 0, 0, 0],
            aux: [index, -1],
            user_flags: 0,
        });
        self.fork(AGENT, shell);
        self.exec(shell, "/bin/sh", &["sh", "-c", "ls"]);
        self.open(shell, master_fd + 1, &format!("/dev/pts/{index}"), O_RDWR);
        self.exit(shell);
    }
}

fn simulated_session() -> Sim {
    let mut m = Model::new();
    m.add_session(ROOT, 1);
    m.add_process(ROOT, 1, ROOT, "bash", 1);
    // The first /proc scan seeds the root: its terminal on fds 0-2.
    let tty = |fd| {
        (
            fd,
            ObservedFd {
                target: "/dev/pts/0".into(),
                tty_index: None,
                devpts: None,
                cloexec: Some(false),
            },
        )
    };
    let seed = ObservedProcess {
        pid: ROOT,
        ppid: 1,
        comm: "bash".into(),
        fds: [tty(0), tty(1), tty(2)].into_iter().collect(),
        scan_start_ns: 2,
        scan_end_ns: 3,
    };
    assert!(m.reconcile(&seed).seeding);
    m.take_needs_reconcile();
    let mut s = Sim { m, ts: 10 };
    s.fork(ROOT, AGENT);
    s.exec(
        AGENT,
        "/usr/bin/node",
        &["node", "agent.js", "--api-key", "sk-123456"],
    );
    s.open(AGENT, 3, "/tmp/agent.log", O_RDWR);
    s
}

#[test]
fn records_from_the_library_validate() {
    let val = validator();
    let mut sim = simulated_session();
    let mut book = SessionBook::new(ROOT, Thresholds::default());
    let wall0: u64 = 1_763_726_400_000_000_000;
    let dir = std::env::temp_dir().join(format!("pty-trace-schema-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("lib.jsonl");
    let mut w = JsonlWriter::create(&path).unwrap();
    let ts = |mono: u64| rfc3339_ms(wall0 + mono);

    let start = StartRec {
        version: env!("CARGO_PKG_VERSION").into(),
        sessions: vec![ROOT],
        command: None,
        ring_buffer_bytes: pty_trace_common::DEFAULT_RING_BYTES,
        probes: Some(pty_trace::core::records::ProbeBackend::Tracepoint),
        probes_fallback: Some("kernel 6.18: BPF trampolines refused: loading pty_fentry_clone on kernel_clone: Operation not permitted".into()),
        attached_tracepoints: 4,
        syscalls_not_followed: vec![],
        tracefs: "/sys/kernel/tracing".into(),
        load_ms: 1.0,
        ready_ms: 2.0,
        interval_ms: 1000,
        unreadable_cmdlines: 0,
    };
    w.write(RecordKind::Start, &ts(0), &start);

    // The same assembly the tracer uses (`SessionBook`), with the /proc facts made up.
    let mut next_fd = 4;
    for i in 0..12u32 {
        sim.leaky_command(SHELL + i, next_fd, i as i32 + 1);
        next_fd += 1;
        // A minute of wall time per command, so rates and the estimate are non-trivial.
        sim.ts += 60_000_000_000;
        let facts = Facts {
            now_ns: sim.ts,
            pty_nr: 12,
            pty_max: 4096,
            nofile_limits: sim.m.procs.keys().map(|&p| (p, 1024)).collect(),
            ..Facts::default()
        };
        let (snap, crossings) = book.snapshot(&sim.m, &facts);
        let t = ts(sim.ts);
        for c in crossings {
            match c {
                Crossing::Alert { health, reasons } => {
                    let a = book.record_alert(&t, health, reasons);
                    w.write(RecordKind::Alert, &t, &a);
                }
                Crossing::Rotate { health, reasons } => {
                    let hook = HookRec { argv: vec!["rotate-me".into()], pid: None, error: Some("not found".into()) };
                    let d = book.record_decision(&t, health, reasons, Some(hook));
                    w.write(RecordKind::Decision, &t, &d);
                }
            }
        }
        w.write(RecordKind::Snapshot, &t, &snap);
    }
    assert!(
        !book.alerts.is_empty() && !book.actions.is_empty(),
        "the simulated leak should alert and rotate"
    );
    let facts = Facts { now_ns: sim.ts, pty_max: 4096, ..Facts::default() };
    let ts_of = |mono: u64| ts(mono);
    let end = SummaryContext {
        reason: EndReason::Interrupted,
        stopped_at_ns: Some(sim.ts),
        child: None,
        exit_status: None,
        cost: TracerCost { events: sim.m.stats.events, ..TracerCost::default() },
        unreadable_procs: 0,
        dropped_records: 0,
        error: None,
        ts_of: &ts_of,
        budget: None,
        open_at_stop: None,
    };
    let sum = book.summary(&sim.m, &facts, &end).expect("a summary for the session");
    assert!(
        sum.leaked_at_end.iter().any(|l| l.kind == FdKind::PtyMaster && l.opener_pid == AGENT),
        "{:?}",
        sum.leaked_at_end
    );
    w.write(RecordKind::Summary, &ts(sim.ts), &sum);
    w.close(std::time::Duration::from_secs(10));
    assert_eq!(w.dropped_records(), 0);

    let text = std::fs::read_to_string(&path).unwrap();
    let types = validate_jsonl(&val, &text, &path.display().to_string());
    for t in ["start", "snapshot", "alert", "decision", "summary"] {
        assert!(
            types.iter().any(|x| x == t),
            "no {t} record written: {types:?}"
        );
    }
    round_trips(&text, &path.display().to_string());
    // The pieces the test is about really are in there.
    let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["verdict"], "LEAK DETECTED");
    assert!(
        last.get("exit_status").is_none(),
        "exit_status is omitted when None"
    );
    assert!(
        text.contains("<redacted>") && !text.contains("sk-123456"),
        "the agent's secret must be redacted"
    );
    assert!(
        last["final_scores"]["est_seconds_to_exhaustion"].is_number(),
        "{last}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every line reads back as its kind's record type and writes out as the same JSON: the
/// writer, `report` and the tests share one definition of every record.
fn round_trips(text: &str, what: &str) {
    fn again<T: serde::de::DeserializeOwned + serde::Serialize>(line: &str) -> Result<Value, String> {
        let rec: T = serde_json::from_str(line).map_err(|e| e.to_string())?;
        serde_json::to_value(&rec).map_err(|e| e.to_string())
    }
    for (i, line) in text.lines().enumerate() {
        let head: Head = serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}:{}: no envelope: {e}", i + 1));
        let kind = head.kind.unwrap_or_else(|| panic!("{what}:{}: unknown type", i + 1));
        let mut back = match kind {
            RecordKind::Start => again::<StartRec>(line),
            RecordKind::Snapshot => again::<SnapshotRec>(line),
            RecordKind::Alert => again::<AlertRec>(line),
            RecordKind::Decision => again::<DecisionRec>(line),
            RecordKind::Summary => again::<SummaryRec>(line),
            RecordKind::Machine => again::<MachineRec>(line),
        }
        .unwrap_or_else(|e| panic!("{what}:{}: does not read as its record type: {e}\n    {line}", i + 1));
        let mut orig: Value = serde_json::from_str(line).unwrap();
        for k in ["type", "schema", "ts"] {
            orig.as_object_mut().unwrap().remove(k);
        }
        if matches!(kind, RecordKind::Alert | RecordKind::Decision) {
            // Their own `ts` (filled in the summary's copies) reads the envelope's.
            let ts = back.as_object_mut().unwrap().remove("ts");
            assert_eq!(ts.as_ref().and_then(Value::as_str), Some(head.ts.as_ref()), "{what}:{}", i + 1);
        }
        assert_eq!(back, orig, "{what}:{}: reads back differently", i + 1);
    }
}

// ---------------------------------------------------------------------------------------------
// (d) the real binary (needs root and BPF)

/// Ok(()) when tracing can work here; Err(reason) otherwise.
fn bpf_available(exe: &str) -> Result<(), String> {
    let out = Command::new(exe)
        .arg("doctor")
        .output()
        .map_err(|e| format!("cannot run {exe} doctor: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let failing: Vec<String> = stdout
        .lines()
        .filter(|l| l.contains("FAIL"))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    Err(format!(
        "`pty-trace doctor` exited with {} (euid {}): {}",
        out.status,
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        if failing.is_empty() {
            stdout.trim().to_string()
        } else {
            failing.join(" | ")
        }
    ))
}

/// A deliberate skip, reported like the privileged tests' (tests/src/lib.rs): a line on stderr
/// (not captured by the harness, unlike `eprintln!`) and `test<TAB>reason` appended to
/// `$PTY_TRACE_SKIP_LOG` when set; failing to write that fails the test.
fn skip(test: &str, reason: &str) {
    use std::io::Write;
    let reason = reason.replace(['\t', '\n', '\r'], " ");
    let notice = format!("SKIPPED {test} (PTY_TRACE_SKIP_BPF_TESTS=1): {reason}\n");
    std::io::stderr().write_all(notice.as_bytes()).expect("writing the skip notice to stderr");
    if let Some(log) = std::env::var_os("PTY_TRACE_SKIP_LOG") {
        std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log)
            .and_then(|mut f| f.write_all(format!("{test}\t{reason}\n").as_bytes()))
            .unwrap_or_else(|e| panic!("cannot record the skip of {test} in PTY_TRACE_SKIP_LOG={log:?}: {e}"));
    }
}

#[test]
// Without the `ebpf` feature the binary has no kernel programs to run: the test is listed as
// ignored (libtest counts it in its summary line), not passed.
#[cfg_attr(not(feature = "ebpf"), ignore = "built without the `ebpf` feature: no kernel programs")]
fn real_demo_output_validates() {
    let exe = env!("CARGO_BIN_EXE_pty-trace");
    if let Err(why) = bpf_available(exe) {
        if std::env::var("PTY_TRACE_SKIP_BPF_TESTS").as_deref() == Ok("1") {
            skip("real_demo_output_validates", &format!("BPF tracing is not available: {why}"));
            return;
        }
        panic!(
            "BPF tracing is not available ({why}); run as root on a kernel with BPF, or set PTY_TRACE_SKIP_BPF_TESTS=1 to skip"
        );
    }
    let val = validator();
    let dir = std::env::temp_dir().join(format!("pty-trace-schema-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (fixed, verdict) in [(false, "LEAK DETECTED"), (true, "HEALTHY")] {
        let path = dir.join(if fixed { "fixed.jsonl" } else { "leaky.jsonl" });
        let mut cmd = Command::new(exe);
        cmd.args([
            "demo",
            "--no-tui",
            "--commands",
            // More abandoned PTYs than max_ptys (the last two are never abandoned: no two
            // commands start after them), so the leaky agent decides to rotate.
            "12",
            "--delay",
            "50ms",
            "--interval",
            "100ms",
            "--jsonl",
        ])
        .arg(&path);
        if fixed {
            cmd.arg("--fixed");
        }
        let out = cmd.output().expect("running pty-trace demo");
        assert!(
            out.status.success(),
            "pty-trace demo (fixed: {fixed}) exited with {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "the JSONL file must be private");
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let types = validate_jsonl(&val, &text, &path.display().to_string());
        round_trips(&text, &path.display().to_string());
        assert_eq!(types.first().map(String::as_str), Some("start"), "{text}");
        assert_eq!(types.last().map(String::as_str), Some("summary"), "{text}");
        assert!(types.iter().any(|t| t == "snapshot"), "{text}");
        let last: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
        assert_eq!(last["verdict"], verdict, "fixed: {fixed}: {last}");
        if !fixed {
            assert!(
                types.iter().any(|t| t == "decision"),
                "the leaky demo should decide to rotate: {types:?}"
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `pty-trace top`'s outputs, from the real binary (no BPF needed): `--json` is a
/// `machine_document`, and `--no-tui --jsonl` writes `machine` records that validate and that
/// `report` reads.
#[test]
fn top_outputs_match_the_schema() {
    let exe = env!("CARGO_BIN_EXE_pty-trace");
    let out = Command::new(exe).args(["top", "--json"]).output().unwrap();
    assert!(out.status.success(), "top --json: {}", String::from_utf8_lossy(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut schema = schema();
    // The document alone: the schema with `machine_document` as its root.
    schema["$ref"] = json!("#/$defs/machine_document");
    for k in ["type", "required", "properties", "allOf"] {
        schema.as_object_mut().unwrap().remove(k);
    }
    let doc_validator = jsonschema::draft202012::new(&schema).expect("the schema compiles");
    let errs = errors(&doc_validator, &doc);
    assert!(errs.is_empty(), "top --json does not match $defs/machine_document: {errs:?}\n{doc:#}");

    let dir = std::env::temp_dir().join(format!("pty-trace-schema-top-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let jsonl = dir.join("top.jsonl");
    let st = Command::new(exe)
        .args(["top", "--no-tui", "--interval", "200ms", "--duration", "1s", "--jsonl"])
        .arg(&jsonl)
        .status()
        .unwrap();
    assert!(st.success());
    let text = std::fs::read_to_string(&jsonl).unwrap();
    let types = validate_jsonl(&validator(), &text, "top.jsonl");
    assert!(types.len() >= 3 && types.iter().all(|t| t == "machine"), "{types:?}");
    round_trips(&text, "top.jsonl");
    let rep = Command::new(exe).arg("report").arg(&jsonl).output().unwrap();
    let text = String::from_utf8_lossy(&rep.stdout);
    assert!(text.contains("machine: ") && text.contains(" records ("), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
