//! What the model keeps of past commands, and how that stays bounded over an hours-long
//! session: the command records ([`CommandLog`]), each session's timeline of command starts
//! ([`Timeline`]), and [`Model::prune`], which forgets what nothing can ask about any more.
//!
//! Every exec makes a command record and every session command a timeline entry, so both would
//! grow with every exec. What reads them:
//! - a record, by its id, from what refers to it: a live process (`command`, `unit`), a live fd
//!   (`FdEntry::command`), a PTY release the evidence has not judged yet (`command`,
//!   `slave_units`), and the command a held PTY master, such a release or a recent fd was opened
//!   for (`Timeline::command_for`, named in the evidence);
//! - the timeline, to count the commands started since a moment (`started_between`), to number
//!   a command (`number`) and to find the command a PTY was opened for. The moments counted from
//!   are never older than the oldest of: the opening of a held PTY master nothing else uses (it
//!   may be abandoned), the orphaning of a release not judged yet, and the start of a command a
//!   live process or such a release's slave holder belongs to.
//!
//! `prune` keeps the records referred to and the latest `RECENT_COMMANDS` of each session, and
//! the timeline from that horizon on (at most `MAX_TIMELINE` entries), plus an anchor for each
//! forgotten entry still named as the command a PTY was opened for. A PTY left unused for longer
//! than `MAX_TIMELINE` commands makes its "later commands" count a lower bound, counted in
//! `Stats::timeline_evicted`. What is kept is then bounded by what is alive (processes, fds,
//! PTYs), by the releases between two snapshots and by `MAX_COMMAND_ENDS`. The model prunes
//! itself as records pile up, so the cost is amortized over the execs.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use super::{Command, CommandId, FdKind, Model, TableId, fd::PtyRole};

/// The latest session commands whose records and timeline entries are kept whatever refers to
/// them.
pub const RECENT_COMMANDS: usize = 64;
/// Most timeline entries kept per session (16 bytes each).
pub const MAX_TIMELINE: usize = 16_384;
/// Command records below which the model does not prune.
const PRUNE_MIN: usize = 1024;

/// The command records by id. Ids are given in exec order and never reused; records leave when
/// nothing refers to them (`Model::prune`).
#[derive(Clone, Debug, Default)]
pub struct CommandLog {
    by_id: BTreeMap<CommandId, Command>,
    next: CommandId,
}

impl CommandLog {
    /// The id the next record gets.
    pub fn next_id(&self) -> CommandId {
        self.next
    }

    pub(crate) fn push(&mut self, c: Command) {
        debug_assert_eq!(c.id, self.next);
        self.next = c.id + 1;
        self.by_id.insert(c.id, c);
    }

    pub fn get(&self, id: CommandId) -> Option<&Command> {
        self.by_id.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: CommandId) -> Option<&mut Command> {
        self.by_id.get_mut(&id)
    }

    /// Records kept now.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Records ever made (the execs seen, and the commands read from /proc at attach).
    pub fn total(&self) -> usize {
        self.next
    }

    /// The kept records, in id (exec) order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Command> {
        self.by_id.values()
    }

    pub fn last(&self) -> Option<&Command> {
        self.by_id.values().next_back()
    }

    fn retain(&mut self, keep: &HashSet<CommandId>) {
        self.by_id.retain(|id, _| keep.contains(id));
    }
}

impl std::ops::Index<CommandId> for CommandLog {
    type Output = Command;
    fn index(&self, id: CommandId) -> &Command {
        self.by_id.get(&id).unwrap_or_else(|| panic!("command {id} is not kept (see model::history)"))
    }
}

/// A session's commands in start order: their ids and start times, the oldest ones forgotten
/// once nothing can ask about them (see the module doc). Counts and numbers are over all the
/// session's commands, forgotten ones included.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    ids: VecDeque<CommandId>,
    starts: VecDeque<u64>,
    /// Entries forgotten from the front.
    dropped: usize,
    /// The latest start among them.
    dropped_until: u64,
    /// Forgotten entries still named as the command a PTY was opened for: (start, id, number),
    /// by start.
    anchors: Vec<(u64, CommandId, usize)>,
}

