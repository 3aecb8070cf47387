//! Several instances on one PostgreSQL store are one client of each vendor.
//!
//! - **Who runs.** Each instance writes a heartbeat row every [`BEAT`]; one not seen for
//!   [`ALIVE_FOR`] (killed, or cut off) no longer counts.
//! - **Rate.** While it is alone an instance limits each tenant's calls in memory (governor,
//!   no store round trip per call). While others run, every call takes its turn from the
//!   tenant's GCRA row in the store ([`ClusterStore::rate_take`], one statement), so the vendor
//!   sees the configured rate whichever instances the load balancer picks. Going from alone to
//!   shared, an instance charges the tenant's burst as spent on its first shared call (it may
//!   have spent it where the row cannot see); a newcomer waits, before it serves, until the
//!   others have seen it ([`Cluster::join`]), so nobody limits alone while it shares.
//! - **Signals.** A vendor's pause (429 `Retry-After`, a rule's `pause_ms`) and a circuit
//!   breaker's opening are written to the store; every instance reads the running ones every
//!   [`SIGNAL_POLL`] and honours them as its own.
//!
//! While the store cannot be reached, each instance limits alone (and says so in the log):
//! the calls the cashier waits on go on, at the risk of more than the rate for that time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prometheus_client::metrics::gauge::Gauge;
use tokio::time::Instant;

use crate::store::{Member, RateTake, Store, StoreError, now_ms};

/// How often an instance says it is alive.
pub const BEAT: Duration = Duration::from_secs(1);
/// How long after its last heartbeat an instance still counts.
pub const ALIVE_FOR: Duration = Duration::from_secs(3);
/// How often the running pauses and breaker openings are read.
pub const SIGNAL_POLL: Duration = Duration::from_millis(250);
/// Longest a newcomer waits for the others to see it before it serves anyway.
const JOIN_WAIT: Duration = Duration::from_secs(3);

/// One instance's view of the others, and its handle on what they share.
pub struct Cluster {
    store: Arc<dyn Store>,
    instance: String,
    view: RwLock<View>,
    /// Whether the last store call failed (logged once per outage).
    store_down: AtomicBool,
    instances: Gauge,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct View {
    /// Other instances alive at the last heartbeat.
    others: usize,
    /// Counts the times this instance went from limiting alone to sharing.
    generation: u64,
    /// While sharing: since when no other instance has been seen (see [`others_after_beat`]).
    none_seen_since: Option<Instant>,
    /// Running signals by tenant.
    signals: HashMap<String, Signal>,
}

#[derive(Default, Clone, Copy)]
struct Signal {
    paused_until: Option<Instant>,
    open_until: Option<Instant>,
}

/// How many other instances a beat leaves this one counting, given `before` and the `seen`
/// alive now. Limiting alone is the direction that can overrun the vendor, so a sharing
/// instance goes alone only once it has seen no other for [`ALIVE_FOR`] of its own beats: an
/// instance whose beats were late (a busy machine) is back within it, and one that is gone has
/// then been silent for twice `ALIVE_FOR`. Sharing again needs one beat.
fn others_after_beat(
    before: usize,
    seen: usize,
    none_seen_since: &mut Option<Instant>,
    now: Instant,
) -> usize {
    if seen > 0 || before == 0 {
        *none_seen_since = None;
        return seen;
    }
    let since = *none_seen_since.get_or_insert(now);
    if now.saturating_duration_since(since) < ALIVE_FOR {
        before
    } else {
        *none_seen_since = None;
        0
    }
}

/// The store's wall-clock milliseconds as this process' clock (one in the past: none).
fn instant_of(ms: i64, now_ms: i64, now: Instant) -> Option<Instant> {
    let left = u64::try_from(ms.checked_sub(now_ms)?).ok()?;
    (left > 0).then(|| now + Duration::from_millis(left))
}

/// This process' instant as the store's wall-clock milliseconds.
fn ms_of(at: Instant) -> i64 {
    now_ms() + crate::store::duration_ms(at.saturating_duration_since(Instant::now()))
}

impl Cluster {
    /// Joins the instances sharing `store` under the name `instance`: the first heartbeat,
    /// then, if others run, a wait (at most [`JOIN_WAIT`]) until each has beaten since, so that
    /// each counts this one and takes its turns from the store before this one serves.
    pub async fn join(store: Arc<dyn Store>, instance: String, instances: Gauge) -> Arc<Cluster> {
        let cluster = Arc::new(Cluster {
            store,
            instance,
            view: RwLock::new(View::default()),
            store_down: AtomicBool::new(false),
            instances,
        });
        let joined_ms = now_ms();
        let started = Instant::now();
        loop {
            let Some(members) = cluster.beat().await else {
                break;
            };
            let waiting: Vec<&Member> = members
                .iter()
                .filter(|m| m.instance != cluster.instance && m.beat_ms < joined_ms)
                .collect();
            if waiting.is_empty() {
                break;
            }
            if started.elapsed() >= JOIN_WAIT {
                tracing::warn!(
                    instances = waiting.len(),
                    "joining: other instances have not seen this one yet; serving anyway"
                );
                break;
            }
            tokio::time::sleep(BEAT / 4).await;
        }
        cluster.poll_signals().await;
        cluster
    }

