//! Criterion micro-benchmarks of the mapping engine (issue #7, docs/design.md §3).
//!
//! The reference is MAXMA's `retaildemand.recalc` on a 10-position spending cart:
//! * `recalc_request`: the `calc` step's body expression (MoySklad request → vendor body);
//! * `recalc_response`: the operation's `response.body` (vendor answers → LoyaltyAPI answer);
//!
//! each next to a hand-written `serde_json` transform of the same input producing the same JSON
//! (checked once, before any timing, so the ratio compares equal work). The input is the root
//! object every expression sees (the bridge's `src/mapping/run/root.rs`: `.req`, `.steps.<name>`, …),
//! built here from the same data the bridge would have after its vendor calls; no HTTP is
//! involved.
//!
//! Then the money built-ins, natively and through jq: `allocate_discount`, `kopecks`/`rubles`,
//! `sum_money`.
//!
//! The bridge's whole CPU work for one recalc is its own bench (`benches/recalc.rs`).
//!
//! Run: `cargo bench -p engine --bench mapping` (a filter narrows it:
//! `cargo bench -p engine --bench mapping -- recalc`).

mod maxma_recalc;

use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use engine::builtins::{self, AllocInput};
use engine::expr::Expr;
use engine::op::Op;
use engine::plan::{Mapping, OpPlan};
use maxma_recalc::{cart, dec, hand_request, hand_response, root_after_calc, root_before_calc};
use rust_decimal::Decimal;
use serde_json::Value;

/// The server's allocator (jemalloc, the bridge's `src/main.rs`), so that these timings are the
/// server's: allocation is a good part of evaluating an expression.
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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

fn recalc(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings/maxma.toml");
    let mapping = Mapping::load(&path).expect("mappings/maxma.toml loads");
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

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = recalc, builtins_bench
}
criterion_main!(benches);
