//! Leak evidence for one session: which PTYs it abandoned or left behind, and whether what its
//! own processes hold grows with its commands. Pure: it reads the model and the PTY registry
//! of a snapshot, and keeps what it needs across snapshots.
//!
//! The rules (docs/health.md explains them to users):
//! - A PTY is **in use** while some process other than its master's holders holds its slave
//!   (a window's shell, an agent's running command), or one outside the traced sessions does.
//! - A PTY is **abandoned** when its master is held and nothing else holds its slave (the
//!   child exited and the master was kept, or the slave was never handed out), and it stayed
//!   so for `abandon_grace_s` or while `abandon_commands` later commands started. The moment
//!   it became orphaned comes from events (see `model::lifecycle`), so a PTY orphaned and
//!   released between two snapshots counts the same at any interval.
//! - A PTY is **left behind** when only a non-interactive command holds its slave and the
//!   session has moved on from that command: `abandon_commands` later commands were started
//!   `overtaken_after_s` or more after it with no command ending in between (an agent's
//!   command hung at a prompt, given up on but never killed), or `abandon_commands` later
//!   commands were started `abandon_grace_s` or more after it; or the command ended
//!   `abandon_grace_s` ago and only what it left running holds the slave.
//!   Interactive shells (a window's, a login's) wait at their prompt by design: never left
//!   behind.
//! - **fd growth** is measured on what the session's own processes (the root and its helpers,
//!   not its running commands) hold at each command's end, PTY ends excluded: over the last
//!   `window_commands` command ends, at least `min_commands` of them, the rise from the median
//!   of the first five to the median of the last five, per command, and it counts only when
//!   it rose at a third of those command ends (one-off growth, like a cache opened on first
//!   use, is not a trend).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use super::{
    model::{CommandId, FdKind, Model, fd::PtyRole},
    records::{Evidence, EvidenceEnd, EvidenceKind, PtyPair},
    score::Thresholds,
};

/// Most ended pieces of evidence kept (given back by exit, or closed); the summary says how many.
const MAX_ENDED_EVIDENCE: usize = 256;

/// A PTY's identity over time: its index and when its master was opened (indexes are reused).
type PtyKey = (u32, u64);

/// What the evidence says now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Findings {
    /// Abandoned PTYs still held.
    pub abandoned: Vec<Evidence>,
    /// Left-behind PTYs still held.
    pub left_behind: Vec<Evidence>,
    /// Abandoned or left-behind PTYs released only because their holder exited (with when):
    /// the session never gave them back itself.
    pub died_holding: Vec<(u64, Evidence)>,
    /// Abandoned or left-behind PTYs the session later closed itself (with when).
    pub recovered: Vec<(u64, Evidence)>,
    /// Abandoned or left-behind PTYs ever, per command, over the growth window (None: fewer
    /// than `min_commands` commands in it).
    pub pty_per_command: Option<f64>,
    /// fds gained per command by the session's own processes over the window (None: too few
    /// command ends), and whether that growth is a sustained trend.
    pub fd_per_command: Option<f64>,
    pub fd_growth: Option<Evidence>,
    /// Abandoned or left-behind PTYs per minute since the first one (0 without any).
    pub pty_per_minute: f64,
    /// Sustained fd growth per minute of the session's own processes (0 without a trend).
    pub fd_per_minute: f64,
}

impl Findings {
    /// PTYs the session holds without use now (abandoned + left behind).
    pub fn residual_ptys(&self) -> usize {
        self.abandoned.len() + self.left_behind.len()
    }

    /// The PTY evidence that holds now: abandoned, then left behind.
    pub fn pty_evidence(&self) -> Vec<Evidence> {
        self.abandoned.iter().chain(&self.left_behind).cloned().collect()
    }

    /// Everything that holds now: the PTY evidence, then fd growth.
    pub fn live_evidence(&self) -> Vec<Evidence> {
        let mut out = self.pty_evidence();
        out.extend(self.fd_growth.iter().cloned());
        out
    }

