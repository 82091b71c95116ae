"""Random augmentation as a function of (seed, epoch, sample index) alone.

The same sample then gets the same crop and flip whatever the number of processes or DataLoader
workers, and a run resumed from a checkpoint sees exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import TrainerCallback

_PRIME = 1_000_003


class PerSampleSeed(Dataset):
    """Wraps a map-style dataset: each ``__getitem__`` runs under its own seeded torch RNG."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, idx: int) -> Any:
        sample_seed = ((self.seed * _PRIME + self.epoch) * _PRIME + int(idx)) % 2**63
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(sample_seed)
            return self.dataset[idx]


class SetEpochCallback(TrainerCallback):
    """Tells a :class:`PerSampleSeed` dataset which epoch starts (before its DataLoader iterator exists)."""

    def __init__(self, dataset: PerSampleSeed) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch + 1e-6) if state.epoch is not None else 0)
