//! Cache zones outlive snapshots: a zone is kept by its `GatewayPolicy`'s name, so a reload keeps
//! what it stored (with the new limits). Zones are `&'static`, as `pingora-cache` requires: one
//! is made the first time a policy name is seen and emptied when no configuration uses it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use conf::table::CacheRule;
use pingora::cache::lock::{CacheKeyLockImpl, CacheLock};

use super::store::{Zone, ZoneStats};

/// How long one request may hold the fill of a key before waiting requests stop trusting it.
const LOCK_AGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Every zone made, by name, and the lock that coalesces concurrent misses of one key.
pub struct Zones {
    zones: Mutex<HashMap<String, &'static Zone>>,
    lock: &'static CacheKeyLockImpl,
}

impl Default for Zones {
    fn default() -> Self {
        Zones { zones: Mutex::new(HashMap::new()), lock: Box::leak(CacheLock::new_boxed(LOCK_AGE_TIMEOUT)) }
    }
}

impl Zones {
    /// The zone of each rule, indexed like `rules`: kept when it exists (limits updated), made
    /// otherwise. Zones no rule names any more are emptied.
    pub fn resolve(&self, rules: &[CacheRule]) -> Vec<&'static Zone> {
        let mut zones = self.zones.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let resolved: Vec<&'static Zone> = rules
            .iter()
            .map(|r| {
                let zone = *zones
                    .entry(r.policy.clone())
                    .or_insert_with(|| Box::leak(Box::new(Zone::new(&r.policy, r.max_bytes, r.max_entry_bytes))));
                zone.resize(r.max_bytes, r.max_entry_bytes);
                zone
            })
            .collect();
        for (name, zone) in zones.iter() {
            if !rules.iter().any(|r| r.policy == *name) {
                zone.purge_where(|_| true);
            }
        }
        resolved
    }

    /// The lock shared by every zone (keys include the zone).
    pub fn lock(&self) -> &'static CacheKeyLockImpl {
        self.lock
    }

    /// Drops the stored responses whose URL `matches`, in every zone; how many.
    pub fn purge(&self, matches: impl Fn(&str) -> bool) -> usize {
        self.all().iter().map(|z| z.purge_where(&matches)).sum()
    }

    /// Each zone's name and figures, by name.
    pub fn stats(&self) -> Vec<(String, ZoneStats)> {
        let mut out: Vec<(String, ZoneStats)> = self.all().iter().map(|z| (z.name().to_string(), z.stats())).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn all(&self) -> Vec<&'static Zone> {
        self.zones.lock().unwrap_or_else(std::sync::PoisonError::into_inner).values().copied().collect()
    }
}
