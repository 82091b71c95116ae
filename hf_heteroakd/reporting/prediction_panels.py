"""Pictures of what the student predicts, at each evaluation: PNG files and the reporting integrations.

:class:`PredictionPanelsCallback` predicts the same few validation images (chosen once by seed) at each
evaluation and draws, per image, image | ground truth | teacher | student
(:func:`hf_heteroakd.evaluation.visualize.prediction_panel`). The panels go to
``output_dir/predictions/step-N/`` (``panel-K.png`` and all of them stacked in ``panels.png``), to
TensorBoard and to Weights & Biases when those report. Only the main process draws.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image
from transformers import TrainerCallback
from transformers.integrations import TensorBoardCallback, WandbCallback

from ..core.inference import predict_classes
from ..core.losses import resize_logits
from ..evaluation.visualize import prediction_panel, stack_panels

if TYPE_CHECKING:
    from ..training.trainer import HeteroAKDTrainer

PREDICTIONS_DIR = "predictions"
PANELS_NAME = "panels.png"
COLUMN_WIDTH = 512  # the widest an image is drawn (see fit_width)
MIN_COLUMN_WIDTH = 160  # the narrowest


def denormalize(pixel_values: torch.Tensor, mean: list[float], std: list[float]) -> np.ndarray:
    """(3, H, W) normalised pixels -> (H, W, 3) uint8 RGB, as the image looked before normalisation."""
    image = pixel_values.float().cpu() * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def fit_width(
    image: np.ndarray, masks: dict[str, np.ndarray | None]
) -> tuple[np.ndarray, dict[str, np.ndarray | None]]:
    """An (H, W, 3) image and its (H, W) masks resized for display: scaled down to :data:`COLUMN_WIDTH`
    when wider (light files, fast PNG encoding), enlarged by a whole factor to at least
    :data:`MIN_COLUMN_WIDTH` when narrower (legible pixels). Masks by nearest neighbour, so every pixel
    keeps a class of the original."""
    height, width = image.shape[:2]
    if width > COLUMN_WIDTH:
        size, how = (COLUMN_WIDTH, max(1, round(height * COLUMN_WIDTH / width))), Image.Resampling.BILINEAR
    elif width < MIN_COLUMN_WIDTH:
        factor = -(-MIN_COLUMN_WIDTH // width)
        size, how = (width * factor, height * factor), Image.Resampling.NEAREST
    else:
        return image, masks
    resize = lambda a, resample: np.asarray(Image.fromarray(a).resize(size, resample))  # noqa: E731
    resized = {
        k: None if m is None else resize(m.astype(np.int32), Image.Resampling.NEAREST) for k, m in masks.items()
    }
    return resize(image, how), resized


class PredictionPanelsCallback(TrainerCallback):
    """Draws prediction panels of ``num_images`` validation images at each evaluation of ``trainer``.

    Args:
        trainer: the run's trainer (its student, teacher and evaluation set are read at each evaluation).
        id2label: the run's classes, named in the panels' legends.
        palette: (C, 3) uint8 class colours (:func:`hf_heteroakd.evaluation.visualize.palette_for`).
        num_images: how many images; they are chosen once, by the run's seed.
    """

    def __init__(
        self, trainer: HeteroAKDTrainer, id2label: dict[int, str], palette: np.ndarray, num_images: int
    ) -> None:
        self.trainer = trainer
        self.id2label = id2label
        self.palette = palette
        self.num_images = num_images
        self._samples: list[dict[str, torch.Tensor]] | None = None
        self._teacher_masks: list[np.ndarray] | None = None  # the frozen teacher's, drawn once

    def on_evaluate(self, args, state, control, **kwargs) -> None:
        if not self.trainer.is_world_process_zero() or not self.samples():
            return
        panels = self.draw()
        folder = Path(args.output_dir) / PREDICTIONS_DIR / f"step-{state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        for k, panel in enumerate(panels):
            panel.save(folder / f"panel-{k}.png")
        stacked = stack_panels(panels)
        stacked.save(folder / PANELS_NAME)
        self.report(stacked, state.global_step)

    def samples(self) -> list[dict[str, torch.Tensor]]:
        """The chosen evaluation samples (none for a stream, which cannot be indexed)."""
        if self._samples is None:
            dataset = self.trainer.eval_dataset
            if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
                self._samples = []
            else:
                rows = random.Random(self.trainer.args.seed).sample(
                    range(len(dataset)), min(self.num_images, len(dataset))
                )
                self._samples = [sample for sample in (dataset[row] for row in sorted(rows)) if sample is not None]
        return self._samples

    def draw(self) -> list[Image.Image]:
        """One panel per chosen sample: image | ground truth | teacher (when there is one) | student."""
        trainer, args = self.trainer, self.trainer.args
        processor = trainer.processing_class
        mean, std = list(processor.image_mean), list(processor.image_std)
        student = trainer.student
        training = student.training
        student.eval()
        try:
            students = [
                predict_classes(
                    student, s["pixel_values"], args.eval_crop_size, args.eval_stride, args.eval_flip
                ).numpy()
                for s in self.samples()
            ]
        finally:
            student.train(training)
        if self._teacher_masks is None and trainer.teacher is not None:
            self._teacher_masks = [self.teacher_classes(s["pixel_values"]) for s in self.samples()]
        teachers = self._teacher_masks or [None] * len(students)
        panels = []
        for sample, teacher, prediction in zip(self.samples(), teachers, students):
            masks = {"ground truth": sample["labels"].numpy(), "teacher": teacher, "student": prediction}
            image, masks = fit_width(denormalize(sample["pixel_values"], mean, std), masks)
            panels.append(prediction_panel(image, masks, self.palette, self.id2label, args.ignore_index))
        return panels

    @torch.no_grad()
    def teacher_classes(self, pixel_values: torch.Tensor) -> np.ndarray:
        """The teacher's (H, W) class indices, through the run's pixel mapping to the teacher."""
        logits = self.trainer.teacher_forward(pixel_values[None].to(self.trainer.args.device)).logits
        return resize_logits(logits.float(), pixel_values.shape[-2:]).argmax(dim=1)[0].cpu().numpy()

    def report(self, panels: Image.Image, step: int) -> None:
        """Sends the stacked panels to the integrations of the run that take images."""
        for callback in self.trainer.callback_handler.callbacks:
            if isinstance(callback, TensorBoardCallback) and callback.tb_writer is not None:
                callback.tb_writer.add_image("predictions", np.asarray(panels), step, dataformats="HWC")
                callback.tb_writer.flush()
            elif isinstance(callback, WandbCallback) and getattr(callback, "_initialized", False):
                callback._wandb.log({"predictions": callback._wandb.Image(panels)}, commit=False)
