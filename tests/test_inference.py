"""Sliding-window and flip evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers.modeling_outputs import SemanticSegmenterOutput

from hf_heteroakd.core.inference import _starts, segmentation_logits


class PixelwiseModel(nn.Module):
    """Logits from each pixel alone (a 1×1 conv) at half resolution: any window gives the same values."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, pixel_values):
        return SemanticSegmenterOutput(logits=self.conv(pixel_values))


@pytest.mark.parametrize("length, window, stride", [(10, 4, 3), (12, 4, 4), (3, 4, 2), (4, 4, 1)])
def test_windows_cover_the_axis_and_end_flush(length, window, stride):
    starts = _starts(length, window, stride)
    covered = set()
    for start in starts:
        covered.update(range(start, min(start + window, length)))
    assert covered == set(range(length))
    assert starts[-1] == max(length - window, 0)


def test_sliding_windows_of_a_pixelwise_model_equal_the_whole_image():
    torch.manual_seed(0)
    model, pixels = PixelwiseModel(), torch.randn(2, 3, 13, 22)
    whole = segmentation_logits(model, pixels)
    assert whole.shape == (2, 4, 13, 22)
    torch.testing.assert_close(segmentation_logits(model, pixels, crop_size=(6, 8), stride=(4, 5)), whole)
    torch.testing.assert_close(segmentation_logits(model, pixels, crop_size=(32, 32)), whole)
    torch.testing.assert_close(segmentation_logits(model, pixels, flip=True), whole)  # a 1×1 conv is mirror-symmetric


def test_windows_see_only_their_crop():
    class MeanModel(nn.Module):  # each window's logits: the window's mean, everywhere in it
        def forward(self, pixel_values):
            return SemanticSegmenterOutput(logits=pixel_values.mean(dim=(1, 2, 3), keepdim=True).expand(-1, 1, 2, 2))

    pixels = torch.zeros(1, 3, 4, 8)
    pixels[..., 4:] = 1.0
    logits = segmentation_logits(MeanModel(), pixels, crop_size=(4, 4), stride=(4, 4))
    assert torch.equal(logits[0, 0, :, :4], torch.zeros(4, 4)) and torch.equal(logits[0, 0, :, 4:], torch.ones(4, 4))


def test_trainer_evaluates_with_sliding_windows_and_flip(tmp_path, synthetic_dataset):
    from hf_heteroakd import HeteroAKDConfig, HeteroAKDTrainer, build_student
    from hf_heteroakd.data import SegmentationDataset, collate_segmentation, eval_transforms, load_segmentation_data

    from .conftest import ID2LABEL, NUM_LABELS

    split = load_segmentation_data(str(synthetic_dataset)).splits["validation"]
    args = HeteroAKDConfig(
        output_dir=str(tmp_path),
        distill_method="none",
        report_to="none",
        eval_crop_size=[16],
        eval_stride=[8],
        eval_flip=True,
        dataloader_pin_memory=False,
    )
    assert args.eval_crop_size == [16, 16]
    trainer = HeteroAKDTrainer(
        model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
        args=args,
        eval_dataset=SegmentationDataset(split, eval_transforms(), NUM_LABELS),
        data_collator=collate_segmentation,
    )
    metrics = trainer.evaluate()
    assert 0.0 <= metrics["eval_mean_iou"] <= 1.0
