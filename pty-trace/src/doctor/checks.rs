//! The individual checks, one function per row of the doctor table, in the order
//! [`run_checks`](super::run_checks) calls them, and the small pure helpers that decide them
//! (version parsing, thresholds, descriptions).
//!
//! Not here: the `Check` type and the row order (`mod.rs`), the raw BPF syscall behind the
//! `bpf-load` row (`bpf_load.rs`), the table (`render.rs`), and tracefs discovery and mounting
//! (`kernel::tracefs`, shared with the probe loader).

use std::fs;
use std::io;
use std::path::Path;

use super::{Check, render::one_line};
use crate::{
    core::records::ProbeBackend,
    error::AppError,
    kernel::{
        backend::ProbeChoice,
        features::{kernel_release, try_load_trivial_prog},
        probes::{LoadOptions, Probes},
    },
};
use crate::{error::os_error_text, kernel::tracefs};

/// The fentry probes need BPF trampolines (5.5), the ring buffer (5.8) and `kernel_clone`
/// (its name since 5.10); the tracepoint probes also `bpf_task_pt_regs` (5.15). Which backend
/// this kernel can run is the `probes` row's answer: it loads them.
pub(super) const MIN_KERNEL: (u32, u32) = (5, 10);
const KERNEL_NEEDS: &str = "needed for BPF trampolines, the BPF ring buffer and kernel_clone; the tracepoint probes need 5.15";

/// Tracepoints the tracer cannot work without, as (group, event) under `<tracefs>/events`.
const REQUIRED_TRACEPOINTS: &[(&str, &str)] = &[
    ("raw_syscalls", "sys_exit"),
    // close and close_range are followed when entered (fd numbers freed on one thread are
    // reused on another before the syscall returns).
    ("syscalls", "sys_enter_close"),
    ("syscalls", "sys_enter_close_range"),
    ("sched", "sched_process_fork"),
    ("sched", "sched_process_exec"),
    ("sched", "sched_process_exit"),
];

/// Syscalls the tracer follows (the kernel has those with `syscalls/sys_exit_X` metadata); the
/// rest are repaired by /proc reconciliation only.
fn followed_syscall_names() -> Vec<&'static str> {
    crate::kernel::syscalls::followed_syscall_names()
}

// ---------------------------------------------------------------------------------------------
// 1. kernel version

pub(super) fn check_kernel() -> Check {
    let release = kernel_release();
    match parse_kernel_version(&release) {
        Some(v) if kernel_supported(v) => Check {
            name: "kernel",
            ok: true,
            required: true,
            detail: format!("{release} (>= {}.{} {KERNEL_NEEDS})", MIN_KERNEL.0, MIN_KERNEL.1),
            fix: None,
        },
        Some(_) => Check {
            name: "kernel",
            ok: false,
            required: true,
            detail: format!("{release} is too old (>= {}.{} {KERNEL_NEEDS})", MIN_KERNEL.0, MIN_KERNEL.1),
            fix: Some(format!(
                "boot a Linux {}.{} or newer kernel",
                MIN_KERNEL.0, MIN_KERNEL.1
            )),
        },
        // An odd release string is no proof that the kernel is too old: warn, and let the BPF
        // load check below find out whether BPF really works.
        None => Check {
            name: "kernel",
            ok: false,
            required: false,
            detail: format!("cannot parse kernel release {release:?}"),
            fix: Some(format!(
                "make sure the kernel is >= {}.{}",
                MIN_KERNEL.0, MIN_KERNEL.1
            )),
        },
    }
}

/// "6.18.44-fc-v669" -> (6, 18). The minor number may be followed by anything ("6.1-rc1").
pub(super) fn parse_kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().splitn(3, '.');
    let major = parts.next()?.parse().ok()?;
    let minor_part = parts.next()?;
    let digits: String = minor_part
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    let minor = digits.parse().ok()?;
    Some((major, minor))
}

pub(super) fn kernel_supported(v: (u32, u32)) -> bool {
    v >= MIN_KERNEL
}

// ---------------------------------------------------------------------------------------------
// 2. BTF

