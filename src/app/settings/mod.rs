//! The settings page MoySklad shows in an iframe: an account's admin picks the loyalty vendor,
//! gives its credentials, checks them live, chooses where customers are searched, and connects.
//!
//! - `GET {page}?contextKey=…&appUid=…&appId=…&userLocale=…`: MoySklad opens the page. A key not
//!   shaped like MoySklad's ([`is_context_key`]) is refused, then the exchange must fit the
//!   page's rate limits ([`limits`]: per client address and in total); only then is MoySklad
//!   asked (`POST /context/{key}`) for the employee: their account and whether they are an admin
//!   (`permissions.admin.view == "ALL"`). A key MoySklad accepted is claimed once in the store
//!   (MoySklad accepts a key once; the claim makes that hold across our instances too), so a
//!   refused or made-up key writes nothing. A session starts ([`session`]: id and CSRF token in
//!   hidden form fields, no cookie) and the page is rendered.
//! - `POST {page}` (form): `action=check` tries the credentials by a live vendor call
//!   ([`probe`]); `action=save` checks them the same way and, if the vendor accepts them, runs
//!   [`AppContext::connect`] (the LoyaltyAPI token stored first, then `PUT …/loyalty` and
//!   `PUT …/status Activated`) and shows MoySklad's answer. Posts must carry a live session, its
//!   CSRF token, and no foreign `Origin`; only admins' posts are accepted. Each session has a
//!   small allowance of posts ([`limits`]), and a check waits for the account's vendor rate
//!   limiter like the account's own calls.
//! - `GET {page}/assets/settings.{css,js}`: the page's only style and script.
//!
//! Every answer carries a Content-Security-Policy that lets only MoySklad's origins (plus
//! `moysklad_app.frame_ancestors`) frame the page and allows no inline script or style.
//! Refusals are [`PageError`]s, rendered by [`page_error::respond_page`].

pub mod catalog;
pub mod html;
pub mod i18n;
pub mod limits;
pub mod page;
pub mod page_error;
pub mod probe;
pub mod session;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Response, header};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::guards::AppGuards;
use super::recent::{FailureSource, RecentFailures};
use super::vendor::VendorError;
use super::{AppContext, ConnectError, ConnectRequest};
use crate::mapping::registry::Mappings;
use crate::secret::Secret;
use crate::store::{AppTenant, now_ms};
use crate::upstream::Upstream;
use catalog::VendorChoice;
use i18n::Lang;
use limits::PageLimits;
use page::{FormState, Notice, Paths, View};
use page_error::{PageError, respond_page};
use probe::{CheckOutcome, CheckTarget};
use session::{Session, Sessions};

/// MoySklad's origins, always allowed to frame the page.
pub const MOYSKLAD_FRAME_ANCESTORS: &str = "https://online.moysklad.ru https://*.moysklad.ru";
/// Largest form accepted (a handful of fields).
const MAX_FORM_BYTES: usize = 16 * 1024;
/// Store scope of claimed context keys (each is accepted once).
const CONTEXT_SCOPE: &str = "moysklad-context";
/// How long a claimed context key is remembered: longer than MoySklad's 5 minutes.
const CONTEXT_CLAIM_MS: i64 = 10 * 60 * 1000;
/// Shortest and longest context key accepted (see [`is_context_key`]).
const CONTEXT_KEY_CHARS: std::ops::RangeInclusive<usize> = 32..=128;
/// Longest value accepted for one credential.
const MAX_CREDENTIAL_CHARS: usize = 1024;

const SCRIPT: &str = include_str!("assets/settings.js");
const STYLE: &str = include_str!("assets/settings.css");

/// What the server needs back from a settings request.
pub struct Answer {
    pub response: Response<Bytes>,
    /// An account's connection was stored: the token map must be re-read now.
    pub connected: bool,
}

pub struct SettingsPage {
    app: Arc<AppContext>,
    mappings: Arc<Mappings>,
    upstream: Arc<dyn Upstream>,
    pub recent: Arc<RecentFailures>,
    sessions: Sessions,
    /// App tenants' vendor rate limiters, shared with their LoyaltyAPI calls.
    guards: Arc<AppGuards>,
    limits: PageLimits,
    /// The page's path as requests carry it (`public_base_url`'s path + `settings_path`).
    page_path: String,
    style_path: String,
    script_path: String,
    /// `scheme://host[:port]` of `public_base_url`: the only `Origin` a form post may carry.
    own_origin: String,
    csp: HeaderValue,
}

