//! What one boot runs, and reading back what it left. The plan is a POSIX shell script
//! (`run.sh`) that `/init` runs chrooted into the host's root, from the results directory shared
//! writable over 9p (`/tmp/vmtest-out` in the guest, `target/vmtest/out/<kernel>/` on the host).
//!
//! For each probe backend: `pty-trace doctor` with `PTY_TRACE_PROBES=<backend>`, then, if it
//! passed, each test run with `PTY_TRACE_BIN` and `PTY_TRACE_PROBES` set. Every step has a
//! timeout (coreutils' `timeout` in the guest) and leaves `<backend>/<step>.log` (its output)
//! and `<backend>/<step>.rc` (`status start end`, in seconds of guest uptime), and announces
//! itself on the console with a `vmtest:` line, which the host's watchdog counts as progress.

use std::{
    fs,
    path::{Path, PathBuf},
};

use super::{
    initramfs::GUEST_OUT_DIR,
    results::{Cell, Doctor, Expect, Step, doctor_reason, parse_libtest},
};

/// One run of a test executable (the whole of it, a filter, or one test).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRun {
    /// Names its result files: `<target>` or `<target>.<test>`.
    pub name: String,
    pub exe: PathBuf,
    /// libtest arguments after `--test-threads=1` (filters, `--exact`).
    pub args: Vec<String>,
    pub timeout_secs: u64,
    /// Run only in this backend's cell (tests that choose backends themselves); None: in every
    /// cell.
    pub only_backend: Option<String>,
}

impl TestRun {
    pub fn runs_in(&self, backend: &str) -> bool {
        self.only_backend.as_deref().is_none_or(|b| b == backend)
    }
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub binary: PathBuf,
    pub backends: Vec<String>,
    pub runs: Vec<TestRun>,
    /// Environment for every step (PATH, HOME, ...), besides the pty-trace variables.
    pub env: Vec<(String, String)>,
    pub doctor_timeout_secs: u64,
    /// The host's RLIMIT_NOFILE (soft, hard), so that tests that open thousands of fds behave
    /// as on the host (the guest's init starts with the kernel's 1024/4096).
    pub nofile: Option<(u64, u64)>,
    /// Point the tests' TMPDIR at `<backend>/scratch` in the results directory, so that their
    /// scratch files (JSONL recordings, ground truth) come back to the host. Off by default:
    /// writing over 9p is slower than the guest's tmpfs, and some tests are timing-sensitive.
    pub keep_scratch: bool,
    /// `PTY_TRACE_TEST_SLOWDOWN` for the tests (see `tests/src/lib.rs`): how many times slower
    /// than the host the guest runs; the timing tests stretch their windows by it.
    pub slowdown: u32,
}

/// The `Max open files` (soft, hard) of a `/proc/PID/limits` text; None when unlimited or absent.
pub fn nofile_limits(proc_limits: &str) -> Option<(u64, u64)> {
    let line = proc_limits
        .lines()
        .find(|l| l.starts_with("Max open files"))?;
    let mut w = line["Max open files".len()..].split_whitespace();
    Some((w.next()?.parse().ok()?, w.next()?.parse().ok()?))
}

