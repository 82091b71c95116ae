"""Reporting: the run's summary, the model card and its figures, and the prediction panels drawn at each
evaluation."""
