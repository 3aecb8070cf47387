//! Prometheus metrics (`GET /metrics`, OpenMetrics text): one [`Metrics`] per server, created
//! in `server::serve_with` and shared. Every family is prefixed `loyalty_bridge_`.
//!
//! Components that belong to one tenant (its rate limiter, its circuit breaker) get small
//! handles with their counters already resolved ([`LimiterMetrics`], [`BreakerMetrics`]), so
//! their hot path is an atomic add. A handle's `Default` is a set of unregistered metrics: what
//! golden examples, dry runs and unit tests use. Label sets are small structs; looking one up
//! takes a read lock that is released at once, never across an `.await`.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// `Content-Type` of the exposition.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A LoyaltyAPI request: its operation (`"-"` when it named none: health, metrics, unknown
/// paths) and the HTTP status answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub op: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TenantLabels {
    pub tenant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StepLabels {
    pub tenant: String,
    pub step: String,
}

/// One vendor call attempt: `outcome` is the status class (`"2xx"`, `"4xx"`, …) or the kind
/// of failure (`timeout`, `connect`, `transport`, `throttled`, `circuit_open`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    pub tenant: String,
    pub step: String,
    pub outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// 5 ms … ~10 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 12))
}

/// The `tenant` label all MoySklad-app tenants share unless `server.metrics_per_app_tenant`.
pub const APP_TENANTS_LABEL: &str = "app";

