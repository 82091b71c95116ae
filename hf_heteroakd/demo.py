"""``make demo``: the whole product offline, in a few minutes on a laptop CPU.

1. writes a synthetic segmentation dataset in the Hub's layout;
2. trains a small Segformer teacher on it (the same pipeline, ``--distill_method none``);
3. distills a DeepLabV3-ResNet-18 student from it with HeteroAKD;
4. reloads the saved student with ``from_pretrained`` and checks it reproduces the reported mIoU;
5. leaves the card's pictures beside the student: prediction panels, training curves, IoU per class.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from transformers import SegformerConfig, SegformerForSemanticSegmentation, SegformerImageProcessor

from .data.synthetic import CLASS_NAMES, make_synthetic_dataset
from .evaluation.evaluate_model import evaluate_saved_student
from .pipeline import run_distillation
from .reporting.card import update_card
from .reporting.card_figures import FIGURES
from .training.arguments import DataArguments, ModelArguments
from .training.config import HeteroAKDConfig

# The teacher trains long enough to lead the student it distils by at least 0.05 mIoU (tests/test_demo.py),
# the whole demo staying within 5 min on 2 CPU cores.
TEACHER_STEPS = 3000
STUDENT_STEPS = 150


def tiny_segformer(num_labels: int, **config: Any) -> SegformerForSemanticSegmentation:
    """A Segformer with MiT-b0's widths and one block per stage, randomly initialised; ``config``
    overrides any other ``SegformerConfig`` field."""
    config = SegformerConfig(
        **{
            "hidden_sizes": [32, 64, 160, 256],
            "depths": [1, 1, 1, 1],
            "num_attention_heads": [1, 2, 5, 8],
            "decoder_hidden_size": 128,
            "num_labels": num_labels,
            "id2label": dict(enumerate(CLASS_NAMES)),
            "label2id": {name: i for i, name in enumerate(CLASS_NAMES)},
            **config,
        }
    )
    return SegformerForSemanticSegmentation(config)


def demo_args(output_dir: Path, method: str, steps: int, learning_rate: float, batch_size: int) -> HeteroAKDConfig:
    """One of the demo's runs: polynomial decay, evaluated four times (the card's mIoU curve), never saved midway."""
    return HeteroAKDConfig(
        output_dir=str(output_dir),
        distill_method=method,
        max_steps=steps,
        learning_rate=learning_rate,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=16,
        lr_scheduler_type="polynomial",
        warmup_steps=0.05,
        logging_steps=max(steps // 10, 1),
        eval_strategy="steps",
        eval_steps=max(steps // 4, 1),
        save_strategy="no",
        report_to="none",
        do_train=True,
        do_eval=True,
        dataloader_num_workers=0,
        seed=0,
        overwrite_output_dir=True,
    )


def run_demo(
    output_dir: str = "outputs/demo",
    teacher_steps: int = TEACHER_STEPS,
    student_steps: int = STUDENT_STEPS,
    num_train: int = 512,
    num_validation: int = 64,
    batch_size: int = 8,
) -> dict[str, float]:
    out = Path(output_dir)
    data_dir = make_synthetic_dataset(out / "data", num_train=num_train, num_validation=num_validation)
    data_args = DataArguments(dataset=str(data_dir), crop_size=[64], scale_range=[0.75, 1.5])
    init = out / "teacher_init"
    tiny_segformer(len(CLASS_NAMES)).save_pretrained(init)
    SegformerImageProcessor(do_resize=False).save_pretrained(init)
    teacher_metrics = run_distillation(
        ModelArguments(student=str(init)),
        data_args,
        demo_args(out / "teacher", "none", teacher_steps, 6e-4, batch_size),
    )
    student_metrics = run_distillation(
        ModelArguments(teacher=str(out / "teacher"), student="resnet18", student_pretrained_backbone=False),
        data_args,
        demo_args(out / "student", "heteroakd", student_steps, 1e-3, batch_size),
    )
    update_card(str(out / "student"), teacher_results=str(out / "teacher"))  # the card compares with the teacher
    reloaded = evaluate_saved_student(str(out / "student"), str(data_dir), "validation")
    reported = json.loads((out / "student" / "all_results.json").read_text())["eval_mean_iou"]
    if not math.isclose(reloaded["mean_iou"], reported, abs_tol=1e-4):
        raise RuntimeError(f"the saved student gives mIoU {reloaded['mean_iou']:.4f}, the run reported {reported:.4f}")
    summary = {
        "teacher_mean_iou": teacher_metrics["eval_mean_iou"],
        "student_mean_iou": student_metrics["eval_mean_iou"],
        "student_reloaded_mean_iou": reloaded["mean_iou"],
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    report(summary, out / "student")
    return summary


def report(summary: dict[str, float], student: Path) -> None:
    print("\n".join(f"{k:>26}: {v:.4f}" for k, v in summary.items()))
    print(f"student saved to {student} (model card: {student / 'README.md'})")
    figures = [str(student / name) for name in FIGURES if (student / name).is_file()]
    print(f"its pictures: {', '.join(figures)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/demo")
    parser.add_argument("--teacher_steps", type=int, default=TEACHER_STEPS)
    parser.add_argument("--student_steps", type=int, default=STUDENT_STEPS)
    run_demo(**vars(parser.parse_args()))


if __name__ == "__main__":
    main()
