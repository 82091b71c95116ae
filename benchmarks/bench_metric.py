"""Streaming MeanIoU vs the per-image reference definition of `evaluate`'s mean_iou.

    python benchmarks/bench_metric.py [--images 8] [--height 512] [--width 1024] [--classes 19]

Both run on the same random predictions; the reference is the numpy per-image implementation
the tests check the metric against (``evaluate.load("mean_iou")`` needs the Hub). The last line
is the headline: the speed ratio, with the results equal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_heteroakd.metrics import MeanIoU  # noqa: E402
from tests.test_metrics import reference_mean_iou  # noqa: E402


def median_seconds(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.images, args.height, args.width)
    predictions = rng.integers(0, args.classes, size=shape)
    labels = rng.integers(0, args.classes, size=shape)
    labels[rng.random(shape) < 0.1] = 255
    pred_t, label_t = torch.from_numpy(predictions), torch.from_numpy(labels)

    result = {}

    def streaming():
        metric = MeanIoU(args.classes)
        metric.update(pred_t, label_t)
        result["ours"] = metric.compute()

    def reference():
        result["reference"] = reference_mean_iou(list(predictions), list(labels), args.classes, 255)

    ours = median_seconds(streaming, args.repeats)
    ref = median_seconds(reference, args.repeats)
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
        assert np.isclose(result["ours"][key], result["reference"][key], rtol=1e-12), key
    assert np.allclose(result["ours"]["per_category_iou"], result["reference"]["per_category_iou"], rtol=1e-12)

    print(f"{args.images} predictions of {args.height}x{args.width}, {args.classes} classes, median of {args.repeats}")
    print(f"{'implementation':<34}{'seconds':>10}")
    print(f"{'streaming MeanIoU (bincount)':<34}{ours:>10.4f}")
    print(f"{'per-image reference (np.histogram)':<34}{ref:>10.4f}")
    print(f"identical results; streaming is {ref / ours:.1f}x faster than the reference")


if __name__ == "__main__":
    main()
