"""Evaluate a saved student the way a user would: ``from_pretrained`` + its image processor."""

from __future__ import annotations

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from .data import load_segmentation_data
from .metrics import MeanIoU
from .teachers import weights_policy


@torch.no_grad()
def evaluate_saved_student(
    model_path: str, dataset: str, split: str = "validation", ignore_index: int = 255, max_samples: int | None = None
) -> dict:
    """Mean IoU of the student saved at ``model_path`` on ``dataset[split]``, one image at a time.

    Independent of the Trainer's evaluation loop: the image processor prepares each image and
    ``post_process_semantic_segmentation`` resizes the prediction to the label's size.
    """
    model = AutoModelForSemanticSegmentation.from_pretrained(model_path, **weights_policy()).eval()
    processor = AutoImageProcessor.from_pretrained(model_path)
    rows = load_segmentation_data(dataset).splits[split]
    if max_samples is not None:
        rows = rows.select(range(min(max_samples, len(rows))))
    metric = MeanIoU(model.config.num_labels, ignore_index=ignore_index)
    for row in rows:
        label = np.asarray(row["label"])
        outputs = model(**processor(row["image"].convert("RGB"), return_tensors="pt"))
        prediction = processor.post_process_semantic_segmentation(outputs, target_sizes=[label.shape])[0]
        metric.update(prediction, label)
    return metric.compute()