impl Timeline {
    /// Commands the session started (forgotten ones included).
    pub fn len(&self) -> usize {
        self.dropped + self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries kept now.
    pub fn kept(&self) -> usize {
        self.ids.len()
    }

    /// The kept commands, oldest first.
    pub fn iter(&self) -> std::collections::vec_deque::Iter<'_, CommandId> {
        self.ids.iter()
    }

    pub fn last(&self) -> Option<&CommandId> {
        self.ids.back()
    }

    /// When the latest command started.
    pub fn last_start(&self) -> Option<u64> {
        self.starts.back().copied()
    }

    pub(crate) fn push(&mut self, id: CommandId, ts_ns: u64) {
        self.ids.push_back(id);
        self.starts.push_back(ts_ns);
    }

    /// Keeps the kept commands `keep` says yes to (the others were never the session's).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(CommandId) -> bool) {
        let (ids, starts): (VecDeque<_>, VecDeque<_>) = self.ids.iter().zip(&self.starts).filter(|(id, _)| keep(**id)).unzip();
        (self.ids, self.starts) = (ids, starts);
    }

    /// Commands started at or before `ts`: exact for any `ts` at or after the forgotten ones.
    fn started_by(&self, ts: u64) -> usize {
        self.dropped + self.starts.partition_point(|&t| t <= ts)
    }

    /// Commands whose start is in `(from, to]` (a lower bound when `from` is older than the
    /// forgotten entries, which `Model::prune` avoids while it can; see the module doc).
    pub fn started_between(&self, from: u64, to: u64) -> u64 {
        self.started_by(to).saturating_sub(self.started_by(from.max(self.dropped_until))) as u64
    }

    /// The command a PTY (or fd) opened at `opened_ns` was for: the first started at or after
    /// it (a PTY is opened just before its command is forked), else the latest one.
    pub fn command_for(&self, opened_ns: u64) -> Option<CommandId> {
        self.entry_for(opened_ns).map(|e| e.1)
    }

    /// `command_for` as (start, id, number).
    fn entry_for(&self, opened_ns: u64) -> Option<(u64, CommandId, usize)> {
        let i = self.starts.partition_point(|&t| t < opened_ns);
        if i == 0
            && self.dropped > 0
            && opened_ns <= self.dropped_until
            && let Some(a) = self.anchors.iter().find(|a| a.0 >= opened_ns)
        {
            // The answer is among the forgotten entries: `prune` anchored it.
            return Some(*a);
        }
        let i = if i < self.ids.len() { i } else { self.ids.len().checked_sub(1)? };
        Some((self.starts[i], self.ids[i], self.dropped + i + 1))
    }

    /// The number of command `id` in the session (from 1), while it is kept or anchored.
    pub fn number(&self, id: CommandId) -> Option<usize> {
        // Commands are in exec order, and so in id order.
        match self.ids.binary_search(&id) {
            Ok(i) => Some(self.dropped + i + 1),
            Err(_) => self.anchors.iter().find(|a| a.1 == id).map(|a| a.2),
        }
    }

    /// Forgets the entries started before `horizon`, keeping the latest `RECENT_COMMANDS`, and
    /// any beyond `MAX_TIMELINE`; anchors the answers of `command_for` for `opened` that are
    /// forgotten. Returns how many entries still counted from were forgotten.
    fn trim(&mut self, horizon: u64, opened: &[u64]) -> u64 {
        let mut answers: Vec<(u64, CommandId, usize)> = opened.iter().filter_map(|&ts| self.entry_for(ts)).collect();
        let mut evicted = 0;
        while self.ids.len() > RECENT_COMMANDS && (self.starts[0] < horizon || self.ids.len() > MAX_TIMELINE) {
            if self.starts[0] >= horizon {
                evicted += 1;
            }
            self.ids.pop_front();
            let t = self.starts.pop_front().expect("as many starts as ids");
            self.dropped += 1;
            self.dropped_until = self.dropped_until.max(t);
        }
        answers.retain(|a| a.2 <= self.dropped);
        answers.sort_unstable();
        answers.dedup();
        self.anchors = answers;
        evicted
    }

}

