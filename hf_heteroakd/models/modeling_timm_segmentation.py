"""A timm backbone (``features_only``) with a DeepLabV3 or PSPNet head, as a transformers model.

This file imports only torch, torchvision, timm and transformers, so that a saved student can
carry it and load where hf_heteroakd is not installed.
"""

from __future__ import annotations

import timm
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.segmentation.deeplabv3 import DeepLabHead
from transformers import PreTrainedModel
from transformers.modeling_outputs import SemanticSegmenterOutput

from .configuration_timm_segmentation import TimmSegmentationConfig


class PSPHead(nn.Sequential):
    """PSPNet's pyramid pooling module (bins 1, 2, 3, 6) and classifier on (N, C, h, w) features."""

    def __init__(self, in_channels: int, num_classes: int, bins: tuple[int, ...] = (1, 2, 3, 6)) -> None:
        branch_channels = in_channels // len(bins)
        super().__init__(
            PyramidPooling(in_channels, branch_channels, bins),
            nn.Conv2d(in_channels + branch_channels * len(bins), 512, 3, padding=1, bias=False),
            nn.BatchNorm2d(512),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            nn.Conv2d(512, num_classes, 1),
        )


class PyramidPooling(nn.Module):
    """Concatenates the input with its average-pooled, projected and re-upsampled versions."""

    def __init__(self, in_channels: int, branch_channels: int, bins: tuple[int, ...]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(bin_size),
                nn.Conv2d(in_channels, branch_channels, 1, bias=False),
                nn.BatchNorm2d(branch_channels),
                nn.ReLU(inplace=True),
            )
            for bin_size in bins
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        size = features.shape[-2:]
        pooled = [F.interpolate(b(features), size=size, mode="bilinear", align_corners=False) for b in self.branches]
        return torch.cat([features, *pooled], dim=1)


DECODE_HEADS = {"deeplabv3": DeepLabHead, "pspnet": PSPHead}


class TimmSegmentationForSemanticSegmentation(PreTrainedModel):
    """DeepLabV3 or PSPNet on a timm backbone; ``hidden_states`` are the backbone's stages, shallow to deep."""

    config_class = TimmSegmentationConfig
    base_model_prefix = "timm_segmentation"
    main_input_name = "pixel_values"

    def __init__(self, config: TimmSegmentationConfig) -> None:
        super().__init__(config)
        if config.decode_head not in DECODE_HEADS:
            raise ValueError(f"decode_head must be one of {sorted(DECODE_HEADS)}, got {config.decode_head!r}")
        self.backbone = timm.create_model(
            config.backbone, pretrained=False, features_only=True, output_stride=config.output_stride
        )
        self.decode_head = DECODE_HEADS[config.decode_head](self.stage_channels[-1], config.num_labels)
        self.post_init()

    @property
    def stage_channels(self) -> list[int]:
        """Channels of each backbone stage, in the order of ``hidden_states``."""
        return self.backbone.feature_info.channels()

    def _init_weights(self, module: nn.Module) -> None:
        # timm and torchvision initialise their own layers; keep that initialisation.
        pass

    def forward(
        self,
        pixel_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        output_hidden_states: bool | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SemanticSegmenterOutput | tuple:
        """pixel_values (N, 3, H, W) → logits (N, num_labels, H/s, W/s), s the output stride."""
        stages = self.backbone(pixel_values)
        logits = self.decode_head(stages[-1])
        loss = None
        if labels is not None:
            upsampled = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
            loss = F.cross_entropy(upsampled, labels, ignore_index=self.config.semantic_loss_ignore_index)
        hidden_states = tuple(stages) if output_hidden_states else None
        if return_dict is False:
            return tuple(v for v in (loss, logits, hidden_states) if v is not None)
        return SemanticSegmenterOutput(loss=loss, logits=logits, hidden_states=hidden_states)
