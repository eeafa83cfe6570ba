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
//! - the [`Prometheus`] harness itself (scraping its own /metrics, with the rules loaded).
//!
//! None needs root or BPF. A missing tool fails the test, naming `cargo xtask setup` (which
//! installs Debian's `prometheus` and `systemd` packages): nothing is skipped.

use std::{
    collections::BTreeSet,
    io::{Read, Write},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Command, Output},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    thread::JoinHandle,
    time::Duration,
};

use pty_trace_tests::prometheus::*;
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
