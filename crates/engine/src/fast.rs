//! The native fast path (docs/design.md §3): the common jq subset compiled, at load, to a tree
//! evaluated directly over `serde_json::Value` — no conversion to jaq's values. Evaluation
//! borrows: what passes through unchanged (`.req.agent`, a position, a literal) is a reference
//! into the input until the answer is copied out once, so an expression costs about what the
//! same transform written by hand in Rust costs (`benches/mapping.rs` holds the two side by
//! side). Outputs stream to a continuation and evaluation stops at the first one, as jq's
//! laziness would for the bridge, which takes the first output only.
//!
//! jaq stays the reference. [`compile`] accepts an expression only when every part of it is in
//! the subset below (else the caller keeps jaq alone), and at run time [`Native::eval`] answers
//! `None` — "ask jaq" — whenever it is not sure to produce exactly jaq's value: on *any* error
//! (so error texts are always jaq's own), on no output, on numbers it does not compare exactly
//! (anything but integers), on multi-output cartesian products, on `-0`. So a native answer is
//! either jaq's answer or no answer at all; `tests` check that differentially.
//!
//! The subset: `.`, paths (`.a.b`, `.[0]`, `.["k"]`, `.[]`, `?`, on variables too), literals,
//! strings with `\(…)` of scalars, `[…]`, `{…}`, `|`, `,`, `as $x |`, `//`, `and`, `or`,
//! `==` `!=` `<` `<=` `>` `>=`, `+` (null, strings, arrays, objects, integers), `if … elif …
//! else … end`, `try … catch <literal>`, `empty`, `not`, `select`, `map`, `tostring`,
//! `length`, `to_entries`, `from_entries`, the money/phone/uuid natives that take no argument or
//! one value argument (`dadd`, `dsub`, `allocate_discount`), `drop_nulls`, and calls to the
//! mapping's own `def`s whose parameters are `$values` (inlined).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::rc::Rc;
use std::str::FromStr;
use std::sync::LazyLock;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::ops::{Cmp, Math};
use jaq_core::path::{Opt, Part};
use rust_decimal::Decimal;
use serde::de::value::BorrowedStrDeserializer;
use serde::de::{DeserializeOwned, IntoDeserializer, Visitor};
use serde::{Serialize, Serializer};
use serde_json::{Number, Value};

use crate::builtins;
use crate::need::{Need, Seg};

/// Why the native path did not answer.
#[derive(Debug)]
enum Stop {
    /// jq raises an error here (the message is jaq's business: the caller re-runs jaq).
    Jq,
    /// Outside what the native path decides exactly: the whole expression goes to jaq.
    Unsure,
    /// Raised by a continuation, on its way back through a node that must not take it for
    /// its own (the error itself is kept aside by [`guarded`]).
    Downstream,
    /// The whole expression has its first output: evaluation stops.
    Done,
    /// A node evaluated for its only output ([`Node::direct`]) gave several: the caller
    /// runs it with continuations instead.
    Several,
}

type R = Result<(), Stop>;

#[derive(Debug, Clone, Copy)]
enum Fun0 {
    Tostring,
    Length,
    ToEntries,
    FromEntries,
    Not,
    DropNulls,
    Text(fn(&str) -> Result<String, builtins::BuiltinError>),
    Uuid,
    /// `None`: out of range (jaq's built-in then reports the error).
    Money(fn(Decimal) -> Option<Decimal>),
}

#[derive(Debug, Clone, Copy)]
enum Fun1 {
    Dadd,
    Dsub,
    Allocate,
}

/// What an object literal's keys are known to be at compile time.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Keys {
    /// All literals, no two the same: each entry is added without looking for an earlier one.
    Distinct,
    /// Computed (`(.a): 1`) or repeated: a later entry replaces an earlier one of its key.
    MayRepeat,
}

#[derive(Debug)]
enum Node {
    Id,
    Empty,
    Lit(Value),
    Var(usize),
    Str(Vec<Result<String, Node>>),
    Arr(Option<Box<Node>>),
    /// `{k: v, …}`.
    Obj(Vec<(Node, Node)>, Keys),
    Path(Box<Node>, Vec<(Option<Node>, bool)>),
    Pipe(Box<Node>, Box<Node>),
    Bind(Box<Node>, usize, Box<Node>),
    Comma(Box<Node>, Box<Node>),
    Alt(Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Cmp(Box<Node>, Cmp, Box<Node>),
    Add(Box<Node>, Box<Node>),
    If(Box<Node>, Box<Node>, Box<Node>),
    Try(Box<Node>, Option<Value>),
    Call0(Fun0),
    Call1(Fun1, Box<Node>),
}

/// A natively compiled expression.
#[derive(Debug)]
pub struct Native {
    root: Node,
    slots: usize,
    /// For `<operand> <comparison> <literal>`: the operand's shape (see [`Native::operand`]).
    operand_key: Option<String>,
}

/// Compiles `source` natively if it is entirely within the subset, with `defs` in scope.
pub fn compile(defs: &str, source: &str) -> Option<Native> {
    let defs: Vec<Def<&str, Term<&str>>> = if defs.trim().is_empty() {
        Vec::new()
    } else {
        jaq_core::load::parse(defs, |p| p.defs())?
    };
    let term = jaq_core::load::parse(source, |p| p.term())?;
    let mut c = Compiler {
        defs: &defs,
        depth: 0,
        max: 0,
        inlining: 0,
    };
    let root = c.term(&term, &Scope::default(), defs.len())?;
    // Two operands that print alike are the same computation (literals, built-ins, slots and
    // all), so they give the same output for the same input.
    let operand_key = match &root {
        Node::Cmp(operand, _, literal) if matches!(**literal, Node::Lit(_)) => {
            Some(format!("{operand:?}"))
        }
        _ => None,
    };
    Some(Native {
        root,
        slots: c.max,
        operand_key,
    })
}

#[derive(Default, Clone)]
struct Scope<'s> {
    vars: Vec<(&'s str, usize)>,
    params: Vec<&'s str>,
}

struct Compiler<'d, 's> {
    defs: &'d [Def<&'s str, Term<&'s str>>],
    depth: usize,
    max: usize,
    inlining: usize,
}

fn plain_number(text: &str) -> Option<Value> {
    // Literals jaq and serde_json write identically: no sign, exponent or leading zero.
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || (int.len() > 1 && int.starts_with('0')) {
        return None;
    }
    if let Some(f) = frac {
        if !digits(f) {
            return None;
        }
    }
    Number::from_str(text).ok().map(Value::Number)
}

fn str_lit<S: AsRef<str>>(parts: &[StrPart<S, Term<S>>]) -> Option<String> {
    let mut out = String::new();
    for p in parts {
        match p {
            StrPart::Str(s) => out.push_str(s.as_ref()),
            StrPart::Char(c) => out.push(*c),
            StrPart::Term(_) => return None,
        }
    }
    Some(out)
}

impl<'d, 's> Compiler<'d, 's> {
    /// `visible`: how many of the defs the current term can call (those before it).
    fn term(&mut self, t: &Term<&'s str>, scope: &Scope<'s>, visible: usize) -> Option<Node> {
        let b = |n: Node| Box::new(n);
        Some(match t {
            Term::Id => Node::Id,
            Term::Num(n) => Node::Lit(plain_number(n)?),
            Term::Str(None, parts) => match str_lit(parts) {
                Some(s) => Node::Lit(Value::String(s)),
                None => {
                    let mut out = Vec::new();
                    for p in parts {
                        out.push(match p {
                            StrPart::Str(s) => Ok(s.to_string()),
                            StrPart::Char(c) => Ok(c.to_string()),
                            StrPart::Term(t) => Err(self.term(t, scope, visible)?),
                        });
                    }
                    Node::Str(out)
                }
            },
            Term::Arr(None) => Node::Lit(Value::Array(Vec::new())),
            Term::Arr(Some(t)) => Node::Arr(Some(b(self.term(t, scope, visible)?))),
            Term::Obj(entries) => {
                let mut out = Vec::new();
                for (k, v) in entries {
                    let (key, value) = match (k, v) {
                        (Term::Var(name), None) => (
                            Node::Lit(Value::String(name.trim_start_matches('$').to_string())),
                            self.var(name, scope)?,
                        ),
                        (Term::Var(_), Some(_)) => return None,
                        (Term::Str(None, parts), None) => {
                            let name = str_lit(parts)?;
                            (
                                Node::Lit(Value::String(name.clone())),
                                Node::Path(
                                    b(Node::Id),
                                    vec![(Some(Node::Lit(Value::String(name))), false)],
                                ),
                            )
                        }
                        (k, Some(v)) => {
                            let key = match k {
                                Term::Var(name) => self.var(name, scope)?,
                                other => self.term(other, scope, visible)?,
                            };
                            (key, self.term(v, scope, visible)?)
                        }
                        _ => return None,
                    };
                    out.push((key, value));
                }
                fn literal(k: &Node) -> Option<&str> {
                    match k {
                        Node::Lit(Value::String(name)) => Some(name),
                        _ => None,
                    }
                }
                let distinct = out.iter().enumerate().all(|(i, (k, _))| {
                    literal(k).is_some_and(|name| {
                        out[..i]
                            .iter()
                            .all(|(earlier, _)| literal(earlier) != Some(name))
                    })
                });
                let keys = if distinct {
                    Keys::Distinct
                } else {
                    Keys::MayRepeat
                };
                Node::Obj(out, keys)
            }
            Term::Var(name) => self.var(name, scope)?,
            Term::Path(base, path) => {
                let base = self.term(base, scope, visible)?;
                let mut parts = Vec::new();
                for (part, opt) in &path.0 {
                    let index = match part {
                        Part::Index(i) => Some(self.term(i, scope, visible)?),
                        Part::Range(None, None) => None,
                        Part::Range(..) => return None,
                    };
                    parts.push((index, matches!(opt, Opt::Optional)));
                }
                Node::Path(b(base), parts)
            }
            Term::BinOp(l, op, r) => {
                if let BinaryOp::Pipe(Some(pat)) = op {
                    let Pattern::Var(name) = pat else {
                        return None;
                    };
                    let l = self.term(l, scope, visible)?;
                    let slot = self.depth;
                    self.depth += 1;
                    self.max = self.max.max(self.depth);
                    let mut inner = scope.clone();
                    inner.vars.push((name, slot));
                    let r = self.term(r, &inner, visible);
                    self.depth -= 1;
                    return Some(Node::Bind(b(l), slot, b(r?)));
                }
                let l = b(self.term(l, scope, visible)?);
                let r = b(self.term(r, scope, visible)?);
                match op {
                    BinaryOp::Pipe(None) => Node::Pipe(l, r),
                    BinaryOp::Comma => Node::Comma(l, r),
                    BinaryOp::Alt => Node::Alt(l, r),
                    BinaryOp::And => Node::And(l, r),
                    BinaryOp::Or => Node::Or(l, r),
                    BinaryOp::Cmp(c) => Node::Cmp(l, *c, r),
                    BinaryOp::Math(Math::Add) => Node::Add(l, r),
                    _ => return None,
                }
            }
            Term::IfThenElse(branches, els) => {
                let mut node = match els {
                    Some(e) => self.term(e, scope, visible)?,
                    None => Node::Id,
                };
                for (cond, then) in branches.iter().rev() {
                    let cond = self.term(cond, scope, visible)?;
                    let then = self.term(then, scope, visible)?;
                    node = Node::If(b(cond), b(then), b(node));
                }
                node
            }
            Term::TryCatch(body, catch) => {
                let body = self.term(body, scope, visible)?;
                let catch = match catch.as_deref() {
                    None => None,
                    Some(c) => match self.term(c, &Scope::default(), visible)? {
                        Node::Lit(v) => Some(v),
                        _ => return None,
                    },
                };
                Node::Try(b(body), catch)
            }
            Term::Call(name, args) => self.call(name, args, scope, visible)?,
            _ => return None,
        })
    }

