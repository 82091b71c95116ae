"""`--preflight_only`: one batch of each split, one teacher forward, one student step, then stop."""

from __future__ import annotations

import torch

from hf_heteroakd import HeteroAKDConfig, HeteroAKDTrainer, build_student
from hf_heteroakd.cli import main
from hf_heteroakd.data import SegmentationDataset, collate_segmentation, eval_transforms, load_segmentation_data
from hf_heteroakd.training.preflight import preflight

from .conftest import ID2LABEL, NUM_LABELS, tiny_segformer


def test_preflight_only_reports_and_trains_nothing(tmp_path, tiny_segformer_dir, synthetic_dataset, capsys):
    code = main(
        [
            "--teacher",
            str(tiny_segformer_dir),
            "--student",
            "resnet18",
            "--student_pretrained_backbone",
            "false",
            "--dataset",
            str(synthetic_dataset),
            "--output_dir",
            str(tmp_path / "out"),
            "--do_train",
            "--do_eval",
            "--preflight_only",
            "--per_device_train_batch_size",
            "2",
            "--report_to",
            "none",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "train: a batch of (2, 3, 512, 512) reads and checks" in out
    assert "eval: a batch of" in out and "teacher pixel accuracy on the batch" in out and "one student step" in out
    assert "warning: the training crop 512x512 is larger than the images (32x32)" in out
    assert not (tmp_path / "out" / "model.safetensors").exists()


def test_a_teacher_no_better_than_the_majority_class_is_flagged_and_the_student_is_untouched(
    tmp_path, synthetic_dataset
):
    split = load_segmentation_data(str(synthetic_dataset)).splits["validation"]
    data = SegmentationDataset(split, eval_transforms(), NUM_LABELS)
    teacher = tiny_segformer()
    torch.nn.init.zeros_(teacher.decode_head.classifier.weight)
    torch.nn.init.constant_(teacher.decode_head.classifier.bias, 0.0)
    teacher.decode_head.classifier.bias.data[5] = 1.0  # always "cross", a rare class
    trainer = HeteroAKDTrainer(
        model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
        teacher_model=teacher,
        args=HeteroAKDConfig(
            output_dir=str(tmp_path), report_to="none", per_device_train_batch_size=2, dataloader_pin_memory=False
        ),
        train_dataset=data,
        data_collator=collate_segmentation,
    )
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    report = preflight(trainer)
    assert any(line.startswith("warning: teacher pixel accuracy") for line in report)
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key
