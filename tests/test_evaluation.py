"""Evaluation a user can reproduce: images of several sizes, batch sizes, processes, the card's code,
`recipes/evaluate_model.py` on a student and on a teacher, and the `evaluate` module."""

from __future__ import annotations

import json
import re
from pathlib import Path

import datasets
import evaluate
import numpy as np
import pytest
import torch

from hf_heteroakd import HeteroAKDConfig, MeanIoU
from hf_heteroakd.cli import evaluate_main, main
from hf_heteroakd.core.metrics import EVALUATE_MODULE
from hf_heteroakd.data.synthetic import make_synthetic_dataset
from hf_heteroakd.evaluation.arguments import EvaluationArguments
from hf_heteroakd.evaluation.evaluate_model import run_evaluation
from hf_heteroakd.pipeline import DataArguments, ModelArguments, run_distillation

from .conftest import NUM_LABELS
from .test_distributed import launch
from .test_metrics import reference_mean_iou

REPO = Path(__file__).resolve().parents[1]
HEIGHTS = [64, 40, 52, 64, 40, 52, 40]  # three sizes, interleaved, so batches of 2 and 4 mix them
EXACT_KEYS = ("eval_mean_iou", "eval_mean_accuracy", "eval_overall_accuracy")


@pytest.fixture(scope="module")
def mixed_sizes(tmp_path_factory) -> Path:
    """The synthetic dataset with validation images cropped to three heights (64 wide)."""
    root = make_synthetic_dataset(
        tmp_path_factory.mktemp("mixed"), num_train=8, num_validation=len(HEIGHTS), image_size=64, seed=3
    )
    path = root / "data" / "validation-00000-of-00001.parquet"
    rows = datasets.Dataset.from_parquet(str(path))
    cropped = {"image": [], "label": []}
    for row, height in zip(rows, HEIGHTS):
        cropped["image"].append(row["image"].crop((0, 0, 64, height)))
        cropped["label"].append(row["label"].crop((0, 0, 64, height)))
    datasets.Dataset.from_dict(cropped, features=rows.features).to_parquet(path)
    return root


@pytest.fixture(scope="module")
def trained_student(mixed_sizes, tmp_path_factory) -> tuple[Path, dict[str, float]]:
    """A student trained 6 steps without a teacher and evaluated by its run, in batches of 4 mixed sizes."""
    out = tmp_path_factory.mktemp("student") / "run"
    metrics = run_distillation(
        ModelArguments(student="resnet18", student_pretrained_backbone=False),
        DataArguments(dataset=str(mixed_sizes), crop_size=[32]),
        HeteroAKDConfig(
            output_dir=str(out),
            distill_method="none",
            max_steps=6,
            learning_rate=0.01,
            per_device_train_batch_size=4,
            per_device_eval_batch_size=4,
            do_train=True,
            do_eval=True,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
        ),
    )
    return out, metrics


def evaluate_model(model: Path, dataset: Path, out: Path, **settings) -> dict[str, float]:
    arguments = EvaluationArguments(
        model=str(model), dataset=str(dataset), output_dir=str(out), report_to="none", disable_tqdm=True, **settings
    )
    return run_evaluation(arguments)


def assert_same_metrics(got: dict[str, float], expected: dict[str, float]) -> None:
    per_class = [k for k in expected if k.startswith(("eval_iou_", "eval_accuracy_"))]
    assert len(per_class) == 2 * NUM_LABELS
    for key in (*EXACT_KEYS, *per_class):
        assert got[key] == pytest.approx(expected[key], abs=1e-12, nan_ok=True), key
    # The logits of batched kernels differ in the last bits between batch sizes (about 1e-8).
    assert got["eval_loss"] == pytest.approx(expected["eval_loss"], rel=1e-6)


@pytest.mark.parametrize(
    "settings",
    [{}, {"eval_crop_size": [32, 32], "eval_stride": [20, 20], "eval_flip": True}],
    ids=["whole-image", "sliding-window-and-flip"],
)
def test_metrics_do_not_depend_on_the_evaluation_batch_size(trained_student, mixed_sizes, tmp_path, settings):
    student, _ = trained_student
    results = {
        batch: evaluate_model(
            student, mixed_sizes, tmp_path / f"bs{batch}", per_device_eval_batch_size=batch, **settings
        )
        for batch in (1, 2, 4)
    }
    assert 0 < results[1]["eval_mean_iou"] < 1
    for batch in (2, 4):
        assert_same_metrics(results[batch], results[1])


