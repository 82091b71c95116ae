"""The data of a run, from its ``DataArguments``: the dataset loaded, its classes agreed with the model's, and
each split as a dataset of transformed samples. Training (``run_distillation``) and evaluation
(``run_evaluation``) both read their data through here."""

from __future__ import annotations

import datasets
from transformers import PreTrainedModel

from ..core.errors import HeteroAKDError
from ..core.labels import id2label_of
from ..data.loading import SegmentationData
from ..data.presets import load_data
from ..data.samples import SegmentationDataset, StreamingSegmentationDataset, check_label_range, first_rows
from ..data.transforms import PairTransform
from .arguments import DataArguments


def resolve_id2label(
    dataset_labels: dict[int, str] | None, model: PreTrainedModel | None, role: str = "teacher"
) -> dict[int, str]:
    """The run's classes: the dataset's, which ``model``'s (the teacher's, or the evaluated model's) must
    equal, order included; ``model``'s when the dataset names none."""
    model_labels = id2label_of(model.config) if model is not None else None
    if dataset_labels is None and model_labels is None:
        raise HeteroAKDError(
            f"the dataset has no id2label.json and there is no {role} to take the classes from; "
            'add id2label.json ({"0": "road", ...}) to the dataset'
        )
    if dataset_labels is None:
        return model_labels
    if model_labels is not None and model_labels != dataset_labels:
        diff = [
            f"{i}: dataset {dataset_labels.get(i)!r} vs {role} {model_labels.get(i)!r}"
            for i in sorted(set(dataset_labels) | set(model_labels))
            if dataset_labels.get(i) != model_labels.get(i)
        ]
        fix = (
            "pick a teacher fine-tuned on this dataset" if role == "teacher" else "evaluate on the dataset it predicts"
        )
        raise HeteroAKDError(
            f"the {role}'s classes differ from the dataset's ("
            + "; ".join(diff[:10])
            + (f"; and {len(diff) - 10} more" if len(diff) > 10 else "")
            + f"): {fix}"
        )
    return dataset_labels


def build_split(
    data: SegmentationData,
    data_args: DataArguments,
    name: str,
    transform: PairTransform,
    num_labels: int,
    ignore_index: int,
    max_samples: int | None,
) -> SegmentationDataset | StreamingSegmentationDataset:
    """The split ``name`` of ``data`` as a dataset of transformed samples, its labels checked first."""
    if name not in data.splits:
        raise HeteroAKDError(
            f"the dataset has no split {name!r} (it has {sorted(data.splits)}); "
            "choose one with --train_split / --eval_split"
        )
    split = data.splits[name]
    if isinstance(split, datasets.Dataset) and len(split) == 0:
        raise HeteroAKDError(
            f"the split {name!r} of the dataset has no rows: add images to it, or choose another split"
        )
    if max_samples is not None:
        split = first_rows(split, max_samples)
    if not data_args.skip_bad_samples:
        check_label_range(split, num_labels, ignore_index, name, data_args.label_check_samples, data.label_transform)
    if data_args.streaming:
        return StreamingSegmentationDataset(
            split,
            transform,
            num_labels,
            ignore_index,
            name,
            data.label_transform,
            data_args.skip_bad_samples,
            shuffle_buffer=data_args.streaming_shuffle_buffer,
        )
    return SegmentationDataset(
        split, transform, num_labels, ignore_index, name, data.label_transform, data_args.skip_bad_samples
    )


def load_data_args(data_args: DataArguments) -> SegmentationData:
    """The dataset ``data_args`` names (a preset, Hub id or folder), with its columns and mask conversion."""
    return load_data(
        data_args.source,
        data_args.dataset_config_name,
        data_args.image_column_name,
        data_args.label_column_name,
        data_args.reduce_labels,
        streaming=data_args.streaming,
    )
