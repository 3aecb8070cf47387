//! Cached vendor answers, for the steps a mapping marks `cache = { key, ttl_secs }` (customer
//! lookups, vendor settings). One moka cache for the process, bounded in bytes
//! (`server.cache_bytes`: keys and answers, all tenants) and in entries (`server.cache_entries`);
//! every key carries its tenant, so one tenant never sees another's entry. Concurrent misses for
//! one key are coalesced into a single vendor call. Only 2xx answers are kept, and the plan
//! drops an entry when its rules decide the answer was not a plain success (an error inside a
//! 200 body). Each entry leaves memory when its TTL ends (moka's per-entry expiry, swept by
//! [`StepCache::sweep_forever`] even when no request comes), not only when evicted. Whether an
//! entry is still live is decided by tokio's clock, so tests can pause and advance time. With
//! metrics, every lookup is a hit or a miss, and a miss that made the vendor call is also a
//! load (coalesced waiters are misses but not loads).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use moka::Expiry;
use moka::future::Cache;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::upstream::{UpstreamError, UpstreamResponse};

#[derive(Clone)]
struct Entry {
    response: UpstreamResponse,
    expires: Instant,
    ttl: Duration,
}

/// Why a loaded answer was not kept (shared with the callers that waited for it).
enum NotKept {
    Answer(UpstreamResponse),
    Failed(UpstreamError),
}

/// Roughly what an entry costs beyond its key's and body's bytes: moka's node and the
/// `Entry`, the key's two `String`s.
const ENTRY_OVERHEAD: u64 = 192;

/// An entry leaves moka's memory when its own TTL ends.
struct ByTtl;

impl Expiry<(String, String), Entry> for ByTtl {
    fn expire_after_create(
        &self,
        _key: &(String, String),
        entry: &Entry,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(entry.ttl)
    }
}

pub struct StepCache {
    entries: Cache<(String, String), Entry>,
    metrics: Option<Arc<Metrics>>,
    /// Invalidations, counted per shard of keys: an answer loaded while its key was
    /// invalidated may be the old state (a lookup racing a return), so it is handed to its
    /// callers but not kept. Shards, not one counter: under a stream of sales (each
    /// invalidating its customer) a global count would keep almost no load.
    invalidations: Box<[AtomicU64]>,
}

/// Shards of [`StepCache::invalidations`]: two keys share one with a chance of 1 in this.
const INVALIDATION_SHARDS: usize = 256;

/// The byte budget of [`StepCache::new`] (the server's default `server.cache_bytes`).
pub const DEFAULT_BYTES: u64 = 64 * 1024 * 1024;

impl StepCache {
    /// A cache of at most `max_entries` entries and [`DEFAULT_BYTES`].
    pub fn new(max_entries: u64) -> StepCache {
        StepCache::bounded(max_entries, DEFAULT_BYTES)
    }

    /// A cache of at most `max_entries` entries and `max_bytes` bytes.
    pub fn bounded(max_entries: u64, max_bytes: u64) -> StepCache {
        // moka bounds one weight: bytes. Every entry weighs at least `max_bytes / max_entries`,
        // so that the entry count stays within `max_entries` too.
        let least = (max_bytes / max_entries.max(1)).max(1);
        StepCache {
            entries: Cache::builder()
                .max_capacity(max_bytes)
                .weigher(move |key: &(String, String), entry: &Entry| {
                    let bytes = (key.0.len() + key.1.len() + entry.response.body.len()) as u64
                        + ENTRY_OVERHEAD;
                    u32::try_from(bytes.max(least)).unwrap_or(u32::MAX)
                })
                .expire_after(ByTtl)
                .build(),
            metrics: None,
            invalidations: (0..INVALIDATION_SHARDS)
                .map(|_| AtomicU64::new(0))
                .collect(),
        }
    }

    /// A cache that counts its hits, misses and loads per tenant.
    pub fn with_metrics(max_entries: u64, max_bytes: u64, metrics: Arc<Metrics>) -> StepCache {
        StepCache {
            metrics: Some(metrics),
            ..StepCache::bounded(max_entries, max_bytes)
        }
    }

    /// Bytes the cache holds now, as weighed (approximate: moka applies writes in batches).
    pub fn weighed_bytes(&self) -> u64 {
        self.entries.weighted_size()
    }

