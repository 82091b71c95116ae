"""Streaming MeanIoU vs ``evaluate``'s ``mean_iou``, on the same random predictions.

    python benchmarks/bench_metric.py [--images 8] [--batch 2] [--height 512] [--width 1024] [--classes 19] \
        [--repeats 9]
                                      [--baseline OLD_METRICS_PY]

Rows, each fed the same int64 maps batch by batch (argmax output and collated labels), results asserted equal:

* this library's streaming ``MeanIoU`` (``update`` per batch, ``compute`` at the end), with torch's threads;
* the same with torch at one thread (numpy, under every other row, uses one);
* ``evaluate.load("mean_iou")`` with ``add_batch`` per batch and ``compute()``, when the metric script can be
  fetched from the Hub. Offline it cannot, and the row is evaluate's ``EvaluationModule`` with mean_iou's
  declared features (the metric script itself needs the Hub): a module defined here that declares the same
  features as the Hub script (``datasets.Image()`` for predictions and references, since evaluate 0.4.2), so
  ``add_batch`` encodes every map into evaluate's Arrow table and ``compute()`` decodes them back, as the real
  one does, then runs the per-image numpy reference of the tests (the definition the script implements);
* the same module with the declaration of evaluate < 0.4.2, ``Sequence(Sequence(Value("uint16")))``;
* the bare per-image numpy reference (``np.histogram`` per image), no storage;
* with ``--baseline FILE``, the ``MeanIoU`` of another version of ``hf_heteroakd/core/metrics.py`` (e.g.
  ``git show REV:hf_heteroakd/core/metrics.py > old.py``), to measure a change before and after in one run.

The last line is the headline: the speed ratios against the evaluate path and against the bare numpy loop.
"""

from __future__ import annotations

import argparse
import importlib.util
import random
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_heteroakd.core.metrics import MeanIoU  # noqa: E402
from tests.test_metrics import reference_mean_iou  # noqa: E402

KEYS = ("mean_iou", "mean_accuracy", "overall_accuracy", "per_category_iou", "per_category_accuracy")
STREAMING, BARE = "streaming MeanIoU (this library)", "bare numpy per-image loop (np.histogram)"
ONE_THREAD = "  same, torch at 1 thread"
EVALUATE_PATH = "evaluate's EvaluationModule with mean_iou's declared features"


def evaluate_modules() -> dict[str, object]:
    """``{row name: evaluate module}``: the Hub's mean_iou when it loads, else one with its declared features;
    and one with the declaration of evaluate < 0.4.2. Empty when ``evaluate`` is not installed."""
    try:
        import datasets
        import evaluate
    except ImportError:
        return {}

    class DeclaredMeanIoU(evaluate.Metric):
        """evaluate's storage path with mean_iou's declared features, the tests' numpy reference as the computation.

        Its MetricInfo declares the Hub script's features; the prose fields (description, citation) are not
        copied, and only the features shape what add_batch and compute do."""

        FEATURES = datasets.Features({"predictions": datasets.Image(), "references": datasets.Image()})

        def _info(self):
            return evaluate.MetricInfo(
                description="mean IoU, evaluate's definition",
                citation="",
                inputs_description="",
                features=self.FEATURES,
            )

        def _compute(self, predictions, references, num_labels, ignore_index):
            return reference_mean_iou(predictions, references, num_labels, ignore_index)

    class LegacyDeclaredMeanIoU(DeclaredMeanIoU):
        MAP = datasets.Sequence(datasets.Sequence(datasets.Value("uint16")))  # (H, W) as nested lists of uint16
        FEATURES = datasets.Features({"predictions": MAP, "references": MAP})

    try:
        modules = {'evaluate.load("mean_iou")': evaluate.load("mean_iou")}
    except Exception:  # the script lives on the Hub: offline, or no access
        modules = {f"{EVALUATE_PATH} (Image)": DeclaredMeanIoU()}
    modules["  same, declared as before evaluate 0.4.2 (Sequence(Sequence(uint16)))"] = LegacyDeclaredMeanIoU()
    return modules


