//! The MoySklad app lifecycle (Vendor API 1.0): how an account installs the bridge as a
//! "server solution" and gets connected without anyone editing `config.toml`.
//!
//! - `PUT  {endpointBase}/api/moysklad/vendor/1.0/apps/{appId}/{accountId}` (Install, Resume,
//!   TariffChanged, Autoprolongation): the account's tenant is created or updated in the store;
//!   MoySklad's JSON-API access token is kept sealed ([`crypto`]). The answer is
//!   `{"status":"SettingsRequired"}`, or `{"status":"Activated"}` when the account was connected
//!   before (a Resume after a Suspend).
//! - `DELETE` on the same path: `Suspend` keeps everything (settings, credentials, the
//!   LoyaltyAPI token) and makes the bridge refuse that account's LoyaltyAPI calls with a
//!   403 envelope saying the solution is suspended, until a Resume. `Uninstall` forgets the
//!   access token, the vendor credentials and the LoyaltyAPI token (its calls are then refused
//!   as an unknown key); the account's non-secret choices (vendor mapping, base URL, settings)
//!   stay so a reinstall can prefill the settings page, and a reinstall answers
//!   `SettingsRequired`. 200 when the account was active, 204 otherwise (unknown, already
//!   suspended or uninstalled).
//! - Both carry an HS256 JWT ([`jwt`]); its `jti` is claimed once in the store, so a replay is
//!   refused by every instance. Handlers are idempotent: MoySklad's retry (same request id, a
//!   fresh token) gets the same answer.
//!
//! [`AppContext::connect`] is what the settings page does once the user chose a vendor and gave
//! credentials: it generates the account's LoyaltyAPI token, stores it (hashed) with the sealed
//! credentials first, then tells MoySklad the loyalty URL and token (`PUT …/loyalty`) and
//! `PUT …/status {"status":"Activated"}`, recording MoySklad's answer. Only an `Activated`
//! account's token is accepted by the LoyaltyAPI endpoints.

pub mod crypto;
pub mod guards;
pub mod jwt;
pub mod recent;
pub mod refresh;
pub mod settings;
pub mod vendor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use http::{HeaderMap, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{Limits, MoyskladAppConfig, Tenant, TokenHash, is_mapping_name};
use crate::error::Error;
use crate::loyalty::auth::{AppEntry, AppSlot};
use crate::secret::Secret;
use crate::store::{AppConnection, AppState, AppTenant, Store, StoreError, now_ms};
use crypto::Sealer;
use jwt::JwtRefusal;
use vendor::{VendorApi, VendorError};

/// Scope of the `jti` claims in [`crate::store::KeyValueStore::claim_once`].
const JTI_SCOPE: &str = "moysklad-jti";
pub use crate::config::APP_TENANT_PREFIX as TENANT_PREFIX;

/// The vendor limits of app tenants (they have no `[tenants.limits]`): their LoyaltyAPI calls and
/// their settings page's credential checks share one limiter made with these.
pub fn app_tenant_limits() -> Limits {
    Limits::default()
}

/// The lifecycle path below `public_base_url`.
const LIFECYCLE_PATH: &str = "/api/moysklad/vendor/1.0/apps/";

/// Everything the lifecycle and the connection need.
pub struct AppContext {
    pub config: MoyskladAppConfig,
    /// The LoyaltyAPI base URL given to MoySklad: `public_base_url` + `server.base_path`.
    pub loyalty_url: String,
    pub store: Arc<dyn Store>,
    pub vendor: VendorApi,
    pub sealer: Sealer,
    lifecycle_prefix: String,
}

impl std::fmt::Debug for AppContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppContext")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// The body of MoySklad's lifecycle calls.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct LifecycleBody {
    app_uid: String,
    #[serde(default)]
    account_name: String,
    cause: String,
    #[serde(default)]
    access: Vec<Access>,
}

#[derive(Deserialize)]
struct Access {
    #[serde(default)]
    access_token: Option<String>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Access(****)")
    }
}

/// What the settings page submits to connect an account.
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    /// The vendor mapping's name: `<moysklad_app.mappings_dir>/<mapping>.toml`.
    pub mapping: String,
    pub base_url: String,
    pub credentials: BTreeMap<String, Secret>,
    pub settings: Value,
    pub external_search: bool,
}

