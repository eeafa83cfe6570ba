//! What `vmtest` makes of a boot's result files: libtest's output parsed into counts and failed
//! test names, each (kernel, backend) cell judged against what is expected of it, and the matrix
//! rendered as an aligned text table (stderr) or markdown (`target/vmtest/matrix.md`).
//!
//! Pure functions only; reading the files is `guest.rs`'s job.

use std::fmt::Write as _;

/// Whether a backend must work on a kernel, or may be reported unavailable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Doctor must pass and every test must pass.
    Required,
    /// Doctor may fail (its FAIL line is the reason shown); if it passes, the tests must pass.
    Optional,
}

/// `pty-trace doctor`'s outcome in one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Doctor {
    Passed,
    /// Its FAIL lines (or its last line), one line.
    Failed(String),
    /// No result file: the guest never ran it (the VM died, hung or was killed).
    Missing,
}

/// Counts and failures from libtest's output (possibly several `test result:` lines).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Libtest {
    pub passed: u32,
    pub failed: u32,
    pub ignored: u32,
    pub filtered: u32,
    /// How many `test result:` lines there were (0: the executable did not get that far).
    pub summaries: u32,
    /// Names from `test NAME ... FAILED` lines.
    pub failures: Vec<String>,
    /// (test, first line of its panic message), from libtest's `---- NAME stdout ----`
    /// sections: why it failed, so CI's log says it without the results directory.
    pub panics: Vec<(String, String)>,
}

impl Libtest {
    /// The first line of `test`'s panic message, when it was captured.
    pub fn panic_of(&self, test: &str) -> Option<&str> {
        self.panics.iter().find(|(t, _)| t == test).map(|(_, m)| m.as_str())
    }

    /// `test (why)` for a failed test, or just its name when its panic was not captured.
    pub fn why(&self, test: &str) -> String {
        match self.panic_of(test) {
            Some(msg) => format!("{test} ({msg})"),
            None => test.to_string(),
        }
    }
}

/// One step of a cell: a test executable run (or one test of it).
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    pub name: String,
    /// Exit status; None when the step has no result file.
    pub status: Option<i32>,
    pub secs: Option<f64>,
    pub libtest: Libtest,
    /// When the step failed and was run once more: the first attempt's status and output.
    pub first_attempt: Option<(i32, Libtest)>,
}

/// The exit statuses of coreutils' `timeout` when it had to stop the command (TERM, then KILL).
pub const TIMEOUT_STATUSES: &[i32] = &[124, 137];

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Allowed (an optional backend whose doctor fails): the reason.
    Unavailable(String),
    Fail(String),
}

/// One (kernel, backend) cell of the matrix.
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    /// `uname -r` of the kernel (or its label when it never booted).
    pub kernel: String,
    pub backend: String,
    pub expect: Expect,
    pub doctor: Doctor,
    pub steps: Vec<Step>,
    /// Guest time spent on this cell (doctor and tests), seconds.
    pub secs: f64,
    /// Why the whole VM failed, if it did (timeout, crash): reported on every cell without results.
    pub vm_problem: Option<String>,
    /// The failures judged as known ([`KNOWN_FAILURES`] outside the unit tests).
    pub known_failures: &'static [KnownFailure],
}

impl Cell {
    pub fn totals(&self) -> (u32, u32, u32) {
        self.steps.iter().fold((0, 0, 0), |(p, f, i), s| {
            (
                p + s.libtest.passed,
                f + s.libtest.failed,
                i + s.libtest.ignored,
            )
        })
    }

    pub fn verdict(&self) -> Verdict {
        judge(
            self.expect,
            &self.doctor,
            &self.without_known(),
            self.vm_problem.as_deref(),
        )
    }

