"""Load a frozen teacher from a path or Hub id; short aliases resolve to checkpoints fine-tuned on the dataset."""

from __future__ import annotations

import os
from dataclasses import field
from typing import Any

import torch
from transformers import AutoConfig, AutoModelForSemanticSegmentation, PreTrainedModel
from transformers.models.auto.modeling_auto import MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES

from ..core.errors import HeteroAKDError
from ..core.file_checks import check_model_folder
from ..data.presets import DatasetSource, resolve_dataset

# Floating-point dtypes by the names the flags take (--teacher_dtype, --teacher_logits_cache_dtype).
DTYPES: dict[str, torch.dtype] = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}

# nvidia/segformer-bX names the ImageNet encoder; the teacher must be fine-tuned on the run's dataset.
TEACHER_ALIASES: dict[str, dict[str, str]] = {
    f"nvidia/segformer-{size}": {
        "cityscapes": f"nvidia/segformer-{size}-finetuned-cityscapes-1024-1024",
        "ade20k": f"nvidia/segformer-{size}-finetuned-ade-{'640-640' if size == 'b5' else '512-512'}",
    }
    for size in ("b0", "b1", "b2", "b3", "b4", "b5")
}


def resolve_teacher(name: str, dataset: str | DatasetSource, id2label: dict[int, str] | None = None) -> str:
    """The checkpoint an alias stands for with ``dataset`` (a preset, its Hub id, or data with a preset's
    classes ``id2label``: :meth:`~hf_heteroakd.data.presets.DatasetSource.family`); other names are returned
    unchanged."""
    if name not in TEACHER_ALIASES:
        return name
    source = resolve_dataset(dataset)
    family = source.family(id2label)
    if family not in TEACHER_ALIASES[name]:
        choices = ", ".join(TEACHER_ALIASES[name].values())
        raise HeteroAKDError(
            f"--teacher {name} is an ImageNet encoder, not a segmentation teacher, and has no fine-tuned "
            f"checkpoint for the dataset {source.name!r}; pass one fine-tuned on your data ({choices} exist)"
        )
    return TEACHER_ALIASES[name][family]


