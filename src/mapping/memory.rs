//! Values a mapping keeps between calls (`remember` / `recall`: a confirmation code the vendor
//! issued, until the sale that needs it; a vendor operation id): per tenant, with an expiry.
//!
//! The server keeps them in its [`Store`] (durable, shared by instances). Golden examples and
//! dry runs, which have no store, keep them in process ([`Memory::local`]): bounded, and when
//! full, expired entries go first, then the oldest.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::store::{Store, StoreError, duration_ms, now_ms};

const MAX_ENTRIES: usize = 100_000;

pub enum Memory {
    Local(Mutex<HashMap<(String, String), (Value, Instant)>>),
    Store(Arc<dyn Store>),
}

impl Default for Memory {
    fn default() -> Self {
        Memory::local()
    }
}

impl Memory {
    /// In-process values (golden examples, dry runs, tests).
    pub fn local() -> Memory {
        Memory::Local(Mutex::new(HashMap::new()))
    }

    /// Kept for [`Memory::local`]'s callers.
    pub fn new() -> Memory {
        Memory::local()
    }

    /// Values in the durable store.
    pub fn durable(store: Arc<dyn Store>) -> Memory {
        Memory::Store(store)
    }

    /// The value stored under `key` for `tenant`, if it has not expired.
    pub async fn get(&self, tenant: &str, key: &str) -> Result<Option<Value>, StoreError> {
        match self {
            Memory::Local(entries) => {
                let entries = entries.lock().unwrap_or_else(|p| p.into_inner());
                Ok(entries
                    .get(&(tenant.to_string(), key.to_string()))
                    .filter(|(_, expires)| *expires > Instant::now())
                    .map(|(value, _)| value.clone()))
            }
            Memory::Store(store) => store.kv_get(tenant, key, now_ms()).await,
        }
    }

    pub async fn put(
        &self,
        tenant: &str,
        key: &str,
        value: Value,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Memory::Local(entries) => {
                let now = Instant::now();
                let mut entries = entries.lock().unwrap_or_else(|p| p.into_inner());
                if entries.len() >= MAX_ENTRIES {
                    entries.retain(|_, (_, expires)| *expires > now);
                    if entries.len() >= MAX_ENTRIES {
                        if let Some(oldest) = entries
                            .iter()
                            .min_by_key(|(_, (_, e))| *e)
                            .map(|(k, _)| k.clone())
                        {
                            entries.remove(&oldest);
                        }
                    }
                }
                entries.insert((tenant.to_string(), key.to_string()), (value, now + ttl));
                Ok(())
            }
            Memory::Store(store) => {
                store
                    .kv_put(
                        tenant,
                        key,
                        &value,
                        now_ms().saturating_add(duration_ms(ttl)),
                    )
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[tokio::test]
    async fn values_expire_and_tenants_do_not_share() {
        let m = Memory::local();
        m.put("a", "code:7", json!("042"), Duration::from_secs(60))
            .await
            .unwrap();
        m.put("a", "gone", json!(1), Duration::ZERO).await.unwrap();
        assert_eq!(m.get("a", "code:7").await.unwrap(), Some(json!("042")));
        assert_eq!(m.get("b", "code:7").await.unwrap(), None);
        assert_eq!(m.get("a", "gone").await.unwrap(), None);
    }
}
