//! Kernel-side diagnostics (`--debug-kernel`): the programs' aya-log records, printed to
//! stderr as `pty-trace: kernel: LEVEL message`. The programs log only rare failures (a
//! tracepoint field they cannot read, a child TRACKED has no room for), never per syscall;
//! without the flag their log level is 0 and nothing is even formatted.

use aya::Ebpf;
use aya_log::EbpfLogger;

/// The level the programs log at: everything with `--debug-kernel`, nothing without.
pub fn level(debug: bool) -> u8 {
    // aya-log's levels: Error = 1 ... Trace = 5; 0 turns every log statement off.
    if debug { 5 } else { 0 }
}

/// Prints kernel records to stderr.
struct Stderr;

impl log::Log for Stderr {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        eprintln!("pty-trace: kernel: {} {}", record.level(), record.args());
    }
    fn flush(&self) {}
}

/// Reads the programs' log ring buffer.
pub struct KernelLog(EbpfLogger<Stderr>);

impl KernelLog {
    /// Takes the log map of a loaded object (before anything else takes maps by name).
    pub fn take(ebpf: &mut Ebpf) -> anyhow::Result<KernelLog> {
        EbpfLogger::init_with_logger(ebpf, Stderr)
            .map(KernelLog)
            .map_err(|e| anyhow::anyhow!("reading the kernel programs' log: {e}"))
    }

    /// Prints every record waiting.
    pub fn flush(&mut self) {
        self.0.flush();
    }
}
