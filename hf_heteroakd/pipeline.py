"""The whole run behind ``recipes/run_distill.py``: data, teacher, student, train, evaluate, save."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import transformers
from transformers import PreTrainedModel, SegformerImageProcessor, TrainerCallback, set_seed

from .core.errors import HeteroAKDError
from .data.loading import SegmentationData
from .data.normalization import Normalization, model_normalization, renormalizer
from .data.samples import SegmentationDataset, StreamingSegmentationDataset, collate_segmentation, first_image_size
from .data.transforms import eval_transforms, train_transforms
from .evaluation.visualize import palette_for
from .methods.registry import method_class
from .networks.students import build_student, checkpoint_id2label
from .networks.teachers import DTYPES, load_teacher, resolve_teacher
from .reporting.card import write_model_card
from .reporting.prediction_panels import PredictionPanelsCallback
from .reporting.run_summary import run_summary
from .training.argument_checks import check_run_arguments
from .training.arguments import DataArguments, ModelArguments
from .training.checkpoints import resolve_checkpoint
from .training.config import HeteroAKDConfig
from .training.hub import push_student
from .training.preflight import preflight
from .training.run_data import build_split, load_data_args, resolve_id2label
from .training.trainer import HeteroAKDTrainer

logger = logging.getLogger(__name__)


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
