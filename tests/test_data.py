"""Offline tests of hf_heteroakd.data and hf_heteroakd.data.synthetic."""

from __future__ import annotations

import pickle
import time
from pathlib import Path

import datasets
import huggingface_hub
import huggingface_hub.constants
import numpy as np
import pytest
import torch
import torch.nn.functional as nnf
from huggingface_hub.errors import EntryNotFoundError
from PIL import Image

from hf_heteroakd.core.errors import HeteroAKDError
from hf_heteroakd.data import (
    IGNORE_INDEX,
    IMAGENET_DEFAULT_MEAN,
    IMAGENET_DEFAULT_STD,
    SegmentationDataset,
    check_label_range,
    collate_segmentation,
    eval_transforms,
    load_id2label,
    load_segmentation_data,
    train_transforms,
)
from hf_heteroakd.data.synthetic import CLASS_NAMES, make_synthetic_dataset
from hf_heteroakd.data.synthetic import main as synthetic_main

MEAN = torch.tensor(IMAGENET_DEFAULT_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_DEFAULT_STD).view(3, 1, 1)
IMAGE_FEATURES = datasets.Features({"image": datasets.Image(), "label": datasets.Image()})


def denormalize(pixel_values: torch.Tensor) -> torch.Tensor:
    """(3, H, W) normalized -> (3, H, W) in [0, 1]."""
    return pixel_values * STD + MEAN


def write_parquet_dataset(root: Path, columns: dict[str, list], features: datasets.Features) -> str:
    """A local dataset in the Hub's layout: root/data/train-00000-of-00001.parquet."""
    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(columns, features=features).to_parquet(root / "data" / "train-00000-of-00001.parquet")
    return str(root)


def random_pair(
    rng: np.random.Generator, height: int, width: int, num_labels: int = 2
) -> tuple[Image.Image, Image.Image]:
    """A random RGB image and a mode-L mask of classes 0..num_labels-1."""
    image = Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))
    mask = Image.fromarray(rng.integers(0, num_labels, size=(height, width), dtype=np.uint8))
    return image, mask


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), num_train=8, num_validation=4, image_size=32)


# ---------------------------------------------------------------------------------------------- loading


def test_load_synthetic_dataset(synthetic_dir: Path, tmp_path: Path) -> None:
    data = load_segmentation_data(str(synthetic_dir), cache_dir=str(tmp_path / "cache"))

    assert set(data.splits) == {"train", "validation"}
    assert len(data.splits["train"]) == 8 and len(data.splits["validation"]) == 4
    assert data.splits["train"].column_names == ["image", "label"]
    assert data.id2label == dict(enumerate(CLASS_NAMES))
    row = data.splits["validation"][0]
    assert row["image"].mode == "RGB" and row["image"].size == (32, 32)
    assert row["label"].mode == "L" and row["label"].size == (32, 32)
    assert set(np.unique(np.asarray(row["label"]))) <= set(range(len(CLASS_NAMES))) | {IGNORE_INDEX}


def test_synthetic_dataset_is_deterministic(tmp_path: Path) -> None:
    first = make_synthetic_dataset(tmp_path / "a", num_train=3, num_validation=1, image_size=32, seed=7)
    second = make_synthetic_dataset(tmp_path / "b", num_train=3, num_validation=1, image_size=32, seed=7)
    for split in ("train", "validation"):
        name = f"data/{split}-00000-of-00001.parquet"
        rows_a = datasets.Dataset.from_parquet(str(first / name), cache_dir=str(tmp_path / "cache"))
        rows_b = datasets.Dataset.from_parquet(str(second / name), cache_dir=str(tmp_path / "cache"))
        for a, b in zip(rows_a, rows_b):
            assert np.array_equal(np.asarray(a["image"]), np.asarray(b["image"]))
            assert np.array_equal(np.asarray(a["label"]), np.asarray(b["label"]))


