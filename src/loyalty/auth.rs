//! Which tenant is calling: the `Lognex-Discount-API-Auth-Token` header, hashed and compared in
//! constant time against every tenant (no early exit, so timing tells nothing about which or how
//! many tenants share a prefix).
//!
//! Tenants of the MoySklad app (created by the lifecycle, kept in the store) are in a map by
//! token hash, updated account by account as the store changes (and replaced as a whole now
//! and then): a lookup by SHA-256 tells nothing about the token itself, and the entry found is
//! compared in constant time as well.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use http::HeaderMap;
use subtle::ConstantTimeEq;

use crate::config::{Tenant, TokenHash};
use crate::error::Error;

pub const TOKEN_HEADER: &str = "lognex-discount-api-auth-token";

/// An app tenant's place in the token map.
#[derive(Debug, Clone)]
pub enum AppEntry {
    /// Activated: its calls run as this tenant.
    Active(Arc<Tenant>),
    /// Suspended in MoySklad: its calls are refused with a clear envelope.
    Suspended,
}

/// What one app account puts in the token map: its token and what the token does.
#[derive(Debug, Clone)]
pub struct AppSlot {
    pub token_hash: TokenHash,
    pub entry: AppEntry,
}

/// The app tenants' token map, and each account's place in it by tenant name (`app:<id>`), so
/// that an account's change replaces or drops its old token, and the outbox finds a tenant by
/// name without a scan. Invariant: `by_name[n] == h` exactly when `by_token[h].0 == n`.
#[derive(Default)]
struct AppTokens {
    by_token: HashMap<[u8; 32], (String, AppEntry)>,
    by_name: HashMap<String, [u8; 32]>,
}

impl AppTokens {
    /// Puts `name`'s slot in, or takes the account out (`None`).
    fn set(&mut self, name: String, slot: Option<AppSlot>) {
        if let Some(old) = self.by_name.remove(&name) {
            self.by_token.remove(&old);
        }
        let Some(AppSlot { token_hash, entry }) = slot else {
            return;
        };
        // The store keeps a token hash unique; if another account still holds this one here,
        // its own change (read in the same batch) has not been applied yet: it loses it now.
        if let Some((other, _)) = self.by_token.remove(&token_hash.0) {
            self.by_name.remove(&other);
        }
        self.by_name.insert(name.clone(), token_hash.0);
        self.by_token.insert(token_hash.0, (name, entry));
    }
}

pub struct Tenants {
    tenants: Vec<Arc<Tenant>>,
    apps: RwLock<AppTokens>,
}

impl Tenants {
    pub fn new(tenants: impl IntoIterator<Item = Tenant>) -> Self {
        Tenants {
            tenants: tenants.into_iter().map(Arc::new).collect(),
            apps: RwLock::new(AppTokens::default()),
        }
    }

    /// Replaces all app tenants with `slots`, by tenant name (a static tenant's token always
    /// wins over an app tenant's).
    pub fn replace_apps(&self, slots: impl IntoIterator<Item = (String, AppSlot)>) {
        let mut apps = AppTokens::default();
        for (name, slot) in slots {
            apps.set(name, Some(slot));
        }
        *self.apps.write().unwrap_or_else(|p| p.into_inner()) = apps;
    }

    /// Applies changed app tenants, in order, by tenant name: `Some` puts the account's slot in
    /// (replacing its old token), `None` takes the account out. The others stay as they are.
    pub fn update_apps(&self, changes: impl IntoIterator<Item = (String, Option<AppSlot>)>) {
        let mut apps = self.apps.write().unwrap_or_else(|p| p.into_inner());
        for (name, slot) in changes {
            apps.set(name, slot);
        }
    }

    /// How many app tenants are activated.
    pub fn active_apps(&self) -> usize {
        self.apps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .by_token
            .values()
            .filter(|(_, e)| matches!(e, AppEntry::Active(_)))
            .count()
    }