    /// PTYs given back only by their holder's exit at or after `ts` (the root's end).
    pub fn died_holding_since(&self, ts: u64) -> impl Iterator<Item = &Evidence> {
        self.died_holding.iter().filter(move |(t, _)| *t >= ts).map(|(_, e)| e)
    }

    /// PTYs given back by their holder's exit before `ts`: over before the end.
    pub fn died_holding_before(&self, ts: u64) -> impl Iterator<Item = &Evidence> {
        self.died_holding.iter().filter(move |(t, _)| *t < ts).map(|(_, e)| e)
    }

    /// Closed PTYs split into (teardown, recovered): a close after which the session started no
    /// command and ended (`root_end`) within `abandon_grace_s` is its teardown (an interpreter closing what it kept
    /// as it exits, pexpect's `__del__`), not a recovery.
    pub fn closes(&self, model: &Model, root: u32, root_end: Option<u64>, th: &Thresholds) -> (Vec<Evidence>, Vec<Evidence>) {
        let grace = (th.abandon_grace_s * 1e9) as u64;
        let last_start = model.sessions.get(&root).and_then(|s| s.commands.last_start()).unwrap_or(0);
        let (teardown, recovered): (Vec<_>, Vec<_>) =
            self.recovered.iter().partition(|(t, _)| root_end.is_some_and(|end| *t >= last_start && end.saturating_sub(*t) <= grace));
        let words = |v: Vec<&(u64, Evidence)>, end: &str| {
            v.into_iter()
                .map(|(_, e)| {
                    let mut e = e.clone();
                    if let Some(i) = e.why.rfind("; closed later by the session") {
                        e.why.truncate(i);
                        e.why.push_str(end);
                    }
                    e
                })
                .collect()
        };
        (words(teardown, "; closed only as the session ended"), words(recovered, "; closed later by the session"))
    }
}

/// One session's evidence state across snapshots.
#[derive(Clone, Debug, Default)]
pub struct LeakEvidence {
    /// Releases of `Session::pty_releases` already taken (by number).
    releases_seen: u64,
    /// PTYs seen orphaned or idle at a snapshot without an event-given onset: when first seen.
    first_seen_unused: BTreeMap<PtyKey, u64>,
    /// PTYs whose slave some untraced process held at a snapshot (their orphaning time is not
    /// known from events).
    held_outside: BTreeSet<PtyKey>,
    /// PTYs judged abandoned or left behind (live), by key.
    residual: BTreeMap<PtyKey, Evidence>,
    /// PTYs ever judged residual (for the per-command rate).
    ever_residual: usize,
    died_holding: Vec<(u64, Evidence)>,
    recovered: Vec<(u64, Evidence)>,
    /// (commands started, PTYs ever residual) each time the command count changed.
    pty_series: VecDeque<(usize, usize)>,
    first_residual_ns: Option<u64>,
}

