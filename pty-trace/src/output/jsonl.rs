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

pub struct JsonlWriter {
    /// None: records are built (for the live view) but not written.
    tx: Option<mpsc::Sender<Batch>>,
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
        Ok(Self::spawn(std::fs::File::from(fd), None, false, "stdout".into()))
    }

    /// Records to a file opened by [`super::safe_open::open_output`].
    pub fn file(out: OutputFile) -> Self {
        let name = out.path.display().to_string();
        Self::spawn(out.file, Some(out.path), out.regular, name)
    }

    /// Creates `path` (see `safe_open`) and writes to it.
    pub fn create(path: &Path) -> Result<Self, String> {
        Ok(Self::file(super::safe_open::open_output(path, "JSONL file")?))
    }

    fn spawn(file: std::fs::File, path: Option<PathBuf>, regular: bool, name: String) -> Self {
        let shared = Arc::new(Shared::default());
        let (tx, rx) = mpsc::channel::<Batch>();
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("jsonl-writer".into())
            .spawn(move || write_batches(file, regular, &name, &rx, &s))
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
        if let Err(mpsc::SendError(b)) = tx.send(Batch { bytes, records }) {
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
/// regular file back to its last whole line, and counts everything after as dropped.
fn write_batches(mut file: std::fs::File, regular: bool, name: &str, rx: &mpsc::Receiver<Batch>, shared: &Shared) {
    let mut written: u64 = 0;
    let mut failed = false;
    while let Ok(batch) = rx.recv() {
        if failed {
            shared.dequeued(&batch);
            shared.dropped.fetch_add(batch.records, Ordering::Relaxed);
            continue;
        }
        match file.write_all(&batch.bytes) {
            Ok(()) => {
                written += batch.bytes.len() as u64;
                shared.dequeued(&batch);
            }
            Err(e) => {
                failed = true;
                if regular {
                    // Never leave half a line: the file ends with the last whole batch.
                    let _ = file.set_len(written);
                }
                let f = if e.kind() == io::ErrorKind::BrokenPipe {
                    OutputFailure::Closed
                } else {
                    OutputFailure::Error(format!("writing JSONL to {name}: {}", crate::error::os_error_text(&e)))
                };
                if let Ok(mut slot) = shared.failure.lock() {
                    *slot = Some(f);
                }
                shared.dequeued(&batch);
                shared.dropped.fetch_add(batch.records, Ordering::Relaxed);
            }
        }
    }
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
