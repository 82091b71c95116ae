"""Student architectures that transformers does not ship, as ``PreTrainedModel`` classes."""

from .configuration_timm_segmentation import TimmSegmentationConfig
from .modeling_timm_segmentation import TimmSegmentationForSemanticSegmentation

__all__ = ["TimmSegmentationConfig", "TimmSegmentationForSemanticSegmentation"]
