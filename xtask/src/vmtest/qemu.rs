//! Booting one VM with `qemu-system-x86_64` and never waiting on it forever: the serial console
//! is copied to `console.log` (and its `vmtest:` lines to stderr as progress), and the VM is
//! killed when it runs past its wall-clock limit or prints nothing for too long. Also the
//! choice between TCG and KVM: nested KVM hangs on some machines (right after the BIOS), so KVM
//! is used only when asked for or when a quick probe boot shows it works.

use std::{
    fs,
    io::{BufRead, BufReader, Write},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use super::initramfs::{EXIT_MARKER, HOST_ROOT_TAG, OUT_TAG, PROBE_ARG, PROBE_MARKER};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    pub fn name(self) -> &'static str {
        match self {
            Accel::Tcg => "tcg",
            Accel::Kvm => "kvm",
        }
    }
}

/// One boot.
#[derive(Debug, Clone)]
pub struct Vm {
    pub vmlinuz: PathBuf,
    pub initrd: PathBuf,
    /// Shared writable as the `vmout` 9p tag (None: no results directory, as in the probe).
    pub out_dir: Option<PathBuf>,
    pub console_log: PathBuf,
    pub accel: Accel,
    /// Killed after this long in all.
    pub limit: Duration,
    /// Killed after this long without a line on the console.
    pub silence: Duration,
    pub extra_append: Option<String>,
    /// Prefix of the progress lines (`vmtest: 6.12:`); None: no progress lines.
    pub progress: Option<String>,
}

/// How a boot ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The status after `VMTEST-EXIT` on the console (the plan's), if it got there.
    pub exit: Option<i32>,
    /// Why it was killed (limit or silence), if it was.
    pub killed: Option<String>,
    pub wall: Duration,
    /// Seconds of guest uptime when the kernel reached /init (the `up after` line).
    pub boot_secs: Option<f64>,
    /// The last lines of the console, for reports.
    pub tail: String,
    pub saw_probe_marker: bool,
    /// The guest kernel's first oops or panic, one line (see `crash_summary`).
    pub crash: Option<String>,
}

impl Outcome {
    /// Why this boot did not end normally, if it did not; one line.
    pub fn problem(&self) -> Option<String> {
        if let Some(c) = &self.crash {
            return Some(format!("the guest kernel crashed: {c}"));
        }
        if let Some(k) = &self.killed {
            return Some(k.clone());
        }
        match self.exit {
            Some(0) => None,
            Some(s) => Some(format!("the guest's plan ended with status {s}")),
            None => Some("the VM stopped without printing its exit status".into()),
        }
    }
}

/// The `qemu-system-x86_64` arguments for `vm`.
pub fn qemu_args(vm: &Vm) -> Vec<String> {
    let mut append = "console=ttyS0 panic=-1 quiet".to_string();
    if let Some(extra) = &vm.extra_append {
        append += " ";
        append += extra;
    }
    let mut args: Vec<String> = vec!["-accel".into()];
    match vm.accel {
        // One host thread for both vCPUs. With multi-threaded TCG, a guest kernel patching its
        // own code on one vCPU (text_poke_bp, as attaching or detaching a tracepoint does) while
        // the other runs it crashes the guest now and then ("Oops: int3" in do_exit or
        // trace_syscall_exit, seen on 6.12 and 7.2 with QEMU 7.2).
        Accel::Tcg => args.push("tcg,thread=single".into()),
        Accel::Kvm => args.extend(["kvm".into(), "-cpu".into(), "host".into()]),
    }
    args.extend(
        [
            "-m",
            "2048",
            "-smp",
            "2",
            "-nographic",
            "-no-reboot",
            // No network card: no iPXE option ROM to wait for, and the tests need none.
            "-nic",
            "none",
        ]
        .map(String::from),
    );
    args.extend(["-kernel".into(), vm.vmlinuz.display().to_string()]);
    args.extend(["-initrd".into(), vm.initrd.display().to_string()]);
    args.extend(["-append".into(), append]);
    args.extend([
        "-virtfs".into(),
        format!(
            "local,path=/,mount_tag={HOST_ROOT_TAG},security_model=none,readonly=on,multidevs=remap"
        ),
    ]);
    if let Some(out) = &vm.out_dir {
        args.extend([
            "-virtfs".into(),
            format!(
                "local,path={},mount_tag={OUT_TAG},security_model=none",
                out.display()
            ),
        ]);
    }
    args
}

