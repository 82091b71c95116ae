"""Random augmentation as a function of (seed, epoch, sample index) alone.

The same sample then gets the same crop and flip whatever the number of processes or DataLoader
workers, and a run resumed from a checkpoint sees exactly the batches the uninterrupted run saw.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch.utils.data import Dataset
from transformers import TrainerCallback

_PRIME = 1_000_003


@contextmanager
def sample_rng(seed: int, epoch: int, index: int) -> Iterator[None]:
    """Runs the block under torch's RNG seeded from (seed, epoch, sample index) alone; restores it after."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(((seed * _PRIME + epoch) * _PRIME + int(index)) % 2**63)
        yield


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
        with sample_rng(self.seed, self.epoch, idx):
            return self.dataset[idx]


class SetEpochCallback(TrainerCallback):
    """Tells a :class:`PerSampleSeed` dataset which epoch starts (before its DataLoader iterator exists)."""

    def __init__(self, dataset: PerSampleSeed) -> None:
        self.dataset = dataset

    def on_epoch_begin(self, args, state, control, **kwargs):
        self.dataset.set_epoch(int(state.epoch + 1e-6) if state.epoch is not None else 0)
