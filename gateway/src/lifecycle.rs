//! Connection tracking for a drain that loses nothing: every accepted
//! connection is counted while its task lives, so the drain knows when the last in-flight request,
//! stream, WebSocket or TCP connection has finished, instead of cancelling them all at once as
//! `Runtime::shutdown_timeout` would.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::Notify;

/// Counts open connections.
#[derive(Debug, Default)]
pub struct Tracker {
    active: AtomicUsize,
    changed: Notify,
    /// Idle keep-alive connections are to close (the end of a drain).
    closing_idle: AtomicBool,
    /// Wakes the connections waiting between requests: at each tick, and when they are to close.
    idle_wake: Notify,
    /// Seconds counted by [`Tracker::ticking`].
    ticks: AtomicU64,
}

/// Held by a connection's task; the connection counts until it is dropped.
#[derive(Debug)]
pub struct Tracked(Arc<Tracker>);

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
        self.0.changed.notify_waiters();
    }
}

impl Tracker {
    /// A new, empty tracker.
    pub fn new() -> Arc<Self> {
        Arc::new(Tracker::default())
    }

    /// Counts one more connection until the returned guard is dropped.
    pub fn track(self: &Arc<Self>) -> Tracked {
        self.active.fetch_add(1, Ordering::AcqRel);
        Tracked(self.clone())
    }

    /// Connections open now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::Acquire)
    }

    /// Closes the keep-alive connections waiting between requests, now and from now on (the
    /// end of a drain: in-flight requests go on).
    pub fn close_idle(&self) {
        self.closing_idle.store(true, Ordering::Release);
        self.idle_wake.notify_waiters();
    }

    /// Idle connections are to close.
    pub fn closing_idle(&self) -> bool {
        self.closing_idle.load(Ordering::Acquire)
    }

    /// Seconds counted so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Acquire)
    }

    /// Resolves at the next tick, or at once when idle connections are to close.
    pub async fn idle_wake(&self) {
        let woken = self.idle_wake.notified();
        if self.closing_idle() {
            return;
        }
        woken.await;
    }

    /// Counts a second, and wakes the connections waiting between requests to look at their
    /// keep-alive timeout.
    fn tick(&self) {
        self.ticks.fetch_add(1, Ordering::AcqRel);
        self.idle_wake.notify_waiters();
    }

    /// Ticks every second while the tracker lives (spawned on the runtime that serves the
    /// connections). One clock for every waiting connection, instead of a timer each: registering
    /// and cancelling a Tokio timer for every wait between requests cost about 700 instructions a
    /// request, and keep-alive timeouts are whole seconds.
    pub async fn ticking(tracker: Weak<Tracker>) {
        let mut every = tokio::time::interval(Duration::from_secs(1));
        // After a stall, one tick and then a second apart: ticks made up in a burst would count
        // seconds that passed before a connection started waiting, and close it early.
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        every.tick().await;
        loop {
            every.tick().await;
            let Some(t) = tracker.upgrade() else { return };
            t.tick();
        }
    }

    /// Resolves once no connection is open.
    pub async fn idle(&self) {
        loop {
            // Register before checking, so a drop in between is not missed.
            let changed = self.changed.notified();
            if self.active() == 0 {
                return;
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn idle_waits_for_the_last_connection() {
        let tracker = Tracker::new();
        let (a, b) = (tracker.track(), tracker.track());
        assert_eq!(tracker.active(), 2);
        let waiting = tokio::spawn({
            let t = tracker.clone();
            async move { t.idle().await }
        });
        drop(a);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished(), "one connection is still open");
        drop(b);
        tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap();
        assert_eq!(tracker.active(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_close_when_told_and_after() {
        let tracker = Tracker::new();
        let waiting = tokio::spawn({
            let t = tracker.clone();
            async move { t.idle_wake().await }
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished());
        tracker.close_idle();
        tokio::time::timeout(Duration::from_secs(1), waiting).await.unwrap().unwrap();
        assert!(tracker.closing_idle());
        // A connection that goes idle later closes at once.
        tokio::time::timeout(Duration::from_secs(1), tracker.idle_wake()).await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_connections_are_woken_every_second_until_the_tracker_goes() {
        let tracker = Tracker::new();
        let ticking = tokio::spawn(Tracker::ticking(Arc::downgrade(&tracker)));
        let before = tokio::time::Instant::now();
        tracker.idle_wake().await;
        assert_eq!(before.elapsed(), Duration::from_secs(1));
        tracker.idle_wake().await;
        assert_eq!(tracker.ticks(), 2);
        assert!(!tracker.closing_idle());
        drop(tracker);
        tokio::time::timeout(Duration::from_secs(2), ticking).await.unwrap().unwrap();
    }
}
