"""One place that turns a segmentation model's outputs into its list of stage feature maps.

The HeteroAKD projectors consume these maps, (N, C_k, H_k, W_k) shallow to deep; their input
channels come from the model's config, never from a dry run.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import SemanticSegmenterOutput

from .errors import HeteroAKDError
from .models import TimmSegmentationForSemanticSegmentation


def stage_channels(model: nn.Module) -> list[int]:
    """Channels of each stage map that :func:`stage_features` returns for ``model``."""
    if isinstance(model, TimmSegmentationForSemanticSegmentation):
        return model.stage_channels
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type == "segformer":
        return list(model.config.hidden_sizes)
    if model_type == "upernet":
        return list(model.backbone.channels)
    raise HeteroAKDError(
        f"HeteroAKD cannot read stage features from a {type(model).__name__} (model_type={model_type!r}); "
        "use a Segformer, UperNet or timm student/teacher, or --distill_method kd, which needs only logits."
    )


def stage_features(model: nn.Module, outputs: SemanticSegmenterOutput) -> list[torch.Tensor]:
    """The stage maps of ``outputs`` (from a forward with ``output_hidden_states=True``).

    UperNet's backbones also return their embedding output first; only the stages are kept.
    """
    hidden_states = outputs.hidden_states
    if hidden_states is None:
        raise ValueError("call the model with output_hidden_states=True to get stage features")
    num_stages = len(stage_channels(model))
    return list(hidden_states[-num_stages:])
