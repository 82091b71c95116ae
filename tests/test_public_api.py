"""The names users import keep importing from where the flat package had them: the package's ``__all__``
and the modules whose names became subpackages (``hf_heteroakd.data``, ``.methods``, ``.evaluation``)."""

from __future__ import annotations

import importlib

import pytest

import hf_heteroakd

# Names the flat package's modules of the same name exported (its hf_heteroakd.data had this __all__).
KEPT = {
    "hf_heteroakd.data": [
        "IGNORE_INDEX",
        "IMAGENET_DEFAULT_MEAN",
        "IMAGENET_DEFAULT_STD",
        "IMAGE_COLUMN_CANDIDATES",
        "LABEL_COLUMN_CANDIDATES",
        "PHOTOMETRIC_DISTORTION",
        "LabelTransform",
        "PairTransform",
        "RandomScale",
        "SegmentationData",
        "SegmentationDataset",
        "SegmentationTransform",
        "Split",
        "StreamingSegmentationDataset",
        "check_label_range",
        "collate_segmentation",
        "eval_transforms",
        "first_image_size",
        "first_rows",
        "load_id2label",
        "load_segmentation_data",
        "reduce_labels",
        "same_size_groups",
        "train_transforms",
    ],
    "hf_heteroakd.methods": [
        "METHODS",
        "DistillationMethod",
        "DistillationOutput",
        "LossTerms",
        "hakd_grid",
        "method_class",
        "register_method",
    ],
    "hf_heteroakd.evaluation": ["EvaluationArguments", "evaluate_saved_student", "run_evaluation", "save_mean_iou"],
    "hf_heteroakd.pipeline": ["DataArguments", "ModelArguments", "run_distillation"],
}


def test_every_name_of_the_package_all_imports():
    expected = {
        "HeteroAKDConfig",
        "HeteroAKDError",
        "HeteroAKDTrainer",
        "MeanIoU",
        "TimmSegmentationConfig",
        "TimmSegmentationForSemanticSegmentation",
        "build_student",
        "channel_wise_kd_loss",
        "heteroakd_loss",
        "load_teacher",
        "pixel_kd_loss",
        "task_loss",
    }
    assert expected <= set(hf_heteroakd.__all__)
    namespace: dict = {}
    exec("from hf_heteroakd import *", namespace)
    assert set(hf_heteroakd.__all__) <= set(namespace)
    assert hf_heteroakd.__version__ and hf_heteroakd.losses.task_loss is hf_heteroakd.task_loss


@pytest.mark.parametrize("module", sorted(KEPT))
def test_the_former_modules_names_still_import(module):
    imported = importlib.import_module(module)
    missing = [name for name in KEPT[module] if not hasattr(imported, name)]
    assert missing == [], f"{module} lost {missing}"
