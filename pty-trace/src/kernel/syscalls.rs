//! The syscalls pty-trace follows: their names, this architecture's numbers and the kind the
//! kernel side reports them as (`SYSCALL_KINDS` is filled from this table at load time).

use pty_trace_common::SyscallKind;

/// Every followed syscall: name, this architecture's number, and its kind.
pub fn followed_syscalls() -> Vec<(&'static str, i64, SyscallKind)> {
    use SyscallKind as K;
    #[allow(unused_mut)]
    let mut v: Vec<(&'static str, i64, SyscallKind)> = vec![
        ("openat", libc::SYS_openat, K::OpenAt),
        ("openat2", libc::SYS_openat2, K::OpenAt2),
        (
            "open_by_handle_at",
            libc::SYS_open_by_handle_at,
            K::OpenByHandleAt,
        ),
        ("close", libc::SYS_close, K::Close),
        ("close_range", libc::SYS_close_range, K::CloseRange),
        ("dup", libc::SYS_dup, K::Dup),
        ("dup3", libc::SYS_dup3, K::Dup3),
        ("fcntl", libc::SYS_fcntl, K::Fcntl),
        ("pipe2", libc::SYS_pipe2, K::Pipe2),
        ("socket", libc::SYS_socket, K::Socket),
        ("socketpair", libc::SYS_socketpair, K::SocketPair),
        ("accept", libc::SYS_accept, K::Accept),
        ("accept4", libc::SYS_accept4, K::Accept4),
        ("recvmsg", libc::SYS_recvmsg, K::RecvMsg),
        ("eventfd2", libc::SYS_eventfd2, K::EventFd2),
        ("epoll_create1", libc::SYS_epoll_create1, K::EpollCreate1),
        ("timerfd_create", libc::SYS_timerfd_create, K::TimerfdCreate),
        ("signalfd4", libc::SYS_signalfd4, K::Signalfd4),
        ("memfd_create", libc::SYS_memfd_create, K::MemfdCreate),
        ("memfd_secret", 447, K::MemfdSecret),
        ("pidfd_open", libc::SYS_pidfd_open, K::PidfdOpen),
        ("pidfd_getfd", libc::SYS_pidfd_getfd, K::PidfdGetfd),
        ("inotify_init1", libc::SYS_inotify_init1, K::InotifyInit1),
        ("fanotify_init", libc::SYS_fanotify_init, K::FanotifyInit),
        (
            "perf_event_open",
            libc::SYS_perf_event_open,
            K::PerfEventOpen,
        ),
        ("userfaultfd", libc::SYS_userfaultfd, K::Userfaultfd),
        ("io_uring_setup", libc::SYS_io_uring_setup, K::IoUringSetup),
        ("open_tree", libc::SYS_open_tree, K::OpenTree),
        ("fsopen", libc::SYS_fsopen, K::Fsopen),
        ("fsmount", libc::SYS_fsmount, K::Fsmount),
        ("fspick", libc::SYS_fspick, K::Fspick),
        ("landlock_create_ruleset", 444, K::LandlockCreateRuleset),
        ("mq_open", libc::SYS_mq_open, K::MqOpen),
        ("bpf", libc::SYS_bpf, K::Bpf),
        ("seccomp", libc::SYS_seccomp, K::Seccomp),
        ("ioctl", libc::SYS_ioctl, K::Ioctl),
        ("clone", libc::SYS_clone, K::Clone),
        ("clone3", libc::SYS_clone3, K::Clone3),
        ("unshare", libc::SYS_unshare, K::Unshare),
    ];
    // Legacy syscalls that only some architectures have.
    #[cfg(target_arch = "x86_64")]
    v.extend([
        ("open", libc::SYS_open, K::Open),
        ("creat", libc::SYS_creat, K::Creat),
        ("dup2", libc::SYS_dup2, K::Dup2),
        ("pipe", libc::SYS_pipe, K::Pipe),
        ("eventfd", libc::SYS_eventfd, K::EventFd),
        ("epoll_create", libc::SYS_epoll_create, K::EpollCreate),
        ("signalfd", libc::SYS_signalfd, K::Signalfd),
        ("inotify_init", libc::SYS_inotify_init, K::InotifyInit),
        ("fork", libc::SYS_fork, K::Fork),
        ("vfork", libc::SYS_vfork, K::Vfork),
    ]);
    v
}

/// Names of the followed syscalls, for `doctor`.
pub fn followed_syscall_names() -> Vec<&'static str> {
    followed_syscalls().into_iter().map(|(n, _, _)| n).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syscall_table_is_consistent() {
        let all = followed_syscalls();
        let mut names: Vec<_> = all.iter().map(|x| x.0).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), all.len(), "duplicate syscall name");
        for (name, nr, _) in &all {
            assert!(
                *nr >= 0 && (*nr as u32) < pty_trace_common::MAX_SYSCALL_NR,
                "{name} nr {nr}"
            );
        }
        // The required minimum of the foundation issue.
        for n in ["openat", "close", "ioctl"] {
            assert!(names.contains(&n));
        }
    }
}
