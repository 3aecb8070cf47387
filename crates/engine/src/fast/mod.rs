//! The native fast path (docs/design.md §3): the common jq subset compiled, at load, to a tree
//! evaluated directly over `serde_json::Value` — no conversion to jaq's values. Evaluation
//! borrows: what passes through unchanged (`.req.agent`, a position, a literal) is a reference
//! into the input until the answer is copied out once, so an expression costs about what the
//! same transform written by hand in Rust costs (`crates/engine/benches/mapping.rs` holds the two side by
//! side). Outputs stream to a continuation and evaluation stops at the first one, as jq's
//! laziness would for the bridge, which takes the first output only.
//!
//! jaq stays the reference. [`compile`] accepts an expression only when every part of it is in
//! the subset below (else the caller keeps jaq alone), and at run time [`Native::eval`] answers
//! `None` — "ask jaq" — whenever it is not sure to produce exactly jaq's value: on *any* error
//! (so error texts are always jaq's own), on no output, on numbers it does not compare exactly
//! (anything but integers), on multi-output cartesian products, on `-0`. So a native answer is
//! either jaq's answer or no answer at all; `expr`'s tests check that differentially.
//!
//! The subset: `.`, paths (`.a.b`, `.[0]`, `.["k"]`, `.[]`, `?`, on variables too), literals,
//! strings with `\(…)` of scalars, `[…]`, `{…}`, `|`, `,`, `as $x |`, `//`, `and`, `or`,
//! `==` `!=` `<` `<=` `>` `>=`, `+` (null, strings, arrays, objects, integers), `if … elif …
//! else … end`, `try … catch <literal>`, `empty`, `not`, `select`, `map`, `tostring`,
//! `length`, `to_entries`, `from_entries`, every built-in ([`crate::builtins::BUILTINS`]), and
//! calls to the mapping's own `def`s whose parameters are `$values` (inlined).
//!
//! Here: the compiled tree ([`Node`]) and the public face ([`Native`]); the compiler from jaq's
//! syntax ([`compile`]), the value evaluation works on ([`value`]), the evaluator ([`eval`]),
//! the calls of functions ([`calls`]), a value read straight into a typed model ([`read`]) and
//! what of its input an expression may look at ([`reach`]).

mod calls;
mod compile;
mod eval;
mod reach;
mod read;
#[cfg(test)]
mod tests;
mod value;

use jaq_core::ops::Cmp;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::builtins::Builtin;
use crate::need::Need;
use eval::one;
use value::{Ctx, V, compare, odd_numbers, odd_numbers_v};

pub use compile::compile;

/// Why the native path did not answer.
#[derive(Debug)]
enum Stop {
    /// jq raises an error here (the message is jaq's business: the caller re-runs jaq).
    Jq,
    /// Outside what the native path decides exactly: the whole expression goes to jaq.
    Unsure,
    /// Raised by a continuation, on its way back through a node that must not take it for
    /// its own (the error itself is kept aside by [`eval::guarded`]).
    Downstream,
    /// The whole expression has its first output: evaluation stops.
    Done,
    /// A node evaluated for its only output ([`Node::direct`]) gave several: the caller
    /// runs it with continuations instead.
    Several,
}

type R = Result<(), Stop>;

/// jq's own functions the native path knows.
#[derive(Debug, Clone, Copy)]
enum Fun0 {
    Tostring,
    Length,
    ToEntries,
    FromEntries,
    Not,
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
    /// A built-in, with its argument when it takes one.
    Builtin(&'static Builtin, Option<Box<Node>>),
}

/// A natively compiled expression.
#[derive(Debug)]
pub struct Native {
    root: Node,
    slots: usize,
    /// For `<operand> <comparison> <literal>`: the operand's shape (see [`Native::operand`]).
    operand_key: Option<String>,
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
