//! Leak score, health score and rotate decisions for one session, from its samples over time.
//!
//! Pure: `Scorer::observe(sample)` returns the scores and any alert/decision crossings. The
//! formula is documented in docs/health.md; thresholds come from `Thresholds` (TOML/flags).
//! Hysteresis: an alert or rotate decision fires once when health falls below its threshold
//! and re-arms only after health has recovered by `hysteresis` points.

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    /// Alert when health drops below this.
    pub alert_health: f64,
    /// Decide "rotate" when health drops below this.
    pub rotate_health: f64,
    /// More abandoned or left-behind PTYs than this in one session is red.
    pub max_ptys: u64,
    /// Abandoned or left-behind PTYs per command above this is critical.
    pub pty_growth_per_command: f64,
    /// fds kept per command by the session's own processes above this is a leak.
    pub fd_growth_per_command: f64,
    /// A leak score above this means a leak.
    pub leak_score: f64,
    /// Points health must recover before an alert/decision can fire again.
    pub hysteresis: f64,
    /// Commands in the growth window.
    pub window_commands: usize,
    /// Commands a growth rate needs before it counts.
    pub min_commands: usize,
    /// A PTY unused this long (seconds) is abandoned (see `evidence`).
    pub abandon_grace_s: f64,
    /// ...or unused while this many later commands started.
    pub abandon_commands: u64,
    /// A running command is given up on when this many later commands started at least this
    /// long (seconds) after it with no command ending in between (see `evidence`).
    pub overtaken_after_s: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            alert_health: 70.0,
            rotate_health: 50.0,
            max_ptys: 6,
            pty_growth_per_command: 0.5,
            fd_growth_per_command: 1.0,
            leak_score: 10.0,
            hysteresis: 10.0,
            window_commands: 20,
            min_commands: 10,
            abandon_grace_s: 5.0,
            abandon_commands: 2,
            overtaken_after_s: 0.25,
        }
    }
}

/// Fewest command ends the fd trend compares (the medians of the first and last five).
pub const MIN_WINDOW_COMMANDS: usize = 6;

/// A threshold out of its range: the key (as in the TOML file) and a sentence naming it, its
/// value and the range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidThreshold {
    pub key: &'static str,
    pub message: String,
}

impl std::fmt::Display for InvalidThreshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl Thresholds {
    /// Checks every threshold against its range (docs/health.md lists them), after the file
    /// and the flags are combined; the first one out of range.
    pub fn validate(&self) -> Result<(), InvalidThreshold> {
        let bad = |key: &'static str, message: String| Err(InvalidThreshold { key, message });
        for (key, v) in [("alert_health", self.alert_health), ("rotate_health", self.rotate_health), ("hysteresis", self.hysteresis)] {
            if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
                return bad(key, format!("{key} ({v}) must be a number from 0 to 100"));
            }
        }
        for (key, v) in [
            ("pty_growth_per_command", self.pty_growth_per_command),
            ("fd_growth_per_command", self.fd_growth_per_command),
            ("leak_score", self.leak_score),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(key, format!("{key} ({v}) must be a number, 0 or more"));
            }
        }
        for (key, v) in [("abandon_grace_s", self.abandon_grace_s), ("overtaken_after_s", self.overtaken_after_s)] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(key, format!("{key} ({v}) must be a number of seconds, 0 or more"));
            }
        }
        if self.abandon_commands < 1 {
            return bad("abandon_commands", format!("abandon_commands ({}) must be at least 1", self.abandon_commands));
        }
        let max_window = crate::core::model::MAX_COMMAND_ENDS;
        if self.min_commands < MIN_WINDOW_COMMANDS {
            return bad("min_commands", format!("min_commands ({}) must be at least {MIN_WINDOW_COMMANDS}", self.min_commands));
        }
        if !(MIN_WINDOW_COMMANDS..=max_window).contains(&self.window_commands) {
            return bad(
                "window_commands",
                format!("window_commands ({}) must be from {MIN_WINDOW_COMMANDS} to {max_window} (the command ends kept)", self.window_commands),
            );
        }
        if self.window_commands < self.min_commands {
            return bad(
                "window_commands",
                format!("window_commands ({}) must be at least min_commands ({})", self.window_commands, self.min_commands),
            );
        }
        if self.rotate_health > self.alert_health {
            return bad(
                "rotate_health",
                format!("rotate health ({}) must not be above alert health ({})", self.rotate_health, self.alert_health),
            );
        }
        Ok(())
    }
}

