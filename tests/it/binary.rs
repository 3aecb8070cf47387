//! The real binary: starts from a config file, logs one JSON line per request without ever
//! showing a token or key, and stops cleanly on SIGTERM; `map` dry-runs a request in the world
//! its options give (settings, credentials, the returned sale) and never prints a credential;
//! `check` runs the golden examples.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;

const TOKEN: &str = "tok-secret-3f9a1c77";
const API_KEY: &str = "key-secret-b2e8d410";

#[tokio::test]
async fn serves_logs_without_secrets_and_stops_on_sigterm() {
    let dir = std::env::temp_dir().join(format!("lb-binary-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("config.toml");
    let mapping = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/mappings/unconfigured.toml"
    );
    std::fs::write(
        &config,
        format!(
            r#"
        [server]
        listen = "127.0.0.1:0"
        [log]
        format = "json"
        level = "info"
        [[tenants]]
        name = "demo"
        token = "${{LB_TEST_TOKEN}}"
        mapping = "{mapping}"
        base_url = "http://127.0.0.1:9"
        credentials = {{ api_key = "${{LB_TEST_KEY}}" }}
        "#
        ),
    )
    .unwrap();

    let mut child = Command::new(env!("CARGO_BIN_EXE_loyalty-bridge"))
        .args(["--config", config.to_str().unwrap(), "serve"])
        .env("LB_TEST_TOKEN", TOKEN)
        .env("LB_TEST_KEY", API_KEY)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut lines = Vec::new();
    let addr = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the server starts and logs its address");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        lines.push(line);
        if v["message"] == "loyalty-bridge listening" {
            break v["addr"].as_str().unwrap().to_string();
        }
    };

    loyalty_bridge::upstream::install_crypto();
    let client = reqwest::Client::new();
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/loyaltyapi/retaildemand.recalc.request.json"
    ))
    .unwrap();
    for token in [TOKEN.to_string(), format!("{TOKEN}-wrong")] {
        let resp = client
            .post(format!("http://{addr}/retaildemand/recalc"))
            .header("Lognex-Discount-API-Auth-Token", token)
            .header("X-Request-Id", "req-under-test")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error() || resp.status().is_server_error());
    }

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    lines.extend(rx.try_iter());

    let all = lines.join("\n");
    assert!(!all.contains(TOKEN), "a token reached the log:\n{all}");
    assert!(!all.contains(API_KEY), "a key reached the log:\n{all}");
    let access: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["target"] == "access")
        .collect();
    assert_eq!(access.len(), 2, "{all}");
    let ok = &access[0];
    assert_eq!(ok["request_id"], "req-under-test");
    assert_eq!(ok["tenant"], "demo");
    assert_eq!(ok["op"], "retaildemand.recalc");
    assert_eq!(ok["status"], 503);
    assert!(ok["latency_ms"].as_f64().is_some());
    assert_eq!(
        ok["upstream_calls"], 0,
        "the unconfigured mapping calls no vendor"
    );
    assert_eq!(access[1]["tenant"], "-");
    assert_eq!(access[1]["status"], 401);
    assert!(
        all.contains("token_fingerprint"),
        "failed auth is logged with a fingerprint:\n{all}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn map_prints_the_vendor_requests_without_secrets() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_loyalty-bridge"))
        .args([
            "map",
            "--op",
            "recalc",
            "--mapping",
            concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/maxma.toml"),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let request = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/loyaltyapi/retaildemand.recalc.request.json"
    ))
    .unwrap();
    child.stdin.take().unwrap().write_all(&request).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("POST http://vendor.example/get-balance"),
        "{text}"
    );
    assert!(
        text.contains("POST http://vendor.example/v2/calculate-purchase"),
        "{text}"
    );
    assert!(text.contains("\"blackPrice\": 123.45"), "{text}");
    assert!(text.contains("x-processing-key: ****"), "{text}");
}

