//! Hostile input (issue #24): the request parser, validation, every operation through every
//! bundled mapping against a vendor that answers anything, and the mapping engine's
//! expressions, over arbitrary and mutated-realistic JSON and bytes. Nothing may panic; every
//! answer is a 2xx with a JSON body or an error envelope (`{"errors":[{error, code,
//! error_message, parameter?}]}`) with a 4xx/5xx status, and never a 500 (a bug).
//!
//! CI runs a few hundred cases per property (`LB_HOSTILE_CASES`, default below). The long run,
//! 100,000 cases per property:
//!
//! ```text
//! LB_HOSTILE_CASES=100000 cargo test --release --test it hostile_input
//! ```
//!
//! A debug build is the stronger run per case (every native evaluation of an expression is
//! checked against jaq's, `crates/engine/src/expr/mod.rs`), the release build the faster one.
//!
//! Seeds: the LoyaltyAPI request fixtures (`tests/fixtures/loyaltyapi/*.request.json`) and the
//! golden examples of `mappings/*.toml` (their requests, canned vendor answers, settings,
//! remembered values and sales). Mutations replace subtrees with arbitrary values (huge,
//! negative, fractional and exponent numbers, `-0`, long and odd strings, nested arrays and
//! objects, nulls), graft one part of the value onto another, delete, duplicate and stringify.
//! Everything is deterministic and shrinks; no network, no sleeps (a paused tokio clock runs
//! the retries' backoff).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use engine::example::Canned;
use engine::expr::Expr;
use engine::plan::{self, Mapping, RuleAction};
use engine::template::{Encoding, Template};
use loyalty_bridge::config::Tenant;
use loyalty_bridge::error;
use loyalty_bridge::loyalty::examples::{self, Answer};
use loyalty_bridge::loyalty::ops::{self, Op};
use loyalty_bridge::mapping::memory::Memory;
use loyalty_bridge::secret::Secret;
use loyalty_bridge::store::{Kind, Store};
use loyalty_bridge::upstream::{
    Upstream, UpstreamError, UpstreamFuture, UpstreamRequest, UpstreamResponse,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::TestCaseError;
use serde_json::{Map, Value, json};

/// Cases per property: `LB_HOSTILE_CASES`, else enough for CI to run the file in seconds.
fn cases() -> u32 {
    std::env::var("LB_HOSTILE_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000)
}

/// With `LB_HOSTILE_STATS` set, each property prints what its cases came to (how deep they got).
struct Tally(std::sync::Mutex<BTreeMap<String, usize>>);

impl Tally {
    const fn new() -> Self {
        Tally(std::sync::Mutex::new(BTreeMap::new()))
    }

    fn count(&self, what: impl FnOnce() -> String) {
        if std::env::var_os("LB_HOSTILE_STATS").is_some() {
            *self.0.lock().unwrap().entry(what()).or_default() += 1;
        }
    }

    fn print(&self, property: &str) {
        if std::env::var_os("LB_HOSTILE_STATS").is_some() {
            eprintln!("{property}: {:#?}", self.0.lock().unwrap());
        }
    }
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // Shrunk failures are kept in proptest-regressions/hostile_input.txt and tried first.
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::Direct(
                "proptest-regressions/hostile_input.txt",
            ),
        )),
        // Shrinking a failure of a whole operation can take long; a bound keeps it useful.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// Runs `test` on `cases()` values of `strategy`; a failure panics with the shrunk input.
fn check<S: Strategy>(
    name: &str,
    tally: &Tally,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) where
    S::Value: std::fmt::Debug,
{
    let started = std::time::Instant::now();
    let mut runner = proptest::test_runner::TestRunner::new(config());
    let result = runner.run(&strategy, test);
    tally.print(name);
    if std::env::var_os("LB_HOSTILE_STATS").is_some() {
        eprintln!("{name}: {} cases in {:.1?}", cases(), started.elapsed());
    }
    if let Err(e) = result {
        panic!("{name}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds

/// A realistic starting point: a MoySklad request, and what the vendor said in the example.
struct Seed {
    name: String,
    op: Op,
    request: Value,
    /// The mapping whose example this is (`None`: a fixture, for any mapping).
    mapping: Option<usize>,
    canned: BTreeMap<String, Canned>,
    settings: Value,
    remembered: Map<String, Value>,
    sale: Option<Value>,
}

struct World {
    mappings: Vec<Arc<Mapping>>,
    seeds: Vec<Seed>,
    /// Every object key in the seeds: mutations build objects that the code reads.
    keys: Vec<String>,
    pieces: Vec<Piece>,
}

/// An expression or template of a mapping, with where it is.
enum Piece {
    Expr(usize, &'static str, fn(&Mapping) -> Vec<&Expr>),
    Template(usize, &'static str, fn(&Mapping) -> Vec<&Template>),
}

static WORLD: LazyLock<World> = LazyLock::new(load_world);

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn load_world() -> World {
    let mut mappings = Vec::new();
    for vendor in ["maxma", "uds", "premiumbonus"] {
        let path = root().join("mappings").join(format!("{vendor}.toml"));
        let mapping = Mapping::load(&path).unwrap_or_else(|e| panic!("{e}"));
        mappings.push(Arc::new(mapping));
    }
    let mut seeds = Vec::new();
    let fixtures = root().join("tests/fixtures/loyaltyapi");
    let mut files: Vec<_> = std::fs::read_dir(&fixtures)
        .expect("fixtures")
        .map(|e| e.expect("fixture").path())
        .filter(|p| p.to_string_lossy().ends_with(".request.json"))
        .collect();
    files.sort();
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        let op_name = name.trim_end_matches(".request.json");
        let op = Op::named(op_name).unwrap_or_else(|| panic!("{name}: no such operation"));
        let text = std::fs::read_to_string(&file).expect("fixture text");
        seeds.push(Seed {
            name,
            op,
            request: serde_json::from_str(&text).expect("fixture JSON"),
            mapping: None,
            canned: BTreeMap::new(),
            settings: Value::Null,
            remembered: Map::new(),
            sale: None,
        });
    }
    for (i, mapping) in mappings.iter().enumerate() {
        for example in &mapping.examples {
            seeds.push(Seed {
                name: format!("{} [{}]", example.name, mapping.vendor.name),
                op: example.op,
                request: example.request.clone(),
                mapping: Some(i),
                canned: example.upstream.clone(),
                settings: Value::Object(example.given.settings.clone()),
                remembered: example.given.remembered.clone(),
                sale: example.given.sale.clone(),
            });
        }
    }
    // The GET lookups have no fixture request: their query as an object.
    for op in [Op::CounterpartySearch, Op::GiftcardSearch] {
        seeds.push(Seed {
            name: format!("{op} query"),
            op,
            request: json!({"search": "+7 555 123 4567", "retailStoreId": "2b5eb22f-139e-11e6-9464-e4de00000073"}),
            mapping: None,
            canned: BTreeMap::new(),
            settings: Value::Null,
            remembered: Map::new(),
            sale: None,
        });
    }
    for op in Op::ALL {
        assert!(seeds.iter().any(|s| s.op == op), "no seed request for {op}");
    }
    let mut keys = std::collections::BTreeSet::new();
    for seed in &seeds {
        collect_keys(&seed.request, &mut keys);
        collect_keys(&seed.settings, &mut keys);
        for canned in seed.canned.values() {
            if let Canned::Answer { body, .. } = canned {
                if let Ok(v) = serde_json::from_str::<Value>(body) {
                    collect_keys(&v, &mut keys);
                }
            }
        }
    }
    let pieces = (0..mappings.len()).flat_map(pieces_of).collect();
    World {
        mappings,
        seeds,
        keys: keys.into_iter().collect(),
        pieces,
    }
}

fn collect_keys(v: &Value, keys: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                keys.insert(k.clone());
                collect_keys(v, keys);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_keys(v, keys)),
        _ => {}
    }
}

/// Every expression and template of mapping `m`, by kind of place.
fn pieces_of(m: usize) -> Vec<Piece> {
    fn plans(m: &Mapping) -> impl Iterator<Item = &plan::OpPlan> {
        Op::ALL.into_iter().filter_map(|op| m.op(op))
    }
    fn rules(m: &Mapping) -> impl Iterator<Item = &plan::Rule> {
        plans(m)
            .flat_map(|p| p.checks.iter().chain(&p.rules))
            .chain(&m.vendor_rules)
    }
    fn calls(m: &Mapping) -> impl Iterator<Item = &plan::Call> {
        plans(m)
            .flat_map(|p| &p.steps)
            .flat_map(|s| std::iter::once(&s.call).chain(&s.compensate))
    }
    vec![
        Piece::Expr(m, "rule.when", |m| rules(m).map(|r| &r.when).collect()),
        Piece::Expr(m, "rule.respond", |m| {
            rules(m)
                .filter_map(|r| match &r.action {
                    RuleAction::Respond(e) => Some(e),
                    _ => None,
                })
                .collect()
        }),
        Piece::Expr(m, "step.when", |m| {
            plans(m)
                .flat_map(|p| &p.steps)
                .filter_map(|s| s.when.as_ref())
                .collect()
        }),
        Piece::Expr(m, "step.body", |m| {
            calls(m).filter_map(|c| c.body.as_ref()).collect()
        }),
        Piece::Expr(m, "step.remember.value", |m| {
            plans(m)
                .flat_map(|p| &p.steps)
                .filter_map(|s| s.remember.as_ref().map(|r| &r.value))
                .collect()
        }),
        Piece::Expr(m, "response", |m| {
            plans(m).filter_map(|p| p.response.as_ref()).collect()
        }),
        Piece::Expr(m, "keep", |m| {
            plans(m).filter_map(|p| p.keep.as_ref()).collect()
        }),
        Piece::Template(m, "call.path/query/headers", |m| {
            calls(m)
                .flat_map(|c| {
                    std::iter::once(&c.path)
                        .chain(c.query.iter().map(|(_, t)| t))
                        .chain(c.headers.iter().map(|(_, t)| t))
                })
                .chain(m.vendor.headers.iter().map(|(_, t)| t))
                .collect()
        }),
        Piece::Template(m, "keys and messages", |m| {
            let steps = plans(m).flat_map(|p| &p.steps);
            steps
                .flat_map(|s| {
                    s.cache
                        .as_ref()
                        .map(|c| &c.key)
                        .into_iter()
                        .chain(s.remember.as_ref().map(|r| &r.key))
                })
                .chain(plans(m).flat_map(|p| p.recall.iter().map(|(_, t)| t)))
                .chain(plans(m).flat_map(|p| &p.invalidate))
                .chain(rules(m).filter_map(|r| match &r.action {
                    RuleAction::Fail(e) => Some(&e.message),
                    _ => None,
                }))
                .collect()
        }),
    ]
}

// ---------------------------------------------------------------------------------------------
// Arbitrary JSON

const WEIRD_NUMBERS: &[&str] = &[
    "0",
    "-0",
    "-0.0",
    "0.0000",
    "1e308",
    "-1e308",
    "1e309",
    "1E-400",
    "4.9e-324",
    "0.000000000000000000000000000001",
    "0.005",
    "0.015",
    "0.5",
    "-0.01",
    "1e28",
    "1e29",
    "79228162514264337593543950335",
    "79228162514264337593543950336",
    "-79228162514264337593543950336",
    "7.9228162514264337593543950335",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "123456789.123456789123456789",
    "100000000000000000000000000000000000000000000000000",
    "1.0e+2",
    "2147483648",
    "4294967296",
];

const WEIRD_STRINGS: &[&str] = &[
    "",
    " ",
    "null",
    "NaN",
    "Infinity",
    "-0",
    "1e308",
    "0x10",
    "\u{0}",
    "\u{feff}",
    "\u{202e}",
    "😀",
    "Ё",
    "a\nb",
    "\"",
    "\\",
    "%",
    "%zz",
    "&",
    "=",
    "+",
    "{",
    "[",
    "+7 555 123 4567",
    "8 (555) 123-45-67",
    "+0000000000000000000000",
    "SPENDING",
    "EARNING",
    "UNCHECKED",
    "MALE",
    "FEMALE",
    "2023-07-14 00:00:00",
    "2023-02-30 25:61:61",
    "9999-12-31 23:59:59",
    "0000-00-00 00:00:00",
    "-262144-01-01 00:00:00",
    "2023-07-14T10:00:00+03:00",
    "2023-07-14T10:00:00+99:99",
    "14.07.2023",
    "2b5eb22f-139e-11e6-9464-e4de00000073",
    "00000000-0000-0000-0000-000000000000",
];

fn num(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(Value::Number)),
        prop::sample::select(WEIRD_NUMBERS).prop_map(num),
        "-?(0|[1-9][0-9]{0,29})(\\.[0-9]{1,30})?([eE][-+]?[0-9]{1,4})?".prop_map(|t| num(&t)),
    ]
}

fn string() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(WEIRD_STRINGS).prop_map(String::from),
        any::<String>(),
        "\\PC{0,24}",
        "\\+?[0-9 ()-]{0,24}",
        "-?[0-9]{0,32}(\\.[0-9]{0,32})?",
        "[0-9]{1,5}-[0-9]{1,2}-[0-9]{1,2}( [0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2})?",
        (0usize..20_000, "[9aЁ😀 ]").prop_map(|(n, c)| c.repeat(n)),
    ]
}

