//! Several bridge instances on one PostgreSQL store are one client of the vendor (issue #26):
//! a tenant's vendor rate holds across them, and a vendor's pause or a circuit-breaker opening
//! seen by one holds for all. (A store that is not shared, SQLite, keeps all of it in memory:
//! the other test files.)

use crate::common;

use std::time::{Duration, Instant};

use common::{API_KEY_A, ServedEmulator, TestBridge, TestStore, TestTenant, client, the_error};
use emulators::maxma::{Fault, MaxmaSandbox};
use reqwest::StatusCode;
use serde_json::{Value, json};

fn detail(i: usize) -> Value {
    json!({"retailStore": {"meta": {"id": "s1"}}, "meta": {"id": format!("c-{i}")}, "phone": "+79990000001"})
}

/// Two bridges on `store`, each with the MAXMA tenant of `vendor` and these `limits` keys.
async fn two_bridges(
    store: &TestStore,
    vendor: &ServedEmulator,
    limits: &str,
) -> (TestBridge, TestBridge) {
    let tenant = || TestTenant::maxma(vendor.url()).keys(limits);
    let first = TestBridge::builder()
        .store(store)
        .tenant(tenant())
        .start()
        .await;
    // The second serves only once the first counts it (it waits for the first's heartbeat).
    let second = TestBridge::builder()
        .store(store)
        .tenant(tenant())
        .start()
        .await;
    (first, second)
}

/// A response's status, its `Retry-After` in seconds (if it says one) and its JSON body;
/// `None` when there was no answer.
type Answer = Option<(StatusCode, Option<u64>, Value)>;

/// POSTs `body` to `url` with the MoySklad token `token` (owned: it is spawned).
async fn post_as(client: reqwest::Client, url: String, token: String, body: Value) -> Answer {
    let resp = client
        .post(url)
        .header("Lognex-Discount-API-Auth-Token", token)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .ok()?;
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok()?.parse().ok());
    let body = resp.json().await.unwrap_or(Value::Null);
    Some((status, retry_after, body))
}