impl std::fmt::Debug for SettingsPage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SettingsPage")
            .field("page_path", &self.page_path)
            .finish_non_exhaustive()
    }
}

/// A form as posted: the last value of each name.
type Form = HashMap<String, String>;

impl SettingsPage {
    pub fn new(
        app: Arc<AppContext>,
        mappings: Arc<Mappings>,
        upstream: Arc<dyn Upstream>,
        recent: Arc<RecentFailures>,
        guards: Arc<AppGuards>,
    ) -> Result<SettingsPage, String> {
        let config = &app.config;
        let base: http::Uri = config
            .public_base_url
            .parse()
            .map_err(|e| format!("moysklad_app.public_base_url: {e}"))?;
        let own_origin =
            origin_of(&base).ok_or("moysklad_app.public_base_url: not an absolute URL")?;
        let page_path = format!(
            "{}{}",
            base.path().trim_end_matches('/'),
            config.settings_path
        );
        let version = env!("CARGO_PKG_VERSION");
        let mut ancestors = MOYSKLAD_FRAME_ANCESTORS.to_owned();
        for origin in &config.frame_ancestors {
            ancestors.push(' ');
            ancestors.push_str(origin);
        }
        let csp = format!(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
        );
        Ok(SettingsPage {
            sessions: Sessions::new(app.store.clone(), config.session_idle),
            style_path: format!("{page_path}/assets/settings.css?v={version}"),
            script_path: format!("{page_path}/assets/settings.js?v={version}"),
            csp: HeaderValue::from_str(&csp)
                .map_err(|_| "moysklad_app.frame_ancestors: not usable in a header".to_string())?,
            page_path,
            own_origin,
            app,
            mappings,
            upstream,
            recent,
            guards,
            limits: PageLimits::default(),
        })
    }

    /// Whether `path` is the page or one of its assets.
    pub fn serves(&self, path: &str) -> bool {
        path == self.page_path
            || path
                .strip_prefix(&self.page_path)
                .is_some_and(|rest| rest.starts_with("/assets/"))
    }

    fn stylesheet(&self) -> &str {
        &self.style_path
    }

    /// The largest form the page reads; the server reads the body within it.
    pub const MAX_FORM_BYTES: usize = MAX_FORM_BYTES;

    /// Answers one request for the page or its assets (refusals rendered as HTML pages). The
    /// server has read the body (`body`, or why it could not) and says who the client is (the
    /// TCP peer; `None` puts every request in one address bucket: stricter, never looser).
    pub async fn handle(
        &self,
        req: http::request::Parts,
        body: Result<Bytes, crate::error::Error>,
        client: Option<std::net::IpAddr>,
    ) -> Answer {
        let path = req.uri.path().to_owned();
        let method = req.method.clone();
        let (result, lang) = if path == self.page_path {
            match method {
                Method::GET => {
                    let query = parse_pairs(req.uri.query().unwrap_or(""));
                    let lang = Lang::from_locale(query.get("userLocale").map(String::as_str));
                    (self.open(&query, client, lang).await, lang)
                }
                Method::POST => self.post(&req.headers, body).await,
                _ => (
                    Err(PageError::MethodNotAllowed {
                        allowed: &[Method::GET, Method::POST],
                    }),
                    Lang::default(),
                ),
            }
        } else {
            let asset = match (&method, path.rsplit('/').next()) {
                (&Method::GET, Some("settings.js")) => {
                    Ok(asset("text/javascript; charset=utf-8", SCRIPT))
                }
                (&Method::GET, Some("settings.css")) => Ok(asset("text/css; charset=utf-8", STYLE)),
                (&Method::GET, _) => Err(PageError::NotFound),
                _ => Err(PageError::MethodNotAllowed {
                    allowed: &[Method::GET],
                }),
            };
            (asset.map(|r| (r, false)), Lang::default())
        };
        let (mut response, connected) = match result {
            Ok(answer) => answer,
            Err(err) => {
                tracing::info!(path = %path, status = err.status().as_u16(), reason = %err, "settings page refused");
                (respond_page(&err, lang, self.stylesheet()), false)
            }
        };
        self.secure(response.headers_mut());
        Answer {
            response,
            connected,
        }
    }

    /// Headers every answer of the page carries.
    fn secure(&self, headers: &mut HeaderMap) {
        headers.insert(header::CONTENT_SECURITY_POLICY, self.csp.clone());
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        // `same-origin`, not `no-referrer`: with `no-referrer` browsers send `Origin: null` on
        // the page's own form posts, which the Origin check must refuse. The page links
        // nowhere else.
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
        headers
            .entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }

    /// `GET {page}?contextKey=…`: the context key exchanged once, a session started.
    async fn open(
        &self,
        query: &HashMap<String, String>,
        client: Option<std::net::IpAddr>,
        lang: Lang,
    ) -> Result<(Response<Bytes>, bool), PageError> {
        let config = &self.app.config;
        for (name, ours) in [("appUid", &config.app_uid), ("appId", &config.app_id)] {
            if query.get(name).is_some_and(|given| given != ours) {
                return Err(PageError::OtherApp);
            }
        }
        let key = query
            .get("contextKey")
            .filter(|k| !k.is_empty())
            .ok_or(PageError::NoContext)?;
        if !is_context_key(key) {
            return Err(PageError::BadContext);
        }
        // Each exchange is a signed call on the app's Vendor API quota, and anyone can make
        // up a key: the limits come before MoySklad is asked or anything is stored.
        if let Err(refused) = self.limits.context(client) {
            let retry_after_secs = limits::retry_secs(refused.retry_after);
            tracing::warn!(client = ?client, retry_after_secs, "settings page: too many context exchanges");
            return Err(PageError::TooManyOpens { retry_after_secs });
        }
        let employee = match self.app.vendor.context(key).await {
            Ok(employee) => employee,
            Err(VendorError::Refused {
                status,
                code,
                message,
            }) => {
                tracing::warn!(status, code = ?code, message = %message, "MoySklad refused a context key");
                return Err(PageError::ContextRefused);
            }
            Err(VendorError::Unreachable(detail)) => {
                return Err(PageError::MoyskladUnreachable { detail });
            }
        };
        let account_id = employee["accountId"]
            .as_str()
            .filter(|id| is_account_id(id))
            .ok_or_else(|| {
                tracing::warn!("MoySklad's context has no usable accountId");
                PageError::ContextRefused
            })?;
        // Claimed only once MoySklad accepted the key (a made-up one writes nothing), by its
        // hash: should MoySklad ever answer a key twice (or two instances race), one session.
        let now = now_ms();
        let key_hash = hex::encode(Sha256::digest(key.as_bytes()));
        if !self
            .app
            .store
            .claim_once(CONTEXT_SCOPE, &key_hash, now, now + CONTEXT_CLAIM_MS)
            .await?
        {
            return Err(PageError::ContextRefused);
        }
        let admin = employee["permissions"]["admin"]["view"].as_str() == Some("ALL");
        let name: String = employee["name"]
            .as_str()
            .or(employee["uid"].as_str())
            .unwrap_or("")
            .chars()
            .take(200)
            .collect();
        let (session_id, session) = self
            .sessions
            .start(account_id, &name, admin, lang.code(), now)
            .await?;
        tracing::info!(account_id, admin, "settings page opened");
        let tenant = self.app.store.app_tenant(account_id).await?;
        let form = self.initial_form(tenant.as_ref());
        let html = self
            .render(&session_id, &session, tenant.as_ref(), form, None)
            .await;
        Ok((html_response(html), false))
    }

