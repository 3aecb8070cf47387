//! The mapping engine on its own: every shipped mapping compiles and passes its golden examples;
//! every invalid mapping in `tests/mappings/invalid/` is refused with a message naming the place;
//! and each construct (steps, when, rules, checks, respond, accept, compensation, templates,
//! transport failures, answer checking) behaves as documented.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::{expected_error, toml_files};
use engine::example::Canned;
use engine::plan::Mapping;
use loyalty_bridge::config::{Limits, Tenant, TokenHash};
use loyalty_bridge::loyalty::examples::{self, CannedUpstream};
use loyalty_bridge::loyalty::ops::Op;
use loyalty_bridge::secret::Secret;
use serde_json::{Value, json};

#[tokio::test]
async fn shipped_mappings_compile_and_pass_their_examples() {
    for path in toml_files("mappings") {
        let mapping = Arc::new(Mapping::load(&path).unwrap_or_else(|e| panic!("{e}")));
        assert!(
            !mapping.examples.is_empty(),
            "{}: a mapping file carries golden examples",
            path.display()
        );
        for report in examples::run_examples(&mapping).await {
            assert!(
                report.problems.is_empty(),
                "{}: {}\n{}",
                path.display(),
                report.name,
                report.problems.join("\n")
            );
        }
    }
}