/// Single-quotes `s` for sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The plan as a shell script (see the module doc).
pub fn render(plan: &Plan) -> String {
    let mut s = String::from(
        "#!/bin/sh\n\
         # One boot of `cargo xtask vmtest` (written by xtask/src/vmtest/guest.rs). Runs in the\n\
         # guest, chrooted into the host's root; results go to the shared directory OUT.\n",
    );
    s += &format!("OUT={GUEST_OUT_DIR}\n");
    for (k, v) in &plan.env {
        s += &format!("export {k}={}\n", sh_quote(v));
    }
    s += &format!("export PTY_TRACE_TEST_SLOWDOWN={}\n", plan.slowdown);
    if plan.slowdown > 1 {
        // An emulated CPU: three seeds of the churn test instead of ten (time), and the kernel's
        // skipped program runs (recursion_misses under preemption, counted as lost events)
        // tolerated by the exactness tests, which then require exact counts once /proc has
        // repaired them (see `tests/src/lib.rs`).
        s += "export PTY_TRACE_TEST_SEEDS=3\n";
        s += "export PTY_TRACE_TEST_KERNEL_SKIPS=1\n";
    }
    if let Some((soft, hard)) = plan.nofile {
        s += &format!(
            "ulimit -Hn {hard} && ulimit -Sn {soft} || echo \"vmtest: cannot set RLIMIT_NOFILE\"\n"
        );
    }
    s += r#"cd /tmp
up() { cut -d' ' -f1 /proc/uptime; }
# step DIR NAME SECONDS COMMAND...: runs COMMAND with a timeout; DIR/NAME.log and DIR/NAME.rc.
step() {
  dir=$1; name=$2; limit=$3; shift 3
  mkdir -p "$OUT/$dir"
  echo "vmtest: $dir/$name: started"
  start=$(up)
  timeout -k 10 "$limit" "$@" > "$OUT/$dir/$name.log" 2>&1 < /dev/null
  rc=$?
  end=$(up)
  echo "$rc $start $end" > "$OUT/$dir/$name.rc"
  echo "vmtest: $dir/$name: exit status $rc ($start-${end}s)"
  return $rc
}
# test DIR NAME SECONDS COMMAND...: a test step, run once more when it fails (not when it
# timed out); the first attempt stays as DIR/NAME.first.log and DIR/NAME.first.rc, and the
# matrix names the test as flaky.
test_step() {
  step "$@" && return 0
  d=$1; n=$2
  read first _ < "$OUT/$d/$n.rc"
  case $first in 124|137) return 1;; esac
  mv "$OUT/$d/$n.log" "$OUT/$d/$n.first.log"
  mv "$OUT/$d/$n.rc" "$OUT/$d/$n.first.rc"
  echo "vmtest: $d/$n: failed (status $first): once more"
  step "$@"
}
uname -r > "$OUT/uname"
"#;
    let bin = sh_quote(&plan.binary.to_string_lossy());
    for backend in &plan.backends {
        let probes = sh_quote(&format!("PTY_TRACE_PROBES={backend}"));
        s += &format!(
            "if step {backend} doctor {} env {probes} {bin} doctor; then\n",
            plan.doctor_timeout_secs
        );
        let tmpdir = if plan.keep_scratch {
            s += &format!("  mkdir -p \"$OUT/{backend}/scratch\"\n");
            format!("TMPDIR=\"$OUT/{backend}/scratch\" ")
        } else {
            String::new()
        };
        for run in plan.runs.iter().filter(|r| r.runs_in(backend)) {
            let args: Vec<String> = run.args.iter().map(|a| sh_quote(a)).collect();
            s += &format!(
                "  test_step {backend} {} {} env {probes} PTY_TRACE_BIN={bin} RUST_BACKTRACE=1 {tmpdir}{} --test-threads=1 {}\n",
                sh_quote(&run.name),
                run.timeout_secs,
                sh_quote(&run.exe.to_string_lossy()),
                args.join(" ")
            );
        }
        s += "fi\n";
    }
    s += "echo done > \"$OUT/done\"\n";
    s
}

/// `status start end` of a `.rc` file: the status and the step's duration.
pub fn parse_rc(text: &str) -> Option<(i32, f64)> {
    let mut w = text.split_whitespace();
    let status = w.next()?.parse().ok()?;
    let start: f64 = w.next()?.parse().ok()?;
    let end: f64 = w.next()?.parse().ok()?;
    Some((status, (end - start).max(0.0)))
}

