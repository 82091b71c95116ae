"""HeteroAKD: knowledge distillation across architectures for semantic segmentation.

Importing the package registers its student architectures with ``AutoConfig`` and
``AutoModelForSemanticSegmentation``, so saved students load with ``from_pretrained``.
"""

from transformers import AutoConfig, AutoModelForSemanticSegmentation

from .core import losses
from .core.errors import HeteroAKDError
from .core.losses import channel_wise_kd_loss, heteroakd_loss, pixel_kd_loss, task_loss
from .core.metrics import MeanIoU
from .core.version import __version__ as __version__
from .models import TimmSegmentationConfig, TimmSegmentationForSemanticSegmentation
from .networks.students import build_student
from .networks.teachers import load_teacher
from .training.config import HeteroAKDConfig
from .training.trainer import HeteroAKDTrainer

AutoConfig.register(TimmSegmentationConfig.model_type, TimmSegmentationConfig, exist_ok=True)
AutoModelForSemanticSegmentation.register(
    TimmSegmentationConfig, TimmSegmentationForSemanticSegmentation, exist_ok=True
)

__all__ = [
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
    "losses",  # the module of the loss functions on tensors
    "pixel_kd_loss",
    "task_loss",
]
