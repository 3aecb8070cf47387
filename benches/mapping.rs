//! Criterion micro-benchmarks of the mapping engine (issue #7, docs/design.md §3).
//!
//! The reference is MAXMA's `retaildemand.recalc` on a 10-position spending cart:
//! * `recalc_request`: the `calc` step's body expression (MoySklad request → vendor body);
//! * `recalc_response`: the operation's `response.body` (vendor answers → LoyaltyAPI answer);
//!
//! each next to a hand-written `serde_json` transform of the same input producing the same JSON
//! (checked once, before any timing, so the ratio compares equal work). The input is the root
//! object every expression sees (`src/mapping/run.rs`: `.req`, `.steps.<name>`, …), built here
//! from the same data the bridge would have after its vendor calls; no HTTP is involved.
//!
//! Then the money built-ins, natively and through jq: `allocate_discount`, `kopecks`/`rubles`,
//! `sum_money`.
//!
//! Last, `recalc_in_process`: the bridge's whole CPU work for one recalc without the sockets —
//! the body bytes parsed and validated, the plan run (balance and settings from the step cache,
//! as in production; `calc` answered from memory), the answer checked against the LoyaltyAPI
//! model and serialized. The load harness (`benches/load/`) measures the same work with HTTP.
//!
//! Run: `cargo bench --bench mapping` (a filter narrows it: `cargo bench --bench mapping -- recalc`).

use std::alloc::{GlobalAlloc, Layout};
use std::hint::black_box;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use loyalty_bridge::cache::StepCache;
use loyalty_bridge::loyalty::ops::{OpContext, Request};
use loyalty_bridge::mapping::golden;
use loyalty_bridge::mapping::memory::Memory;
use loyalty_bridge::upstream::{Upstream, UpstreamFuture, UpstreamRequest, UpstreamResponse};

use criterion::{Criterion, criterion_group, criterion_main};
use loyalty_bridge::loyalty::ops::Op;
use loyalty_bridge::mapping::builtins::{self, AllocInput};
use loyalty_bridge::mapping::expr::Expr;
use loyalty_bridge::mapping::plan::{Mapping, OpPlan};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// A 10-position SPENDING cart shaped like `loyaltyapi/examples/retaildemand.recalc.request.json`
/// (fractional and whole quantities, kopecks, serial numbers, a pack).
fn cart() -> Value {
    let text = r#"{
  "retailStore": {"meta": {"href": "https://api.moysklad.ru/api/remap/1.2/entity/retailstore/2b5eb22f-139e-11e6-9464-e4de00000073",
                           "id": "2b5eb22f-139e-11e6-9464-e4de00000073"}, "name": "Магазин №1"},
  "agent": {"meta": {"href": "https://api.moysklad.ru/api/remap/1.2/entity/counterparty/276a6f50-7ffd-11e6-8a84-bae50000005",
                     "id": "276a6f50-7ffd-11e6-8a84-bae50000005"},
            "name": "Иванов Иван Иванович", "discountCardNumber": "DEMO-0001", "phone": "+7 999 000 00 01",
            "email": "ivanov@example.com", "legalFirstName": "Иван", "legalMiddleName": "Иванович",
            "legalLastName": "Иванов", "sex": "MALE", "birthDate": "1985-03-14 00:00:00"},
  "positions": [
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b0"}}, "quantity": 1.5, "price": 123.45,
     "pack": {"id": "98f87a95-c0b6-11ee-0a80-06e1000360e2", "name": "Бутылка 1,5 л", "quantity": 1.5, "barcode": "2000000051420"}},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b1"}}, "quantity": 3, "price": 33.33,
     "sn": [{"meta": {"id": "2b5eb22f-139e-11e6-9464-e4de00000001"}, "name": "7895541"},
            {"meta": {"id": "2b5eb22f-139e-11e6-9464-e4de00000002"}, "name": "7895542"},
            {"meta": {"id": "2b5eb22f-139e-11e6-9464-e4de00000003"}, "name": "7895543"}]},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b2"}}, "quantity": 1, "price": 250.00},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b3"}}, "quantity": 2, "price": 89.90},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b4"}}, "quantity": 0.75, "price": 640.00},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b5"}}, "quantity": 6, "price": 19.99},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b6"}}, "quantity": 1, "price": 1299.00},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b7"}}, "quantity": 4, "price": 54.50},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b8"}}, "quantity": 2.345, "price": 399.90},
    {"assortment": {"meta": {"id": "9c56720c-e8a7-4fdc-aea4-7104f28207b9"}}, "quantity": 10, "price": 7.50}
  ],
  "bonusProgram": {"transactionType": "SPENDING"},
  "preferredBonusToSpend": 300
}"#;
    serde_json::from_str(text).expect("cart JSON")
}

