//! Black-box tests of the LoyaltyAPI surface: the real server on 127.0.0.1:0, driven like MoySklad.

use crate::common;

use std::collections::BTreeSet;
use std::io::Write;
use std::time::{Duration, Instant};

use common::{API_KEY_A, TOKEN_A, TOKEN_B, TestBridge, TestTenant, client, fixture, the_error};
use flate2::Compression;
use flate2::write::GzEncoder;
use loyalty_bridge::loyalty::ops::Op;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN_HEADER: &str = "Lognex-Discount-API-Auth-Token";
const SEARCH_QUERY: &str =
    "?search=%2B7%20555%20123%204567&retailStoreId=2b5eb22f-139e-11e6-9464-e4de00000073";
const GIFTCARD_QUERY: &str = "?name=123456&retailStoreId=2b5eb22f-139e-11e6-9464-e4de00000073";

/// A bridge with two tenants on the mapping that maps no operation: "shop-a" ([`TOKEN_A`], with
/// an API key) and "shop-b" ([`TOKEN_B`]), and `server_keys`.
async fn start_bridge(server_keys: &str) -> TestBridge {
    TestBridge::builder()
        .server(server_keys)
        .tenant(TestTenant::unconfigured("shop-a").key(API_KEY_A))
        .tenant(TestTenant::unconfigured("shop-b").token(TOKEN_B))
        .start()
        .await
}

async fn call(
    bridge: &TestBridge,
    op: Op,
    token: Option<&str>,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let query = match op {
        Op::CounterpartySearch => SEARCH_QUERY,
        Op::GiftcardSearch => GIFTCARD_QUERY,
        _ => "",
    };
    let mut req = client().request(op.method(), bridge.url_of(&format!("{}{query}", op.path())));
    if let Some(t) = token {
        req = req.header(TOKEN_HEADER, t);
    }
    if let Some(b) = body {
        req = req
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)))
    };
    (status, value)
}

/// The answer every parsed-and-valid request gets until the mapping engine exists: proof that
/// the request got past parsing and validation.
fn assert_reached_the_operation(status: StatusCode, body: &Value, op: Op, tenant: &str) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{op}: {body}");
    let e = the_error(body);
    assert_eq!(e["code"], 9503, "{op}: {body}");
    let message = e["error_message"].as_str().unwrap();
    assert!(message.contains(tenant), "{op}: {message}");
    assert!(message.contains(op.name()), "{op}: {message}");
}

fn with_meta_id(body: &str, id: &str) -> String {
    let mut v: Value = serde_json::from_str(body).unwrap();
    v["meta"]["id"] = json!(id);
    v["meta"]["href"] = json!(format!(
        "https://api.moysklad.ru/api/remap/1.2/entity/x/{id}"
    ));
    v.to_string()
}

#[tokio::test]
async fn every_request_example_gets_past_parsing() {
    let bridge = start_bridge("").await;
    let mut covered = BTreeSet::new();
    for op in Op::ALL {
        if !op.has_body() {
            let (status, body) = call(&bridge, op, Some(TOKEN_A), None).await;
            assert_reached_the_operation(status, &body, op, "shop-a");
            covered.insert(op.name());
            continue;
        }
        let example = fixture(&format!("{}.request.json", op.name()));
        covered.insert(op.name());
        if matches!(op, Op::RetaildemandCreate | Op::RetailsalesreturnCreate) {
            // The reference examples carry an empty placeholder meta.id (SPEC.md §7): refused by name.
            let (status, body) = call(&bridge, op, Some(TOKEN_A), Some(&example)).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{op}: {body}");
            assert_eq!(the_error(&body)["parameter"], "meta.id", "{op}");
            let filled = with_meta_id(&example, "b1f4b6a8-3c2d-11ef-0a80-0d5a00000001");
            let (status, body) = call(&bridge, op, Some(TOKEN_A), Some(&filled)).await;
            assert_reached_the_operation(status, &body, op, "shop-a");
        } else {
            let (status, body) = call(&bridge, op, Some(TOKEN_A), Some(&example)).await;
            assert_reached_the_operation(status, &body, op, "shop-a");
        }
    }
    assert_eq!(covered.len(), 9);
    bridge.stop().await;
}

