#!/usr/bin/env python3
"""Fails if the files of one crate import each other in a cycle.

Each crate's top-level modules (the files and folders under `src/`) must
form layers: a file may use what lies below it, never what uses it. The
check reads `use crate::...` paths (names re-exported by `lib.rs` count as
their defining module) and `super::` paths, ignoring `#[cfg(test)]` code at
the end of a file, and reports every cycle between top-level modules.
"""

import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def top_module(src: pathlib.Path, path: pathlib.Path) -> str:
    return path.relative_to(src).parts[0].removesuffix(".rs")


def reexports(root_file: str) -> dict:
    """`pub use module::{A, B}` and `pub use module::A;` in lib.rs."""
    names = {}
    for m in re.finditer(r"pub use (\w+)(?:::\w+)*::\{([^}]*)\}", root_file):
        for name in re.findall(r"\w+", m.group(2)):
            names[name] = m.group(1)
    for m in re.finditer(r"pub use (\w+)(?:::\w+)*::(\w+);", root_file):
        names[m.group(2)] = m.group(1)
    return names


def crate_graph(src: pathlib.Path) -> dict:
    root = src / "lib.rs" if (src / "lib.rs").exists() else src / "main.rs"
    exported = reexports(root.read_text())
    files = [p for p in src.rglob("*.rs") if p != root]
    modules = {top_module(src, p) for p in files}
    graph = {m: set() for m in modules}
    for path in files:
        me = top_module(src, path)
        text = path.read_text()
        tests = text.find("#[cfg(test)]\nmod tests")
        if tests >= 0:
            text = text[:tests]
        used = set()
        for m in re.finditer(r"crate::(\{[^}]*\}|\w+)", text):
            used.update(re.findall(r"(?:^|[{,\s])(\w+)", m.group(1)))
        if path.parent != src:  # a file inside a folder module
            used.update(re.findall(r"super::(\w+)", text))
        for name in used:
            module = exported.get(name, name)
            if module in modules and module != me:
                graph[me].add(module)
    return graph


def cycles(graph: dict) -> list:
    found, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return found


def main() -> int:
    failed = False
    for src in sorted(ROOT.glob("crates/*/src")):
        for cycle in cycles(crate_graph(src)):
            failed = True
            crate = src.parent.name
            print(f"import cycle in crates/{crate}: {' -> '.join(cycle)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
