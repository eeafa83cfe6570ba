//! Reading a JSONL recording for `pty-trace report`: the file is split into one byte range per
//! core (on line boundaries), each range's lines go to a `core::report::Aggregate` in bounded
//! memory, and the aggregates are merged in file order.

use std::{
    fs::File,
    io::{BufRead, BufReader, Seek, SeekFrom},
    path::Path,
};

use crate::{
    core::report::{Aggregate, Report},
    error::{AppError, AppResult},
};

/// Files smaller than this are read by one thread.
const PARALLEL_MIN_BYTES: u64 = 8 << 20;

/// Reads `path` and builds its report.
pub fn report(path: &Path) -> AppResult<Report> {
    let len = std::fs::metadata(path)
        .map_err(|e| AppError::BadInput(format!("cannot open {}: {e}", path.display())))?
        .len();
    let threads = if len < PARALLEL_MIN_BYTES {
        1
    } else {
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(8) as u64
    };
    report_with(path, len, threads)
}

/// [`report`] with `threads` ranges (tests use it to check that splitting changes nothing).
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

/// Aggregates the lines whose first byte lies in `[start, end)`.
fn scan_range(path: &Path, start: u64, end: u64) -> AppResult<Aggregate> {
    let io_err = |e: std::io::Error| AppError::BadInput(format!("reading {}: {e}", path.display()));
    let mut f = File::open(path).map_err(|e| AppError::BadInput(format!("cannot open {}: {e}", path.display())))?;
    if start > 0 {
        f.seek(SeekFrom::Start(start - 1)).map_err(io_err)?;
    }
    let mut reader = BufReader::with_capacity(1 << 20, f);
    let mut pos = start;
    if start > 0 {
        // Skip the rest of the line that began before this range (the previous range owns it).
        let mut skipped = Vec::new();
        pos = start - 1 + reader.read_until(b'\n', &mut skipped).map_err(io_err)? as u64;
    }
    let mut agg = Aggregate::default();
    let mut raw = Vec::new();
    while pos < end {
        raw.clear();
        let n = reader.read_until(b'\n', &mut raw).map_err(io_err)?;
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
    use crate::core::report::{
        TIMELINE_POINTS,
        tests::{alert_line, snapshot_line},
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
    fn a_missing_file_is_bad_input() {
        match report(Path::new("/nonexistent/x.jsonl")) {
            Err(AppError::BadInput(m)) => assert!(m.contains("cannot open /nonexistent/x.jsonl"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
