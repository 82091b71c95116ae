"""The stage projectors that map features of either architecture into the aligned logits space."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Literal, get_args

import torch
from torch import nn
from tqdm.auto import tqdm

StudentProjector = Literal["mlp", "linear", "none"]
TeacherProjector = Literal["mlp", "none"]


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


class LinearLogitsProjector(nn.Sequential):
    """(N, C_in, h, w) features → (N, num_labels, h, w) logits: 1×1 conv → BN, the minimal reading of the
    paper's "1×1 conv with BN": a linear map, too weak to absorb a target the features do not carry."""

    def __init__(self, in_channels: int, num_labels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, num_labels, kernel_size=1, bias=False), nn.BatchNorm2d(num_labels))


class HeteroAKDProjectors(nn.Module):
    """Per distilled stage, one student projector unless ``student_projector`` is "none" ("mlp":
    :class:`LogitsProjector`, "linear": :class:`LinearLogitsProjector`), and one teacher projector unless
    ``teacher_projector`` is "none".

    With a student "none" the student's map Z^S is its own logits, the output of its decode head: L_hakd then
    trains the layers that predict, and no projector beside them can absorb the target. With a teacher
    "none" Z^T is the teacher's own logits: the target is the teacher's prediction, not a map read off one
    of its stages.
    """

    def __init__(
        self,
        student_channels: list[int],
        teacher_channels: list[int],
        num_labels: int,
        hidden_channels: int = 256,
        student_projector: StudentProjector = "mlp",
        teacher_projector: TeacherProjector = "mlp",
    ) -> None:
        super().__init__()
        if len(student_channels) != len(teacher_channels):
            raise ValueError("student and teacher need the same number of distilled stages")
        builders = {
            "mlp": lambda c: LogitsProjector(c, num_labels, hidden_channels),
            "linear": lambda c: LinearLogitsProjector(c, num_labels),
            "none": None,
        }
        for side, value, kind in (
            ("student", student_projector, StudentProjector),
            ("teacher", teacher_projector, TeacherProjector),
        ):
            if value not in get_args(kind):
                raise ValueError(f"{side}_projector must be one of {', '.join(get_args(kind))}, got {value!r}")
        build = builders[student_projector]
        self.student = nn.ModuleList(build(c) for c in student_channels) if build else None
        self.teacher = (
            nn.ModuleList(LogitsProjector(c, num_labels, hidden_channels) for c in teacher_channels)
            if teacher_projector == "mlp"
            else None
        )
        self.num_stages = len(teacher_channels)

    def forward(
        self,
        student_features: list[torch.Tensor],
        teacher_features: list[torch.Tensor] | None,
        student_logits: torch.Tensor | None = None,
        teacher_logits: torch.Tensor | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Z^S and Z^T of the selected stages: lists of (N, num_labels, h_k, w_k) maps. Without student
        projectors, Z^S of every stage is the (N, num_labels, h, w) ``student_logits``; without teacher
        projectors, Z^T of every stage is the (N, num_labels, h', w') ``teacher_logits``, in float32."""
        if self.teacher is None:
            if teacher_logits is None:
                raise ValueError("without teacher projectors, Z^T is the teacher's logits: pass teacher_logits")
            z_t = [teacher_logits.float()] * self.num_stages
        else:
            if teacher_features is None:
                raise ValueError("teacher projectors read the teacher's stage maps: pass teacher_features")
            dtype = self.teacher[0][0].weight.dtype  # the teacher may run in bf16 while projectors train in fp32
            z_t = [proj(f.to(dtype)) for proj, f in zip(self.teacher, teacher_features)]
        if self.student is None:
            if student_logits is None:
                raise ValueError("without student projectors, Z^S is the student's logits: pass student_logits")
            return [student_logits] * self.num_stages, z_t
        z_s = [proj(f) for proj, f in zip(self.student, student_features)]
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