fn key() -> BoxedStrategy<String> {
    let keys = WORLD.keys.clone();
    prop_oneof![
        3 => prop::sample::select(keys),
        1 => "\\PC{0,8}",
    ]
    .boxed()
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        string().prop_map(Value::String),
    ]
}

fn value() -> BoxedStrategy<Value> {
    leaf()
        .prop_recursive(4, 48, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..8)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
        .boxed()
}

// ---------------------------------------------------------------------------------------------
// Mutations of a realistic value

#[derive(Debug, Clone)]
enum Mutation {
    /// The node becomes an arbitrary value.
    Replace(Index, Value),
    /// The node leaves its object or array.
    Delete(Index),
    /// The node becomes a copy of another node (a realistic value in the wrong place).
    Graft(Index, Index),
    /// An array element twice; an object member also under another key.
    Duplicate(Index, String),
    /// The node inside an array (`[x]`) or object.
    Wrap(Index),
    /// The node as its JSON text (`12.5` → `"12.5"`), or a string's number read back.
    Retype(Index),
    /// An object gains a member.
    Add(Index, String, Value),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let index = any::<Index>;
    prop_oneof![
        4 => (index(), value()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        2 => index().prop_map(Mutation::Delete),
        2 => (index(), index()).prop_map(|(a, b)| Mutation::Graft(a, b)),
        1 => (index(), key()).prop_map(|(i, k)| Mutation::Duplicate(i, k)),
        1 => index().prop_map(Mutation::Wrap),
        2 => index().prop_map(Mutation::Retype),
        1 => (index(), key(), value()).prop_map(|(i, k, v)| Mutation::Add(i, k, v)),
    ]
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    prop::collection::vec(mutation(), 0..6)
}

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    At(usize),
}