    /// Beats and reads the signals until aborted.
    pub async fn run(self: Arc<Self>) {
        let mut last_beat = Instant::now();
        loop {
            tokio::time::sleep(SIGNAL_POLL).await;
            if last_beat.elapsed() >= BEAT {
                last_beat = Instant::now();
                self.beat().await;
            }
            self.poll_signals().await;
        }
    }

    /// Graceful shutdown: the others stop counting this instance at once.
    pub async fn leave(&self) {
        if let Err(e) = self.store.leave(&self.instance).await {
            tracing::warn!(error = %e, "cannot leave the instances' table; the others stop counting this one after its heartbeat runs out");
        }
    }

    /// The heartbeat; the instances alive (`None` when the store failed).
    async fn beat(&self) -> Option<Vec<Member>> {
        let now = now_ms();
        let until = now + crate::store::duration_ms(ALIVE_FOR);
        let members = match self.store.heartbeat(&self.instance, now, until).await {
            Ok(members) => members,
            Err(e) => {
                self.store_failed(&e);
                return None;
            }
        };
        self.store_back();
        let seen = members
            .iter()
            .filter(|m| m.instance != self.instance)
            .count();
        self.instances
            .set(i64::try_from(seen + 1).unwrap_or(i64::MAX));
        let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
        let others =
            others_after_beat(view.others, seen, &mut view.none_seen_since, Instant::now());
        if others != view.others {
            if view.others == 0 {
                view.generation += 1;
            }
            tracing::info!(
                instances = others + 1,
                "instances sharing the store changed: vendor rate limits are {}",
                if others == 0 {
                    "kept alone"
                } else {
                    "shared through the store"
                }
            );
            view.others = others;
        }
        Some(members)
    }

    async fn poll_signals(&self) {
        let now = now_ms();
        let running = match self.store.vendor_signals(now).await {
            Ok(running) => running,
            Err(e) => {
                self.store_failed(&e);
                return;
            }
        };
        let at = Instant::now();
        let signals = running
            .into_iter()
            .map(|s| {
                let signal = Signal {
                    paused_until: instant_of(s.paused_until_ms, now, at),
                    open_until: instant_of(s.open_until_ms, now, at),
                };
                (s.tenant, signal)
            })
            .collect();
        self.view.write().unwrap_or_else(|p| p.into_inner()).signals = signals;
    }

    fn store_failed(&self, e: &StoreError) {
        if !self.store_down.swap(true, Ordering::Relaxed) {
            tracing::warn!(error = %e, "the store cannot be reached: vendor rate limits are kept by each instance alone until it can");
        }
    }

    fn store_back(&self) {
        if self.store_down.swap(false, Ordering::Relaxed) {
            tracing::info!("the store can be reached again");
        }
    }

    /// While other instances run: the number of the stretch of sharing (it changes each time
    /// this instance stops being alone). `None` while it is alone.
    pub fn sharing(&self) -> Option<u64> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        (view.others > 0).then_some(view.generation)
    }

    /// Takes one call's turn of `tenant` from the store (see [`ClusterStore::rate_take`]);
    /// `Ok(wait)` to go after `wait`, `Err(wait)` refused (it would have had to wait that
    /// long). `None` when the store failed: the caller limits alone.
    ///
    /// [`ClusterStore::rate_take`]: crate::store::ClusterStore::rate_take
    pub async fn take(
        &self,
        tenant: &str,
        rate: SharedRate,
        max_wait: Duration,
        charge: bool,
    ) -> Option<Result<Duration, Duration>> {
        let max_wait_us = i64::try_from(max_wait.as_micros()).unwrap_or(i64::MAX);
        let charge_us = if charge { rate.tolerance_us } else { 0 };
        let taken = self
            .store
            .rate_take(
                tenant,
                rate.interval_us,
                rate.tolerance_us,
                max_wait_us,
                charge_us,
            )
            .await;
        let micros = |us: i64| Duration::from_micros(u64::try_from(us).unwrap_or(0));
        match taken {
            Ok(RateTake::Go { wait_us }) => Some(Ok(micros(wait_us))),
            Ok(RateTake::Refused { wait_us }) => Some(Err(micros(wait_us))),
            Err(e) => {
                self.store_failed(&e);
                None
            }
        }
    }

