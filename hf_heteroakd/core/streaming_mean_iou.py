"""hf-heteroakd's streaming mean IoU as an ``evaluate`` module, for users of the ``evaluate`` library.

    import evaluate
    from hf_heteroakd.core.metrics import EVALUATE_MODULE

    metric = evaluate.load(EVALUATE_MODULE)  # a local file: no Hub access
    metric.add_batch(predictions=[prediction], references=[label])  # (H, W) integer maps
    metric.compute(num_labels=19, ignore_index=255)

The arguments and the result are those of ``evaluate.load("mean_iou")``; the counting is
:class:`hf_heteroakd.core.metrics.MeanIoU`'s, one confusion matrix for all images.
"""

from __future__ import annotations

from typing import Any

import datasets
import evaluate
import numpy as np

from hf_heteroakd.core.metrics import MeanIoU

_DESCRIPTION = "Mean intersection over union of semantic-segmentation maps, counted in one confusion matrix."
_INPUTS = """
Args:
    predictions: predicted class maps, each (H, W) of integers.
    references: reference class maps of the same sizes.
    num_labels: number of classes.
    ignore_index: reference value that is not scored.
    nan_to_num: replaces NaN values (classes absent from references and predictions) when given.
    label_map: {old id: new id} applied to the references first.
    reduce_labels: maps reference 0 to 255 and every other value c to c - 1 (0 = background).
Returns:
    mean_iou, mean_accuracy, overall_accuracy, per_category_iou, per_category_accuracy.
"""
_MAP = datasets.Sequence(datasets.Sequence(datasets.Value("int64")))


class StreamingMeanIoU(evaluate.Metric):
    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_INPUTS,
            features=datasets.Features({"predictions": _MAP, "references": _MAP}),
        )

    def _compute(
        self,
        predictions: list,
        references: list,
        num_labels: int,
        ignore_index: int,
        nan_to_num: float | None = None,
        label_map: dict[int, int] | None = None,
        reduce_labels: bool = False,
    ) -> dict[str, Any]:
        metric = MeanIoU(num_labels, ignore_index, reduce_labels=reduce_labels, label_map=label_map)
        for prediction, reference in zip(predictions, references):
            metric.update(np.asarray(prediction), np.asarray(reference))
        result = metric.compute()
        if nan_to_num is not None:
            result = {key: np.nan_to_num(value, nan=nan_to_num) for key, value in result.items()}
        return result
