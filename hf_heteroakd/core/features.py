"""One place that turns a segmentation model's outputs into its list of stage feature maps.

The HeteroAKD projectors consume these maps, (N, C_k, H_k, W_k) shallow to deep; their input
channels come from the model's config, never from a dry run. Families:

- our timm students, Segformer (MiT), MobileViT: ``hidden_states`` are the stage maps;
- UperNet (ConvNeXt, Swin, timm backbones): the backbone's stages, the last ``len(channels)``
  hidden states (ConvNeXt also returns its embedding output first);
- ViT-style BEiT / Data2VecVision / DPT: the token sequences of the layers their heads read,
  the class token dropped and reshaped to (N, C, H/patch, W/patch).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers.modeling_outputs import SemanticSegmenterOutput

from ..models import TimmSegmentationForSemanticSegmentation
from .errors import HeteroAKDError

VIT_STYLE = ("beit", "data2vec-vision", "dpt")


def _vit_layers(config) -> list[int]:
    """Indices into ``hidden_states`` (embeddings first) of the layers a ViT-style head reads."""
    if config.model_type == "dpt":
        return [i + 1 for i in config.backbone_out_indices]
    return list(config.out_indices)


def stage_channels(model: nn.Module) -> list[int]:
    """Channels of each stage map that :func:`stage_features` returns for ``model``."""
    if isinstance(model, TimmSegmentationForSemanticSegmentation):
        return model.stage_channels
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type == "segformer":
        return list(config.hidden_sizes)
    if model_type == "upernet":
        return list(model.backbone.channels)
    if model_type == "mobilevit":
        return list(config.neck_hidden_sizes[1:6])
    if model_type in VIT_STYLE and not getattr(config, "is_hybrid", False):
        return [config.hidden_size] * len(_vit_layers(config))
    raise HeteroAKDError(
        f"HeteroAKD cannot read stage features from a {type(model).__name__} (model_type={model_type!r}); "
        "use a Segformer, UperNet, MobileViT, BEiT, DPT or timm model, or --distill_method kd, which needs only logits"
    )


def stage_features(
    model: nn.Module, outputs: SemanticSegmenterOutput, image_size: tuple[int, int] | None = None
) -> list[torch.Tensor]:
    """The stage maps of ``outputs`` (from a forward with ``output_hidden_states=True``).

    ``image_size`` (H, W) of the input is needed to reshape ViT-style token sequences.
    """
    hidden_states = outputs.hidden_states
    if hidden_states is None:
        raise ValueError("call the model with output_hidden_states=True to get stage features")
    config = getattr(model, "config", None)
    if getattr(config, "model_type", None) in VIT_STYLE:
        if image_size is None:
            raise ValueError("image_size is needed to reshape a ViT's tokens to maps")
        grid = (image_size[0] // config.patch_size, image_size[1] // config.patch_size)
        return [tokens_to_map(hidden_states[i], grid) for i in _vit_layers(config)]
    return list(hidden_states[-len(stage_channels(model)) :])


def tokens_to_map(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(N, [1 +] h·w, C) tokens → (N, C, h, w), dropping a leading class token if there is one."""
    patches = tokens[:, -grid[0] * grid[1] :]
    return patches.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], *grid)