    /// `POST {page}`: an action of a live session.
    async fn post(
        &self,
        headers: &HeaderMap,
        body: Result<Bytes, crate::error::Error>,
    ) -> (Result<(Response<Bytes>, bool), PageError>, Lang) {
        let is_form = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.split(';').next().is_some_and(|t| {
                    t.trim()
                        .eq_ignore_ascii_case("application/x-www-form-urlencoded")
                })
            });
        if !is_form {
            return (Err(PageError::NotAForm), Lang::default());
        }
        let body = match body {
            Ok(body) => body,
            Err(crate::error::Error::PayloadTooLarge { limit }) => {
                return (Err(PageError::TooLarge { limit }), Lang::default());
            }
            Err(e) => {
                return (
                    Err(PageError::BadForm {
                        detail: e.to_string(),
                    }),
                    Lang::default(),
                );
            }
        };
        let form = parse_pairs(&String::from_utf8_lossy(&body));
        // The page says its language in a hidden field, so even a refusal before the session
        // is known speaks it.
        let lang = Lang::from_locale(form.get("lang").map(String::as_str));
        (self.act(headers, &form).await, lang)
    }

    async fn act(
        &self,
        headers: &HeaderMap,
        form: &Form,
    ) -> Result<(Response<Bytes>, bool), PageError> {
        // A form posted from any other page (a foreign site, a sandboxed frame: "null").
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            if origin != self.own_origin {
                return Err(PageError::ForeignOrigin {
                    origin: origin.chars().take(100).collect(),
                });
            }
        }
        let now = now_ms();
        let session_id = field(form, "session");
        let session = self
            .sessions
            .find(session_id, now)
            .await?
            .ok_or(PageError::SessionExpired)?;
        if !session.csrf_matches(field(form, "csrf")) {
            tracing::warn!(account_id = %session.account_id, "settings post with a wrong CSRF token");
            return Err(PageError::Csrf);
        }
        // Before anything is written (the session is not even extended): a Check or a Save
        // calls the vendor with what was typed, so a session may not guess keys at speed.
        let session_key: [u8; 32] = Sha256::digest(session_id.as_bytes()).into();
        if let Err(refused) = self.limits.post(&session_key) {
            let retry_after_secs = limits::retry_secs(refused.retry_after);
            tracing::warn!(account_id = %session.account_id, retry_after_secs, "settings page: too many posts in one session");
            return Err(PageError::TooManyPosts { retry_after_secs });
        }
        self.sessions.touch(session_id, &session, now).await?;
        if !session.admin {
            tracing::warn!(account_id = %session.account_id, "settings post by a non-admin refused");
            return Err(PageError::NotAdmin);
        }
        let account_id = session.account_id.as_str();
        let tenant = self.app.store.app_tenant(account_id).await?;
        let choices = self.choices().await;
        let state = FormState {
            mapping: Some(field(form, "mapping").to_owned()).filter(|m| !m.is_empty()),
            external_search: field(form, "external_search") != "false",
            test_phone: field(form, "test_phone").trim().to_owned(),
        };
        let t = Lang::from_locale(Some(&session.lang)).texts();
        let active = tenant.as_ref().is_some_and(|t| t.state.is_active());
        let action = field(form, "action");
        if action != "check" && action != "save" {
            return Err(PageError::BadForm {
                detail: format!(
                    "unknown action {:?}",
                    action.chars().take(20).collect::<String>()
                ),
            });
        }
        let mut connected = false;
        let notice = if !active {
            Notice::error(t.cannot_change, None)
        } else {
            match self.prepare(form, &state, &choices, tenant.as_ref(), t) {
                Err(notice) => notice,
                Ok(prepared) => {
                    let outcome = self.check(account_id, &prepared, tenant.as_ref()).await;
                    match (action, outcome) {
                        ("check", CheckOutcome::Accepted { customers }) => Notice::success(
                            t.check_ok
                                .replace("{phone}", &prepared.phone)
                                .replace("{n}", &customers.to_string()),
                        ),
                        (_, CheckOutcome::Refused { title, message }) => {
                            self.recent.note(
                                account_id,
                                FailureSource::VendorCheck,
                                &format!("{title}: {message}"),
                                now_ms(),
                            );
                            let text = if action == "save" {
                                format!("{} {}: {title}", t.not_connected_yet, t.check_failed)
                            } else {
                                format!("{}: {title}", t.check_failed)
                            };
                            Notice::error(text, Some(message))
                        }
                        (_, CheckOutcome::Accepted { .. }) => {
                            let (notice, stored) =
                                self.save(account_id, prepared, tenant.as_ref(), t).await?;
                            connected = stored;
                            notice
                        }
                    }
                }
            }
        };
        // Read again: a save changed the state and MoySklad's answer.
        let tenant = if connected {
            self.app.store.app_tenant(account_id).await?
        } else {
            tenant
        };
        let html = self
            .render(session_id, &session, tenant.as_ref(), state, Some(notice))
            .await;
        Ok((html_response(html), connected))
    }

    /// The chosen vendor and the credentials to use (typed ones, else the stored ones), or the
    /// notice saying what is missing.
    fn prepare(
        &self,
        form: &Form,
        state: &FormState,
        choices: &[VendorChoice],
        tenant: Option<&AppTenant>,
        t: &i18n::Texts,
    ) -> Result<Prepared, Notice> {
        let choice = state
            .mapping
            .as_deref()
            .and_then(|m| choices.iter().find(|c| c.name == m))
            .ok_or_else(|| Notice::error(t.choose_vendor, None))?;
        let phone = if state.test_phone.is_empty() {
            page::DEFAULT_TEST_PHONE.to_owned()
        } else {
            state.test_phone.clone()
        };
        let phone_ok = phone.chars().count() <= 32
            && phone
                .chars()
                .all(|c| c.is_ascii_digit() || "+-() ".contains(c));
        if !phone_ok {
            return Err(Notice::error(t.bad_phone, None));
        }
        let stored = tenant
            .filter(|t| t.mapping.as_deref() == Some(choice.name.as_str()))
            .and_then(|t| self.app.stored_credentials(t))
            .unwrap_or_default();
        let mut credentials = BTreeMap::new();
        for name in &choice.credentials {
            let typed = field(form, &format!("cred.{}.{name}", choice.name)).trim();
            let value = if typed.is_empty() {
                stored.get(name).cloned()
            } else {
                Some(Secret::new(
                    typed.chars().take(MAX_CREDENTIAL_CHARS).collect::<String>(),
                ))
            };
            let value = value
                .ok_or_else(|| Notice::error(t.missing_credential.replace("{name}", name), None))?;
            credentials.insert(name.clone(), value);
        }
        Ok(Prepared {
            choice: choice.clone(),
            credentials,
            external_search: state.external_search,
            phone,
        })
    }

    async fn check(
        &self,
        account_id: &str,
        prepared: &Prepared,
        tenant: Option<&AppTenant>,
    ) -> CheckOutcome {
        let settings = tenant.map_or(Value::Null, |t| t.settings.clone());
        let tenant_name = format!("{}{account_id}", super::TENANT_PREFIX);
        let (limiter, _) = self.guards.of(&tenant_name, &super::app_tenant_limits());
        probe::check(
            &self.mappings,
            &self.upstream,
            CheckTarget {
                account_id,
                mapping: self.app.mapping_path(&prepared.choice.name),
                base_url: &prepared.choice.base_url,
                credentials: &prepared.credentials,
                settings: &settings,
                phone: &prepared.phone,
                limiter: Some(limiter),
            },
        )
        .await
    }

    /// Connects the account; the notice and whether a connection was stored.
    async fn save(
        &self,
        account_id: &str,
        prepared: Prepared,
        tenant: Option<&AppTenant>,
        t: &i18n::Texts,
    ) -> Result<(Notice, bool), PageError> {
        let settings = tenant
            .map(|t| t.settings.clone())
            .filter(Value::is_object)
            .unwrap_or_else(|| json!({}));
        let request = ConnectRequest {
            mapping: prepared.choice.name,
            base_url: prepared.choice.base_url,
            credentials: prepared.credentials,
            settings,
            external_search: prepared.external_search,
        };
        match self.app.connect(account_id, request).await {
            // The token went to MoySklad; it is never shown.
            Ok(_) => {
                let answer = self
                    .app
                    .store
                    .app_tenant(account_id)
                    .await?
                    .and_then(|t| t.vendor_note)
                    .unwrap_or_default();
                Ok((Notice::success(t.saved.replace("{answer}", &answer)), true))
            }
            Err(ConnectError::Vendor(e)) => {
                self.recent.note(
                    account_id,
                    FailureSource::Moysklad,
                    &e.to_string(),
                    now_ms(),
                );
                Ok((Notice::error(t.moysklad_refused, Some(e.to_string())), true))
            }
            Err(ConnectError::NotInstalled(_)) => Ok((Notice::error(t.cannot_change, None), false)),
            Err(ConnectError::Invalid { field, message }) => Ok((
                Notice::error(t.choose_vendor, Some(format!("{field}: {message}"))),
                false,
            )),
            Err(ConnectError::Store(e)) => Err(e.into()),
        }
    }

    async fn choices(&self) -> Vec<VendorChoice> {
        let dir = self.app.config.mappings_dir.clone();
        let urls = self.app.config.vendor_base_urls.clone();
        tokio::task::spawn_blocking(move || catalog::scan(&dir, &urls))
            .await
            .unwrap_or_default()
    }

    fn initial_form(&self, tenant: Option<&AppTenant>) -> FormState {
        FormState {
            mapping: tenant.and_then(|t| t.mapping.clone()),
            external_search: tenant.is_none_or(|t| t.external_search || t.mapping.is_none()),
            test_phone: page::DEFAULT_TEST_PHONE.to_owned(),
        }
    }

    async fn render(
        &self,
        session_id: &str,
        session: &Session,
        tenant: Option<&AppTenant>,
        form: FormState,
        notice: Option<Notice>,
    ) -> String {
        let choices = if session.admin {
            self.choices().await
        } else {
            Vec::new()
        };
        let stored: Vec<String> = tenant
            .and_then(|t| self.app.stored_credentials(t))
            .map(|c| c.into_keys().collect())
            .unwrap_or_default();
        let recent = self.recent.of(&session.account_id).await;
        page::render(&View {
            lang: Lang::from_locale(Some(&session.lang)),
            paths: Paths {
                page: &self.page_path,
                style: &self.style_path,
                script: &self.script_path,
            },
            session_id,
            csrf: &session.csrf,
            employee: &session.employee,
            admin: session.admin,
            account_id: &session.account_id,
            tenant,
            stored_credentials: &stored,
            choices: &choices,
            form,
            notice,
            recent: &recent,
            idle_minutes: self.sessions.idle().as_secs() / 60,
        })
    }
}

