//! Real workloads for the privileged end-to-end tests, each reporting its own ground truth.
//!
//! - `opens N M HOLD_MS GT_DIR [DELAY_MS]`: after DELAY_MS, opens `/dev/null` N times and
//!   `/dev/ptmx` M times, writes its ground truth, holds everything for HOLD_MS, exits.
//! - `random SEED STEPS HOLD_MS GT_DIR [DEPTH]`: a seeded random walk over every fd path pty-trace
//!   follows (open/openat2/creat, close/close_range, dup family, fcntl, pipes, sockets, anonymous
//!   inodes, PTY masters/slaves/TIOCGPTPEER, FIOCLEX), with fork, CLONE_FILES-free exec of
//!   itself (O_CLOEXEC fds around) and early exits. When done, every live process writes its
//!   ground truth and sleeps HOLD_MS: that is the quiescent window the tests compare in.
//!
//! - `listener HOLD_MS GT_DIR DELAY_MS`: after DELAY_MS (a tracer has seeded it by then), installs
//!   an allow-everything seccomp filter with `SECCOMP_FILTER_FLAG_NEW_LISTENER` (a supervisor's
//!   listener fd), writes its ground truth, holds for HOLD_MS.
//!
//! - `received HOLD_MS GT_DIR DELAY_MS`: after DELAY_MS, a child opens `/dev/ptmx`, `/dev/null`
//!   and a pipe and sends the four fds over a unix socketpair (`SCM_RIGHTS`), twice; the parent
//!   receives the first message plainly and the second with `MSG_CMSG_CLOEXEC`, writes its
//!   ground truth and holds for HOLD_MS.
//!
//! Ground truth (one file per process, `GT_DIR/PID`): `pid fds masters slaves unix_ms`, read
//! from /proc/self/fd after the last operation.

use std::{ffi::CString, fs, time::Duration};

use rand::{Rng, SeedableRng, rngs::StdRng};

/// This process's counts for the tests to compare with pty-trace's (see
/// `pty_trace_tests::write_own_ground_truth`).
fn ground_truth(dir: &str) {
    pty_trace_tests::write_own_ground_truth(&std::path::Path::new(dir).join(std::process::id().to_string()));
}

fn open(path: &str, flags: i32) -> i32 {
    let c = CString::new(path).unwrap();
    // SAFETY: valid C string.
    unsafe { libc::open(c.as_ptr(), flags, 0o600) }
}

