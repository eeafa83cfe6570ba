//! A multi-threaded workload for `tests/tests/faults_threads.rs`: threads sharing one fd table
//! open, close, dup and hand fds to each other in a seeded random order, so that an fd number
//! one thread frees is taken at once by another (the kernel always hands out the lowest free
//! number). This is what node's libuv does with file I/O on its worker threads.
//!
//! ```text
//! threads SEED THREADS OPS ROUNDS HOLD_MS GT_DIR
//! ```
//!
//! After a 300 ms start (the tracer seeds the process first), each of THREADS threads runs
//! OPS random operations, split into ROUNDS rounds. After each round all threads wait at a
//! barrier while the main thread writes its ground truth (`GT_DIR/PID.ROUND`: `pid fds masters
//! slaves unix_ms`, from /proc/self/fd) and holds still for HOLD_MS: the quiescent windows the
//! test compares snapshots in. Threads 0, 3 and 6 also open PTYs (posix_openpt, grantpt,
//! unlockpt, ptsname, the slave by path or TIOCGPTPEER).
//!
//! A thread only ever operates on fds it owns: the ones it opened, and the ones it took from
//! the shared hand-off pool (where another thread put them). Closing a number another thread
//! may be using is a bug in a real program, and its outcome is a race the kernel decides; the
//! point here is the orderings a correct program produces.

use std::{
    ffi::{CStr, CString},
    sync::{Arc, Barrier, Mutex},
    time::Duration,
};

use rand::{Rng, SeedableRng, rngs::StdRng};

/// Most fds a thread keeps: small tables keep the numbers low, so they are reused constantly.
const KEEP: usize = 10;
/// Most fds waiting in the hand-off pool.
const POOL: usize = 16;
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
const TIOCGPTPEER: libc::c_ulong = 0x5441;

/// This process's counts at the start of a pause, one file per round.
fn ground_truth(dir: &str, round: u32) {
    pty_trace_tests::write_own_ground_truth(&std::path::Path::new(dir).join(format!("{}.{round}", std::process::id())));
}

fn cloexec(rng: &mut StdRng) -> i32 {
    if rng.gen_bool(0.5) { libc::O_CLOEXEC } else { 0 }
}

/// One thread's fds and its share of the hand-off pool.
struct Worker {
    rng: StdRng,
    own: Vec<i32>,
    pool: Arc<Mutex<Vec<i32>>>,
    ptys: bool,
}

impl Worker {
    fn keep(&mut self, fd: i32) {
        if fd >= 0 {
            self.own.push(fd);
        }
    }

    /// Removes and returns one of the thread's fds.
    fn take(&mut self) -> Option<i32> {
        if self.own.is_empty() {
            return None;
        }
        let i = self.rng.gen_range(0..self.own.len());
        Some(self.own.swap_remove(i))
    }

    fn pick(&mut self) -> Option<i32> {
        if self.own.is_empty() {
            return None;
        }
        Some(self.own[self.rng.gen_range(0..self.own.len())])
    }

