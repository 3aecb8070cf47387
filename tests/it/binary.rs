//! The real binary: starts from a config file, logs one JSON line per request without ever
//! showing a token or key, and stops cleanly on SIGTERM.

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
