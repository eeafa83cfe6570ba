//! Growth per minute of a count sampled each scan, and the time to exhaustion it implies.
//! Both are estimates (a straight line through the last minute) and labelled so wherever
//! they are shown.

use std::collections::VecDeque;

/// How far back the slope looks.
pub const WINDOW_NS: u64 = 60_000_000_000;
/// Shortest span of samples a rate is given for: two scans 100 ms apart would make one
/// opened PTY a rate of 600 per minute.
pub const MIN_SPAN_NS: u64 = 2_000_000_000;

/// Samples (monotonic ns, value) of the last [`WINDOW_NS`].
#[derive(Clone, Debug, Default)]
pub struct Trend {
    samples: VecDeque<(u64, f64)>,
}

impl Trend {
    pub fn push(&mut self, now_ns: u64, value: f64) {
        if self.samples.back().is_some_and(|&(t, _)| now_ns <= t) {
            self.samples.pop_back();
        }
        self.samples.push_back((now_ns, value));
        while self.samples.front().is_some_and(|&(t, _)| t + WINDOW_NS < now_ns) {
            self.samples.pop_front();
        }
    }

    /// Least-squares slope per minute over the window; `None` while the samples span less
    /// than [`MIN_SPAN_NS`].
    pub fn per_min(&self) -> Option<f64> {
        let (&(t0, v0), &(t1, _)) = (self.samples.front()?, self.samples.back()?);
        if t1 - t0 < MIN_SPAN_NS {
            return None;
        }
        let n = self.samples.len() as f64;
        // Values relative to the first: a flat series is exactly 0, not a rounding error
        // either side of it (shown as -0.0).
        let xs = || self.samples.iter().map(|&(t, v)| ((t - t0) as f64 / 60e9, v - v0));
        let (mx, my) = xs().fold((0.0, 0.0), |(a, b), (x, y)| (a + x / n, b + y / n));
        let (sxy, sxx) = xs().fold((0.0, 0.0), |(a, b), (x, y)| (a + (x - mx) * (y - my), b + (x - mx) * (x - mx)));
        (sxx > 0.0).then(|| sxy / sxx)
    }
}

/// Seconds until `now` reaches `limit` at `per_min`; `None` when not growing. Already at or
/// past the limit is 0.
pub fn eta_s(now: u64, limit: u64, per_min: f64) -> Option<f64> {
    if per_min <= 0.0 || !per_min.is_finite() {
        return None;
    }
    Some(limit.saturating_sub(now) as f64 / per_min * 60.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_steady_climb_is_its_slope_per_minute() {
        let mut t = Trend::default();
        for i in 0..30 {
            t.push(i * S, 100.0 + i as f64 * 0.5); // 0.5 a second
        }
        let g = t.per_min().unwrap();
        assert!((g - 30.0).abs() < 1e-9, "{g}");
        assert_eq!(eta_s(115, 4096, g).map(|s| s.round()), Some((3981.0f64 / 30.0 * 60.0).round()));
    }

    #[test]
    fn a_flat_series_is_exactly_zero() {
        let mut t = Trend::default();
        for i in 0..37 {
            t.push(i * S + i * 7_777_777, 36.0);
        }
        let g = t.per_min().unwrap();
        assert!(g == 0.0 && g.is_sign_positive(), "{g}");
    }

    #[test]
    fn no_rate_from_samples_too_close_together_and_none_when_flat_or_falling() {
        let mut t = Trend::default();
        t.push(0, 1.0);
        t.push(S, 5.0);
        assert_eq!(t.per_min(), None, "1 s is too short a span");
        t.push(3 * S, 5.0);
        assert!(t.per_min().unwrap() > 0.0);
        assert_eq!(eta_s(10, 100, 0.0), None);
        assert_eq!(eta_s(10, 100, -3.0), None);
        assert_eq!(eta_s(120, 100, 3.0), Some(0.0), "past the limit: exhausted now");
    }

    #[test]
    fn old_samples_leave_the_window() {
        let mut t = Trend::default();
        // Fast growth long ago, then flat for more than a minute: no growth now.
        for i in 0..10 {
            t.push(i * S, i as f64 * 100.0);
        }
        for i in 10..80 {
            t.push(i * S, 900.0);
        }
        assert!(t.per_min().unwrap().abs() < 1e-9, "{:?}", t.per_min());
        // A clock that did not move replaces the last sample instead of dividing by zero.
        t.push(79 * S, 901.0);
        assert!(t.per_min().is_some());
    }
}
