//! Table-driven config tests: every file in `tests/config/valid/` loads; every file in
//! `tests/config/invalid/` fails with the message its first line names (`# error: <text>`).

use crate::common;

use std::path::Path;

use common::{expected_error, toml_files};
use loyalty_bridge::Config;

/// The environment these files may reference; the process environment is never read.
fn env(name: &str) -> Option<String> {
    match name {
        "LB_TOKEN_A" => Some("token-a".into()),
        "LB_TOKEN_B" => Some("token-b".into()),
        "LB_EMPTY" => Some(String::new()),
        "LB_METRICS_TOKEN" => Some("metrics-secret".into()),
        "MAXMA_API_KEY" => Some("maxma-key".into()),
        "LOYALTY_BRIDGE_TOKEN" => Some("demo-token".into()),
        "LB_PG_URL" => Some("postgres://bridge:pg-secret@db.internal:5432/loyalty".into()),
        "LB_PG_PASSWORD" => Some("pg-secret".into()),
        "LB_APP_SECRET" => Some("app-secret-0123456789abcdef".into()),
        "LB_APP_KEY_HEX" => {
            Some("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff".into())
        }
        "LB_APP_KEY_B64" => Some("ABEiM0RVZneImaq7zN3u/wARIjNEVWZ3iJmqu8zd7v8=".into()),
        "LB_APP_KEY_SHORT" => Some("0011223344".into()),
        "LB_PG_BAD_URL" => Some("mysql://bridge:pg-secret@db.internal/loyalty".into()),
        _ => None,
    }
}

fn load(path: &Path) -> Result<Config, loyalty_bridge::config::ConfigError> {
    let text = std::fs::read_to_string(path).unwrap();
    Config::parse(
        &text,
        &path.display().to_string(),
        path.parent().unwrap(),
        &env,
    )
}

#[test]
fn every_valid_config_loads() {
    for path in toml_files("tests/config/valid") {
        let config = load(&path).unwrap_or_else(|e| panic!("{} should load: {e}", path.display()));
        assert!(!config.tenants.is_empty() || config.moysklad_app.is_some());
    }
}

#[test]
fn every_invalid_config_fails_naming_the_field() {
    for path in toml_files("tests/config/invalid") {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected = expected_error(&path);
        match load(&path) {
            Ok(_) => panic!("{} should fail", path.display()),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains(&expected),
                    "{}: expected the error to contain {expected:?}, got:\n{message}",
                    path.display()
                );
                assert!(
                    message.contains(&path.display().to_string()),
                    "message names the file: {message}"
                );
                assert!(
                    !message.contains("pg-secret"),
                    "{}: a database password leaked: {message}",
                    path.display()
                );
                for secret in [
                    "token-a",
                    "token-b",
                    "maxma-key",
                    "my-secret-token",
                    "abc123",
                    "metrics-secret",
                    "pg-secret",
                    "app-secret-0123456789abcdef",
                    "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
                ] {
                    assert!(
                        !message.contains(&format!("\"{secret}\"")) || text.contains(secret),
                        "{}: a secret from the environment leaked: {message}",
                        path.display()
                    );
                }
            }
        }
    }
}

#[test]
fn full_example_values_are_read() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/valid/full.toml");
    let config = load(&path).unwrap();
    assert_eq!(config.server.base_path, "/loyalty/api");
    assert_eq!(config.server.max_body_bytes, 2 * 1024 * 1024);
    assert_eq!(config.server.thread_count(), 4);
    assert_eq!(config.tenants.len(), 2);
    let uds = &config.tenants[1];
    assert_eq!(uds.base_url, "https://api.uds.app/partner/v2");
    assert_eq!(uds.credentials["company_id"].expose(), "549755813888");
    assert_eq!(uds.credentials["api_key"].expose(), "Basic maxma-key");
    assert_eq!(
        uds.mapping,
        Path::new("/etc/loyalty-bridge/mappings/uds.toml")
    );
    // token_sha256 is hex, case-insensitive: this one is the hash of the empty string.
    assert_eq!(uds.token_hash, loyalty_bridge::config::TokenHash::of(""));
    let shop = &config.tenants[0];
    assert_eq!(shop.limits.requests_per_second, 5);
    assert!(shop.mapping.ends_with("mappings/maxma.toml"));
}

#[test]
fn shipped_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
    let config = load(&path).unwrap_or_else(|e| panic!("config.toml: {e}"));
    assert_eq!(
        config.tenants[0].credentials["api_key"].expose(),
        "maxma-key"
    );
}

#[test]
fn metrics_token_is_expanded_and_masked() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/valid/metrics-token.toml");
    let config = load(&path).unwrap();
    let token = config.server.metrics_token.as_ref().unwrap();
    assert_eq!(token.expose(), "metrics-secret");
    assert!(!format!("{config:?}").contains("metrics-secret"));
    assert_eq!(config.tenants[0].limits.max_pause_ms, 5_000);
    let minimal =
        load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/valid/minimal.toml"))
            .unwrap();
    assert!(minimal.server.metrics_token.is_none());
    assert_eq!(minimal.tenants[0].limits.max_pause_ms, 60_000);
}

#[test]
fn store_section_defaults_and_values() {
    use loyalty_bridge::config::StoreBackend;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/valid");
    // No [store]: SQLite in data/ beside the config file, 90 days.
    let config = load(&dir.join("minimal.toml")).unwrap();
    assert_eq!(
        config.store.backend,
        StoreBackend::Sqlite {
            path: dir.join("data/loyalty-bridge.sqlite3")
        }
    );
    assert_eq!(config.store.retention_days, 90);

    let config = load(&dir.join("store-sqlite.toml")).unwrap();
    assert_eq!(
        config.store.backend,
        StoreBackend::Sqlite {
            path: dir.join("state/bridge.sqlite3")
        }
    );
    assert_eq!(config.store.retention_days, 30);

    let config = load(&dir.join("store-postgres.toml")).unwrap();
    let StoreBackend::Postgres { url, pool_size } = &config.store.backend else {
        panic!("postgres expected: {:?}", config.store)
    };
    assert_eq!(
        url.expose(),
        "postgres://bridge:pg-secret@db.internal:5432/loyalty"
    );
    assert_eq!(*pool_size, 16);
    assert_eq!(config.store.retention_days, 365);
    // The password shows nowhere.
    assert!(!format!("{config:?}").contains("pg-secret"));
    assert_eq!(
        config.store.describe(),
        "postgres postgres://bridge:****@db.internal:5432/loyalty"
    );

    let config = load(&dir.join("store-postgres-password-env.toml")).unwrap();
    let StoreBackend::Postgres { url, pool_size } = &config.store.backend else {
        panic!("postgres expected")
    };
    assert_eq!(
        url.expose(),
        "postgres://bridge:pg-secret@db.internal:5432/loyalty"
    );
    assert_eq!(*pool_size, 8);
}

#[test]
fn threads_default_to_one_per_core() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/config/valid/minimal.toml");
    let config = load(&path).unwrap();
    assert_eq!(config.server.threads, 0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    assert_eq!(config.server.thread_count(), cores);
}
