//! Doors a stranger or one tenant could hold shut (issue #24): silent and idle connections,
//! one tenant's flood against another's checkout, hyper's own error answers. Each test
//! reproduces the attack against a bridge on the MAXMA emulator and failed before the fix.
//! They are timing-sensitive, so they run one at a time.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    API_KEY_A, MaxmaWorld, ServedEmulator, TOKEN_A, TOKEN_B, TestBridge, TestTenant, client,
};
use emulators::maxma::{Fault, MaxmaSandbox};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// h2c's connection preface and an empty SETTINGS frame: an h2 client that then says nothing.
const H2_PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

fn recalc_body(customer: &str) -> Value {
    json!({
        "retailStore": {"meta": {"href": "https://api.moysklad.ru/api/remap/1.2/entity/retailstore/s1", "id": "s1"}, "name": "Касса 1"},
        "agent": {"meta": {"id": customer}, "phone": "+79990000001"},
        "positions": [{"assortment": {"meta": {"id": "sku-1"}}, "quantity": 1, "price": 199.90}],
        "bonusProgram": {"transactionType": "EARNING"}
    })
}

async fn recalc(bridge: &str, token: &str, customer: &str) -> (reqwest::StatusCode, Duration) {
    recalc_with(&client(), bridge, token, customer).await
}

/// A recalc on `http`'s (kept-alive) connection, and how long it took.
async fn recalc_with(
    http: &reqwest::Client,
    bridge: &str,
    token: &str,
    customer: &str,
) -> (reqwest::StatusCode, Duration) {
    let started = Instant::now();
    let response = http
        .post(format!("{bridge}/retaildemand/recalc"))
        .header("Lognex-Discount-API-Auth-Token", token)
        .header("content-type", "application/json")
        .body(recalc_body(customer).to_string())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let _ = response.bytes().await.unwrap();
    (status, started.elapsed())
}

/// Whether the server closed `conn` (EOF or reset) within `within`.
async fn closed_within(conn: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {} // h2's SETTINGS, GOAWAY: read on
        }
    }
}

/// `max_connections + 50` connections that send nothing and 50 h2c ones that go idle after
/// their preface: a new connection's recalc and `/healthz` are still answered within a second
/// (the longest idle connections are closed to admit it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_do_not_lock_out_a_new_one() {
    let _alone = common::alone().lock().await;
    const MAX: usize = 100;
    let w = MaxmaWorld::start_with(MaxmaSandbox::with_demo_data(API_KEY_A), |bridge, shop| {
        bridge
            .server(format!("max_connections = {MAX}"))
            .tenant(shop)
    })
    .await;
    let (bridge, addr) = (w.url(), w.addr());
    let mut held = Vec::new();
    for _ in 0..MAX + 50 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    for _ in 0..50 {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        conn.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
        held.push(conn);
    }

    let (status, took) = recalc(bridge, TOKEN_A, "c-1").await;
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "recalc answered in {took:?}");
    let started = Instant::now();
    let health = client()
        .get(format!("{bridge}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "/healthz answered in {:?}",
        started.elapsed()
    );
    // The attacker's oldest connections were the ones closed.
    assert!(closed_within(&mut held[0], Duration::from_millis(500)).await);
}