/// POSTs `/counterparty/detail` to `bridge`, which answers.
async fn detail_on(bridge: &TestBridge, i: usize) -> (StatusCode, Option<u64>, Value) {
    let url = bridge.url_of("/counterparty/detail");
    post_as(client(), url, bridge.token().to_owned(), detail(i))
        .await
        .expect("an answer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_keep_one_vendor_rate() {
    let Some(store) = TestStore::postgres().await else {
        return;
    };
    // It counts the turns refilled while the calls ran.
    let _alone = common::alone().lock().await;
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let vendor = ServedEmulator::start(sandbox.clone()).await;
    let limits = "limits = { requests_per_second = 1, burst = 4, max_wait_ms = 0 }";
    let (first, second) = two_bridges(&store, &vendor, limits).await;
    // All at once, half to each: alone, each instance would let its burst of 4 through.
    let started = Instant::now();
    let calls: Vec<_> = (0..16)
        .map(|i| {
            let bridge = if i % 2 == 0 { &first } else { &second };
            let url = bridge.url_of("/counterparty/detail");
            tokio::spawn(post_as(client(), url, bridge.token().to_owned(), detail(i)))
        })
        .collect();
    let (mut answered, mut refused) = (0, 0);
    for call in calls {
        let (status, retry_after, body) = call.await.unwrap().expect("an answer");
        match status {
            StatusCode::OK => answered += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                assert!(retry_after.is_some(), "a 429 says when to come back");
                assert_eq!(the_error(&body)["code"], 9429, "{body}");
                refused += 1;
            }
            other => panic!("{other}: {body}"),
        }
    }
    // One burst of 4 for both, plus one turn a second for as long as the calls took.
    let allowed = 4 + started.elapsed().as_secs_f64().ceil() as usize;
    let vendor_calls = sandbox.calls("get-balance");
    assert!(
        vendor_calls <= allowed && answered <= allowed,
        "{vendor_calls} calls reached MAXMA and {answered} were answered, {allowed} allowed"
    );
    assert_eq!(answered + refused, 16);
    assert!(answered >= 4, "the burst goes through: {answered}");
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vendor_pause_seen_by_one_instance_holds_for_the_other() {
    let Some(store) = TestStore::postgres().await else {
        return;
    };
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let vendor = ServedEmulator::start(sandbox.clone()).await;
    // Calls may wait 100 ms: far less than the pause the vendor asks for.
    let (first, second) = two_bridges(&store, &vendor, "limits = { max_wait_ms = 100 }").await;
    sandbox.set_fault(Some(Fault::TooManyRequests {
        retry_after: Some("3".into()),
    }));
    let started = Instant::now();
    let (status, _, body) = detail_on(&first, 1).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(sandbox.calls("get-balance"), 1);
    sandbox.set_fault(None);
    // The other instance reads the running pauses every 250 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (status, retry_after, body) = detail_on(&second, 2).await;
    assert!(started.elapsed() < Duration::from_millis(2_500));
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(the_error(&body)["code"], 9429, "{body}");
    assert!(
        matches!(retry_after, Some(1..=3)),
        "Retry-After {retry_after:?}"
    );
    assert_eq!(sandbox.calls("get-balance"), 1, "the vendor was not called");
    // Once the pause is over, both call again.
    tokio::time::sleep(Duration::from_millis(3_100).saturating_sub(started.elapsed())).await;
    assert_eq!(detail_on(&second, 3).await.0, StatusCode::OK);
    assert_eq!(detail_on(&first, 4).await.0, StatusCode::OK);
    first.stop().await;
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_breaker_opened_on_one_instance_opens_on_the_other() {
    let Some(store) = TestStore::postgres().await else {
        return;
    };
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let vendor = ServedEmulator::start(sandbox.clone()).await;
    let limits = "limits = { breaker_failures = 2, breaker_open_ms = 5000 }";
    let (first, second) = two_bridges(&store, &vendor, limits).await;
    sandbox.set_fault(Some(Fault::Http500));
    for i in 0..2 {
        let (status, _, body) = detail_on(&first, i).await;
        assert!(status.is_server_error(), "{status} {body}");
    }
    let failing = sandbox.calls("get-balance");
    sandbox.set_fault(None);
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The vendor is back, but the breaker the first opened holds the second's calls too.
    let (status, _, body) = detail_on(&second, 10).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(
        sandbox.calls("get-balance"),
        failing,
        "the vendor was not called"
    );
    first.stop().await;
    second.stop().await;
}

/// The world of issue #26: three bridge processes on one PostgreSQL in front of a MAXMA that
/// answers at most the tenant's rate plus its burst (20 + 5) in each second — as a
/// rate-limiting proxy in front of a vendor would, with one call of slack for the network's
/// jitter — and counts the calls of every second. 300 requests a second are offered across the
/// instances for 6 s, one in ten a sale; one instance is killed with SIGKILL halfway. The
/// vendor is never over its limit (so never answers 429: none leaks through), the callers get
/// 429 envelopes instead, and every sale — repeated as MoySklad repeats one that got no 201 —
/// reaches MAXMA exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_keep_the_vendor_limit_and_lose_no_sale_when_one_is_killed() {
    use crate::crash::{
        ENV, PHONE, TOKEN, confirmed, maxma_with_customer, post_sale, sale, write_config,
    };
    use common::BridgeProcess;

    const RATE: usize = 20;
    const BURST: usize = 5;
    let Some(store) = TestStore::postgres().await else {
        return;
    };
    let _alone = common::alone().lock().await;
    let (sandbox, vendor) = maxma_with_customer().await;
    let dir = tempfile::tempdir().unwrap();
    let limits = format!(
        "requests_per_second = {RATE}, burst = {BURST}, max_wait_ms = 100, breaker_failures = 1000"
    );
    let config = write_config(dir.path(), &store, &vendor, &limits);
    let env = ENV;
    // One after the other: each serves once the others count it.
    let mut bridges: Vec<Option<BridgeProcess>> = (0..3)
        .map(|_| Some(BridgeProcess::start(&config, &env)))
        .collect();
    let addrs: Vec<String> = bridges.iter().flatten().map(|b| b.addr.clone()).collect();
    loyalty_bridge::upstream::install_crypto();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    sandbox.set_call_limit(Some(RATE + BURST + 1));

    // 100 ticks a second, each one request to every instance still running.
    let started = Instant::now();
    let mut calls = Vec::new();
    let mut sales = Vec::new();
    let mut killed = false;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for n in 0..600usize {
        tick.tick().await;
        if n == 300 {
            bridges[1].take().unwrap().kill_9();
            killed = true;
        }
        for (i, addr) in addrs.iter().enumerate() {
            if killed && i == 1 {
                continue;
            }
            let token = TOKEN.to_owned();
            if (n + i) % 10 == 0 {
                let id = format!("c0000000-0000-4000-8000-{:012}", sales.len());
                sales.push(id.clone());
                let url = format!("http://{addr}/retaildemand");
                let answer = post_as(client.clone(), url, token, sale(&id));
                calls.push(tokio::spawn(async move { (Some(id), answer.await) }));
            } else {
                let url = format!("http://{addr}/counterparty/detail");
                let answer = post_as(client.clone(), url, token, detail(n));
                calls.push(tokio::spawn(async move { (None, answer.await) }));
            }
        }
    }
    let offered_for = started.elapsed();
    let mut recorded = std::collections::BTreeSet::new();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for call in calls {
        let (sale_id, answer) = call.await.unwrap();
        let Some((status, retry_after, body)) = answer else {
            continue; // the killed instance's
        };
        *by_status.entry(status.as_u16()).or_default() += 1;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(
                retry_after.is_some(),
                "a 429 says when to come back: {body}"
            );
            assert_eq!(the_error(&body)["code"], 9429, "{body}");
        }
        if let (Some(id), StatusCode::CREATED) = (sale_id, status) {
            recorded.insert(id);
        }
    }
    let per_second = sandbox.calls_per_second();
    assert_eq!(
        sandbox.refused_over_limit(),
        0,
        "the vendor had to refuse calls: {per_second:?}"
    );
    assert!(
        per_second.iter().all(|&n| n <= RATE + BURST + 1),
        "calls a second at the vendor: {per_second:?}"
    );
    assert!(
        by_status.get(&429).copied().unwrap_or(0) > 1_000,
        "most of the offered load is refused with 429: {by_status:?} in {offered_for:?}"
    );

    // MoySklad repeats every sale that got no 201 until it does (at the instances still up).
    sandbox.set_call_limit(None);
    let live: Vec<&String> = addrs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, a)| a)
        .collect();
    let until = Instant::now() + Duration::from_secs(90);
    let mut pending: Vec<String> = sales
        .iter()
        .filter(|id| !recorded.contains(*id))
        .cloned()
        .collect();
    let mut round = 0;
    while !pending.is_empty() {
        assert!(Instant::now() < until, "not recorded in time: {pending:?}");
        let mut still = Vec::new();
        for id in pending {
            let addr = live[round % live.len()];
            if post_sale(&client, addr, &id).await != Some(StatusCode::CREATED) {
                still.push(id);
            }
        }
        pending = still;
        round += 1;
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    // Every sale reached MAXMA, and took effect once: a confirm-ticket repeated after a kill
    // is refused by MAXMA as already processed (see crash.rs). Each sale of 200 ₽ earns 10.
    let seen = confirmed(&sandbox);
    assert_eq!(
        seen.len(),
        sales.len(),
        "{} sales, confirmed: {seen:?}",
        sales.len()
    );
    assert_eq!(
        sandbox.balance_by_phone(PHONE),
        Some(10 * sales.len() as i64),
        "{seen:?}"
    );
}

