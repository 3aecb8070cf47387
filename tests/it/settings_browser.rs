//! The settings page driven in a real headless Chromium through chromedriver (WebDriver), framed
//! by the MoySklad sandbox's page as MoySklad's UI frames it (so the page's CSP
//! `frame-ancestors` and the cookie-less sessions are exercised for real): install → open with a
//! context key → choose MAXMA → a wrong key is refused with MAXMA's error, the right one passes
//! → save → MoySklad received `PUT …/loyalty` with a token that serves LoyaltyAPI calls; a
//! forged CSRF token and a reused context key are refused; a non-admin sees a read-only page;
//! Suspend → refused, Resume → served. Screenshots in both languages go to
//! `<target>/screenshots/settings-{ru,en}.png`.
//!
//! Needs Debian's `chromium` and `chromium-driver`; without them the test prints `SKIPPED`,
//! unless `LB_REQUIRE_BROWSER=1` (as `.ci/run` sets), when it fails.

use crate::common;

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::moysklad::{ACCOUNT_A, AppWorld, MAXMA_KEY};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

/// How long the page may take to show what a step waits for.
const WAIT: Duration = Duration::from_secs(20);

fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Ok(path) = std::env::var(env) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    names.iter().find_map(|name| {
        dirs.iter()
            .map(|d| d.join(name))
            .chain([Path::new("/usr/bin").join(name)])
            .find(|p| p.is_file())
    })
}

/// Chromium and chromedriver, or `None` (skipped, saying why) unless `LB_REQUIRE_BROWSER=1`.
fn browser_programs() -> Option<(PathBuf, PathBuf)> {
    let chromium = find_program("LB_CHROMIUM", &["chromium", "chromium-browser"]);
    let driver = find_program("LB_CHROMEDRIVER", &["chromedriver"]);
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        (c, d) => {
            let missing = [("chromium", c.is_none()), ("chromedriver", d.is_none())]
                .iter()
                .filter(|(_, gone)| *gone)
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(" and ");
            assert!(
                std::env::var("LB_REQUIRE_BROWSER").as_deref() != Ok("1"),
                "LB_REQUIRE_BROWSER=1 but {missing} not found (apt-get install chromium chromium-driver)"
            );
            eprintln!(
                "SKIPPED: settings page browser test ({missing} not found; apt-get install chromium chromium-driver)"
            );
            None
        }
    }
}