/// What the scorer needs to know about a session at one moment: evidence, not totals (see
/// `evidence` for how each is established).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Sample {
    pub ts_ns: u64,
    /// Abandoned PTYs still held.
    pub abandoned_ptys: u64,
    /// Left-behind PTYs still held.
    pub left_behind_ptys: u64,
    /// Abandoned or left-behind PTYs released only by their holder's exit (a final sample).
    pub died_holding: u64,
    /// Residual PTYs per command over the window, once it has enough commands.
    pub pty_per_command: Option<f64>,
    /// fds kept per command by the session's own processes, once it has enough commands.
    pub fd_per_command: Option<f64>,
    /// The fd growth is a sustained trend (see `evidence`).
    pub fd_growth_sustained: bool,
    /// Residual PTYs per minute and sustained fd growth per minute, for the estimate.
    pub pty_per_minute: f64,
    pub fd_per_minute: f64,
    /// Processes whose starting command has ended but which still run (reparented etc.).
    pub lingering: u64,
    /// Smallest RLIMIT_NOFILE headroom (limit - open fds) of the session's own processes that
    /// can open anything at all (a sandbox child with a limit at or below its open fds is not
    /// going to run out: it opens nothing).
    pub nofile_headroom: Option<u64>,
    /// `pty/max - pty/nr`.
    pub pty_headroom: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub health: f64,
    pub leak_score: f64,
    /// Abandoned or left-behind PTYs per command over the window (0 until it has enough).
    pub pty_per_command: f64,
    /// fds kept per command by the session's own processes over the window.
    pub fd_per_command: f64,
    pub fd_per_minute: f64,
    /// Estimated seconds until RLIMIT_NOFILE or pty/max is hit at the current growth rate
    /// (only from a sustained growth trend).
    pub est_seconds_to_exhaustion: Option<f64>,
    pub reasons: Vec<String>,
    pub leaking: bool,
}

/// Residual PTYs that make a steady leak on their own (*fixed*): three PTYs, each abandoned for
/// the grace period or across later commands, and none given back.
pub const STEADY_LEAK_PTYS: u64 = 3;

#[derive(Clone, Debug, PartialEq)]
pub enum Crossing {
    Alert { health: f64, reasons: Vec<String> },
    Rotate { health: f64, reasons: Vec<String> },
}

#[derive(Clone, Debug)]
pub struct Scorer {
    pub th: Thresholds,
    alert_armed: bool,
    rotate_armed: bool,
    pub health_min: f64,
    /// Some sample was leaking.
    pub leak_seen: bool,
    pub last: Scores,
}

impl Scorer {
    pub fn new(th: Thresholds) -> Self {
        Scorer {
            th,
            alert_armed: true,
            rotate_armed: true,
            health_min: 100.0,
            leak_seen: false,
            last: Scores { health: 100.0, ..Scores::default() },
        }
    }

