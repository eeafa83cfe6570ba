//! Tests of the deployment files in deploy/, run for real with the tools that consume them:
//!
//! - the alerting rules: `promtool check rules`, their unit tests (`promtool test rules`, each
//!   alert shown firing and not firing), and, in a real Prometheus scraping a fake exporter of
//!   pty-trace's metrics, every alert firing (with its `for:` shortened) for the right series
//!   only;
//! - the example Prometheus configuration: `promtool check config`;
//! - the Grafana dashboard: its JSON, its variables, every panel's query (known `pty_trace_*`
//!   metrics only, every metric shown), and every query evaluated by a real Prometheus;
//! - the systemd unit: `systemd-analyze verify` and `systemd-analyze security --offline=true`;
//! - the [`Prometheus`] harness itself (scraping its own /metrics, with the rules loaded);
//! - `pty-trace watch --metrics` itself, scraped by a real Prometheus while it follows a leaky
//!   and a clean agent: the values equal the JSONL's, the must-rotate alert fires for the
//!   leaky session only, every dashboard panel has data, SIGTERM summarizes both sessions.
//!
//! Only that last test needs root and BPF (it starts with `bpf_available`, like the other
//! privileged tests). A missing tool fails the test, naming `cargo xtask setup` (which
//! installs Debian's `prometheus` and `systemd` packages): nothing is skipped.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use pty_trace_tests::{AGENT, bpf_available, of_type, prometheus::*, pty_trace_bin, read_jsonl, scratch, ts_ms};
use serde_json::Value;

const PROMTOOL: &str = "/usr/bin/promtool";
const SYSTEMD_ANALYZE: &str = "/usr/bin/systemd-analyze";

const RULES: &str = "deploy/prometheus/pty-trace.rules.yml";
const RULES_TEST: &str = "deploy/prometheus/pty-trace.rules.test.yml";
const EXAMPLE_CONFIG: &str = "deploy/prometheus/prometheus.example.yml";
const UNIT: &str = "deploy/systemd/pty-trace-watch.service";

/// The alerts of the rules file, in its order.
const ALERTS: &[&str] =
    &["PtyTracePtyPoolNearlyFull", "PtyTraceSessionMustRotate", "PtyTraceOrphanedPtysGrowing", "PtyTraceLostEvents", "PtyTraceDown"];

/// The highest `systemd-analyze security` exposure the unit may have. Measured: 2.7 with
/// Debian bookworm's systemd 252; the margin absorbs other versions' weights, not a weakened
/// unit (dropping CapabilityBoundingSet= alone adds more than 1).
const MAX_EXPOSURE: f64 = 3.0;

/// The unit's capabilities: exactly these (see the comments in the unit).
const CAPABILITIES: &[&str] = &["CAP_BPF", "CAP_PERFMON", "CAP_SYS_PTRACE", "CAP_DAC_READ_SEARCH"];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

fn file(rel: &str) -> PathBuf {
    let p = root().join(rel);
    assert!(p.is_file(), "{} is missing", p.display());
    p
}

fn promtool() -> PathBuf {
    require_tool(PROMTOOL, "prometheus")
}

fn systemd_analyze() -> PathBuf {
    require_tool(SYSTEMD_ANALYZE, "systemd")
}

/// Runs `cmd`, returning its output with stdout and stderr as text.
fn run(cmd: &mut Command) -> (Output, String, String) {
    let shown = format!("{cmd:?}");
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    eprintln!("$ {shown}\n{stdout}{stderr}");
    (out, stdout, stderr)
}

// ------------------------------------------------------------------------------ the rules

#[test]
fn promtool_checks_the_rules() {
    let (out, stdout, stderr) = run(Command::new(promtool()).arg("check").arg("rules").arg(file(RULES)));
    assert!(out.status.success(), "promtool check rules failed:\n{stdout}{stderr}");
    assert!(stdout.contains(&format!("SUCCESS: {} rules found", ALERTS.len())), "{stdout}");
    let text = std::fs::read_to_string(file(RULES)).unwrap();
    let names: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("- alert: ")).collect();
    assert_eq!(names, ALERTS);
    assert!(text.contains("  - name: pty-trace\n"), "one group, named pty-trace");
    for m in metric_names(&text) {
        assert!(PTY_TRACE_METRICS.contains(&m), "{RULES} uses {m}, which pty-trace does not export");
    }
    // Each alert has a severity label and both annotations, with the labels they describe.
    for block in text.split("      - alert: ").skip(1) {
        let name = block.lines().next().unwrap();
        for key in ["severity: ", "summary: ", "description: ", "$labels.instance"] {
            assert!(block.contains(key), "{name}: no {key}");
        }
        let expr = &block[block.find("expr:").unwrap()..block.find("labels:").unwrap()];
        if expr.contains("pty_trace_session_") {
            assert!(block.contains("$labels.session") && block.contains("$labels.comm"), "{name}: name the session");
        }
    }
}