/// What MAXMA answers to the cart (per-row discounts adding up to 300 bonuses).
fn calc_answer() -> Value {
    let text = r#"{"calculationResult": {
  "rows": [
    {"id": "0", "totalDiscount": 15.55, "bonuses": {"applied": 16, "collected": 9}},
    {"id": "1", "totalDiscount": 8.41, "bonuses": {"applied": 8, "collected": 5}},
    {"id": "2", "totalDiscount": 21.02, "bonuses": {"applied": 21, "collected": 12}},
    {"id": "3", "totalDiscount": 15.12, "bonuses": {"applied": 15, "collected": 9}},
    {"id": "4", "totalDiscount": 40.36, "bonuses": {"applied": 40, "collected": 24}},
    {"id": "5", "totalDiscount": 10.08, "bonuses": {"applied": 10, "collected": 6}},
    {"id": "6", "totalDiscount": 109.23, "bonuses": {"applied": 109, "collected": 65}},
    {"id": "7", "totalDiscount": 18.33, "bonuses": {"applied": 18, "collected": 11}},
    {"id": "8", "totalDiscount": 55.6, "bonuses": {"applied": 56, "collected": 33}},
    {"id": "9", "totalDiscount": 6.3, "bonuses": {"applied": 7, "collected": 4}}
  ],
  "summary": {"discounts": {"auto": 0.00, "bonuses": 300.00, "manual": 0.00, "offer": 0.00, "promocode": 0.00,
                            "rounding": 0.00}, "prepaidAmount": 0.00, "totalDiscount": 300.00},
  "bonuses": {"applied": 300, "collected": 178, "maxToApply": 1784}}}"#;
    let mut answer: Value = serde_json::from_str(text).expect("calc JSON");
    // Every row also carries its discount by kind, as MAXMA (and the sandbox) answer: nothing
    // reads it, but the bridge parses it.
    for row in answer["calculationResult"]["rows"]
        .as_array_mut()
        .expect("rows")
    {
        let bonuses = row["totalDiscount"].clone();
        let zero = Value::Number(serde_json::Number::from_str("0.00").expect("a number"));
        row["discounts"] = json!({"auto": zero, "bonuses": bonuses, "manual": zero, "offer": zero,
                                  "promocode": zero, "rounding": zero});
    }
    answer
}

fn step(body: Value) -> Value {
    json!({"status": 200, "body": body, "error": null})
}

/// The root object the plan's expressions see, as `run.rs` builds it, after the given steps.
fn root(steps: Map<String, Value>) -> Value {
    json!({
        "req": cart(),
        "op": "retaildemand.recalc",
        "tenant": {"name": "bench", "vendor": "maxma"},
        "credentials": {"api_key": "sandbox-key"},
        "settings": null,
        "request_id": "bench-1",
        "sale": null,
        "now": "2026-01-01T00:00:00.000Z",
        "steps": steps,
        "recalled": {},
    })
}

/// Before the `calc` step: balance and settings answered.
fn root_before_calc() -> Value {
    let mut steps = Map::new();
    steps.insert(
        "balance".into(),
        step(json!({"client": {"phoneNumber": "+79990000001", "bonuses": 500}})),
    );
    steps.insert(
        "settings".into(),
        step(json!({"phoneVerification": false, "bonusApplyingConfirmation": false})),
    );
    root(steps)
}

fn root_after_calc() -> Value {
    let mut root = root_before_calc();
    root["steps"]["calc"] = step(calc_answer());
    root
}

