//! The JSONL output: one JSON object per line, every one with `type`, `schema` and `ts`.
//!
//! The writer is an edge (a file created 0600 and handed to the invoking user under sudo, or
//! stdout); it flushes after each batch so an interrupted run leaves only whole lines.

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use anyhow::Context;
use serde::Serialize;

use crate::core::records::{Envelope, RecordKind, SCHEMA_VERSION};

/// Where records go.
pub enum Sink {
    Stdout(io::Stdout),
    File(BufWriter<std::fs::File>, PathBuf),
    /// No `--jsonl` and a TUI: records are still built (for the view) but not written.
    Discard,
}

pub struct JsonlWriter {
    sink: Sink,
}

impl JsonlWriter {
    pub fn discard() -> Self {
        JsonlWriter { sink: Sink::Discard }
    }

    pub fn stdout() -> Self {
        JsonlWriter { sink: Sink::Stdout(io::stdout()) }
    }

    /// Creates (truncates) `path` with mode 0600; under sudo, hands it to the invoking user.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("cannot create JSONL file {}", path.display()))?;
        chown_to_invoking_user(path);
        Ok(JsonlWriter { sink: Sink::File(BufWriter::new(f), path.to_path_buf()) })
    }

    pub fn path(&self) -> Option<&Path> {
        match &self.sink {
            Sink::File(_, p) => Some(p),
            _ => None,
        }
    }

    pub fn is_discard(&self) -> bool {
        matches!(self.sink, Sink::Discard)
    }

    pub fn write<T: Serialize>(&mut self, kind: RecordKind, ts: &str, body: &T) -> anyhow::Result<()> {
        let env = Envelope { kind, schema: SCHEMA_VERSION, ts, body };
        let mut line = serde_json::to_vec(&env).context("serializing a record")?;
        line.push(b'\n');
        match &mut self.sink {
            Sink::Stdout(s) => s.lock().write_all(&line).context("writing JSONL to stdout")?,
            Sink::File(w, p) => w.write_all(&line).with_context(|| format!("writing {}", p.display()))?,
            Sink::Discard => {}
        }
        Ok(())
    }

    pub fn flush(&mut self) -> anyhow::Result<()> {
        match &mut self.sink {
            Sink::Stdout(s) => s.flush().context("flushing stdout"),
            Sink::File(w, p) => w.flush().with_context(|| format!("flushing {}", p.display())),
            Sink::Discard => Ok(()),
        }
    }
}

/// Under `sudo`, output files belong to the user who ran sudo, not to root.
fn chown_to_invoking_user(path: &Path) {
    if let Some((uid, gid)) = crate::sudo::invoking_user() {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_whole_lines_to_a_private_file() {
        let dir = std::env::temp_dir().join(format!("pty-trace-jsonl-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.jsonl");
        let mut w = JsonlWriter::create(&path).unwrap();
        #[derive(Serialize)]
        struct B {
            session: u32,
        }
        w.write(RecordKind::Snapshot, "T", &B { session: 7 }).unwrap();
        w.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"type\":\"snapshot\",\"schema\":1,\"ts\":\"T\",\"session\":7}\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
