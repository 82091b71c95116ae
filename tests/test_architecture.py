"""The package's layers: each module imports only from its own layer and the layers below, and no import
cycle runs through the package (docs/architecture.md).

The graph is read from the source with ``ast``, so it holds every import a module can make: at the top,
inside functions, under ``if TYPE_CHECKING:``, relative (``from ..core import losses``) or absolute.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE_NAME = "hf_heteroakd"
PACKAGE = Path(__file__).resolve().parents[1] / PACKAGE_NAME

# The one table of the layers, lowest first: a module may import from its own row and the rows above it.
# A subpackage not named here, or a module at the top level not in the last row, fails the test.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("models", ("hf_heteroakd.models",)),  # the students' modeling code, saved with them: no other import
    ("loss math", ("hf_heteroakd.core",)),
    ("methods", ("hf_heteroakd.methods",)),
    ("data", ("hf_heteroakd.data",)),
    ("networks", ("hf_heteroakd.networks",)),
    ("training", ("hf_heteroakd.training",)),
    ("evaluation", ("hf_heteroakd.evaluation",)),
    ("reporting", ("hf_heteroakd.reporting",)),
    (
        "CLI",
        (
            "hf_heteroakd",  # __init__: the public API, re-exported from below
            "hf_heteroakd.pipeline",
            "hf_heteroakd.cli",
            "hf_heteroakd.cli_reference",
            "hf_heteroakd.demo",
        ),
    ),
]


def module_name(path: Path, package: Path = PACKAGE) -> str:
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by dotted name (``hf_heteroakd.core.losses``; a package by its own name)."""
    return {module_name(path, package): path for path in sorted(package.rglob("*.py"))}


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that ``name`` imports: for ``from X import y``, ``X.y`` when it is a module
    (``from ..core import losses``), else ``X``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            targets = [
                f"{module}.{alias.name}" if f"{module}.{alias.name}" in known else module for alias in node.names
            ]
        else:
            continue
        for target in targets:
            # `import hf_heteroakd.core.losses` or `from hf_heteroakd.data.samples import X`: the deepest known module
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    modules = package_modules(package)
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def layer_of(module: str) -> int:
    """The row of ``module`` in LAYERS: its own name listed, or the subpackage it lies in."""
    for index, (_, prefixes) in enumerate(LAYERS):
        if module in prefixes or any(module.startswith(p + ".") for p in prefixes if p != PACKAGE_NAME):
            return index
    raise AssertionError(
        f"{module} is in no layer: add its subpackage (or, for a top-level module, the module) to LAYERS in "
        "tests/test_architecture.py, at the height of what it imports"
    )


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    problems = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if layer_of(target) > layer_of(module):
                problems.append(
                    f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]}), "
                    "a layer above its own: move the name it needs down to its layer or below, or pass it in"
                )
    return problems


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as the list of its modules (the first repeated at the end), or None."""
    state: dict[str, str] = {}  # "open" while on the path, then "done"
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                return path[path.index(target) :] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[module] = "done"
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_every_module_imports_only_from_its_layer_or_below():
    problems = upward_imports(import_graph())
    assert not problems, (
        "upward imports (layers, lowest first: " + " → ".join(n for n, _ in LAYERS) + "):\n" + ("\n".join(problems))
    )


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " → ".join(cycle)


def test_the_students_modeling_code_imports_nothing_of_the_package():
    # Saved students carry these files and load with trust_remote_code where hf_heteroakd is not installed.
    graph = import_graph()
    models = {m: t for m, t in graph.items() if m.startswith(f"{PACKAGE_NAME}.models")}
    assert models and all(t <= set(models) for t in models.values()), models


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from ..core import losses\n", {"hf_heteroakd.core.losses"}),
        ("from .. import core\n", {"hf_heteroakd.core"}),
        ("from ..core.errors import HeteroAKDError\n", {"hf_heteroakd.core.errors"}),
        ("import hf_heteroakd.core.losses as L\n", {"hf_heteroakd.core.losses"}),
        ("from hf_heteroakd.core.labels import IGNORE_INDEX\n", {"hf_heteroakd.core.labels"}),
        ("def f():\n    from ..training.trainer import HeteroAKDTrainer\n", {"hf_heteroakd.training.trainer"}),
        (
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..training import config\n",
            {"hf_heteroakd.training.config"},
        ),
        ("from . import registry\n", {"hf_heteroakd.methods.registry"}),
        ("import torch\nfrom transformers import Trainer\n", set()),
    ],
)
def test_the_graph_sees_every_form_of_import(tmp_path, source, expected):
    """In a copy of the package's layout, a module of the methods layer imports as ``source`` says."""
    package = tmp_path / PACKAGE_NAME
    for name in (
        "__init__",
        "core/__init__",
        "core/losses",
        "core/errors",
        "core/labels",
        "methods/__init__",
        "methods/registry",
        "training/__init__",
        "training/config",
        "training/trainer",
    ):
        (package / f"{name}.py").parent.mkdir(parents=True, exist_ok=True)
        (package / f"{name}.py").touch()
    (package / "methods" / "outputs.py").write_text(source)
    assert import_graph(package)["hf_heteroakd.methods.outputs"] == expected


def test_an_upward_import_and_a_cycle_are_named():
    graph = {
        "hf_heteroakd.core.losses": {"hf_heteroakd.training.trainer"},
        "hf_heteroakd.training.trainer": {"hf_heteroakd.core.losses"},
    }
    (problem,) = upward_imports(graph)
    assert problem.startswith("hf_heteroakd.core.losses (loss math) imports hf_heteroakd.training.trainer (training)")
    assert find_cycle(graph) == [
        "hf_heteroakd.core.losses",
        "hf_heteroakd.training.trainer",
        "hf_heteroakd.core.losses",
    ]