fn paths(v: &Value, at: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(at.clone());
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                at.push(Seg::Key(k.clone()));
                paths(v, at, out);
                at.pop();
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                at.push(Seg::At(i));
                paths(v, at, out);
                at.pop();
            }
        }
        _ => {}
    }
}

fn node_mut<'a>(v: &'a mut Value, path: &[Seg]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |v, seg| match (seg, v) {
        (Seg::Key(k), Value::Object(map)) => map.get_mut(k),
        (Seg::At(i), Value::Array(items)) => items.get_mut(*i),
        _ => None,
    })
}

fn pick(v: &Value, index: &Index) -> Vec<Seg> {
    let mut all = Vec::new();
    paths(v, &mut Vec::new(), &mut all);
    all.swap_remove(index.index(all.len()))
}

fn mutate(mut v: Value, mutations: &[Mutation]) -> Value {
    for m in mutations {
        apply(&mut v, m);
    }
    v
}

fn apply(v: &mut Value, m: &Mutation) {
    match m {
        Mutation::Replace(i, new) => {
            let path = pick(v, i);
            if let Some(node) = node_mut(v, &path) {
                *node = new.clone();
            }
        }
        Mutation::Graft(a, b) => {
            let from = pick(v, b);
            let Some(copy) = node_mut(v, &from).map(|n| n.clone()) else {
                return;
            };
            let to = pick(v, a);
            if let Some(node) = node_mut(v, &to) {
                *node = copy;
            }
        }
        Mutation::Delete(i) | Mutation::Duplicate(i, _) => {
            let path = pick(v, i);
            let Some((last, parent)) = path.split_last() else {
                return;
            };
            let dup = match m {
                Mutation::Duplicate(_, k) => Some(k),
                _ => None,
            };
            match (node_mut(v, parent), last, dup) {
                (Some(Value::Object(map)), Seg::Key(k), None) => {
                    map.remove(k);
                }
                (Some(Value::Array(items)), Seg::At(i), None) => {
                    items.remove(*i);
                }
                (Some(Value::Object(map)), Seg::Key(k), Some(other)) => {
                    if let Some(copy) = map.get(k).cloned() {
                        map.insert(other.clone(), copy);
                    }
                }
                (Some(Value::Array(items)), Seg::At(i), Some(_)) => {
                    let copy = items[*i].clone();
                    items.insert(*i, copy);
                }
                _ => {}
            }
        }
        Mutation::Wrap(i) => {
            let path = pick(v, i);
            if let Some(node) = node_mut(v, &path) {
                let inner = node.take();
                *node = if path.len() % 2 == 0 {
                    Value::Array(vec![inner])
                } else {
                    json!({ "value": inner })
                };
            }
        }
        Mutation::Retype(i) => {
            let path = pick(v, i);
            if let Some(node) = node_mut(v, &path) {
                *node = match node.take() {
                    Value::String(s) => serde_json::from_str(&s).unwrap_or(Value::String(s)),
                    other => Value::String(other.to_string()),
                };
            }
        }
        Mutation::Add(i, k, new) => {
            let path = pick(v, i);
            if let Some(Value::Object(map)) = node_mut(v, &path) {
                map.insert(k.clone(), new.clone());
            }
        }
    }
}

