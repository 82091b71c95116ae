"""`make demo`: its code path at a few steps (the saved student reloads and reproduces its reported mIoU), and
its own settings (the teacher leads the student it distils)."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

import hf_heteroakd  # noqa: F401  (registers the student classes)
from hf_heteroakd.data.synthetic import CLASS_NAMES
from hf_heteroakd.demo import run_demo
from hf_heteroakd.evaluation.evaluate_model import evaluate_saved_student
from hf_heteroakd.reporting.card_figures import FIGURES


@pytest.mark.slow
def test_demo_student_reloads_and_reproduces_reported_mean_iou(tmp_path):
    summary = run_demo(str(tmp_path), teacher_steps=6, student_steps=4, num_train=16, num_validation=6, batch_size=4)
    student_dir = tmp_path / "student"
    reported = json.loads((student_dir / "all_results.json").read_text())
    assert summary["student_mean_iou"] == reported["eval_mean_iou"]

    # Independently of run_demo's own check: reload and evaluate image by image.
    reloaded = evaluate_saved_student(str(student_dir), str(tmp_path / "data"), "validation")
    assert reloaded["mean_iou"] == pytest.approx(reported["eval_mean_iou"], abs=1e-6)
    assert reloaded["overall_accuracy"] == pytest.approx(reported["eval_overall_accuracy"], abs=1e-6)

    model = AutoModelForSemanticSegmentation.from_pretrained(student_dir)
    assert type(model).__name__ == "TimmSegmentationForSemanticSegmentation"
    assert AutoImageProcessor.from_pretrained(student_dir).do_resize is False
    card = (student_dir / "README.md").read_text()
    assert "heteroakd" in card
    assert "| teacher |" in card  # the demo adds its teacher's results to the student's card
    for figure in FIGURES:  # panels, curves, and (with the teacher's results) IoU per class
        assert (student_dir / figure).is_file() and f"]({figure})" in card, figure
    assert not any("projector" in k for k in model.state_dict())
    assert torch.isfinite(torch.tensor(reported["train_loss"]))


@pytest.mark.slow
def test_the_demo_as_make_demo_runs_it_distils_from_a_teacher_that_leads(tmp_path, capsys):
    """`make demo`'s own settings (about 4 min on 2 CPU cores): the teacher leads the distilled student by
    at least 0.05 mIoU, the student recognises shapes and not only the background, and both are printed."""
    summary = run_demo(str(tmp_path))
    teacher, student = summary["teacher_mean_iou"], summary["student_mean_iou"]
    assert teacher - student >= 0.05, summary
    printed = capsys.readouterr().out
    assert f"teacher_mean_iou: {teacher:.4f}" in printed and f"student_mean_iou: {student:.4f}" in printed
    results = json.loads((tmp_path / "student" / "all_results.json").read_text())
    shapes = [results[f"eval_iou_{name}"] for name in CLASS_NAMES[1:]]
    assert sum(iou > 0.05 for iou in shapes) >= 3, results  # not a background-only (degenerate) student