#[test]
fn promtool_rule_unit_tests_pass() {
    let (out, stdout, stderr) = run(Command::new(promtool()).arg("test").arg("rules").arg(file(RULES_TEST)));
    assert!(out.status.success(), "promtool test rules failed:\n{stdout}{stderr}");
    assert!(stdout.contains("SUCCESS"), "{stdout}");
    // Each alert is tested both firing (a non-empty exp_alerts) and not firing (`[]`).
    let text = std::fs::read_to_string(file(RULES_TEST)).unwrap();
    let (mut fires, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    for (i, l) in lines.iter().enumerate() {
        if let Some(name) = l.strip_prefix("alertname: ") {
            match lines.get(i + 1) {
                Some(&"exp_alerts: []") => quiet.insert(name),
                Some(&"exp_alerts:") => fires.insert(name),
                other => panic!("alertname {name} followed by {other:?}"),
            };
        }
    }
    for a in ALERTS {
        assert!(fires.contains(a), "{RULES_TEST} never shows {a} firing");
        assert!(quiet.contains(a), "{RULES_TEST} never shows {a} not firing");
    }
}

#[test]
fn promtool_checks_the_example_config() {
    let (out, stdout, stderr) = run(Command::new(promtool()).arg("check").arg("config").arg(file(EXAMPLE_CONFIG)));
    assert!(out.status.success(), "promtool check config failed:\n{stdout}{stderr}");
    assert!(stdout.contains("SUCCESS: 1 rule files found"), "the example loads the rules: {stdout}");
    assert!(stdout.contains(&format!("SUCCESS: {} rules found", ALERTS.len())), "{stdout}");
    let text = std::fs::read_to_string(file(EXAMPLE_CONFIG)).unwrap();
    assert!(text.contains("job_name: pty-trace"), "PtyTraceDown selects job=\"pty-trace\"");
    assert!(text.contains("\"127.0.0.1:9464\""), "the unit's --metrics address");
}

// -------------------------------------------------------------------------- the dashboard

fn dashboard() -> Value {
    let text = std::fs::read_to_string(file(DASHBOARD)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{DASHBOARD}: not JSON: {e}"))
}

#[test]
fn dashboard_panels_query_pty_trace_metrics() {
    let d = dashboard();
    assert!(d["schemaVersion"].as_u64().is_some_and(|v| v >= 36), "schemaVersion {}", d["schemaVersion"]);
    assert_eq!(d["uid"], "pty-trace");
    let vars = d["templating"]["list"].as_array().expect("templating.list");
    let var = |name: &str| vars.iter().find(|v| v["name"] == name).unwrap_or_else(|| panic!("no ${name} variable"));
    let ds = var("DS_PROMETHEUS");
    assert_eq!((ds["type"].as_str(), ds["query"].as_str()), (Some("datasource"), Some("prometheus")));
    let instance = var("instance");
    assert_eq!(instance["query"]["query"], "label_values(pty_trace_build_info, instance)");
    assert_eq!(instance["definition"], "label_values(pty_trace_build_info, instance)");

    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    let mut cells = BTreeSet::new();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {p}");
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "{title}: duplicate id");
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}: datasource");
        // On the 24-column grid, overlapping no other panel.
        let g = &p["gridPos"];
        let (x, y, w, h) = (g["x"].as_u64().unwrap(), g["y"].as_u64().unwrap(), g["w"].as_u64().unwrap(), g["h"].as_u64().unwrap());
        assert!(w > 0 && h > 0 && x + w <= 24, "{title}: gridPos {g}");
        for cx in x..x + w {
            for cy in y..y + h {
                assert!(cells.insert((cx, cy)), "{title} overlaps another panel at ({cx}, {cy})");
            }
        }
        let targets = p["targets"].as_array().filter(|t| !t.is_empty()).unwrap_or_else(|| panic!("{title}: no targets"));
        for t in targets {
            let expr = t["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "{title}: a target without expr");
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "{title}: target datasource");
            assert!(expr.contains("instance=~\"$instance\""), "{title}: {expr} ignores $instance");
            let names = metric_names(expr);
            assert!(!names.is_empty(), "{title}: {expr} uses no pty_trace_ metric");
            for m in names {
                assert!(PTY_TRACE_METRICS.contains(&m), "{title}: {expr} uses {m}, which pty-trace does not export");
            }
        }
    }
    let queries = dashboard_queries(&d, ".+");
    let shown: BTreeSet<&str> = queries.iter().flat_map(|(_, e)| metric_names(e)).collect();
    let missing: Vec<&&str> = PTY_TRACE_METRICS.iter().filter(|m| !shown.contains(**m)).collect();
    assert!(missing.is_empty(), "metrics no panel shows: {missing:?}");
}

// ------------------------------------------------------------------------- the systemd unit

/// A copy of the unit in a scratch directory whose ExecStart runs /bin/true instead of
/// /usr/local/bin/pty-trace (verify refuses a unit whose binary does not exist), arguments and
/// everything else unchanged.
fn unit_copy(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(file(UNIT)).unwrap();
    let exec: Vec<&str> = text.lines().filter(|l| l.starts_with("ExecStart=")).collect();
    assert_eq!(exec.len(), 1, "{UNIT}: one ExecStart=");
    assert!(exec[0].starts_with("ExecStart=/usr/local/bin/pty-trace watch "), "{}", exec[0]);
    let copy = text.replace("ExecStart=/usr/local/bin/pty-trace ", "ExecStart=/bin/true ");
    let path = dir.join("pty-trace-watch.service");
    std::fs::write(&path, copy).unwrap();
    path
}

