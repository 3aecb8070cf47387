//! Keeps the app tenants' token map ([`Tenants`]) in step with the store, on every instance.
//!
//! A refresh reads only the app tenants written since the newest change number it read before
//! ([`AppTenantStore::app_tenants_changed`]) and updates their accounts in the map; the others
//! are left alone, their credentials not opened again. With nothing changed that is one index
//! lookup, however many accounts there are. The first refresh reads every row.
//!
//! [`AppTenantStore::app_tenants_changed`]: crate::store::AppTenantStore::app_tenants_changed

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::{AppContext, tenant_name};
use crate::loyalty::auth::{AppEntry, AppSlot, Tenants};
use crate::mapping::registry::Mappings;
use crate::store::StoreError;

/// How often the map is rebuilt from every row instead. A safety net, for writes the change
/// numbers cannot show: a bridge from before them still writing during a rolling upgrade (it
/// does not stamp its rows), a row edited by hand, a database restored from a backup (its
/// counter behind the number this instance saw). Every 5 minutes costs one read of every row
/// per instance, 1/300 of re-reading them every second as before.
pub const FULL_REREAD: Duration = Duration::from_secs(300);

/// Where an instance's refreshes have got to. Refreshes must run one at a time (the caller
/// holds this behind a lock), so that changes are applied in the order they were read.
#[derive(Debug, Default)]
pub struct AppRefresh {
    /// The newest change number applied.
    seen: i64,
    /// When every row was last read; `None` before the first refresh.
    last_full: Option<Instant>,
    /// Mapping files of activated app tenants that did not load: tried again every refresh,
    /// as the file may be fixed.
    unloaded_mappings: BTreeSet<PathBuf>,
}

/// What one refresh did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    /// Every row was read and the map rebuilt.
    pub full: bool,
    /// App-tenant rows the store returned.
    pub rows: usize,
    /// The newest change number applied.
    pub newest: i64,
}

impl AppRefresh {
    pub fn new() -> AppRefresh {
        AppRefresh::default()
    }

    /// Makes the next refresh read every row.
    pub fn reread_all(&mut self) {
        self.last_full = None;
    }

    /// Reads what changed and applies it to `tenants`, after loading the mappings of newly
    /// activated accounts into `mappings`. On a store error nothing changes: the next refresh
    /// asks again from the same number.
    pub async fn refresh(
        &mut self,
        ctx: &AppContext,
        tenants: &Tenants,
        mappings: &Arc<Mappings>,
    ) -> Result<Refreshed, StoreError> {
        let full = self.last_full.is_none_or(|at| at.elapsed() >= FULL_REREAD);
        let after = if full { 0 } else { self.seen };
        let started = Instant::now();
        let changes = ctx.store.app_tenants_changed(after).await?;
        let slots: Vec<(String, Option<AppSlot>)> = changes
            .tenants
            .iter()
            .map(|t| (tenant_name(&t.account_id), ctx.token_slot(t)))
            .collect();
        if full {
            // Every activated account is among the rows: only their mappings matter.
            self.unloaded_mappings.clear();
        }
        for (_, slot) in &slots {
            if let Some(AppSlot {
                entry: AppEntry::Active(tenant),
                ..
            }) = slot
                && !mappings.contains(&tenant.mapping)
            {
                self.unloaded_mappings.insert(tenant.mapping.clone());
            }
        }
        self.load_mappings(mappings).await;
        if full {
            tenants.replace_apps(
                slots
                    .into_iter()
                    .filter_map(|(name, slot)| Some((name, slot?))),
            );
            self.last_full = Some(started);
        } else {
            tenants.update_apps(slots);
        }
        // After a full read this may be lower than before: a restored database.
        self.seen = changes.newest;
        let refreshed = Refreshed {
            full,
            rows: changes.tenants.len(),
            newest: changes.newest,
        };
        if full || refreshed.rows > 0 {
            tracing::debug!(
                full,
                rows = refreshed.rows,
                newest = refreshed.newest,
                took_ms = started.elapsed().as_millis() as u64,
                "app tenants refreshed"
            );
        }
        Ok(refreshed)
    }

    /// Loads the mappings in `unloaded_mappings` (compiling one takes a while: off the async
    /// threads); what loads leaves the set.
    async fn load_mappings(&mut self, mappings: &Arc<Mappings>) {
        let paths = std::mem::take(&mut self.unloaded_mappings);
        for path in paths {
            let registry = mappings.clone();
            let tried = path.clone();
            let loaded = tokio::task::spawn_blocking(move || registry.ensure(&tried)).await;
            match loaded {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(mapping = %path.display(), error = %e, "an app tenant's mapping does not load");
                    self.unloaded_mappings.insert(path);
                }
                Err(e) => {
                    tracing::error!(mapping = %path.display(), error = %e, "loading an app tenant's mapping failed");
                    self.unloaded_mappings.insert(path);
                }
            }
        }
    }
}
