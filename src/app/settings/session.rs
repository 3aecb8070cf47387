//! Settings page sessions: what a context key exchange established, kept server-side.
//!
//! Browsers block third-party cookies in iframes (Safari always, Chrome increasingly), and the
//! page lives in MoySklad's iframe on another site, so no cookie is used at all. The session id
//! (256 bits from the OS generator, 64 hex digits) travels in a hidden field of the page's form
//! and nowhere else: never in a URL (no Referer or history leak), never in a log. The store keeps
//! only its SHA-256, so a database dump holds no usable session. A session belongs to the one
//! account whose employee opened the page; every action reads the account from the session,
//! never from the form, so a session cannot act on another account.
//!
//! Each session has its own CSRF token (another 256 random bits) in a second hidden field,
//! compared in constant time. With no ambient credential a cross-site form cannot name a session
//! anyway; the token keeps that true if a cookie is ever added, and it means a session id alone
//! (say, copied out of a saved page) is not enough to post.
//!
//! Sessions live in the store's key–value table (shared by instances, surviving a restart): they
//! expire after `session_idle` without use, and at most [`MAX_LIFETIME`] after the exchange.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::store::{Store, StoreError, duration_ms};

/// The store's key–value scope of sessions (a name no tenant can have: tenant names have no `:`
/// but app tenants' start with `app:`; this one has neither shape).
const SCOPE: &str = "moysklad-settings-session";
/// A session ends this long after the context key exchange, however busy.
pub const MAX_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// What a session knows. Stored as JSON under the SHA-256 of its id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub account_id: String,
    /// The employee's name as MoySklad gave it (shown on the page, escaped).
    pub employee: String,
    /// `permissions.admin.view == "ALL"` in MoySklad's context: may change the settings.
    pub admin: bool,
    /// The page's language code (`ru`, `en`).
    pub lang: String,
    pub csrf: String,
    pub created_ms: i64,
}

pub struct Sessions {
    store: Arc<dyn Store>,
    idle: Duration,
}

/// 256 random bits as 64 hex digits (UUID v4 takes its bits from the OS generator; two of them
/// give 244 random bits, the rest are fixed version bits).
fn random_token() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

fn storage_key(session_id: &str) -> String {
    hex::encode(Sha256::digest(session_id.as_bytes()))
}

