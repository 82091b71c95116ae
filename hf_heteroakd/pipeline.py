"""The whole run behind ``recipes/run_distill.py``: data, teacher, student, train, evaluate, save."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Literal

import datasets
import transformers
from transformers import PreTrainedModel, SegformerImageProcessor, TrainerCallback, set_seed

from .card import write_model_card
from .config import HeteroAKDConfig
from .data import (
    PairTransform,
    SegmentationData,
    SegmentationDataset,
    StreamingSegmentationDataset,
    check_label_range,
    collate_segmentation,
    eval_transforms,
    first_image_size,
    first_rows,
    train_transforms,
)
from .argument_checks import COUNT, NON_NEGATIVE, POSITIVE, Bound, check_fields, check_length, check_run_arguments
from .errors import HeteroAKDError
from .hub import push_student
from .methods import method_class
from .presets import PRESETS, DatasetSource, load_data, resolve_dataset
from .normalization import Normalization, model_normalization, renormalizer
from .preflight import preflight
from .students import build_student, checkpoint_id2label
from .teachers import DTYPES, load_teacher, resolve_teacher
from .trainer import HeteroAKDTrainer

logger = logging.getLogger(__name__)



@dataclass
class ModelArguments:
    teacher: str | None = field(
        default=None,
        metadata={"help": "Teacher: path or Hub id of an AutoModelForSemanticSegmentation checkpoint "
                  "or an alias: nvidia/segformer-b0 … b5 pick the checkpoint fine-tuned on the dataset "
                  "(Cityscapes, ADE20K). Not needed with --distill_method none."},
    )
    student: str = field(
        default="resnet18",
        metadata={"help": "Student: a timm CNN name (resnet18, mobilenetv2_100, …; DeepLabV3 or PSPNet head), "
                  "mit-b0 … mit-b5 (Segformer), upernet-<timm name>, or a path / Hub id of an "
                  "AutoModelForSemanticSegmentation checkpoint."},
    )
    student_head: Literal["deeplabv3", "pspnet"] = field(
        default="deeplabv3", metadata={"help": "Decode head of a timm CNN student."}
    )
    student_output_stride: int = field(default=8, metadata={"bound": Bound(choices=(8, 16, 32)), "help": "Output stride of a timm CNN student."})
    student_pretrained_backbone: bool = field(
        default=True,
        metadata={"help": "Start the student's backbone from pretrained weights (timm ImageNet weights, or "
                  "nvidia/mit-bX for mit-bX); needs the Hub or its cache. False: random init."},
    )
    preflight_only: bool = field(
        default=False, metadata={"help": "Check the run on one batch of each split, print the findings and stop."}
    )
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Allow a teacher checkpoint's own modeling code to run (off by default)."}
    )
    allow_pickle_weights: bool = field(
        default=False,
        metadata={"help": "Also load teacher/student checkpoints that ship only pickle (.bin) weights, with torch's "
                  "weights_only unpickler. Off: safetensors weights only."},
    )
    teacher_dtype: Literal["auto", "float32", "bfloat16", "float16"] = field(
        default="auto", metadata={"help": "Teacher precision; auto: bfloat16 on GPUs that support it, else float32."}
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass
class DataArguments:
    dataset: str = field(
        default=None,
        metadata={"help": f"A preset ({', '.join(PRESETS)}), a Hub dataset id, or a local folder in the Hub's "
                  "layout (parquet/imagefolder)."},
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
        metadata={"bound": COUNT, "help": "Training crop, height width (one value: square); default: the preset's, else 512 512."},
    )
    scale_range: list[float] = field(
        default_factory=lambda: [0.5, 2.0], metadata={"bound": POSITIVE, "help": "Random scale range of training images, min max."}
    )
    max_train_samples: int | None = field(default=None, metadata={"bound": COUNT, "help": "Use only the first N training rows."})
    max_eval_samples: int | None = field(default=None, metadata={"bound": COUNT, "help": "Use only the first N evaluation rows."})
    label_check_samples: int = field(
        default=32, metadata={"bound": NON_NEGATIVE, "help": "Rows of each split whose label values are checked before training."}
    )
    reduce_labels: bool = field(
        default=False,
        metadata={"help": "Masks use 0 for unlabeled and 1..C for the classes: map 0 -> 255, c -> c - 1 "
                  "(not for presets, which convert their own masks)."},
    )
    photometric_distortion: bool = field(
        default=False, metadata={"help": "Random brightness, contrast, saturation and hue changes of training images."}
    )
    no_augmentation: bool = field(
        default=False,
        metadata={"help": "Train on the images as they are, like evaluation (no random scale, crop or flip; "
                  "--crop_size and --scale_range unused): the fixed inputs --teacher_logits_cache needs."},
    )
    skip_bad_samples: bool = field(
        default=False,
        metadata={"help": "Skip (and count, with a warning each) samples that cannot be decoded, whose mask does not "
                  "match the image, or whose labels are out of range, instead of stopping."},
    )
    streaming: bool = field(
        default=False,
        metadata={"help": "Stream the dataset (load_dataset(..., streaming=True)) instead of downloading it first, "
                  "for datasets too big to download; needs --max_steps."},
    )
    streaming_shuffle_buffer: int = field(
        default=1000, metadata={"bound": COUNT, "help": "With --streaming: rows in the buffer that shuffles the training stream."}
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


def resolve_id2label(
    dataset_labels: dict[int, str] | None, model: PreTrainedModel | None, role: str = "teacher"
) -> dict[int, str]:
    """The run's classes: the dataset's, which ``model``'s (the teacher's, or the evaluated model's) must
    equal, order included; ``model``'s when the dataset names none."""
    model_labels = {int(k): v for k, v in model.config.id2label.items()} if model is not None else None
    if dataset_labels is None and model_labels is None:
        raise HeteroAKDError(
            f"the dataset has no id2label.json and there is no {role} to take the classes from; "
            "add id2label.json ({\"0\": \"road\", ...}) to the dataset"
        )
    if dataset_labels is None:
        return model_labels
    if model_labels is not None and model_labels != dataset_labels:
        diff = [
            f"{i}: dataset {dataset_labels.get(i)!r} vs {role} {model_labels.get(i)!r}"
            for i in sorted(set(dataset_labels) | set(model_labels))
            if dataset_labels.get(i) != model_labels.get(i)
        ]
        fix = "pick a teacher fine-tuned on this dataset" if role == "teacher" else "evaluate on the dataset it predicts"
        raise HeteroAKDError(
            f"the {role}'s classes differ from the dataset's (" + "; ".join(diff[:10])
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
        raise HeteroAKDError(f"the split {name!r} of the dataset has no rows: add images to it, or choose another split")
    if max_samples is not None:
        split = first_rows(split, max_samples)
    if not data_args.skip_bad_samples:
        check_label_range(split, num_labels, ignore_index, name, data_args.label_check_samples, data.label_transform)
    if data_args.streaming:
        return StreamingSegmentationDataset(
            split, transform, num_labels, ignore_index, name, data.label_transform, data_args.skip_bad_samples,
            shuffle_buffer=data_args.streaming_shuffle_buffer,
        )
    return SegmentationDataset(
        split, transform, num_labels, ignore_index, name, data.label_transform, data_args.skip_bad_samples
    )


def load_data_args(data_args: DataArguments) -> SegmentationData:
    """The dataset ``data_args`` names (a preset, Hub id or folder), with its columns and mask conversion."""
    return load_data(
        data_args.source, data_args.dataset_config_name, data_args.image_column_name, data_args.label_column_name,
        data_args.reduce_labels, streaming=data_args.streaming,
    )


def check_output_dir(training_args: HeteroAKDConfig) -> None:
    """Training never writes over another run's files unless asked to."""
    out = Path(training_args.output_dir)
    if not training_args.do_train or training_args.overwrite_output_dir or training_args.resume_from_checkpoint:
        return
    existing = sorted(p.name for p in out.iterdir()) if out.is_dir() else []
    if existing:
        raise HeteroAKDError(
            f"--output_dir {out} already holds files ({', '.join(existing[:4])}{', …' if len(existing) > 4 else ''}): "
            "pass --overwrite_output_dir to write over them, --resume_from_checkpoint to continue that run, "
            "or choose another --output_dir"
        )


@dataclass
class Models:
    """A run's models: the student, the frozen teacher (None without one) and their classes."""

    student: PreTrainedModel
    teacher: PreTrainedModel | None
    id2label: dict[int, str]


def run_distillation(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: HeteroAKDConfig,
    callbacks: list[TrainerCallback] | None = None,
) -> dict[str, float]:
    """Loads everything, trains and/or evaluates, saves the student; returns the final metrics."""
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    check_output_dir(training_args)
    check_run_arguments(model_args, data_args, training_args)
    set_seed(training_args.seed)

    data = load_data_args(data_args)
    models = load_models(model_args, data_args, training_args, data)
    trainer = build_trainer(models, model_args, data_args, training_args, data, callbacks)
    if model_args.preflight_only:
        return {}
    metrics = train_and_evaluate(trainer, training_args)
    save_and_publish(trainer, model_args, data_args, training_args)
    return metrics


def load_models(
    model_args: ModelArguments, data_args: DataArguments, training_args: HeteroAKDConfig, data: SegmentationData
) -> Models:
    """The teacher (when the method uses one) and the student, predicting the run's classes."""
    teacher = None
    if method_class(training_args.distill_method).uses_teacher:
        if model_args.teacher is None:
            raise HeteroAKDError(
                f"--distill_method {training_args.distill_method} needs --teacher (a path or Hub id)"
            )
        dtype = None if model_args.teacher_dtype == "auto" else DTYPES[model_args.teacher_dtype]
        model_args.teacher = resolve_teacher(model_args.teacher, data_args.source, data.id2label)
        teacher = load_teacher(
            model_args.teacher, dtype, model_args.trust_remote_code, model_args.allow_pickle_weights
        )
    dataset_labels = data.id2label if data.id2label is not None or teacher is not None else (
        checkpoint_id2label(model_args.student)  # a saved student carries its classes
    )
    id2label = resolve_id2label(dataset_labels, teacher)
    student = build_student(
        model_args.student, id2label, model_args.student_pretrained_backbone, model_args.student_head,
        model_args.student_output_stride, model_args.allow_pickle_weights,
    )
    return Models(student, teacher, id2label)


def build_datasets(
    data: SegmentationData, data_args: DataArguments, training_args: HeteroAKDConfig, normalization: Normalization,
    num_labels: int,
) -> dict[str, SegmentationDataset | StreamingSegmentationDataset]:
    """The splits the run needs (training with ``--do_train``, evaluation with ``--do_eval``), transformed."""
    mean, std = normalization
    transforms = {
        data_args.train_split: eval_transforms(mean, std) if data_args.no_augmentation else train_transforms(
            tuple(data_args.crop_size), tuple(data_args.scale_range), mean, std, training_args.ignore_index,
            photometric_distortion=data_args.photometric_distortion,
        ),
        data_args.eval_split: eval_transforms(mean, std),
    }
    limits = {data_args.train_split: data_args.max_train_samples, data_args.eval_split: data_args.max_eval_samples}
    wanted = [name for name, needed in ((data_args.train_split, training_args.do_train),
                                        (data_args.eval_split, training_args.do_eval)) if needed]
    return {
        name: build_split(data, data_args, name, transforms[name], num_labels, training_args.ignore_index, limits[name])
        for name in wanted
    }


def build_trainer(
    models: Models, model_args: ModelArguments, data_args: DataArguments, training_args: HeteroAKDConfig,
    data: SegmentationData, callbacks: list[TrainerCallback] | None = None,
) -> HeteroAKDTrainer:
    """The trainer of the run, checked on one batch of each split (the preflight report is printed with
    ``--preflight_only``)."""
    normalization = model_normalization(models.student, model_args.student)
    teacher_input_transform = None
    if models.teacher is not None:
        teacher_input_transform = renormalizer(normalization, model_normalization(models.teacher, model_args.teacher))
    splits = build_datasets(data, data_args, training_args, normalization, len(models.id2label))
    mean, std = normalization
    processor = SegformerImageProcessor(
        do_resize=False, do_rescale=True, do_normalize=True, image_mean=list(mean), image_std=list(std),
        do_reduce_labels=False,
    )
    trainer = HeteroAKDTrainer(
        model=models.student,
        teacher_model=models.teacher,
        args=training_args,
        train_dataset=splits.get(data_args.train_split),
        eval_dataset=splits.get(data_args.eval_split),
        data_collator=partial(collate_segmentation, ignore_index=training_args.ignore_index),
        processing_class=processor,
        teacher_input_transform=teacher_input_transform,
        callbacks=callbacks,
    )
    image_size = first_image_size(splits[data_args.train_split].split) if data_args.train_split in splits else None
    crop_size = None if data_args.no_augmentation else tuple(data_args.crop_size)
    report = preflight(trainer, crop_size, image_size)
    if model_args.preflight_only:
        print("\n".join(["preflight:", *report]))
    return trainer


def train_and_evaluate(trainer: HeteroAKDTrainer, training_args: HeteroAKDConfig) -> dict[str, float]:
    """``--do_train`` (the student saved with the trainer's state) then ``--do_eval``; their metrics."""
    metrics: dict[str, float] = {}
    if training_args.do_train:
        result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
        if trainer.nonfinite_stop is not None:
            raise HeteroAKDError(
                f"training stopped: {trainer.nonfinite_stop}; lower --learning_rate or the loss weights, or use "
                "--bf16 instead of --fp16, then continue with --resume_from_checkpoint"
            )
        trainer.save_model()
        trainer.log_metrics("train", result.metrics)
        trainer.save_metrics("train", result.metrics)
        trainer.save_state()
        metrics.update(result.metrics)
    if training_args.do_eval:
        eval_metrics = trainer.evaluate()
        trainer.log_metrics("eval", eval_metrics)
        trainer.save_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)
    return metrics


def save_and_publish(
    trainer: HeteroAKDTrainer, model_args: ModelArguments, data_args: DataArguments, training_args: HeteroAKDConfig
) -> None:
    """After training: the model card beside the student and, with ``--push_to_hub``, the one upload."""
    if not (training_args.do_train and trainer.args.should_save):
        return
    write_model_card(
        training_args.output_dir, trainer.student, trainer.teacher, model_args, data_args, training_args,
        hub_model_id=trainer.hub_model_id,
    )
    if training_args.push_to_hub and trainer.is_world_process_zero():  # the only push: student files + card
        push_student(training_args.output_dir, trainer.hub_model_id, training_args.hub_token,
                     training_args.hub_private_repo, training_args.hub_revision)