fn seed_index() -> impl Strategy<Value = usize> {
    (0..WORLD.seeds.len()).boxed()
}

// ---------------------------------------------------------------------------------------------
// Checks

/// `{"errors":[{error, code, error_message, parameter?}]}` and nothing else.
fn check_envelope(body: &Value) -> Result<(), String> {
    let fail = |why: &str| Err(format!("not an envelope ({why}): {body}"));
    let Some(top) = body.as_object() else {
        return fail("not an object");
    };
    if top.len() != 1 {
        return fail("other top-level members");
    }
    let Some(errors) = top.get("errors").and_then(Value::as_array) else {
        return fail("no errors array");
    };
    if errors.is_empty() {
        return fail("empty errors");
    }
    for item in errors {
        let Some(item) = item.as_object() else {
            return fail("an error is not an object");
        };
        if item
            .get("error")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return fail("error");
        }
        if item.get("code").and_then(Value::as_i64).is_none() {
            return fail("code");
        }
        if item.get("error_message").and_then(Value::as_str).is_none() {
            return fail("error_message");
        }
        if item.get("parameter").is_some_and(|p| !p.is_string()) {
            return fail("parameter");
        }
        if item
            .keys()
            .any(|k| !["error", "code", "error_message", "parameter"].contains(&k.as_str()))
        {
            return fail("unknown member");
        }
    }
    Ok(())
}

fn check_answer(answer: &Answer) -> Result<(), String> {
    match answer.status {
        200 if answer.body.is_null() => Err("200 without a JSON body".into()),
        200..=299 => Ok(()),
        500 => Err(format!(
            "500 (a bug): {} {}",
            answer.body,
            answer.detail.as_deref().unwrap_or("")
        )),
        400..=599 => check_envelope(&answer.body),
        other => Err(format!("status {other}: {}", answer.body)),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. Parsing and validation: arbitrary bytes and query strings

/// A body: arbitrary bytes, an arbitrary JSON value, or a seed's text damaged.
fn body_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..512),
        2 => value().prop_map(|v| serde_json::to_vec(&v).unwrap()),
        4 => (seed_index(), mutations()).prop_map(|(s, m)| {
            serde_json::to_vec(&mutate(WORLD.seeds[s].request.clone(), &m)).unwrap()
        }),
        3 => (seed_index(), mutations(), text_damage()).prop_map(|(s, m, d)| {
            d.apply(&mutate(WORLD.seeds[s].request.clone(), &m))
        }),
        1 => (1usize..5_000, prop::sample::select(vec!["[", "{\"a\":", "[{\"x\":["])).prop_map(
            |(n, open)| format!("{{\"agent\":{}", open.repeat(n)).into_bytes()
        ),
    ]
}

/// Damage to a value's JSON text.
#[derive(Debug, Clone)]
enum TextDamage {
    Truncate(Index),
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    /// A top-level member written twice (the second time with another value).
    DuplicateKey(Index, Value),
    Bom,
    None,
}

fn text_damage() -> impl Strategy<Value = TextDamage> {
    prop_oneof![
        1 => any::<Index>().prop_map(TextDamage::Truncate),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| TextDamage::Flip(i, b)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(i, b)| TextDamage::Insert(i, b)),
        2 => (any::<Index>(), value()).prop_map(|(i, v)| TextDamage::DuplicateKey(i, v)),
        1 => Just(TextDamage::Bom),
        1 => Just(TextDamage::None),
    ]
}

impl TextDamage {
    fn apply(&self, v: &Value) -> Vec<u8> {
        let mut text = serde_json::to_vec(v).unwrap();
        match self {
            TextDamage::Truncate(i) => text.truncate(i.index(text.len() + 1)),
            TextDamage::Flip(i, b) => {
                let at = i.index(text.len().max(1));
                if let Some(c) = text.get_mut(at) {
                    *c = *b;
                }
            }
            TextDamage::Insert(i, bytes) => {
                let at = i.index(text.len() + 1);
                text.splice(at..at, bytes.iter().copied());
            }
            TextDamage::DuplicateKey(i, other) => {
                if let Value::Object(map) = v {
                    if !map.is_empty() {
                        let (k, first) = map.iter().nth(i.index(map.len())).unwrap();
                        let mut out = String::from("{");
                        for (n, (key, val)) in map.iter().enumerate() {
                            if n > 0 {
                                out.push(',');
                            }
                            out.push_str(&format!("{}:{}", Value::from(key.as_str()), val));
                        }
                        // Once more, first as it was and then as something else.
                        let key = Value::from(k.as_str());
                        out.push_str(&format!(",{key}:{first},{key}:{other}}}"));
                        text = out.into_bytes();
                    }
                }
            }
            TextDamage::Bom => {
                text.splice(0..0, "\u{feff}".bytes());
            }
            TextDamage::None => {}
        }
        text
    }
}