    /// Steps that failed, were run once more and passed, as note lines with the first
    /// attempt's failures (a timing assumption the emulated CPU broke once, or a real flake:
    /// either way it is shown under the table).
    pub fn flaky(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|s| s.status == Some(0))
            .filter_map(|s| {
                let (status, lib) = s.first_attempt.as_ref()?;
                let whys: Vec<String> = lib.failures.iter().map(|t| lib.why(t)).collect();
                let what = if whys.is_empty() { format!("exit status {status}") } else { whys.join(", ") };
                Some(format!("flaky: {} failed once, passed when run again (first attempt: {what})", s.name))
            })
            .collect()
    }

    /// The known failures of this cell that happened (see [`KNOWN_FAILURES`]), as note lines.
    pub fn known(&self) -> Vec<String> {
        self.steps
            .iter()
            .flat_map(|s| s.libtest.failures.iter().map(move |t| (s, t)))
            .filter_map(|(s, t)| {
                let why = known_failure(self.known_failures, &self.kernel, &self.backend, t)?;
                let seen = s.libtest.panic_of(t).map_or(String::new(), |m| format!("; this time: {m}"));
                Some(format!("known failure: {t} ({why}{seen})"))
            })
            .collect()
    }

    /// The steps with the known failures taken out: a step whose only failures are known
    /// counts as passed.
    fn without_known(&self) -> Vec<Step> {
        self.steps
            .iter()
            .map(|s| {
                let mut s = s.clone();
                let before = s.libtest.failures.len();
                s.libtest.failures.retain(|t| known_failure(self.known_failures, &self.kernel, &self.backend, t).is_none());
                let known = (before - s.libtest.failures.len()) as u32;
                if known > 0 {
                    s.libtest.failed = s.libtest.failed.saturating_sub(known);
                    if s.libtest.failed == 0 && s.libtest.failures.is_empty() && s.status.is_some_and(|st| !TIMEOUT_STATUSES.contains(&st)) {
                        s.status = Some(0);
                    }
                }
                s
            })
            .collect()
    }
}

/// A failure the matrix has found and that is not fixed yet: (kernel release prefix, "" for
/// any; backend; test; why).
pub type KnownFailure = (&'static str, &'static str, &'static str, &'static str);

/// The known failures: shown as "known failure" lines, they do not fail the run; every other
/// failure does. Each is an open finding (docs/vmtest.md, "Open findings"). Empty since the
/// churn test's stall under TCG was explained (the tracer starved of the one emulated CPU by
/// 15 churning processes) and its load scaled to the emulated CPU.
pub const KNOWN_FAILURES: &[KnownFailure] = &[];

/// Why `test` is a known failure for this kernel and backend, if it is.
pub fn known_failure(list: &[KnownFailure], kernel: &str, backend: &str, test: &str) -> Option<&'static str> {
    list.iter()
        .find(|(k, b, t, _)| kernel.starts_with(k) && *b == backend && *t == test)
        .map(|(_, _, _, why)| *why)
}

