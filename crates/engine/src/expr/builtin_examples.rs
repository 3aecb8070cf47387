//! The built-ins through the jaq path and the native path. Every example a built-in declares
//! in [`crate::builtins::BUILTINS`] runs through both: a built-in without examples, one the
//! native path does not compile, or one whose paths disagree (with each other or with the
//! example) fails here.

use serde_json::{Value, json};

use crate::builtins::BUILTINS;
use crate::expr::Expr;
use crate::fast;

/// `name` or `name(arg; …)`.
fn call(name: &str, args: &[&str]) -> String {
    if args.is_empty() {
        name.to_string()
    } else {
        format!("{name}({})", args.join("; "))
    }
}

#[test]
fn every_builtin_is_declared_once_with_examples() {
    for (i, builtin) in BUILTINS.iter().enumerate() {
        assert!(
            BUILTINS[..i].iter().all(|b| b.name != builtin.name),
            "{} is declared twice",
            builtin.name
        );
        assert!(
            builtin.examples.iter().any(|e| e.output.is_some()),
            "{} has no example of what it gives",
            builtin.name
        );
        for example in builtin.examples {
            assert_eq!(
                example.args.len(),
                builtin.signature.arity(),
                "{}: an example with the wrong number of arguments",
                builtin.name
            );
        }
    }
}

#[test]
fn every_example_gives_its_output_through_both_paths() {
    for builtin in BUILTINS {
        for example in builtin.examples {
            let source = call(builtin.name, example.args);
            let input: Value = serde_json::from_str(example.input)
                .unwrap_or_else(|e| panic!("{source}: input {}: {e}", example.input));
            let expr = Expr::compile(&source).unwrap_or_else(|e| panic!("{source}: {e}"));
            let native = fast::compile("", &source)
                .unwrap_or_else(|| panic!("{source}: the native path does not compile it"));
            let by_jaq = expr.eval_jaq(&input);
            let by_native = native.eval(&input);
            match example.output {
                Some(output) => {
                    let want: Value = serde_json::from_str(output)
                        .unwrap_or_else(|e| panic!("{source}: output {output}: {e}"));
                    assert_eq!(by_jaq.as_ref(), Ok(&want), "{source} on {input}: jaq");
                    assert_eq!(
                        by_native.as_ref(),
                        Some(&want),
                        "{source} on {input}: native"
                    );
                }
                None => {
                    assert!(by_jaq.is_err(), "{source} on {input}: jaq gave {by_jaq:?}");
                    // A failure is left to jaq, which reports it in its words.
                    assert_eq!(by_native, None, "{source} on {input}: native");
                }
            }
            // As the bridge evaluates it (debug builds compare the two paths again).
            assert_eq!(expr.eval(&input), by_jaq, "{source} on {input}");
        }
    }
}

fn eval(src: &str, input: Value) -> Value {
    Expr::compile(src)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
        .eval(&input)
        .unwrap_or_else(|e| panic!("{src}: {e}"))
}