/// The guest uptime in a `vmtest: kernel X up after 4.31s` line.
pub fn boot_secs(line: &str) -> Option<f64> {
    let rest = line.split(" up after ").nth(1)?;
    rest.trim().trim_end_matches('s').parse().ok()
}

/// The first oops, BUG or panic on a console, one line: the message, the process it hit and
/// where (`Oops: int3: 0000 [#1] PREEMPT SMP NOPTI (pty-trace, RIP do_exit+0x2f6/0xad0)`).
pub fn crash_summary(console: &str) -> Option<String> {
    const STARTS: &[&str] = &["Oops:", "BUG:", "general protection fault", "Kernel panic"];
    // Kernel lines start with `[ seconds]`; drop it.
    let text = |line: &str| -> String {
        let l = line.trim();
        match (l.starts_with('['), l.find(']')) {
            (true, Some(end)) => l[end + 1..].trim().to_string(),
            _ => l.to_string(),
        }
    };
    let lines: Vec<&str> = console.lines().collect();
    let at = lines
        .iter()
        .position(|l| STARTS.iter().any(|s| text(l).starts_with(s)))?;
    let message = text(lines[at]);
    let after = &lines[at + 1..lines.len().min(at + 40)];
    let comm = after.iter().find_map(|l| {
        let rest = &l[l.find(" Comm: ")? + " Comm: ".len()..];
        Some(rest.split_whitespace().next()?.to_string())
    });
    let rip = after.iter().find_map(|l| {
        let rest = &l[l.find("RIP: 0010:")? + "RIP: 0010:".len()..];
        Some(rest.split_whitespace().next()?.to_string())
    });
    let context: Vec<String> = [comm, rip.map(|r| format!("RIP {r}"))]
        .into_iter()
        .flatten()
        .collect();
    Some(if context.is_empty() {
        message
    } else {
        format!("{message} ({})", context.join(", "))
    })
}

/// The status in a `VMTEST-EXIT 0` line.
pub fn exit_status(line: &str) -> Option<i32> {
    let rest = line.trim().strip_prefix(EXIT_MARKER)?;
    rest.trim().parse().ok()
}

