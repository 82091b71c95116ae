"""experiments/cpu_heterogeneous.py: paired arms, the table's statistics, and the whole run at a tiny size."""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
from itertools import islice
from pathlib import Path

import pytest
from transformers import TrainerCallback

from hf_heteroakd.pipeline import DataArguments, ModelArguments, run_distillation

REPO = Path(__file__).resolve().parents[1]


def load_experiment():
    spec = importlib.util.spec_from_file_location("cpu_heterogeneous", REPO / "experiments" / "cpu_heterogeneous.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class RecordStart(TrainerCallback):
    """The student's weights and the first batches' sample indices, as training starts."""

    def on_train_begin(self, args, state, control, model=None, train_dataloader=None, **kwargs):
        student = model.student.state_dict()
        digest = hashlib.sha256(b"".join(student[k].numpy().tobytes() for k in sorted(student)))
        self.weights = digest.hexdigest()
        self.indices = [i for batch in islice(train_dataloader, 3) for i in batch["index"]]


@pytest.mark.slow
def test_arms_of_one_seed_start_from_the_same_student_and_see_the_same_batches(
    tmp_path, synthetic_dataset, tiny_segformer_dir
):
    experiment = load_experiment()
    records = {}
    for arm, extra in (
        ("none", {}),
        ("heteroakd", {"teacher_projector": "mlp", "teacher_projector_fit_steps": 3}),
        ("cwd", {}),
    ):
        record = RecordStart()
        args = experiment.training_args(tmp_path / arm, 2, 1e-3, 7, 2, 2, **{**experiment.ARMS[arm], **extra})
        run_distillation(
            ModelArguments(teacher=str(tiny_segformer_dir), student="resnet18", student_pretrained_backbone=False),
            DataArguments(dataset=str(synthetic_dataset), crop_size=[32]),
            args,
            callbacks=[record],
        )
        records[arm] = (record.weights, record.indices)
    assert len(records["none"][1]) == 6
    assert records["heteroakd"] == records["none"] == records["cwd"]


def test_paired_differences_are_mean_and_standard_error_over_seeds():
    experiment = load_experiment()
    runs = {
        "none": [{"mean_iou": 0.2}, {"mean_iou": 0.4}, {"mean_iou": 0.3}],
        "heteroakd": [{"mean_iou": 0.25}, {"mean_iou": 0.42}, {"mean_iou": 0.36}],
    }
    summary = experiment.summarize(runs)
    diff = summary["heteroakd"]["vs"]["none"]  # differences 0.05, 0.02, 0.06
    assert diff["mean"] == pytest.approx(13 / 300)
    assert diff["se"] == pytest.approx(0.0208167 / math.sqrt(3), rel=1e-4)
    assert summary["none"]["mean"] == pytest.approx(0.3) and summary["none"]["se"] == pytest.approx(0.1 / math.sqrt(3))
    assert "none" not in summary["none"]["vs"]
    table = experiment.markdown_table(summary, teacher_miou=0.5)
    assert "| heteroakd | 0.3433 ± " in table and "+0.0433 ± 0.0120 **" in table  # ** : mean > 2 SE
    assert experiment.verdict(summary) == ["- heteroakd − none: +0.0433 ± 0.0120 (bar: > 2 SE, met)"]


def test_go_no_go_names_each_failed_condition():
    experiment = load_experiment()
    log = {"hakd_acc_teacher": [(50, 0.5), (100, 0.8)], "hakd_acc_student": [(50, 0.6), (100, 0.7)]}
    assert experiment.go_no_go(0.6, 0.4, log) == []
    weak_teacher = experiment.go_no_go(0.5, 0.4, log)
    assert len(weak_teacher) == 1 and "leads the student alone by 0.1000" in weak_teacher[0]
    behind = {**log, "hakd_acc_student": [(100, 0.9)]}
    assert "not more accurate" in experiment.go_no_go(0.6, 0.4, behind)[0]


@pytest.mark.slow
def test_experiment_runs_every_arm_and_writes_report_plot_and_diagnostics(tmp_path):
    experiment = load_experiment()
    arms = ["none", "cwd", "heteroakd"]
    results = experiment.run_experiment(
        output_dir=str(tmp_path),
        arms=arms,
        seeds=[0, 1],
        teacher_steps=2,
        student_steps=4,
        eval_steps=2,
        num_train=8,
        num_validation=4,
        num_test=4,
        batch_size=2,
    )
    assert list(results["runs"]) == arms
    for runs in results["runs"].values():
        (run,) = runs  # a 2-step teacher fails the go/no-go check: no seed after the first
        assert run["seed"] == 0
        assert [step for step, _ in run["log"]["eval_mean_iou"]] == [2, 4]
        assert run["log"]["eval_mean_iou"][-1][1] == pytest.approx(run["mean_iou"])  # the final eval: last point
    assert all(len(results["runs"]["heteroakd"][0]["log"][key]) == 2 for key in experiment.DIAGNOSTICS)
    assert len(results["go_no_go_failures"]) == 2
    report = (tmp_path / "results.md").read_text()
    assert report.startswith("**Inconclusive**") and "mIoU (mean ± SE)" not in report  # no table of results
    assert "leads the student alone by" in report and "at step 100" in report
    assert json.loads((tmp_path / "results.json").read_text())["go_no_go_failures"] == results["go_no_go_failures"]
    assert (tmp_path / "miou_vs_steps.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    card = (tmp_path / "students" / "cwd" / "seed0" / "README.md").read_text()  # each run's card names its method
    assert "Channel-wise distillation" in card and "L_task + 3.0·L_cwd" in card


def test_set_options_reach_every_distilling_arm_but_not_the_field_it_is_named_for():
    experiment = load_experiment()
    options = {"lambda_hakd": 1.0, "temperature": 1.0}
    assert experiment.arm_flags("none", options, Path("cache")) == {"distill_method": "none"}
    kd = experiment.arm_flags("kd", options, Path("cache"))
    assert kd == {**options, "distill_method": "kd", "teacher_logits_cache": str(Path("cache") / "logits")}
    assert experiment.arm_flags("heteroakd", options, Path("cache"))["lambda_hakd"] == 1.0
    without = experiment.arm_flags("heteroakd_lambda_hakd_0", options, Path("cache"))
    assert (without["lambda_hakd"], without["temperature"]) == (0.0, 1.0)


def test_plateau_is_what_the_student_alone_gained_over_its_last_quarter_of_steps():
    experiment = load_experiment()
    curve = lambda *values: {"log": {"eval_mean_iou": list(zip((150, 300, 450, 600), values))}}  # noqa: E731
    runs = {"none": [curve(0.2, 0.3, 0.36, 0.364), curve(0.2, 0.3, 0.35, 0.356)]}
    assert experiment.plateau_gain(runs["none"]) == pytest.approx(0.005)
    assert "gains +0.0050" in experiment.plateau_line(runs) and "not met" in experiment.plateau_line(runs)
    runs["none"][1] = curve(0.2, 0.3, 0.35, 0.352)
    assert experiment.plateau_line(runs).endswith("(criterion < 0.005: met)")
    assert "not measured" in experiment.plateau_line({"kd": runs["none"]})


def test_quick_and_ablations_set_what_they_say_and_explicit_flags_win(monkeypatch):
    experiment = load_experiment()
    calls = []

    @functools.wraps(experiment.run_experiment)  # --help reads the defaults from its signature
    def record(**kwargs):
        calls.append(kwargs)

    monkeypatch.setattr(experiment, "run_experiment", record)
    for argv in (["--quick"], ["--quick", "--seeds", "3", "--ablations"], []):
        monkeypatch.setattr("sys.argv", ["cpu_heterogeneous.py", *argv])
        experiment.main()
    quick, explicit, default = calls
    assert quick == experiment.QUICK
    assert explicit == {**experiment.QUICK, "seeds": [3], "arms": list(experiment.ARMS)}
    assert default == {}  # every other setting is run_experiment's default
