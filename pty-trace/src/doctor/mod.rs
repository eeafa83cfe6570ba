//! `pty-trace doctor [--fix]`: checks whether this machine can run the tracer and says how to
//! fix what it cannot.
//!
//! Every check is a row of a table (name, PASS/FAIL/WARN, detail, fix). A FAIL is a check that
//! is `required` and not ok: tracing cannot work until it is fixed. A WARN is a check that is not
//! required: tracing works, but something is degraded or close to a limit.
//!
//! The basic checks use std + libc only, so that they still run, and explain the problem, on a
//! machine where loading the real BPF object fails; the `probes` row then loads and attaches
//! the tracer's real programs, and `fast-path` says whether BTF trampolines would be allowed.
//! tracefs discovery and mounting live in `kernel::tracefs`, shared with the probe loader.
//!
//! Where things live:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Check`], [`DoctorReport`], [`run_checks`] and the row order ([`CHECK_NAMES`]) |
//! | `checks.rs` | one function per row, and the pure helpers that decide them |
//! | `kernel::features` (not here) | the raw `bpf()` probes behind the `bpf-load` and `probes` rows |
//! | `render.rs` | [`DoctorReport::render`]: the aligned, optionally coloured table |


mod checks;

use crate::kernel::backend::ProbeChoice;
mod render;

/// One row of the doctor table.
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    /// Tracing cannot work while a required check fails.
    pub required: bool,
    /// One line; what was found.
    pub detail: String,
    /// What to do about it; only shown when the check is not ok.
    pub fix: Option<String>,
}

/// The result of [`run_checks`].
pub struct DoctorReport {
    pub checks: Vec<Check>,
}

impl DoctorReport {
    /// True when every required check passed (warnings do not count).
    pub fn tracing_can_work(&self) -> bool {
        self.checks.iter().all(|c| c.ok || !c.required)
    }
}

/// The names of the rows [`run_checks`] produces, in the order it produces them.
pub const CHECK_NAMES: &[&str] = &[
    "kernel",
    "btf",
    "tracefs",
    "bpf-load",
    "tracepoints",
    "probes",
    "fast-path",
    "pty",
    "nofile",
    "unprivileged-bpf",
];

/// Runs every check in order, one row per name in [`CHECK_NAMES`]. With `fix`, repairs what
/// can safely be repaired (today: mounts tracefs) before checking what depends on it.
pub fn run_checks(fix: bool, probes: ProbeChoice) -> DoctorReport {
    // tracefs comes before the tracepoint check so that a tracefs mounted by --fix is seen.
    let [probes, fast_path] = checks::check_probes(probes);
    let checks = vec![
        checks::check_kernel(),
        checks::check_btf(),
        checks::check_tracefs(fix),
        checks::check_bpf_load(),
        checks::check_tracepoints(),
        probes,
        fast_path,
        checks::check_pty(),
        checks::check_nofile(),
        checks::check_unprivileged_bpf(),
    ];
    DoctorReport { checks }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tracefs;

    /// Also used by the table tests in `render.rs`.
    pub(super) fn sample_report() -> DoctorReport {
        DoctorReport {
            checks: vec![
                Check {
                    name: "kernel",
                    ok: true,
                    required: true,
                    detail: "6.18.44 (>= 5.8 needed for the BPF ring buffer)".into(),
                    fix: Some("never shown for a passing check".into()),
                },
                Check {
                    name: "tracefs",
                    ok: false,
                    required: true,
                    detail: "not mounted".into(),
                    fix: Some(tracefs::TRACEFS_FIX.into()),
                },
                Check {
                    name: "pty",
                    ok: false,
                    required: false,
                    detail: "4000/4096\nin use".into(),
                    fix: None,
                },
            ],
        }
    }

    #[test]
    fn tracing_can_work_ignores_warnings_only() {
        let mut report = sample_report();
        assert!(!report.tracing_can_work());
        report.checks.retain(|c| c.name != "tracefs");
        // The pty WARN remains, which is not required.
        assert!(report.checks.iter().any(|c| !c.ok));
        assert!(report.tracing_can_work());
        assert!(DoctorReport { checks: vec![] }.tracing_can_work());
    }

    /// Runs every check against the machine the tests run on, and asserts only what holds on
    /// any machine: root or not, any kernel, tracefs mounted or not.
    #[test]
    fn real_machine_checks() {
        let report = run_checks(false, ProbeChoice::Auto);
        let get = |name: &str| {
            report
                .checks
                .iter()
                .find(|c| c.name == name)
                .unwrap_or_else(|| panic!("no {name} check"))
        };

        // Exactly the documented rows, in the documented order, each name once.
        let names: Vec<&str> = report.checks.iter().map(|c| c.name).collect();
        assert_eq!(names, CHECK_NAMES);
        let mut unique = names.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(unique.len(), names.len(), "duplicate check names: {names:?}");

        for c in &report.checks {
            assert!(!c.name.trim().is_empty(), "a check has an empty name");
            assert!(!c.detail.trim().is_empty(), "{} has an empty detail", c.name);
            if c.required && !c.ok {
                assert!(
                    c.fix.as_deref().is_some_and(|f| !f.trim().is_empty()),
                    "{} fails with no fix: {}",
                    c.name,
                    c.detail
                );
            }
        }

        // The kernel row follows the version helpers, whatever this kernel is.
        let kernel = get("kernel");
        match checks::parse_kernel_version(&crate::kernel::features::kernel_release()) {
            Some(v) => {
                assert!(kernel.required);
                assert_eq!(kernel.ok, checks::kernel_supported(v), "{}", kernel.detail);
                let min = format!(">= {}.{}", checks::MIN_KERNEL.0, checks::MIN_KERNEL.1);
                assert!(kernel.detail.contains(&min), "{}", kernel.detail);
            }
            // An unparsable release only warns.
            None => assert!(!kernel.ok && !kernel.required, "{}", kernel.detail),
        }

        // The tracefs row and tracefs::find (what the tracer uses) must agree.
        let tracefs_row = get("tracefs");
        assert!(tracefs_row.required);
        match tracefs::find() {
            Ok(path) => {
                assert!(tracefs_row.ok, "{}", tracefs_row.detail);
                assert_eq!(tracefs_row.detail, format!("mounted at {}", path.display()));
            }
            Err(msg) => {
                assert!(!tracefs_row.ok, "find() failed ({msg}) but the row passed");
                assert_eq!(tracefs_row.fix.as_deref(), Some(tracefs::TRACEFS_FIX));
                // Without tracefs the tracepoints cannot even be looked at.
                assert!(!get("tracepoints").ok);
            }
        }

        // Information only: never a failure.
        let unpriv = get("unprivileged-bpf");
        assert!(unpriv.ok && !unpriv.required, "{}", unpriv.detail);

        // The table: a header, one line per check, one fix line per check that is not ok and
        // has a fix.
        let table = report.render(false);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.first(), Some(&"CHECK                     STATUS  DETAIL"));
        let fix_lines = report.checks.iter().filter(|c| !c.ok && c.fix.is_some()).count();
        assert_eq!(lines.len(), 1 + report.checks.len() + fix_lines, "{table}");
        for c in &report.checks {
            let row = format!("{} ", c.name);
            assert!(lines.iter().any(|l| l.starts_with(&row)), "no row for {}:\n{table}", c.name);
        }
    }
}
