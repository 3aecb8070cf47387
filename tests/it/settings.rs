//! The MoySklad app's settings page over plain HTTP (no browser, so these run everywhere):
//! context key exchange, sessions, CSRF and Origin checks, non-admins, escaping, the live
//! credential check, saving (the LoyaltyAPI token that MoySklad receives then serves), recent
//! errors, security headers. `tests/it/settings_browser.rs` drives the same page in Chromium.

use crate::common;

use common::moysklad::{
    ACCOUNT_A, ACCOUNT_B, APP_ID, AppWorld, DEMO_PHONE, MAXMA_KEY, action_fields, check_maxma_key,
    connect_maxma, fetch, get_page, post_form, query_of,
};
use std::sync::Arc;
use std::time::Duration;

use emulators::maxma::Fault;
use loyalty_bridge::app::settings::session::Sessions;
use loyalty_bridge::store::{SqliteStore, now_ms};
use serde_json::json;

const MAXMA_BAD_KEY_TITLE: &str = "Неверный ключ доступа к MAXMA";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_checks_credentials_saves_and_the_token_serves() {
    let w = AppWorld::start().await;
    w.install(ACCOUNT_A).await;
    let page = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let headers = &page.headers;
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains(&format!(
            "frame-ancestors https://online.moysklad.ru https://*.moysklad.ru {}",
            w.moysklad_url
        )),
        "{csp}"
    );
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert_eq!(headers["referrer-policy"], "same-origin");
    assert_eq!(headers["cache-control"], "no-store");
    assert!(headers.get("set-cookie").is_none(), "no cookie is used");
    assert!(page.html.starts_with("<!doctype html>"));
    assert!(page.html.contains("<html lang=\"ru\">"));
    assert!(
        page.html.contains("data-state=\"SettingsRequired\""),
        "{}",
        page.html
    );
    assert!(
        page.html.contains("<option value=\"maxma\" selected>"),
        "{}",
        page.html
    );
    assert!(page.html.contains("name=\"cred.maxma.api_key\""));
    assert!(page.html.contains("name=\"cred.uds.company_id\""));
    // Where the calls will go: the configured vendor_base_urls.maxma, not typed by the admin.
    assert!(page.html.contains(&format!("<code>{}</code>", w.maxma_url)));
    assert!(!page.html.contains("<script>"), "no inline script");
    let session = page.session();

    // A wrong key: the vendor's refusal, as the cashier would read it; recorded as recent.
    let bad = post_form(
        &w,
        &action_fields(
            &session,
            "check",
            &[("mapping", "maxma"), ("cred.maxma.api_key", "wrong-key")],
        ),
        Some(w.bridge.url()),
    )
    .await;
    assert_eq!(bad.status, 200, "{}", bad.html);
    assert!(
        bad.html.contains("id=\"notice\" class=\"notice error\""),
        "{}",
        bad.html
    );
    assert!(bad.html.contains(MAXMA_BAD_KEY_TITLE), "{}", bad.html);
    assert!(bad.html.contains("id=\"recent\""), "{}", bad.html);
    assert!(
        !bad.html.contains("wrong-key"),
        "a typed secret is never echoed"
    );

    // The right key: accepted, the demo customer found.
    let good = post_form(
        &w,
        &action_fields(
            &session,
            "check",
            &[
                ("mapping", "maxma"),
                ("cred.maxma.api_key", MAXMA_KEY),
                ("test_phone", DEMO_PHONE),
            ],
        ),
        None,
    )
    .await;
    assert!(good.html.contains("notice success"), "{}", good.html);
    assert!(good.html.contains(": 1."), "{}", good.html);
    assert!(!good.html.contains(MAXMA_KEY));
    assert_eq!(w.loyalty_settings(ACCOUNT_A), None, "a check saves nothing");

    // Save with a wrong key: checked first, nothing stored or sent to MoySklad.
    let refused = post_form(
        &w,
        &action_fields(
            &session,
            "save",
            &[("mapping", "maxma"), ("cred.maxma.api_key", "wrong-key")],
        ),
        None,
    )
    .await;
    assert!(refused.html.contains("notice error"), "{}", refused.html);
    assert!(refused.html.contains(MAXMA_BAD_KEY_TITLE));
    assert_eq!(w.loyalty_settings(ACCOUNT_A), None);

    // Save: stored, announced to MoySklad, Activated; MoySklad's answer shown.
    let saved = post_form(
        &w,
        &action_fields(
            &session,
            "save",
            &[
                ("mapping", "maxma"),
                ("cred.maxma.api_key", MAXMA_KEY),
                ("external_search", "true"),
            ],
        ),
        Some(w.bridge.url()),
    )
    .await;
    assert!(saved.html.contains("notice success"), "{}", saved.html);
    assert!(
        saved.html.contains("data-state=\"Activated\""),
        "{}",
        saved.html
    );
    assert!(
        saved.html.contains("id=\"moysklad-note\">Activated"),
        "{}",
        saved.html
    );
    let loyalty = w
        .loyalty_settings(ACCOUNT_A)
        .expect("MoySklad got PUT …/loyalty");
    assert_eq!(loyalty["url"], json!(w.bridge.url()));
    assert_eq!(loyalty["externalSearch"], json!(true));
    let token = loyalty["token"].as_str().unwrap().to_owned();
    assert!(token.len() >= 32);
    assert!(
        !saved.html.contains(&token),
        "the LoyaltyAPI token is never shown"
    );
    assert!(!saved.html.contains(MAXMA_KEY));
    assert_eq!(
        w.moysklad.account(ACCOUNT_A).unwrap().status.as_deref(),
        Some("Activated")
    );
    // MoySklad's calls with that token reach MAXMA.
    let found = w.search_until(&token, 200).await;
    assert_eq!(found["rows"][0]["phone"], json!(DEMO_PHONE), "{found}");

    // A new page shows the stored key as set, never its value; saving with the field empty
    // keeps it (and gives MoySklad a new token).
    let again = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU")).await;
    assert!(
        again.html.contains("задано — оставьте пустым"),
        "{}",
        again.html
    );
    assert!(!again.html.contains(MAXMA_KEY));
    let session = again.session();
    let kept = post_form(
        &w,
        &action_fields(
            &session,
            "save",
            &[
                ("mapping", "maxma"),
                ("cred.maxma.api_key", ""),
                ("external_search", "false"),
            ],
        ),
        None,
    )
    .await;
    assert!(kept.html.contains("notice success"), "{}", kept.html);
    let loyalty = w.loyalty_settings(ACCOUNT_A).unwrap();
    assert_eq!(loyalty["externalSearch"], json!(false));
    let new_token = loyalty["token"].as_str().unwrap().to_owned();
    assert_ne!(new_token, token);
    w.search_until(&new_token, 200).await;

    // A LoyaltyAPI failure the admin can act on (the vendor failing) appears on the page
    // (another phone: the demo customer's answer is cached).
    w.maxma.set_fault(Some(Fault::Http500));
    let (status, _) = w.search_for(&new_token, "+79990000077").await;
    assert!(status >= 500, "{status}");
    w.maxma.set_fault(None);
    let page = get_page(&w.settings_url(ACCOUNT_A, true, "en_US")).await;
    assert!(page.html.contains("<html lang=\"en\">"));
    assert!(
        page.html.contains("counterparty.search → 502"),
        "{}",
        page.html
    );
    assert!(page.html.contains("Recent errors"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_keys_sessions_csrf_origin_and_accounts() {
    let w = AppWorld::start().await;
    w.install(ACCOUNT_A).await;
    w.install(ACCOUNT_B).await;

    // A context key works once: the reload (same URL) is refused.
    let url = w.settings_url(ACCOUNT_A, true, "ru_RU");
    assert_eq!(get_page(&url).await.status, 200);
    let reused = get_page(&url).await;
    assert_eq!(reused.status, 403, "{}", reused.html);
    assert!(reused.html.contains("Ссылка устарела"), "{}", reused.html);
    assert!(reused.headers.get("content-security-policy").is_some());
    // The same in English when MoySklad says so.
    let url = w.settings_url(ACCOUNT_A, true, "en_US");
    assert_eq!(get_page(&url).await.status, 200);
    let reused = get_page(&url).await;
    assert!(
        reused.html.contains("The link has expired"),
        "{}",
        reused.html
    );
    // A key MoySklad never issued; none at all; another app's.
    let never_issued = uuid::Uuid::new_v4().simple().to_string();
    let unknown = get_page(&format!("{}?contextKey={never_issued}", w.page_url())).await;
    assert_eq!(unknown.status, 403);
    assert_eq!(get_page(&w.page_url()).await.status, 400);
    let url = w.settings_url(ACCOUNT_A, true, "ru_RU");
    let q = query_of(&url);
    assert_eq!(q["appId"], APP_ID);
    let other_app = get_page(&url.replace(APP_ID, "00000000-0000-4000-8000-000000000000")).await;
    assert_eq!(other_app.status, 400, "{}", other_app.html);

    let admin = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU")).await;
    let session = admin.session();
    let fields = |s: &(String, String)| {
        let mut f = action_fields(s, "save", &[]);
        f.extend([("mapping", "maxma"), ("cred.maxma.api_key", MAXMA_KEY)]);
        f.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>()
    };
    let post = |fields: Vec<(String, String)>, origin: Option<String>| {
        let w = &w;
        async move {
            let borrowed: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            post_form(w, &borrowed, origin.as_deref()).await
        }
    };

    // Wrong, missing and foreign CSRF tokens.
    let mut forged = fields(&session);
    forged[1].1 = "0".repeat(64);
    let page = post(forged, None).await;
    assert_eq!(page.status, 403, "{}", page.html);
    assert!(page.html.contains("Запрос отклонён"));
    let missing: Vec<_> = fields(&session)
        .into_iter()
        .filter(|(k, _)| k != "csrf")
        .collect();
    assert_eq!(post(missing, None).await.status, 403);
    let other = get_page(&w.settings_url(ACCOUNT_B, true, "ru_RU"))
        .await
        .session();
    let mut mixed = fields(&session);
    mixed[1].1 = other.1.clone();
    assert_eq!(
        post(mixed, None).await.status,
        403,
        "B's token with A's session"
    );
    // Unknown session; foreign and opaque origins.
    let mut unknown = fields(&session);
    unknown[0].1 = "f".repeat(64);
    let page = post(unknown, None).await;
    assert_eq!(page.status, 403);
    assert!(page.html.contains("Сеанс завершён"), "{}", page.html);
    for origin in ["https://evil.example", "null", "https://online.moysklad.ru"] {
        let page = post(fields(&session), Some(origin.into())).await;
        assert_eq!(page.status, 403, "{origin}: {}", page.html);
    }
    assert_eq!(w.loyalty_settings(ACCOUNT_A), None, "nothing was saved");

    // The session belongs to its account: an account id in the form changes nothing.
    let mut with_account = fields(&session);
    with_account.push(("accountId".into(), ACCOUNT_B.into()));
    with_account.push(("account_id".into(), ACCOUNT_B.into()));
    let page = post(with_account, Some(w.bridge.url().to_string())).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("notice success"), "{}", page.html);
    assert!(w.loyalty_settings(ACCOUNT_A).is_some());
    assert_eq!(w.loyalty_settings(ACCOUNT_B), None);
    assert_eq!(
        w.moysklad.account(ACCOUNT_B).unwrap().status.as_deref(),
        Some("SettingsRequired")
    );

    // Bodies: too large, not a form, wrong method.
    let huge = "x".repeat(20 * 1024);
    let page = post(vec![("pad".into(), huge)], None).await;
    assert_eq!(page.status, 413);
    let json_post = common::client()
        .post(w.page_url())
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(json_post.status().as_u16(), 415);
    let put = common::client().put(w.page_url()).send().await.unwrap();
    assert_eq!(put.status().as_u16(), 405);
    assert_eq!(put.headers()["allow"], "GET, POST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_admins_read_only_and_their_posts_are_refused() {
    let w = AppWorld::start().await;
    w.install(ACCOUNT_A).await;
    // A non-admin sees the state and a read-only notice; no form, so no session id either.
    let cashier = get_page(&w.settings_url(ACCOUNT_A, false, "en_US")).await;
    assert_eq!(cashier.status, 200);
    assert!(cashier.has_id("read-only"), "{}", cashier.html);
    assert!(
        cashier.html.contains("Only an administrator"),
        "{}",
        cashier.html
    );
    assert!(cashier.html.contains("Sandbox Cashier"));
    assert!(!cashier.html.contains("<form"), "{}", cashier.html);
    assert!(cashier.input("session").is_none());

    // Even holding a non-admin session and its CSRF token (started here on a second handle of
    // the bridge's store, as the page started one), a post is refused before any action.
    let store = SqliteStore::open(w.store_path()).await.unwrap();
    let sessions = Sessions::new(Arc::new(store), Duration::from_secs(600));
    let (id, session) = sessions
        .start(ACCOUNT_A, "Cashier", false, "en", now_ms())
        .await
        .unwrap();
    let pair = (id, session.csrf.clone());
    let page = post_form(
        &w,
        &action_fields(
            &pair,
            "save",
            &[("mapping", "maxma"), ("cred.maxma.api_key", MAXMA_KEY)],
        ),
        Some(w.bridge.url()),
    )
    .await;
    assert_eq!(page.status, 403, "{}", page.html);
    assert!(page.html.contains("Недостаточно прав"), "{}", page.html);
    assert_eq!(w.loyalty_settings(ACCOUNT_A), None);
    // The same session made an admin's: accepted (so the refusal above was the admin check).
    let (id, session) = sessions
        .start(ACCOUNT_A, "Admin", true, "en", now_ms())
        .await
        .unwrap();
    let pair = (id, session.csrf.clone());
    let page = check_maxma_key(&w, &pair, MAXMA_KEY).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("notice success"), "{}", page.html);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_from_moysklad_are_escaped() {
    let w = AppWorld::start().await;
    let mut body = w.moysklad.lifecycle_body("Install", Some("tok"));
    body["accountName"] = json!("<script>alert('account')</script>");
    let (status, _) = w
        .moysklad
        .lifecycle(http::Method::PUT, w.bridge.url(), ACCOUNT_A, &body)
        .await;
    assert_eq!(status, 200);
    let key = w
        .moysklad
        .issue_context_as(ACCOUNT_A, true, "<img src=x onerror=alert(1)>\"'");
    let url = w.moysklad.settings_url(&key, "ru_RU").unwrap();
    let page = get_page(&url).await;
    assert_eq!(page.status, 200);
    assert!(!page.html.contains("<script>alert"), "{}", page.html);
    assert!(!page.html.contains("<img"), "{}", page.html);
    assert!(
        page.html
            .contains("&lt;script&gt;alert(&#39;account&#39;)&lt;/script&gt;"),
        "{}",
        page.html
    );
    assert!(
        page.html
            .contains("&lt;img src=x onerror=alert(1)&gt;&quot;&#39;")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_and_uninstalled_accounts_cannot_be_changed() {
    let w = AppWorld::start().await;
    w.install(ACCOUNT_A).await;
    let page = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU")).await;
    let session = page.session();
    assert_eq!(w.moysklad.suspend(w.bridge.url(), ACCOUNT_A).await, 200);
    let page = post_form(
        &w,
        &action_fields(
            &session,
            "save",
            &[("mapping", "maxma"), ("cred.maxma.api_key", MAXMA_KEY)],
        ),
        None,
    )
    .await;
    assert_eq!(page.status, 200);
    assert!(page.html.contains("notice error"), "{}", page.html);
    assert!(
        page.html.contains("data-state=\"Suspended\""),
        "{}",
        page.html
    );
    assert_eq!(w.loyalty_settings(ACCOUNT_A), None);
    let fresh = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU")).await;
    assert!(fresh.has_id("inactive") && !fresh.html.contains("<form"));
    // Never installed: the page says so.
    let stranger = get_page(&w.settings_url(ACCOUNT_B, true, "ru_RU")).await;
    assert_eq!(stranger.status, 200);
    assert!(
        stranger.html.contains("data-state=\"—\""),
        "{}",
        stranger.html
    );
    assert!(stranger.has_id("inactive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assets_are_served_and_unknown_ones_are_not() {
    let w = AppWorld::start().await;
    for (name, kind) in [
        ("settings.js", "text/javascript"),
        ("settings.css", "text/css"),
    ] {
        let resp = common::client()
            .get(format!("{}/assets/{name}?v=1", w.page_url()))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{name}");
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with(kind)
        );
        assert!(resp.headers().get("content-security-policy").is_some());
    }
    let resp = common::client()
        .get(format!("{}/assets/nope.js", w.page_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

/// Rows of the bridge's store that opening pages writes: context key claims and sessions.
fn page_rows(w: &AppWorld) -> (i64, i64) {
    let conn = rusqlite::Connection::open(w.store_path()).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    (
        count("SELECT count(*) FROM claims WHERE scope = 'moysklad-context'"),
        count("SELECT count(*) FROM kv WHERE tenant = 'moysklad-settings-session'"),
    )
}

/// `POST /context/{key}` calls MoySklad's Vendor API received.
fn context_exchanges(w: &AppWorld) -> usize {
    w.moysklad
        .calls()
        .iter()
        .filter(|(method, path, _)| method == "POST" && path.contains("/context/"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_context_keys_store_nothing_and_reach_moysklad_a_bounded_number_of_times() {
    // It counts the limiter's refills while it sends.
    let _alone = common::alone().lock().await;
    let w = AppWorld::start().await;
    // Well-formed keys MoySklad never issued, as fast as one client can send them.
    let http = common::client();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut limited = None;
    let sending = std::time::Instant::now();
    for _ in 0..300 {
        let key = uuid::Uuid::new_v4().simple().to_string();
        let page = fetch(http.get(format!("{}?contextKey={key}", w.page_url()))).await;
        *statuses.entry(page.status).or_default() += 1;
        if page.status == 429 && limited.is_none() {
            limited = Some(page);
        }
    }
    let sent_in = sending.elapsed();
    let exchanges = context_exchanges(&w);
    // One client address gets the per-address burst (10), then one more every 6 s it keeps
    // sending: however long the 300 took on a busy machine (the limit counts time, so the
    // bound does too; rounded up).
    let refills = sent_in.as_millis().div_ceil(6_000) as usize;
    assert!(
        exchanges <= 10 + refills,
        "{exchanges} exchanges in {sent_in:?}; statuses {statuses:?}"
    );
    assert!(
        exchanges >= 10,
        "the first keys (the burst) are asked about: {statuses:?}"
    );
    assert_eq!(statuses.get(&403).copied(), Some(exchanges), "{statuses:?}");
    assert_eq!(
        statuses.get(&429).copied(),
        Some(300 - exchanges),
        "{statuses:?}"
    );
    assert_eq!(page_rows(&w), (0, 0), "nothing stored for refused keys");
    let limited = limited.unwrap();
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(limited.html.contains("Слишком много"), "{}", limited.html);
    assert!(limited.headers.get("content-security-policy").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_context_keys_are_refused_before_anything_is_stored_or_asked() {
    let w = AppWorld::start().await;
    w.install(ACCOUNT_A).await;
    let too_long = "a".repeat(129);
    let short = "A1".repeat(15);
    for key in [
        "nope",
        short.as_str(),
        too_long.as_str(),
        "1f2e3d4c-0000-4000-8000-00000000a001",
        "..%2F..%2Fapps",
        "%3Cscript%3E0123456789012345678901234567890",
        "abcdefabcdefabcdefabcdefabcdefab%00",
    ] {
        let page = get_page(&format!("{}?contextKey={key}", w.page_url())).await;
        assert_eq!(page.status, 400, "{key}: {}", page.html);
        assert!(
            page.html.contains("Откройте настройки из МоегоСклада"),
            "{key}: {}",
            page.html
        );
    }
    assert_eq!(context_exchanges(&w), 0, "MoySklad was not asked");
    assert_eq!(page_rows(&w), (0, 0), "nothing stored");
    // Real keys pass: the sandbox's (32 hex digits) and MoySklad's documented shape (64 letters
    // and digits) — the latter unknown to the sandbox, so MoySklad refuses it.
    let page = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    let documented = "6S3BQLsaSRNdEnhPCoW9lplY2LozRUOq6S3BQLsaSRNdEnhPCoW9lplY2LozRUOq";
    let page = get_page(&format!("{}?contextKey={documented}", w.page_url())).await;
    assert_eq!(page.status, 403, "{}", page.html);
    assert_eq!(context_exchanges(&w), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_checks_in_one_session_are_limited_before_the_vendor() {
    // It counts the limiter's refills while it sends.
    let _alone = common::alone().lock().await;
    let w = AppWorld::start().await;
    w.install(ACCOUNT_A).await;
    let page = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU")).await;
    let session = page.session();
    let before = w.maxma.requests().len();
    let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
    let mut limited = None;
    for i in 0..100 {
        // Guessed keys, checked and saved in turn (a wrong key is never saved).
        let guess = format!("guess-{i}");
        let action = if i % 2 == 0 { "check" } else { "save" };
        let page = post_form(
            &w,
            &action_fields(
                &session,
                action,
                &[("mapping", "maxma"), ("cred.maxma.api_key", &guess)],
            ),
            None,
        )
        .await;
        *statuses.entry(page.status).or_default() += 1;
        if page.status == 429 && limited.is_none() {
            limited = Some(page);
        }
    }
    let reached = w.maxma.requests().len() - before;
    assert!(
        reached <= 6,
        "{reached} reached MAXMA; statuses {statuses:?}"
    );
    assert!(
        statuses.get(&429).copied().unwrap_or(0) >= 90,
        "{statuses:?}"
    );
    assert_eq!(w.loyalty_settings(ACCOUNT_A), None);
    let limited = limited.unwrap();
    assert!(limited.headers.contains_key("retry-after"));
    assert!(limited.html.contains("Слишком много"), "{}", limited.html);
    assert!(
        !limited.html.contains("guess-"),
        "a typed secret is never echoed"
    );
    // A refused attempt does not even extend the session (no store write).
    let expiry = || {
        let conn = rusqlite::Connection::open(w.store_path()).unwrap();
        conn.query_row(
            "SELECT expires_ms FROM kv WHERE tenant = 'moysklad-settings-session'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap()
    };
    let was = expiry();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let page = post_form(
        &w,
        &action_fields(&session, "check", &[("mapping", "maxma")]),
        None,
    )
    .await;
    assert_eq!(page.status, 429);
    assert_eq!(expiry(), was);
    // Another session of the account has its own allowance.
    let other = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU"))
        .await
        .session();
    let page = check_maxma_key(&w, &other, MAXMA_KEY).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("notice success"), "{}", page.html);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_go_through_the_accounts_vendor_rate_limiter() {
    let w = AppWorld::start().await;
    w.install(ACCOUNT_A).await;
    let session = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU"))
        .await
        .session();
    let token = connect_maxma(&w, ACCOUNT_A, &session).await;
    // MAXMA asks the account's calls to hold off for 30 s.
    w.maxma.set_fault(Some(Fault::TooManyRequests {
        retry_after: Some("30".into()),
    }));
    let (status, _) = w.search_for(&token, "+79990000055").await;
    assert!(status >= 500 || status == 429, "{status}");
    w.maxma.set_fault(None);
    // A check of the same account now waits its turn like the account's own calls: refused
    // without reaching MAXMA.
    let before = w.maxma.requests().len();
    let page = check_maxma_key(&w, &session, MAXMA_KEY).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.html.contains("notice error"), "{}", page.html);
    assert_eq!(w.maxma.requests().len(), before, "MAXMA was not called");
}

/// The recent errors card of a page (empty when it shows none).
fn recent_card(page: &common::moysklad::Page) -> &str {
    let Some(at) = page.html.find("id=\"recent\"") else {
        return "";
    };
    let card = &page.html[at..];
    &card[..card.find("</ul>").unwrap_or(card.len())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_failure_one_instance_saw_is_listed_by_the_other() {
    a_failure_one_instance_saw_is_listed_by_the_other(common::TestStore::sqlite()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_failure_one_instance_saw_is_listed_by_the_other() {
    if let Some(store) = common::TestStore::postgres().await {
        a_failure_one_instance_saw_is_listed_by_the_other(store).await;
    }
}

/// Two instances of the app on one store, as behind a load balancer: what one saw fail, the
/// settings page the other serves lists.
async fn a_failure_one_instance_saw_is_listed_by_the_other(store: common::TestStore) {
    let w = AppWorld::start_on(store).await;
    w.install(ACCOUNT_A).await;
    let second = w.another_bridge().await;

    // A wrong key checked on the first instance's page…
    let session = get_page(&w.settings_url(ACCOUNT_A, true, "ru_RU"))
        .await
        .session();
    let bad = check_maxma_key(&w, &session, "wrong-key").await;
    assert!(bad.html.contains(MAXMA_BAD_KEY_TITLE), "{}", bad.html);
    // …is on the second's.
    let page = get_page(&w.settings_url_on(&second, ACCOUNT_A, true, "ru_RU")).await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(
        recent_card(&page).contains(MAXMA_BAD_KEY_TITLE),
        "{}",
        page.html
    );

    // Connected, the account's LoyaltyAPI calls fail on the first instance while MAXMA is
    // down (other phones each time: answers are cached).
    let token = connect_maxma(&w, ACCOUNT_A, &session).await;
    w.maxma.set_fault(Some(Fault::Http500));
    for i in 0..5 {
        let (status, _) = w.search_for(&token, &format!("+7999000007{i}")).await;
        assert!(status >= 500, "{status}");
    }
    w.maxma.set_fault(None);
    // The first failure is written at once, in the background: the second lists it in a moment.
    let mut listed = String::new();
    // (A few tries only: each opening is a context exchange, 10 per client address at once.)
    for _ in 0..6 {
        let page = get_page(&w.settings_url_on(&second, ACCOUNT_A, true, "ru_RU")).await;
        listed = recent_card(&page).to_owned();
        if listed.contains("counterparty.search → 50") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(listed.contains("counterparty.search → 50"), "{listed}");
    // The repeats (five failed calls, fewer kinds of failure) were not one write each: they are
    // counted, and written together once their account's 5 s wait is over.
    tokio::time::sleep(loyalty_bridge::app::recent::WRITE_EVERY + Duration::from_millis(1500))
        .await;
    let page = get_page(&w.settings_url_on(&second, ACCOUNT_A, true, "ru_RU")).await;
    let listed = recent_card(&page);
    assert!(listed.contains("class=\"times\">×"), "{listed}");
    assert!(listed.contains(MAXMA_BAD_KEY_TITLE), "{listed}");
}
