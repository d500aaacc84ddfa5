//! Outlier detection (DestinationRule `outlierDetection`), as Envoy ejects hosts on consecutive
//! errors: an endpoint that returns `consecutive5xxErrors` 5xx answers in a row (default 5), or
//! `consecutiveGatewayErrors` 502/503/504 in a row, is taken out of load balancing for
//! `baseEjectionTime` × the number of times it was ejected (at most 300 s, Envoy's
//! `max_ejection_time`), ending on an `interval` tick; each interval spent healthy takes one off
//! that number. Connect failures, resets and timeouts count as 503s unless
//! `splitExternalLocalOriginErrors`, when they count apart (`consecutiveLocalOriginFailures`).
//! At most `maxEjectionPercent` of the endpoints (default 10%, but always at least one) are out at
//! once; below `minHealthPercent` available endpoints (default 0: never) every endpoint is used
//! again (Envoy's panic mode).
//! <https://istio.io/latest/docs/reference/config/networking/destination-rule/#OutlierDetection>

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::{Duration, Instant};

/// Envoy's `max_ejection_time` default.
const MAX_EJECTION: Duration = Duration::from_secs(300);

/// The clock ejections are kept in (milliseconds since the first use).
static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// A cluster's outlier detection settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierPolicy {
    /// 5xx answers in a row that eject (0: never).
    pub consecutive_5xx: u32,
    /// 502, 503, 504 in a row that eject (0: never).
    pub consecutive_gateway: u32,
    /// Local-origin failures in a row that eject, when counted apart (`None`: they count as 503s).
    pub consecutive_local: Option<u32>,
    /// The first ejection's length.
    pub base_ejection: Duration,
    /// Envoy's sweep interval: ejections end on its ticks, and each interval an endpoint spends
    /// unejected takes one off its ejection count.
    pub interval: Duration,
    /// The most endpoints out at once, in percent (at least one).
    pub max_ejection_percent: u32,
    /// Below this share of available endpoints, ejections are ignored.
    pub min_health_percent: u32,
}

impl OutlierPolicy {
    /// The policy of a DestinationRule's `outlierDetection`.
    pub fn of(od: &conf::raw::OutlierDetection) -> Self {
        let duration = |d: Option<&String>, default: Duration| super::duration(d).unwrap_or(default);
        // Istio's `applyOutlierDetection`: the deprecated `consecutiveErrors` counts gateway errors
        // (502, 503, 504) and turns the 5xx streak off; the newer fields win over it.
        let deprecated = od.consecutive_errors.and_then(|v| u32::try_from(v).ok()).filter(|v| *v > 0);
        let split = od.split_external_local_origin_errors == Some(true);
        OutlierPolicy {
            consecutive_5xx: od.consecutive5xx_errors.unwrap_or(if deprecated.is_some() { 0 } else { 5 }),
            consecutive_gateway: od.consecutive_gateway_errors.or(deprecated).unwrap_or(0),
            consecutive_local: split.then(|| od.consecutive_local_origin_failures.unwrap_or(5)),
            base_ejection: duration(od.base_ejection_time.as_ref(), Duration::from_secs(30)),
            interval: duration(od.interval.as_ref(), Duration::from_secs(10)).max(Duration::from_millis(1)),
            max_ejection_percent: od.max_ejection_percent.and_then(|v| u32::try_from(v).ok()).unwrap_or(10),
            min_health_percent: od.min_health_percent.and_then(|v| u32::try_from(v).ok()).unwrap_or(0),
        }
    }
}

/// What one attempt to an endpoint ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The endpoint answered with this status.
    Answered(u16),
    /// Connecting failed, or the connection was reset or timed out before an answer.
    LocalFailure,
}

/// One endpoint's error streaks and ejection.
#[derive(Debug, Default)]
pub struct Health {
    streak_5xx: AtomicU32,
    streak_gateway: AtomicU32,
    streak_local: AtomicU32,
    ejections: AtomicU32,
    ejected_until_ms: AtomicU64,
}

impl Health {
    /// True while ejected.
    pub fn ejected(&self) -> bool {
        self.ejected_until_ms.load(Ordering::Relaxed) > now_ms()
    }

    /// Counts `attempt`; true when a streak reached its threshold (the caller decides whether
    /// the endpoint may be ejected).
    pub fn record(&self, policy: &OutlierPolicy, attempt: Attempt) -> bool {
        let bump = |streak: &AtomicU32, threshold: u32| {
            threshold > 0 && streak.fetch_add(1, Ordering::Relaxed) + 1 >= threshold
        };
        let reset = |streak: &AtomicU32| streak.store(0, Ordering::Relaxed);
        let (is_5xx, is_gateway) = match (attempt, policy.consecutive_local) {
            (Attempt::Answered(s), _) => (s >= 500, matches!(s, 502..=504)),
            (Attempt::LocalFailure, Some(threshold)) => return bump(&self.streak_local, threshold),
            (Attempt::LocalFailure, None) => (true, true),
        };
        if matches!(attempt, Attempt::Answered(_)) {
            reset(&self.streak_local);
        }
        let mut trip = false;
        if is_5xx {
            trip |= bump(&self.streak_5xx, policy.consecutive_5xx);
        } else {
            reset(&self.streak_5xx);
        }
        if is_gateway {
            trip |= bump(&self.streak_gateway, policy.consecutive_gateway);
        } else {
            reset(&self.streak_gateway);
        }
        trip
    }

