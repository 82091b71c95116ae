"""Student architectures that transformers does not ship, as ``PreTrainedModel`` classes."""

from .configuration_timm_segmentation import TimmSegmentationConfig
from .modeling_timm_segmentation import TimmSegmentationForSemanticSegmentation

__all__ = ["TimmSegmentationConfig", "TimmSegmentationForSemanticSegmentation"]

# Saved students carry their modeling code (auto_map + these files), so they load with
# trust_remote_code=True where hf_heteroakd is not installed.
TimmSegmentationConfig.register_for_auto_class()
TimmSegmentationForSemanticSegmentation.register_for_auto_class("AutoModelForSemanticSegmentation")