#[test]
fn invalid_mappings_are_refused_naming_the_place() {
    for path in toml_files("tests/mappings/invalid") {
        let expected = expected_error(&path);
        match Mapping::load(&path) {
            Ok(_) => panic!("{} should be refused", path.display()),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains(&expected),
                    "{}:\n expected {expected:?}\n got {message}",
                    path.display()
                );
                assert!(
                    message.starts_with(&path.display().to_string()),
                    "names the file: {message}"
                );
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// Constructs, with canned vendor answers.

const DETAIL: &str =
    r#"{"retailStore":{"meta":{"id":"s1"}},"meta":{"id":"c1"},"phone":"+7 555 123 4567"}"#;

fn mapping(ops: &str) -> Arc<Mapping> {
    let text = format!(
        r#"
        defs = 'def bal: .steps.b.body.bonuses;'
        [vendor]
        name = "test"
        headers = {{ "X-Key" = "{{.credentials.key}}", Authorization = "Basic {{(.credentials.user + \":\" + .credentials.password) | @base64}}" }}
        {ops}
        "#
    );
    Arc::new(Mapping::parse(&text, Path::new("test.toml")).unwrap_or_else(|e| panic!("{e}")))
}

fn tenant() -> Arc<Tenant> {
    let mut credentials = BTreeMap::new();
    credentials.insert("key".to_string(), Secret::new("k-123"));
    credentials.insert("user".to_string(), Secret::new("shop"));
    credentials.insert("password".to_string(), Secret::new("p@ss"));
    Arc::new(Tenant {
        name: "t".into(),
        token_hash: TokenHash::of("x"),
        mapping: "test.toml".into(),
        base_url: "https://vendor.example/api".into(),
        credentials,
        settings: serde_json::Value::Null,
        limits: Limits::default(),
        outbox: Default::default(),
    })
}

fn answers(pairs: &[(&str, Canned)]) -> Arc<CannedUpstream> {
    Arc::new(CannedUpstream::new(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        None,
    ))
}

fn ok(body: Value) -> Canned {
    Canned::Answer {
        status: 200,
        body: body.to_string(),
    }
}

async fn run(
    m: &Arc<Mapping>,
    op: Op,
    request: &str,
    upstream: &Arc<CannedUpstream>,
) -> examples::Answer {
    let request: Value = serde_json::from_str(request).unwrap();
    examples::answer_as(tenant(), m.clone(), op, &request, upstream.clone()).await
}

const DETAIL_OPS: &str = r#"
    [[ops."counterparty.detail".steps]]
    name = "b"
    method = "GET"
    path = "/clients/{.req.meta.id}/balance"
    query = { phone = "{.req.phone}", "a b" = "x+y" }
    [ops."counterparty.detail".response]
    body = '{bonusProgram: {agentBonusBalance: bal}}'
"#;

#[tokio::test]
async fn a_step_is_built_from_the_request_with_exact_encoding_and_vendor_auth() {
    let m = mapping(DETAIL_OPS);
    let up = answers(&[("b", ok(json!({"bonuses": 12.50})))]);
    let got = run(&m, Op::CounterpartyDetail, DETAIL, &up).await;
    assert_eq!(
        (got.status, got.body),
        (200, json!({"bonusProgram": {"agentBonusBalance": 12.50}}))
    );
    let calls = up.take_calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(
        call.url,
        "https://vendor.example/api/clients/c1/balance?a%20b=x%2By&phone=%2B7%20555%20123%204567"
    );
    assert_eq!(call.headers["x-key"], "k-123");
    assert_eq!(call.headers["authorization"], "Basic c2hvcDpwQHNz");
    assert_eq!(call.body, None);
    assert!(call.headers.contains_key("x-request-id"));
}

#[tokio::test]
async fn a_path_hole_rendering_a_dot_segment_fails_before_any_call() {
    let m = mapping(DETAIL_OPS);
    for id in ["..", ".", "../../admin", ""] {
        let up = answers(&[("b", ok(json!({"bonuses": 1})))]);
        let request = DETAIL.replace(r#""id":"c1""#, &format!(r#""id":{}"#, json!(id)));
        let got = run(&m, Op::CounterpartyDetail, &request, &up).await;
        let calls: Vec<String> = up.take_calls().into_iter().map(|c| c.url).collect();
        assert_eq!(calls, Vec::<String>::new(), "{id:?}");
        if id.is_empty() {
            // A blank meta.id is refused at validation, before the mapping runs.
            assert_eq!(got.status, 400, "{id:?}: {}", got.body);
            continue;
        }
        assert_eq!(got.status, 502, "{id:?}: {}", got.body);
        assert_eq!(got.body["errors"][0]["code"], 9502, "{id:?}");
        let detail = got.detail.unwrap_or_default();
        assert!(detail.contains("steps.b.path"), "{id:?}: {detail}");
    }
}

#[tokio::test]
async fn transport_failures_and_unusable_answers_become_envelopes() {
    let m = mapping(DETAIL_OPS);
    for (canned, status, code) in [
        (Canned::Timeout, 504, 9504),
        (Canned::Unreachable, 502, 9502),
        (
            Canned::Answer {
                status: 500,
                body: "oops".into(),
            },
            502,
            9502,
        ),
        (
            Canned::Answer {
                status: 200,
                body: "<html>".into(),
            },
            502,
            9502,
        ),
        (
            Canned::Answer {
                status: 200,
                body: r#"{"bonuses": "#.into(),
            },
            502,
            9502,
        ),
        (
            Canned::Answer {
                status: 404,
                body: "{}".into(),
            },
            502,
            9502,
        ),
    ] {
        let up = answers(&[("b", canned.clone())]);
        let got = run(&m, Op::CounterpartyDetail, DETAIL, &up).await;
        assert_eq!(got.status, status, "{canned:?}: {}", got.body);
        assert_eq!(got.body["errors"][0]["code"], code, "{canned:?}");
        assert!(!got.body.to_string().contains("oops") && !got.body.to_string().contains("html"));
    }
    // The vendor answers, but not what the LoyaltyAPI model needs.
    let up = answers(&[("b", ok(json!({"bonuses": "lots"})))]);
    let got = run(&m, Op::CounterpartyDetail, DETAIL, &up).await;
    assert_eq!(got.status, 502, "{}", got.body);
}

#[tokio::test]
async fn rules_checks_respond_accept_and_when() {
    let m = mapping(
        r#"
        [[ops."counterparty.detail".checks]]
        when = '.req.meta.id == "blocked"'
        error = { status = 403, code = 4003, error = "Нельзя", message = "Клиент {.req.meta.id} заблокирован", parameter = "meta.id" }

        [[ops."counterparty.detail".steps]]
        name = "b"
        method = "POST"
        path = "/balance"
        body = '{id: .req.meta.id}'

        [[ops."counterparty.detail".errors]]
        step = "b"
        when = '.step.body.code == "GONE"'
        respond = '{bonusProgram: {agentBonusBalance: 0}}'

        [[ops."counterparty.detail".errors]]
        step = "b"
        when = '.step.status == 409'
        accept = true

        [[ops."counterparty.detail".steps]]
        name = "extra"
        method = "POST"
        path = "/extra"
        when = '.steps.b.status == 409'

        [ops."counterparty.detail".response]
        body = '{bonusProgram: {agentBonusBalance: (if .steps.extra.skipped then bal else .steps.extra.body.bonuses end)}}'

        [[errors]]
        when = '.step.body.code == "NOPE"'
        error = { status = 404, code = 4004, error = "Не найден", message = "{.step.body.text}" }
        "#,
    );
    // A check refuses before any call.
    let up = answers(&[]);
    let got = run(
        &m,
        Op::CounterpartyDetail,
        r#"{"retailStore":{"meta":{"id":"s"}},"meta":{"id":"blocked"}}"#,
        &up,
    )
    .await;
    assert_eq!(got.status, 403);
    assert_eq!(
        got.body["errors"][0]["error_message"],
        "Клиент blocked заблокирован"
    );
    assert_eq!(got.body["errors"][0]["parameter"], "meta.id");
    assert!(up.take_calls().is_empty());
    // respond: success straight from a rule.
    let up = answers(&[("b", ok(json!({"code": "GONE"})))]);
    let got = run(&m, Op::CounterpartyDetail, DETAIL, &up).await;
    assert_eq!(
        (got.status, got.body),
        (200, json!({"bonusProgram": {"agentBonusBalance": 0}}))
    );
    // A vendor-wide rule.
    let up = answers(&[("b", ok(json!({"code": "NOPE", "text": "нет такого"})))]);
    let got = run(&m, Op::CounterpartyDetail, DETAIL, &up).await;
    assert_eq!(got.status, 404);
    assert_eq!(got.body["errors"][0]["code"], 4004);
    assert_eq!(got.body["errors"][0]["error_message"], "нет такого");
    // Plain success: the conditional step is skipped.
    let up = answers(&[("b", ok(json!({"bonuses": 7})))]);
    let got = run(&m, Op::CounterpartyDetail, DETAIL, &up).await;
    assert_eq!(got.body, json!({"bonusProgram": {"agentBonusBalance": 7}}));
    assert_eq!(up.take_calls().len(), 1);
    // accept: a 409 is fine here, and the conditional step runs.
    let up = answers(&[
        (
            "b",
            Canned::Answer {
                status: 409,
                body: "{}".into(),
            },
        ),
        ("extra", ok(json!({"bonuses": 9}))),
    ]);
    let got = run(&m, Op::CounterpartyDetail, DETAIL, &up).await;
    assert_eq!(got.body, json!({"bonusProgram": {"agentBonusBalance": 9}}));
    assert_eq!(
        up.take_calls()[0].body.as_deref(),
        Some(&br#"{"id":"c1"}"#[..])
    );
}

const SALE: &str = r#"{"retailStore":{"meta":{"id":"s"}},"meta":{"id":"sale-1"},"positions":[]}"#;

fn two_phase() -> Arc<Mapping> {
    mapping(TWO_PHASE_OPS)
}

const TWO_PHASE_OPS: &str = r#"
        [[ops."retaildemand.create".steps]]
        name = "hold"
        method = "POST"
        path = "/hold"
        body = '{tx: .req.meta.id}'
        compensate = { method = "POST", path = "/release/{.steps.hold.body.ticket}" }

        [[ops."retaildemand.create".steps]]
        name = "commit"
        method = "POST"
        path = "/commit"
        body = '{ticket: .steps.hold.body.ticket}'

        [[ops."retaildemand.create".errors]]
        step = "commit"
        when = '.step.body.error == "declined"'
        error = { status = 409, code = 4009, error = "Отказ", message = "Отказ" }
        "#;

/// The values of `header` in `calls`, each checked to be a random (v4) UUID.
fn call_ids(calls: &[loyalty_bridge::upstream::UpstreamRequest], header: &str) -> Vec<String> {
    calls
        .iter()
        .map(|c| {
            let id = c.headers[header].to_str().unwrap().to_string();
            let uuid = uuid::Uuid::parse_str(&id).unwrap_or_else(|e| panic!("{id}: {e}"));
            assert_eq!(uuid.get_version_num(), 4, "{id}");
            id
        })
        .collect()
}

#[tokio::test]
async fn every_call_and_compensation_carries_a_call_id_of_its_own() {
    let m = mapping(&format!("call_id_header = \"X-Call-Id\"\n{TWO_PHASE_OPS}"));
    let mut seen = std::collections::BTreeSet::new();
    // The same MoySklad request twice (one request id), refused at the commit: hold, commit,
    // and the hold's release each time.
    for _ in 0..2 {
        let up = answers(&[
            ("hold", ok(json!({"ticket": "T1"}))),
            ("commit", ok(json!({"error": "declined"}))),
            ("release", ok(json!({}))),
        ]);
        let got = run(&m, Op::RetaildemandCreate, SALE, &up).await;
        assert_eq!(got.status, 409, "{}", got.body);
        let calls = up.take_calls();
        assert_eq!(calls.len(), 3);
        seen.extend(call_ids(&calls, "x-call-id"));
        // MoySklad's request id still goes with every call, for tracing.
        for c in &calls {
            assert_eq!(c.headers["x-request-id"], "example");
        }
    }
    assert_eq!(seen.len(), 6, "never reused: {seen:?}");
    // Without the setting, no such header.
    let up = answers(&[
        ("hold", ok(json!({"ticket": "T1"}))),
        ("commit", ok(json!({}))),
    ]);
    run(&two_phase(), Op::RetaildemandCreate, SALE, &up).await;
    assert!(
        up.take_calls()
            .iter()
            .all(|c| !c.headers.contains_key("x-call-id"))
    );
}

#[tokio::test]
async fn every_uds_call_and_retry_carries_its_own_origin_request_id() {
    use loyalty_bridge::upstream::{Upstream, UpstreamFuture, UpstreamRequest, UpstreamResponse};
    use std::sync::Mutex;
    /// Answers each step, after a 503 to the step's first attempt ever (the steps are
    /// idempotent, so that one is retried); records every request.
    struct FirstTryFails(Mutex<Vec<UpstreamRequest>>);
    impl Upstream for FirstTryFails {
        fn send(&self, request: UpstreamRequest) -> UpstreamFuture<'_> {
            let body = match request.step.as_str() {
                "settings" => r#"{"usePointsByPhone": true, "purchaseByPhone": true}"#,
                "max" => {
                    r#"{"user": {"participant": {"points": 350.0}}, "purchase": {"maxPoints": 299.99, "points": 0, "cash": 999.99, "cashBack": 50}}"#
                }
                _ => {
                    r#"{"user": {"participant": {"points": 350.0}}, "purchase": {"points": 299.99, "discountAmount": 0, "cash": 700, "cashBack": 35}}"#
                }
            };
            let mut seen = self.0.lock().unwrap();
            let first = !seen.iter().any(|r| r.step == request.step);
            seen.push(request);
            Box::pin(async move {
                Ok(UpstreamResponse {
                    status: if first { 503 } else { 200 },
                    body: body.into(),
                    retry_after: None,
                })
            })
        }
    }
    let m = Arc::new(Mapping::load(Path::new("mappings/uds.toml")).unwrap());
    let recalc: Value = serde_json::from_str(
        r#"{"retailStore": {"meta": {"id": "s1"}}, "agent": {"meta": {"id": "c1"}, "phone": "+79991234567"},
            "positions": [{"assortment": {"meta": {"id": "coffee"}}, "quantity": 3, "price": 333.33}],
            "bonusProgram": {"transactionType": "SPENDING"}}"#,
    )
    .unwrap();
    let up = Arc::new(FirstTryFails(Mutex::new(Vec::new())));
    // The same request twice: MoySklad repeats its request id, UDS must not see one twice.
    for _ in 0..2 {
        let got = examples::answer(m.clone(), Op::RetaildemandRecalc, &recalc, up.clone()).await;
        assert_eq!(got.status, 200, "{}", got.body);
    }
    let calls = std::mem::take(&mut *up.0.lock().unwrap());
    let steps: Vec<&str> = calls.iter().map(|c| c.step.as_str()).collect();
    assert_eq!(
        steps,
        [
            "settings", "settings", "max", "max", "calc", "calc", "settings", "max", "calc"
        ]
    );
    let ids = call_ids(&calls, "x-origin-request-id");
    let distinct: std::collections::BTreeSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), ids.len(), "{ids:?}");
}

