//! Leak score, health score and rotate decisions for one session, from its samples over time.
//!
//! Pure: `Scorer::observe(sample)` returns the scores and any alert/decision crossings. The
//! formula is documented in docs/health.md; thresholds come from `Thresholds` (TOML/flags).
//! Hysteresis: an alert or rotate decision fires once when health falls below its threshold
//! and re-arms only after health has recovered by `hysteresis` points.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Alert when health drops below this.
    pub alert_health: f64,
    /// Decide "rotate" when health drops below this.
    pub rotate_health: f64,
    /// More PTYs than this held by one session is red.
    pub max_ptys: u64,
    /// PTY growth per command above this is critical.
    pub pty_growth_per_command: f64,
    /// A leak score above this means a leak.
    pub leak_score: f64,
    /// Points health must recover before an alert/decision can fire again.
    pub hysteresis: f64,
    /// Commands in the growth window.
    pub window_commands: usize,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            alert_health: 70.0,
            rotate_health: 50.0,
            max_ptys: 6,
            pty_growth_per_command: 0.5,
            leak_score: 10.0,
            hysteresis: 10.0,
            window_commands: 20,
        }
    }
}

/// What the scorer needs to know about a session at one moment.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub ts_ns: u64,
    pub commands: u64,
    pub fds: u64,
    /// PTY masters held by session processes.
    pub ptys: u64,
    pub orphaned_ptys: u64,
    /// Processes whose starting command has ended but which still run (reparented etc.).
    pub lingering: u64,
    /// Smallest headroom of RLIMIT_NOFILE over session processes (limit - open fds).
    pub nofile_headroom: Option<u64>,
    /// `pty/max - pty/nr`.
    pub pty_headroom: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub health: f64,
    pub leak_score: f64,
    /// PTYs gained per command over the window.
    pub pty_per_command: f64,
    /// fds gained per command over the window.
    pub fd_per_command: f64,
    pub fd_per_minute: f64,
    /// Estimated seconds until RLIMIT_NOFILE or pty/max is hit at the current growth rate.
    pub est_seconds_to_exhaustion: Option<f64>,
    pub reasons: Vec<String>,
    pub leaking: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Crossing {
    Alert { health: f64, reasons: Vec<String> },
    Rotate { health: f64, reasons: Vec<String> },
}

#[derive(Clone, Debug)]
pub struct Scorer {
    pub th: Thresholds,
    /// (commands, fds, ptys, ts) at each command-count change, newest last.
    by_command: VecDeque<(u64, u64, u64, u64)>,
    first: Option<Sample>,
    alert_armed: bool,
    rotate_armed: bool,
    pub health_min: f64,
    pub leak_seen: bool,
    pub last: Scores,
}

impl Scorer {
    pub fn new(th: Thresholds) -> Self {
        Scorer {
            th,
            by_command: VecDeque::new(),
            first: None,
            alert_armed: true,
            rotate_armed: true,
            health_min: 100.0,
            leak_seen: false,
            last: Scores { health: 100.0, ..Scores::default() },
        }
    }

    pub fn observe(&mut self, s: &Sample) -> (Scores, Vec<Crossing>) {
        let first = self.first.get_or_insert_with(|| s.clone()).clone();
        if self.by_command.back().is_none_or(|b| b.0 != s.commands) {
            self.by_command.push_back((s.commands, s.fds, s.ptys, s.ts_ns));
        } else if let Some(b) = self.by_command.back_mut() {
            // Same command count: keep the latest counts for it.
            *b = (s.commands, s.fds, s.ptys, s.ts_ns);
        }
        while self.by_command.len() > self.th.window_commands + 1 {
            self.by_command.pop_front();
        }
        let scores = self.score(s, &first);
        let mut crossings = Vec::new();
        let h = scores.health;
        if h < self.th.alert_health && self.alert_armed {
            self.alert_armed = false;
            crossings.push(Crossing::Alert { health: h, reasons: scores.reasons.clone() });
        } else if h >= self.th.alert_health + self.th.hysteresis {
            self.alert_armed = true;
        }
        if h < self.th.rotate_health && self.rotate_armed {
            self.rotate_armed = false;
            crossings.push(Crossing::Rotate { health: h, reasons: scores.reasons.clone() });
        } else if h >= self.th.rotate_health + self.th.hysteresis {
            self.rotate_armed = true;
        }
        self.health_min = self.health_min.min(h);
        self.leak_seen |= scores.leaking;
        self.last = scores.clone();
        (scores, crossings)
    }

