//! Tenants created by the MoySklad app lifecycle (install, connect, suspend, uninstall).

use serde_json::Value;

use super::{StoreError, StoreFuture};

/// Where a MoySklad account that installed the app is (see `src/app/mod.rs` for the lifecycle).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    /// Installed (or resumed) and not connected yet: the settings page must be filled in.
    SettingsRequired,
    /// Connected: its LoyaltyAPI token is accepted.
    Activated,
    /// MoySklad suspended it (subscription ended): everything is kept, its calls are refused.
    Suspended,
    /// Uninstalled: the access token, the credentials and the LoyaltyAPI token are forgotten.
    Uninstalled,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::SettingsRequired => "settings_required",
            AppState::Activated => "activated",
            AppState::Suspended => "suspended",
            AppState::Uninstalled => "uninstalled",
        }
    }

    pub fn parse(text: &str) -> Option<AppState> {
        match text {
            "settings_required" => Some(AppState::SettingsRequired),
            "activated" => Some(AppState::Activated),
            "suspended" => Some(AppState::Suspended),
            "uninstalled" => Some(AppState::Uninstalled),
            _ => None,
        }
    }

    /// Installed and not suspended (MoySklad's DELETE answers 200 for these, 204 otherwise).
    pub fn is_active(self) -> bool {
        matches!(self, AppState::SettingsRequired | AppState::Activated)
    }
}

/// A tenant created by the MoySklad app lifecycle (one per MoySklad account). Secrets are held
/// sealed (`crate::app::crypto`): the store never sees them in clear text.
#[derive(Debug, Clone, PartialEq)]
pub struct AppTenant {
    pub account_id: String,
    pub app_id: String,
    pub account_name: String,
    pub state: AppState,
    /// MoySklad's JSON-API access token, sealed.
    pub access_token_sealed: Option<String>,
    /// Hex SHA-256 of the LoyaltyAPI token issued to this account; `None` until connected.
    pub token_sha256: Option<String>,
    /// The vendor mapping's name (`maxma` → `<mappings_dir>/maxma.toml`).
    pub mapping: Option<String>,
    pub base_url: Option<String>,
    /// The vendor credentials (a JSON object of strings), sealed.
    pub credentials_sealed: Option<String>,
    /// What the mapping reads as `.settings`.
    pub settings: Value,
    pub external_search: bool,
    /// MoySklad's last answer to our Vendor API calls (or the error), for the settings page.
    pub vendor_note: Option<String>,
    pub created_ms: i64,
    pub updated_ms: i64,
    /// The number of the last write to this row: every write takes the next one (see
    /// [`AppTenantStore::app_tenants_changed`]).
    pub change_number: i64,
}

/// The app tenants written since a change number (see [`AppTenantStore::app_tenants_changed`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AppTenantChanges {
    /// In the order of their changes, in every state.
    pub tenants: Vec<AppTenant>,
    /// The newest change number read (the number asked after when nothing changed): what to
    /// ask after next time.
    pub newest: i64,
}

impl AppTenantChanges {
    /// `tenants`, read in the order of their change numbers after `after`.
    pub(super) fn read_after(after: i64, tenants: Vec<AppTenant>) -> AppTenantChanges {
        let newest = tenants.last().map_or(after, |t| t.change_number.max(after));
        AppTenantChanges { tenants, newest }
    }
}

/// The counter [`super::sql::APP_NEXT_CHANGE`] updates has lost its one row.
pub(super) fn counter_missing() -> StoreError {
    StoreError::Corrupt("app_tenant_counter has no row".into())
}

/// What connecting an app tenant stores (see [`AppTenantStore::app_connect`]).
#[derive(Debug, Clone, PartialEq)]
pub struct AppConnection {
    pub token_sha256: String,
    pub mapping: String,
    pub base_url: String,
    pub credentials_sealed: String,
    pub settings: Value,
    pub external_search: bool,
}

/// The MoySklad app's tenants.
pub trait AppTenantStore: Send + Sync {
    /// Install / Resume / TariffChanged / Autoprolongation: creates or updates the account's
    /// tenant in one statement. It becomes `Activated` if it was connected before (a resumed
    /// account keeps its settings), else `SettingsRequired`. A new access token replaces the
    /// kept one; `None` keeps it.
    fn app_activate(
        &self,
        account_id: &str,
        app_id: &str,
        account_name: &str,
        access_token_sealed: Option<&str>,
        now_ms: i64,
    ) -> StoreFuture<'_, AppTenant>;

    /// Suspend (`uninstall = false`: everything kept, calls refused) or Uninstall (the access
    /// token, credentials and LoyaltyAPI token forgotten). Returns the state before, `None`
    /// for an unknown account (nothing is created).
    fn app_deactivate(
        &self,
        account_id: &str,
        uninstall: bool,
        now_ms: i64,
    ) -> StoreFuture<'_, Option<AppState>>;

    /// Stores a connection (LoyaltyAPI token hash, vendor, sealed credentials) of an installed,
    /// not suspended account; `false` otherwise. The state is not changed: see [`AppTenantStore::app_mark`].
    fn app_connect(
        &self,
        account_id: &str,
        connection: &AppConnection,
        now_ms: i64,
    ) -> StoreFuture<'_, bool>;

    /// Records MoySklad's answer to our Vendor API calls and, with `activated`, makes a
    /// connected, installed account `Activated`. `false` if nothing changed.
    fn app_mark(
        &self,
        account_id: &str,
        activated: bool,
        note: &str,
        now_ms: i64,
    ) -> StoreFuture<'_, bool>;

    fn app_tenant(&self, account_id: &str) -> StoreFuture<'_, Option<AppTenant>>;

    /// The app tenants written after change number `after` (0: all of them), whatever their
    /// state, for the in-memory token map: each instance keeps the newest number it read and
    /// next asks only after it. Every write above takes the next number, and no write becomes
    /// visible with a number below one already visible (`sql::APP_NEXT_CHANGE` says how), so
    /// a reader misses nothing.
    fn app_tenants_changed(&self, after: i64) -> StoreFuture<'_, AppTenantChanges>;
}