    pub fn len(&self) -> usize {
        self.tenants.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tenants.is_empty()
    }

    /// The tenant named `name` (the outbox delivers for tenants by name).
    pub fn by_name(&self, name: &str) -> Option<Arc<Tenant>> {
        if let Some(t) = self.tenants.iter().find(|t| t.name == name) {
            return Some(t.clone());
        }
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        let token_hash = apps.by_name.get(name)?;
        match apps.by_token.get(token_hash) {
            Some((_, AppEntry::Active(t))) => Some(t.clone()),
            _ => None,
        }
    }

    /// The tenant whose access key the request carries.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Tenant>, Error> {
        let token = headers
            .get(TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .filter(|v| !v.iter().all(u8::is_ascii_whitespace))
            .ok_or(Error::MissingToken)?;
        let presented = TokenHash::of(&String::from_utf8_lossy(token));
        let mut found: Option<&Arc<Tenant>> = None;
        for tenant in &self.tenants {
            if bool::from(tenant.token_hash.0.ct_eq(&presented.0)) {
                found = Some(tenant);
            }
        }
        if let Some(tenant) = found {
            return Ok(tenant.clone());
        }
        let apps = self.apps.read().unwrap_or_else(|p| p.into_inner());
        match apps.by_token.get(&presented.0) {
            Some((_, AppEntry::Active(tenant)))
                if bool::from(tenant.token_hash.0.ct_eq(&presented.0)) =>
            {
                Ok(tenant.clone())
            }
            Some((_, AppEntry::Suspended)) => Err(Error::AccountSuspended),
            _ => Err(Error::UnknownToken),
        }
    }
}