fn plan(mapping: &Mapping) -> &OpPlan {
    mapping
        .op(Op::RetaildemandRecalc)
        .expect("maxma.toml maps retaildemand.recalc")
}

fn calc_body(plan: &OpPlan) -> &Expr {
    plan.steps
        .iter()
        .find(|s| s.name == "calc")
        .and_then(|s| s.call.body.as_ref())
        .expect("recalc has a calc step with a body")
}

// ---------------------------------------------------------------------------------------------
// Hand-written equivalents: what a Rust integration for MAXMA alone would write.

fn dec(v: &Value) -> Decimal {
    builtins::decimal_of(v).expect("a number")
}

fn num(d: Decimal) -> Value {
    Value::Number(serde_json::Number::from_str(&d.normalize().to_string()).expect("a number"))
}

fn text<'a>(v: &'a Value, default: &'a str) -> &'a str {
    v.as_str().unwrap_or(default)
}

/// `client_query(.req.agent)`: by phone, else card, else externalId.
fn client_query(agent: &Value) -> Value {
    let phone = agent["phone"]
        .as_str()
        .filter(|p| !p.is_empty())
        .and_then(|p| builtins::phone_e164(p).ok());
    if let Some(phone) = phone {
        json!({"phoneNumber": phone})
    } else if let Some(card) = agent["discountCardNumber"]
        .as_str()
        .filter(|c| !c.is_empty())
    {
        json!({"card": card})
    } else {
        json!({"externalId": agent["meta"]["id"]})
    }
}

fn hand_request(root: &Value) -> Value {
    let req = &root["req"];
    let store = &req["retailStore"];
    let rows: Vec<Value> = req["positions"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .enumerate()
                .map(|(i, p)| {
                    let sku = &p["assortment"]["meta"]["id"];
                    json!({"id": i.to_string(),
                           "product": {"sku": sku, "title": sku, "blackPrice": p["price"]},
                           "qty": p["quantity"]})
                })
                .collect()
        })
        .unwrap_or_default();
    let apply = if req["bonusProgram"]["transactionType"] == "SPENDING" {
        match &req["preferredBonusToSpend"] {
            Value::Null => json!("auto"),
            v => num(dec(v).floor()),
        }
    } else {
        json!(0)
    };
    json!({"calculationQuery": {
        "client": client_query(&req["agent"]),
        "shop": {"code": store["meta"]["id"], "name": text(&store["name"], "")},
        "cashier": {"code": store["meta"]["id"], "name": text(&store["name"], "Касса")},
        "rows": rows,
        "applyBonuses": apply,
        "collectBonuses": "auto",
    }})
}

/// One position through `allocate_discount`, as the jq built-in writes it.
fn allocate_one(position: &Value, discount: Decimal, out: &mut Vec<Value>) {
    let input = AllocInput {
        quantity: dec(&position["quantity"]),
        price: dec(&position["price"]),
        serials: position["sn"].as_array().map_or(0, Vec::len),
    };
    for line in builtins::allocate_discount(&[input], discount).expect("allocatable") {
        let mut p = position.clone();
        if let Value::Object(map) = &mut p {
            map.insert("quantity".into(), num(line.quantity));
            map.insert("discountedPrice".into(), num(line.discounted_price));
            map.insert("discountPercent".into(), num(line.discount_percent));
            // The clone kept every serial: only a split (or a non-array `sn`) rewrites them.
            let all = position["sn"].as_array().map_or(&[][..], Vec::as_slice);
            if map.contains_key("sn") && !(position["sn"].is_array() && line.sn == (0..all.len())) {
                map.insert("sn".into(), Value::Array(all[line.sn].to_vec()));
            }
        }
        out.push(p);
    }
}