/// What a check or a save works with.
struct Prepared {
    choice: VendorChoice,
    credentials: BTreeMap<String, Secret>,
    external_search: bool,
    phone: String,
}

/// A form or query string as name → last value.
fn parse_pairs(text: &str) -> HashMap<String, String> {
    form_urlencoded::parse(text.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn field<'a>(form: &'a Form, name: &str) -> &'a str {
    form.get(name).map_or("", String::as_str)
}

/// The origin a browser sends for pages under `base`: scheme, host, and the port unless it is
/// the scheme's default (browsers leave `:443` / `:80` out).
fn origin_of(base: &http::Uri) -> Option<String> {
    let scheme = base.scheme_str()?;
    let authority = base.authority()?;
    let default_port = match scheme {
        "https" => 443,
        "http" => 80,
        _ => return None,
    };
    let host = authority.host().to_ascii_lowercase();
    Some(match authority.port_u16() {
        Some(port) if port != default_port => format!("{scheme}://{host}:{port}"),
        _ => format!("{scheme}://{host}"),
    })
}

/// Whether `key` is shaped like a MoySklad context key: 32 to 128 ASCII letters and digits.
/// MoySklad's documentation shows 64 letters and digits
/// (`6S3BQLsaSRNdEnhPCoW9lplY2LozRUOq6S3BQLsaSRNdEnhPCoW9lplY2LozRUOq`); the sandbox issues 32
/// hex digits. Anything else (punctuation, percent-escapes, a UUID with dashes) did not come
/// from MoySklad and is refused before it costs a Vendor API call.
pub fn is_context_key(key: &str) -> bool {
    CONTEXT_KEY_CHARS.contains(&key.len()) && key.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// MoySklad account ids are UUIDs; the lifecycle path accepts the same shape.
fn is_account_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn html_response(html: String) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from(html));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn asset(content_type: &'static str, text: &'static str) -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(text.as_bytes()));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The page links them with `?v=<version>`: a new release is a new URL.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origin_is_what_browsers_send() {
        let origin = |url: &str| origin_of(&url.parse().unwrap());
        assert_eq!(
            origin("https://Bridge.example.com:443/lb"),
            Some("https://bridge.example.com".into())
        );
        assert_eq!(
            origin("http://127.0.0.1:8080"),
            Some("http://127.0.0.1:8080".into())
        );
        assert_eq!(
            origin("https://b.example:8443/"),
            Some("https://b.example:8443".into())
        );
        assert_eq!(origin("/relative"), None);
    }

    #[test]
    fn context_keys_are_moysklads_shape() {
        assert!(is_context_key(
            "6S3BQLsaSRNdEnhPCoW9lplY2LozRUOq6S3BQLsaSRNdEnhPCoW9lplY2LozRUOq"
        ));
        assert!(is_context_key(&uuid::Uuid::new_v4().simple().to_string()));
        assert!(is_context_key(&"a".repeat(128)));
        assert!(!is_context_key(&"a".repeat(31)));
        assert!(!is_context_key(&"a".repeat(129)));
        assert!(!is_context_key("1f2e3d4c-0000-4000-8000-00000000a001"));
        assert!(!is_context_key(&format!("{}é", "a".repeat(40))));
        assert!(!is_context_key(&format!("{}_~.", "a".repeat(40))));
        assert!(!is_context_key(""));
    }

    #[test]
    fn account_ids_are_checked_before_use() {
        assert!(is_account_id("1f2e3d4c-0000-4000-8000-00000000a001"));
        assert!(!is_account_id(""));
        assert!(!is_account_id("../x"));
        assert!(!is_account_id(&"a".repeat(65)));
    }
}
