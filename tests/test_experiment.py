"""experiments/cpu_heterogeneous.py end to end at a tiny size: every method trains, and the table,
results and plot come from the runs' own logs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def load_experiment():
    spec = importlib.util.spec_from_file_location("cpu_heterogeneous", REPO / "experiments" / "cpu_heterogeneous.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_experiment_runs_every_method_and_writes_table_and_plot(tmp_path):
    experiment = load_experiment()
    methods = ["none", "cwd", "heteroakd_no_kem"]  # every method runs in tests/test_trainer.py
    results = experiment.run_experiment(
        output_dir=str(tmp_path), methods=methods, seeds=[0, 1], teacher_steps=2, student_steps=4, eval_steps=2,
        num_train=8, num_validation=4, batch_size=2,
    )
    assert list(results["summary"]) == methods
    assert list(results["runs"]) == methods
    for runs in results["runs"].values():
        assert [run["seed"] for run in runs] == [0, 1]
        for run in runs:
            assert [step for step, _ in run["curve"]] == [2, 4]
            assert run["curve"][-1][1] == pytest.approx(run["mean_iou"])  # the final eval is the last point
    table = (tmp_path / "results.md").read_text()
    for method in methods:
        assert f"| {method} |" in table
    assert json.loads((tmp_path / "results.json").read_text())["summary"] == results["summary"]
    assert (tmp_path / "miou_vs_steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (tmp_path / "students" / "cwd" / "seed0" / "README.md").read_text()  # each run's card names its method
    assert "Channel-wise distillation" in card and "L_task + 3.0·L_cwd" in card


def test_summary_is_mean_and_sample_std_over_seeds():
    experiment = load_experiment()
    runs = {"none": [{"mean_iou": 0.2}, {"mean_iou": 0.4}], "kd": [{"mean_iou": 0.5}]}
    summary = experiment.summarize(runs)
    assert summary["none"]["mean"] == pytest.approx(0.3)
    assert summary["none"]["std"] == pytest.approx(0.1414213, rel=1e-5)
    assert summary["kd"] == {"mean": 0.5, "std": 0.0, "n": 1}