fn hand_response(root: &Value) -> Value {
    let req = &root["req"];
    let steps = &root["steps"];
    let r = &steps["calc"]["body"]["calculationResult"];
    let rows = r["rows"].as_array().map(Vec::as_slice).unwrap_or_default();
    let mut positions = Vec::new();
    for (i, p) in req["positions"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let key = i.to_string();
        let row = rows
            .iter()
            .find(|row| row["id"].as_str() == Some(key.as_str()))
            .or_else(|| rows.get(i));
        let discount = row
            .map(|row| &row["totalDiscount"])
            .filter(|d| !d.is_null())
            .map_or(Decimal::ZERO, dec);
        allocate_one(p, discount, &mut positions);
    }
    let balance = &steps["balance"]["body"]["client"]["bonuses"];
    let applied = &r["bonuses"]["applied"];
    let collected = &r["bonuses"]["collected"];
    let spending = req["bonusProgram"]["transactionType"] == "SPENDING";
    let confirm = steps["settings"]["body"]["bonusApplyingConfirmation"]
        .as_bool()
        .unwrap_or(false);
    json!({
        "agent": req["agent"],
        "positions": positions,
        "bonusProgram": {
            "transactionType": req["bonusProgram"]["transactionType"],
            "agentBonusBalance": balance,
            "bonusValueToSpend": applied,
            "bonusValueToEarn": collected,
            "agentBonusBalanceAfter": num(dec(balance) - dec(applied) + dec(collected)),
            "paidByBonusPoints": applied,
            "receiptExtraInfo": format!("Будет начислено бонусов: {collected}"),
        },
        "needVerification": spending && dec(applied) > Decimal::ZERO && confirm,
    })
}

// ---------------------------------------------------------------------------------------------

fn recalc(c: &mut Criterion) {
    let mapping = Mapping::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/maxma.toml"))
        .expect("mappings/maxma.toml loads");
    let plan = plan(&mapping);
    let body = calc_body(plan);
    let response = plan.response.as_ref().expect("recalc has a response");
    let before = root_before_calc();
    let after = root_after_calc();

    // The comparison is honest only if both sides produce the same JSON: checked once, here.
    let engine = body.eval(&before).expect("calc body evaluates");
    assert_eq!(engine, hand_request(&before), "request transforms differ");
    let engine = response.eval(&after).expect("response evaluates");
    assert_eq!(engine, hand_response(&after), "response transforms differ");
    // The jaq-only path (what the engine did before the native fast path) must agree too.
    assert_eq!(body.eval_jaq(&before).ok(), Some(hand_request(&before)));
    assert_eq!(response.eval_jaq(&after).ok(), Some(hand_response(&after)));
    eprintln!(
        "native fast path: calc body {}, response {}",
        body.is_native(),
        response.is_native()
    );

    let mut g = c.benchmark_group("recalc_request");
    g.bench_function("engine", |b| b.iter(|| body.eval(black_box(&before))));
    g.bench_function("engine_jaq_only", |b| {
        b.iter(|| body.eval_jaq(black_box(&before)))
    });
    g.bench_function("hand_written", |b| {
        b.iter(|| hand_request(black_box(&before)))
    });
    g.finish();
    let mut g = c.benchmark_group("recalc_response");
    g.bench_function("engine", |b| b.iter(|| response.eval(black_box(&after))));
    g.bench_function("engine_jaq_only", |b| {
        b.iter(|| response.eval_jaq(black_box(&after)))
    });
    g.bench_function("hand_written", |b| {
        b.iter(|| hand_response(black_box(&after)))
    });
    g.finish();
}

