"""The lowest layer: loss math on tensors, the stage projectors and features, inference, the mean-IoU
metric, and the names every layer shares (``HeteroAKDError``, ``IGNORE_INDEX``)."""