#[test]
fn systemd_unit_verifies() {
    let analyze = systemd_analyze();
    let text = std::fs::read_to_string(file(UNIT)).unwrap();
    let exec = text.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
    for arg in
        ["--match 'claude|gemini|codex|copilot'", "--match '^tmux: server'", "--metrics 127.0.0.1:9464", "--jsonl-dir /var/log/pty-trace"]
    {
        assert!(exec.contains(arg), "ExecStart lacks {arg}: {exec}");
    }
    let caps = |key: &str| -> BTreeSet<String> {
        let line = text.lines().find(|l| l.starts_with(key)).unwrap_or_else(|| panic!("no {key}"));
        line[key.len()..].split_whitespace().map(String::from).collect()
    };
    let want: BTreeSet<String> = CAPABILITIES.iter().map(|c| c.to_string()).collect();
    assert_eq!(caps("CapabilityBoundingSet="), want);
    assert_eq!(caps("AmbientCapabilities="), want);
    for line in ["LogsDirectory=pty-trace", "ProtectSystem=strict", "NoNewPrivileges=yes", "ExecReload=/bin/kill -HUP $MAINPID"] {
        assert!(text.lines().any(|l| l == line), "{UNIT}: no {line}");
    }

    let dir = pty_trace_tests::scratch("deploy-unit-verify");
    let copy = unit_copy(&dir);
    let (out, stdout, stderr) = run(Command::new(&analyze).arg("verify").arg(&copy));
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "systemd-analyze verify failed:\n{stdout}{stderr}");
    // Warnings (an unknown or misspelt directive) do not change the status: there must be none.
    assert_eq!(format!("{stdout}{stderr}").trim(), "", "systemd-analyze verify has something to say");
}

#[test]
fn systemd_unit_exposure_is_low() {
    let analyze = systemd_analyze();
    let (out, stdout, stderr) = run(Command::new(&analyze).args(["security", "--offline=true", "--no-pager"]).arg(file(UNIT)));
    assert!(out.status.success(), "systemd-analyze security failed:\n{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level for pty-trace-watch.service:"))
        .unwrap_or_else(|| panic!("no overall exposure line:\n{stdout}"));
    let score: f64 = line
        .rsplit_once(':')
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("cannot read the exposure in {line:?}"));
    eprintln!("exposure: {score}");
    assert!(score <= MAX_EXPOSURE, "exposure {score} > {MAX_EXPOSURE}: {line}");
}

// ---------------------------------------------------------------- Prometheus, for real

#[test]
fn prometheus_harness_scrapes_itself_and_loads_the_rules() {
    let prom = Prometheus::start(&[], &[file(RULES)], Duration::from_secs(1)).unwrap();
    prom.wait_for_targets_up(Duration::from_secs(30)).unwrap();
    let up = prom.query("up").unwrap();
    let up = up.as_array().unwrap();
    assert_eq!(up.len(), 1, "only itself is scraped: {up:?}");
    assert_eq!(up[0]["metric"]["job"], "prometheus");
    assert_eq!(up[0]["metric"]["instance"], prom.addr().to_string());
    assert_eq!(up[0]["value"][1], "1", "{up:?}");

    // The rules are loaded, and evaluate without error (health "ok" once evaluated).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let groups = prom.rule_groups().unwrap();
        assert_eq!(groups.len(), 1, "{groups:?}");
        assert_eq!(groups[0]["name"], "pty-trace");
        let rules = groups[0]["rules"].as_array().unwrap();
        let names: Vec<&str> = rules.iter().map(|r| r["name"].as_str().unwrap()).collect();
        assert_eq!(names, ALERTS);
        assert!(rules.iter().all(|r| r["type"] == "alerting" && r["health"] != "err"), "{rules:?}");
        if rules.iter().all(|r| r["health"] == "ok") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "rules not evaluated: {rules:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Nothing exports pty-trace metrics here: nothing pending, nothing firing.
    assert_eq!(prom.alerts().unwrap(), Vec::<Value>::new());
    // Every dashboard query is valid PromQL (here, with no pty-trace, their results are empty).
    for (title, expr) in dashboard_queries(&dashboard(), ".+") {
        let r = prom.query(&expr).unwrap_or_else(|e| panic!("{title}: {e:#}"));
        assert!(r.as_array().is_some_and(|a| a.is_empty()), "{title}: {expr} = {r}");
    }
}

/// Serves /metrics in Prometheus's text format, as pty-trace would for two sessions: 4242
/// (claude) leaking (must rotate, orphaned PTYs growing at every scrape) and 5151 (codex)
/// healthy; the pool 90% used; events lost at every scrape.
struct FakeExporter {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    scrapes: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl FakeExporter {
    fn start() -> FakeExporter {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let scrapes = Arc::new(AtomicU64::new(0));
        let (s, n) = (stop.clone(), scrapes.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        let _ = conn.set_nonblocking(false);
                        let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
                        let mut req = Vec::new();
                        let mut buf = [0u8; 1024];
                        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                            match conn.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(k) => req.extend_from_slice(&buf[..k]),
                            }
                        }
                        let body = Self::metrics(n.fetch_add(1, Ordering::Relaxed) + 1);
                        let _ = write!(
                            conn,
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        FakeExporter { addr, stop, scrapes, thread: Some(thread) }
    }

