//! `pty-trace top --once`: the machine's PTY holders as a plain table, what a user pastes
//! into a bug report (the live view draws the same record).

use std::fmt::Write;

use crate::{
    core::machine::{HolderRow, MachineRec, MachineState},
    tui::age,
};

/// The header lines: the pool, the file table, each devpts instance, what was looked at.
pub fn header_lines(m: &MachineState) -> Vec<String> {
    let mut out = Vec::new();
    let pct = |a: u64, b: u64| if b > 0 { a as f64 * 100.0 / b as f64 } else { 0.0 };
    let mut pool = format!(
        "PTYs {} of {} ({:.1}%, pty/nr of pty/max; {} reserved for the host's devpts)",
        m.pty_nr,
        m.pty_max,
        pct(m.pty_nr, m.pty_max),
        m.pty_reserve
    );
    match (m.pty_growth_per_min, m.pty_exhaustion_eta_s) {
        (Some(g), Some(eta)) => {
            let _ = write!(pool, "  growth {g:+.1}/min, full in ~{} (estimates)", age(eta));
        }
        (Some(g), None) => {
            let _ = write!(pool, "  growth {g:+.1}/min (estimate)");
        }
        _ => {}
    }
    out.push(pool);
    out.push(format!("fds {} of {} (fs/file-nr of file-max)", m.file_nr, m.file_max));
    for s in &m.devpts {
        let i = &s.instance;
        let whose = match (&i.container, i.host) {
            (_, true) => "host".to_string(),
            (Some(c), _) => c.clone(),
            (None, false) => "other".to_string(),
        };
        let max = i.max.map_or(String::new(), |x| format!(" max={x}"));
        out.push(format!("devpts {} {} ({whose}{max}): {} PTYs held, {} orphaned", i.devpts, i.mount, s.ptys, s.orphaned));
    }
    let unreadable = if m.unreadable > 0 {
        format!(", {} unreadable (their PTYs are not counted: run with sudo)", m.unreadable)
    } else {
        String::new()
    };
    out.push(format!(
        "{} processes{unreadable}; {} hold PTY ends; {} PTYs have a master held, {} of them orphaned (no process holds the slave)",
        m.processes_seen, m.holders, m.masters, m.orphaned
    ));
    if m.masters_instance_unknown > 0 {
        out.push(format!(
            "{} masters of an unknown devpts instance (pidfd_getfd refused: needs Linux 5.6 and CAP_SYS_PTRACE): not judged",
            m.masters_instance_unknown
        ));
    }
    out.into_iter().map(printable).collect()
}

/// `s` with every control character shown as `?`: command lines, mount points and cgroup
/// names are other users' text, and an escape sequence in them must not reach root's terminal.
fn printable(s: String) -> String {
    if s.chars().any(char::is_control) { s.chars().map(|c| if c.is_control() { '?' } else { c }).collect() } else { s }
}

/// Column titles of the table.
pub const COLUMNS: &str = "    PID USER       PTM  ORPH  PTS   FDS/LIMIT   PTM/MIN      AGE CONTAINER        COMMAND";

/// One row, aligned with [`COLUMNS`]; the command is cut to `command_width` characters.
pub fn row_line(r: &HolderRow, command_width: usize) -> String {
    let user = r.user.clone().unwrap_or_else(|| r.uid.to_string());
    let limit = r.nofile.map_or("-".to_string(), |n| n.to_string());
    let fds = format!("{}/{}{}", r.fds, limit, if r.near_fd_limit { "!" } else { "" });
    // Below the last digit shown it is no growth, not "-0.0".
    let growth = r.masters_per_min.map_or("-".to_string(), |g| if g.abs() < 0.05 { "0.0".into() } else { format!("{g:+.1}") });
    let mut cmd: String = r.command.chars().take(command_width).collect();
    if r.command.chars().count() > command_width && command_width > 0 {
        cmd.pop();
        cmd.push('…');
    }
    let container = match (&r.container, r.devpts.is_empty()) {
        (Some(c), _) => c.clone(),
        (None, false) => r.devpts.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(","),
        (None, true) => "-".into(),
    };
    printable(format!(
        "{:>7} {:<9.9} {:>5} {:>5} {:>4} {:>11} {:>9} {:>8} {:<16.16} {cmd}",
        r.pid,
        user,
        r.masters,
        r.orphaned,
        r.slaves,
        fds,
        growth,
        age(r.age_s),
        container
    ))
}

