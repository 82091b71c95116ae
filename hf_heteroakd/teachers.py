"""Load a frozen teacher from a path or Hub id."""

from __future__ import annotations

import torch
from transformers import AutoModelForSemanticSegmentation, PreTrainedModel

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
