//! The last few failures of each app account, for its settings page: vendor credential checks
//! that failed, MoySklad Vendor API calls that failed, and LoyaltyAPI calls of the account that
//! failed for a reason the admin can act on (the vendor unreachable or refusing our key, a
//! mapping fault), not business refusals such as "customer not found".
//!
//! Kept in the store ([`crate::store::AppFailureStore`]), so that every instance behind a load
//! balancer shows an admin the same list: the [`FAILURES_PER_ACCOUNT`] last seen, one per
//! source and text (repeats are counted), for [`KEPT_FOR`] at most (the store's prune), and
//! gone when the account uninstalls.
//!
//! Cheap on the request path while a vendor is down and every call of an account fails: a
//! failed call only notes its failure in memory ([`RecentFailures::note`]: a mutex and a map,
//! no I/O). A writer task stores the notes, at most once per [`WRITE_EVERY`] for an account
//! and source: the first failure after a quiet spell at once, the failures that follow within
//! the next 5 s together in one transaction when they are over, each text once with its count
//! and its first and last times. An outage thus costs a failing account one small write per
//! 5 s per instance however many of its calls fail, and an admin who reloads the page sees a
//! new failure at once and its count within seconds. Notes not yet written are lost if the
//! process dies (a graceful stop writes them): a few seconds of repeats of what is shown.
//!
//! A page writes its account's waiting notes of its instance before it reads the list, so it
//! also shows what its own instance saw a moment ago.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;

use crate::error::Error;
use crate::store::{Store, StoreError, duration_ms, now_ms};

pub use crate::store::{AppFailure, FAILURES_PER_ACCOUNT, FailureSource};

/// Least time between two writes of one account and source.
pub const WRITE_EVERY: Duration = Duration::from_secs(5);
/// How long a failure stays listed after it was last seen.
pub const KEPT_FOR: Duration = Duration::from_secs(7 * 86_400);
/// Longest text kept for one failure.
pub const MAX_TEXT: usize = 500;
/// Accounts and sources with notes in memory; a note for one more is dropped (that takes more
/// than 10,000 failing accounts within 5 s).
const MAX_KEYS: usize = 10_000;
/// How often the writer looks for notes whose wait is over.
const WRITER_TICK: Duration = Duration::from_secs(1);
/// Longest a page waits for the writer's round before it reads the store anyway.
const PAGE_WAIT: Duration = Duration::from_secs(2);

/// Notes of one account and source, waiting to be written.
struct Waiting {
    /// When the account and source may be written again.
    next_write_ms: i64,
    /// Each text once (at most [`FAILURES_PER_ACCOUNT`]), with its count.
    failures: Vec<AppFailure>,
}

/// What is noted and not written yet, by account and source.
#[derive(Default)]
struct Notes {
    waiting: HashMap<(String, FailureSource), Waiting>,
}

impl Notes {
    /// Notes one failure; whether its account and source may be written now.
    fn note(&mut self, account_id: &str, source: FailureSource, text: &str, at_ms: i64) -> bool {
        let key = (account_id.to_owned(), source);
        if !self.waiting.contains_key(&key) && self.waiting.len() >= MAX_KEYS {
            return false;
        }
        let waiting = self.waiting.entry(key).or_insert(Waiting {
            next_write_ms: i64::MIN,
            failures: Vec::new(),
        });
        let text: String = text.chars().take(MAX_TEXT).collect();
        if let Some(same) = waiting.failures.iter_mut().find(|f| f.text == text) {
            same.times += 1;
            same.first_ms = same.first_ms.min(at_ms);
            same.last_ms = same.last_ms.max(at_ms);
        } else {
            if waiting.failures.len() >= FAILURES_PER_ACCOUNT {
                // The one last seen longest ago makes room: the store would drop it anyway.
                let stalest =
                    (0..waiting.failures.len()).min_by_key(|&i| waiting.failures[i].last_ms);
                if let Some(i) = stalest {
                    waiting.failures.swap_remove(i);
                }
            }
            waiting.failures.push(AppFailure {
                source,
                text,
                times: 1,
                first_ms: at_ms,
                last_ms: at_ms,
            });
        }
        waiting.next_write_ms <= at_ms
    }

