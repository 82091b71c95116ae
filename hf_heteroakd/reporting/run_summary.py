"""What a run records for its model card (``heteroakd_run.json``): models, data, the method's settings
(read from the config fields tagged with the method), training setup and hardware."""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import torch
from transformers import PreTrainedModel

from ..evaluation.tables import headline
from ..methods.registry import method_class

HEADS = {"deeplabv3": "DeepLabV3", "pspnet": "PSPNet"}


def describe(model: PreTrainedModel) -> str:
    """A short architecture name: "DeepLabV3 on resnet18", "Segformer", "UperNet on convnext", …"""
    config = model.config
    if config.model_type == "timm_segmentation":
        return f"{HEADS.get(config.decode_head, config.decode_head)} on {config.backbone}"
    name = type(model).__name__.removesuffix("ForSemanticSegmentation")
    backbone_config = getattr(config, "backbone_config", None)
    backbone = getattr(config, "backbone", None) or getattr(backbone_config, "model_type", None)
    return f"{name} on {backbone}" if backbone else name


def hub_id(name: str | None) -> str | None:
    """``name`` if it can be a Hub repo id; local folders are not named in the card's metadata."""
    return None if name is None or os.path.exists(name) else name


def hardware(training_args) -> str:
    """What the run trained on, e.g. "1 × NVIDIA H100 80GB HBM3" or "CPU, 16 cores"."""
    device = training_args.device
    if device.type == "cuda":
        return f"{training_args.world_size} × {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    # The cores this process may use, which can be fewer than the machine has.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = f"CPU, {cores} cores"
    return f"{training_args.world_size} × {cpu}" if training_args.world_size > 1 else cpu


def _model_summary(model: PreTrainedModel, name: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "architecture": describe(model),
        "parameters": model.num_parameters(),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }


def run_summary(
    student: PreTrainedModel,
    teacher: PreTrainedModel | None,
    model_args,
    data_args,
    training_args,
    hub_model_id: str | None = None,
    teacher_results: dict[str, float] | None = None,
    baseline_results: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Everything the card needs that the Trainer's own files do not hold. Never holds the Hub token."""
    args = training_args
    return {
        "hub_model_id": hub_model_id,
        "license": "apache-2.0",
        "student": {
            **_model_summary(student, model_args.student),
            "pretrained_backbone": model_args.student_pretrained_backbone,
        },
        "teacher": None
        if teacher is None
        else {**_model_summary(teacher, model_args.teacher), "hub_id": hub_id(model_args.teacher)},
        "data": {
            "dataset": data_args.dataset,
            "hub_id": data_args.source.hub_id,
            "config_name": data_args.dataset_config_name,
            "train_split": data_args.train_split,
            "eval_split": data_args.eval_split,
            "crop_size": list(data_args.crop_size),
            "scale_range": list(data_args.scale_range),
            "photometric_distortion": data_args.photometric_distortion,
            "no_augmentation": data_args.no_augmentation,
            "max_train_samples": data_args.max_train_samples,
        },
        "tags": [*method_class(args.distill_method).tags, "semantic-segmentation"],
        "distillation": {"method": args.distill_method, **method_settings(args)},
        "setting_help": {name: help for name, help in _method_fields(args)},
        "training": {
            "max_steps": args.max_steps,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "world_size": args.world_size,
            "sync_batchnorm": args.sync_batchnorm and args.world_size > 1,
            "learning_rate": args.learning_rate,
            "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
            "warmup_steps": args.warmup_steps,
            "optim": str(getattr(args.optim, "value", args.optim)),
            "weight_decay": args.weight_decay,
            "precision": "bf16 mixed" if args.bf16 else "fp16 mixed" if args.fp16 else "fp32",
            "seed": args.seed,
            "hardware": hardware(args),
        },
        "comparison": {"teacher": headline(teacher_results), "baseline": headline(baseline_results)},
    }


def _method_fields(args) -> list[tuple[str, str]]:
    """(name, first sentence of its help) of each config field of the run's method (``metadata["methods"]``)."""
    return [
        (f.name, f.metadata.get("help", f.name).split(". ")[0].rstrip("."))
        for f in dataclasses.fields(args)
        if args.distill_method in f.metadata.get("methods", ())
    ]


def method_settings(args) -> dict[str, Any]:
    """The values of the config fields of the run's method, by name (lists as lists)."""
    return {name: _plain(getattr(args, name)) for name, _ in _method_fields(args)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
