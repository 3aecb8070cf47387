//! A per-tenant circuit breaker: after `failures` vendor calls in a row fail (no answer, or a
//! 5xx), calls fail fast for `open_ms` instead of tying up connections and the cashier; then one
//! trial call goes through, and its success closes the breaker again. Uses tokio's clock.
//! With several instances on one store ([`Breaker::shared`]) an opening opens them all; each
//! then makes its own trial.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::cluster::Cluster;
use crate::metrics::BreakerMetrics;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One trial call is out; others fail fast until it reports.
    Trial,
}

pub struct Breaker {
    state: Mutex<State>,
    threshold: u32,
    open_for: Duration,
    metrics: BreakerMetrics,
    /// The instances sharing the store and this breaker's tenant there.
    shared: Option<(Arc<Cluster>, String)>,
}

impl State {
    /// The `breaker_state` gauge's value.
    fn gauge(self) -> i64 {
        match self {
            State::Closed { .. } => 0,
            State::Open { .. } => 1,
            State::Trial => 2,
        }
    }
}

impl Breaker {
    pub fn new(threshold: u32, open_for: Duration, metrics: BreakerMetrics) -> Breaker {
        metrics.state.set(0);
        Breaker {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
            metrics,
            shared: None,
        }
    }

    /// Opens with the breakers of `tenant` on the other instances of `cluster` (none: alone).
    pub fn shared(mut self, cluster: Option<Arc<Cluster>>, tenant: &str) -> Self {
        self.shared = cluster.map(|c| (c, tenant.to_owned()));
        self
    }

    /// May a call go out now? `Err` says how long until the next trial.
    pub fn allow(&self) -> Result<(), Duration> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match *state {
            State::Closed { .. } => {
                let now = Instant::now();
                let opened_elsewhere = self
                    .shared
                    .as_ref()
                    .and_then(|(cluster, tenant)| cluster.open_until(tenant))
                    .filter(|until| *until > now);
                match opened_elsewhere {
                    Some(until) => {
                        *state = State::Open { until };
                        self.metrics.opened.inc();
                        self.metrics.state.set(State::Open { until }.gauge());
                        Err(until - now)
                    }
                    None => Ok(()),
                }
            }
            State::Open { until } => {
                let now = Instant::now();
                if now >= until {
                    *state = State::Trial;
                    self.metrics.state.set(State::Trial.gauge());
                    Ok(())
                } else {
                    Err(until - now)
                }
            }
            State::Trial => Err(Duration::from_secs(1)),
        }
    }

    /// What became of a call that was allowed: `alive` unless it got no answer or a 5xx.
    pub fn record(&self, alive: bool) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = match (*state, alive) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.threshold => State::Closed {
                failures: failures + 1,
            },
            (previous, false) => {
                let until = Instant::now() + self.open_for;
                if !matches!(previous, State::Open { .. }) {
                    self.metrics.opened.inc();
                    if let Some((cluster, tenant)) = &self.shared {
                        cluster.open(tenant, until);
                    }
                }
                tracing::warn!(
                    open_ms = self.open_for.as_millis() as u64,
                    "vendor failing: circuit breaker open"
                );
                State::Open { until }
            }
        };
        self.metrics.state.set(state.gauge());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_failures_in_a_row_and_closes_after_a_good_trial() {
        let metrics = BreakerMetrics::default();
        let b = Breaker::new(3, Duration::from_secs(10), metrics.clone());
        for _ in 0..2 {
            b.allow().unwrap();
            b.record(false);
        }
        b.allow().unwrap();
        b.record(true);
        for _ in 0..3 {
            b.allow().unwrap();
            b.record(false);
        }
        assert!(b.allow().is_err(), "open after 3 failures in a row");
        assert_eq!((metrics.state.get(), metrics.opened.get()), (1, 1));
        tokio::time::advance(Duration::from_secs(9)).await;
        assert!(b.allow().is_err());
        tokio::time::advance(Duration::from_secs(2)).await;
        b.allow().unwrap();
        assert!(b.allow().is_err(), "one trial at a time");
        assert_eq!(metrics.state.get(), 2);
        b.record(false);
        assert!(b.allow().is_err(), "a failed trial opens it again");
        tokio::time::advance(Duration::from_secs(11)).await;
        b.allow().unwrap();
        b.record(true);
        b.allow().unwrap();
        b.allow().unwrap();
        assert_eq!((metrics.state.get(), metrics.opened.get()), (0, 2));
    }
}
