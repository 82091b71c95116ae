"""Evaluation results as tables: the headline metrics and the per-class rows shared by ``per_class_iou.md``
and the model card."""

from __future__ import annotations

import math
from typing import Any

HEADLINE = {"mean_iou": "Mean IoU", "mean_accuracy": "Mean accuracy", "overall_accuracy": "Overall accuracy"}


def headline(results: dict[str, float] | None) -> dict[str, float] | None:
    """The three headline metrics of ``results`` (keys with or without the ``eval_`` prefix)."""
    found = {}
    for name in HEADLINE:
        value = (results or {}).get(f"eval_{name}", (results or {}).get(name))
        if value is not None:
            found[name] = float(value)
    return found or None


def per_class_iou(results: dict[str, Any]) -> dict[str, float]:
    """``{class name: IoU}`` of a run's flat eval results (``eval_iou_<name>``)."""
    return {key[len("eval_iou_") :]: value for key, value in results.items() if key.startswith("eval_iou_")}


def score_cell(value: float | None) -> str:
    """A metric in a table: four decimals, ``n/a`` for NaN (a class in no reference or prediction), ``—`` unknown."""
    return "—" if value is None else "n/a" if math.isnan(value) else f"{value:.4f}"


def table_cell(text: Any) -> str:
    """Text safe in a Markdown table cell (``|`` escaped)."""
    return str(text).replace("|", "\\|")


def per_class_rows(results: dict[str, float], id2label: dict[int | str, str]) -> list[tuple[str, str, str]]:
    """(class, IoU, accuracy) cells, in class order, of the classes ``results`` (``eval_iou_<name>`` …) holds."""
    names = [name for _, name in sorted(id2label.items(), key=lambda item: int(item[0]))]
    return [
        (table_cell(n), score_cell(results[f"eval_iou_{n}"]), score_cell(results.get(f"eval_accuracy_{n}")))
        for n in names
        if f"eval_iou_{n}" in results
    ]


def per_class_table(metrics: dict[str, float], id2label: dict[int, str]) -> str:
    """Markdown: the headline metrics, then IoU and accuracy of each class (n/a: in no reference or prediction)."""
    lines = ["| metric | value |", "|---|---|"]
    lines += [f"| {label} | {metrics[f'eval_{key}']:.4f} |" for key, label in HEADLINE.items()]
    lines += ["", "| class | IoU | accuracy |", "|---|---|---|"]
    lines += [f"| {name} | {iou} | {accuracy} |" for name, iou, accuracy in per_class_rows(metrics, id2label)]
    return "\n".join(lines) + "\n"