/// The reference corpus (LoyaltyAPI examples, UDS's OpenAPI document) lives in the repository;
/// `SHA256SUMS` pins each file, so a fixture is only changed on purpose, and a file added to a
/// folder without being pinned is noticed.
#[test]
fn reference_fixtures_match_their_checksums() {
    use sha2::{Digest, Sha256};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    for folder in ["loyaltyapi", "vendor-specs"] {
        let dir = root.join(folder);
        let sums = std::fs::read_to_string(dir.join("SHA256SUMS")).unwrap();
        let mut pinned = Vec::new();
        for line in sums.lines() {
            let (sum, name) = line.split_once("  ").expect("`<sha256>  <name>` lines");
            let bytes = std::fs::read(dir.join(name)).unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                sum,
                "{folder}/{name} changed"
            );
            pinned.push(name.to_owned());
        }
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            let unpinned_kind = name.ends_with(".json") || name.ends_with(".yaml");
            assert!(
                !unpinned_kind || pinned.contains(&name),
                "{folder}/{name} is not in SHA256SUMS"
            );
        }
    }
}

#[tokio::test]
async fn auth_missing_wrong_and_per_tenant() {
    let bridge = start_bridge("").await;
    let recalc = fixture("retaildemand.recalc.request.json");

    let (status, body) = call(&bridge, Op::RetaildemandRecalc, None, Some(&recalc)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(the_error(&body)["code"], 9401);
    assert_eq!(the_error(&body)["error"], "Ошибка авторизации");

    for wrong in [
        "nope",
        &TOKEN_A[..TOKEN_A.len() - 1],
        &format!("{TOKEN_A}x"),
        " ",
    ] {
        let (status, body) =
            call(&bridge, Op::RetaildemandRecalc, Some(wrong), Some(&recalc)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        the_error(&body);
        assert!(!body.to_string().contains(TOKEN_A));
    }

    // Each token acts as its own tenant and never as the other.
    let (status, body) = call(
        &bridge,
        Op::RetaildemandRecalc,
        Some(TOKEN_A),
        Some(&recalc),
    )
    .await;
    assert_reached_the_operation(status, &body, Op::RetaildemandRecalc, "shop-a");
    assert!(!body.to_string().contains("shop-b"));
    let (status, body) = call(
        &bridge,
        Op::RetaildemandRecalc,
        Some(TOKEN_B),
        Some(&recalc),
    )
    .await;
    assert_reached_the_operation(status, &body, Op::RetaildemandRecalc, "shop-b");
    assert!(!body.to_string().contains("shop-a"));

    // Auth is checked before the body is even read: garbage from a stranger is still a 401.
    let (status, _) = call(
        &bridge,
        Op::RetaildemandRecalc,
        Some("nope"),
        Some("{garbage"),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    bridge.stop().await;
}

#[tokio::test]
async fn field_errors_name_their_parameter() {
    let bridge = start_bridge("").await;
    let recalc: Value = serde_json::from_str(&fixture("retaildemand.recalc.request.json")).unwrap();
    let sale: Value = serde_json::from_str(&with_meta_id(
        &fixture("retaildemand.create.request.json"),
        "s1",
    ))
    .unwrap();

    let mut cases: Vec<(Op, Value, &str)> = Vec::new();
    let mut edit = |op: Op, base: &Value, f: &dyn Fn(&mut Value), parameter: &'static str| {
        let mut v = base.clone();
        f(&mut v);
        cases.push((op, v, parameter));
    };
    use Op::{RetaildemandCreate as Sale, RetaildemandRecalc as Recalc};
    edit(
        Recalc,
        &recalc,
        &|v| v["positions"][0]["quantity"] = json!("many"),
        "positions[0].quantity",
    );
    edit(
        Recalc,
        &recalc,
        &|v| v["positions"][0]["quantity"] = json!(0),
        "positions[0].quantity",
    );
    edit(
        Recalc,
        &recalc,
        &|v| v["positions"][0]["price"] = json!(-1),
        "positions[0].price",
    );
    edit(
        Recalc,
        &recalc,
        &|v| v["positions"][0]["price"] = json!("123.45"),
        "positions[0].price",
    );
    edit(
        Recalc,
        &recalc,
        &|v| drop(v["positions"][0].as_object_mut().unwrap().remove("price")),
        "positions[0].price",
    );
    edit(
        Recalc,
        &recalc,
        &|v| {
            let p = v["positions"][0].clone();
            v["positions"] = json!([p.clone(), p.clone(), p]);
            v["positions"][2]["quantity"] = json!(null);
        },
        "positions[2].quantity",
    );
    edit(
        Recalc,
        &recalc,
        &|v| v["positions"][0]["assortment"]["meta"]["idType"] = json!("other"),
        "positions[0].assortment.meta.idType",
    );
    edit(
        Recalc,
        &recalc,
        &|v| v["positions"][0]["sn"][0]["name"] = json!(7895545),
        "positions[0].sn[0].name",
    );
    edit(
        Recalc,
        &recalc,
        &|v| v["bonusProgram"]["transactionType"] = json!("REFUND"),
        "bonusProgram.transactionType",
    );
    edit(
        Recalc,
        &recalc,
        &|v| v["preferredBonusToSpend"] = json!(-10),
        "preferredBonusToSpend",
    );
    edit(
        Recalc,
        &recalc,
        &|v| v["agent"]["sex"] = json!("OTHER"),
        "agent.sex",
    );
    edit(
        Recalc,
        &recalc,
        &|v| v["agent"]["birthDate"] = json!("14.07.2023"),
        "agent.birthDate",
    );
    edit(
        Recalc,
        &recalc,
        &|v| drop(v.as_object_mut().unwrap().remove("retailStore")),
        "retailStore",
    );
    edit(
        Recalc,
        &recalc,
        &|v| v["positions"] = json!({}),
        "positions",
    );
    edit(Sale, &sale, &|v| v["meta"]["id"] = json!(""), "meta.id");
    edit(
        Sale,
        &sale,
        &|v| drop(v["meta"].as_object_mut().unwrap().remove("id")),
        "meta.id",
    );
    edit(
        Sale,
        &sale,
        &|v| v["positions"][0]["discountPercent"] = json!(150),
        "positions[0].discountPercent",
    );
    edit(
        Sale,
        &sale,
        &|v| v["giftCards"][1]["paymentSum"] = json!("500"),
        "giftCards[1].paymentSum",
    );
    edit(Sale, &sale, &|v| v["cashSum"] = json!(-0.01), "cashSum");
    // Rubles to the kopeck, kopecks whole (issue #24).
    let fine = |text: &str| serde_json::from_str::<Value>(text).unwrap();
    edit(
        Recalc,
        &recalc,
        &|v| v["positions"][0]["price"] = fine("100.005"),
        "positions[0].price",
    );
    edit(
        Sale,
        &sale,
        &|v| v["positions"][0]["discountedPrice"] = fine("62.951"),
        "positions[0].discountedPrice",
    );
    edit(
        Sale,
        &sale,
        &|v| v["giftCards"][0]["paymentSum"] = fine("1000.5"),
        "giftCards[0].paymentSum",
    );
    // Identifiers no longer than any real one.
    edit(
        Recalc,
        &recalc,
        &|v| v["agent"]["meta"]["id"] = json!("a".repeat(129)),
        "agent.meta.id",
    );
    edit(
        Sale,
        &sale,
        &|v| v["agent"]["discountCardNumber"] = json!("1".repeat(256)),
        "agent.discountCardNumber",
    );
    for (op, body, parameter) in cases {
        let (status, answer) = call(&bridge, op, Some(TOKEN_A), Some(&body.to_string())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{parameter}: {answer}");
        let e = the_error(&answer);
        assert_eq!(e["parameter"], parameter, "{answer}");
        assert_eq!(e["code"], 999);
    }

    // Query parameters of the GETs.
    let mut cases = Vec::new();
    for (path, parameter) in [
        ("/counterparty?retailStoreId=r", "search"),
        ("/counterparty?search=&retailStoreId=r", "search"),
        ("/counterparty?search=x", "retailStoreId"),
        ("/giftcard?retailStoreId=r", "name"),
        ("/giftcard?name=1", "retailStoreId"),
    ] {
        cases.push((path.to_string(), parameter));
    }
    let long = |n: usize| "%D0%B6".repeat(n); // "ж", percent-encoded
    cases.push((
        format!("/counterparty?search={}&retailStoreId=r", long(256)),
        "search",
    ));
    cases.push((
        format!("/giftcard?name={}&retailStoreId=r", long(256)),
        "name",
    ));
    cases.push((
        format!("/giftcard?name=1&retailStoreId={}", long(129)),
        "retailStoreId",
    ));
    for (path, parameter) in cases {
        let resp = client()
            .get(bridge.url_of(&path))
            .header(TOKEN_HEADER, TOKEN_A)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{path}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(the_error(&body)["parameter"], parameter, "{path}");
    }
    bridge.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_a_400_envelope() {
    let bridge = start_bridge("").await;
    let bodies: [&[u8]; 8] = [
        b"",
        b"not json",
        b"{\"retailStore\":",
        b"\xff\xfe\x00{",
        b"[]",
        b"null",
        b"\"text\"",
        b"{}{}",
    ];
    for body in bodies {
        for op in [
            Op::RetaildemandRecalc,
            Op::CounterpartyCreate,
            Op::RetailsalesreturnCreate,
        ] {
            let resp = client()
                .post(bridge.url_of(op.path()))
                .header(TOKEN_HEADER, TOKEN_A)
                .body(body.to_vec())
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{op} {body:?}");
            assert!(
                resp.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("application/json")
            );
            the_error(&resp.json().await.unwrap());
        }
    }
    // Deep nesting is refused by the parser's recursion limit, not by a stack overflow.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let (status, body) = call(&bridge, Op::RetaildemandRecalc, Some(TOKEN_A), Some(&deep)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    the_error(&body);
    let deep = format!(
        "{{\"agent\":{}1{}}}",
        "{\"a\":".repeat(10_000),
        "}".repeat(10_000)
    );
    let (status, body) = call(&bridge, Op::RetaildemandRecalc, Some(TOKEN_A), Some(&deep)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    the_error(&body);
    bridge.stop().await;
}

#[tokio::test]
async fn body_limit_is_enforced_with_413() {
    let bridge = start_bridge("max_body_bytes = 4096").await;
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(5000));
    // With Content-Length.
    let (status, body) = call(&bridge, Op::RetaildemandRecalc, Some(TOKEN_A), Some(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(the_error(&body)["code"], 9413);
    // Chunked, no Content-Length.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = big
        .as_bytes()
        .chunks(1000)
        .map(|c| Ok(c.to_vec()))
        .collect();
    let resp = client()
        .post(bridge.url_of(Op::RetaildemandRecalc.path()))
        .header(TOKEN_HEADER, TOKEN_A)
        .body(reqwest::Body::wrap_stream(tokio_stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // A small gzip that inflates past the limit (a "zip bomb") is refused too.
    let bomb = gzip(format!("{{\"pad\":\"{}\"}}", " ".repeat(1_000_000)).as_bytes());
    assert!(bomb.len() < 4096);
    let resp = client()
        .post(bridge.url_of(Op::RetaildemandRecalc.path()))
        .header(TOKEN_HEADER, TOKEN_A)
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Just under the limit is fine.
    let recalc = fixture("retaildemand.recalc.request.json");
    let (status, _) = call(
        &bridge,
        Op::RetaildemandRecalc,
        Some(TOKEN_A),
        Some(&recalc),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    bridge.stop().await;
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[tokio::test]
async fn gzip_both_ways() {
    let bridge = start_bridge("").await;
    let recalc = fixture("retaildemand.recalc.request.json");
    let resp = client()
        .post(bridge.url_of(Op::RetaildemandRecalc.path()))
        .header(TOKEN_HEADER, TOKEN_A)
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .header("accept-encoding", "gzip")
        .body(gzip(recalc.as_bytes()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    // A short answer goes plain even to a caller that accepts gzip (tests/it/maxma.rs has a long
    // one compressed).
    assert!(resp.headers().get("content-encoding").is_none());
    let body: Value = resp.json().await.unwrap();
    assert_reached_the_operation(
        StatusCode::SERVICE_UNAVAILABLE,
        &body,
        Op::RetaildemandRecalc,
        "shop-a",
    );

    // Without Accept-Encoding the answer is plain; broken gzip and unknown codings are refused.
    let resp = client()
        .post(bridge.url_of(Op::RetaildemandRecalc.path()))
        .header(TOKEN_HEADER, TOKEN_A)
        .header("content-encoding", "gzip")
        .body(b"definitely not gzip".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert!(resp.headers().get("content-encoding").is_none());
    the_error(&resp.json().await.unwrap());
    let resp = client()
        .post(bridge.url_of(Op::RetaildemandRecalc.path()))
        .header(TOKEN_HEADER, TOKEN_A)
        .header("content-encoding", "br")
        .body(recalc)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
    the_error(&resp.json().await.unwrap());
    bridge.stop().await;
}

#[tokio::test]
async fn wrong_method_and_path() {
    let bridge = start_bridge("").await;
    for (method, path, status, allow) in [
        (
            Method::GET,
            "/retaildemand/recalc",
            StatusCode::METHOD_NOT_ALLOWED,
            Some("POST"),
        ),
        (
            Method::PUT,
            "/counterparty",
            StatusCode::METHOD_NOT_ALLOWED,
            Some("GET, POST"),
        ),
        (
            Method::POST,
            "/giftcard",
            StatusCode::METHOD_NOT_ALLOWED,
            Some("GET"),
        ),
        (Method::POST, "/nope", StatusCode::NOT_FOUND, None),
        (Method::GET, "/", StatusCode::NOT_FOUND, None),
        (
            Method::POST,
            "/retaildemand/recalc/",
            StatusCode::NOT_FOUND,
            None,
        ),
    ] {
        // With or without a token: routing comes first.
        let resp = client()
            .request(method.clone(), bridge.url_of(path))
            .header(TOKEN_HEADER, TOKEN_A)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{method} {path}");
        assert_eq!(
            resp.headers().get("allow").map(|v| v.to_str().unwrap()),
            allow
        );
        let body: Value = resp.json().await.unwrap();
        assert_eq!(the_error(&body)["code"], 9000 + i64::from(status.as_u16()));
    }
    bridge.stop().await;
}

#[tokio::test]
async fn health_ready_and_request_ids() {
    let bridge = start_bridge("").await;
    let resp = client()
        .get(bridge.url_of("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.headers().contains_key("x-request-id"));
    assert_eq!(resp.json::<Value>().await.unwrap()["status"], "ok");
    let resp = client().get(bridge.url_of("/readyz")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.json::<Value>().await.unwrap()["tenants"], 2);
    // A caller's request id is kept; a hostile one is replaced.
    let resp = client()
        .get(bridge.url_of("/healthz"))
        .header("x-request-id", "pos-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "pos-42");
    let resp = client()
        .get(bridge.url_of("/healthz"))
        .header("x-request-id", "a b\"<>")
        .send()
        .await
        .unwrap();
    assert_ne!(resp.headers()["x-request-id"], "a b\"<>");
    bridge.stop().await;
}

#[tokio::test]
async fn base_path_prefixes_the_endpoints() {
    let bridge = start_bridge(r#"base_path = "/loyalty""#).await;
    let recalc = fixture("retaildemand.recalc.request.json");
    let resp = client()
        .post(bridge.url_of("/loyalty/retaildemand/recalc"))
        .header(TOKEN_HEADER, TOKEN_A)
        .body(recalc.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let resp = client()
        .post(bridge.url_of("/retaildemand/recalc"))
        .header(TOKEN_HEADER, TOKEN_A)
        .body(recalc)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    bridge.stop().await;
}

#[tokio::test]
async fn h2c_prior_knowledge_works() {
    let bridge = start_bridge("").await;
    loyalty_bridge::upstream::install_crypto();
    let h2 = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = h2
        .post(bridge.url_of(Op::RetaildemandRecalc.path()))
        .header(TOKEN_HEADER, TOKEN_A)
        .body(fixture("retaildemand.recalc.request.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let status = resp.status();
    assert_reached_the_operation(
        status,
        &resp.json().await.unwrap(),
        Op::RetaildemandRecalc,
        "shop-a",
    );
    bridge.stop().await;
}

/// Sends the head and part of the body of a POST, leaving the request in flight.
async fn start_slow_request(bridge: &TestBridge, body: &str, sent: usize) -> TcpStream {
    let mut stream = TcpStream::connect(bridge.addr()).await.unwrap();
    let head = format!(
        "POST /retaildemand/recalc HTTP/1.1\r\nHost: x\r\n{TOKEN_HEADER}: {TOKEN_A}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..sent]).await.unwrap();
    stream.flush().await.unwrap();
    stream
}

async fn read_response(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out))
        .await
        .expect("response within 10 s")
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn graceful_shutdown_lets_a_request_in_flight_finish() {
    let mut bridge = start_bridge("").await;
    let body = fixture("retaildemand.recalc.request.json");
    let mut stream = start_slow_request(&bridge, &body, 100).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    bridge.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // No new connections once shutdown began.
    assert!(
        TcpStream::connect(bridge.addr()).await.is_err(),
        "listener still accepting"
    );
    // The request in flight still completes, with a full answer.
    stream.write_all(&body.as_bytes()[100..]).await.unwrap();
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    assert!(response.contains("9503"), "{response}");
    bridge.stop_within(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn graceful_shutdown_is_bounded() {
    let bridge = start_bridge("shutdown_grace_ms = 300").await;
    let body = fixture("retaildemand.recalc.request.json");
    let _stuck = start_slow_request(&bridge, &body, 10).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    bridge.stop_within(Duration::from_secs(5)).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_stalled_body_gets_a_504_within_the_deadline() {
    let bridge = start_bridge("request_timeout_ms = 300").await;
    let body = fixture("retaildemand.recalc.request.json");
    let started = Instant::now();
    let mut stream = start_slow_request(&bridge, &body, 50).await;
    let response = read_response(&mut stream).await;
    assert!(response.starts_with("HTTP/1.1 504"), "{response}");
    assert!(response.contains("9504"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(3));
    bridge.stop().await;
}
