"""``EvaluationArguments``: the flags of ``recipes/evaluate_model.py``, and only those.

Evaluating reads a model, a dataset split, the evaluation window, batch size, precision, worker processes,
the output folder and the reporting; none of the training flags. A flag the distillation recipe also has
is the same field here (name, default, range and help, taken from ``DataArguments``, ``HeteroAKDConfig``
or ``TrainingArguments``), and the command builds the ``DataArguments`` and the ``TrainingArguments``
its loaders and ``Trainer`` take from these flags (:meth:`EvaluationArguments.data_arguments`,
:meth:`EvaluationArguments.training_arguments`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from ..core.errors import HeteroAKDError
from ..networks.teachers import allow_pickle_weights_field, trust_remote_code_field
from ..training.argument_checks import check_fields, eval_window
from ..training.arguments import DataArguments
from ..training.config import HeteroAKDConfig


def field_of(cls: type, name: str, help: str | None = None) -> Any:
    """A field declared as ``cls``'s field ``name`` (default, range, help), or with another ``help``."""
    source = next(f for f in dataclasses.fields(cls) if f.name == name)
    metadata = {**source.metadata, **({"help": help} if help is not None else {})}
    if source.default_factory is not dataclasses.MISSING:
        return field(default_factory=source.default_factory, metadata=metadata)
    return field(default=source.default, metadata=metadata)


# The flags evaluation shares with the distillation recipe, by the dataclass that declares them there.
DATA_FLAGS = (
    "dataset",
    "dataset_config_name",
    "eval_split",
    "image_column_name",
    "label_column_name",
    "max_eval_samples",
    "label_check_samples",
    "reduce_labels",
    "skip_bad_samples",
    "streaming",
)
WINDOW_FLAGS = ("eval_crop_size", "eval_stride", "eval_flip", "ignore_index")
TRAINER_FLAGS = (
    "output_dir",
    "per_device_eval_batch_size",
    "bf16",
    "fp16",
    "dataloader_num_workers",
    "report_to",
    "run_name",
    "log_level",
    "disable_tqdm",
)


@dataclass
class EvaluationArguments:
    model: str = field(
        default=None,
        metadata={
            "help": "Path or Hub id of the AutoModelForSemanticSegmentation checkpoint to evaluate: a saved "
            "student, a teacher, any semantic-segmentation model."
        },
    )
    dataset: str = field_of(DataArguments, "dataset")
    dataset_config_name: str | None = field_of(DataArguments, "dataset_config_name")
    eval_split: str | None = field_of(DataArguments, "eval_split")
    image_column_name: str | None = field_of(DataArguments, "image_column_name")
    label_column_name: str | None = field_of(DataArguments, "label_column_name")
    max_eval_samples: int | None = field_of(DataArguments, "max_eval_samples")
    label_check_samples: int = field_of(
        DataArguments,
        "label_check_samples",
        help="Rows of the split whose label values are checked before evaluating.",
    )
    reduce_labels: bool = field_of(DataArguments, "reduce_labels")
    skip_bad_samples: bool = field_of(DataArguments, "skip_bad_samples")
    streaming: bool = field_of(
        DataArguments,
        "streaming",
        help="Stream the split (load_dataset(..., streaming=True)) instead of downloading it first.",
    )
    eval_crop_size: list[int] | None = field_of(HeteroAKDConfig, "eval_crop_size")
    eval_stride: list[int] | None = field_of(HeteroAKDConfig, "eval_stride")
    eval_flip: bool = field_of(HeteroAKDConfig, "eval_flip")
    ignore_index: int = field_of(HeteroAKDConfig, "ignore_index")
    output_dir: str | None = field_of(
        TrainingArguments,
        "output_dir",
        help="Folder of eval_results.json, mean_iou.json and per_class_iou.md; unset: trainer_output.",
    )
    per_device_eval_batch_size: int = field_of(TrainingArguments, "per_device_eval_batch_size")
    bf16: bool = field_of(TrainingArguments, "bf16", help="Evaluate in bfloat16 mixed precision.")
    fp16: bool = field_of(TrainingArguments, "fp16", help="Evaluate in float16 mixed precision.")
    dataloader_num_workers: int = field_of(TrainingArguments, "dataloader_num_workers")
    report_to: None | str | list[str] = field_of(TrainingArguments, "report_to")
    run_name: str | None = field_of(TrainingArguments, "run_name")
    log_level: str = field_of(TrainingArguments, "log_level")
    disable_tqdm: bool | None = field_of(TrainingArguments, "disable_tqdm")
    trust_remote_code: bool = trust_remote_code_field()
    allow_pickle_weights: bool = allow_pickle_weights_field()

    def __post_init__(self) -> None:
        if self.model is None:
            raise HeteroAKDError("--model is required: the path or Hub id of a semantic-segmentation checkpoint")
        check_fields(self)
        self.eval_crop_size, self.eval_stride = eval_window(self.eval_crop_size, self.eval_stride)

    def data_arguments(self) -> DataArguments:
        """The dataset flags, as the loaders take them (checked there: ``--dataset`` is required)."""
        return DataArguments(**{name: getattr(self, name) for name in DATA_FLAGS})

    def training_arguments(self) -> HeteroAKDConfig:
        """The ``TrainingArguments`` of an evaluation-only ``Trainer``: no method, no training."""
        flags = {name: getattr(self, name) for name in (*WINDOW_FLAGS, *TRAINER_FLAGS)}
        return HeteroAKDConfig(**flags, distill_method="none", do_train=False, do_eval=True, num_visualized_images=0)
