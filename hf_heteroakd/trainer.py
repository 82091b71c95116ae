"""``HeteroAKDTrainer``: a ``transformers.Trainer`` that distills a frozen teacher into a student."""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import safetensors.torch
import torch
from torch import nn
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR
from transformers.utils import ModelOutput

from . import losses
from .config import HeteroAKDConfig
from .errors import HeteroAKDError
from .features import stage_channels, stage_features
from .projectors import HeteroAKDProjectors

PROJECTORS_NAME = "heteroakd_projectors.safetensors"


@dataclass
class DistillationOutput(ModelOutput):
    logits: torch.Tensor | None = None
    student_projected: list[torch.Tensor] | None = None
    teacher_projected: list[torch.Tensor] | None = None


class StudentWithProjectors(nn.Module):
    """The trainable part of a run: the student and, for HeteroAKD, the stage projectors.

    One module, so that DDP, the optimizer and checkpoints cover the projectors with no special
    case; only ``student`` is ever saved as the model.
    """

    def __init__(
        self, student: PreTrainedModel, projectors: HeteroAKDProjectors | None = None, stages: list[int] = (-1,)
    ) -> None:
        super().__init__()
        self.student = student
        self.projectors = projectors
        self.stages = list(stages)

    def select(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        return [features[i] for i in self.stages]

    def forward(
        self, pixel_values: torch.Tensor, teacher_features: list[torch.Tensor] | None = None
    ) -> DistillationOutput:
        """Student logits; with ``teacher_features``, also Z^S and Z^T of the selected stages."""
        project = self.projectors is not None and teacher_features is not None
        outputs = self.student(pixel_values=pixel_values, output_hidden_states=project)
        if not project:
            return DistillationOutput(logits=outputs.logits)
        student_features = stage_features(self.student, outputs, pixel_values.shape[-2:])
        z_s, z_t = self.projectors(self.select(student_features), self.select(teacher_features))
        return DistillationOutput(logits=outputs.logits, student_projected=z_s, teacher_projected=z_t)


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


class HeteroAKDTrainer(Trainer):
    """Trains ``model`` (the student) with ``L_task + λ1·L_kd + λ2·L_hakd + λ_proj·L_proj``.

    Args:
        model: the student, a ``PreTrainedModel`` for semantic segmentation.
        teacher_model: the frozen teacher; required unless ``args.distill_method == "none"``.
        args: a :class:`HeteroAKDConfig`.
        teacher_input_transform: maps the student's normalised ``pixel_values`` to the teacher's
            (when their image processors normalise differently).
        **kwargs: passed on to ``transformers.Trainer`` (datasets, collator, compute_metrics, …).
    """

    def __init__(
        self,
        model: PreTrainedModel,
        teacher_model: PreTrainedModel | None = None,
        args: HeteroAKDConfig | None = None,
        teacher_input_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
        **kwargs: Any,
    ) -> None:
        args = args if args is not None else HeteroAKDConfig(output_dir="heteroakd_output")
        if not isinstance(args, HeteroAKDConfig):
            raise TypeError("args must be a HeteroAKDConfig")
        if args.distill_method != "none" and teacher_model is None:
            raise HeteroAKDError(f"distill_method={args.distill_method!r} needs a teacher_model")

        projectors = None
        if args.distill_method == "heteroakd":
            _check_num_labels(model, teacher_model)
            projectors = HeteroAKDProjectors(
                _pick_stages(stage_channels(model), args.hakd_stages, "student"),
                _pick_stages(stage_channels(teacher_model), args.hakd_stages, "teacher"),
                model.config.num_labels,
                args.projector_channels,
            )
        elif args.distill_method == "kd":
            _check_num_labels(model, teacher_model)
        super().__init__(model=StudentWithProjectors(model, projectors, args.hakd_stages), args=args, **kwargs)

        self.teacher = None
        if args.distill_method != "none":
            # Frozen and never in the optimizer or DDP: only ever run forward, without autograd.
            self.teacher = teacher_model.requires_grad_(False).eval().to(self.args.device)
        self.teacher_input_transform = teacher_input_transform
        # Each term is a per-micro-batch mean: the Trainer divides it by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self._loss_terms: dict[str, list[torch.Tensor]] = defaultdict(list)

    @property
    def student(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).student

    @property
    def projectors(self) -> HeteroAKDProjectors | None:
        return self.accelerator.unwrap_model(self.model).projectors

    @torch.no_grad()
    def teacher_forward(self, pixel_values: torch.Tensor) -> ModelOutput:
        """The teacher's logits and (for HeteroAKD) stage features, without autograd."""
        if self.teacher_input_transform is not None:
            pixel_values = self.teacher_input_transform(pixel_values)
        dtype = next(self.teacher.parameters()).dtype
        return self.teacher(
            pixel_values=pixel_values.to(dtype), output_hidden_states=self.args.distill_method == "heteroakd"
        )

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, DistillationOutput]:
        args = self.args
        pixel_values, labels = inputs["pixel_values"], inputs["labels"]
        teacher_out = self.teacher_forward(pixel_values) if self.teacher is not None else None
        teacher_features = None
        if args.distill_method == "heteroakd":
            teacher_features = stage_features(self.teacher, teacher_out, pixel_values.shape[-2:])
        out = model(pixel_values, teacher_features=teacher_features)

        terms = {"task": losses.task_loss(out.logits, labels, args.ignore_index)}
        loss = terms["task"]
        if teacher_out is not None:
            terms["kd"] = losses.pixel_kd_loss(out.logits, teacher_out.logits, args.temperature)
            loss = loss + args.lambda_kd * terms["kd"]
        if args.distill_method == "heteroakd":
            per_stage = [
                losses.heteroakd_loss(
                    z_s, z_t, labels, temperature=args.temperature, kmm=args.kmm, kem=args.kem,
                    kem_axis=args.kem_axis, ignore_index=args.ignore_index, eps=args.kmm_eps,
                    activation=args.hakd_activation,
                )
                for z_s, z_t in zip(out.student_projected, out.teacher_projected)
            ]
            terms["hakd"] = torch.stack([s.hakd for s in per_stage]).sum()
            terms["proj"] = torch.stack([s.proj for s in per_stage]).sum()
            loss = loss + args.lambda_hakd * terms["hakd"] + args.lambda_proj * terms["proj"]

        if model.training:
            for name, value in terms.items():
                self._loss_terms[name].append(value.detach())
        return (loss, out) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds each loss term, averaged since the last log and across processes, as ``loss_<term>``."""
        if "loss" in logs and self._loss_terms:
            for name, values in self._loss_terms.items():
                mean = self.accelerator.reduce(torch.stack(values).mean(), reduction="mean")
                logs[f"loss_{name}"] = round(mean.item(), 6)
            self._loss_terms.clear()
        super().log(logs, start_time)

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
        """The student alone: task loss, and (N, H, W) class predictions at the labels' size."""
        inputs = self._prepare_inputs(inputs)
        labels = inputs["labels"]
        with torch.no_grad(), self.compute_loss_context_manager():
            logits = model(inputs["pixel_values"]).logits
        loss = losses.task_loss(logits, labels, self.args.ignore_index)
        if prediction_loss_only:
            return loss, None, None
        predictions = losses.resize_logits(logits.float(), labels.shape[-2:]).argmax(dim=1)
        return loss, predictions, labels

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Saves the student alone (never the projectors), its processor and the arguments."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        self.student.save_pretrained(output_dir)
        if self.processing_class is not None:
            self.processing_class.save_pretrained(output_dir)
        torch.save(self.args, os.path.join(output_dir, "training_args.bin"))

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        # A checkpoint also holds the projectors, so a resumed run continues them.
        super()._save_checkpoint(model, trial)
        if self.projectors is not None and self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            safetensors.torch.save_file(self.projectors.state_dict(), os.path.join(folder, PROJECTORS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        wrapper = self.accelerator.unwrap_model(model if model is not None else self.model)
        student_weights = safetensors.torch.load_file(os.path.join(resume_from_checkpoint, "model.safetensors"))
        wrapper.student.load_state_dict(student_weights)
        if wrapper.projectors is not None:
            path = os.path.join(resume_from_checkpoint, PROJECTORS_NAME)
            wrapper.projectors.load_state_dict(safetensors.torch.load_file(path))