fn builtins_bench(c: &mut Criterion) {
    let positions: Vec<AllocInput> = cart()["positions"]
        .as_array()
        .expect("positions")
        .iter()
        .map(|p| AllocInput {
            quantity: dec(&p["quantity"]),
            price: dec(&p["price"]),
            serials: p["sn"].as_array().map_or(0, Vec::len),
        })
        .collect();
    let total = Decimal::new(30000, 2);
    let mut g = c.benchmark_group("builtins");
    g.bench_function("allocate_discount/native_10", |b| {
        b.iter(|| builtins::allocate_discount(black_box(&positions), black_box(total)))
    });
    let jq = Expr::compile(".positions | allocate_discount(300)").expect("compiles");
    let input = cart();
    jq.eval(&input).expect("allocate_discount evaluates");
    g.bench_function("allocate_discount/jq_10", |b| {
        b.iter(|| jq.eval_jaq(black_box(&input)))
    });

    let amounts: Vec<Decimal> = positions.iter().map(|p| p.price * p.quantity).collect();
    g.bench_function("sum_money/native_10", |b| {
        b.iter(|| builtins::sum_money(black_box(&amounts)))
    });
    let jq = Expr::compile("[.positions[] | .price] | sum_money").expect("compiles");
    jq.eval(&input).expect("sum_money evaluates");
    g.bench_function("sum_money/jq_10", |b| {
        b.iter(|| jq.eval_jaq(black_box(&input)))
    });

    let amount = Decimal::new(1234567, 3);
    g.bench_function("kopecks_rubles/native", |b| {
        b.iter(|| builtins::rubles(builtins::kopecks(black_box(amount))))
    });
    let jq = Expr::compile("kopecks | rubles").expect("compiles");
    let one: Value = serde_json::from_str("1234.567").expect("number");
    jq.eval(&one).expect("kopecks evaluates");
    g.bench_function("kopecks_rubles/jq", |b| {
        b.iter(|| jq.eval_jaq(black_box(&one)))
    });
    g.finish();
}

/// The server's allocator (jemalloc, `src/main.rs`), counting allocations, so the bench can
/// report how many one recalc makes (the hot path is meant to stay allocation-light).
struct CountingAllocator;

