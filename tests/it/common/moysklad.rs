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

use super::{ServedEmulator, TestBridge, TestStore};

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
    store: TestStore,
    /// The bridge's `[moysklad_app]` keys, for another bridge on the same store.
    app_keys: String,
    _emulators: [ServedEmulator; 2],
}

impl AppWorld {
    /// The world on a fresh SQLite store.
    pub async fn start() -> AppWorld {
        AppWorld::start_on(TestStore::sqlite()).await
    }

    /// The world on `store`.
    pub async fn start_on(store: TestStore) -> AppWorld {
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

        let mappings = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
        let app_keys = format!(
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
        );
        let bridge = app_bridge(&store, &app_keys)
            .listener(listener)
            .start()
            .await;
        AppWorld {
            moysklad,
            maxma,
            moysklad_url,
            maxma_url,
            bridge,
            store,
            app_keys,
            _emulators: [maxma_emulator, moysklad_emulator],
        }
    }

    /// The bridge's SQLite store (a test may open a second handle on it).
    pub fn store_path(&self) -> &Path {
        self.store.sqlite_path().expect("a world on SQLite")
    }

    /// Another bridge with the same `[moysklad_app]` on the same store: a second instance.
    pub async fn another_bridge(&self) -> TestBridge {
        app_bridge(&self.store, &self.app_keys).start().await
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

/// A bridge on `store` with `[moysklad_app]` keys `app_keys` and their secrets.
pub fn app_bridge(store: &TestStore, app_keys: &str) -> super::TestBridgeBuilder {
    TestBridge::builder()
        .store(store)
        .moysklad_app(app_keys)
        .env("SECRET", SECRET)
        .env("ENC_KEY", ENC_KEY)
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
