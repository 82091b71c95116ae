"""The model card's figures, written beside the student and uploaded with it.

``predictions.png`` (the last evaluation's prediction panels), ``training_curves.png`` (eval mIoU and
each loss term against steps, from ``trainer_state.json``) and ``per_class_iou.png`` (student vs teacher
per class, when the teacher's per-class results are known). Plots use matplotlib's object API (no
pyplot state, no display needed).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..evaluation.tables import per_class_iou
from .prediction_panels import PANELS_NAME, PREDICTIONS_DIR

# File name -> caption, in the card's order.
FIGURES = {
    "predictions.png": (
        "Validation images at the last evaluation: the image, its ground truth, the teacher's and the student's "
        "prediction"
    ),
    "training_curves.png": "Evaluation mIoU and each loss term against optimizer steps",
    "per_class_iou.png": "IoU per class of this student and of its teacher, on the evaluation split",
}


def write_figures(folder: str | Path, teacher_per_class: dict[str, float] | None = None) -> list[str]:
    """Writes the figures the run's files allow into ``folder``; returns their names."""
    folder = Path(folder)
    steps = sorted(folder.glob(f"{PREDICTIONS_DIR}/step-*/{PANELS_NAME}"), key=lambda p: int(p.parent.name[5:]))
    if steps:
        shutil.copyfile(steps[-1], folder / "predictions.png")
    state = folder / "trainer_state.json"
    if state.is_file():
        training_curves(json.loads(state.read_text())["log_history"], folder / "training_curves.png")
    results = folder / "eval_results.json"
    if teacher_per_class and results.is_file():
        per_class_chart(
            per_class_iou(json.loads(results.read_text())), teacher_per_class, folder / "per_class_iou.png"
        )
    return [name for name in FIGURES if (folder / name).is_file()]


def training_curves(log_history: list[dict[str, Any]], path: Path) -> None:
    """The training loss and each of its ``loss_<term>`` (training logs), and ``eval_mean_iou``
    (evaluations), against the step."""
    figure = Figure(figsize=(8, 3.2), layout="constrained")
    losses, miou = figure.subplots(1, 2)
    terms = ["loss", *sorted({key for entry in log_history for key in entry if re.fullmatch(r"loss_\w+", key)})]
    for term in terms:
        points = [(e["step"], e[term]) for e in log_history if term in e]
        if points:
            losses.plot(*zip(*points), label="total" if term == "loss" else term[len("loss_") :])
    losses.set(xlabel="step", ylabel="loss", title="loss terms")
    if losses.lines:
        losses.legend(fontsize="small")
    points = [(e["step"], e["eval_mean_iou"]) for e in log_history if "eval_mean_iou" in e]
    if points:
        miou.plot(*zip(*points), marker="o")
    miou.set(xlabel="step", ylabel="mIoU", title="evaluation mIoU")
    figure.savefig(path, dpi=100)


def per_class_chart(student: dict[str, float], teacher: dict[str, float], path: Path) -> None:
    """Bars of the student's and the teacher's IoU for each class both report (NaN: absent, drawn as 0)."""
    names = [name for name in student if name in teacher]
    figure = Figure(figsize=(max(6, 0.35 * len(names) + 2), 3.5), layout="constrained")
    axes = figure.subplots()
    x = np.arange(len(names))
    for offset, (who, values) in zip((-0.2, 0.2), (("student", student), ("teacher", teacher))):
        axes.bar(x + offset, np.nan_to_num([values[n] for n in names]), width=0.4, label=who)
    axes.set_xticks(x, names, rotation=60, ha="right", fontsize="small")
    axes.set(ylabel="IoU", ylim=(0, 1), title="IoU per class")
    axes.legend()
    figure.savefig(path, dpi=100)
