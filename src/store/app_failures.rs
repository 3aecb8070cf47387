//! The last few failures of each MoySklad app account, for its settings page
//! (`crate::app::recent` decides what is worth keeping and when to write). In the store, so
//! that every instance behind a load balancer shows an admin the same list.

use super::StoreFuture;

/// Failures kept per account: adding one more deletes the one last seen longest ago.
pub const FAILURES_PER_ACCOUNT: usize = 10;

/// Where a failure happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FailureSource {
    /// "Check" or "Save" on the settings page: the vendor refused the credentials.
    VendorCheck,
    /// Our call to MoySklad's Vendor API (`PUT …/loyalty`, `PUT …/status`).
    Moysklad,
    /// A LoyaltyAPI call of the account (op name in the text).
    LoyaltyApi,
}

impl FailureSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureSource::VendorCheck => "vendor_check",
            FailureSource::Moysklad => "moysklad",
            FailureSource::LoyaltyApi => "loyalty_api",
        }
    }

    pub fn parse(text: &str) -> Option<FailureSource> {
        match text {
            "vendor_check" => Some(FailureSource::VendorCheck),
            "moysklad" => Some(FailureSource::Moysklad),
            "loyalty_api" => Some(FailureSource::LoyaltyApi),
            _ => None,
        }
    }
}

/// One failure of an account: the same text from the same source, however often it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFailure {
    pub source: FailureSource,
    /// What the admin reads; never a secret (callers pass texts built for cashiers or admins).
    pub text: String,
    /// How many times it happened.
    pub times: u64,
    pub first_ms: i64,
    pub last_ms: i64,
}

/// The app accounts' recent failures.
pub trait AppFailureStore: Send + Sync {
    /// Adds an account's failures, in one transaction: one the account already has (same
    /// source and text) adds its `times` and widens its first and last times; then only the
    /// [`FAILURES_PER_ACCOUNT`] last seen stay. Nothing is kept for an account that is not
    /// installed (unknown or uninstalled): a write that arrives after the uninstall adds
    /// nothing.
    fn app_failures_add(&self, account_id: &str, failures: &[AppFailure]) -> StoreFuture<'_, ()>;

    /// The account's failures, the one last seen first (at most [`FAILURES_PER_ACCOUNT`]).
    fn app_failures(&self, account_id: &str) -> StoreFuture<'_, Vec<AppFailure>>;
}
