//! `pty-trace` entry point: parse, dispatch, map errors to one line and an exit code.

use std::io::IsTerminal;

use clap::Parser;
use pty_trace::{
    cli::{Cli, Cmd, TraceArgs},
    demo, doctor,
    error::{AppError, AppResult, exit_code},
    jsonl::JsonlWriter,
    records::SummaryRec,
    report,
    score::Thresholds,
    tracer::{Options, Target, Tracer},
    view::LiveView,
};

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    let code = match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pty-trace: {e:#}");
            e.exit_code()
        }
    };
    std::process::exit(code);
}

fn dispatch(cli: Cli) -> AppResult<i32> {
    match cli.command {
        Cmd::Doctor { fix } => {
            let r = doctor::run_checks(fix);
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
        Cmd::Report { file, json } => {
            let r = report::build(&file)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r).map_err(anyhow::Error::from)?);
            } else {
                print!("{}", report::render_text(&r));
            }
            Ok(exit_code::OK)
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
            trace(Target::Attach(pids), &common, None, false)
        }
        Cmd::Run { common, child_output, cmd } => trace(Target::Run(cmd), &common, child_output, false),
        Cmd::Demo { common, commands, delay, fixed } => {
            let argv = demo::agent_argv(commands, delay, fixed)?;
            trace(Target::Run(argv), &common, None, true)
        }
    }
}

fn thresholds(a: &TraceArgs) -> AppResult<Thresholds> {
    let mut th = match &a.config {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .map_err(|e| AppError::BadInput(format!("cannot read config {}: {e}", p.display())))?;
            toml::from_str(&text).map_err(|e| {
                AppError::BadInput(format!("config {}: {}", p.display(), e.message()))
            })?
        }
        None => Thresholds::default(),
    };
    if let Some(v) = a.alert_health {
        th.alert_health = v;
    }
    if let Some(v) = a.rotate_health {
        th.rotate_health = v;
    }
    if let Some(v) = a.max_ptys {
        th.max_ptys = v;
    }
    if th.rotate_health > th.alert_health {
        return Err(AppError::BadInput(format!(
            "rotate health ({}) must not be above alert health ({})",
            th.rotate_health, th.alert_health
        )));
    }
    Ok(th)
}

fn trace(target: Target, a: &TraceArgs, child_output: Option<std::path::PathBuf>, is_demo: bool) -> AppResult<i32> {
    let thresholds = thresholds(a)?;
    let tty = std::io::stdout().is_terminal() && std::io::stdin().is_terminal();
    let tui = tty && !a.no_tui && a.jsonl.as_deref() != Some("-");
    let out = match a.jsonl.as_deref() {
        Some("-") => JsonlWriter::stdout(),
        Some(p) => JsonlWriter::create(std::path::Path::new(p)).map_err(|e| AppError::BadInput(format!("{e:#}")))?,
        None if tui => JsonlWriter::discard(),
        None => JsonlWriter::stdout(),
    };
    let jsonl_on_stdout = !out.is_discard() && out.path().is_none();
    let opts = Options {
        interval: a.interval,
        duration: a.duration,
        ring_bytes: a.ring_buffer_size,
        thresholds,
        tui,
        child_output,
        on_rotate: a.on_rotate.clone(),
        on_rotate_shell: a.on_rotate_shell,
        exit_on_rotate: a.exit_on_rotate,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AppError::Other(e.into()))?;
    let outcome = rt.block_on(async move {
        let mut tracer = Tracer::start(&target, opts, out)?;
        if tui {
            tracer.view = Some(LiveView::open()?);
        }
        tracer.run().await
    })?;
    // The summary is for people: on stderr when stdout carries JSONL. It is printed before the
    // probes are detached, which takes the kernel a second or more.
    let text = render_summaries(&outcome.summaries);
    if jsonl_on_stdout {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
    let _ = std::io::Write::flush(&mut std::io::stdout());
    outcome.probes.detach();
    // `demo` stopped by the user is a normal end, not the agent's SIGTERM status.
    if is_demo && outcome.summaries.iter().all(|s| s.end_reason == "interrupted") {
        return Ok(exit_code::OK);
    }
    Ok(outcome.exit_code)
}

fn render_summaries(sums: &[SummaryRec]) -> String {
    use std::fmt::Write;
    let mut o = String::new();
    for s in sums {
        let _ = writeln!(
            o,
            "pty-trace: session {} {} after {:.1}s ({}): {} commands, PTY peak {}, fd peak {}, health min {:.0} final {:.0}, lost events {}, drift {}",
            s.session,
            s.verdict,
            s.duration_s,
            s.end_reason,
            s.metrics.total_commands,
            s.metrics.pty_peak,
            s.metrics.fd_peak,
            s.metrics.health_score_min,
            s.metrics.health_score_final,
            s.lost_events,
            s.drift
        );
        for a in &s.actions {
            let _ = writeln!(o, "  decision: {} at {} (health {:.0}): {}", a.action, a.ts, a.health, a.reasons.join("; "));
        }
        if !s.leaked_at_end.is_empty() {
            let _ = writeln!(o, "  still open at the end: {}", s.leaked_at_end.len());
        }
    }
    o
}
