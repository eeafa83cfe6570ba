//! The only clock reads in pty-trace. The core never reads a clock: it is given times, in the
//! kernel's CLOCK_MONOTONIC nanoseconds (what `bpf_ktime_get_ns` stamps events with), and
//! records carry wall-clock timestamps mapped from them by a [`Clock`].

use crate::core::records::rfc3339_ms;

/// CLOCK_MONOTONIC in ns: the clock `bpf_ktime_get_ns` uses, so scans and events compare.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Maps the kernel's monotonic clock to wall time for record timestamps.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    mono0: u64,
    wall0: u64,
}

impl Clock {
    /// Pairs the two clocks now.
    pub fn now() -> Self {
        let wall0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Clock { mono0: monotonic_ns(), wall0 }
    }

    /// Wall-clock ns since the epoch of a monotonic time.
    pub fn wall(&self, mono: u64) -> u64 {
        self.wall0.wrapping_add(mono.wrapping_sub(self.mono0))
    }

    /// RFC 3339 timestamp of a monotonic time.
    pub fn ts(&self, mono: u64) -> String {
        rfc3339_ms(self.wall(mono))
    }
}
