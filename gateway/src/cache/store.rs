//! One cache zone: Pylon's bounded in-memory store behind `pingora-cache` (whose `MemCache` is
//! for tests: unbounded, no eviction). Responses are kept whole (a body is stored once complete;
//! requests for it meanwhile wait on the cache lock), counted in bytes (body, header and key) and
//! evicted least recently used first once the zone's budget is exceeded.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use pingora::cache::key::CacheHashKey;
use pingora::cache::storage::{HandleHit, HandleMiss, HitHandler, MissFinishType, MissHandler};
use pingora::cache::storage::{PurgeOutcome, PurgeTarget, PurgeType};
use pingora::cache::trace::SpanHandle;
use pingora::cache::{CacheKey, CacheMeta, Storage};
use pingora::Result;

/// What every entry costs besides its bytes (map and order slots, the `Entry` itself).
const ENTRY_OVERHEAD: u64 = 128;

/// One stored response.
struct Entry {
    /// `CacheMeta::serialize`: the internal part and the header.
    meta: (Vec<u8>, Vec<u8>),
    body: Bytes,
    /// The scheme, host, path and query the response was stored for (admin purge).
    url: Box<str>,
    /// Bytes charged to the budget.
    size: u64,
    /// Position in the recency order.
    tick: u64,
}

/// The entries and their recency order.
#[derive(Default)]
struct Lru {
    entries: HashMap<String, Entry>,
    /// Tick → key, oldest first.
    order: BTreeMap<u64, String>,
    next_tick: u64,
    bytes: u64,
}

impl Lru {
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// The entry for `key`, now the most recently used.
    fn touch(&mut self, key: &str) -> Option<&Entry> {
        let tick = self.tick();
        let entry = self.entries.get_mut(key)?;
        self.order.remove(&entry.tick);
        entry.tick = tick;
        self.order.insert(tick, key.to_string());
        Some(entry)
    }

    fn remove(&mut self, key: &str) -> bool {
        let Some(old) = self.entries.remove(key) else { return false };
        self.order.remove(&old.tick);
        self.bytes -= old.size;
        true
    }

    fn insert(&mut self, key: String, mut entry: Entry) {
        self.remove(&key);
        entry.tick = self.tick();
        self.bytes += entry.size;
        self.order.insert(entry.tick, key.clone());
        self.entries.insert(key, entry);
    }

    /// Evicts the least recently used entries until at most `budget` bytes remain; how many.
    fn evict_to(&mut self, budget: u64) -> u64 {
        let mut evicted = 0;
        while self.bytes > budget {
            let Some((_, key)) = self.order.pop_first() else { break };
            if let Some(old) = self.entries.remove(&key) {
                self.bytes -= old.size;
                evicted += 1;
            }
        }
        evicted
    }
}

/// A zone's figures, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ZoneStats {
    /// Bytes stored.
    pub bytes: u64,
    /// Responses stored.
    pub entries: u64,
    /// Responses evicted to stay within the budget, since the zone was made.
    pub evictions: u64,
}

/// A bounded store of whole responses (one per `GatewayPolicy` with a `cache` module).
pub struct Zone {
    name: String,
    budget: AtomicU64,
    max_entry: AtomicU64,
    lru: Mutex<Lru>,
    evictions: AtomicU64,
}

impl Zone {
    /// An empty zone `name` keeping at most `budget` bytes, none of whose bodies exceeds
    /// `max_entry` bytes.
    pub fn new(name: &str, budget: u64, max_entry: u64) -> Self {
        Zone {
            name: name.to_string(),
            budget: AtomicU64::new(budget),
            max_entry: AtomicU64::new(max_entry),
            lru: Mutex::new(Lru::default()),
            evictions: AtomicU64::new(0),
        }
    }

    /// The zone's name (its `GatewayPolicy`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The largest body stored.
    pub fn max_entry(&self) -> u64 {
        self.max_entry.load(Ordering::Relaxed)
    }

