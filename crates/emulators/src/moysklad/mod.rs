//! An emulator of MoySklad's Vendor API 1.0, both directions, for tests and a local demo (the
//! repository's `docs/moysklad-app.md` describes the app side and the demo).
//!
//! As MoySklad, it signs and sends the app lifecycle calls to a bridge ([`MoyskladSandbox::install`],
//! `resume`, `suspend`, `uninstall`, or any body with [`MoyskladSandbox::lifecycle`]). As the
//! Vendor API, it serves `PUT|PATCH /apps/{appId}/{accountId}/loyalty`,
//! `GET|PUT /apps/{appId}/{accountId}/status` and `POST /context/{contextKey}` (keys it issues
//! with [`MoyskladSandbox::issue_context`], valid 5 minutes), under `/api/vendor/1.0` or at the
//! root. Every call must carry a fresh HS256 JWT signed with the app's secret (`sub` = appUid,
//! a `jti` not seen before) → else 401, and `Accept-Encoding: gzip` → else 415. It records the
//! loyalty settings and statuses it receives.
//!
//! For tests and a local demo (not part of MoySklad's API, no JWT): `POST /sandbox/context?
//! accountId=…&admin=true|false[&name=…]` mints a context key (`{"contextKey", "url"}`, the url
//! being the settings page's when the sandbox knows it, see [`MoyskladSandbox::with_settings_page`]),
//! and `GET /sandbox/frame?accountId=…&admin=…&userLocale=…` is a page that frames the bridge's
//! settings page with a fresh key, as MoySklad's UI does.

mod demo;
mod token;
mod vendor_api;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use http::{Method, header};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use self::token::LifecycleClaims;
use self::vendor_api::handle;
use crate::harness::{self, Locked};

const CONTEXT_TTL: Duration = Duration::from_secs(300);

/// What the sandbox knows of one account.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SandboxAccount {
    /// `SettingsRequired`, `Activated`, … as the app answered or set it; `None` uninstalled.
    pub status: Option<String>,
    /// The last loyalty settings received (`{url, token, externalSearch}`).
    pub loyalty: Option<Value>,
}

/// An issued context key: who opened the page.
struct IssuedContext {
    account_id: String,
    admin: bool,
    employee: String,
    until: Instant,
}

#[derive(Default)]
struct State {
    accounts: HashMap<String, SandboxAccount>,
    contexts: HashMap<String, IssuedContext>,
    seen_jti: HashSet<String>,
    /// (method, path, status) of every Vendor API call received.
    calls: Vec<(String, String, u16)>,
    /// Answer `PUT|PATCH …/loyalty` with 400 code 2006 (the app's descriptor declares no
    /// `<loyaltyApi/>`), as MoySklad does for a misconfigured app.
    refuse_loyalty: bool,
}

struct Shared {
    app_id: String,
    app_uid: String,
    secret: String,
    /// The bridge's settings page URL (`public_base_url` + `settings_path`), when known.
    settings_page: Locked<Option<String>>,
    state: Locked<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock()
    }

    fn issue_context(&self, account_id: &str, admin: bool, employee: &str) -> String {
        let key = uuid::Uuid::new_v4().simple().to_string();
        self.lock().contexts.insert(
            key.clone(),
            IssuedContext {
                account_id: account_id.to_owned(),
                admin,
                employee: employee.to_owned(),
                until: Instant::now() + CONTEXT_TTL,
            },
        );
        key
    }

    fn settings_url(&self, context_key: &str, user_locale: &str) -> Option<String> {
        let page = self.settings_page.lock().clone()?;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("contextKey", context_key)
            .append_pair("appUid", &self.app_uid)
            .append_pair("appId", &self.app_id)
            .append_pair("userLocale", user_locale)
            .finish();
        Some(format!("{page}?{query}"))
    }
}

/// The emulator; clones share one state.
#[derive(Clone)]
pub struct MoyskladSandbox {
    shared: Arc<Shared>,
    client: reqwest::Client,
}

impl std::fmt::Debug for MoyskladSandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MoyskladSandbox")
            .field("app_id", &self.shared.app_id)
            .finish_non_exhaustive()
    }
}

impl MoyskladSandbox {
    pub fn new(
        app_id: impl Into<String>,
        app_uid: impl Into<String>,
        secret: impl Into<String>,
    ) -> Self {
        install_crypto();
        MoyskladSandbox {
            shared: Arc::new(Shared {
                app_id: app_id.into(),
                app_uid: app_uid.into(),
                secret: secret.into(),
                settings_page: Locked::new(None),
                state: Locked::new(State::default()),
            }),
            client: reqwest::Client::new(),
        }
    }

    /// A token as MoySklad signs lifecycle calls: HS256, `iat`, `exp` (60 s), a fresh `jti`.
    pub fn lifecycle_token(&self) -> String {
        let now = chrono::Utc::now().timestamp();
        token::sign(
            &LifecycleClaims {
                iat: now,
                exp: now + 60,
                jti: uuid::Uuid::new_v4().to_string(),
            },
            &self.shared.secret,
        )
    }

    /// The lifecycle URL of `account_id` on a bridge whose `public_base_url` is `bridge`.
    pub fn lifecycle_url(&self, bridge: &str, account_id: &str) -> String {
        format!(
            "{}/api/moysklad/vendor/1.0/apps/{}/{account_id}",
            bridge.trim_end_matches('/'),
            self.shared.app_id
        )
    }

