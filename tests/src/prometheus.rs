//! A real Prometheus server for tests: [`Prometheus::start`] runs Debian's `/usr/bin/prometheus`
//! on a free loopback port with a generated configuration and its own temporary storage,
//! scraping the given targets and evaluating the given rule files; dropping it kills the
//! server and removes its directory.
//!
//! HTTP is a plain HTTP/1.0 GET over [`std::net::TcpStream`] (this crate has no HTTP client,
//! and spawning `curl` per poll would add a process and a dependency for a few lines of code):
//! Prometheus answers an HTTP/1.0 request with the whole body, neither chunked nor compressed,
//! and closes the connection, so the body is everything after the headers.
//!
//! The configuration has two scrape jobs, both at `scrape_interval` (rules are evaluated at the
//! same interval):
//! - `prometheus`: the server's own `/metrics` (so a test without pty-trace still has a target);
//! - `pty-trace`: `scrape_targets` (`host:port`, path `/metrics`), the job name the example
//!   configuration uses and the `PtyTraceDown` rule selects.
//!
//! [`rules_with_short_for`] writes a copy of a rules file whose every `for:` is shortened, so
//! that a test sees a `for: 5m` alert fire within seconds.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

/// Every metric `pty-trace --metrics` exports (the names are fixed; see each one's labels in
/// deploy/grafana/pty-trace.json and deploy/prometheus/pty-trace.rules.yml).
pub const PTY_TRACE_METRICS: &[&str] = &[
    "pty_trace_build_info",
    "pty_trace_session_health",
    "pty_trace_session_leak_score",
    "pty_trace_session_pty_masters",
    "pty_trace_session_orphaned_ptys",
    "pty_trace_session_fds",
    "pty_trace_session_processes",
    "pty_trace_session_commands_total",
    "pty_trace_session_ptys_per_command",
    "pty_trace_session_fds_per_command",
    "pty_trace_session_exhaustion_estimate_seconds",
    "pty_trace_session_must_rotate",
    "pty_trace_sessions",
    "pty_trace_sessions_ended_total",
    "pty_trace_watch_skipped_total",
    "pty_trace_watch_execs_lost_total",
    "pty_trace_process_fds",
    "pty_trace_process_pty_masters",
    "pty_trace_process_orphaned_ptys",
    "pty_trace_pty_pool_used",
    "pty_trace_pty_pool_max",
    "pty_trace_devpts_ptys",
    "pty_trace_devpts_orphaned_ptys",
    "pty_trace_events_total",
    "pty_trace_lost_events_total",
    "pty_trace_drift_total",
    "pty_trace_untracked_children_total",
    "pty_trace_cpu_seconds_total",
    "pty_trace_unreadable_processes",
];

/// The `pty_trace_*` metric names `text` mentions (PromQL, a rules file), in order, repeated.
pub fn metric_names(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("pty_trace_") {
        let preceded = rest[..i].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
        let tail = &rest[i..];
        let len = tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(tail.len());
        if !preceded {
            out.push(&tail[..len]);
        }
        rest = &tail[len..];
    }
    out
}

/// The dashboard's repository path, relative to the workspace root.
pub const DASHBOARD: &str = "deploy/grafana/pty-trace.json";

/// Dashboard panels whose query is legitimately empty on a healthy machine (a series that
/// exists only while there is something to report): the end-to-end test must not require data
/// from them. The exhaustion estimate exists only while a session has a sustained fd or PTY
/// growth trend.
pub const DASHBOARD_MAY_BE_EMPTY: &[&str] = &["pty_trace_session_exhaustion_estimate_seconds"];

/// Every (panel title, PromQL) of a Grafana dashboard, rows' nested panels included, with
/// `$instance` (and `${instance}`) replaced by `instance` (e.g. `.+`).
pub fn dashboard_queries(dashboard: &Value, instance: &str) -> Vec<(String, String)> {
    fn walk(panels: &Value, instance: &str, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().unwrap_or("");
                out.push((title.clone(), expr.replace("${instance}", instance).replace("$instance", instance)));
            }
            walk(&p["panels"], instance, out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], instance, &mut out);
    out
}

/// Debian's `prometheus` package (`cargo xtask setup` installs it).
pub const PROMETHEUS_BIN: &str = "/usr/bin/prometheus";