fn opens(args: &[String]) {
    let n: usize = args[0].parse().unwrap();
    let m: usize = args[1].parse().unwrap();
    let hold: u64 = args[2].parse().unwrap();
    // Optional pause before opening, so a tracer has seeded this process first.
    if let Some(ms) = args.get(4).and_then(|d| d.parse::<u64>().ok()) {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let mut keep = Vec::new();
    for _ in 0..n {
        keep.push(open("/dev/null", libc::O_RDONLY));
    }
    for _ in 0..m {
        keep.push(open("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY));
    }
    assert!(keep.iter().all(|&fd| fd >= 0), "open failed");
    ground_truth(&args[3]);
    std::thread::sleep(Duration::from_millis(hold));
}

/// The fds this process may operate on (never 0..=2, which the harness owns).
fn my_fds() -> Vec<i32> {
    let me = std::process::id();
    let own_dir = format!("/proc/{me}/fd");
    let mut v: Vec<i32> = fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter(|e| fs::read_link(e.path()).map(|t| t.to_string_lossy() != own_dir).unwrap_or(false))
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse().ok()))
        .filter(|&fd| fd > 2)
        .collect();
    v.sort_unstable();
    v
}

fn masters() -> Vec<i32> {
    my_fds()
        .into_iter()
        .filter(|fd| fs::read_link(format!("/proc/self/fd/{fd}")).map(|t| t.to_string_lossy() == "/dev/ptmx").unwrap_or(false))
        .collect()
}

fn cloexec(rng: &mut StdRng) -> i32 {
    if rng.gen_bool(0.5) { libc::O_CLOEXEC } else { 0 }
}

/// One random fd operation. Failures (EMFILE, EBADF on a raced choice) are fine: the kernel's
/// answer is what pty-trace must follow.
fn step(rng: &mut StdRng) {
    let fds = my_fds();
    let pick = |rng: &mut StdRng| if fds.is_empty() { 3 } else { fds[rng.gen_range(0..fds.len())] };
    // Keep tables small so close_range and dup2 hit real fds.
    let op = if fds.len() > 40 { rng.gen_range(0..4) } else { rng.gen_range(0..26) };
    // SAFETY: plain syscalls on fds of this process; results are ignored on purpose.
    unsafe {
        match op {
            0 => {
                libc::close(pick(rng));
            }
            1 => {
                let a = pick(rng) as u32;
                let flags = if rng.gen_bool(0.3) { 4 } else { 0 }; // CLOSE_RANGE_CLOEXEC
                libc::syscall(libc::SYS_close_range, a, a + rng.gen_range(0..4), flags);
            }
            2 => {
                libc::close(pick(rng));
            }
            3 => {
                libc::dup(pick(rng));
            }
            4 => {
                open("/dev/null", libc::O_RDONLY | cloexec(rng));
            }
            5 => {
                let c = CString::new("/etc").unwrap();
                libc::openat(libc::AT_FDCWD, c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | cloexec(rng));
            }
            6 => {
                let m = open("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY | cloexec(rng));
                if m >= 0 {
                    libc::grantpt(m);
                    libc::unlockpt(m);
                    let mut n: libc::c_int = 0;
                    libc::ioctl(m, libc::TIOCGPTN, &mut n);
                    if rng.gen_bool(0.5) {
                        open(&format!("/dev/pts/{n}"), libc::O_RDWR | libc::O_NOCTTY | cloexec(rng));
                    }
                }
            }
            7 => {
                if let Some(&m) = masters().first() {
                    libc::ioctl(m, 0x5441 /* TIOCGPTPEER */, libc::O_RDWR | libc::O_NOCTTY | cloexec(rng));
                }
            }
            8 => {
                let target = if rng.gen_bool(0.5) { pick(rng) } else { rng.gen_range(3..30) };
                libc::dup2(pick(rng), target);
            }
            9 => {
                libc::dup3(pick(rng), rng.gen_range(3..30), libc::O_CLOEXEC);
            }
            10 => {
                libc::fcntl(pick(rng), libc::F_DUPFD, rng.gen_range(3..20));
            }
            11 => {
                libc::fcntl(pick(rng), libc::F_DUPFD_CLOEXEC, 3);
            }
            12 => {
                libc::fcntl(pick(rng), libc::F_SETFD, if rng.gen_bool(0.5) { libc::FD_CLOEXEC } else { 0 });
            }
            13 => {
                let mut p = [0i32; 2];
                libc::pipe2(p.as_mut_ptr(), cloexec(rng));
            }
            14 => {
                let mut p = [0i32; 2];
                libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | cloexec(rng), 0, p.as_mut_ptr());
            }
            15 => {
                libc::socket(libc::AF_INET, libc::SOCK_DGRAM | cloexec(rng), 0);
            }
            16 => {
                libc::eventfd(0, if rng.gen_bool(0.5) { libc::EFD_CLOEXEC } else { 0 });
            }
            17 => {
                libc::epoll_create1(if rng.gen_bool(0.5) { libc::EPOLL_CLOEXEC } else { 0 });
            }
            18 => {
                libc::timerfd_create(libc::CLOCK_MONOTONIC, cloexec(rng));
            }
            19 => {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::signalfd(-1, &set, cloexec(rng));
            }
            20 => {
                let n = CString::new("wl").unwrap();
                libc::memfd_create(n.as_ptr(), if rng.gen_bool(0.5) { libc::MFD_CLOEXEC } else { 0 });
            }
            21 => {
                libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0);
            }
            22 => {
                libc::inotify_init1(cloexec(rng));
            }
            23 => {
                libc::ioctl(pick(rng), if rng.gen_bool(0.5) { libc::FIOCLEX } else { libc::FIONCLEX });
            }
            24 => {
                // openat2 with O_CLOEXEC in struct open_how.
                #[repr(C)]
                struct OpenHow {
                    flags: u64,
                    mode: u64,
                    resolve: u64,
                }
                let how = OpenHow { flags: (libc::O_RDONLY | cloexec(rng)) as u64, mode: 0, resolve: 0 };
                let c = CString::new("/dev/null").unwrap();
                libc::syscall(libc::SYS_openat2, libc::AT_FDCWD, c.as_ptr(), &how, std::mem::size_of::<OpenHow>());
            }
            _ => {
                let c = CString::new(format!("/tmp/pty-trace-wl-{}", libc::getpid())).unwrap();
                let fd = libc::creat(c.as_ptr(), 0o600);
                libc::unlink(c.as_ptr());
                let _ = fd;
            }
        }
    }
}

