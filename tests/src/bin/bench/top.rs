//! `bench top [--quick] [--procs N] [--fds N] [--out PATH]`: what `pty-trace top` costs on a
//! busy machine and how fast it sees a new PTY.
//!
//! 1. CPU: `top --no-tui --jsonl FILE --interval 1s` runs on the machine as it is, then with N
//!    extra processes (default 1,000) holding M fds each (default 50; one Python parent opens
//!    them and forks, so they share memory). Its CPU time is read from `/proc/PID/stat` after
//!    a warm-up (the first scan reads every fd table once) and again at the end: steady-state
//!    CPU as a share of one core, and per scan.
//! 2. Latency: with the load still there, one of those processes opens a PTY master (told
//!    by SIGUSR1); the time until a `machine` record listing it with the master is in the
//!    file, over several tries (median and worst).
//!
//! Each process started here is in its own process group and killed on every exit path.

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::util::median;

/// The load: a parent holding `fds` fds of /dev/null forks `procs - 1` children that inherit
/// them. A process sent SIGUSR1 opens a PTY master, keeps it, and appends `opened PID MS` to
/// the report file.
const LOAD: &str = r#"
import os, sys, time, signal
procs, nfds, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
held = [os.open("/dev/null", os.O_RDONLY) for _ in range(nfds)]
masters = []
def opened(*_):
    masters.append(os.open("/dev/ptmx", os.O_RDWR | os.O_NOCTTY))
    with open(out, "a") as w:
        w.write("opened %d %d\n" % (os.getpid(), int(time.time() * 1000)))
signal.signal(signal.SIGUSR1, opened)
for _ in range(procs - 1):
    if os.fork() == 0:
        break
while True:
    signal.pause()
"#;

/// A process group killed (and reaped) on drop.
struct Group(Child);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group this bench created.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

fn spawn(cmd: &mut Command) -> Result<Group> {
    cmd.process_group(0);
    Ok(Group(cmd.spawn().with_context(|| format!("starting {cmd:?}"))?))
}

