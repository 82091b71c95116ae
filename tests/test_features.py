"""Stage features of every model family: channels from the config equal the maps' channels."""

from __future__ import annotations

import pytest
import torch
from transformers import (
    BeitConfig,
    BeitForSemanticSegmentation,
    DPTConfig,
    DPTForSemanticSegmentation,
    MobileViTConfig,
    MobileViTForSemanticSegmentation,
    ResNetConfig,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from hf_heteroakd import HeteroAKDError, build_student
from hf_heteroakd.core.features import stage_channels, stage_features, tokens_to_map

from .conftest import ID2LABEL, NUM_LABELS, tiny_segformer, tiny_upernet_convnext

VIT = dict(
    hidden_size=16,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=32,
    patch_size=8,
    num_labels=NUM_LABELS,
    use_auxiliary_head=False,
)

MODELS = {
    "segformer": tiny_segformer,
    "upernet-convnext": tiny_upernet_convnext,
    "upernet-resnet": lambda: UperNetForSemanticSegmentation(
        UperNetConfig(
            backbone_config=ResNetConfig(
                hidden_sizes=[8, 16, 24, 32],
                depths=[1, 1, 1, 1],
                embedding_size=8,
                out_features=["stage1", "stage2", "stage3", "stage4"],
            ),
            hidden_size=16,
            num_labels=NUM_LABELS,
            use_auxiliary_head=False,
        )
    ),
    "beit": lambda: BeitForSemanticSegmentation(
        BeitConfig(**VIT, image_size=64, out_indices=[1, 2, 3, 4], pool_scales=[1, 2], auxiliary_channels=8)
    ),
    "dpt": lambda: DPTForSemanticSegmentation(
        DPTConfig(
            **VIT,
            image_size=64,
            backbone_out_indices=[0, 1, 2, 3],
            neck_hidden_sizes=[8, 8, 16, 16],
            fusion_hidden_size=8,
        )
    ),
    "mobilevit": lambda: MobileViTForSemanticSegmentation(MobileViTConfig(num_labels=NUM_LABELS, image_size=64)),
    "mit-b0": lambda: build_student("mit-b0", ID2LABEL, pretrained_backbone=False),
    "upernet-timm-resnet18": lambda: build_student("upernet-resnet18", ID2LABEL, pretrained_backbone=False),
    "deeplabv3-mobilenetv2": lambda: build_student("mobilenetv2_100", ID2LABEL, pretrained_backbone=False),
}


@pytest.mark.parametrize("key", MODELS)
def test_stage_channels_match_the_maps(key):
    model = MODELS[key]().eval()
    # Not square, so ViT tokens must be reshaped to the right grid (DPT's own head needs a square).
    pixels = torch.randn(2, 3, 64, 64 if key == "dpt" else 96)
    with torch.no_grad():
        features = stage_features(model, model(pixel_values=pixels, output_hidden_states=True), pixels.shape[-2:])
    assert [f.shape[1] for f in features] == stage_channels(model)
    assert all(f.dim() == 4 and f.shape[0] == 2 for f in features)


def test_tokens_to_map_drops_the_class_token():
    grid = torch.arange(2 * 6 * 3, dtype=torch.float32).view(2, 3, 2, 3)  # (N, C, h, w)
    tokens = grid.flatten(2).transpose(1, 2)
    with_cls = torch.cat([torch.full((2, 1, 3), -1.0), tokens], dim=1)
    assert torch.equal(tokens_to_map(with_cls, (2, 3)), grid)
    assert torch.equal(tokens_to_map(tokens, (2, 3)), grid)


def test_unsupported_model_is_a_clear_error():
    with pytest.raises(HeteroAKDError, match="--distill_method kd"):
        stage_channels(torch.nn.Conv2d(3, 3, 1))
