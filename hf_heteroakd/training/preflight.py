"""A check of the whole run on one batch of each split, before any GPU hour is spent.

It reads a batch of each split (decoding, label range and sizes are checked on the way), runs the
teacher once and measures its pixel accuracy against the labels, and runs one student forward and
backward without updating anything.
"""

from __future__ import annotations

import torch
from transformers.utils import logging

from ..core import losses
from ..core.errors import HeteroAKDError
from .trainer import HeteroAKDTrainer

logger = logging.get_logger(__name__)


def preflight(
    trainer: HeteroAKDTrainer,
    crop_size: tuple[int, int] | None = None,
    image_size: tuple[int, int] | None = None,
) -> list[str]:
    """Checks the run on one batch of each split; returns the findings (also logged) as lines.

    Raises :class:`HeteroAKDError` for what would stop training anyway (bad samples, labels, sizes);
    warns when the teacher's predictions on the batch are no better than always predicting the
    batch's most frequent class (likely a checkpoint for another dataset), and when training
    crops are larger than the images (most of each crop would be padding).
    """
    report = []
    loaders = {}
    if trainer.train_dataset is not None:
        loaders["train"] = trainer.get_train_dataloader()
    if trainer.eval_dataset is not None:
        loaders["eval"] = trainer.get_eval_dataloader()
    batches = {name: batch for name, loader in loaders.items() for batch in [next(iter(loader), None)] if batch}
    for name, batch in batches.items():
        report.append(f"{name}: a batch of {tuple(batch['pixel_values'].shape)} reads and checks")
    if not batches:
        raise HeteroAKDError("nothing to check: pass --do_train and/or --do_eval")

    if (
        crop_size is not None
        and image_size is not None
        and (crop_size[0] > image_size[0] or crop_size[1] > image_size[1])
    ):
        report.append(
            f"warning: the training crop {crop_size[0]}x{crop_size[1]} is larger than the images "
            f"({image_size[0]}x{image_size[1]}); crops are padded with ignored pixels: set --crop_size"
        )

    batch = trainer.prepare_batch(next(iter(batches.values())))
    if trainer.teacher is not None:
        report += _teacher_accuracy(trainer, batch)
    if trainer.train_dataset is not None:
        report.append(_trial_step(trainer, batch))

    for line in report:
        (logger.warning if line.startswith("warning") else logger.info)(line)
    return report


def _teacher_accuracy(trainer: HeteroAKDTrainer, batch: dict[str, torch.Tensor]) -> list[str]:
    """The teacher's pixel accuracy on the batch, a warning when no better than the majority class."""
    labels = batch["labels"]
    valid = (labels != trainer.args.ignore_index) & (labels >= 0)
    if not valid.any():
        return []
    logits = losses.resize_logits(trainer.teacher_forward(batch["pixel_values"]).logits.float(), labels.shape[-2:])
    accuracy = (logits.argmax(dim=1) == labels)[valid].float().mean().item()
    majority = torch.bincount(labels[valid]).max().item() / valid.sum().item()
    line = f"teacher pixel accuracy on the batch: {accuracy:.3f} (always the most frequent class: {majority:.3f})"
    if accuracy <= majority:
        line = "warning: " + line + "; is the teacher fine-tuned on this dataset, with these classes in this order?"
    return [line]


def _trial_step(trainer: HeteroAKDTrainer, batch: dict[str, torch.Tensor]) -> str:
    """One loss and backward of the student on the batch, leaving no trace (:meth:`HeteroAKDTrainer.trial_loss`)."""
    try:
        loss = trainer.trial_loss(batch)
    except ValueError as err:
        if "Expected more than 1 value per channel" not in str(err):  # torch's BatchNorm check
            raise
        raise HeteroAKDError(
            "the student has a BatchNorm after a global pooling (DeepLabV3's image pooling, PSPNet's or "
            "UperNet's 1x1 bin), which cannot train on one sample per device: set "
            "--per_device_train_batch_size 2 or more"
        ) from None
    if not torch.isfinite(loss):
        raise HeteroAKDError(f"the first batch's loss is not finite ({loss.item()}); check the inputs and weights")
    return f"one student step: loss {loss.item():.4f}, gradients computed (no update made)"
