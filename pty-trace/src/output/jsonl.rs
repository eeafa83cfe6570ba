//! The JSONL output: one JSON object per line, every one with `type`, `schema` and `ts`.
//!
//! Writing never blocks the event loop: records are serialized here, batched until `flush`,
//! and handed to a writer thread through a queue bounded in bytes. A reader that stops
//! reading (a stalled FIFO, a paused `| less`) fills the queue; later batches are dropped and
//! counted (`dropped_records`), and tracing still answers signals. A write error stops the
//! writer: on a regular file the partial last line is cut off again (`ftruncate` to the last
//! whole line), and the tracer learns of it through [`JsonlWriter::failure`] and ends the way
//! Ctrl-C does. EPIPE (the reader went away, `| head`) is [`OutputFailure::Closed`]: quiet.

use std::{
    io::{self, Write},
    os::fd::AsFd,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use serde::Serialize;

use super::safe_open::OutputFile;
use crate::core::records::{Envelope, RecordKind, SCHEMA_VERSION};

/// Bytes that may wait for the writer thread before batches are dropped.
pub const QUEUE_BYTES: u64 = 16 << 20;

/// Why the output stopped taking records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OutputFailure {
    /// EPIPE: whoever read the stream has gone (`| head`). Not an error to shout about.
    Closed,
    /// Any other write error, as one line naming the output.
    Error(String),
}

/// What the writer thread and the tracer share.
#[derive(Default)]
struct Shared {
    failure: Mutex<Option<OutputFailure>>,
    /// Bytes and records sent to the writer thread and not yet written.
    queued_bytes: AtomicU64,
    queued_records: AtomicU64,
    /// Records dropped: queue full, or never written after a failure.
    dropped: AtomicU64,
}

impl Shared {
    fn dequeued(&self, b: &Batch) {
        self.queued_bytes.fetch_sub(b.bytes.len() as u64, Ordering::AcqRel);
        self.queued_records.fetch_sub(b.records, Ordering::AcqRel);
    }
}

/// One batch: whole lines and how many records they hold.
struct Batch {
    bytes: Vec<u8>,
    records: u64,
}

/// What the writer thread is sent.
enum Msg {
    Batch(Batch),
    /// Close the file and open its path again (SIGHUP: logrotate moved it away).
    Reopen,
}

/// `watch --jsonl-dir`: the file is renamed to `NAME.1` (`.1` to `.2`, ...) once it reaches
/// `max_bytes`, and at most `retain` renamed files are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rotation {
    pub max_bytes: u64,
    pub retain: u32,
}

/// The file behind a rotating or reopenable output.
struct Reopenable {
    path: PathBuf,
    rotation: Option<Rotation>,
}

pub struct JsonlWriter {
    /// None: records are built (for the live view) but not written.
    tx: Option<mpsc::Sender<Msg>>,
    thread: Option<std::thread::JoinHandle<()>>,
    shared: Arc<Shared>,
    path: Option<PathBuf>,
    pending: Vec<u8>,
    pending_records: u64,
    queue_limit: u64,
}

impl JsonlWriter {
    pub fn discard() -> Self {
        JsonlWriter {
            tx: None,
            thread: None,
            shared: Arc::default(),
            path: None,
            pending: Vec::new(),
            pending_records: 0,
            queue_limit: QUEUE_BYTES,
        }
    }

    /// Records to stdout (a duplicate of fd 1, so that no lock of `io::stdout` is held by a
    /// writer blocked on a stalled reader).
    pub fn stdout() -> io::Result<Self> {
        let fd = io::stdout().as_fd().try_clone_to_owned()?;
        Ok(Self::spawn(std::fs::File::from(fd), None, false, "stdout".into(), None))
    }

    /// Records to a file opened by [`super::safe_open::open_output`].
    pub fn file(out: OutputFile) -> Self {
        let name = out.path.display().to_string();
        Self::spawn(out.file, Some(out.path), out.regular, name, None)
    }

    /// Records appended to `path` (created if missing), renamed away by size (`rotation`), and
    /// opened again on [`Self::reopen`]: `watch --jsonl-dir`.
    pub fn appending(path: &Path, rotation: Option<Rotation>) -> Result<Self, String> {
        let out = open_log(path)?;
        let name = out.path.display().to_string();
        let again = Reopenable { path: path.to_path_buf(), rotation };
        Ok(Self::spawn(out.file, Some(out.path), out.regular, name, Some(again)))
    }

