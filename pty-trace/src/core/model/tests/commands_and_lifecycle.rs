//! What counts as a command (see `units`), command ends, and PTY lifecycle facts (see
//! `lifecycle`).

use super::*;

fn commands(t: &T) -> Vec<String> {
    t.m.sessions[&SID].commands.iter().map(|&c| t.m.commands[c].argv.join(" ")).collect()
}

#[test]
fn commands_are_first_execs_of_the_roots_children() {
    let mut t = T::new();
    t.spawn(ROOT, 101, &["/bin/sh", "-c", "ls; exec true"]);
    // The shell's own exec of its last command continues the command.
    t.argv(101, 101, &["/bin/true"]);
    t.exec(101, 101, "/bin/true");
    // What the command starts belongs to it.
    t.spawn(101, 102, &["/bin/ls"]);
    // tmux's utempter helper is not a command.
    t.spawn(ROOT, 103, &["/usr/lib/x86_64-linux-gnu/utempter/utempter", "add", "tmux(1).%0"]);
    t.spawn(ROOT, 104, &["-bash"]);
    assert_eq!(commands(&t), vec!["/bin/sh -c ls; exec true", "-bash"]);
    let units: Vec<Option<CommandId>> = [101, 102, 103, 104].iter().map(|p| t.m.procs[p].unit).collect();
    let c = &t.m.sessions[&SID].commands;
    assert_eq!(units, vec![Some(c[0]), Some(c[0]), None, Some(c[1])]);
    assert!(!t.m.commands[c[0]].interactive);
    assert!(t.m.commands[c[1]].interactive, "a window's login shell");
    let core: Vec<u32> = t.m.sessions[&SID].core_pids.iter().copied().collect();
    assert_eq!(core, vec![ROOT, 103], "the root and its helper are the session's own processes");
}

#[test]
fn a_shims_helpers_are_forgotten_when_the_root_execs_the_real_program() {
    let mut t = T::new();
    t.argv(ROOT, ROOT, &["/root/.pyenv/shims/python3", "agent.py"]);
    t.exec(ROOT, ROOT, "/root/.pyenv/shims/python3");
    t.spawn(ROOT, 101, &["/root/.pyenv/libexec/pyenv-version-name"]);
    t.exit(101);
    assert_eq!(commands(&t).len(), 1, "counted while the shim runs");
    t.argv(ROOT, ROOT, &["/usr/bin/python3", "agent.py"]);
    t.exec(ROOT, ROOT, "/usr/bin/python3");
    assert!(commands(&t).is_empty(), "the shim's helpers were not the session's commands");
    assert!(t.m.sessions[&SID].command_ends.is_empty());
    t.spawn(ROOT, 102, &["/bin/sh", "-c", "ls"]);
    assert_eq!(commands(&t), vec!["/bin/sh -c ls"]);
}

#[test]
fn a_wrapper_root_hands_the_work_to_its_child() {
    let mut t = T::new();
    t.argv(ROOT, ROOT, &["/usr/bin/sudo", "-u", "agent", "node", "agent.js"]);
    t.exec(ROOT, ROOT, "/usr/bin/sudo");
    t.spawn(ROOT, 101, &["/usr/bin/node", "agent.js"]);
    assert!(commands(&t).is_empty());
    assert_eq!(t.m.sessions[&SID].work_root, 101);
    t.spawn(101, 102, &["/bin/bash", "-c", "npm test"]);
    t.spawn(101, 103, &["/bin/bash", "-c", "git status"]);
    assert_eq!(commands(&t), vec!["/bin/bash -c npm test", "/bin/bash -c git status"]);
}

#[test]
fn attach_looks_through_a_wrapper_and_fills_in_command_lines() {
    let mut m = Model::new();
    m.add_session(SID, 1);
    m.add_process(ROOT, 1, SID, "timeout", 1);
    m.add_process(101, ROOT, SID, "node", 1);
    m.add_process(102, 101, SID, "bash", 1);
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    m.look_through_wrappers(SID);
    assert_eq!(m.sessions[&SID].work_root, 101, "timeout is a wrapper with one child: node does the work");
    m.set_preexisting_command(101, &v(&["node", "agent.js"]));
    m.set_preexisting_command(102, &v(&["bash", "-c", "make"]));
    let c101 = m.procs[&101].command.unwrap();
    let c102 = m.procs[&102].command.unwrap();
    assert_eq!(m.commands[c101].argv, v(&["node", "agent.js"]));
    assert!(m.commands[c102].preexisting);
    assert_eq!(m.procs[&101].unit, None, "the work root is the session's own");
    assert_eq!(m.procs[&102].unit, Some(c102), "a command in flight at attach");
    assert!(m.sessions[&SID].commands.is_empty(), "not counted: we did not see it start");
    assert!(!m.sessions[&SID].core_pids.contains(&102));
}

