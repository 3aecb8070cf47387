//! `config.toml`: listen address, limits, logging and the tenants (one per MoySklad account).
//!
//! Loading is two passes, after rathole: serde with `deny_unknown_fields` (a typo is an error that
//! names the key), then [`RawConfig::validate`], which checks values, resolves `${ENV}` references
//! and produces the [`Config`] the server runs with. Every message names the offending field.
//!
//! Secrets are never required in clear text: a tenant's token is `${ENV_VAR}` or its SHA-256
//! (`token_sha256`); credentials are `${ENV_VAR}` (optionally `${ENV_VAR:-default}`).

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::secret::Secret;

/// Looks up an environment variable; injectable so tests need not touch the process environment.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        source: toml::de::Error,
    },
    #[error("{path}: {field}: {message}")]
    Invalid {
        path: String,
        field: String,
        message: String,
    },
}

// ---------------------------------------------------------------------------------------------
// What the file says

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub tenants: Vec<RawTenant>,
    /// Vendor emulators `serve` starts beside the bridge (a demo without a vendor account).
    #[serde(default)]
    pub sandbox: Option<RawSandboxes>,
    /// Where durable state lives (the journal of sales, the outbox, codes).
    #[serde(default)]
    pub store: Option<RawStore>,
    /// The MoySklad app (Vendor API): accounts install it and are connected without editing
    /// this file.
    #[serde(default)]
    pub moysklad_app: Option<RawMoyskladApp>,
}

/// `[moysklad_app]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMoyskladApp {
    /// The app's id (a UUID) from the developer's cabinet.
    pub app_id: String,
    /// The app's `appUid` (`name.developer`).
    pub app_uid: String,
    /// `${ENV}`: the secret key that signs JWTs both ways.
    pub secret_key: String,
    /// Where MoySklad reaches this bridge (the `endpointBase` of the app descriptor).
    pub public_base_url: String,
    pub vendor_api_url: Option<String>,
    /// `${ENV}`: 32 bytes, hex or base64, sealing access tokens and credentials in the store.
    pub encryption_key: String,
    /// Where app tenants' vendor mapping files are (`<name>.toml`), relative to the config file.
    pub mappings_dir: Option<PathBuf>,
    /// Path of the settings page (the descriptor's iframe `sourceUrl` is `public_base_url` + this).
    pub settings_path: Option<String>,
    /// Origins besides MoySklad's that may frame the settings page (a sandbox, a local demo).
    #[serde(default)]
    pub frame_ancestors: Vec<String>,
    /// A settings page session ends after this many idle minutes.
    pub session_idle_minutes: Option<u64>,
    /// Where each vendor mapping's API is, by mapping name, overriding the mapping file's
    /// `[vendor] base_url` (a vendor's test environment, a sandbox).
    #[serde(default)]
    pub vendor_base_urls: BTreeMap<String, String>,
}

/// Prefix of app tenants' names (`app:<accountId>`); static tenant names cannot contain `:`, so
/// the two never mix.
pub const APP_TENANT_PREFIX: &str = "app:";
pub const DEFAULT_VENDOR_API_URL: &str = "https://apps-api.moysklad.ru/api/vendor/1.0";

/// The validated `[moysklad_app]`.
#[derive(Clone)]
pub struct MoyskladAppConfig {
    pub app_id: String,
    pub app_uid: String,
    pub secret_key: Secret,
    /// Without a trailing `/`.
    pub public_base_url: String,
    /// Without a trailing `/`.
    pub vendor_api_url: String,
    pub encryption_key: EncryptionKey,
    pub mappings_dir: PathBuf,
    /// Path of the settings page below `public_base_url`'s own path (leading `/`, no trailing `/`).
    pub settings_path: String,
    /// Extra `frame-ancestors` origins of the settings page (MoySklad's are always allowed).
    pub frame_ancestors: Vec<String>,
    pub session_idle: std::time::Duration,
    /// Vendor API base URLs by mapping name (without a trailing `/`).
    pub vendor_base_urls: BTreeMap<String, String>,
}

/// Default path of the settings page.
pub const DEFAULT_SETTINGS_PATH: &str = "/moysklad/settings";
/// Default idle lifetime of a settings page session, in minutes.
pub const DEFAULT_SESSION_IDLE_MINUTES: u64 = 30;

impl fmt::Debug for MoyskladAppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MoyskladAppConfig")
            .field("app_id", &self.app_id)
            .field("app_uid", &self.app_uid)
            .field("secret_key", &self.secret_key)
            .field("public_base_url", &self.public_base_url)
            .field("vendor_api_url", &self.vendor_api_url)
            .field("encryption_key", &self.encryption_key)
            .field("mappings_dir", &self.mappings_dir)
            .field("settings_path", &self.settings_path)
            .field("frame_ancestors", &self.frame_ancestors)
            .field("session_idle", &self.session_idle)
            .field("vendor_base_urls", &self.vendor_base_urls)
            .finish()
    }
}

