#!/usr/bin/env python3
"""Fails when two files of a crate import each other, directly or round a
loop: the layering the crate docs describe, kept by a check. An edge is a
`use crate::…`, `use super::…` or path `crate::a::b::` naming another
file's module; a file's own children (`mod x;`) are not edges."""
import os, re, sys

def modules(src):
    """module path (tuple) -> file, for every .rs file under src."""
    out = {}
    for dirpath, _, files in os.walk(src):
        for f in files:
            if not f.endswith('.rs'):
                continue
            rel = os.path.relpath(os.path.join(dirpath, f), src)[:-3].split(os.sep)
            if rel == ['main'] and os.path.exists(os.path.join(src, 'lib.rs')):
                # A binary beside a library is a crate of its own.
                rel = ['<main>']
            elif rel[-1] in ('lib', 'main', 'mod'):
                rel = rel[:-1]
            out[tuple(rel)] = os.path.join(dirpath, f)
    return out

def reexports(mods):
    """Names the crate root re-exports (`pub use a::b::{X, Y};`) -> module."""
    out = {}
    root = mods.get(())
    if not root:
        return out
    text = open(root).read()
    for path, names in re.findall(r'^pub use ([a-z_][a-z0-9_:]*)::\{([^}]*)\};', text, re.M | re.S):
        for name in names.split(','):
            name = name.strip().split(' as ')[-1].strip()
            if name:
                out[name] = tuple(path.split('::'))
    for path, name in re.findall(r'^pub use ([a-z_][a-z0-9_:]*)::(\w+)(?: as \w+)?;', text, re.M):
        out[name] = tuple(path.split('::'))
    return out

def edges(mods):
    graph = {m: set() for m in mods}
    exported = reexports(mods)
    for m, path in mods.items():
        text = open(path).read()
        text = re.sub(r'#\[cfg\(test\)\]\s*mod tests \{.*', '', text, flags=re.S)
        # `crate::{a, b::C}` stands for `crate::a` and `crate::b::C`.
        text = re.sub(
            r'\b((?:crate|super)(?:::[a-z_][a-z0-9_]*)*)::\{([^{}]*)\}',
            lambda g: ' '.join(g.group(1) + '::' + part.strip()
                               for part in g.group(2).split(',') if part.strip()),
            text)
        is_dir = os.path.basename(path) in ('mod.rs', 'lib.rs', 'main.rs')
        base = m if is_dir else m[:-1]
        for p in re.findall(r'\b((?:crate|super)(?:::[A-Za-z_][A-Za-z0-9_]*)+)', text):
            parts = p.split('::')
            if parts[0] == 'crate':
                target, rest = (), parts[1:]
            else:
                target, rest = m[:-1], parts[1:]
                while rest and rest[0] == 'super':
                    target, rest = target[:-1], rest[1:]
            # A name the root re-exports stands for the module it comes from.
            if target == () and rest and rest[0] in exported:
                target, rest = exported[rest[0]], rest[1:]
            # the longest module prefix that is a file
            best = None
            for i in range(len(rest) + 1):
                cand = target + tuple(rest[:i])
                if cand in mods:
                    best = cand
            if best is not None and best != m and best != () and best[:len(m)] != m:
                graph[m].add(best)
    return graph

def cycles(graph):
    found, state = [], {}
    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2
    for n in sorted(graph):
        if n not in state:
            visit(n, [])
    return found

bad = 0
for src in sys.argv[1:]:
    for cycle in cycles(edges(modules(src))):
        bad += 1
        print(f"{src}: import cycle: " + " -> ".join("::".join(m) or "lib" for m in cycle))
sys.exit(1 if bad else 0)
