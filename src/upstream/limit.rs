//! Each tenant's vendor calls are kept within its configured rate (`[tenants.limits]`): a call
//! waits for a permit up to `max_wait_ms`, then fails with a 429 envelope instead of queueing
//! the cashier indefinitely. governor's GCRA limiter; one per tenant, shared by its requests.
//!
//! The vendor can also ask for a pause — HTTP 429 with `Retry-After`, or a throttling error in
//! a 200 body that a mapping rule marks with `pause_ms`. Then [`TenantLimiter::pause`] makes
//! every call of the tenant behave as if no permit were available until the pause ends (capped
//! by `max_pause_ms`): it waits when that is within its bound, else fails fast.
//!
//! With several instances on one store ([`TenantLimiter::shared`]), the rate and the pauses
//! hold across all of them (`super::cluster`).

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use super::cluster::{Cluster, SharedRate};
use crate::config::Limits;
use crate::metrics::LimiterMetrics;

/// How long a 429 pauses the tenant when its `Retry-After` is missing or unreadable.
pub const DEFAULT_PAUSE: Duration = Duration::from_secs(1);

pub struct TenantLimiter {
    limiter: DefaultDirectRateLimiter,
    max_wait: Duration,
    max_pause: Duration,
    /// Reference point of `paused_until_us` (tokio's clock, so tests can pause time).
    epoch: Instant,
    /// Microseconds after `epoch` until which calls are paused (0: never paused).
    paused_until_us: AtomicU64,
    metrics: LimiterMetrics,
    /// The instances sharing the store, when there may be several.
    shared: Option<Shared>,
}

struct Shared {
    cluster: Arc<Cluster>,
    tenant: String,
    rate: SharedRate,
    /// The stretch of sharing ([`Cluster::sharing`]) whose first call was looked at for a
    /// charge.
    charged: AtomicU64,
    /// Microseconds after the limiter's epoch of the last call governor let through alone,
    /// plus one (0: none).
    last_alone_us: AtomicU64,
}

