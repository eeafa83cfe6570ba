//! The `--on-rotate` hook: started when a session must rotate, never waited for, never run as
//! root when a user ran pty-trace through sudo.

use std::process::Command;

use crate::core::{records::HookRec, redact::redact_argv};

/// Runs the `--on-rotate` command without waiting for it: without a shell unless asked, as the
/// user who invoked sudo (SUDO_UID/SUDO_GID) rather than root, with the decision in its
/// environment. Its outcome is recorded in the decision record.
pub fn run_rotate_hook(cmd: &str, shell: bool, session: u32, health: f64, reasons: &[String]) -> HookRec {
    use std::os::unix::process::CommandExt;
    let argv: Vec<String> = if shell {
        vec!["/bin/sh".into(), "-c".into(), cmd.into()]
    } else {
        match shlex::split(cmd) {
            Some(v) if !v.is_empty() => v,
            _ => return HookRec { argv: vec![crate::core::redact::redact_text(cmd)], pid: None, error: Some("cannot split the command line (unbalanced quotes?)".into()) },
        }
    };
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .env("PTY_TRACE_SESSION", session.to_string())
        .env("PTY_TRACE_HEALTH", format!("{health:.1}"))
        .env("PTY_TRACE_REASON", reasons.join("; "))
        .stdin(std::process::Stdio::null());
    if let Some((uid, gid)) = crate::sudo::invoking_user() {
        c.uid(uid).gid(gid);
    }
    match c.spawn() {
        Ok(child) => {
            let pid = child.id();
            // Reaped in the background so it never becomes a zombie of ours.
            std::thread::spawn(move || {
                let mut child = child;
                let _ = child.wait();
            });
            HookRec { argv: redact_argv(&argv), pid: Some(pid), error: None }
        }
        Err(e) => HookRec { argv: redact_argv(&argv), pid: None, error: Some(e.to_string()) },
    }
}