def default_teacher_dtype() -> torch.dtype:
    """bfloat16 on a GPU that supports it, float32 otherwise."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


def weights_policy(allow_pickle_weights: bool = False) -> dict[str, bool]:
    """``from_pretrained`` options: safetensors weights only, unless pickle (``.bin``) files are allowed.

    A Hub repository with only ``.bin`` files still loads when the safetensors conversion bot has
    opened a pull request with converted weights: transformers then reads those.
    """
    return {} if allow_pickle_weights else {"use_safetensors": True}


def trust_remote_code_field(checkpoint: str = "the checkpoint") -> Any:
    """The ``--trust_remote_code`` flag of a dataclass that loads ``checkpoint``: off by default."""
    return field(default=False, metadata={"help": f"Allow {checkpoint}'s own modeling code to run (off by default)."})


def allow_pickle_weights_field(checkpoints: str = "checkpoints") -> Any:
    """The ``--allow_pickle_weights`` flag of a dataclass that loads ``checkpoints`` (see :func:`weights_policy`)."""
    return field(
        default=False,
        metadata={
            "help": f"Also load {checkpoints} that ship only pickle (.bin) weights, with torch's weights_only "
            "unpickler. Off: safetensors weights only."
        },
    )


# What a checkpoint is, by the suffix of its architecture's class name (config.architectures).
_KINDS = {
    "ForImageClassification": "an image classifier",
    "ForObjectDetection": "an object detector",
    "ForInstanceSegmentation": "an instance-segmentation model",
    "ForUniversalSegmentation": "a universal (panoptic) segmentation model",
    "ForDepthEstimation": "a depth estimator",
    "ForCausalLM": "a text model",
    "ForMaskedLM": "a text model",
    "ForSequenceClassification": "a text model",
    "ForConditionalGeneration": "a generative model",
    "Model": "a base model without a task head",
}


def not_a_segmentation_model(role: str, name_or_path: str) -> HeteroAKDError:
    """The one-line error for a checkpoint of another task: what it is, and the families that are supported."""
    try:
        config = AutoConfig.from_pretrained(name_or_path)
        architecture = (config.architectures or [type(config).__name__])[0]
        kind = next(
            (k for suffix, k in _KINDS.items() if architecture.endswith(suffix)), f"a {config.model_type} model"
        )
        what = f"{kind} ({architecture})"
    except (OSError, ValueError):
        what = "not a model transformers can load"
    families = ", ".join(sorted(MODEL_FOR_SEMANTIC_SEGMENTATION_MAPPING_NAMES))
    return HeteroAKDError(
        f"the {role} {name_or_path!r} is {what}, not a semantic-segmentation model: pass a checkpoint of "
        f"AutoModelForSemanticSegmentation (the families {families}, or a student saved by hf-heteroakd)"
    )


def checkpoint_error(role: str, name_or_path: str, err: OSError) -> HeteroAKDError:
    """The one-line error for a checkpoint that did not load."""
    message = str(err)
    if os.path.isdir(name_or_path) and not os.path.isfile(os.path.join(name_or_path, "config.json")):
        return HeteroAKDError(
            f"the {role} {name_or_path!r} is a folder without config.json, not a saved model: pass a folder written "
            "by save_pretrained (or by a run of hf-heteroakd), or a Hub id"
        )
    local_pickle = os.path.isdir(name_or_path) and any(
        os.path.isfile(os.path.join(name_or_path, f)) for f in ("pytorch_model.bin", "pytorch_model.bin.index.json")
    )
    if local_pickle or "cannot be loaded with `safetensors`" in message:
        return HeteroAKDError(
            f"the {role} {name_or_path!r} has no safetensors weights, only pickle (.bin) files, which are not "
            "loaded by default: convert them to safetensors (https://huggingface.co/spaces/safetensors/convert), "
            "or pass --allow_pickle_weights to read them with torch's weights_only unpickler"
        )
    return HeteroAKDError(
        f"could not load the {role} {name_or_path!r}: {message.splitlines()[0]} "
        "(check the Hub id or local path, or log in with `hf auth login` for a private model)"
    )


def load_segmentation_model(
    name_or_path: str,
    role: str = "model",
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
    allow_pickle_weights: bool = False,
) -> PreTrainedModel:
    """Any ``AutoModelForSemanticSegmentation`` checkpoint, in eval mode; ``role`` names it in errors.

    Code shipped with a checkpoint runs only with ``trust_remote_code=True``; weights load from
    safetensors files only unless ``allow_pickle_weights`` (see :func:`weights_policy`).
    """
    if os.path.isdir(name_or_path) and not os.path.isfile(os.path.join(name_or_path, "config.json")):
        raise checkpoint_error(role, name_or_path, OSError())
    check_model_folder(name_or_path, role)
    try:
        model = AutoModelForSemanticSegmentation.from_pretrained(
            name_or_path,
            dtype=dtype,
            trust_remote_code=trust_remote_code,
            **weights_policy(allow_pickle_weights),
        )
    except ValueError as err:
        if "trust_remote_code" in str(err):
            raise HeteroAKDError(
                f"the {role} {name_or_path!r} ships its own modeling code, which runs only with your consent: "
                "read it, then pass --trust_remote_code"
            ) from None
        if "Unrecognized configuration class" in str(err):
            raise not_a_segmentation_model(role, name_or_path) from None
        raise
    except OSError as err:
        raise checkpoint_error(role, name_or_path, err) from None
    return model.eval()


def load_teacher(
    name_or_path: str,
    dtype: torch.dtype | None = None,
    trust_remote_code: bool = False,
    allow_pickle_weights: bool = False,
) -> PreTrainedModel:
    """:func:`load_segmentation_model` of the teacher, frozen, in ``dtype`` (default:
    :func:`default_teacher_dtype`)."""
    teacher = load_segmentation_model(
        name_or_path, "teacher", dtype or default_teacher_dtype(), trust_remote_code, allow_pickle_weights
    )
    return teacher.requires_grad_(False)
