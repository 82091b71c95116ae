"""Streaming mean IoU for semantic segmentation.

:class:`MeanIoU` reproduces the result of the ``evaluate`` library's ``mean_iou``
metric (same keys, same values, same NaN semantics) but never stores the
predictions: every ``update`` folds a batch into a confusion matrix with one histogram
(torch's bincount) on the device of the inputs,
so evaluation memory is ``O(num_labels**2)`` whatever the size of the evaluation set.

Definition followed (``evaluate``'s ``mean_iou``), per pixel:

* reference pixels equal to ``-100`` (the padding value the ``transformers``
  ``Trainer`` uses when it gathers batches across processes) are always ignored;
* ``label_map`` (optional) then ``reduce_labels`` (label ``0 -> 255``,
  ``label -= 1``, ``254 -> 255``) are applied to the references;
* pixels whose reference equals ``ignore_index`` are ignored;
* for each class ``c`` in ``[0, num_labels)``: ``intersect[c]`` counts valid pixels
  with ``pred == ref == c``, ``area_pred[c]`` valid pixels with ``pred == c``,
  ``area_label[c]`` valid pixels with ``ref == c``. Values outside
  ``[0, num_labels)`` fall outside these histograms: an out-of-range prediction
  still counts in the ``area_label`` of its reference, an out-of-range (and not
  ignored) reference still counts in the ``area_pred`` of its prediction;
* ``iou = intersect / (area_pred + area_label - intersect)``,
  ``acc = intersect / area_label`` (NaN for 0/0), ``mean_iou = nanmean(iou)``,
  ``mean_accuracy = nanmean(acc)``,
  ``overall_accuracy = intersect.sum() / area_label.sum()``.

Internally the matrix is ``(num_labels + 1) x (num_labels + 1)`` (rows: reference,
columns: prediction); index ``num_labels`` is an "other" bucket collecting every
out-of-range value, which makes the rules above fall out of row/column sums. The rules
are applied to the bins of a histogram of (reference value, prediction value) pairs, not
to every pixel.

:class:`MeanIoUForTrainer` wraps it as a ``compute_metrics`` callable for
``transformers.Trainer`` (works with and without ``batch_eval_metrics=True``).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["MeanIoU", "MeanIoUForTrainer", "TRAINER_PAD_INDEX", "flatten_mean_iou"]

#: Value the ``Trainer`` uses to pad labels/predictions across processes; always ignored.
TRAINER_PAD_INDEX = -100

ArrayLike = Any  # np.ndarray | torch.Tensor | nested sequences of ints


# An ``evaluate`` module of MeanIoU, loaded by path: ``evaluate.load(EVALUATE_MODULE)``.
EVALUATE_MODULE = str(Path(__file__).with_name("streaming_mean_iou.py"))


def _integer_tensor(x: ArrayLike, device: torch.device) -> torch.Tensor:
    """An integer label map (any shape) as a tensor on ``device``, sharing memory where it can."""
    if not isinstance(x, torch.Tensor):
        arr = np.asarray(x)
        if arr.dtype.kind not in "biu":
            raise TypeError(f"MeanIoU expects integer label maps, got numpy dtype {arr.dtype}")
        x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # torch warns on read-only memory
    elif x.is_floating_point() or x.is_complex():
        raise TypeError(
            f"MeanIoU expects integer label maps, got torch dtype {x.dtype} "
            "(argmax the logits first, e.g. in `preprocess_logits_for_metrics`)"
        )
    if x.dtype in (torch.uint16, torch.uint32, torch.uint64):  # torch has few kernels for these
        x = x.to(torch.int64)
    return x.detach().to(device)


def _clamped_as(x: torch.Tensor, low: int, high: int, dtype: torch.dtype) -> torch.Tensor:
    """``x`` (integers) flattened, clamped to ``[low, high]`` and stored as ``dtype`` (which holds that range): a new
    tensor, ``x`` is never written to."""
    x, info = x.reshape(-1), torch.iinfo(dtype)
    if x.dtype == torch.bool or x.numel() == 0:
        narrow = True
    elif info.min <= torch.iinfo(x.dtype).min and torch.iinfo(x.dtype).max <= info.max:
        narrow = True  # every value of x's type fits
    elif x.device.type == "cpu":
        # On the CPU a range check plus a narrowing cast reads int64 maps ~5x faster than torch's int64 clamp; on
        # an accelerator the check would cost a host-device sync, and clamping first is cheap.
        smallest, largest = torch.aminmax(x)
        narrow = info.min <= int(smallest) and int(largest) <= info.max
    else:
        narrow = False
    if narrow:
        return x.to(dtype, copy=True).clamp_(low, high)
    return x.clamp(low, high).to(dtype)


class MeanIoU:
    """Streaming, device-agnostic equivalent of ``evaluate.load("mean_iou")``.

    Args:
        num_labels: number of classes ``n``; classes are ``0 .. n-1``.
        ignore_index: reference value ignored (after ``reduce_labels``), as in ``evaluate``.
        reduce_labels: ``evaluate``'s ``reduce_labels`` (label ``0 -> 255``, others ``-1``,
            ``254 -> 255``), for datasets where 0 is background.
        label_map: optional ``{old_id: new_id}`` applied to the references before
            ``reduce_labels``; as in current ``evaluate``, every mapping reads the original ids.

    Example::

        metric = MeanIoU(num_labels=150, ignore_index=255, reduce_labels=True)
        for preds, labels in batches:      # (N, H, W) integer maps, CPU or GPU
            metric.update(preds, labels)
        metric.compute()["mean_iou"]
    """

    def __init__(
        self,
        num_labels: int,
        ignore_index: int = 255,
        reduce_labels: bool = False,
        label_map: Mapping[int, int] | None = None,
    ) -> None:
        if int(num_labels) < 1:
            raise ValueError(f"num_labels must be >= 1, got {num_labels}")
        self.num_labels = int(num_labels)
        self.ignore_index = int(ignore_index)
        self.reduce_labels = bool(reduce_labels)
        self.label_map = dict(label_map) if label_map is not None else None
        self._confusion_matrix: torch.Tensor | None = None
        # Every rule of the definition is a function of a pixel's reference value and of its prediction value
        # alone: update() counts (reference, prediction) value pairs, reference values clipped to [lo, hi] and
        # predictions to [-1, n], then maps these bins (not the pixels) to matrix cells. [lo, hi] holds every
        # special value with a margin of 2 (reduce_labels shifts values by one), so a value beyond a bound
        # follows the same rules as the bound: out of range, counted as "other". (hi - lo + 1) * (n + 2) bins:
        # 7,560 for 19 classes and the usual ids.
        n = self.num_labels
        special = [TRAINER_PAD_INDEX, self.ignore_index, 0, 255, n, *(self.label_map or {})]
        self._lo, self._hi = min(special) - 2, max(special) + 2
        rows = self._reference_rows(torch.arange(self._lo, self._hi + 1))  # (R,) in [0, n + 1]
        cols = torch.tensor([n, *range(n), n])  # of prediction values -1 .. n: -1 and n are "other"
        # (R * (n + 2),): the flat cell of each bin; ignored references (row n + 1) land past the matrix.
        self._bin_cells = (rows[:, None] * (n + 1) + cols).clamp_max((n + 1) ** 2).reshape(-1)

    # ------------------------------------------------------------------ state
    @property
    def confusion_matrix(self) -> torch.Tensor:
        """Accumulated counts, int64 tensor of shape ``(num_labels + 1, num_labels + 1)``.

        ``confusion_matrix[r, p]`` counts valid pixels with reference ``r`` and prediction
        ``p``; row/column ``num_labels`` gathers out-of-range values. It lives on the device
        of the first batch; all-reduce (sum) it across processes before :meth:`compute`
        when each process saw a different shard, e.g.
        ``torch.distributed.all_reduce(metric.confusion_matrix)`` (in place).
        """
        if self._confusion_matrix is None:
            self._confusion_matrix = self._zeros(torch.device("cpu"))
        return self._confusion_matrix

    @confusion_matrix.setter
    def confusion_matrix(self, value: torch.Tensor) -> None:
        size = self.num_labels + 1
        value = torch.as_tensor(value)
        if tuple(value.shape) != (size, size):
            raise ValueError(f"confusion_matrix must have shape {(size, size)}, got {tuple(value.shape)}")
        self._confusion_matrix = value.to(torch.int64)

    def _zeros(self, device: torch.device) -> torch.Tensor:
        size = self.num_labels + 1
        return torch.zeros((size, size), dtype=torch.int64, device=device)

    def reset(self) -> None:
        """Forget everything accumulated so far."""
        self._confusion_matrix = None

    # ----------------------------------------------------------------- update
    def update(self, predictions: ArrayLike, references: ArrayLike) -> None:
        """Accumulate one batch.

        Args:
            predictions: integer label map(s), any shape, e.g. ``(N, H, W)`` or ``(H, W)``;
                numpy array or torch tensor (CPU or GPU).
            references: integer ground truth of the same shape as ``predictions``.
        """
        device = references.device if isinstance(references, torch.Tensor) else torch.device("cpu")
        refs, preds = _integer_tensor(references, device), _integer_tensor(predictions, device)
        if preds.shape != refs.shape:
            raise ValueError(
                f"predictions and references must have the same shape, got {tuple(preds.shape)} "
                f"and {tuple(refs.shape)}"
            )
        n, width, bins = self.num_labels, self.num_labels + 2, len(self._bin_cells)
        # The narrowest type that holds every bin: int16 for the usual ids, so each pass moves 2 bytes a pixel.
        dtype = next(t for t in (torch.int16, torch.int32, torch.int64) if bins <= torch.iinfo(t).max)
        # The bin of each pixel's (reference, prediction) value pair, from 0: (ref - lo) * width + pred + 1.
        index = torch.add(_clamped_as(preds, -1, n, dtype), _clamped_as(refs, self._lo, self._hi, dtype), alpha=width)
        index += 1 - self._lo * width
        counts = torch.bincount(index, minlength=bins)
        if self._bin_cells.device != counts.device:
            self._bin_cells = self._bin_cells.to(counts.device)
        cells = torch.zeros((n + 1) ** 2 + 1, dtype=torch.int64, device=counts.device)
        counts = cells.index_add_(0, self._bin_cells, counts)[:-1].reshape(n + 1, n + 1)

        if self._confusion_matrix is None:
            self._confusion_matrix = counts
        else:
            self._confusion_matrix += counts.to(self._confusion_matrix.device)

    def _reference_rows(self, refs: torch.Tensor) -> torch.Tensor:
        """The matrix row of each reference value of ``refs`` (1-D int64): its class in ``[0, n)``, ``n``
        ("other") when out of range after the mappings, ``n + 1`` when padding or ignored."""
        n = self.num_labels
        valid = refs != TRAINER_PAD_INDEX  # before any mapping: -100 is padding, never a label
        if self.label_map:
            mapped = refs.clone()
            for old_id, new_id in self.label_map.items():  # all look-ups use the original ids
                mapped[refs == old_id] = new_id
            refs = mapped
        if self.reduce_labels:
            refs = torch.where(refs == 0, 255, refs - 1)
            refs = torch.where(refs == 254, 255, refs)
        valid &= refs != self.ignore_index
        rows = torch.where((refs >= 0) & (refs < n), refs, n)
        return torch.where(valid, rows, n + 1)

    # ---------------------------------------------------------------- compute
    def compute(self) -> dict[str, Any]:
        """Return ``evaluate``'s ``mean_iou`` result for everything accumulated.

        Returns:
            ``{"mean_iou": float, "mean_accuracy": float, "overall_accuracy": float,
            "per_category_iou": np.ndarray (num_labels,) float64,
            "per_category_accuracy": np.ndarray (num_labels,) float64}``; classes absent from
            both predictions and references get NaN IoU, classes absent from the references
            get NaN accuracy (as in ``evaluate``).
        """
        n = self.num_labels
        cm = self.confusion_matrix.detach().cpu().numpy().astype(np.float64)
        intersect = np.diag(cm)[:n]
        area_label = cm[:n, :].sum(axis=1)
        area_pred = cm[:, :n].sum(axis=0)
        union = area_pred + area_label - intersect
        with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", category=RuntimeWarning)  # nanmean of all-NaN
            iou = intersect / union
            acc = intersect / area_label
            overall = intersect.sum() / area_label.sum()
            mean_iou = np.nanmean(iou)
            mean_acc = np.nanmean(acc)
        return {
            "mean_iou": float(mean_iou),
            "mean_accuracy": float(mean_acc),
            "overall_accuracy": float(overall),
            "per_category_iou": iou,
            "per_category_accuracy": acc,
        }


def flatten_mean_iou(result: dict[str, Any], id2label: Mapping[int | str, str] | None = None) -> dict[str, float]:
    """:meth:`MeanIoU.compute`'s result as scalars for logging: the three means, then
    ``iou_<name>`` and ``accuracy_<name>`` per class, named by ``id2label`` (int or str keys) or index."""

    def name(index: int) -> str:
        if id2label is None:
            return str(index)
        return str(id2label[index] if index in id2label else id2label.get(str(index), index))

    flat = {key: float(result[key]) for key in ("mean_iou", "mean_accuracy", "overall_accuracy")}
    flat.update({f"iou_{name(i)}": float(v) for i, v in enumerate(result["per_category_iou"])})
    flat.update({f"accuracy_{name(i)}": float(v) for i, v in enumerate(result["per_category_accuracy"])})
    return flat


class MeanIoUForTrainer:
    """``compute_metrics`` for ``transformers.Trainer`` backed by a streaming :class:`MeanIoU`.

    Use with ``TrainingArgs(batch_eval_metrics=True)`` and a
    ``preprocess_logits_for_metrics`` that turns logits into label maps of the label size
    (``(N, H, W)`` integers). The Trainer calls ``fn(eval_pred, compute_result=...)`` once per
    batch; every call accumulates ``eval_pred.predictions`` / ``eval_pred.label_ids``
    (numpy or torch). When ``compute_result`` is True the flattened result is returned and
    the state is reset for the next evaluation. Without ``batch_eval_metrics`` the Trainer
    calls it once with all predictions and no ``compute_result``, which defaults to True.

    Returned keys: ``mean_iou``, ``mean_accuracy``, ``overall_accuracy`` and, per class,
    ``iou_<name>`` / ``accuracy_<name>`` with names from ``id2label`` (int or str keys, as in
    a model config) or the class index. Per-class NaN values stay ``float("nan")``.

    Args:
        num_labels: number of classes.
        ignore_index, reduce_labels, label_map: see :class:`MeanIoU`.
        id2label: optional ``{class_id: name}`` used to name the per-class entries.
    """

    def __init__(
        self,
        num_labels: int,
        ignore_index: int = 255,
        reduce_labels: bool = False,
        id2label: Mapping[int | str, str] | None = None,
        label_map: Mapping[int, int] | None = None,
    ) -> None:
        self.metric = MeanIoU(
            num_labels,
            ignore_index=ignore_index,
            reduce_labels=reduce_labels,
            label_map=label_map,
        )
        self.id2label = dict(id2label) if id2label is not None else None

    def __call__(self, eval_pred: Any, compute_result: bool = True) -> dict[str, float]:
        """Accumulate ``eval_pred`` (``.predictions`` and ``.label_ids`` of shape ``(N, H, W)``).

        Returns the flattened metrics (and resets) when ``compute_result`` is True, else ``{}``.
        """
        if hasattr(eval_pred, "predictions"):
            predictions, labels = eval_pred.predictions, eval_pred.label_ids
        else:  # plain (predictions, labels) tuple
            predictions, labels = eval_pred[0], eval_pred[1]
        if isinstance(predictions, (tuple, list)):  # model returned several outputs
            predictions = predictions[0]
        if isinstance(labels, (tuple, list)):
            labels = labels[0]
        self.metric.update(predictions, labels)
        if not compute_result:
            return {}
        return self.compute()

    def compute(self) -> dict[str, float]:
        """Flattened result of the accumulated state, then reset."""
        result = self.metric.compute()
        self.metric.reset()
        return flatten_mean_iou(result, self.id2label)

    def reset(self) -> None:
        """Drop the accumulated state."""
        self.metric.reset()