#[cfg(not(target_env = "msvc"))]
static BACKING: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
#[cfg(target_env = "msvc")]
static BACKING: std::alloc::System = std::alloc::System;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
/// Bytes asked for (a reallocation counts its new size).
static ALLOCATED_BYTES: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the backing allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which the backing one shares.
        unsafe { BACKING.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by the backing allocator with `layout` (see `alloc`).
        unsafe { BACKING.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: as for `dealloc`; `new_size` is the caller's, unchanged.
        unsafe { BACKING.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Answers each step from memory, like the MAXMA sandbox would (no recording: it runs millions
/// of times).
struct MemoryVendor {
    balance: Bytes,
    settings: Bytes,
    calc: Bytes,
    /// Each answer is "not ready" once before it is given, so that requests driven together
    /// all reach the vendor before any reads its answer (see `recalc_interleaved`).
    pending_once: bool,
}

/// Pending on its first poll (waking its task at once), ready on the next.
struct PendingOnce {
    polled: bool,
}

impl std::future::Future for PendingOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.polled {
            return std::task::Poll::Ready(());
        }
        self.polled = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

impl Upstream for MemoryVendor {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture<'_> {
        let body = match request.step.as_str() {
            "balance" => self.balance.clone(),
            "settings" => self.settings.clone(),
            _ => self.calc.clone(),
        };
        // Without `pending_once`, as if polled already: ready at once.
        let wait = PendingOnce {
            polled: !self.pending_once,
        };
        Box::pin(async move {
            wait.await;
            Ok(UpstreamResponse {
                status: 200,
                body,
                retry_after: None,
            })
        })
    }
}

fn recalc_in_process(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings/maxma.toml");
    let mapping = Arc::new(Mapping::load(&path).expect("mappings/maxma.toml loads"));
    let body = serde_json::to_vec(&cart()).expect("cart serializes");
    let vendor = Arc::new(MemoryVendor {
        // As the MAXMA sandbox answers for the cart's customer.
        balance: Bytes::from_static(
            r#"{"bonuses":[{"amount":500,"expireAt":null}],"client":{"birthdate":"1985-03-14","bonuses":500,"card":"DEMO-0001","email":"ivanov@example.com","externalId":"demo-1","fullName":"Иванов Иван Иванович","gender":1,"name":"Иван","patronymicName":"Иванович","pendingBonuses":0,"phoneNumber":"+79990000001","surname":"Иванов"},"level":{"level":1,"levelSpent":0.00,"name":"Базовый","progressPercent":0,"remaining":0.00},"walletsLink":"https://wallet.maxma-sandbox.invalid/c/0"}"#.as_bytes(),
        ),
        settings: Bytes::from_static(
            br#"{"phoneVerification": false, "bonusApplyingConfirmation": false}"#,
        ),
        calc: Bytes::from(serde_json::to_vec(&calc_answer()).expect("calc serializes")),
        pending_once: false,
    });
    let tenant = Arc::new(golden::example_tenant(&mapping));
    let memory = Arc::new(Memory::new());
    // One cache for the whole run: after the first call balance and settings are hits.
    let cache = Arc::new(StepCache::new(1_000));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let context = |vendor: Arc<MemoryVendor>| OpContext {
        tenant: tenant.clone(),
        request_id: "bench-1".into(),
        mapping: Some(mapping.clone()),
        upstream: vendor,
        upstream_calls: Default::default(),
        deadline: Instant::now() + Duration::from_secs(10),
        memory: memory.clone(),
        cache: cache.clone(),
        limiter: None,
        breaker: None,
        journal: None,
        metrics: None,
    };
    /// One recalc as the server runs it: body parsed and validated, plan run, answer written.
    async fn recalc(ctx: &OpContext, body: &[u8]) -> Vec<u8> {
        let request =
            Request::parse(Op::RetaildemandRecalc, None, body).expect("the cart is valid");
        let reply = request.apply(ctx).await.expect("the recalc answers");
        reply.body().expect("serializes").expect("has a body")
    }
    let once = || {
        let ctx = context(vendor.clone());
        runtime.block_on(recalc(&ctx, black_box(&body)))
    };
    let answer: Value = serde_json::from_slice(&once()).expect("JSON answer");
    // Same data as the transform benches above: the same answer, through the typed model.
    assert_eq!(
        answer,
        hand_response(&root_after_calc()),
        "in-process answer differs"
    );
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let bytes_before = ALLOCATED_BYTES.load(Ordering::Relaxed);
    once();
    eprintln!(
        "recalc_in_process: {} allocations (incl. reallocations), {} bytes allocated per recalc",
        ALLOCATIONS.load(Ordering::Relaxed) - before,
        ALLOCATED_BYTES.load(Ordering::Relaxed) - bytes_before
    );
    let mut g = c.benchmark_group("recalc_in_process");
    g.bench_function("parse_run_check_serialize", |b| b.iter(once));
    g.finish();

    // The same recalc, INTERLEAVED at a time on one thread, each parsed and sent before any
    // reads its answer, as one worker's connections are under load: per recalc against the
    // above, what interleaving alone costs (its trees may be out of cache when read again).
    const INTERLEAVED: usize = 32;
    let vendor = Arc::new(MemoryVendor {
        pending_once: true,
        balance: vendor.balance.clone(),
        settings: vendor.settings.clone(),
        calc: vendor.calc.clone(),
    });
    let together = || {
        let ctx = context(vendor.clone());
        runtime.block_on(async {
            let mut recalcs: Vec<_> = (0..INTERLEAVED)
                .map(|_| Box::pin(recalc(&ctx, black_box(&body))))
                .collect();
            let mut answers: Vec<Option<Vec<u8>>> = vec![None; INTERLEAVED];
            // Polled in turn, like one worker's connections: all reach the vendor, then all
            // read their answers.
            std::future::poll_fn(|cx| {
                let mut pending = false;
                for (recalc, answer) in recalcs.iter_mut().zip(answers.iter_mut()) {
                    if answer.is_none() {
                        match recalc.as_mut().poll(cx) {
                            std::task::Poll::Ready(body) => *answer = Some(body),
                            std::task::Poll::Pending => pending = true,
                        }
                    }
                }
                if pending {
                    std::task::Poll::Pending
                } else {
                    std::task::Poll::Ready(())
                }
            })
            .await;
            answers
        })
    };
    for body in together() {
        let answer: Value = serde_json::from_slice(&body.expect("answered")).expect("JSON");
        assert_eq!(
            answer,
            hand_response(&root_after_calc()),
            "interleaved answer differs"
        );
    }
    let mut g = c.benchmark_group("recalc_interleaved");
    g.throughput(criterion::Throughput::Elements(INTERLEAVED as u64));
    g.bench_function("32_at_a_time", |b| b.iter(together));
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = recalc, builtins_bench, recalc_in_process
}
criterion_main!(benches);