    /// The exposition at the `n`th scrape.
    fn metrics(n: u64) -> String {
        let mut m = String::new();
        let mut family = |name: &str, kind: &str, samples: &[(&str, String)]| {
            m += &format!("# HELP {name} test\n# TYPE {name} {kind}\n");
            for (labels, value) in samples {
                m += &format!("{name}{labels} {value}\n");
            }
        };
        let (leaky, healthy) = (r#"{session="4242",comm="claude"}"#, r#"{session="5151",comm="codex"}"#);
        let sessions = |a: String, b: String| [(leaky, a), (healthy, b)];
        family("pty_trace_build_info", "gauge", &[(r#"{version="0.0.0-test",probes="tracepoint"}"#, "1".into())]);
        family("pty_trace_session_health", "gauge", &sessions("40".into(), "100".into()));
        family("pty_trace_session_leak_score", "gauge", &sessions("25".into(), "0".into()));
        family("pty_trace_session_pty_masters", "gauge", &sessions(format!("{}", 2 + n), "2".into()));
        family("pty_trace_session_orphaned_ptys", "gauge", &sessions(format!("{n}"), "0".into()));
        family("pty_trace_session_fds", "gauge", &sessions(format!("{}", 40 + n), "30".into()));
        family("pty_trace_session_processes", "gauge", &sessions("5".into(), "3".into()));
        family("pty_trace_session_commands_total", "counter", &sessions(format!("{}", 2 * n), format!("{n}")));
        family("pty_trace_session_ptys_per_command", "gauge", &sessions("0.5".into(), "0".into()));
        family("pty_trace_session_fds_per_command", "gauge", &sessions("1.5".into(), "0".into()));
        family("pty_trace_session_exhaustion_estimate_seconds", "gauge", &[(leaky, "1800".into())]);
        family("pty_trace_session_must_rotate", "gauge", &sessions("1".into(), "0".into()));
        family("pty_trace_sessions", "gauge", &[("", "2".into())]);
        family("pty_trace_sessions_ended_total", "counter", &[("", "1".into())]);
        family("pty_trace_watch_skipped_total", "counter", &[("", "0".into())]);
        family("pty_trace_watch_execs_lost_total", "counter", &[("", "0".into())]);
        let procs = [
            (r#"{session="4242",pid="4243",comm="node",container=""}"#, 30 + n, 2 + n, n),
            (r#"{session="5151",pid="5152",comm="bash",container=""}"#, 10, 1, 0),
        ];
        family("pty_trace_process_fds", "gauge", &procs.map(|(l, f, _, _)| (l, f.to_string())));
        family("pty_trace_process_pty_masters", "gauge", &procs.map(|(l, _, p, _)| (l, p.to_string())));
        family("pty_trace_process_orphaned_ptys", "gauge", &procs.map(|(l, _, _, o)| (l, o.to_string())));
        family("pty_trace_pty_pool_used", "gauge", &[("", "900".into())]);
        family("pty_trace_pty_pool_max", "gauge", &[("", "1000".into())]);
        family("pty_trace_devpts_ptys", "gauge", &[(r#"{devpts="/dev/pts",container=""}"#, "900".into())]);
        family("pty_trace_devpts_orphaned_ptys", "gauge", &[(r#"{devpts="/dev/pts",container=""}"#, format!("{n}"))]);
        family("pty_trace_events_total", "counter", &[("", format!("{}", 100 * n))]);
        family("pty_trace_lost_events_total", "counter", &[("", format!("{n}"))]);
        family("pty_trace_drift_total", "counter", &[("", "0".into())]);
        family("pty_trace_untracked_children_total", "counter", &[("", "0".into())]);
        family("pty_trace_cpu_seconds_total", "counter", &[("", format!("{}", n as f64 * 0.01))]);
        family("pty_trace_unreadable_processes", "gauge", &[("", "0".into())]);
        m
    }
}

impl Drop for FakeExporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[test]
fn rules_fire_in_prometheus_against_a_fake_exporter() {
    let exporter = FakeExporter::start();
    // A target nobody listens on (bound, then closed), for PtyTraceDown.
    let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let fake = exporter.addr.to_string();
    let short = rules_with_short_for(&file(RULES), Duration::from_secs(2)).unwrap();
    assert_eq!(short.rewritten, 4, "every alert but PtyTraceLostEvents has a `for`");
    let prom = Prometheus::start(&[fake.as_str(), dead.as_str()], &[short.path().to_path_buf()], Duration::from_secs(1)).unwrap();
    let timeout = Duration::from_secs(60);

    let firing = |name: &str| {
        let alerts = prom.wait_for_firing(name, timeout).unwrap_or_else(|e| panic!("{e:#}\n{}", prom.log()));
        eprintln!("{name}: {}", serde_json::to_string(&alerts).unwrap());
        for a in &alerts {
            assert_eq!(a["labels"]["alertname"], name);
            let summary = a["annotations"]["summary"].as_str().unwrap_or_default();
            let description = a["annotations"]["description"].as_str().unwrap_or_default();
            assert!(!summary.is_empty() && !description.is_empty(), "{a}");
            assert!(!summary.contains("<no value>") && !description.contains("<no value>"), "{a}");
        }
        alerts
    };
    let one = |name: &str| {
        let alerts = firing(name);
        assert_eq!(alerts.len(), 1, "{name}: {alerts:?}");
        alerts.into_iter().next().unwrap()
    };
    let pool = one("PtyTracePtyPoolNearlyFull");
    assert_eq!((&pool["labels"]["instance"], &pool["labels"]["severity"]), (&Value::from(fake.clone()), &Value::from("critical")));
    assert!(pool["annotations"]["summary"].as_str().unwrap().contains("90%"), "{pool}");
    for name in ["PtyTraceSessionMustRotate", "PtyTraceOrphanedPtysGrowing"] {
        let a = one(name);
        assert_eq!((&a["labels"]["session"], &a["labels"]["comm"]), (&Value::from("4242"), &Value::from("claude")), "{a}");
        assert!(a["annotations"]["summary"].as_str().unwrap().contains("4242 (claude)"), "{a}");
    }
    assert_eq!(one("PtyTraceLostEvents")["labels"]["instance"], fake);
    assert_eq!(one("PtyTraceDown")["labels"]["instance"], dead);
    // The healthy session never even goes pending.
    let alerts = prom.alerts().unwrap();
    assert!(alerts.iter().all(|a| a["labels"]["session"] != "5151"), "{alerts:?}");

    // With every metric exported, every dashboard query has data.
    for (title, expr) in dashboard_queries(&dashboard(), ".+") {
        let r = prom.query(&expr).unwrap_or_else(|e| panic!("{title}: {e:#}"));
        assert!(
            r.as_array().is_some_and(|a| !a.is_empty()),
            "{title}: {expr} has no data after {} scrapes",
            exporter.scrapes.load(Ordering::Relaxed)
        );
    }
}

// ------------------------------------------- pty-trace watch, scraped for real (root, BPF)

/// Shell commands each agent runs.
const AGENT_COMMANDS: u64 = 16;

/// How long an agent holds after its loop: longer than the test needs (it is killed at the
/// end), bounded should everything else fail to kill it.
const AGENT_HOLD_S: u64 = 60;

/// Where the test leaves the raw scrape and the alerts, for a person to look at.
const SCRAPE_COPY: &str = "/tmp/pty-trace-scrape.txt";
const ALERTS_COPY: &str = "/tmp/pty-trace-alerts.json";

/// The processes a test started, by name: each one still running is killed (SIGKILL) and
/// every one reaped on drop, so that no agent, tracer or exporter outlives a failing test.
struct Procs(Vec<(&'static str, Child)>);

impl Procs {
    fn get(&mut self, name: &str) -> &mut Child {
        &mut self.0.iter_mut().find(|(n, _)| *n == name).unwrap_or_else(|| panic!("no process {name}")).1
    }

    /// Panics with `stderr` (a file) when `name` has exited already.
    fn assert_running(&mut self, name: &str, stderr: &Path) {
        if let Some(status) = self.get(name).try_wait().unwrap() {
            panic!("{name} exited ({status}): {}", std::fs::read_to_string(stderr).unwrap_or_default());
        }
    }
}

impl Drop for Procs {
    fn drop(&mut self) {
        for (_, c) in &mut self.0 {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }
}

/// A loopback address nobody listens on now (bound, then closed).
fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap()
}

/// The snapshot fields the per-session metrics show, as (metric, the value in a snapshot
/// record). `must_rotate` is the scorer's rule: health below rotate_health (50 by default).
type SessionField = (&'static str, fn(&Snap) -> f64);

const SESSION_FIELDS: &[SessionField] = &[
    ("pty_trace_session_pty_masters", |s| s.num(&["totals", "pty_masters"]).unwrap()),
    ("pty_trace_session_orphaned_ptys", |s| s.num(&["totals", "orphaned_ptys"]).unwrap()),
    ("pty_trace_session_fds", |s| s.num(&["totals", "fds"]).unwrap()),
    ("pty_trace_session_processes", |s| s.num(&["totals", "processes"]).unwrap()),
    ("pty_trace_session_health", |s| s.num(&["health"]).unwrap()),
    ("pty_trace_session_leak_score", |s| s.num(&["leak_score"]).unwrap()),
    ("pty_trace_session_commands_total", |s| s.num(&["commands"]).unwrap()),
    ("pty_trace_session_ptys_per_command", |s| s.num(&["pty_per_command"]).unwrap()),
    ("pty_trace_session_fds_per_command", |s| s.num(&["fd_per_command"]).unwrap()),
    ("pty_trace_session_must_rotate", |s| if s.num(&["health"]).unwrap() < 50.0 { 1.0 } else { 0.0 }),
];

/// One snapshot record, kept as its JSONL line so that its numbers are read exactly:
/// serde_json's `Value` (without the `float_roundtrip` feature, which this workspace does not
/// enable) may read a float one ULP off (`0.45454545454545453` as `0.4545454545454546`), while
/// `str::parse::<f64>` rounds correctly, as Prometheus does.
struct Snap {
    /// Its `ts`, in ms since the epoch.
    ts: u64,
    line: String,
}

impl Snap {
    /// The number at `path` (object keys), `None` when it is null or absent.
    fn num(&self, path: &[&str]) -> Option<f64> {
        let mut raw: &serde_json::value::RawValue = serde_json::from_str(&self.line).ok()?;
        for key in path {
            let map: std::collections::HashMap<&str, &serde_json::value::RawValue> = serde_json::from_str(raw.get()).ok()?;
            raw = map.get(key)?;
        }
        raw.get().parse().ok()
    }

    fn values(&self) -> Vec<f64> {
        SESSION_FIELDS.iter().map(|(_, f)| f(self)).collect()
    }
}

/// The snapshot records of `session` in the JSONL file, in order.
fn snapshots_of(jsonl: &Path, session: u32) -> Vec<Snap> {
    let text = std::fs::read_to_string(jsonl).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: not JSON ({e}): {line}", jsonl.display()));
            (v["type"] == "snapshot" && v["session"] == session)
                .then(|| Snap { ts: ts_ms(v["ts"].as_str().unwrap()), line: line.to_string() })
        })
        .collect()
}

/// The value of the one sample `promql` returns, and its Prometheus timestamp (seconds).
fn only_sample(prom: &Prometheus, promql: &str) -> (f64, f64) {
    let r = prom.query(promql).unwrap_or_else(|e| panic!("{e:#}"));
    let a = r.as_array().unwrap_or_else(|| panic!("{promql}: not a vector: {r}"));
    assert_eq!(a.len(), 1, "{promql}: one sample expected: {r}");
    let v = a[0]["value"][1].as_str().unwrap().parse::<f64>().unwrap_or_else(|e| panic!("{promql}: {e}: {r}"));
    (v, a[0]["value"][0].as_f64().unwrap())
}

#[test]
fn prometheus_scrapes_watch_and_fires_must_rotate_for_the_leaky_session_only() {
    if !bpf_available("prometheus_scrapes_watch_and_fires_must_rotate_for_the_leaky_session_only") {
        return;
    }
    let t0 = Instant::now();
    let at = |what: &str| eprintln!("[{:5.1}s] {what}", t0.elapsed().as_secs_f64());
    let python = require_tool("/usr/bin/python3", "python3");
    let dir = scratch("deploy-watch-prometheus");
    let jsonl = dir.join("watch.jsonl");
    let marker = std::process::id();
    let (leaky_tag, clean_tag) = (format!("leaky-{marker}"), format!("clean-{marker}"));
    let (watch_addr, top_addr) = (free_addr(), free_addr());
    let mut procs = Procs(Vec::new());

    // The tracer, and `top` for the series only it exports (per-process orphans, devpts).
    let watch_err = dir.join("watch.stderr");
    let watch = Command::new(pty_trace_bin())
        .args(["watch", "--match", &format!("{leaky_tag}|{clean_tag}"), "--interval", "1s"])
        .arg("--metrics")
        .arg(watch_addr.to_string())
        .arg("--jsonl-dir")
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("watch.stdout")).unwrap())
        .stderr(std::fs::File::create(&watch_err).unwrap())
        .spawn()
        .expect("starting pty-trace watch");
    procs.0.push(("watch", watch));
    let top_err = dir.join("top.stderr");
    let top = Command::new(pty_trace_bin())
        .args(["top", "--no-tui", "--jsonl", "/dev/null", "--interval", "1s", "--metrics"])
        .arg(top_addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&top_err).unwrap())
        .spawn()
        .expect("starting pty-trace top");
    procs.0.push(("top", top));

    // Up: the probes attached (build_info names the backend, `none` before; the endpoint
    // serves before the probes load) and the tracer's loop running (its totals are exported
    // from its first round, after its look at what already runs).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        procs.assert_running("watch", &watch_err);
        let up = http_get(watch_addr, "/metrics", Duration::from_secs(2)).is_ok_and(|(code, body)| {
            code == 200
                && body.contains("pty_trace_build_info{")
                && !body.contains("probes=\"none\"")
                && body.contains("\npty_trace_events_total ")
        });
        if up {
            break;
        }
        assert!(Instant::now() < deadline, "watch not up after 30 s: {}", std::fs::read_to_string(&watch_err).unwrap_or_default());
        std::thread::sleep(Duration::from_millis(100));
    }
    at("watch is up");

    // The agents, seen at their exec.
    let mut holding = Vec::new();
    for (name, mode, tag) in [("leaky", "leak", &leaky_tag), ("clean", "close", &clean_tag)] {
        let mut child = Command::new(&python)
            .args(["-c", AGENT, &AGENT_COMMANDS.to_string(), mode, &AGENT_HOLD_S.to_string(), tag])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting an agent");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(out).read_line(&mut line);
            let _ = tx.send(line);
        });
        holding.push((name, rx));
        procs.0.push((name, child));
    }
    let (leaky_pid, clean_pid) = (procs.get("leaky").id(), procs.get("clean").id());

    let short = rules_with_short_for(&file(RULES), Duration::from_secs(2)).unwrap();
    let (w, t) = (watch_addr.to_string(), top_addr.to_string());
    let prom = Prometheus::start(&[w.as_str(), t.as_str()], &[short.path().to_path_buf()], Duration::from_secs(1)).unwrap();
    at("prometheus is ready");

    // Each agent is its own session, whose root is the agent (the start record's command has
    // its marker).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let recs = read_jsonl(&jsonl);
        let starts = of_type(&recs, "start");
        let of_tag = |tag: &str| -> Vec<&Value> {
            starts.iter().copied().filter(|s| s["command"].as_array().is_some_and(|c| c.iter().any(|a| a.as_str() == Some(tag)))).collect()
        };
        let (l, c) = (of_tag(&leaky_tag), of_tag(&clean_tag));
        if !l.is_empty() && !c.is_empty() {
            assert_eq!((l.len(), c.len()), (1, 1), "one session per agent: {starts:?}");
            assert_eq!(l[0]["sessions"], serde_json::json!([leaky_pid]), "the leaky agent is its session's root");
            assert_eq!(c[0]["sessions"], serde_json::json!([clean_pid]), "the clean agent is its session's root");
            break;
        }
        assert!(Instant::now() < deadline, "no session for the agents after 20 s: {starts:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    at(&format!("sessions: leaky {leaky_pid}, clean {clean_pid}"));
    prom.wait_for_targets_up(Duration::from_secs(30)).unwrap();
    let up = prom.query("up{job=\"pty-trace\"}").unwrap();
    assert_eq!(up.as_array().map(Vec::len), Some(2), "{up}");
    assert!(up.as_array().unwrap().iter().all(|s| s["value"][1] == "1"), "{up}");
    at("targets up");

    // Quiescent: each agent has finished its loop (it said so) and, after that, two
    // consecutive snapshots of its session agree on every compared field.
    for (name, rx) in &holding {
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| panic!("{name} agent: no `holding` in 30 s"));
        assert_eq!(line.trim(), "holding", "{name} agent said {line:?}");
    }
    let seen_at_holding: Vec<usize> = [leaky_pid, clean_pid].iter().map(|&p| snapshots_of(&jsonl, p).len()).collect();
    at("both agents hold");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Per session: the index of the first snapshot of the quiet pair, and its stamp (ms).
    let quiet: Vec<(usize, u64)> = loop {
        let found: Vec<Option<(usize, u64)>> = [leaky_pid, clean_pid]
            .iter()
            .zip(&seen_at_holding)
            .map(|(&p, &from)| {
                let snaps = snapshots_of(&jsonl, p);
                (from + 1..snaps.len()).find(|&i| snaps[i - 1].values() == snaps[i].values()).map(|i| (i - 1, snaps[i].ts))
            })
            .collect();
        if found.iter().all(Option::is_some) {
            break found.into_iter().flatten().collect();
        }
        assert!(Instant::now() < deadline, "no two identical snapshots after the agents' loops in 20 s");
        std::thread::sleep(Duration::from_millis(250));
    };
    at("both sessions quiescent");

    // Prometheus has scraped them since (its sample is stamped after the quiet pair).
    let deadline = Instant::now() + Duration::from_secs(20);
    for (&pid, &(_, stamp)) in [leaky_pid, clean_pid].iter().zip(&quiet) {
        loop {
            let (t, _) = only_sample(&prom, &format!("timestamp(pty_trace_session_health{{session=\"{pid}\"}})"));
            if t * 1000.0 >= stamp as f64 {
                break;
            }
            assert!(Instant::now() < deadline, "session {pid}: no scrape after its quiet snapshots in 20 s");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    // The raw exposition, for the record.
    let (code, scrape) = http_get(watch_addr, "/metrics", Duration::from_secs(5)).unwrap();
    assert_eq!(code, 200);
    std::fs::write(SCRAPE_COPY, &scrape).unwrap();
    // What pty-trace exports is exactly what the dashboard, the rules and the README know of.
    let exported: BTreeSet<&str> = scrape.lines().filter(|l| !l.starts_with('#')).flat_map(metric_names).collect();
    let unknown: Vec<&&str> = exported.iter().filter(|m| !PTY_TRACE_METRICS.contains(m)).collect();
    assert!(unknown.is_empty(), "watch exports metrics PTY_TRACE_METRICS does not list: {unknown:?}");
    eprintln!("--- /metrics of watch, the leaky session {leaky_pid} (full scrape in {SCRAPE_COPY}):");
    let leaky_label = format!("session=\"{leaky_pid}\"");
    for l in
        scrape.lines().filter(|l| l.contains(&leaky_label) || l.starts_with("pty_trace_build_info") || l.starts_with("pty_trace_sessions"))
    {
        eprintln!("{l}");
    }

    // Every compared metric equals the JSONL: the latest snapshot, and every one since the
    // quiet pair (all identical: the agents are only sleeping).
    let mut got = Vec::new();
    for &pid in &[leaky_pid, clean_pid] {
        let values: Vec<f64> =
            SESSION_FIELDS.iter().map(|(m, _)| only_sample(&prom, &format!("{m}{{session=\"{pid}\",comm=\"python3\"}}")).0).collect();
        got.push(values);
    }
    for ((&pid, values), &(first_quiet, _)) in [leaky_pid, clean_pid].iter().zip(&got).zip(&quiet) {
        let snaps = snapshots_of(&jsonl, pid);
        let latest = snaps.last().unwrap().values();
        for (i, s) in snaps.iter().enumerate().skip(first_quiet) {
            assert_eq!(s.values(), latest, "session {pid}: snapshot {i} differs from the latest while the agent sleeps: {}", s.line);
        }
        for ((m, _), (p, j)) in SESSION_FIELDS.iter().zip(values.iter().zip(&latest)) {
            eprintln!("session {pid}: {m} = {p} (Prometheus), {j} (JSONL, latest of {} snapshots)", snaps.len());
            assert_eq!(p, j, "session {pid}: {m} is {p} in Prometheus, {j} in the latest snapshot");
        }
    }
    let field = |values: &[f64], name: &str| values[SESSION_FIELDS.iter().position(|(m, _)| *m == name).unwrap()];
    let (leaky, clean) = (&got[0], &got[1]);
    let n = AGENT_COMMANDS as f64;
    assert_eq!(field(leaky, "pty_trace_session_pty_masters"), n, "every kept master");
    assert_eq!(field(leaky, "pty_trace_session_orphaned_ptys"), n, "every kept master is orphaned");
    assert_eq!(field(leaky, "pty_trace_session_must_rotate"), 1.0);
    assert!(field(leaky, "pty_trace_session_health") < 50.0);
    assert_eq!(field(leaky, "pty_trace_session_commands_total"), n);
    assert_eq!(field(clean, "pty_trace_session_pty_masters"), 0.0);
    assert_eq!(field(clean, "pty_trace_session_orphaned_ptys"), 0.0);
    assert_eq!(field(clean, "pty_trace_session_must_rotate"), 0.0);
    assert_eq!(field(clean, "pty_trace_session_health"), 100.0);
    assert_eq!(field(clean, "pty_trace_session_commands_total"), n);
    assert_eq!(only_sample(&prom, &format!("pty_trace_sessions{{instance=\"{watch_addr}\"}}")).0, 2.0, "the two agents only");

    // The exhaustion estimate changes at every snapshot (a trend over time): Prometheus's
    // value is one of the session's snapshots', exactly.
    let est = prom.query(&format!("pty_trace_session_exhaustion_estimate_seconds{{session=\"{leaky_pid}\"}}")).unwrap();
    let estimates =
        || -> Vec<Option<f64>> { snapshots_of(&jsonl, leaky_pid).iter().map(|s| s.num(&["est_seconds_to_exhaustion"])).collect() };
    if let Some(sample) = est.as_array().and_then(|a| a.first()) {
        let v: f64 = sample["value"][1].as_str().unwrap().parse().unwrap();
        let mut in_jsonl = estimates().contains(&Some(v));
        if !in_jsonl {
            // Written to the JSONL before the metrics are set; flushed at the end of the round.
            std::thread::sleep(Duration::from_millis(1500));
            in_jsonl = estimates().contains(&Some(v));
        }
        eprintln!("session {leaky_pid}: exhaustion estimate {v} s (Prometheus), in the JSONL: {in_jsonl}");
        assert!(in_jsonl, "exhaustion estimate {v} in Prometheus is in no snapshot of session {leaky_pid}: {:?}", estimates());
    } else {
        let last = estimates().last().copied().flatten();
        assert!(last.is_none(), "the latest leaky snapshot has an estimate ({last:?}), Prometheus none: {est}");
    }
    at("values agree");

    // The rotate alert fires for the leaky session, and the clean one never had an alert.
    let firing =
        prom.wait_for_firing("PtyTraceSessionMustRotate", Duration::from_secs(30)).unwrap_or_else(|e| panic!("{e:#}\n{}", prom.log()));
    at("PtyTraceSessionMustRotate fires");
    let alerts = prom.alerts().unwrap();
    std::fs::write(ALERTS_COPY, serde_json::to_string_pretty(&alerts).unwrap()).unwrap();
    eprintln!("--- /api/v1/alerts (saved in {ALERTS_COPY}):");
    for a in &alerts {
        eprintln!(
            "{} {} session={} comm={} instance={}: {}",
            a["labels"]["alertname"],
            a["state"],
            a["labels"]["session"],
            a["labels"]["comm"],
            a["labels"]["instance"],
            a["annotations"]["summary"]
        );
    }
    assert_eq!(firing.len(), 1, "{firing:?}");
    let a = &firing[0];
    assert_eq!(a["labels"]["session"], leaky_pid.to_string(), "{a}");
    assert_eq!((&a["labels"]["comm"], &a["labels"]["instance"]), (&Value::from("python3"), &Value::from(w.clone())), "{a}");
    // (The label is a string: compared with the number, it would never be equal.)
    let clean_label = clean_pid.to_string();
    assert!(
        alerts.iter().all(|a| a["labels"]["session"].as_str() != Some(clean_label.as_str())),
        "an alert for the clean session: {alerts:?}"
    );
    let ever = prom.query(&format!("max_over_time(ALERTS{{session=\"{clean_pid}\"}}[10m])")).unwrap();
    assert_eq!(ever, serde_json::json!([]), "the clean session was pending or firing at some point");

    // Every dashboard panel has data (the estimate too, when the leaky session has one).
    let estimate_now = snapshots_of(&jsonl, leaky_pid).last().unwrap().num(&["est_seconds_to_exhaustion"]).is_some();
    for (title, expr) in dashboard_queries(&dashboard(), ".+") {
        let r = prom.query(&expr).unwrap_or_else(|e| panic!("{title}: {e:#}"));
        let has = r.as_array().is_some_and(|a| !a.is_empty());
        let may_be_empty = metric_names(&expr).iter().any(|m| DASHBOARD_MAY_BE_EMPTY.contains(m));
        if may_be_empty {
            eprintln!(
                "{title}: {expr}: {} (the leaky session's latest snapshot has {}an estimate)",
                if has { "data" } else { "empty" },
                if estimate_now { "" } else { "no " }
            );
        }
        assert!(has || (may_be_empty && !estimate_now), "{title}: {expr} has no data: {r}");
    }
    at("every dashboard query has data");

    // SIGTERM: a clean exit, with a summary for each session.
    assert_eq!(unsafe { libc::kill(procs.get("watch").id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = procs.get("watch").try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "watch still running 20 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    at(&format!("watch exited after SIGTERM: {status}"));
    assert_eq!(status.code(), Some(0), "{}", std::fs::read_to_string(&watch_err).unwrap_or_default());
    let recs = read_jsonl(&jsonl);
    // A session's `start` names it; the service writes one of its own first, naming none.
    let session_starts: Vec<&Value> = of_type(&recs, "start").into_iter().filter(|s| s["sessions"] != serde_json::json!([])).collect();
    let started: BTreeSet<u64> =
        session_starts.iter().flat_map(|s| s["sessions"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap())).collect();
    let summaries = of_type(&recs, "summary");
    let ended: Vec<u64> = summaries.iter().map(|s| s["session"].as_u64().unwrap()).collect();
    assert_eq!(started, BTreeSet::from([leaky_pid as u64, clean_pid as u64]));
    assert_eq!(ended.len(), session_starts.len(), "one summary per session started: {ended:?}");
    assert_eq!(ended.iter().copied().collect::<BTreeSet<u64>>(), started);
    let verdict =
        |pid: u32| summaries.iter().find(|s| s["session"] == pid).map(|s| (s["verdict"].clone(), s["end_reason"].clone())).unwrap();
    eprintln!("summaries: leaky {:?}, clean {:?}", verdict(leaky_pid), verdict(clean_pid));
    assert_eq!(verdict(leaky_pid).0, "LEAK DETECTED");
    assert_eq!(verdict(clean_pid).0, "HEALTHY");
    let gone = std::net::TcpStream::connect_timeout(&watch_addr, Duration::from_secs(2));
    assert!(
        gone.as_ref().is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionRefused),
        "watch's metrics endpoint after exit: {gone:?}"
    );
    drop(procs);
    let _ = std::fs::remove_dir_all(&dir);
    at("done");
}

/// The README's metric table lists exactly the metrics pty-trace exports.
#[test]
fn the_readme_lists_every_metric() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let listed: BTreeSet<&str> = readme.lines().filter_map(|l| l.strip_prefix("| `")?.split('`').next()).filter(|m| m.starts_with("pty_trace_")).collect();
    let known: BTreeSet<&str> = PTY_TRACE_METRICS.iter().copied().collect();
    assert_eq!(listed, known, "README.md's metric table vs PTY_TRACE_METRICS");
}
