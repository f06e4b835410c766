"""The layering rules of docs/design.md, "Layers", read from the source: what the operator may
import, no import cycles, and only soar/layout.py spells a store key."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Package roots: where `soar` and `soar_operator` are importable from.
PACKAGES = {"soar": ROOT, "soar_operator": ROOT / "operator"}
BOTTOM_LAYER = {
    "soar.contract",
    "soar.crd",
    "soar.layout",
    "soar.lease",
    "soar.manifest",
    "soar.planner",
    "soar.protocol",
    "soar.records",
    "soar.runstate",
    "soar.spec",
    "soar.spec_base",
    "soar.spec_execution",
    "soar.store",
    "soar.store_s3",
    "soar.store_errors",
}
FORBIDDEN_IN_OPERATOR = ("torch", "transformers", "soar.executor", "soar.stages")
STORE_KEY = re.compile(r"^(steps|eval|done|checkpoints|data|pq|baseline-cache|logs|fresh)/")
LAYOUT = ROOT / "soar" / "layout.py"


def module_files() -> dict[str, Path]:
    """Every module of soar and soar_operator by dotted name (a package by its __init__.py)."""
    modules = {}
    for package, root in PACKAGES.items():
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


MODULES = module_files()


def imported(module: str, path: Path) -> set[str]:
    """The soar/soar_operator modules `module` imports, at the top or inside functions: for
    `from a import b`, the module a.b when it is one, else a."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative to this module's package
                anchor = package[: len(package) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{a.name}" for a in node.names]
            names = [name if name in MODULES else base for name in names]
        else:
            continue
        out |= {name for name in names if name.split(".")[0] in PACKAGES}
    return out - {module}


GRAPH = {module: imported(module, path) for module, path in MODULES.items()}


def test_the_operator_imports_no_ml_library_executor_or_stage():
    """In a fresh interpreter, importing every operator module leaves these out of sys.modules:
    the operator image has no torch and starts in seconds."""
    operator_modules = sorted(m for m in MODULES if m.split(".")[0] == "soar_operator")
    code = (
        "import importlib, json, sys\n"
        f"for name in {operator_modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = {FORBIDDEN_IN_OPERATOR!r}\n"
        "prefixes = tuple(b + '.' for b in bad)\n"
        "loaded = [m for m in sys.modules if m in bad or m.startswith(prefixes)]\n"
        "print(json.dumps(sorted(loaded)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    )
    assert json.loads(out.stdout) == []


def test_the_operator_imports_only_the_bottom_layer_of_soar():
    wrong = {
        module: sorted(m for m in imports if m.split(".")[0] == "soar" and m not in BOTTOM_LAYER)
        for module, imports in GRAPH.items()
        if module.split(".")[0] == "soar_operator"
    }
    assert {module: bad for module, bad in wrong.items() if bad} == {}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component of more than one module (Tarjan's algorithm),
    as the modules of the component in order."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_two_modules_import_each_other():
    assert cycles(GRAPH) == []


def store_keys(path: Path) -> list[str]:
    """String literals and f-strings in a module that start like a run-store key."""
    tree = ast.parse(path.read_text(), str(path))
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            first = node.values[0] if node.values else None
            text = first.value if isinstance(first, ast.Constant) else None
        elif isinstance(node, ast.Constant) and id(node) not in parts:
            text = node.value
        else:
            continue
        if isinstance(text, str) and STORE_KEY.match(text):
            found.append(f"{path}:{node.lineno}: {ast.unparse(node)}")
    return found


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('KEY = "steps/1/record.json"', 1),
        ('key = f"eval/{t}.json"', 1),
        ('key = f"{root}/done/x"', 0),
        ('text = "see the steps/ folder"', 0),
        ("key = f'pq/{t}' + 'logs/'", 2),
    ],
)
def test_store_key_scan_finds_plain_and_f_strings(tmp_path, source, expected):
    path = tmp_path / "scan.py"
    path.write_text(source)
    assert len(store_keys(path)) == expected


def test_only_layout_spells_a_store_key():
    found = [key for path in MODULES.values() if path != LAYOUT for key in store_keys(path)]
    assert found == []
