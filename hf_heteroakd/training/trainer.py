"""``HeteroAKDTrainer``: a ``transformers.Trainer`` that distills a frozen teacher into a student."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput
from transformers.utils import logging

from ..core import losses
from ..core.errors import HeteroAKDError
from ..core.features import stage_features
from ..core.metrics import MeanIoU
from ..core.projectors import HeteroAKDProjectors
from ..data.seeding import PerSampleSeed, SetEpochCallback
from ..methods.outputs import DistillationOutput
from ..methods.registry import method_class
from .checkpoints import resolve_checkpoint
from .config import HeteroAKDConfig
from .teacher_cache import TeacherLogitsCache
from .trainer_evaluation import SegmentationEvaluationMixin
from .trainer_saving import PROJECTORS_NAME, StudentSavingMixin  # noqa: F401 (PROJECTORS_NAME: its public home)
from .trainer_teacher import TeacherMixin

logger = logging.get_logger(__name__)


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
        self,
        pixel_values: torch.Tensor,
        teacher_features: list[torch.Tensor] | None = None,
        teacher_logits: torch.Tensor | None = None,
    ) -> DistillationOutput:
        """Student logits; with the teacher's ``teacher_logits`` (and, for teacher projectors, its maps of the
        selected stages, ``teacher_features``), also Z^S and Z^T of those stages."""
        project = self.projectors is not None and teacher_logits is not None
        outputs = self.student(pixel_values=pixel_values, output_hidden_states=project)
        if not project:
            return DistillationOutput(logits=outputs.logits)
        student_features = self.select(stage_features(self.student, outputs, pixel_values.shape[-2:]))
        z_s, z_t = self.projectors(student_features, teacher_features, outputs.logits, teacher_logits)
        return DistillationOutput(
            logits=outputs.logits, student_projected=z_s, teacher_projected=z_t, student_features=student_features
        )


class _StreamLoader(DataLoader):
    """A DataLoader whose ``set_epoch``, which the Trainer calls at each epoch, reaches its stream."""

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


class HeteroAKDTrainer(TeacherMixin, SegmentationEvaluationMixin, StudentSavingMixin, Trainer):
    """Trains ``model`` (the student) with ``L_task + Σ weight·term``, the terms of ``args.distill_method``
    (:mod:`hf_heteroakd.methods`; HeteroAKD: ``λ1·L_kd + λ2·L_hakd + λ_proj·L_proj``).

    Evaluation reports the ``evaluate``-style mean IoU of the student: each process accumulates a
    confusion matrix over its own shard of the evaluation set, and the matrices are summed.
    Training augmentation is seeded per (seed, epoch, sample), so it does not depend on the number
    of processes or workers, and a resumed run sees the batches of the uninterrupted one. A
    :class:`~hf_heteroakd.data.StreamingSegmentationDataset` is read as each process's share of the
    stream, shuffled and seeded by the stream itself (then per process and worker count).

    Args:
        model: the student, a ``PreTrainedModel`` for semantic segmentation.
        teacher_model: the frozen teacher; required unless the method uses none (``--distill_method none``).
        args: a :class:`HeteroAKDConfig`.
        teacher_input_transform: maps the student's normalised ``pixel_values`` to the teacher's
            (when their image processors normalise differently).
        **kwargs: passed on to ``transformers.Trainer`` (datasets, collator, processing_class, …).
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
        self.method = method_class(args.distill_method)(args)
        if self.method.uses_teacher and teacher_model is None:
            raise HeteroAKDError(f"distill_method={args.distill_method!r} needs a teacher_model")
        if kwargs.get("compute_metrics") is not None:
            raise TypeError("HeteroAKDTrainer computes the mean IoU itself; do not pass compute_metrics")
        if (train_dataset := kwargs.get("train_dataset")) is not None:
            # Our datasets seed themselves (a stream also shuffles); any other map-style dataset is wrapped.
            seeded = getattr(train_dataset, "with_seed", None)
            kwargs["train_dataset"] = seeded(args.seed) if seeded else PerSampleSeed(train_dataset, args.seed)
        super().__init__(model=self._trainable(model, teacher_model, args), args=args, **kwargs)

        self.teacher = self._frozen(teacher_model) if self.method.uses_teacher else None
        self.teacher_input_transform = teacher_input_transform
        self.teacher_cache: TeacherLogitsCache | None = None  # opened by train() with --teacher_logits_cache
        if isinstance(self.train_dataset, PerSampleSeed):
            self.add_callback(SetEpochCallback(self.train_dataset))
        self._eval_metric = MeanIoU(model.config.num_labels, ignore_index=args.ignore_index)
        self._eval_loss = torch.zeros(2, dtype=torch.float64)  # (sum of pixel losses, number of pixels)
        # The last evaluation's result in the format of the evaluate library's mean_iou (arrays per class).
        self.mean_iou_result: dict[str, Any] | None = None
        # Each term is a per-micro-batch mean: the Trainer divides it by the accumulation steps.
        self.model_accepts_loss_kwargs = False
        self.loss_is_scaled_for_ga = False
        self._loss_terms: dict[str, list[torch.Tensor]] = defaultdict(list)
        self._diagnostics: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.nonfinite_steps = 0
        self.nonfinite_stop: str | None = None

    def _trainable(
        self, student: PreTrainedModel, teacher: PreTrainedModel | None, args: HeteroAKDConfig
    ) -> StudentWithProjectors:
        """The student and the method's projectors, as one module, in the layout and BatchNorm the flags ask."""
        wrapper = StudentWithProjectors(student, self.method.build_projectors(student, teacher), args.hakd_stages)
        if args.sync_batchnorm and args.world_size > 1:
            if args.device.type != "cuda":
                raise HeteroAKDError(
                    "--sync_batchnorm synchronises BatchNorm across GPUs, and torch's SyncBatchNorm runs on CUDA "
                    f"only (this run is on {args.device.type}): drop the flag"
                )
            wrapper = nn.SyncBatchNorm.convert_sync_batchnorm(wrapper)  # in place below the root; saves as BatchNorm
        if args.channels_last:
            wrapper.to(memory_format=torch.channels_last)  # conv outputs follow their weights' layout
        return wrapper

    def _frozen(self, teacher: PreTrainedModel) -> PreTrainedModel:
        """The teacher, frozen and never in the optimizer or DDP: only ever run forward, without autograd."""
        teacher = teacher.requires_grad_(False).eval().to(self.args.device)
        if self.args.torch_compile:
            # The Trainer compiles only the model it wraps. In place, so the teacher keeps its class and
            # state-dict keys (stage_features and the teacher-logits cache key read them).
            teacher.compile(backend=self.args.torch_compile_backend, mode=self.args.torch_compile_mode)
        return teacher

    @property
    def student(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).student

    @property
    def projectors(self) -> HeteroAKDProjectors | None:
        return self.accelerator.unwrap_model(self.model).projectors

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, DistillationOutput]:
        """``L_task + Σ weight·term`` over the method's terms; each term (and diagnostic) is kept for logging."""
        labels = inputs["labels"]
        teacher_out = self.teacher_outputs(inputs) if self.teacher is not None else None
        out = model(
            inputs["pixel_values"],
            teacher_features=teacher_out.features if teacher_out is not None else None,
            teacher_logits=teacher_out.logits if teacher_out is not None else None,
        )
        self.method.diagnose_gradients = model.training and self._logs_after_this_step()
        method_terms = self.method.loss_terms(out, teacher_out, labels)
        terms = {"task": losses.task_loss(out.logits, labels, self.args.ignore_index)}
        loss = terms["task"]
        for name, (weight, value) in method_terms.weighted.items():
            terms[name] = value
            loss = loss + weight * value
        if model.training:
            for name, value in terms.items():
                self._loss_terms[name].append(value.detach())
            for name, value in method_terms.diagnostics.items():
                self._diagnostics[name].append(value)
        return (loss, out) if return_outputs else loss

    def _logs_after_this_step(self) -> bool:
        """Whether the optimizer step under way is one the Trainer logs (its ``logging_steps`` multiples)."""
        every = self.state.logging_steps
        return self.args.logging_strategy == "steps" and bool(every) and (self.state.global_step + 1) % every == 0

    def prepare_batch(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """A collated batch on the run's device, as the training step receives it."""
        return self._prepare_inputs(inputs)

    def trial_loss(self, batch: dict[str, Any]) -> torch.Tensor:
        """The training loss of ``batch`` and its backward, leaving the run as it was: BatchNorm statistics
        restored, gradients dropped, nothing logged."""
        model = self.model.train()
        buffers = {name: buffer.clone() for name, buffer in model.named_buffers()}
        try:
            loss = self.compute_loss(model, batch)
            loss.backward()
        finally:
            model.zero_grad(set_to_none=True)
            self._loss_terms.clear()
            self._diagnostics.clear()
            for name, buffer in model.named_buffers():
                buffer.copy_(buffers[name])
        return loss.detach()

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> TrainOutput:
        """The Trainer's ``train``; with ``teacher_logits_cache``, the cache is opened (built first if absent);
        with ``teacher_projector_fit_steps``, a run that does not resume first fits the teacher's projectors.
        ``resume_from_checkpoint=True`` resumes from the newest intact checkpoint, a path only from an intact one
        (:func:`~hf_heteroakd.training.checkpoints.resolve_checkpoint`)."""
        resume_from_checkpoint = resolve_checkpoint(resume_from_checkpoint, self.args.output_dir)
        if self.args.teacher_logits_cache is not None and self.teacher_cache is None:
            self.teacher_cache = self._open_teacher_cache()
        if self.projectors is not None and self.args.teacher_projector_fit_steps > 0 and not resume_from_checkpoint:
            self.fit_teacher_projectors()
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def training_step(
        self, model: nn.Module, inputs: dict[str, torch.Tensor], num_items_in_batch: torch.Tensor | int | None = None
    ) -> torch.Tensor:
        """The Trainer's step; one whose loss is not finite (on any process) is skipped and counted.

        Skipping drops the accumulated gradients (set to None, so the optimizer leaves those
        parameters untouched). After ``max_nonfinite_steps`` skips, a checkpoint is saved and
        training stops; ``nonfinite_stop`` then says why.
        """
        loss = super().training_step(model, inputs, num_items_in_batch)
        finite = torch.isfinite(loss).float()
        if self.args.world_size > 1:
            finite = self.accelerator.reduce(finite, reduction="sum") / self.args.world_size
        if finite.item() == 1.0:
            return loss
        model.zero_grad(set_to_none=True)
        self.nonfinite_steps += 1
        bad = [name for name, values in self._loss_terms.items() if values and not torch.isfinite(values[-1])]
        logger.warning(
            "step %d: the loss is not finite (terms: %s); step skipped (%d of at most %d)",
            self.state.global_step + 1,
            ", ".join(bad) or "on another process",
            self.nonfinite_steps,
            self.args.max_nonfinite_steps,
        )
        if self.nonfinite_steps > self.args.max_nonfinite_steps and self.nonfinite_stop is None:
            self._save_checkpoint(self.model, trial=None)
            self.nonfinite_stop = (
                f"{self.nonfinite_steps} steps had a loss that is not finite (last: {', '.join(bad) or 'unknown'}); "
                f"the last good state is {PREFIX_CHECKPOINT_DIR}-{self.state.global_step} in {self.args.output_dir}"
            )
            self.control.should_training_stop = True
        return loss.new_zeros(())

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        """Adds each loss term as ``loss_<term>`` and each HeteroAKD diagnostic as ``hakd_<name>``
        (:func:`~hf_heteroakd.core.losses.mixing_diagnostics`), averaged since the last log and across processes."""
        if "loss" in logs:
            logged = {f"loss_{name}": values for name, values in self._loss_terms.items()} | self._diagnostics
            for name, values in logged.items():
                if values:
                    mean = self.accelerator.reduce(torch.stack(values).mean(), reduction="mean")
                    logs[name] = round(mean.item(), 6)
            self._loss_terms.clear()
            self._diagnostics.clear()
        super().log(logs, start_time)

    def get_train_dataloader(self) -> DataLoader:
        """The Trainer's loader; for a stream, a loader of this process's share of it."""
        if not isinstance(self.train_dataset, IterableDataset):
            batch = self._train_batch_size * self.args.world_size
            if self.args.dataloader_drop_last and len(self.train_dataset) < batch:
                raise HeteroAKDError(
                    f"the training split has {len(self.train_dataset)} samples, fewer than one batch of {batch} "
                    f"({self._train_batch_size} per device x {self.args.world_size} process(es)), and incomplete "
                    "batches are dropped: lower --per_device_train_batch_size, or pass --dataloader_drop_last false"
                )
            return super().get_train_dataloader()
        # Not through accelerate, which would have process 0 read every batch and dispatch it to the others.
        return _StreamLoader(
            self.train_dataset.for_process(self.args.process_index, self.args.world_size),
            batch_size=self._train_batch_size,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
            drop_last=self.args.dataloader_drop_last,
        )
