"""Evaluation: a saved or Hub model scored on a dataset, predictions on one's own images, and their pictures."""