pub(super) fn check_btf() -> Check {
    let path = "/sys/kernel/btf/vmlinux";
    let ok = Path::new(path).exists();
    Check {
        name: "btf",
        ok,
        // bpf_get_current_task_btf (fork and exec programs) needs the kernel's BTF.
        required: true,
        detail: if ok {
            format!("{path} present")
        } else {
            format!("{path} missing: the fork and exec programs need kernel BTF")
        },
        fix: Some("use a kernel built with CONFIG_DEBUG_INFO_BTF=y".to_string()),
    }
}

// ---------------------------------------------------------------------------------------------
// 3. tracefs

pub(super) fn check_tracefs(fix: bool) -> Check {
    let fail = |detail: String| Check {
        name: "tracefs",
        ok: false,
        required: true,
        detail,
        fix: Some(tracefs::TRACEFS_FIX.to_string()),
    };
    match tracefs::locate() {
        Ok(Some(path)) => Check {
            name: "tracefs",
            ok: true,
            required: true,
            detail: format!("mounted at {}", path.display()),
            fix: None,
        },
        Err(e) => fail(format!("cannot read {}: {e}", tracefs::PROC_MOUNTS)),
        Ok(None) if !fix => fail("not mounted".to_string()),
        Ok(None) => match tracefs::mount() {
            Err(why) => fail(format!("not mounted; --fix could not mount it: {why}")),
            // Trust /proc/mounts rather than the mount(2) return value.
            Ok(()) => match tracefs::locate() {
                Ok(Some(path)) => Check {
                    name: "tracefs",
                    ok: true,
                    required: true,
                    detail: format!("mounted at {} (just mounted by --fix)", path.display()),
                    fix: None,
                },
                Ok(None) => fail("mount reported success but tracefs is still not listed".into()),
                Err(e) => fail(format!("cannot read {}: {e}", tracefs::PROC_MOUNTS)),
            },
        },
    }
}

// ---------------------------------------------------------------------------------------------
// 4. permission to load BPF (the raw syscall is in bpf_load.rs)

pub(super) fn check_bpf_load() -> Check {
    match try_load_trivial_prog() {
        Ok(()) => Check {
            name: "bpf-load",
            ok: true,
            required: true,
            detail: "loaded a test program".to_string(),
            fix: None,
        },
        Err(err) => {
            let (detail, fix) = match err.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => {
                    let mut d = "not permitted (needs root or CAP_BPF+CAP_PERFMON)".to_string();
                    // SAFETY: geteuid cannot fail and has no preconditions.
                    if unsafe { libc::geteuid() } == 0 {
                        // Root was refused: the usual causes are not about privilege.
                        d.push_str(&format!(
                            "; refused even as root ({}): RLIMIT_MEMLOCK on kernels < 5.11, \
                             kernel lockdown, or a seccomp/LSM policy",
                            os_error_text(&err)
                        ));
                    }
                    (d, "run with sudo".to_string())
                }
                Some(libc::ENOSYS) => (
                    "bpf() syscall not available".to_string(),
                    "use a kernel built with CONFIG_BPF_SYSCALL=y".to_string(),
                ),
                _ => (
                    format!("loading a test program failed: {}", os_error_text(&err)),
                    "check dmesg; the kernel rejected a trivial BPF program".to_string(),
                ),
            };
            Check {
                name: "bpf-load",
                ok: false,
                required: true,
                detail,
                fix: Some(fix),
            }
        }
    }
}


// ---------------------------------------------------------------------------------------------
// 5. tracepoints

pub(super) fn check_tracepoints() -> Check {
    match tracefs::locate() {
        Ok(Some(base)) => tracepoints_under(&base),
        Ok(None) => Check {
            name: "tracepoints",
            ok: false,
            required: true,
            detail: "cannot check: tracefs is not mounted".to_string(),
            fix: Some(tracefs::TRACEFS_FIX.to_string()),
        },
        Err(e) => Check {
            name: "tracepoints",
            ok: false,
            required: true,
            detail: format!("cannot check: cannot read {}: {e}", tracefs::PROC_MOUNTS),
            fix: Some("make sure /proc is mounted".to_string()),
        },
    }
}

enum Presence {
    Present,
    Missing,
    Denied,
}

fn tracepoint_presence(base: &Path, group: &str, event: &str) -> Presence {
    match fs::metadata(base.join("events").join(group).join(event)) {
        Ok(m) if m.is_dir() => Presence::Present,
        Ok(_) => Presence::Missing,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Presence::Denied,
        Err(_) => Presence::Missing,
    }
}