#[tokio::test]
async fn a_refused_later_step_undoes_the_earlier_one() {
    let m = two_phase();
    let up = Arc::new(CannedUpstream::new(
        [
            ("hold".to_string(), ok(json!({"ticket": "T1"}))),
            ("commit".to_string(), ok(json!({"error": "declined"}))),
        ]
        .into_iter()
        .collect(),
        Some(ok(json!({}))),
    ));
    let got = run(&m, Op::RetaildemandCreate, SALE, &up).await;
    assert_eq!(got.status, 409);
    let calls: Vec<String> = up.take_calls().iter().map(|c| c.url.clone()).collect();
    assert_eq!(
        calls,
        [
            "https://vendor.example/api/hold",
            "https://vendor.example/api/commit",
            "https://vendor.example/api/release/T1"
        ]
    );
    // Success: 201 and no undo.
    let up = answers(&[
        ("hold", ok(json!({"ticket": "T2"}))),
        ("commit", ok(json!({}))),
    ]);
    let got = run(&m, Op::RetaildemandCreate, SALE, &up).await;
    assert_eq!((got.status, got.body), (201, Value::Null));
    assert_eq!(up.take_calls().len(), 2);
}

#[tokio::test]
async fn an_ambiguous_failure_is_not_undone() {
    // After a timeout the commit may have happened: undoing could cancel a recorded sale, while
    // leaving it lets MoySklad's retry (same idempotency key) finish the job.
    let m = two_phase();
    let up = Arc::new(CannedUpstream::new(
        [
            ("hold".to_string(), ok(json!({"ticket": "T1"}))),
            ("commit".to_string(), Canned::Timeout),
        ]
        .into_iter()
        .collect(),
        Some(ok(json!({}))),
    ));
    let got = run(&m, Op::RetaildemandCreate, SALE, &up).await;
    assert_eq!(got.status, 504);
    assert_eq!(up.take_calls().len(), 2, "no compensation call");
}

