"""The label conventions shared by the configuration (``--ignore_index``), the data and the losses.

A leaf module: the data pipeline reads the ignore index without importing the losses.
"""

IGNORE_INDEX = 255  # the label of pixels that count in no loss and no metric (Cityscapes' and ADE20K's "void")