/// `deploy/several-instances/` as its systemd units start it: three processes on the one
/// `bridge.toml`, each with its own `instance-<n>.env`, and what `shared.env` holds (here: the
/// test's database, tokens and vendor key; in the file only the vendor's URL, an emulator's,
/// and the mappings' path change). Each answers; they count
/// each other (`instances` 3 on every one); one stopped as systemd stops it leaves at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_several_instances_example_runs_as_one_bridge() {
    use common::{API_KEY_A, BridgeProcess, METRICS_TOKEN, TOKEN_A};
    use std::path::Path;

    let Some(store) = TestStore::postgres().await else {
        return;
    };
    let TestStore::Postgres(database_url) = &store else {
        unreachable!("a PostgreSQL store")
    };
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let vendor = ServedEmulator::start(sandbox.clone()).await;
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/several-instances");
    // The example's file, but for the vendor (an emulator) and the mappings' place.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    let text = std::fs::read_to_string(example.join("bridge.toml")).unwrap();
    let mapping = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/maxma.toml");
    for line in [
        "base_url = \"https://api.maxma.com\"",
        "mapping = \"../../mappings/maxma.toml\"",
    ] {
        assert!(text.contains(line), "the example has {line}");
    }
    let text = text
        .replace(
            "base_url = \"https://api.maxma.com\"",
            &format!("base_url = \"{}\"", vendor.url()),
        )
        .replace(
            "mapping = \"../../mappings/maxma.toml\"",
            &format!("mapping = \"{}\"", mapping.display()),
        );
    std::fs::write(&config, text).unwrap();
    let shared = [
        ("LOYALTY_BRIDGE_DATABASE_URL", database_url.as_str()),
        ("LOYALTY_BRIDGE_TOKEN", TOKEN_A),
        ("LOYALTY_BRIDGE_METRICS_TOKEN", METRICS_TOKEN),
        ("MAXMA_API_KEY", API_KEY_A),
    ];
    let mut bridges = Vec::new();
    for n in 1..=3 {
        let file = std::fs::read_to_string(example.join(format!("instance-{n}.env"))).unwrap();
        let own: Vec<(String, String)> = file
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (k, v) = l.split_once('=').expect("KEY=value");
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let mut env: Vec<(&str, &str)> = shared.to_vec();
        env.extend(own.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        bridges.push(BridgeProcess::start(&config, &env));
    }
    let instances_seen_by = |addr: String| async move {
        let (status, text) = common::scrape(&format!("http://{addr}"), Some(METRICS_TOKEN)).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        common::sample(&text, "loyalty_bridge_instances", &[])
    };
    let until = Instant::now() + Duration::from_secs(5);
    for bridge in &bridges {
        let resp = client()
            .post(format!("http://{}/counterparty/detail", bridge.addr))
            .header("Lognex-Discount-API-Auth-Token", TOKEN_A)
            .header("content-type", "application/json")
            .body(detail(1).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        // The first ones learn of the last at their next heartbeat.
        while instances_seen_by(bridge.addr.clone()).await != 3.0 {
            assert!(Instant::now() < until, "{} does not count 3", bridge.addr);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let stopped = bridges.pop().unwrap().terminate();
    assert!(stopped.success(), "a graceful stop: {stopped}");
    let until = Instant::now() + Duration::from_secs(3);
    for bridge in &bridges {
        while instances_seen_by(bridge.addr.clone()).await != 2.0 {
            assert!(
                Instant::now() < until,
                "{} still counts the stopped one",
                bridge.addr
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The heartbeat has a connection of its own: requests that keep every pooled connection busy
/// (here: one, waiting on a table another session locked) do not hold it up, so the other
/// instances go on counting this one and none starts limiting alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_does_not_wait_behind_busy_requests() {
    use loyalty_bridge::store::{KeyValueStore, PgStore};
    let Some(db) = common::FreshDatabase::create("heartbeat behind busy requests").await else {
        return;
    };
    let store = std::sync::Arc::new(PgStore::open(&db.url, 1).await.unwrap());
    let locker = common::connect_postgres(&db.config).await;
    locker
        .batch_execute("BEGIN; LOCK TABLE kv IN ACCESS EXCLUSIVE MODE")
        .await
        .unwrap();
    let busy = {
        let store = store.clone();
        tokio::spawn(async move { store.kv_get("t", "k", 0).await })
    };
    // The pool's one connection is now waiting on the lock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!busy.is_finished(), "the request waits on the lock");
    let beat = tokio::time::timeout(
        Duration::from_secs(2),
        loyalty_bridge::store::ClusterStore::heartbeat(&*store, "a", 1_000, 4_000),
    )
    .await;
    assert!(
        matches!(&beat, Ok(Ok(members)) if members.len() == 1),
        "the heartbeat went through while every pooled connection was busy: {beat:?}"
    );
    locker.batch_execute("COMMIT").await.unwrap();
    busy.await.unwrap().unwrap();
}
