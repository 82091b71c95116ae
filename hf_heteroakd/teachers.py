"""Load a frozen teacher from a path or Hub id, and map inputs to its normalisation."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation, PreTrainedModel

from .errors import HeteroAKDError


def default_teacher_dtype() -> torch.dtype:
    """bfloat16 on a GPU that supports it, float32 otherwise."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_teacher(name_or_path: str, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """Any ``AutoModelForSemanticSegmentation`` checkpoint, frozen and in eval mode."""
    try:
        teacher = AutoModelForSemanticSegmentation.from_pretrained(
            name_or_path, dtype=dtype or default_teacher_dtype()
        )
    except OSError as err:
        raise HeteroAKDError(
            f"could not load the teacher {name_or_path!r}: {str(err).splitlines()[0]} "
            "(check the Hub id or local path, or log in with `hf auth login` for a private model)"
        ) from None
    return teacher.requires_grad_(False).eval()


def teacher_normalization(name_or_path: str) -> tuple[list[float], list[float]] | None:
    """The (mean, std) the teacher's image processor normalises with, if it has one."""
    try:
        processor = AutoImageProcessor.from_pretrained(name_or_path)
    except (OSError, ValueError):
        return None
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    return (list(mean), list(std)) if mean is not None and std is not None else None


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