    fn var(&self, name: &str, scope: &Scope<'s>) -> Option<Node> {
        let (_, slot) = scope.vars.iter().rev().find(|(n, _)| *n == name)?;
        Some(Node::Var(*slot))
    }

    fn call(
        &mut self,
        name: &str,
        args: &[Term<&'s str>],
        scope: &Scope<'s>,
        visible: usize,
    ) -> Option<Node> {
        if scope.params.contains(&name) {
            return None;
        }
        // The mapping's own definitions first: they shadow built-ins of the same name.
        if let Some(i) = self.defs[..visible]
            .iter()
            .rposition(|d| d.name == name && d.args.len() == args.len())
        {
            return self.inline(i, args, scope, visible);
        }
        if self.defs[..visible].iter().any(|d| d.name == name) {
            return None;
        }
        let b = |n: Node| Box::new(n);
        Some(match (name, args) {
            ("empty", []) => Node::Empty,
            ("null", []) => Node::Lit(Value::Null),
            ("true", []) => Node::Lit(Value::Bool(true)),
            ("false", []) => Node::Lit(Value::Bool(false)),
            ("not", []) => Node::Call0(Fun0::Not),
            ("tostring", []) => Node::Call0(Fun0::Tostring),
            ("length", []) => Node::Call0(Fun0::Length),
            ("to_entries", []) => Node::Call0(Fun0::ToEntries),
            ("from_entries", []) => Node::Call0(Fun0::FromEntries),
            ("drop_nulls", []) => Node::Call0(Fun0::DropNulls),
            ("phone_e164", []) => Node::Call0(Fun0::Text(builtins::phone_e164)),
            ("phone_digits", []) => Node::Call0(Fun0::Text(builtins::phone_digits)),
            ("phone_7", []) => Node::Call0(Fun0::Text(builtins::phone_7)),
            ("uuid_v5", []) => Node::Call0(Fun0::Uuid),
            ("kopecks", []) => Node::Call0(Fun0::Money(builtins::checked_kopecks)),
            ("rubles", []) => Node::Call0(Fun0::Money(|d| Some(builtins::rubles(d)))),
            ("round_money", []) => Node::Call0(Fun0::Money(|d| Some(builtins::round_money(d)))),
            ("dfloor", []) => Node::Call0(Fun0::Money(|d| Some(d.floor()))),
            ("dceil", []) => Node::Call0(Fun0::Money(|d| Some(d.ceil()))),
            ("decimal", []) => Node::Call0(Fun0::Money(Some)),
            ("select", [f]) => Node::If(
                b(self.term(f, scope, visible)?),
                b(Node::Id),
                b(Node::Empty),
            ),
            ("map", [f]) => Node::Arr(Some(b(Node::Pipe(
                b(Node::Path(b(Node::Id), vec![(None, false)])),
                b(self.term(f, scope, visible)?),
            )))),
            ("dadd", [x]) => Node::Call1(Fun1::Dadd, b(self.term(x, scope, visible)?)),
            ("dsub", [x]) => Node::Call1(Fun1::Dsub, b(self.term(x, scope, visible)?)),
            ("allocate_discount", [x]) => {
                Node::Call1(Fun1::Allocate, b(self.term(x, scope, visible)?))
            }
            _ => return None,
        })
    }

    /// `def f($a; $b): body;` called as `f(x; y)` is `x as $a | y as $b | body`, with only the
    /// parameters in scope for `body` (definitions close over nothing else at top level).
    fn inline(
        &mut self,
        i: usize,
        args: &[Term<&'s str>],
        scope: &Scope<'s>,
        visible: usize,
    ) -> Option<Node> {
        let def = &self.defs[i];
        if !def.args.iter().all(|a| a.starts_with('$')) || self.inlining > 16 {
            return None;
        }
        let mut compiled = Vec::new();
        // `def f($a)` also defines the filter `a` in its body: calls to such names go to jaq.
        let mut inner = Scope {
            vars: Vec::new(),
            params: def.args.iter().map(|a| a.trim_start_matches('$')).collect(),
        };
        let start = self.depth;
        for (arg, param) in args.iter().zip(&def.args) {
            let node = self.term(arg, scope, visible);
            let node = match node {
                Some(n) => n,
                None => {
                    self.depth = start;
                    return None;
                }
            };
            let slot = self.depth;
            self.depth += 1;
            self.max = self.max.max(self.depth);
            inner.vars.push((param, slot));
            compiled.push((node, slot));
        }
        self.inlining += 1;
        // The body sees the definitions up to and including itself (recursion is refused by
        // the inlining limit).
        let body = self.term(&def.body, &inner, i + 1);
        self.inlining -= 1;
        self.depth = start;
        let mut node = body?;
        for (arg, slot) in compiled.into_iter().rev() {
            node = Node::Bind(Box::new(arg), slot, Box::new(node));
        }
        Some(node)
    }
}

// ---------------------------------------------------------------------------------------------
// Evaluation. Values are borrowed from the input and from literals wherever they pass through
// unchanged, so a path like `.req.agent` costs a pointer, not a copy; only what an expression
// computes is allocated, and the answer is copied out once, at the end. Outputs stream to a
// continuation (`Sink`) instead of being collected, so the evaluation stops at the first output
// of the whole expression, as the bridge only ever takes that one.

/// A value during native evaluation.
#[derive(Debug, Clone)]
enum V<'a> {
    /// A part of the input or of a literal: never copied while it passes through.
    Ref(&'a Value),
    /// Something computed (a string, a number, a built-in's result).
    Own(Value),
    /// A number computed here (an amount, a sum), kept as its `Decimal` until it is written
    /// or read: a `Number` would be a heap copy of its text, parsed again by the next sum.
    /// Normalized; a negative zero (which jaq writes as `0`) is refused by `number_of` and
    /// caught by `odd_numbers_v` for `allocate_discount`'s lines.
    Dec(Decimal),
    /// An array built here, whose items may still be borrowed.
    Arr(Vec<V<'a>>),
    /// An object built here (keys unique), whose values may still be borrowed.
    Obj(Vec<(Cow<'a, str>, V<'a>)>),
}

static NULL: Value = Value::Null;

/// Array indices as `to_entries` gives them, and as `tostring` makes them (`.key | tostring`,
/// once per position in a mapping): built once, not per position (a number is a heap string
/// with `arbitrary_precision`).
const SMALL: usize = 256;
static SMALL_INTS: LazyLock<Vec<Value>> = LazyLock::new(|| (0..SMALL).map(Value::from).collect());
static SMALL_INT_TEXTS: LazyLock<Vec<Value>> =
    LazyLock::new(|| (0..SMALL).map(|i| Value::String(i.to_string())).collect());

/// The text of `n` when it is a small index written plainly (`7`, not `7.0` or `7e0`).
fn small_int_text(n: &Number) -> Option<&'static Value> {
    let text = SMALL_INT_TEXTS.get(n.as_str().parse::<usize>().ok()?)?;
    (text.as_str() == Some(n.as_str())).then_some(text)
}

/// The index `i` as a JSON number.
fn index_number<'a>(i: usize) -> V<'a> {
    match SMALL_INTS.get(i) {
        Some(n) => V::Ref(n),
        None => V::Own(Value::Number(i.into())),
    }
}

/// Where a node's outputs go, one by one.
type Sink<'s, 'a> = dyn FnMut(V<'a>, &mut Ctx<'a>) -> R + 's;

struct Ctx<'a> {
    /// `$variables` by slot; shared, so reading one does not copy what it holds.
    vars: Vec<Rc<V<'a>>>,
}

impl<'a> V<'a> {
    /// The value as JSON: borrowed when it is JSON already, else built (composites only).
    fn json(&self) -> Cow<'_, Value> {
        match self {
            V::Ref(v) => Cow::Borrowed(*v),
            V::Own(v) => Cow::Borrowed(v),
            other => Cow::Owned(other.clone().into_value()),
        }
    }

