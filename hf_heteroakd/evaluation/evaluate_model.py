"""Evaluate a saved or Hub segmentation model on a dataset, without training: ``recipes/evaluate_model.py``.

:func:`run_evaluation` runs the Trainer's evaluation (batched, sharded over processes, sliding-window
and flip options) on any ``AutoModelForSemanticSegmentation`` checkpoint, a student of this project or
a teacher, and writes the ``evaluate``-format result and a per-class table. :func:`evaluate_saved_student`
is the independent check: the model card's "How to use" code, one image at a time.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import evaluate
import numpy as np
import torch
import transformers
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from ..core.metrics import MeanIoU
from ..core.version import __version__
from ..data.loading import load_segmentation_data
from ..data.normalization import model_normalization
from ..data.samples import collate_segmentation
from ..data.transforms import eval_transforms
from ..networks.teachers import load_segmentation_model, weights_policy
from ..training.run_data import build_split, load_data_args, resolve_id2label
from ..training.trainer import HeteroAKDTrainer
from .arguments import EvaluationArguments
from .tables import per_class_table

RESULT_NAME = "mean_iou.json"
TABLE_NAME = "per_class_iou.md"


def run_evaluation(eval_args: EvaluationArguments) -> dict[str, float]:
    """Evaluates ``eval_args.model`` on ``eval_args.eval_split``; returns the flat ``eval_*`` metrics.

    The main process writes to ``output_dir``: ``eval_results.json`` (the flat metrics), ``mean_iou.json``
    (:func:`save_mean_iou`) and ``per_class_iou.md``. The model's ``id2label`` names the classes when
    the dataset has no ``id2label.json``; when it has one, the two must agree.
    """
    data_args, training_args = eval_args.data_arguments(), eval_args.training_arguments()
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    data = load_data_args(data_args)
    model = load_segmentation_model(
        eval_args.model, "model", torch.float32, eval_args.trust_remote_code, eval_args.allow_pickle_weights
    )
    id2label = resolve_id2label(data.id2label, model, role="model")
    mean, std = model_normalization(model, eval_args.model)
    eval_set = build_split(
        data,
        data_args,
        data_args.eval_split,
        eval_transforms(mean, std),
        len(id2label),
        training_args.ignore_index,
        data_args.max_eval_samples,
    )
    trainer = HeteroAKDTrainer(
        model=model,
        args=training_args,
        eval_dataset=eval_set,
        data_collator=partial(collate_segmentation, ignore_index=training_args.ignore_index),
    )
    metrics = trainer.evaluate()
    trainer.log_metrics("eval", metrics)
    trainer.save_metrics("eval", metrics, combined=False)
    if trainer.is_world_process_zero():
        output_dir = Path(training_args.output_dir)
        save_mean_iou(
            output_dir / RESULT_NAME,
            trainer.mean_iou_result,
            model=eval_args.model,
            dataset=data_args.dataset,
            split=data_args.eval_split,
            num_images=len(eval_set) if hasattr(eval_set, "__len__") else None,
            eval_crop_size=training_args.eval_crop_size,
            eval_stride=training_args.eval_stride,
            eval_flip=training_args.eval_flip,
        )
        (output_dir / TABLE_NAME).write_text(per_class_table(metrics, id2label))
    return metrics


def save_mean_iou(path: str | Path, result: dict[str, Any], **params: Any) -> Path:
    """Writes :meth:`MeanIoU.compute`'s ``result`` (the keys of ``evaluate``'s ``mean_iou``; per-class values
    as lists, NaN for a class absent from references and predictions) and ``params`` with ``evaluate.save``,
    which adds the time, the git commit and the Python and ``evaluate`` versions."""
    values = {key: value.tolist() if isinstance(value, np.ndarray) else value for key, value in result.items()}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    return Path(evaluate.save(str(path), **values, **params, hf_heteroakd_version=__version__))


@torch.no_grad()
def evaluate_saved_student(
    model_path: str, dataset: str, split: str = "validation", ignore_index: int = 255, max_samples: int | None = None
) -> dict:
    """Mean IoU of the model saved at ``model_path`` on ``dataset[split]``, one image at a time.

    Independent of the Trainer's evaluation loop, as the model card's "How to use" runs it: the image
    processor prepares each image and ``post_process_semantic_segmentation`` resizes the prediction to
    the label's size.
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