// ------------------------------------------------------------------------------------------
// `verify`: a step's own answer judged after its rules took it as a success.

const SPENDING_SALE: &str = r#"{"retailStore":{"meta":{"id":"s"}},"meta":{"id":"sale-1"},"positions":[],
    "bonusProgram":{"bonusValueToSpend":100}}"#;

/// A hold and a commit that says how much it spent. `commit_undo`: the commit's own
/// compensation line (or none).
fn verified(commit_undo: &str) -> Arc<Mapping> {
    mapping(&format!(
        r#"
        [[ops."retaildemand.create".steps]]
        name = "hold"
        method = "POST"
        path = "/hold"
        compensate = {{ method = "POST", path = "/release/{{.steps.hold.body.ticket}}" }}

        [[ops."retaildemand.create".steps]]
        name = "commit"
        method = "POST"
        path = "/commit"
        body = '{{ticket: .steps.hold.body.ticket}}'
        when = '.req.meta.id != "skip"'
        remember = {{ key = "spent:{{.req.meta.id}}", value = '.step.body.spent', ttl_secs = 60 }}
        {commit_undo}

        [[ops."retaildemand.create".steps.verify]]
        that = '.step.body.spent == .req.bonusProgram.bonusValueToSpend'
        error = {{ status = 409, code = 4010, error = "Списано не столько", message = "{{.step.name}}: списано {{.step.body.spent}} вместо {{.req.bonusProgram.bonusValueToSpend}}", parameter = "bonusProgram.bonusValueToSpend" }}

        [[ops."retaildemand.create".steps.verify]]
        that = '.step.body.receipt != null'
        error = {{ status = 422, code = 4011, error = "Нет чека", message = "нет чека" }}

        [[ops."retaildemand.create".errors]]
        step = "commit"
        when = '.step.body.error == "declined"'
        error = {{ status = 409, code = 4009, error = "Отказ", message = "Отказ" }}

        [[ops."retaildemand.create".errors]]
        step = "commit"
        when = '.step.body.error == "repeat"'
        accept = true

        [[ops."retaildemand.create".errors]]
        step = "commit"
        when = '.step.body.error == "gone"'
        respond = 'null'
        "#
    ))
}

/// Runs a sale against `commit`'s answer (the hold answers ticket T1; anything else, `{}`):
/// the answer, the URLs called (after the base URL) and what the commit left remembered.
async fn sale_with(
    m: &Arc<Mapping>,
    request: &str,
    commit: Value,
) -> (examples::Answer, Vec<String>, Option<Value>) {
    use loyalty_bridge::mapping::memory::Memory;
    let up = Arc::new(CannedUpstream::new(
        [
            ("hold".to_string(), ok(json!({"ticket": "T1"}))),
            ("commit".to_string(), ok(commit)),
        ]
        .into_iter()
        .collect(),
        None,
    ));
    let memory = Arc::new(Memory::new());
    let request: Value = serde_json::from_str(request).unwrap();
    let got = examples::answer_with_memory(
        tenant(),
        m.clone(),
        Op::RetaildemandCreate,
        &request,
        up.clone(),
        memory.clone(),
    )
    .await;
    let urls = up
        .take_calls()
        .iter()
        .map(|c| {
            c.url
                .trim_start_matches("https://vendor.example/api")
                .to_string()
        })
        .collect();
    let id = request["meta"]["id"].as_str().unwrap();
    let remembered = memory.get("t", &format!("spent:{id}")).await.unwrap();
    (got, urls, remembered)
}