pub struct Metrics {
    registry: Registry,
    /// Whether each app tenant gets series of its own (see [`Metrics::per_app_tenant`]).
    per_app_tenant: bool,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RequestLabels>,
    upstream_calls: Family<CallLabels, Counter>,
    upstream_duration: HistogramFamily<StepLabels>,
    upstream_retries: Family<StepLabels, Counter>,
    cache_hits: Family<TenantLabels, Counter>,
    cache_misses: Family<TenantLabels, Counter>,
    cache_loads: Family<TenantLabels, Counter>,
    limiter_waits: Family<TenantLabels, Counter>,
    limiter_rejections: Family<TenantLabels, Counter>,
    breaker_state: Family<TenantLabels, Gauge>,
    breaker_opened: Family<TenantLabels, Counter>,
    outbox_pending: Family<TenantLabels, Gauge>,
    outbox_failed: Family<TenantLabels, Gauge>,
    outbox_oldest_age: Family<TenantLabels, Gauge<f64, AtomicU64>>,
    instances: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            per_app_tenant: false,
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            upstream_calls: Family::default(),
            upstream_duration: Family::new_with_constructor(latency_histogram),
            upstream_retries: Family::default(),
            cache_hits: Family::default(),
            cache_misses: Family::default(),
            cache_loads: Family::default(),
            limiter_waits: Family::default(),
            limiter_rejections: Family::default(),
            breaker_state: Family::default(),
            breaker_opened: Family::default(),
            outbox_pending: Family::default(),
            outbox_failed: Family::default(),
            outbox_oldest_age: Family::default(),
            instances: Gauge::default(),
            registry: Registry::with_prefix("loyalty_bridge"),
        };
        let r = &mut m.registry;
        r.register(
            "requests",
            "LoyaltyAPI requests answered, by operation and HTTP status",
            m.requests.clone(),
        );
        r.register_with_unit(
            "request_duration",
            "Time to answer a LoyaltyAPI request",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register(
            "upstream_calls",
            "Vendor call attempts, by outcome (status class, or the kind of failure; throttled and circuit_open never left the bridge)",
            m.upstream_calls.clone(),
        );
        r.register_with_unit(
            "upstream_call_duration",
            "Time of vendor call attempts that went out",
            Unit::Seconds,
            m.upstream_duration.clone(),
        );
        r.register(
            "upstream_retries",
            "Vendor calls sent again after a transient failure",
            m.upstream_retries.clone(),
        );
        r.register(
            "cache_hits",
            "Cached vendor answers served",
            m.cache_hits.clone(),
        );
        r.register(
            "cache_misses",
            "Lookups of cached steps that found no answer (coalesced waiters included)",
            m.cache_misses.clone(),
        );
        r.register(
            "cache_loads",
            "Vendor fetches made to fill the cache",
            m.cache_loads.clone(),
        );
        r.register(
            "limiter_waits",
            "Vendor calls that waited for the tenant's rate limit or throttle pause",
            m.limiter_waits.clone(),
        );
        r.register(
            "limiter_rejections",
            "Vendor calls refused because the wait would have been too long",
            m.limiter_rejections.clone(),
        );
        r.register(
            "breaker_state",
            "Circuit breaker state: 0 closed, 1 open, 2 trial",
            m.breaker_state.clone(),
        );
        r.register(
            "breaker_opened",
            "Times the circuit breaker opened",
            m.breaker_opened.clone(),
        );
        r.register(
            "outbox_pending",
            "Sales waiting in the outbox",
            m.outbox_pending.clone(),
        );
        r.register(
            "outbox_failed",
            "Outbox entries that failed for good",
            m.outbox_failed.clone(),
        );
        r.register_with_unit(
            "outbox_oldest_age",
            "Age of the oldest pending outbox entry",
            Unit::Seconds,
            m.outbox_oldest_age.clone(),
        );
        r.register(
            "instances",
            "Bridge instances sharing the store, this one included, at its last heartbeat (PostgreSQL)",
            m.instances.clone(),
        );
        m
    }

    /// The exposition text (OpenMetrics, ends with `# EOF`).
    pub fn encode(&self) -> String {
        let mut out = String::with_capacity(8 * 1024);
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Gives every MoySklad-app tenant series of its own, labelled with its account id. Off
    /// (the default), app tenants' counters add up under [`APP_TENANTS_LABEL`] and their
    /// gauges (breaker state, outbox) are not exported, so that label sets stay bounded
    /// however many accounts install the app; configured tenants always have their own.
    pub fn per_app_tenant(mut self, on: bool) -> Metrics {
        self.per_app_tenant = on;
        self
    }

    /// The `tenant` label of `tenant`'s counters.
    fn label<'a>(&self, tenant: &'a str) -> &'a str {
        match self.gauge_label(tenant) {
            Some(label) => label,
            None => APP_TENANTS_LABEL,
        }
    }

    /// The `tenant` label of `tenant`'s gauges; none for app tenants that share a label (a
    /// gauge shared by many tenants would show whichever set it last).
    fn gauge_label<'a>(&self, tenant: &'a str) -> Option<&'a str> {
        (self.per_app_tenant || !tenant.starts_with(crate::config::APP_TENANT_PREFIX))
            .then_some(tenant)
    }

    /// One answered LoyaltyAPI request.
    pub fn request(&self, op: &'static str, status: u16, took: Duration) {
        let labels = RequestLabels { op, status };
        self.requests.get_or_create(&labels).inc();
        self.request_duration
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// One vendor call attempt; `took` is `None` for one that never left (throttled, circuit
    /// open).
    pub fn upstream_call(
        &self,
        tenant: &str,
        step: &str,
        outcome: &'static str,
        took: Option<Duration>,
    ) {
        let labels = CallLabels {
            tenant: self.label(tenant).to_owned(),
            step: step.to_owned(),
            outcome,
        };
        self.upstream_calls.get_or_create(&labels).inc();
        if let Some(took) = took {
            let CallLabels { tenant, step, .. } = labels;
            self.upstream_duration
                .get_or_create(&StepLabels { tenant, step })
                .observe(took.as_secs_f64());
        }
    }

    pub fn upstream_retry(&self, tenant: &str, step: &str) {
        self.upstream_retries
            .get_or_create(&StepLabels {
                tenant: self.label(tenant).to_owned(),
                step: step.to_owned(),
            })
            .inc();
    }

    fn tenant_counter(&self, family: &Family<TenantLabels, Counter>, tenant: &str) {
        family
            .get_or_create(&TenantLabels {
                tenant: self.label(tenant).to_owned(),
            })
            .inc();
    }

    pub fn cache_hit(&self, tenant: &str) {
        self.tenant_counter(&self.cache_hits, tenant);
    }

    pub fn cache_miss(&self, tenant: &str) {
        self.tenant_counter(&self.cache_misses, tenant);
    }

    pub fn cache_load(&self, tenant: &str) {
        self.tenant_counter(&self.cache_loads, tenant);
    }

    /// The outbox's state for `tenant` (set by the outbox after each change or on a timer).
    pub fn set_outbox(&self, tenant: &str, pending: u64, failed: u64, oldest_age_secs: f64) {
        let Some(tenant) = self.gauge_label(tenant) else {
            return;
        };
        let labels = TenantLabels {
            tenant: tenant.to_owned(),
        };
        let clamp = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.outbox_pending
            .get_or_create(&labels)
            .set(clamp(pending));
        self.outbox_failed.get_or_create(&labels).set(clamp(failed));
        self.outbox_oldest_age
            .get_or_create(&labels)
            .set(oldest_age_secs.max(0.0));
    }

    /// The handle a tenant's rate limiter counts with.
    pub fn limiter(&self, tenant: &str) -> LimiterMetrics {
        let labels = TenantLabels {
            tenant: self.label(tenant).to_owned(),
        };
        LimiterMetrics {
            waits: self.limiter_waits.get_or_create_owned(&labels),
            rejections: self.limiter_rejections.get_or_create_owned(&labels),
        }
    }

    /// The handle a tenant's circuit breaker reports with (its state starts closed, 0).
    /// The gauge of the instances sharing the store (`upstream::cluster` sets it).
    pub fn instances(&self) -> Gauge {
        self.instances.clone()
    }

    pub fn breaker(&self, tenant: &str) -> BreakerMetrics {
        let labels = TenantLabels {
            tenant: self.label(tenant).to_owned(),
        };
        BreakerMetrics {
            state: match self.gauge_label(tenant) {
                Some(_) => self.breaker_state.get_or_create_owned(&labels),
                None => Gauge::default(), // not exported: see `gauge_label`
            },
            opened: self.breaker_opened.get_or_create_owned(&labels),
        }
    }
}