impl LeakEvidence {
    /// Updates the evidence from the model and this snapshot's PTY registry of the session.
    pub fn observe(&mut self, model: &Model, root: u32, ptys: &[PtyPair], now: u64, th: &Thresholds) -> Findings {
        let Some(session) = model.sessions.get(&root) else { return Findings::default() };
        let grace = (th.abandon_grace_s * 1e9) as u64;
        let min = (th.overtaken_after_s * 1e9) as u64;
        let started = |from: u64, to: u64| session.commands.started_between(from, to);
        // Unused for the grace period, or across later commands for a moment at least (a pool
        // that starts the next command before closing the last one's master is not leaking).
        let qualifies = |since: u64, now: u64, later: u64| {
            let age = now.saturating_sub(since);
            age >= grace || later >= th.abandon_commands && age >= min
        };

        // PTYs released since the last look: judge them as they were at their release.
        let unseen = session.pty_releases_total.saturating_sub(self.releases_seen) as usize;
        let skip = session.pty_releases.len().saturating_sub(unseen);
        for r in session.pty_releases.iter().skip(skip) {
            let key = (r.index, r.opened_ns);
            let known = self.residual.remove(&key);
            let was_known = known.is_some();
            let outside = self.held_outside.contains(&key);
            let judged = known.or_else(|| {
                if outside {
                    return None;
                }
                let Some(since) = r.orphaned_since else {
                    // Still in use when released: was it left behind by then?
                    return left_behind_evidence(model, root, r.index, (r.opener_pid, -1), &r.slave_units, None, r.released_ns, th);
                };
                let later = started(since, r.released_ns);
                qualifies(since, r.released_ns, later).then(|| abandoned_evidence(model, root, r.index, (r.opener_pid, -1), r.opened_ns, since, r.released_ns, later))
            });
            self.first_seen_unused.remove(&key);
            self.held_outside.remove(&key);
            if let Some(mut ev) = judged {
                if !was_known {
                    self.ever_residual += 1;
                }
                self.first_residual_ns.get_or_insert(r.released_ns);
                ev.ended = Some(if r.by_exit { EvidenceEnd::HolderExited } else { EvidenceEnd::Closed });
                ev.why.push_str(if r.by_exit {
                    "; released only when its holder exited"
                } else {
                    "; closed later by the session"
                });
                let list = if r.by_exit { &mut self.died_holding } else { &mut self.recovered };
                if list.len() < MAX_ENDED_EVIDENCE {
                    list.push((r.released_ns, ev));
                }
            }
        }
        self.releases_seen = session.pty_releases_total;
        session.pty_releases_read.set(self.releases_seen);

        // PTYs held now.
        let mut live = BTreeSet::new();
        let mut abandoned = Vec::new();
        let mut left_behind = Vec::new();
        for pair in ptys {
            let Some(index) = pair.index else { continue };
            // The holder is the process that opened the master, when it still holds it: a
            // child that inherited a copy is not the one leaking it.
            let entry_of = |h: &crate::core::model::pty::Holder| model.table_of(h.pid).and_then(|t| t.fds.get(&h.fd));
            let Some(first) = pair
                .masters
                .iter()
                .find(|h| entry_of(h).is_some_and(|e| e.opener_pid == h.pid))
                .or_else(|| pair.masters.first())
            else {
                continue;
            };
            let Some(entry) = entry_of(first) else { continue };
            let key = (index, entry.opened_ns);
            live.insert(key);
            if entry.opener_pid != first.pid && model.procs.contains_key(&entry.opener_pid) {
                // Held only through copies children inherited (node-pty's masters are not
                // close-on-exec) while the opener, alive, closed its own: it gave the PTY up;
                // what was already found stands. (Once the opener is gone, the copies are all
                // that is left of it and are judged as usual.)
                if let Some(ev) = self.residual.get(&key) {
                    match ev.kind {
                        EvidenceKind::LeftBehindPty => left_behind.push(ev.clone()),
                        _ => abandoned.push(ev.clone()),
                    }
                }
                continue;
            }
            if pair.slave_held_outside {
                self.held_outside.insert(key);
            }
            // Tables holding the master as opened (not a copy a child inherited): a slave held
            // only there is idle; a child holding an inherited master copy and its own slave
            // (node-pty's masters are not close-on-exec) is using the PTY.
            let master_tables: BTreeSet<_> = pair
                .masters
                .iter()
                .filter(|h| entry_of(h).is_some_and(|e| e.opener_pid == h.pid))
                .filter_map(|h| model.procs.get(&h.pid).map(|p| p.table))
                .collect();
            let other_slave_holders: Vec<u32> = pair
                .slaves
                .iter()
                .filter(|h| model.procs.get(&h.pid).is_some_and(|p| !master_tables.contains(&p.table)))
                .map(|h| h.pid)
                .collect();
            let holder = (first.pid, first.fd);
            if other_slave_holders.is_empty() && !pair.slave_held_outside {
                // Orphaned (no slave holder) or idle (only the master's holders hold it).
                let event_onset = (pair.orphaned && !self.held_outside.contains(&key))
                    .then(|| model.slave_last_dropped(index).unwrap_or(0).max(entry.opened_ns));
                let seen = *self.first_seen_unused.entry(key).or_insert(now);
                let since = event_onset.unwrap_or(seen);
                let later = started(since, now);
                if qualifies(since, now, later) {
                    let ev = abandoned_evidence(model, root, index, holder, entry.opened_ns, since, now, later);
                    self.mark_residual(key, now, ev.clone());
                    abandoned.push(ev);
                } else {
                    self.residual.remove(&key);
                }
                continue;
            }
            self.first_seen_unused.remove(&key);
            let units: Vec<_> = other_slave_holders.iter().map(|pid| model.procs.get(pid).and_then(|p| p.unit)).collect();
            let found = if pair.slave_held_outside {
                None
            } else {
                left_behind_evidence(model, root, index, holder, &units, other_slave_holders.first().copied(), now, th)
            };
            match found {
                Some(ev) => {
                    self.mark_residual(key, now, ev.clone());
                    left_behind.push(ev);
                }
                None => {
                    self.residual.remove(&key);
                }
            }
        }
        // Forget PTYs no longer held that no release accounted for (their index is unknown now).
        self.residual.retain(|k, _| live.contains(k));
        self.first_seen_unused.retain(|k, _| live.contains(k));
        self.held_outside.retain(|k| live.contains(k));

        // Growth per command.
        let commands = session.commands.len();
        if self.pty_series.back().is_none_or(|b| b.0 != commands) {
            self.pty_series.push_back((commands, self.ever_residual));
        } else if let Some(b) = self.pty_series.back_mut() {
            b.1 = self.ever_residual;
        }
        // The window spans the last `window_commands` commands.
        while self.pty_series.len() >= 2 && self.pty_series[1].0 + th.window_commands <= commands {
            self.pty_series.pop_front();
        }
        let pty_per_command = match (self.pty_series.front(), self.pty_series.back()) {
            (Some(a), Some(b)) if b.0 >= a.0 + th.min_commands.max(1) => Some((b.1 - a.1) as f64 / (b.0 - a.0) as f64),
            _ => None,
        };
        let pty_per_minute = match self.first_residual_ns {
            Some(t0) if now > t0 + 3_000_000_000 => self.ever_residual as f64 / ((now - t0) as f64 / 60e9),
            _ => 0.0,
        };
        let (fd_per_command, fd_growth, fd_per_minute) = fd_trend(model, root, now, th);
        Findings {
            abandoned,
            left_behind,
            died_holding: self.died_holding.clone(),
            recovered: self.recovered.clone(),
            pty_per_command,
            fd_per_command,
            fd_growth,
            pty_per_minute,
            fd_per_minute,
        }
    }