    /// New limits (a reload changed the policy); entries beyond the new budget are evicted.
    pub fn resize(&self, budget: u64, max_entry: u64) {
        self.budget.store(budget, Ordering::Relaxed);
        self.max_entry.store(max_entry, Ordering::Relaxed);
        let evicted = self.lock().evict_to(budget);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }

    /// Drops entries whose URL `matches`; how many.
    pub fn purge_where(&self, matches: impl Fn(&str) -> bool) -> usize {
        let mut lru = self.lock();
        let keys: Vec<String> = lru.entries.iter().filter(|(_, e)| matches(&e.url)).map(|(k, _)| k.clone()).collect();
        keys.iter().filter(|k| lru.remove(k)).count()
    }

    /// Bytes, entries and evictions.
    pub fn stats(&self) -> ZoneStats {
        let lru = self.lock();
        ZoneStats {
            bytes: lru.bytes,
            entries: lru.entries.len() as u64,
            evictions: self.evictions.load(Ordering::Relaxed),
        }
    }

    /// The entries. A panic while holding the lock cannot leave them inconsistent (every update
    /// is one map and one order change), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Lru> {
        self.lru.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn store(&self, key: String, url: Box<str>, meta: (Vec<u8>, Vec<u8>), body: Bytes) {
        let size = (body.len() + meta.0.len() + meta.1.len() + key.len() + url.len()) as u64 + ENTRY_OVERHEAD;
        let budget = self.budget.load(Ordering::Relaxed);
        if size > budget {
            return;
        }
        let mut lru = self.lock();
        lru.insert(key, Entry { meta, body, url, size, tick: 0 });
        let evicted = lru.evict_to(budget);
        drop(lru);
        self.evictions.fetch_add(evicted, Ordering::Relaxed);
    }
}

/// The URL part of a key's primary (see `proxy::cache::key`: the URL, then NUL-separated
/// key headers).
fn url_of(key: &CacheKey) -> Box<str> {
    let primary = key.primary_key();
    let end = primary.iter().position(|b| *b == 0).unwrap_or(primary.len());
    String::from_utf8_lossy(&primary[..end]).into()
}

#[async_trait]
impl Storage for Zone {
    async fn lookup(&'static self, key: &CacheKey, _trace: &SpanHandle) -> Result<Option<(CacheMeta, HitHandler)>> {
        let found = self.lock().touch(&key.combined()).map(|e| (e.meta.clone(), e.body.clone()));
        let Some((meta, body)) = found else { return Ok(None) };
        let meta = CacheMeta::deserialize(&meta.0, &meta.1)?;
        let end = body.len();
        Ok(Some((meta, Box::new(Hit { body, start: 0, end, done: false }))))
    }

    async fn get_miss_handler(
        &'static self,
        key: &CacheKey,
        meta: &CacheMeta,
        _trace: &SpanHandle,
    ) -> Result<MissHandler> {
        Ok(Box::new(Miss {
            zone: self,
            key: key.combined(),
            url: url_of(key),
            meta: meta.serialize()?,
            body: BytesMut::new(),
            too_large: false,
        }))
    }

    async fn purge(
        &'static self,
        target: PurgeTarget<'_>,
        _type: PurgeType,
        _trace: &SpanHandle,
    ) -> Result<PurgeOutcome> {
        let removed = self.lock().remove(&target.key().combined());
        Ok(if removed { PurgeOutcome::Purged(None) } else { PurgeOutcome::NotFound })
    }

    async fn update_meta(&'static self, key: &CacheKey, meta: &CacheMeta, _trace: &SpanHandle) -> Result<bool> {
        let meta = meta.serialize()?;
        let mut lru = self.lock();
        let Some(entry) = lru.entries.get_mut(&key.combined()) else { return Ok(false) };
        let (old, new) = ((entry.meta.0.len() + entry.meta.1.len()) as u64, (meta.0.len() + meta.1.len()) as u64);
        entry.meta = meta;
        entry.size = entry.size - old + new;
        lru.bytes = lru.bytes - old + new;
        Ok(true)
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync + 'static) {
        self
    }
}

/// Reads a stored body (whole, or the range a `Range` request asked for).
struct Hit {
    body: Bytes,
    start: usize,
    end: usize,
    done: bool,
}