/// A 32-byte key; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct EncryptionKey(pub [u8; 32]);

impl fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("EncryptionKey(****)")
    }
}

impl EncryptionKey {
    /// 64 hex digits or the base64 (standard or URL-safe, padded or not) of 32 bytes.
    pub fn parse(text: &str) -> Option<EncryptionKey> {
        use base64::Engine;
        let text = text.trim();
        let mut out = [0u8; 32];
        if text.len() == 64 && hex::decode_to_slice(text, &mut out).is_ok() {
            return Some(EncryptionKey(out));
        }
        let engines = [
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ];
        for engine in engines {
            if let Ok(bytes) = engine.decode(text)
                && let Ok(key) = <[u8; 32]>::try_from(bytes.as_slice())
            {
                return Some(EncryptionKey(key));
            }
        }
        None
    }
}

/// `[store]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStore {
    #[serde(default)]
    pub backend: StoreBackendName,
    /// SQLite: the database file, relative to the config file.
    pub path: Option<PathBuf>,
    /// PostgreSQL: `postgres://user:password@host:port/database`; `${ENV}` allowed (and needed
    /// for a password).
    pub url: Option<String>,
    /// PostgreSQL: most connections this instance opens.
    pub pool_size: Option<usize>,
    /// Settled sales and returns, delivered outbox items and expired values are deleted after
    /// this many days.
    pub retention_days: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreBackendName {
    #[default]
    Sqlite,
    Postgres,
}

/// The SQLite file used when `[store]` names none (relative to the config file).
pub const DEFAULT_STORE_PATH: &str = "data/loyalty-bridge.sqlite3";
/// `store.path` of an in-memory SQLite database (tests, demos): nothing survives a restart.
pub const MEMORY_STORE: &str = ":memory:";
pub const DEFAULT_POOL_SIZE: usize = 8;
pub const DEFAULT_RETENTION_DAYS: u32 = 90;

/// The validated `[store]`.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreConfig {
    pub backend: StoreBackend,
    pub retention_days: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum StoreBackend {
    Sqlite { path: PathBuf },
    Postgres { url: Secret, pool_size: usize },
}

impl StoreConfig {
    /// For logs: the backend and where it is, a PostgreSQL password masked.
    pub fn describe(&self) -> String {
        match &self.backend {
            StoreBackend::Sqlite { path } => format!("sqlite {}", path.display()),
            StoreBackend::Postgres { url, .. } => format!("postgres {}", redact_url(url.expose())),
        }
    }
}

