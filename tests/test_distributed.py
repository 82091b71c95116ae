"""Two processes (gloo on CPU) through `accelerate launch`, and resuming from a checkpoint."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch
from transformers import SegformerImageProcessor

from hf_heteroakd import HeteroAKDConfig, HeteroAKDTrainer, build_student
from hf_heteroakd.data import SegmentationDataset, collate_segmentation, load_segmentation_data, train_transforms
from hf_heteroakd.evaluation.evaluate_model import evaluate_saved_student

from .conftest import ID2LABEL, NUM_LABELS, tiny_segformer

REPO = Path(__file__).resolve().parents[1]
RUN = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]


def launch(script: str, *args: str, processes: int = 2) -> subprocess.CompletedProcess:
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    command = RUN + [script, *args] if processes == 2 else [sys.executable, script, *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=REPO)


@pytest.mark.slow
def test_two_processes_keep_projectors_in_sync_and_report_the_single_process_miou(
    tmp_path, tiny_segformer_dir, synthetic_dataset
):
    out = tmp_path / "out"
    result = launch(
        str(REPO / "tests" / "distributed_run.py"),
        "--teacher",
        str(tiny_segformer_dir),
        "--student",
        "resnet18",
        "--student_pretrained_backbone",
        "false",
        "--dataset",
        str(synthetic_dataset),
        "--output_dir",
        str(out),
        "--crop_size",
        "32",
        "--per_device_train_batch_size",
        "2",
        "--max_steps",
        "3",
        "--learning_rate",
        "0.01",
        "--do_train",
        "--do_eval",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [safetensors.torch.load_file(out / f"projectors_rank{i}.safetensors") for i in (0, 1)]
    assert ranks[0].keys() == ranks[1].keys()
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key
    reported = json.loads((out / "all_results.json").read_text())
    single = evaluate_saved_student(str(out), str(synthetic_dataset), "validation")  # 5 images: 3 + 2 per rank
    assert reported["eval_mean_iou"] == pytest.approx(single["mean_iou"], abs=1e-12)
    assert reported["eval_overall_accuracy"] == pytest.approx(single["overall_accuracy"], abs=1e-12)


@pytest.mark.slow
def test_distributed_evaluation_equals_one_process_on_an_uneven_split(tmp_path, synthetic_dataset):
    torch.manual_seed(0)
    student_dir = tmp_path / "student"
    build_student("resnet18", ID2LABEL, pretrained_backbone=False).save_pretrained(student_dir)
    SegformerImageProcessor(do_resize=False).save_pretrained(student_dir)
    results = {}
    for processes in (1, 2):
        out = tmp_path / f"eval{processes}"
        result = launch(
            str(REPO / "recipes" / "run_distill.py"),
            "--distill_method",
            "none",
            "--student",
            str(student_dir),
            "--dataset",
            str(synthetic_dataset),
            "--output_dir",
            str(out),
            "--do_eval",
            "--report_to",
            "none",
            "--per_device_eval_batch_size",
            "2",
            processes=processes,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        results[processes] = json.loads((out / "eval_results.json").read_text())
    exact = [k for k in results[1] if k.startswith(("eval_iou_", "eval_accuracy_", "eval_mean_", "eval_overall"))]
    assert len(exact) == 2 * NUM_LABELS + 3
    for key in exact:
        assert results[2][key] == pytest.approx(results[1][key], abs=0, nan_ok=True), key
    # float32 per-batch means over differently composed batches: equal to float32 precision
    assert results[2]["eval_loss"] == pytest.approx(results[1]["eval_loss"], rel=1e-6)


def test_resumed_run_matches_the_uninterrupted_run(tmp_path, synthetic_dataset):
    split = load_segmentation_data(str(synthetic_dataset)).splits["train"]
    train_set = SegmentationDataset(split, train_transforms((32, 32)), NUM_LABELS)

    def trainer(output_dir: Path) -> HeteroAKDTrainer:
        torch.manual_seed(0)
        args = HeteroAKDConfig(
            output_dir=str(output_dir),
            max_steps=4,
            save_steps=2,
            per_device_train_batch_size=2,
            learning_rate=0.01,
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=False,
            seed=0,
        )
        return HeteroAKDTrainer(
            model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
            teacher_model=tiny_segformer(),
            args=args,
            train_dataset=train_set,
            data_collator=collate_segmentation,
        )

    uninterrupted = trainer(tmp_path / "a")
    uninterrupted.train()
    resumed = trainer(tmp_path / "b")
    resumed.train(resume_from_checkpoint=str(tmp_path / "a" / "checkpoint-2"))

    expected = uninterrupted.model.state_dict()
    for key, value in resumed.model.state_dict().items():  # student and projectors
        torch.testing.assert_close(value, expected[key], atol=1e-6, rtol=0, msg=key)
    assert (tmp_path / "a" / "checkpoint-2" / "heteroakd_projectors.safetensors").is_file()


def test_checkpoint_student_folder_loads_alone(tmp_path, synthetic_dataset):
    from transformers import AutoModelForSemanticSegmentation

    split = load_segmentation_data(str(synthetic_dataset)).splits["train"]
    args = HeteroAKDConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        save_steps=1,
        per_device_train_batch_size=2,
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    HeteroAKDTrainer(
        model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
        teacher_model=tiny_segformer(),
        args=args,
        train_dataset=SegmentationDataset(split, train_transforms((32, 32)), NUM_LABELS),
        data_collator=collate_segmentation,
    ).train()
    model = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "checkpoint-1")
    assert not any("projector" in k for k in model.state_dict())


@pytest.mark.slow
def test_sync_batchnorm_across_cpu_processes_is_one_clear_error(tmp_path, tiny_segformer_dir, synthetic_dataset):
    # torch's SyncBatchNorm has no CPU kernel: the run must say so, not fail inside the first forward.
    result = launch(
        str(REPO / "recipes" / "run_distill.py"),
        "--teacher",
        str(tiny_segformer_dir),
        "--student",
        "resnet18",
        "--student_pretrained_backbone",
        "false",
        "--dataset",
        str(synthetic_dataset),
        "--output_dir",
        str(tmp_path / "out"),
        "--crop_size",
        "32",
        "--max_steps",
        "1",
        "--do_train",
        "--report_to",
        "none",
        "--sync_batchnorm",
    )
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all("--sync_batchnorm" in line and "CUDA" in line for line in errors), result.stderr[-3000:]