fn num(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

#[test]
fn phones_and_ids() {
    assert_eq!(
        eval("phone_e164", json!("8 (555) 123-45-67")),
        json!("+75551234567")
    );
    assert_eq!(
        eval("phone_digits", json!("+7 555 123 4567")),
        json!("75551234567")
    );
    assert_eq!(
        eval("phone_7", json!("+7 555 123 4567")),
        json!("75551234567")
    );
    assert!(
        Expr::compile("phone_e164")
            .unwrap()
            .eval(&json!("12"))
            .is_err()
    );
    let a = eval("uuid_v5", json!("maxma:1"));
    assert_eq!(a, eval("uuid_v5", json!("maxma:1")));
    assert!(uuid::Uuid::parse_str(a.as_str().unwrap()).is_ok());
}

#[test]
fn exact_decimal_arithmetic() {
    let input: Value = serde_json::from_str(r#"{"p": 123.45, "q": 123.456}"#).unwrap();
    // In binary floating point this product is 15240.643199999999…
    assert_eq!(
        eval(".p as $p | .q | dmul($p)", input.clone()),
        num("15240.6432")
    );
    assert_eq!(
        eval(".p as $p | .q | dmul($p) | round_money", input.clone()),
        num("15240.64")
    );
    assert_eq!(eval("0.1 | dadd(0.2)", json!(null)), num("0.3"));
    assert_eq!(eval("10 | ddiv(4)", json!(null)), num("2.5"));
    assert_eq!(eval("2.675 | dround(2)", json!(null)), num("2.68"));
    assert_eq!(
        eval("[0.1, 0.2, 0.005] | sum_money", json!(null)),
        num("0.31")
    );
    assert_eq!(eval("123.45 | kopecks", json!(null)), num("12345"));
    assert_eq!(eval("12345 | rubles", json!(null)), num("123.45"));
    assert_eq!(eval("7.9 | dfloor", json!(null)), num("7"));
    assert_eq!(eval("\"12.5\" | decimal", json!(null)), num("12.5"));
    assert!(
        Expr::compile("1 | ddiv(0)")
            .unwrap()
            .eval(&json!(null))
            .is_err()
    );
    assert!(
        Expr::compile("\"x\" | kopecks")
            .unwrap()
            .eval(&json!(null))
            .is_err()
    );
}

#[test]
fn allocation_keeps_the_position_and_splits_serials() {
    let positions = json!([
        {"assortment": {"meta": {"id": "a"}}, "quantity": 3, "price": 10,
         "sn": [{"name": "1"}, {"name": "2"}, {"name": "3"}]}
    ]);
    let out = eval(". as $p | $p | allocate_discount(0.01)", positions);
    let lines = out.as_array().unwrap();
    assert_eq!(lines.len(), 2, "{out}");
    let total: rust_decimal::Decimal = lines
        .iter()
        .map(|l| {
            let q: rust_decimal::Decimal = l["quantity"].to_string().parse().unwrap();
            let p: rust_decimal::Decimal = l["discountedPrice"].to_string().parse().unwrap();
            q * p
        })
        .sum();
    assert_eq!(total.to_string(), "29.99");
    for line in lines {
        assert_eq!(line["assortment"]["meta"]["id"], "a");
        assert_eq!(
            line["sn"].as_array().unwrap().len().to_string(),
            line["quantity"].to_string()
        );
    }
}

#[test]
fn dates_and_nulls() {
    assert_eq!(
        eval("ms_to_iso(\"+03:00\")", json!("2023-07-14 00:00:00")),
        json!("2023-07-14T00:00:00+03:00")
    );
    assert_eq!(
        eval("iso_to_ms", json!("2025-07-14T00:00:00Z")),
        json!("2025-07-14 00:00:00")
    );
    assert_eq!(
        eval("date_to_ms", json!("1985-03-14")),
        json!("1985-03-14 00:00:00")
    );
    assert_eq!(
        eval("drop_nulls", json!({"a": null, "b": {"c": null, "d": 1}})),
        json!({"b": {"d": 1}})
    );
}

/// The worked example of "Money over lines" in docs/mapping-language.md, run as written.
#[test]
fn the_money_over_lines_example_in_the_docs_answers_as_it_says() {
    let docs = include_str!("../../../../docs/mapping-language.md");
    let section = &docs[docs.find("**Money over lines.**").expect("the section")..];
    let start = section.find("```jq\n").expect("a jq block") + "```jq\n".len();
    let source = &section[start..start + section[start..].find("```").expect("closed")];
    let input: Value = serde_json::from_str(
        r#"{"req": {"positions": [{"id": "a", "quantity": 3, "price": 10.00},
                                  {"id": "b", "quantity": 1, "price": 5.00}]}}"#,
    )
    .unwrap();
    let want: Value = serde_json::from_str(
        r#"[{"id": "a", "quantity": 2, "price": 10.00, "discountedPrice": 9.54, "discountPercent": 4.6},
            {"id": "a", "quantity": 1, "price": 10.00, "discountedPrice": 9.53, "discountPercent": 4.7},
            {"id": "b", "quantity": 1, "price": 5.00, "discountedPrice": 4.44, "discountPercent": 11.2}]"#,
    )
    .unwrap();
    assert_eq!(eval(source, input), want, "{source}");
}
