"""``HeteroAKDTrainer``: a ``transformers.Trainer`` that distills a frozen teacher into a student."""

from __future__ import annotations

import copy
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import safetensors.torch
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from transformers import PreTrainedModel, Trainer
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, EvalLoopOutput, TrainOutput
from transformers.utils import ModelOutput, logging

from . import losses
from .config import HeteroAKDConfig
from .data import StreamingSegmentationDataset, same_size_groups
from .errors import HeteroAKDError
from .features import stage_channels, stage_features
from .hub import push_student, resolve_repo_id
from .inference import segmentation_logits
from .metrics import MeanIoU, flatten_mean_iou
from .projectors import HeteroAKDProjectors, fit_projectors
from .seeding import PerSampleSeed, SetEpochCallback
from .teacher_cache import TeacherLogitsCache, TeacherOutputs, cache_key

PROJECTORS_NAME = "heteroakd_projectors.safetensors"
logger = logging.get_logger(__name__)


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
        """Student logits; with ``teacher_features`` (the teacher's maps of the selected stages), also
        Z^S and Z^T of those stages."""
        project = self.projectors is not None and teacher_features is not None
        outputs = self.student(pixel_values=pixel_values, output_hidden_states=project)
        if not project:
            return DistillationOutput(logits=outputs.logits)
        student_features = stage_features(self.student, outputs, pixel_values.shape[-2:])
        z_s, z_t = self.projectors(self.select(student_features), teacher_features)
        return DistillationOutput(logits=outputs.logits, student_projected=z_s, teacher_projected=z_t)


class _StreamLoader(DataLoader):
    """A DataLoader whose ``set_epoch``, which the Trainer calls at each epoch, reaches its stream."""

    def set_epoch(self, epoch: int) -> None:
        self.dataset.set_epoch(epoch)


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