/// `url` with the password of its `user:password@` part replaced by `****`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "****".into();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:****@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_string(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) if query.to_ascii_lowercase().contains("password") => {
            format!("{path}?****")
        }
        _ => tail.to_string(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandboxes {
    pub maxma: Option<RawSandbox>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSandbox {
    pub listen: SocketAddr,
    /// The key the emulator accepts (`${ENV}` or `${ENV:-default}`).
    pub key: String,
}

/// The MAXMA emulator to run beside the bridge.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub listen: SocketAddr,
    pub key: Secret,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address `loyalty-bridge serve` binds.
    pub listen: SocketAddr,
    /// Path prefix of the LoyaltyAPI endpoints (`""` or e.g. `"/loyalty"`), as in the base URL
    /// registered with MoySklad.
    pub base_path: String,
    /// Largest accepted request body, before and after gzip decoding.
    pub max_body_bytes: usize,
    /// Deadline for one request: reading the body, all upstream calls, the answer.
    pub request_timeout_ms: u64,
    /// Time allowed for a client to send the request headers (slow-client protection): from
    /// accepting a connection to its first complete request head, whatever the protocol (a
    /// connection that sends nothing is closed then), and for each later HTTP/1.1 head.
    pub header_read_timeout_ms: u64,
    /// A connection (HTTP/1.1 keep-alive or h2c) with no request in progress for this long is
    /// closed (h2c: GOAWAY first).
    pub idle_timeout_ms: u64,
    /// Time allowed for a request's body to arrive once its head has; a request counts against
    /// `max_in_flight` only after that. The request's own deadline still bounds it.
    pub body_read_timeout_ms: u64,
    /// On SIGTERM/SIGINT, how long in-flight requests may take to finish.
    pub shutdown_grace_ms: u64,
    /// How often mapping files are checked for changes (SIGHUP reloads at once).
    pub mapping_reload_ms: u64,
    /// Most cached vendor answers kept (all tenants together).
    pub cache_entries: u64,
    /// Most bytes of cached vendor answers and their keys kept (all tenants together).
    pub cache_bytes: u64,
    /// Most LoyaltyAPI requests worked on at once (all tenants together); more wait for a
    /// turn, within their deadline. Bounds memory under a burst (each request in progress
    /// holds its request, the vendor's answer and a vendor connection) and keeps a burst from
    /// opening thousands of connections to the vendor.
    pub max_in_flight: usize,
    /// Most LoyaltyAPI requests of one tenant worked on at once (at most `max_in_flight`; by
    /// default three quarters of it): the rest of the turns stay free for the other tenants,
    /// so that one tenant's flood or slow vendor does not delay them, while a tenant alone
    /// still gets most of the turns.
    pub tenant_max_in_flight: Option<usize>,
    /// `/metrics` series per MoySklad-app tenant (labelled with the account id). Off: app
    /// tenants share the label `app`, so the label sets stay bounded however many accounts
    /// install the app; configured tenants always have their own.
    pub metrics_per_app_tenant: bool,
    /// Most client connections served at once. Beyond it the connection idle the longest is
    /// closed to admit a new one; when every one has a request in progress, new connections
    /// wait in the kernel's accept queue (4,096) until one closes. Each open connection
    /// holds hyper's read and write buffers (≈ 16–20 KiB), so this bounds memory under a burst
    /// of connections, as nginx's `worker_connections` does.
    pub max_connections: usize,
    /// Worker threads of the runtime `loyalty-bridge serve` starts (tokio's work-stealing
    /// runtime: connections, requests, vendor calls and background work); 0: one per CPU core.
    /// A server embedded with [`crate::run`] runs on its caller's runtime instead.
    pub threads: usize,
    /// When set (`${ENV_VAR}`), `GET /metrics` requires `Authorization: Bearer <token>`.
    /// Expanded from the environment by [`RawConfig::validate`].
    pub metrics_token: Option<Secret>,
}

impl ServerConfig {
    /// How many requests of one tenant are worked on at once.
    pub fn tenant_turns(&self) -> usize {
        match self.tenant_max_in_flight {
            Some(n) => n.min(self.max_in_flight),
            None => (self.max_in_flight * 3 / 4).max(1),
        }
    }

    /// How many worker threads `threads` means on this machine.
    pub fn thread_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            base_path: String::new(),
            max_body_bytes: 1024 * 1024,
            request_timeout_ms: 10_000,
            header_read_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            body_read_timeout_ms: 5_000,
            shutdown_grace_ms: 10_000,
            mapping_reload_ms: 2_000,
            cache_entries: 100_000,
            cache_bytes: crate::cache::DEFAULT_BYTES,
            max_in_flight: 256,
            tenant_max_in_flight: None,
            metrics_per_app_tenant: false,
            max_connections: 384,
            threads: 0,
            metrics_token: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// A `tracing` filter: `info`, `loyalty_bridge=debug,info`, …; `RUST_LOG` overrides it.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTenant {
    pub name: String,
    /// `${ENV_VAR}` holding the access key registered with MoySklad.
    pub token: Option<String>,
    /// Hex SHA-256 of the access key, when the key itself should not be on this machine at all.
    pub token_sha256: Option<String>,
    /// The vendor mapping file, relative to the config file.
    pub mapping: PathBuf,
    /// The vendor API's base URL.
    pub base_url: String,
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    /// Plain settings the mapping reads as `.settings` (e.g. SKUs excluded from the program).
    #[serde(default)]
    pub settings: toml::Table,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub outbox: OutboxPolicy,
}

/// What is accepted while the tenant's vendor cannot be reached (`[tenants.outbox]`): such a
/// call is answered 201 and delivered from the durable outbox when the vendor is back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutboxPolicy {
    /// Sales that only earn points (nothing spent, no gift card).
    pub earning_sales: bool,
    /// Sales that spend points or a gift card: the vendor has not approved the spend, so the
    /// balance may not cover it when the sale arrives. Off unless an operator accepts that.
    pub spending_sales: bool,
    /// Returns (they reverse points the vendor may not hold yet).
    pub returns: bool,
}

impl Default for OutboxPolicy {
    fn default() -> Self {
        OutboxPolicy {
            earning_sales: true,
            spending_sales: false,
            returns: false,
        }
    }
}

/// Upstream rate limits of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub requests_per_second: u32,
    pub burst: u32,
    /// Longest a request waits for a permit before it is refused.
    pub max_wait_ms: u64,
    /// Vendor calls failing in a row (no answer or 5xx) that open the circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker makes calls fail fast before one trial call.
    pub breaker_open_ms: u64,
    /// Longest pause a vendor's throttle signal (429 `Retry-After`, a rule's `pause_ms`) may
    /// impose on the tenant's calls; 0 ignores such signals.
    pub max_pause_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_per_second: 20,
            burst: 40,
            max_wait_ms: 1_000,
            breaker_failures: 5,
            breaker_open_ms: 10_000,
            max_pause_ms: 60_000,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// What the server runs with

