//! The `--on-rotate` hook: checked when tracing starts, started when a session must rotate,
//! never waited for, and never run with root's identity or environment when a user ran
//! pty-trace through sudo.
//!
//! The hook starts from an empty environment: HOME, USER, LOGNAME and SHELL from the passwd
//! entry of the user it runs as, a fixed PATH, TERM and LANG/LC_* passed through, and the
//! decision in `PTY_TRACE_SESSION`, `PTY_TRACE_HEALTH` and `PTY_TRACE_REASON`. Nothing else of
//! root's environment (SUDO_*, cloud credentials, root's PATH) reaches it. Its cwd is that
//! user's home, or `/`. Its stdin is /dev/null; its stdout and stderr go to pty-trace's stderr,
//! or to /dev/null while the live view owns the terminal (so it never draws over the view and
//! never lands inside a JSONL stream on stdout).

use std::{
    ffi::{CStr, OsString},
    os::unix::ffi::OsStringExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use crate::{
    core::{records::HookRec, redact::redact_argv},
    error::{AppError, AppResult},
};

/// The hook's PATH: the system directories, in sudo's `secure_path` order.
pub const HOOK_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Variables passed through from pty-trace's environment (locale and terminal only).
const PASSED_THROUGH: &[&str] = &["TERM", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ"];

/// Who the hook runs as, from the passwd database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HookUser {
    pub uid: u32,
    pub gid: u32,
    pub name: String,
    pub home: PathBuf,
    pub shell: PathBuf,
}

impl HookUser {
    /// The user who ran sudo, or this process's own user.
    fn current() -> HookUser {
        // SAFETY: geteuid/getegid have no preconditions.
        let (uid, gid) = crate::sudo::invoking_user().unwrap_or_else(|| unsafe { (libc::geteuid(), libc::getegid()) });
        let mut u = passwd_entry(uid).unwrap_or(HookUser {
            uid,
            gid,
            name: uid.to_string(),
            home: PathBuf::from("/"),
            shell: PathBuf::from("/bin/sh"),
        });
        // SUDO_GID is the group sudo was run with: keep it over the passwd one.
        u.gid = gid;
        u
    }
}

/// The passwd entry of `uid` (getpwuid_r), if there is one.
fn passwd_entry(uid: u32) -> Option<HookUser> {
    let mut buf = vec![0u8; 16 << 10];
    // SAFETY: zeroed passwd is a valid out-parameter; buf outlives the call and the strings
    // read from it below.
    let mut pw: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: getpwuid_r filled these with NUL-terminated strings inside buf.
    let s = |p: *const libc::c_char| -> OsString {
        if p.is_null() { OsString::new() } else { OsString::from_vec(unsafe { CStr::from_ptr(p) }.to_bytes().to_vec()) }
    };
    Some(HookUser {
        uid,
        gid: pw.pw_gid,
        name: s(pw.pw_name).to_string_lossy().into_owned(),
        home: PathBuf::from(s(pw.pw_dir)),
        shell: PathBuf::from(s(pw.pw_shell)),
    })
}

/// A checked `--on-rotate` command, ready to start.
#[derive(Clone, Debug)]
pub struct RotateHook {
    argv: Vec<String>,
    user: HookUser,
    /// Where its stdout/stderr go: pty-trace's stderr, or nowhere (live view).
    to_stderr: bool,
}

impl RotateHook {
    /// Checks `cmd` at start: that it splits (balanced quotes), that its program exists and
    /// is executable on the hook's PATH, or with `shell`, that `/bin/sh -n` accepts it.
    pub fn prepare(cmd: &str, shell: bool, tui: bool) -> AppResult<RotateHook> {
        // Redacted: the error line may end up in a CI log.
        let shown = crate::core::redact::redact_text(cmd);
        let bad = |why: String| AppError::BadInput(format!("--on-rotate {shown:?}: {why}"));
        let argv: Vec<String> = if shell {
            let st = Command::new("/bin/sh")
                .args(["-n", "-c", cmd])
                .env_clear()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map_err(|e| bad(format!("cannot run /bin/sh to check it: {e}")))?;
            if !st.success() {
                return Err(bad("/bin/sh -n says it is not a valid shell command".into()));
            }
            vec!["/bin/sh".into(), "-c".into(), cmd.into()]
        } else {
            match shlex::split(cmd) {
                Some(v) if !v.is_empty() => v,
                Some(_) => return Err(bad("empty command".into())),
                None => return Err(bad("cannot split the command line (unbalanced quotes?)".into())),
            }
        };
        let program = locate(&argv[0], HOOK_PATH.as_ref()).map_err(|e| {
            bad(match (e, argv[0].contains('/')) {
                (Unrunnable::NotFound, true) => format!("{} does not exist", argv[0]),
                (Unrunnable::NotFound, false) => format!("{} not found on the hook's PATH ({HOOK_PATH}); give its full path", argv[0]),
                (Unrunnable::NotExecutable, _) => format!("{} is not an executable file", argv[0]),
            })
        })?;
        let mut argv = argv;
        argv[0] = program.display().to_string();
        Ok(RotateHook { argv, user: HookUser::current(), to_stderr: !tui })
    }

    /// The environment the hook gets (see the module doc), for `session` at `health`.
    pub fn environment(&self, session: u32, health: f64, reasons: &[String]) -> Vec<(String, String)> {
        let mut env = vec![
            ("HOME".to_string(), self.user.home.display().to_string()),
            ("USER".to_string(), self.user.name.clone()),
            ("LOGNAME".to_string(), self.user.name.clone()),
            ("SHELL".to_string(), self.user.shell.display().to_string()),
            ("PATH".to_string(), HOOK_PATH.to_string()),
        ];
        for k in PASSED_THROUGH {
            if let Ok(v) = std::env::var(k) {
                env.push((k.to_string(), v));
            }
        }
        env.push(("PTY_TRACE_SESSION".into(), session.to_string()));
        env.push(("PTY_TRACE_HEALTH".into(), format!("{health:.1}")));
        env.push(("PTY_TRACE_REASON".into(), reasons.join("; ")));
        env
    }

    /// Starts the hook without waiting for it; its outcome goes in the decision record.
    pub fn run(&self, session: u32, health: f64, reasons: &[String]) -> HookRec {
        use std::os::unix::process::CommandExt;
        let mut c = Command::new(&self.argv[0]);
        c.args(&self.argv[1..]).env_clear().envs(self.environment(session, health, reasons)).stdin(Stdio::null());
        let cwd = if self.user.home.is_dir() { self.user.home.as_path() } else { Path::new("/") };
        c.current_dir(cwd);
        if self.to_stderr {
            match std::io::stderr().as_fd_owned() {
                Ok(fd) => c.stdout(Stdio::from(fd)),
                Err(_) => c.stdout(Stdio::null()),
            };
        } else {
            c.stdout(Stdio::null()).stderr(Stdio::null());
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 && self.user.uid != 0 {
            // std drops root's supplementary groups when it changes the uid.
            c.uid(self.user.uid).gid(self.user.gid);
        }
        let argv = redact_argv(&self.argv);
        match c.spawn() {
            Ok(child) => {
                let pid = child.id();
                // Reaped in the background so it never becomes a zombie of ours.
                std::thread::spawn(move || {
                    let mut child = child;
                    let _ = child.wait();
                });
                HookRec { argv, pid: Some(pid), error: None }
            }
            Err(e) => HookRec { argv, pid: None, error: Some(e.to_string()) },
        }
    }
}

use super::spawn::{AsFdOwned, Unrunnable, locate};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_command_at_start() {
        let e = RotateHook::prepare("notify-send 'unbalanced", false, false).unwrap_err().to_string();
        assert!(e.contains("unbalanced quotes"), "{e}");
        let e = RotateHook::prepare("no-such-program-xyz --now", false, false).unwrap_err().to_string();
        assert!(e.contains("not found on the hook's PATH"), "{e}");
        let e = RotateHook::prepare("/nonexistent/hook", false, false).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        let e = RotateHook::prepare("echo 'a", true, false).unwrap_err().to_string();
        assert!(e.contains("not a valid shell command"), "{e}");
        let h = RotateHook::prepare("true --x", false, false).unwrap();
        assert!(h.argv[0].ends_with("/true"), "{:?}", h.argv);
        assert!(RotateHook::prepare("exit 0", true, false).is_ok());
    }

    #[test]
    fn the_environment_is_built_not_inherited() {
        let h = RotateHook::prepare("true", false, false).unwrap();
        let env = h.environment(7, 12.34, &["a".into(), "b".into()]);
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("PATH").as_deref(), Some(HOOK_PATH));
        assert_eq!(get("PTY_TRACE_SESSION").as_deref(), Some("7"));
        assert_eq!(get("PTY_TRACE_HEALTH").as_deref(), Some("12.3"));
        assert_eq!(get("PTY_TRACE_REASON").as_deref(), Some("a; b"));
        assert!(get("HOME").is_some() && get("USER").is_some() && get("LOGNAME").is_some() && get("SHELL").is_some());
        for (k, _) in &env {
            assert!(
                matches!(k.as_str(), "HOME" | "USER" | "LOGNAME" | "SHELL" | "PATH") || PASSED_THROUGH.contains(&k.as_str()) || k.starts_with("PTY_TRACE_"),
                "unexpected variable {k}"
            );
        }
    }
}
