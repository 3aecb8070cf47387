//! The last few failures of each app account, for its settings page: vendor credential checks
//! that failed, MoySklad Vendor API calls that failed, and LoyaltyAPI calls of the account that
//! failed for a reason the admin can act on (the vendor unreachable or refusing our key, a
//! mapping fault), not business refusals such as "customer not found".
//!
//! Kept in memory by the instance that saw them: cheap on the request path (no store write per
//! failed call while a vendor is down), bounded (a few per account, a cap on accounts), lost on
//! a restart. With several instances each page shows what the instance serving it saw.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::error::Error;

/// Failures kept per account (the oldest goes first).
pub const PER_ACCOUNT: usize = 10;
/// Accounts kept; beyond it the account whose last failure is oldest is forgotten.
const MAX_ACCOUNTS: usize = 10_000;
/// Longest text kept for one failure.
const MAX_TEXT: usize = 500;

/// Where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureSource {
    /// "Check" or "Save" on the settings page: the vendor refused the credentials.
    VendorCheck,
    /// Our call to MoySklad's Vendor API (`PUT …/loyalty`, `PUT …/status`).
    Moysklad,
    /// A LoyaltyAPI call of the account (op name in the text).
    LoyaltyApi,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentFailure {
    pub at_ms: i64,
    pub source: FailureSource,
    /// What the admin reads; never a secret (callers pass texts built for cashiers or admins).
    pub text: String,
}

#[derive(Default)]
pub struct RecentFailures {
    by_account: Mutex<HashMap<String, VecDeque<RecentFailure>>>,
}

impl RecentFailures {
    pub fn new() -> RecentFailures {
        RecentFailures::default()
    }

    pub fn record(&self, account_id: &str, source: FailureSource, text: &str, at_ms: i64) {
        let text: String = text.chars().take(MAX_TEXT).collect();
        let mut map = self.by_account.lock().unwrap_or_else(|p| p.into_inner());
        if !map.contains_key(account_id) && map.len() >= MAX_ACCOUNTS {
            let stalest = map
                .iter()
                .min_by_key(|(_, list)| list.back().map_or(i64::MIN, |f| f.at_ms))
                .map(|(account, _)| account.clone());
            if let Some(account) = stalest {
                map.remove(&account);
            }
        }
        let list = map.entry(account_id.to_owned()).or_default();
        if list.len() >= PER_ACCOUNT {
            list.pop_front();
        }
        list.push_back(RecentFailure {
            at_ms,
            source,
            text,
        });
    }

    /// The account's failures, newest first.
    pub fn of(&self, account_id: &str) -> Vec<RecentFailure> {
        let map = self.by_account.lock().unwrap_or_else(|p| p.into_inner());
        map.get(account_id)
            .map(|list| list.iter().rev().cloned().collect())
            .unwrap_or_default()
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

    #[test]
    fn bounded_per_account_newest_first_and_separate_accounts() {
        let recent = RecentFailures::new();
        for i in 0..15 {
            recent.record("a", FailureSource::LoyaltyApi, &format!("e{i}"), i);
        }
        recent.record("b", FailureSource::Moysklad, "other", 100);
        let a = recent.of("a");
        assert_eq!(a.len(), PER_ACCOUNT);
        assert_eq!(a[0].text, "e14");
        assert_eq!(a[PER_ACCOUNT - 1].text, "e5");
        assert_eq!(recent.of("b").len(), 1);
        assert!(recent.of("c").is_empty());
        recent.record("a", FailureSource::VendorCheck, &"x".repeat(2000), 200);
        assert_eq!(recent.of("a")[0].text.len(), MAX_TEXT);
    }
}
