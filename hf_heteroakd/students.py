"""Build a student by short name (``resnet18``) or load one by path / Hub id."""

from __future__ import annotations

import timm
from transformers import AutoConfig, AutoModelForSemanticSegmentation, PreTrainedModel

from .errors import HeteroAKDError
from .models import TimmSegmentationConfig, TimmSegmentationForSemanticSegmentation


def build_student(
    name: str,
    id2label: dict[int, str],
    pretrained_backbone: bool = True,
    output_stride: int = 8,
) -> PreTrainedModel:
    """A student for ``id2label``'s classes.

    ``name`` is a timm CNN name (``resnet18``), built as DeepLabV3 on that backbone, or a path /
    Hub id of an ``AutoModelForSemanticSegmentation`` checkpoint whose head is re-sized to the classes.
    """
    label2id = {label: i for i, label in id2label.items()}
    if timm.is_model(name):
        config = TimmSegmentationConfig(
            backbone=name, output_stride=output_stride, id2label=id2label, label2id=label2id
        )
        student = TimmSegmentationForSemanticSegmentation(config)
        if pretrained_backbone:
            _load_timm_weights(student, name, output_stride)
        return student
    try:
        AutoConfig.from_pretrained(name)
    except (OSError, ValueError) as err:
        raise HeteroAKDError(
            f"unknown student {name!r}: not a timm model name (e.g. resnet18) nor a loadable checkpoint ({err})"
        ) from None
    return AutoModelForSemanticSegmentation.from_pretrained(
        name, id2label=id2label, label2id=label2id, ignore_mismatched_sizes=True
    )


def _load_timm_weights(student: TimmSegmentationForSemanticSegmentation, name: str, output_stride: int) -> None:
    try:
        pretrained = timm.create_model(name, pretrained=True, features_only=True, output_stride=output_stride)
    except Exception as err:  # timm raises a variety of hub/network errors
        raise HeteroAKDError(
            f"could not load ImageNet weights for the {name} backbone ({type(err).__name__}); "
            "connect to the Hub or pass --student_pretrained_backbone false to start from random init"
        ) from None
    student.backbone.load_state_dict(pretrained.state_dict())