impl TenantLimiter {
    pub fn new(limits: &Limits, metrics: LimiterMetrics) -> TenantLimiter {
        // Both are validated to be at least 1 when the configuration is loaded.
        let rate = NonZeroU32::new(limits.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
        TenantLimiter {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            max_wait: Duration::from_millis(limits.max_wait_ms),
            max_pause: Duration::from_millis(limits.max_pause_ms),
            epoch: Instant::now(),
            paused_until_us: AtomicU64::new(0),
            metrics,
            shared: None,
        }
    }

    /// Keeps the rate and the pauses of `tenant` across the instances of `cluster` (none: this
    /// instance alone).
    pub fn shared(mut self, cluster: Option<Arc<Cluster>>, tenant: &str, limits: &Limits) -> Self {
        self.shared = cluster.map(|cluster| Shared {
            cluster,
            tenant: tenant.to_owned(),
            rate: SharedRate::new(limits.requests_per_second, limits.burst),
            charged: AtomicU64::new(u64::MAX),
            last_alone_us: AtomicU64::new(0),
        });
        self
    }

    /// The vendor asked us to hold off: no call of this tenant goes out for `wanted` (at most
    /// `max_pause`) from now. A longer pause already running is kept.
    pub fn pause(&self, wanted: Duration) {
        let pause = wanted.min(self.max_pause);
        if pause.is_zero() {
            return;
        }
        let until = (Instant::now() + pause).saturating_duration_since(self.epoch);
        let until_us = u64::try_from(until.as_micros()).unwrap_or(u64::MAX);
        let before = self.paused_until_us.fetch_max(until_us, Ordering::AcqRel);
        if before < until_us {
            tracing::info!(
                pause_ms = pause.as_millis() as u64,
                "vendor throttling: the tenant's calls are paused"
            );
            if let Some(shared) = &self.shared {
                shared.cluster.pause(&shared.tenant, Instant::now() + pause);
            }
        }
    }

    /// Microseconds since the limiter's epoch.
    fn micros_now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX)
    }

    /// Notes a call governor let through while this instance limited alone.
    fn took_alone(&self) {
        if let Some(shared) = &self.shared {
            shared
                .last_alone_us
                .store(self.micros_now().saturating_add(1), Ordering::Release);
        }
    }

    /// What is left of a pause (zero when there is none), this instance's or another's.
    pub fn paused_for(&self) -> Duration {
        let mut until =
            self.epoch + Duration::from_micros(self.paused_until_us.load(Ordering::Acquire));
        if let Some(shared) = &self.shared {
            until = until.max(shared.cluster.paused_until(&shared.tenant).unwrap_or(until));
        }
        until.saturating_duration_since(Instant::now())
    }

    /// Whether a call with `left` until its deadline may wait `wait` for a permit.
    pub fn could_wait(&self, wait: Duration, left: Duration) -> bool {
        wait <= self.max_wait.min(left)
    }

    /// Waits for a permit; `Err` with the wait that would have been needed when it exceeds the
    /// configured bound (or what is left of the request's deadline).
    pub async fn acquire(&self, left: Duration) -> Result<(), Duration> {
        let started = Instant::now();
        let bound = self.max_wait.min(left);
        let mut waited = false;
        // A pause first; it may be extended while we sleep, so look again after.
        loop {
            let pause = self.paused_for();
            if pause.is_zero() {
                break;
            }
            let spent = started.elapsed();
            if spent + pause > bound {
                self.metrics.rejections.inc();
                return Err(pause);
            }
            if !waited {
                self.metrics.waits.inc();
                waited = true;
            }
            tokio::time::sleep(pause).await;
        }
        let bound = bound.saturating_sub(started.elapsed());
        if let Some(taken) = self.take_shared(bound).await {
            return match taken {
                Ok(wait) => {
                    if !wait.is_zero() {
                        if !waited {
                            self.metrics.waits.inc();
                        }
                        tokio::time::sleep(wait).await;
                    }
                    Ok(())
                }
                Err(wait) => {
                    self.metrics.rejections.inc();
                    Err(wait)
                }
            };
        }
        match self.limiter.check() {
            Ok(()) => {
                self.took_alone();
                Ok(())
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                if wait > bound {
                    self.metrics.rejections.inc();
                    return Err(wait);
                }
                if !waited {
                    self.metrics.waits.inc();
                }
                match tokio::time::timeout(bound, self.limiter.until_ready()).await {
                    Ok(()) => {
                        self.took_alone();
                        Ok(())
                    }
                    Err(_) => {
                        self.metrics.rejections.inc();
                        Err(wait)
                    }
                }
            }
        }
    }
}

impl TenantLimiter {
    /// The turn from the store while other instances run; `None` while this one is alone (or
    /// the store cannot be reached): governor decides.
    async fn take_shared(&self, bound: Duration) -> Option<Result<Duration, Duration>> {
        let shared = self.shared.as_ref()?;
        let stretch = shared.cluster.sharing()?;
        // The first shared call after limiting alone charges the burst as spent when governor
        // let calls through lately (within one burst's refill): the row cannot see them.
        let charge = shared.charged.swap(stretch, Ordering::AcqRel) != stretch && {
            let last = shared.last_alone_us.load(Ordering::Acquire);
            let refill = u64::try_from(shared.rate.tolerance_us + shared.rate.interval_us)
                .unwrap_or(u64::MAX);
            last != 0 && self.micros_now().saturating_sub(last - 1) <= refill
        };
        shared
            .cluster
            .take(&shared.tenant, shared.rate, bound, charge)
            .await
    }
}