/// chromedriver on a free port, stopped when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver(program: &Path) -> Driver {
    let port = StdListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(program)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    let until = Instant::now() + Duration::from_secs(20);
    loop {
        let ready = common::client()
            .get(format!("{}/status", driver.url))
            .send()
            .await;
        if let Ok(r) = ready
            && r.status().is_success()
        {
            return driver;
        }
        assert!(Instant::now() < until, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn connect(driver: &Driver, chromium: &Path, profile: &Path) -> Client {
    let capabilities = json!({
        "goog:chromeOptions": {
            "binary": chromium.display().to_string(),
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1000,1250", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
            ],
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .expect("WebDriver session")
}

/// Waits until the element `css` exists and its text contains `wanted`; returns the text.
async fn wait_text(browser: &Client, css: &str, wanted: &str) -> String {
    let until = Instant::now() + WAIT;
    let mut last = String::new();
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
        {
            if text.contains(wanted) {
                return text;
            }
            last = text;
        }
        if Instant::now() > until {
            let source = browser.source().await.unwrap_or_default();
            panic!("{css} never showed {wanted:?} (last: {last:?})\n{source}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens the MoySklad sandbox's frame page and enters the settings page's iframe.
async fn open_framed(browser: &Client, url: &str) {
    browser.goto(url).await.unwrap();
    let frame = browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("iframe#app"))
        .await
        .unwrap();
    frame.enter_frame().await.unwrap();
    wait_text(browser, "#state", "").await;
}

/// Clicks a submit button after removing the last notice, so the next notice is the answer.
async fn press(browser: &Client, button: &str) {
    browser
        .execute(
            "var n = document.getElementById('notice'); if (n) { n.remove(); }",
            vec![],
        )
        .await
        .unwrap();
    browser
        .find(Locator::Id(button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn type_into(browser: &Client, id: &str, text: &str) {
    let field = browser.find(Locator::Id(id)).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

fn screenshot_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let dir = target.join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn save_screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = screenshot_dir().join(name);
    std::fs::write(&path, png).unwrap();
    eprintln!("screenshot: {}", path.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_page_in_a_real_browser() {
    let Some((chromium, chromedriver)) = browser_programs() else {
        return;
    };
    let w = AppWorld::start().await;
    w.install(ACCOUNT_A).await;
    let driver = start_driver(&chromedriver).await;
    let profile = tempfile::tempdir().unwrap();
    let browser = connect(&driver, &chromium, profile.path()).await;
    let outcome = flow(&w, &browser).await;
    let _ = browser.close().await;
    drop(driver);
    outcome.unwrap();
}

/// The whole flow; `Err` only for WebDriver failures (assertions panic).
async fn flow(w: &AppWorld, browser: &Client) -> Result<(), fantoccini::error::CmdError> {
    // An admin opens the settings, framed as in MoySklad (the CSP lets the sandbox frame it).
    open_framed(browser, &w.frame_url(ACCOUNT_A, true, "ru_RU")).await;
    wait_text(browser, "#state", "Требуются настройки").await;
    let mapping = browser.find(Locator::Id("mapping")).await?;
    mapping.select_by_value("maxma").await?;
    // The script shows the chosen vendor's fields only.
    let uds_field = browser.find(Locator::Id("cred-uds-api_key")).await?;
    assert!(
        !uds_field.is_displayed().await?,
        "other vendors' fields hidden"
    );
    assert!(
        browser
            .find(Locator::Id("cred-maxma-api_key"))
            .await?
            .is_displayed()
            .await?
    );

    // A wrong key: MAXMA's refusal, in the words the cashier would read.
    type_into(browser, "cred-maxma-api_key", "wrong-key").await;
    press(browser, "check").await;
    let refused = wait_text(browser, "#notice.error", "Неверный ключ доступа к MAXMA").await;
    assert!(refused.contains("api_key"), "{refused}");
    wait_text(browser, "#recent", "Неверный ключ доступа к MAXMA").await;

    // The right key: accepted.
    browser
        .find(Locator::Id("mapping"))
        .await?
        .select_by_value("maxma")
        .await?;
    type_into(browser, "cred-maxma-api_key", MAXMA_KEY).await;
    press(browser, "check").await;
    wait_text(browser, "#notice.success", "приняла доступ").await;
    assert_eq!(w.loyalty_settings(ACCOUNT_A), None, "a check saves nothing");

    // Save: MoySklad receives PUT …/loyalty with a token, and the account is Activated.
    type_into(browser, "cred-maxma-api_key", MAXMA_KEY).await;
    browser
        .find(Locator::Id("search-external"))
        .await?
        .click()
        .await?;
    press(browser, "save").await;
    wait_text(browser, "#notice.success", "Подключено").await;
    wait_text(browser, "#state", "Подключено").await;
    let loyalty = w
        .loyalty_settings(ACCOUNT_A)
        .expect("PUT …/loyalty received");
    assert_eq!(loyalty["url"], json!(w.bridge.url()));
    assert_eq!(loyalty["externalSearch"], json!(true));
    let token = loyalty["token"].as_str().unwrap().to_owned();
    let source = browser.source().await?;
    assert!(
        !source.contains(&token) && !source.contains(MAXMA_KEY),
        "no secret in the page"
    );
    // That token authenticates MoySklad's LoyaltyAPI calls.
    let found = w.search_until(&token, 200).await;
    assert_eq!(found["rows"][0]["phone"], json!("+79990000001"), "{found}");
    save_screenshot(browser, "settings-ru.png").await;

    // A forged CSRF token: refused.
    browser
        .execute(
            "document.querySelector('input[name=csrf]').value = '0'.repeat(64);",
            vec![],
        )
        .await?;
    press(browser, "check").await;
    wait_text(browser, "h1", "Запрос отклонён").await;

    // A reused context key (MoySklad's URL opened twice): refused.
    let url = w.settings_url(ACCOUNT_A, true, "ru_RU");
    browser.enter_parent_frame().await?;
    browser.goto(&url).await?;
    wait_text(browser, "#state", "Подключено").await;
    browser.goto(&url).await?;
    wait_text(browser, "h1", "Ссылка устарела").await;

    // English, for an admin: the connected state, the stored key shown as set.
    open_framed(browser, &w.frame_url(ACCOUNT_A, true, "en_US")).await;
    wait_text(browser, "#state", "Connected").await;
    wait_text(browser, "h1", "Loyalty program connection").await;
    let placeholder = browser
        .find(Locator::Id("cred-maxma-api_key"))
        .await?
        .attr("placeholder")
        .await?;
    assert_eq!(placeholder.as_deref(), Some("set — leave empty to keep"));
    save_screenshot(browser, "settings-en.png").await;

    // A non-admin: read-only, no form.
    open_framed(browser, &w.frame_url(ACCOUNT_A, false, "ru_RU")).await;
    wait_text(browser, "#read-only", "только администратор").await;
    assert!(browser.find(Locator::Id("settings-form")).await.is_err());

    // Suspend → MoySklad's calls refused and the page says so; Resume → served again.
    assert_eq!(w.moysklad.suspend(w.bridge.url(), ACCOUNT_A).await, 200);
    let (status, body) = w.search(&token).await;
    assert_eq!(status, 403, "{body}");
    open_framed(browser, &w.frame_url(ACCOUNT_A, true, "ru_RU")).await;
    wait_text(browser, "#state", "Приостановлено").await;
    wait_text(browser, "#inactive", "приостановлено").await;
    let (status, body) = w.moysklad.resume(w.bridge.url(), ACCOUNT_A).await;
    assert_eq!((status, body), (200, json!({"status": "Activated"})));
    w.search_until(&token, 200).await;
    Ok(())
}
