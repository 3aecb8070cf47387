//! What of its input an expression may look at (`need.rs`), read off the compiled tree.

use serde_json::Value;

use super::{Native, Node};
use crate::need::{Need, Seg};

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
            Node::Call0(_) | Node::Builtin(_, None) => {
                all(input, need);
                Vec::new()
            }
            Node::Builtin(_, Some(arg)) => {
                all(input, need);
                let out = arg.reach(input, vars, need);
                all(&out, need);
                Vec::new()
            }
        }
    }
}
