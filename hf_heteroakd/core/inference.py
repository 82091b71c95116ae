"""Whole-image, sliding-window and flip-averaged segmentation logits, for evaluation."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .losses import resize_logits


def _starts(length: int, window: int, stride: int) -> list[int]:
    """Window origins along one axis: every ``stride`` pixels, the last one flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, stride))
    return starts + [length - window]


def sliding_window_logits(
    model: nn.Module, pixel_values: torch.Tensor, crop_size: tuple[int, int], stride: tuple[int, int]
) -> torch.Tensor:
    """(N, 3, H, W) pixels → (N, C, H, W) logits, averaged over overlapping ``crop_size`` windows.

    Each window's logits are resized to the window before they are summed; images smaller than
    the window are run whole.
    """
    height, width = pixel_values.shape[-2:]
    total, count = None, pixel_values.new_zeros(1, 1, height, width)
    for top in _starts(height, crop_size[0], stride[0]):
        for left in _starts(width, crop_size[1], stride[1]):
            window = pixel_values[..., top : top + crop_size[0], left : left + crop_size[1]]
            logits = resize_logits(model(window).logits.float(), window.shape[-2:])
            if total is None:
                total = pixel_values.new_zeros(pixel_values.shape[0], logits.shape[1], height, width)
            total[..., top : top + window.shape[-2], left : left + window.shape[-1]] += logits
            count[..., top : top + window.shape[-2], left : left + window.shape[-1]] += 1
    return total / count


def segmentation_logits(
    model: nn.Module,
    pixel_values: torch.Tensor,
    crop_size: tuple[int, int] | None = None,
    stride: tuple[int, int] | None = None,
    flip: bool = False,
) -> torch.Tensor:
    """(N, C, H, W) logits at the input's size: whole image, or sliding windows when ``crop_size``
    is given (``stride`` defaults to 2/3 of it), averaged with the horizontally flipped image's."""

    def run(pixels: torch.Tensor) -> torch.Tensor:
        if crop_size is None:
            return resize_logits(model(pixels).logits.float(), pixels.shape[-2:])
        steps = stride or (max(1, crop_size[0] * 2 // 3), max(1, crop_size[1] * 2 // 3))
        return sliding_window_logits(model, pixels, crop_size, steps)

    logits = run(pixel_values)
    if flip:
        logits = (logits + run(pixel_values.flip(-1)).flip(-1)) / 2
    return logits


@torch.no_grad()
def predict_classes(model: nn.Module, pixel_values: torch.Tensor, *window: Any, **window_options: Any) -> torch.Tensor:
    """(3, H, W) normalised pixels of one image -> (H, W) int64 class indices on the CPU: the argmax of
    :func:`segmentation_logits` (``window``: its ``crop_size``, ``stride``, ``flip``), run on the model's
    device and in its dtype."""
    parameter = next(model.parameters())
    pixels = pixel_values[None].to(parameter.device, parameter.dtype)
    return segmentation_logits(model, pixels, *window, **window_options).argmax(dim=1)[0].cpu()
