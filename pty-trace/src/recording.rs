//! `pty-trace report`: reads a JSONL recording and writes its report to standard output.
//!
//! A regular file is split into one byte range per core (on line boundaries), each range's
//! lines go to a `core::report::Aggregate` in bounded memory, and the aggregates are merged in
//! file order. Standard input (`-`), pipes (`<(cmd)`, i.e. `/dev/fd/N`), FIFOs and devices
//! cannot seek: they are streamed through one `Aggregate`. The exit status follows the verdict
//! (see [`exit_status`]); a reader that goes away (`| head`) ends the output quietly.

use std::{
    fs::File,
    io::{BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::Path,
};

use crate::{
    cli::ReportFormat,
    core::{
        report::{Aggregate, Report, ReportVerdict, render_text},
        report_markdown::render_markdown,
    },
    error::{AppError, AppResult, exit_code, os_error_text},
};

/// Files smaller than this are read by one thread.
const PARALLEL_MIN_BYTES: u64 = 8 << 20;
/// Read buffer of each reader.
const READ_BUFFER_BYTES: usize = 1 << 20;
/// The name `-` stands for.
pub const STDIN_LABEL: &str = "standard input";

/// `pty-trace report FILE [--format text|json|markdown]`: the report on standard output (a newer schema's records
/// also named on standard error); the exit status from the verdict.
pub fn command(file: &Path, format: ReportFormat) -> AppResult<i32> {
    let r = report(file)?;
    if let Some(w) = r.newer_schema_warning() {
        // A closed stderr must not stop the report.
        let _ = writeln!(std::io::stderr(), "pty-trace: {w}");
    }
    let out = match format {
        ReportFormat::Json => {
            let mut text = serde_json::to_string_pretty(&r).map_err(anyhow::Error::from)?;
            text.push('\n');
            text
        }
        ReportFormat::Markdown => render_markdown(&r),
        ReportFormat::Text => render_text(&r),
    };
    write_stdout(out.as_bytes())?;
    Ok(exit_status(r.verdict))
}

/// The exit status of a report: 0 for a summary's verdict (a leak included: the report did its
/// job), [`exit_code::REPORT_INCOMPLETE`] and [`exit_code::REPORT_UNKNOWN`] otherwise.
pub fn exit_status(v: ReportVerdict) -> i32 {
    match v {
        ReportVerdict::Healthy | ReportVerdict::LeakDetected | ReportVerdict::Recovered => exit_code::OK,
        ReportVerdict::Incomplete => exit_code::REPORT_INCOMPLETE,
        ReportVerdict::Unknown => exit_code::REPORT_UNKNOWN,
    }
}

/// Writes `bytes` to standard output. A reader that stopped reading (EPIPE: `report f | head`)
/// is not an error: the rest is dropped quietly, like ripgrep does. Any other failure (a full
/// disk) is one line and exit status 1.
fn write_stdout(bytes: &[u8]) -> AppResult<()> {
    write_all_or_reader_gone(&mut std::io::stdout().lock(), bytes)
        .map_err(|e| AppError::Other(anyhow::anyhow!("writing the report to standard output: {}", os_error_text(&e))))
}

fn write_all_or_reader_gone(out: &mut impl Write, bytes: &[u8]) -> std::io::Result<()> {
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

/// Reads `path` (`-`: standard input) and builds its report.
pub fn report(path: &Path) -> AppResult<Report> {
    if path == Path::new("-") {
        let agg = scan_stream(std::io::stdin().lock(), STDIN_LABEL)?;
        return agg.finish(STDIN_LABEL).map_err(AppError::BadInput);
    }
    let label = path.display().to_string();
    let f = File::open(path).map_err(|e| AppError::BadInput(format!("cannot open {label}: {e}")))?;
    let meta = f.metadata().map_err(|e| AppError::BadInput(format!("cannot open {label}: {e}")))?;
    if !meta.is_file() {
        // A pipe, FIFO or device: read once, in order.
        let agg = scan_stream(f, &label)?;
        return agg.finish(&label).map_err(AppError::BadInput);
    }
    let len = meta.len();
    let threads = if len < PARALLEL_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8) as u64
    };
    report_with(path, len, threads)
}

/// [`report`] of a regular file with `threads` ranges (tests use it to check that splitting
/// changes nothing).
pub fn report_with(path: &Path, len: u64, threads: u64) -> AppResult<Report> {
    let bounds: Vec<(u64, u64)> = (0..threads).map(|i| (len * i / threads, len * (i + 1) / threads)).collect();
    let parts: Vec<AppResult<Aggregate>> = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds.iter().map(|&(a, b)| scope.spawn(move || scan_range(path, a, b))).collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err(AppError::BadInput("report worker failed".into()))))
            .collect()
    });
    let mut all = Aggregate::default();
    for p in parts {
        all.merge(p?);
    }
    all.finish(&path.display().to_string()).map_err(AppError::BadInput)
}

fn read_error(label: &str) -> impl Fn(std::io::Error) -> AppError + '_ {
    move |e| AppError::BadInput(format!("reading {label}: {e}"))
}

/// Aggregates every line of a reader that cannot seek, to its end.
fn scan_stream(input: impl Read, label: &str) -> AppResult<Aggregate> {
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, input);
    let mut agg = Aggregate::default();
    let mut raw = Vec::new();
    loop {
        raw.clear();
        if reader.read_until(b'\n', &mut raw).map_err(read_error(label))? == 0 {
            return Ok(agg);
        }
        agg.line(&raw);
    }
}

