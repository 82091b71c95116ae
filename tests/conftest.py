"""Shared offline fixtures: a tiny dataset in the Hub's layout, a tiny teacher, a seeded Hub cache.

Nothing here downloads: models are built from configs with random weights and saved the way the
Hub stores them, then loaded through the same code path a Hub id takes.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import safetensors.torch
import timm
import torch
from transformers import (
    ConvNextConfig,
    SegformerConfig,
    SegformerForSemanticSegmentation,
    SegformerImageProcessor,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from hf_heteroakd.synthetic import CLASS_NAMES, make_synthetic_dataset

def pytest_collection_modifyitems(config, items):
    """Tests marked ``hub`` need the Hugging Face Hub: they run only with HETEROAKD_HUB_TESTS=1."""
    if os.environ.get("HETEROAKD_HUB_TESTS") == "1" and os.environ.get("HF_HUB_OFFLINE") != "1":
        return
    skip = pytest.mark.skip(reason="needs the Hugging Face Hub (set HETEROAKD_HUB_TESTS=1 online)")
    for item in items:
        if "hub" in item.keywords:
            item.add_marker(skip)


NUM_LABELS = len(CLASS_NAMES)
ID2LABEL = dict(enumerate(CLASS_NAMES))


def tiny_segformer(num_labels: int = NUM_LABELS, id2label: dict[int, str] | None = None) -> SegformerForSemanticSegmentation:
    id2label = id2label or ID2LABEL
    config = SegformerConfig(
        hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], num_attention_heads=[1, 1, 2, 2],
        decoder_hidden_size=16, num_labels=num_labels, id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    return SegformerForSemanticSegmentation(config)


def tiny_upernet_convnext(num_labels: int = NUM_LABELS) -> UperNetForSemanticSegmentation:
    backbone = ConvNextConfig(
        hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    config = UperNetConfig(
        backbone_config=backbone, hidden_size=16, auxiliary_in_channels=24, num_labels=num_labels,
        id2label=ID2LABEL, label2id={v: k for k, v in ID2LABEL.items()},
    )
    return UperNetForSemanticSegmentation(config)


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_train=12, num_validation=5, image_size=32)


@pytest.fixture(scope="session")
def tiny_segformer_dir(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("segformer")
    tiny_segformer().save_pretrained(path)
    SegformerImageProcessor(do_resize=False).save_pretrained(path)
    return path


def seed_hub_cache(cache_dir: Path, repo_id: str, files: dict[str, bytes]) -> None:
    """Lays ``files`` out as ``huggingface_hub`` caches a model repo, so HF_HUB_OFFLINE=1 finds them."""
    commit = "0" * 40
    repo = cache_dir / ("models--" + repo_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (snapshot / name).write_bytes(content)


@pytest.fixture(scope="session")
def timm_hub_cache(tmp_path_factory) -> Path:
    """A Hub cache holding (random) weights of timm's resnet18 at its default tag, as timm would download them."""
    cache = tmp_path_factory.mktemp("hub_cache")
    model = timm.create_model("resnet18", pretrained=False)
    weights = safetensors.torch.save({k: v.contiguous() for k, v in model.state_dict().items()})
    seed_hub_cache(cache, model.pretrained_cfg["hf_hub_id"], {"model.safetensors": weights})
    return cache
