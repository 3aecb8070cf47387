//! The native evaluator: a [`Node`] run over borrowed values, its outputs streamed to a
//! continuation ([`Node::run`]) or, for a node with one output, returned ([`Node::direct`]).

use std::borrow::Cow;
use std::rc::Rc;

use serde_json::Value;

use super::calls::{call_builtin, call0};
use super::value::{Ctx, NULL, Sink, V, compare, insert, int, member, text_of};
use super::{Keys, Node, R, Stop};

/// `base[key]`: a borrowed base gives a borrowed part; a built one gives a copy of the part.
pub(super) fn index<'a>(base: &V<'a>, key: &V<'a>) -> Result<V<'a>, Stop> {
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

pub(super) fn index_json<'v>(v: &'v Value, key: &Value) -> Result<Option<&'v Value>, Stop> {
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
pub(super) fn iterate<'a>(v: V<'a>, ctx: &mut Ctx<'a>, f: &mut Sink<'_, 'a>) -> Result<R, Stop> {
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
pub(super) fn guarded<'a>(
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
pub(super) fn one<'a>(
    n: &'a Node,
    ctx: &mut Ctx<'a>,
    input: &V<'a>,
) -> Result<Option<V<'a>>, Stop> {
    n.direct(ctx, input).map_err(|_| Stop::Unsure)
}

/// One output of each of two single-output operands, or `Ok(None)` when either has none.
pub(super) fn pair<'a>(
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
pub(super) fn key_of<'a>(k: V<'a>) -> Result<Cow<'a, str>, Stop> {
    match k {
        V::Ref(Value::String(s)) => Ok(Cow::Borrowed(s.as_str())),
        V::Own(Value::String(s)) => Ok(Cow::Owned(s)),
        _ => Err(Stop::Unsure),
    }
}

/// `{k: v, …}`: its only output, or none when an entry has none.
pub(super) fn object<'a>(
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

impl Node {
    pub(super) fn run<'a>(&'a self, ctx: &mut Ctx<'a>, input: &V<'a>, f: &mut Sink<'_, 'a>) -> R {
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
            Node::Builtin(builtin, None) => {
                let v = call_builtin(builtin, input, None)?;
                f(v, ctx)
            }
            Node::Builtin(builtin, Some(arg)) => match one(arg, ctx, input)? {
                Some(a) => {
                    let v = call_builtin(builtin, input, Some(&a))?;
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
    pub(super) fn direct<'a>(
        &'a self,
        ctx: &mut Ctx<'a>,
        input: &V<'a>,
    ) -> Result<Option<V<'a>>, Stop> {
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
            Node::Builtin(builtin, None) => call_builtin(builtin, input, None)?,
            Node::Builtin(builtin, Some(arg)) => match one(arg, ctx, input)? {
                Some(a) => call_builtin(builtin, input, Some(&a))?,
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

/// Where a path starts: a value it may only look into, or one it owns.
pub(super) enum Walk<'v, 'a> {
    Borrowed(&'v V<'a>),
    Owned(V<'a>),
}

/// Applies path `parts` to `start`, each result to `f`. An indexing error is skipped where the
/// part is `?`; errors from `f` always pass.
pub(super) fn walk<'a>(
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

pub(super) fn add<'a>(a: V<'a>, b: V<'a>) -> Result<V<'a>, Stop> {
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
