//! Short-lived values under a tenant's key: what mappings keep (`remember`/`recall`: vendor
//! operation ids, codes the vendor issued), confirmation codes the bridge checks itself, and
//! one-time claims that protect against replays.

use serde_json::Value;
use subtle::ConstantTimeEq;

use super::StoreFuture;

/// The answer of [`KeyValueStore::code_check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeCheck {
    /// Right code: consumed.
    Accepted,
    /// Wrong code; this many attempts left before it is burnt.
    Wrong { attempts_left: u32 },
    /// No code, an expired one, or one burnt by too many wrong attempts.
    Missing,
}

/// Values with an expiry, keyed by tenant (or scope) and key.
pub trait KeyValueStore: Send + Sync {
    // --- values mappings keep (remember / recall) ---

    fn kv_get(&self, tenant: &str, key: &str, now_ms: i64) -> StoreFuture<'_, Option<Value>>;

    fn kv_put(
        &self,
        tenant: &str,
        key: &str,
        value: &Value,
        expires_ms: i64,
    ) -> StoreFuture<'_, ()>;

    // --- confirmation codes the bridge checks itself ---

    /// Stores `code` under `key` (replacing an earlier one) until `expires_ms`, allowing
    /// `max_attempts` wrong tries.
    fn code_put(
        &self,
        tenant: &str,
        key: &str,
        code: &str,
        expires_ms: i64,
        max_attempts: u32,
    ) -> StoreFuture<'_, ()>;

    /// Checks `code` atomically: a right one is consumed; a wrong one uses an attempt, and the
    /// last attempt burns the code.
    fn code_check(
        &self,
        tenant: &str,
        key: &str,
        code: &str,
        now_ms: i64,
    ) -> StoreFuture<'_, CodeCheck>;

    // --- replay protection shared by instances ---

    /// Atomically claims `(scope, key)` until `until_ms`: `true` for the first caller, `false`
    /// while an earlier claim has not run out (one statement; instances race safely).
    fn claim_once(
        &self,
        scope: &str,
        key: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreFuture<'_, bool>;
}

/// A confirmation code as stored.
pub(super) struct StoredCode {
    pub code: String,
    pub expires_ms: i64,
    pub attempts_left: i64,
}

/// What a check does to the stored code.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum CodeAction {
    Delete,
    SetAttemptsLeft(i64),
}

/// The one rule of [`KeyValueStore::code_check`], which the backends run inside their
/// transaction: an expired or burnt code is gone; a right one is consumed (compared in
/// constant time); a wrong one uses an attempt, and the last attempt burns it.
pub(super) fn check_code(stored: &StoredCode, given: &str, now_ms: i64) -> (CodeCheck, CodeAction) {
    if stored.expires_ms <= now_ms || stored.attempts_left <= 0 {
        return (CodeCheck::Missing, CodeAction::Delete);
    }
    if bool::from(stored.code.as_bytes().ct_eq(given.as_bytes())) {
        return (CodeCheck::Accepted, CodeAction::Delete);
    }
    let left = stored.attempts_left - 1;
    let action = if left == 0 {
        CodeAction::Delete
    } else {
        CodeAction::SetAttemptsLeft(left)
    };
    let answer = CodeCheck::Wrong {
        attempts_left: u32::try_from(left).unwrap_or(0),
    };
    (answer, action)
}
