//! Benchmark workloads for `bench` (see docs/BENCHMARKS.md). Each one measures itself: the clock
//! starts at the top of its loop, so a tracer's start-up and attach time is never counted.
//!
//! ```text
//! benchload openclose [N]   N x open("/dev/null") + close                       (default 300000)
//! benchload ptys [N]        N x open /dev/ptmx, grantpt, unlockpt, TIOCGPTN,
//!                           open the slave, close both                          (default 5000)
//! benchload forkexec [N]    N x fork + exec /bin/true + waitpid                 (default 3000)
//! benchload agent [N]       N shell commands, each on a fresh PTY (posix_openpt, child
//!                           `sh -c CMD` on the slave with setsid + TIOCSCTTY, parent reads the
//!                           master until EIO, waitpid, closes the master), cycling over
//!                           `git status` (in a temp repo made beforehand, untimed),
//!                           `ls -la /usr/bin` and `/usr/bin/python3 -c 'print(1)'` (default 200)
//! ```
//!
//! The last line on stdout is the loop's elapsed time in nanoseconds. When `BENCHLOAD_OUT` is
//! set, that file gets `ELAPSED_NS CPU_NS`: the same number, then the CPU time this process used
//! during the loop (user + system, children excluded; less sensitive to other load on the
//! machine). A tracer may print after the workload on the same stdout, hence the file.
//! Exit status 0 on success, 1 with a message on stderr otherwise.

use std::{
    ffi::{CStr, CString},
    io::Write,
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("benchload: {msg}");
    std::process::exit(1)
}

fn errno(what: &str) -> ! {
    die(format!("{what}: {}", std::io::Error::last_os_error()))
}

const DEV_NULL: &CStr = c"/dev/null";

fn openclose(n: u64) -> (u128, u128) {
    let t0 = Start::now();
    for _ in 0..n {
        // SAFETY: valid C string; the fd is closed right away.
        unsafe {
            let fd = libc::open(DEV_NULL.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd < 0 {
                errno("open /dev/null");
            }
            libc::close(fd);
        }
    }
    t0.done()
}

/// Opens a PTY master and unlocks it; returns (master fd, pty index).
fn open_master() -> (i32, u32) {
    // SAFETY: plain libc calls on an fd we own; `n` is a valid out pointer.
    unsafe {
        let m = libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
        if m < 0 {
            errno("posix_openpt");
        }
        if libc::grantpt(m) != 0 {
            errno("grantpt");
        }
        if libc::unlockpt(m) != 0 {
            errno("unlockpt");
        }
        let mut n: libc::c_int = 0;
        if libc::ioctl(m, libc::TIOCGPTN, &mut n) != 0 {
            errno("ioctl(TIOCGPTN)");
        }
        (m, n as u32)
    }
}

fn slave_path(n: u32) -> CString {
    CString::new(format!("/dev/pts/{n}")).expect("no NUL in a pts path")
}

fn ptys(n: u64) -> (u128, u128) {
    let t0 = Start::now();
    for _ in 0..n {
        let (m, idx) = open_master();
        let path = slave_path(idx);
        // SAFETY: valid C string; both fds are ours and closed here.
        unsafe {
            let s = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC);
            if s < 0 {
                errno("open the PTY slave");
            }
            libc::close(s);
            libc::close(m);
        }
    }
    t0.done()
}

fn wait_child(pid: i32) -> i32 {
    let mut st = 0;
    // SAFETY: waiting for our own child with a valid status pointer.
    loop {
        let r = unsafe { libc::waitpid(pid, &mut st, 0) };
        if r == pid {
            return st;
        }
        if r < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            errno("waitpid");
        }
    }
}

fn forkexec(n: u64) -> (u128, u128) {
    let prog = c"/bin/true";
    let argv = [prog.as_ptr(), std::ptr::null()];
    let t0 = Start::now();
    for _ in 0..n {
        // SAFETY: single-threaded process; the child only calls execv and _exit.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            errno("fork");
        }
        if pid == 0 {
            unsafe {
                libc::execv(prog.as_ptr(), argv.as_ptr());
                libc::_exit(127);
            }
        }
        let st = wait_child(pid);
        if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
            die(format!("/bin/true failed (wait status {st})"));
        }
    }
    t0.done()
}

/// A small git repository to run `git status` in: 50 committed files, two modified, one new.
fn make_repo() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("benchload-git-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src")).unwrap_or_else(|e| die(format!("creating {}: {e}", dir.display())));
    for i in 0..50 {
        let body = format!("// file {i}\n{}\n", "fn f() {}\n".repeat(i + 1));
        std::fs::write(dir.join("src").join(format!("f{i}.rs")), body).unwrap_or_else(|e| die(e));
    }
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .args(["-c", "user.name=bench", "-c", "user.email=bench@invalid", "-c", "init.defaultBranch=main"])
            .args(args)
            .current_dir(&dir)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap_or_else(|e| die(format!("running git (is it installed?): {e}")));
        if !st.success() {
            die(format!("git {args:?} failed: {st}"));
        }
    };
    git(&["init", "-q"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "bench"]);
    std::fs::write(dir.join("src/f1.rs"), "changed\n").unwrap_or_else(|e| die(e));
    std::fs::write(dir.join("src/f2.rs"), "changed\n").unwrap_or_else(|e| die(e));
    std::fs::write(dir.join("new.txt"), "new\n").unwrap_or_else(|e| die(e));
    dir
}

