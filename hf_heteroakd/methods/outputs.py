"""What a distillation method reads for a batch: the student's outputs and the teacher's.

The trainer fills them (running the networks or reading the teacher-output cache); a method's
``loss_terms`` turns them into loss terms.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers.utils import ModelOutput


@dataclass
class DistillationOutput(ModelOutput):
    """What the trainable module returns for a batch, and what a method's terms are computed from."""

    logits: torch.Tensor | None = None
    """The student's (N, C, h, w) logits."""
    student_projected: list[torch.Tensor] | None = None
    """Z^S of each distilled stage, (N, C, h_k, w_k)."""
    teacher_projected: list[torch.Tensor] | None = None
    """Z^T of each distilled stage, (N, C, h'_k, w'_k)."""
    student_features: list[torch.Tensor] | None = None
    """The student's distilled backbone stages, (N, C_k, h_k, w_k), where L_hakd's gradient is diagnosed."""


@dataclass
class TeacherOutputs:
    """What distillation takes from the teacher for a batch of B samples."""

    logits: torch.Tensor  # (B, C, h, w), the teacher's output resolution
    features: list[torch.Tensor] | None = None  # HeteroAKD: the distilled stages' maps, each (B, C_k, h_k, w_k)
