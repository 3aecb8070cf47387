//! An emulator of MoySklad's Vendor API 1.0, both directions, for tests and a local demo.
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

mod token;

use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use self::token::LifecycleClaims;
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

fn errors(status: StatusCode, code: i64, message: &str) -> (StatusCode, Value) {
    (
        status,
        json!({"errors": [{"error": message, "code": code}]}),
    )
}

fn check_call(shared: &Shared, headers: &HeaderMap) -> Result<(), (StatusCode, Value)> {
    let gzip = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    if !gzip {
        return Err(errors(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            415,
            "Accept-Encoding: gzip is mandatory",
        ));
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let unauthorized = |why: &str| errors(StatusCode::UNAUTHORIZED, 1056, why);
    let token = token::bearer(value).map_err(|e| unauthorized(&e.to_string()))?;
    let claims = token::verify_app_token(token, &shared.secret, chrono::Utc::now().timestamp())
        .map_err(|e| unauthorized(&e.to_string()))?;
    if claims.sub != shared.app_uid {
        return Err(unauthorized("sub is not the appUid"));
    }
    if !shared.lock().seen_jti.insert(claims.jti) {
        return Err(unauthorized("jti replayed"));
    }
    Ok(())
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if let Some(what) = path.strip_prefix("/sandbox/") {
        return demo(shared, &method, what, req.uri().query().unwrap_or(""));
    }
    let (status, body) = match check_call(shared, req.headers()) {
        Err(answer) => answer,
        Ok(()) => {
            let bytes = req
                .into_body()
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            route(shared, &method, &path, &bytes)
        }
    };
    shared
        .lock()
        .calls
        .push((method.to_string(), path, status.as_u16()));
    // Answers gzip-compressed, as MoySklad does for clients that must accept it.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = encoder.write_all(body.to_string().as_bytes());
    let mut response = Response::new(Full::new(Bytes::from(encoder.finish().unwrap_or_default())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response.headers_mut().insert(
        header::CONTENT_ENCODING,
        http::HeaderValue::from_static("gzip"),
    );
    response
}

fn route(shared: &Shared, method: &Method, path: &str, body: &[u8]) -> (StatusCode, Value) {
    let path = path.strip_prefix("/api/vendor/1.0").unwrap_or(path);
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method, parts.as_slice()) {
        (&Method::POST, ["context", key]) => context(shared, key),
        (m, ["apps", app_id, account_id, what]) => {
            if *app_id != shared.app_id {
                return errors(StatusCode::NOT_FOUND, 2004, "no such app");
            }
            let body: Value = if body.is_empty() {
                Value::Null
            } else {
                match serde_json::from_slice(body) {
                    Ok(v) => v,
                    Err(_) => return errors(StatusCode::BAD_REQUEST, 2000, "body is not JSON"),
                }
            };
            let mut state = shared.lock();
            if state.refuse_loyalty && *what == "loyalty" {
                return errors(
                    StatusCode::BAD_REQUEST,
                    2006,
                    "the app's descriptor declares no <loyaltyApi/>",
                );
            }
            let Some(account) = state
                .accounts
                .get_mut(*account_id)
                .filter(|a| a.status.is_some())
            else {
                return errors(
                    StatusCode::NOT_FOUND,
                    2004,
                    "the app is not installed on this account",
                );
            };
            app_call(account, m, what, body)
        }
        _ => errors(StatusCode::NOT_FOUND, 404, "unknown Vendor API path"),
    }
}

fn app_call(
    account: &mut SandboxAccount,
    method: &Method,
    what: &str,
    body: Value,
) -> (StatusCode, Value) {
    let status = account.status.clone().unwrap_or_default();
    match (method, what) {
        (&Method::PUT | &Method::PATCH, "loyalty") => {
            if status != "SettingsRequired" && status != "Activated" {
                return errors(
                    StatusCode::BAD_REQUEST,
                    2007,
                    "the app is not in SettingsRequired or Activated",
                );
            }
            let mut settings = if method == Method::PATCH {
                match account.loyalty.clone() {
                    Some(v) => v,
                    None => return errors(StatusCode::NOT_FOUND, 2005, "no loyalty settings yet"),
                }
            } else {
                json!({})
            };
            let Some(fields) = body.as_object() else {
                return errors(StatusCode::BAD_REQUEST, 2000, "body must be an object");
            };
            for (k, v) in fields {
                let ok = match k.as_str() {
                    "url" | "token" => v.as_str().is_some_and(|s| !s.is_empty()),
                    "externalSearch" => v.is_boolean(),
                    _ => false,
                };
                if !ok {
                    return errors(StatusCode::BAD_REQUEST, 2000, &format!("bad field {k}"));
                }
                settings[k] = v.clone();
            }
            if ["url", "token", "externalSearch"]
                .iter()
                .any(|k| settings.get(k).is_none())
            {
                return errors(
                    StatusCode::BAD_REQUEST,
                    2000,
                    "url, token and externalSearch are required",
                );
            }
            account.loyalty = Some(settings.clone());
            (StatusCode::OK, settings)
        }
        (&Method::GET, "status") => (StatusCode::OK, json!({"status": status})),
        (&Method::PUT, "status") => match body["status"].as_str() {
            Some(s @ ("Activated" | "SettingsRequired" | "Activating")) => {
                account.status = Some(s.to_owned());
                (StatusCode::OK, json!({"status": s}))
            }
            _ => errors(StatusCode::BAD_REQUEST, 2000, "unknown status"),
        },
        _ => errors(StatusCode::METHOD_NOT_ALLOWED, 405, "method not allowed"),
    }
}

/// The sandbox's own endpoints (tests, demo): mint a context key, frame the settings page.
fn demo(shared: &Shared, method: &Method, what: &str, query: &str) -> Response<Full<Bytes>> {
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let account_id = params.get("accountId").cloned().unwrap_or_default();
    let admin = params.get("admin").is_none_or(|a| a != "false");
    let locale = params
        .get("userLocale")
        .cloned()
        .unwrap_or_else(|| "ru_RU".into());
    let reply = |status: StatusCode, content_type: &'static str, body: String| {
        let mut response = Response::new(Full::new(Bytes::from(body)));
        *response.status_mut() = status;
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        response
    };
    if account_id.is_empty() {
        let body = json!({"errors": [{"error": "accountId is required", "code": 400}]});
        return reply(
            StatusCode::BAD_REQUEST,
            "application/json",
            body.to_string(),
        );
    }
    let default_name = if admin {
        "Sandbox Admin"
    } else {
        "Sandbox Cashier"
    };
    let name = params.get("name").map_or(default_name, String::as_str);
    match (method, what) {
        (&Method::POST, "context") => {
            let key = shared.issue_context(&account_id, admin, name);
            let url = shared.settings_url(&key, &locale);
            let body = json!({"contextKey": key, "url": url});
            reply(StatusCode::OK, "application/json", body.to_string())
        }
        (&Method::GET, "frame") => {
            let key = shared.issue_context(&account_id, admin, name);
            let Some(url) = shared.settings_url(&key, &locale) else {
                return reply(
                    StatusCode::NOT_FOUND,
                    "text/plain; charset=utf-8",
                    "the sandbox does not know the bridge's settings page (--bridge)".into(),
                );
            };
            // The URL is ours (escaped for the attribute anyway).
            let src = escape_html(&url);
            let body = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>MoySklad sandbox</title></head>\
                 <body style=\"margin:0;font-family:sans-serif;background:#eef1f4\">\
                 <div style=\"padding:8px 16px;background:#1e3a5f;color:#fff\">MoySklad sandbox · app settings</div>\
                 <iframe id=\"app\" src=\"{src}\" style=\"border:0;width:100%;height:calc(100vh - 40px)\"></iframe>\
                 </body></html>"
            );
            reply(StatusCode::OK, "text/html; charset=utf-8", body)
        }
        _ => reply(
            StatusCode::NOT_FOUND,
            "application/json",
            json!({"errors": [{"error": "unknown sandbox path", "code": 404}]}).to_string(),
        ),
    }
}