/// Aggregates the lines whose first byte lies in `[start, end)`.
fn scan_range(path: &Path, start: u64, end: u64) -> AppResult<Aggregate> {
    let label = path.display().to_string();
    let io_err = read_error(&label);
    let mut f = File::open(path).map_err(|e| AppError::BadInput(format!("cannot open {label}: {e}")))?;
    if start > 0 {
        f.seek(SeekFrom::Start(start - 1)).map_err(&io_err)?;
    }
    let mut reader = BufReader::with_capacity(READ_BUFFER_BYTES, f);
    let mut pos = start;
    if start > 0 {
        // Skip the rest of the line that began before this range (the previous range owns it).
        let mut skipped = Vec::new();
        pos = start - 1 + reader.read_until(b'\n', &mut skipped).map_err(&io_err)? as u64;
    }
    let mut agg = Aggregate::default();
    let mut raw = Vec::new();
    while pos < end {
        raw.clear();
        let n = reader.read_until(b'\n', &mut raw).map_err(&io_err)?;
        if n == 0 {
            break;
        }
        pos += n as u64;
        agg.line(&raw);
    }
    Ok(agg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::{
        records::Verdict,
        report::{
            TIMELINE_POINTS,
            tests::{alert_line, snapshot_line, summary_line},
        },
    };

    #[test]
    fn split_ranges_give_the_same_report_as_one_pass() {
        let mut text = String::new();
        for i in 0..3000u64 {
            let ptys = ((i * 7) % 40) as usize;
            text.push_str(&snapshot_line(&format!("t{i}"), 1 + (i % 2) as u32, 100.0 - (i % 50) as f64, i as usize, (i % 97) as usize, ptys, ptys / 2));
            text.push('\n');
            if i % 401 == 0 {
                text.push_str("{broken line\n");
            }
            if i == 1500 {
                text.push_str(&alert_line("ta", 1, 60.0));
                text.push('\n');
            }
        }
        let p = std::env::temp_dir().join(format!("pty-trace-recording-{}-split", std::process::id()));
        std::fs::write(&p, &text).unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        let one = report_with(&p, len, 1).unwrap();
        for threads in [2, 3, 7] {
            let many = report_with(&p, len, threads).unwrap();
            assert_eq!(many.counts, one.counts, "{threads} threads");
            assert_eq!(many.sessions.len(), one.sessions.len());
            for (a, b) in one.sessions.iter().zip(&many.sessions) {
                assert_eq!((a.snapshots, a.pty_peak, a.fd_peak, a.orphaned_peak, a.commands), (b.snapshots, b.pty_peak, b.fd_peak, b.orphaned_peak, b.commands));
                assert_eq!((a.health_min, a.health_final, &a.first_ts, &a.last_ts), (b.health_min, b.health_final, &b.first_ts, &b.last_ts));
                assert_eq!(a.top_holder.as_ref().map(|c| c.pid), b.top_holder.as_ref().map(|c| c.pid));
                assert_eq!(a.alerts, b.alerts);
                assert!(b.timeline.len() < TIMELINE_POINTS);
            }
        }
        assert_eq!(one.counts.malformed_lines, 8);
        assert_eq!(one.counts.malformed_line_numbers[0], 2);
        assert_eq!(one.sessions[0].alerts.len(), 1);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn a_stream_gives_the_same_report_as_the_file() {
        let mut text = String::new();
        for i in 0..500u64 {
            text.push_str(&snapshot_line(&format!("t{i}"), 1, 100.0 - (i % 50) as f64, i as usize, (i % 97) as usize, (i % 9) as usize, 0));
            text.push('\n');
        }
        text.push_str("{broken\n");
        text.push_str(&summary_line("tz", 1, Verdict::Healthy));
        let p = std::env::temp_dir().join(format!("pty-trace-recording-{}-stream", std::process::id()));
        std::fs::write(&p, &text).unwrap();
        let file = report_with(&p, text.len() as u64, 1).unwrap();
        let stream = scan_stream(text.as_bytes(), "s").unwrap().finish("s").unwrap();
        assert_eq!(stream.counts, file.counts);
        assert_eq!((stream.verdict, stream.sessions[0].snapshots, &stream.sessions[0].timeline), (file.verdict, 500, &file.sessions[0].timeline));
        assert_eq!(stream.verdict, ReportVerdict::Healthy);
        // Its last line has no newline: still read.
        assert_eq!(stream.counts.lines, 502);
        std::fs::remove_file(&p).unwrap();
    }

    #[test]
    fn exit_status_follows_the_verdict() {
        use ReportVerdict::*;
        let got: Vec<i32> = [Healthy, LeakDetected, Recovered, Incomplete, Unknown].into_iter().map(exit_status).collect();
        assert_eq!(got, vec![0, 0, 0, exit_code::REPORT_INCOMPLETE, exit_code::REPORT_UNKNOWN]);
    }

    /// A writer that fails every write with `kind`.
    struct Failing(std::io::ErrorKind);
    impl Write for Failing {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(self.0.into())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_reader_gone_ends_the_output_quietly_and_other_write_errors_do_not() {
        assert!(write_all_or_reader_gone(&mut Failing(std::io::ErrorKind::BrokenPipe), b"x\n").is_ok());
        let e = write_all_or_reader_gone(&mut Failing(std::io::ErrorKind::StorageFull), b"x\n").unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::StorageFull);
        let mut v = Vec::new();
        write_all_or_reader_gone(&mut v, b"x\n").unwrap();
        assert_eq!(v, b"x\n");
    }

    #[test]
    fn a_missing_file_is_bad_input() {
        match report(Path::new("/nonexistent/x.jsonl")) {
            Err(AppError::BadInput(m)) => assert!(m.contains("cannot open /nonexistent/x.jsonl"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