    /// Takes the notes whose wait is over at `now_ms` (their account and source then wait
    /// [`WRITE_EVERY`]), and forgets the accounts and sources quiet for a whole wait (their
    /// next failure is written at once).
    fn take_due(&mut self, now_ms: i64) -> Vec<(String, Vec<AppFailure>)> {
        let mut due = Vec::new();
        self.waiting.retain(|(account_id, _), waiting| {
            if waiting.next_write_ms > now_ms {
                return true;
            }
            if waiting.failures.is_empty() {
                return false;
            }
            waiting.next_write_ms = now_ms.saturating_add(duration_ms(WRITE_EVERY));
            due.push((account_id.clone(), std::mem::take(&mut waiting.failures)));
            true
        });
        due
    }

    /// Takes every note of `account_id`, whether its wait is over or not.
    fn take_account(&mut self, account_id: &str, now_ms: i64) -> Vec<AppFailure> {
        let mut taken = Vec::new();
        for ((account, _), waiting) in &mut self.waiting {
            if account == account_id && !waiting.failures.is_empty() {
                waiting.next_write_ms = now_ms.saturating_add(duration_ms(WRITE_EVERY));
                taken.append(&mut waiting.failures);
            }
        }
        taken
    }

    /// Takes every note.
    fn take_all(&mut self) -> Vec<(String, Vec<AppFailure>)> {
        self.waiting
            .drain()
            .filter(|(_, waiting)| !waiting.failures.is_empty())
            .map(|((account_id, _), waiting)| (account_id, waiting.failures))
            .collect()
    }
}

/// The app accounts' recent failures: noted in memory, written to the store by
/// [`RecentFailures::write_forever`], read by the settings page.
pub struct RecentFailures {
    store: Arc<dyn Store>,
    notes: Mutex<Notes>,
    /// Held while notes taken out of `notes` are written: whoever takes it next finds every
    /// earlier note either still in `notes` or in the store.
    writing: tokio::sync::Mutex<()>,
    /// Wakes the writer when a note may be written at once.
    wake: Notify,
}

impl std::fmt::Debug for RecentFailures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecentFailures").finish_non_exhaustive()
    }
}

impl RecentFailures {
    pub fn new(store: Arc<dyn Store>) -> RecentFailures {
        RecentFailures {
            store,
            notes: Mutex::new(Notes::default()),
            writing: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
        }
    }

    fn notes(&self) -> MutexGuard<'_, Notes> {
        self.notes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes a failure of the account, at `at_ms`; the writer stores it (no I/O here).
    pub fn note(&self, account_id: &str, source: FailureSource, text: &str, at_ms: i64) {
        if self.notes().note(account_id, source, text, at_ms) {
            self.wake.notify_one();
        }
    }

