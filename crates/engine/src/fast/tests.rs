//! Parts of the native path seen from inside: typed reads straight from an evaluation, and
//! object member lookup. (Its answers against jaq's are `expr`'s tests.)

use serde_json::{Value, json};

use super::compile;
use super::value::{SCANNED_OBJECT, member};
use crate::amount::{Quantity, Rubles};

/// Amounts read straight from an evaluation into a model keep their exact text, borrowed
/// or built, and integers and JSON fields still read (no fallback to the built `Value`).
#[test]
fn numbers_read_into_models_exactly() {
    #[derive(Debug, serde::Deserialize)]
    struct Amounts {
        a: Rubles,
        b: Option<Rubles>,
        c: i64,
        d: Value,
        e: Quantity,
        f: Rubles,
        g: Option<Rubles>,
        h: Option<Rubles>,
        i: i64,
    }
    let input: Value =
        serde_json::from_str(r#"{"x": 18.850, "y": 1.0, "z": 1e2, "w": -3}"#).unwrap();
    // No definitions: the expression calls none.
    let native = compile(
        "",
        "{a: .x, b: .y, c: .w, d: .x, e: (.x | dadd(0.15)), f: .z, g: .none, \
         h: (.x | dsub(0.35)), i: (.w | dsub(1))}",
    )
    .expect("native");
    let read: Amounts = native
        .eval_into(&input)
        .expect("native answer")
        .expect("reads as the model");
    assert_eq!(read.a.to_string(), "18.850");
    assert_eq!(read.b.map(|b| b.to_string()), Some("1.0".into()));
    assert_eq!(read.c, -3);
    assert_eq!(read.d.to_string(), "18.850");
    assert_eq!(read.e.to_string(), "19");
    assert_eq!(read.f.to_string(), "100");
    assert!(read.g.is_none());
    // Computed amounts (kept as decimals, not JSON numbers) read as their text would.
    assert_eq!(read.h.map(|h| h.to_string()), Some("18.5".into()));
    assert_eq!(read.i, -4);
}

/// Objects up to [`SCANNED_OBJECT`] keys are scanned, larger ones searched: both find
/// every key, keys of one length are told apart by their bytes, and a missing key is none.
#[test]
fn member_finds_keys_scanned_and_searched() {
    for size in [0, 1, 2, SCANNED_OBJECT, SCANNED_OBJECT + 1, 40] {
        // Same-length keys ("k00", "k01", …) so that only the bytes tell them apart.
        let m: serde_json::Map<String, Value> =
            (0..size).map(|i| (format!("k{i:02}"), json!(i))).collect();
        for i in 0..size {
            assert_eq!(
                member(&m, &format!("k{i:02}")),
                Some(&json!(i)),
                "size {size}"
            );
        }
        for absent in ["", "k", "k99", "k000", "K00"] {
            assert_eq!(member(&m, absent), None, "size {size}, key {absent:?}");
        }
    }
}
