//! Short-lived values a mapping keeps between calls (a confirmation code issued by the vendor,
//! until the sale that needs it): per tenant, with an expiry, in memory. Bounded: when full,
//! expired entries go first, then the oldest. A durable, shared store replaces it later.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

const MAX_ENTRIES: usize = 100_000;

#[derive(Default)]
pub struct Memory {
    entries: Mutex<HashMap<(String, String), (Value, Instant)>>,
}

impl Memory {
    pub fn new() -> Memory {
        Memory::default()
    }

    /// The value stored under `key` for `tenant`, if it has not expired.
    pub fn get(&self, tenant: &str, key: &str) -> Option<Value> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(&(tenant.to_string(), key.to_string()))
            .filter(|(_, expires)| *expires > Instant::now())
            .map(|(value, _)| value.clone())
    }

    pub fn put(&self, tenant: &str, key: &str, value: Value, ttl: Duration) {
        let now = Instant::now();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
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
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_expire_and_tenants_do_not_share() {
        let m = Memory::new();
        m.put("a", "code:7", json!("042"), Duration::from_secs(60));
        m.put("a", "gone", json!(1), Duration::ZERO);
        assert_eq!(m.get("a", "code:7"), Some(json!("042")));
        assert_eq!(m.get("b", "code:7"), None);
        assert_eq!(m.get("a", "gone"), None);
    }
}