    /// Sends one lifecycle call with `token` (a fresh one when `None`) and a request id;
    /// returns the status and the body (`Value::Null` when empty or not JSON).
    pub async fn lifecycle_with(
        &self,
        method: Method,
        bridge: &str,
        account_id: &str,
        body: &Value,
        token: Option<&str>,
        request_id: &str,
    ) -> (u16, Value) {
        let token = token.map_or_else(|| self.lifecycle_token(), str::to_owned);
        let response = self
            .client
            .request(method, self.lifecycle_url(bridge, account_id))
            .bearer_auth(token)
            .header("X-Lognex-RequestId", request_id)
            .header(header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        match response {
            Ok(r) => {
                let status = r.status().as_u16();
                let bytes = r.bytes().await.unwrap_or_default();
                let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if (200..300).contains(&status) {
                    self.after_lifecycle(account_id, body, &value);
                }
                (status, value)
            }
            Err(_) => (0, Value::Null),
        }
    }

    /// Sends one lifecycle call with a fresh token and request id.
    pub async fn lifecycle(
        &self,
        method: Method,
        bridge: &str,
        account_id: &str,
        body: &Value,
    ) -> (u16, Value) {
        let request_id = uuid::Uuid::new_v4().to_string();
        self.lifecycle_with(method, bridge, account_id, body, None, &request_id)
            .await
    }

    /// The body MoySklad sends for `cause`.
    pub fn lifecycle_body(&self, cause: &str, access_token: Option<&str>) -> Value {
        let mut body = json!({
            "appUid": self.shared.app_uid,
            "accountName": "sandbox-account",
            "cause": cause,
        });
        if let Some(t) = access_token {
            body["access"] = json!([{"resource": "https://api.moysklad.ru/api/remap/1.2", "scope": ["admin"], "access_token": t}]);
        }
        body
    }

    fn after_lifecycle(&self, account_id: &str, body: &Value, answer: &Value) {
        let mut state = self.shared.lock();
        let account = state.accounts.entry(account_id.to_owned()).or_default();
        match body["cause"].as_str() {
            Some("Uninstall") => account.status = None,
            Some("Suspend") => account.status = Some("Suspended".into()),
            _ => account.status = answer["status"].as_str().map(str::to_owned),
        }
    }

    pub async fn install(
        &self,
        bridge: &str,
        account_id: &str,
        access_token: &str,
    ) -> (u16, Value) {
        let body = self.lifecycle_body("Install", Some(access_token));
        self.lifecycle(Method::PUT, bridge, account_id, &body).await
    }

    pub async fn resume(&self, bridge: &str, account_id: &str) -> (u16, Value) {
        let body = self.lifecycle_body("Resume", None);
        self.lifecycle(Method::PUT, bridge, account_id, &body).await
    }

    pub async fn suspend(&self, bridge: &str, account_id: &str) -> u16 {
        let body = self.lifecycle_body("Suspend", None);
        self.lifecycle(Method::DELETE, bridge, account_id, &body)
            .await
            .0
    }

    pub async fn uninstall(&self, bridge: &str, account_id: &str) -> u16 {
        let body = self.lifecycle_body("Uninstall", None);
        self.lifecycle(Method::DELETE, bridge, account_id, &body)
            .await
            .0
    }

    /// A context key as MoySklad puts in the settings page's URL (valid 5 minutes, once).
    pub fn issue_context(&self, account_id: &str, admin: bool) -> String {
        let employee = if admin {
            "Sandbox Admin"
        } else {
            "Sandbox Cashier"
        };
        self.issue_context_as(account_id, admin, employee)
    }

    /// [`MoyskladSandbox::issue_context`] for an employee with this name.
    pub fn issue_context_as(&self, account_id: &str, admin: bool, employee: &str) -> String {
        self.shared.issue_context(account_id, admin, employee)
    }

    /// Tells the sandbox where the bridge's settings page is (`public_base_url` +
    /// `settings_path`), for [`MoyskladSandbox::settings_url`] and `/sandbox/frame`.
    pub fn with_settings_page(self, url: impl Into<String>) -> Self {
        *self.shared.settings_page.lock() = Some(url.into());
        self
    }

    /// The URL MoySklad opens in its iframe: the settings page with `contextKey`, `appUid`,
    /// `appId` and `userLocale` (`None` until [`MoyskladSandbox::with_settings_page`]).
    pub fn settings_url(&self, context_key: &str, user_locale: &str) -> Option<String> {
        self.shared.settings_url(context_key, user_locale)
    }

    /// From now on, refuse (`true`) or accept loyalty settings (see `State::refuse_loyalty`).
    pub fn refuse_loyalty(&self, refuse: bool) {
        self.shared.lock().refuse_loyalty = refuse;
    }

    pub fn account(&self, account_id: &str) -> Option<SandboxAccount> {
        self.shared.lock().accounts.get(account_id).cloned()
    }

    /// (method, path, status) of the Vendor API calls received so far.
    pub fn calls(&self) -> Vec<(String, String, u16)> {
        self.shared.lock().calls.clone()
    }

    /// Serves the Vendor API until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> std::io::Result<()> {
        let shared = self.shared;
        let handler = move |req| {
            let shared = shared.clone();
            async move { Ok(handle(&shared, req).await) }
        };
        harness::serve(listener, "moysklad-sandbox", handler, shutdown).await
    }
}

/// reqwest is built without a default TLS crypto provider (the bridge's choice: ring builds
/// far faster than aws-lc), and panics on building a client without one, even for plain http.
/// Installing twice is harmless: the second attempt is refused and ignored.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