/// The cells of one boot from its results directory. `backends` pairs each backend with what is
/// expected of it on this kernel; `vm_problem` is set when the VM did not finish normally.
pub fn read_cells(
    out: &Path,
    label: &str,
    backends: &[(String, Expect)],
    runs: &[TestRun],
    vm_problem: Option<&str>,
) -> Vec<Cell> {
    let kernel = fs::read_to_string(out.join("uname"))
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| label.to_string());
    let read = |backend: &str, name: &str, ext: &str| {
        fs::read_to_string(out.join(backend).join(format!("{name}.{ext}"))).ok()
    };
    backends
        .iter()
        .map(|(backend, expect)| {
            let mut secs = 0.0;
            let doctor = match read(backend, "doctor", "rc").as_deref().and_then(parse_rc) {
                None => Doctor::Missing,
                Some((status, t)) => {
                    secs += t;
                    if status == 0 {
                        Doctor::Passed
                    } else {
                        let log = read(backend, "doctor", "log").unwrap_or_default();
                        let why = doctor_reason(&log);
                        Doctor::Failed(if super::results::TIMEOUT_STATUSES.contains(&status) {
                            format!("timed out: {why}")
                        } else {
                            why
                        })
                    }
                }
            };
            let steps = if doctor == Doctor::Passed {
                runs.iter()
                    .filter(|run| run.runs_in(backend))
                    .map(|run| {
                        let rc = read(backend, &run.name, "rc").as_deref().and_then(parse_rc);
                        let log = read(backend, &run.name, "log").unwrap_or_default();
                        secs += rc.map_or(0.0, |(_, t)| t);
                        let first = read(backend, &format!("{}.first", run.name), "rc").as_deref().and_then(parse_rc).map(|(status, t)| {
                            secs += t;
                            let log = read(backend, &format!("{}.first", run.name), "log").unwrap_or_default();
                            (status, parse_libtest(&log))
                        });
                        Step {
                            name: run.name.clone(),
                            status: rc.map(|(s, _)| s),
                            secs: rc.map(|(_, t)| t),
                            libtest: parse_libtest(&log),
                            first_attempt: first,
                        }
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Cell {
                kernel: kernel.clone(),
                backend: backend.clone(),
                expect: *expect,
                doctor,
                steps,
                secs,
                vm_problem: vm_problem.map(str::to_string),
                known_failures: super::results::KNOWN_FAILURES,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> Plan {
        Plan {
            binary: "/w/target/release/pty-trace".into(),
            backends: vec!["fentry".into(), "tracepoint".into()],
            runs: vec![
                TestRun {
                    name: "accounting.counts_exact".into(),
                    exe: "/w/target/debug/deps/accounting-0123".into(),
                    args: vec!["--exact".into(), "counts_exact".into()],
                    timeout_secs: 300,
                    only_backend: None,
                },
                TestRun {
                    name: "probes.doctor_says".into(),
                    exe: "/w/target/debug/deps/probes-4567".into(),
                    args: vec!["--exact".into(), "doctor_says".into()],
                    timeout_secs: 300,
                    only_backend: Some("fentry".into()),
                },
            ],
            env: vec![
                ("PATH".into(), "/usr/bin:/bin".into()),
                ("HOME".into(), "/root's".into()),
            ],
            doctor_timeout_secs: 60,
            nofile: Some((20000, 40000)),
            keep_scratch: false,
            slowdown: 3,
        }
    }

    #[test]
    fn plan_script() {
        let s = render(&plan());
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains("OUT=/tmp/vmtest-out\n"));
        assert!(s.contains("export HOME='/root'\\''s'\n"), "{s}");
        assert!(
            s.contains("ulimit -Hn 40000 && ulimit -Sn 20000 || "),
            "{s}"
        );
        assert!(s.contains(
            "if step fentry doctor 60 env 'PTY_TRACE_PROBES=fentry' '/w/target/release/pty-trace' doctor; then\n\
             \x20 test_step fentry 'accounting.counts_exact' 300 env 'PTY_TRACE_PROBES=fentry' \
             PTY_TRACE_BIN='/w/target/release/pty-trace' RUST_BACKTRACE=1 \
             '/w/target/debug/deps/accounting-0123' --test-threads=1 '--exact' 'counts_exact'\n\
             \x20 test_step fentry 'probes.doctor_says' 300 env 'PTY_TRACE_PROBES=fentry' \
             PTY_TRACE_BIN='/w/target/release/pty-trace' RUST_BACKTRACE=1 \
             '/w/target/debug/deps/probes-4567' --test-threads=1 '--exact' 'doctor_says'\nfi\n"
        ), "{s}");
        assert!(s.contains("if step tracepoint doctor 60 "));
        assert_eq!(s.matches("test_step fentry 'probes.doctor_says'").count(), 1);
        assert!(!s.contains("test_step tracepoint 'probes."));
        assert!(!s.contains("TMPDIR"));
        let kept = render(&Plan {
            keep_scratch: true,
            ..plan()
        });
        assert!(
            kept.contains("  mkdir -p \"$OUT/fentry/scratch\"\n"),
            "{kept}"
        );
        assert!(
            kept.contains(" RUST_BACKTRACE=1 TMPDIR=\"$OUT/fentry/scratch\" '/w/"),
            "{kept}"
        );
        assert!(s.ends_with("echo done > \"$OUT/done\"\n"));
    }

    #[test]
    fn open_file_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max processes             95487                95487                processes \n\
            Max open files            20000                40000                files     \n";
        assert_eq!(nofile_limits(limits), Some((20000, 40000)));
        assert_eq!(nofile_limits(&limits.replace("40000", "unlimited")), None);
        assert_eq!(nofile_limits(""), None);
    }

    #[test]
    fn rc_files() {
        assert_eq!(parse_rc("0 12.50 20.75\n"), Some((0, 8.25)));
        assert_eq!(parse_rc("124 1 2"), Some((124, 1.0)));
        assert_eq!(parse_rc("0 1"), None);
        assert_eq!(parse_rc(""), None);
    }

    #[test]
    fn cells_from_files() {
        let dir = std::env::temp_dir().join(format!("xtask-vmtest-guest-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("fentry")).unwrap();
        fs::create_dir_all(dir.join("tracepoint")).unwrap();
        fs::write(dir.join("uname"), "6.12.118+deb13-amd64\n").unwrap();
        fs::write(dir.join("fentry/doctor.rc"), "0 5 7\n").unwrap();
        fs::write(dir.join("fentry/doctor.log"), "all PASS\n").unwrap();
        fs::write(dir.join("fentry/accounting.counts_exact.rc"), "0 7 17\n").unwrap();
        fs::write(
            dir.join("fentry/accounting.counts_exact.log"),
            "test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 5 filtered out\n",
        )
        .unwrap();
        fs::write(dir.join("tracepoint/doctor.rc"), "1 17 18\n").unwrap();
        fs::write(dir.join("tracepoint/doctor.log"), "bpf  FAIL  helper 158\n").unwrap();
        let backends = [
            ("fentry".to_string(), Expect::Required),
            ("tracepoint".to_string(), Expect::Optional),
            ("other".to_string(), Expect::Required),
        ];
        let cells = read_cells(
            &dir,
            "6.12",
            &backends,
            &plan().runs[..1],
            Some("VM timed out"),
        );
        fs::remove_dir_all(&dir).unwrap();
        assert_eq!(cells[0].kernel, "6.12.118+deb13-amd64");
        assert_eq!(cells[0].doctor, Doctor::Passed);
        assert_eq!(cells[0].totals(), (1, 0, 0));
        assert_eq!(cells[0].secs, 12.0);
        assert_eq!(cells[0].verdict(), super::super::results::Verdict::Pass);
        assert_eq!(
            cells[1].doctor,
            Doctor::Failed("bpf FAIL helper 158".into())
        );
        assert!(cells[1].steps.is_empty());
        assert_eq!(cells[2].doctor, Doctor::Missing);
    }
}
