//! Which tenant is calling: the `Lognex-Discount-API-Auth-Token` header, hashed and compared in
//! constant time against every tenant (no early exit, so timing tells nothing about which or how
//! many tenants share a prefix).
//!
//! Tenants of the MoySklad app (created by the lifecycle, kept in the store) are in a map by
//! token hash, replaced as a whole when the store changes: a lookup by SHA-256 tells nothing
//! about the token itself, and the entry found is compared in constant time as well.

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

pub struct Tenants {
    tenants: Vec<Arc<Tenant>>,
    apps: RwLock<HashMap<[u8; 32], AppEntry>>,
}

impl Tenants {
    pub fn new(tenants: impl IntoIterator<Item = Tenant>) -> Self {
        Tenants {
            tenants: tenants.into_iter().map(Arc::new).collect(),
            apps: RwLock::new(HashMap::new()),
        }
    }

    /// Replaces the app tenants (a static tenant's token always wins over an app tenant's).
    pub fn set_apps(&self, entries: impl IntoIterator<Item = (TokenHash, AppEntry)>) {
        let map = entries.into_iter().map(|(h, e)| (h.0, e)).collect();
        *self.apps.write().unwrap_or_else(|p| p.into_inner()) = map;
    }

    /// How many app tenants are activated.
    pub fn active_apps(&self) -> usize {
        self.apps
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|e| matches!(e, AppEntry::Active(_)))
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
        apps.values().find_map(|e| match e {
            AppEntry::Active(t) if t.name == name => Some(t.clone()),
            _ => None,
        })
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
        match apps.get(&presented.0) {
            Some(AppEntry::Active(tenant))
                if bool::from(tenant.token_hash.0.ct_eq(&presented.0)) =>
            {
                Ok(tenant.clone())
            }
            Some(AppEntry::Suspended) => Err(Error::AccountSuspended),
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

    #[test]
    fn fingerprint_does_not_contain_the_token() {
        let fp = fingerprint(&headers(Some("tok-secret"))).unwrap();
        assert_eq!(fp.len(), 8);
        assert!(!fp.contains("tok"));
    }
}
