//! Cached vendor answers, for the steps a mapping marks `cache = { key, ttl_secs }` (customer
//! lookups, vendor settings). One bounded moka cache for the process; every key carries its
//! tenant, so one tenant never sees another's entry. Concurrent misses for one key are
//! coalesced into a single vendor call. Only 2xx answers are kept, and the plan drops an entry
//! when its rules decide the answer was not a plain success (an error inside a 200 body).
//! Expiry uses tokio's clock, so tests can pause and advance time. With metrics, every lookup
//! is a hit or a miss, and a miss that made the vendor call is also a load (coalesced waiters
//! are misses but not loads).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::upstream::{UpstreamError, UpstreamResponse};

#[derive(Clone)]
struct Entry {
    response: UpstreamResponse,
    expires: Instant,
}

/// Why a loaded answer was not kept (shared with the callers that waited for it).
enum NotKept {
    Answer(UpstreamResponse),
    Failed(UpstreamError),
}

pub struct StepCache {
    entries: Cache<(String, String), Entry>,
    metrics: Option<Arc<Metrics>>,
}

impl StepCache {
    pub fn new(max_entries: u64) -> StepCache {
        StepCache {
            entries: Cache::builder().max_capacity(max_entries).build(),
            metrics: None,
        }
    }

    /// A cache that counts its hits, misses and loads per tenant.
    pub fn with_metrics(max_entries: u64, metrics: Arc<Metrics>) -> StepCache {
        StepCache {
            metrics: Some(metrics),
            ..StepCache::new(max_entries)
        }
    }

    /// The live cached answer under `key` for `tenant` (a hit), or none. A plan asks this
    /// before building the vendor request, which a hit does not need.
    pub async fn get(&self, tenant: &str, key: &str) -> Option<UpstreamResponse> {
        let key = (tenant.to_string(), key.to_string());
        let entry = self.entries.get(&key).await?;
        if entry.expires <= Instant::now() {
            return None;
        }
        if let Some(m) = &self.metrics {
            m.cache_hit(tenant);
        }
        Some(entry.response)
    }

    /// The cached answer under `key` for `tenant`, or `fetch`'s (kept for `ttl` if 2xx).
    pub async fn get_or_fetch(
        &self,
        tenant: &str,
        key: String,
        ttl: Duration,
        fetch: impl Future<Output = Result<UpstreamResponse, UpstreamError>>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let key = (tenant.to_string(), key);
        if let Some(entry) = self.entries.get(&key).await {
            if entry.expires > Instant::now() {
                if let Some(m) = &self.metrics {
                    m.cache_hit(tenant);
                }
                return Ok(entry.response);
            }
            self.entries.invalidate(&key).await;
        }
        if let Some(m) = &self.metrics {
            m.cache_miss(tenant);
        }
        let loaded = self
            .entries
            .try_get_with(key, async {
                // Only the one caller that loads gets here; the others wait for its answer.
                if let Some(m) = &self.metrics {
                    m.cache_load(tenant);
                }
                match fetch.await {
                    Ok(response) if (200..300).contains(&response.status) => Ok(Entry {
                        response,
                        expires: Instant::now() + ttl,
                    }),
                    Ok(response) => Err(NotKept::Answer(response)),
                    Err(e) => Err(NotKept::Failed(e)),
                }
            })
            .await;
        match loaded {
            Ok(entry) => Ok(entry.response),
            Err(not_kept) => match &*not_kept {
                NotKept::Answer(response) => Ok(response.clone()),
                NotKept::Failed(e) => Err(e.clone()),
            },
        }
    }

    pub async fn invalidate(&self, tenant: &str, key: &str) {
        self.entries
            .invalidate(&(tenant.to_string(), key.to_string()))
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn answer(status: u16) -> Result<UpstreamResponse, UpstreamError> {
        Ok(UpstreamResponse {
            status,
            body: Bytes::from_static(b"{}"),
            retry_after: None,
        })
    }

    #[tokio::test(start_paused = true)]
    async fn entries_expire_with_their_ttl() {
        let cache = StepCache::new(100);
        let calls = AtomicU32::new(0);
        let fetch = || async {
            calls.fetch_add(1, Ordering::SeqCst);
            answer(200)
        };
        for _ in 0..3 {
            cache
                .get_or_fetch("t", "k".into(), Duration::from_secs(30), fetch())
                .await
                .unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(29)).await;
        cache
            .get_or_fetch("t", "k".into(), Duration::from_secs(30), fetch())
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        tokio::time::advance(Duration::from_secs(2)).await;
        cache
            .get_or_fetch("t", "k".into(), Duration::from_secs(30), fetch())
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "expired after 30 s");
    }

    #[tokio::test]
    async fn tenants_do_not_share_and_failures_are_not_kept() {
        let cache = StepCache::new(100);
        let calls = AtomicU32::new(0);
        let fetch = |status| {
            let calls = &calls;
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                answer(status)
            }
        };
        let ttl = Duration::from_secs(60);
        cache
            .get_or_fetch("a", "k".into(), ttl, fetch(200))
            .await
            .unwrap();
        cache
            .get_or_fetch("b", "k".into(), ttl, fetch(200))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2, "one entry per tenant");
        cache
            .get_or_fetch("a", "bad".into(), ttl, fetch(500))
            .await
            .unwrap();
        cache
            .get_or_fetch("a", "bad".into(), ttl, fetch(500))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 4, "a 500 is not kept");
        cache.invalidate("a", "k").await;
        cache
            .get_or_fetch("a", "k".into(), ttl, fetch(200))
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 5, "invalidated");
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_call() {
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(StepCache::with_metrics(100, metrics.clone()));
        let calls = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let (cache, calls) = (cache.clone(), calls.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch("t", "k".into(), Duration::from_secs(60), async {
                        calls.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        answer(200)
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        cache
            .get_or_fetch("t", "k5".into(), Duration::from_secs(60), async {
                answer(500)
            })
            .await
            .unwrap();
        let text = metrics.encode();
        let value = |name: &str| -> u64 {
            let prefix = format!("loyalty_bridge_{name}_total{{tenant=\"t\"}} ");
            // A series nobody touched is not written at all.
            text.lines()
                .find_map(|l| l.strip_prefix(prefix.as_str()))
                .map_or(0, |v| v.parse().unwrap())
        };
        // Every lookup is a hit or a miss (a task scheduled late may find the answer cached);
        // only the one vendor call that filled the cache is a load, plus the uncached 500.
        assert_eq!(value("cache_hits") + value("cache_misses"), 21);
        assert!(value("cache_misses") >= 2);
        assert_eq!(value("cache_loads"), 2);
    }
}
