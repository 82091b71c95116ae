"""Data: datasets read from the Hub or a folder, the presets, paired transforms and per-sample seeding.

The names below are the data API (``from hf_heteroakd.data import SegmentationDataset, ...``); each is
defined in one of the modules of this package.
"""

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from ..core.labels import IGNORE_INDEX
from .loading import (
    IMAGE_COLUMN_CANDIDATES,
    LABEL_COLUMN_CANDIDATES,
    LabelTransform,
    SegmentationData,
    Split,
    load_id2label,
    load_segmentation_data,
    reduce_labels,
)
from .samples import (
    SegmentationDataset,
    StreamingSegmentationDataset,
    check_label_range,
    collate_segmentation,
    first_image_size,
    first_rows,
    same_size_groups,
)
from .transforms import (
    PHOTOMETRIC_DISTORTION,
    PairTransform,
    RandomScale,
    SegmentationTransform,
    eval_transforms,
    train_transforms,
)

__all__ = [
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
]