    fn into_value(self) -> Value {
        match self {
            V::Ref(v) => v.clone(),
            V::Own(v) => v,
            // `json_number` parses the decimal's own text, which always reads as a number: the
            // `Null` is not reached.
            V::Dec(d) => crate::amount::json_number(d).map_or(Value::Null, Value::Number),
            V::Arr(items) => Value::Array(items.into_iter().map(V::into_value).collect()),
            V::Obj(entries) => Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k.into_owned(), v.into_value()))
                    .collect(),
            ),
        }
    }

    fn truthy(&self) -> bool {
        match self {
            V::Ref(v) => truthy(v),
            V::Own(v) => truthy(v),
            V::Dec(_) | V::Arr(_) | V::Obj(_) => true,
        }
    }

    /// The text of a string value, borrowed for as long as the value lives.
    fn as_text(&self) -> Option<Cow<'a, str>> {
        match self {
            V::Ref(Value::String(s)) => Some(Cow::Borrowed(s.as_str())),
            V::Own(Value::String(s)) => Some(Cow::Owned(s.clone())),
            _ => None,
        }
    }
}

/// Written exactly as `serde_json` writes `self.into_value()` (object keys sorted, as its map
/// keeps them), without building that value: what is borrowed is written from where it is.
impl Serialize for V<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            V::Ref(v) => v.serialize(s),
            V::Own(v) => v.serialize(s),
            // As serde_json writes `json_number(d)`: its exact text.
            V::Dec(d) => crate::amount::serialize_decimal(*d, s),
            V::Arr(items) => s.collect_seq(items),
            // Object literals are built sorted (`object`): written as they are.
            V::Obj(entries) if entries.is_sorted_by(|a, b| a.0 < b.0) => {
                s.collect_map(entries.iter().map(|(k, v)| (k, v)))
            }
            V::Obj(entries) => {
                // Keys are unique; built objects are small, so sorting references is cheap.
                let mut sorted: Vec<&(Cow<'_, str>, V<'_>)> = entries.iter().collect();
                sorted.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                s.collect_map(sorted.into_iter().map(|(k, v)| (k, v)))
            }
        }
    }
}

/// `Deserializer` methods of [`V`] that hand a part of the input to serde_json's own
/// deserializer and read a built value with `deserialize_any`.
macro_rules! read_like_a_value {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<Vis: Visitor<'de>>(
            self,
            $($arg: $ty,)*
            visitor: Vis,
        ) -> Result<Vis::Value, Self::Error> {
            match self {
                V::Ref(v) => serde::Deserializer::$method(v, $($arg,)* visitor),
                V::Own(v) => serde::Deserializer::$method(v, $($arg,)* visitor),
                built => built.deserialize_any(visitor),
            }
        }
    )*};
}

/// A value read straight into a typed model (the LoyaltyAPI answer), as serde_json reads the
/// same value built as a `Value`: parts of the input through serde_json's own deserializer,
/// built arrays and objects as sequences and maps. Anything this reads differently fails, and
/// the caller then reads the built `Value` (`Expr::eval_into`), so a gap costs time, not
/// correctness.
impl<'de> serde::Deserializer<'de> for V<'de> {
    type Error = serde_json::Error;

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit seq map identifier ignored_any
    }

    fn deserialize_any<Vis: Visitor<'de>>(self, visitor: Vis) -> Result<Vis::Value, Self::Error> {
        match self {
            V::Ref(Value::Number(n)) => number_any(NumberText::Borrowed(n.as_str()), visitor),
            V::Own(Value::Number(n)) => number_any(NumberText::Local(n.as_str()), visitor),
            V::Dec(d) => {
                let text = crate::amount::StackText::decimal(d);
                number_any(NumberText::Local(text.as_str()), visitor)
            }
            V::Ref(v) => serde::Deserializer::deserialize_any(v, visitor),
            V::Own(v) => serde::Deserializer::deserialize_any(v, visitor),
            V::Arr(items) => {
                let len = items.len();
                let mut seq = SeqOfV(items.into_iter());
                let out = visitor.visit_seq(&mut seq)?;
                if seq.0.len() != 0 {
                    return Err(serde::de::Error::invalid_length(len, &"fewer elements"));
                }
                Ok(out)
            }
            V::Obj(entries) => visitor.visit_map(MapOfV {
                entries: entries.into_iter(),
                value: None,
            }),
        }
    }

    fn deserialize_option<Vis: Visitor<'de>>(
        self,
        visitor: Vis,
    ) -> Result<Vis::Value, Self::Error> {
        match self {
            // Read by `deserialize_any` above, not by serde_json's float detour.
            V::Ref(Value::Number(_)) | V::Own(Value::Number(_)) | V::Dec(_) => {
                visitor.visit_some(self)
            }
            V::Ref(v) => serde::Deserializer::deserialize_option(v, visitor),
            V::Own(v) => serde::Deserializer::deserialize_option(v, visitor),
            built => visitor.visit_some(built),
        }
    }

    fn deserialize_newtype_struct<Vis: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: Vis,
    ) -> Result<Vis::Value, Self::Error> {
        match self {
            V::Ref(v) => serde::Deserializer::deserialize_newtype_struct(v, name, visitor),
            V::Own(v) => serde::Deserializer::deserialize_newtype_struct(v, name, visitor),
            built => visitor.visit_newtype_struct(built),
        }
    }

    // Read as serde_json reads a `Value`: parts of the input by its own deserializer, built
    // arrays and objects as sequences and maps (`deserialize_any`).
    read_like_a_value! {
        deserialize_unit_struct(name: &'static str);
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
    }

    fn deserialize_enum<Vis: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: Vis,
    ) -> Result<Vis::Value, Self::Error> {
        match self {
            V::Ref(v) => serde::Deserializer::deserialize_enum(v, name, variants, visitor),
            V::Own(v) => serde::Deserializer::deserialize_enum(v, name, variants, visitor),
            // Built objects as enums: left to the `Value` path.
            _ => Err(serde::de::Error::custom("a built value read as an enum")),
        }
    }
}

/// A number read as serde_json's own deserializer reads it — integers as integers, the rest
/// as its text (`amount::NUMBER_TOKEN`) — except that serde_json first tries the number as a
/// float and formats that float back to compare (twice, for every amount of an answer): the
/// text goes as it is, which reads the same.
/// Integers are told by parsing the text, as serde_json's `Number::as_u64`/`as_i64` do with
/// `arbitrary_precision`; a number computed here (`V::Dec`) goes the same way from its text.
fn number_any<'de, Vis: Visitor<'de>>(
    text: NumberText<'de, '_>,
    visitor: Vis,
) -> Result<Vis::Value, serde_json::Error> {
    let digits = text.as_str();
    if let Ok(u) = digits.parse::<u64>() {
        visitor.visit_u64(u)
    } else if let Ok(i) = digits.parse::<i64>() {
        visitor.visit_i64(i)
    } else {
        visitor.visit_map(NumberMap(Some(text)))
    }
}

/// A number's text: borrowed from the input, or from a number built here.
#[derive(Clone, Copy)]
enum NumberText<'de, 't> {
    Borrowed(&'de str),
    Local(&'t str),
}

impl NumberText<'_, '_> {
    fn as_str(&self) -> &str {
        match *self {
            NumberText::Borrowed(text) | NumberText::Local(text) => text,
        }
    }
}

/// serde_json's one-entry map for a number's text.
struct NumberMap<'de, 't>(Option<NumberText<'de, 't>>);

impl<'de> serde::de::MapAccess<'de> for NumberMap<'de, '_> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        if self.0.is_none() {
            return Ok(None);
        }
        seed.deserialize(BorrowedStrDeserializer::new(crate::amount::NUMBER_TOKEN))
            .map(Some)
    }

    fn next_value_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        match self.0.take() {
            Some(NumberText::Borrowed(text)) => {
                seed.deserialize(BorrowedStrDeserializer::new(text))
            }
            Some(NumberText::Local(text)) => {
                seed.deserialize(serde::de::value::StrDeserializer::new(text))
            }
            None => Err(serde::de::Error::custom("a number read twice")),
        }
    }
}

struct SeqOfV<'de>(std::vec::IntoIter<V<'de>>);

impl<'de> serde::de::SeqAccess<'de> for SeqOfV<'de> {
    type Error = serde_json::Error;

    fn next_element_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        self.0.next().map(|v| seed.deserialize(v)).transpose()
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct MapOfV<'de> {
    entries: std::vec::IntoIter<(Cow<'de, str>, V<'de>)>,
    value: Option<V<'de>>,
}

