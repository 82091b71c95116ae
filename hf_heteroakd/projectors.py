"""The stage projectors that map features of either architecture into the aligned logits space."""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import nn
from tqdm.auto import tqdm


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


def fit_projectors(
    projectors: nn.ModuleList,
    batches: Iterable[tuple[list[torch.Tensor], torch.Tensor]],
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    steps: int,
    lr: float,
    progress: bool = False,
) -> float:
    """Trains ``projectors`` alone (one per stage) for ``steps`` AdamW steps; returns the last step's loss.

    Args:
        projectors: the projectors of one side, e.g. ``HeteroAKDProjectors.teacher``.
        batches: (stage features, labels) pairs: a list of (N, C_k, h_k, w_k) maps, one per projector, and
            (N, H, W) labels; iterated until ``steps`` are done.
        loss_fn: (projected (N, C, h_k, w_k) logits, labels) → scalar loss; summed over the stages.
    """
    optimizer = torch.optim.AdamW(projectors.parameters(), lr=lr)
    projectors.train()
    loss = torch.zeros(())
    with tqdm(total=steps, desc="fitting the teacher projectors", disable=not progress) as bar:
        for step, (features, labels) in enumerate(batches, start=1):
            dtype = projectors[0][0].weight.dtype  # the teacher may run in bf16 while projectors train in fp32
            loss = torch.stack([loss_fn(proj(f.to(dtype)), labels) for proj, f in zip(projectors, features)]).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            bar.update()
            if step == steps:
                break
    projectors.zero_grad(set_to_none=True)
    return loss.item()