/// Runs `sh -c cmd` on a fresh PTY in `dir`; returns the bytes read from the master.
fn pty_command(cmd: &CStr, dir: &CStr, envp: &[*const libc::c_char]) -> usize {
    let (m, idx) = open_master();
    let slave = slave_path(idx);
    let sh = c"/bin/sh";
    let argv = [c"sh".as_ptr(), c"-c".as_ptr(), cmd.as_ptr(), std::ptr::null()];
    // SAFETY: single-threaded; between fork and exec the child only makes async-signal-safe
    // calls on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        errno("fork");
    }
    if pid == 0 {
        unsafe {
            libc::setsid();
            let s = libc::open(slave.as_ptr(), libc::O_RDWR);
            if s < 0 {
                libc::_exit(126);
            }
            libc::ioctl(s, libc::TIOCSCTTY, 0);
            libc::dup2(s, 0);
            libc::dup2(s, 1);
            libc::dup2(s, 2);
            if s > 2 {
                libc::close(s);
            }
            if libc::chdir(dir.as_ptr()) != 0 {
                libc::_exit(125);
            }
            libc::execve(sh.as_ptr(), argv.as_ptr(), envp.as_ptr());
            libc::_exit(127);
        }
    }
    let mut buf = [0u8; 16384];
    let mut total = 0;
    loop {
        // SAFETY: reading into a buffer we own.
        let r = unsafe { libc::read(m, buf.as_mut_ptr().cast(), buf.len()) };
        if r > 0 {
            total += r as usize;
            continue;
        }
        if r == 0 {
            break;
        }
        match std::io::Error::last_os_error().raw_os_error() {
            Some(libc::EINTR) => continue,
            // The slave side is closed by every holder: the command is done.
            Some(libc::EIO) => break,
            _ => errno("read from the PTY master"),
        }
    }
    let st = wait_child(pid);
    // SAFETY: our master fd.
    unsafe { libc::close(m) };
    if !(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0) {
        die(format!("`sh -c {}` failed (wait status {st:#x})", cmd.to_string_lossy()));
    }
    total
}

fn agent(n: u64) -> (u128, u128) {
    if !Path::new("/usr/bin/python3").exists() {
        die("agent: /usr/bin/python3 is missing");
    }
    let repo = make_repo();
    let dir = CString::new(repo.as_os_str().as_encoded_bytes()).expect("no NUL in the temp path");
    let cmds = [c"git status", c"ls -la /usr/bin", c"/usr/bin/python3 -c 'print(1)'"];
    // A fixed, small environment: no pager, a plain terminal type, the usual PATH.
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    let env: Vec<CString> = [
        format!("PATH={path}"),
        format!("HOME={}", std::env::var("HOME").unwrap_or_else(|_| "/".into())),
        "TERM=xterm".into(),
        "LANG=C".into(),
        "GIT_PAGER=cat".into(),
        "PAGER=cat".into(),
        "GIT_OPTIONAL_LOCKS=0".into(),
    ]
    .into_iter()
    .map(|s| CString::new(s).expect("no NUL"))
    .collect();
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let t0 = Start::now();
    let mut bytes = 0;
    for i in 0..n {
        bytes += pty_command(cmds[(i % 3) as usize], &dir, &envp);
    }
    let elapsed = t0.done();
    let _ = std::fs::remove_dir_all(&repo);
    if bytes == 0 && n > 0 {
        die("agent: the commands printed nothing on their PTYs");
    }
    elapsed
}

/// The start of a timed loop: wall clock and this process's CPU time.
struct Start {
    wall: Instant,
    cpu: u128,
}

impl Start {
    fn now() -> Start {
        Start { cpu: cpu_ns(), wall: Instant::now() }
    }
    /// (elapsed ns, CPU ns used by this process since `now`).
    fn done(&self) -> (u128, u128) {
        let ns = self.wall.elapsed().as_nanos();
        (ns, cpu_ns().saturating_sub(self.cpu))
    }
}

/// CPU time of this process (all threads) in nanoseconds.
fn cpu_ns() -> u128 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid out pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u128 * 1_000_000_000 + ts.tv_nsec as u128
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: benchload openclose|ptys|forkexec|agent [N]";
    let Some(what) = args.first() else { die(usage) };
    let n = |default: u64| -> u64 {
        match args.get(1) {
            None => default,
            Some(s) => s.parse().unwrap_or_else(|_| die(format!("bad N {s:?}\n{usage}"))),
        }
    };
    let (ns, cpu) = match what.as_str() {
        "openclose" => openclose(n(300_000)),
        "ptys" => ptys(n(5_000)),
        "forkexec" => forkexec(n(3_000)),
        "agent" => agent(n(200)),
        _ => die(usage),
    };
    if let Some(out) = std::env::var_os("BENCHLOAD_OUT") {
        std::fs::write(&out, format!("{ns} {cpu}\n"))
            .unwrap_or_else(|e| die(format!("writing {}: {e}", Path::new(&out).display())));
    }
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{ns}");
    let _ = stdout.flush();
}