impl<'de> serde::de::MapAccess<'de> for MapOfV<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some(value);
        let key = match key {
            Cow::Borrowed(k) => seed.deserialize(BorrowedStrDeserializer::<Self::Error>::new(k)),
            Cow::Owned(k) => seed.deserialize(k.into_deserializer()),
        };
        key.map(Some)
    }

    fn next_value_seed<T: serde::de::DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<T::Value, Self::Error> {
        match self.value.take() {
            Some(v) => seed.deserialize(v),
            None => Err(serde::de::Error::custom("a map value read before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// [`odd_numbers`] for a value being built.
fn odd_numbers_v(v: &V<'_>) -> bool {
    match v {
        V::Ref(v) => odd_numbers(v),
        V::Own(v) => odd_numbers(v),
        V::Dec(d) => d.is_zero() && d.is_sign_negative(),
        V::Arr(items) => items.iter().any(odd_numbers_v),
        V::Obj(entries) => entries.iter().any(|(_, v)| odd_numbers_v(v)),
    }
}

fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// An integer as jaq reads it (`Num::Int`), else none.
fn int(n: &Number) -> Option<i64> {
    let s = n.as_str();
    if s.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        s.parse::<i64>().ok()
    } else {
        None
    }
}

fn rank(v: &Value) -> u8 {
    match v {
        Value::Null => 0,
        Value::Bool(false) => 1,
        Value::Bool(true) => 2,
        Value::Number(_) => 3,
        Value::String(_) => 4,
        Value::Array(_) => 5,
        Value::Object(_) => 6,
    }
}

/// jq's total order, where the native path knows it exactly.
fn order(a: &Value, b: &Value) -> Result<Ordering, Stop> {
    let (ra, rb) = (rank(a), rank(b));
    if ra != rb {
        return Ok(ra.cmp(&rb));
    }
    Ok(match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (int(x), int(y)) {
            (Some(x), Some(y)) => x.cmp(&y),
            _ => return Err(Stop::Unsure),
        },
        (Value::String(x), Value::String(y)) => x.as_bytes().cmp(y.as_bytes()),
        (Value::Array(_), _) | (Value::Object(_), _) => return Err(Stop::Unsure),
        _ => Ordering::Equal,
    })
}

/// jq's `==`, where the native path knows it exactly.
fn equal(a: &Value, b: &Value) -> Result<bool, Stop> {
    Ok(match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (int(x), int(y)) {
            (Some(x), Some(y)) => x == y,
            _ => return Err(Stop::Unsure),
        },
        (Value::Array(x), Value::Array(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (x, y) in x.iter().zip(y) {
                if !equal(x, y)? {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Object(x), Value::Object(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (k, x) in x {
                match y.get(k) {
                    Some(y) if equal(x, y)? => {}
                    _ => return Ok(false),
                }
            }
            true
        }
        _ => rank(a) == rank(b) && matches!(order(a, b)?, Ordering::Equal),
    })
}

/// `"\(v)"`: jq's text of a scalar (arrays and objects go to jaq: its JSON writer decides).
/// `a <op> b` in jq's sense.
fn compare(op: Cmp, a: &Value, b: &Value) -> Result<bool, Stop> {
    Ok(match op {
        Cmp::Eq => equal(a, b)?,
        Cmp::Ne => !equal(a, b)?,
        Cmp::Lt => order(a, b)? == Ordering::Less,
        Cmp::Le => order(a, b)? != Ordering::Greater,
        Cmp::Gt => order(a, b)? == Ordering::Greater,
        Cmp::Ge => order(a, b)? != Ordering::Less,
    })
}

fn text_of(v: &Value) -> Result<Cow<'_, str>, Stop> {
    Ok(match v {
        Value::String(s) => Cow::Borrowed(s.as_str()),
        Value::Null => Cow::Borrowed("null"),
        Value::Bool(true) => Cow::Borrowed("true"),
        Value::Bool(false) => Cow::Borrowed("false"),
        Value::Number(n) => {
            let s = n.as_str();
            if s == "-0" {
                return Err(Stop::Unsure);
            }
            Cow::Borrowed(s)
        }
        _ => return Err(Stop::Unsure),
    })
}

fn number_of<'a>(d: Decimal) -> Result<V<'a>, Stop> {
    let d = d.normalize();
    if d.is_zero() && d.is_sign_negative() {
        return Err(Stop::Unsure);
    }
    Ok(V::Dec(d))
}

fn decimal(v: &V<'_>) -> Result<Decimal, Stop> {
    match v {
        V::Dec(d) => Ok(*d),
        _ => builtins::decimal_of(&v.json()).map_err(|_| Stop::Jq),
    }
}

/// `base[key]`: a borrowed base gives a borrowed part; a built one gives a copy of the part.
fn index<'a>(base: &V<'a>, key: &V<'a>) -> Result<V<'a>, Stop> {
    let key = key.json();
    match base {
        V::Ref(v) => index_json(v, &key).map(|x| V::Ref(x.unwrap_or(&NULL))),
        V::Own(v) => index_json(v, &key).map(|x| V::Own(x.cloned().unwrap_or(Value::Null))),
        // As `index_json` on a number.
        V::Dec(_) => match &*key {
            Value::String(_) => Err(Stop::Jq),
            _ => Err(Stop::Unsure),
        },
        V::Arr(items) => match &*key {
            Value::Number(n) => {
                let n = int(n).ok_or(Stop::Unsure)?;
                let at = if n < 0 { items.len() as i64 + n } else { n };
                Ok(usize::try_from(at)
                    .ok()
                    .and_then(|at| items.get(at))
                    .cloned()
                    .unwrap_or(V::Ref(&NULL)))
            }
            _ => Err(Stop::Unsure),
        },
        V::Obj(entries) => match &*key {
            Value::String(k) => Ok(entries
                .iter()
                .find(|(name, _)| name == k)
                .map(|(_, v)| v.clone())
                .unwrap_or(V::Ref(&NULL))),
            _ => Err(Stop::Unsure),
        },
    }
}

fn index_json<'v>(v: &'v Value, key: &Value) -> Result<Option<&'v Value>, Stop> {
    Ok(match (v, key) {
        (Value::Null, Value::String(_) | Value::Number(_)) => None,
        (Value::Object(m), Value::String(k)) => member(m, k),
        (Value::Array(a), Value::Number(n)) => {
            let n = int(n).ok_or(Stop::Unsure)?;
            let at = if n < 0 { a.len() as i64 + n } else { n };
            usize::try_from(at).ok().and_then(|at| a.get(at))
        }
        (Value::Bool(_) | Value::Number(_) | Value::String(_), Value::String(_)) => {
            return Err(Stop::Jq);
        }
        _ => return Err(Stop::Unsure),
    })
}

/// `.[]` of one value: its items to `f` (an error is the iteration's own).
fn iterate<'a>(v: V<'a>, ctx: &mut Ctx<'a>, f: &mut Sink<'_, 'a>) -> Result<R, Stop> {
    Ok(match v {
        V::Ref(Value::Array(items)) => items.iter().try_for_each(|x| f(V::Ref(x), ctx)),
        V::Own(Value::Array(items)) => items.into_iter().try_for_each(|x| f(V::Own(x), ctx)),
        V::Arr(items) => items.into_iter().try_for_each(|x| f(x, ctx)),
        // jaq's objects keep insertion order, serde_json's are sorted: iterating one is
        // jaq's business.
        V::Ref(Value::Object(_)) | V::Own(Value::Object(_)) | V::Obj(_) => {
            return Err(Stop::Unsure);
        }
        _ => return Err(Stop::Jq),
    })
}

/// Runs `node` with its outputs going to `f`, and tells errors raised downstream (by `f`,
/// passed on untouched) from the node's own (given to `own`).
fn guarded<'a>(
    node: &'a Node,
    ctx: &mut Ctx<'a>,
    input: &V<'a>,
    f: &mut Sink<'_, 'a>,
    own: impl FnOnce(Stop, &mut Ctx<'a>, &mut Sink<'_, 'a>) -> R,
) -> R {
    let mut downstream = None;
    let res = node.run(ctx, input, &mut |v, ctx| {
        f(v, ctx).map_err(|e| {
            downstream = Some(e);
            Stop::Downstream
        })
    });
    match res {
        Ok(()) => Ok(()),
        Err(Stop::Downstream) => Err(downstream.take().unwrap_or(Stop::Unsure)),
        Err(e) => own(e, ctx, f),
    }
}

/// The output of an operand of a cartesian product: none, or exactly one; several (whose
/// order jaq decides) and errors (which jaq may or may not reach) go to jaq.
fn one<'a>(n: &'a Node, ctx: &mut Ctx<'a>, input: &V<'a>) -> Result<Option<V<'a>>, Stop> {
    n.direct(ctx, input).map_err(|_| Stop::Unsure)
}

/// One output of each of two single-output operands, or `Ok(None)` when either has none.
fn pair<'a>(
    l: &'a Node,
    r: &'a Node,
    ctx: &mut Ctx<'a>,
    input: &V<'a>,
) -> Result<Option<(V<'a>, V<'a>)>, Stop> {
    let a = one(l, ctx, input)?;
    let b = one(r, ctx, input)?;
    Ok(a.zip(b))
}

/// An object key: borrowed when it is a literal's or the input's text.
fn key_of<'a>(k: V<'a>) -> Result<Cow<'a, str>, Stop> {
    match k {
        V::Ref(Value::String(s)) => Ok(Cow::Borrowed(s.as_str())),
        V::Own(Value::String(s)) => Ok(Cow::Owned(s)),
        _ => Err(Stop::Unsure),
    }
}