    /// The account's failures for its page, the one last seen first, after this instance's
    /// waiting notes of the account are written. Empty when the store cannot say: the page
    /// opens all the same.
    pub async fn of(&self, account_id: &str) -> Vec<AppFailure> {
        match tokio::time::timeout(PAGE_WAIT, self.writing.lock()).await {
            Ok(_writing) => {
                let notes = self.notes().take_account(account_id, now_ms());
                if let Err(e) = self.write(account_id, &notes).await {
                    tracing::warn!(account_id, error = %e, "cannot store the account's recent failures");
                }
            }
            Err(_) => {
                tracing::warn!(
                    account_id,
                    "recent failures: the writer is slow; the page shows what is stored"
                )
            }
        }
        self.store
            .app_failures(account_id)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(account_id, error = %e, "cannot read the account's recent failures");
                Vec::new()
            })
    }

    /// Writes the notes whose wait is over at `now_ms` (one round of the writer).
    pub async fn write_due(&self, now_ms: i64) {
        let _writing = self.writing.lock().await;
        let due = self.notes().take_due(now_ms);
        self.write_each(due).await;
    }

    /// Writes every note, whether its wait is over or not (at shutdown).
    pub async fn write_all(&self) {
        let _writing = self.writing.lock().await;
        let all = self.notes().take_all();
        self.write_each(all).await;
    }

    /// The writer: runs until aborted.
    pub async fn write_forever(self: Arc<Self>) {
        loop {
            tokio::select! {
                () = self.wake.notified() => {}
                () = tokio::time::sleep(WRITER_TICK) => {}
            }
            self.write_due(now_ms()).await;
        }
    }

    /// Writes each account's notes; a failed write drops them (they are diagnostics) and is
    /// logged once per round, not once per account, when the store is down.
    async fn write_each(&self, notes: Vec<(String, Vec<AppFailure>)>) {
        let mut failed: Option<(usize, StoreError)> = None;
        for (account_id, failures) in notes {
            if let Err(e) = self.write(&account_id, &failures).await {
                let count = failed.as_ref().map_or(0, |(n, _)| *n);
                failed = Some((count + 1, e));
            }
        }
        if let Some((accounts, e)) = failed {
            tracing::warn!(accounts, error = %e, "cannot store app accounts' recent failures; they are dropped");
        }
    }

    async fn write(&self, account_id: &str, failures: &[AppFailure]) -> Result<(), StoreError> {
        if failures.is_empty() {
            return Ok(());
        }
        self.store.app_failures_add(account_id, failures).await
    }
}