fn context(shared: &Shared, key: &str) -> (StatusCode, Value) {
    let mut state = shared.lock();
    // A key is exchanged once.
    match state.contexts.remove(key) {
        Some(issued) if issued.until > Instant::now() => {
            let permissions = if issued.admin {
                json!({"admin": {"view": "ALL"}})
            } else {
                json!({"admin": {"view": "NO"}})
            };
            (
                StatusCode::OK,
                json!({
                    "id": uuid::Uuid::new_v4().to_string(),
                    "accountId": issued.account_id,
                    "uid": if issued.admin { "admin@sandbox" } else { "cashier@sandbox" },
                    "name": issued.employee,
                    "permissions": permissions,
                }),
            )
        }
        _ => errors(
            StatusCode::NOT_FOUND,
            1017,
            "context key unknown or expired",
        ),
    }
}

/// `text` safe inside HTML text and quoted attributes.
fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Controls other than tab and newline have no business in a page.
            c if c.is_control() && c != '\n' && c != '\t' => {
                let _ = write!(out, "&#{};", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// reqwest is built without a default TLS crypto provider (the bridge's choice: ring builds
/// far faster than aws-lc), and panics on building a client without one, even for plain http.
/// Installing twice is harmless: the second attempt is refused and ignored.
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<a href=\"x\">'&'</a>\u{1}\n"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;&#1;\n"
        );
    }
}