    /// Asks the writer to close the file and open its path again (after the batches already
    /// sent). A no-op for outputs that are not files opened by [`Self::appending`].
    pub fn reopen(&mut self) {
        self.flush();
        if let Some(tx) = self.tx.as_ref() {
            let _ = tx.send(Msg::Reopen);
        }
    }

    /// Creates `path` (see `safe_open`) and writes to it.
    pub fn create(path: &Path) -> Result<Self, String> {
        Ok(Self::file(super::safe_open::open_output(path, "JSONL file")?))
    }

    fn spawn(file: std::fs::File, path: Option<PathBuf>, regular: bool, name: String, again: Option<Reopenable>) -> Self {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel::<Msg>();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("jsonl-writer".into())
            .spawn(move || write_batches(file, regular, &name, &rx, &s, again))
            .expect("spawning the JSONL writer thread");
        JsonlWriter {
            tx: Some(tx),
            thread: Some(thread),
            shared,
            path,
            pending: Vec::new(),
            pending_records: 0,
            queue_limit: QUEUE_BYTES,
        }
    }

    /// Another queue bound (`PTY_TRACE_OUTPUT_QUEUE_BYTES`, for tests of back-pressure).
    pub fn with_queue_limit(mut self, bytes: u64) -> Self {
        self.queue_limit = bytes;
        self
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    pub fn is_discard(&self) -> bool {
        self.tx.is_none() && self.thread.is_none()
    }

    /// Adds one record to the current batch (sent by [`Self::flush`]).
    pub fn write<T: Serialize>(&mut self, kind: RecordKind, ts: &str, body: &T) {
        if self.tx.is_none() {
            return;
        }
        let env = Envelope { kind, schema: SCHEMA_VERSION, ts, body };
        let before = self.pending.len();
        match serde_json::to_writer(&mut self.pending, &env) {
            Ok(()) => {
                self.pending.push(b'\n');
                self.pending_records += 1;
            }
            // Serializing our own records cannot fail short of a bug; count it rather than
            // write half a line.
            Err(_) => {
                self.pending.truncate(before);
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Hands the batch to the writer thread, or drops it (counted) when the queue is full or
    /// the output has failed. Never blocks.
    pub fn flush(&mut self) {
        let Some(tx) = self.tx.as_ref() else { return };
        if self.pending.is_empty() {
            return;
        }
        let bytes = std::mem::take(&mut self.pending);
        let records = std::mem::take(&mut self.pending_records);
        let len = bytes.len() as u64;
        let queued = self.shared.queued_bytes.load(Ordering::Acquire);
        if self.failure().is_some() || queued + len > self.queue_limit {
            self.shared.dropped.fetch_add(records, Ordering::Relaxed);
            return;
        }
        self.shared.queued_bytes.fetch_add(len, Ordering::AcqRel);
        self.shared.queued_records.fetch_add(records, Ordering::AcqRel);
        if let Err(mpsc::SendError(Msg::Batch(b))) = tx.send(Msg::Batch(Batch { bytes, records })) {
            self.shared.dequeued(&b);
            self.shared.dropped.fetch_add(records, Ordering::Relaxed);
        }
    }

    /// Why the output stopped, if it did.
    pub fn failure(&self) -> Option<OutputFailure> {
        self.shared.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Records dropped so far (queue full, or after a failure).
    pub fn dropped_records(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Sends what is pending and waits up to `timeout` for the writer to write everything.
    /// Records still queued then (a reader that stopped reading) are counted as dropped; the
    /// writer thread is left blocked and ends with the process.
    pub fn close(&mut self, timeout: Duration) {
        self.flush();
        drop(self.tx.take());
        let Some(thread) = self.thread.take() else { return };
        let until = Instant::now() + timeout;
        while !thread.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        if thread.is_finished() {
            let _ = thread.join();
        } else {
            let stuck = self.shared.queued_records.swap(0, Ordering::AcqRel);
            self.shared.dropped.fetch_add(stuck, Ordering::Relaxed);
        }
    }
}

/// The writer thread: writes each batch whole; on the first error records why, cuts a
/// regular file back to its last whole line, and counts everything after as dropped. With
/// `again`, it also rotates the file by size and reopens it on request.
fn write_batches(mut file: std::fs::File, regular: bool, name: &str, rx: &mpsc::Receiver<Msg>, shared: &Shared, again: Option<Reopenable>) {
    // The file's length when opened (appending) plus what this thread wrote since.
    let mut size: u64 = if again.is_some() { file.metadata().map(|m| m.len()).unwrap_or(0) } else { 0 };
    let mut failed = false;
    let fail = |shared: &Shared, f: OutputFailure| {
        if let Ok(mut slot) = shared.failure.lock() {
            *slot = Some(f);
        }
    };
    while let Ok(msg) = rx.recv() {
        let batch = match msg {
            Msg::Batch(b) => b,
            Msg::Reopen => {
                if let (Some(a), false) = (again.as_ref(), failed) {
                    match open_log(&a.path) {
                        Ok(out) => {
                            file = out.file;
                            size = file.metadata().map(|m| m.len()).unwrap_or(0);
                        }
                        Err(e) => {
                            failed = true;
                            fail(shared, OutputFailure::Error(format!("reopening {name}: {e}")));
                        }
                    }
                }
                continue;
            }
        };
        if failed {
            shared.dequeued(&batch);
            shared.dropped.fetch_add(batch.records, Ordering::Relaxed);
            continue;
        }
        match file.write_all(&batch.bytes) {
            Ok(()) => {
                size += batch.bytes.len() as u64;
                shared.dequeued(&batch);
            }
            Err(e) => {
                failed = true;
                if regular {
                    // Never leave half a line: the file ends with the last whole batch.
                    let _ = file.set_len(size);
                }
                let f = if e.kind() == io::ErrorKind::BrokenPipe {
                    OutputFailure::Closed
                } else {
                    OutputFailure::Error(format!("writing JSONL to {name}: {}", crate::error::os_error_text(&e)))
                };
                fail(shared, f);
                shared.dequeued(&batch);
                shared.dropped.fetch_add(batch.records, Ordering::Relaxed);
                continue;
            }
        }
        if let Some((a, rot)) = again.as_ref().and_then(|a| a.rotation.map(|r| (a, r)))
            && size >= rot.max_bytes
        {
            match rotate(&a.path, rot.retain) {
                Ok(out) => {
                    file = out.file;
                    size = 0;
                }
                Err(e) => {
                    failed = true;
                    fail(shared, OutputFailure::Error(format!("rotating {name}: {e}")));
                }
            }
        }
    }
}

/// `path.N` for the Nth rotated file.
pub fn rotated_name(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

/// Renames `path` to `path.1` (after `.1` to `.2` and so on, the oldest beyond `retain`
/// removed) and creates `path` again. Renaming a name never follows a symlink.
fn rotate(path: &Path, retain: u32) -> Result<OutputFile, String> {
    let gone = |e: &io::Error| e.kind() == io::ErrorKind::NotFound;
    if retain == 0 {
        std::fs::remove_file(path).or_else(|e| if gone(&e) { Ok(()) } else { Err(e) }).map_err(|e| e.to_string())?;
    } else {
        let _ = std::fs::remove_file(rotated_name(path, retain));
        for n in (1..retain).rev() {
            match std::fs::rename(rotated_name(path, n), rotated_name(path, n + 1)) {
                Err(e) if !gone(&e) => return Err(e.to_string()),
                _ => {}
            }
        }
        std::fs::rename(path, rotated_name(path, 1)).map_err(|e| e.to_string())?;
    }
    open_log(path)
}

/// A log file to append to: a regular file only (a FIFO or a terminal cannot be rotated).
fn open_log(path: &Path) -> Result<OutputFile, String> {
    let out = super::safe_open::open_output_appending(path, "JSONL file")?;
    if !out.regular {
        return Err(format!("refusing to write the JSONL log to {}: not a regular file", path.display()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[derive(Serialize)]
    struct B {
        session: u32,
    }

    #[test]
    fn writes_whole_lines_to_a_private_file() {
        let dir = std::env::temp_dir().join(format!("pty-trace-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        let _ = std::fs::remove_file(&path);
        let mut w = JsonlWriter::create(&path).unwrap();
        w.write(RecordKind::Snapshot, "T", &B { session: 7 });
        w.flush();
        w.close(Duration::from_secs(5));
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"type\":\"snapshot\",\"schema\":1,\"ts\":\"T\",\"session\":7}\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(w.dropped_records(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A pipe nobody reads: the queue fills, later batches are dropped and counted, and
    /// neither `flush` nor `close` blocks.
    #[test]
    fn a_stalled_reader_never_blocks_and_drops_are_counted() {
        let (r, w) = std::io::pipe().unwrap();
        let out = OutputFile { file: std::fs::File::from(std::os::fd::OwnedFd::from(w)), path: "pipe".into(), regular: false };
        let mut w = JsonlWriter::file(out).with_queue_limit(256 << 10);
        let t = Instant::now();
        for i in 0..20_000 {
            w.write(RecordKind::Snapshot, "2026-12-02T00:00:00.000Z", &B { session: i });
            if i % 100 == 99 {
                w.flush();
            }
        }
        w.close(Duration::from_millis(200));
        assert!(t.elapsed() < Duration::from_secs(3), "took {:?}", t.elapsed());
        assert!(w.dropped_records() > 10_000, "dropped {}", w.dropped_records());
        assert_eq!(w.failure(), None);
        drop(r);
    }

    #[test]
    fn rotates_by_size_keeps_retain_files_and_reopens() {
        let dir = std::env::temp_dir().join(format!("pty-trace-jsonl-rot-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("watch.jsonl");
        // An existing log is appended to, not truncated.
        std::fs::write(&path, "{\"old\":1}\n").unwrap();
        let mut w = JsonlWriter::appending(&path, Some(Rotation { max_bytes: 200, retain: 2 })).unwrap();
        for i in 0..40 {
            w.write(RecordKind::Snapshot, "T", &B { session: i });
            w.flush();
        }
        w.close(Duration::from_secs(5));
        assert_eq!(w.failure(), None);
        let mut names: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["watch.jsonl", "watch.jsonl.1", "watch.jsonl.2"], "at most 2 rotated files");
        // Every file is whole lines, and the newest records are in the live file.
        let mut sessions = Vec::new();
        for n in ["watch.jsonl.2", "watch.jsonl.1", "watch.jsonl"] {
            let text = std::fs::read_to_string(dir.join(n)).unwrap();
            assert!(text.is_empty() || text.ends_with('\n'), "{n}: whole lines");
            assert!(n == "watch.jsonl" || text.len() >= 200, "{n} rotated at 200 bytes: {}", text.len());
            for l in text.lines() {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                sessions.push(v["session"].as_u64().unwrap());
            }
        }
        assert_eq!(*sessions.last().unwrap(), 39);
        assert!(sessions.windows(2).all(|p| p[1] == p[0] + 1), "in order, none lost in the kept files: {sessions:?}");

        // SIGHUP after logrotate moved the file: the next records go to a new file at the path.
        let path2 = dir.join("hup.jsonl");
        let mut w = JsonlWriter::appending(&path2, None).unwrap();
        w.write(RecordKind::Snapshot, "T", &B { session: 1 });
        w.flush();
        std::thread::sleep(Duration::from_millis(100));
        std::fs::rename(&path2, dir.join("hup.jsonl.moved")).unwrap();
        w.reopen();
        w.write(RecordKind::Snapshot, "T", &B { session: 2 });
        w.close(Duration::from_secs(5));
        assert!(std::fs::read_to_string(dir.join("hup.jsonl.moved")).unwrap().contains("\"session\":1"));
        assert_eq!(std::fs::read_to_string(&path2).unwrap().lines().count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_closed_reader_is_a_quiet_failure() {
        let (r, w) = std::io::pipe().unwrap();
        drop(r);
        let out = OutputFile { file: std::fs::File::from(std::os::fd::OwnedFd::from(w)), path: "pipe".into(), regular: false };
        let mut w = JsonlWriter::file(out);
        w.write(RecordKind::Snapshot, "T", &B { session: 1 });
        w.flush();
        w.close(Duration::from_secs(5));
        assert_eq!(w.failure(), Some(OutputFailure::Closed));
        assert_eq!(w.dropped_records(), 1);
    }
}