    pub fn observe(&mut self, s: &Sample) -> (Scores, Vec<Crossing>) {
        let scores = self.score(s);
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

    fn score(&self, s: &Sample) -> Scores {
        let th = &self.th;
        let residual = s.abandoned_ptys + s.left_behind_ptys + s.died_holding;
        let pty_per_command = s.pty_per_command.unwrap_or(0.0);
        let fd_per_command = s.fd_per_command.unwrap_or(0.0);
        let fd_leak = s.fd_growth_sustained && fd_per_command > th.fd_growth_per_command;
        let mut est: Option<f64> = None;
        let mut consider = |headroom: Option<u64>, per_min: f64| {
            if let Some(hr) = headroom
                && per_min > 0.0
            {
                let secs = hr as f64 / per_min * 60.0;
                est = Some(est.map_or(secs, |e: f64| e.min(secs)));
            }
        };
        if fd_leak {
            consider(s.nofile_headroom, s.fd_per_minute);
        }
        // Three PTYs abandoned over time is a trend; one or two is not yet.
        if residual >= 3 {
            consider(s.pty_headroom, s.pty_per_minute);
        }

        let mut reasons = Vec::new();
        let mut penalty = 0.0;
        let mut leak = 0.0;
        if s.abandoned_ptys > 0 {
            penalty += (8.0 * s.abandoned_ptys as f64).min(50.0);
            leak += 3.0 * s.abandoned_ptys as f64;
            reasons.push(format!("{} abandoned PTY(s): master held, nothing uses the slave", s.abandoned_ptys));
        }
        if s.left_behind_ptys > 0 {
            penalty += (8.0 * s.left_behind_ptys as f64).min(50.0);
            leak += 3.0 * s.left_behind_ptys as f64;
            reasons.push(format!("{} PTY(s) left behind with commands the session moved on from", s.left_behind_ptys));
        }
        if s.died_holding > 0 {
            penalty += (8.0 * s.died_holding as f64).min(50.0);
            leak += 3.0 * s.died_holding as f64;
            reasons.push(format!("{} abandoned PTY(s) were given back only when their holder exited", s.died_holding));
        }
        if residual >= STEADY_LEAK_PTYS {
            penalty += 10.0;
            leak += 2.0;
            reasons.push(format!("{residual} PTYs abandoned or left behind and not given back: a steady leak"));
        }
        if residual > th.max_ptys {
            penalty += (30.0 + 2.0 * (residual - th.max_ptys) as f64).min(45.0);
            leak += (residual - th.max_ptys) as f64;
            reasons.push(format!("{residual} PTYs held without use (red above {})", th.max_ptys));
        }
        if pty_per_command > th.pty_growth_per_command {
            penalty += 30.0;
            leak += 10.0 * pty_per_command;
            reasons.push(format!("{pty_per_command:.2} PTYs abandoned per command (critical above {})", th.pty_growth_per_command));
        } else if pty_per_command > th.pty_growth_per_command / 5.0 {
            penalty += 10.0;
            leak += 10.0 * pty_per_command;
            reasons.push(format!("{pty_per_command:.2} PTYs abandoned per command"));
        }
        if fd_leak {
            // A sustained trend is a leak whatever its size: it alerts, and rotates once it
            // also threatens exhaustion within the hour.
            penalty += (30.0 + 5.0 * fd_per_command).min(45.0);
            leak += fd_per_command;
            reasons.push(format!("the session keeps {fd_per_command:.2} fds per command (sustained)"));
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
            fd_per_minute: if fd_leak { s.fd_per_minute } else { 0.0 },
            est_seconds_to_exhaustion: est,
            leaking: leak > th.leak_score || residual > th.max_ptys || fd_leak,
            reasons,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn abandoned(i: u64, n: u64) -> Sample {
        Sample { ts_ns: i * 1_000_000_000, abandoned_ptys: n, ..Sample::default() }
    }

    #[test]
    fn every_threshold_is_range_checked() {
        assert_eq!(Thresholds::default().validate(), Ok(()));
        let d = Thresholds::default;
        let cases: &[(Thresholds, &str, &str)] = &[
            (Thresholds { alert_health: f64::NAN, ..d() }, "alert_health", "alert_health (NaN) must be a number from 0 to 100"),
            (Thresholds { alert_health: -5.0, ..d() }, "alert_health", "alert_health (-5) must be a number from 0 to 100"),
            (Thresholds { alert_health: 500.0, ..d() }, "alert_health", "alert_health (500) must be a number from 0 to 100"),
            (Thresholds { rotate_health: f64::INFINITY, ..d() }, "rotate_health", "rotate_health (inf) must be a number from 0 to 100"),
            (Thresholds { hysteresis: 101.0, ..d() }, "hysteresis", "hysteresis (101) must be a number from 0 to 100"),
            (Thresholds { pty_growth_per_command: -0.1, ..d() }, "pty_growth_per_command", "must be a number, 0 or more"),
            (Thresholds { fd_growth_per_command: f64::NAN, ..d() }, "fd_growth_per_command", "must be a number, 0 or more"),
            (Thresholds { leak_score: -1.0, ..d() }, "leak_score", "leak_score (-1) must be a number, 0 or more"),
            (Thresholds { abandon_grace_s: -1.0, ..d() }, "abandon_grace_s", "must be a number of seconds, 0 or more"),
            (Thresholds { overtaken_after_s: f64::NAN, ..d() }, "overtaken_after_s", "must be a number of seconds, 0 or more"),
            (Thresholds { abandon_commands: 0, ..d() }, "abandon_commands", "abandon_commands (0) must be at least 1"),
            (Thresholds { min_commands: 0, ..d() }, "min_commands", "min_commands (0) must be at least 6"),
            (Thresholds { window_commands: 5, min_commands: 6, ..d() }, "window_commands", "window_commands (5) must be from 6 to 512"),
            (Thresholds { window_commands: 513, ..d() }, "window_commands", "window_commands (513) must be from 6 to 512"),
            (Thresholds { window_commands: 8, min_commands: 10, ..d() }, "window_commands", "must be at least min_commands (10)"),
            (Thresholds { rotate_health: 90.0, ..d() }, "rotate_health", "rotate health (90) must not be above alert health (70)"),
        ];
        for (th, key, needle) in cases {
            let e = th.validate().expect_err(needle);
            assert_eq!(e.key, *key, "{e}");
            assert!(e.message.contains(needle), "{e} should contain {needle:?}");
        }
        // The edges are in range.
        let edges = Thresholds { alert_health: 100.0, rotate_health: 0.0, hysteresis: 0.0, max_ptys: 0, leak_score: 0.0, abandon_grace_s: 0.0, overtaken_after_s: 0.0, abandon_commands: 1, min_commands: 6, window_commands: 512, ..d() };
        assert_eq!(edges.validate(), Ok(()));
    }

    #[test]
    fn no_evidence_stays_at_100_and_never_alerts() {
        let mut sc = Scorer::new(Thresholds::default());
        for i in 0..50 {
            let (s, c) = sc.observe(&Sample { ts_ns: i, pty_per_command: Some(0.0), fd_per_command: Some(0.4), ..Sample::default() });
            assert_eq!(s.health, 100.0, "{s:?}");
            assert!(c.is_empty());
            assert!(!s.leaking);
        }
        assert!(!sc.leak_seen);
    }

    #[test]
    fn one_abandoned_pty_per_command_alerts_then_rotates_once() {
        let mut sc = Scorer::new(Thresholds::default());
        let (mut alerts, mut rotates) = (0, 0);
        for i in 0..40 {
            let mut s = abandoned(i, i);
            s.pty_per_command = (i >= 10).then_some(1.0);
            for x in sc.observe(&s).1 {
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
    }

    #[test]
    fn three_abandoned_ptys_are_a_steady_leak_two_are_not() {
        // 2 abandoned PTYs (leak 6, health 84) are a warning; the third makes a steady leak
        // (leak 11, health 66: an alert).
        let mut sc = Scorer::new(Thresholds::default());
        let (two, c) = sc.observe(&abandoned(1, 2));
        assert!(!two.leaking && c.is_empty() && two.health == 84.0, "{two:?}");
        let (three, c) = sc.observe(&abandoned(2, 3));
        assert!(three.leaking && three.health == 66.0, "{three:?}");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn more_residual_ptys_than_max_is_red_and_a_leak() {
        let mut sc = Scorer::new(Thresholds { leak_score: 1000.0, ..Thresholds::default() });
        let (s, _) = sc.observe(&Sample { left_behind_ptys: 7, ..Sample::default() });
        assert!(s.leaking);
        assert!(s.reasons.iter().any(|r| r.contains("red above 6")), "{:?}", s.reasons);
    }

    #[test]
    fn hysteresis_prevents_flapping_and_rearms_after_recovery() {
        let mut sc = Scorer::new(Thresholds::default());
        let mut alerts = 0;
        // Health oscillates 66 (3 abandoned) / 77 (1 abandoned, 5 lingering descendants)
        // around the alert line (70) without recovering to 80: a single alert.
        for i in 0..10 {
            let s = if i % 2 == 0 { abandoned(i, 3) } else { Sample { lingering: 5, abandoned_ptys: 1, ..Sample::default() } };
            let (now, c) = sc.observe(&s);
            assert!(now.health == 66.0 || now.health == 77.0, "{}", now.health);
            alerts += c.iter().filter(|x| matches!(x, Crossing::Alert { .. })).count();
        }
        assert_eq!(alerts, 1);
        // Full recovery re-arms; the next drop alerts again.
        sc.observe(&abandoned(20, 0));
        let (_, c) = sc.observe(&abandoned(21, 3));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn exhaustion_is_estimated_only_from_sustained_growth_and_labelled() {
        let mut sc = Scorer::new(Thresholds::default());
        let grow = Sample { fd_per_command: Some(3.0), fd_per_minute: 500.0, nofile_headroom: Some(500), ..Sample::default() };
        let (s, _) = sc.observe(&Sample { fd_growth_sustained: false, ..grow.clone() });
        assert_eq!(s.est_seconds_to_exhaustion, None, "not a trend: no estimate");
        assert!(!s.leaking);
        let (s, _) = sc.observe(&Sample { fd_growth_sustained: true, ..grow });
        let e = s.est_seconds_to_exhaustion.unwrap();
        assert!((e - 60.0).abs() < 1.0, "{e}");
        assert!(s.reasons.iter().any(|r| r.contains("(estimate)")));
    }
}
