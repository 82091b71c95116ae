"""The whole run behind ``recipes/run_distill.py``: data, teacher, student, train, evaluate, save."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import datasets
import transformers
from transformers import PreTrainedModel, SegformerImageProcessor, TrainerCallback, set_seed

from .argument_checks import check_run_arguments
from .arguments import DataArguments, ModelArguments
from .card import write_model_card
from .checkpoints import resolve_checkpoint
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
from .errors import HeteroAKDError
from .hub import push_student
from .labels import id2label_of
from .methods import method_class
from .normalization import Normalization, model_normalization, renormalizer
from .prediction_panels import PredictionPanelsCallback
from .preflight import preflight
from .presets import load_data
from .run_summary import run_summary
from .students import build_student, checkpoint_id2label
from .teachers import DTYPES, load_teacher, resolve_teacher
from .trainer import HeteroAKDTrainer
from .visualize import palette_for

logger = logging.getLogger(__name__)


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
    if training_args.do_train:  # a damaged checkpoint stops the run before anything loads
        training_args.resume_from_checkpoint = resolve_checkpoint(
            training_args.resume_from_checkpoint, training_args.output_dir
        )
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
            raise HeteroAKDError(f"--distill_method {training_args.distill_method} needs --teacher (a path or Hub id)")
        dtype = None if model_args.teacher_dtype == "auto" else DTYPES[model_args.teacher_dtype]
        model_args.teacher = resolve_teacher(model_args.teacher, data_args.source, data.id2label)
        teacher = load_teacher(
            model_args.teacher, dtype, model_args.trust_remote_code, model_args.allow_pickle_weights
        )
    dataset_labels = (
        data.id2label
        if data.id2label is not None or teacher is not None
        else (
            checkpoint_id2label(model_args.student)  # a saved student carries its classes
        )
    )
    id2label = resolve_id2label(dataset_labels, teacher)
    student = build_student(
        model_args.student,
        id2label,
        model_args.student_pretrained_backbone,
        model_args.student_head,
        model_args.student_output_stride,
        model_args.allow_pickle_weights,
    )
    return Models(student, teacher, id2label)


def build_datasets(
    data: SegmentationData,
    data_args: DataArguments,
    training_args: HeteroAKDConfig,
    normalization: Normalization,
    num_labels: int,
) -> dict[str, SegmentationDataset | StreamingSegmentationDataset]:
    """The splits the run needs (training with ``--do_train``, evaluation with ``--do_eval``), transformed."""
    mean, std = normalization
    transforms = {
        data_args.train_split: eval_transforms(mean, std)
        if data_args.no_augmentation
        else train_transforms(
            tuple(data_args.crop_size),
            tuple(data_args.scale_range),
            mean,
            std,
            training_args.ignore_index,
            photometric_distortion=data_args.photometric_distortion,
        ),
        data_args.eval_split: eval_transforms(mean, std),
    }
    limits = {data_args.train_split: data_args.max_train_samples, data_args.eval_split: data_args.max_eval_samples}
    wanted = [
        name
        for name, needed in (
            (data_args.train_split, training_args.do_train),
            (data_args.eval_split, training_args.do_eval),
        )
        if needed
    ]
    return {
        name: build_split(
            data, data_args, name, transforms[name], num_labels, training_args.ignore_index, limits[name]
        )
        for name in wanted
    }


def build_trainer(
    models: Models,
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: HeteroAKDConfig,
    data: SegmentationData,
    callbacks: list[TrainerCallback] | None = None,
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
        do_resize=False,
        do_rescale=True,
        do_normalize=True,
        image_mean=list(mean),
        image_std=list(std),
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
    if training_args.num_visualized_images > 0 and trainer.eval_dataset is not None:
        palette = palette_for(data_args.source.family(models.id2label), len(models.id2label))
        panels = PredictionPanelsCallback(trainer, models.id2label, palette, training_args.num_visualized_images)
        trainer.add_callback(panels)
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
    summary = run_summary(
        trainer.student, trainer.teacher, model_args, data_args, training_args, hub_model_id=trainer.hub_model_id
    )
    write_model_card(training_args.output_dir, summary)
    if training_args.push_to_hub and trainer.is_world_process_zero():  # the only push: student files + card
        push_student(
            training_args.output_dir,
            trainer.hub_model_id,
            training_args.hub_token,
            training_args.hub_private_repo,
            training_args.hub_revision,
        )
