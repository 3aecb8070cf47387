//! The MoySklad app lifecycle end to end: the MoySklad Vendor API sandbox installs the app on a
//! bridge, the account is connected to the MAXMA sandbox, LoyaltyAPI calls run with the token
//! MoySklad was given, and suspend / resume / uninstall do what `src/app/mod.rs` says.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{TestBridge, TestStore, client, the_error};
use http::Method;
use loyalty_bridge::app::jwt::{self, IncomingClaims};
use loyalty_bridge::app::refresh::{AppRefresh, FULL_REREAD};
use loyalty_bridge::app::{AppContext, ConnectRequest};
use loyalty_bridge::config::TokenHash;
use loyalty_bridge::error::Error;
use loyalty_bridge::loyalty::auth::{TOKEN_HEADER, Tenants};
use loyalty_bridge::mapping::registry::Mappings;
use loyalty_bridge::secret::Secret;
use loyalty_bridge::store::{AppConnection, AppState, Store};
use serde_json::{Value, json};

use common::moysklad::{
    ACCESS_TOKEN, ACCOUNT_A as ACCOUNT, ACCOUNT_B, APP_ID, APP_UID, AppWorld, ENC_KEY, MAXMA_KEY,
    SECRET,
};

const STORE: &str = r#"{"meta":{"href":"https://api.moysklad.ru/api/remap/1.2/entity/retailstore/s1","id":"2b5eb22f-139e-11e6-9464-e4de00000073"},"name":"Магазин №1"}"#;

/// The shared MoySklad app world (`tests/it/common/moysklad.rs`), with what these tests add.
struct World(AppWorld);

impl std::ops::Deref for World {
    type Target = AppWorld;
    fn deref(&self) -> &AppWorld {
        &self.0
    }
}

async fn world() -> World {
    World(AppWorld::start().await)
}

impl World {
    /// Settings connecting the account to the MAXMA sandbox with its key.
    fn maxma_connection(&self, external_search: bool) -> ConnectRequest {
        let mut credentials = BTreeMap::new();
        credentials.insert("api_key".to_string(), Secret::new(MAXMA_KEY));
        ConnectRequest {
            mapping: "maxma".into(),
            base_url: self.maxma_url.clone(),
            credentials,
            settings: json!({}),
            external_search,
        }
    }

    /// The app side as the settings page will use it, on its own handle of the bridge's store.
    async fn app(&self) -> (AppContext, std::sync::Arc<dyn Store>) {
        let store = loyalty_bridge::store::open(&self.bridge.config().store)
            .await
            .unwrap();
        let ctx = AppContext::new(
            self.bridge.config().moysklad_app.clone().unwrap(),
            &self.bridge.config().server.base_path,
            store.clone(),
        )
        .unwrap();
        (ctx, store)
    }

    /// `POST /counterparty/detail` for the MAXMA demo client, with `token`.
    async fn detail(&self, token: &str) -> (u16, Value) {
        detail_at(&self.bridge, token).await
    }