    /// Keeps `ev` as the live evidence about `key`, counting it the first time.
    fn mark_residual(&mut self, key: PtyKey, now: u64, ev: Evidence) {
        if self.residual.insert(key, ev).is_none() {
            self.ever_residual += 1;
        }
        self.first_residual_ns.get_or_insert(now);
    }
}

/// The command a PTY opened at `opened_ns` was for: the first session command started at or
/// after it (a PTY is opened just before its command is forked), else the one running then.
fn command_for(model: &Model, root: u32, opened_ns: u64) -> Option<CommandId> {
    model.sessions.get(&root)?.commands.command_for(opened_ns)
}

fn argv_of(model: &Model, c: Option<CommandId>) -> Option<Vec<String>> {
    c.and_then(|c| model.command(c)).map(|c| c.argv.clone())
}

fn command_words(model: &Model, root: u32, c: Option<CommandId>) -> String {
    let Some(c) = c else { return "no command seen".into() };
    let n = model.sessions.get(&root).and_then(|s| s.commands.number(c));
    let argv = model.command(c).map(|c| c.argv.join(" ")).unwrap_or_default();
    let argv = clip(&argv, 60);
    match n {
        Some(n) => format!("`{argv}` (command {n})"),
        None => format!("`{argv}`"),
    }
}

/// `text` cut to at most `max` characters, ending in `...` when cut (a command line in a sentence).
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    format!("{}...", text.chars().take(max.saturating_sub(3)).collect::<String>())
}

fn secs(ns: u64) -> f64 {
    (ns as f64 / 1e8).round() / 10.0
}

