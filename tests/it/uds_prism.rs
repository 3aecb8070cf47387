//! Every request the UDS mapping sends, validated against UDS's own OpenAPI document by a
//! Prism mock server (`tests/fixtures/vendor-specs/`). `.ci/run` starts Prism and sets `UDS_PRISM_URL`
//! (and `LB_REQUIRE_PRISM=1`, so the test fails rather than skips if Prism is missing).
//! Prism answers 422 with the violations for a request that does not match the schema.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use engine::plan::Mapping;
use loyalty_bridge::config::{Limits, Tenant, TokenHash};
use loyalty_bridge::loyalty::examples;
use loyalty_bridge::loyalty::ops::Op;
use loyalty_bridge::mapping::memory::Memory;
use loyalty_bridge::secret::Secret;
use loyalty_bridge::upstream::{HttpUpstream, Upstream, UpstreamFuture, UpstreamRequest};
use serde_json::{Value, json};

/// The real HTTP client, remembering what Prism answered to each call.
struct Recording {
    inner: HttpUpstream,
    seen: Mutex<Vec<(String, String, u16, String)>>,
}

impl Upstream for Recording {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture<'_> {
        Box::pin(async move {
            let label = format!("{} {}", request.method, request.url);
            let step = request.step.clone();
            let result = self.inner.send(request).await;
            let (status, body) = match &result {
                Ok(r) => (r.status, String::from_utf8_lossy(&r.body).into_owned()),
                Err(e) => (0, e.to_string()),
            };
            self.seen.lock().unwrap().push((step, label, status, body));
            result
        })
    }
}

fn tenant(base_url: &str) -> Arc<Tenant> {
    let mut credentials = BTreeMap::new();
    credentials.insert("company_id".to_string(), Secret::new("549755813888"));
    credentials.insert("api_key".to_string(), Secret::new("prism-api-key"));
    Arc::new(Tenant {
        name: "uds".into(),
        token_hash: TokenHash::of("x"),
        mapping: "mappings/uds.toml".into(),
        base_url: base_url.trim_end_matches('/').to_string(),
        credentials,
        settings: json!({"skip_loyalty_skus": ["tobacco"], "unredeemable_skus": ["promo"]}),
        limits: Limits::default(),
        outbox: Default::default(),
    })
}

const STORE: &str = r#"{"meta": {"id": "s1"}, "name": "Магазин №1"}"#;

fn cart() -> Value {
    json!([
        {"assortment": {"meta": {"id": "coffee"}}, "quantity": 3, "price": 333.33},
        {"assortment": {"meta": {"id": "tobacco"}}, "quantity": 1, "price": 250.00},
        {"assortment": {"meta": {"id": "promo"}}, "quantity": 2, "price": 99.90}
    ])
}

#[tokio::test]
async fn uds_requests_match_the_vendor_schema() {
    let Ok(base_url) = std::env::var("UDS_PRISM_URL") else {
        assert!(
            std::env::var("LB_REQUIRE_PRISM").is_err(),
            "LB_REQUIRE_PRISM is set but UDS_PRISM_URL is not"
        );
        eprintln!("SKIPPED: UDS_PRISM_URL is not set (.ci/run starts Prism and sets it)");
        return;
    };
    let mapping = Arc::new(
        Mapping::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/uds.toml")).unwrap(),
    );
    let recording = Arc::new(Recording {
        inner: HttpUpstream::new().unwrap(),
        seen: Mutex::new(Vec::new()),
    });
    let memory = Arc::new(Memory::new());
    // The return reads the UDS operation id its sale kept in the journal.
    let journal = examples::memory_journal().await.unwrap();
    let store: Value = serde_json::from_str(STORE).unwrap();
    let agent = json!({"meta": {"id": "c1"}, "phone": "+7 999 123-45-67"});
    let sale_id = "5f0e6a1c-0000-4000-8000-000000000001";
    let requests: Vec<(Op, Value)> = vec![
        (
            Op::CounterpartySearch,
            json!({"search": "+7 999 123-45-67", "retailStoreId": "s1"}),
        ),
        (
            Op::CounterpartySearch,
            json!({"search": "123456", "retailStoreId": "s1"}),
        ),
        (
            Op::CounterpartyDetail,
            json!({"retailStore": store, "meta": {"id": "c1"}, "phone": "+79991234567"}),
        ),
        (
            Op::RetaildemandRecalc,
            json!({"retailStore": store, "agent": agent, "positions": cart(), "bonusProgram": {"transactionType": "EARNING"}}),
        ),
        (
            Op::RetaildemandRecalc,
            json!({"retailStore": store, "agent": agent, "positions": cart(), "bonusProgram": {"transactionType": "SPENDING"}}),
        ),
        (
            Op::RetaildemandRecalc,
            json!({"retailStore": store, "agent": agent, "positions": cart(), "bonusProgram": {"transactionType": "SPENDING"}, "preferredBonusToSpend": 120.555}),
        ),
        (
            Op::RetaildemandCreate,
            json!({"retailStore": store, "name": "00042", "meta": {"id": sale_id}, "agent": agent, "positions": cart(),
            "bonusProgram": {"bonusValueToSpend": 100, "bonusValueToEarn": 10}}),
        ),
        (
            Op::RetailsalesreturnCreate,
            json!({"retailStore": store, "meta": {"id": "r1"}, "demand": {"meta": {"id": sale_id}}, "agent": {},
            "positions": [{"assortment": {"meta": {"id": "coffee"}}, "quantity": 1, "price": 333.33}]}),
        ),
    ];
    for (op, request) in &requests {
        let before = recording.seen.lock().unwrap().len();
        let answer = examples::answer_with_state(
            tenant(&base_url),
            mapping.clone(),
            *op,
            request,
            recording.clone(),
            memory.clone(),
            Some(journal.clone()),
        )
        .await;
        let seen = recording.seen.lock().unwrap();
        assert!(
            seen.len() > before,
            "{op}: no UDS call was made ({} {})",
            answer.status,
            answer.body
        );
        for (step, label, status, body) in &seen[before..] {
            assert_ne!(
                *status, 422,
                "{op} step {step}: {label} violates UDS's schema:\n{body}"
            );
            assert!(
                (200..300).contains(status),
                "{op} step {step}: {label} → {status}\n{body}"
            );
        }
    }
}