/// A query string: arbitrary text, or parameters with odd names, values and encodings.
fn query() -> impl Strategy<Value = Option<String>> {
    let name = prop_oneof![
        3 => prop::sample::select(vec!["search", "retailStoreId", "name", "SEARCH", "search ", ""])
            .prop_map(String::from),
        1 => "\\PC{0,6}",
    ];
    let pairs = prop::collection::vec((name, string(), any::<bool>()), 0..5).prop_map(|pairs| {
        let mut out = String::new();
        for (i, (k, v, encode)) in pairs.into_iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            if encode {
                out.push_str(
                    &form_urlencoded::Serializer::new(String::new())
                        .append_pair(&k, &v)
                        .finish(),
                );
            } else {
                out.push_str(&format!("{k}={v}"));
            }
        }
        out
    });
    let both = (string(), string(), any::<bool>()).prop_map(|(search, store, swap)| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        if swap {
            q.append_pair("retailStoreId", &store)
                .append_pair("search", &search);
        } else {
            q.append_pair("search", &search)
                .append_pair("retailStoreId", &store);
        }
        q.finish()
    });
    prop::option::weighted(
        0.9,
        prop_oneof![
            3 => pairs,
            3 => both,
            1 => "\\PC{0,64}",
            1 => prop::collection::vec(any::<u8>(), 0..64)
                .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
            1 => "(%[0-9a-fA-F]{0,2}|[&=+;#?])*",
        ],
    )
}

fn parse_answer(op: Op, query: Option<&str>, body: &[u8]) -> Result<(), String> {
    match ops::Request::parse(op, query, body) {
        Ok(request) if request.op() == op => {
            PARSED.count(|| format!("{op} ok"));
            Ok(())
        }
        Ok(request) => Err(format!("{op} parsed as {}", request.op())),
        Err(err) => {
            let status = err.status();
            PARSED.count(|| format!("{op} {}", status.as_u16()));
            if !status.is_client_error() {
                return Err(format!("{op}: {status} for a bad request ({err:?})"));
            }
            let body: Value = serde_json::from_slice(&error::envelope(&err))
                .map_err(|e| format!("{op}: envelope is not JSON: {e}"))?;
            check_envelope(&body)
        }
    }
}

static PARSED: Tally = Tally::new();

#[test]
fn parsing_any_body_or_query_answers_4xx_envelopes() {
    let _alone = common::alone().blocking_lock();
    let strategy = (
        prop::sample::select(Op::ALL.to_vec()),
        query(),
        body_bytes(),
    );
    check("parsing", &PARSED, strategy, |(op, query, body)| {
        parse_answer(op, query.as_deref(), &body).map_err(TestCaseError::fail)
    });
}

// ---------------------------------------------------------------------------------------------
// 2. Whole operations through every mapping, against a vendor that answers anything

/// What the vendor does on one call.
#[derive(Debug, Clone)]
enum VendorMove {
    /// The example's canned answer for the step (or `{}` with 200 when it has none).
    AsCanned,
    /// The canned answer's body mutated.
    Mutated(Vec<Mutation>),
    /// The canned body with another status.
    Status(u16),
    Json(u16, Value),
    Bytes(u16, Vec<u8>),
    /// `[[[[…` this deep.
    Deep(u16, usize),
    Timeout,
    Unreachable,
    Transport,
}

fn status() -> impl Strategy<Value = u16> {
    prop_oneof![
        3 => prop::sample::select(vec![200u16, 200, 201, 204, 400, 401, 403, 404, 409, 422, 429, 500, 502, 503, 504]),
        1 => 100u16..=999,
    ]
}

fn vendor_move() -> impl Strategy<Value = VendorMove> {
    prop_oneof![
        4 => Just(VendorMove::AsCanned),
        6 => mutations().prop_map(VendorMove::Mutated),
        2 => status().prop_map(VendorMove::Status),
        2 => (status(), value()).prop_map(|(s, v)| VendorMove::Json(s, v)),
        1 => (status(), prop::collection::vec(any::<u8>(), 0..64)).prop_map(|(s, b)| VendorMove::Bytes(s, b)),
        1 => (status(), 1usize..100_000).prop_map(|(s, n)| VendorMove::Deep(s, n)),
        1 => Just(VendorMove::Timeout),
        1 => Just(VendorMove::Unreachable),
        1 => Just(VendorMove::Transport),
    ]
}

/// Plays `moves` in turn (the last one for every further call), from the seed's canned answers.
struct HostileVendor {
    canned: BTreeMap<String, Canned>,
    moves: Vec<VendorMove>,
    calls: AtomicUsize,
}

