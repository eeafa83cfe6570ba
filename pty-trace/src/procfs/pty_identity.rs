//! Which devpts instance a PTY end belongs to, asked from outside the process that holds it.
//!
//! - A slave: `stat` of `/proc/PID/fd/N` gives the slave's own inode, on its devpts instance
//!   (`st_dev`) with the index in `st_rdev` (`136:N`).
//! - A master: its file is the `ptmx` node it was opened through (`/dev/ptmx` on devtmpfs, or
//!   `/dev/pts/ptmx`), which says nothing about the instance, and fdinfo's `tty-index` has no
//!   instance either. So pty-trace takes a copy of the master (`pidfd_getfd`, Linux 5.6) and
//!   asks the kernel for its peer with `TIOCGPTPEER` opened `O_PATH`: the kernel resolves the
//!   slave's dentry on the master's own instance, and `O_PATH` means the tty is not opened
//!   (no open count, no hangup, no controlling terminal; a locked slave works too). `fstat` of
//!   that path fd gives the instance. Both copies are closed at once.
//! - The devpts mounts (for names, `max=` and the host's instance): each mount namespace's
//!   mountinfo, read once per namespace.

use std::{
    fs,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

use crate::core::machine::{
    DevId, PtyEnd,
    pty_key::slave_index,
};

/// What `statx` says of a file: its filesystem (`st_dev`), the device it is (`st_rdev`), and
/// its type bits.
#[derive(Clone, Copy, Debug)]
pub struct Stat {
    pub dev: DevId,
    pub rdev: DevId,
    pub mode: u32,
}

impl Stat {
    fn is_char_device(&self, dev: DevId) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFCHR && self.rdev == dev
    }
}

/// `statx` of `path` relative to `dirfd` (or of `dirfd` itself with an empty path), with
/// `AT_STATX_DONT_SYNC`: a filesystem is not asked to refresh what it said, so a file on a
/// FUSE mount whose link text reads `/dev/pts/N` (another user's namespace can mount one
/// there) cannot make root wait on its daemon.
pub fn stat_nosync(dirfd: i32, path: &std::ffi::CStr) -> Option<Stat> {
    let flags = libc::AT_STATX_DONT_SYNC | if path.is_empty() { libc::AT_EMPTY_PATH } else { 0 };
    // SAFETY: statx into a buffer we own, with a NUL-terminated path.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statx(dirfd, path.as_ptr(), flags, libc::STATX_TYPE, &mut st) };
    (rc == 0).then(|| Stat {
        dev: DevId { major: st.stx_dev_major, minor: st.stx_dev_minor },
        rdev: DevId { major: st.stx_rdev_major, minor: st.stx_rdev_minor },
        mode: u32::from(st.stx_mode),
    })
}

/// [`stat_nosync`] of `/proc/PID/fd/N`: the open file itself (a magic link, not a path
/// someone could plant).
pub fn stat_fd_of(pid: u32, fd: i32) -> Option<Stat> {
    let path = std::ffi::CString::new(format!("/proc/{pid}/fd/{fd}")).ok()?;
    stat_nosync(libc::AT_FDCWD, &path)
}

/// A slave's (instance, index), from the fd's own inode; `None` when it is not a devpts slave
/// (or is gone).
pub fn slave_end(pid: u32, fd: i32) -> Option<PtyEnd> {
    let st = stat_fd_of(pid, fd)?;
    if st.mode & libc::S_IFMT != libc::S_IFCHR {
        return None;
    }
    let index = slave_index(st.rdev)?;
    Some(PtyEnd { devpts: Some(st.dev), index: Some(index) })
}

/// `/dev/ptmx` and every instance's `pts/ptmx`.
const PTMX: DevId = DevId { major: 5, minor: 2 };

