//! jq expressions of mapping files, compiled once at load and evaluated over `serde_json::Value`.
//!
//! jaq (a maintained Rust jq) parses and runs them. Its values are not `Send`, so an evaluation
//! is one synchronous call: convert in, run, convert out; no jaq value outlives [`Expr::eval`].
//! Numbers cross the boundary as their exact decimal text, so money keeps every digit.

use std::sync::OnceLock;

use jaq_core::load::{Arena, File, Loader};
use jaq_core::{Compiler, Ctx, Native, Vars, data};
use jaq_json::Val;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::jaq_value::{NotJson, from_val, to_val};
use crate::{fast, natives};

pub type Data = data::JustLut<Val>;

type Filter = jaq_core::compile::Filter<Native<Data>>;

/// A compiled jq expression and its source (kept for messages).
pub struct Expr {
    source: String,
    /// The definitions in scope, to compile jaq's filter again when it is needed.
    defs: String,
    /// jaq's filter. For an expression the fast path evaluates it is dropped after the
    /// load-time check and compiled again on first need (a run-time fallback, debug builds'
    /// cross-check): jaq's compiled filters hold a copy of the definitions they use, and were
    /// most of an idle bridge's heap (~12 MB for one mapping file, valgrind massif).
    filter: OnceLock<Result<Filter, String>>,
    /// The native fast path, when the whole expression is in its subset (`fast`).
    fast: Option<fast::Native>,
}

impl std::fmt::Debug for Expr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Expr({:?})", self.source)
    }
}

/// Why an evaluation failed, in words for the log (never shown to MoySklad as is).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

impl From<NotJson> for EvalError {
    fn from(e: NotJson) -> Self {
        EvalError(e.to_string())
    }
}

impl Expr {
    /// Parses and compiles `source`; the error says what jaq expected where.
    pub fn compile(source: &str) -> Result<Expr, String> {
        Expr::compile_with("", source)
    }

    /// Compiles `source` with jq definitions (`def f: …;`) in scope.
    pub fn compile_with(defs: &str, source: &str) -> Result<Expr, String> {
        let filter = compile_jaq(defs, source)?;
        let fast = fast::compile(defs, source);
        let kept = OnceLock::new();
        if fast.is_none() {
            let _ = kept.set(Ok(filter));
        }
        Ok(Expr {
            source: source.to_string(),
            defs: defs.to_string(),
            fast,
            filter: kept,
        })
    }

    fn jaq(&self) -> Result<&Filter, EvalError> {
        self.filter
            .get_or_init(|| compile_jaq(&self.defs, &self.source))
            .as_ref()
            .map_err(|e| EvalError(e.clone()))
    }
}

/// Parses and compiles `source` with `defs` in scope; the error says what jaq expected where.
fn compile_jaq(defs: &str, source: &str) -> Result<Filter, String> {
    let program = if defs.trim().is_empty() {
        source.to_string()
    } else {
        format!("{defs}\n{source}")
    };
    let defs = jaq_core::defs()
        .chain(jaq_std::defs())
        .chain(jaq_json::defs());
    let funs = jaq_core::funs()
        .chain(jaq_std::funs())
        .chain(jaq_json::funs())
        .chain(natives::funs());
    let loader = Loader::new(defs);
    let arena = Arena::default();
    let modules = loader
        .load(
            &arena,
            File {
                code: program.as_str(),
                path: (),
            },
        )
        .map_err(|errors| {
            let mut out = Vec::new();
            for (_, error) in errors {
                match error {
                    jaq_core::load::Error::Io(items) => {
                        out.extend(
                            items
                                .into_iter()
                                .map(|(path, e)| format!("cannot load {path}: {e}")),
                        );
                    }
                    jaq_core::load::Error::Lex(items) => {
                        out.extend(items.into_iter().map(|(expect, at)| {
                            format!("expected {} at `{}`", expect.as_str(), snippet(at))
                        }))
                    }
                    jaq_core::load::Error::Parse(items) => {
                        out.extend(items.into_iter().map(|(expect, at)| {
                            format!("expected {} at `{}`", expect.as_str(), snippet(at))
                        }))
                    }
                }
            }
            format!("jq syntax error: {}", out.join("; "))
        })?;
    let filter = Compiler::default()
        .with_funs(funs)
        .compile(modules)
        .map_err(|errors| {
            let names: Vec<String> = errors
                .into_iter()
                .flat_map(|(_, undefined)| undefined)
                .map(|(name, kind)| match kind {
                    jaq_core::compile::Undefined::Filter(arity) => {
                        format!("undefined function `{name}/{arity}`")
                    }
                    other => format!("undefined {} `{name}`", other.as_str()),
                })
                .collect();
            format!("jq: {}", names.join("; "))
        })?;
    Ok(filter)
}