impl HostileVendor {
    fn answer(&self, step: &str) -> Result<UpstreamResponse, UpstreamError> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        let m = &self.moves[n.min(self.moves.len() - 1)];
        let (status, body) = match self.canned.get(step) {
            Some(Canned::Answer { status, body }) => (*status, body.clone()),
            Some(Canned::Timeout) => return Err(UpstreamError::Timeout),
            Some(Canned::Unreachable) => return Err(UpstreamError::Connect("canned".into())),
            None => (200, "{}".to_string()),
        };
        let ok = |status: u16, body: Vec<u8>| {
            Ok(UpstreamResponse {
                status,
                body: Bytes::from(body),
                retry_after: None,
            })
        };
        match m {
            VendorMove::AsCanned => ok(status, body.into_bytes()),
            VendorMove::Mutated(mutations) => match serde_json::from_str::<Value>(&body) {
                Ok(v) => ok(status, serde_json::to_vec(&mutate(v, mutations)).unwrap()),
                Err(_) => ok(status, body.into_bytes()),
            },
            VendorMove::Status(s) => ok(*s, body.into_bytes()),
            VendorMove::Json(s, v) => ok(*s, serde_json::to_vec(v).unwrap()),
            VendorMove::Bytes(s, b) => ok(*s, b.clone()),
            VendorMove::Deep(s, n) => ok(*s, "[".repeat(*n).into_bytes()),
            VendorMove::Timeout => Err(UpstreamError::Timeout),
            VendorMove::Unreachable => Err(UpstreamError::Connect("refused".into())),
            VendorMove::Transport => Err(UpstreamError::Transport("reset".into())),
        }
    }
}

impl Upstream for HostileVendor {
    fn send(&self, request: UpstreamRequest) -> UpstreamFuture<'_> {
        let answer = self.answer(&request.step);
        Box::pin(async move { answer })
    }
}

#[derive(Debug, Clone)]
struct OpCase {
    seed: usize,
    /// Which mapping, when not the seed's own.
    other_mapping: Option<Index>,
    request: Vec<Mutation>,
    settings: Vec<Mutation>,
    /// Mutations of the remembered values and of the sale's record.
    remembered: Vec<Mutation>,
    moves: Vec<VendorMove>,
    credentials: bool,
    journal: bool,
    /// A request of its own instead of the seed's (deterministic cases).
    whole_request: Option<Value>,
}

fn op_case() -> impl Strategy<Value = OpCase> {
    (
        seed_index(),
        prop::option::weighted(0.25, any::<Index>()),
        // A third of the requests as they are: the vendor's answers are the hostile part.
        prop_oneof![
            1 => Just(Vec::new()),
            2 => prop::collection::vec(mutation(), 1..4),
        ],
        prop::collection::vec(mutation(), 0..2),
        prop::collection::vec(mutation(), 0..2),
        prop::collection::vec(vendor_move(), 1..6),
        any::<bool>(),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(seed, other_mapping, request, settings, remembered, moves, credentials, journal)| {
                OpCase {
                    seed,
                    other_mapping,
                    request,
                    settings,
                    remembered,
                    moves,
                    credentials,
                    journal,
                    whole_request: None,
                }
            },
        )
}

thread_local! {
    /// One runtime per test thread, its clock paused: the retries' backoff takes no time.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
}

async fn run_op_case(case: &OpCase) -> Result<(Answer, usize), String> {
    let world = &*WORLD;
    let seed = &world.seeds[case.seed];
    let m = match (&case.other_mapping, seed.mapping) {
        (None, Some(own)) => own,
        (Some(i), _) => i.index(world.mappings.len()),
        (None, None) => case.seed % world.mappings.len(),
    };
    let mapping = world.mappings[m].clone();
    let mut credentials = BTreeMap::new();
    if case.credentials {
        for (k, v) in [
            ("api_key", "k-123456"),
            ("token", "t-123456"),
            ("company_id", "549755813888"),
        ] {
            credentials.insert(k.to_string(), Secret::new(v));
        }
    }
    let tenant = Arc::new(Tenant {
        settings: mutate(seed.settings.clone(), &case.settings),
        credentials,
        ..examples::example_tenant(&mapping)
    });
    let memory = Arc::new(Memory::new());
    let remembered = mutate(Value::Object(seed.remembered.clone()), &case.remembered);
    if let Value::Object(remembered) = remembered {
        for (key, value) in remembered {
            let _ = memory
                .put(
                    &tenant.name,
                    &key,
                    value,
                    std::time::Duration::from_secs(3600),
                )
                .await;
        }
    }
    let request = case
        .whole_request
        .clone()
        .unwrap_or_else(|| mutate(seed.request.clone(), &case.request));
    let journal = if case.journal || seed.sale.is_some() {
        let journal = examples::memory_journal()
            .await
            .map_err(|e| e.to_string())?;
        if let Some(id) = request.pointer("/demand/meta/id").and_then(Value::as_str) {
            let kept = seed
                .sale
                .as_ref()
                .and_then(|s| s.get("kept"))
                .cloned()
                .unwrap_or(Value::Null);
            let kept = mutate(kept, &case.remembered);
            let store: &dyn Store = journal.store.as_ref();
            if store
                .begin(&tenant.name, Kind::Sale, id, 0, i64::MAX / 2)
                .await
                .is_ok()
            {
                let _ = store.finish(&tenant.name, Kind::Sale, id, &kept, 0).await;
            }
        }
        Some(journal)
    } else {
        None
    };
    let vendor = Arc::new(HostileVendor {
        canned: if seed.mapping == Some(m) {
            seed.canned.clone()
        } else {
            BTreeMap::new()
        },
        moves: case.moves.clone(),
        calls: AtomicUsize::new(0),
    });
    let answer =
        examples::answer_with_state(tenant, mapping, seed.op, &request, vendor, memory, journal)
            .await;
    Ok((answer, m))
}

fn check_op_case(case: &OpCase) -> Result<(), TestCaseError> {
    let answer = RUNTIME.with(|rt| rt.block_on(run_op_case(case)));
    let (answer, m) = answer.map_err(TestCaseError::fail)?;
    let seed = &WORLD.seeds[case.seed];
    OPERATED.count(|| {
        let vendor = &WORLD.mappings[m].vendor.name;
        format!("{vendor} {} {}", seed.op, answer.status)
    });
    check_answer(&answer)
        .map_err(|e| TestCaseError::fail(format!("{} ({}): {e}", seed.op, seed.name)))
}