    /// Removes expired entries and applies pending evictions every `every`, so that memory
    /// is given back after a burst even when no request comes to trigger moka's upkeep.
    pub async fn sweep_forever(self: Arc<Self>, every: Duration) {
        loop {
            tokio::time::sleep(every).await;
            self.entries.run_pending_tasks().await;
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
        let shard = self.invalidations_of(tenant, &key.1);
        let loaded = self
            .entries
            .try_get_with(key, async {
                // Only the one caller that loads gets here; the others wait for its answer.
                if let Some(m) = &self.metrics {
                    m.cache_load(tenant);
                }
                let invalidations = shard.load(Ordering::Acquire);
                match fetch.await {
                    Ok(response) if shard.load(Ordering::Acquire) != invalidations => {
                        Err(NotKept::Answer(response))
                    }
                    Ok(response) if (200..300).contains(&response.status) => Ok(Entry {
                        response,
                        expires: Instant::now() + ttl,
                        ttl,
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

    /// The invalidation count of the shard `key` of `tenant` falls in.
    fn invalidations_of(&self, tenant: &str, key: &str) -> &AtomicU64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (tenant, key).hash(&mut hasher);
        &self.invalidations[hasher.finish() as usize % INVALIDATION_SHARDS]
    }

    pub async fn invalidate(&self, tenant: &str, key: &str) {
        self.invalidations_of(tenant, key)
            .fetch_add(1, Ordering::AcqRel);
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

    /// Big answers under many keys (an attacker's made-up ids) stay within the byte budget.
    #[tokio::test]
    async fn bytes_stay_within_the_budget() {
        let budget = 4 << 20;
        let cache = StepCache::bounded(100_000, budget);
        let body = Bytes::from(vec![b'x'; 100 * 1024]);
        for i in 0..300 {
            let body = body.clone();
            cache
                .get_or_fetch("t", format!("k{i}"), Duration::from_secs(60), async move {
                    Ok(UpstreamResponse {
                        status: 200,
                        body,
                        retry_after: None,
                    })
                })
                .await
                .unwrap();
        }
        cache.entries.run_pending_tasks().await;
        assert!(
            cache.weighed_bytes() <= budget,
            "{} bytes kept, budget {budget}",
            cache.weighed_bytes()
        );
        assert!(
            cache.entries.entry_count() <= 40,
            "{}",
            cache.entries.entry_count()
        );
        assert!(
            cache.entries.entry_count() >= 10,
            "{}",
            cache.entries.entry_count()
        );
    }

    /// A lookup of `key` (tenant "t") whose vendor answer (a 200) comes once the sender fires.
    fn held_lookup(
        cache: &Arc<StepCache>,
        key: &str,
    ) -> (
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<Result<UpstreamResponse, UpstreamError>>,
    ) {
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let (cache, key) = (cache.clone(), key.to_owned());
        let lookup = tokio::spawn(async move {
            cache
                .get_or_fetch("t", key, Duration::from_secs(60), async {
                    let _ = released.await;
                    answer(200)
                })
                .await
        });
        (release, lookup)
    }

    /// A lookup in flight while its key is invalidated (a return racing a balance lookup)
    /// answers its callers but is not kept: the next lookup asks the vendor again.
    #[tokio::test]
    async fn an_answer_loaded_across_an_invalidation_is_not_kept() {
        let cache = Arc::new(StepCache::new(100));
        let (loading, lookup) = held_lookup(&cache, "k");
        tokio::time::sleep(Duration::from_millis(20)).await;
        cache.invalidate("t", "k").await;
        let _ = loading.send(());
        assert_eq!(lookup.await.unwrap().unwrap().status, 200);
        assert!(
            cache.get("t", "k").await.is_none(),
            "the old answer was kept"
        );
    }

    /// Invalidating one key does not stop another's load from being kept (a stream of sales
    /// invalidating their customers leaves the vendor settings cached).
    #[tokio::test]
    async fn an_invalidation_of_another_key_does_not_stop_a_load_being_kept() {
        let cache = Arc::new(StepCache::new(100));
        let (loading, lookup) = held_lookup(&cache, "settings");
        tokio::time::sleep(Duration::from_millis(20)).await;
        // Keys whose shard differs from the loading one's (a shared shard is 1 in 256).
        let settings = cache.invalidations_of("t", "settings") as *const AtomicU64;
        for i in 0..20 {
            let key = format!("customer:{i}");
            if !std::ptr::eq(cache.invalidations_of("t", &key), settings) {
                cache.invalidate("t", &key).await;
            }
        }
        let _ = loading.send(());
        assert_eq!(lookup.await.unwrap().unwrap().status, 200);
        assert!(cache.get("t", "settings").await.is_some(), "not kept");
    }

    /// Small entries are bounded by count as well.
    #[tokio::test]
    async fn entries_stay_within_the_count() {
        let cache = StepCache::bounded(50, 1 << 20);
        for i in 0..500 {
            cache
                .get_or_fetch("t", format!("k{i}"), Duration::from_secs(60), async {
                    answer(200)
                })
                .await
                .unwrap();
        }
        cache.entries.run_pending_tasks().await;
        assert!(
            cache.entries.entry_count() <= 50,
            "{}",
            cache.entries.entry_count()
        );
    }

    /// An entry leaves memory when its TTL ends, without waiting for eviction.
    #[tokio::test]
    async fn expired_entries_leave_memory() {
        let cache = StepCache::new(100);
        cache
            .get_or_fetch("t", "k".into(), Duration::from_millis(50), async {
                answer(200)
            })
            .await
            .unwrap();
        cache.entries.run_pending_tasks().await;
        assert_eq!(cache.entries.entry_count(), 1);
        // moka's timer wheel ticks in ≈ 1 s steps: the entry goes at the first tick after.
        tokio::time::sleep(Duration::from_millis(2_200)).await;
        cache.entries.run_pending_tasks().await;
        assert_eq!(cache.entries.entry_count(), 0, "still held after its TTL");
        assert_eq!(cache.weighed_bytes(), 0);
    }

    #[tokio::test]
    async fn concurrent_misses_make_one_call() {
        let metrics = Arc::new(Metrics::new());
        let cache = Arc::new(StepCache::with_metrics(100, 1 << 20, metrics.clone()));
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
