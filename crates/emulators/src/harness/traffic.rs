//! The request log, call counters and injected fault of one emulator, and the rate limit it
//! may be told to keep, as a rate-limiting proxy in front of the vendor would.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::Fault;

/// How many requests [`Traffic::requests`] remembers, so a long demo does not grow without
/// bound; [`Traffic::calls`] counts every request.
const REQUEST_LOG_LIMIT: usize = 10_000;

/// What an emulator received and the fault it is told to inject. It lives inside the vendor's
/// state, so recording a request and reading the fault take one lock.
#[derive(Debug)]
pub(crate) struct Traffic<E> {
    calls: HashMap<String, usize>,
    requests: VecDeque<E>,
    fault: Option<Fault>,
    /// Most calls answered in one second (counted from `started`, whole seconds); beyond it,
    /// 429 with `Retry-After: 1`.
    limit: Option<usize>,
    started: Instant,
    /// Calls that arrived in each second since `started`, refused ones included.
    per_second: Vec<usize>,
    /// Calls refused for going over `limit`.
    over_limit: usize,
}

impl<E> Default for Traffic<E> {
    fn default() -> Self {
        Traffic {
            calls: HashMap::new(),
            requests: VecDeque::new(),
            fault: None,
            limit: None,
            started: Instant::now(),
            per_second: Vec::new(),
            over_limit: 0,
        }
    }
}

impl<E: Clone> Traffic<E> {
    /// Counts a request to `path`, logs `entry`, and returns the fault to inject into it.
    pub(crate) fn record(&mut self, path: &str, entry: E) -> Option<Fault> {
        *self.calls.entry(path.to_owned()).or_default() += 1;
        if self.requests.len() >= REQUEST_LOG_LIMIT {
            self.requests.pop_front();
        }
        self.requests.push_back(entry);
        let second = usize::try_from(self.started.elapsed().as_secs()).unwrap_or(usize::MAX);
        if self.per_second.len() <= second {
            self.per_second.resize(second + 1, 0);
        }
        self.per_second[second] += 1;
        if self
            .limit
            .is_some_and(|limit| self.per_second[second] > limit)
        {
            self.over_limit += 1;
            return Some(Fault::TooManyRequests {
                retry_after: Some("1".into()),
            });
        }
        self.fault.clone()
    }

    /// From now on, at most `limit` calls a second are answered (`None`: no limit); the
    /// counts start again.
    pub(crate) fn set_limit(&mut self, limit: Option<usize>) {
        self.limit = limit;
        self.started = Instant::now();
        self.per_second.clear();
        self.over_limit = 0;
    }

    /// Calls that arrived in each second since the limit was set (or the emulator started).
    pub(crate) fn calls_per_second(&self) -> Vec<usize> {
        self.per_second.clone()
    }

    /// Calls refused for going over the limit.
    pub(crate) fn over_limit(&self) -> usize {
        self.over_limit
    }

    /// How many requests reached `path` (the leading slash may be left out).
    pub(crate) fn calls(&self, path: &str) -> usize {
        let count = |path: &str| self.calls.get(path).copied().unwrap_or(0);
        if path.starts_with('/') {
            count(path)
        } else {
            count(&format!("/{path}"))
        }
    }

    /// The logged entries, oldest first (the last 10,000).
    pub(crate) fn requests(&self) -> Vec<E> {
        self.requests.iter().cloned().collect()
    }

    pub(crate) fn set_fault(&mut self, fault: Option<Fault>) {
        self.fault = fault;
    }
}
