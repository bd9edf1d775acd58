"""The import rules of DESIGN.md, checked on the source (AST) of the core and every pipeline.

1. ``tumorsyn`` never imports a pipeline package.
2. Pipelines (``synthesize``, ``segment``, ``train_diffusion``, ``reader_study``) never import each other.
3. No import cycle between modules. Module-level imports and imports inside functions both count
   (a lazy import only hides a cycle until the function runs); imports under ``if TYPE_CHECKING:``
   do not (they never run). An import names one module: ``from a.b import c`` is an arrow to
   ``a.b.c`` when that is a module, else to ``a.b``; the parent packages a dotted import also loads
   are not arrows (every module would otherwise depend on ``tumorsyn/__init__``).
4. No private name (``_x``) is imported from another module (``from x import _y``). A package's
   ``__init__`` may take private names from its own submodules.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

CORE = "tumorsyn"
PIPELINES = ("synthesize", "segment", "train_diffusion", "reader_study")
PACKAGES = (CORE, *PIPELINES)

# Private imports across modules that are allowed, each with its reason: (importing file, name) -> why.
KNOWN_PRIVATE_IMPORTS: dict[tuple[str, str], str] = {
    ("tumorsyn/generators/ca/grow.py", "_grow_cuda"):
        "the compiled kernels stay private to the ca package (STYLE.md, scikit-image's habit): grow_ca is "
        "their one public wrapper, as for cpu._grow_numba",
}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(path: Path, module: str):
    """``(target module, imported names or None, line)`` for every import of a file that runs, at any depth."""
    return _imports_in(path.read_text(), module, is_package=path.name == "__init__.py")


def _imports_in(source: str, module: str, *, is_package: bool = False):
    tree = ast.parse(source)

    def visit(node):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from (item for child in node.orelse for item in visit(child))
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            yield base, [alias.name for alias in node.names], node.lineno
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    return list(visit(tree))


def _edges() -> dict[str, dict[str, int]]:
    """Module -> {imported module of these packages: first line}."""
    graph: dict[str, dict[str, int]] = {name: {} for name in MODULES}
    for module, path in MODULES.items():
        for target, names, line in _imports(path, module):
            if target.split(".")[0] not in PACKAGES:
                continue
            hits = [f"{target}.{n}" for n in names or () if f"{target}.{n}" in MODULES]
            if names is None or len(hits) < len(names or ()):
                if target in MODULES:
                    hits.append(target)
            for hit in hits:
                if hit != module:
                    graph[module].setdefault(hit, line)
    return graph


def _rel(module: str) -> str:
    return str(MODULES[module].relative_to(REPO))


def test_the_checker_sees_every_package():
    for package in PACKAGES:
        assert package in MODULES, package
    assert sum(1 for m in MODULES if m.startswith("tumorsyn.generators.")) >= 10


def test_core_never_imports_a_pipeline():
    bad = [f"{_rel(m)}:{line} imports {t}" for m, targets in _edges().items() if m.split(".")[0] == CORE
           for t, line in targets.items() if t.split(".")[0] in PIPELINES]
    assert not bad, "\n".join(bad)


def test_pipelines_never_import_each_other():
    bad = [f"{_rel(m)}:{line} imports {t}" for m, targets in _edges().items() if m.split(".")[0] in PIPELINES
           for t, line in targets.items() if t.split(".")[0] in PIPELINES and t.split(".")[0] != m.split(".")[0]]
    assert not bad, "\n".join(bad)


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []
    counter = [0]

    def strong(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_import_cycles():
    graph = _edges()
    found = []
    for component in _cycles(graph):
        members = set(component)
        arrows = [f"{_rel(m)}:{line} -> {t}" for m in component for t, line in graph[m].items() if t in members]
        found.append("cycle " + " <-> ".join(component) + "\n    " + "\n    ".join(arrows))
    assert not found, "\n".join(found)


def test_no_private_names_imported_across_modules():
    bad = []
    for module, path in MODULES.items():
        for target, names, line in _imports(path, module):
            if target.split(".")[0] not in PACKAGES or names is None:
                continue
            own_init = path.name == "__init__.py" and target.startswith(module + ".")
            for name in names:
                if name.startswith("_") and not name.startswith("__") and not own_init:
                    if (_rel(module), name) not in KNOWN_PRIVATE_IMPORTS:
                        bad.append(f"{_rel(module)}:{line} imports {name} from {target}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("source, expected", [
    ("from tumorsyn.synthesis import _box_for\n", ["_box_for"]),
    ("def f():\n    from tumorsyn.synthesis import _box_for\n", ["_box_for"]),
    ("from . import _helper\n", ["_helper"]),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from tumorsyn.synthesis import _x\n", []),
])
def test_the_import_reader_sees_every_depth(source, expected):
    found = [n for _, names, _ in _imports_in(source, "tumorsyn.generators.ca.trajectory") for n in names or ()
             if n.startswith("_")]
    assert found == expected


def test_the_cycle_finder_finds_a_two_module_cycle():
    graph = {"a": {"b": 1}, "b": {"a": 2}, "c": {"a": 3}}
    assert _cycles(graph) == [["a", "b"]]
