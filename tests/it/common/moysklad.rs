//! A MoySklad app world for the settings page tests: the MAXMA sandbox, the MoySklad Vendor API
//! sandbox (which knows the bridge's settings page) and a bridge with `[moysklad_app]`, each on
//! 127.0.0.1:0.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use emulators::maxma::MaxmaSandbox;
use emulators::moysklad::MoyskladSandbox;
use serde_json::Value;
use tokio::net::TcpListener;

use super::{ServedEmulator, TestBridge, TestBridgeBuilder, TestStore};

pub const APP_ID: &str = "4c5b1a2e-7d3f-4a9b-8c1d-2e3f4a5b6c7d";
pub const APP_UID: &str = "loyalty-bridge.test";
pub const SECRET: &str = "app-secret-key-0123456789abcdef";
pub const ENC_KEY: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";
pub const MAXMA_KEY: &str = "maxma-processing-key";
pub const ACCESS_TOKEN: &str = "ms-json-api-access-token-42";
pub const ACCOUNT_A: &str = "1f2e3d4c-0000-4000-8000-00000000a001";
pub const ACCOUNT_B: &str = "1f2e3d4c-0000-4000-8000-00000000b002";
pub const SETTINGS_PATH: &str = "/moysklad/settings";
/// The MAXMA demo customer (500 bonuses).
pub const DEMO_PHONE: &str = "+79990000001";

pub struct AppWorld {
    pub moysklad: MoyskladSandbox,
    pub maxma: MaxmaSandbox,
    pub moysklad_url: String,
    pub maxma_url: String,
    /// The bridge, whose config a test may read (to build its own `AppContext`).
    pub bridge: TestBridge,
    /// The bridge's store (a test may open a second handle on it, or a second bridge).
    pub store: TestStore,
    _emulators: [ServedEmulator; 2],
}

impl AppWorld {
    /// The world on a fresh SQLite file.
    pub async fn start() -> AppWorld {
        AppWorld::start_on(TestStore::sqlite()).await
    }

    /// The world on `store`.
    pub async fn start_on(store: TestStore) -> AppWorld {
        AppWorld::start_with(store, |bridge| bridge).await
    }

    /// The world on `store`, its bridge given what `configure` adds (tenants, `[server]` keys).
    pub async fn start_with(
        store: TestStore,
        configure: impl FnOnce(TestBridgeBuilder) -> TestBridgeBuilder,
    ) -> AppWorld {
        let maxma = MaxmaSandbox::with_demo_data(MAXMA_KEY);
        let maxma_emulator = ServedEmulator::start(maxma.clone()).await;
        let maxma_url = maxma_emulator.url().to_string();

        // MoySklad must know the settings page's URL, and the bridge MoySklad's.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bridge_url = format!("http://{}", listener.local_addr().unwrap());
        let moysklad = MoyskladSandbox::new(APP_ID, APP_UID, SECRET)
            .with_settings_page(format!("{bridge_url}{SETTINGS_PATH}"));
        let moysklad_emulator = ServedEmulator::start(moysklad.clone()).await;
        let moysklad_url = moysklad_emulator.url().to_string();

        let bridge = configure(app_bridge(
            &store,
            listener,
            &bridge_url,
            &moysklad_url,
            &maxma_url,
        ))
        .start()
        .await;
        AppWorld {
            moysklad,
            maxma,
            moysklad_url,
            maxma_url,
            bridge,
            store,
            _emulators: [maxma_emulator, moysklad_emulator],
        }
    }

    /// The bridge's SQLite file (the world must be on SQLite).
    pub fn store_path(&self) -> &Path {
        self.store.sqlite_path().expect("a SQLite store")
    }

    /// A second instance of the app on the world's store, as behind a load balancer: the same
    /// `[moysklad_app]` at its own address. MoySklad's calls still go to the first.
    pub async fn another_bridge(&self) -> TestBridge {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bridge_url = format!("http://{}", listener.local_addr().unwrap());
        app_bridge(
            &self.store,
            listener,
            &bridge_url,
            &self.moysklad_url,
            &self.maxma_url,
        )
        .start()
        .await
    }

    /// The settings page as MoySklad's iframe would open it (a fresh context key) on `bridge`.
    pub fn settings_url_on(
        &self,
        bridge: &TestBridge,
        account_id: &str,
        admin: bool,
        locale: &str,
    ) -> String {
        self.settings_url(account_id, admin, locale)
            .replacen(self.bridge.url(), bridge.url(), 1)
    }

    pub async fn install(&self, account_id: &str) {
        let (status, body) = self
            .moysklad
            .install(self.bridge.url(), account_id, ACCESS_TOKEN)
            .await;
        assert_eq!(status, 200, "{body}");
    }

    pub fn page_url(&self) -> String {
        self.bridge.url_of(SETTINGS_PATH)
    }

    /// The URL MoySklad's iframe opens for a fresh context key.
    pub fn settings_url(&self, account_id: &str, admin: bool, locale: &str) -> String {
        let key = self.moysklad.issue_context(account_id, admin);
        self.moysklad.settings_url(&key, locale).unwrap()
    }

