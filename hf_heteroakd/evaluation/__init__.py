"""Evaluation: a saved or Hub model scored on a dataset, predictions on one's own images, and their pictures."""

from .arguments import EvaluationArguments
from .evaluate_model import evaluate_saved_student, run_evaluation, save_mean_iou
from .tables import per_class_table

__all__ = ["EvaluationArguments", "evaluate_saved_student", "per_class_table", "run_evaluation", "save_mean_iou"]
