//! What several bridge instances on one database share so that, to a vendor, they are one
//! well-behaved client: who is running (a heartbeat row per instance), each tenant's vendor
//! rate (GCRA state in a row, taken with one statement), and the vendor's throttle pauses and
//! circuit-breaker openings (`crate::upstream::cluster` uses them).
//!
//! The rate's clock is the database's where it has one (PostgreSQL's `clock_timestamp()`), so
//! instances whose clocks drift apart still share one timeline; heartbeats and signals carry
//! the instances' own wall-clock milliseconds, whose small skew they tolerate.

use super::StoreFuture;

/// A running instance, as its last heartbeat left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub instance: String,
    /// Its first heartbeat.
    pub joined_ms: i64,
    /// Its latest heartbeat.
    pub beat_ms: i64,
}

/// The answer of [`ClusterStore::rate_take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateTake {
    /// The call is counted: it may go after this many microseconds (0: now).
    Go { wait_us: i64 },
    /// Not counted: a call would have had to wait this long, more than it may.
    Refused { wait_us: i64 },
}

/// A tenant's shared vendor signals still running (wall-clock milliseconds; 0: none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorSignal {
    pub tenant: String,
    /// The vendor asked for a pause until then (429 `Retry-After`, a rule's `pause_ms`).
    pub paused_until_ms: i64,
    /// A circuit breaker opened until then.
    pub open_until_ms: i64,
}

/// The shared state of several instances.
pub trait ClusterStore: Send + Sync {
    /// Records that `instance` is alive until `until_ms`, and returns every instance alive at
    /// `now_ms`, this one included.
    fn heartbeat(&self, instance: &str, now_ms: i64, until_ms: i64)
    -> StoreFuture<'_, Vec<Member>>;

    /// `instance` stops (graceful shutdown): the others stop counting it at once.
    fn leave(&self, instance: &str) -> StoreFuture<'_, ()>;

    /// GCRA, one statement: counts one call of `tenant` whose rate allows one call every
    /// `interval_us` with `tolerance_us` of burst, if it need not wait more than `max_wait_us`
    /// for its turn. `charge_us` (0 or the tolerance) treats that much of the burst as spent
    /// first: an instance that limited alone until now has used it where the row cannot see.
    fn rate_take(
        &self,
        tenant: &str,
        interval_us: i64,
        tolerance_us: i64,
        max_wait_us: i64,
        charge_us: i64,
    ) -> StoreFuture<'_, RateTake>;

    /// Raises `tenant`'s signals to at least the given times (0 leaves one as it is).
    fn vendor_signal(
        &self,
        tenant: &str,
        paused_until_ms: i64,
        open_until_ms: i64,
    ) -> StoreFuture<'_, ()>;

    /// The signals still running at `now_ms`.
    fn vendor_signals(&self, now_ms: i64) -> StoreFuture<'_, Vec<VendorSignal>>;
}
