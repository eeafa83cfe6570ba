//! `pty-trace` entry point: parse, dispatch to a subcommand, map errors to one line and an
//! exit code.

use std::io::{IsTerminal, Write};

use clap::Parser;
use pty_trace::{
    cli::{Cli, Cmd, TraceArgs},
    core::records::EndReason,
    demo, doctor,
    error::{AppError, AppResult, exit_code},
    output::summary::render_summaries,
    recording,
    core::watch::WatchRule,
    output::jsonl::Rotation,
    session::{Options, Output, Target, Tracer, WatchTarget},
    top,
};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "pty-trace: {e:#}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn dispatch(cli: Cli) -> AppResult<i32> {
    match cli.command {
        Cmd::Doctor { fix, probes } => {
            let r = doctor::run_checks(fix, probes);
            let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
            print!("{}", r.render(color));
            if r.tracing_can_work() {
                println!("tracing can work: yes");
                Ok(exit_code::OK)
            } else {
                println!("tracing can work: no");
                Err(AppError::DoctorFailed)
            }
        }
        Cmd::Report { file, json, format } => {
            recording::command(&file, if json { pty_trace::cli::ReportFormat::Json } else { format })
        }
        Cmd::Top(opts) => {
            // Enter on a row: the session view of `attach PID`, with its defaults.
            let mut attach = |pid: u32| -> AppResult<()> {
                let cli = Cli::try_parse_from(["pty-trace", "attach", &pid.to_string()]).map_err(|e| AppError::Other(e.into()))?;
                let Cmd::Attach { common, .. } = cli.command else { unreachable!("parsed an attach") };
                let pid = i32::try_from(pid).map_err(|_| AppError::BadTarget(format!("invalid PID {pid}")))?;
                trace(Target::Attach(vec![pid]), &common, Extras::default()).map(|_| ())
            };
            top::command(opts, &mut attach)
        }
        Cmd::DemoAgent { commands, delay, fixed } => {
            demo::agent(commands, delay, fixed)?;
            Ok(exit_code::OK)
        }
        Cmd::Attach { pids, common } => {
            let pids = pids
                .iter()
                .map(|p| p.parse::<i32>().map_err(|_| AppError::BadTarget(format!("invalid PID {p:?}: expected a number"))))
                .collect::<AppResult<Vec<_>>>()?;
            trace(Target::Attach(pids), &common, Extras::default())
        }
        Cmd::Run { common, child_output, gate, cmd } => {
            trace(Target::Run(cmd), &common, Extras { child_output, budget: gate.budget(), ..Extras::default() })
        }
        Cmd::Watch { matches, user, max_sessions, jsonl_dir, rotate_size, retain, common } => {
            let uid = user.as_deref().map(uid_of).transpose()?;
            let rule = WatchRule::new(&matches, uid).map_err(AppError::BadInput)?;
            if max_sessions == 0 {
                return Err(AppError::BadInput("--max-sessions must be at least 1".into()));
            }
            // A service's log: appended to and reopened on SIGHUP, in a directory only root (or
            // the sudo user) can write, so that no one can swap a rotated name for a link or FIFO.
            let output = match (jsonl_dir, common.jsonl.as_deref()) {
                (Some(dir), _) => {
                    pty_trace::output::safe_open::check_log_dir(&dir).map_err(AppError::BadInput)?;
                    Some(Output::Rotating(dir.join("watch.jsonl"), Some(Rotation { max_bytes: rotate_size, retain })))
                }
                (None, Some(p)) if p != "-" => Some(Output::Rotating(p.into(), None)),
                _ => None,
            };
            let target = Target::Watch(WatchTarget { rule, max_sessions });
            trace(target, &common, Extras { output, headless: true, ..Extras::default() })
        }
        Cmd::Demo { common, commands, delay, fixed } => {
            let argv = demo::agent_argv(commands, delay, fixed)?;
            trace(Target::Run(argv), &common, Extras { is_demo: true, ..Extras::default() })
        }
    }
}

/// What a subcommand adds to its [`TraceArgs`].
#[derive(Default)]
struct Extras {
    /// `run --child-output`.
    child_output: Option<std::path::PathBuf>,
    /// `run --fail-on-leak`.
    budget: Option<pty_trace::core::gate::Budget>,
    is_demo: bool,
    /// An output other than `--jsonl`'s (`watch --jsonl-dir`).
    output: Option<Output>,
    /// Never the live view (`watch` is a service).
    headless: bool,
}

