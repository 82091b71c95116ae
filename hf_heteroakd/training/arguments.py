"""The flags of a run's models and data: ``ModelArguments`` and ``DataArguments`` (``--help`` lists them;
``HeteroAKDConfig`` holds the training and distillation flags), and the sliding-window flags that evaluation
and prediction share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from ..core.errors import HeteroAKDError
from ..data.presets import PRESETS, DatasetSource, resolve_dataset
from ..networks.teachers import allow_pickle_weights_field, trust_remote_code_field
from .argument_checks import COUNT, NON_NEGATIVE, POSITIVE, Bound, check_fields, check_length

# The sliding-window flags of evaluation (HeteroAKDConfig) and prediction (PredictArguments), defined once;
# each dataclass checks them with argument_checks.eval_window.


def eval_crop_size_field() -> Any:
    return field(
        default=None,
        metadata={"bound": COUNT, "help": "Predict in sliding windows of this size (H W); unset: whole images."},
    )


def eval_stride_field() -> Any:
    return field(
        default=None,
        metadata={"bound": COUNT, "help": "Stride of the sliding windows (H W); default 2/3 of --eval_crop_size."},
    )


def eval_flip_field() -> Any:
    return field(default=False, metadata={"help": "Average predictions with horizontally flipped images."})


@dataclass
class ModelArguments:
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Teacher: path or Hub id of an AutoModelForSemanticSegmentation checkpoint "
            "or an alias: nvidia/segformer-b0 … b5 pick the checkpoint fine-tuned on the dataset "
            "(Cityscapes, ADE20K). Not needed with --distill_method none."
        },
    )
    student: str = field(
        default="resnet18",
        metadata={
            "help": "Student: a timm CNN name (resnet18, mobilenetv2_100, …; DeepLabV3 or PSPNet head), "
            "mit-b0 … mit-b5 (Segformer), upernet-<timm name>, or a path / Hub id of an "
            "AutoModelForSemanticSegmentation checkpoint."
        },
    )
    student_head: Literal["deeplabv3", "pspnet"] = field(
        default="deeplabv3", metadata={"help": "Decode head of a timm CNN student."}
    )
    student_output_stride: int = field(
        default=8, metadata={"bound": Bound(choices=(8, 16, 32)), "help": "Output stride of a timm CNN student."}
    )
    student_pretrained_backbone: bool = field(
        default=True,
        metadata={
            "help": "Start the student's backbone from pretrained weights (timm ImageNet weights, or "
            "nvidia/mit-bX for mit-bX); needs the Hub or its cache. False: random init."
        },
    )
    preflight_only: bool = field(
        default=False, metadata={"help": "Check the run on one batch of each split, print the findings and stop."}
    )
    trust_remote_code: bool = trust_remote_code_field("a teacher checkpoint")
    allow_pickle_weights: bool = allow_pickle_weights_field("teacher/student checkpoints")
    teacher_dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto", metadata={"help": "Teacher precision; auto: bfloat16 on GPUs that support it, else float32."}
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class DataArguments:
    dataset: str = field(
        default=None,
        metadata={
            "help": f"A preset ({', '.join(PRESETS)}), a Hub dataset id, or a local folder in the Hub's "
            "layout (parquet/imagefolder)."
        },
    )
    dataset_config_name: str | None = field(default=None, metadata={"help": "The dataset's configuration name."})
    train_split: str | None = field(
        default=None, metadata={"help": "Split to train on (default: the preset's, else train)."}
    )
    eval_split: str | None = field(
        default=None, metadata={"help": "Split to evaluate on (default: the preset's, else validation)."}
    )
    image_column_name: str | None = field(
        default=None, metadata={"help": "Image column (default: the preset's, else auto-detected)."}
    )
    label_column_name: str | None = field(
        default=None, metadata={"help": "Label-map column (default: the preset's, else auto-detected)."}
    )
    crop_size: list[int] | None = field(
        default=None,
        metadata={
            "bound": COUNT,
            "help": "Training crop, height width (one value: square); default: the preset's, else 512 512.",
        },
    )
    scale_range: list[float] = field(
        default_factory=lambda: [0.5, 2.0],
        metadata={"bound": POSITIVE, "help": "Random scale range of training images, min max."},
    )
    max_train_samples: int | None = field(
        default=None, metadata={"bound": COUNT, "help": "Use only the first N training rows."}
    )
    max_eval_samples: int | None = field(
        default=None, metadata={"bound": COUNT, "help": "Use only the first N evaluation rows."}
    )
    label_check_samples: int = field(
        default=32,
        metadata={"bound": NON_NEGATIVE, "help": "Rows of each split whose label values are checked before training."},
    )
    reduce_labels: bool = field(
        default=False,
        metadata={
            "help": "Masks use 0 for unlabeled and 1..C for the classes: map 0 -> 255, c -> c - 1 "
            "(not for presets, which convert their own masks)."
        },
    )
    photometric_distortion: bool = field(
        default=False, metadata={"help": "Random brightness, contrast, saturation and hue changes of training images."}
    )
    no_augmentation: bool = field(
        default=False,
        metadata={
            "help": "Train on the images as they are, like evaluation (no random scale, crop or flip; "
            "--crop_size and --scale_range unused): the fixed inputs --teacher_logits_cache needs."
        },
    )
    skip_bad_samples: bool = field(
        default=False,
        metadata={
            "help": "Skip (and count, with a warning each) samples that cannot be decoded, whose mask does not "
            "match the image, or whose labels are out of range, instead of stopping."
        },
    )
    streaming: bool = field(
        default=False,
        metadata={
            "help": "Stream the dataset (load_dataset(..., streaming=True)) instead of downloading it first, "
            "for datasets too big to download; needs --max_steps."
        },
    )
    streaming_shuffle_buffer: int = field(
        default=1000,
        metadata={"bound": COUNT, "help": "With --streaming: rows in the buffer that shuffles the training stream."},
    )

    @property
    def source(self) -> DatasetSource:
        """``dataset`` resolved: the one place it is matched against the presets (loading, the teacher alias
        and the model card read this)."""
        return resolve_dataset(self.dataset)

    def __post_init__(self) -> None:
        check_fields(self)
        check_length("crop_size", self.crop_size, (1, 2), "one value (square) or two (height width)")
        check_length("scale_range", self.scale_range, (2,), "two: the minimum and the maximum scale")
        if self.scale_range[0] > self.scale_range[1]:
            raise HeteroAKDError(
                f"--scale_range {self.scale_range[0]} {self.scale_range[1]}: the minimum is larger than the maximum"
            )
        if self.dataset is None:
            raise HeteroAKDError(
                "--dataset is required: a preset, a Hub dataset id or a local folder in the Hub's layout"
            )
        preset = self.source.preset  # unset values: the preset's, else the generic defaults
        if self.train_split is None:
            self.train_split = preset.train_split if preset else "train"
        if self.eval_split is None:
            self.eval_split = preset.eval_split if preset else "validation"
        if self.crop_size is None:
            self.crop_size = list(preset.crop_size) if preset else [512, 512]
        if len(self.crop_size) == 1:
            self.crop_size = self.crop_size * 2
        if self.no_augmentation and self.photometric_distortion:
            raise HeteroAKDError("--photometric_distortion is an augmentation: drop it or --no_augmentation")