/// A connection that completes no request head within `header_read_timeout_ms` is closed,
/// whether it says nothing at all (HTTP/1 or h2 not yet known) or only h2c's preface; an h2c
/// connection that served a request is closed once idle for `idle_timeout_ms`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_connections_are_closed_in_time() {
    let _alone = common::alone().lock().await;
    let w = MaxmaWorld::start_with(MaxmaSandbox::with_demo_data(API_KEY_A), |bridge, shop| {
        bridge
            .server("header_read_timeout_ms = 300\nidle_timeout_ms = 600")
            .tenant(shop)
    })
    .await;
    let (bridge, addr) = (w.url(), w.addr());

    let mut silent = TcpStream::connect(&addr).await.unwrap();
    let mut preface_only = TcpStream::connect(&addr).await.unwrap();
    preface_only
        .write_all(H2_PREFACE_AND_SETTINGS)
        .await
        .unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
    assert!(closed_within(&mut preface_only, Duration::from_secs(2)).await);
    assert!(started.elapsed() >= Duration::from_millis(250));

    // h2c with prior knowledge: one request, then idle.
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let answer = h2.get(format!("{bridge}/healthz")).send().await.unwrap();
    assert_eq!(answer.version(), reqwest::Version::HTTP_2);
    // Still open well past the header timeout: it served a request, so the idle limit applies.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = h2.get(format!("{bridge}/healthz")).send().await.unwrap();
    assert_eq!(again.status(), 200);
    // The same, but by hand, to see the server close it.
    let mut raw = TcpStream::connect(&addr).await.unwrap();
    raw.write_all(H2_PREFACE_AND_SETTINGS).await.unwrap();
    // HEADERS (stream 1, END_STREAM | END_HEADERS): GET /healthz, literal fields unindexed.
    let mut block = Vec::new();
    for (name, value) in [
        (":method", "GET"),
        (":scheme", "http"),
        (":path", "/healthz"),
        (":authority", "bridge"),
    ] {
        block.push(0x00);
        block.push(name.len() as u8);
        block.extend_from_slice(name.as_bytes());
        block.push(value.len() as u8);
        block.extend_from_slice(value.as_bytes());
    }
    let mut frame = vec![0, 0, block.len() as u8, 0x01, 0x05, 0, 0, 0, 1];
    frame.extend_from_slice(&block);
    raw.write_all(&frame).await.unwrap();
    let served_at = Instant::now();
    assert!(closed_within(&mut raw, Duration::from_secs(3)).await);
    let idle = served_at.elapsed();
    assert!(
        idle >= Duration::from_millis(500),
        "closed after {idle:?}, before the idle limit"
    );
}

/// Every connection busy with a request: a new one waits in the accept queue (not answered,
/// not refused) and is served once one of them is done.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_connections_are_not_closed_to_admit_new_ones() {
    let _alone = common::alone().lock().await;
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let w = MaxmaWorld::start_with(sandbox.clone(), |bridge, shop| {
        bridge.server("max_connections = 2").tenant(shop)
    })
    .await;
    let bridge = w.url().to_string();
    // The readiness check's connection closes with its client: let it go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    sandbox.set_fault(Some(Fault::Delay(Duration::from_millis(1500))));
    let busy: Vec<_> = (0..2)
        .map(|i| {
            let bridge = bridge.clone();
            tokio::spawn(async move { recalc(&bridge, TOKEN_A, &format!("c-{i}")).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = TcpStream::connect(w.addr()).await.unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: bridge\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    let waited = tokio::time::timeout(Duration::from_millis(500), third.read(&mut buf)).await;
    assert!(waited.is_err(), "a third connection was served at once");
    let n = tokio::time::timeout(Duration::from_secs(5), third.read(&mut buf))
        .await
        .expect("served once a connection was free")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    for call in busy {
        assert_eq!(call.await.unwrap().0, 200);
    }
}

/// While a connection waits for room, HTTP/1 answers end their connection (`Connection:
/// close`), making room cleanly instead of leaving an idle kept-alive connection to be closed
/// under a client that may be sending its next request on it (a burst of 2,000 recalcs lost
/// some that way). With room to spare, connections are kept alive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_close_their_connection_while_another_waits_for_room() {
    let _alone = common::alone().lock().await;
    let sandbox = MaxmaSandbox::with_demo_data(API_KEY_A);
    let w = MaxmaWorld::start_with(sandbox.clone(), |bridge, shop| {
        bridge.server("max_connections = 1").tenant(shop)
    })
    .await;
    let bridge = w.url().to_string();
    // The readiness check's connection closes with its client: let it go.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let http = client();
    let send = |customer: &'static str| {
        http.post(format!("{bridge}/retaildemand/recalc"))
            .header("Lognex-Discount-API-Auth-Token", TOKEN_A)
            .header("content-type", "application/json")
            .body(recalc_body(customer).to_string())
            .send()
    };
    let calm = send("c-1").await.unwrap();
    assert_eq!(calm.status(), 200);
    assert_eq!(calm.headers().get("connection"), None, "kept alive");
    let _ = calm.bytes().await.unwrap();

    sandbox.set_fault(Some(Fault::Delay(Duration::from_millis(1000))));
    let busy = tokio::spawn(send("c-2"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut waiting = TcpStream::connect(w.addr()).await.unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: bridge\r\n\r\n")
        .await
        .unwrap();
    let answer = busy.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..]),
        "the answer given while a connection waited ends its connection"
    );
    let mut buf = [0u8; 512];
    let n = tokio::time::timeout(Duration::from_secs(5), waiting.read(&mut buf))
        .await
        .expect("the waiting connection is served once the other closed")
        .unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    // Once a connection finds room at once, connections are kept alive again.
    drop(waiting);
    tokio::time::sleep(Duration::from_millis(300)).await;
    sandbox.set_fault(None);
    let calm_again = send("c-3").await.unwrap();
    assert_eq!(calm_again.status(), 200);
    assert_eq!(calm_again.headers().get("connection"), None, "kept alive");
}