#[test]
fn a_command_end_records_what_the_session_itself_holds() {
    let mut t = T::new();
    t.files(ROOT, &[0, 1, 2], false);
    t.master(ROOT, 3, 5);
    t.spawn(ROOT, 101, &["/bin/sh", "-c", "ls"]);
    t.exit(101);
    // The second command leaves a pipe behind in the root.
    t.spawn(ROOT, 102, &["/bin/sh", "-c", "ls"]);
    t.sys_aux(ROOT, K::Pipe2, 0, &[0x7ffd, 0], [4, 5]);
    t.sys(ROOT, K::Close, 0, &[5]);
    t.exit(102);
    let ends: Vec<usize> = t.m.sessions[&SID].command_ends.iter().map(|e| e.core_fds).collect();
    assert_eq!(ends, vec![3, 4], "PTY ends are not counted here");
    let c = &t.m.sessions[&SID].commands;
    assert!(t.m.commands[c[0]].ended_ns.is_some());
}

#[test]
fn a_released_pty_says_since_when_it_was_orphaned() {
    let mut t = T::new();
    t.master(ROOT, 3, 5);
    let opened = t.e(ROOT, 3).opened_ns;
    t.spawn(ROOT, 101, &["/bin/sh", "-c", "ls"]);
    t.open(101, 0, "/dev/pts/5", O_RDWR);
    assert!(t.m.sessions[&SID].pty_releases.is_empty());
    t.exit(101);
    let child_gone = t.ts;
    assert_eq!(t.m.slave_last_dropped(5), Some(child_gone));
    t.sys(ROOT, K::Close, 0, &[3]);
    let r = &t.m.sessions[&SID].pty_releases;
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].index, r[0].opened_ns, r[0].by_exit), (5, opened, false));
    assert_eq!(r[0].orphaned_since, Some(child_gone));
    assert_eq!(r[0].released_ns, t.ts);
    assert_eq!(t.m.slave_last_dropped(5), None, "the index is free again");
}

#[test]
fn a_pty_released_while_its_slave_is_held_was_never_orphaned() {
    let mut t = T::new();
    t.master(ROOT, 3, 6);
    t.spawn(ROOT, 101, &["/bin/sh"]);
    t.open(101, 0, "/dev/pts/6", O_RDWR);
    t.sys(ROOT, K::Close, 0, &[3]);
    assert_eq!(t.m.sessions[&SID].pty_releases[0].orphaned_since, None);
}

#[test]
fn a_master_never_used_is_orphaned_since_it_was_opened_and_released_by_exit() {
    let mut t = T::new();
    t.spawn(ROOT, 101, &["/usr/bin/node", "agent.js"]);
    t.master(101, 7, 9);
    let opened = t.e(101, 7).opened_ns;
    // An inherited copy keeps the PTY alive: nothing is released until the last one goes.
    t.fork(101, 102, Some(SIGCHLD));
    t.exit(101);
    assert!(t.m.sessions[&SID].pty_releases.is_empty());
    t.exit(102);
    let r = &t.m.sessions[&SID].pty_releases;
    assert_eq!(r.len(), 1);
    assert!(r[0].by_exit);
    assert_eq!(r[0].orphaned_since, Some(opened));
}

#[test]
fn an_orphaned_master_comes_due_after_two_commands_unless_it_is_closed() {
    let mut t = T::new();
    // Careful: the master is closed right after its child exits: never a candidate for long.
    t.master(ROOT, 3, 1);
    t.spawn(ROOT, 101, &["/bin/sh", "-c", "ls"]);
    t.open(101, 0, "/dev/pts/1", O_RDWR);
    t.exit(101);
    assert_eq!(t.m.sessions[&SID].orphan_candidates.len(), 1);
    t.sys(ROOT, K::Close, 0, &[3]);
    assert!(t.m.sessions[&SID].orphan_candidates.is_empty(), "released: nothing to judge");
    // Leaky: kept; due once two more commands started.
    t.master(ROOT, 4, 2);
    t.spawn(ROOT, 102, &["/bin/sh", "-c", "ls"]);
    t.open(102, 0, "/dev/pts/2", O_RDWR);
    t.exit(102);
    t.spawn(ROOT, 103, &["/bin/true"]);
    assert!(!t.m.take_due_orphans(SID, 2, 0, u64::MAX, t.ts));
    t.spawn(ROOT, 104, &["/bin/true"]);
    assert!(t.m.take_due_orphans(SID, 2, 0, u64::MAX, t.ts));
    assert!(!t.m.take_due_orphans(SID, 2, 0, u64::MAX, t.ts), "taken once");
    // Or once the grace period passed.
    t.master(ROOT, 5, 3);
    t.open(ROOT, 6, "/dev/pts/3", O_RDWR);
    t.sys(ROOT, K::Close, 0, &[6]);
    let dropped = t.ts;
    assert!(!t.m.take_due_orphans(SID, 2, 0, 1000, dropped + 999));
    assert!(t.m.take_due_orphans(SID, 2, 0, 1000, dropped + 1000));
}