fn insert<'a>(entries: &mut Vec<(Cow<'a, str>, V<'a>)>, k: Cow<'a, str>, v: V<'a>) {
    match entries.iter_mut().find(|(name, _)| *name == k) {
        Some(slot) => slot.1 = v,
        None => entries.push((k, v)),
    }
}

/// `{k: v, …}`: its only output, or none when an entry has none.
fn object<'a>(
    entries: &'a [(Node, Node)],
    keys: Keys,
    ctx: &mut Ctx<'a>,
    input: &V<'a>,
) -> Result<Option<V<'a>>, Stop> {
    let mut map = Vec::with_capacity(entries.len());
    for (k, v) in entries {
        let entry = match k {
            // A literal key (`{id: …}`): its text, nothing to evaluate.
            Node::Lit(Value::String(name)) => {
                one(v, ctx, input)?.map(|v| (Cow::Borrowed(name.as_str()), v))
            }
            _ => match pair(k, v, ctx, input)? {
                Some((k, v)) => Some((key_of(k)?, v)),
                None => None,
            },
        };
        let Some((k, v)) = entry else {
            // One side has no output: the product is empty — unless another entry errors,
            // which jaq may reach first.
            for (k2, v2) in entries {
                pair(k2, v2, ctx, input)?;
            }
            return Ok(None);
        };
        if keys == Keys::Distinct {
            map.push((k, v));
        } else {
            insert(&mut map, k, v);
        }
    }
    // In the order serde_json's map keeps them, so that writing it needs no sorted copy (keys
    // are unique; a handful, sorted in place).
    map.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    Ok(Some(V::Obj(map)))
}

/// Beyond this many entries `from_entries` goes to jaq (keys are kept unique by a scan).
const MAX_BUILT_ENTRIES: usize = 64;

impl Node {
    fn run<'a>(&'a self, ctx: &mut Ctx<'a>, input: &V<'a>, f: &mut Sink<'_, 'a>) -> R {
        match self {
            Node::Id => f(input.clone(), ctx),
            Node::Empty => Ok(()),
            Node::Lit(v) => f(V::Ref(v), ctx),
            Node::Var(slot) => {
                let v = V::clone(&ctx.vars[*slot]);
                f(v, ctx)
            }
            Node::Str(parts) => {
                let mut s = String::new();
                let mut complete = true;
                for p in parts {
                    match p {
                        Ok(t) => s.push_str(t),
                        // Every part is evaluated (an error in a later one is jaq's to report).
                        Err(n) => match one(n, ctx, input)? {
                            Some(v) => s.push_str(&text_of(&v.json())?),
                            None => complete = false,
                        },
                    }
                }
                if complete {
                    f(V::Own(Value::String(s)), ctx)
                } else {
                    Ok(())
                }
            }
            Node::Arr(None) => f(V::Arr(Vec::new()), ctx),
            Node::Arr(Some(n)) => {
                let mut items = Vec::new();
                n.run(ctx, input, &mut |v, _| {
                    items.push(v);
                    Ok(())
                })?;
                f(V::Arr(items), ctx)
            }
            Node::Obj(entries, keys) => match object(entries, *keys, ctx, input)? {
                Some(obj) => f(obj, ctx),
                None => Ok(()),
            },
            Node::Path(base, parts) => match &**base {
                // The common `.a.b` and `$x.a`: walk from the value in place, no copy of it.
                Node::Id => walk(parts, Walk::Borrowed(input), ctx, input, f),
                Node::Var(slot) => {
                    let held = Rc::clone(&ctx.vars[*slot]);
                    walk(parts, Walk::Borrowed(&held), ctx, input, f)
                }
                other => other.run(ctx, input, &mut |v, ctx| {
                    walk(parts, Walk::Owned(v), ctx, input, f)
                }),
            },
            Node::Pipe(l, r) => match &**r {
                // `… | .[]` and `… | .a.b`: the value walked is this one, handed over rather
                // than copied (a built array iterated, as `allocate_discount(…) | .[]`). Keys
                // that are literals do not read the input, so none is kept for them.
                Node::Path(base, parts)
                    if matches!(**base, Node::Id)
                        && parts
                            .iter()
                            .all(|(k, _)| matches!(k, None | Some(Node::Lit(_)))) =>
                {
                    l.run(ctx, input, &mut |v, ctx| {
                        walk(parts, Walk::Owned(v), ctx, &V::Ref(&NULL), f)
                    })
                }
                _ => l.run(ctx, input, &mut |v, ctx| r.run(ctx, &v, f)),
            },
            Node::Bind(l, slot, r) => l.run(ctx, input, &mut |v, ctx| {
                if ctx.vars.len() <= *slot {
                    ctx.vars.resize(*slot + 1, Rc::new(V::Ref(&NULL)));
                }
                ctx.vars[*slot] = Rc::new(v);
                r.run(ctx, input, f)
            }),
            Node::Comma(l, r) => {
                l.run(ctx, input, f)?;
                r.run(ctx, input, f)
            }
            Node::Alt(l, r) => {
                let mut some = false;
                guarded(
                    l,
                    ctx,
                    input,
                    &mut |v, ctx| {
                        if v.truthy() {
                            some = true;
                            f(v, ctx)
                        } else {
                            Ok(())
                        }
                    },
                    // jq drops errors of the left side; which ones it reached is jaq's call.
                    |_, _, _| Err(Stop::Unsure),
                )?;
                if some { Ok(()) } else { r.run(ctx, input, f) }
            }
            Node::And(l, r) | Node::Or(l, r) => {
                let is_and = matches!(self, Node::And(..));
                guarded(
                    l,
                    ctx,
                    input,
                    &mut |v, ctx| {
                        if v.truthy() != is_and {
                            f(V::Own(Value::Bool(!is_and)), ctx)
                        } else {
                            guarded(
                                r,
                                ctx,
                                input,
                                &mut |w, ctx| f(V::Own(Value::Bool(w.truthy())), ctx),
                                |_, _, _| Err(Stop::Unsure),
                            )
                        }
                    },
                    |_, _, _| Err(Stop::Unsure),
                )
            }
            Node::Cmp(l, op, r) => match pair(l, r, ctx, input)? {
                Some((a, b)) => {
                    let res = compare(*op, &a.json(), &b.json())?;
                    f(V::Own(Value::Bool(res)), ctx)
                }
                None => Ok(()),
            },
            Node::Add(l, r) => match pair(l, r, ctx, input)? {
                Some((a, b)) => {
                    let sum = add(a, b)?;
                    f(sum, ctx)
                }
                None => Ok(()),
            },
            Node::If(c, t, e) => c.run(ctx, input, &mut |cond, ctx| {
                if cond.truthy() { t } else { e }.run(ctx, input, f)
            }),
            Node::Try(body, catch) => guarded(body, ctx, input, f, |e, ctx, f| match e {
                Stop::Jq => match catch {
                    Some(v) => f(V::Ref(v), ctx),
                    None => Ok(()),
                },
                other => Err(other),
            }),
            Node::Call0(fun) => {
                let v = call0(*fun, input)?;
                f(v, ctx)
            }
            Node::Call1(fun, arg) => match one(arg, ctx, input)? {
                Some(a) => {
                    let v = call1(*fun, input, &a)?;
                    f(v, ctx)
                }
                None => Ok(()),
            },
        }
    }
}

impl Node {
    /// The node's only output, or `None` when it has none, computed and returned rather than
    /// passed to a continuation: most nodes give one output for one input, and calling
    /// through closures was a good part of evaluating them. A node that may give several
    /// (`,` and `.[]`, directly or below) is run with continuations here, and `Stop::Several`
    /// says when it gave more than one. An error keeps its kind, for `try` and `?`: what
    /// jq raises here is `Stop::Jq`, as with [`Node::run`].
    fn direct<'a>(&'a self, ctx: &mut Ctx<'a>, input: &V<'a>) -> Result<Option<V<'a>>, Stop> {
        Ok(Some(match self {
            Node::Id => input.clone(),
            Node::Empty => return Ok(None),
            Node::Lit(v) => V::Ref(v),
            Node::Var(slot) => V::clone(&ctx.vars[*slot]),
            Node::Path(base, parts) if parts.iter().all(|(k, _)| k.is_some()) => {
                return match &**base {
                    Node::Id => index_path(parts, input, ctx, input),
                    Node::Var(slot) => {
                        let held = Rc::clone(&ctx.vars[*slot]);
                        index_path(parts, &held, ctx, input)
                    }
                    other => match other.direct(ctx, input)? {
                        Some(start) => index_path(parts, &start, ctx, input),
                        None => Ok(None),
                    },
                };
            }
            Node::Pipe(l, r) => {
                return match l.direct(ctx, input)? {
                    Some(v) => r.direct(ctx, &v),
                    None => Ok(None),
                };
            }
            Node::Bind(l, slot, r) => {
                let Some(v) = l.direct(ctx, input)? else {
                    return Ok(None);
                };
                if ctx.vars.len() <= *slot {
                    ctx.vars.resize(*slot + 1, Rc::new(V::Ref(&NULL)));
                }
                ctx.vars[*slot] = Rc::new(v);
                return r.direct(ctx, input);
            }
            Node::Alt(l, r) => match l.direct(ctx, input) {
                Ok(Some(v)) if v.truthy() => v,
                Ok(_) => return r.direct(ctx, input),
                Err(Stop::Several) => return Err(Stop::Several),
                // jq drops errors of the left side; which ones it reached is jaq's call.
                Err(_) => return Err(Stop::Unsure),
            },
            Node::And(l, r) | Node::Or(l, r) => {
                let is_and = matches!(self, Node::And(..));
                let truth = |side: Result<Option<V<'a>>, Stop>| match side {
                    Ok(v) => Ok(v.map(|v| v.truthy())),
                    Err(Stop::Several) => Err(Stop::Several),
                    Err(_) => Err(Stop::Unsure),
                };
                let Some(left) = truth(l.direct(ctx, input))? else {
                    return Ok(None);
                };
                if left != is_and {
                    V::Own(Value::Bool(!is_and))
                } else {
                    match truth(r.direct(ctx, input))? {
                        Some(right) => V::Own(Value::Bool(right)),
                        None => return Ok(None),
                    }
                }
            }
            Node::Cmp(l, op, r) => match pair(l, r, ctx, input)? {
                Some((a, b)) => V::Own(Value::Bool(compare(*op, &a.json(), &b.json())?)),
                None => return Ok(None),
            },
            Node::Add(l, r) => match pair(l, r, ctx, input)? {
                Some((a, b)) => add(a, b)?,
                None => return Ok(None),
            },
            Node::If(c, t, e) => {
                return match c.direct(ctx, input)? {
                    Some(cond) => if cond.truthy() { t } else { e }.direct(ctx, input),
                    None => Ok(None),
                };
            }
            Node::Try(body, catch) => {
                return match body.direct(ctx, input) {
                    Err(Stop::Jq) => Ok(catch.as_ref().map(V::Ref)),
                    other => other,
                };
            }
            Node::Call0(fun) => call0(*fun, input)?,
            Node::Call1(fun, arg) => match one(arg, ctx, input)? {
                Some(a) => call1(*fun, input, &a)?,
                None => return Ok(None),
            },
            Node::Obj(entries, keys) => return object(entries, *keys, ctx, input),
            // `[…]`, strings: one output each, built by `run` (which collects streams).
            Node::Arr(_) | Node::Str(_) | Node::Path(..) | Node::Comma(..) => {
                let mut got = None;
                let res = self.run(ctx, input, &mut |v, _| {
                    if got.is_some() {
                        return Err(Stop::Several);
                    }
                    got = Some(v);
                    Ok(())
                });
                return match res {
                    Ok(()) => Ok(got),
                    Err(Stop::Several) => Err(Stop::Several),
                    // An error after an output is jq's to order (a `try` would have stopped).
                    Err(_) if got.is_some() => Err(Stop::Unsure),
                    Err(e) => Err(e),
                };
            }
        }))
    }
}

