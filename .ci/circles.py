#!/usr/bin/env python3
"""Import circles: for every crate in the workspace, no two sibling modules may depend on each
other, directly or through other siblings.

A module's dependencies are the `crate::…`, `super::…` and `self::…` paths in its files (in `use`
declarations, braces expanded, and in code), comments and `#[cfg(test)]` modules excluded: a
test may reach anywhere. A path that names a module below a common parent is an edge between the
two children of that parent that contain the two ends (`crate::mapping::fast` used from
`crate::mapping::expr` is the edge expr -> fast under `mapping`). Each parent's children are
checked for strongly connected components; any component of more than one module is a circle.

Usage: circles.py [CRATE_SRC_DIR ...]   (default: src and crates/*/src)
Prints each circle with one example reference per edge; exits 1 if there is any.
"""

import glob
import os
import re
import sys

IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def module_files(src):
    """Maps module path (tuple) -> file, for a crate rooted at src/lib.rs or src/main.rs."""
    mods = {}
    for path in glob.glob(os.path.join(src, "**", "*.rs"), recursive=True):
        rel = os.path.relpath(path, src)[:-3].split(os.sep)
        if rel[-1] == "mod":
            rel = rel[:-1]
        if rel in (["lib"], ["main"]):
            rel = []
        mods[tuple(rel)] = path
    return mods


def strip_comments_and_tests(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    # Drop `#[cfg(test)] mod name { … }` blocks by brace matching.
    out = []
    i = 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(?:pub\s+)?mod\s+" + IDENT + r"\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            break
        out.append(text[i : m.start()])
        depth = 1
        j = m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    return "".join(out)


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = tree.strip()
    brace = tree.find("{")
    if brace < 0:
        return [tree.split(" as ")[0].strip()]
    prefix = tree[:brace]
    inner = tree[brace + 1 : tree.rfind("}")]
    parts, depth, cur = [], 0, ""
    for ch in inner:
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += {"{": 1, "}": -1}.get(ch, 0)
        cur += ch
    parts.append(cur)
    out = []
    for p in parts:
        if p.strip():
            out += [prefix + e for e in expand_use(p)]
    return out


def references(text):
    paths = []
    for m in re.finditer(r"\buse\s+([^;]+);", text):
        paths += expand_use(m.group(1))
    text = re.sub(r"\buse\s+[^;]+;", "", text)
    paths += re.findall(r"\b(?:crate|super|self)(?:::" + IDENT + ")+", text)
    return [re.sub(r"\s+", "", p) for p in paths]


def resolve(path, here, is_dir_module):
    """Absolute module path (tuple) of a reference made in module `here`, or None."""
    parts = path.split("::")
    if parts[0] == "crate":
        base, rest = [], parts[1:]
    elif parts[0] in ("super", "self"):
        # A file `a/b.rs` is module a::b; `self` is a::b, `super` is a.
        base = list(here)
        rest = parts
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                if not base:
                    return None
                base.pop()
            rest = rest[1:]
    else:
        return None
    return tuple(base + [r for r in rest if r != "*"])


def circles(src):
    mods = module_files(src)
    known = set(mods)
    edges = {}  # (parent, a, b) -> example
    for here, path in mods.items():
        text = strip_comments_and_tests(open(path, encoding="utf-8").read())
        for ref in references(text):
            target = resolve(ref, here, False)
            if target is None:
                continue
            # The longest prefix that is a module.
            while target and target not in known:
                target = target[:-1]
            if not target:
                continue
            common = 0
            while common < min(len(here), len(target)) and here[common] == target[common]:
                common += 1
            if common >= len(here) or common >= len(target):
                continue  # an ancestor or descendant: not between siblings
            parent = here[:common]
            a, b = here[common], target[common]
            edges.setdefault((parent, a, b), f"{path}: {ref}")
    by_parent = {}
    for (parent, a, b), ex in edges.items():
        by_parent.setdefault(parent, {}).setdefault(a, {})[b] = ex
    found = []
    for parent, graph in sorted(by_parent.items()):
        for comp in sccs(graph):
            if len(comp) > 1:
                found.append((parent, sorted(comp), graph))
    return found


def sccs(graph):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    nodes = set(graph) | {b for bs in graph.values() for b in bs}

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    srcs = sys.argv[1:] or [os.path.join(root, "src")] + sorted(
        glob.glob(os.path.join(root, "crates", "*", "src"))
    )
    bad = 0
    for src in srcs:
        for parent, comp, graph in circles(src):
            bad += 1
            where = "crate" if not parent else "crate::" + "::".join(parent)
            print(f"circle in {os.path.relpath(src, root)} under {where}: {' <-> '.join(comp)}")
            for a in comp:
                for b, ex in sorted(graph.get(a, {}).items()):
                    if b in comp:
                        print(f"    {a} -> {b}   ({os.path.relpath(ex, root)})")
    if bad:
        print(f"{bad} import circle(s)")
        sys.exit(1)
    print("no import circles in " + ", ".join(os.path.relpath(s, root) for s in srcs))


if __name__ == "__main__":
    main()
