"""Distillation methods: one class each, chosen once by ``--distill_method`` from a small registry.

A method says what it needs (``uses_teacher``; ``uses_stage_features`` for the backbone maps,
``uses_teacher_stage_features`` for the teacher's among them) and turns a batch's outputs into named
loss terms with their weights; the trainer adds them to ``L_task``. Adding a method is one class and its
config fields::

    @register_method
    class LogitL2(DistillationMethod):
        name = "logit_l2"

        def loss_terms(self, out, teacher, labels):
            return LossTerms({"l2": (self.args.lambda_kd, (out.logits - teacher.logits).pow(2).mean())})

(docs/extending.md walks through a complete example, tested in tests/test_methods.py.) A config field
belongs to the methods named in its ``metadata["methods"]``; the model card lists those fields for the
run's method.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn
from transformers import PreTrainedModel, TrainingArguments

from ..core import losses
from ..core.errors import HeteroAKDError
from ..core.features import stage_channels
from ..core.projectors import HeteroAKDProjectors
from .outputs import DistillationOutput, TeacherOutputs


@dataclass
class LossTerms:
    """A method's loss terms for one batch, each a scalar added to L_task with its weight."""

    weighted: dict[str, tuple[float, torch.Tensor]]  # name -> (weight, value)
    diagnostics: dict[str, torch.Tensor] = field(default_factory=dict)  # logged, never trained on


class DistillationMethod:
    """Base class of the methods: subclasses set ``name`` and override :meth:`loss_terms`;
    :func:`register_method` makes them a ``--distill_method`` value."""

    name: ClassVar[str]
    uses_teacher: ClassVar[bool] = True
    uses_stage_features: ClassVar[bool] = False  # the student's backbone stage maps (and the teacher's, see below)
    tags: ClassVar[tuple[str, ...]] = ("knowledge-distillation",)  # model-card tags beside semantic-segmentation

    def __init__(self, args: TrainingArguments) -> None:
        self.args = args  # the run's HeteroAKDConfig: TrainingArguments plus the methods' fields
        # Set by the trainer on the steps it logs: diagnostics that cost a backward pass are computed only then.
        self.diagnose_gradients = False

    @property
    def uses_teacher_stage_features(self) -> bool:
        """Whether the teacher's stage maps are read (and cached): by default, when the student's are."""
        return self.uses_stage_features

    def build_projectors(self, student: PreTrainedModel, teacher: PreTrainedModel | None) -> nn.Module | None:
        """Trainable modules beside the student (trained with it, saved in checkpoints, never published)."""
        if self.uses_teacher:
            _check_num_labels(student, teacher)
        return None

    def loss_terms(self, out: DistillationOutput, teacher: TeacherOutputs | None, labels: torch.Tensor) -> LossTerms:
        """The batch's terms; ``out`` holds the student's (B, C, h, w) logits, ``teacher`` the teacher's."""
        return LossTerms({})


METHODS: dict[str, type[DistillationMethod]] = {}


def register_method(cls: type[DistillationMethod]) -> type[DistillationMethod]:
    """Class decorator: ``--distill_method <cls.name>`` selects ``cls``."""
    METHODS[cls.name] = cls
    return cls


def method_class(name: str) -> type[DistillationMethod]:
    """The class registered as ``name``; an error listing the registered names otherwise."""
    if name not in METHODS:
        raise HeteroAKDError(f"unknown --distill_method {name!r}; the registered methods are {', '.join(METHODS)}")
    return METHODS[name]


@register_method
class NoDistillation(DistillationMethod):
    """Plain training on the labels: no teacher, no terms beside L_task."""

    name = "none"
    uses_teacher = False
    tags = ()  # a baseline trained without a teacher is not tagged as distillation


@register_method
class PixelKD(DistillationMethod):
    """Eq. 1: the KL divergence of the student's per-pixel class distribution from the teacher's."""

    name = "kd"
    uses_teacher = True

    def loss_terms(self, out, teacher, labels) -> LossTerms:
        kd = losses.pixel_kd_loss(out.logits, teacher.logits, self.args.temperature)
        return LossTerms({"kd": (self.args.lambda_kd, kd)})