impl std::ops::Index<usize> for Timeline {
    type Output = CommandId;
    /// The `i`-th command of the session (from 0), while it is kept.
    fn index(&self, i: usize) -> &CommandId {
        i.checked_sub(self.dropped)
            .and_then(|k| self.ids.get(k))
            .unwrap_or_else(|| panic!("command {i} of the session is not kept (see model::history)"))
    }
}

impl Model {
    /// Prunes once the command records have doubled since the last time (at least
    /// `PRUNE_MIN`), or a timeline has grown a quarter past `MAX_TIMELINE`.
    pub(crate) fn prune_if_due(&mut self) {
        let timeline_full = || self.sessions.values().any(|s| s.commands.kept() > MAX_TIMELINE + MAX_TIMELINE / 4);
        if self.prune_at != usize::MAX && (self.commands.len() >= self.prune_at.max(PRUNE_MIN) || timeline_full()) {
            self.prune();
            self.prune_at = 2 * self.commands.len();
        }
    }

    /// Never prunes by itself (the reference of the tests that compare pruned and unpruned
    /// models).
    #[cfg(test)]
    pub(crate) fn never_prune(&mut self) {
        self.prune_at = usize::MAX;
    }

    /// Forgets the command records and timeline entries nothing can ask about any more (see
    /// the module doc).
    pub fn prune(&mut self) {
        let mut keep: HashSet<CommandId> = HashSet::new();
        for p in self.procs.values() {
            keep.extend(p.command);
            keep.extend(p.unit);
        }
        // PTY index -> tables holding its master, tables holding its slave.
        let mut holders: HashMap<u32, (HashSet<TableId>, HashSet<TableId>)> = HashMap::new();
        for (&id, t) in &self.tables {
            for e in t.fds.values() {
                keep.extend(e.command);
                if let Some(i) = e.pty_index {
                    match e.kind.pty_role() {
                        PtyRole::Master => {
                            holders.entry(i).or_default().0.insert(id);
                        }
                        PtyRole::Slave => {
                            holders.entry(i).or_default().1.insert(id);
                        }
                        PtyRole::None => {}
                    }
                }
            }
        }
        let in_use = |index: Option<u32>| {
            index.and_then(|i| holders.get(&i)).is_some_and(|(masters, slaves)| slaves.iter().any(|t| !masters.contains(t)))
        };
        let top_level_start = |c: CommandId| self.commands.get(c).map_or(Some(0), |c| c.top_level.then_some(c.ts_ns));
        let roots: Vec<u32> = self.sessions.keys().copied().collect();
        for root in roots {
            let s = &self.sessions[&root];
            let window_start = s.command_ends.first().map_or(u64::MAX, |e| e.ts_ns);
            let mut horizon = u64::MAX;
            let mut opened = Vec::new();
            // Releases the evidence has not judged yet.
            let unread = s.pty_releases_total.saturating_sub(s.pty_releases_read.get()) as usize;
            for r in s.pty_releases.iter().skip(s.pty_releases.len().saturating_sub(unread)) {
                keep.extend(r.command);
                keep.extend(r.slave_units.iter().flatten());
                horizon = horizon.min(r.orphaned_since.unwrap_or(u64::MAX));
                horizon = r.slave_units.iter().flatten().filter_map(|&u| top_level_start(u)).fold(horizon, u64::min);
                opened.push(r.opened_ns);
            }
            let mut tables = HashSet::new();
            for p in self.procs.values().filter(|p| p.session == root) {
                horizon = p.unit.and_then(top_level_start).map_or(horizon, |t| horizon.min(t));
                if !tables.insert(p.table) {
                    continue;
                }
                for e in self.tables.get(&p.table).into_iter().flat_map(|t| t.fds.values()) {
                    if e.kind == FdKind::PtyMaster {
                        if !in_use(e.pty_index) {
                            // Orphaned or idle: its evidence counts the commands since then.
                            horizon = horizon.min(e.opened_ns);
                        }
                        opened.push(e.opened_ns);
                    } else if e.opened_ns >= window_start {
                        // The fd growth evidence may name the command it was opened during.
                        opened.push(e.opened_ns);
                    }
                }
            }
            let s = self.sessions.get_mut(&root).expect("a session of the model");
            // `overtakers` counts from a moment 1 ns before a start.
            self.stats.timeline_evicted += s.commands.trim(horizon.saturating_sub(1), &opened);
            keep.extend(opened.iter().filter_map(|&ts| s.commands.command_for(ts)));
            keep.extend(s.commands.iter().rev().take(RECENT_COMMANDS));
        }
        self.commands.retain(&keep);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeline of commands 10, 11, ... started at 100, 200, ...
    fn timeline(n: usize) -> Timeline {
        let mut t = Timeline::default();
        for i in 0..n {
            t.push(10 + i, 100 * (i as u64 + 1));
        }
        t
    }

    #[test]
    fn counts_numbers_and_the_command_a_pty_was_opened_for() {
        let t = timeline(5);
        assert_eq!((t.len(), t.kept(), t[0], t[4], t.last_start()), (5, 5, 10, 14, Some(500)));
        assert_eq!(t.started_between(100, 300), 2, "(100, 300]: the starts at 200 and 300");
        assert_eq!(t.started_between(0, 1000), 5);
        assert_eq!(t.started_between(300, 300), 0);
        assert_eq!(t.command_for(150), Some(11), "the first started at or after it");
        assert_eq!(t.command_for(200), Some(11));
        assert_eq!(t.command_for(900), Some(14), "none after it: the latest");
        assert_eq!((t.number(10), t.number(14), t.number(99)), (Some(1), Some(5), None));
    }

    #[test]
    fn trimming_keeps_counts_exact_from_the_horizon_and_anchors_what_pty_was_for() {
        let mut t = timeline(RECENT_COMMANDS + 100);
        let before = t.clone();
        // A PTY opened at 150 (for command 11, number 2) still names its command.
        let evicted = t.trim(5_000, &[150]);
        assert_eq!(evicted, 0);
        assert_eq!(t.len(), before.len(), "forgotten commands still count");
        assert!(t.kept() < before.kept() && t.kept() >= RECENT_COMMANDS);
        assert_eq!(t.iter().next().map(|&id| t.number(id)), Some(Some(t.dropped + 1)));
        for (from, to) in [(5_000, 9_000), (5_000, 100_000), (7_777, 12_345)] {
            assert_eq!(t.started_between(from, to), before.started_between(from, to), "({from}, {to}]");
        }
        assert_eq!((t.command_for(150), t.number(11)), (Some(11), Some(2)), "anchored");
        assert_eq!(t.command_for(10_050), before.command_for(10_050));
        assert_eq!(t[t.len() - 1], before[before.len() - 1]);
        // Older than the horizon: a lower bound.
        assert!(t.started_between(0, 100_000) <= before.started_between(0, 100_000));
        // Past the cap, entries still counted from are forgotten too, and counted.
        let mut big = timeline(MAX_TIMELINE + 10);
        assert_eq!(big.trim(0, &[]), 10);
        assert_eq!((big.kept(), big.len()), (MAX_TIMELINE, MAX_TIMELINE + 10));
    }

    #[test]
    #[should_panic(expected = "is not kept")]
    fn a_forgotten_command_is_not_indexed() {
        let mut t = timeline(RECENT_COMMANDS + 10);
        t.trim(u64::MAX, &[]);
        let _ = t[0];
    }
}