#[allow(clippy::too_many_arguments)]
fn abandoned_evidence(model: &Model, root: u32, index: u32, holder: (u32, i32), opened_ns: u64, since: u64, now: u64, later: u64) -> Evidence {
    let cmd = command_for(model, root, opened_ns);
    let comm = model.procs.get(&holder.0).map(|p| p.comm.clone()).unwrap_or_default();
    let held = if holder.1 >= 0 { format!("{comm} (pid {}, fd {})", holder.0, holder.1) } else { format!("pid {}", holder.0) };
    let why = if since == opened_ns {
        format!("PTY {index}: master held by {held}, its slave never handed to a process, for {:.1} s while {later} later command(s) started; opened for {}", secs(now.saturating_sub(since)), command_words(model, root, cmd))
    } else {
        format!("PTY {index}: master held by {held} {:.1} s after the last process holding its slave let go, while {later} later command(s) started; opened for {}", secs(now.saturating_sub(since)), command_words(model, root, cmd))
    };
    Evidence {
        kind: EvidenceKind::AbandonedPty,
        pty: Some(index),
        pid: Some(holder.0),
        fd: (holder.1 >= 0).then_some(holder.1),
        command: argv_of(model, cmd),
        since_s: secs(now.saturating_sub(since)),
        commands_since: later,
        ended: None,
        why,
    }
}

/// Later commands that overtook one started at `start`: started `overtaken_after_s` or more
/// after it, before any command of the session ended, up to `now`. An agent that gives up on a
/// command without stopping it starts the next one with nothing ended; a pool of parallel
/// commands starts its next one when one ends, and a burst starts its commands together.
fn overtakers(model: &Model, root: u32, start: u64, now: u64, th: &Thresholds) -> u64 {
    let Some(s) = model.sessions.get(&root) else { return 0 };
    let first_end = s.command_ends.iter().map(|e| e.ts_ns).filter(|&t| t > start).min().unwrap_or(u64::MAX);
    let from = start.saturating_add((th.overtaken_after_s * 1e9) as u64);
    let to = now.min(first_end);
    if from >= to {
        return 0;
    }
    s.commands.started_between(from.saturating_sub(1), to)
}

/// A PTY in use only by `units` (the commands of its slave's holders other than the master's),
/// judged at `now`: left behind, or None.
#[allow(clippy::too_many_arguments)]
fn left_behind_evidence(
    model: &Model,
    root: u32,
    index: u32,
    holder: (u32, i32),
    units: &[Option<CommandId>],
    slave_pid: Option<u32>,
    now: u64,
    th: &Thresholds,
) -> Option<Evidence> {
    let s = model.sessions.get(&root)?;
    let grace = (th.abandon_grace_s * 1e9) as u64;
    // Every slave holder must belong to one command that is not interactive.
    let first = (*units.first()?)?;
    if !units.iter().all(|u| *u == Some(first)) {
        return None;
    }
    let cmd = model.command(first)?;
    if cmd.interactive || cmd.preexisting || !cmd.top_level || model.work_root_is_multiplexer(root) {
        return None;
    }
    let later = s.commands.started_between(cmd.ts_ns, now);
    let held_by = |h: (u32, i32)| if h.1 >= 0 { format!("pid {} (fd {})", h.0, h.1) } else { format!("pid {}", h.0) };
    let why = match cmd.ended_ns.filter(|&e| e <= now) {
        Some(end) if now.saturating_sub(end) >= grace => format!(
            "PTY {index}: {} ended {:.1} s ago, and what it left running{} still holds the slave",
            command_words(model, root, Some(first)),
            secs(now.saturating_sub(end)),
            slave_pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        ),
        Some(_) => return None,
        None => {
            let overtaken = overtakers(model, root, cmd.ts_ns, now, th);
            // The session went on starting commands long after this one started (a burst's
            // commands start together and are not that).
            let long = s.commands.started_between(cmd.ts_ns.saturating_add(grace), now) >= th.abandon_commands;
            if overtaken >= th.abandon_commands {
                format!(
                    "PTY {index}: {} still runs, given up on: {overtaken} later command(s) were started after it with none ending in between; its PTY is kept by {}",
                    command_words(model, root, Some(first)),
                    held_by(holder)
                )
            } else if long {
                format!(
                    "PTY {index}: {} has run for {:.1} s, and the session still starts commands long after it ({later} so far): left running, its PTY kept by {}",
                    command_words(model, root, Some(first)),
                    secs(now.saturating_sub(cmd.ts_ns)),
                    held_by(holder)
                )
            } else {
                return None;
            }
        }
    };
    Some(Evidence {
        kind: EvidenceKind::LeftBehindPty,
        pty: Some(index),
        pid: Some(holder.0),
        fd: (holder.1 >= 0).then_some(holder.1),
        command: Some(cmd.argv.clone()),
        since_s: secs(now.saturating_sub(cmd.ts_ns)),
        commands_since: later,
        ended: None,
        why,
    })
}