/// A connection stored and announced to MoySklad.
#[derive(Debug)]
pub struct Connected {
    /// The LoyaltyAPI token MoySklad will send (shown nowhere, kept only as a hash).
    pub token: Secret,
}

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("account {0} has not installed the app (or is suspended or uninstalled)")]
    NotInstalled(String),
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored, but MoySklad refused or could not be reached; recorded on the tenant.
    #[error("MoySklad Vendor API: {0}")]
    Vendor(#[from] VendorError),
}

impl AppContext {
    pub fn new(
        config: MoyskladAppConfig,
        base_path: &str,
        store: Arc<dyn Store>,
    ) -> Result<AppContext, String> {
        let prefix_path = config
            .public_base_url
            .parse::<http::Uri>()
            .map(|u| u.path().trim_end_matches('/').to_owned())
            .unwrap_or_default();
        Ok(AppContext {
            loyalty_url: format!("{}{base_path}", config.public_base_url),
            vendor: VendorApi::new(&config)?,
            sealer: Sealer::new(&config.encryption_key),
            lifecycle_prefix: format!("{prefix_path}{LIFECYCLE_PATH}"),
            store,
            config,
        })
    }

    /// `(appId, accountId)` if `path` is a lifecycle path.
    pub fn lifecycle_target(&self, path: &str) -> Option<(String, String)> {
        let rest = path.strip_prefix(&self.lifecycle_prefix)?;
        let (app_id, account_id) = rest.split_once('/')?;
        let ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        };
        (ok(app_id) && ok(account_id)).then(|| (app_id.to_owned(), account_id.to_owned()))
    }

    /// Verifies the JWT of a lifecycle call and claims its `jti`.
    pub async fn check_jwt(&self, headers: &HeaderMap) -> Result<(), Error> {
        let refuse = |reason: JwtRefusal| {
            tracing::warn!(reason = %reason, "MoySklad lifecycle call refused");
            Error::AppUnauthorized { reason }
        };
        let value = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = jwt::bearer(value).map_err(refuse)?;
        let claims = jwt::verify(token, self.config.secret_key.expose()).map_err(refuse)?;
        let until = (claims.exp + jwt::LEEWAY_SECS as i64 + 1) * 1000;
        let claimed = self
            .store
            .claim_once(JTI_SCOPE, &claims.jti, now_ms(), until)
            .await?;
        if !claimed {
            return Err(refuse(JwtRefusal::Replayed));
        }
        Ok(())
    }

    fn check_target(&self, app_id: &str) -> Result<(), Error> {
        if app_id != self.config.app_id {
            return Err(Error::NotFound {
                path: format!("{}{app_id}/…", self.lifecycle_prefix),
            });
        }
        Ok(())
    }

    fn parse_body(&self, body: &[u8]) -> Result<LifecycleBody, Error> {
        let parsed: LifecycleBody =
            serde_json::from_slice(body).map_err(|e| Error::MalformedBody {
                reason: e.to_string(),
            })?;
        if parsed.app_uid != self.config.app_uid {
            return Err(Error::InvalidRequest {
                detail: "appUid не совпадает с moysklad_app.app_uid".into(),
            });
        }
        Ok(parsed)
    }

    /// `PUT …/apps/{appId}/{accountId}`: the answer body.
    pub async fn activate(
        &self,
        app_id: &str,
        account_id: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<Value, Error> {
        self.check_target(app_id)?;
        self.check_jwt(headers).await?;
        let body = self.parse_body(body)?;
        if !matches!(
            body.cause.as_str(),
            "Install" | "Resume" | "TariffChanged" | "Autoprolongation"
        ) {
            return Err(Error::InvalidRequest {
                detail: format!("cause {:?} не поддерживается для PUT", body.cause),
            });
        }
        let sealed = body
            .access
            .iter()
            .find_map(|a| a.access_token.as_deref())
            .filter(|t| !t.is_empty())
            .map(|t| self.sealer.seal(t, &access_context(account_id)));
        let tenant = self
            .store
            .app_activate(
                account_id,
                app_id,
                &body.account_name,
                sealed.as_deref(),
                now_ms(),
            )
            .await?;
        let status = match tenant.state {
            AppState::Activated => "Activated",
            _ => "SettingsRequired",
        };
        tracing::info!(account_id, cause = %body.cause, status, "MoySklad app activated");
        Ok(json!({ "status": status }))
    }

    /// `DELETE …/apps/{appId}/{accountId}`: 200 if it was active, 204 otherwise.
    pub async fn deactivate(
        &self,
        app_id: &str,
        account_id: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<StatusCode, Error> {
        self.check_target(app_id)?;
        self.check_jwt(headers).await?;
        let body = self.parse_body(body)?;
        let uninstall = match body.cause.as_str() {
            "Uninstall" => true,
            "Suspend" => false,
            other => {
                return Err(Error::InvalidRequest {
                    detail: format!("cause {other:?} не поддерживается для DELETE"),
                });
            }
        };
        let before = self
            .store
            .app_deactivate(account_id, uninstall, now_ms())
            .await?;
        tracing::info!(account_id, cause = %body.cause, before = ?before, "MoySklad app deactivated");
        Ok(if before.is_some_and(AppState::is_active) {
            StatusCode::OK
        } else {
            StatusCode::NO_CONTENT
        })
    }

    /// Connects an installed account: a new LoyaltyAPI token, stored first (hashed, with the
    /// sealed credentials), then announced to MoySklad and the app marked `Activated`.
    /// MoySklad's answer or error is recorded on the tenant either way.
    pub async fn connect(
        &self,
        account_id: &str,
        request: ConnectRequest,
    ) -> Result<Connected, ConnectError> {
        if !is_mapping_name(&request.mapping) || !self.mapping_path(&request.mapping).is_file() {
            return Err(ConnectError::Invalid {
                field: "mapping",
                message: format!("no mapping named {:?}", request.mapping),
            });
        }
        let base_url = request.base_url.trim_end_matches('/').to_owned();
        if !(base_url.starts_with("http://") || base_url.starts_with("https://"))
            || base_url.parse::<http::Uri>().is_err()
        {
            return Err(ConnectError::Invalid {
                field: "base_url",
                message: "must be an http(s) URL".into(),
            });
        }
        let previous = match self.store.app_tenant(account_id).await? {
            Some(t) if t.state.is_active() => t,
            _ => return Err(ConnectError::NotInstalled(account_id.to_owned())),
        };
        // 2 × 122 random bits from the OS generator.
        let token = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        let connection = AppConnection {
            token_sha256: hex::encode(TokenHash::of(&token).0),
            mapping: request.mapping,
            base_url,
            credentials_sealed: self.seal_credentials(account_id, &request.credentials),
            settings: request.settings,
            external_search: request.external_search,
        };
        if !self
            .store
            .app_connect(account_id, &connection, now_ms())
            .await?
        {
            return Err(ConnectError::NotInstalled(account_id.to_owned()));
        }
        let loyalty = self
            .vendor
            .put_loyalty(
                account_id,
                &self.loyalty_url,
                &token,
                connection.external_search,
            )
            .await;
        if let (Err(VendorError::Refused { .. }), Some(old)) =
            (&loyalty, previous_connection(&previous))
        {
            // MoySklad refused the new settings, so it still calls with the previous token:
            // put the previous connection back, or a re-save that failed would cut off an
            // account that worked. (After a timeout MoySklad may hold either token; the new
            // one stays, and the admin saves again.)
            self.store.app_connect(account_id, &old, now_ms()).await?;
        }
        let announced = match loyalty {
            Ok(_) => self.vendor.put_status(account_id, "Activated").await,
            Err(e) => Err(e),
        };
        match announced {
            Ok(answer) => {
                let note = format!("Activated: {answer}");
                self.store
                    .app_mark(account_id, true, &note, now_ms())
                    .await?;
                tracing::info!(account_id, "MoySklad account connected");
                Ok(Connected {
                    token: Secret::new(token),
                })
            }
            Err(e) => {
                self.store
                    .app_mark(account_id, false, &e.to_string(), now_ms())
                    .await?;
                tracing::warn!(account_id, error = %e, "MoySklad refused the connection");
                Err(e.into())
            }
        }
    }

    pub fn mapping_path(&self, name: &str) -> PathBuf {
        self.config.mappings_dir.join(format!("{name}.toml"))
    }

    /// What the account puts in the token map ([`crate::loyalty::auth::Tenants`]), `None`
    /// when its token is not accepted (not connected, or not confirmed by MoySklad yet).
    pub fn token_slot(&self, t: &AppTenant) -> Option<AppSlot> {
        let token_hash = t.token_sha256.as_deref().and_then(parse_hash)?;
        let entry = match t.state {
            AppState::Activated => match self.tenant_of(t) {
                Ok(tenant) => AppEntry::Active(Arc::new(tenant)),
                Err(why) => {
                    tracing::error!(account_id = %t.account_id, why = %why, "app tenant cannot be served");
                    return None;
                }
            },
            AppState::Suspended => AppEntry::Suspended,
            // Connected but not yet confirmed by MoySklad: not accepted yet.
            AppState::SettingsRequired | AppState::Uninstalled => return None,
        };
        Some(AppSlot { token_hash, entry })
    }

    /// The tenant an activated account's LoyaltyAPI calls run as.
    fn tenant_of(&self, t: &AppTenant) -> Result<Tenant, String> {
        let mapping = t.mapping.as_deref().ok_or("no mapping")?;
        let base_url = t.base_url.clone().ok_or("no base URL")?;
        let credentials = self.open_credentials(t)?.ok_or("no credentials")?;
        Ok(Tenant {
            name: tenant_name(&t.account_id),
            token_hash: t
                .token_sha256
                .as_deref()
                .and_then(parse_hash)
                .ok_or("no token")?,
            mapping: self.mapping_path(mapping),
            base_url,
            credentials,
            settings: t.settings.clone(),
            limits: app_tenant_limits(),
            outbox: Default::default(),
        })
    }

    /// An account's vendor credentials as the store keeps them: a JSON object, sealed.
    pub fn seal_credentials(
        &self,
        account_id: &str,
        credentials: &BTreeMap<String, Secret>,
    ) -> String {
        let credentials: BTreeMap<&str, &str> = credentials
            .iter()
            .map(|(k, v)| (k.as_str(), v.expose()))
            .collect();
        let json = serde_json::to_string(&credentials).unwrap_or_default();
        self.sealer.seal(&json, &credentials_context(account_id))
    }

    /// The account's vendor credentials, opened; `None` when none are stored.
    fn open_credentials(&self, t: &AppTenant) -> Result<Option<BTreeMap<String, Secret>>, String> {
        let Some(sealed) = t.credentials_sealed.as_deref() else {
            return Ok(None);
        };
        let json = self
            .sealer
            .open(sealed, &credentials_context(&t.account_id))
            .map_err(|e| format!("credentials: {e}"))?;
        let credentials: BTreeMap<String, String> =
            serde_json::from_str(&json).map_err(|_| "credentials are not a JSON object")?;
        Ok(Some(
            credentials
                .into_iter()
                .map(|(k, v)| (k, Secret::new(v)))
                .collect(),
        ))
    }

    /// The stored vendor credentials of an account (the settings page keeps a credential the
    /// admin leaves empty, and shows which are set, never their values).
    pub fn stored_credentials(&self, t: &AppTenant) -> Option<BTreeMap<String, Secret>> {
        match self.open_credentials(t) {
            Ok(credentials) => credentials,
            Err(why) => {
                tracing::error!(account_id = %t.account_id, why = %why, "stored credentials do not open");
                None
            }
        }
    }

    /// MoySklad's JSON-API access token of an account, opened (for later calls on its behalf).
    pub fn access_token(&self, t: &AppTenant) -> Option<Secret> {
        let sealed = t.access_token_sealed.as_deref()?;
        self.sealer
            .open(sealed, &access_context(&t.account_id))
            .ok()
            .map(Secret::new)
    }
}

/// The name an account's tenant has in logs, metrics and the store (`app:<accountId>`).
pub fn tenant_name(account_id: &str) -> String {
    format!("{TENANT_PREFIX}{account_id}")
}

fn access_context(account_id: &str) -> String {
    format!("access_token:{account_id}")
}

fn credentials_context(account_id: &str) -> String {
    format!("credentials:{account_id}")
}

fn parse_hash(text: &str) -> Option<TokenHash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(TokenHash(out))
}

/// What `connect` stored for `tenant` before, when it was connected.
fn previous_connection(tenant: &AppTenant) -> Option<AppConnection> {
    Some(AppConnection {
        token_sha256: tenant.token_sha256.clone()?,
        mapping: tenant.mapping.clone()?,
        base_url: tenant.base_url.clone()?,
        credentials_sealed: tenant.credentials_sealed.clone()?,
        settings: tenant.settings.clone(),
        external_search: tenant.external_search,
    })
}