static OPERATED: Tally = Tally::new();

#[test]
fn every_operation_through_every_mapping_answers_json_or_an_envelope() {
    let _alone = common::alone().blocking_lock();
    check("operations", &OPERATED, op_case(), |case| {
        check_op_case(&case)
    });
}

// ---------------------------------------------------------------------------------------------
// 3. The mapping engine on its own

/// What every expression of a plan sees (`src/mapping/run/root.rs`'s root object), from a seed, then mutated
/// as a whole.
fn root_input(seed: &Seed, step: &str) -> Value {
    let outcome = |canned: &Canned| match canned {
        Canned::Answer { status, body } => json!({
            "status": status,
            "body": serde_json::from_str::<Value>(body).unwrap_or(Value::Null),
            "error": null,
        }),
        _ => json!({"status": null, "body": null, "error": "timeout"}),
    };
    let steps: Map<String, Value> = seed
        .canned
        .iter()
        .map(|(name, c)| (name.clone(), outcome(c)))
        .collect();
    let step = seed
        .canned
        .get(step)
        .or(seed.canned.values().next())
        .map(outcome)
        .unwrap_or(Value::Null);
    json!({
        "req": seed.request,
        "op": seed.op.name(),
        "tenant": {"name": "example", "vendor": "x"},
        "credentials": {"api_key": "k-123456", "token": "t-123456", "company_id": "1"},
        "settings": seed.settings,
        "request_id": "hostile",
        "sale": seed.sale.as_ref().and_then(|s| s.get("kept")).cloned().unwrap_or(Value::Null),
        "now": "2026-01-01T00:00:00.000Z",
        "recalled": seed.remembered,
        "steps": steps,
        "step": step,
    })
}

/// Every way of evaluating `expr` on `input`; `"ok"` or `"error"` as [`Expr::eval`] went.
fn eval_everywhere(expr: &Expr, input: &Value) -> Result<&'static str, String> {
    let _ = expr.test(input);
    let _ = expr.eval_jaq(input);
    let value = expr.eval(input);
    let outcome = if value.is_ok() { "ok" } else { "error" };
    if let Ok(bytes) = expr.eval_json(input) {
        let parsed: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("{:?}: eval_json wrote no JSON: {e}", expr.source()))?;
        if let Ok(value) = value {
            if serde_json::to_vec(&value).ok() != serde_json::to_vec(&parsed).ok() {
                return Err(format!(
                    "{:?}: eval gave {value}, eval_json {parsed}",
                    expr.source()
                ));
            }
        }
    }
    Ok(outcome)
}

static EVALUATED: Tally = Tally::new();

#[test]
fn mapping_expressions_take_any_input() {
    let _alone = common::alone().blocking_lock();
    let strategy = (
        seed_index(),
        any::<Index>(),
        any::<Index>(),
        any::<Index>(),
        prop::collection::vec(mutation(), 0..8),
    );
    check(
        "mapping expressions",
        &EVALUATED,
        strategy,
        |(seed, piece, which, step, damage)| {
            let world = &*WORLD;
            let seed = &world.seeds[seed];
            let names: Vec<&String> = seed.canned.keys().collect();
            let step = if names.is_empty() {
                ""
            } else {
                names[step.index(names.len())].as_str()
            };
            let input = mutate(root_input(seed, step), &damage);
            match &world.pieces[piece.index(world.pieces.len())] {
                Piece::Expr(m, place, exprs) => {
                    let exprs = exprs(&world.mappings[*m]);
                    if let Some(expr) = exprs.get(which.index(exprs.len().max(1))) {
                        let outcome = eval_everywhere(expr, &input)
                            .map_err(|e| TestCaseError::fail(format!("{place}: {e}")))?;
                        EVALUATED.count(|| format!("{place} {outcome}"));
                    }
                }
                Piece::Template(m, place, templates) => {
                    let templates = templates(&world.mappings[*m]);
                    if let Some(template) = templates.get(which.index(templates.len().max(1))) {
                        for encoding in [Encoding::Component, Encoding::Query, Encoding::Verbatim] {
                            let outcome = template.render(&input, encoding);
                            EVALUATED.count(|| {
                                format!("{place} {}", if outcome.is_ok() { "ok" } else { "error" })
                            });
                        }
                    }
                }
            }
            Ok(())
        },
    );
}