/// `parts` (keys only, no `.[]`) applied to `start`: [`walk`] for one output, returned.
fn index_path<'a>(
    parts: &'a [(Option<Node>, bool)],
    start: &V<'a>,
    ctx: &mut Ctx<'a>,
    input: &V<'a>,
) -> Result<Option<V<'a>>, Stop> {
    let mut here: Option<V<'a>> = None;
    for (part, opt) in parts {
        let Some(k) = part else {
            // Not reached: `direct` sends paths with `.[]` to `run`.
            return Err(Stop::Unsure);
        };
        let base = here.as_ref().unwrap_or(start);
        let at = match k {
            // `.name`: looked up by its text, with no key value made and matched on.
            Node::Lit(Value::String(name)) => index_name(base, name),
            _ => {
                let Some(key) = one(k, ctx, input)? else {
                    return Ok(None);
                };
                index(base, &key)
            }
        };
        match at {
            Ok(next) => here = Some(next),
            Err(Stop::Jq) if *opt => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(Some(here.unwrap_or_else(|| start.clone())))
}

/// [`index`] with a string key: `base.name`.
fn index_name<'a>(base: &V<'a>, name: &str) -> Result<V<'a>, Stop> {
    let of_json = |v: &'a Value| -> Result<Option<&'a Value>, Stop> {
        match v {
            Value::Null => Ok(None),
            Value::Object(m) => Ok(member(m, name)),
            Value::Bool(_) | Value::Number(_) | Value::String(_) => Err(Stop::Jq),
            Value::Array(_) => Err(Stop::Unsure),
        }
    };
    match base {
        V::Ref(v) => of_json(v).map(|x| V::Ref(x.unwrap_or(&NULL))),
        V::Own(v) => match v {
            Value::Null => Ok(V::Ref(&NULL)),
            Value::Object(m) => Ok(V::Own(member(m, name).cloned().unwrap_or(Value::Null))),
            Value::Bool(_) | Value::Number(_) | Value::String(_) => Err(Stop::Jq),
            Value::Array(_) => Err(Stop::Unsure),
        },
        V::Dec(_) => Err(Stop::Jq),
        V::Arr(_) => Err(Stop::Unsure),
        V::Obj(entries) => Ok(entries
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or(V::Ref(&NULL))),
    }
}

/// `m[name]`. JSON objects here are small (a B-tree of one node up to eleven keys): a scan for
/// an equal key touches a key's bytes only when the lengths match (`str` equality compares
/// lengths first), where the tree's ordered search compares bytes at every key it passes
/// (`memcmp` was 4 % of a recalc's CPU).
#[inline]
fn member<'m>(m: &'m serde_json::Map<String, Value>, name: &str) -> Option<&'m Value> {
    if m.len() > SCANNED_OBJECT {
        return m.get(name);
    }
    m.iter().find(|(k, _)| k.as_str() == name).map(|(_, v)| v)
}

/// Largest object [`member`] scans instead of searching.
const SCANNED_OBJECT: usize = 11;

/// Where a path starts: a value it may only look into, or one it owns.
enum Walk<'v, 'a> {
    Borrowed(&'v V<'a>),
    Owned(V<'a>),
}

/// Applies path `parts` to `start`, each result to `f`. An indexing error is skipped where the
/// part is `?`; errors from `f` always pass.
fn walk<'a>(
    parts: &'a [(Option<Node>, bool)],
    start: Walk<'_, 'a>,
    ctx: &mut Ctx<'a>,
    input: &V<'a>,
    f: &mut Sink<'_, 'a>,
) -> R {
    let Some(((part, opt), rest)) = parts.split_first() else {
        return f(
            match start {
                Walk::Borrowed(v) => v.clone(),
                Walk::Owned(v) => v,
            },
            ctx,
        );
    };
    match part {
        Some(k) => {
            let base = match &start {
                Walk::Borrowed(v) => *v,
                Walk::Owned(v) => v,
            };
            let at = match k {
                Node::Lit(Value::String(name)) => index_name(base, name),
                _ => {
                    let Some(key) = one(k, ctx, input)? else {
                        return Ok(());
                    };
                    index(base, &key)
                }
            };
            match at {
                Ok(next) => walk(rest, Walk::Owned(next), ctx, input, f),
                Err(Stop::Jq) if *opt => Ok(()),
                Err(e) => Err(e),
            }
        }
        None => {
            let base = match start {
                Walk::Borrowed(v) => v.clone(),
                Walk::Owned(v) => v,
            };
            match iterate(base, ctx, &mut |item, ctx| {
                walk(rest, Walk::Owned(item), ctx, input, f)
            }) {
                Ok(done) => done,
                Err(Stop::Jq) if *opt => Ok(()),
                Err(e) => Err(e),
            }
        }
    }
}

fn add<'a>(a: V<'a>, b: V<'a>) -> Result<V<'a>, Stop> {
    Ok(match (a, b) {
        (x, V::Ref(Value::Null)) | (V::Ref(Value::Null), x) => x,
        (x, V::Own(Value::Null)) | (V::Own(Value::Null), x) => x,
        (V::Arr(mut a), V::Arr(b)) => {
            a.extend(b);
            V::Arr(a)
        }
        (a, b) => match (a.into_value(), b.into_value()) {
            (Value::String(mut a), Value::String(b)) => {
                a.push_str(&b);
                V::Own(Value::String(a))
            }
            (Value::Array(mut a), Value::Array(b)) => {
                a.extend(b);
                V::Own(Value::Array(a))
            }
            (Value::Object(mut a), Value::Object(b)) => {
                a.extend(b);
                V::Own(Value::Object(a))
            }
            (Value::Number(a), Value::Number(b)) => match (int(&a), int(&b)) {
                (Some(a), Some(b)) => {
                    let s = a
                        .checked_add(b)
                        .filter(|s| isize::try_from(*s).is_ok())
                        .ok_or(Stop::Unsure)?;
                    V::Own(Value::Number(s.into()))
                }
                _ => return Err(Stop::Unsure),
            },
            _ => return Err(Stop::Unsure),
        },
    })
}