/// A tenant's rate-limiter counters.
#[derive(Clone, Debug, Default)]
pub struct LimiterMetrics {
    pub waits: Counter,
    pub rejections: Counter,
}

/// A tenant's circuit-breaker gauge and counter.
#[derive(Clone, Debug, Default)]
pub struct BreakerMetrics {
    /// 0 closed, 1 open, 2 trial.
    pub state: Gauge,
    pub opened: Counter,
}

/// `"2xx"`, `"4xx"`, … for a vendor's HTTP status.
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_prefixed_and_typed() {
        let m = Metrics::new();
        m.request("counterparty.detail", 200, Duration::from_millis(12));
        m.upstream_call("shop", "balance", "2xx", Some(Duration::from_millis(3)));
        m.upstream_call("shop", "balance", "throttled", None);
        m.upstream_retry("shop", "balance");
        m.cache_hit("shop");
        m.limiter("shop").waits.inc();
        m.breaker("shop").state.set(1);
        m.set_outbox("shop", 3, 1, 12.5);
        let text = m.encode();
        for line in [
            "loyalty_bridge_requests_total{op=\"counterparty.detail\",status=\"200\"} 1",
            "loyalty_bridge_request_duration_seconds_count{op=\"counterparty.detail\",status=\"200\"} 1",
            "loyalty_bridge_upstream_calls_total{tenant=\"shop\",step=\"balance\",outcome=\"2xx\"} 1",
            "loyalty_bridge_upstream_calls_total{tenant=\"shop\",step=\"balance\",outcome=\"throttled\"} 1",
            "loyalty_bridge_upstream_call_duration_seconds_count{tenant=\"shop\",step=\"balance\"} 1",
            "loyalty_bridge_upstream_retries_total{tenant=\"shop\",step=\"balance\"} 1",
            "loyalty_bridge_cache_hits_total{tenant=\"shop\"} 1",
            "loyalty_bridge_limiter_waits_total{tenant=\"shop\"} 1",
            "loyalty_bridge_breaker_state{tenant=\"shop\"} 1",
            "loyalty_bridge_outbox_pending{tenant=\"shop\"} 3",
            "loyalty_bridge_outbox_failed{tenant=\"shop\"} 1",
            "loyalty_bridge_outbox_oldest_age_seconds{tenant=\"shop\"} 12.5",
            "# EOF",
        ] {
            assert!(text.contains(line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn app_tenants_share_one_label_unless_asked_for_their_own() {
        let shared = Metrics::new();
        for account in ["app:1111", "app:2222", "app:3333"] {
            shared.cache_hit(account);
            shared.upstream_call(account, "balance", "2xx", None);
            shared.breaker(account).state.set(1);
            shared.set_outbox(account, 5, 0, 1.0);
        }
        shared.cache_hit("shop");
        let text = shared.encode();
        assert!(
            text.contains("loyalty_bridge_cache_hits_total{tenant=\"app\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("loyalty_bridge_cache_hits_total{tenant=\"shop\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("loyalty_bridge_upstream_calls_total{tenant=\"app\",step=\"balance\",outcome=\"2xx\"} 3"),
            "{text}"
        );
        assert!(!text.contains("1111"), "an account id is a label: {text}");
        assert!(
            !text.contains("loyalty_bridge_breaker_state{tenant=\"app\"}"),
            "{text}"
        );
        assert!(
            !text.contains("loyalty_bridge_outbox_pending{tenant=\"app\"}"),
            "{text}"
        );

        let own = Metrics::new().per_app_tenant(true);
        own.cache_hit("app:1111");
        own.set_outbox("app:1111", 5, 0, 1.0);
        let text = own.encode();
        assert!(
            text.contains("loyalty_bridge_cache_hits_total{tenant=\"app:1111\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("loyalty_bridge_outbox_pending{tenant=\"app:1111\"} 5"),
            "{text}"
        );
    }
}
