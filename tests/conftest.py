"""Shared offline fixtures: a tiny dataset in the Hub's layout, a tiny teacher, a seeded Hub cache.

Nothing here downloads: models are built from configs with random weights and saved the way the
Hub stores them, then loaded through the same code path a Hub id takes.
"""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import numpy as np
import pytest
import safetensors.torch
import timm
import torch
from PIL import Image
from transformers import (
    ConvNextConfig,
    SegformerConfig,
    SegformerForSemanticSegmentation,
    SegformerImageProcessor,
    UperNetConfig,
    UperNetForSemanticSegmentation,
)

from hf_heteroakd.data.synthetic import CLASS_NAMES, make_synthetic_dataset


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


def tiny_segformer(
    num_labels: int = NUM_LABELS, id2label: dict[int, str] | None = None
) -> SegformerForSemanticSegmentation:
    id2label = id2label or ID2LABEL
    config = SegformerConfig(
        hidden_sizes=[8, 16, 24, 32],
        depths=[1, 1, 1, 1],
        num_attention_heads=[1, 1, 2, 2],
        decoder_hidden_size=16,
        num_labels=num_labels,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
    )
    return SegformerForSemanticSegmentation(config)


def tiny_upernet_convnext(
    num_labels: int = NUM_LABELS, id2label: dict[int, str] | None = None
) -> UperNetForSemanticSegmentation:
    id2label = id2label or ID2LABEL
    backbone = ConvNextConfig(
        hidden_sizes=[8, 16, 24, 32], depths=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"]
    )
    config = UperNetConfig(
        backbone_config=backbone,
        hidden_size=16,
        auxiliary_in_channels=24,
        num_labels=num_labels,
        id2label=id2label,
        label2id={v: k for k, v in id2label.items()},
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


# ---------------------------------------------------------------- dataset presets' layouts
# Tiny local copies of each preset's Hub repository (tests/test_presets.py, tests/test_recipes.py).

HEIGHT, WIDTH = 32, 64  # a MiT student evaluates whole images: its 8x8 reduction conv needs >= 32x32


def rgb(rng: np.random.Generator) -> Image.Image:
    return Image.fromarray(rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8))


def raw_masks(rng: np.random.Generator, values: list[int], count: int) -> list[np.ndarray]:
    """``count`` (H, W) uint8 masks drawn from ``values``; together they hold every value."""
    masks = [rng.choice(values, size=(HEIGHT, WIDTH)).astype(np.uint8) for _ in range(count)]
    masks[0].flat[: len(values)] = values
    return masks


def write_split(path: Path, columns: dict[str, list], features: datasets.Features) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    datasets.Dataset.from_dict(columns, features=features).to_parquet(path)


@pytest.fixture(scope="session")
def cityscapes_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """Chris1/cityscapes' layout: data/{train,validation,test}-*.parquet, columns image / semantic_segmentation
    (Image), single-channel label-id masks 0..33."""
    root = tmp_path_factory.mktemp("cityscapes")
    rng = np.random.default_rng(0)
    features = datasets.Features({"image": datasets.Image(), "semantic_segmentation": datasets.Image()})
    masks = {}
    for split, count in (("train", 3), ("validation", 2), ("test", 1)):
        masks[split] = raw_masks(rng, list(range(34)), count)
        columns = {
            "image": [rgb(rng) for _ in range(count)],
            "semantic_segmentation": [Image.fromarray(m) for m in masks[split]],
        }
        write_split(root / "data" / f"{split}-00000-of-00001.parquet", columns, features)
    return root, masks


@pytest.fixture(scope="session")
def voc_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """jxie/pascal-voc-2012's layout: data/{train,val}-*.parquet, columns image / mask (Image); masks hold
    0..20 and 255 on object boundaries, as palette PNGs (VOC's own) and as grayscale ones."""
    root = tmp_path_factory.mktemp("voc")
    rng = np.random.default_rng(1)
    features = datasets.Features({"image": datasets.Image(), "mask": datasets.Image()})
    masks = {}
    for split, count in (("train", 3), ("val", 2)):
        masks[split] = raw_masks(rng, [*range(21), 255], count)
        images = []
        for i, mask in enumerate(masks[split]):
            image = Image.fromarray(mask)
            if i % 2 == 0:
                image = image.convert("P")  # values kept as palette indices
                image.putpalette(list(rng.integers(0, 256, size=768)))
            images.append(image)
        columns = {"image": [rgb(rng) for _ in range(count)], "mask": images}
        write_split(root / "data" / f"{split}-00000-of-00001.parquet", columns, features)
    return root, masks


@pytest.fixture(scope="session")
def ade20k_copy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """scene_parse_150's parquet export: <config>/<split>/0000.parquet for configs scene_parsing (image,
    annotation: Image; scene_category: ClassLabel; masks 0..150) and instance_segmentation (other masks)."""
    root = tmp_path_factory.mktemp("ade20k")
    rng = np.random.default_rng(2)
    scene = datasets.ClassLabel(names=["airport_terminal", "art_gallery", "badlands"])  # the card's first scene names
    features = datasets.Features({"image": datasets.Image(), "annotation": datasets.Image(), "scene_category": scene})
    instance_features = datasets.Features({"image": datasets.Image(), "annotation": datasets.Image()})
    masks = {}
    for split, count in (("train", 3), ("validation", 2)):
        masks[split] = raw_masks(rng, list(range(151)), count)
        columns = {
            "image": [rgb(rng) for _ in range(count)],
            "annotation": [Image.fromarray(m) for m in masks[split]],
            "scene_category": rng.integers(0, 3, size=count).tolist(),
        }
        write_split(root / "scene_parsing" / split / "0000.parquet", columns, features)
        # Instance masks: RGB, R = class, G = instance. The preset must not read them.
        instances = [Image.fromarray(rng.integers(0, 151, (HEIGHT, WIDTH, 3), dtype=np.uint8)) for _ in masks[split]]
        write_split(
            root / "instance_segmentation" / split / "0000.parquet",
            {"image": [rgb(rng) for _ in range(count)], "annotation": instances},
            instance_features,
        )
    return root, masks
