//! Durations as Istio reads them: Go `time.ParseDuration` strings (`10s`, `1.5s`, `3m`, `1h30m`).

use std::fmt;

use serde::Serialize;

/// A non-negative duration with nanosecond resolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    nanos: u128,
}

impl Duration {
    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Duration { nanos: ms as u128 * 1_000_000 }
    }

    /// Parses a Go duration string: one or more `<number><unit>` with units `ns`, `us`, `µs`, `ms`,
    /// `s`, `m`, `h` and optional fractions; `0` alone is zero. Negative durations are rejected.
    pub fn parse(s: &str) -> Result<Duration, String> {
        let invalid = || format!("invalid duration {s:?}; use a number with a unit, like 500ms, 10s or 1h30m");
        if s == "0" {
            return Ok(Duration::default());
        }
        let mut rest = s.strip_prefix('+').unwrap_or(s);
        if rest.is_empty() || rest.starts_with('-') {
            return Err(invalid());
        }
        let mut nanos: f64 = 0.0;
        while !rest.is_empty() {
            let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(invalid)?;
            let number: f64 = rest[..num_len].parse().map_err(|_| invalid())?;
            rest = &rest[num_len..];
            let unit_len = rest.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(rest.len());
            let scale = match &rest[..unit_len] {
                "ns" => 1.0,
                "us" | "µs" | "μs" => 1e3,
                "ms" => 1e6,
                "s" => 1e9,
                "m" => 60e9,
                "h" => 3600e9,
                _ => return Err(invalid()),
            };
            nanos += number * scale;
            rest = &rest[unit_len..];
        }
        if !nanos.is_finite() || nanos > 1e30 {
            return Err(invalid());
        }
        Ok(Duration { nanos: nanos.round() as u128 })
    }

    /// Whole milliseconds (rounded down).
    pub fn as_millis(self) -> u128 {
        self.nanos / 1_000_000
    }

    /// As a `std::time::Duration` (saturating).
    pub fn to_std(self) -> std::time::Duration {
        let secs = u64::try_from(self.nanos / 1_000_000_000).unwrap_or(u64::MAX);
        std::time::Duration::new(secs, (self.nanos % 1_000_000_000) as u32)
    }

    /// True when the duration has a part finer than a millisecond.
    pub fn finer_than_millis(self) -> bool {
        !self.nanos.is_multiple_of(1_000_000)
    }

    /// True when the duration has a part finer than a second.
    pub fn finer_than_seconds(self) -> bool {
        !self.nanos.is_multiple_of(1_000_000_000)
    }

    /// True for zero.
    pub fn is_zero(self) -> bool {
        self.nanos == 0
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = self.nanos / 1_000_000;
        if !self.nanos.is_multiple_of(1_000_000) {
            write!(f, "{}ns", self.nanos)
        } else if !ms.is_multiple_of(1000) {
            write!(f, "{ms}ms")
        } else {
            write!(f, "{}s", ms / 1000)
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_from_istio_samples_parse() {
        assert_eq!(Duration::parse("10s").unwrap().as_millis(), 10_000);
        assert_eq!(Duration::parse("0.5s").unwrap().as_millis(), 500);
        assert_eq!(Duration::parse("3m").unwrap().as_millis(), 180_000);
        assert_eq!(Duration::parse("24h").unwrap().as_millis(), 86_400_000);
        assert_eq!(Duration::parse("1h30m").unwrap().as_millis(), 5_400_000);
        assert_eq!(Duration::parse("100ms").unwrap().as_millis(), 100);
        assert_eq!(Duration::parse("0").unwrap().as_millis(), 0);
        assert!(Duration::parse("1500us").unwrap().finer_than_millis());
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in ["", "10", "s", "1d", "-1s", "1 s", "1.2.3s", "ms10"] {
            assert!(Duration::parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn durations_display_in_the_coarsest_exact_unit() {
        assert_eq!(Duration::parse("1.5s").unwrap().to_string(), "1500ms");
        assert_eq!(Duration::parse("2m").unwrap().to_string(), "120s");
    }
}