    fn open_pty(&mut self) {
        let flags = libc::O_RDWR | libc::O_NOCTTY | cloexec(&mut self.rng);
        // SAFETY: plain libc calls on an fd this thread owns; `name` is a valid buffer.
        unsafe {
            let m = libc::posix_openpt(flags);
            if m < 0 {
                return;
            }
            self.keep(m);
            libc::grantpt(m);
            libc::unlockpt(m);
            if self.rng.gen_bool(0.3) {
                return;
            }
            if self.rng.gen_bool(0.5) {
                let mut name = [0 as libc::c_char; 64];
                if libc::ptsname_r(m, name.as_mut_ptr(), name.len()) == 0 {
                    let path = CStr::from_ptr(name.as_ptr());
                    let s = libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY | cloexec(&mut self.rng));
                    self.keep(s);
                }
            } else {
                let s = libc::ioctl(m, TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | cloexec(&mut self.rng));
                self.keep(s);
            }
        }
    }

    /// One random operation on the thread's own fds.
    fn step(&mut self) {
        let op = if self.own.len() >= KEEP { self.rng.gen_range(0..3) } else { self.rng.gen_range(0..23) };
        // SAFETY: plain syscalls on fds this thread owns (or on numbers no thread can own).
        unsafe {
            match op {
                0 => {
                    if let Some(fd) = self.take() {
                        libc::close(fd);
                    }
                }
                1 => {
                    if let Some(fd) = self.take() {
                        libc::syscall(libc::SYS_close_range, fd as u32, fd as u32, 0u32);
                    }
                }
                2 => {
                    // Hand one over: another thread will close it or keep it.
                    if let Some(fd) = self.take() {
                        let mut pool = self.pool.lock().unwrap();
                        if pool.len() < POOL {
                            pool.push(fd);
                        } else {
                            drop(pool);
                            libc::close(fd);
                        }
                    }
                }
                3 | 4 => {
                    let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | cloexec(&mut self.rng));
                    self.keep(fd);
                }
                5 => {
                    let fd = libc::openat(libc::AT_FDCWD, c"/etc".as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | cloexec(&mut self.rng));
                    self.keep(fd);
                }
                6 => {
                    if let Some(fd) = self.pick() {
                        let d = libc::dup(fd);
                        self.keep(d);
                    }
                }
                7 => {
                    // dup2 onto another fd of ours: atomically replaces it.
                    if let (Some(a), Some(b)) = (self.pick(), self.pick()) {
                        libc::dup2(a, b);
                    }
                }
                8 => {
                    if let (Some(a), Some(b)) = (self.pick(), self.pick())
                        && a != b
                    {
                        libc::dup3(a, b, libc::O_CLOEXEC);
                    }
                }
                9 => {
                    if let Some(fd) = self.pick() {
                        let d = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3);
                        self.keep(d);
                    }
                }
                10 => {
                    if let Some(fd) = self.pick() {
                        let on = if self.rng.gen_bool(0.5) { libc::FD_CLOEXEC } else { 0 };
                        libc::fcntl(fd, libc::F_SETFD, on);
                    }
                }
                11 => {
                    if let Some(fd) = self.pick() {
                        libc::syscall(libc::SYS_close_range, fd as u32, fd as u32, CLOSE_RANGE_CLOEXEC);
                    }
                }
                12 => {
                    let mut p = [-1i32; 2];
                    if libc::pipe2(p.as_mut_ptr(), cloexec(&mut self.rng)) == 0 {
                        self.keep(p[0]);
                        self.keep(p[1]);
                    }
                }
                13 => {
                    let mut p = [-1i32; 2];
                    if libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | cloexec(&mut self.rng), 0, p.as_mut_ptr()) == 0 {
                        self.keep(p[0]);
                        self.keep(p[1]);
                    }
                }
                14 => {
                    let fd = libc::eventfd(0, if self.rng.gen_bool(0.5) { libc::EFD_CLOEXEC } else { 0 });
                    self.keep(fd);
                }
                15 | 16 => {
                    // Take a handed-over fd: close it here, or keep it.
                    let got = self.pool.lock().unwrap().pop();
                    if let Some(fd) = got {
                        if self.rng.gen_bool(0.7) {
                            libc::close(fd);
                        } else {
                            self.keep(fd);
                        }
                    }
                }
                17 => {
                    // Calls that fail and change nothing: close of a number no one has
                    // (EBADF), close_range with the range reversed or unknown flags (EINVAL).
                    match self.rng.gen_range(0..3) {
                        0 => libc::close(1_000_000),
                        1 => libc::syscall(libc::SYS_close_range, 1_000_000u32, 3u32, 0u32) as i32,
                        _ => libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 1u32 << 7) as i32,
                    };
                }
                18..=20 if self.ptys => self.open_pty(),
                _ => {
                    let fd = libc::socket(libc::AF_UNIX, libc::SOCK_DGRAM | cloexec(&mut self.rng), 0);
                    self.keep(fd);
                }
            }
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 7 {
        eprintln!("usage: threads SEED THREADS OPS ROUNDS HOLD_MS GT_DIR");
        std::process::exit(2);
    }
    let num = |i: usize| -> u64 { args[i].parse().unwrap_or_else(|_| panic!("argument {i}: not a number: {}", args[i])) };
    let (seed, threads, ops, rounds, hold) = (num(1), num(2) as usize, num(3), num(4) as u32, num(5));
    let gt = args[6].clone();
    let _ = CString::new(gt.as_str()).expect("GT_DIR without NUL");
    std::thread::sleep(Duration::from_millis(300));
    let pool = Arc::new(Mutex::new(Vec::new()));
    // Every round: the workers and the main thread meet when the round is done, and again
    // when the hold is over.
    let barrier = Arc::new(Barrier::new(threads + 1));
    let per_round = ops / rounds as u64;
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let (pool, barrier) = (pool.clone(), barrier.clone());
            std::thread::spawn(move || {
                let mut w = Worker {
                    rng: StdRng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64)),
                    own: Vec::new(),
                    pool,
                    ptys: i % 3 == 0,
                };
                for _ in 0..rounds {
                    for _ in 0..per_round {
                        w.step();
                    }
                    barrier.wait();
                    barrier.wait();
                }
                w.own
            })
        })
        .collect();
    for round in 0..rounds {
        barrier.wait();
        ground_truth(&gt, round);
        std::thread::sleep(Duration::from_millis(hold));
        barrier.wait();
    }
    for w in workers {
        w.join().expect("worker thread");
    }
}