#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub log: LogConfig,
    pub tenants: Vec<Tenant>,
    pub maxma_sandbox: Option<SandboxConfig>,
    pub store: StoreConfig,
    pub moysklad_app: Option<MoyskladAppConfig>,
}

/// SHA-256 of a tenant's access key. Tokens are compared by hash, in constant time.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    pub fn of(token: &str) -> Self {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenHash(****)")
    }
}

#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub token_hash: TokenHash,
    pub mapping: PathBuf,
    /// Without a trailing `/`.
    pub base_url: String,
    pub credentials: BTreeMap<String, Secret>,
    /// `[tenants.settings]`, as JSON for the mapping's `.settings`.
    pub settings: serde_json::Value,
    pub limits: Limits,
    pub outbox: OutboxPolicy,
}

impl Config {
    /// Reads, parses and validates a config file; `${ENV}` references come from the process.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let base_dir = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, &path.display().to_string(), base_dir, &|name| {
            std::env::var(name).ok()
        })
    }

    /// Parses and validates config text; `origin` names it in messages, `base_dir` anchors
    /// relative paths.
    pub fn parse(
        text: &str,
        origin: &str,
        base_dir: &Path,
        env: EnvLookup<'_>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: origin.to_string(),
            source,
        })?;
        raw.validate(base_dir, env)
            .map_err(|(field, message)| ConfigError::Invalid {
                path: origin.to_string(),
                field,
                message,
            })
    }
}

type Invalid = (String, String);

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    (field.into(), message.into())
}

impl RawConfig {
    pub fn validate(mut self, base_dir: &Path, env: EnvLookup<'_>) -> Result<Config, Invalid> {
        self.server.validate()?;
        if let Some(template) = self.server.metrics_token.take() {
            let field = "server.metrics_token";
            if !template.expose().contains("${") {
                return Err(invalid(
                    field,
                    "the metrics token is not kept in clear text: write \"${ENV_VAR}\"",
                ));
            }
            let token = expand(template.expose(), field, env)?;
            if token.trim().is_empty() {
                return Err(invalid(field, "expands to an empty token"));
            }
            self.server.metrics_token = Some(Secret::new(token));
        }
        self.log.validate()?;
        if self.tenants.is_empty() && self.moysklad_app.is_none() {
            return Err(invalid(
                "tenants",
                "at least one [[tenants]] entry is required (or a [moysklad_app] section)",
            ));
        }
        let mut names = HashSet::new();
        let mut tenants: Vec<Tenant> = Vec::with_capacity(self.tenants.len());
        for (i, raw) in self.tenants.into_iter().enumerate() {
            let tenant = raw.validate(&format!("tenants[{i}]"), base_dir, env)?;
            if !names.insert(tenant.name.clone()) {
                return Err(invalid(
                    format!("tenants[{i}].name"),
                    format!("duplicate tenant name {:?}", tenant.name),
                ));
            }
            if let Some(j) = tenants
                .iter()
                .position(|t| t.token_hash == tenant.token_hash)
            {
                return Err(invalid(
                    format!("tenants[{i}].token"),
                    format!("same access key as tenants[{j}]: every tenant needs its own"),
                ));
            }
            tenants.push(tenant);
        }
        let maxma_sandbox = match self.sandbox.and_then(|s| s.maxma) {
            Some(raw) => {
                let field = "sandbox.maxma.key";
                if !raw.key.contains("${") {
                    return Err(invalid(
                        field,
                        "write \"${ENV_VAR:-default}\": keys are not kept in clear text",
                    ));
                }
                Some(SandboxConfig {
                    listen: raw.listen,
                    key: Secret::new(expand(&raw.key, field, env)?),
                })
            }
            None => None,
        };
        let store = RawStore::validate(self.store, base_dir, env)?;
        let moysklad_app = self
            .moysklad_app
            .map(|raw| raw.validate(base_dir, env))
            .transpose()?;
        Ok(Config {
            server: self.server,
            log: self.log,
            tenants,
            maxma_sandbox,
            store,
            moysklad_app,
        })
    }
}