/// Two tenants on their own MAXMA emulators: A's behind `a_vendor`, B's behind `b_vendor`, with
/// `max_in_flight` turns (three quarters of them each tenant's share). A's mapping waits a
/// minute for its vendor (MAXMA's waits 5 s), and so does the bridge for a request and its body:
/// whatever A starts holds for the whole test.
async fn two_tenant_bridge(
    a_vendor: &str,
    b_vendor: &str,
    max_in_flight: usize,
) -> (TestBridge, tempfile::TempDir) {
    let limits = "limits = { requests_per_second = 1000, burst = 1000 }";
    let dir = tempfile::tempdir().unwrap();
    let patient = dir.path().join("maxma-patient.toml");
    let maxma = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/maxma.toml"),
    )
    .unwrap();
    assert!(maxma.contains("\ntimeout_ms = 5000\n"));
    std::fs::write(
        &patient,
        maxma.replace("\ntimeout_ms = 5000\n", "\ntimeout_ms = 60000\n"),
    )
    .unwrap();
    let bridge = TestBridge::builder()
        .server(format!(
            "request_timeout_ms = 60000\nbody_read_timeout_ms = 60000\nmax_in_flight = {max_in_flight}"
        ))
        .tenant(
            TestTenant::maxma(a_vendor)
                .name("shop-a")
                .mapping(&patient)
                .keys(limits),
        )
        .tenant(
            TestTenant::maxma(b_vendor)
                .name("shop-b")
                .token(TOKEN_B)
                .keys(limits),
        )
        .start()
        .await;
    (bridge, dir)
}

/// `n` recalcs of tenant B, one after another on its till's kept-alive connection, each
/// answered 200 within `blocked` (else B waited for A's turns): how long each took, sorted.
async fn b_checkouts(
    till_b: &reqwest::Client,
    bridge: &str,
    n: usize,
    blocked: Duration,
) -> Vec<Duration> {
    let mut took = Vec::with_capacity(n);
    for i in 0..n {
        let call = recalc_with(till_b, bridge, TOKEN_B, "c-b");
        let (status, t) = tokio::time::timeout(blocked, call)
            .await
            .unwrap_or_else(|_| {
                panic!("tenant B's checkout {i} waited over {blocked:?} (after {took:?})")
            });
        assert_eq!(status, 200);
        took.push(t);
    }
    took.sort();
    took
}