    fn score(&self, s: &Sample, first: &Sample) -> Scores {
        let th = &self.th;
        let (pty_per_command, fd_per_command) = match (self.by_command.front(), self.by_command.back()) {
            (Some(a), Some(b)) if b.0 > a.0 => {
                let n = (b.0 - a.0) as f64;
                ((b.2 as f64 - a.2 as f64) / n, (b.1 as f64 - a.1 as f64) / n)
            }
            _ => (0.0, 0.0),
        };
        let minutes = (s.ts_ns.saturating_sub(first.ts_ns)) as f64 / 60e9;
        let fd_per_minute = if minutes > 0.05 { (s.fds as f64 - first.fds as f64) / minutes } else { 0.0 };
        let pty_per_minute = if minutes > 0.05 { (s.ptys as f64 - first.ptys as f64) / minutes } else { 0.0 };
        let mut est: Option<f64> = None;
        let mut consider = |headroom: Option<u64>, per_min: f64| {
            if let Some(hr) = headroom
                && per_min > 0.0
            {
                let secs = hr as f64 / per_min * 60.0;
                est = Some(est.map_or(secs, |e: f64| e.min(secs)));
            }
        };
        consider(s.nofile_headroom, fd_per_minute);
        consider(s.pty_headroom, pty_per_minute);

        let mut reasons = Vec::new();
        let mut penalty = 0.0;
        let mut leak = 0.0;
        if s.orphaned_ptys > 0 {
            penalty += (8.0 * s.orphaned_ptys as f64).min(50.0);
            leak += 3.0 * s.orphaned_ptys as f64;
            reasons.push(format!("{} orphaned PTY(s): master held, no process holds the slave", s.orphaned_ptys));
        }
        if s.ptys > th.max_ptys {
            penalty += (30.0 + 2.0 * (s.ptys - th.max_ptys) as f64).min(45.0);
            leak += (s.ptys - th.max_ptys) as f64;
            reasons.push(format!("{} PTYs held by the session (red above {})", s.ptys, th.max_ptys));
        }
        if pty_per_command > th.pty_growth_per_command {
            penalty += 30.0;
            leak += 10.0 * pty_per_command;
            reasons.push(format!("PTYs grow {pty_per_command:.2} per command (critical above {})", th.pty_growth_per_command));
        } else if pty_per_command > th.pty_growth_per_command / 5.0 {
            penalty += 10.0;
            leak += 10.0 * pty_per_command;
            reasons.push(format!("PTYs grow {pty_per_command:.2} per command"));
        }
        if fd_per_command > 1.0 {
            penalty += (5.0 * fd_per_command).min(20.0);
            leak += fd_per_command;
            reasons.push(format!("fds grow {fd_per_command:.2} per command"));
        }
        if s.lingering > 0 {
            penalty += (3.0 * s.lingering as f64).min(15.0);
            reasons.push(format!("{} descendant(s) outlive the command that started them", s.lingering));
        }
        if let Some(e) = est
            && e < 3600.0
        {
            penalty += 20.0;
            reasons.push(format!("estimated {:.0} s to fd/PTY exhaustion at the current rate (estimate)", e));
        }
        let health = (100.0 - penalty).clamp(0.0, 100.0);
        Scores {
            health: (health * 10.0).round() / 10.0,
            leak_score: (leak * 10.0).round() / 10.0,
            pty_per_command,
            fd_per_command,
            fd_per_minute,
            est_seconds_to_exhaustion: est,
            leaking: leak > th.leak_score || s.orphaned_ptys > 0 && leak > th.leak_score / 2.0,
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(i: u64, commands: u64, ptys: u64, orphaned: u64) -> Sample {
        Sample { ts_ns: i * 1_000_000_000, commands, fds: 10 + ptys, ptys, orphaned_ptys: orphaned, ..Sample::default() }
    }

    #[test]
    fn healthy_session_stays_at_100_and_never_alerts() {
        let mut sc = Scorer::new(Thresholds::default());
        for i in 0..50 {
            let (s, c) = sc.observe(&sample(i, i, 1, 0));
            assert_eq!(s.health, 100.0, "{s:?}");
            assert!(c.is_empty());
            assert!(!s.leaking);
        }
        assert!(!sc.leak_seen);
    }

    #[test]
    fn one_orphaned_pty_per_command_alerts_then_rotates_once() {
        let mut sc = Scorer::new(Thresholds::default());
        let mut alerts = 0;
        let mut rotates = 0;
        for i in 0..40 {
            let (_, c) = sc.observe(&sample(i, i, i, i));
            for x in c {
                match x {
                    Crossing::Alert { .. } => alerts += 1,
                    Crossing::Rotate { .. } => rotates += 1,
                }
            }
        }
        assert_eq!((alerts, rotates), (1, 1));
        assert!(sc.leak_seen);
        assert!(sc.last.health < 50.0);
        assert!(sc.last.leak_score > 10.0);
        assert!((sc.last.pty_per_command - 1.0).abs() < 1e-9);
    }

    #[test]
    fn hysteresis_prevents_flapping_and_rearms_after_recovery() {
        let mut sc = Scorer::new(Thresholds::default());
        let mut alerts = 0;
        // Health oscillates 66 (8 PTYs held) / 76 (3 orphaned PTYs) around the alert line (70)
        // without recovering to 80: a single alert.
        for i in 0..10 {
            let s = if i % 2 == 0 {
                Sample { ts_ns: i, ptys: 8, ..Sample::default() }
            } else {
                Sample { ts_ns: i, orphaned_ptys: 3, ..Sample::default() }
            };
            let (sc_now, c) = sc.observe(&s);
            assert!(sc_now.health == 66.0 || sc_now.health == 76.0, "{}", sc_now.health);
            alerts += c.iter().filter(|x| matches!(x, Crossing::Alert { .. })).count();
        }
        assert_eq!(alerts, 1);
        // Full recovery re-arms; the next drop alerts again.
        sc.observe(&Sample { ts_ns: 20, ..Sample::default() });
        let (_, c) = sc.observe(&Sample { ts_ns: 21, ptys: 8, ..Sample::default() });
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn exhaustion_estimate_is_labelled() {
        let mut sc = Scorer::new(Thresholds::default());
        sc.observe(&Sample { ts_ns: 0, fds: 10, nofile_headroom: Some(1000), ..Sample::default() });
        let (s, _) = sc.observe(&Sample { ts_ns: 60_000_000_000, fds: 510, nofile_headroom: Some(500), ..Sample::default() });
        let e = s.est_seconds_to_exhaustion.unwrap();
        assert!((e - 60.0).abs() < 1.0, "{e}");
        assert!(s.reasons.iter().any(|r| r.contains("(estimate)")));
    }
}