/// Boots `vm` and waits for it to power off, or kills it (see the module doc).
pub fn run(vm: &Vm) -> Result<Outcome> {
    let start = Instant::now();
    if let Some(dir) = vm.console_log.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let log = fs::File::create(&vm.console_log)
        .with_context(|| format!("creating {}", vm.console_log.display()))?;
    let mut child = Command::new("qemu-system-x86_64")
        .args(qemu_args(vm))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("could not start qemu-system-x86_64: install qemu-system-x86 (`cargo xtask setup` does)")?;

    #[derive(Default)]
    struct Seen {
        exit: Option<i32>,
        boot: Option<f64>,
        probe: bool,
        tail: Vec<String>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    // Milliseconds since `start` of the last console line.
    let last_line = Arc::new(AtomicU64::new(0));
    let log = Arc::new(Mutex::new(log));
    let mut readers = Vec::new();
    let stdout = child
        .stdout
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    let stderr = child
        .stderr
        .take()
        .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>);
    for stream in [stdout, stderr].into_iter().flatten() {
        let (seen, last_line, log) = (seen.clone(), last_line.clone(), log.clone());
        let progress = vm.progress.clone();
        readers.push(std::thread::spawn(move || {
            let mut reader = BufReader::new(stream);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf).replace('\r', "");
                buf.clear();
                if let Ok(mut log) = log.lock() {
                    let _ = log.write_all(line.as_bytes());
                }
                last_line.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
                let line = line.trim_end().to_string();
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(s) = exit_status(&line) {
                    seen.exit = Some(s);
                }
                if line.contains(PROBE_MARKER) {
                    seen.probe = true;
                }
                if let Some(b) = boot_secs(&line) {
                    seen.boot = Some(b);
                }
                if let (Some(prefix), Some(at)) = (&progress, line.find("vmtest: ")) {
                    eprintln!("{prefix} {}", &line[at + "vmtest: ".len()..]);
                }
                seen.tail.push(line);
                if seen.tail.len() > 30 {
                    seen.tail.remove(0);
                }
            }
        }));
    }

    let mut killed = None;
    loop {
        if child.try_wait().context("waiting for qemu")?.is_some() {
            break;
        }
        let now = start.elapsed();
        let quiet = now.saturating_sub(Duration::from_millis(last_line.load(Ordering::Relaxed)));
        let why = if now > vm.limit {
            Some(format!(
                "VM killed after {:.0}s (its time limit)",
                vm.limit.as_secs_f64()
            ))
        } else if quiet > vm.silence {
            Some(format!(
                "VM killed after {:.0}s without console output (hung?)",
                quiet.as_secs_f64()
            ))
        } else {
            None
        };
        if let Some(why) = why {
            let _ = child.kill();
            let _ = child.wait();
            killed = Some(why);
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for r in readers {
        let _ = r.join();
    }
    let seen = seen.lock().unwrap_or_else(|e| e.into_inner());
    let crash = fs::read_to_string(&vm.console_log)
        .ok()
        .and_then(|c| crash_summary(&c));
    Ok(Outcome {
        exit: seen.exit,
        killed,
        wall: start.elapsed(),
        boot_secs: seen.boot,
        tail: seen.tail.join("\n"),
        saw_probe_marker: seen.probe,
        crash,
    })
}

/// Whether KVM works here: `/dev/kvm` opens read-write and a probe boot of `vmlinuz` +
/// `initrd` reaches /init within 30 s. The answer is cached in `cache_file`, keyed by the
/// host's kernel and CPU, because on machines where nested KVM hangs the probe costs its whole
/// timeout.
pub fn kvm_works(vmlinuz: &Path, initrd: &Path, cache_file: &Path) -> Result<bool> {
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        return Ok(false);
    }
    let key = host_key();
    if let Ok(text) = fs::read_to_string(cache_file)
        && let Some(answer) = cached_probe(&text, &key)
    {
        return Ok(answer);
    }
    eprintln!("vmtest: probing KVM (a short boot, at most 30s; the answer is cached)");
    let vm = Vm {
        vmlinuz: vmlinuz.to_path_buf(),
        initrd: initrd.to_path_buf(),
        out_dir: None,
        console_log: cache_file.with_extension("console.log"),
        accel: Accel::Kvm,
        limit: Duration::from_secs(30),
        silence: Duration::from_secs(30),
        extra_append: Some(PROBE_ARG.into()),
        progress: None,
    };
    let works = run(&vm)?.saw_probe_marker;
    fs::write(cache_file, format!("{key}\n{works}\n"))
        .with_context(|| format!("writing {}", cache_file.display()))?;
    Ok(works)
}

/// The cached answer in a probe file if it was made on this host (`key` on its first line).
pub fn cached_probe(text: &str, key: &str) -> Option<bool> {
    let mut lines = text.lines();
    (lines.next()? == key).then_some(())?;
    lines.next()?.trim().parse().ok()
}