    /// The sandbox's page that frames the settings page, as MoySklad's UI does.
    pub fn frame_url(&self, account_id: &str, admin: bool, locale: &str) -> String {
        format!(
            "{}/sandbox/frame?accountId={account_id}&admin={admin}&userLocale={locale}",
            self.moysklad_url
        )
    }

    /// The loyalty settings MoySklad received for the account (`{url, token, externalSearch}`).
    pub fn loyalty_settings(&self, account_id: &str) -> Option<Value> {
        self.moysklad.account(account_id)?.loyalty
    }

    /// `GET /counterparty?search=<demo phone>` as MoySklad would send it with `token`.
    pub async fn search(&self, token: &str) -> (u16, Value) {
        self.search_for(token, DEMO_PHONE).await
    }

    /// `GET /counterparty?search=<phone>` with `token`.
    pub async fn search_for(&self, token: &str, phone: &str) -> (u16, Value) {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("search", phone)
            .append_pair("retailStoreId", "s1")
            .finish();
        let resp = super::client()
            .get(self.bridge.url_of(&format!("/counterparty?{query}")))
            .header("Lognex-Discount-API-Auth-Token", token)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Waits until `token`'s customer search answers `want` (app tenants are re-read at once
    /// after a save and every second).
    pub async fn search_until(&self, token: &str, want: u16) -> Value {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.search(token).await;
            if status == want {
                return body;
            }
            assert!(Instant::now() < until, "still {status}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A bridge with the world's `[moysklad_app]`, served at `bridge_url` (`listener`'s address).
fn app_bridge(
    store: &TestStore,
    listener: TcpListener,
    bridge_url: &str,
    moysklad_url: &str,
    maxma_url: &str,
) -> TestBridgeBuilder {
    let mappings = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    TestBridge::builder()
        .store(store)
        .moysklad_app(format!(
            r#"app_id = "{APP_ID}"
            app_uid = "{APP_UID}"
            secret_key = "${{SECRET}}"
            public_base_url = "{bridge_url}"
            vendor_api_url = "{moysklad_url}/api/vendor/1.0"
            encryption_key = "${{ENC_KEY}}"
            mappings_dir = "{mappings}"
            frame_ancestors = ["{moysklad_url}"]
            vendor_base_urls = {{ maxma = "{maxma_url}" }}"#,
            mappings = mappings.display(),
        ))
        .env("SECRET", SECRET)
        .env("ENC_KEY", ENC_KEY)
        .listener(listener)
}

/// A page as fetched over HTTP.
pub struct Page {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub html: String,
}

impl Page {
    /// The value of the hidden (or any) input named `name`, as rendered (unescaped).
    pub fn input(&self, name: &str) -> Option<String> {
        let marker = format!("name=\"{name}\" value=\"");
        let at = self.html.find(&marker)? + marker.len();
        let end = self.html[at..].find('"')?;
        Some(
            self.html[at..at + end]
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&amp;", "&"),
        )
    }

    /// The session and CSRF fields of the page's form.
    pub fn session(&self) -> (String, String) {
        (
            self.input("session").expect("a session field"),
            self.input("csrf").expect("a csrf field"),
        )
    }

    /// Whether the page has an element with id `id`.
    pub fn has_id(&self, id: &str) -> bool {
        self.html.contains(&format!("id=\"{id}\""))
    }
}

pub async fn fetch(request: reqwest::RequestBuilder) -> Page {
    let resp = request.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let html = resp.text().await.unwrap();
    Page {
        status,
        headers,
        html,
    }
}

pub async fn get_page(url: &str) -> Page {
    fetch(super::client().get(url)).await
}

/// Posts `fields` as a form to the settings page, with `origin` as the `Origin` header.
pub async fn post_form(world: &AppWorld, fields: &[(&str, &str)], origin: Option<&str>) -> Page {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let mut request = super::client()
        .post(world.page_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    fetch(request).await
}

/// The settings form's **Check** of a MAXMA key in the session `(session, csrf)`.
pub async fn check_maxma_key(world: &AppWorld, session: &(String, String), key: &str) -> Page {
    let fields = action_fields(
        session,
        "check",
        &[("mapping", "maxma"), ("cred.maxma.api_key", key)],
    );
    post_form(world, &fields, None).await
}

/// The settings form's **Save** of MAXMA with the world's key in the session
/// `(session, csrf)` of `account_id`; the account's LoyaltyAPI token, once its calls are
/// answered.
pub async fn connect_maxma(
    world: &AppWorld,
    account_id: &str,
    session: &(String, String),
) -> String {
    let fields = action_fields(
        session,
        "save",
        &[("mapping", "maxma"), ("cred.maxma.api_key", MAXMA_KEY)],
    );
    let saved = post_form(world, &fields, None).await;
    assert!(saved.html.contains("notice success"), "{}", saved.html);
    let token = world.loyalty_settings(account_id).expect("connected")["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    world.search_until(&token, 200).await;
    token
}

/// The form fields of an action of the session `(session, csrf)`.
pub fn action_fields<'a>(
    session: &'a (String, String),
    action: &'a str,
    extra: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut fields = vec![
        ("session", session.0.as_str()),
        ("csrf", session.1.as_str()),
        ("lang", "ru"),
        ("action", action),
    ];
    fields.extend_from_slice(extra);
    fields
}

/// Query parameters of a URL.
pub fn query_of(url: &str) -> HashMap<String, String> {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}
