"""The distilled student's model card, rendered from ``model_cards/student_card.md``."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import PreTrainedModel

from .errors import HeteroAKDError

TEMPLATE_NAME = "student_card.md"


def template_path() -> Path:
    """The card template: in the source tree, or where ``pip install`` put the data files."""
    for folder in (Path(__file__).resolve().parents[1] / "model_cards", Path(sys.prefix) / "share/hf_heteroakd/model_cards"):
        if (folder / TEMPLATE_NAME).is_file():
            return folder / TEMPLATE_NAME
    raise HeteroAKDError(f"the model card template {TEMPLATE_NAME} is missing; reinstall hf-heteroakd")


def _fmt(value: Any) -> str:
    return "n/a" if isinstance(value, float) and math.isnan(value) else f"{value:.4f}" if isinstance(value, float) else str(value)


def describe(model: PreTrainedModel) -> str:
    """A short architecture name: "DeepLabV3 on resnet18", "segformer", …"""
    config = model.config
    if config.model_type == "timm_segmentation":
        return f"{config.decode_head.replace('deeplabv3', 'DeepLabV3')} on {config.backbone}"
    return config.model_type


def hub_id(name: str | None) -> str | None:
    """``name`` if it can be a Hub repo id; local folders are not named in the card's metadata."""
    return None if name is None or os.path.exists(name) else name


def write_model_card(
    output_dir: str, student: PreTrainedModel, model_args, data_args, training_args, metrics: dict[str, float],
    steps: int,
) -> ModelCard:
    """Renders the card for a finished run into ``output_dir/README.md`` and returns it."""
    headline = ("mean_iou", "mean_accuracy", "overall_accuracy")
    eval_results = [
        EvalResult(
            task_type="image-segmentation",
            dataset_type=data_args.dataset,
            dataset_name=data_args.dataset,
            dataset_split=data_args.eval_split,
            metric_type=name,
            metric_value=metrics[f"eval_{name}"],
        )
        for name in headline
        if f"eval_{name}" in metrics
    ]
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        tags=["knowledge-distillation", "heteroakd", "semantic-segmentation"],
        datasets=[hub_id(data_args.dataset)] if hub_id(data_args.dataset) else None,
        base_model=hub_id(model_args.teacher),
        license="apache-2.0",
        model_name=Path(output_dir).name,
        eval_results=eval_results or None,
    )
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path()),
        model_name=Path(output_dir).name,
        student_description=describe(student),
        method=training_args.distill_method,
        teacher=model_args.teacher,
        dataset=data_args.dataset,
        eval_split=data_args.eval_split,
        results={name: _fmt(metrics[f"eval_{name}"]) for name in headline if f"eval_{name}" in metrics},
        per_class={k[len("eval_iou_"):]: _fmt(v) for k, v in metrics.items() if k.startswith("eval_iou_")},
        lambda_kd=training_args.lambda_kd,
        lambda_hakd=training_args.lambda_hakd,
        lambda_proj=training_args.lambda_proj,
        temperature=training_args.temperature,
        hakd_stages=training_args.hakd_stages,
        kmm=training_args.kmm,
        kem=training_args.kem,
        kem_axis=training_args.kem_axis,
        max_steps=steps,
        batch_size=training_args.per_device_train_batch_size,
        learning_rate=training_args.learning_rate,
        crop_size="×".join(map(str, data_args.crop_size)),
        seed=training_args.seed,
        repo_or_path=training_args.hub_model_id or os.path.abspath(output_dir),
    )
    card.save(os.path.join(output_dir, "README.md"))
    return card