fn random(args: &[String]) {
    let seed: u64 = args[0].parse().unwrap();
    let steps: u32 = args[1].parse().unwrap();
    let hold: u64 = args[2].parse().unwrap();
    let gt = args[3].clone();
    let depth: u32 = args.get(4).map(|d| d.parse().unwrap()).unwrap_or(0);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut children = Vec::new();
    let mut i = 0;
    while i < steps {
        i += 1;
        let r = rng.gen_range(0..100);
        if r < 4 && depth < 3 && children.len() < 3 {
            // SAFETY: single-threaded process; the child only runs Rust code we control.
            let pid = unsafe { libc::fork() };
            if pid == 0 {
                rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(i as u64 * 7 + depth as u64 + 1));
                children.clear();
                let rest = steps - i;
                // Some children exit early, the rest continue the walk.
                if rng.gen_bool(0.2) {
                    std::process::exit(0);
                }
                let child_args = vec![rng.r#gen::<u64>().to_string(), rest.to_string(), hold.to_string(), gt.clone(), (depth + 1).to_string()];
                if rng.gen_bool(0.5) {
                    // exec ourselves: O_CLOEXEC fds go, the rest stay.
                    let exe = CString::new("/proc/self/exe").unwrap();
                    let mut argv: Vec<CString> = vec![CString::new("workload").unwrap(), CString::new("random").unwrap()];
                    argv.extend(child_args.iter().map(|a| CString::new(a.as_str()).unwrap()));
                    let mut ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
                    ptrs.push(std::ptr::null());
                    // SAFETY: valid NULL-terminated argv.
                    unsafe { libc::execv(exe.as_ptr(), ptrs.as_ptr()) };
                    std::process::exit(99);
                }
                return random(&child_args);
            } else if pid > 0 {
                children.push(pid);
            }
            continue;
        }
        step(&mut rng);
    }
    ground_truth(&gt);
    std::thread::sleep(Duration::from_millis(hold));
    for c in children {
        let mut st = 0;
        // SAFETY: waiting for our own children.
        unsafe { libc::waitpid(c, &mut st, 0) };
    }
}

/// seccomp's listener fd: a filter that allows everything, with a user-notification listener.
fn listener(args: &[String]) {
    let hold: u64 = args[0].parse().unwrap();
    std::thread::sleep(Duration::from_millis(args[2].parse().unwrap()));
    // BPF_RET | BPF_K, SECCOMP_RET_ALLOW
    let filter = [libc::sock_filter { code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000 }];
    let prog = libc::sock_fprog { len: 1, filter: filter.as_ptr() as *mut _ };
    const SECCOMP_SET_MODE_FILTER: libc::c_long = 1;
    const SECCOMP_FILTER_FLAG_NEW_LISTENER: libc::c_long = 1 << 3;
    // SAFETY: prctl and seccomp with a valid one-instruction program.
    let fd = unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0, "no_new_privs");
        libc::syscall(libc::SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog)
    };
    assert!(fd > 2, "seccomp listener: {}", std::io::Error::last_os_error());
    ground_truth(&args[1]);
    std::thread::sleep(Duration::from_millis(hold));
}