impl RawMoyskladApp {
    fn validate(self, base_dir: &Path, env: EnvLookup<'_>) -> Result<MoyskladAppConfig, Invalid> {
        let at = "moysklad_app";
        if self.app_id.trim().is_empty() {
            return Err(invalid(format!("{at}.app_id"), "must not be empty"));
        }
        if uuid::Uuid::parse_str(&self.app_id).is_err() {
            return Err(invalid(
                format!("{at}.app_id"),
                "must be the app's id (a UUID) from the developer's cabinet",
            ));
        }
        if self.app_uid.trim().is_empty() || self.app_uid.contains(char::is_whitespace) {
            return Err(invalid(
                format!("{at}.app_uid"),
                "must be the app's appUid (e.g. \"loyalty-bridge.example\")",
            ));
        }
        let secret_field = format!("{at}.secret_key");
        if !self.secret_key.contains("${") {
            return Err(invalid(
                &secret_field,
                "the secret key is not kept in clear text: write \"${ENV_VAR}\"",
            ));
        }
        let secret_key = expand(&self.secret_key, &secret_field, env)?;
        if secret_key.len() < 16 {
            return Err(invalid(
                secret_field,
                "expands to fewer than 16 characters: use the app's secret key",
            ));
        }
        let public_base_url = validate_base_url(&self.public_base_url)
            .map_err(|m| invalid(format!("{at}.public_base_url"), m))?;
        let vendor_api_url = validate_base_url(
            self.vendor_api_url
                .as_deref()
                .unwrap_or(DEFAULT_VENDOR_API_URL),
        )
        .map_err(|m| invalid(format!("{at}.vendor_api_url"), m))?;
        let key_field = format!("{at}.encryption_key");
        if !self.encryption_key.contains("${") {
            return Err(invalid(
                &key_field,
                "the encryption key is not kept in clear text: write \"${ENV_VAR}\"",
            ));
        }
        let key_text = expand(&self.encryption_key, &key_field, env)?;
        let encryption_key = EncryptionKey::parse(&key_text).ok_or_else(|| {
            invalid(
                &key_field,
                "must be 32 bytes, as 64 hex digits or base64 (e.g. `openssl rand -hex 32`)",
            )
        })?;
        let mappings_dir = base_dir.join(self.mappings_dir.unwrap_or_else(|| "mappings".into()));
        let settings_path = self
            .settings_path
            .unwrap_or_else(|| DEFAULT_SETTINGS_PATH.into());
        let path_ok = settings_path.len() > 1
            && settings_path.starts_with('/')
            && !settings_path.ends_with('/')
            && !settings_path.contains("//")
            && settings_path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/-_.".contains(&b));
        if !path_ok {
            return Err(invalid(
                format!("{at}.settings_path"),
                "must be a path like \"/moysklad/settings\" (leading /, no trailing /, \
                 letters, digits, '-', '_', '.')",
            ));
        }
        let mut frame_ancestors = Vec::with_capacity(self.frame_ancestors.len());
        for (i, origin) in self.frame_ancestors.iter().enumerate() {
            let origin = validate_origin(origin)
                .map_err(|m| invalid(format!("{at}.frame_ancestors[{i}]"), m))?;
            frame_ancestors.push(origin);
        }
        let idle_minutes = self
            .session_idle_minutes
            .unwrap_or(DEFAULT_SESSION_IDLE_MINUTES);
        if !(1..=1440).contains(&idle_minutes) {
            return Err(invalid(
                format!("{at}.session_idle_minutes"),
                "must be between 1 and 1440",
            ));
        }
        let mut vendor_base_urls = BTreeMap::new();
        for (name, url) in self.vendor_base_urls {
            let field = format!("{at}.vendor_base_urls.{name}");
            if !is_mapping_name(&name) {
                return Err(invalid(
                    field,
                    "must name a mapping file of mappings_dir (1–64 of A–Z, a–z, 0–9, '-', '_')",
                ));
            }
            let url = validate_base_url(&url).map_err(|m| invalid(&field, m))?;
            vendor_base_urls.insert(name, url);
        }
        Ok(MoyskladAppConfig {
            app_id: self.app_id,
            app_uid: self.app_uid,
            secret_key: Secret::new(secret_key),
            public_base_url,
            vendor_api_url,
            encryption_key,
            mappings_dir,
            settings_path,
            frame_ancestors,
            session_idle: std::time::Duration::from_secs(idle_minutes * 60),
            vendor_base_urls,
        })
    }
}

