"""Evaluation throughput: batches of equal-sized images against one image at a time.

    python benchmarks/bench_eval.py [--images 8] [--height 512] [--width 1024] [--batch 4] [--panels 4]

A random-init ResNet-18 DeepLabV3 student (output stride 8) evaluates, through the recipe's
``--do_eval`` path, two synthetic splits: every image ``height`` x ``width`` (Cityscapes-sized), and
the same images cropped to three heights. Each split runs with ``--per_device_eval_batch_size 1`` and
``--batch``, without prediction panels; then the equal-sized split once more with ``--panels``
panels drawn (``--num_visualized_images``). Printed per row: images/s; last lines: the
batched/one-at-a-time ratio per split, how much the mean IoU changed with the batch size, and the
time drawing the panels takes at each evaluation, as a number of evaluated images. A random-init
model's top two logits are close at many pixels, so the last bits that batched kernels round
differently can flip a few of them (a change near 1e-5 on equal-sized images); padding changes the
predictions themselves.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_heteroakd import HeteroAKDConfig, build_student  # noqa: E402
from hf_heteroakd.pipeline import DataArguments, ModelArguments, run_distillation  # noqa: E402
from hf_heteroakd.reporting.prediction_panels import PredictionPanelsCallback  # noqa: E402

NUM_LABELS = 19


def write_split(root: Path, images: int, heights: list[int], width: int) -> Path:
    """A Hub-layout folder whose validation split holds ``images`` random images of the given heights."""
    rng = np.random.default_rng(0)
    rows = {"image": [], "label": []}
    for i in range(images):
        height = heights[i % len(heights)]
        rows["image"].append(Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)))
        rows["label"].append(Image.fromarray(rng.integers(0, NUM_LABELS, (height, width), dtype=np.uint8)))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Image()})
    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(root / "data" / "validation-00000-of-00001.parquet")
    (root / "id2label.json").write_text(json.dumps({str(i): f"class {i}" for i in range(NUM_LABELS)}))
    return root


def evaluate(student: Path, dataset: Path, batch: int, out: Path, panels: int = 0) -> dict[str, float]:
    """The student's evaluation on the split, through the recipe's evaluation, drawing ``panels`` prediction
    panels: images/s and seconds of the evaluation loop, mean IoU, and seconds spent drawing the panels."""
    args = HeteroAKDConfig(
        output_dir=str(out),
        distill_method="none",
        do_eval=True,
        per_device_eval_batch_size=batch,
        num_visualized_images=panels,
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    drawing: list[float] = []
    draw = PredictionPanelsCallback.on_evaluate

    def timed_draw(self, *args, **kwargs) -> None:
        start = time.perf_counter()
        draw(self, *args, **kwargs)
        drawing.append(time.perf_counter() - start)

    PredictionPanelsCallback.on_evaluate = timed_draw
    try:
        metrics = run_distillation(ModelArguments(student=str(student)), DataArguments(dataset=str(dataset)), args)
    finally:
        PredictionPanelsCallback.on_evaluate = draw
    return {
        "speed": metrics["eval_samples_per_second"],
        "runtime": metrics["eval_runtime"],
        "miou": metrics["eval_mean_iou"],
        "drawing": sum(drawing),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--panels", type=int, default=4, help="--num_visualized_images of the drawing row")
    args = parser.parse_args()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        student = tmp / "student"
        build_student(
            "resnet18", {i: f"class {i}" for i in range(NUM_LABELS)}, pretrained_backbone=False
        ).save_pretrained(student)
        splits = {
            "equal sizes": write_split(tmp / "equal", args.images, [args.height], args.width),
            "three sizes": write_split(
                tmp / "mixed", args.images, [args.height, args.height * 3 // 4, args.height * 7 // 8], args.width
            ),
        }
        print(f"{args.images} images, {args.width} wide, {torch.get_num_threads()} threads")
        summary = []
        for name, dataset in splits.items():
            rows = {batch: evaluate(student, dataset, batch, tmp / f"out-{name}-{batch}") for batch in (1, args.batch)}
            for batch, row in rows.items():
                print(f"{name:12s} batch {batch}: {row['speed']:6.2f} images/s  mean IoU {row['miou']:.9f}")
            ratio = rows[args.batch]["speed"] / rows[1]["speed"]
            change = abs(rows[args.batch]["miou"] - rows[1]["miou"])
            summary.append(
                f"{name}: batch {args.batch} / batch 1 = {ratio:.2f}x images/s, mean IoU changed by {change:.1e}"
            )
        drawn = evaluate(student, splits["equal sizes"], args.batch, tmp / "out-panels", args.panels)
        print(
            f"equal sizes  batch {args.batch}: {drawn['speed']:6.2f} images/s, then {drawn['drawing']:.2f} s "
            f"drawing {args.panels} prediction panels"
        )
        per_image = drawn["runtime"] / args.images
        summary.append(
            f"drawing {args.panels} panels: {drawn['drawing']:.2f} s per evaluation = the time of "
            f"{drawn['drawing'] / per_image:.1f} evaluated images"
        )
        print("\n".join(summary))


if __name__ == "__main__":
    main()
