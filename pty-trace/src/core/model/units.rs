//! What counts as a command: the unit of work of a session, for "growth per command".
//!
//! The rule (docs/health.md has it for users):
//! - A command is the first exec of a process whose parent is the session's *work root*: an
//!   agent's tool call, a line typed in a shell, a multiplexer window's shell.
//! - The work root is the session root, looked through wrappers: a root running a known
//!   wrapper program (`sudo`, `env`, `timeout`, `npx`, `uv run`, ...) hands the role to its
//!   child that does the work.
//! - Not commands: the root's own execs (they are the session itself); a further exec of a
//!   process that already exec'd (`sh -c 'exec ls'`, a shell exec'ing its last command);
//!   helper programs (`utempter`); and what a root ran before it exec'd again (a
//!   version-manager shim's `pyenv-version-name` and friends, run by the shim on its way to
//!   the real program).
//! - The commands of a terminal multiplexer or server (`tmux`, `screen`, `sshd`, ...) are its
//!   windows and logins: never "left behind", whatever they run.
//! - A command is *interactive* when it is a shell with no script and no `-c`: a window's or
//!   a login's shell, which waits at its prompt by design. A non-interactive command is
//!   expected to end.

/// Programs that only help their parent (by basename): never commands.
pub const HELPER_PROGRAMS: &[&str] = &["utempter", "utmp-helper"];

/// Programs that only start another program and wait for it (by basename).
pub const WRAPPER_PROGRAMS: &[&str] = &[
    "sudo", "su", "doas", "env", "timeout", "nice", "ionice", "nohup", "setsid", "stdbuf", "chrt", "taskset",
    "unbuffer", "flock", "time", "npm", "npx", "pnpm", "yarn", "uv", "uvx", "poetry", "pipenv", "dumb-init", "tini",
    "catatonit",
];

/// Terminal multiplexers and servers: each of their commands is a window or a login, long-lived
/// by design, so never left behind (an abandoned PTY still counts). By basename or comm.
pub const MULTIPLEXERS: &[&str] =
    &["tmux", "tmux: server", "screen", "SCREEN", "zellij", "dtach", "abduco", "sshd", "mosh-server", "tmate"];

pub fn is_multiplexer(name: &str) -> bool {
    MULTIPLEXERS.contains(&basename(name))
}

/// Shells, by basename.
pub const SHELLS: &[&str] = &["sh", "bash", "dash", "zsh", "ksh", "mksh", "fish", "tcsh", "csh", "ash", "busybox"];

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

pub fn is_helper(filename: &str) -> bool {
    HELPER_PROGRAMS.contains(&basename(filename))
}

pub fn is_wrapper(filename: &str) -> bool {
    WRAPPER_PROGRAMS.contains(&basename(filename))
}

/// A shell with no script and no `-c`: it runs what is typed at its prompt.
pub fn is_interactive(filename: &str, argv: &[String]) -> bool {
    let name = basename(filename);
    let argv0 = argv.first().map(|a| basename(a.trim_start_matches('-'))).unwrap_or(name);
    if !SHELLS.contains(&name) && !SHELLS.contains(&argv0) {
        return false;
    }
    // Options only (`-l`, `-i`, `--login`, `-bash` as argv[0]); `-c` or a script file means a
    // program that is expected to end. `-s` reads commands from stdin: interactive enough.
    argv.iter().skip(1).all(|a| a.starts_with('-') && a != "-c" && !(a.starts_with('-') && !a.starts_with("--") && a.contains('c')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn shells_without_a_script_are_interactive() {
        assert!(is_interactive("/bin/bash", &v(&["-bash"])));
        assert!(is_interactive("/usr/bin/bash", &v(&["bash"])));
        assert!(is_interactive("/bin/bash", &v(&["bash", "-l"])));
        assert!(is_interactive("/bin/zsh", &v(&["zsh", "-i", "--login"])));
        assert!(!is_interactive("/bin/bash", &v(&["bash", "-c", "read -p y/N"])));
        assert!(!is_interactive("/bin/bash", &v(&["bash", "-lc", "ls"])));
        assert!(!is_interactive("/bin/sh", &v(&["sh", "script.sh"])));
        assert!(!is_interactive("/usr/bin/python3", &v(&["python3"])));
    }

    #[test]
    fn helpers_and_wrappers_by_basename() {
        assert!(is_helper("/usr/lib/x86_64-linux-gnu/utempter/utempter"));
        assert!(!is_helper("/usr/bin/bash"));
        assert!(is_wrapper("/usr/bin/sudo"));
        assert!(is_wrapper("/usr/bin/timeout"));
        assert!(!is_wrapper("/usr/bin/node"));
    }
}