/// Runs `loyalty-bridge map ARGS` with `request` on stdin: whether it succeeded, its stdout
/// and its stderr.
fn run_map(args: &[&str], request: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_loyalty-bridge"))
        .arg("map")
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A refusal before the request is read may close stdin first.
    let _ = child.stdin.take().unwrap().write_all(request.as_bytes());
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A directory for one test's files.
fn scratch(test: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("lb-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const UDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/uds.toml");
const PREMIUMBONUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/premiumbonus.toml");

#[test]
fn map_runs_a_return_the_bridge_would_accept_only_with_its_sale() {
    let dir = scratch("map-sale");
    let sale = dir.join("sale.json");
    std::fs::write(
        &sale,
        r#"{"kept": {"operation": 123456789, "total": 1166.66}}"#,
    )
    .unwrap();
    let credentials = dir.join("credentials.json");
    std::fs::write(
        &credentials,
        r#"{"company_id": "549755813888", "api_key": "uds-key-5be1c0d2"}"#,
    )
    .unwrap();
    let request = r#"{"retailStore": {"meta": {"id": "s1"}}, "meta": {"id": "ret-2"}, "demand": {"meta": {"id": "sale-1"}},
        "agent": {}, "positions": [{"assortment": {"meta": {"id": "coffee"}}, "quantity": 1, "price": 333.33}]}"#;
    let op = ["--op", "retailsalesreturn.create", "--mapping", UDS];

    // Without the sale the mapping refuses the return, as the bridge does for a sale it never recorded.
    let (ok, out, err) = run_map(&op, request);
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("(no vendor call; the bridge would answer 409"),
        "{out}"
    );
    assert!(out.contains("2013"), "{out}");

    let (ok, out, err) = run_map(
        &[
            &op[..],
            &["--sale", sale.to_str().unwrap()],
            &["--credentials", credentials.to_str().unwrap()],
        ]
        .concat(),
        request,
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("POST http://vendor.example/operations/123456789/refund"),
        "{out}"
    );
    assert!(out.contains("\"partialAmount\": 333.33"), "{out}");
    // Secret headers stay masked with real credentials given.
    assert!(out.contains("authorization: ****"), "{out}");
    assert!(!out.contains("uds-key-5be1c0d2"), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn map_reads_the_tenants_settings() {
    let dir = scratch("map-settings");
    let settings = dir.join("settings.json");
    std::fs::write(&settings, r#"{"sale_point_id": "sp-7c41"}"#).unwrap();
    let request = r#"{"retailStore": {"meta": {"id": "s1"}}, "meta": {"id": "sale-1"}, "agent": {"meta": {"id": "c1"}, "phone": "+79990000001"},
        "positions": [{"assortment": {"meta": {"id": "A-100"}}, "quantity": 1, "price": 500.00}]}"#;
    let op = ["--op", "retaildemand.create", "--mapping", PREMIUMBONUS];
    let (ok, out, err) = run_map(&op, request);
    assert!(ok, "{out}\n{err}");
    assert!(!out.contains("sale_point_id"), "{out}");
    let (ok, out, err) = run_map(
        &[&op[..], &["--settings", settings.to_str().unwrap()]].concat(),
        request,
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("\"sale_point_id\": \"sp-7c41\""), "{out}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn map_reads_what_earlier_calls_remembered() {
    let dir = scratch("map-remembered");
    let remembered = dir.join("remembered.json");
    std::fs::write(&remembered, r#"{"verified:79990000077": {"code": "4821"}}"#).unwrap();
    let request = r#"{"retailStore": {"meta": {"id": "s1"}}, "meta": {"id": "c9"}, "phone": "8 (999) 000-00-77", "statusCheck": "UNCHECKED"}"#;
    let op = ["--op", "counterparty.create", "--mapping", PREMIUMBONUS];
    // Premium Bonus registers a customer whose phone a code verified as phone_checked.
    let (ok, out, err) = run_map(&op, request);
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("\"phone_checked\": false"), "{out}");
    let (ok, out, err) = run_map(
        &[&op[..], &["--remembered", remembered.to_str().unwrap()]].concat(),
        request,
    );
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("\"phone_checked\": true"), "{out}");
    let list = dir.join("list.json");
    std::fs::write(&list, "[]").unwrap();
    let (ok, out, err) = run_map(
        &[&op[..], &["--remembered", list.to_str().unwrap()]].concat(),
        request,
    );
    assert!(!ok, "{out}");
    assert!(
        err.contains("--remembered") && err.contains("must be a JSON object"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn map_masks_credentials_wherever_a_mapping_puts_them() {
    let dir = scratch("map-credentials");
    let mapping = dir.join("leaky.toml");
    std::fs::write(
        &mapping,
        r#"
        [vendor]
        name = "leaky"
        headers = { X-Client = "client {.credentials.client}", X-Api-Key = "{.credentials.key}" }
        [[ops."counterparty.detail".steps]]
        name = "find"
        method = "POST"
        path = "/find/{.credentials.client}"
        query = { key = "{.credentials.key}" }
        body = '{client: .credentials.client}'
        "#,
    )
    .unwrap();
    let credentials = dir.join("credentials.json");
    std::fs::write(
        &credentials,
        r#"{"client": "client-8d2f", "key": "key-71aa"}"#,
    )
    .unwrap();
    let (ok, out, err) = run_map(
        &[
            "--op",
            "counterparty.detail",
            "--mapping",
            mapping.to_str().unwrap(),
            "--credentials",
            credentials.to_str().unwrap(),
        ],
        r#"{"retailStore": {"meta": {"id": "s1"}}, "meta": {"id": "c1"}}"#,
    );
    assert!(ok, "{out}\n{err}");
    assert!(
        out.contains("POST http://vendor.example/find/****?key=****"),
        "{out}"
    );
    assert!(out.contains("x-client: client ****"), "{out}");
    assert!(out.contains("x-api-key: ****"), "{out}");
    assert!(out.contains("\"client\": \"****\""), "{out}");
    assert!(
        !out.contains("client-8d2f") && !out.contains("key-71aa"),
        "{out}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn map_names_the_option_and_the_file_it_cannot_use() {
    let dir = scratch("map-bad-files");
    let write = |name: &str, text: &str| {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };
    let broken = write("broken.json", r#"{"sale_point_id":"#);
    let list = write("list.json", "[1, 2]");
    let numbers = write("numbers.json", r#"{"token": 42}"#);
    let no_kept = write("no-kept.json", r#"{"operation": 1}"#);
    let sale = write("sale.json", r#"{"kept": {}}"#);
    let missing = dir.join("missing.json").to_str().unwrap().to_string();
    let request = r#"{"retailStore": {"meta": {"id": "s1"}}, "meta": {"id": "r1"}, "demand": {"meta": {"id": "sale-1"}}, "positions": []}"#;
    let refused = |op: &str, option: &str, file: &str, says: &str| {
        let (ok, out, err) = run_map(
            &["--op", op, "--mapping", PREMIUMBONUS, option, file],
            request,
        );
        assert!(!ok, "{option} {file}: {out}");
        assert!(
            err.contains(&format!("{option} {file}: ")) && err.contains(says),
            "{option} {file}: {err}"
        );
    };
    let ret = "retailsalesreturn.create";
    refused(ret, "--settings", &missing, "cannot read the file");
    refused(ret, "--settings", &broken, "not valid JSON");
    refused(ret, "--settings", &list, "must be a JSON object");
    refused(
        ret,
        "--credentials",
        &numbers,
        "token: must be a JSON object of strings",
    );
    refused(ret, "--sale", &no_kept, "{\"kept\": …}");
    refused(ret, "--sale", &missing, "cannot read the file");
    // A sale for an operation that is not a return.
    let (ok, _, err) = run_map(
        &[
            "--op",
            "retaildemand.create",
            "--mapping",
            PREMIUMBONUS,
            "--sale",
            &sale,
        ],
        request,
    );
    assert!(!ok);
    assert!(err.contains("--sale: only a return"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn check_runs_the_golden_examples() {
    let out = Command::new(env!("CARGO_BIN_EXE_loyalty-bridge"))
        .args([
            "check",
            "--mapping",
            concat!(env!("CARGO_MANIFEST_DIR"), "/mappings/maxma.toml"),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("ok   sale repeated after MAXMA recorded it"),
        "{text}"
    );
    assert!(!text.contains("FAIL"), "{text}");
}