def metric_class_from(path: str) -> type:
    """The ``MeanIoU`` class defined in the file at ``path``."""
    spec = importlib.util.spec_from_file_location("baseline_metrics", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.MeanIoU


def timed_side_by_side(rows: dict, repeats: int) -> dict[str, tuple[float, object]]:
    """``{row: (median seconds, last result)}``: a warm-up call of each row, then ``repeats`` rounds that call every
    row once, in an order shuffled each round, so that neither the machine's changing load nor the state the row
    before leaves behind (caches, the allocator's free memory) weighs on one row more than on another."""
    results = {name: fn() for name, fn in rows.items()}
    times = {name: [] for name in rows}
    order, shuffle = list(rows), random.Random(0).shuffle
    for _ in range(repeats):
        shuffle(order)
        for name in order:
            start = time.perf_counter()
            results[name] = rows[name]()
            times[name].append(time.perf_counter() - start)
    return {name: (statistics.median(times[name]), results[name]) for name in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=512)
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--baseline", help="another version of hf_heteroakd/core/metrics.py, timed as one more row")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    shape = (args.images, args.height, args.width)
    predictions = rng.integers(0, args.classes, size=shape)
    labels = rng.integers(0, args.classes, size=shape)
    labels[rng.random(shape) < 0.1] = 255
    batches = [
        (predictions[i : i + args.batch], labels[i : i + args.batch]) for i in range(0, args.images, args.batch)
    ]

    def streaming_with(metric_class: type, **options):
        def run():
            metric = metric_class(args.classes, **options)
            for preds, refs in batches:
                metric.update(torch.from_numpy(preds), torch.from_numpy(refs))
            return metric.compute()

        return run

    def at_one_thread(run):
        def run_at_one_thread():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                return run()
            finally:
                torch.set_num_threads(threads)

        return run_at_one_thread

    streaming = streaming_with(MeanIoU)

    def with_evaluate(module):
        def run():
            for preds, refs in batches:
                module.add_batch(predictions=preds, references=refs)
            return module.compute(num_labels=args.classes, ignore_index=255)

        return run

    def bare_numpy():
        return reference_mean_iou(list(predictions), list(labels), args.classes, 255)

    modules = evaluate_modules()
    rows = {STREAMING: streaming, ONE_THREAD: at_one_thread(streaming)}
    if args.baseline:
        rows[f"  MeanIoU of {args.baseline}"] = streaming_with(metric_class_from(args.baseline))
    rows.update({name: with_evaluate(module) for name, module in modules.items()})
    rows[BARE] = bare_numpy
    with warnings.catch_warnings():  # datasets warns that it stores int64 maps as int32 images, for Pillow
        warnings.simplefilter("ignore", UserWarning)
        timings = timed_side_by_side(rows, args.repeats)
    for name, (_, result) in timings.items():
        for key in KEYS:  # the same counts, divided the same way: equal to the last bit
            np.testing.assert_array_equal(timings[STREAMING][1][key], result[key], err_msg=f"{name}: {key}")

    print(
        f"{args.images} predictions of {args.height}x{args.width} (int64), {args.classes} classes, "
        f"fed in batches of {args.batch}; median of {args.repeats} rounds in shuffled order; "
        f"torch at {torch.get_num_threads()} threads"
    )
    width = max(map(len, rows)) + 2
    print(f"{'implementation':<{width}}{'seconds':>9}{'/ streaming':>13}")
    ours = timings[STREAMING][0]
    for name, (seconds, _) in timings.items():
        print(f"{name:<{width}}{seconds:>9.4f}{seconds / ours:>12.1f}x")
    if f"{EVALUATE_PATH} (Image)" in modules:
        print('(the metric script itself needs the Hub: evaluate.load("mean_iou") could not load it here)')
    reference = next(iter(modules), None)

    def ratios(row: str, row_one_thread: str) -> str:
        against = [f"{timings[reference][0] / timings[row][0]:.1f}x as fast as {reference}"] if reference else []
        against.append(f"{timings[BARE][0] / timings[row][0]:.1f}x as fast as the {BARE}")
        return " and ".join(against) + f" ({timings[BARE][0] / timings[row_one_thread][0]:.1f}x at 1 thread)"

    print(f"identical results; streaming is {ratios(STREAMING, ONE_THREAD)}")


if __name__ == "__main__":
    main()
