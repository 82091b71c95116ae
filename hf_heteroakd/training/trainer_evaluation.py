"""Evaluation of the student: the ``evaluate``-format mean IoU, sharded over processes, never padded."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from transformers.trainer_utils import EvalLoopOutput

from ..core import losses
from ..core.inference import segmentation_logits
from ..core.metrics import flatten_mean_iou
from ..data.samples import same_size_groups


class SegmentationEvaluationMixin:
    """The Trainer's evaluation, replaced: each process folds its own shard of the evaluation set into a
    confusion matrix (no predictions gathered), and the matrices and loss sums are summed at the end."""

    def get_eval_dataloader(self, eval_dataset: str | Dataset | None = None) -> DataLoader:
        """This process's shard of the evaluation set: every sample once, none padded or repeated."""
        dataset = eval_dataset if eval_dataset is not None else self.eval_dataset
        if isinstance(dataset, str):
            dataset = self.eval_dataset[dataset]
        if dataset is None:
            raise ValueError("evaluation needs an eval_dataset")
        rank, world_size = self.args.process_index, self.args.world_size
        for_process = getattr(dataset, "for_process", None)  # our datasets shard themselves
        shard = (
            for_process(rank, world_size) if for_process else Subset(dataset, range(rank, len(dataset), world_size))
        )
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
                self.accelerator.unwrap_model(model),
                pixel_values,
                self.args.eval_crop_size,
                self.args.eval_stride,
                self.args.eval_flip,
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