/// Parses libtest's (human) output.
pub fn parse_libtest(text: &str) -> Libtest {
    let mut r = Libtest::default();
    // The test whose `thread 'NAME' panicked at FILE:LINE:COL:` line came last: the next
    // non-empty line is its message.
    let mut panicked: Option<String> = None;
    for line in text.lines() {
        let line = line.trim_end();
        if let Some(test) = panicked.take() {
            if line.is_empty() {
                panicked = Some(test);
            } else if !r.panics.iter().any(|(t, _)| *t == test) {
                r.panics.push((test, cut(line, PANIC_LINE_MAX)));
            }
        }
        // `thread 'NAME' panicked at`, or since Rust 1.89 `thread 'NAME' (TID) panicked at`.
        if let Some(rest) = line.strip_prefix("thread '")
            && let Some((name, after)) = rest.split_once('\'')
            && after.contains(" panicked at ")
        {
            panicked = Some(name.to_string());
        } else if let Some(rest) = line.strip_prefix("test result: ") {
            r.summaries += 1;
            // `ok. 3 passed; 0 failed; 1 ignored; 0 measured; 5 filtered out; finished in 1.2s`
            let counts = rest.split_once(". ").map_or(rest, |(_, c)| c);
            for part in counts.split(';') {
                let mut words = part.split_whitespace();
                let (Some(n), Some(what)) = (words.next(), words.next()) else {
                    continue;
                };
                let Ok(n) = n.parse::<u32>() else { continue };
                match what {
                    "passed" => r.passed += n,
                    "failed" => r.failed += n,
                    "ignored" => r.ignored += n,
                    "filtered" => r.filtered += n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix("test ")
            && let Some(name) = rest.strip_suffix(" ... FAILED")
            && !r.failures.iter().any(|f| f == name)
        {
            r.failures.push(name.to_string());
        }
    }
    r
}

/// Longest panic message kept in a reason (an assertion's message can carry whole records).
const PANIC_LINE_MAX: usize = 240;

/// `line` cut at `max` characters, with `...` when it was cut.
fn cut(line: &str, max: usize) -> String {
    match line.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &line[..at]),
        None => line.to_string(),
    }
}

/// Longest doctor line kept in a reason (a failed load's line carries the whole verifier log,
/// which stays in `doctor.log`).
const REASON_LINE_MAX: usize = 160;

/// The one-line reason from `pty-trace doctor`'s output: its FAIL lines, whitespace collapsed,
/// each cut at `REASON_LINE_MAX` characters.
pub fn doctor_reason(output: &str) -> String {
    let collapse = |l: &str| {
        let l = l.split_whitespace().collect::<Vec<_>>().join(" ");
        cut(&l, REASON_LINE_MAX)
    };
    let fails: Vec<String> = output
        .lines()
        .filter(|l| l.contains("FAIL"))
        .map(collapse)
        .collect();
    if !fails.is_empty() {
        return fails.join(" | ");
    }
    output
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(collapse)
        .unwrap_or_else(|| "no output".into())
}

/// The rules of the matrix (see the module doc and `docs/vmtest.md`).
pub fn judge(expect: Expect, doctor: &Doctor, steps: &[Step], vm_problem: Option<&str>) -> Verdict {
    let vm = vm_problem.map_or(String::new(), |p| format!(" ({p})"));
    match doctor {
        Doctor::Missing => return Verdict::Fail(format!("doctor did not run{vm}")),
        Doctor::Failed(why) if expect == Expect::Optional => {
            return Verdict::Unavailable(why.clone());
        }
        Doctor::Failed(why) => return Verdict::Fail(format!("doctor: {why}")),
        Doctor::Passed => {}
    }
    let mut problems = Vec::new();
    let mut passed = 0;
    let mut not_run: Vec<&str> = Vec::new();
    for step in steps {
        passed += step.libtest.passed;
        match step.status {
            None => not_run.push(&step.name),
            Some(s) if TIMEOUT_STATUSES.contains(&s) => {
                problems.push(format!("{}: timed out", step.name));
            }
            Some(_) if !step.libtest.failures.is_empty() => {
                let whys: Vec<String> = step.libtest.failures.iter().map(|t| step.libtest.why(t)).collect();
                problems.push(format!("{}: FAILED {}", step.name, whys.join(", ")));
            }
            Some(_) if step.libtest.failed > 0 => {
                problems.push(format!("{}: {} failed", step.name, step.libtest.failed));
            }
            Some(0) if step.libtest.summaries == 0 => {
                problems.push(format!("{}: no libtest summary", step.name));
            }
            Some(0) => {}
            Some(s) => problems.push(format!("{}: exit status {s}", step.name)),
        }
    }
    if let Some(first) = not_run.first() {
        problems.push(format!(
            "{} of {} test runs did not run, from {first} on{vm}",
            not_run.len(),
            steps.len()
        ));
    }
    if problems.is_empty() && !steps.is_empty() && passed == 0 {
        problems.push("no test ran (does the filter match any test?)".into());
    }
    if problems.is_empty() {
        Verdict::Pass
    } else {
        Verdict::Fail(problems.join("; "))
    }
}

const HEADER: [&str; 9] = [
    "kernel", "backend", "expected", "doctor", "passed", "failed", "ignored", "time", "result",
];

fn row(cell: &Cell) -> [String; 9] {
    let (p, f, i) = cell.totals();
    let ran = cell.doctor == Doctor::Passed;
    let count = |n: u32| if ran { n.to_string() } else { "-".into() };
    [
        cell.kernel.clone(),
        cell.backend.clone(),
        match cell.expect {
            Expect::Required => "required".into(),
            Expect::Optional => "optional".into(),
        },
        match cell.doctor {
            Doctor::Passed => "ok".into(),
            Doctor::Failed(_) => "FAIL".into(),
            Doctor::Missing => "-".into(),
        },
        count(p),
        count(f),
        count(i),
        format!("{:.0}s", cell.secs),
        match cell.verdict() {
            Verdict::Pass => "ok".into(),
            Verdict::Unavailable(_) => "unavailable".into(),
            Verdict::Fail(_) => "FAILED".into(),
        },
    ]
}

/// The reasons under the table: one line per cell that did not simply pass.
fn notes(cells: &[Cell]) -> Vec<String> {
    let mut out: Vec<String> = cells
        .iter()
        .filter_map(|c| {
            let why = match c.verdict() {
                Verdict::Pass => return None,
                Verdict::Unavailable(why) => format!("unavailable: {why}"),
                Verdict::Fail(why) => format!("FAILED: {why}"),
            };
            Some(format!("{} {}: {why}", c.kernel, c.backend))
        })
        .collect();
    for c in cells {
        out.extend(c.known().into_iter().map(|k| format!("{} {}: {k}", c.kernel, c.backend)));
        out.extend(c.flaky().into_iter().map(|k| format!("{} {}: {k}", c.kernel, c.backend)));
    }
    out
}

/// An aligned plain-text table, then the notes, then `extra` lines (per-VM timings).
pub fn render_text(cells: &[Cell], extra: &[String]) -> String {
    let rows: Vec<[String; 9]> = cells.iter().map(row).collect();
    let mut widths = HEADER.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.len());
        }
    }
    let mut s = String::new();
    let line = |s: &mut String, cols: &[String]| {
        let cells: Vec<String> = cols
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.push_str(cells.join("  ").trim_end());
        s.push('\n');
    };
    line(&mut s, &HEADER.map(String::from));
    for r in &rows {
        line(&mut s, r);
    }
    for n in notes(cells).iter().chain(extra) {
        let _ = writeln!(s, "{n}");
    }
    s
}