/// The host's kernel release and CPU model, one line.
fn host_key() -> String {
    let release = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix("model name")
                .map(|r| r.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_default();
    format!("{} / {cpu}", release.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm() -> Vm {
        Vm {
            vmlinuz: "/c/vmlinuz".into(),
            initrd: "/c/initrd.gz".into(),
            out_dir: Some("/w/target/vmtest/out/6.12".into()),
            console_log: "/w/console.log".into(),
            accel: Accel::Tcg,
            limit: Duration::from_secs(60),
            silence: Duration::from_secs(60),
            extra_append: None,
            progress: None,
        }
    }

    #[test]
    fn arguments() {
        let args = qemu_args(&vm()).join(" ");
        assert_eq!(
            args,
            "-accel tcg,thread=single -m 2048 -smp 2 -nographic -no-reboot -nic none -kernel /c/vmlinuz \
             -initrd /c/initrd.gz -append console=ttyS0 panic=-1 quiet \
             -virtfs local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap \
             -virtfs local,path=/w/target/vmtest/out/6.12,mount_tag=vmout,security_model=none"
        );
        let probe = Vm {
            accel: Accel::Kvm,
            out_dir: None,
            extra_append: Some(PROBE_ARG.into()),
            ..vm()
        };
        let args = qemu_args(&probe).join(" ");
        assert!(args.starts_with("-accel kvm -cpu host "), "{args}");
        assert!(args.contains("quiet vmtest.probe -virtfs"), "{args}");
        assert!(!args.contains("vmout"));
    }

    #[test]
    fn console_lines() {
        assert_eq!(exit_status("VMTEST-EXIT 0"), Some(0));
        assert_eq!(exit_status("VMTEST-EXIT 125\r"), Some(125));
        assert_eq!(exit_status("echo VMTEST-EXIT $?"), None);
        assert_eq!(
            boot_secs("vmtest: kernel 6.12.118+deb13-amd64 up after 4.31s"),
            Some(4.31)
        );
        assert_eq!(boot_secs("vmtest: fentry/doctor: started"), None);
    }

    #[test]
    fn problems() {
        let o = Outcome {
            exit: Some(0),
            killed: None,
            wall: Duration::ZERO,
            boot_secs: None,
            tail: String::new(),
            saw_probe_marker: false,
            crash: None,
        };
        assert_eq!(o.problem(), None);
        assert!(
            Outcome {
                exit: None,
                ..o.clone()
            }
            .problem()
            .is_some()
        );
        assert_eq!(
            Outcome {
                killed: Some("VM killed".into()),
                ..o.clone()
            }
            .problem()
            .as_deref(),
            Some("VM killed")
        );
        let crashed = Outcome {
            crash: Some("Oops: int3".into()),
            killed: Some("x".into()),
            ..o
        };
        assert_eq!(
            crashed.problem().as_deref(),
            Some("the guest kernel crashed: Oops: int3")
        );
    }

    #[test]
    fn crashes_on_the_console() {
        let console = "vmtest: fentry/doctor: started\n\
            [    6.843687] Oops: int3: 0000 [#1] PREEMPT SMP NOPTI\n\
            [    6.844295] CPU: 1 UID: 0 PID: 172 Comm: pty-trace Not tainted 6.12.118+deb13-amd64 #1\n\
            [    6.844433] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996)\n\
            [    6.844628] RIP: 0010:do_exit+0x2f6/0xad0\n\
            [    6.851002] Kernel panic - not syncing: Fatal exception in interrupt\n";
        assert_eq!(
            crash_summary(console).as_deref(),
            Some("Oops: int3: 0000 [#1] PREEMPT SMP NOPTI (pty-trace, RIP do_exit+0x2f6/0xad0)")
        );
        assert_eq!(
            crash_summary("[ 1.0] Kernel panic - not syncing: VFS: Unable to mount root fs\n")
                .as_deref(),
            Some("Kernel panic - not syncing: VFS: Unable to mount root fs")
        );
        assert_eq!(crash_summary("vmtest: all good\nVMTEST-EXIT 0\n"), None);
    }

    #[test]
    fn probe_cache() {
        assert_eq!(
            cached_probe("6.18 / EPYC\nfalse\n", "6.18 / EPYC"),
            Some(false)
        );
        assert_eq!(
            cached_probe("6.18 / EPYC\ntrue\n", "6.18 / EPYC"),
            Some(true)
        );
        assert_eq!(cached_probe("6.17 / EPYC\ntrue\n", "6.18 / EPYC"), None);
        assert_eq!(cached_probe("", "x"), None);
    }
}
