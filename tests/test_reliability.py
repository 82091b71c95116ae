"""Nothing is lost: no run is written over by accident, an interrupted save keeps the last student."""

from __future__ import annotations

import os

import pytest
import torch

from hf_heteroakd import HeteroAKDConfig, HeteroAKDError, HeteroAKDTrainer, build_student
from hf_heteroakd.pipeline import DataArguments, ModelArguments, run_distillation

from .conftest import ID2LABEL


def test_training_refuses_an_output_dir_holding_another_run(tmp_path, synthetic_dataset):
    (tmp_path / "all_results.json").write_text("{}")
    args = HeteroAKDConfig(output_dir=str(tmp_path), distill_method="none", do_train=True, report_to="none")
    with pytest.raises(HeteroAKDError, match="--overwrite_output_dir"):
        run_distillation(
            ModelArguments(student_pretrained_backbone=False), DataArguments(dataset=str(synthetic_dataset)), args
        )
    assert [p.name for p in tmp_path.iterdir()] == ["all_results.json"]


def test_an_interrupted_save_leaves_the_previous_student_intact(tmp_path, monkeypatch):
    torch.manual_seed(0)
    trainer = HeteroAKDTrainer(
        model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
        args=HeteroAKDConfig(output_dir=str(tmp_path), distill_method="none", report_to="none"),
    )
    trainer.save_model()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    torch.nn.init.zeros_(trainer.student.decode_head[-1].weight)  # a different student to save

    def fail_midway(self, save_directory, **kwargs):
        with open(os.path.join(save_directory, "model.safetensors"), "wb") as half_written:
            half_written.write(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(type(trainer.student), "save_pretrained", fail_midway)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_model()
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert after == before  # same files, same bytes, no staging folder left behind


def test_bad_samples_stop_the_run_or_are_skipped_and_counted(tmp_path):
    import datasets
    import numpy as np
    from PIL import Image

    from hf_heteroakd.data import SegmentationDataset, collate_segmentation, eval_transforms

    good = (Image.new("RGB", (8, 8)), Image.fromarray(np.zeros((8, 8), np.uint8)))
    out_of_range = (Image.new("RGB", (8, 8)), Image.fromarray(np.full((8, 8), 9, np.uint8)))
    wrong_size = (Image.new("RGB", (8, 8)), Image.fromarray(np.zeros((4, 8), np.uint8)))
    corrupt = ({"bytes": b"not an image", "path": None}, good[1])
    rows = [good, out_of_range, good, wrong_size, corrupt]
    split = datasets.Dataset.from_dict(
        {"image": [r[0] for r in rows], "label": [r[1] for r in rows]},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Image()}),
    )
    strict = SegmentationDataset(split, eval_transforms(), num_labels=3, split_name="train")
    with pytest.raises(HeteroAKDError, match="row 1"):
        strict[1]
    with pytest.raises(HeteroAKDError, match="row 4: the image or mask cannot be decoded"):
        strict[4]
    lenient = SegmentationDataset(split, eval_transforms(), num_labels=3, split_name="train", skip_bad_samples=True)
    batch = collate_segmentation([lenient[i] for i in range(5)])
    assert batch["labels"].shape == (2, 8, 8)
    assert lenient.skipped == 3
    with pytest.raises(HeteroAKDError, match="every sample"):
        collate_segmentation([None, None])


def test_non_finite_steps_are_skipped_then_the_run_stops_with_a_checkpoint(tmp_path, synthetic_dataset, monkeypatch):
    from hf_heteroakd.core import losses
    from hf_heteroakd.data import SegmentationDataset, collate_segmentation, load_segmentation_data, train_transforms

    from .conftest import NUM_LABELS, tiny_segformer

    real = losses.heteroakd_loss

    def hakd_goes_nan_after_two_calls(*args, **kwargs):
        calls.append(1)
        out = real(*args, **kwargs)
        return out._replace(hakd=out.hakd * float("nan")) if len(calls) > 2 else out

    calls: list[int] = []
    monkeypatch.setattr(losses, "heteroakd_loss", hakd_goes_nan_after_two_calls)
    split = load_segmentation_data(str(synthetic_dataset)).splits["train"]
    args = HeteroAKDConfig(
        output_dir=str(tmp_path),
        max_steps=10,
        per_device_train_batch_size=2,
        max_nonfinite_steps=2,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    trainer = HeteroAKDTrainer(
        model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
        teacher_model=tiny_segformer(),
        args=args,
        train_dataset=SegmentationDataset(split, train_transforms((32, 32)), NUM_LABELS),
        data_collator=collate_segmentation,
    )
    trainer.train()
    before_nan = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    assert trainer.nonfinite_steps == 3
    # Skipped steps count as steps but change no weight: the checkpoint holds the 2 good steps' student.
    assert "hakd" in trainer.nonfinite_stop and "checkpoint-4" in trainer.nonfinite_stop
    assert trainer.state.global_step == 5  # stopped long before max_steps=10
    assert (tmp_path / "checkpoint-4" / "model.safetensors").is_file()
    assert all(torch.isfinite(v).all() for v in before_nan.values() if v.is_floating_point())
