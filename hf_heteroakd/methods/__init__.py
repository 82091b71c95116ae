"""Distillation methods: the registry behind ``--distill_method`` and the built-in methods.

``from hf_heteroakd.methods import DistillationMethod, LossTerms, register_method`` is all a new method
needs (docs/extending.md).
"""

from .outputs import DistillationOutput, TeacherOutputs
from .registry import (
    METHODS,
    ChannelWiseKD,
    DistillationMethod,
    HeteroAKD,
    LossTerms,
    NoDistillation,
    PixelKD,
    hakd_grid,
    method_class,
    register_method,
)

__all__ = [
    "METHODS",
    "ChannelWiseKD",
    "DistillationMethod",
    "DistillationOutput",
    "HeteroAKD",
    "LossTerms",
    "NoDistillation",
    "PixelKD",
    "TeacherOutputs",
    "hakd_grid",
    "method_class",
    "register_method",
]
