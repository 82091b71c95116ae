"""``--streaming``: splits read as ``datasets.IterableDataset`` streams give what the map-style path gives."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import AutoModelForSemanticSegmentation, SegformerImageProcessor

from hf_heteroakd import HeteroAKDConfig, HeteroAKDError, HeteroAKDTrainer
from hf_heteroakd.data import (
    SegmentationDataset,
    StreamingSegmentationDataset,
    check_label_range,
    collate_segmentation,
    eval_transforms,
    first_rows,
    load_segmentation_data,
    train_transforms,
)
from hf_heteroakd.data.presets import load_preset
from hf_heteroakd.pipeline import DataArguments, ModelArguments, run_distillation

from .conftest import NUM_LABELS
from .test_presets import converted_labels

IMAGE_FEATURES = datasets.Features({"image": datasets.Image(), "label": datasets.Image()})


@pytest.fixture(autouse=True)
def no_sleep_after_shuffled_streams(monkeypatch: pytest.MonkeyPatch) -> None:
    """datasets sleeps 5 s each time a shuffled parquet stream's reader threads stop (an Arrow workaround):
    once per epoch in a real run, but after nearly every read in these tests."""
    monkeypatch.setattr(datasets.config, "SLEEP_TIME_ON_THREADS_SHUTDOWN", 0)


def write_shards(root: Path, rows: list[tuple], num_shards: int = 1) -> str:
    """``rows`` of (image, mask) as a local dataset in the Hub's layout, split train, in ``num_shards`` files."""
    (root / "data").mkdir(parents=True)
    for shard, part in enumerate(np.array_split(np.arange(len(rows)), num_shards)):
        columns = {"image": [rows[i][0] for i in part], "label": [rows[i][1] for i in part]}
        path = root / "data" / f"train-{shard:05d}-of-{num_shards:05d}.parquet"
        datasets.Dataset.from_dict(columns, features=IMAGE_FEATURES).to_parquet(path)
    return str(root)


def run_args(tmp_path: Path, **kwargs) -> HeteroAKDConfig:
    return HeteroAKDConfig(
        output_dir=str(tmp_path),
        distill_method="none",
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        save_strategy="no",
        report_to="none",
        dataloader_num_workers=0,
        disable_tqdm=True,
        **kwargs,
    )


def test_streamed_run_trains_and_evaluates_like_the_map_style_path(tmp_path, synthetic_dataset) -> None:
    out = tmp_path / "run"
    metrics = run_distillation(
        ModelArguments(student="resnet18", student_pretrained_backbone=False),
        DataArguments(dataset=str(synthetic_dataset), crop_size=[16], streaming=True, max_eval_samples=4),
        run_args(out, max_steps=2, do_train=True, do_eval=True),
    )
    assert json.loads((out / "trainer_state.json").read_text())["global_step"] == 2
    assert 0.0 <= metrics["eval_mean_iou"] <= 1.0

    # The saved student, evaluated map-style on the same 4 rows, scores exactly what the streamed run reported.
    student = AutoModelForSemanticSegmentation.from_pretrained(out)
    processor = SegformerImageProcessor.from_pretrained(out)
    split = load_segmentation_data(str(synthetic_dataset)).splits["validation"]
    transform = eval_transforms(processor.image_mean, processor.image_std)
    trainer = HeteroAKDTrainer(model=student, args=run_args(tmp_path / "eval"), data_collator=collate_segmentation)
    mapped = trainer.evaluate(
        SegmentationDataset(first_rows(split, 4), transform, NUM_LABELS, split_name="validation")
    )
    assert mapped["eval_mean_iou"] == metrics["eval_mean_iou"]
    assert mapped["eval_loss"] == pytest.approx(metrics["eval_loss"], rel=1e-6)

    # The same trainer on the whole split, map-style and streamed: the same confusion matrix.
    trainer.evaluate(SegmentationDataset(split, transform, NUM_LABELS))
    mapped_matrix = trainer._eval_metric.confusion_matrix.clone()
    stream = load_segmentation_data(str(synthetic_dataset), streaming=True).splits["validation"]
    trainer.evaluate(StreamingSegmentationDataset(stream, transform, NUM_LABELS))
    assert mapped_matrix.sum() > 0 and torch.equal(trainer._eval_metric.confusion_matrix, mapped_matrix)


def test_streamed_preset_gives_the_converted_labels_of_the_map_style_path(cityscapes_copy, tmp_path) -> None:
    root, _ = cityscapes_copy
    mapped = load_preset("cityscapes", cache_dir=str(tmp_path / "cache"), repo_id=str(root))
    streamed = load_preset("cityscapes", cache_dir=str(tmp_path / "cache"), repo_id=str(root), streaming=True)

    assert isinstance(streamed.splits, datasets.IterableDatasetDict)
    assert set(streamed.splits) == set(mapped.splits) == {"train", "validation", "test"}
    assert streamed.id2label == mapped.id2label and streamed.label_transform is mapped.label_transform
    for split in ("train", "validation"):
        dataset = StreamingSegmentationDataset(
            streamed.splits[split], eval_transforms(), 19, split_name=split, label_transform=streamed.label_transform
        )
        labels = [sample["labels"].numpy() for sample in dataset]
        for got, expected in zip(labels, converted_labels(mapped, split), strict=True):
            assert np.array_equal(got, expected)

    check_label_range(streamed.splits["train"], 19, label_transform=streamed.label_transform)
    with pytest.raises(HeteroAKDError, match=r"'train', row 0: label values"):  # raw label ids are not train ids
        check_label_range(streamed.splits["train"], 19)


