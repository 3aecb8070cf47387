//! The native path's compiler: jaq's syntax tree (its parser is reused) to a [`Node`] tree,
//! accepting an expression only when every part of it is in the subset.

use std::str::FromStr;

use jaq_core::load::lex::StrPart;
use jaq_core::load::parse::{BinaryOp, Def, Pattern, Term};
use jaq_core::ops::Math;
use jaq_core::path::{Opt, Part};
use serde_json::{Number, Value};

use super::{Fun0, Keys, Native, Node};
use crate::builtins;

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
            ("select", [f]) => Node::If(
                b(self.term(f, scope, visible)?),
                b(Node::Id),
                b(Node::Empty),
            ),
            ("map", [f]) => Node::Arr(Some(b(Node::Pipe(
                b(Node::Path(b(Node::Id), vec![(None, false)])),
                b(self.term(f, scope, visible)?),
            )))),
            // The built-ins, as the table declares them.
            (name, args) => {
                let builtin = builtins::find(name, args.len())?;
                let arg = match args {
                    [] => None,
                    [x] => Some(b(self.term(x, scope, visible)?)),
                    _ => return None,
                };
                Node::Builtin(builtin, arg)
            }
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
