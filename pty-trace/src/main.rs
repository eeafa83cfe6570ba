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
    session::{Options, Output, Target, Tracer},
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
                trace(Target::Attach(vec![pid]), &common, None, None, false).map(|_| ())
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
            trace(Target::Attach(pids), &common, None, None, false)
        }
        Cmd::Run { common, child_output, gate, cmd } => trace(Target::Run(cmd), &common, child_output, gate.budget(), false),
        Cmd::Demo { common, commands, delay, fixed } => {
            let argv = demo::agent_argv(commands, delay, fixed)?;
            trace(Target::Run(argv), &common, None, None, true)
        }
    }
}

fn trace(
    target: Target,
    a: &TraceArgs,
    child_output: Option<std::path::PathBuf>,
    budget: Option<pty_trace::core::gate::Budget>,
    is_demo: bool,
) -> AppResult<i32> {
    let thresholds = a.thresholds()?;
    let tty = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let tui = tty && !a.no_tui && a.jsonl.as_deref() != Some("-");
    // Opened by the tracer once the target and every option have been checked.
    let output = match a.jsonl.as_deref() {
        Some("-") => Output::Stdout,
        Some(p) => Output::File(p.into()),
        None if tui => Output::Discard,
        None => Output::Stdout,
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
