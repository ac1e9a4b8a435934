#!/usr/bin/env python3
"""The module graph of every crate of the workspace, from `use`/path text:
prints import circles between sibling modules (files of one folder) and,
given the layer order of README's module map, imports that go upward.
Exits 1 when it finds either.

    python3 scripts/module-graph.py
"""
import os, re, sys
from itertools import chain

ROOTS = {  # crate name -> its src folder (relative to the repository root)
    "gradnorm_core": "crates/core/src",
    "gradnorm_kernels": "crates/kernels/src",
    "gradnorm_engine": "crates/engine/src",
    "gradnorm_tui": "src",
}
# Top-level modules of each crate, lowest first: a module may use those
# before it, never one after it.
LAYERS = {
    "gradnorm_core": ["error", "metrics", "method", "run", "report"],
    "gradnorm_engine": ["error", "rng", "interrupt", "weights", "classes", "device",
                        "data", "model", "score", "engine", "store", "demo"],
    "gradnorm_tui": ["tui", "cli", "commands", "main", "lib"],
}

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
GROUP = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*?)\}", re.S)


def modules(src):
    """module path (tuple) -> file"""
    out = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)
            parts = rel[:-3].split(os.sep)
            if parts[-1] == "mod":
                parts = parts[:-1]
            if parts in (["lib"], ["main"]):
                parts = []
            out[tuple(parts)] = os.path.join(dirpath, f)
    return out


def strip(text):
    text = re.sub(r"//[^\n]*", "", text)
    # Unit tests may reach anywhere in their crate.
    i = text.find("#[cfg(test)]")
    return text if i < 0 else text[:i]


def resolve(mods, here, kind, rest):
    if kind == "crate":
        base = ()
    elif kind == "self":
        base = here
    else:
        base = here[:-1]
        while rest.startswith("super::"):
            base, rest = base[:-1], rest[len("super::"):]
    path = base + tuple(p for p in rest.split("::") if p)
    while path and path not in mods:
        path = path[:-1]
    return path


def edges(crate, src):
    mods = modules(src)
    for here, f in mods.items():
        text = strip(open(f).read())
        found = set()
        for m in GROUP.finditer(text):
            for item in re.split(r",", m.group(3)):
                item = item.strip().split(" as ")[0].split("::{")[0]
                if item and item != "self":
                    found.add(resolve(mods, here, m.group(1), m.group(2).lstrip(":") + "::" + item))
                elif item == "self":
                    found.add(resolve(mods, here, m.group(1), m.group(2).lstrip(":")))
        for m in PATH.finditer(text):
            found.add(resolve(mods, here, m.group(1), m.group(2).lstrip(":")))
        for t in found:
            if t != here and t[: len(here)] != here:  # not itself nor a child
                yield here, t


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    bad = 0
    for crate, src in ROOTS.items():
        src = os.path.join(root, src)
        if not os.path.isdir(src):
            continue
        es = set(edges(crate, src))
        # Sibling graph per folder: a -> b when a file under sibling a uses
        # one under sibling b.
        sib = {}
        for a, b in es:
            n = 0
            while n < min(len(a), len(b)) and a[n] == b[n]:
                n += 1
            if n < len(a) and n < len(b):
                sib.setdefault(a[:n], set()).add((a[n], b[n]))
        for parent, pairs in sorted(sib.items()):
            graph = {}
            for x, y in pairs:
                graph.setdefault(x, set()).add(y)
            for cyc in cycles(graph):
                bad += 1
                where = "::".join((crate,) + parent)
                print(f"circle in {where}: {' -> '.join(cyc + [cyc[0]])}")
        order = LAYERS.get(crate, [])
        for x, ys in sorted(sib.get((), {}) and {k: {y for a, y in sib[()] if a == k} for k, _ in sib[()]}.items()):
            for y in sorted(ys):
                if x in order and y in order and order.index(y) > order.index(x):
                    bad += 1
                    print(f"upward in {crate}: {x} uses {y}")
    print("module graph: " + ("clean" if not bad else f"{bad} problems"))
    sys.exit(1 if bad else 0)


def cycles(graph):
    """One representative cycle per strongly connected component (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]
    nodes = set(graph) | set(chain.from_iterable(graph.values()))

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(nodes):
        if v not in index:
            strong(v)
    return out


if __name__ == "__main__":
    main()