@register_method
class ChannelWiseKD(DistillationMethod):
    """Channel-wise distillation of the logits (Shu et al., 2021): each class map a softmax over pixels."""

    name = "cwd"
    uses_teacher = True

    def loss_terms(self, out, teacher, labels) -> LossTerms:
        cwd = losses.channel_wise_kd_loss(out.logits, teacher.logits, self.args.temperature)
        return LossTerms({"cwd": (self.args.lambda_cwd, cwd)})


@register_method
class HeteroAKD(PixelKD):
    """L_kd plus, per distilled stage, L_hakd (Eq. 10) and L_proj on the projected maps Z^S and Z^T."""

    name = "heteroakd"
    uses_stage_features = True
    tags = ("knowledge-distillation", "heteroakd")

    @property
    def uses_teacher_stage_features(self) -> bool:
        return self.args.teacher_projector != "none"  # otherwise Z^T is the teacher's logits

    def build_projectors(self, student, teacher) -> HeteroAKDProjectors:
        _check_num_labels(student, teacher)
        stages = self.args.hakd_stages
        return HeteroAKDProjectors(
            _pick_stages(stage_channels(student), stages, "student"),
            _pick_stages(stage_channels(teacher), stages, "teacher"),
            student.config.num_labels,
            self.args.projector_channels,
            self.args.student_projector,
            self.args.teacher_projector,
        )

    def loss_terms(self, out, teacher, labels) -> LossTerms:
        args = self.args
        grid = hakd_grid(labels.shape[-2:], args.hakd_stride)
        per_stage = [
            losses.heteroakd_loss(
                z_s,
                z_t,
                labels,
                temperature=args.temperature,
                kmm=args.kmm,
                kem=args.kem,
                kem_axis=args.kem_axis,
                ignore_index=args.ignore_index,
                eps=args.kmm_eps,
                activation=args.hakd_activation,
                grid=grid,
                proj_loss=args.proj_loss,
                proj_student=args.proj_loss_student and args.student_projector != "none",
                proj_teacher=args.teacher_projector != "none",
            )
            for z_s, z_t in zip(out.student_projected, out.teacher_projected)
        ]
        terms = super().loss_terms(out, teacher, labels)
        hakd = torch.stack([s.hakd for s in per_stage]).sum()
        terms.weighted["hakd"] = (args.lambda_hakd, hakd)
        terms.weighted["proj"] = (args.lambda_proj, torch.stack([s.proj for s in per_stage]).sum())
        terms.diagnostics = {  # averaged over the stages
            f"hakd_{name}": torch.stack([s.diagnostics[name] for s in per_stage]).mean()
            for name in per_stage[0].diagnostics
        }
        if self.diagnose_gradients and out.student_features and out.student_features[0].requires_grad:
            task = losses.task_loss(out.logits, labels, args.ignore_index)
            alignment = losses.gradient_alignment(hakd, task, out.student_features)
            terms.diagnostics.update({f"hakd_{name}": value for name, value in alignment.items()})
        return terms


def hakd_grid(label_size: tuple[int, int], stride: int | None) -> tuple[int, int] | None:
    """The grid on which L_hakd compares the projected maps: the label grid divided by ``stride``
    (rounded up); None for the student's own stage grid."""
    if stride is None:
        return None
    return (-(-label_size[0] // stride), -(-label_size[1] // stride))


def _check_num_labels(student: nn.Module, teacher: nn.Module) -> None:
    s, t = student.config.num_labels, teacher.config.num_labels
    if s != t:
        raise HeteroAKDError(
            f"the student predicts {s} classes but the teacher {t}; distillation needs the same label set "
            "(build the student with the teacher's id2label)"
        )


def _pick_stages(channels: list[int], stages: list[int], role: str) -> list[int]:
    if any(not -len(channels) <= i < len(channels) for i in stages):
        raise HeteroAKDError(
            f"--hakd_stages {' '.join(map(str, stages))} is out of range for the {role}, which has "
            f"{len(channels)} stages; use indices in [-{len(channels)}, {len(channels) - 1}]"
        )
    return [channels[i] for i in stages]