/// `--user`: a user name or a numeric uid.
fn uid_of(user: &str) -> AppResult<u32> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    let name = std::ffi::CString::new(user).map_err(|_| AppError::BadInput(format!("--user {user:?}: not a user name")))?;
    // SAFETY: getpwnam reads a NUL-terminated name; the entry is copied out at once.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        return Err(AppError::BadInput(format!("--user {user:?}: no such user")));
    }
    // SAFETY: non-null entry returned just now.
    Ok(unsafe { (*pw).pw_uid })
}

fn trace(target: Target, a: &TraceArgs, x: Extras) -> AppResult<i32> {
    let Extras { child_output, budget, is_demo, output, headless } = x;
    let thresholds = a.thresholds()?;
    let tty = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let tui = tty && !headless && !a.no_tui && a.jsonl.as_deref() != Some("-");
    // Opened by the tracer once the target and every option have been checked.
    let output = match (output, a.jsonl.as_deref()) {
        (Some(o), _) => o,
        (None, Some("-")) => Output::Stdout,
        (None, Some(p)) => Output::File(p.into()),
        (None, None) if tui => Output::Discard,
        (None, None) => Output::Stdout,
    };
    let jsonl_on_stdout = matches!(output, Output::Stdout);
    let opts = Options {
        interval: a.interval,
        duration: a.duration,
        ring_bytes: a.ring_buffer_size,
        debug_kernel: a.debug_kernel,
        probes: a.probes,
        verbose: a.verbose,
        thresholds,
        tui,
        child_output,
        on_rotate: a.on_rotate.clone(),
        on_rotate_shell: a.on_rotate_shell,
        exit_on_rotate: a.exit_on_rotate,
        budget,
        metrics: a.metrics.start("none")?,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Other(e.into()))?;
    let outcome = rt.block_on(async move {
        let tracer = Tracer::start(&target, opts, &output)?;
        AppResult::Ok(tracer.run(tui).await)
    })?;
    // The summary is for people: on stderr when stdout carries JSONL or the output failed. It
    // is printed before the probes are detached, which takes the kernel a second or more.
    // Written with errors ignored: the terminal may be gone (SIGHUP) or stdout closed.
    let mut text = render_summaries(&outcome.summaries);
    if outcome.dropped_records > 0 {
        text.push_str(&format!(
            "pty-trace: {} JSONL records were not written (the reader was too slow or the output failed)\n",
            outcome.dropped_records
        ));
    }
    if let Some(n) = outcome.watch_ended {
        // The sessions that ended earlier were summarized then (in the JSONL, not here).
        text.push_str(&format!(
            "pty-trace: watch: {} session(s) followed: {n} ended earlier (their summaries are in the JSONL), {} still running at the end\n",
            n + outcome.summaries.len() as u64,
            outcome.summaries.len()
        ));
    }
    let execs_lost = outcome.probes.counters().watch_execs_lost;
    if execs_lost > 0 {
        text.push_str(&format!(
            "pty-trace: watch: {execs_lost} exec(s) of untraced processes were not reported (ring buffer full): a match among them was found only by the look through /proc every 5 s\n"
        ));
    }
    if outcome.watch_skipped > 0 {
        text.push_str(&format!(
            "pty-trace: watch: {} matching process(es) were not followed: --max-sessions was reached\n",
            outcome.watch_skipped
        ));
    }
    if jsonl_on_stdout || outcome.output_failed {
        let _ = std::io::stderr().write_all(text.as_bytes());
    } else {
        let mut out = std::io::stdout();
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
    outcome.probes.detach();
    if let Some(e) = outcome.error {
        return Err(e);
    }
    // The leak gate's status replaces the command's, so CI fails the step.
    if outcome.summaries.iter().any(|s| s.gate.as_ref().is_some_and(|g| !g.passed)) {
        return Ok(exit_code::LEAK_GATE);
    }
    // `demo` stopped by the user is a normal end, not the agent's SIGTERM status.
    if is_demo && outcome.summaries.iter().all(|s| s.end_reason == EndReason::Interrupted) {
        return Ok(exit_code::OK);
    }
    Ok(outcome.exit_code)
}