/// The same as a markdown document.
pub fn render_markdown(cells: &[Cell], extra: &[String]) -> String {
    let mut s = String::from("# pty-trace on Debian kernels (`cargo xtask vmtest`)\n\n");
    let _ = writeln!(s, "| {} |", HEADER.join(" | "));
    let _ = writeln!(s, "|{}", "---|".repeat(HEADER.len()));
    for r in cells.iter().map(row) {
        let _ = writeln!(s, "| {} |", r.join(" | ").replace('\n', " "));
    }
    let notes = notes(cells);
    if !notes.is_empty() || !extra.is_empty() {
        s.push('\n');
    }
    for n in notes.iter().chain(extra) {
        let _ = writeln!(s, "- {}", n.replace('|', "\\|"));
    }
    s
}

/// Whether every cell is acceptable (passed, or unavailable where that is allowed).
pub fn all_acceptable(cells: &[Cell]) -> bool {
    cells
        .iter()
        .all(|c| !matches!(c.verdict(), Verdict::Fail(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK_RUN: &str = "\nrunning 2 tests\n\
        test counts_exact_opens_of_dev_null_and_ptmx ... ok\n\
        test randomized_workloads_match_proc_for_every_seed ... ok\n\n\
        test result: ok. 2 passed; 0 failed; 0 ignored; 0 measured; 4 filtered out; finished in 41.20s\n\n";
    const FAILED_RUN: &str = "\nrunning 3 tests\n\
        test a ... ok\ntest b ... FAILED\ntest c ... ignored, needs tmux\n\n\
        failures:\n\n---- b stdout ----\nthread 'b' (412) panicked at tests/tests/x.rs:1:1:\ncompared 2 snapshots\nnote: run with `RUST_BACKTRACE=1`\n\n\
        failures:\n    b\n\n\
        test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out; finished in 3.00s\n\n";

    fn step(name: &str, status: Option<i32>, out: &str) -> Step {
        Step {
            name: name.into(),
            status,
            secs: Some(1.0),
            libtest: parse_libtest(out),
            first_attempt: None,
        }
    }

    #[test]
    fn a_step_that_passed_when_run_again_passes_and_is_named_flaky() {
        let mut s = step("accounting", Some(0), OK_RUN);
        s.first_attempt = Some((101, parse_libtest(FAILED_RUN)));
        let cell = Cell {
            kernel: "6.1.0-57-amd64".into(),
            backend: "fentry".into(),
            expect: Expect::Required,
            doctor: Doctor::Passed,
            steps: vec![s],
            secs: 2.0,
            vm_problem: None,
            known_failures: &[],
        };
        assert_eq!(cell.verdict(), Verdict::Pass);
        assert_eq!(cell.flaky(), ["flaky: accounting failed once, passed when run again (first attempt: b (compared 2 snapshots))"]);
        assert!(render_text(&[cell], &[]).contains("6.1.0-57-amd64 fentry: flaky: accounting failed once"));
    }

    #[test]
    fn libtest_summaries_and_failures() {
        let ok = parse_libtest(OK_RUN);
        assert_eq!(
            ok,
            Libtest {
                passed: 2,
                failed: 0,
                ignored: 0,
                filtered: 4,
                summaries: 1,
                failures: vec![],
                panics: vec![],
            }
        );
        let bad = parse_libtest(FAILED_RUN);
        assert_eq!(
            (bad.passed, bad.failed, bad.ignored, bad.summaries),
            (1, 1, 1, 1)
        );
        assert_eq!(bad.failures, ["b"]);
        assert_eq!(bad.panics, [("b".to_string(), "compared 2 snapshots".to_string())]);
        let both = parse_libtest(&format!("{OK_RUN}{FAILED_RUN}"));
        assert_eq!((both.passed, both.failed, both.summaries), (3, 1, 2));
        assert_eq!(parse_libtest("Segmentation fault\n"), Libtest::default());
    }

    #[test]
    fn doctor_reasons() {
        let out = "kernel            PASS    6.12\nbpf programs      FAIL    load: helper 158 unknown\n\
                   tracefs           PASS\n";
        assert_eq!(
            doctor_reason(out),
            "bpf programs FAIL load: helper 158 unknown"
        );
        assert_eq!(
            doctor_reason("error: no such  flag\n\n"),
            "error: no such flag"
        );
        assert_eq!(doctor_reason(""), "no output");
        let long = format!("probes  FAIL  load failed: {}", "r1 = r2 ".repeat(100));
        let reason = doctor_reason(&long);
        assert_eq!(reason.chars().count(), REASON_LINE_MAX + 3);
        assert!(reason.starts_with("probes FAIL load failed: r1 = r2") && reason.ends_with("..."));
    }

    #[test]
    fn verdicts() {
        let ok = vec![step("accounting", Some(0), OK_RUN)];
        let failed = vec![step("scoring", Some(101), FAILED_RUN)];
        let fail_reason = "bpf FAIL helper 158".to_string();
        use Expect::*;
        assert_eq!(judge(Required, &Doctor::Passed, &ok, None), Verdict::Pass);
        assert_eq!(
            judge(Required, &Doctor::Passed, &failed, None),
            Verdict::Fail("scoring: FAILED b (compared 2 snapshots)".into())
        );
        assert_eq!(
            judge(Optional, &Doctor::Failed(fail_reason.clone()), &[], None),
            Verdict::Unavailable(fail_reason.clone())
        );
        assert_eq!(
            judge(Required, &Doctor::Failed(fail_reason.clone()), &[], None),
            Verdict::Fail(format!("doctor: {fail_reason}"))
        );
        // An optional backend whose doctor passes must pass its tests.
        assert!(matches!(
            judge(Optional, &Doctor::Passed, &failed, None),
            Verdict::Fail(_)
        ));
        assert_eq!(
            judge(
                Required,
                &Doctor::Missing,
                &[],
                Some("VM timed out after 600s")
            ),
            Verdict::Fail("doctor did not run (VM timed out after 600s)".into())
        );
        let timeout = vec![step("signals", Some(124), "running 1 test\n")];
        assert_eq!(
            judge(Required, &Doctor::Passed, &timeout, None),
            Verdict::Fail("signals: timed out".into())
        );
        let missing = vec![
            ok[0].clone(),
            step("signals", None, ""),
            step("tui", None, ""),
        ];
        assert_eq!(
            judge(
                Required,
                &Doctor::Passed,
                &missing,
                Some("the guest kernel crashed")
            ),
            Verdict::Fail(
                "2 of 3 test runs did not run, from signals on (the guest kernel crashed)".into()
            )
        );
        let crashed = vec![step("signals", Some(139), "running 1 test\n")];
        assert_eq!(
            judge(Required, &Doctor::Passed, &crashed, None),
            Verdict::Fail("signals: exit status 139".into())
        );
        let nothing = vec![step(
            "x",
            Some(0),
            "test result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 9 filtered out\n",
        )];
        assert!(matches!(
            judge(Required, &Doctor::Passed, &nothing, None),
            Verdict::Fail(_)
        ));
        // A doctor-only cell (no steps) passes on doctor alone.
        assert_eq!(judge(Required, &Doctor::Passed, &[], None), Verdict::Pass);
    }

    fn cells() -> Vec<Cell> {
        vec![
            Cell {
                kernel: "5.10.0-46-amd64".into(),
                backend: "tracepoint".into(),
                expect: Expect::Optional,
                doctor: Doctor::Failed("bpf FAIL helper 158".into()),
                steps: vec![],
                secs: 3.2,
                vm_problem: None,
                known_failures: &[],
            },
            Cell {
                kernel: "6.12.118+deb13-amd64".into(),
                backend: "fentry".into(),
                expect: Expect::Required,
                doctor: Doctor::Passed,
                steps: vec![
                    step("accounting", Some(0), OK_RUN),
                    step("scoring", Some(101), FAILED_RUN),
                ],
                secs: 95.0,
                vm_problem: None,
                known_failures: &[],
            },
        ]
    }

    #[test]
    fn text_table() {
        let text = render_text(&cells(), &["6.12.118+deb13-amd64: VM 120.0s".into()]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "kernel                backend     expected  doctor  passed  failed  ignored  time  result"
        );
        assert_eq!(
            lines[1],
            "5.10.0-46-amd64       tracepoint  optional  FAIL    -       -       -        3s    unavailable"
        );
        assert_eq!(
            lines[2],
            "6.12.118+deb13-amd64  fentry      required  ok      3       1       1        95s   FAILED"
        );
        assert_eq!(
            lines[3],
            "5.10.0-46-amd64 tracepoint: unavailable: bpf FAIL helper 158"
        );
        assert_eq!(
            lines[4],
            "6.12.118+deb13-amd64 fentry: FAILED: scoring: FAILED b (compared 2 snapshots)"
        );
        assert_eq!(lines[5], "6.12.118+deb13-amd64: VM 120.0s");
        assert!(!all_acceptable(&cells()));
        assert!(all_acceptable(&cells()[..1]));
    }

    #[test]
    fn markdown_table() {
        let md = render_markdown(&cells(), &[]);
        assert!(md.contains(
            "| kernel | backend | expected | doctor | passed | failed | ignored | time | result |\n\
             |---|---|---|---|---|---|---|---|---|\n\
             | 5.10.0-46-amd64 | tracepoint | optional | FAIL | - | - | - | 3s | unavailable |\n"
        ), "{md}");
        assert!(
            md.contains("- 6.12.118+deb13-amd64 fentry: FAILED: scoring: FAILED b (compared 2 snapshots)\n"),
            "{md}"
        );
    }
}

#[cfg(test)]
mod known_tests {
    use super::*;

    #[test]
    fn a_known_failure_does_not_fail_its_cell_and_is_listed() {
        let lib = |failures: &[&str]| Libtest { passed: 2, failed: failures.len() as u32, summaries: 1, failures: failures.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        let cell = |backend: &str, failures: &[&str]| Cell {
            kernel: "6.12.118+deb13-amd64".into(),
            backend: backend.into(),
            expect: Expect::Required,
            doctor: Doctor::Passed,
            steps: vec![Step { name: "accounting".into(), status: Some(101), secs: Some(1.0), libtest: lib(failures), first_attempt: None }],
            secs: 1.0,
            vm_problem: None,
            known_failures: &[("", "fentry", "randomized_workloads_match_proc_for_every_seed", "open: churn")],
        };
        let known = cell("fentry", &["randomized_workloads_match_proc_for_every_seed"]);
        assert_eq!(known.verdict(), Verdict::Pass);
        assert_eq!(known.known().len(), 1);
        // Known for fentry only; any other failure beside it still fails the cell.
        assert!(matches!(cell("tracepoint", &["randomized_workloads_match_proc_for_every_seed"]).verdict(), Verdict::Fail(_)));
        assert!(matches!(cell("fentry", &["randomized_workloads_match_proc_for_every_seed", "counts_exact_opens_of_dev_null_and_ptmx"]).verdict(), Verdict::Fail(_)));
    }
}