/// A small jq expression over the subset mappings use, and the built-ins.
fn jq() -> BoxedStrategy<String> {
    let keys = WORLD.keys.clone();
    let leaf = prop_oneof![
        Just(".".to_string()),
        prop::sample::select(keys.clone()).prop_map(|k| format!(".{k}")),
        prop::sample::select(keys.clone()).prop_map(|k| format!(".{k}?")),
        prop::sample::select(WEIRD_NUMBERS).prop_map(String::from),
        prop::sample::select(WEIRD_STRINGS).prop_map(|s| Value::from(s).to_string()),
        prop::sample::select(vec!["null", "true", "false", "[]", "{}", "$x", "empty"])
            .prop_map(String::from),
    ];
    leaf.prop_recursive(5, 32, 3, move |inner| {
        let keys = keys.clone();
        let unary = prop::sample::select(vec![
            "phone_e164",
            "phone_digits",
            "phone_7",
            "iso_to_ms",
            "date_to_ms",
            "uuid_v5",
            "kopecks",
            "rubles",
            "round_money",
            "dfloor",
            "dceil",
            "decimal",
            "sum_money",
            "drop_nulls",
            "tostring",
            "tonumber",
            "length",
            "keys",
            "to_entries",
            "not",
            "ascii_downcase",
            "floor",
            "add",
            "type",
            "@base64",
            "@uri",
            "tojson",
            "first",
            "values",
            "arrays",
            "strings",
            "numbers",
            "objects",
        ]);
        let binary = prop::sample::select(vec![
            "dround",
            "dadd",
            "dsub",
            "dmul",
            "ddiv",
            "ms_to_iso",
            "allocate_discount",
            "allocate_lines",
            "prorate",
            "select",
            "map",
            "has",
            "ltrimstr",
            "startswith",
            "split",
            "join",
            "test",
        ]);
        let op = prop::sample::select(vec![
            "|", ",", "+", "-", "/", "%", "//", "==", "!=", "<", "<=", ">", "and", "or",
        ]);
        prop_oneof![
            (inner.clone(), op, inner.clone()).prop_map(|(a, o, b)| format!("({a} {o} {b})")),
            (inner.clone(), unary).prop_map(|(a, f)| format!("({a} | {f})")),
            (inner.clone(), binary, inner.clone())
                .prop_map(|(a, f, b)| format!("({a} | {f}({b}))")),
            inner.clone().prop_map(|a| format!("[{a}]")),
            (prop::sample::select(keys), inner.clone()).prop_map(|(k, a)| format!("{{{k}: {a}}}")),
            inner.clone().prop_map(|a| format!("({a})[]")),
            inner.clone().prop_map(|a| format!("({a})[0]")),
            inner.clone().prop_map(|a| format!("({a})?")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("[({a})[] | {b}]")),
            (inner.clone(), inner.clone(), inner.clone())
                .prop_map(|(a, b, c)| format!("(if {a} then {b} else {c} end)")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("(try {a} catch {b})")),
            (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a} as $x | {b})")),
            (inner.clone(), inner)
                .prop_map(|(a, b)| format!("({a} | to_entries[] | {{key, v: ({b})}})")),
        ]
    })
    .boxed()
}

static COMPILED: Tally = Tally::new();

/// Expressions the mappings could hold, on arbitrary input: compiling never panics, and (debug
/// builds) the native fast path agrees with jaq.
#[test]
fn arbitrary_expressions_compile_and_run_without_panic() {
    let _alone = common::alone().blocking_lock();
    let strategy = (
        jq(),
        seed_index(),
        prop::collection::vec(mutation(), 0..4),
        value(),
        any::<bool>(),
    );
    check(
        "arbitrary expressions",
        &COMPILED,
        strategy,
        |(source, seed, damage, plain, on_seed)| {
            let Ok(expr) = Expr::compile(&source) else {
                COMPILED.count(|| "refused".into());
                return Ok(());
            };
            let input = if on_seed {
                mutate(WORLD.seeds[seed].request.clone(), &damage)
            } else {
                plain
            };
            let outcome = eval_everywhere(&expr, &input).map_err(TestCaseError::fail)?;
            COMPILED.count(|| {
                format!(
                    "{} {outcome}",
                    if expr.is_native() { "native" } else { "jaq" }
                )
            });
            if let Ok(template) = Template::parse(&format!("/x/{{{source}}}")) {
                for encoding in [Encoding::Component, Encoding::Query, Encoding::Verbatim] {
                    let _ = template.render(&input, encoding);
                }
            }
            Ok(())
        },
    );
}

/// Found by the run above: `kopecks` and `sum_money` panicked (rust_decimal's overflow) on
/// amounts beyond `Decimal`'s range, which a request or a vendor's answer can carry.
#[test]
fn money_builtins_refuse_amounts_out_of_range() {
    for source in [
        "1e28 | kopecks",
        "-1e28 | kopecks",
        "[7e28, 7e28] | sum_money",
        "[.[] | kopecks]",
        "map(.) | sum_money",
    ] {
        let expr = Expr::compile(source).unwrap_or_else(|e| panic!("{source}: {e}"));
        let input = json!([num("79228162514264337593543950335"), num("1e28")]);
        assert!(expr.eval(&input).is_err(), "{source}");
        assert!(expr.eval_jaq(&input).is_err(), "{source}");
    }
}

/// The same through a whole operation: UDS's recalc sums the positions' totals with
/// `sum_money`, and request validation sets no upper bound on a price.
#[test]
fn a_recalc_with_prices_beyond_decimal_is_refused_naming_the_price() {
    let world = &*WORLD;
    let uds = world
        .mappings
        .iter()
        .position(|m| m.vendor.name == "uds")
        .expect("uds mapping");
    let seed = world
        .seeds
        .iter()
        .position(|s| s.op == Op::RetaildemandRecalc && s.mapping == Some(uds))
        .expect("a UDS recalc example");
    let mut request = world.seeds[seed].request.clone();
    let positions = request["positions"].as_array_mut().expect("positions");
    let first = positions[0].clone();
    positions.push(first);
    for p in positions.iter_mut() {
        p["price"] = num("50000000000000000000000000000");
        p["quantity"] = json!(1);
    }
    let case = OpCase {
        seed,
        other_mapping: None,
        request: Vec::new(),
        settings: Vec::new(),
        remembered: Vec::new(),
        moves: vec![VendorMove::AsCanned],
        credentials: false,
        journal: false,
        whole_request: Some(request),
    };
    let (answer, _) = RUNTIME
        .with(|rt| rt.block_on(run_op_case(&case)))
        .expect("ran");
    // Refused at validation (a trillion rubles at most): before that cap, the UDS mapping's
    // sum_money overflowed Decimal here and panicked, then (checked) answered 502.
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.body["errors"][0]["parameter"], "positions[0].price",
        "{}",
        answer.body
    );
    check_answer(&answer).unwrap();
}