    /// Ejects for `base` × the ejections so far (at most 300 s), rounded up to a whole number of
    /// intervals (Envoy ends ejections on its interval sweep). Each whole interval the endpoint
    /// spent unejected since its last ejection ended took one ejection off the count first
    /// (Envoy's ejection multiplier decay). The streaks start over.
    pub fn eject(&self, policy: &OutlierPolicy) {
        let now = now_ms();
        let interval_ms = u64::try_from(policy.interval.as_millis()).unwrap_or(u64::MAX).max(1);
        let healthy_ms = now.saturating_sub(self.ejected_until_ms.load(Ordering::Relaxed));
        let previous = self.ejections.load(Ordering::Relaxed);
        let decayed = if previous == 0 {
            0
        } else {
            previous.saturating_sub(u32::try_from(healthy_ms / interval_ms).unwrap_or(u32::MAX))
        };
        let n = decayed + 1;
        self.ejections.store(n, Ordering::Relaxed);
        let base = policy.base_ejection;
        let length = base.saturating_mul(n).min(MAX_EJECTION.max(base));
        let length_ms = u64::try_from(length.as_millis()).unwrap_or(u64::MAX);
        let until = now.saturating_add(length_ms.div_ceil(interval_ms).saturating_mul(interval_ms));
        self.ejected_until_ms.store(until, Ordering::Relaxed);
        for s in [&self.streak_5xx, &self.streak_gateway, &self.streak_local] {
            s.store(0, Ordering::Relaxed);
        }
    }
}

/// How many of `total` endpoints may be out at once (at least one, as Envoy).
pub fn max_ejected(policy: &OutlierPolicy, total: usize) -> usize {
    (total * policy.max_ejection_percent as usize / 100).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> OutlierPolicy {
        OutlierPolicy {
            consecutive_5xx: 3,
            consecutive_gateway: 0,
            consecutive_local: None,
            base_ejection: Duration::from_secs(30),
            interval: Duration::from_millis(10),
            max_ejection_percent: 10,
            min_health_percent: 0,
        }
    }

    #[test]
    fn a_streak_of_5xx_trips_and_a_success_resets_it() {
        let (h, p) = (Health::default(), policy());
        assert!(!h.record(&p, Attempt::Answered(500)));
        assert!(!h.record(&p, Attempt::Answered(200)), "reset");
        assert!(!h.record(&p, Attempt::Answered(503)));
        assert!(!h.record(&p, Attempt::LocalFailure), "a connect failure counts as a 5xx");
        assert!(h.record(&p, Attempt::Answered(502)));
    }

    #[test]
    fn local_failures_count_apart_when_split() {
        let p = OutlierPolicy { consecutive_local: Some(2), ..policy() };
        let h = Health::default();
        assert!(!h.record(&p, Attempt::LocalFailure));
        assert!(!h.record(&p, Attempt::Answered(500)), "an answer is a local-origin success");
        assert!(!h.record(&p, Attempt::LocalFailure));
        assert!(h.record(&p, Attempt::LocalFailure));
    }

    #[test]
    fn ejections_grow_and_end() {
        let p =
            OutlierPolicy { base_ejection: Duration::from_millis(50), interval: Duration::from_millis(50), ..policy() };
        let h = Health::default();
        h.eject(&p);
        assert!(h.ejected());
        std::thread::sleep(Duration::from_millis(80));
        assert!(!h.ejected());
        h.eject(&p);
        std::thread::sleep(Duration::from_millis(70));
        assert!(h.ejected(), "the second ejection lasts twice as long");
    }

    #[test]
    fn ejections_end_on_an_interval_and_their_count_decays_while_healthy() {
        let p =
            OutlierPolicy { base_ejection: Duration::from_millis(10), interval: Duration::from_millis(60), ..policy() };
        let h = Health::default();
        h.eject(&p);
        std::thread::sleep(Duration::from_millis(30));
        assert!(h.ejected(), "10 ms rounded up to the 60 ms interval");
        std::thread::sleep(Duration::from_millis(50));
        assert!(!h.ejected());
        // Two healthy intervals take the one ejection off: the next is a first ejection again.
        std::thread::sleep(Duration::from_millis(130));
        h.eject(&p);
        assert_eq!(h.ejections.load(Ordering::Relaxed), 1);
        h.eject(&p);
        assert_eq!(h.ejections.load(Ordering::Relaxed), 2, "no healthy interval in between");
    }

    #[test]
    fn the_deprecated_consecutive_errors_counts_gateway_errors_only() {
        let of = |json: &str| OutlierPolicy::of(&serde_json::from_str(json).unwrap_or_default());
        let p = of(r#"{"consecutiveErrors": 3}"#);
        assert_eq!((p.consecutive_5xx, p.consecutive_gateway), (0, 3));
        let p = of(r#"{"consecutiveErrors": 3, "consecutive5xxErrors": 4, "consecutiveGatewayErrors": 2}"#);
        assert_eq!((p.consecutive_5xx, p.consecutive_gateway), (4, 2));
        let p = of("{}");
        assert_eq!((p.consecutive_5xx, p.consecutive_gateway, p.interval), (5, 0, Duration::from_secs(10)));
    }

    #[test]
    fn at_least_one_endpoint_may_be_ejected() {
        assert_eq!(max_ejected(&policy(), 2), 1);
        assert_eq!(max_ejected(&OutlierPolicy { max_ejection_percent: 50, ..policy() }, 10), 5);
    }
}
