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

/// Version of the record layout; bumped on any incompatible change (see docs/jsonl.md).
pub const SCHEMA_VERSION: u32 = 1;

/// RFC 3339 UTC with milliseconds, from a wall-clock time in ns since the epoch.
pub fn rfc3339_ms(unix_ns: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(unix_ns as i128)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
    );
    t.format(&fmt).unwrap_or_else(|_| "1970-01-01T00:00:00.000Z".into())
}

/// Wraps a record body with the fields every line has.
#[derive(Serialize)]
pub struct Envelope<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'a str,
    pub schema: u32,
    pub ts: String,
    #[serde(flatten)]
    pub body: &'a T,
}

/// Where records go.
pub enum Sink {
    Stdout(io::Stdout),
    File(BufWriter<std::fs::File>, PathBuf),
    /// No `--jsonl` and a TUI: records are still built (for the view) but not written.
    Discard,
}

pub struct JsonlWriter {
    sink: Sink,
    pub lines: u64,
}

impl JsonlWriter {
    pub fn discard() -> Self {
        JsonlWriter { sink: Sink::Discard, lines: 0 }
    }

    pub fn stdout() -> Self {
        JsonlWriter { sink: Sink::Stdout(io::stdout()), lines: 0 }
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
        Ok(JsonlWriter { sink: Sink::File(BufWriter::new(f), path.to_path_buf()), lines: 0 })
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

    pub fn write<T: Serialize>(&mut self, kind: &str, ts: &str, body: &T) -> anyhow::Result<()> {
        let env = Envelope { kind, schema: SCHEMA_VERSION, ts: ts.to_string(), body };
        let mut line = serde_json::to_vec(&env).context("serializing a record")?;
        line.push(b'\n');
        match &mut self.sink {
            Sink::Stdout(s) => s.lock().write_all(&line).context("writing JSONL to stdout")?,
            Sink::File(w, p) => w.write_all(&line).with_context(|| format!("writing {}", p.display()))?,
            Sink::Discard => return Ok(()),
        }
        self.lines += 1;
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
    let parse = |v: &str| std::env::var(v).ok().and_then(|s| s.parse::<u32>().ok());
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return;
    }
    if let (Some(uid), Some(gid)) = (parse("SUDO_UID"), parse("SUDO_GID")) {
        let _ = std::os::unix::fs::chown(path, Some(uid), Some(gid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn formats_timestamps() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_763_726_400_123_456_789), "2025-11-21T12:00:00.123Z");
    }

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
        w.write("snapshot", "T", &B { session: 7 }).unwrap();
        w.flush().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"type\":\"snapshot\",\"schema\":1,\"ts\":\"T\",\"session\":7}\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
