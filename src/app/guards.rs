//! The vendor rate limiters and circuit breakers of app tenants (accounts connected through
//! the settings page), made when an account first needs them. One set per account, shared by
//! its LoyaltyAPI calls (the server) and its settings page's credential checks, so a check
//! waits its turn like the account's own calls and honours a pause the vendor asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::config::Limits;
use crate::metrics::Metrics;
use crate::upstream::breaker::Breaker;
use crate::upstream::cluster::Cluster;
use crate::upstream::limit::TenantLimiter;

/// A tenant's vendor rate limiter and circuit breaker.
pub type TenantGuards = (Arc<TenantLimiter>, Arc<Breaker>);

pub struct AppGuards {
    metrics: Arc<Metrics>,
    /// The instances sharing the store, when there may be several.
    cluster: Option<Arc<Cluster>>,
    by_tenant: Mutex<HashMap<String, TenantGuards>>,
}

impl std::fmt::Debug for AppGuards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppGuards").finish_non_exhaustive()
    }
}

impl AppGuards {
    pub fn new(metrics: Arc<Metrics>, cluster: Option<Arc<Cluster>>) -> AppGuards {
        AppGuards {
            metrics,
            cluster,
            by_tenant: Mutex::new(HashMap::new()),
        }
    }

    /// The guards of the tenant named `tenant`, made with `limits` if it has none yet.
    pub fn of(&self, tenant: &str, limits: &Limits) -> TenantGuards {
        let mut map = self.by_tenant.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(tenant.to_owned())
            .or_insert_with(|| {
                (
                    Arc::new(
                        TenantLimiter::new(limits, self.metrics.limiter(tenant)).shared(
                            self.cluster.clone(),
                            tenant,
                            limits,
                        ),
                    ),
                    Arc::new(
                        Breaker::new(
                            limits.breaker_failures,
                            Duration::from_millis(limits.breaker_open_ms),
                            self.metrics.breaker(tenant),
                        )
                        .shared(self.cluster.clone(), tenant),
                    ),
                )
            })
            .clone()
    }
}
