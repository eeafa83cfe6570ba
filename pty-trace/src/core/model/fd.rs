//! What one open file descriptor is: its kind, target, close-on-exec flag and provenance, and
//! how a path or a `/proc/PID/fd` link target is classified.
//!
//! Pure: no I/O. The same classification is used for kernel events (paths as the program gave
//! them) and for ground truth (link targets read from /proc), so the two can be compared.

use serde::{Deserialize, Serialize};

/// The kinds pty-trace tells apart. PTY roles are what the counts and leak scores depend on;
/// the rest is shown to people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum FdKind {
    File,
    #[serde(rename = "dir")]
    Directory,
    Pipe,
    Socket,
    PtyMaster,
    PtySlave,
    /// Other character device (`/dev/null`, `/dev/tty`, ...).
    #[serde(rename = "chardev")]
    CharDevice,
    /// `anon_inode:[eventfd]`, epoll, timerfd, signalfd, pidfd, inotify, io_uring, bpf, ...
    AnonInode,
    /// `memfd_create`/`memfd_secret` files.
    Memfd,
    /// Known to exist, kind not known yet (e.g. `dup` of an fd opened before tracing).
    Unknown,
}

impl FdKind {
    pub fn as_str(self) -> &'static str {
        match self {
            FdKind::File => "file",
            FdKind::Directory => "dir",
            FdKind::Pipe => "pipe",
            FdKind::Socket => "socket",
            FdKind::PtyMaster => "pty_master",
            FdKind::PtySlave => "pty_slave",
            FdKind::CharDevice => "chardev",
            FdKind::AnonInode => "anon_inode",
            FdKind::Memfd => "memfd",
            FdKind::Unknown => "unknown",
        }
    }
}

/// The PTY role of an fd: the only part of its kind that changes counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PtyRole {
    None,
    Master,
    Slave,
}

impl FdKind {
    pub fn pty_role(self) -> PtyRole {
        match self {
            FdKind::PtyMaster => PtyRole::Master,
            FdKind::PtySlave => PtyRole::Slave,
            _ => PtyRole::None,
        }
    }
}

/// Id of a command (an exec) in the model's command list.
pub type CommandId = usize;

/// One open fd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FdEntry {
    pub kind: FdKind,
    /// Path as opened, `/proc`-style link target (`pipe:[123]`, `/dev/pts/4`), or a label.
    pub target: String,
    /// The `N` of `/dev/pts/N` for PTY masters and slaves, when known.
    pub pty_index: Option<u32>,
    /// The devpts instance of a PTY end (`st_dev`), when known: indexes repeat across
    /// instances (every container mounts its own).
    pub pty_devpts: Option<crate::core::machine::DevId>,
    pub cloexec: bool,
    /// Monotonic ns when it was opened (or first seen, for fds found in /proc).
    pub opened_ns: u64,
    /// Process that opened it (the fd may have been inherited since).
    pub opener_pid: u32,
    /// Command (exec) that was running in the opener when it was opened.
    pub command: Option<CommandId>,
    /// True when this fd was found in /proc rather than seen being created.
    pub from_proc: bool,
}

impl FdEntry {
    pub fn new(kind: FdKind, target: impl Into<String>, cloexec: bool) -> Self {
        FdEntry {
            kind,
            target: target.into(),
            pty_index: None,
            pty_devpts: None,
            cloexec,
            opened_ns: 0,
            opener_pid: 0,
            command: None,
            from_proc: false,
        }
    }
}

/// Classification of a path given to `open`: the kind and, for `/dev/pts/N`, the index.
/// Relative paths are classified by their last components (`pts/3`, `ptmx`) because the
/// directory they are relative to is not known here; reconciliation repairs the rare mistake.
pub fn classify_open_path(path: &str, directory: bool) -> (FdKind, Option<u32>) {
    if let Some(idx) = pts_index(path) {
        return (FdKind::PtySlave, Some(idx));
    }
    if path == "/dev/ptmx" || path == "/dev/pts/ptmx" || path == "ptmx" || path.ends_with("/ptmx")
    {
        return (FdKind::PtyMaster, None);
    }
    if directory {
        return (FdKind::Directory, None);
    }
    if path.starts_with("/dev/") {
        return (FdKind::CharDevice, None);
    }
    (FdKind::File, None)
}

