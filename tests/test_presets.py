"""Offline tests of the dataset presets (hf_heteroakd.data.presets) and of per-sample label conversion.

Each preset is loaded from a tiny local copy written in its Hub repository's layout, with the
repository's column names, feature types and raw mask values; only the repo id is replaced.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from urllib.parse import quote

import datasets
import huggingface_hub
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

from hf_heteroakd.core.errors import HeteroAKDError
from hf_heteroakd.data import (
    SegmentationData,
    SegmentationDataset,
    check_label_range,
    eval_transforms,
    reduce_labels,
    train_transforms,
)
from hf_heteroakd.data.presets import PRESETS, cityscapes_to_train_ids, find_preset, load_data, load_preset
from hf_heteroakd.pipeline import DataArguments

from .conftest import HEIGHT, WIDTH, raw_masks, rgb, write_split

# Cityscapes label ids of the 19 evaluated classes, in train-id order (the Cityscapes benchmark's
# class list); every other label id is ignored.
CITYSCAPES_EVALUATED_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


def converted_labels(data: SegmentationData, split: str, num_labels: int | None = None) -> list[np.ndarray]:
    """Every mask of ``split`` as the trainer sees it: converted, checked, at full resolution."""
    num_labels = num_labels or len(data.id2label)
    dataset = SegmentationDataset(
        data.splits[split], eval_transforms(), num_labels, split_name=split, label_transform=data.label_transform
    )
    return [dataset[i]["labels"].numpy() for i in range(len(dataset))]


# ----------------------------------------------------------------------------------------- Cityscapes


def test_cityscapes_preset_maps_label_ids_to_train_ids(cityscapes_copy, tmp_path: Path) -> None:
    root, raw = cityscapes_copy
    preset = PRESETS["cityscapes"]

    data = load_preset("cityscapes", cache_dir=str(tmp_path / "cache"), repo_id=str(root))

    assert {preset.train_split, preset.eval_split} <= set(data.splits)
    assert data.id2label == preset.id2label and len(data.id2label) == 19
    assert data.id2label[0] == "road" and data.id2label[13] == "car" and data.id2label[18] == "bicycle"
    for split in ("train", "validation"):
        for mask, labels in zip(raw[split], converted_labels(data, split), strict=True):
            ids = CITYSCAPES_EVALUATED_IDS
            expected = np.array([[ids.index(v) if v in ids else 255 for v in row] for row in mask])
            assert np.array_equal(labels, expected)
    first = converted_labels(data, "train")[0].ravel()
    assert first[[0, 7, 26, 33]].tolist() == [255, 0, 13, 18]  # the raw mask starts 0, 1, ..., 33

    check_label_range(data.splits["train"], 19, label_transform=data.label_transform)
    with pytest.raises(HeteroAKDError, match="outside"):  # the raw ids are not train ids
        check_label_range(data.splits["train"], 19)


def test_cityscapes_conversion_of_wide_and_foreign_values() -> None:
    # -1 (license plate) exists as a label id; 255 is already "ignore"; 34 or 200 are no label ids.
    mask = np.array([[-1, 0, 7, 26], [33, 255, 24, 16]], dtype=np.int32)
    assert cityscapes_to_train_ids(mask).tolist() == [[255, 255, 0, 13], [18, 255, 11, 255]]
    with pytest.raises(HeteroAKDError, match=r"\[34, 200\].*Hub id or path"):
        cityscapes_to_train_ids(np.array([[34, 200, 7]]))


def test_cityscapes_table_matches_cityscapesscripts() -> None:
    labels = pytest.importorskip("cityscapesscripts.helpers.labels").labels
    for label in labels:
        expected = label.trainId if 0 <= label.trainId < 255 else 255
        assert cityscapes_to_train_ids(np.array([[label.id]])).item() == expected, label.name
    names = [label.name for label in sorted(labels, key=lambda label: label.trainId) if 0 <= label.trainId < 255]
    assert list(PRESETS["cityscapes"].id2label.values()) == names


# ------------------------------------------------------------------------------------------------- VOC


def test_voc_preset_keeps_classes_and_boundaries(voc_copy, tmp_path: Path) -> None:
    root, raw = voc_copy
    preset = PRESETS["voc"]

    data = load_preset("voc", cache_dir=str(tmp_path / "cache"), repo_id=str(root))

    assert (preset.train_split, preset.eval_split) == ("train", "val") and set(data.splits) == {"train", "val"}
    assert len(data.id2label) == 21 and data.id2label[0] == "background" and data.id2label[20] == "tvmonitor"
    assert data.splits["train"][0]["label"].mode == "P"
    for split in ("train", "val"):
        for mask, labels in zip(raw[split], converted_labels(data, split), strict=True):
            assert np.array_equal(labels, mask)  # 0..20 as is, boundaries stay 255 = ignored
            assert (labels == 255).any()


# ---------------------------------------------------------------------------------------------- ADE20K


def test_ade20k_preset_reduces_labels(ade20k_copy, tmp_path: Path) -> None:
    root, raw = ade20k_copy
    preset = PRESETS["ade20k"]

    data = load_preset("ade20k", cache_dir=str(tmp_path / "cache"), repo_id=str(root))

    assert set(data.splits) == {preset.train_split, preset.eval_split} == {"train", "validation"}
    assert len(data.splits["train"]) == 3  # scene_parsing only, not instance_segmentation
    assert len(data.id2label) == 150
    assert data.id2label[0] == "wall" and data.id2label[7] == "bed " and data.id2label[149] == "flag"
    for split in ("train", "validation"):
        for mask, labels in zip(raw[split], converted_labels(data, split), strict=True):
            expected = np.where(mask == 0, 255, mask.astype(np.int64) - 1)  # 0 "other" -> ignored, 1..150 -> 0..149
            assert np.array_equal(labels, expected)
    assert converted_labels(data, "train")[0].ravel()[[0, 1, 150]].tolist() == [255, 0, 149]


# ------------------------------------------------------------------------- resolution of --dataset names


def test_preset_names_resolve_and_others_go_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert find_preset("cityscapes") is PRESETS["cityscapes"] and find_preset("ADE20K") is PRESETS["ade20k"]
    for name in ("Chris1/cityscapes", "cityscapes_local", "./voc", "voc2012", "org/ade20k", str(tmp_path / "voc")):
        assert find_preset(name) is None, name

    # An unknown name is a Hub id, looked up as before (offline here: reported as not found).
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HeteroAKDError, match="nobody/cityscapes"):
        load_data("nobody/cityscapes", cache_dir=str(tmp_path / "cache"))


def test_local_folder_named_like_a_preset_loads_as_a_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(3)
    mask = rng.integers(0, 3, size=(HEIGHT, WIDTH), dtype=np.uint8)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Image()})
    columns = {"image": [rgb(rng)], "label": [Image.fromarray(mask)]}
    write_split(tmp_path / "voc" / "data" / "train-00000-of-00001.parquet", columns, features)
    monkeypatch.chdir(tmp_path)

    data = load_data("./voc", cache_dir=str(tmp_path / "cache"))

    assert data.label_transform is None and data.id2label is None  # no preset's classes or conversion
    assert np.array_equal(converted_labels(data, "train", num_labels=3)[0], mask)


def test_preset_loads_by_name_with_its_defaults(voc_copy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, raw = voc_copy
    monkeypatch.setitem(PRESETS, "voc", dataclasses.replace(PRESETS["voc"], repo_id=str(root)))

    data = load_data("voc", cache_dir=str(tmp_path / "cache"))
    args = DataArguments(dataset="voc")

    assert np.array_equal(converted_labels(data, "val")[1], raw["val"][1])
    assert (args.train_split, args.eval_split, args.crop_size) == ("train", "val", [512, 512])
    assert DataArguments(dataset="cityscapes").crop_size == [512, 1024]
    assert DataArguments(dataset="cityscapes", crop_size=[64], eval_split="test").crop_size == [64, 64]
    generic = DataArguments(dataset=str(root))
    assert (generic.train_split, generic.eval_split, generic.crop_size) == ("train", "validation", [512, 512])
    with pytest.raises(HeteroAKDError, match="--reduce_labels"):
        load_data("voc", reduce_labels=True)


# -------------------------------------------------------------------------- reduce_labels, generic datasets


def test_reduce_labels_for_a_generic_dataset(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    masks = raw_masks(rng, [0, 1, 2, 3, 255], 2)  # 0 = unlabeled, 1..3 = classes, 255 = already ignored
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Image()})
    columns = {"image": [rgb(rng) for _ in masks], "label": [Image.fromarray(m) for m in masks]}
    write_split(tmp_path / "ds" / "data" / "train-00000-of-00001.parquet", columns, features)

    data = load_data(str(tmp_path / "ds"), reduce_labels=True, cache_dir=str(tmp_path / "cache"))
    dataset = SegmentationDataset(data.splits["train"], eval_transforms(), 3, label_transform=data.label_transform)

    for i, mask in enumerate(masks):
        expected = np.select([mask == 0, mask == 255], [255, 255], mask.astype(np.int64) - 1)
        assert np.array_equal(dataset[i]["labels"].numpy(), expected)
    check_label_range(data.splits["train"], 3, label_transform=data.label_transform)
    with pytest.raises(HeteroAKDError, match=r"\[3\]"):  # without the conversion, class 3 is out of range
        check_label_range(data.splits["train"], 3)
    assert reduce_labels(np.array([[0, 1, 150, 255]], dtype=np.uint8)).tolist() == [[255, 0, 149, 255]]


def test_converted_masks_go_through_the_training_transforms(ade20k_copy, tmp_path: Path) -> None:
    root, raw = ade20k_copy
    data = load_preset("ade20k", cache_dir=str(tmp_path / "cache"), repo_id=str(root))
    dataset = SegmentationDataset(
        data.splits["train"], train_transforms((8, 8), (1.0, 1.0)), 150, label_transform=data.label_transform
    )

    torch.manual_seed(0)
    labels = dataset[0]["labels"]

    assert labels.shape == (8, 8) and labels.dtype == torch.int64
    reduced = np.where(raw["train"][0] == 0, 255, raw["train"][0].astype(np.int64) - 1)
    windows = np.lib.stride_tricks.sliding_window_view(reduced, (8, 8)).reshape(-1, 8, 8)
    crop = labels.numpy()
    assert any(np.array_equal(crop, w) or np.array_equal(crop[:, ::-1], w) for w in windows)  # a window, maybe flipped


# ---------------------------------------------------------------------------------- photometric distortion


def test_photometric_distortion_changes_images_not_labels() -> None:
    rng = np.random.default_rng(5)
    image = Image.fromarray(rng.integers(30, 226, size=(24, 24, 3), dtype=np.uint8))
    mask = Image.fromarray(rng.integers(0, 4, size=(24, 24), dtype=np.uint8))
    plain = train_transforms((16, 16), (0.75, 1.5))
    distorted = train_transforms((16, 16), (0.75, 1.5), photometric_distortion=True)

    assert "ColorJitter" not in repr(plain) and "ColorJitter" in repr(distorted)
    for seed in range(3):
        torch.manual_seed(seed)
        pixels, labels = plain(image, mask)
        torch.manual_seed(seed)
        jittered, jittered_labels = distorted(image, mask)  # same geometry: its random draws come first
        assert torch.equal(labels, jittered_labels)
        assert not torch.allclose(pixels, jittered)


# ------------------------------------------------------------------------------ the real repositories


@pytest.mark.hub
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_hub_repository_has_the_presets_splits_and_columns(name: str) -> None:
    """Reads only the parquet footers: each split exists and holds the preset's columns as images."""
    import pyarrow.parquet as pq

    preset = PRESETS[name]
    fs = huggingface_hub.HfFileSystem()
    root = f"datasets/{preset.repo_id}@{quote(preset.revision or 'main', safe='')}"  # refs/... is written refs%2F...
    if preset.data_dir:
        root += f"/{preset.data_dir}"
    files = [f for f in fs.find(root) if f.endswith(".parquet")]
    for split in (preset.train_split, preset.eval_split):
        shards = [f for f in files if f"/{split}-" in f or f"/{split}/" in f]
        assert shards, (split, files[:10])
        with fs.open(shards[0]) as handle:
            schema = pq.read_schema(handle)
        for column in (preset.image_column, preset.label_column):
            assert column in schema.names, (split, schema.names)
            assert schema.field(column).type.get_field_index("bytes") >= 0  # an Image feature's struct


def test_a_run_trains_and_evaluates_on_a_preset(
    cityscapes_copy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hf_heteroakd.pipeline import ModelArguments, run_distillation
    from hf_heteroakd.training.config import HeteroAKDConfig

    root, _ = cityscapes_copy
    monkeypatch.setitem(PRESETS, "cityscapes", dataclasses.replace(PRESETS["cityscapes"], repo_id=str(root)))
    args = HeteroAKDConfig(
        output_dir=str(tmp_path / "run"),
        distill_method="none",
        max_steps=1,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        do_train=True,
        do_eval=True,
    )

    metrics = run_distillation(
        ModelArguments(student="resnet18", student_pretrained_backbone=False),
        DataArguments(dataset="cityscapes", crop_size=[16], photometric_distortion=True),
        args,
    )

    assert 0.0 <= metrics["eval_mean_iou"] <= 1.0
    assert "eval_iou_bicycle" in metrics  # the preset's 19 classes, after conversion of the label ids
