"""The teacher's side of a distillation run: its forward, the teacher-logits cache, its projectors' fit."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import torch
from transformers.utils import ModelOutput

from ..core import losses
from ..core.errors import HeteroAKDError
from ..core.features import stage_features
from ..core.projectors import fit_projectors
from ..methods.outputs import TeacherOutputs
from ..methods.registry import hakd_grid
from .teacher_cache import TeacherLogitsCache, cache_key

logger = logging.getLogger(__name__)


class TeacherMixin:
    """What :class:`~hf_heteroakd.training.trainer.HeteroAKDTrainer` does with its frozen ``teacher``: outputs for a
    batch (a forward, or a read of ``--teacher_logits_cache``) and the fit of the teacher's projectors."""

    # no_grad, not inference_mode: HeteroAKD's trainable teacher projectors take the stage features as input, and
    # inference tensors cannot be saved for backward; inference_mode would need a clone of them, for no measured gain.
    @torch.no_grad()
    def teacher_forward(self, pixel_values: torch.Tensor) -> ModelOutput:
        """The teacher's logits and (for a method that uses them) stage features, without autograd."""
        if self.teacher_input_transform is not None:
            pixel_values = self.teacher_input_transform(pixel_values)
        dtype = next(self.teacher.parameters()).dtype
        return self.teacher(
            pixel_values=pixel_values.to(dtype), output_hidden_states=self.method.uses_teacher_stage_features
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
        if self.method.uses_teacher_stage_features:
            all_stages = stage_features(self.teacher, out, pixel_values.shape[-2:])
            features = [all_stages[i] for i in self.args.hakd_stages]
        return TeacherOutputs(out.logits, features)

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
                    self.projectors.teacher,
                    batches(),
                    loss_fn,
                    args.teacher_projector_fit_steps,
                    args.teacher_projector_fit_lr,
                    progress=not args.disable_tqdm and self.is_local_process_zero(),
                )
        logger.info("teacher projectors fitted in %d steps: L_proj %.4f", args.teacher_projector_fit_steps, loss)
        return loss

    def _open_teacher_cache(self) -> TeacherLogitsCache:
        """Opens ``--teacher_logits_cache``; the main process builds it first if needed, the others wait."""
        args = self.args
        key = cache_key(
            self.teacher,
            self.train_dataset,
            self.teacher_input_transform,
            args.teacher_logits_cache_dtype,
            args.hakd_stages if self.method.uses_teacher_stage_features else None,
            "bf16" if args.bf16 else "fp16" if args.fp16 else "no",
        )

        def compute(pixel_values: torch.Tensor) -> TeacherOutputs:
            with self.compute_loss_context_manager():  # the context of a training step's teacher forward
                return self._teacher_forward_outputs(pixel_values.to(args.device))

        with self.accelerator.main_process_first():
            cache = TeacherLogitsCache.open_or_build(
                args.teacher_logits_cache,
                key,
                self.train_dataset,
                compute,
                args.per_device_eval_batch_size,
                args.dataloader_num_workers,
                may_build=self.accelerator.is_main_process,
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