impl ServerConfig {
    fn validate(&self) -> Result<(), Invalid> {
        let p = &self.base_path;
        if !p.is_empty() && (!p.starts_with('/') || p.ends_with('/') || p.contains(['?', '#', ' ']))
        {
            return Err(invalid(
                "server.base_path",
                "must be empty or a path like \"/loyalty\" (leading /, no trailing /)",
            ));
        }
        if self.cache_entries == 0 {
            return Err(invalid("server.cache_entries", "must be at least 1"));
        }
        if self.max_in_flight == 0 || self.max_in_flight > 100_000 {
            return Err(invalid(
                "server.max_in_flight",
                "must be between 1 and 100000",
            ));
        }
        if self
            .tenant_max_in_flight
            .is_some_and(|n| n == 0 || n > 100_000)
        {
            return Err(invalid(
                "server.tenant_max_in_flight",
                "must be between 1 and 100000",
            ));
        }
        if self.cache_bytes < 1024 * 1024 || self.cache_bytes > 64 * 1024 * 1024 * 1024 {
            return Err(invalid(
                "server.cache_bytes",
                "must be between 1048576 (1 MiB) and 68719476736 (64 GiB)",
            ));
        }
        if self.max_connections == 0 || self.max_connections > 100_000 {
            return Err(invalid(
                "server.max_connections",
                "must be between 1 and 100000",
            ));
        }
        if self.threads > 1024 {
            return Err(invalid(
                "server.threads",
                "must be between 0 (one per CPU core) and 1024",
            ));
        }
        if self.max_body_bytes < 1024 || self.max_body_bytes > 64 * 1024 * 1024 {
            return Err(invalid(
                "server.max_body_bytes",
                "must be between 1024 and 67108864",
            ));
        }
        for (field, value) in [
            ("server.request_timeout_ms", self.request_timeout_ms),
            ("server.header_read_timeout_ms", self.header_read_timeout_ms),
            ("server.idle_timeout_ms", self.idle_timeout_ms),
            ("server.body_read_timeout_ms", self.body_read_timeout_ms),
            ("server.shutdown_grace_ms", self.shutdown_grace_ms),
            ("server.mapping_reload_ms", self.mapping_reload_ms),
        ] {
            if value == 0 || value > 600_000 {
                return Err(invalid(field, "must be between 1 and 600000 milliseconds"));
            }
        }
        Ok(())
    }
}

impl LogConfig {
    fn validate(&self) -> Result<(), Invalid> {
        tracing_subscriber::EnvFilter::try_new(&self.level)
            .map(|_| ())
            .map_err(|e| invalid("log.level", format!("not a valid filter: {e}")))
    }
}

impl RawStore {
    fn validate(
        raw: Option<RawStore>,
        base_dir: &Path,
        env: EnvLookup<'_>,
    ) -> Result<StoreConfig, Invalid> {
        let raw = raw.unwrap_or(RawStore {
            backend: StoreBackendName::Sqlite,
            path: None,
            url: None,
            pool_size: None,
            retention_days: None,
        });
        let retention_days = raw.retention_days.unwrap_or(DEFAULT_RETENTION_DAYS);
        if !(1..=36_500).contains(&retention_days) {
            return Err(invalid(
                "store.retention_days",
                "must be between 1 and 36500",
            ));
        }
        let backend = match raw.backend {
            StoreBackendName::Sqlite => {
                if raw.url.is_some() {
                    return Err(invalid(
                        "store.url",
                        "only for backend = \"postgres\" (SQLite takes store.path)",
                    ));
                }
                if raw.pool_size.is_some() {
                    return Err(invalid(
                        "store.pool_size",
                        "only for backend = \"postgres\"",
                    ));
                }
                let path = raw
                    .path
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE_PATH));
                if path.as_os_str().is_empty() || path.file_name().is_none() {
                    return Err(invalid("store.path", "must be the path of a file"));
                }
                StoreBackend::Sqlite {
                    // SQLite's in-memory database: for tests and demos, nothing survives a restart.
                    path: if path == Path::new(MEMORY_STORE) {
                        path
                    } else {
                        base_dir.join(path)
                    },
                }
            }
            StoreBackendName::Postgres => {
                if raw.path.is_some() {
                    return Err(invalid(
                        "store.path",
                        "only for backend = \"sqlite\" (PostgreSQL takes store.url)",
                    ));
                }
                let template = raw.url.ok_or_else(|| {
                    invalid(
                        "store.url",
                        "missing: backend = \"postgres\" needs url = \"${ENV_VAR}\" \
                         (postgres://user:password@host:port/database)",
                    )
                })?;
                let url = expand(&template, "store.url", env)?;
                // The parser's message may quote the URL: say what is expected instead.
                let parsed = url.parse::<tokio_postgres::Config>().map_err(|_| {
                    invalid(
                        "store.url",
                        "not a PostgreSQL URL (postgres://user:password@host:port/database)",
                    )
                })?;
                if parsed.get_password().is_some() && !template.contains("${") {
                    return Err(invalid(
                        "store.url",
                        "the password is not kept in clear text: write url = \"${ENV_VAR}\" \
                         (or ${ENV_VAR} in place of the password)",
                    ));
                }
                let pool_size = raw.pool_size.unwrap_or(DEFAULT_POOL_SIZE);
                if !(1..=1000).contains(&pool_size) {
                    return Err(invalid("store.pool_size", "must be between 1 and 1000"));
                }
                StoreBackend::Postgres {
                    url: Secret::new(url),
                    pool_size,
                }
            }
        };
        Ok(StoreConfig {
            backend,
            retention_days,
        })
    }
}