/// Whether a failed LoyaltyAPI call is one an account's admin should see: the vendor or the
/// way to it failing (a refused key is a 5xx rule in the shipped mappings), a mapping fault, the
/// store down. A business refusal (customer not found, not enough points: 4xx) is not.
pub fn worth_showing(err: &Error) -> bool {
    match err {
        Error::Upstream { .. }
        | Error::MappingFailed { .. }
        | Error::MappingNotConfigured { .. }
        | Error::StoreUnavailable { .. }
        | Error::DeadlineExceeded { .. }
        | Error::Internal(_) => true,
        Error::Refused { status, .. } => status.is_server_error(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::SqliteStore;

    const T0: i64 = 1_800_000_000_000;
    const WAIT: i64 = WRITE_EVERY.as_millis() as i64;

    fn texts(failures: &[AppFailure]) -> Vec<(&str, u64)> {
        failures
            .iter()
            .map(|f| (f.text.as_str(), f.times))
            .collect()
    }

    #[test]
    fn the_first_failure_is_due_at_once_and_repeats_wait_their_turn_counted() {
        let mut notes = Notes::default();
        assert!(notes.note("a", FailureSource::LoyaltyApi, "down", T0));
        let due = notes.take_due(T0);
        assert_eq!(due.len(), 1);
        assert_eq!(texts(&due[0].1), [("down", 1)]);
        // A thousand more within the wait: none is due, they become one failure.
        for i in 1..=1000 {
            assert!(!notes.note("a", FailureSource::LoyaltyApi, "down", T0 + i));
        }
        assert!(notes.take_due(T0 + WAIT - 1).is_empty());
        let due = notes.take_due(T0 + WAIT);
        assert_eq!(texts(&due[0].1), [("down", 1000)]);
        assert_eq!(
            (due[0].1[0].first_ms, due[0].1[0].last_ms),
            (T0 + 1, T0 + 1000)
        );
        // Quiet for a whole wait: forgotten, so the next failure is due at once again.
        assert!(notes.take_due(T0 + 2 * WAIT).is_empty());
        assert!(notes.waiting.is_empty());
        assert!(notes.note("a", FailureSource::LoyaltyApi, "down", T0 + 2 * WAIT + 1));
    }

    #[test]
    fn accounts_and_sources_wait_apart_and_texts_are_bounded() {
        let mut notes = Notes::default();
        assert!(notes.note("a", FailureSource::LoyaltyApi, "x", T0));
        assert!(notes.note("a", FailureSource::VendorCheck, "x", T0));
        assert!(notes.note("b", FailureSource::LoyaltyApi, "x", T0));
        assert_eq!(notes.take_due(T0).len(), 3);
        for i in 0..15 {
            notes.note("a", FailureSource::LoyaltyApi, &format!("e{i}"), T0 + i);
        }
        notes.note("a", FailureSource::LoyaltyApi, &"é".repeat(2000), T0 + 20);
        let taken = notes.take_account("a", T0 + 21);
        assert_eq!(taken.len(), FAILURES_PER_ACCOUNT, "the stalest made room");
        assert!(!taken.iter().any(|f| f.text == "e0" || f.text == "e5"));
        let long = taken.iter().find(|f| f.text.starts_with('é')).unwrap();
        assert_eq!(long.text.chars().count(), MAX_TEXT);
        assert!(notes.take_account("a", T0 + 22).is_empty());
        assert!(notes.take_account("b", T0 + 22).is_empty());
    }

    #[test]
    fn notes_for_too_many_accounts_are_dropped() {
        let mut notes = Notes::default();
        for i in 0..MAX_KEYS {
            notes.note(&format!("acc-{i}"), FailureSource::LoyaltyApi, "x", T0);
        }
        assert!(!notes.note("one-more", FailureSource::LoyaltyApi, "x", T0));
        assert!(notes.take_account("one-more", T0).is_empty());
        assert!(
            notes.note("acc-1", FailureSource::LoyaltyApi, "y", T0),
            "known ones go on"
        );
    }

    #[tokio::test]
    async fn a_burst_of_failures_is_two_writes_and_the_page_sees_its_own_notes() {
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(std::path::Path::new(crate::config::MEMORY_STORE))
                .await
                .unwrap(),
        );
        store
            .app_activate("a", "app", "Shop", None, T0)
            .await
            .unwrap();
        let recent = RecentFailures::new(store.clone());
        // The first failure wakes the writer, whose round writes it.
        recent.note(
            "a",
            FailureSource::LoyaltyApi,
            "counterparty.search → 502",
            T0,
        );
        recent.write_due(T0).await;
        let stored = store.app_failures("a").await.unwrap();
        assert_eq!(texts(&stored), [("counterparty.search → 502", 1)]);
        // The next ones wait, whatever the rounds.
        for i in 1..500 {
            recent.note(
                "a",
                FailureSource::LoyaltyApi,
                "counterparty.search → 502",
                T0 + i,
            );
        }
        recent.write_due(T0 + 1000).await;
        assert_eq!(store.app_failures("a").await.unwrap()[0].times, 1);
        // Their wait over, the other 499 are one write.
        recent.write_due(T0 + WAIT).await;
        let stored = store.app_failures("a").await.unwrap();
        assert_eq!(texts(&stored), [("counterparty.search → 502", 500)]);
        assert_eq!((stored[0].first_ms, stored[0].last_ms), (T0, T0 + 499));
        // A page reads what its instance noted a moment ago, wait or not.
        recent.note(
            "a",
            FailureSource::VendorCheck,
            "wrong key",
            T0 + 600 + WAIT,
        );
        recent.note(
            "a",
            FailureSource::LoyaltyApi,
            "counterparty.search → 502",
            T0 + 601 + WAIT,
        );
        let listed = recent.of("a").await;
        assert_eq!(
            texts(&listed),
            [("counterparty.search → 502", 501), ("wrong key", 1)]
        );
        assert!(recent.of("nobody").await.is_empty());
    }
}