impl Expr {
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The first output of the expression for `input`; no output is an error.
    pub fn eval(&self, input: &Value) -> Result<Value, EvalError> {
        if let Some(value) = self.fast.as_ref().and_then(|f| f.eval(input)) {
            // Every debug run (all of `cargo test`: goldens, server tests) is a differential
            // test of the fast path against jaq.
            #[cfg(debug_assertions)]
            assert_eq!(
                Ok(&value),
                self.eval_jaq(input).as_ref(),
                "native and jaq differ on {:?} for {input}",
                self.source
            );
            return Ok(value);
        }
        self.eval_val(to_val(input))
    }

    /// [`Expr::eval`] written as JSON: what `serde_json::to_vec` of that value gives, built
    /// without the value where the fast path answers (a vendor request's body).
    pub fn eval_json(&self, input: &Value) -> Result<Vec<u8>, EvalError> {
        if let Some(bytes) = self.fast.as_ref().and_then(|f| f.eval_json(input)) {
            #[cfg(debug_assertions)]
            {
                let jaq = self.eval_jaq(input);
                let jaq = jaq
                    .as_ref()
                    .map(|v| serde_json::to_vec(v).unwrap_or_default());
                assert_eq!(
                    Ok(&bytes),
                    jaq.as_ref(),
                    "native and jaq differ on {:?} for {input}",
                    self.source
                );
            }
            return Ok(bytes);
        }
        let value = self.eval_val(to_val(input))?;
        serde_json::to_vec(&value).map_err(|e| EvalError(e.to_string()))
    }

    /// [`Expr::eval`] read as `T` (a LoyaltyAPI answer): where the fast path answers, straight
    /// from its evaluation, without building the value. `Ok(Err(value))`: the value does not
    /// read as `T` (the caller names the misfit from it).
    pub fn eval_into<T: DeserializeOwned + Serialize>(
        &self,
        input: &Value,
    ) -> Result<Result<T, Value>, EvalError> {
        if let Some(Some(typed)) = self.fast.as_ref().and_then(|f| f.eval_into::<T>(input)) {
            // The debug cross-check: jaq's value reads as the same `T`.
            #[cfg(debug_assertions)]
            {
                let jaq = self.eval_jaq(input).map(|v| T::deserialize(&v).ok());
                let written = |t: &T| serde_json::to_value(t).ok();
                assert_eq!(
                    Ok(written(&typed)),
                    jaq.map(|t| t.as_ref().and_then(written)),
                    "native and jaq differ on {:?} for {input}",
                    self.source
                );
            }
            return Ok(Ok(typed));
        }
        let value = self.eval(input)?;
        Ok(T::deserialize(&value).map_err(|_| value))
    }

    /// Whether the native fast path evaluates this expression (else only jaq does).
    pub fn is_native(&self) -> bool {
        self.fast.is_some()
    }

    /// The top-level keys of its input the expression can read; `None` when that is not
    /// known (jaq alone evaluates it, or it may see the whole input).
    pub fn input_keys(&self) -> Option<Vec<String>> {
        self.fast.as_ref()?.input_keys()
    }

    /// What of its input the expression may look at (`need.rs`); `None` when it is not
    /// known (an expression only jaq runs).
    pub fn input_needs(&self) -> Option<crate::need::Need> {
        Some(self.fast.as_ref()?.input_needs())
    }

    /// [`Expr::eval`] through jaq only (the reference the fast path is tested against).
    pub fn eval_jaq(&self, input: &Value) -> Result<Value, EvalError> {
        self.eval_val(to_val(input))
    }

    /// [`Expr::eval`] on an input already converted with [`to_val`] (several expressions over
    /// one input convert it once).
    pub fn eval_val(&self, input: Val) -> Result<Value, EvalError> {
        let filter = self.jaq()?;
        let ctx = Ctx::<Data>::new(&filter.lut, Vars::new([]));
        let mut outputs = filter.id.run((ctx, input));
        match outputs.next() {
            Some(Ok(val)) => Ok(from_val(&val)?),
            Some(Err(exn)) => Err(EvalError(match exn.get_err() {
                Ok(err) => err.to_string(),
                Err(_) => "the expression stopped without a value".into(),
            })),
            None => Err(EvalError("the expression produced no value".into())),
        }
    }

    /// Evaluates a condition: `false` and `null` are false, anything else is true (jq's rule).
    pub fn test(&self, input: &Value) -> Result<bool, EvalError> {
        if let Some(hit) = self.fast.as_ref().and_then(|f| f.test(input)) {
            #[cfg(debug_assertions)]
            assert_eq!(
                Ok(hit),
                self.test_val(to_val(input)),
                "native and jaq differ on {:?} for {input}",
                self.source
            );
            return Ok(hit);
        }
        self.test_val(to_val(input))
    }

