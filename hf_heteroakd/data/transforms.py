"""Paired (image, mask) transforms: the training augmentation and the evaluation preprocessing."""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import numpy as np
import PIL.Image
import torch
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from hf_heteroakd.core.labels import IGNORE_INDEX

logger = logging.getLogger(__name__)


# (PIL image, PIL mask) -> (pixel_values (3, H, W) float32, labels (H, W) int64)
PairTransform = Callable[[PIL.Image.Image, PIL.Image.Image], tuple[torch.Tensor, torch.Tensor]]


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``scale_range``, relative to the input's own size.

    Images use bilinear interpolation; masks use nearest-exact, which keeps class indices valid and,
    unlike legacy "nearest", samples at pixel centres, so the mask stays aligned with the image.
    """

    def __init__(self, scale_range: tuple[float, float]) -> None:
        super().__init__()
        self.scale_range = scale_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.scale_range
        scale = low + (high - low) * torch.rand(()).item()
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        is_mask = isinstance(inpt, tv_tensors.Mask)
        interpolation = v2.InterpolationMode.NEAREST_EXACT if is_mask else v2.InterpolationMode.BILINEAR
        return self._call_kernel(F.resize, inpt, size=params["size"], interpolation=interpolation, antialias=True)


class SegmentationTransform:
    """Runs a v2 pipeline on a (PIL image, PIL mask) pair.

    Returns ``pixel_values`` (3, H, W) float32 and ``labels`` (H, W) int64 as plain tensors. The mask
    must be single-channel (mode L, P, I, ...) with class indices as pixel values.
    """

    def __init__(self, pipeline: v2.Transform) -> None:
        self.pipeline = pipeline

    def __call__(self, image: PIL.Image.Image, mask: PIL.Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.to_image(image.convert("RGB"))  # (3, H, W) uint8
        mask = tv_tensors.Mask(torch.from_numpy(np.array(mask, dtype=np.int64)))  # (H, W), indices kept as is
        image, mask = self.pipeline(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


# The ranges of mmsegmentation's PhotoMetricDistortion, the segmentation codebases' default: brightness
# ±32 of 255 (here a factor, ColorJitter's brightness is multiplicative), contrast and saturation
# ×0.5..1.5, hue ±18 of OpenCV's 180 steps, i.e. ±0.1 of the hue circle.
PHOTOMETRIC_DISTORTION: dict[str, Any] = {
    "brightness": 32 / 255,
    "contrast": (0.5, 1.5),
    "saturation": (0.5, 1.5),
    "hue": 18 / 180,
}


def train_transforms(
    crop_size: tuple[int, int],
    scale_range: tuple[float, float] = (0.5, 2.0),
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    ignore_index: int = IGNORE_INDEX,
    photometric_distortion: bool = False,
) -> SegmentationTransform:
    """Random scale, random ``crop_size`` (H, W) crop, random horizontal flip, then normalize.

    Images smaller than the crop are padded with 0 (before normalization) and their masks with
    ``ignore_index``, so padding never counts as a class. ``photometric_distortion`` adds random
    brightness, contrast, saturation and hue changes to the image (``PHOTOMETRIC_DISTORTION``).
    """
    steps: list[v2.Transform] = [
        RandomScale(scale_range),
        v2.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}),
        v2.RandomHorizontalFlip(),
    ]
    if photometric_distortion:
        steps.append(v2.ColorJitter(**PHOTOMETRIC_DISTORTION))  # changes images only; masks pass through
    steps += [
        v2.ToDtype(torch.float32, scale=True),  # a plain dtype converts images only; masks stay int64
        v2.Normalize(mean, std),
    ]
    return SegmentationTransform(v2.Compose(steps))


def eval_transforms(
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD
) -> SegmentationTransform:
    """Full resolution: only scale to [0, 1] and normalize; labels are returned unchanged."""
    return SegmentationTransform(v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]))