/// The `N` of a path ending in `pts/N`.
pub fn pts_index(path: &str) -> Option<u32> {
    let rest = path.strip_prefix("/dev/pts/").or_else(|| {
        let i = path.rfind("pts/")?;
        (i == 0 || path.as_bytes()[i - 1] == b'/').then(|| &path[i + 4..])
    })?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) || rest.len() > 9 {
        return None;
    }
    rest.parse().ok()
}

/// Classification of a `/proc/PID/fd/N` link target (ground truth). `tty_index` is the
/// `tty-index:` line of `/proc/PID/fdinfo/N` (present for PTY masters).
pub fn classify_link_target(target: &str, tty_index: Option<u32>) -> (FdKind, Option<u32>) {
    if target == "/dev/ptmx" || target == "/dev/pts/ptmx" {
        return (FdKind::PtyMaster, tty_index);
    }
    if let Some(rest) = target.strip_prefix("/dev/pts/") {
        if let Ok(idx) = rest.parse() {
            return (FdKind::PtySlave, Some(idx));
        }
        // The slave of a PTY whose master was closed: still an open slave fd, but of a dead
        // PTY whose index may already belong to a new one, so it gets no index.
        if rest.strip_suffix(" (deleted)").is_some_and(|n| n.parse::<u32>().is_ok()) {
            return (FdKind::PtySlave, None);
        }
    }
    let kind = if target.starts_with("pipe:") {
        FdKind::Pipe
    } else if target.starts_with("socket:") {
        FdKind::Socket
    } else if target.starts_with("anon_inode:") {
        FdKind::AnonInode
    } else if target.starts_with("/memfd:") || target.starts_with("/secretmem") {
        FdKind::Memfd
    } else if target.starts_with("/dev/") {
        FdKind::CharDevice
    } else {
        FdKind::File
    };
    (kind, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_paths() {
        assert_eq!(classify_open_path("/dev/ptmx", false), (FdKind::PtyMaster, None));
        assert_eq!(classify_open_path("/dev/pts/ptmx", false), (FdKind::PtyMaster, None));
        assert_eq!(classify_open_path("/dev/pts/17", false), (FdKind::PtySlave, Some(17)));
        assert_eq!(classify_open_path("pts/3", false), (FdKind::PtySlave, Some(3)));
        assert_eq!(classify_open_path("/dev/pts/x1", false), (FdKind::CharDevice, None));
        assert_eq!(classify_open_path("/dev/null", false), (FdKind::CharDevice, None));
        assert_eq!(classify_open_path("/dev/tty", false), (FdKind::CharDevice, None));
        assert_eq!(classify_open_path("/etc", true), (FdKind::Directory, None));
        assert_eq!(classify_open_path("notpts/3", false), (FdKind::File, None));
        assert_eq!(classify_open_path("a.txt", false), (FdKind::File, None));
    }

    #[test]
    fn json_names_match_as_str() {
        for k in [FdKind::File, FdKind::Directory, FdKind::Pipe, FdKind::Socket, FdKind::PtyMaster, FdKind::PtySlave, FdKind::CharDevice, FdKind::AnonInode, FdKind::Memfd, FdKind::Unknown] {
            assert_eq!(serde_json::to_value(k).unwrap(), serde_json::Value::String(k.as_str().into()));
        }
    }

    #[test]
    fn link_targets() {
        assert_eq!(classify_link_target("/dev/ptmx", Some(4)), (FdKind::PtyMaster, Some(4)));
        assert_eq!(classify_link_target("/dev/pts/4", None), (FdKind::PtySlave, Some(4)));
        assert_eq!(classify_link_target("/dev/pts/4 (deleted)", None), (FdKind::PtySlave, None));
        assert_eq!(classify_link_target("pipe:[1234]", None).0, FdKind::Pipe);
        assert_eq!(classify_link_target("socket:[1]", None).0, FdKind::Socket);
        assert_eq!(classify_link_target("anon_inode:[eventfd]", None).0, FdKind::AnonInode);
        assert_eq!(classify_link_target("/memfd:x (deleted)", None).0, FdKind::Memfd);
        assert_eq!(classify_link_target("/dev/null", None).0, FdKind::CharDevice);
        assert_eq!(classify_link_target("/home/a b", None).0, FdKind::File);
    }
}