impl Limits {
    fn validate(&self, at: &str) -> Result<(), Invalid> {
        if self.requests_per_second == 0 {
            return Err(invalid(
                format!("{at}.requests_per_second"),
                "must be at least 1",
            ));
        }
        if self.burst == 0 {
            return Err(invalid(format!("{at}.burst"), "must be at least 1"));
        }
        if self.breaker_failures == 0 {
            return Err(invalid(
                format!("{at}.breaker_failures"),
                "must be at least 1",
            ));
        }
        if self.breaker_open_ms == 0 || self.breaker_open_ms > 600_000 {
            return Err(invalid(
                format!("{at}.breaker_open_ms"),
                "must be between 1 and 600000",
            ));
        }
        if self.max_wait_ms > 600_000 {
            return Err(invalid(
                format!("{at}.max_wait_ms"),
                "must be at most 600000",
            ));
        }
        if self.max_pause_ms > 600_000 {
            return Err(invalid(
                format!("{at}.max_pause_ms"),
                "must be at most 600000",
            ));
        }
        Ok(())
    }
}

impl RawTenant {
    fn validate(self, at: &str, base_dir: &Path, env: EnvLookup<'_>) -> Result<Tenant, Invalid> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
        if !name_ok {
            return Err(invalid(
                format!("{at}.name"),
                "1–64 characters of A–Z, a–z, 0–9, '-', '_', '.'",
            ));
        }
        let token_hash = match (&self.token, &self.token_sha256) {
            (Some(template), None) => token_from_env(template, &format!("{at}.token"), env)?,
            (None, Some(hex_hash)) => parse_sha256(hex_hash).ok_or_else(|| {
                invalid(
                    format!("{at}.token_sha256"),
                    "must be 64 hex digits (the SHA-256 of the access key)",
                )
            })?,
            (Some(_), Some(_)) => {
                return Err(invalid(
                    format!("{at}.token"),
                    "give either token or token_sha256, not both",
                ));
            }
            (None, None) => {
                return Err(invalid(
                    format!("{at}.token"),
                    "missing: give token = \"${ENV_VAR}\" or token_sha256 = \"<hex>\"",
                ));
            }
        };
        if self.mapping.as_os_str().is_empty()
            || self.mapping.extension().is_none_or(|e| e != "toml")
        {
            return Err(invalid(
                format!("{at}.mapping"),
                "must be the path of a .toml mapping file",
            ));
        }
        let base_url =
            validate_base_url(&self.base_url).map_err(|m| invalid(format!("{at}.base_url"), m))?;
        let mut credentials = BTreeMap::new();
        for (key, template) in &self.credentials {
            let field = format!("{at}.credentials.{key}");
            if !template.contains("${") {
                return Err(invalid(
                    field,
                    "credentials are not kept in clear text: write \"${ENV_VAR}\" (or \"${ENV_VAR:-default}\")",
                ));
            }
            credentials.insert(key.clone(), Secret::new(expand(template, &field, env)?));
        }
        self.limits.validate(&format!("{at}.limits"))?;
        let settings = serde_json::to_value(&self.settings)
            .map_err(|e| invalid(format!("{at}.settings"), format!("cannot be read: {e}")))?;
        Ok(Tenant {
            settings,
            name: self.name,
            token_hash,
            mapping: base_dir.join(&self.mapping),
            base_url,
            credentials,
            limits: self.limits,
            outbox: self.outbox,
        })
    }
}

fn token_from_env(template: &str, field: &str, env: EnvLookup<'_>) -> Result<TokenHash, Invalid> {
    let var = template
        .strip_prefix("${")
        .and_then(|t| t.strip_suffix('}'))
        .filter(|v| is_env_name(v))
        .ok_or_else(|| {
            invalid(
                field,
                "the access key is not kept in clear text: write token = \"${ENV_VAR}\" or use token_sha256",
            )
        })?;
    let value =
        env(var).ok_or_else(|| invalid(field, format!("environment variable {var} is not set")))?;
    if value.trim().is_empty() {
        return Err(invalid(
            field,
            format!("environment variable {var} is empty"),
        ));
    }
    Ok(TokenHash::of(&value))
}

fn parse_sha256(text: &str) -> Option<TokenHash> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut out).ok()?;
    Some(TokenHash(out))
}

fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Replaces every `${NAME}` / `${NAME:-default}` in `template`.
fn expand(template: &str, field: &str, env: EnvLookup<'_>) -> Result<String, Invalid> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| invalid(field, "unterminated ${…} reference"))?;
        let reference = &after[..end];
        let (name, default) = match reference.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (reference, None),
        };
        if !is_env_name(name) {
            return Err(invalid(
                field,
                format!("{name:?} is not an environment variable name"),
            ));
        }
        match (env(name), default) {
            (Some(value), _) => out.push_str(&value),
            (None, Some(default)) => out.push_str(default),
            (None, None) => {
                return Err(invalid(
                    field,
                    format!("environment variable {name} is not set"),
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Whether `name` can be a mapping's name (`<mappings_dir>/<name>.toml`): no path tricks.
pub fn is_mapping_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A CSP source for `frame-ancestors`: `scheme://host[:port]`, the host may start with `*.`.
fn validate_origin(text: &str) -> Result<String, String> {
    let text = text.trim_end_matches('/');
    let (scheme, rest) = text
        .split_once("://")
        .ok_or("must be an origin like \"https://example.com\"")?;
    if scheme != "http" && scheme != "https" {
        return Err("must start with http:// or https://".into());
    }
    let host = rest.strip_prefix("*.").unwrap_or(rest);
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !ok {
        return Err("must be an origin (scheme://host[:port], no path, no query)".into());
    }
    Ok(text.to_string())
}

fn validate_base_url(text: &str) -> Result<String, String> {
    let uri: http::Uri = text.parse().map_err(|e| format!("not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err("must start with http:// or https://".into()),
    }
    if uri.authority().is_none() {
        return Err("must name a host".into());
    }
    if uri.query().is_some() {
        return Err("must not have a query string".into());
    }
    Ok(text.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_gets_three_quarters_of_the_turns_unless_told() {
        let mut server = ServerConfig::default();
        assert_eq!(server.tenant_turns(), 192);
        server.max_in_flight = 1;
        assert_eq!(server.tenant_turns(), 1);
        server.max_in_flight = 100;
        server.tenant_max_in_flight = Some(10);
        assert_eq!(server.tenant_turns(), 10);
        server.tenant_max_in_flight = Some(500);
        assert_eq!(server.tenant_turns(), 100, "never more than max_in_flight");
    }

    fn env(name: &str) -> Option<String> {
        match name {
            "TOKEN_A" => Some("token-a".into()),
            "API_KEY" => Some("key-1".into()),
            _ => None,
        }
    }

    #[test]
    fn expands_references_and_defaults() {
        assert_eq!(expand("${API_KEY}", "f", &env).unwrap(), "key-1");
        assert_eq!(
            expand("Basic ${API_KEY}:x", "f", &env).unwrap(),
            "Basic key-1:x"
        );
        assert_eq!(expand("${NOPE:-dflt}", "f", &env).unwrap(), "dflt");
        assert!(
            expand("${NOPE}", "f", &env)
                .unwrap_err()
                .1
                .contains("NOPE is not set")
        );
        assert!(
            expand("${API_KEY", "f", &env)
                .unwrap_err()
                .1
                .contains("unterminated")
        );
        assert!(expand("${1X}", "f", &env).is_err());
    }

    #[test]
    fn redacted_urls_hide_the_password() {
        assert_eq!(
            redact_url("postgres://u:p%40ss@h:5432/db?sslmode=disable"),
            "postgres://u:****@h:5432/db?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact_url("postgresql://h"), "postgresql://h");
        assert_eq!(
            redact_url("postgres://h/db?user=u&password=p"),
            "postgres://h/db?****"
        );
        assert_eq!(redact_url("host=h password=p"), "****");
    }

    #[test]
    fn token_hash_is_sha256_and_debug_is_masked() {
        let h = TokenHash::of("abc");
        assert_eq!(
            hex::encode(h.0),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(format!("{h:?}"), "TokenHash(****)");
    }

    #[test]
    fn tenant_debug_never_shows_credentials() {
        let text = r#"
            [[tenants]]
            name = "a"
            token = "${TOKEN_A}"
            mapping = "mappings/maxma.toml"
            base_url = "http://127.0.0.1:1/"
            credentials = { api_key = "${API_KEY}" }
        "#;
        let config = Config::parse(text, "t.toml", Path::new("/etc/lb"), &env).unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("key-1"), "{printed}");
        assert!(!printed.contains("token-a"), "{printed}");
        let t = &config.tenants[0];
        assert_eq!(t.base_url, "http://127.0.0.1:1");
        assert_eq!(t.mapping, Path::new("/etc/lb/mappings/maxma.toml"));
        assert_eq!(t.credentials["api_key"].expose(), "key-1");
        assert_eq!(t.token_hash, TokenHash::of("token-a"));
    }
}
