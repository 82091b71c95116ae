"""The label conventions shared by the configuration (``--ignore_index``), the data and the losses.

A leaf module: the data pipeline reads the ignore index without importing the losses.
"""

from typing import Any

IGNORE_INDEX = 255  # the label of pixels that count in no loss and no metric (Cityscapes' and ADE20K's "void")


def id2label_of(config: Any) -> dict[int, str]:
    """A model config's classes with integer keys (a config read from JSON keys them by strings)."""
    return {int(index): name for index, name in config.id2label.items()}