    /// Waits (the bridge re-reads app tenants every second) until `token` gets `want`.
    async fn detail_until(&self, token: &str, want: u16) -> Value {
        let until = Instant::now() + Duration::from_secs(10);
        loop {
            let (status, body) = self.detail(token).await;
            if status == want {
                return body;
            }
            assert!(Instant::now() < until, "still {status}: {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn raw_row(&self) -> (Option<String>, Option<String>) {
        let conn = rusqlite::Connection::open(self.store_path()).unwrap();
        conn.query_row(
            "SELECT access_token_sealed, credentials_sealed FROM app_tenants WHERE account_id = ?1",
            [ACCOUNT],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    }
}

/// `POST /counterparty/detail` on `bridge` for the MAXMA demo client, with `token`.
async fn detail_at(bridge: &TestBridge, token: &str) -> (u16, Value) {
    let body = json!({
        "retailStore": serde_json::from_str::<Value>(STORE).unwrap(),
        "meta": {"id": "6a7b8c9d-0000-4000-8000-000000000001"},
        "phone": "+79990000001",
    });
    let resp = client()
        .post(bridge.url_of("/counterparty/detail"))
        .header("Lognex-Discount-API-Auth-Token", token)
        .header("content-type", "application/json")
        .body(body.to_string())
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn install_connect_serve_suspend_resume_uninstall() {
    let w = world().await;
    let ms = &w.moysklad;

    let (status, body) = ms.install(w.bridge.url(), ACCOUNT, ACCESS_TOKEN).await;
    assert_eq!(
        (status, body.clone()),
        (200, json!({"status": "SettingsRequired"}))
    );

    // The access token is kept, sealed.
    let (access, _) = w.raw_row();
    let access = access.expect("access token kept");
    assert!(
        !access.contains(ACCESS_TOKEN) && !access.contains("access-token"),
        "{access}"
    );
    let (ctx, store) = w.app().await;
    let tenant = store.app_tenant(ACCOUNT).await.unwrap().unwrap();
    assert_eq!(ctx.access_token(&tenant).unwrap().expose(), ACCESS_TOKEN);

    // Connect: MAXMA with its key.
    let connected = ctx
        .connect(ACCOUNT, w.maxma_connection(true))
        .await
        .expect("connected");
    let token = connected.token.expose().to_string();
    let account = ms.account(ACCOUNT).unwrap();
    assert_eq!(
        account.loyalty,
        Some(json!({"url": w.bridge.url(), "token": token, "externalSearch": true}))
    );
    assert_eq!(account.status.as_deref(), Some("Activated"));
    let (_, creds) = w.raw_row();
    assert!(!creds.unwrap().contains(MAXMA_KEY));
    let t = store.app_tenant(ACCOUNT).await.unwrap().unwrap();
    assert_eq!(t.state, AppState::Activated);
    assert!(t.vendor_note.unwrap().starts_with("Activated"));

    // MoySklad's LoyaltyAPI calls with that token reach MAXMA.
    let body = w.detail_until(&token, 200).await;
    assert_eq!(
        body["bonusProgram"]["agentBonusBalance"],
        json!(500),
        "{body}"
    );
    let (status, body) = w.detail("not-a-token").await;
    assert_eq!(status, 401, "{body}");

    // A re-save MoySklad refuses leaves the account as it was: the token MoySklad still
    // holds keeps working, the refused one never does.
    ms.refuse_loyalty(true);
    let refused = ctx.connect(ACCOUNT, w.maxma_connection(false)).await;
    assert!(refused.is_err(), "MoySklad refused the settings");
    ms.refuse_loyalty(false);
    let t = store.app_tenant(ACCOUNT).await.unwrap().unwrap();
    assert_eq!(t.state, AppState::Activated);
    assert!(t.external_search, "the previous settings are back");
    assert!(
        t.vendor_note.unwrap().contains("2006"),
        "the refusal is shown"
    );
    let body = w.detail_until(&token, 200).await;
    assert_eq!(
        body["bonusProgram"]["agentBonusBalance"],
        json!(500),
        "{body}"
    );

    // Suspend: refused with a clear envelope, at once.
    assert_eq!(ms.suspend(w.bridge.url(), ACCOUNT).await, 200);
    let (status, body) = w.detail(&token).await;
    assert_eq!(status, 403, "{body}");
    let e = the_error(&body);
    assert_eq!(e["error"], "Подключение приостановлено");
    assert_eq!(
        ms.suspend(w.bridge.url(), ACCOUNT).await,
        204,
        "already suspended"
    );

    // Resume: settings kept, Activated, works again.
    let (status, body) = ms.resume(w.bridge.url(), ACCOUNT).await;
    assert_eq!((status, body), (200, json!({"status": "Activated"})));
    let (status, body) = w.detail(&token).await;
    assert_eq!(status, 200, "{body}");

    // Uninstall: the access token, credentials and LoyaltyAPI token are forgotten.
    assert_eq!(ms.uninstall(w.bridge.url(), ACCOUNT).await, 200);
    let t = store.app_tenant(ACCOUNT).await.unwrap().unwrap();
    assert_eq!(t.state, AppState::Uninstalled);
    assert_eq!(t.access_token_sealed, None);
    assert_eq!(t.credentials_sealed, None);
    assert_eq!(t.token_sha256, None);
    assert_eq!(w.raw_row(), (None, None));
    assert_eq!(ms.uninstall(w.bridge.url(), ACCOUNT).await, 204);
    let (status, body) = w.detail(&token).await;
    assert_eq!(status, 401, "{body}");

    // A reinstall needs settings again.
    let (status, body) = ms.install(w.bridge.url(), ACCOUNT, ACCESS_TOKEN).await;
    assert_eq!((status, body), (200, json!({"status": "SettingsRequired"})));
}

/// Waits until `bridge` answers `token` with `want`: it learns of writes it did not serve at
/// its next refresh of the app tenants (every second); allowed a few, for a busy machine.
async fn detail_within_a_refresh(bridge: &TestBridge, token: &str, want: u16) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, body) = detail_at(bridge, token).await;
        if status == want {
            return;
        }
        assert!(Instant::now() < until, "still {status}: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two instances on one store: each sees the app tenants the other (or a third writer, the
/// settings page of any instance) installed, connected, suspended, resumed or uninstalled,
/// though it reads only what changed.
async fn two_bridges_see_each_others_app_tenants(store: TestStore) {
    let w = World(AppWorld::start_on(store).await);
    let ms = &w.moysklad;
    let a = &w.bridge;
    let b = w.another_bridge().await;
    let (ctx, _store) = w.app().await;

    let (status, body) = ms.install(a.url(), ACCOUNT, ACCESS_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    let connected = ctx.connect(ACCOUNT, w.maxma_connection(false)).await;
    let token = connected.expect("connected").token.expose().to_string();
    detail_within_a_refresh(a, &token, 200).await;
    detail_within_a_refresh(&b, &token, 200).await;

    // Suspended through A: A refuses at once, B after its refresh.
    assert_eq!(ms.suspend(a.url(), ACCOUNT).await, 200);
    assert_eq!(detail_at(a, &token).await.0, 403);
    detail_within_a_refresh(&b, &token, 403).await;

    // Resumed through B: the other way round.
    let (status, body) = ms.resume(b.url(), ACCOUNT).await;
    assert_eq!((status, body), (200, json!({"status": "Activated"})));
    assert_eq!(detail_at(&b, &token).await.0, 200);
    detail_within_a_refresh(a, &token, 200).await;

    // A second account, installed through B: both serve it, and the first as before.
    let (status, body) = ms.install(b.url(), ACCOUNT_B, ACCESS_TOKEN).await;
    assert_eq!(status, 200, "{body}");
    let connected = ctx.connect(ACCOUNT_B, w.maxma_connection(false)).await;
    let token_b = connected.expect("connected").token.expose().to_string();
    detail_within_a_refresh(a, &token_b, 200).await;
    detail_within_a_refresh(&b, &token_b, 200).await;
    assert_eq!(detail_at(a, &token).await.0, 200);

    // The first uninstalled through B: both forget its token; the second stays.
    assert_eq!(ms.uninstall(b.url(), ACCOUNT).await, 200);
    assert_eq!(detail_at(&b, &token).await.0, 401);
    detail_within_a_refresh(a, &token, 401).await;
    assert_eq!(detail_at(a, &token_b).await.0, 200);
    assert_eq!(detail_at(&b, &token_b).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_on_sqlite_see_each_others_app_tenants() {
    two_bridges_see_each_others_app_tenants(TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_bridges_on_postgres_see_each_others_app_tenants() {
    let Some(store) = TestStore::postgres().await else {
        return;
    };
    two_bridges_see_each_others_app_tenants(store).await;
}

/// The LoyaltyAPI token the refresh test gives account `i`.
fn token_of(i: usize) -> String {
    format!("loyalty-token-{i}")
}

/// Who `token` is to `tenants`: the tenant's name, or why not.
fn who(tenants: &Tenants, token: &str) -> String {
    let mut headers = http::HeaderMap::new();
    headers.insert(TOKEN_HEADER, token.parse().unwrap());
    match tenants.authenticate(&headers) {
        Ok(tenant) => tenant.name.clone(),
        Err(Error::AccountSuspended) => "suspended".into(),
        Err(Error::UnknownToken) => "unknown".into(),
        Err(e) => format!("{e:?}"),
    }
}

/// A refresh reads only the app tenants written since the newest change number it saw, and
/// changes only their entries; a mapping that did not load is tried again on the next one;
/// every `FULL_REREAD` every row is read again.
#[tokio::test(start_paused = true)]
async fn a_refresh_reads_only_the_app_tenants_written_since_the_last() {
    let place = TestStore::sqlite();
    let mappings_dir = tempfile::tempdir().unwrap();
    let keys = format!(
        r#"app_id = "{APP_ID}"
        app_uid = "{APP_UID}"
        secret_key = "${{SECRET}}"
        public_base_url = "http://127.0.0.1:9"
        encryption_key = "${{ENC_KEY}}"
        mappings_dir = "{}""#,
        mappings_dir.path().display()
    );
    let config = TestBridge::builder()
        .store(&place)
        .moysklad_app(keys)
        .env("SECRET", SECRET)
        .env("ENC_KEY", ENC_KEY)
        .config();
    let store = loyalty_bridge::store::open(&config.store).await.unwrap();
    let ctx = AppContext::new(config.moysklad_app.clone().unwrap(), "", store.clone()).unwrap();
    let account = |i: usize| format!("account-{i}");
    for i in 0..3 {
        let id = account(i);
        store
            .app_activate(&id, APP_ID, "Shop", None, 1)
            .await
            .unwrap();
        let credentials = BTreeMap::from([("api_key".to_owned(), Secret::new(MAXMA_KEY))]);
        let connection = AppConnection {
            token_sha256: hex::encode(TokenHash::of(&token_of(i)).0),
            mapping: "maxma".into(),
            base_url: "http://127.0.0.1:9".into(),
            credentials_sealed: ctx.seal_credentials(&id, &credentials),
            settings: json!({}),
            external_search: false,
        };
        assert!(store.app_connect(&id, &connection, 2).await.unwrap());
        assert!(store.app_mark(&id, true, "Activated", 3).await.unwrap());
    }
    let tenants = Tenants::new([]);
    let mappings = Arc::new(Mappings::load([]).unwrap());
    let maxma = ctx.mapping_path("maxma");
    let mut refresh = AppRefresh::new();

    let read = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
    assert_eq!(
        (read.full, read.rows),
        (true, 3),
        "the first reads everything"
    );
    assert_eq!(who(&tenants, &token_of(0)), "app:account-0");
    assert!(!mappings.contains(&maxma), "not in mappings_dir yet");
    let read = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
    assert_eq!((read.full, read.rows), (false, 0), "nothing changed");
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/maxma.toml"),
        &maxma,
    )
    .unwrap();
    refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
    assert!(mappings.contains(&maxma), "tried again, and loaded");

    store.app_deactivate(&account(1), false, 4).await.unwrap();
    let read = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
    assert_eq!((read.full, read.rows), (false, 1));
    assert_eq!(who(&tenants, &token_of(1)), "suspended");
    store.app_deactivate(&account(2), true, 5).await.unwrap();
    let read = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
    assert_eq!((read.full, read.rows), (false, 1));
    assert_eq!(who(&tenants, &token_of(2)), "unknown");
    assert!(tenants.by_name("app:account-2").is_none());
    assert_eq!(who(&tenants, &token_of(0)), "app:account-0", "untouched");
    assert_eq!(
        tenants.by_name("app:account-0").unwrap().name,
        "app:account-0"
    );
    assert_eq!(tenants.active_apps(), 1);

    // Rows written without a number (a bridge from before them, a hand edit) are found by the
    // full re-read only.
    let sqlite = rusqlite::Connection::open(place.sqlite_path().unwrap()).unwrap();
    sqlite
        .execute(
            "UPDATE app_tenants SET state = 'suspended' WHERE account_id = 'account-0'",
            [],
        )
        .unwrap();
    let read = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
    assert_eq!((read.full, read.rows), (false, 0));
    assert_eq!(who(&tenants, &token_of(0)), "app:account-0");
    tokio::time::advance(FULL_REREAD).await;
    let read = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
    assert_eq!((read.full, read.rows), (true, 3));
    assert_eq!(who(&tenants, &token_of(0)), "suspended");
    assert_eq!(tenants.active_apps(), 0);
    let read = refresh.refresh(&ctx, &tenants, &mappings).await.unwrap();
    assert_eq!(
        (read.full, read.rows),
        (false, 0),
        "then only what changes again"
    );
}

fn token_with(alg: jsonwebtoken::Algorithm, secret: &str, exp_in: i64, jti: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(alg),
        &IncomingClaims {
            iat: now,
            exp: now + exp_in,
            jti: jti.into(),
        },
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_jwt_is_checked_and_retries_are_idempotent() {
    use base64::Engine;
    let w = world().await;
    let ms = &w.moysklad;
    let body = ms.lifecycle_body("Install", Some(ACCESS_TOKEN));
    let bridge = w.bridge.url().to_string();
    let put = |token: String| {
        let (body, bridge) = (body.clone(), bridge.clone());
        async move {
            ms.lifecycle_with(Method::PUT, &bridge, ACCOUNT, &body, Some(&token), "req-1")
                .await
        }
    };
    use jsonwebtoken::Algorithm;
    let now = chrono::Utc::now().timestamp();
    let b64 = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#.into()),
        b64(format!(r#"{{"iat":{now},"exp":{},"jti":"n1"}}"#, now + 60))
    );
    for (what, token) in [
        (
            "bad signature",
            token_with(Algorithm::HS256, "another-secret-key-0123456789", 60, "a1"),
        ),
        ("HS512", token_with(Algorithm::HS512, SECRET, 60, "a2")),
        ("none", none),
        ("expired", token_with(Algorithm::HS256, SECRET, -120, "a3")),
        (
            "exp decades ahead",
            token_with(Algorithm::HS256, SECRET, 30 * 365 * 86_400, "a4"),
        ),
        (
            "lives 10 minutes",
            token_with(Algorithm::HS256, SECRET, 600, "a5"),
        ),
        (
            "no iat",
            jwt::sign(&json!({"exp": now + 60, "jti": "a6"}), SECRET),
        ),
        ("garbage", "abc.def.ghi".to_string()),
    ] {
        let (status, body) = put(token).await;
        assert_eq!(status, 401, "{what}: {body}");
        let e = the_error(&body);
        assert_eq!(e["error"], "Ошибка авторизации", "{what}");
    }
    let missing = client()
        .put(ms.lifecycle_url(w.bridge.url(), ACCOUNT))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status().as_u16(), 401);
    assert!(
        w.raw_row_opt().is_none(),
        "nothing stored for refused calls"
    );

    // A good token once; the same token again is a replay.
    let good = token_with(Algorithm::HS256, SECRET, 60, "good-1");
    let (status, first) = put(good.clone()).await;
    assert_eq!(
        (status, first.clone()),
        (200, json!({"status": "SettingsRequired"}))
    );
    let (status, body) = put(good).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        the_error(&body)["error_message"]
            .as_str()
            .unwrap()
            .contains("jti"),
        "{body}"
    );
    // MoySklad's retry: same request id, a fresh token → the same answer.
    let (status, again) = put(ms.lifecycle_token()).await;
    assert_eq!((status, again), (200, first));

    // Wrong app id → 404; wrong appUid → 400.
    let other = client()
        .put(format!(
            "{}/api/moysklad/vendor/1.0/apps/00000000-0000-4000-8000-000000000000/{ACCOUNT}",
            w.bridge.url()
        ))
        .bearer_auth(ms.lifecycle_token())
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status().as_u16(), 404);
    let mut wrong_uid = body.clone();
    wrong_uid["appUid"] = json!("someone.else");
    let (status, _) = ms
        .lifecycle(Method::PUT, w.bridge.url(), ACCOUNT, &wrong_uid)
        .await;
    assert_eq!(status, 400);
    // The token is checked on DELETE too.
    let (status, _) = ms
        .lifecycle_with(
            Method::DELETE,
            w.bridge.url(),
            ACCOUNT,
            &ms.lifecycle_body("Uninstall", None),
            Some(&token_with(
                Algorithm::HS256,
                "x-wrong-secret-0123456789",
                60,
                "d1",
            )),
            "req-2",
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_vendor_api_sandbox_checks_our_calls() {
    let w = world().await;
    let (ctx, _store) = w.app().await;
    // Not installed: MoySklad's 2004.
    match ctx
        .vendor
        .put_loyalty(ACCOUNT, "http://x", "t", false)
        .await
    {
        Err(loyalty_bridge::app::vendor::VendorError::Refused { status, code, .. }) => {
            assert_eq!((status, code), (404, Some(2004)));
        }
        other => panic!("{other:?}"),
    }
    // Without Accept-Encoding: gzip → 415; without a JWT → 401.
    let ms_url = w
        .bridge
        .config()
        .moysklad_app
        .as_ref()
        .unwrap()
        .vendor_api_url
        .clone();
    let raw = reqwest::Client::builder().no_gzip().build().unwrap();
    let r = raw
        .get(format!("{ms_url}/apps/{APP_ID}/{ACCOUNT}/status"))
        .bearer_auth(jwt::sign_ours(
            APP_UID,
            SECRET,
            chrono::Utc::now().timestamp(),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    let r = raw
        .get(format!("{ms_url}/apps/{APP_ID}/{ACCOUNT}/status"))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);

    // Context keys: exchanged once.
    let key = w.moysklad.issue_context(ACCOUNT, true);
    let employee = ctx.vendor.context(&key).await.unwrap();
    assert_eq!(employee["accountId"], ACCOUNT);
    assert_eq!(employee["permissions"]["admin"]["view"], "ALL");
    assert!(ctx.vendor.context(&key).await.is_err());

    // Installed: status, PATCH.
    w.moysklad
        .install(w.bridge.url(), ACCOUNT, ACCESS_TOKEN)
        .await;
    assert_eq!(
        ctx.vendor.get_status(ACCOUNT).await.unwrap(),
        json!({"status": "SettingsRequired"})
    );
    ctx.vendor
        .put_loyalty(ACCOUNT, "http://a", "tok", false)
        .await
        .unwrap();
    ctx.vendor
        .patch_loyalty(ACCOUNT, &json!({"externalSearch": true}))
        .await
        .unwrap();
    assert_eq!(
        w.moysklad.account(ACCOUNT).unwrap().loyalty,
        Some(json!({"url": "http://a", "token": "tok", "externalSearch": true}))
    );
}

impl World {
    fn raw_row_opt(&self) -> Option<(Option<String>, Option<String>)> {
        let conn = rusqlite::Connection::open(self.store_path()).ok()?;
        conn.query_row(
            "SELECT access_token_sealed, credentials_sealed FROM app_tenants WHERE account_id = ?1",
            [ACCOUNT],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .ok()
    }
}
