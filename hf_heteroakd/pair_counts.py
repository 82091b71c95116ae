"""The compiled CPU kernel of :class:`~hf_heteroakd.metrics.MeanIoU` (``cpu_kernel="compiled"``).

On the CPU, the torch path of ``MeanIoU.update`` reads an int64 map several times (a range check, a narrowing
cast, a clamp, then ``torch.bincount``, which is single-threaded). ``csrc/pair_counts.cpp`` does it all in one
pass per map, in torch's threads, each counting into a histogram of its own. ``torch.utils.cpp_extension``
builds it on first use (it needs a C++ compiler and ninja; about 20 s) into torch's extensions folder
(``TORCH_EXTENSIONS_DIR``, by default ``~/.cache/torch_extensions``), where later processes find it built.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
from pathlib import Path

import torch

from .errors import HeteroAKDError

__all__ = ["pair_counts"]

SOURCE = Path(__file__).with_name("csrc") / "pair_counts.cpp"
logger = logging.getLogger(__name__)


@functools.cache
def _load_library() -> None:
    """Build (first use on this machine) or load the kernel, registered as ``torch.ops.hf_heteroakd.pair_counts``."""
    # A CUDA build of torch on a machine without a GPU warns about CUDA_HOME when this module is imported; the
    # kernel is CPU-only, so the warning would only confuse.
    cpp_logger = logging.getLogger("torch.utils.cpp_extension")
    level = cpp_logger.level
    cpp_logger.setLevel(logging.ERROR)
    try:
        from torch.utils import cpp_extension
    finally:
        cpp_logger.setLevel(level)
    if shutil.which("ninja") is None:  # the pip package's binary is off PATH when its venv is not activated
        try:
            import ninja
        except ImportError:
            pass
        else:
            os.environ["PATH"] = ninja.BIN_DIR + os.pathsep + os.environ.get("PATH", "")
    # Without -fopenmp at::parallel_for runs its chunks one after the other (right, but on one thread).
    flags = ["-O3", "-fopenmp"] if sys.platform.startswith("linux") else ["-O3"]
    logger.info("loading MeanIoU's CPU kernel (built on first use, about 20 s, then cached)")
    try:
        cpp_extension.load(
            "hf_heteroakd_pair_counts", sources=[str(SOURCE)], extra_cflags=flags,
            extra_ldflags=[flag for flag in flags if flag == "-fopenmp"], is_python_module=False,
        )
    except Exception as error:  # a missing compiler or ninja, a failed build: the causes vary, the fix does not
        # A failed build's message starts with the compile command; the cause is a later line.
        lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
        reason = next((line for line in lines[1:] if "error" in line.lower() or "not found" in line), lines[0])
        raise HeteroAKDError(
            f"MeanIoU(cpu_kernel='compiled') could not build its C++ kernel ({reason}). It needs a C++ compiler "
            "(the CXX environment variable picks one) and ninja (`pip install ninja`); or use cpu_kernel='torch', "
            "the default, which needs neither."
        ) from error


def pair_counts(
    references: torch.Tensor, predictions: torch.Tensor, ref_low: int, ref_high: int, pred_high: int
) -> torch.Tensor:
    """The histogram of the clamped (reference value, prediction value) pairs of two label maps.

    Args:
        references, predictions: integer (or bool) CPU tensors with the same number of elements, any shape and
            strides; read, never written.
        ref_low, ref_high: reference values are clamped to ``[ref_low, ref_high]``.
        pred_high: prediction values are clamped to ``[-1, pred_high]``.

    Returns:
        ``((ref_high - ref_low + 1) * (pred_high + 2),)`` int64: bin ``(r - ref_low) * (pred_high + 2) + p + 1``
        counts the pixels whose clamped reference is ``r`` and clamped prediction ``p``.
    """
    _load_library()
    dtype = torch.promote_types(references.dtype, predictions.dtype)
    dtype = torch.uint8 if dtype == torch.bool else dtype
    return torch.ops.hf_heteroakd.pair_counts(
        references.to(dtype), predictions.to(dtype), int(ref_low), int(ref_high), int(pred_high)
    )