/// A pidfd for `pid`, for [`master_devpts`].
pub fn pidfd(pid: u32) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// The devpts instance of the PTY master at `fd` of the process behind `pidfd`.
pub fn master_devpts(pidfd: &OwnedFd, fd: i32) -> io::Result<DevId> {
    // SAFETY: pidfd_getfd(pidfd, targetfd, flags) returns a new fd (close-on-exec) or -1.
    let copy = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0) };
    if copy < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    let copy = unsafe { OwnedFd::from_raw_fd(copy as i32) };
    // The fd may have been replaced since its fdinfo was read: only a ptmx gets the ioctl (a
    // character device's file operations are its driver's, whatever filesystem holds the node).
    if !stat_nosync(copy.as_raw_fd(), c"").is_some_and(|st| st.is_char_device(PTMX)) {
        return Err(io::Error::from_raw_os_error(libc::ENOTTY));
    }
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd or -1; on anything
    // but a PTY master it fails (ENOTTY, EIO) and nothing is opened.
    let peer = unsafe { libc::ioctl(copy.as_raw_fd(), libc::TIOCGPTPEER, libc::O_PATH | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if peer < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a new fd we own.
    let peer = unsafe { OwnedFd::from_raw_fd(peer) };
    match stat_nosync(peer.as_raw_fd(), c"") {
        Some(st) if slave_index(st.rdev).is_some() => Ok(st.dev),
        Some(_) => Err(io::Error::from_raw_os_error(libc::ENOTTY)),
        None => Err(io::Error::last_os_error()),
    }
}

/// How long a master's instance is trusted without asking again (a pid and fd number reused
/// for a master of another instance is the only way it could change).
const MASTER_CACHE_NS: u64 = 30_000_000_000;

/// (pid, fd, tty-index) -> (instance, when asked).
type MasterCache = std::collections::HashMap<(u32, i32, u32), (DevId, u64)>;

thread_local! {
    /// The masters' instances, for the session's repeated scans.
    static MASTERS: std::cell::RefCell<MasterCache> = Default::default();
}

/// The instance of a PTY end of `pid` at `fd` (`target` its link, `tty_index` its fdinfo's);
/// `None` for anything else, or when the kernel would not say (no `pidfd_getfd`: Linux < 5.6).
pub fn end_devpts(pid: u32, fd: i32, target: &str, tty_index: Option<u32>) -> Option<DevId> {
    if target.starts_with("/dev/pts/") && !target.ends_with("/ptmx") {
        return slave_end(pid, fd).and_then(|e| e.devpts);
    }
    let index = tty_index?;
    let now = crate::clock::monotonic_ns();
    if let Some(d) = MASTERS.with(|m| m.borrow().get(&(pid, fd, index)).filter(|(_, at)| now.saturating_sub(*at) < MASTER_CACHE_NS).map(|(d, _)| *d)) {
        return Some(d);
    }
    let dev = master_devpts(&pidfd(pid).ok()?, fd).ok()?;
    MASTERS.with(|m| {
        let mut m = m.borrow_mut();
        if m.len() > 65_536 {
            m.retain(|_, (_, at)| now.saturating_sub(*at) < MASTER_CACHE_NS);
        }
        m.insert((pid, fd, index), (dev, now));
    });
    Some(dev)
}

thread_local! {
    /// Mount namespace inode -> the instance at its /dev/pts.
    static NS_DEV_PTS: std::cell::RefCell<std::collections::HashMap<u64, Option<DevId>>> = Default::default();
}

/// The devpts instance mounted at `/dev/pts` in `pid`'s mount namespace (read once per
/// namespace): where its `/dev/ptmx` and `/dev/pts/N` opens land.
pub fn dev_pts_of(pid: u32) -> Option<DevId> {
    let ns = mnt_ns(pid)?;
    if let Some(d) = NS_DEV_PTS.with(|m| m.borrow().get(&ns).copied()) {
        return d;
    }
    let d = devpts_mounts(pid).ok().and_then(|m| dev_pts(&m));
    NS_DEV_PTS.with(|m| m.borrow_mut().insert(ns, d));
    d
}

/// The inode of `pid`'s mount namespace (`/proc/PID/ns/mnt` reads `mnt:[INODE]`).
pub fn mnt_ns(pid: u32) -> Option<u64> {
    let link = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()?;
    link.to_str()?.strip_prefix("mnt:[")?.strip_suffix(']')?.parse().ok()
}

/// Whether an opened path is a PTY end's (`/dev/ptmx`, `/dev/pts/ptmx`, `/dev/pts/N`).
pub fn is_pty_path(path: &str) -> bool {
    path == "/dev/ptmx" || path.starts_with("/dev/pts/")
}

/// One devpts mount of a mount namespace, from its mountinfo.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DevptsMountInfo {
    pub devpts: DevId,
    pub mount_point: String,
    pub max: Option<u64>,
}