/// The tracepoint check against a tracefs at `base` (a parameter so tests can use a fake tree).
fn tracepoints_under(base: &Path) -> Check {
    let mut missing = Vec::new();
    let mut denied = false;
    for &(group, event) in REQUIRED_TRACEPOINTS {
        match tracepoint_presence(base, group, event) {
            Presence::Present => {}
            Presence::Missing => missing.push(format!("{group}/{event}")),
            Presence::Denied => denied = true,
        }
    }
    if denied {
        // tracefs is mode 0700 on most systems: unprivileged users cannot even look.
        return Check {
            name: "tracepoints",
            ok: false,
            required: true,
            detail: format!("cannot read {}/events: permission denied", base.display()),
            fix: Some("run with sudo".to_string()),
        };
    }
    let followed = followed_syscall_names();
    let traceable = followed
        .iter()
        .filter(|s| tracefs::kernel_has_syscall(base, s))
        .count();
    let coverage = format!("followed syscalls this kernel has: {traceable}/{}", followed.len());
    if missing.is_empty() {
        Check {
            name: "tracepoints",
            ok: true,
            required: true,
            detail: format!(
                "all {} required present; {coverage}",
                REQUIRED_TRACEPOINTS.len()
            ),
            fix: None,
        }
    } else {
        Check {
            name: "tracepoints",
            ok: false,
            required: true,
            detail: format!("missing: {}; {coverage}", missing.join(", ")),
            fix: Some(
                "use a kernel built with CONFIG_FTRACE_SYSCALLS=y (syscall tracepoints)"
                    .to_string(),
            ),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 5b. the real programs, and the fast path the kernel may refuse

/// The `probes` and `fast-path` rows: loads and attaches the programs the way tracing would
/// (`--probes`/`PTY_TRACE_PROBES`, `auto` by default), and says which backend that is and why.
pub(super) fn check_probes(choice: ProbeChoice) -> [Check; 2] {
    // The smallest ring buffer: this only proves that everything loads and attaches.
    match Probes::load(LoadOptions::check(choice)) {
        Ok(p) => {
            let what = match p.backend {
                ProbeBackend::Fentry => "BPF trampolines on the followed syscalls and kernel_clone/execve, 3 sched tracepoints",
                ProbeBackend::Tracepoint => "raw tracepoint sys_exit, syscalls sys_enter_close and sys_enter_close_range, 3 sched tracepoints",
            };
            let detail = format!(
                "{} probes load and attach ({} attachments: {what}) in {:.0} ms{}",
                p.backend,
                p.attached_tracepoints,
                p.load_time.as_secs_f64() * 1e3,
                if p.missing_syscalls.is_empty() {
                    String::new()
                } else {
                    format!("; not followed here (left to /proc reconciliation): {}", p.missing_syscalls.join(", "))
                }
            );
            let fast = fast_path_row(p.backend, p.fallback.as_deref(), choice);
            p.detach();
            [Check { name: "probes", ok: true, required: true, detail, fix: None }, fast]
        }
        Err(e) => {
            let fix = match &e {
                AppError::UnsupportedKernel(_) => "see the line above; `--probes auto` picks what this kernel allows",
                _ => "see the rows above; run as root",
            };
            [
                Check { name: "probes", ok: false, required: true, detail: one_line(&e.to_string()), fix: Some(fix.to_string()) },
                Check {
                    name: "fast-path",
                    ok: false,
                    required: false,
                    detail: "unknown: no probes could load".to_string(),
                    fix: None,
                },
            ]
        }
    }
}

/// Whether tracing will use the fast path, and why not.
fn fast_path_row(backend: ProbeBackend, fallback: Option<&str>, choice: ProbeChoice) -> Check {
    match (backend, fallback) {
        (ProbeBackend::Fentry, _) => Check {
            name: "fast-path",
            ok: true,
            required: false,
            detail: "tracing will use BPF trampolines (fentry/fexit): only traced processes pay more than a map lookup, \
                     and no process takes the syscall slow path"
                .to_string(),
            fix: None,
        },
        (ProbeBackend::Tracepoint, Some(why)) => Check {
            name: "fast-path",
            ok: false,
            required: false,
            detail: format!(
                "BPF trampolines refused ({}): tracing will use the sys_exit tracepoint, so while tracing every syscall \
                 on the machine takes the syscall slow path (docs/BENCHMARKS.md measures the cost)",
                one_line(why)
            ),
            fix: Some("none needed; a kernel that allows BPF_PROG_TYPE_TRACING would make it possible".to_string()),
        },
        (ProbeBackend::Tracepoint, None) => Check {
            name: "fast-path",
            ok: choice == ProbeChoice::Tracepoint,
            required: false,
            detail: "tracepoint probes chosen (--probes tracepoint): every syscall on the machine takes the slow path while tracing"
                .to_string(),
            fix: Some("--probes auto uses BPF trampolines where the kernel allows them".to_string()),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// 6. pty usage

pub(super) fn check_pty() -> Check {
    let read = |p: &str| -> Result<u64, String> {
        let s = fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"))?;
        s.trim()
            .parse::<u64>()
            .map_err(|_| format!("unexpected content in {p}: {:?}", s.trim()))
    };
    match (
        read("/proc/sys/kernel/pty/nr"),
        read("/proc/sys/kernel/pty/max"),
    ) {
        (Ok(nr), Ok(max)) => {
            let high = pty_usage_high(nr, max);
            Check {
                name: "pty",
                ok: !high,
                required: false,
                detail: if high {
                    format!("{nr}/{max} in use (over 80%; new terminals may fail to open)")
                } else {
                    format!("{nr}/{max} in use")
                },
                fix: Some(format!(
                    "raise the limit: sudo sysctl -w kernel.pty.max={}",
                    max.saturating_mul(2).max(4096)
                )),
            }
        }
        (Err(e), _) | (_, Err(e)) => Check {
            name: "pty",
            ok: false,
            required: false,
            detail: e,
            fix: None,
        },
    }
}

/// True when more than 80% of the pty limit is used (or the limit is 0: nothing can open).
fn pty_usage_high(nr: u64, max: u64) -> bool {
    // nr > 0.8 * max, in integers; u128 so that no value can overflow.
    u128::from(nr) * 5 > u128::from(max) * 4 || max == 0
}

// ---------------------------------------------------------------------------------------------
// 7. RLIMIT_NOFILE

pub(super) fn check_nofile() -> Check {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Check {
            name: "nofile",
            ok: false,
            required: false,
            detail: format!("getrlimit failed: {}", io::Error::last_os_error()),
            fix: None,
        };
    }
    let show = |v: libc::rlim_t| {
        if v == libc::RLIM_INFINITY {
            "unlimited".to_string()
        } else {
            v.to_string()
        }
    };
    // The tracer holds fds for BPF maps, programs and links, and opens /proc files per
    // process; a soft limit below the common default of 1024 is likely to run out.
    let ok = nofile_ok(lim.rlim_cur);
    Check {
        name: "nofile",
        ok,
        required: false,
        detail: format!(
            "soft {}, hard {}{}",
            show(lim.rlim_cur),
            show(lim.rlim_max),
            if ok { "" } else { " (soft limit below 1024)" }
        ),
        fix: Some("raise it before running: ulimit -n 4096".to_string()),
    }
}

fn nofile_ok(soft: libc::rlim_t) -> bool {
    soft >= 1024
}

// ---------------------------------------------------------------------------------------------
// 8. unprivileged_bpf_disabled (information only)

pub(super) fn check_unprivileged_bpf() -> Check {
    let path = "/proc/sys/kernel/unprivileged_bpf_disabled";
    let detail = match fs::read_to_string(path) {
        Ok(s) => describe_unprivileged_bpf(s.trim()),
        Err(e) => format!("unknown (cannot read {path}: {e})"),
    };
    // Never a failure: pty-trace needs privileges either way.
    Check {
        name: "unprivileged-bpf",
        ok: true,
        required: false,
        detail,
        fix: None,
    }
}

fn describe_unprivileged_bpf(value: &str) -> String {
    let meaning = match value {
        "0" => "unprivileged BPF allowed",
        "1" => "unprivileged BPF off until reboot",
        "2" => "unprivileged BPF off, an admin can turn it on",
        _ => "unknown value",
    };
    format!("{value}: {meaning} (pty-trace needs root or CAP_BPF+CAP_PERFMON either way)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_versions() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_kernel_version("5.8.0"), Some((5, 8)));
        assert_eq!(parse_kernel_version("5.15.0-91-generic"), Some((5, 15)));
        assert_eq!(parse_kernel_version("6.1-rc1"), Some((6, 1)));
        assert_eq!(parse_kernel_version("4.19\n"), Some((4, 19)));
        assert_eq!(parse_kernel_version(""), None);
        assert_eq!(parse_kernel_version("6"), None);
        assert_eq!(parse_kernel_version("6.x"), None);
        assert_eq!(parse_kernel_version("v6.1"), None);
        assert_eq!(parse_kernel_version("99999999999.1"), None);
    }

    #[test]
    fn os_error_text_drops_the_number() {
        let e = io::Error::from_raw_os_error(libc::EPERM);
        assert_eq!(os_error_text(&e), "Operation not permitted");
        let custom = io::Error::other("plain message");
        assert_eq!(os_error_text(&custom), "plain message");
    }

    #[test]
    fn kernel_threshold_is_5_15() {
        assert!(kernel_supported((5, 15)));
        assert!(kernel_supported((5, 10)));
        assert!(kernel_supported((6, 0)));
        assert!(!kernel_supported((5, 9)));
        assert!(!kernel_supported((5, 8)));
        assert!(!kernel_supported((4, 19)));
    }

    #[test]
    fn pty_warning_above_80_percent() {
        assert!(!pty_usage_high(0, 4096));
        // 80% of 4096 is 3276.8: 3276 is under, 3277 is over.
        assert!(!pty_usage_high(3276, 4096));
        assert!(pty_usage_high(3277, 4096));
        assert!(pty_usage_high(4096, 4096));
        // Exactly 80% is not "more than 80%".
        assert!(!pty_usage_high(80, 100));
        assert!(pty_usage_high(81, 100));
        assert!(pty_usage_high(0, 0));
        assert!(!pty_usage_high(u64::MAX / 2, u64::MAX));
        assert!(pty_usage_high(u64::MAX, u64::MAX));
    }

    #[test]
    fn nofile_threshold() {
        assert!(nofile_ok(1024));
        assert!(nofile_ok(libc::RLIM_INFINITY));
        assert!(!nofile_ok(1023));
        assert!(!nofile_ok(0));
    }

    #[test]
    fn describes_unprivileged_bpf_values() {
        assert!(describe_unprivileged_bpf("2").starts_with("2: unprivileged BPF off, an admin"));
        assert!(describe_unprivileged_bpf("0").contains("allowed"));
        assert!(describe_unprivileged_bpf("7").contains("unknown value"));
    }

    #[test]
    fn tracepoints_in_a_fake_tracefs() {
        let base =
            std::env::temp_dir().join(format!("pty-trace-doctor-test-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        // Everything except the raw sys_exit tracepoint, and two followed syscalls.
        for &(group, event) in REQUIRED_TRACEPOINTS {
            if event != "sys_exit" {
                fs::create_dir_all(base.join("events").join(group).join(event)).unwrap();
            }
        }
        for s in ["sys_exit_openat", "sys_exit_close", "sys_enter_ioctl"] {
            fs::create_dir_all(base.join("events/syscalls").join(s)).unwrap();
        }
        let c = tracepoints_under(&base);
        assert!(!c.ok);
        assert!(c.required);
        assert!(c.detail.starts_with("missing: raw_syscalls/sys_exit;"), "{}", c.detail);
        let n = followed_syscall_names().len();
        // Only openat and close of the followed set have sys_exit metadata in the fake tree.
        assert!(c.detail.contains(&format!("2/{n}")), "{}", c.detail);

        fs::create_dir_all(base.join("events/raw_syscalls/sys_exit")).unwrap();
        let c = tracepoints_under(&base);
        assert!(c.ok, "{}", c.detail);
        assert!(c.detail.contains("all 6 required present"), "{}", c.detail);
        assert!(c.detail.contains(&format!("2/{n}")), "{}", c.detail);
        let _ = fs::remove_dir_all(&base);
    }
}