    /// For `<operand> <comparison> <literal>` evaluated natively: the operand's shape. Rules
    /// with the same key (every `maxma_error == N`) share one evaluation of it: [`Expr::operand`]
    /// once, then [`Expr::test_operand`] per rule.
    pub fn operand_key(&self) -> Option<&str> {
        self.fast.as_ref()?.operand_key()
    }

    /// The operand's only output; `None`: [`Expr::test`] decides each rule.
    pub fn operand(&self, input: &Value) -> Option<Value> {
        self.fast.as_ref()?.operand(input)
    }

    /// [`Expr::test`] given the operand's output (from an expression with the same
    /// [`Expr::operand_key`]); `input` is only read when the comparison is not decided natively.
    pub fn test_operand(&self, operand: Option<&Value>, input: &Value) -> Result<bool, EvalError> {
        let Some(hit) = operand.and_then(|v| self.fast.as_ref()?.compare(v)) else {
            return self.test(input);
        };
        #[cfg(debug_assertions)]
        assert_eq!(
            Ok(hit),
            self.test(input),
            "the shared operand decides {:?} unlike the expression itself for {input}",
            self.source
        );
        Ok(hit)
    }

    /// [`Expr::test`] on a converted input.
    pub fn test_val(&self, input: Val) -> Result<bool, EvalError> {
        Ok(!matches!(
            self.eval_val(input)?,
            Value::Null | Value::Bool(false)
        ))
    }
}

fn snippet(at: &str) -> String {
    let s: String = at.chars().take(24).collect();
    if s.is_empty() {
        "end of expression".into()
    } else {
        s
    }
}

#[cfg(test)]
mod builtin_examples;
#[cfg(test)]
mod native_vs_jaq;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(src: &str, input: Value) -> Value {
        Expr::compile(src).unwrap().eval(&input).unwrap()
    }

    #[test]
    fn paths_objects_arrays_and_alternatives() {
        let input = json!({"req": {"a": 1, "xs": [{"p": 2}, {"p": 3}]}});
        assert_eq!(eval(".req.a", input.clone()), json!(1));
        assert_eq!(
            eval("{x: .req.a, ys: [.req.xs[] | .p]}", input.clone()),
            json!({"x": 1, "ys": [2, 3]})
        );
        assert_eq!(
            eval(".req.missing // \"dflt\"", input.clone()),
            json!("dflt")
        );
        assert_eq!(
            eval("if .req.a == 1 then \"one\" else \"other\" end", input),
            json!("one")
        );
    }

    #[test]
    fn decimals_keep_their_text() {
        let input: Value =
            serde_json::from_str(r#"{"price": 123.45, "big": 12345678901234567890.123}"#).unwrap();
        assert_eq!(eval(".price", input.clone()).to_string(), "123.45");
        assert_eq!(eval(".big", input).to_string(), "12345678901234567890.123");
    }

    #[test]
    fn compile_errors_say_what_is_wrong() {
        let e = Expr::compile("{a: }").unwrap_err();
        assert!(e.contains("syntax"), "{e}");
        let e = Expr::compile(".a | no_such_fn").unwrap_err();
        assert!(e.contains("no_such_fn/0"), "{e}");
    }

    #[test]
    fn runtime_errors_and_empty_outputs_are_errors() {
        let x = Expr::compile(".a + 1").unwrap();
        assert!(x.eval(&json!({"a": "s"})).is_err());
        let e = Expr::compile("empty").unwrap();
        assert!(e.eval(&json!(null)).is_err());
        let err = Expr::compile("error(\"boom\")")
            .unwrap()
            .eval(&json!(null))
            .unwrap_err();
        assert!(err.0.contains("boom"), "{err}");
    }

    #[test]
    fn truthiness_follows_jq() {
        let t = |src: &str| Expr::compile(src).unwrap().test(&json!({"a": 0})).unwrap();
        assert!(t(".a"));
        assert!(!t(".b"));
        assert!(!t("false"));
        assert!(t(".a == 0"));
    }

    #[test]
    fn regular_expressions_test_and_capture() {
        // jaq-std's regex functions (regex-bites): mappings parse typed-in searches with them.
        let words = r#"capture("^\\s*(?<phone>.*\\S)\\s+(?<code>[0-9]{4,6})\\s*$") // null"#;
        assert_eq!(
            eval(words, json!("+7 999 000-00-01  1234 ")),
            json!({"phone": "+7 999 000-00-01", "code": "1234"})
        );
        assert_eq!(eval(words, json!("+7 999 000-00-01")), json!(null));
        assert_eq!(
            eval(r#"test("(?i)token")"#, json!("Bad TOKEN")),
            json!(true)
        );
        assert_eq!(
            eval(
                r#"capture("(?<n>[0-9]+) attempts left").n"#,
                json!("Wrong code; 4 attempts left")
            ),
            json!("4")
        );
        assert_eq!(
            eval(r#"[scan("[0-9]+")]"#, json!("a1b22")),
            json!(["1", "22"])
        );
    }
}