fn call0<'a>(f: Fun0, v: &V<'a>) -> Result<V<'a>, Stop> {
    Ok(match f {
        Fun0::Not => V::Own(Value::Bool(!v.truthy())),
        Fun0::Tostring => {
            let small = match v {
                V::Ref(Value::Number(n)) | V::Own(Value::Number(n)) => small_int_text(n),
                _ => None,
            };
            match (v, small) {
                (_, Some(text)) => V::Ref(text),
                (V::Ref(Value::String(_)) | V::Own(Value::String(_)), _) => v.clone(),
                _ => V::Own(Value::String(text_of(&v.json())?.into_owned())),
            }
        }
        Fun0::Length => {
            let n = match v {
                V::Arr(items) => items.len(),
                V::Obj(entries) => entries.len(),
                _ => match &*v.json() {
                    Value::Null => 0,
                    Value::String(s) if s.is_ascii() => s.len(),
                    Value::Array(a) => a.len(),
                    Value::Object(m) => m.len(),
                    _ => return Err(Stop::Unsure),
                },
            };
            V::Own(Value::Number(n.into()))
        }
        Fun0::ToEntries => {
            let entry = |i: usize, v: V<'a>| {
                V::Obj(vec![
                    (Cow::Borrowed("key"), index_number(i)),
                    (Cow::Borrowed("value"), v),
                ])
            };
            match v {
                V::Ref(Value::Array(a)) => V::Arr(
                    a.iter()
                        .enumerate()
                        .map(|(i, x)| entry(i, V::Ref(x)))
                        .collect(),
                ),
                V::Own(Value::Array(a)) => V::Arr(
                    a.iter()
                        .enumerate()
                        .map(|(i, x)| entry(i, V::Own(x.clone())))
                        .collect(),
                ),
                V::Arr(a) => V::Arr(
                    a.iter()
                        .enumerate()
                        .map(|(i, x)| entry(i, x.clone()))
                        .collect(),
                ),
                V::Ref(Value::Object(_)) | V::Own(Value::Object(_)) | V::Obj(_) => {
                    return Err(Stop::Unsure);
                }
                _ => return Err(Stop::Jq),
            }
        }
        Fun0::FromEntries => {
            // `reduce (.[] | {(.key): .value}) as $x ({}; . + $x)`, for string keys.
            // The entries are read where they are (an array built by `map` is not copied).
            let owned: Vec<V<'a>>;
            let items: &[V<'a>] = match v {
                V::Ref(Value::Array(a)) => {
                    owned = a.iter().map(V::Ref).collect();
                    &owned
                }
                V::Own(Value::Array(a)) => {
                    owned = a.iter().cloned().map(V::Own).collect();
                    &owned
                }
                V::Arr(a) => a,
                _ => return Err(Stop::Unsure),
            };
            if items.len() > MAX_BUILT_ENTRIES {
                return Err(Stop::Unsure);
            }
            let mut map = Vec::with_capacity(items.len());
            for e in items {
                let field = |name: &str| match e {
                    V::Ref(Value::Object(m)) => member(m, name).map(V::Ref),
                    V::Own(Value::Object(m)) => member(m, name).cloned().map(V::Own),
                    V::Obj(entries) => entries
                        .iter()
                        .find(|(k, _)| k == name)
                        .map(|(_, v)| v.clone()),
                    _ => None,
                };
                let (Some(key), Some(value)) = (field("key"), field("value")) else {
                    return Err(Stop::Unsure);
                };
                let key = key.as_text().ok_or(Stop::Unsure)?;
                insert(&mut map, key, value);
            }
            V::Obj(map)
        }
        Fun0::DropNulls => V::Own(builtins::drop_nulls(v.clone().into_value())),
        Fun0::Text(f) => match v.as_text() {
            Some(s) => V::Own(Value::String(f(&s).map_err(|_| Stop::Jq)?)),
            None => return Err(Stop::Jq),
        },
        Fun0::Uuid => match v.as_text() {
            Some(s) => V::Own(Value::String(builtins::uuid_v5(&s))),
            None => return Err(Stop::Jq),
        },
        Fun0::Money(f) => number_of(f(decimal(v)?).ok_or(Stop::Jq)?)?,
    })
}

fn call1<'a>(f: Fun1, v: &V<'a>, arg: &V<'a>) -> Result<V<'a>, Stop> {
    match f {
        Fun1::Dadd | Fun1::Dsub => {
            let (a, b) = (decimal(v)?, decimal(arg)?);
            let r = if matches!(f, Fun1::Dadd) {
                a.checked_add(b)
            } else {
                a.checked_sub(b)
            };
            number_of(r.ok_or(Stop::Jq)?)
        }
        Fun1::Allocate => allocate(v, decimal(arg)?),
    }
}

/// `allocate_discount(total)`. Positions borrowed from the input (the usual case) give lines
/// that borrow them too. Built positions are made JSON first. Any problem: jaq raises the
/// error, with its own text.
fn allocate<'a>(positions: &V<'a>, total: Decimal) -> Result<V<'a>, Stop> {
    let borrowed: Option<Vec<&'a Value>> = match positions {
        V::Ref(Value::Array(items)) => Some(items.iter().collect()),
        V::Arr(items) => items
            .iter()
            .map(|p| match p {
                V::Ref(v) => Some(*v),
                _ => None,
            })
            .collect(),
        _ => None,
    };
    match borrowed {
        Some(sources) => allocate_lines(&sources, total).map(V::Arr),
        None => builtins::allocate_json(positions.clone().into_value(), total).map(V::Own),
    }
    .map_err(|_| Stop::Jq)
}

