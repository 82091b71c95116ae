"""The stage projectors that map features of either architecture into the aligned logits space."""

from __future__ import annotations

import torch
from torch import nn


class LogitsProjector(nn.Sequential):
    """(N, C_in, h, w) features → (N, num_labels, h, w) logits: 1×1 conv → BN → ReLU → 1×1 conv.

    The last conv has no ReLU after it, so the output can be negative, as logits are.
    """

    def __init__(self, in_channels: int, num_labels: int, hidden_channels: int = 256) -> None:
        super().__init__(
            nn.Conv2d(in_channels, hidden_channels, kernel_size=1, bias=False),
            nn.BatchNorm2d(hidden_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden_channels, num_labels, kernel_size=1),
        )


class HeteroAKDProjectors(nn.Module):
    """One student and one teacher projector per distilled stage."""

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_labels: int,
        hidden_channels: int = 256,
    ) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError("student and teacher need the same number of distilled stages")
        self.student = nn.ModuleList(LogitsProjector(c, num_labels, hidden_channels) for c in student_channels)
        self.teacher = nn.ModuleList(LogitsProjector(c, num_labels, hidden_channels) for c in teacher_channels)

    def forward(
        self, student_features: list[torch.Tensor], teacher_features: list[torch.Tensor]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Project the selected stages of both models: lists of (N, num_labels, h_k, w_k) maps."""
        dtype = self.teacher[0][0].weight.dtype  # the teacher may run in bf16 while projectors train in fp32
        z_s = [proj(f) for proj, f in zip(self.student, student_features)]
        z_t = [proj(f.to(dtype)) for proj, f in zip(self.teacher, teacher_features)]
        return z_s, z_t
