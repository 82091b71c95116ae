"""Which (mean, std) each model expects its pixels normalised with, and mapping between two."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torch import nn
from transformers import AutoImageProcessor, PreTrainedModel

from ..models import TimmSegmentationForSemanticSegmentation

Normalization = tuple[tuple[float, ...], tuple[float, ...]]


def model_normalization(model: PreTrainedModel, name_or_path: str | None = None) -> Normalization:
    """A timm backbone's pretraining (mean, std); else the checkpoint's image processor's; else ImageNet's."""
    if isinstance(model, TimmSegmentationForSemanticSegmentation):
        cfg = model.backbone.pretrained_cfg
        return tuple(cfg.get("mean", IMAGENET_DEFAULT_MEAN)), tuple(cfg.get("std", IMAGENET_DEFAULT_STD))
    if name_or_path is not None:
        try:
            processor = AutoImageProcessor.from_pretrained(name_or_path)
        except (OSError, ValueError):
            processor = None
        mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
        if mean is not None and std is not None:
            return tuple(mean), tuple(std)
    return IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD


class Renormalize(nn.Module):
    """Maps (N, 3, H, W) pixels normalised with one (mean, std) to another's."""

    def __init__(
        self, from_mean: Sequence[float], from_std: Sequence[float], to_mean: Sequence[float], to_std: Sequence[float]
    ) -> None:
        super().__init__()
        as_col = lambda v: torch.tensor(v, dtype=torch.float32).view(1, -1, 1, 1)  # noqa: E731
        # x_to = (x_from·σ_from + μ_from − μ_to) / σ_to = x_from·scale + shift
        self.register_buffer("scale", as_col(from_std) / as_col(to_std), persistent=False)
        self.register_buffer("shift", (as_col(from_mean) - as_col(to_mean)) / as_col(to_std), persistent=False)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return pixel_values * self.scale.to(pixel_values.device) + self.shift.to(pixel_values.device)

    def extra_repr(self) -> str:
        # The values, so that the repr identifies the mapping (the teacher-logits cache keys on it).
        return f"scale={self.scale.flatten().tolist()}, shift={self.shift.flatten().tolist()}"


def renormalizer(source: Normalization, target: Normalization) -> Renormalize | None:
    """A :class:`Renormalize` from ``source`` to ``target``, or None when they already agree."""
    if torch.allclose(torch.tensor(source), torch.tensor(target), atol=1e-4):
        return None
    return Renormalize(*source, *target)