def test_streaming_without_max_steps_is_one_clear_error(tmp_path, synthetic_dataset) -> None:
    with pytest.raises(HeteroAKDError, match="set --max_steps"):
        run_distillation(
            ModelArguments(student="resnet18", student_pretrained_backbone=False),
            DataArguments(dataset=str(synthetic_dataset), streaming=True),
            run_args(tmp_path, do_train=True),
        )


def test_bad_streamed_rows_are_named_or_skipped_and_counted(tmp_path, caplog) -> None:
    good = (Image.new("RGB", (8, 8)), Image.fromarray(np.zeros((8, 8), np.uint8)))
    corrupt = ({"bytes": b"not an image", "path": None}, good[1])
    out_of_range = (good[0], Image.fromarray(np.full((8, 8), 9, np.uint8)))
    wrong_size = (good[0], Image.fromarray(np.zeros((4, 8), np.uint8)))
    root = write_shards(tmp_path / "bad", [good, corrupt, good, out_of_range, wrong_size, good])
    split = load_segmentation_data(root, streaming=True).splits["train"]

    strict = StreamingSegmentationDataset(split, eval_transforms(), num_labels=3)
    with pytest.raises(HeteroAKDError, match=r"Split 'train', row 1: the image or mask cannot be decoded"):
        list(strict)

    lenient = StreamingSegmentationDataset(split, eval_transforms(), num_labels=3, skip_bad_samples=True)
    with caplog.at_level(logging.WARNING, logger="hf_heteroakd.data"):
        samples = list(lenient)  # the stream goes on past each bad row
    assert len(samples) == 3 and lenient.skipped == 3
    assert [r.args[0] for r in caplog.records if r.msg.startswith("Skipping")] == ["1", "3", "4"]
    assert "row 3: label values [9]" in caplog.text and "row 4: the image is 8x8 but its mask is 8x4" in caplog.text


@pytest.mark.parametrize("seeded", [True, False])  # training (shuffled) and evaluation streams
@pytest.mark.parametrize("num_shards", [4, 3])  # split between processes by whole shards, or by rows
def test_processes_and_workers_read_every_sample_once(tmp_path, num_shards: int, seeded: bool) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    rows = [(image, Image.fromarray(np.full((8, 8), i, np.uint8))) for i in range(12)]  # mask i marks row i
    split = load_segmentation_data(write_shards(tmp_path / "ds", rows, num_shards), streaming=True).splits["train"]
    dataset = StreamingSegmentationDataset(split, train_transforms((8, 8), (1.0, 1.0)), 12, shuffle_buffer=4)

    seen = []
    for rank in (0, 1):  # as the trainer builds each process's loader
        shard = (dataset.with_seed(0) if seeded else dataset).for_process(rank, 2)
        loader = torch.utils.data.DataLoader(shard, batch_size=2, num_workers=2, collate_fn=collate_segmentation)
        seen += [int(labels[0, 0]) for batch in loader for labels in batch["labels"]]
    assert sorted(seen) == list(range(12))


def test_training_stream_is_shuffled_and_augmented_by_seed_and_epoch(synthetic_dataset) -> None:
    split = load_segmentation_data(str(synthetic_dataset), streaming=True).splits["train"]
    dataset = StreamingSegmentationDataset(split, train_transforms((16, 16)), NUM_LABELS, shuffle_buffer=8).with_seed(
        3
    )

    def epoch(number: int) -> torch.Tensor:
        dataset.set_epoch(number)
        return torch.stack([sample["pixel_values"] for sample in dataset])

    first = epoch(0)
    torch.manual_seed(123)  # the global RNG plays no part
    assert torch.equal(epoch(0), first)
    assert not torch.equal(epoch(1), first)
    unshuffled = StreamingSegmentationDataset(split, train_transforms((16, 16)), NUM_LABELS)
    assert len(first) == len(list(unshuffled)) == 12


def test_streams_without_image_columns_are_clear_errors(tmp_path, monkeypatch, synthetic_dataset) -> None:
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=["cat", "dog"])})
    (tmp_path / "cls" / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))], "label": [1]}, features=features).to_parquet(
        tmp_path / "cls" / "data" / "train-00000-of-00001.parquet"
    )
    with pytest.raises(HeteroAKDError, match="not images"):  # a stream casts lazily: its first row is tried
        load_segmentation_data(str(tmp_path / "cls"), streaming=True)

    monkeypatch.setattr(datasets.IterableDataset, "column_names", property(lambda self: None))
    with pytest.raises(HeteroAKDError, match="declare no columns.*without --streaming"):
        load_segmentation_data(str(synthetic_dataset), streaming=True)