/// A short, non-reversible tag of a presented token, for logs of failed attempts.
pub fn fingerprint(headers: &HeaderMap) -> Option<String> {
    let token = headers.get(TOKEN_HEADER)?;
    let hash = TokenHash::of(&String::from_utf8_lossy(token.as_bytes()));
    Some(hex::encode(&hash.0[..4]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Limits;
    use http::HeaderValue;

    fn tenant(name: &str, token: &str) -> Tenant {
        Tenant {
            name: name.into(),
            token_hash: TokenHash::of(token),
            mapping: "m.toml".into(),
            base_url: "http://x".into(),
            credentials: Default::default(),
            settings: serde_json::Value::Null,
            limits: Limits::default(),
            outbox: Default::default(),
        }
    }

    fn headers(token: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(t) = token {
            h.insert(
                "Lognex-Discount-API-Auth-Token",
                HeaderValue::from_str(t).unwrap(),
            );
        }
        h
    }

    #[test]
    fn each_token_selects_its_own_tenant_only() {
        let tenants = Tenants::new([tenant("a", "tok-a"), tenant("b", "tok-b")]);
        assert_eq!(
            tenants.authenticate(&headers(Some("tok-a"))).unwrap().name,
            "a"
        );
        assert_eq!(
            tenants.authenticate(&headers(Some("tok-b"))).unwrap().name,
            "b"
        );
        assert!(matches!(
            tenants.authenticate(&headers(Some("tok-a "))),
            Err(Error::UnknownToken)
        ));
        assert!(matches!(
            tenants.authenticate(&headers(Some("tok"))),
            Err(Error::UnknownToken)
        ));
        assert!(matches!(
            tenants.authenticate(&headers(None)),
            Err(Error::MissingToken)
        ));
        assert!(matches!(
            tenants.authenticate(&headers(Some(""))),
            Err(Error::MissingToken)
        ));
    }

    fn active(name: &str, token: &str) -> (String, Option<AppSlot>) {
        let slot = AppSlot {
            token_hash: TokenHash::of(token),
            entry: AppEntry::Active(Arc::new(tenant(name, token))),
        };
        (name.to_owned(), Some(slot))
    }

    fn suspended(name: &str, token: &str) -> (String, Option<AppSlot>) {
        let slot = AppSlot {
            token_hash: TokenHash::of(token),
            entry: AppEntry::Suspended,
        };
        (name.to_owned(), Some(slot))
    }

    /// The tenant `token` selects, or the error's name.
    fn who(tenants: &Tenants, token: &str) -> String {
        match tenants.authenticate(&headers(Some(token))) {
            Ok(t) => t.name.clone(),
            Err(Error::AccountSuspended) => "suspended".into(),
            Err(Error::UnknownToken) => "unknown".into(),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn app_changes_replace_or_drop_only_their_own_accounts() {
        let tenants = Tenants::new([tenant("static", "tok-s")]);
        tenants.update_apps([
            active("app:a", "tok-a"),
            suspended("app:b", "tok-b"),
            active("app:c", "tok-c"),
        ]);
        assert_eq!(who(&tenants, "tok-a"), "app:a");
        assert_eq!(who(&tenants, "tok-b"), "suspended");
        assert_eq!(tenants.by_name("app:c").unwrap().name, "app:c");
        assert!(tenants.by_name("app:b").is_none(), "suspended: not served");
        assert_eq!(tenants.active_apps(), 2);

        // a connects again with a new token; b is resumed; c is uninstalled.
        tenants.update_apps([
            active("app:a", "tok-a2"),
            active("app:b", "tok-b"),
            ("app:c".to_owned(), None),
        ]);
        assert_eq!(who(&tenants, "tok-a"), "unknown", "the old token is gone");
        assert_eq!(who(&tenants, "tok-a2"), "app:a");
        assert_eq!(who(&tenants, "tok-b"), "app:b");
        assert_eq!(who(&tenants, "tok-c"), "unknown");
        assert!(tenants.by_name("app:c").is_none());
        assert_eq!(
            tenants.by_name("app:a").unwrap().token_hash.0,
            TokenHash::of("tok-a2").0
        );
        assert_eq!(who(&tenants, "tok-s"), "static");
        assert_eq!(tenants.by_name("static").unwrap().name, "static");
        // Nothing changed: nothing moves.
        tenants.update_apps([]);
        assert_eq!(tenants.active_apps(), 2);
    }

    #[test]
    fn a_token_taken_by_another_account_leaves_the_first() {
        let tenants = Tenants::new([]);
        tenants.update_apps([active("app:a", "tok")]);
        // The store's rows, read in one batch, in the order b (now holding it), a (dropped):
        // applied in that order, the map ends as the store is.
        tenants.update_apps([active("app:b", "tok")]);
        assert_eq!(who(&tenants, "tok"), "app:b");
        assert!(tenants.by_name("app:a").is_none());
        tenants.update_apps([("app:a".to_owned(), None)]);
        assert_eq!(
            who(&tenants, "tok"),
            "app:b",
            "a's removal leaves b's token"
        );
        assert_eq!(tenants.active_apps(), 1);
    }

    #[test]
    fn replacing_the_apps_forgets_the_ones_not_given() {
        let tenants = Tenants::new([]);
        tenants.update_apps([active("app:a", "tok-a"), active("app:b", "tok-b")]);
        tenants.replace_apps(
            [active("app:b", "tok-b2"), suspended("app:c", "tok-c")]
                .into_iter()
                .map(|(name, slot)| (name, slot.unwrap())),
        );
        assert_eq!(who(&tenants, "tok-a"), "unknown");
        assert_eq!(who(&tenants, "tok-b"), "unknown");
        assert_eq!(who(&tenants, "tok-b2"), "app:b");
        assert_eq!(who(&tenants, "tok-c"), "suspended");
        assert!(tenants.by_name("app:a").is_none());
    }

    #[test]
    fn fingerprint_does_not_contain_the_token() {
        let fp = fingerprint(&headers(Some("tok-secret"))).unwrap();
        assert_eq!(fp.len(), 8);
        assert!(!fp.contains("tok"));
    }
}