#[tokio::test]
async fn a_wrong_answer_undoes_the_step_and_the_ones_before() {
    let m = verified(r#"compensate = { method = "POST", path = "/refund/{.req.meta.id}" }"#);
    // Right: the sale goes through, and what the step remembers is kept.
    let (got, urls, kept) =
        sale_with(&m, SPENDING_SALE, json!({"spent": 100, "receipt": "R"})).await;
    assert_eq!((got.status, got.body), (201, Value::Null));
    assert_eq!(urls, ["/hold", "/commit"]);
    assert_eq!(kept, Some(json!(100)));
    // Fewer points than the receipt says: this step undone, then the hold, newest first; the
    // check's envelope, its message rendered from the answer; nothing remembered.
    let (got, urls, kept) =
        sale_with(&m, SPENDING_SALE, json!({"spent": 40, "receipt": "R"})).await;
    assert_eq!(got.status, 409, "{}", got.body);
    assert_eq!(
        got.body,
        json!({"errors": [{"error": "Списано не столько", "code": 4010,
            "error_message": "commit: списано 40 вместо 100", "parameter": "bonusProgram.bonusValueToSpend"}]})
    );
    assert_eq!(urls, ["/hold", "/commit", "/refund/sale-1", "/release/T1"]);
    assert_eq!(kept, None);
    // Checks in order, the first that fails answers.
    let (got, _, _) = sale_with(&m, SPENDING_SALE, json!({"spent": 100})).await;
    assert_eq!(
        (got.status, &got.body["errors"][0]["code"]),
        (422, &json!(4011))
    );
    let (got, _, _) = sale_with(&m, SPENDING_SALE, json!({"spent": 40})).await;
    assert_eq!(
        (got.status, &got.body["errors"][0]["code"]),
        (409, &json!(4010))
    );
    // A rule's accept makes it a success: judged too.
    let (got, urls, _) = sale_with(
        &m,
        SPENDING_SALE,
        json!({"error": "repeat", "spent": 40, "receipt": "R"}),
    )
    .await;
    assert_eq!(got.body["errors"][0]["code"], 4010, "{}", got.body);
    assert_eq!(urls, ["/hold", "/commit", "/refund/sale-1", "/release/T1"]);
    // A rule's refusal is not judged: the refused step is not undone, the ones before are.
    let (got, urls, _) = sale_with(&m, SPENDING_SALE, json!({"error": "declined"})).await;
    assert_eq!(got.body["errors"][0]["code"], 4009, "{}", got.body);
    assert_eq!(urls, ["/hold", "/commit", "/release/T1"]);
    // Nor a rule's respond (the plan ends there), nor a skipped step.
    let (got, urls, _) = sale_with(&m, SPENDING_SALE, json!({"error": "gone"})).await;
    assert_eq!((got.status, urls.len()), (201, 2), "{}", got.body);
    let skipped = SPENDING_SALE.replace("sale-1", "skip");
    let (got, urls, _) = sale_with(&m, &skipped, json!({"spent": 40})).await;
    assert_eq!((got.status, urls), (201, vec!["/hold".to_string()]));
}

#[tokio::test]
async fn a_step_without_compensation_may_verify_its_answer() {
    // Nothing undoes the commit itself; the hold before it is still released.
    let m = verified("");
    let (got, urls, _) = sale_with(&m, SPENDING_SALE, json!({"spent": 40, "receipt": "R"})).await;
    assert_eq!(got.body["errors"][0]["code"], 4010, "{}", got.body);
    assert_eq!(urls, ["/hold", "/commit", "/release/T1"]);
}

#[tokio::test]
async fn a_check_that_cannot_be_evaluated_fails_the_step_too() {
    // An answer the check cannot read is not one to keep: undone, and a mapping failure.
    let m = mapping(
        r#"
        [[ops."retaildemand.create".steps]]
        name = "commit"
        method = "POST"
        path = "/commit"
        compensate = { method = "POST", path = "/refund" }
        [[ops."retaildemand.create".steps.verify]]
        that = '.step.body.spent | test("^[0-9]+$")'
        error = { status = 409, code = 4010, error = "Списано не столько", message = "нет" }
        "#,
    );
    let up = answers(&[("commit", ok(json!({"spent": 40})))]);
    let got = run(&m, Op::RetaildemandCreate, SPENDING_SALE, &up).await;
    assert_eq!(got.status, 502, "{}", got.body);
    assert!(
        got.detail
            .as_deref()
            .is_some_and(|d| d.contains("steps.commit.verify[0].that")),
        "{:?}",
        got.detail
    );
    let urls: Vec<String> = up.take_calls().iter().map(|c| c.url.clone()).collect();
    assert_eq!(
        urls,
        [
            "https://vendor.example/api/commit",
            "https://vendor.example/api/refund"
        ]
    );
    // A string it can read passes.
    let up = answers(&[("commit", ok(json!({"spent": "40"})))]);
    let got = run(&m, Op::RetaildemandCreate, SPENDING_SALE, &up).await;
    assert_eq!(got.status, 201, "{}", got.body);
}

#[tokio::test]
async fn answers_are_checked_against_the_loyaltyapi_models() {
    // Search rows must carry GUID ids; gift cards that can be used must carry a balance.
    let m = mapping(
        r#"
        [[ops."counterparty.search".steps]]
        name = "find"
        method = "GET"
        path = "/find"
        [ops."counterparty.search".response]
        body = '{rows: [{id: .steps.find.body.id, name: "A"}]}'
        [[ops."giftcard.search".steps]]
        name = "card"
        method = "GET"
        path = "/card"
        [ops."giftcard.search".response]
        body = '{name: .req.name, id: "x", status: "CAN_BE_USED"}'
        "#,
    );
    let search = r#"{"search": "+7 555", "retailStoreId": "s"}"#;
    let up = answers(&[("find", ok(json!({"id": "12345"})))]);
    assert_eq!(
        run(&m, Op::CounterpartySearch, search, &up).await.status,
        502
    );
    let up = answers(&[(
        "find",
        ok(json!({"id": "0b6d4c1e-7a0f-5f0e-9a1b-2c3d4e5f6a7b"})),
    )]);
    let got = run(&m, Op::CounterpartySearch, search, &up).await;
    assert_eq!(got.status, 200, "{}", got.body);
    // The GET's query reached the mapping as .req.
    assert_eq!(up.take_calls().len(), 1);
    let up = answers(&[("card", ok(json!({})))]);
    let got = run(
        &m,
        Op::GiftcardSearch,
        r#"{"name": "1", "retailStoreId": "s"}"#,
        &up,
    )
    .await;
    assert_eq!(got.status, 502, "{}", got.body);
}

#[test]
fn a_bad_mapping_says_where() {
    let err = Mapping::parse(
        r#"
        [vendor]
        name = "v"
        [[ops."retaildemand.recalc".steps]]
        name = "calc"
        method = "POST"
        path = "/calc"
        body = '{rows: [.req.positions[] | {qty: .quantity}]'
        "#,
        Path::new("mappings/acme.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.starts_with("mappings/acme.toml: ops.\"retaildemand.recalc\".steps[0] (calc).body: jq"),
        "{err}"
    );
}

#[tokio::test]
async fn every_maxma_error_code_becomes_its_envelope() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/maxma.toml");
    let m = Arc::new(Mapping::load(&path).unwrap());
    let detail: Value = serde_json::from_str(DETAIL).unwrap();
    for (code, status, envelope_code, parameter) in [
        (1, 502, 1000, None),
        (2, 502, 1000, None),
        (3, 404, 1003, Some("agent")),
        (4, 409, 1004, None),
        (6, 409, 1006, Some("bonusProgram.bonusValueToSpend")),
        (18, 400, 1018, Some("positions")),
        (20, 400, 1020, Some("phone")),
        (24, 409, 1024, Some("phone")),
        (25, 409, 1025, Some("discountCardNumber")),
        (28, 429, 1028, None),
        (29, 400, 1029, Some("phone")),
        (48, 409, 1048, Some("email")),
        (49, 503, 1049, None),
        (99, 502, 1000, None),
    ] {
        let up = answers(&[(
            "balance",
            ok(json!({"errorCode": code, "description": "MAXMA says no"})),
        )]);
        let got = examples::answer(m.clone(), Op::CounterpartyDetail, &detail, up).await;
        assert_eq!(got.status, status, "errorCode {code}: {}", got.body);
        let e = &got.body["errors"][0];
        assert_eq!(e["code"], envelope_code, "errorCode {code}");
        assert_eq!(e["parameter"].as_str(), parameter, "errorCode {code}");
        assert!(e["error"].as_str().is_some_and(|t| !t.is_empty()));
    }
    // MAXMA refusing our key is an operator's problem, said as such.
    let up = answers(&[(
        "balance",
        Canned::Answer {
            status: 401,
            body: r#"{"errorCode":1}"#.into(),
        },
    )]);
    let got = examples::answer(m, Op::CounterpartyDetail, &detail, up).await;
    assert_eq!(
        (got.status, got.body["errors"][0]["code"].clone()),
        (502, json!(1401))
    );
}

