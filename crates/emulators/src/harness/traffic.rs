//! The request log, call counters and injected fault of one emulator.

use std::collections::{HashMap, VecDeque};

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
}

impl<E> Default for Traffic<E> {
    fn default() -> Self {
        Traffic {
            calls: HashMap::new(),
            requests: VecDeque::new(),
            fault: None,
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
        self.fault.clone()
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