def hakd_grid(label_size: tuple[int, int], stride: int | None) -> tuple[int, int] | None:
    """The grid on which L_hakd compares the projected maps: the label grid divided by ``stride``
    (rounded up); None for the student's own stage grid."""
    if stride is None:
        return None
    return (-(-label_size[0] // stride), -(-label_size[1] // stride))


class HeteroAKDTrainer(Trainer):
    """Trains ``model`` (the student) with ``L_task + λ1·L_kd + λ2·L_hakd + λ_proj·L_proj``.

    Evaluation reports the ``evaluate``-style mean IoU of the student: each process accumulates a
    confusion matrix over its own shard of the evaluation set, and the matrices are summed.
    Training augmentation is seeded per (seed, epoch, sample), so it does not depend on the number
    of processes or workers, and a resumed run sees the batches of the uninterrupted one. A
    :class:`~hf_heteroakd.data.StreamingSegmentationDataset` is read as each process's share of the
    stream, shuffled and seeded by the stream itself (then per process and worker count).

    Args:
        model: the student, a ``PreTrainedModel`` for semantic segmentation.
        teacher_model: the frozen teacher; required unless ``args.distill_method == "none"``.
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
        if args.distill_method != "none" and teacher_model is None:
            raise HeteroAKDError(f"distill_method={args.distill_method!r} needs a teacher_model")
        if kwargs.get("compute_metrics") is not None:
            raise TypeError("HeteroAKDTrainer computes the mean IoU itself; do not pass compute_metrics")
        train_dataset = kwargs.get("train_dataset")
        if isinstance(train_dataset, StreamingSegmentationDataset):
            kwargs["train_dataset"] = train_dataset.with_seed(args.seed)  # shuffles and seeds per sample itself
        elif train_dataset is not None:
            kwargs["train_dataset"] = PerSampleSeed(train_dataset, args.seed)

        projectors = None
        if args.distill_method == "heteroakd":
            _check_num_labels(model, teacher_model)
            projectors = HeteroAKDProjectors(
                _pick_stages(stage_channels(model), args.hakd_stages, "student"),
                _pick_stages(stage_channels(teacher_model), args.hakd_stages, "teacher"),
                model.config.num_labels,
                args.projector_channels,
            )
        elif args.distill_method in ("kd", "cwd"):
            _check_num_labels(model, teacher_model)
        wrapper = StudentWithProjectors(model, projectors, args.hakd_stages)
        if args.sync_batchnorm and args.world_size > 1:
            if args.device.type != "cuda":
                raise HeteroAKDError(
                    "--sync_batchnorm synchronises BatchNorm across GPUs, and torch's SyncBatchNorm runs on CUDA "
                    f"only (this run is on {args.device.type}): drop the flag"
                )
            wrapper = nn.SyncBatchNorm.convert_sync_batchnorm(wrapper)  # in place below the root; saves as BatchNorm
        if args.channels_last:
            wrapper.to(memory_format=torch.channels_last)  # conv outputs follow their weights' layout
        super().__init__(model=wrapper, args=args, **kwargs)

        self.teacher = None
        if args.distill_method != "none":
            # Frozen and never in the optimizer or DDP: only ever run forward, without autograd.
            self.teacher = teacher_model.requires_grad_(False).eval().to(self.args.device)
            if args.torch_compile:
                # The Trainer compiles only the model it wraps. In place, so the teacher keeps its class and
                # state-dict keys (stage_features and the teacher-logits cache key read them).
                self.teacher.compile(backend=args.torch_compile_backend, mode=args.torch_compile_mode)
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

    @property
    def student(self) -> PreTrainedModel:
        return self.accelerator.unwrap_model(self.model).student

    @property
    def projectors(self) -> HeteroAKDProjectors | None:
        return self.accelerator.unwrap_model(self.model).projectors

    # no_grad, not inference_mode: HeteroAKD's trainable teacher projectors take the stage features as input, and
    # inference tensors cannot be saved for backward, so inference_mode needs a clone of them; with it, a Segformer-b0
    # forward on 2x3x256x512 (CPU) took 0.98x to 1.19x the no_grad time over three runs: no gain beyond the noise.
    @torch.no_grad()
    def teacher_forward(self, pixel_values: torch.Tensor) -> ModelOutput:
        """The teacher's logits and (for HeteroAKD) stage features, without autograd."""
        if self.teacher_input_transform is not None:
            pixel_values = self.teacher_input_transform(pixel_values)
        dtype = next(self.teacher.parameters()).dtype
        return self.teacher(
            pixel_values=pixel_values.to(dtype), output_hidden_states=self.args.distill_method == "heteroakd"
        )

    def teacher_outputs(self, inputs: dict[str, torch.Tensor]) -> TeacherOutputs:
        """The teacher's logits (B, C, h, w) and, for HeteroAKD, its maps of the ``hakd_stages``: read
        by the batch's sample ``index`` from the teacher-logits cache once one is open, else a forward."""
        if self.teacher_cache is not None:
            if "index" not in inputs:
                raise HeteroAKDError(
                    "--teacher_logits_cache looks teacher outputs up by sample index, but the batch has no "
                    "'index': use hf_heteroakd.data.collate_segmentation as the data collator"
                )
            return self.teacher_cache.get(inputs["index"], inputs["pixel_values"].device)
        return self._teacher_forward_outputs(inputs["pixel_values"])

    def _teacher_forward_outputs(self, pixel_values: torch.Tensor) -> TeacherOutputs:
        """:meth:`teacher_forward` of (B, 3, H, W) pixels, reduced to what distillation takes from it."""
        out = self.teacher_forward(pixel_values)
        features = None
        if self.args.distill_method == "heteroakd":
            all_stages = stage_features(self.teacher, out, pixel_values.shape[-2:])
            features = [all_stages[i] for i in self.args.hakd_stages]
        return TeacherOutputs(out.logits, features)

    def compute_loss(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        return_outputs: bool = False,
        num_items_in_batch: torch.Tensor | int | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, DistillationOutput]:
        args = self.args
        pixel_values, labels = inputs["pixel_values"], inputs["labels"]
        teacher_out = self.teacher_outputs(inputs) if self.teacher is not None else None
        out = model(pixel_values, teacher_features=teacher_out.features if teacher_out is not None else None)

        terms = {"task": losses.task_loss(out.logits, labels, args.ignore_index)}
        loss = terms["task"]
        if args.distill_method == "cwd":
            terms["cwd"] = losses.channel_wise_kd_loss(out.logits, teacher_out.logits, args.temperature)
            loss = loss + args.lambda_cwd * terms["cwd"]
        elif teacher_out is not None:
            terms["kd"] = losses.pixel_kd_loss(out.logits, teacher_out.logits, args.temperature)
            loss = loss + args.lambda_kd * terms["kd"]
        if args.distill_method == "heteroakd":
            grid = hakd_grid(labels.shape[-2:], args.hakd_stride)
            per_stage = [
                losses.heteroakd_loss(
                    z_s, z_t, labels, temperature=args.temperature, kmm=args.kmm, kem=args.kem,
                    kem_axis=args.kem_axis, ignore_index=args.ignore_index, eps=args.kmm_eps,
                    activation=args.hakd_activation, grid=grid, proj_loss=args.proj_loss,
                )
                for z_s, z_t in zip(out.student_projected, out.teacher_projected)
            ]
            terms["hakd"] = torch.stack([s.hakd for s in per_stage]).sum()
            terms["proj"] = torch.stack([s.proj for s in per_stage]).sum()
            loss = loss + args.lambda_hakd * terms["hakd"] + args.lambda_proj * terms["proj"]
            if model.training:
                for name in per_stage[0].diagnostics:  # averaged over the stages
                    value = torch.stack([s.diagnostics[name] for s in per_stage]).mean()
                    self._diagnostics[f"hakd_{name}"].append(value)

        if model.training:
            for name, value in terms.items():
                self._loss_terms[name].append(value.detach())
        return (loss, out) if return_outputs else loss

    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs: Any) -> TrainOutput:
        """The Trainer's ``train``; with ``teacher_logits_cache``, the cache is opened (built first if absent);
        with ``teacher_projector_fit_steps``, a run that does not resume first fits the teacher's projectors."""
        if self.args.teacher_logits_cache is not None and self.teacher_cache is None:
            self.teacher_cache = self._open_teacher_cache()
        if self.projectors is not None and self.args.teacher_projector_fit_steps > 0 and not resume_from_checkpoint:
            self.fit_teacher_projectors()
        return super().train(resume_from_checkpoint=resume_from_checkpoint, **kwargs)

    def fit_teacher_projectors(self) -> float:
        """Fits the teacher's projectors to the labels on the frozen teacher before the student's first step:
        ``teacher_projector_fit_steps`` steps over training batches (:func:`fit_projectors`). Returns the last
        step's loss. The random state is restored afterwards: the run's data order stays that of a run without it.
        """
        args = self.args

        def batches() -> Iterator[tuple[list[torch.Tensor], torch.Tensor]]:
            while True:
                for inputs in self.get_train_dataloader():
                    inputs = self._prepare_inputs(inputs)
                    yield self.teacher_outputs(inputs).features, inputs["labels"]

        def loss_fn(z_t: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            grid = hakd_grid(labels.shape[-2:], args.hakd_stride)
            return losses.teacher_projection_loss(z_t, labels, grid, args.proj_loss, args.ignore_index)

        with torch.random.fork_rng(devices=[args.device] if args.device.type == "cuda" else []):
            with self.compute_loss_context_manager():
                loss = fit_projectors(
                    self.projectors.teacher, batches(), loss_fn, args.teacher_projector_fit_steps,
                    args.teacher_projector_fit_lr, progress=not args.disable_tqdm and self.is_local_process_zero(),
                )
        logger.info("teacher projectors fitted in %d steps: L_proj %.4f", args.teacher_projector_fit_steps, loss)
        return loss

    def _open_teacher_cache(self) -> TeacherLogitsCache:
        """Opens ``--teacher_logits_cache``; the main process builds it first if needed, the others wait."""
        args = self.args
        key = cache_key(
            self.teacher, self.train_dataset, self.teacher_input_transform, args.teacher_logits_cache_dtype,
            args.hakd_stages if args.distill_method == "heteroakd" else None,
            "bf16" if args.bf16 else "fp16" if args.fp16 else "no",
        )

        def compute(pixel_values: torch.Tensor) -> TeacherOutputs:
            with self.compute_loss_context_manager():  # the context of a training step's teacher forward
                return self._teacher_forward_outputs(pixel_values.to(args.device))

        with self.accelerator.main_process_first():
            cache = TeacherLogitsCache.open_or_build(
                args.teacher_logits_cache, key, self.train_dataset, compute, args.per_device_eval_batch_size,
                args.dataloader_num_workers, may_build=self.accelerator.is_main_process,
                progress=not args.disable_tqdm,
            )
        sizes = cache.input_sizes
        if len(sizes) > 1 and args.per_device_train_batch_size > 1:
            shown = ", ".join(f"{h}x{w}" for h, w in sizes[:4]) + (", …" if len(sizes) > 4 else "")
            raise HeteroAKDError(
                f"the training images have {len(sizes)} sizes ({shown}): batches of them are padded, "
                "which changes the teacher's outputs, so --teacher_logits_cache needs images of one size or "
                "--per_device_train_batch_size 1"
            )
        return cache

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
            self.state.global_step + 1, ", ".join(bad) or "on another process", self.nonfinite_steps,
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
        (:func:`~hf_heteroakd.losses.mixing_diagnostics`), averaged since the last log and across processes."""
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
        if not isinstance(self.train_dataset, StreamingSegmentationDataset):
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

    def get_eval_dataloader(self, eval_dataset: str | Dataset | None = None) -> DataLoader:
        """This process's shard of the evaluation set: every sample once, none padded or repeated."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, str):
            dataset = self.eval_dataset[dataset]
        if dataset is None:
            raise ValueError("evaluation needs an eval_dataset")
        if isinstance(dataset, StreamingSegmentationDataset):
            shard = dataset.for_process(self.args.process_index, self.args.world_size)
        else:
            shard = Subset(dataset, range(self.args.process_index, len(dataset), self.args.world_size))
        return DataLoader(
            shard,
            batch_size=self.args.eval_batch_size,
            collate_fn=self.data_collator,
            num_workers=self.args.dataloader_num_workers,
            pin_memory=self.args.dataloader_pin_memory,
        )

    def prediction_step(
        self,
        model: nn.Module,
        inputs: dict[str, torch.Tensor],
        prediction_loss_only: bool,
        ignore_keys: list[str] | None = None,
    ) -> tuple[None, None, None]:
        """Runs the student and folds its predictions into this process's confusion matrix.

        Images of different sizes, padded to one batch by the collator, are run in groups of one
        size, each cropped back to its ``image_sizes``: padding would change the predictions next to
        it (and every prediction of a model that pools or attends globally), making the metrics depend
        on the batch size and the number of processes. Nothing is returned for the Trainer to gather:
        shards may hold different numbers of batches, so no collective operation may run per batch.
        """
        inputs = self._prepare_inputs(inputs)
        pixel_values, labels = inputs["pixel_values"], inputs["labels"]
        sizes = inputs.get("image_sizes") or [tuple(labels.shape[-2:])] * len(labels)
        for positions in same_size_groups(sizes):
            height, width = sizes[positions[0]]
            rows = slice(None) if len(positions) == len(labels) else positions
            self._evaluate_images(model, pixel_values[rows, :, :height, :width], labels[rows, :height, :width])
        return None, None, None

    def _evaluate_images(self, model: nn.Module, pixel_values: torch.Tensor, labels: torch.Tensor) -> None:
        """Folds the student's predictions of (B, 3, H, W) same-size images into the metric and the loss."""
        with torch.no_grad(), self.compute_loss_context_manager():
            # The bare module: a DDP forward may sync buffers, a collective the uneven shards cannot join.
            logits = segmentation_logits(
                self.accelerator.unwrap_model(model), pixel_values, self.args.eval_crop_size,
                self.args.eval_stride, self.args.eval_flip,
            )
        loss_sums, num_valid = losses.task_loss_per_image(logits, labels, self.args.ignore_index)
        self._eval_loss += torch.stack([loss_sums.sum(), num_valid.sum().double()])
        self._eval_metric.update(losses.resize_logits(logits, labels.shape[-2:]).argmax(dim=1), labels)

    def evaluation_loop(
        self,
        dataloader: DataLoader,
        description: str,
        prediction_loss_only: bool | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> EvalLoopOutput:
        """The Trainer's loop, then the confusion matrices and losses summed over processes."""
        self._eval_metric.reset()
        # Accumulated on the device: no host sync per batch.
        self._eval_loss = torch.zeros(2, dtype=torch.float64, device=self.args.device)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # BatchNorm statistics drift apart across processes; evaluate rank 0's, the ones saved.
            for buffer in self.student.buffers():
                torch.distributed.broadcast(buffer, src=0)
        output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys, metric_key_prefix)
        device = self.args.device
        matrix = self.accelerator.reduce(self._eval_metric.confusion_matrix.to(device), reduction="sum")
        loss_sum, pixels = self.accelerator.reduce(self._eval_loss, reduction="sum").tolist()
        self._eval_metric.confusion_matrix = matrix.cpu()
        self.mean_iou_result = self._eval_metric.compute()
        metrics = flatten_mean_iou(self.mean_iou_result, self.student.config.id2label)
        metrics["loss"] = loss_sum / max(pixels, 1.0)
        output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in metrics.items()})
        output.metrics.pop(f"{metric_key_prefix}_model_preparation_time", None)
        num_samples = self.accelerator.reduce(torch.tensor(output.num_samples, device=device), reduction="sum")
        return EvalLoopOutput(None, None, output.metrics, int(num_samples))

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Saves the student alone (never the projectors), its processor and the arguments."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        if state_dict is not None:  # gathered by the Trainer from FSDP / DeepSpeed shards
            state_dict = {k[len("student."):]: v for k, v in state_dict.items() if k.startswith("student.")}
        # Written beside its destination, then moved in file by file: a save interrupted while
        # writing leaves the previous student whole.
        with tempfile.TemporaryDirectory(dir=output_dir, prefix=".saving-") as staging:
            self.student.save_pretrained(staging, state_dict=state_dict)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(staging)
            # training_args.bin stays on disk and may be shared: never with the Hub token in it.
            args = copy.copy(self.args)
            args.hub_token = None
            torch.save(args, os.path.join(staging, "training_args.bin"))
            for name in sorted(os.listdir(staging), key=lambda n: n.endswith(".safetensors")):  # weights last
                os.replace(os.path.join(staging, name), os.path.join(output_dir, name))

    # The Hub: the student goes up once, with its card, through hub.push_student (run_distillation calls
    # it at the end). The Trainer's own pushes, of the whole output folder and of checkpoints, are off.

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Checks the credentials and resolves the repo id before training; creates nothing yet."""
        if self.is_world_process_zero():
            token = token if token is not None else self.args.hub_token
            self.hub_model_id = resolve_repo_id(self.args.hub_model_id, self.args.output_dir, token)
        self.push_in_progress = None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        # Saving never pushes (the Trainer would, with --push_to_hub, before the card exists).
        super().save_model(output_dir, _internal_call=True)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoints (projectors, optimizer state) are never pushed."""

    def push_to_hub(
        self, commit_message: str | None = None, blocking: bool = True, token: str | None = None,
        revision: str | None = None, private: bool | None = None, **kwargs: Any,
    ) -> str | None:
        """Saves the student and uploads it with :func:`hf_heteroakd.hub.push_student`: the student's files
        and the README.md already in ``output_dir`` (no Trainer-written card; ``blocking`` and ``kwargs``
        are ignored). Returns the repo's URL on the main process."""
        self.save_model()
        if not self.is_world_process_zero():
            return None
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token)
        private = private if private is not None else self.args.hub_private_repo
        return push_student(self.args.output_dir, self.hub_model_id, token, private,
                            revision or self.args.hub_revision, commit_message)

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
