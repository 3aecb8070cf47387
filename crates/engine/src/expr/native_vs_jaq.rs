//! The native fast path (`fast`) against jaq, the reference: on a table of expressions and on
//! random inputs, a native answer is jaq's answer (values, written JSON and typed reads alike),
//! an error stays jaq's error, and what the analysis says an expression reads is all it reads.

use crate::expr::Expr;
use proptest::prelude::*;
use serde_json::{Value, json};

const DEFS: &str = r#"
def valid_phone: if (. // "") == "" then null else (try phone_e164 catch null) end;
def pick($k): .[$k];
def twice($x): [$x, $x];
def length: "shadowed";
"#;

/// Expressions of the subset (and some just outside it), each run on every input.
const EXPRS: &[&str] = &[
    ".",
    ".a",
    ".a.b",
    ".a.b.c",
    ".a[0]",
    ".a[-1]",
    ".a[5]",
    ".[0]",
    ".a?",
    ".a.b?",
    ".a[]?",
    ".a[]",
    ".[]",
    ".[]?",
    "[.a[]?]",
    "[.[]?]",
    ".a // \"d\"",
    ".a.b // .c // 0",
    ".a == 1",
    ".a != 1",
    ".a == 1.0",
    ".a < 2",
    ".a > \"m\"",
    ".a <= null",
    ".a >= false",
    ".a == .b",
    ".a == [1, 2]",
    ".a == {x: 1}",
    ".a and .b",
    ".a or .b",
    ".a | not",
    ".a == null",
    "(.a // null) != null",
    ".a + .b",
    ".a + \"x\"",
    "\"p\" + (.a | tostring)",
    "{x: .a, y: .b.c}",
    "{a, b}",
    "{(.a): 1}",
    "{x: .a, x: .b}",
    "{x: .a, (\"x\"): .b, y: 1}",
    "{b: 1, a: 2} | tojson",
    "{x: .a[]?}",
    "{x: (.a, .b)}",
    "[.a, .b]",
    "[.a[]? | {v: .}]",
    "[.a[]? | .x]",
    "if .a then 1 elif .b then 2 else 3 end",
    "if .a then 1 end",
    "if .a == 1 then \"one\" else null end",
    ".a as $x | [$x, .b]",
    ".a as $x | $x.b",
    "try .a.b catch \"c\"",
    "(.a | tostring)",
    ".a | length",
    ".a | to_entries",
    "[.a | to_entries[] | {k: (.key | tostring), v: .value}]",
    ".a | from_entries",
    "[.a[]? | select(. != null)]",
    ".a | map(. == 1)",
    "\"v=\\(.a) w=\\(.b)\"",
    "empty",
    ".a | valid_phone",
    "pick(\"a\")",
    "twice(.a)",
    "length",
    ".a | dfloor",
    ".a | dadd(1)",
    ".a | dsub(.b)",
    "[.a, .b] | drop_nulls",
    "{a: .a, b: null} | drop_nulls",
    ".a | uuid_v5",
    "(.a, .b) | . == 1",
    "[(.a, .b) // 5]",
    "[.a?, .b?]",
    ".a[.b]",
    "true",
    "false",
    "null",
    "1",
    "1.50",
    "-1",
    "[.a[]? | . + 1]",
    ".a.b? // \"none\"",
    "{x: .a} | .x",
    "{b: 1, a: 2} | [.[]]",
    "{b: 1, a: 2} | to_entries",
    ".a + {z: 1}",
    ".a + [1]",
    "(.a | phone_e164)",
    ".a[0:1]",
    "reduce .a[]? as $x (0; . + $x)",
    "[.a[]?] | length",
    // Errors raised after a try, //, and/or (downstream) are not theirs to catch or drop.
    "(try .a catch \"c\") | .x",
    "(.a // .b) | .x",
    "(.a and .b) | .x",
    "[.a[]? | try .x catch \"n\"]",
    "(try .a.b catch \"c\") | (try .x catch \"d\")",
    // Streams: the first output is the answer, what comes after it is never evaluated.
    ".a[]?, error",
    "(.a[]? | .x), .b",
    ".a as $x | $x[0]",
    ".a as $x | {y: $x.b, z: $x}",
    "to_entries? // \"none\"",
];

fn inputs() -> Vec<Value> {
    let mut v: Vec<Value> = vec![
        json!(null),
        json!(1),
        json!("s"),
        json!([1, 2, 3]),
        json!({}),
        json!({"a": 1, "b": 2}),
        json!({"a": 1.0, "b": 1}),
        json!({"a": "x", "b": "y"}),
        json!({"a": null, "b": false}),
        json!({"a": [1, null, 3], "b": 1}),
        json!({"a": {"b": {"c": 5}}, "c": "c"}),
        json!({"a": {"b": [1]}, "b": "b"}),
        json!({"a": [{"x": 1}, {"x": "y"}], "b": 0}),
        json!({"a": {"x": 1, "y": 2}}),
        json!({"a": [{"key": "k", "value": 1}], "b": null}),
        json!({"a": "+7 999 000 00 01"}),
        json!({"a": true, "b": "12"}),
        json!({"a": [1, 2], "b": -1}),
    ];
    for text in [
        r#"{"a": 12.50, "b": 2}"#,
        r#"{"a": -0, "b": 0}"#,
        r#"{"a": 1e3, "b": 1000}"#,
        r#"{"a": 123456789012345678901234567890, "b": 1}"#,
        r#"{"a": [1.5, 2], "b": 0.1}"#,
    ] {
        v.push(serde_json::from_str(text).unwrap());
    }
    v
}

/// The native answer, when there is one, is jaq's; an error stays jaq's error.
fn agree(src: &str, input: &Value) {
    let expr = match Expr::compile_with(DEFS, src) {
        Ok(e) => e,
        Err(_) => return,
    };
    // `eval` asserts agreement itself in debug builds; compare the public result too.
    let jaq = expr.eval_jaq(input);
    assert_eq!(expr.eval(input), jaq, "{src} on {input}");
    // Read straight from the native evaluation: what reading jaq's value gives.
    let read = expr
        .eval_into::<Value>(input)
        .map(|r| r.unwrap_or_else(|v| v));
    assert_eq!(read.ok(), jaq.clone().ok(), "{src} on {input}, read");
    // Written straight from the native evaluation: the bytes of jaq's value.
    let written = jaq.ok().map(|v| serde_json::to_vec(&v).unwrap());
    assert_eq!(expr.eval_json(input).ok(), written, "{src} on {input}");
}

#[test]
fn native_agrees_with_jaq_on_a_table() {
    let mut native = 0;
    for src in EXPRS {
        if Expr::compile_with(DEFS, src).is_ok_and(|e| e.is_native()) {
            native += 1;
        }
        for input in inputs() {
            agree(src, &input);
        }
    }
    assert!(native > 60, "only {native} expressions native");
}

/// `input_keys` names what an expression can read: keeping only those keys of an object
/// input changes nothing jaq answers (values and error texts alike).
#[test]
fn input_keys_are_all_an_expression_reads() {
    let mut known = 0;
    for src in EXPRS {
        let Some(keys) = Expr::compile_with(DEFS, src)
            .ok()
            .and_then(|e| e.input_keys())
        else {
            continue;
        };
        known += 1;
        let expr = Expr::compile_with(DEFS, src).unwrap();
        for input in inputs() {
            let Value::Object(map) = &input else { continue };
            let pruned: serde_json::Map<String, Value> = map
                .iter()
                .filter(|(k, _)| keys.contains(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            assert_eq!(
                expr.eval_jaq(&input),
                expr.eval_jaq(&Value::Object(pruned)),
                "{src} on {input} reads more than {keys:?}"
            );
        }
    }
    assert!(known > 30, "only {known} expressions with known keys");

    let keys = |src: &str| Expr::compile_with(DEFS, src).unwrap().input_keys();
    let named = |names: &[&str]| Some(names.iter().map(|n| n.to_string()).collect());
    assert_eq!(keys(".step.body.errorCode? // 0"), named(&["step"]));
    assert_eq!(keys(".a // .b.c"), named(&["a", "b"]));
    assert_eq!(keys(". as $r | $r.steps.x"), named(&["steps"]));
    assert_eq!(keys("(. as $r | $r) | .y"), named(&["y"]));
    assert_eq!(keys("if .x then . else {} end | .z"), named(&["x", "z"]));
    assert_eq!(keys("[.a[] | .b]"), named(&["a"]));
    assert_eq!(keys(r#""\(.a)""#), named(&["a"]));
    assert_eq!(keys("1"), named(&[]));
    for whole in [
        ".",
        ".[]",
        "[.]",
        "{a: .}",
        ". == {}",
        ".[.k]",
        r#""\(.)""#,
        "not",
        "to_entries",
        ". as $r | [$r]",
        ".a as $x | . | tostring",
    ] {
        assert_eq!(keys(whole), None, "{whole}");
    }
}

/// `allocate_discount`, `allocate_lines` and `prorate` on positions borrowed from the input
/// (lines that borrow them) and on built ones (the JSON version), streamed on and looked into,
/// agree with jaq's, errors included.
#[test]
fn allocation_agrees_with_jaq() {
    // An argument reads the call's input (`.p`), so the input's other members come as
    // variables.
    let exprs = [
        ".d as $d | .p | allocate_discount($d)",
        "[.p[] | [.] | allocate_discount(0.1) | .[]]",
        "[.p | to_entries[] | .value.price as $d | [.value] | allocate_discount($d | ddiv(10) | round_money) | .[]]",
        ".d as $d | .p | allocate_discount($d) | .[0] | to_entries",
        ".d as $d | .p | allocate_discount($d) | [.[] | [to_entries[] | .key]]",
        ".d as $d | .p | allocate_discount($d) | [.[] | .sn]",
        ".d as $d | [.p[] | {quantity, price, x: 1}] | allocate_discount($d)",
        ".neg as $n | .p | allocate_discount($n)",
        ".p | allocate_discount(\"x\")",
        ".q | allocate_discount(1)",
        ".l as $l | .p | allocate_lines($l)",
        ".p | allocate_lines([.[] | 0.05])",
        ".l as $l | [.p[] | {quantity, price, x: 1}] | allocate_lines($l)",
        "[.p[] | [.]] | .[0] | allocate_lines([0.01])",
        ".l as $l | .p | allocate_lines($l) | [.[] | .sn]",
        ".l as $l | .p | allocate_lines($l) | .[1] | to_entries",
        ".p | allocate_lines([1])",
        ".p | allocate_lines(5)",
        ".p | allocate_lines([\"x\", 0, 0])",
        ".p | allocate_lines([100, 0, 0])",
        ".q | allocate_lines([0, 0])",
        ".d as $d | .w | prorate($d)",
        "[.p[] | .price] | prorate(10)",
        ".d as $d | .w | prorate($d) | [.[] | . == 0]",
        "[.w[], 0] | prorate(0.01)",
        ".neg as $n | .w | prorate($n)",
        ".w | prorate(0.001)",
        ".p | prorate(1)",
        "[0, 0] | prorate(1)",
        "5 | prorate(1)",
    ];
    let input = json!({
        "d": 7.5,
        "neg": -1,
        "p": [
            {"assortment": {"meta": {"id": "a"}}, "quantity": 3, "price": 10.01,
             "sn": [{"name": "1"}, {"name": "2"}, {"name": "3"}], "zz": true},
            {"assortment": {"meta": {"id": "b"}}, "quantity": 1.5, "price": 4,
             "discountPercent": 99},
            {"quantity": 2, "price": 0.05, "sn": []}
        ],
        "q": [{"quantity": 1}, 5],
        "l": [1.5, 0.5, 0.1],
        "w": [1, 0, 2.5, "3"]
    });
    let mut answered = 0;
    for src in exprs {
        let expr = Expr::compile(src).unwrap();
        assert!(expr.is_native(), "{src}");
        let jaq = expr.eval_jaq(&input);
        answered += usize::from(jaq.is_ok());
        assert_eq!(expr.eval(&input), jaq, "{src}");
        let written = jaq.ok().map(|v| serde_json::to_vec(&v).unwrap());
        assert_eq!(expr.eval_json(&input).ok(), written, "{src}");
    }
    // The first 7 of allocate_discount, 6 of allocate_lines and 4 of prorate answer.
    assert_eq!(answered, 17);
}

#[test]
fn the_common_subset_is_native() {
    for src in [
        ".credentials.api_key",
        ".req.a // \"x\"",
        ".step.body.errorCode? // 0",
        "{a: .x, b: [.y[] | {c: .z}]}",
        ".a == \"S\" and .b != null",
    ] {
        assert!(Expr::compile(src).unwrap().is_native(), "{src}");
    }
    // A user definition shadows the built-in of the same name.
    let shadowed = Expr::compile_with(DEFS, "length").unwrap();
    assert_eq!(shadowed.eval(&json!([1])).unwrap(), json!("shadowed"));
}

fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(json!(null)),
        any::<bool>().prop_map(Value::from),
        (-3i64..4).prop_map(Value::from),
        prop_oneof![Just("1.0"), Just("2.50"), Just("-0"), Just("1e2")]
            .prop_map(|t| serde_json::from_str::<Value>(t).unwrap()),
        prop_oneof![Just("a"), Just("b"), Just(""), Just("я")].prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("a".to_string()),
                    Just("b".to_string()),
                    Just("c".to_string())
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Comparisons of one operand with literals: rules like these share the operand's
/// evaluation (the bridge's `src/mapping/run/rules.rs`, `verdict`).
const SHARED_OPERAND: &[&[&str]] = &[
    &[
        ".a == 1",
        ".a != 1",
        ".a < 2",
        ".a > \"m\"",
        ".a <= null",
        ".a >= false",
        ".a == \"z\"",
    ],
    &[
        "maxma_error == 3",
        "maxma_error == 4",
        "maxma_error > 0",
        "(.a.b? // 0) == 3",
    ],
];

/// Each expression of a group tested with the operand evaluated by the group's first.
fn shared_agrees(group: &[&str], input: &Value) {
    let defs = "def maxma_error: (.a.b? // 0);";
    let exprs: Vec<Expr> = group
        .iter()
        .map(|src| Expr::compile_with(defs, src).expect("compiles"))
        .collect();
    let key = exprs[0].operand_key().expect("a comparison with a literal");
    let operand = exprs[0].operand(input);
    for (src, expr) in group.iter().zip(&exprs) {
        assert_eq!(expr.operand_key(), Some(key), "{src} shares the operand");
        assert_eq!(
            expr.test_operand(operand.as_ref(), input),
            expr.test_val(crate::jaq_value::to_val(input)),
            "{src} on {input}"
        );
    }
}

#[test]
fn rules_share_an_operand_only_when_it_is_the_same_computation() {
    let key = |src: &str| {
        Expr::compile_with("def e: (.a.b? // 0);", src)
            .unwrap()
            .operand_key()
            .map(str::to_string)
    };
    assert_eq!(key("e == 3"), key("(.a.b? // 0) > 4"));
    assert_ne!(key(".a == 1"), key(".b == 1"));
    assert_ne!(key("(.a // 0) == 1"), key("(.a // 1) == 1"));
    assert_eq!(key(".a == .b"), None, "the other side is not a literal");
    assert_eq!(key(".a"), None);
    for input in [
        json!({"a": {"b": 3}}),
        json!({"a": {"b": 0}}),
        json!({"a": 1}),
        json!({"a": "z"}),
        json!({}),
        json!([1]),
        json!(null),
    ] {
        for group in SHARED_OPERAND {
            shared_agrees(group, &input);
        }
    }
}

/// Expressions reading nested members: what `input_needs` follows through variables,
/// pipes, `//`, `map`, `select` and computed keys.
const NESTED: &[&str] = &[
    ".a.b as $r | [$r.c, ($r.a | tostring)]",
    "(.a | map({key: (.b | tostring), value: (.c // 0)}) | from_entries) as $m | [$m[\"1\"], $m[\"a\"]]",
    "[.a[]? | select(.b == 1) | .c]",
    ".a | .[]? | .b?",
    "if .a.b then .c else .b.a end",
    ".a.b // .a.c // .c",
    "[.a[]? | .b] | length",
    ".a[.b]?",
    ".a | to_entries?",
    ".a.b and .a.c",
    "\"\\(.a.b?)-\\(.c?)\"",
    ".a.b | not",
    "{k: .a.b} | .k.c?",
    ".a.b | .[0]?",
    ".c as $c | .a | map(.b + $c)?",
    ".a as $x | .b as $y | [$x.c?, $y[]?]",
    "try .a.b.c catch \"n\"",
    "(.a.b, .b.c) | .a?",
];

/// An expression run on its input cut down to what `input_needs` says it needs answers
/// what it answers on the whole input, and fails where it fails (an error's text may print
/// a value, which is then cut down too).
fn needs_agree(src: &str, input: &Value) {
    let Ok(expr) = Expr::compile_with(DEFS, src) else {
        return;
    };
    let Some(need) = expr.input_needs() else {
        return;
    };
    let cut = need.settled().project(input);
    let (whole, part) = (expr.eval_jaq(input), expr.eval_jaq(&cut));
    assert_eq!(whole.is_ok(), part.is_ok(), "{src} on {input} (cut: {cut})");
    if whole.is_ok() {
        assert_eq!(whole, part, "{src} on {input} (cut: {cut})");
        assert_eq!(expr.eval(input), expr.eval(&cut), "{src} on {input}");
    }
}

#[test]
fn input_needs_keep_all_an_expression_reads() {
    let mut nested = inputs();
    for text in [
        r#"{"a": {"b": {"c": 1, "a": 2.50, "z": [1]}, "c": [1, {"b": 1, "c": 2}]}, "b": "b", "c": {"d": 1}}"#,
        r#"{"a": [{"b": 1, "c": 18.850, "d": {"e": 1}}, {"b": "x", "c": null}], "b": 1, "c": 5}"#,
        r#"{"a": {"b": false, "c": {"a": 1}}, "b": {"a": -0, "c": {"a": [2]}}, "c": "s"}"#,
    ] {
        nested.push(serde_json::from_str(text).unwrap());
    }
    for src in EXPRS.iter().chain(NESTED) {
        for input in &nested {
            needs_agree(src, input);
        }
    }
    // What is followed: only the members read are kept.
    let cut = |src: &str, input: Value| {
        let need = Expr::compile_with(DEFS, src)
            .unwrap()
            .input_needs()
            .unwrap();
        need.settled().project(&input)
    };
    assert_eq!(
        cut(
            ".s.b.r as $r | [$r.rows[] | .total] | length",
            json!({"s": {"b": {"r": {"rows": [{"total": 1, "by": {"x": 1}}], "sum": 3}}}, "req": {}})
        ),
        json!({"s": {"b": {"r": {"rows": [{"total": 1}]}}}})
    );
    assert_eq!(
        cut(
            ".a.x // .b",
            json!({"a": {"x": null, "y": 2}, "b": {"c": 1}, "d": 4})
        ),
        json!({"a": {"x": null}, "b": {"c": 1}})
    );
    assert_eq!(
        cut(
            "if .a.t then 1 else 2 end",
            json!({"a": {"t": {"deep": 1}, "u": 1}})
        ),
        json!({"a": {"t": {}}})
    );
    assert_eq!(cut(".", json!({"a": 1})), json!({"a": 1}));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn native_agrees_with_jaq_on_random_inputs(input in value()) {
        for src in EXPRS {
            agree(src, &input);
        }
        for src in NESTED {
            needs_agree(src, &input);
        }
        for group in SHARED_OPERAND {
            shared_agrees(group, &input);
        }
    }
}