/// Waits (at most 30 s) until `count` is above 0 and has not changed for a second.
async fn settled(count: impl Fn() -> usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = (count(), Instant::now());
    loop {
        assert!(
            Instant::now() < deadline,
            "still growing after 30 s: {}",
            last.0
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = count();
        if now != last.0 {
            last = (now, Instant::now());
        } else if now > 0 && last.1.elapsed() >= Duration::from_secs(1) {
            return now;
        }
    }
}

/// Tenant A floods: 300 h2c POSTs whose bodies never come, over 2 connections, and 150
/// recalcs its vendor answers after a minute, more than the bridge's 128 turns (of the default
/// 256, A would leave B some even without its share). Tenant B's checkout is not delayed: none
/// of its calls waits for a turn A holds, and its median stays within twice (+10 ms) its median
/// alone, measured just before on the same runtime. Relative, as a busy machine slows both
/// alike: an absolute p99 (the slowest of 60) under 50 ms failed at load ~5.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_tenants_flood_does_not_delay_another() {
    let _alone = common::alone().lock().await;
    let slow = MaxmaSandbox::with_demo_data(API_KEY_A);
    slow.set_fault(Some(Fault::Delay(Duration::from_secs(60))));
    let a_vendor = ServedEmulator::start(slow.clone()).await;
    let b_vendor = ServedEmulator::start(MaxmaSandbox::with_demo_data(API_KEY_A)).await;
    const TURNS: usize = 128;
    let (two_tenants, _mapping) = two_tenant_bridge(a_vendor.url(), b_vendor.url(), TURNS).await;
    let bridge = two_tenants.url().to_string();
    // A's calls hold their turns for a minute: a checkout of B that waits for one of them
    // shows, however busy the machine (its slowest alone, at load 9: 1.7 s).
    let blocked = Duration::from_secs(10);
    // B's till keeps its connection, as MoySklad does; its first calls warm it, B's vendor
    // connections and the mapping's paths. Then B alone, for the baseline.
    let till_b = client();
    for _ in 0..3 {
        assert_eq!(recalc_with(&till_b, &bridge, TOKEN_B, "c-b").await.0, 200);
    }
    let alone = b_checkouts(&till_b, &bridge, 60, blocked).await;

    let mut flood = Vec::new();
    for _ in 0..2 {
        let h2 = reqwest::Client::builder()
            .http2_prior_knowledge()
            .build()
            .unwrap();
        for _ in 0..150 {
            let h2 = h2.clone();
            let bridge = bridge.clone();
            flood.push(tokio::spawn(async move {
                let never = futures_never();
                let _ = h2
                    .post(format!("{bridge}/retaildemand/recalc"))
                    .header("Lognex-Discount-API-Auth-Token", TOKEN_A)
                    .header("content-type", "application/json")
                    .body(reqwest::Body::wrap_stream(never))
                    .send()
                    .await;
            }));
        }
    }
    let tills_a = client();
    for i in 0..150 {
        let (bridge, tills_a) = (bridge.clone(), tills_a.clone());
        flood.push(tokio::spawn(async move {
            let _ = recalc_with(&tills_a, &bridge, TOKEN_A, &format!("c-a-{i}")).await;
        }));
    }
    // The flood has taken hold once A's calls stop arriving at its vendor: as many as A's
    // share of the turns (96) hold theirs there, the rest wait for one.
    let at_vendor = settled(|| slow.calls("get-balance")).await;
    let flooded = b_checkouts(&till_b, &bridge, 60, blocked).await;
    for task in &flood {
        task.abort();
    }
    let median = |took: &[Duration]| took[took.len() / 2];
    assert!(
        median(&flooded) <= median(&alone) * 2 + Duration::from_millis(10),
        "tenant B's median {:?} while A floods ({at_vendor} of A's calls at its vendor), {:?} \
         alone ({flooded:?}; alone {alone:?})",
        median(&flooded),
        median(&alone)
    );
}

/// A body stream that never yields: the request's body never arrives.
fn futures_never()
-> impl tokio_stream::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + Sync + 'static {
    tokio_stream::pending()
}

/// A request head hyper itself refuses (a 600 KB URI, a header block over its limit, bytes
/// that are not HTTP) still gets a LoyaltyAPI error envelope.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hypers_own_refusals_are_envelopes() {
    let _alone = common::alone().lock().await;
    let w = MaxmaWorld::start(MaxmaSandbox::with_demo_data(API_KEY_A)).await;
    let addr = w.addr();
    let long_uri = format!(
        "GET /counterparty?search={} HTTP/1.1\r\nhost: b\r\n\r\n",
        "7".repeat(600 * 1024)
    );
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nhost: b\r\nx-junk: {}\r\n\r\n",
        "j".repeat(600 * 1024)
    );
    let cases: [(&str, Vec<u8>); 3] = [
        ("600 KB URI", long_uri.into_bytes()),
        ("600 KB header", huge_header.into_bytes()),
        (
            "not HTTP",
            b"GET / HTTP/1.1\r\nbad header line\r\n\r\n".to_vec(),
        ),
    ];
    for (what, request) in cases {
        let mut conn = TcpStream::connect(&addr).await.unwrap();
        // hyper may answer before it has read everything; a reset while writing is fine.
        let _ = conn.write_all(&request).await;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer)).await;
        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("{what}: no answer: {text:?}"));
        let status: u16 = head[9..12].parse().unwrap();
        assert!((400..500).contains(&status), "{what}: {head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("content-type: application/json"),
            "{what}: {head}"
        );
        let envelope: Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("{what}: body is not JSON ({e}): {body:?}"));
        let error = common::the_error(&envelope);
        assert_eq!(
            error["code"],
            9000 + i64::from(status),
            "{what}: {envelope}"
        );
    }
}