/// utime + stime of `pid` in seconds.
fn cpu_s(pid: u32) -> Result<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let rest = &s[s.rfind(')').context("stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((f[11].parse::<f64>()? + f[12].parse::<f64>()?) / hz)
}

/// Steady-state CPU of `top` over `secs` after `warm` seconds: (share of one core, per scan s).
fn top_cpu(pty_trace: &Path, work: &Path, name: &str, warm: u64, secs: u64) -> Result<(f64, f64)> {
    let jsonl = work.join(format!("{name}.jsonl"));
    let g = spawn(Command::new(pty_trace).args(["top", "--no-tui", "--interval", "1s", "--jsonl"]).arg(&jsonl).stdout(Stdio::null()))?;
    std::thread::sleep(Duration::from_secs(warm));
    let (c0, t0) = (cpu_s(g.0.id())?, Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let (c1, t1) = (cpu_s(g.0.id())?, Instant::now());
    drop(g);
    let wall = (t1 - t0).as_secs_f64();
    let scans = wall.round().max(1.0);
    Ok(((c1 - c0) / wall, (c1 - c0) / scans))
}

/// The processes of the load, once they all exist.
fn load_pids(parent: u32, procs: usize) -> Result<Vec<u32>> {
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        let kids = std::fs::read_to_string(format!("/proc/{parent}/task/{parent}/children")).unwrap_or_default();
        let mut pids: Vec<u32> = kids.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        pids.push(parent);
        if pids.len() >= procs {
            return Ok(pids);
        }
        if Instant::now() > until {
            bail!("only {} of {procs} load processes started", pids.len());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub struct TopOpts {
    pub quick: bool,
    pub procs: usize,
    pub fds: usize,
    pub out: Option<PathBuf>,
}

pub fn run(o: &TopOpts, pty_trace: &Path, work: &Path) -> Result<String> {
    let (warm, secs, tries) = if o.quick { (3, 5, 3) } else { (10, 30, 10) };
    eprintln!("bench top: {} s of top on the machine as it is", warm + secs);
    let (idle_core, idle_scan) = top_cpu(pty_trace, work, "idle", warm, secs)?;
    let baseline = std::fs::read_dir("/proc")?.flatten().filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok()).count();

    let opened = work.join("opened.txt");
    eprintln!("bench top: starting {} processes holding {} fds each", o.procs, o.fds);
    let load = spawn(Command::new("/usr/bin/python3").args(["-c", LOAD, &o.procs.to_string(), &o.fds.to_string()]).arg(&opened))?;
    let pids = load_pids(load.0.id(), o.procs)?;
    // Give the children time to install their SIGUSR1 handler (they inherit the parent's).
    std::thread::sleep(Duration::from_secs(1));
    eprintln!("bench top: {} s of top with them", warm + secs);
    let (busy_core, busy_scan) = top_cpu(pty_trace, work, "busy", warm, secs)?;
    // One orphaned master on the machine: the pool is no longer explained, and quiet fd tables
    // are re-read every 60 intervals instead of every 300 (procfs/machine.rs).
    // SAFETY: kill(2) on a load process this bench started.
    unsafe { libc::kill(pids[0] as i32, libc::SIGUSR1) };
    eprintln!("bench top: {} s of top with them and one orphaned PTY master", warm + secs);
    let (orphan_core, orphan_scan) = top_cpu(pty_trace, work, "orphan", warm, secs)?;

    // Latency: top runs; one load process at a time opens a master.
    let jsonl = work.join("latency.jsonl");
    let top = spawn(Command::new(pty_trace).args(["top", "--no-tui", "--interval", "1s", "--jsonl"]).arg(&jsonl).stdout(Stdio::null()))?;
    std::thread::sleep(Duration::from_secs(warm));
    let mut lat = Vec::new();
    for i in 0..tries {
        let pid = pids[1 + (i * 97 + 13) % (pids.len() - 1)];
        // SAFETY: kill(2) on a load process this bench started.
        unsafe { libc::kill(pid as i32, libc::SIGUSR1) };
        let until = Instant::now() + Duration::from_secs(30);
        let t_open = loop {
            let text = std::fs::read_to_string(&opened).unwrap_or_default();
            if let Some(ms) = text.lines().rev().find_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(1) == Some(&pid.to_string().as_str())).then(|| f.get(2)?.parse::<u64>().ok()).flatten()
            }) {
                break ms;
            }
            if Instant::now() > until {
                bail!("load process {pid} did not open its PTY");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // Seen when a record listing it is in the file: what a reader of `top` waits for.
        let seen = loop {
            let f = std::fs::File::open(&jsonl)?;
            let found = BufReader::new(f).lines().map_while(|l| l.ok()).filter_map(|l| serde_json::from_str::<Value>(&l).ok()).any(|r| {
                r["processes"].as_array().is_some_and(|ps| ps.iter().any(|p| p["pid"] == pid && p["masters"].as_u64() >= Some(1)))
            });
            if found {
                break std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
            }
            if Instant::now() > until {
                bail!("top did not list {pid}'s new PTY within 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        lat.push(seen.saturating_sub(t_open) as f64 / 1000.0);
    }
    drop(top);
    drop(load);
    let worst = lat.iter().cloned().fold(0.0, f64::max);
    let mut doc = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(doc, "### `pty-trace top`: cost on a busy machine, and time to see a new PTY\n");
    let _ = writeln!(doc, "`cargo xtask bench -- top{}`: `top --no-tui --interval 1s`, CPU from `/proc/PID/stat` over {secs} s after a {warm} s warm-up (the first scan reads every fd table once).\n", if o.quick { " --quick" } else { "" });
    let _ = writeln!(doc, "| machine | processes | tracer CPU, share of one core | CPU per scan |");
    let _ = writeln!(doc, "|---|---|---|---|");
    let _ = writeln!(doc, "| as it is | {baseline} | {:.2}% | {:.2} ms |", idle_core * 100.0, idle_scan * 1000.0);
    let _ = writeln!(doc, "| + {} processes x {} fds | {} | {:.2}% | {:.2} ms |", o.procs, o.fds, baseline + o.procs, busy_core * 100.0, busy_scan * 1000.0);
    let _ = writeln!(doc, "| same + 1 orphaned PTY master | {} | {:.2}% | {:.2} ms |", baseline + o.procs, orphan_core * 100.0, orphan_scan * 1000.0);
    let _ = writeln!(doc, "\nTarget: <= 2% of one core at 1 s with 1,000 processes.\n");
    let _ = writeln!(doc, "Time from a PTY master being opened (by one of the {} load processes) to a `machine` record listing it being in the JSONL file (polled every 20 ms), {tries} tries: median {:.2} s, worst {:.2} s (the interval is 1 s, so up to 1 s is waiting for the next scan).", o.procs, median(&lat), worst);
    Ok(doc)
}