@pytest.mark.slow
def test_two_processes_report_the_metrics_of_one(trained_student, mixed_sizes, tmp_path):
    student, _ = trained_student
    one = evaluate_model(student, mixed_sizes, tmp_path / "one", per_device_eval_batch_size=1)
    out = tmp_path / "two"
    result = launch(
        str(REPO / "recipes" / "evaluate_model.py"),
        "--model",
        str(student),
        "--dataset",
        str(mixed_sizes),
        "--output_dir",
        str(out),
        "--per_device_eval_batch_size",
        "2",
        "--report_to",
        "none",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert_same_metrics(json.loads((out / "eval_results.json").read_text()), one)


def test_the_cards_usage_code_on_every_validation_image_gives_the_runs_mean_iou(trained_student, mixed_sizes):
    student, run_metrics = trained_student
    snippet = re.search(r"## How to use\n\n```python\n(.*?)```", (student / "README.md").read_text(), re.DOTALL)
    code = snippet.group(1)
    placeholder = re.search(r"image = Image\.new\(.*\n", code).group(0)
    rows = datasets.Dataset.from_parquet(str(mixed_sizes / "data" / "validation-00000-of-00001.parquet"))
    predictions, references = [], []
    for row in rows:
        namespace = {"__name__": "card_usage", "row_image": row["image"]}
        # The card's code, with the user's image in place of its placeholder, the model from this run.
        exec(
            code.replace(placeholder, "image = row_image.convert('RGB')\n").replace(
                re.search(r'repo = ".*"', code).group(0), f'repo = "{student}"'
            ),
            namespace,
        )
        predictions.append(namespace["segmentation"].numpy())
        references.append(np.asarray(row["label"]))
    assert {p.shape for p in predictions} == {(h, 64) for h in HEIGHTS}
    reference = reference_mean_iou(predictions, references, NUM_LABELS, ignore_index=255)
    assert reference["mean_iou"] == pytest.approx(run_metrics["eval_mean_iou"], abs=1e-9)
    assert reference["overall_accuracy"] == pytest.approx(run_metrics["eval_overall_accuracy"], abs=1e-9)


def test_evaluate_command_on_a_saved_student_writes_the_evaluate_result_and_a_table(
    trained_student, mixed_sizes, tmp_path, capsys
):
    student, run_metrics = trained_student
    out = tmp_path / "eval"
    assert (
        evaluate_main(
            [
                "--model",
                str(student),
                "--dataset",
                str(mixed_sizes),
                "--output_dir",
                str(out),
                "--report_to",
                "none",
                "--disable_tqdm",
                "true",
            ]
        )
        == 0
    )
    saved = json.loads((out / "mean_iou.json").read_text())
    assert {"mean_iou", "mean_accuracy", "overall_accuracy", "per_category_iou", "per_category_accuracy"} <= set(saved)
    assert {"_timestamp", "_evaluate_version", "_python_version", "hf_heteroakd_version"} <= set(saved)
    assert saved["model"] == str(student) and saved["split"] == "validation" and saved["num_images"] == len(HEIGHTS)
    assert saved["mean_iou"] == pytest.approx(run_metrics["eval_mean_iou"], abs=1e-12)
    assert len(saved["per_category_iou"]) == NUM_LABELS
    table = (out / "per_class_iou.md").read_text()
    assert f"| Mean IoU | {run_metrics['eval_mean_iou']:.4f} |" in table
    assert table.count("\n| ") == 3 + 1 + NUM_LABELS  # 3 headline rows, the class header, a row per class


def test_evaluate_command_on_a_teacher_matches_the_per_image_reference(
    tiny_segformer_dir, synthetic_dataset, tmp_path
):
    from hf_heteroakd.evaluation.evaluate_model import evaluate_saved_student

    out = tmp_path / "teacher"
    metrics = evaluate_model(tiny_segformer_dir, synthetic_dataset, out, per_device_eval_batch_size=3)
    reference = evaluate_saved_student(str(tiny_segformer_dir), str(synthetic_dataset), "validation")
    assert metrics["eval_mean_iou"] == pytest.approx(reference["mean_iou"], abs=1e-9)
    assert json.loads((out / "mean_iou.json").read_text())["mean_iou"] == metrics["eval_mean_iou"]


def test_a_saved_student_names_the_classes_of_a_dataset_without_id2label(trained_student, mixed_sizes, tmp_path):
    student, run_metrics = trained_student
    bare = tmp_path / "no_id2label"
    (bare / "data").mkdir(parents=True)
    for path in (mixed_sizes / "data").iterdir():
        (bare / "data" / path.name).write_bytes(path.read_bytes())
    common = ["--dataset", str(bare), "--report_to", "none", "--per_device_eval_batch_size", "4"]
    assert (
        main(
            [
                "--distill_method",
                "none",
                "--student",
                str(student),
                "--do_eval",
                "--output_dir",
                str(tmp_path / "run"),
                *common,
            ]
        )
        == 0
    )
    assert evaluate_main(["--model", str(student), "--output_dir", str(tmp_path / "eval"), *common]) == 0
    for out in ("run", "eval"):
        reported = json.loads((tmp_path / out / "eval_results.json").read_text())
        assert reported["eval_mean_iou"] == pytest.approx(run_metrics["eval_mean_iou"], abs=1e-12)


def test_a_model_of_other_classes_is_one_error_line(tiny_segformer_dir, tmp_path, capsys):
    data = make_synthetic_dataset(tmp_path / "data", num_train=1, num_validation=1, image_size=32)
    (data / "id2label.json").write_text(json.dumps({str(i): f"class {i}" for i in range(NUM_LABELS)}))
    code = evaluate_main(
        [
            "--model",
            str(tiny_segformer_dir),
            "--dataset",
            str(data),
            "--output_dir",
            str(tmp_path / "out"),
            "--report_to",
            "none",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.count("error:") == 1
    assert "the model's classes differ from the dataset's" in err and "evaluate on the dataset it predicts" in err


def test_the_evaluate_module_loads_offline_by_path_and_matches_mean_iou():
    rng = np.random.default_rng(0)
    shapes = [(9, 13), (16, 7), (5, 5), (12, 20)]
    predictions = [rng.integers(-1, 7, shape) for shape in shapes]  # out-of-range values included
    references = [np.where(rng.random(shape) < 0.1, 255, rng.integers(0, 7, shape)) for shape in shapes]
    for options in ({}, {"reduce_labels": True}, {"label_map": {3: 1, 1: 3}}):
        module = evaluate.load(EVALUATE_MODULE)
        for prediction, reference in zip(predictions, references):
            module.add_batch(predictions=[prediction], references=[reference])
        got = module.compute(num_labels=6, ignore_index=255, **options)
        streaming = MeanIoU(6, ignore_index=255, **options)
        for prediction, reference in zip(predictions, references):
            streaming.update(prediction, reference)
        expected = streaming.compute()
        assert got.keys() == expected.keys()
        for key in expected:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
    filled = evaluate.load(EVALUATE_MODULE).compute(
        predictions=[np.zeros((2, 2), int)],
        references=[np.zeros((2, 2), int)],
        num_labels=3,
        ignore_index=255,
        nan_to_num=-1.0,
    )
    assert filled["per_category_iou"].tolist() == [1.0, -1.0, -1.0]


def test_collate_records_sizes_and_evaluation_never_sees_padding():
    from hf_heteroakd.data import collate_segmentation, same_size_groups

    batch = collate_segmentation(
        [{"pixel_values": torch.ones(3, h, 4), "labels": torch.zeros(h, 4, dtype=torch.long)} for h in (4, 6, 4)]
    )
    assert batch["image_sizes"] == [(4, 4), (6, 4), (4, 4)]
    assert batch["pixel_values"].shape == (3, 3, 6, 4)
    assert same_size_groups(batch["image_sizes"]) == [[0, 2], [1]]
    assert torch.equal(batch["labels"][0, 4:], torch.full((2, 4), 255))