/// `path` when it is an executable file; otherwise panics saying how to get it (the tests that
/// need a tool fail without it, never skip).
pub fn require_tool(path: &str, package: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = PathBuf::from(path);
    match std::fs::metadata(&p) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => p,
        _ => panic!(
            "{path} is missing: it comes with Debian's `{package}` package; run `cargo xtask setup` \
             (it installs it), or `apt-get install {package}`"
        ),
    }
}

/// A running Prometheus server (see the module doc). Killed, and its directory removed, on drop.
pub struct Prometheus {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    /// The scrape targets, `prometheus`'s own first.
    targets: Vec<String>,
}

/// A unique scratch directory name per call (tests run in parallel threads of one process).
fn unique_dir(what: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("pty-trace-{what}-{}-{n}", std::process::id()))
}

/// A Prometheus duration for `d`, in milliseconds (`1500ms`), at least 1ms.
pub fn prom_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis().max(1))
}

/// Percent-encodes `s` for a URL query value (everything but RFC 3986's unreserved characters).
pub fn url_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `GET target` from `addr` over HTTP/1.0: (status, body).
pub fn http_get(addr: SocketAddr, target: &str, timeout: Duration) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).with_context(|| format!("connecting to {addr}"))?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    write!(s, "GET {target} HTTP/1.0\r\nHost: {addr}\r\nAccept: application/json\r\nConnection: close\r\n\r\n")
        .with_context(|| format!("sending GET {target} to {addr}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).with_context(|| format!("reading the answer to GET {target} from {addr}"))?;
    let text = String::from_utf8(raw).with_context(|| format!("GET {target}: the answer is not UTF-8"))?;
    let (head, body) = text.split_once("\r\n\r\n").with_context(|| format!("GET {target}: no end of headers in {text:?}"))?;
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .with_context(|| format!("GET {target}: no status line in {head:?}"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    ensure!(!chunked, "GET {target}: chunked answer to an HTTP/1.0 request");
    Ok((status, body.to_string()))
}

impl Prometheus {
    /// Starts Prometheus scraping `scrape_targets` (job `pty-trace`) and itself (job
    /// `prometheus`) every `scrape_interval`, evaluating `rules_files` at the same interval, and
    /// waits until it is ready (`/-/ready`). The port is a free one on 127.0.0.1 (tried up to
    /// three times should another process take it first).
    pub fn start(scrape_targets: &[&str], rules_files: &[PathBuf], scrape_interval: Duration) -> Result<Prometheus> {
        let bin = require_tool(PROMETHEUS_BIN, "prometheus");
        let mut rules = Vec::new();
        for r in rules_files {
            rules.push(std::fs::canonicalize(r).with_context(|| format!("rules file {}", r.display()))?);
        }
        let mut last_err = None;
        for _ in 0..3 {
            match Self::start_once(&bin, scrape_targets, &rules, scrape_interval) {
                Ok(p) => return Ok(p),
                Err(e) if format!("{e:#}").contains("address already in use") => last_err = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last_err.expect("three attempts"))
    }

    fn start_once(bin: &Path, scrape_targets: &[&str], rules: &[PathBuf], interval: Duration) -> Result<Prometheus> {
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").context("binding a loopback port")?;
            l.local_addr()?.port()
        };
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let dir = unique_dir("prometheus");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("data")).with_context(|| format!("creating {}", dir.display()))?;
        let own = addr.to_string();
        let mut jobs = vec![json!({"job_name": "prometheus", "static_configs": [{"targets": [own.clone()]}]})];
        if !scrape_targets.is_empty() {
            jobs.push(json!({"job_name": "pty-trace", "metrics_path": "/metrics", "static_configs": [{"targets": scrape_targets}]}));
        }
        // JSON is YAML: no quoting rules to get wrong.
        let config = json!({
            "global": {
                "scrape_interval": prom_duration(interval),
                "scrape_timeout": prom_duration(interval.min(Duration::from_secs(10))),
                "evaluation_interval": prom_duration(interval),
            },
            "rule_files": rules,
            "scrape_configs": jobs,
        });
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config)?)?;
        let log = std::fs::File::create(dir.join("prometheus.log"))?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .current_dir(&dir)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut targets = vec![own];
        targets.extend(scrape_targets.iter().map(|t| t.to_string()));
        let mut p = Prometheus { child, dir, addr, targets };
        p.wait_ready(Duration::from_millis(crate::slow_ms(60_000)))?;
        Ok(p)
    }

    fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("prometheus exited ({status}) before it was ready:\n{}", self.log());
            }
            if let Ok((200, _)) = http_get(self.addr, "/-/ready", Duration::from_secs(2)) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                bail!("prometheus on {} not ready after {timeout:?}:\n{}", self.addr, self.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The server's log (stdout and stderr) so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// `GET` an API path (`/api/v1/...`, query string included): its `data` when the status is
    /// `success`, otherwise an error with Prometheus's `errorType` and `error`.
    pub fn api(&self, target: &str) -> Result<Value> {
        let (code, body) = http_get(self.addr, target, Duration::from_secs(10))?;
        let v: Value = serde_json::from_str(&body).with_context(|| format!("GET {target}: HTTP {code}, not JSON: {body}"))?;
        if v["status"] != "success" {
            bail!("GET {target}: HTTP {code}, {}: {}", v["errorType"], v["error"]);
        }
        Ok(v["data"].clone())
    }

    /// An instant query (`/api/v1/query`): its `data.result` (a vector's samples, each with
    /// `metric` and `value` [time, "string value"]; or a scalar's [time, value]).
    pub fn query(&self, promql: &str) -> Result<Value> {
        let data = self.api(&format!("/api/v1/query?query={}", url_encode(promql))).with_context(|| format!("query {promql:?}"))?;
        Ok(data["result"].clone())
    }

    /// The alerts now pending or firing (`/api/v1/alerts`), each with `labels`, `annotations`,
    /// `state` and `value`.
    pub fn alerts(&self) -> Result<Vec<Value>> {
        Ok(self.api("/api/v1/alerts")?["alerts"].as_array().cloned().unwrap_or_default())
    }

    /// The rule groups loaded (`/api/v1/rules`), each with `name`, `file` and `rules` (with
    /// `name`, `query`, `health`, `state`...).
    pub fn rule_groups(&self) -> Result<Vec<Value>> {
        Ok(self.api("/api/v1/rules")?["groups"].as_array().cloned().unwrap_or_default())
    }

    /// The active scrape targets (`/api/v1/targets`), each with `scrapeUrl`, `health`
    /// (`up`/`down`/`unknown`) and `lastError`.
    pub fn targets(&self) -> Result<Vec<Value>> {
        Ok(self.api("/api/v1/targets?state=active")?["activeTargets"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until every target (this server's own and the `scrape_targets`) has been scraped
    /// successfully (`health` `up`); the error lists the targets' state on timeout.
    pub fn wait_for_targets_up(&self, timeout: Duration) -> Result<()> {
        let start = Instant::now();
        loop {
            let targets = self.targets()?;
            let up = targets.iter().filter(|t| t["health"] == "up").count();
            if targets.len() == self.targets.len() && up == targets.len() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let state: Vec<String> = targets.iter().map(|t| format!("{} {} {}", t["scrapeUrl"], t["health"], t["lastError"])).collect();
                bail!(
                    "after {timeout:?}, {up} of the {} targets {:?} are up: {}\n{}",
                    self.targets.len(),
                    self.targets,
                    state.join("; "),
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits until an alert named `name` is firing and returns the firing ones of that name.
    pub fn wait_for_firing(&self, name: &str, timeout: Duration) -> Result<Vec<Value>> {
        let start = Instant::now();
        loop {
            let alerts = self.alerts()?;
            let firing: Vec<Value> =
                alerts.iter().filter(|a| a["labels"]["alertname"] == name && a["state"] == "firing").cloned().collect();
            if !firing.is_empty() {
                return Ok(firing);
            }
            if start.elapsed() > timeout {
                bail!("{name} not firing after {timeout:?}; alerts now: {}", serde_json::to_string(&alerts)?);
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        // Its storage is thrown away with the directory: no need for a clean shutdown.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A copy of a rules file with its `for:` durations shortened ([`rules_with_short_for`]);
/// removed on drop.
pub struct ShortForRules {
    dir: PathBuf,
    path: PathBuf,
    /// How many `for:` lines were rewritten.
    pub rewritten: usize,
}

impl ShortForRules {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ShortForRules {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes a copy of the rules file `path` in which every rule's `for: <duration>` is
/// `for: <new_for>`, so that an end-to-end test sees a `for: 5m` alert fire in seconds. Lines
/// are matched as YAML keys (`for:` after indentation, or `- for:`), comments and everything
/// else kept. A file without any `for:` is an error (the caller meant to shorten something).
pub fn rules_with_short_for(path: &Path, new_for: Duration) -> Result<ShortForRules> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (out, rewritten) = shorten_for(&text, new_for);
    ensure!(rewritten > 0, "{} has no `for:` to shorten", path.display());
    let dir = unique_dir("rules");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let name = path.file_name().context("a rules file name")?;
    let copy = dir.join(name);
    std::fs::write(&copy, out)?;
    Ok(ShortForRules { dir, path: copy, rewritten })
}

/// [`rules_with_short_for`]'s rewriting: the text and the number of `for:` lines changed.
pub fn shorten_for(text: &str, new_for: Duration) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    let mut n = 0;
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\n', '\r']);
        let indent = body.len() - body.trim_start().len();
        let rest = &body[indent..];
        let (dash, key) = match rest.strip_prefix("- ") {
            Some(k) => ("- ", k.trim_start()),
            None => ("", rest),
        };
        if let Some(value) = key.strip_prefix("for:")
            && !value.trim().is_empty()
            && !value.trim_start().starts_with('#')
        {
            let comment = value.find(" #").map(|i| &value[i..]).unwrap_or("");
            out.push_str(&format!("{}{dash}for: {}{comment}", &body[..indent], prom_duration(new_for)));
            out.push_str(&line[body.len()..]);
            n += 1;
        } else {
            out.push_str(line);
        }
    }
    (out, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortens_every_for_and_nothing_else() {
        let rules = "groups:\n  - name: g\n    rules:\n      # for: 10m in a comment stays\n      - alert: A\n        expr: up == 0\n        for: 5m\n        labels: {severity: warning}\n      - alert: B\n        for: 1h # one hour\n        expr: x\n      - alert: C\n        expr: y\n";
        let (out, n) = shorten_for(rules, Duration::from_secs(2));
        assert_eq!(n, 2);
        assert!(out.contains("        for: 2000ms\n"), "{out}");
        assert!(out.contains("        for: 2000ms # one hour\n"), "{out}");
        assert!(out.contains("# for: 10m in a comment stays\n"), "{out}");
        assert_eq!(out.lines().count(), rules.lines().count());
        assert_eq!(shorten_for("- for: 3m\r\n", Duration::from_millis(500)), ("- for: 500ms\r\n".to_string(), 1));
        assert_eq!(shorten_for("expr: forecast\n", Duration::from_secs(1)).1, 0);
    }

    #[test]
    fn encodes_promql_for_a_query_string() {
        assert_eq!(url_encode(r#"up{job="pty-trace"} == 0"#), "up%7Bjob%3D%22pty-trace%22%7D%20%3D%3D%200");
        assert_eq!(url_encode("rate(x[5m])/y+1"), "rate%28x%5B5m%5D%29%2Fy%2B1");
        assert_eq!(prom_duration(Duration::from_secs(1)), "1000ms");
    }

    #[test]
    fn finds_metric_names() {
        assert_eq!(
            metric_names("rate(pty_trace_events_total{instance=~\"$i\"}[5m]) / pty_trace_pty_pool_max x_pty_trace_no"),
            ["pty_trace_events_total", "pty_trace_pty_pool_max"]
        );
        assert!(metric_names("up == 0").is_empty());
    }

    #[test]
    fn dashboard_queries_substitute_the_instance() {
        let d = json!({"panels": [
            {"title": "a", "targets": [{"expr": "x{instance=~\"$instance\"}"}]},
            {"type": "row", "title": "r", "panels": [{"title": "b", "targets": [{"expr": "y{instance=~\"${instance}\"}"}]}]}
        ]});
        assert_eq!(
            dashboard_queries(&d, ".+"),
            [("a".to_string(), "x{instance=~\".+\"}".to_string()), ("b".to_string(), "y{instance=~\".+\"}".to_string())]
        );
    }
}