fn median(v: &[usize]) -> f64 {
    let mut v = v.to_vec();
    v.sort_unstable();
    let n = v.len();
    if n == 0 {
        return 0.0;
    }
    if n % 2 == 1 { v[n / 2] as f64 } else { (v[n / 2 - 1] + v[n / 2]) as f64 / 2.0 }
}

/// fd growth of the session's own processes over the window of command ends: (per command,
/// evidence when sustained, per minute when sustained).
fn fd_trend(model: &Model, root: u32, now: u64, th: &Thresholds) -> (Option<f64>, Option<Evidence>, f64) {
    let Some(s) = model.sessions.get(&root) else { return (None, None, 0.0) };
    let ends = &s.command_ends[s.command_ends.len().saturating_sub(th.window_commands)..];
    let n = ends.len();
    if n < th.min_commands.max(6) {
        return (None, None, 0.0);
    }
    let fds: Vec<usize> = ends.iter().map(|e| e.core_fds).collect();
    let head = median(&fds[..5]);
    let tail = median(&fds[n - 5..]);
    let rate = (tail - head) / (n - 5) as f64;
    let rises = fds.windows(2).filter(|w| w[1] > w[0]).count();
    let sustained = rate > th.fd_growth_per_command && rises * 3 >= n - 1;
    if !sustained {
        return (Some(rate), None, 0.0);
    }
    let from = ends[0].ts_ns;
    let minutes = (ends[n - 1].ts_ns.saturating_sub(from)) as f64 / 60e9;
    let per_minute = if minutes > 0.0 { (tail - head) / minutes } else { 0.0 };
    // Which fds: what the session's own processes opened since the window began and still hold.
    let mut kinds: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut example = None;
    let mut tables = BTreeSet::new();
    for pid in &s.core_pids {
        let Some(p) = model.procs.get(pid) else { continue };
        if !tables.insert(p.table) {
            continue;
        }
        let Some(t) = model.tables.get(&p.table) else { continue };
        for (fd, e) in &t.fds {
            if e.from_proc || e.opened_ns < from || e.kind.pty_role() != PtyRole::None {
                continue;
            }
            *kinds.entry(e.kind.as_str()).or_default() += 1;
            if example.is_none() && e.kind != FdKind::Unknown {
                example = Some((p.pid, p.comm.clone(), *fd, e.target.clone(), command_for(model, root, e.opened_ns)));
            }
        }
    }
    let what = kinds.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ");
    let mut why = format!(
        "the session's own processes gained {rate:.2} fds per command over its last {n} commands (it rose at {rises} of them); still open since the window began: {}",
        if what.is_empty() { "none identified".to_string() } else { what }
    );
    if let Some((pid, comm, fd, target, cmd)) = &example {
        why.push_str(&format!("; e.g. {comm} (pid {pid}) fd {fd} {target}, opened during {}", command_words(model, root, *cmd)));
    }
    let ev = Evidence {
        kind: EvidenceKind::FdGrowth,
        pty: None,
        pid: example.as_ref().map(|e| e.0),
        fd: example.as_ref().map(|e| e.2),
        command: example.as_ref().and_then(|e| argv_of(model, e.4)),
        since_s: secs(now.saturating_sub(from)),
        commands_since: n as u64,
        ended: None,
        why,
    };
    (Some(rate), Some(ev), per_minute)
}
