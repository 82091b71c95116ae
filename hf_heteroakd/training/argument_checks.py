"""Valid ranges of the numeric flags, and the one check of the parsed arguments before any work.

A field states its range in its metadata (``metadata={"help": ..., "bound": at_least(0)}``), where
``--help`` shows it; :func:`check_fields` checks every bounded field of a dataclass instance (the
dataclasses call it from ``__post_init__``), :func:`check_run_arguments` the flags that combine.
Every failure is a :class:`HeteroAKDError` that names the flag, the value and the range.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from transformers import HfArgumentParser

from ..core.errors import HeteroAKDError
from ..methods.registry import method_class


@dataclass(frozen=True)
class Bound:
    """Values in [low, high] (either side open or absent), or one of ``choices``."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[int, ...] | None = None

    def __contains__(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            return False
        if self.choices is not None:
            return value in self.choices
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        return above and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        low = None if self.low is None else f"{'>' if self.low_open else '≥'} {self.low:g}"
        if self.high is None:
            return low
        return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}]" if low else f"≤ {self.high:g}"


def at_least(low: float) -> Bound:
    return Bound(low=low)


POSITIVE = Bound(low=0, low_open=True)
NON_NEGATIVE = at_least(0)
COUNT = at_least(1)

# Inherited TrainingArguments flags whose bad values would fail deep inside torch or train silently wrong.
TRAINING_ARGUMENT_BOUNDS: dict[str, Bound] = {
    "learning_rate": NON_NEGATIVE,
    "weight_decay": NON_NEGATIVE,
    "adam_beta1": Bound(0, 1),
    "adam_beta2": Bound(0, 1),
    "adam_epsilon": POSITIVE,
    "max_grad_norm": NON_NEGATIVE,
    "num_train_epochs": POSITIVE,
    "warmup_steps": NON_NEGATIVE,
    "per_device_train_batch_size": COUNT,
    "per_device_eval_batch_size": COUNT,
    "gradient_accumulation_steps": COUNT,
    "dataloader_num_workers": NON_NEGATIVE,
    "seed": NON_NEGATIVE,
}


# Field metadata read by this project, not by argparse: the valid range, and the methods a field configures.
OWN_METADATA = ("bound", "methods")


def bound_of(field: dataclasses.Field) -> Bound | None:
    return field.metadata.get("bound") or TRAINING_ARGUMENT_BOUNDS.get(field.name)


def check_fields(arguments: Any) -> None:
    """Raises if a bounded field of the dataclass instance ``arguments`` holds a value outside its range
    (each element, for a list); None is always valid (unset)."""
    for field in dataclasses.fields(arguments):
        bound, value = bound_of(field), getattr(arguments, field.name)
        if bound is None or value is None:
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(v not in bound for v in values):
            raise HeteroAKDError(f"--{field.name} {_shown(value)} is out of range: it must be {bound}")


def check_length(name: str, value: Sequence | None, lengths: tuple[int, ...], meaning: str) -> None:
    if value is not None and len(value) not in lengths:
        raise HeteroAKDError(f"--{name} {_shown(value)} has {len(value)} values; it takes {meaning}")


def check_run_arguments(model_args: Any, data_args: Any, training_args: Any) -> None:
    """The flags that combine, for a distillation run (each dataclass has checked its own fields)."""
    augmented = training_args.do_train and not data_args.no_augmentation
    if training_args.teacher_logits_cache is not None and augmented:
        raise HeteroAKDError(
            "--teacher_logits_cache stores one teacher output per training image, but random scale, crop and flip "
            "change the images every epoch: add --no_augmentation (train on the images as they are)"
        )
    if data_args.streaming and training_args.do_train and training_args.max_steps <= 0:
        raise HeteroAKDError(
            "--streaming gives a training set of unknown length, so epochs cannot be counted: set --max_steps"
        )
    if data_args.streaming and training_args.teacher_logits_cache is not None and training_args.do_train:
        raise HeteroAKDError(
            "--teacher_logits_cache looks teacher outputs up by row index, which a stream does not have: "
            "drop --streaming or --teacher_logits_cache"
        )
    stride = training_args.hakd_stride
    uses_stages = method_class(training_args.distill_method).uses_stage_features
    if uses_stages and augmented and stride is not None and stride > min(data_args.crop_size):
        raise HeteroAKDError(
            f"--hakd_stride {stride} is larger than the training crop {_shown(data_args.crop_size)}: the "
            "projected maps would be compared on less than one cell; use a stride ≤ the crop"
        )


def eval_window(crop_size: list[int] | None, stride: list[int] | None) -> tuple[list[int] | None, list[int] | None]:
    """``--eval_crop_size`` and ``--eval_stride`` checked, each as (height, width) (one value: a square)."""
    window = {"eval_crop_size": crop_size, "eval_stride": stride}
    for name, value in window.items():
        check_length(name, value, (1, 2), "one value (square) or two (height width)")
        if value is not None and len(value) == 1:
            window[name] = value * 2
    check_eval_window(window["eval_crop_size"], window["eval_stride"])
    return window["eval_crop_size"], window["eval_stride"]


def check_eval_window(crop_size: list[int] | None, stride: list[int] | None) -> None:
    """Sliding-window evaluation: a stride needs a window, and never exceeds it (pixels would be skipped)."""
    if stride is None:
        return
    if crop_size is None:
        raise HeteroAKDError("--eval_stride sets the step of sliding windows: add --eval_crop_size (their size)")
    if any(s > c for s, c in zip(stride, crop_size)):
        raise HeteroAKDError(
            f"--eval_stride {_shown(stride)} is larger than --eval_crop_size {_shown(crop_size)}: pixels between "
            "windows would never be predicted; use a stride ≤ the window"
        )


class ArgumentParser(HfArgumentParser):
    """``HfArgumentParser`` that shows each field's range in ``--help`` and keeps this project's metadata keys
    (``OWN_METADATA``) from argparse."""

    @staticmethod
    def _parse_dataclass_field(parser, field: dataclasses.Field) -> None:
        metadata = {k: v for k, v in field.metadata.items() if k not in OWN_METADATA}
        if (bound := bound_of(field)) is not None:
            metadata["help"] = f"{metadata.get('help', '').rstrip()} Range: {bound}.".lstrip()
        HfArgumentParser._parse_dataclass_field(parser, _with_metadata(field, metadata))


def _with_metadata(field: dataclasses.Field, metadata: dict[str, Any]) -> dataclasses.Field:
    """A copy of ``field`` with other metadata (a Field's metadata is a read-only mapping)."""
    copied = copy.copy(field)
    copied.metadata = types.MappingProxyType(metadata)
    return copied


def _shown(value: Any) -> str:
    return " ".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
