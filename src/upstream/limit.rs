//! Each tenant's vendor calls are kept within its configured rate (`[tenants.limits]`): a call
//! waits for a permit up to `max_wait_ms`, then fails with a 429 envelope instead of queueing
//! the cashier indefinitely. governor's GCRA limiter; one per tenant, shared by its requests.

use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::config::Limits;

pub struct TenantLimiter {
    limiter: DefaultDirectRateLimiter,
    max_wait: Duration,
}

impl TenantLimiter {
    pub fn new(limits: &Limits) -> TenantLimiter {
        // Both are validated to be at least 1 when the configuration is loaded.
        let rate = NonZeroU32::new(limits.requests_per_second).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(limits.burst).unwrap_or(NonZeroU32::MIN);
        TenantLimiter {
            limiter: RateLimiter::direct(Quota::per_second(rate).allow_burst(burst)),
            max_wait: Duration::from_millis(limits.max_wait_ms),
        }
    }

    /// Waits for a permit; `Err` with the wait that would have been needed when it exceeds the
    /// configured bound (or what is left of the request's deadline).
    pub async fn acquire(&self, left: Duration) -> Result<(), Duration> {
        let bound = self.max_wait.min(left);
        match self.limiter.check() {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::Clock::now(
                    &governor::clock::DefaultClock::default(),
                ));
                if wait > bound {
                    return Err(wait);
                }
                tokio::time::timeout(bound, self.limiter.until_ready())
                    .await
                    .map_err(|_| wait)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_burst_passes_then_calls_wait_or_are_refused() {
        let limiter = TenantLimiter::new(&Limits {
            requests_per_second: 10,
            burst: 3,
            max_wait_ms: 0,
            ..Limits::default()
        });
        let long = Duration::from_secs(5);
        for _ in 0..3 {
            limiter.acquire(long).await.unwrap();
        }
        assert!(
            limiter.acquire(long).await.is_err(),
            "over the burst, with no waiting allowed"
        );
        let patient = TenantLimiter::new(&Limits {
            requests_per_second: 10,
            burst: 1,
            max_wait_ms: 1_000,
            ..Limits::default()
        });
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
}
