//! The doctor table: [`DoctorReport::render`] and its column widths, status words and colours.
//!
//! Only presentation lives here: the checks themselves are in `checks.rs`, the types and the
//! order of the rows in `mod.rs`.

use std::fmt::Write as _;

use super::{Check, DoctorReport};

impl DoctorReport {
    /// The report as an aligned table, one row per check plus a `fix:` line under each check
    /// that is not ok. `color` adds ANSI colors to the status column; pass false when
    /// `NO_COLOR` is set or stdout is not a terminal.
    pub fn render(&self, color: bool) -> String {
        // The name column is at least as wide as in the documented example, and grows for a
        // longer name so that the columns stay aligned.
        let name_w = self
            .checks
            .iter()
            .map(|c| c.name.len())
            .max()
            .unwrap_or(0)
            .max(NAME_COL_MIN)
            + 1;
        let status_w = STATUS_COL;
        let mut out = String::new();
        let _ = writeln!(out, "{:<name_w$}{:<status_w$}DETAIL", "CHECK", "STATUS");
        for c in &self.checks {
            let status = status_of(c);
            // Pad the plain word, then colour it: escape codes have no width on screen, so
            // padding after colouring would misalign the next column.
            let padded = format!("{status:<status_w$}");
            let shown = if color {
                let code = match status {
                    "PASS" => "\x1b[32m",
                    "FAIL" => "\x1b[31m",
                    _ => "\x1b[33m",
                };
                padded.replacen(status, &format!("{code}{status}\x1b[0m"), 1)
            } else {
                padded
            };
            let _ = writeln!(out, "{:<name_w$}{shown}{}", c.name, one_line(&c.detail));
            if let (false, Some(fix)) = (c.ok, &c.fix) {
                let indent = name_w + status_w;
                let _ = writeln!(out, "{:indent$}fix: {}", "", one_line(fix));
            }
        }
        out
    }
}

const NAME_COL_MIN: usize = 25;
const STATUS_COL: usize = 8;

fn status_of(c: &Check) -> &'static str {
    match (c.ok, c.required) {
        (true, _) => "PASS",
        (false, true) => "FAIL",
        (false, false) => "WARN",
    }
}

/// A table row must stay one line whatever a kernel or an error message put in it.
pub(super) fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::doctor::tests::sample_report;

    #[test]
    fn render_without_color_is_an_aligned_table() {
        let out = sample_report().render(false);
        let expected = "\
CHECK                     STATUS  DETAIL
kernel                    PASS    6.18.44 (>= 5.8 needed for the BPF ring buffer)
tracefs                   FAIL    not mounted
                                  fix: sudo pty-trace doctor --fix  (or: sudo mount -t tracefs nodev /sys/kernel/tracing)
pty                       WARN    4000/4096 in use
";
        assert_eq!(out, expected);
        assert!(!out.contains('\x1b'));
        assert!(!out.contains("never shown"));
    }

    #[test]
    fn render_grows_the_name_column_for_long_names() {
        let report = DoctorReport {
            checks: vec![Check {
                name: "a-very-long-check-name-over-25",
                ok: true,
                required: false,
                detail: "d".into(),
                fix: None,
            }],
        };
        let out = report.render(false);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        let col = "a-very-long-check-name-over-25".len() + 1;
        assert_eq!(lines[0].find("STATUS"), Some(col));
        assert_eq!(lines[1].find("PASS"), Some(col));
        assert_eq!(lines[0].find("DETAIL"), lines[1].find('d').map(|_| col + 8));
    }

    #[test]
    fn render_with_color_only_adds_escape_codes() {
        let report = sample_report();
        let colored = report.render(true);
        assert!(colored.contains("\x1b[32mPASS\x1b[0m"));
        assert!(colored.contains("\x1b[31mFAIL\x1b[0m"));
        assert!(colored.contains("\x1b[33mWARN\x1b[0m"));
        let stripped = colored
            .replace("\x1b[32m", "")
            .replace("\x1b[31m", "")
            .replace("\x1b[33m", "")
            .replace("\x1b[0m", "");
        assert_eq!(stripped, report.render(false));
    }
}