    /// A pause another instance (or this one) wrote for `tenant`, still running.
    pub fn paused_until(&self, tenant: &str) -> Option<Instant> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.signals.get(tenant).and_then(|s| s.paused_until)
    }

    /// A breaker opening another instance (or this one) wrote for `tenant`, still running.
    pub fn open_until(&self, tenant: &str) -> Option<Instant> {
        let view = self.view.read().unwrap_or_else(|p| p.into_inner());
        view.signals.get(tenant).and_then(|s| s.open_until)
    }

    /// Tells every instance that the vendor asked `tenant`'s calls to pause until `until`.
    pub fn pause(self: &Arc<Self>, tenant: &str, until: Instant) {
        self.signal(
            tenant,
            Signal {
                paused_until: Some(until),
                open_until: None,
            },
        );
    }

    /// Tells every instance that `tenant`'s breaker opened until `until`.
    pub fn open(self: &Arc<Self>, tenant: &str, until: Instant) {
        self.signal(
            tenant,
            Signal {
                paused_until: None,
                open_until: Some(until),
            },
        );
    }

    /// Written in the background: the request that saw the signal does not wait for the store.
    fn signal(self: &Arc<Self>, tenant: &str, signal: Signal) {
        {
            let mut view = self.view.write().unwrap_or_else(|p| p.into_inner());
            let known = view.signals.entry(tenant.to_owned()).or_default();
            known.paused_until = known.paused_until.max(signal.paused_until);
            known.open_until = known.open_until.max(signal.open_until);
        }
        let cluster = self.clone();
        let tenant = tenant.to_owned();
        tokio::spawn(async move {
            let paused = signal.paused_until.map_or(0, ms_of);
            let open = signal.open_until.map_or(0, ms_of);
            if let Err(e) = cluster.store.vendor_signal(&tenant, paused, open).await {
                tracing::warn!(tenant = %tenant, error = %e, "cannot share a vendor pause or breaker opening with the other instances");
            }
        });
    }
}

/// A tenant's rate in the store's terms: one call every `interval_us`, `tolerance_us` of burst
/// (GCRA's emission interval and tolerance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedRate {
    pub interval_us: i64,
    pub tolerance_us: i64,
}

impl SharedRate {
    /// `per_second` calls a second, `burst` at once (both at least 1). The interval is rounded
    /// up: never faster than configured.
    pub fn new(per_second: u32, burst: u32) -> SharedRate {
        let per_second = i64::from(per_second.max(1));
        let interval_us = (1_000_000 + per_second - 1) / per_second;
        SharedRate {
            interval_us,
            tolerance_us: interval_us * (i64::from(burst.max(1)) - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rate_never_runs_faster_than_configured() {
        assert_eq!(
            SharedRate::new(20, 40),
            SharedRate {
                interval_us: 50_000,
                tolerance_us: 50_000 * 39
            }
        );
        assert_eq!(SharedRate::new(3, 1).interval_us, 333_334);
        assert_eq!(SharedRate::new(3, 1).tolerance_us, 0);
        assert_eq!(SharedRate::new(0, 0).interval_us, 1_000_000);
    }

    #[test]
    fn an_instance_goes_alone_only_after_seeing_no_other_for_a_while() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut since = None;
        // Alone from the start, sharing at once when another shows up.
        assert_eq!(others_after_beat(0, 0, &mut since, at(0)), 0);
        assert_eq!(others_after_beat(0, 2, &mut since, at(1_000)), 2);
        // The others' beats are late: still sharing, as two.
        assert_eq!(others_after_beat(2, 0, &mut since, at(2_000)), 2);
        assert_eq!(others_after_beat(2, 0, &mut since, at(4_999)), 2);
        // One is back before ALIVE_FOR ran out: the count follows it, the silence is over.
        assert_eq!(others_after_beat(2, 1, &mut since, at(5_000)), 1);
        assert_eq!(since, None);
        assert_eq!(others_after_beat(1, 0, &mut since, at(6_000)), 1);
        // Silent for ALIVE_FOR of beats: alone.
        assert_eq!(others_after_beat(1, 0, &mut since, at(9_000)), 0);
        assert_eq!(since, None);
    }

    #[test]
    fn store_times_become_instants_only_when_ahead() {
        let at = Instant::now();
        assert_eq!(
            instant_of(1_500, 1_000, at),
            Some(at + Duration::from_millis(500))
        );
        assert_eq!(instant_of(1_000, 1_000, at), None);
        assert_eq!(instant_of(0, 1_000, at), None);
    }
}
