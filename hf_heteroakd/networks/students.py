"""Build a student by short name, or load one by path / Hub id.

Names: a timm CNN (``resnet18``, ``mobilenetv2_100``, …) with a DeepLabV3 or PSPNet head;
``mit-b0`` … ``mit-b5`` (native Segformer); ``upernet-<timm name>`` (native UperNet on a timm
backbone); anything else is a path or Hub id of an ``AutoModelForSemanticSegmentation`` checkpoint.
"""

from __future__ import annotations

import os
import re

import timm
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForSemanticSegmentation,
    PreTrainedModel,
    SegformerConfig,
    SegformerForSemanticSegmentation,
    TimmBackboneConfig,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from ..core.errors import HeteroAKDError
from ..core.file_checks import check_model_folder
from ..core.labels import id2label_of
from ..models import TimmSegmentationConfig, TimmSegmentationForSemanticSegmentation
from .teachers import checkpoint_error, not_a_segmentation_model, weights_policy

# Encoder sizes of MiT-b0 … b5 (Xie et al., 2021), as in the nvidia/mit-bX checkpoints.
MIT_SIZES = {
    "b0": ([32, 64, 160, 256], [2, 2, 2, 2], 256),
    "b1": ([64, 128, 320, 512], [2, 2, 2, 2], 256),
    "b2": ([64, 128, 320, 512], [3, 4, 6, 3], 768),
    "b3": ([64, 128, 320, 512], [3, 4, 18, 3], 768),
    "b4": ([64, 128, 320, 512], [3, 8, 27, 3], 768),
    "b5": ([64, 128, 320, 512], [3, 6, 40, 3], 768),
}
STUDENT_HEADS = ("deeplabv3", "pspnet")


def build_student(
    name: str,
    id2label: dict[int, str],
    pretrained_backbone: bool = True,
    head: str = "deeplabv3",
    output_stride: int = 8,
    allow_pickle_weights: bool = False,
) -> PreTrainedModel:
    """A student predicting ``id2label``'s classes; see the module docstring for the names.

    Checkpoints load from safetensors files only unless ``allow_pickle_weights``.
    """
    label2id = {label: i for i, label in id2label.items()}
    labels = {"id2label": id2label, "label2id": label2id}
    if head not in STUDENT_HEADS:
        raise HeteroAKDError(f"unknown --student_head {head!r}; choose one of {', '.join(STUDENT_HEADS)}")
    if mit := re.fullmatch(r"mit-(b[0-5])", name):
        return _mit_student(mit.group(1), labels, pretrained_backbone, allow_pickle_weights)
    if name.startswith("upernet-") and timm.is_model(backbone := name[len("upernet-") :]):
        backbone_config = TimmBackboneConfig(backbone=backbone, out_indices=(1, 2, 3, 4))
        config = UperNetConfig(backbone_config=backbone_config, use_auxiliary_head=False, **labels)
        student = UperNetForSemanticSegmentation(config)
        if pretrained_backbone:
            _load_timm_weights(student.backbone._backbone, backbone, out_indices=(1, 2, 3, 4))
        return student
    if timm.is_model(name):
        config = TimmSegmentationConfig(backbone=name, decode_head=head, output_stride=output_stride, **labels)
        student = TimmSegmentationForSemanticSegmentation(config)
        if pretrained_backbone:
            _load_timm_weights(student.backbone, name, output_stride=output_stride)
        return student
    if os.path.isdir(name) and not os.path.isfile(os.path.join(name, "config.json")):
        raise checkpoint_error("student", name, OSError())
    check_model_folder(name, "student")
    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        raise HeteroAKDError(
            f"unknown student {name!r}: use a timm CNN name (resnet18, mobilenetv2_100, …), mit-b0 … mit-b5, "
            "upernet-<timm name>, or the path / Hub id of a semantic-segmentation checkpoint"
        ) from None
    try:
        return AutoModelForSemanticSegmentation.from_pretrained(
            name, ignore_mismatched_sizes=True, **labels, **weights_policy(allow_pickle_weights)
        )
    except OSError as err:
        raise checkpoint_error("student", name, err) from None
    except ValueError as err:
        if "Unrecognized configuration class" not in str(err):
            raise
        raise not_a_segmentation_model("student", name) from None


def is_builtin_student(name: str) -> bool:
    """Whether ``name`` is built here (mit-bX, upernet-<timm name>, a timm name) rather than a checkpoint."""
    return bool(re.fullmatch(r"mit-b[0-5]", name)) or timm.is_model(name.removeprefix("upernet-"))


def checkpoint_id2label(name: str) -> dict[int, str] | None:
    """The classes of the checkpoint ``name`` (a path or Hub id); None for a built-in student name or a
    checkpoint that cannot be read (``build_student`` then says why)."""
    if is_builtin_student(name):
        return None
    try:
        config = AutoConfig.from_pretrained(name)
    except (OSError, ValueError):
        return None
    return id2label_of(config)


def _mit_student(
    size: str, labels: dict, pretrained: bool, allow_pickle_weights: bool
) -> SegformerForSemanticSegmentation:
    if pretrained:
        try:
            return SegformerForSemanticSegmentation.from_pretrained(
                f"nvidia/mit-{size}", **labels, **weights_policy(allow_pickle_weights)
            )
        except OSError as err:
            raise _no_weights(f"nvidia/mit-{size}", err) from None
    hidden_sizes, depths, decoder_size = MIT_SIZES[size]
    config = SegformerConfig(
        hidden_sizes=hidden_sizes,
        depths=depths,
        decoder_hidden_size=decoder_size,
        num_attention_heads=[1, 2, 5, 8],
        **labels,
    )
    return SegformerForSemanticSegmentation(config)


def _load_timm_weights(backbone: nn.Module, name: str, **features_kwargs) -> None:
    """Copies timm's ImageNet weights for ``name`` into a ``features_only`` backbone."""
    try:
        pretrained = timm.create_model(name, pretrained=True, features_only=True, **features_kwargs)
    except Exception as err:  # timm raises a variety of hub/network errors
        raise _no_weights(name, err) from None
    backbone.load_state_dict(pretrained.state_dict())


def _no_weights(name: str, err: Exception) -> HeteroAKDError:
    return HeteroAKDError(
        f"could not load the pretrained weights of {name} ({type(err).__name__}); connect to the Hub, "
        "or pass --student_pretrained_backbone false to start the student from random init"
    )