/// The devpts mounts in `/proc/PID/mountinfo`, in its order (a later mount on the same point
/// is on top).
pub fn devpts_mounts(pid: u32) -> io::Result<Vec<DevptsMountInfo>> {
    let text = fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
    Ok(parse_devpts_mounts(&text))
}

/// The devpts lines of a mountinfo text: `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPT...] -
/// FSTYPE SOURCE SUPEROPTS`. Mount points escape spaces as `\040`.
pub fn parse_devpts_mounts(text: &str) -> Vec<DevptsMountInfo> {
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split_whitespace();
            if r.next()? != "devpts" {
                return None;
            }
            let supers = r.nth(1).unwrap_or("");
            let f: Vec<&str> = left.split_whitespace().collect();
            let devpts: DevId = f.get(2)?.parse().ok()?;
            let mount_point = f.get(4)?.replace("\\040", " ");
            let max = supers.split(',').find_map(|o| o.strip_prefix("max=")).and_then(|v| v.parse().ok());
            Some(DevptsMountInfo { devpts, mount_point, max })
        })
        .collect()
}

/// The instance mounted on top at `/dev/pts` in a mount table.
pub fn dev_pts(mounts: &[DevptsMountInfo]) -> Option<DevId> {
    mounts.iter().rev().find(|m| m.mount_point == "/dev/pts").map(|m| m.devpts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devpts_lines_of_a_mountinfo() {
        let text = "24 1 0:22 / / rw - ext4 /dev/vda1 rw\n\
                    66 63 0:24 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=000\n\
                    68 67 0:40 / /dev/pts rw,relatime - devpts devpts rw,mode=600,ptmxmode=666,max=10\n\
                    70 24 0:41 / /srv/my\\040box/pts rw - devpts devpts rw,max=abc\n";
        let m = parse_devpts_mounts(text);
        assert_eq!(m.len(), 3);
        assert_eq!(m[1], DevptsMountInfo { devpts: DevId { major: 0, minor: 40 }, mount_point: "/dev/pts".into(), max: Some(10) });
        assert_eq!(m[2].mount_point, "/srv/my box/pts");
        assert_eq!(m[2].max, None);
        assert_eq!(dev_pts(&m), Some(DevId { major: 0, minor: 40 }), "the mount on top");
    }

    /// An fd that is not a ptmx (replaced since its fdinfo was read, say) gets no ioctl.
    #[test]
    fn anything_but_a_ptmx_is_refused_before_the_ioctl() {
        let null = fs::File::open("/dev/null").unwrap();
        let pfd = pidfd(std::process::id()).expect("pidfd_open (Linux 5.3)");
        let e = master_devpts(&pfd, null.as_raw_fd()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{e}");
        assert!(stat_fd_of(std::process::id(), null.as_raw_fd()).is_some_and(|st| st.is_char_device(DevId { major: 1, minor: 3 })));
        assert!(slave_end(std::process::id(), null.as_raw_fd()).is_none(), "/dev/null is no slave");
    }

    /// The method itself, on real PTYs of this process: a master's instance equals its
    /// slave's, and asking does not open the slave (an unopened, locked slave still works).
    #[test]
    fn a_masters_instance_is_its_slaves_without_opening_the_slave() {
        // SAFETY: plain libc calls on fds this test owns.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(master >= 0);
        let me = std::process::id();
        let pfd = pidfd(me).expect("pidfd_open (Linux 5.3)");
        let dev = master_devpts(&pfd, master).expect("pidfd_getfd and TIOCGPTPEER (Linux 5.6)");
        let index = crate::procfs::tty_index(me, master).unwrap();
        let slave = fs::metadata(format!("/dev/pts/{index}")).unwrap();
        assert_eq!(dev, DevId::from_raw(std::os::unix::fs::MetadataExt::dev(&slave)));
        // Still locked (never unlockpt'ed): opening the slave must fail, so it was not opened.
        let path = std::ffi::CString::new(format!("/dev/pts/{index}")).unwrap();
        // SAFETY: open/close on a path we built.
        let s = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
        assert!(s < 0, "the slave is still locked");
        // A non-PTY fd is refused, and nothing is opened.
        let null = fs::File::open("/dev/null").unwrap();
        assert!(master_devpts(&pfd, null.as_raw_fd()).is_err());
        // SAFETY: our fd.
        unsafe { libc::close(master) };
    }
}