/// Whether `text` looks like a session id or token of ours (checked before anything is hashed
/// or looked up).
fn well_formed(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

impl Sessions {
    pub fn new(store: Arc<dyn Store>, idle: Duration) -> Sessions {
        Sessions { store, idle }
    }

    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Starts a session; returns its id (for the page only) and the session.
    pub async fn start(
        &self,
        account_id: &str,
        employee: &str,
        admin: bool,
        lang: &str,
        now_ms: i64,
    ) -> Result<(String, Session), StoreError> {
        let id = random_token();
        let session = Session {
            account_id: account_id.to_owned(),
            employee: employee.to_owned(),
            admin,
            lang: lang.to_owned(),
            csrf: random_token(),
            created_ms: now_ms,
        };
        self.save(&id, &session, now_ms).await?;
        Ok((id, session))
    }

    async fn save(&self, id: &str, session: &Session, now_ms: i64) -> Result<(), StoreError> {
        let idle_until = now_ms.saturating_add(duration_ms(self.idle));
        let end = session.created_ms.saturating_add(duration_ms(MAX_LIFETIME));
        let value = serde_json::to_value(session)
            .map_err(|e| StoreError::Corrupt(format!("session: {e}")))?;
        self.store
            .kv_put(SCOPE, &storage_key(id), &value, idle_until.min(end))
            .await
    }

    /// The live session `id` names, if any (without extending it: see [`Sessions::touch`]).
    pub async fn find(&self, id: &str, now_ms: i64) -> Result<Option<Session>, StoreError> {
        if !well_formed(id) {
            return Ok(None);
        }
        let Some(value) = self.store.kv_get(SCOPE, &storage_key(id), now_ms).await? else {
            return Ok(None);
        };
        // A row this version cannot read is treated as no session: the user reopens the page.
        Ok(serde_json::from_value::<Session>(value)
            .ok()
            .filter(|s| now_ms < s.created_ms.saturating_add(duration_ms(MAX_LIFETIME))))
    }

    /// Extends a session that was just used by another idle period (within its lifetime).
    pub async fn touch(&self, id: &str, session: &Session, now_ms: i64) -> Result<(), StoreError> {
        self.save(id, session, now_ms).await
    }
}

impl Session {
    /// Whether `presented` is this session's CSRF token. Both sides are hashed first so the
    /// comparison takes the same time whatever was presented.
    pub fn csrf_matches(&self, presented: &str) -> bool {
        let presented = Sha256::digest(presented.as_bytes());
        let expected = Sha256::digest(self.csrf.as_bytes());
        bool::from(presented.as_slice().ct_eq(expected.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{KeyValueStore, SqliteStore};

    async fn sessions(idle_secs: u64) -> Sessions {
        let store = SqliteStore::open(std::path::Path::new(":memory:"))
            .await
            .unwrap();
        Sessions::new(Arc::new(store), Duration::from_secs(idle_secs))
    }

    #[tokio::test]
    async fn sessions_expire_when_idle_and_are_extended_by_use() {
        let sessions = sessions(60).await;
        let t0 = 1_000_000;
        let (id, session) = sessions
            .start("acc-1", "Анна", true, "ru", t0)
            .await
            .unwrap();
        assert!(well_formed(&id) && well_formed(&session.csrf));
        assert_ne!(id, session.csrf);
        let found = sessions.find(&id, t0 + 59_000).await.unwrap().unwrap();
        assert_eq!(found, session);
        // Used at 59 s: good until 119 s.
        sessions.touch(&id, &found, t0 + 59_000).await.unwrap();
        assert!(sessions.find(&id, t0 + 118_000).await.unwrap().is_some());
        assert!(sessions.find(&id, t0 + 119_001).await.unwrap().is_none());
        // Unknown and malformed ids.
        assert!(sessions.find(&"0".repeat(64), t0).await.unwrap().is_none());
        assert!(sessions.find("short", t0).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn sessions_end_after_their_lifetime_however_busy() {
        let sessions = sessions(3600).await;
        let t0 = 5_000_000;
        let (id, session) = sessions.start("acc-1", "", false, "en", t0).await.unwrap();
        let life = duration_ms(MAX_LIFETIME);
        let mut now = t0;
        while now + 1_800_000 < t0 + life {
            now += 1_800_000;
            sessions.touch(&id, &session, now).await.unwrap();
        }
        assert!(sessions.find(&id, t0 + life - 1).await.unwrap().is_some());
        assert!(sessions.find(&id, t0 + life).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn the_store_holds_no_usable_session_id() {
        let store = Arc::new(
            SqliteStore::open(std::path::Path::new(":memory:"))
                .await
                .unwrap(),
        );
        let sessions = Sessions::new(store.clone(), Duration::from_secs(60));
        let (id, _) = sessions.start("acc-1", "", true, "ru", 0).await.unwrap();
        assert!(store.kv_get(SCOPE, &id, 0).await.unwrap().is_none());
        assert!(
            store
                .kv_get(SCOPE, &storage_key(&id), 0)
                .await
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn csrf_tokens_compare_exactly() {
        let session = Session {
            account_id: "a".into(),
            employee: String::new(),
            admin: true,
            lang: "ru".into(),
            csrf: "ab".repeat(32),
            created_ms: 0,
        };
        assert!(session.csrf_matches(&"ab".repeat(32)));
        assert!(!session.csrf_matches(&"ab".repeat(31)));
        assert!(!session.csrf_matches(""));
        assert!(!session.csrf_matches(&format!("{}x", "ab".repeat(32))));
    }
}
