//! Counters and histograms shared by all simulated clients, reported once per interval.

use std::sync::atomic::{AtomicU64, Ordering};

/// A lock-free log-linear histogram of microsecond values (1 µs .. ~70 min, ~3 % resolution).
pub struct Histogram {
    buckets: Vec<AtomicU64>,
}

const SUB_BUCKETS: u64 = 32;

impl Default for Histogram {
    fn default() -> Self {
        Histogram { buckets: (0..64 * SUB_BUCKETS).map(|_| AtomicU64::new(0)).collect() }
    }
}

impl Histogram {
    fn index(value: u64) -> usize {
        let v = value.max(1);
        let exp = 63 - v.leading_zeros() as u64;
        let sub = if exp >= 5 { (v >> (exp - 5)) - SUB_BUCKETS } else { (v << (5 - exp)) - SUB_BUCKETS };
        (exp * SUB_BUCKETS + sub) as usize
    }

    fn value_of(index: usize) -> u64 {
        let exp = index as u64 / SUB_BUCKETS;
        let sub = index as u64 % SUB_BUCKETS + SUB_BUCKETS;
        if exp >= 5 { sub << (exp - 5) } else { sub >> (5 - exp) }
    }

    /// Records one value in microseconds.
    pub fn record(&self, micros: u64) {
        let i = Self::index(micros).min(self.buckets.len() - 1);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the counts recorded so far, leaving the histogram empty.
    pub fn take(&self) -> Snapshot {
        Snapshot { counts: self.buckets.iter().map(|b| b.swap(0, Ordering::Relaxed)).collect() }
    }
}

/// Counts taken from a [`Histogram`].
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    counts: Vec<u64>,
}

impl Snapshot {
    /// Adds another snapshot's counts.
    pub fn merge(&mut self, other: &Snapshot) {
        if self.counts.len() < other.counts.len() {
            self.counts.resize(other.counts.len(), 0);
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The value below which `q` (0..=1) of the values lie, in microseconds.
    pub fn quantile(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let target = ((total as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c;
            if seen >= target {
                return Some(Histogram::value_of(i));
            }
        }
        None
    }
}

/// Everything the players count.
#[derive(Default)]
pub struct Stats {
    /// Players connected and past the play handshake.
    pub connected: AtomicU64,
    /// Players that received their first video frame.
    pub started: AtomicU64,
    /// Bytes received (all players).
    pub bytes: AtomicU64,
    /// Video frames received.
    pub video_frames: AtomicU64,
    /// Audio frames received.
    pub audio_frames: AtomicU64,
    /// Errors: refused, broken or ended connections.
    pub errors: AtomicU64,
    /// Time from connect to first video frame.
    pub ttff: Histogram,
    /// Publisher send time to player receive time, per stamped video frame.
    pub latency: Histogram,
}

/// Formats microseconds for a report.
pub fn ms(micros: Option<u64>) -> String {
    match micros {
        Some(us) if us >= 10_000 => format!("{}ms", us / 1000),
        Some(us) => format!("{:.2}ms", us as f64 / 1000.0),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_within_resolution() {
        let h = Histogram::default();
        for v in 1..=10_000u64 {
            h.record(v);
        }
        let s = h.take();
        assert_eq!(s.count(), 10_000);
        let p50 = s.quantile(0.5).expect("values") as f64;
        let p99 = s.quantile(0.99).expect("values") as f64;
        assert!((p50 - 5000.0).abs() / 5000.0 < 0.04, "{p50}");
        assert!((p99 - 9900.0).abs() / 9900.0 < 0.04, "{p99}");
        assert_eq!(h.take().count(), 0);
    }
}
