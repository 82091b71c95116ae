"""The package stays readable in one pass: modules of at most ~450 lines, functions of at most 60 lines of
code (docstrings not counted), classes of at most ~250."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "hf_heteroakd"
MAX_MODULE, MAX_FUNCTION, MAX_CLASS = 450, 60, 250


def code_lines(node: ast.AST) -> int:
    """Lines of ``node`` less its docstring's."""
    lines = node.end_lineno - node.lineno + 1
    body = getattr(node, "body", [])
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        lines -= body[0].end_lineno - body[0].lineno + 1
    return lines


def test_modules_functions_and_classes_stay_short():
    too_long = []
    paths = sorted(PACKAGE.rglob("*.py"))
    assert any(path.parent != PACKAGE for path in paths)  # the subpackages' modules too
    for path in paths:
        name = path.relative_to(PACKAGE).as_posix()
        source = path.read_text()
        if source.count("\n") > MAX_MODULE:
            too_long.append(f"{name}: {source.count(chr(10))} lines")
        for node in ast.walk(ast.parse(source)):
            limit = MAX_CLASS if isinstance(node, ast.ClassDef) else MAX_FUNCTION
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and code_lines(node) > limit:
                too_long.append(f"{name}: {node.name} has {code_lines(node)} lines of code (at most {limit})")
    assert too_long == []