/// The lines `allocate_discount` gives for `sources`: each the position it comes from with
/// `quantity`, `discountedPrice` and `discountPercent` set (and `sn` when split), borrowing the
/// rest of it. A position may give two lines where kopecks demand it.
fn allocate_lines<'a>(sources: &[&'a Value], total: Decimal) -> Result<Vec<V<'a>>, String> {
    let field = |p: &Value, name: &str, i: usize| {
        let v = p
            .as_object()
            .and_then(|m| member(m, name))
            .ok_or_else(|| format!("allocate_discount: positions[{i}] has no {name}"))?;
        builtins::decimal_of(v).map_err(|e| format!("positions[{i}].{name}: {e}"))
    };
    // A position's serial numbers; lines borrow them (a split one takes a part of them).
    let serials = |p: &'a Value| {
        p.get("sn")
            .and_then(Value::as_array)
            .map_or(&[][..], Vec::as_slice)
    };
    let inputs = sources
        .iter()
        .enumerate()
        .map(|(i, p)| {
            Ok(builtins::AllocInput {
                quantity: field(p, "quantity", i)?,
                price: field(p, "price", i)?,
                serials: serials(p).len(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let lines = builtins::allocate_discount(&inputs, total).map_err(|e| e.to_string())?;
    // Kept as decimals until written or read (a negative zero is `odd_numbers_v`'s to catch).
    let number = |d: Decimal| V::Dec(d.normalize());
    let mut out = Vec::with_capacity(lines.len());
    for line in lines {
        let Value::Object(source) = sources[line.source] else {
            // Not reached: `field` found a quantity in it.
            return Err(format!(
                "allocate_discount: positions[{}] is not an object",
                line.source
            ));
        };
        let mut entries: Vec<(Cow<'a, str>, V<'a>)> = Vec::with_capacity(source.len() + 3);
        for (key, value) in source {
            if !matches!(
                key.as_str(),
                "quantity" | "discountedPrice" | "discountPercent" | "sn"
            ) {
                entries.push((Cow::Borrowed(key.as_str()), V::Ref(value)));
            }
        }
        entries.push((Cow::Borrowed("quantity"), number(line.quantity)));
        entries.push((
            Cow::Borrowed("discountedPrice"),
            number(line.discounted_price),
        ));
        entries.push((
            Cow::Borrowed("discountPercent"),
            number(line.discount_percent),
        ));
        // Serials come from the source's `sn` (none without one); all of them stay borrowed
        // as they are, unless a split divides them. A non-array `sn` is written as `[]`.
        if let Some(sn) = source.get("sn") {
            let all = serials(sources[line.source]);
            entries.push((
                Cow::Borrowed("sn"),
                if sn.is_array() && line.sn == (0..all.len()) {
                    V::Ref(sn)
                } else {
                    V::Arr(all[line.sn].iter().map(V::Ref).collect())
                },
            ));
        }
        // In the order a JSON object has them (sorted keys), for `.[]` and `to_entries`.
        entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out.push(V::Obj(entries));
    }
    Ok(out)
}

/// Integers jaq would write differently (`-0` as `0`).
fn odd_numbers(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_str() == "-0",
        Value::Array(a) => a.iter().any(odd_numbers),
        Value::Object(m) => m.values().any(odd_numbers),
        _ => false,
    }
}

impl Native {
    /// The first output for `input`, left as it is (borrowed where it can be).
    fn first<'a>(&'a self, input: &'a Value) -> Option<V<'a>> {
        let mut ctx = Ctx {
            vars: Vec::with_capacity(self.slots),
        };
        let input = V::Ref(input);
        match self.root.direct(&mut ctx, &input) {
            Ok(answer) => return answer,
            // A stream (`.a[]`, `1, 2`) somewhere on the way: jq takes its first output.
            Err(Stop::Several) => {}
            Err(_) => return None,
        }
        let mut first = None;
        let res = self.root.run(&mut ctx, &input, &mut |v, _| {
            first = Some(v);
            // jq is lazy and the bridge takes the first output only: stop here.
            Err(Stop::Done)
        });
        match res {
            Ok(()) | Err(Stop::Done) => first,
            Err(_) => None,
        }
    }

    /// jaq's first output for `input`, or `None` when jaq must answer (errors included).
    pub fn eval(&self, input: &Value) -> Option<Value> {
        let first = self.first(input)?.into_value();
        (!odd_numbers(&first)).then_some(first)
    }

    /// jaq's first output for `input` written as JSON (as `serde_json::to_vec` writes it),
    /// or `None` when jaq must answer. Nothing borrowed is copied on the way.
    pub fn eval_json(&self, input: &Value) -> Option<Vec<u8>> {
        let first = self.first(input)?;
        if odd_numbers_v(&first) {
            return None;
        }
        let mut out = Vec::with_capacity(1024);
        serde_json::to_writer(&mut out, &first).ok()?;
        Some(out)
    }

    /// jaq's first output for `input` read as `T`, or `None` when jaq must answer. `Some(None)`:
    /// the value does not read as `T` here (the caller reads the built value, and names the
    /// misfit from it).
    pub fn eval_into<T: DeserializeOwned>(&self, input: &Value) -> Option<Option<T>> {
        let first = self.first(input)?;
        if odd_numbers_v(&first) {
            return None;
        }
        Some(T::deserialize(first).ok())
    }

    /// For an expression `<operand> <comparison> <literal>` (a rule's `maxma_error == 3`): the
    /// operand's shape. Expressions with the same key compare the same operand, so a run of
    /// rules can evaluate it once ([`Native::operand`]) and each compare ([`Native::compare`]).
    pub fn operand_key(&self) -> Option<&str> {
        self.operand_key.as_deref()
    }

    /// The operand's only output for `input`; `None` when it has none or several, or fails
    /// (then [`Native::test`] decides, as it would have).
    pub fn operand(&self, input: &Value) -> Option<Value> {
        let Node::Cmp(operand, _, _) = &self.root else {
            return None;
        };
        let mut ctx = Ctx {
            vars: Vec::with_capacity(self.slots),
        };
        one(operand, &mut ctx, &V::Ref(input))
            .ok()
            .flatten()
            .map(V::into_value)
    }

    /// What [`Native::test`] answers when the operand's only output is `operand`; `None` when
    /// the comparison is not decided here (then `test` decides).
    pub fn compare(&self, operand: &Value) -> Option<bool> {
        let Node::Cmp(_, op, literal) = &self.root else {
            return None;
        };
        let Node::Lit(literal) = &**literal else {
            return None;
        };
        compare(*op, operand, literal).ok()
    }

    /// Whether jaq's first output for `input` is true in jq's sense, or `None` when jaq
    /// must answer.
    pub fn test(&self, input: &Value) -> Option<bool> {
        let first = self.first(input)?;
        Some(first.truthy())
    }

    /// The top-level keys of its input the expression can read, or `None` when it may see
    /// more than named keys (the whole input passed on, compared, iterated, or indexed by a
    /// computed key). The plan runner uses it to leave out of the input what no one reads.
    pub fn input_keys(&self) -> Option<Vec<String>> {
        // Read off [`Native::input_needs`]: the whole input, or any of its members, is more
        // than named keys.
        match self.input_needs() {
            Need::Members { keys, any: None } => Some(keys.into_keys().collect()),
            _ => None,
        }
    }
}

/// An abstract output for [`Node::reach`]: the input paths the output may be (a part of the
/// input passed on as it is); what the node built itself is not listed.
type Reached = Vec<Vec<Seg>>;

impl Native {
    /// What of its input the expression may look at (`need.rs`): every member path it reads,
    /// with all of whatever it compares, prints, builds into its answer or passes to a
    /// function, and the kind of whatever it only tests for truth. The plan runner parses
    /// vendor answers to that.
    pub fn input_needs(&self) -> Need {
        let mut need = Need::kind();
        let mut vars = Vec::new();
        let out = self.root.reach(&[Vec::new()], &mut vars, &mut need);
        // The answer is used whole.
        for path in out {
            need.add(&path, Need::All);
        }
        need
    }
}

impl Node {
    /// For [`Native::input_needs`]: the input paths this node's outputs may be, given those
    /// its input may be (`input`) and its variables may hold (`vars`, by slot), with what the
    /// node itself looks at added to `need`.
    fn reach(&self, input: &[Vec<Seg>], vars: &mut Vec<Reached>, need: &mut Need) -> Reached {
        // Values used whole (compared, added, interpolated, built into a value, passed to a
        // function) and values only tested for truth.
        let all =
            |paths: &[Vec<Seg>], need: &mut Need| paths.iter().for_each(|p| need.add(p, Need::All));
        let kind = |paths: &[Vec<Seg>], need: &mut Need| {
            paths.iter().for_each(|p| need.add(p, Need::kind()))
        };
        match self {
            Node::Id => input.to_vec(),
            Node::Empty | Node::Lit(_) => Vec::new(),
            Node::Var(slot) => vars.get(*slot).cloned().unwrap_or_default(),
            Node::Str(parts) => {
                for part in parts {
                    if let Err(n) = part {
                        let out = n.reach(input, vars, need);
                        all(&out, need);
                    }
                }
                Vec::new()
            }
            Node::Arr(None) => Vec::new(),
            Node::Arr(Some(n)) => {
                let out = n.reach(input, vars, need);
                all(&out, need);
                Vec::new()
            }
            Node::Obj(entries, _) => {
                for (k, v) in entries {
                    let out = k.reach(input, vars, need);
                    all(&out, need);
                    let out = v.reach(input, vars, need);
                    all(&out, need);
                }
                Vec::new()
            }
            Node::Path(base, parts) => {
                let mut here = base.reach(input, vars, need);
                for (key, _) in parts {
                    let seg = match key {
                        Some(Node::Lit(Value::String(k))) => Seg::Key(k.clone()),
                        // `.[]`, `.[0]`, `.[expr]` (the key computed from the path's own input).
                        None | Some(Node::Lit(_)) => Seg::Any,
                        Some(computed) => {
                            let out = computed.reach(input, vars, need);
                            all(&out, need);
                            Seg::Any
                        }
                    };
                    for path in &mut here {
                        path.push(seg.clone());
                        need.add(path, Need::kind());
                    }
                }
                here
            }
            Node::Pipe(l, r) => {
                let through = l.reach(input, vars, need);
                r.reach(&through, vars, need)
            }
            Node::Bind(l, slot, r) => {
                let held = l.reach(input, vars, need);
                if vars.len() <= *slot {
                    vars.resize(*slot + 1, Vec::new());
                }
                let before = std::mem::replace(&mut vars[*slot], held);
                let out = r.reach(input, vars, need);
                vars[*slot] = before;
                out
            }
            Node::Comma(l, r) => {
                let mut out = l.reach(input, vars, need);
                out.extend(r.reach(input, vars, need));
                out
            }
            Node::Alt(l, r) => {
                let mut out = l.reach(input, vars, need);
                kind(&out, need);
                out.extend(r.reach(input, vars, need));
                out
            }
            Node::And(l, r) | Node::Or(l, r) => {
                let out = l.reach(input, vars, need);
                kind(&out, need);
                let out = r.reach(input, vars, need);
                kind(&out, need);
                Vec::new()
            }
            Node::Cmp(l, _, r) | Node::Add(l, r) => {
                let out = l.reach(input, vars, need);
                all(&out, need);
                let out = r.reach(input, vars, need);
                all(&out, need);
                Vec::new()
            }
            Node::If(c, t, e) => {
                let out = c.reach(input, vars, need);
                kind(&out, need);
                let mut out = t.reach(input, vars, need);
                out.extend(e.reach(input, vars, need));
                out
            }
            Node::Try(body, _) => body.reach(input, vars, need),
            Node::Call0(_) => {
                all(input, need);
                Vec::new()
            }
            Node::Call1(_, arg) => {
                all(input, need);
                let out = arg.reach(input, vars, need);
                all(&out, need);
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
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

    /// `allocate_discount` on positions borrowed from the input (lines that borrow them) and on
    /// built ones (the JSON version), streamed on and looked into, agrees with jaq's.
    #[test]
    fn allocate_discount_agrees_with_jaq() {
        let exprs = [
            ".p | allocate_discount(.d)",
            "[.p[] | [.] | allocate_discount(1) | .[]]",
            "[.p | to_entries[] | [.value] | allocate_discount(.value.price) | .[]]",
            ".p | allocate_discount(.d) | .[0] | to_entries",
            ".p | allocate_discount(.d) | [.[] | [to_entries[] | .key]]",
            ".p | allocate_discount(.d) | [.[] | .sn]",
            "[.p[] | {quantity, price, x: 1}] | allocate_discount(.d)",
            ".p | allocate_discount(.neg)",
            ".p | allocate_discount(\"x\")",
            ".q | allocate_discount(1)",
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
            "q": [{"quantity": 1}, 5]
        });
        for src in exprs {
            let expr = Expr::compile(src).unwrap();
            assert!(expr.is_native(), "{src}");
            let jaq = expr.eval_jaq(&input);
            assert_eq!(expr.eval(&input), jaq, "{src}");
            let written = jaq.ok().map(|v| serde_json::to_vec(&v).unwrap());
            assert_eq!(expr.eval_json(&input).ok(), written, "{src}");
        }
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
    /// evaluation (`run.rs`, `verdict`).
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

    /// Amounts read straight from an evaluation into a model keep their exact text, borrowed
    /// or built, and integers and JSON fields still read (no fallback to the built `Value`).
    #[test]
    fn numbers_read_into_models_exactly() {
        use crate::amount::{Quantity, Rubles};
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
        let native = super::compile(
            DEFS,
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

    /// Objects up to [`super::SCANNED_OBJECT`] keys are scanned, larger ones searched: both find
    /// every key, keys of one length are told apart by their bytes, and a missing key is none.
    #[test]
    fn member_finds_keys_scanned_and_searched() {
        for size in [
            0,
            1,
            2,
            super::SCANNED_OBJECT,
            super::SCANNED_OBJECT + 1,
            40,
        ] {
            // Same-length keys ("k00", "k01", …) so that only the bytes tell them apart.
            let m: serde_json::Map<String, Value> =
                (0..size).map(|i| (format!("k{i:02}"), json!(i))).collect();
            for i in 0..size {
                assert_eq!(
                    super::member(&m, &format!("k{i:02}")),
                    Some(&json!(i)),
                    "size {size}"
                );
            }
            for absent in ["", "k", "k99", "k000", "K00"] {
                assert_eq!(
                    super::member(&m, absent),
                    None,
                    "size {size}, key {absent:?}"
                );
            }
        }
    }
}