/// Sends `fds` over the unix socket `sock` in one SCM_RIGHTS message.
fn send_fds(sock: i32, fds: &[i32]) {
    let mut byte = [b'x'];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: CMSG_* compute sizes; the buffer is large enough and 8-byte aligned.
    unsafe {
        let space = libc::CMSG_SPACE((fds.len() * 4) as u32) as usize;
        let mut buf = vec![0u64; space.div_ceil(8)];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = buf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN((fds.len() * 4) as u32) as usize;
        std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<i32>(), fds.len());
        assert_eq!(libc::sendmsg(sock, &msg, 0), 1, "sendmsg: {}", std::io::Error::last_os_error());
    }
}

/// Receives one message from `sock` with room for `n` fds.
fn recv_fds(sock: i32, n: usize, flags: i32) -> Vec<i32> {
    let mut byte = [0u8];
    let mut iov = libc::iovec { iov_base: byte.as_mut_ptr().cast(), iov_len: 1 };
    // SAFETY: as in send_fds.
    unsafe {
        let space = libc::CMSG_SPACE((n * 4) as u32) as usize;
        let mut buf = vec![0u64; space.div_ceil(8)];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = buf.as_mut_ptr().cast();
        msg.msg_controllen = space;
        assert_eq!(libc::recvmsg(sock, &mut msg, flags), 1, "recvmsg: {}", std::io::Error::last_os_error());
        let c = libc::CMSG_FIRSTHDR(&msg);
        assert!(!c.is_null() && (*c).cmsg_type == libc::SCM_RIGHTS, "no SCM_RIGHTS message");
        let k = ((*c).cmsg_len - libc::CMSG_LEN(0) as usize) / 4;
        let mut out = vec![0i32; k];
        std::ptr::copy_nonoverlapping(libc::CMSG_DATA(c).cast::<i32>(), out.as_mut_ptr(), k);
        out
    }
}

/// fds received over SCM_RIGHTS (see the module doc).
fn received(args: &[String]) {
    let hold: u64 = args[0].parse().unwrap();
    std::thread::sleep(Duration::from_millis(args[2].parse().unwrap()));
    let mut sv = [0i32; 2];
    // SAFETY: plain syscalls; the child only runs code we control and exits.
    unsafe {
        assert_eq!(libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, sv.as_mut_ptr()), 0);
        let pid = libc::fork();
        if pid == 0 {
            for _ in 0..2 {
                let mut p = [0i32; 2];
                libc::pipe(p.as_mut_ptr());
                let fds = [open("/dev/ptmx", libc::O_RDWR | libc::O_NOCTTY), open("/dev/null", libc::O_RDONLY), p[0], p[1]];
                send_fds(sv[1], &fds);
            }
            libc::_exit(0);
        }
        let a = recv_fds(sv[0], 4, 0);
        let b = recv_fds(sv[0], 4, libc::MSG_CMSG_CLOEXEC);
        assert_eq!((a.len(), b.len()), (4, 4), "received {a:?} {b:?}");
        let mut st = 0;
        libc::waitpid(pid, &mut st, 0);
    }
    ground_truth(&args[1]);
    std::thread::sleep(Duration::from_millis(hold));
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("opens") if args.len() >= 6 => opens(&args[2..]),
        Some("random") if args.len() >= 6 => random(&args[2..]),
        Some("listener") if args.len() >= 5 => listener(&args[2..]),
        Some("received") if args.len() >= 5 => received(&args[2..]),
        _ => {
            eprintln!("usage: workload opens N M HOLD_MS GT_DIR | random SEED STEPS HOLD_MS GT_DIR [DEPTH] | listener HOLD_MS GT_DIR DELAY_MS | received HOLD_MS GT_DIR DELAY_MS");
            std::process::exit(2);
        }
    }
}