/// Reads a `Retry-After` value: delta-seconds (`"120"`) or an HTTP date
/// (`"Wed, 21 Oct 2015 07:28:00 GMT"`, relative to `now`; one in the past is zero). `None` for
/// anything else, so the caller can apply its default.
pub fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // An absurdly long number is still "a long time": the pause is capped anyway.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let date = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH
        + Duration::from_secs(u64::try_from(date.timestamp()).ok()?)
        + Duration::from_nanos(u64::from(date.timestamp_subsec_nanos()));
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rate: u32, burst: u32, max_wait_ms: u64) -> TenantLimiter {
        TenantLimiter::new(
            &Limits {
                requests_per_second: rate,
                burst,
                max_wait_ms,
                ..Limits::default()
            },
            LimiterMetrics::default(),
        )
    }

    #[tokio::test]
    async fn a_burst_passes_then_calls_wait_or_are_refused() {
        let limiter = limiter(10, 3, 0);
        let long = Duration::from_secs(5);
        for _ in 0..3 {
            limiter.acquire(long).await.unwrap();
        }
        assert!(
            limiter.acquire(long).await.is_err(),
            "over the burst, with no waiting allowed"
        );
        let patient = self::limiter(10, 1, 1_000);
        let started = std::time::Instant::now();
        for _ in 0..4 {
            patient.acquire(long).await.unwrap();
        }
        assert!(
            started.elapsed() >= Duration::from_millis(250),
            "3 waits of ~100 ms: {:?}",
            started.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_makes_calls_wait_when_they_may() {
        let metrics = LimiterMetrics::default();
        let limiter = TenantLimiter::new(
            &Limits {
                max_wait_ms: 3_000,
                ..Limits::default()
            },
            metrics.clone(),
        );
        limiter.pause(Duration::from_secs(2));
        let started = Instant::now();
        limiter.acquire(Duration::from_secs(10)).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited < Duration::from_millis(2_100),
            "{waited:?}"
        );
        assert_eq!(metrics.waits.get(), 1);
        assert_eq!(metrics.rejections.get(), 0);
        // Over: no more waiting.
        let started = Instant::now();
        limiter.acquire(Duration::from_secs(10)).await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(10));
        assert_eq!(metrics.waits.get(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pause_beyond_the_bound_fails_fast() {
        let metrics = LimiterMetrics::default();
        let limiter = TenantLimiter::new(
            &Limits {
                max_wait_ms: 500,
                ..Limits::default()
            },
            metrics.clone(),
        );
        limiter.pause(Duration::from_secs(2));
        let started = Instant::now();
        let wait = limiter.acquire(Duration::from_secs(10)).await.unwrap_err();
        assert_eq!(started.elapsed(), Duration::ZERO, "no waiting at all");
        assert!(
            wait > Duration::from_millis(1_900) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        // The request's own deadline bounds the wait too.
        let patient = TenantLimiter::new(&Limits::default(), LimiterMetrics::default());
        patient.pause(Duration::from_millis(800));
        assert!(patient.acquire(Duration::from_millis(300)).await.is_err());
        assert_eq!(metrics.rejections.get(), 1);
        // A shorter pause does not cut a longer one; the pause is capped by max_pause_ms.
        limiter.pause(Duration::from_millis(100));
        assert!(limiter.paused_for() > Duration::from_millis(1_900));
        let capped = TenantLimiter::new(
            &Limits {
                max_pause_ms: 5_000,
                ..Limits::default()
            },
            LimiterMetrics::default(),
        );
        capped.pause(Duration::from_secs(3_600));
        assert_eq!(capped.paused_for(), Duration::from_secs(5));
        tokio::time::advance(Duration::from_secs(2)).await;
        limiter.acquire(Duration::from_secs(10)).await.unwrap();
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480); // 2015-10-21 07:28:00 UTC
        assert_eq!(retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("0", now), Some(Duration::ZERO));
        assert_eq!(
            retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:30 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:27:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past: go ahead"
        );
        for garbage in [
            "",
            "soon",
            "-1",
            "1.5",
            "2 s",
            "Wed, 32 Oct 2015 07:28:00 GMT",
        ] {
            assert_eq!(retry_after(garbage, now), None, "{garbage:?}");
        }
    }
}