/// The whole table for `--once`: header, column titles, every row. `ts` heads it.
pub fn render(rec: &MachineRec, ts: &str) -> String {
    let mut o = format!("pty-trace top at {ts}\n");
    for l in header_lines(&rec.machine) {
        o.push_str(&l);
        o.push('\n');
    }
    o.push('\n');
    o.push_str(COLUMNS);
    o.push('\n');
    for r in &rec.processes {
        o.push_str(&row_line(r, 200));
        o.push('\n');
    }
    if rec.processes.is_empty() {
        o.push_str("(no process holds a PTY end or nears its fd limit)\n");
    }
    o.push_str("PTM masters held, ORPH of them orphaned, PTS slaves held, FDS/LIMIT open fds of RLIMIT_NOFILE (! above 80%), PTM/MIN masters gained per minute (estimate)\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::machine::{DevId, DevptsMount, InstanceState};

    fn row(pid: u32, masters: u64, orphaned: u64) -> HolderRow {
        HolderRow {
            pid,
            ppid: 1,
            uid: 1000,
            user: Some("dev".into()),
            command: "node /opt/agent/cli.js --session 7".into(),
            masters,
            orphaned,
            slaves: 0,
            fds: 46,
            nofile: Some(1024),
            masters_per_min: Some(30.0),
            age_s: 301.0,
            container: None,
            devpts: vec![],
            near_fd_limit: false,
        }
    }

    #[test]
    fn the_pasteable_table_names_the_culprit_and_labels_estimates() {
        let rec = MachineRec {
            machine: MachineState {
                pty_nr: 43,
                pty_max: 4096,
                pty_reserve: 1024,
                pty_growth_per_min: Some(30.0),
                pty_exhaustion_eta_s: Some(8106.0),
                file_nr: 3424,
                file_max: 9_223_372_036_854_775_807,
                devpts: vec![InstanceState {
                    instance: DevptsMount { devpts: DevId { major: 0, minor: 26 }, mount: "/dev/pts".into(), host: true, max: None, container: None },
                    ptys: 40,
                    orphaned: 40,
                }],
                processes_seen: 65,
                unreadable: 0,
                holders: 1,
                masters: 40,
                orphaned: 40,
                masters_instance_unknown: 0,
            },
            processes: vec![row(4242, 40, 40)],
        };
        let t = render(&rec, "2026-12-02T07:50:01.000Z");
        assert!(t.contains("PTYs 43 of 4096 (1.0%"), "{t}");
        assert!(t.contains("growth +30.0/min, full in ~2h15m (estimates)"), "{t}");
        assert!(t.contains("devpts 0:26 /dev/pts (host): 40 PTYs held, 40 orphaned"), "{t}");
        assert!(!t.contains("unknown devpts instance"), "{t}");
        let mut evil = rec.clone();
        evil.processes[0].command = "sh -c \u{1b}]0;owned\u{7}\u{1b}[2J".into();
        evil.machine.devpts[0].instance.mount = "/srv/\u{1b}[31mbox".into();
        let shown = render(&evil, "-");
        assert!(!shown.contains('\u{1b}') && !shown.contains('\u{7}'), "{shown:?}");
        assert!(shown.contains("sh -c ?]0;owned??[2J") && shown.contains("/srv/?[31mbox"), "{shown}");
        let mut unknown = rec.clone();
        unknown.machine.masters_instance_unknown = 3;
        assert!(render(&unknown, "-").contains("3 masters of an unknown devpts instance"), "shown, not silent");
        let line = t.lines().find(|l| l.contains("4242")).unwrap();
        assert_eq!(line, "   4242 dev          40    40    0     46/1024     +30.0    5m01s -                node /opt/agent/cli.js --session 7");
        assert_eq!(line.find("4242").map(|i| i + 4), COLUMNS.find("PID").map(|i| i + 3));
    }
}