#[tokio::test]
async fn credentials_never_reach_an_error_text() {
    use loyalty_bridge::error::Error;
    use loyalty_bridge::mapping::memory::Memory;
    use loyalty_bridge::mapping::run::{Invocation, run};
    // A mapping bug that makes jq quote a credential in its error message.
    let m = mapping(
        r#"
        [[ops."counterparty.detail".steps]]
        name = "b"
        method = "GET"
        path = "/x"
        [ops."counterparty.detail".response]
        body = '.credentials.key | tonumber'
        [[ops."counterparty.detail".errors]]
        step = "b"
        when = '.step.status == 418'
        error = { status = 400, code = 1, error = "x", message = "key was {.credentials.key}" }
        "#,
    );
    let tenant = tenant();
    let memory = Memory::new();
    let req: Value = serde_json::from_str(DETAIL).unwrap();
    let invocation = Invocation {
        op: Op::CounterpartyDetail,
        req,
        tenant: &tenant,
        request_id: "r",
        deadline: std::time::Instant::now() + std::time::Duration::from_secs(5),
        memory: &memory,
        cache: &loyalty_bridge::cache::StepCache::new(10),
        limiter: None,
        breaker: None,
        sale: Value::Null,
        metrics: None,
    };
    let plan = m.op(Op::CounterpartyDetail).unwrap();
    let up = answers(&[("b", ok(json!({})))]);
    // The answer is read (and its expression evaluated) by the operation, after the plan.
    let answer = run(&m, plan, invocation.clone(), up.as_ref())
        .await
        .and_then(|outcome| outcome.read::<Value>(plan, Op::CounterpartyDetail, &tenant));
    match answer {
        Err(Error::MappingFailed { detail, .. }) => {
            assert!(!detail.contains("k-123"), "{detail}");
            assert!(detail.contains("****"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    let up = answers(&[(
        "b",
        Canned::Answer {
            status: 418,
            body: "{}".into(),
        },
    )]);
    match run(&m, plan, invocation.clone(), up.as_ref()).await {
        Err(Error::Refused { message, .. }) => assert_eq!(message, "key was ****"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn remembered_values_and_tenant_settings_reach_later_calls() {
    use loyalty_bridge::mapping::memory::Memory;
    let m = mapping(
        r#"
        [[ops."retaildemand.verify".steps]]
        name = "send"
        method = "POST"
        path = "/codes"
        body = '{bonus_program: .settings.program}'
        remember = { key = "code:{.req.counterpartyId}", value = '.step.body.code', ttl_secs = 60 }
        [ops."retaildemand.verify".response]
        body = '{verificationCode: .steps.send.body.code}'

        [ops."retaildemand.create".recall]
        code = "code:{.req.agent.meta.id}"
        [[ops."retaildemand.create".checks]]
        when = '.recalled.code == null'
        error = { status = 412, code = 1, error = "Нет кода", message = "нет кода" }
        [[ops."retaildemand.create".checks]]
        when = 'true'
        respond = 'null'
        "#,
    );
    let tenant = Arc::new(Tenant {
        settings: json!({"program": "gold"}),
        ..(*tenant()).clone()
    });
    let memory = Arc::new(Memory::new());
    let sale: Value = serde_json::from_str(
        r#"{"retailStore":{"meta":{"id":"s"}},"meta":{"id":"sale-1"},"agent":{"meta":{"id":"c1"}},"positions":[]}"#,
    )
    .unwrap();
    let run = |op: Op, request: Value, up: Arc<CannedUpstream>| {
        let (tenant, m, memory) = (tenant.clone(), m.clone(), memory.clone());
        async move { examples::answer_with_memory(tenant, m, op, &request, up, memory).await }
    };
    // No code yet: refused before any call.
    let got = run(Op::RetaildemandCreate, sale.clone(), answers(&[])).await;
    assert_eq!(got.status, 412);
    // The verify call remembers the vendor's code (and sent the tenant's setting).
    let up = answers(&[("send", ok(json!({"code": "7731"})))]);
    let verify = json!({"retailStore": {"meta": {"id": "s"}}, "counterpartyId": "c1"});
    let got = run(Op::RetaildemandVerify, verify, up.clone()).await;
    assert_eq!(
        (got.status, got.body),
        (200, json!({"verificationCode": "7731"}))
    );
    assert_eq!(
        up.take_calls()[0].body.as_deref(),
        Some(&br#"{"bonus_program":"gold"}"#[..])
    );
    // Now the sale finds it.
    let got = run(Op::RetaildemandCreate, sale, answers(&[])).await;
    assert_eq!(got.status, 201);
}

#[tokio::test]
async fn idempotent_steps_are_retried_on_transient_failures_only() {
    use loyalty_bridge::upstream::{UpstreamError, UpstreamResponse};
    use std::sync::atomic::{AtomicU32, Ordering};
    /// Fails `failures` times with the given outcome, then answers 200.
    struct Flaky {
        failures: u32,
        status: Option<u16>,
        calls: AtomicU32,
    }
    impl loyalty_bridge::upstream::Upstream for Flaky {
        fn send(
            &self,
            _: loyalty_bridge::upstream::UpstreamRequest,
        ) -> loyalty_bridge::upstream::UpstreamFuture<'_> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst);
            let status = self.status;
            let fail = n < self.failures;
            Box::pin(async move {
                match (fail, status) {
                    (true, None) => Err(UpstreamError::Connect("refused".into())),
                    (true, Some(s)) => Ok(UpstreamResponse {
                        status: s,
                        body: "{}".into(),
                        retry_after: None,
                    }),
                    (false, _) => Ok(UpstreamResponse {
                        status: 200,
                        body: r#"{"bonuses": 5}"#.into(),
                        retry_after: None,
                    }),
                }
            })
        }
    }
    let idempotent = mapping(&DETAIL_OPS.replace(
        "path = \"/clients/",
        "idempotent = true\n    path = \"/clients/",
    ));
    let plain = mapping(DETAIL_OPS);
    let detail: Value = serde_json::from_str(DETAIL).unwrap();
    for (m, failures, status, want_status, want_calls) in [
        (&idempotent, 2, None, 200, 3), // two refused connections, then success
        (&idempotent, 2, Some(503), 200, 3), // two 503s, then success
        (&idempotent, 5, Some(429), 502, 3), // still throttled after 3 tries
        (&idempotent, 1, Some(400), 502, 1), // a refusal is never retried
        (&plain, 1, None, 502, 1),      // not idempotent: never retried
    ] {
        let up = Arc::new(Flaky {
            failures,
            status,
            calls: AtomicU32::new(0),
        });
        let got = examples::answer_as(
            tenant(),
            m.clone(),
            Op::CounterpartyDetail,
            &detail,
            up.clone(),
        )
        .await;
        assert_eq!(
            got.status, want_status,
            "{failures} × {status:?}: {}",
            got.body
        );
        assert_eq!(
            up.calls.load(Ordering::SeqCst),
            want_calls,
            "{failures} × {status:?}"
        );
    }
}

#[tokio::test]
async fn examples_start_from_remembered_values_and_check_what_is_kept() {
    let ops = r#"
        [ops."retaildemand.verify".recall]
        seen = "seen:{.req.counterpartyId}"
        [[ops."retaildemand.verify".steps]]
        name = "send"
        method = "POST"
        path = "/codes"
        body = '{seen: .recalled.seen}'
        remember = { key = "code:{.req.counterpartyId}", value = '{code: .step.body.code}', ttl_secs = 60 }
        [ops."retaildemand.verify".response]
        body = '{verificationCode: .steps.send.body.code}'
    "#;
    let example = |remembered: &str, expect_remembered: &str| {
        format!(
            r#"
            [[examples]]
            name = "verify"
            op = "retaildemand.verify"
            request = '{{"retailStore": {{"meta": {{"id": "s"}}}}, "counterpartyId": "c1"}}'
            remembered = '{remembered}'
            upstream.send.body = '{{"code": "7731"}}'
            expect_calls = [{{ step = "send", method = "POST", path = "/codes", body = '{{"seen": {{"by": "search"}}}}' }}]
            expect.status = 200
            expect.body = '{{"verificationCode": "7731"}}'
            expect.remembered = '{expect_remembered}'
            "#
        )
    };
    // Seeded values are recalled; kept values are compared; `null` means nothing is kept.
    let m = mapping(&format!(
        "{ops}{}",
        example(
            r#"{"seen:c1": {"by": "search"}}"#,
            r#"{"code:c1": {"code": "7731"}, "code:c2": null}"#
        )
    ));
    let reports = examples::run_examples(&m).await;
    assert!(reports[0].problems.is_empty(), "{:?}", reports[0].problems);
    // A wrong expectation names the key, what was expected and what was kept.
    let m = mapping(&format!(
        "{ops}{}",
        example(
            r#"{"seen:c1": {"by": "search"}}"#,
            r#"{"code:c1": {"code": "0000"}}"#
        )
    ));
    let problems = examples::run_examples(&m).await.remove(0).problems;
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].contains("code:c1")
            && problems[0].contains("0000")
            && problems[0].contains("7731"),
        "{}",
        problems[0]
    );
    // Without the seed, the recall finds nothing and the call differs.
    let m = mapping(&format!("{ops}{}", example("{}", "{}")));
    let problems = examples::run_examples(&m).await.remove(0).problems;
    assert!(problems.iter().any(|p| p.contains("body")), "{problems:?}");
    // Not an object: refused when the file is loaded, naming the place.
    let text = format!(
        r#"
        [vendor]
        name = "test"
        {ops}{}
        "#,
        example("[1]", "{}")
    );
    let err = Mapping::parse(&text, Path::new("test.toml"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("remembered"), "{err}");
}

#[tokio::test]
async fn examples_give_fake_credentials_and_check_the_headers_sent() {
    // The vendor's headers (X-Key, Basic auth) come from the credentials; the step adds an
    // idempotency key from the request; the lookup carries none.
    let ops = r#"
        [[ops."retaildemand.create".steps]]
        name = "find"
        method = "GET"
        path = "/find"
        [[ops."retaildemand.create".steps]]
        name = "sale"
        method = "POST"
        path = "/sales"
        headers = { Idempotency-Key = "ms-{.req.meta.id}" }
        body = '{id: .req.meta.id}'
    "#;
    let example = |credentials: &str, sale_headers: &str| {
        format!(
            r#"
            [[examples]]
            name = "sale"
            op = "retaildemand.create"
            {credentials}
            request = '{{"retailStore": {{"meta": {{"id": "s"}}}}, "meta": {{"id": "sale-1"}}, "positions": []}}'
            upstream.find.body = '{{}}'
            upstream.sale.body = '{{}}'
            expect_calls = [
              {{ step = "find", method = "GET", path = "/find", headers = {{ idempotency-key = false, x-key = "test-key" }} }},
              {{ step = "sale", method = "POST", path = "/sales", headers = {sale_headers} }},
            ]
            expect.status = 201
            "#
        )
    };
    let credentials = r#"credentials = '{"key": "test-key", "user": "shop", "password": "fake"}'"#;
    // "shop:fake" in base64.
    let headers = r#"{ Idempotency-Key = "ms-sale-1", X-KEY = "test-key", Authorization = "Basic c2hvcDpmYWtl" }"#;
    let m = mapping(&format!("{ops}{}", example(credentials, headers)));
    let report = examples::run_examples(&m).await.remove(0);
    assert!(report.problems.is_empty(), "{:?}", report.problems);

    // Without `credentials` an example's tenant has none: the key is sent empty.
    let m = mapping(&format!("{ops}{}", example("", headers)));
    let problems = examples::run_examples(&m).await.remove(0).problems;
    assert!(
        problems.contains(
            &"call 0 (find): header x-key\n  expected \"test-key\"\n  sent     \"\"".to_string()
        ),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("call 1 (sale): header X-KEY")),
        "{problems:?}"
    );

    // A wrong idempotency key names the call, the header, what was expected and what was sent.
    let m = mapping(&format!(
        "{ops}{}",
        example(credentials, r#"{ Idempotency-Key = "ms-sale-2" }"#)
    ));
    let problems = examples::run_examples(&m).await.remove(0).problems;
    assert_eq!(
        problems,
        [
            "call 1 (sale): header Idempotency-Key\n  expected \"ms-sale-2\"\n  sent     \"ms-sale-1\""
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_rule_with_pause_ms_pauses_the_tenants_calls() {
    use loyalty_bridge::error::{Error, UpstreamFailure};
    use loyalty_bridge::mapping::memory::Memory;
    use loyalty_bridge::mapping::run::{Invocation, run};
    use loyalty_bridge::metrics::LimiterMetrics;
    use loyalty_bridge::upstream::limit::TenantLimiter;
    use std::time::Duration;
    // A throttle signalled inside a 200 body, as MAXMA's error 49 is.
    let m = mapping(&format!(
        r#"{DETAIL_OPS}
        [[ops."counterparty.detail".errors]]
        when = '.step.body.errorCode == 49'
        pause_ms = 5000
        error = {{ status = 503, code = 1049, error = "Недоступно", message = "повторите" }}
        "#
    ));
    let tenant = tenant();
    let limiter = TenantLimiter::new(
        &Limits {
            max_wait_ms: 1_000,
            ..Limits::default()
        },
        LimiterMetrics::default(),
    );
    let memory = Memory::new();
    let cache = loyalty_bridge::cache::StepCache::new(10);
    let invocation = Invocation {
        op: Op::CounterpartyDetail,
        req: serde_json::from_str(DETAIL).unwrap(),
        tenant: &tenant,
        request_id: "r",
        deadline: std::time::Instant::now() + Duration::from_secs(30),
        memory: &memory,
        cache: &cache,
        limiter: Some(&limiter),
        breaker: None,
        metrics: None,
        sale: Value::Null,
    };
    let plan = m.op(Op::CounterpartyDetail).unwrap();
    let up = answers(&[("b", ok(json!({"errorCode": 49})))]);
    match run(&m, plan, invocation.clone(), up.as_ref()).await {
        Err(Error::Refused { code, .. }) => assert_eq!(code, 1049),
        other => panic!("{other:?}"),
    }
    assert_eq!(up.take_calls().len(), 1);
    assert_eq!(limiter.paused_for(), Duration::from_secs(5));
    // The next call cannot wait 5 s (max_wait_ms = 1000): refused at once, the vendor untouched.
    let up = answers(&[("b", ok(json!({"bonuses": 5})))]);
    match run(&m, plan, invocation.clone(), up.as_ref()).await {
        Err(Error::Upstream {
            failure: UpstreamFailure::Throttled { wait_ms },
            ..
        }) => assert_eq!(wait_ms, 5_000),
        other => panic!("{other:?}"),
    }
    assert!(up.take_calls().is_empty());
    // Within a second of the end, a call waits the rest out and goes through.
    tokio::time::advance(Duration::from_millis(4_200)).await;
    let started = tokio::time::Instant::now();
    run(&m, plan, invocation.clone(), up.as_ref())
        .await
        .unwrap();
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(800) && waited < Duration::from_millis(810),
        "{waited:?}"
    );
    assert_eq!(up.take_calls().len(), 1);
    // A rule without pause_ms pauses nothing; golden examples (no limiter) ignore pause_ms.
    let detail: Value = serde_json::from_str(DETAIL).unwrap();
    let up = answers(&[("b", ok(json!({"errorCode": 49})))]);
    let got = examples::answer_as(
        tenant.clone(),
        m.clone(),
        Op::CounterpartyDetail,
        &detail,
        up,
    )
    .await;
    assert_eq!(got.status, 503);
}

/// A step's rules see its outcome as `.step` and as `.steps.<name>`; later expressions see it
/// as `.steps.<name>` only (no `name`, no `.step`), whether the runner copied the outcome
/// (a rule reads `.steps`) or moved it there after the rules (none does).
#[tokio::test]
async fn a_steps_outcome_is_the_same_whether_copied_or_moved() {
    let ops = |when: &str| {
        format!(
            r#"
    [[ops."counterparty.detail".steps]]
    name = "b"
    method = "GET"
    path = "/balance"
    [[ops."counterparty.detail".errors]]
    step = "b"
    when = '{when}'
    error = {{ status = 409, code = 1409, error = "Тринадцать", message = "{{.step.name}}: {{.step.body.bonuses}}" }}
    [ops."counterparty.detail".response]
    body = '{{bonusProgram: {{agentBonusBalance: (if .steps.b.name == null and .step == null then bal else -1 end)}}}}'
"#
        )
    };
    for (when, copied) in [
        (".steps.b.body.bonuses == 13 and .step.name == \"b\"", true),
        (". as $root | $root.steps.b.body.bonuses == 13", true),
        (".step.body.bonuses == 13 and .step.name == \"b\"", false),
    ] {
        let m = mapping(&ops(when));
        let plan = m.op(Op::CounterpartyDetail).expect("planned");
        assert_eq!(plan.steps[0].copy_outcome, copied, "{when}");
        let up = answers(&[("b", ok(json!({"bonuses": 12.50})))]);
        let got = run(&m, Op::CounterpartyDetail, DETAIL, &up).await;
        assert_eq!(
            (got.status, got.body),
            (200, json!({"bonusProgram": {"agentBonusBalance": 12.50}})),
            "{when}"
        );
        let up = answers(&[("b", ok(json!({"bonuses": 13})))]);
        let got = run(&m, Op::CounterpartyDetail, DETAIL, &up).await;
        assert_eq!(got.status, 409, "{when}: {}", got.body);
        assert_eq!(got.body["errors"][0]["error_message"], "b: 13", "{when}");
    }
}

/// The hot path copies no vendor answer: no rule after a recalc step of the MAXMA and UDS
/// mappings reads `.steps`. (Premium Bonus's vendor rule on token errors uses `test`, which only
/// jaq evaluates: what it reads is not known, so its steps' outcomes are copied.)
#[test]
fn shipped_recalc_steps_move_their_outcomes() {
    for name in ["maxma", "uds"] {
        let mapping = Mapping::load(Path::new(&format!("mappings/{name}.toml")))
            .unwrap_or_else(|e| panic!("{e}"));
        let plan = mapping
            .op(Op::RetaildemandRecalc)
            .expect("recalc is mapped");
        for step in &plan.steps {
            assert!(
                !step.copy_outcome,
                "{name}: recalc step {} copies its outcome",
                step.name
            );
        }
    }
}