#[async_trait]
impl HandleHit for Hit {
    async fn read_body(&mut self) -> Result<Option<Bytes>> {
        if self.done {
            return Ok(None);
        }
        self.done = true;
        Ok(Some(self.body.slice(self.start..self.end)))
    }

    async fn finish(
        self: Box<Self>,
        _storage: &'static (dyn Storage + Sync),
        _key: &CacheKey,
        _trace: &SpanHandle,
    ) -> Result<()> {
        Ok(())
    }

    fn can_seek(&self) -> bool {
        true
    }

    fn seek(&mut self, start: usize, end: Option<usize>) -> Result<()> {
        if start >= self.body.len() {
            return pingora::Error::e_explain(pingora::ErrorType::InternalError, "seek past the end of the body");
        }
        self.start = start;
        self.end = end.map_or(self.body.len(), |e| e.min(self.body.len())).max(start);
        self.done = false;
        Ok(())
    }

    fn get_eviction_weight(&self) -> usize {
        self.body.len()
    }

    fn as_any(&self) -> &(dyn std::any::Any + Send + Sync) {
        self
    }

    fn as_any_mut(&mut self) -> &mut (dyn std::any::Any + Send + Sync) {
        self
    }
}

/// Collects a body from the upstream; stored when complete.
struct Miss {
    zone: &'static Zone,
    key: String,
    url: Box<str>,
    meta: (Vec<u8>, Vec<u8>),
    body: BytesMut,
    too_large: bool,
}

#[async_trait]
impl HandleMiss for Miss {
    async fn write_body(&mut self, data: Bytes, _eof: bool) -> Result<()> {
        // Pingora stops admitting bodies over the request's max file size; this guards the zone
        // when the limit changed under a request in flight.
        if self.too_large || (self.body.len() + data.len()) as u64 > self.zone.max_entry() {
            self.too_large = true;
            self.body = BytesMut::new();
            return Ok(());
        }
        self.body.extend_from_slice(&data);
        Ok(())
    }

    async fn finish(self: Box<Self>) -> Result<MissFinishType> {
        if self.too_large {
            return Ok(MissFinishType::Created(0));
        }
        let size = self.body.len();
        let Miss { zone, key, url, meta, body, .. } = *self;
        zone.store(key, url, meta, body.freeze());
        Ok(MissFinishType::Created(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(url: &str, size: u64) -> Entry {
        Entry { meta: (Vec::new(), Vec::new()), body: Bytes::new(), url: url.into(), size, tick: 0 }
    }

    #[test]
    fn the_least_recently_used_entries_go_first() {
        let mut lru = Lru::default();
        for k in ["a", "b", "c"] {
            lru.insert(k.to_string(), entry(k, 10));
        }
        assert!(lru.touch("a").is_some());
        assert_eq!(lru.evict_to(20), 1);
        assert!(lru.entries.contains_key("a") && !lru.entries.contains_key("b"));
        assert_eq!(lru.bytes, 20);
    }

    #[test]
    fn replacing_an_entry_charges_only_the_new_one() {
        let mut lru = Lru::default();
        lru.insert("a".into(), entry("a", 10));
        lru.insert("a".into(), entry("a", 30));
        assert_eq!((lru.bytes, lru.entries.len(), lru.order.len()), (30, 1, 1));
    }

    #[test]
    fn a_zone_stays_within_its_budget_and_counts_evictions() {
        let zone = Zone::new("z", 2000, 1000);
        for i in 0..10 {
            zone.store(
                format!("k{i}"),
                format!("http://h/{i}").into(),
                (Vec::new(), Vec::new()),
                Bytes::from(vec![0; 500]),
            );
        }
        let stats = zone.stats();
        assert!(stats.bytes <= 2000, "{stats:?}");
        assert_eq!(stats.entries + stats.evictions, 10);
        assert_eq!(zone.purge_where(|u| u == "http://h/9"), 1);
        zone.resize(0, 1000);
        assert_eq!(zone.stats().entries, 0);
    }
}