def test_synthetic_command_line(tmp_path: Path) -> None:
    synthetic_main([str(tmp_path / "cli"), "--num_train", "2", "--num_validation", "1", "--image_size", "16"])

    assert sorted(p.name for p in (tmp_path / "cli" / "data").iterdir()) == [
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    assert "image-segmentation" in (tmp_path / "cli" / "README.md").read_text()


def test_regenerated_folder_is_not_read_from_a_stale_cache(tmp_path: Path) -> None:
    make_synthetic_dataset(tmp_path / "ds", num_train=3, num_validation=1, image_size=16)
    assert load_segmentation_data(str(tmp_path / "ds")).splits["train"].num_rows == 3
    time.sleep(0.05)  # a new mtime for the rewritten files
    make_synthetic_dataset(tmp_path / "ds", num_train=5, num_validation=1, image_size=16)
    assert load_segmentation_data(str(tmp_path / "ds")).splits["train"].num_rows == 5


def test_column_names_are_detected_and_others_dropped(tmp_path: Path) -> None:
    image, mask = random_pair(np.random.default_rng(0), 8, 8)
    features = datasets.Features(
        {
            "pixel_values": datasets.Image(),
            "semantic_segmentation": datasets.Image(),
            "caption": datasets.Value("string"),
        }
    )
    root = write_parquet_dataset(
        tmp_path / "renamed", {"pixel_values": [image], "semantic_segmentation": [mask], "caption": ["x"]}, features
    )

    data = load_segmentation_data(root, cache_dir=str(tmp_path / "cache"))

    assert data.splits["train"].column_names == ["image", "label"]
    assert np.array_equal(np.asarray(data.splits["train"][0]["label"]), np.asarray(mask))
    assert data.id2label is None  # the folder has no id2label.json


def test_missing_label_column_lists_the_columns(tmp_path: Path) -> None:
    image, _ = random_pair(np.random.default_rng(0), 8, 8)
    features = datasets.Features({"pixel_values": datasets.Image(), "caption": datasets.Value("string")})
    root = write_parquet_dataset(tmp_path / "no_label", {"pixel_values": [image], "caption": ["x"]}, features)

    with pytest.raises(HeteroAKDError, match="--label_column_name") as info:
        load_segmentation_data(root, cache_dir=str(tmp_path / "cache"))
    assert "pixel_values" in str(info.value) and "caption" in str(info.value)

    with pytest.raises(HeteroAKDError, match="'masks'.*caption"):
        load_segmentation_data(root, label_column="masks", cache_dir=str(tmp_path / "cache"))


def test_non_image_label_column_is_rejected(tmp_path: Path) -> None:
    image, _ = random_pair(np.random.default_rng(0), 8, 8)
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    root = write_parquet_dataset(tmp_path / "classification", {"image": [image], "label": [1]}, features)

    with pytest.raises(HeteroAKDError, match="not images"):
        load_segmentation_data(root, cache_dir=str(tmp_path / "cache"))


def test_nonexistent_dataset_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = str(tmp_path / "does" / "not" / "exist")
    with pytest.raises(HeteroAKDError, match="not found") as info:
        load_segmentation_data(missing, cache_dir=str(tmp_path / "cache"))
    assert missing in str(info.value)

    # A Hub id, without touching the network.
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(HeteroAKDError, match="nobody/no-such-dataset"):
        load_segmentation_data("nobody/no-such-dataset", cache_dir=str(tmp_path / "cache"))


def test_id2label_from_the_hub_is_optional(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    downloaded = tmp_path / "id2label.json"
    downloaded.write_text('{"0": "road", "1": "sky"}')
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda *args, **kwargs: str(downloaded))
    assert load_id2label("org/dataset") == {0: "road", 1: "sky"}

    def not_there(*args: object, **kwargs: object) -> str:
        raise EntryNotFoundError("id2label.json not found")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", not_there)
    assert load_id2label("org/dataset") is None


# ------------------------------------------------------------------------------------------- transforms


def interior(labels: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: labelled pixels whose 3x3 neighbourhood, all inside the crop, holds a single class."""
    as_float = labels[None, None].float()
    uniform = (nnf.max_pool2d(as_float, 3, 1, 1) == -nnf.max_pool2d(-as_float, 3, 1, 1))[0, 0]
    uniform[[0, -1], :] = False  # their neighbours beyond the crop are unknown
    uniform[:, [0, -1]] = False
    return uniform & (labels != IGNORE_INDEX)


def test_train_transforms_keep_image_and_mask_aligned() -> None:
    # A non-symmetric pattern of 16 px blocks; the mask is recomputed from the image's red channel.
    rng = np.random.default_rng(0)
    blocks = rng.random((6, 8)) < 0.5
    assert not np.array_equal(blocks, blocks[:, ::-1])
    on = np.kron(blocks, np.ones((16, 16), dtype=bool))  # (96, 128): H != W catches swapped axes
    pixels = rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8)
    pixels[..., 0] = np.where(on, 230, 25)
    image, mask = Image.fromarray(pixels), Image.fromarray(on.astype(np.uint8))
    transform = train_transforms(crop_size=(64, 80), scale_range=(0.5, 2.0))

    flipped_mismatches = []
    for seed in range(8):
        torch.manual_seed(seed)
        pixel_values, labels = transform(image, mask)

        assert pixel_values.shape == (3, 64, 80) and pixel_values.dtype == torch.float32
        assert labels.shape == (64, 80) and labels.dtype == torch.int64
        recomputed = (denormalize(pixel_values)[0] > 0.5).long()
        disagree = recomputed != labels
        # Away from class boundaries image and mask agree exactly; on them interpolation may differ.
        assert not disagree[interior(labels)].any(), f"seed {seed}: misaligned"
        assert disagree[labels != IGNORE_INDEX].float().mean() < 0.05, f"seed {seed}: too many boundary errors"
        both_labelled = (labels != IGNORE_INDEX) & (labels.flip(-1) != IGNORE_INDEX)
        flipped_mismatches.append((recomputed != labels.flip(-1))[both_labelled].float().mean().item())
    # The check has teeth: a mask flipped without its image would disagree on many pixels.
    assert np.mean(flipped_mismatches) > 0.2


def test_train_transforms_pad_with_zero_and_ignore_index() -> None:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(40, 256, size=(32, 32, 3), dtype=np.uint8))  # never 0
    mask = Image.fromarray(rng.integers(0, 2, size=(32, 32), dtype=np.uint8))
    transform = train_transforms(crop_size=(48, 64), scale_range=(1.0, 1.0))

    for seed in range(4):
        torch.manual_seed(seed)
        pixel_values, labels = transform(image, mask)

        padded = labels == IGNORE_INDEX
        assert padded.sum().item() >= 48 * 64 - 32 * 32
        is_zero = denormalize(pixel_values).abs().amax(dim=0) < 1e-5
        assert torch.equal(is_zero, padded)


def test_eval_transforms_keep_full_resolution() -> None:
    image, mask = random_pair(np.random.default_rng(2), 21, 34, num_labels=5)

    pixel_values, labels = eval_transforms()(image, mask)

    assert pixel_values.shape == (3, 21, 34) and pixel_values.dtype == torch.float32
    assert torch.equal(labels, torch.from_numpy(np.array(mask, dtype=np.int64)))
    expected = torch.from_numpy(np.array(image)).permute(2, 0, 1) / 255
    assert torch.allclose(denormalize(pixel_values), expected, atol=1e-5)


# ----------------------------------------------------------------------------------- dataset and checks


def make_split(pairs: list[tuple[Image.Image, Image.Image]]) -> datasets.Dataset:
    return datasets.Dataset.from_dict(
        {"image": [image for image, _ in pairs], "label": [mask for _, mask in pairs]}, features=IMAGE_FEATURES
    )


def test_segmentation_dataset_checks_each_sample() -> None:
    rng = np.random.default_rng(3)
    good = random_pair(rng, 16, 16, num_labels=3)
    out_of_range = (good[0], Image.fromarray(np.full((16, 16), 7, dtype=np.uint8)))
    wrong_size = (good[0], Image.fromarray(np.zeros((12, 16), dtype=np.uint8)))
    colour_mask = (good[0], good[0])
    split = make_split([good, out_of_range, wrong_size, colour_mask])
    dataset = SegmentationDataset(split, eval_transforms(), num_labels=3, split_name="validation")

    sample = pickle.loads(pickle.dumps(dataset))[0]  # DataLoader workers receive a pickled copy
    assert sample["pixel_values"].shape == (3, 16, 16) and sample["labels"].shape == (16, 16)
    with pytest.raises(HeteroAKDError, match=r"'validation', row 1: label values \[7\].*--ignore_index"):
        dataset[1]
    with pytest.raises(HeteroAKDError, match=r"'validation', row 2: .*16x16.*16x12"):
        dataset[2]
    with pytest.raises(HeteroAKDError, match=r"'validation', row 3: .*single-channel"):
        dataset[3]

    with pytest.raises(HeteroAKDError, match=r"'validation', row 1: label values \[7\]"):
        check_label_range(split, num_labels=3, split_name="validation")
    check_label_range(split, num_labels=8, split_name="validation", max_samples=2)  # 7 < 8: fine


def test_ignore_index_is_a_valid_label() -> None:
    image, _ = random_pair(np.random.default_rng(4), 8, 8)
    mask = Image.fromarray(np.array([[0, 1, 255, 255]] * 8, dtype=np.uint8).repeat(2, axis=1))
    split = make_split([(image, mask)])

    check_label_range(split, num_labels=2)
    assert SegmentationDataset(split, eval_transforms(), num_labels=2)[0]["labels"].max() == 255
    with pytest.raises(HeteroAKDError, match=r"\[255\]"):
        check_label_range(split, num_labels=2, ignore_index=0)


def test_synthetic_split_through_a_dataloader(synthetic_dir: Path, tmp_path: Path) -> None:
    data = load_segmentation_data(str(synthetic_dir), cache_dir=str(tmp_path / "cache"))
    check_label_range(data.splits["train"], num_labels=len(CLASS_NAMES))
    dataset = SegmentationDataset(data.splits["train"], train_transforms((24, 24)), num_labels=len(CLASS_NAMES))
    loader = torch.utils.data.DataLoader(dataset, batch_size=4, collate_fn=collate_segmentation)

    batch = next(iter(loader))

    assert batch["pixel_values"].shape == (4, 3, 24, 24)
    assert batch["labels"].shape == (4, 24, 24) and batch["labels"].dtype == torch.int64


# -------------------------------------------------------------------------------------------- collation


def test_collate_pads_bottom_right_with_zero_and_ignore_index() -> None:
    small = {"pixel_values": torch.ones(3, 4, 5), "labels": torch.ones(4, 5, dtype=torch.int64)}
    tall = {"pixel_values": torch.full((3, 6, 3), 2.0), "labels": torch.full((6, 3), 2, dtype=torch.int64)}

    batch = collate_segmentation([small, tall])

    assert batch["pixel_values"].shape == (2, 3, 6, 5) and batch["labels"].shape == (2, 6, 5)
    assert torch.equal(batch["pixel_values"][0, :, :4, :5], small["pixel_values"])
    assert torch.equal(batch["labels"][1, :, :3], tall["labels"])
    assert (batch["pixel_values"][0, :, 4:] == 0).all() and (batch["labels"][0, 4:] == IGNORE_INDEX).all()
    assert (batch["pixel_values"][1, :, :, 3:] == 0).all() and (batch["labels"][1, :, 3:] == IGNORE_INDEX).all()


def test_collate_stacks_equal_sizes_unchanged() -> None:
    samples = [
        {"pixel_values": torch.randn(3, 4, 4), "labels": torch.zeros(4, 4, dtype=torch.int64)} for _ in range(3)
    ]

    batch = collate_segmentation(samples, ignore_index=IGNORE_INDEX)

    assert torch.equal(batch["pixel_values"], torch.stack([s["pixel_values"] for s in samples]))
