"""Load a frozen teacher from a path or Hub id; short aliases resolve to checkpoints fine-tuned on the dataset."""

from __future__ import annotations

import torch
from transformers import AutoModelForSemanticSegmentation, PreTrainedModel

from .errors import HeteroAKDError


# nvidia/segformer-bX names the ImageNet encoder; the teacher must be fine-tuned on the run's dataset.
TEACHER_ALIASES: dict[str, dict[str, str]] = {
    f"nvidia/segformer-{size}": {
        "cityscapes": f"nvidia/segformer-{size}-finetuned-cityscapes-1024-1024",
        "ade20k": f"nvidia/segformer-{size}-finetuned-ade-{'640-640' if size == 'b5' else '512-512'}",
    }
    for size in ("b0", "b1", "b2", "b3", "b4", "b5")
}


def dataset_family(dataset: str) -> str | None:
    """"cityscapes" or "ade20k" when ``dataset`` (a preset name, Hub id or path) names one of them."""
    name = dataset.lower()
    if "cityscapes" in name:
        return "cityscapes"
    if "ade" in name or "scene_parse" in name:
        return "ade20k"
    return None


def resolve_teacher(name: str, dataset: str) -> str:
    """The checkpoint an alias stands for with ``dataset``; other names are returned unchanged."""
    if name not in TEACHER_ALIASES:
        return name
    family = dataset_family(dataset)
    if family not in TEACHER_ALIASES[name]:
        choices = ", ".join(TEACHER_ALIASES[name].values())
        raise HeteroAKDError(
            f"--teacher {name} is an ImageNet encoder, not a segmentation teacher, and has no fine-tuned "
            f"checkpoint for the dataset {dataset!r}; pass one fine-tuned on your data ({choices} exist)"
        )
    return TEACHER_ALIASES[name][family]


def default_teacher_dtype() -> torch.dtype:
    """bfloat16 on a GPU that supports it, float32 otherwise."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def load_teacher(
    name_or_path: str, dtype: torch.dtype | None = None, trust_remote_code: bool = False
) -> PreTrainedModel:
    """Any ``AutoModelForSemanticSegmentation`` checkpoint, frozen and in eval mode.

    Code shipped with a checkpoint runs only with ``trust_remote_code=True``.
    """
    try:
        teacher = AutoModelForSemanticSegmentation.from_pretrained(
            name_or_path, dtype=dtype or default_teacher_dtype(), trust_remote_code=trust_remote_code
        )
    except ValueError as err:
        if "trust_remote_code" not in str(err):
            raise
        raise HeteroAKDError(
            f"the teacher {name_or_path!r} ships its own modeling code, which runs only with your consent: "
            "read it, then pass --trust_remote_code"
        ) from None
    except OSError as err:
        raise HeteroAKDError(
            f"could not load the teacher {name_or_path!r}: {str(err).splitlines()[0]} "
            "(check the Hub id or local path, or log in with `hf auth login` for a private model)"
        ) from None
    return teacher.requires_grad_(False).eval()
