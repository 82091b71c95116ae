"""Segmentation samples and batches: a split read one (image, mask) pair at a time, checked and
transformed inside the DataLoader workers, and collated into batches.

``SegmentationDataset`` (map-style) and ``StreamingSegmentationDataset`` (a ``datasets`` stream) share
the per-sample logic. Loading lives in :mod:`hf_heteroakd.data.loading`, the paired transforms in
:mod:`hf_heteroakd.data.transforms`; :mod:`hf_heteroakd.data` re-exports the three.
"""

from __future__ import annotations

import copy
import logging
from contextlib import nullcontext
from functools import partial
from typing import Any, Callable, Iterator, Sequence

import datasets
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as nnf
from datasets.distributed import split_dataset_by_node

from hf_heteroakd.core.errors import HeteroAKDError
from hf_heteroakd.core.labels import IGNORE_INDEX
from hf_heteroakd.data.loading import LabelTransform, Split
from hf_heteroakd.data.seeding import PerSampleSeed, sample_rng
from hf_heteroakd.data.transforms import PairTransform

logger = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------------
# Dataset, checks, batching
# --------------------------------------------------------------------------------------------------


class _SampleReader:
    """What both dataset kinds do with one row: decode it, convert the mask by ``label_transform`` (if
    any), check it (same size, labels in [0, num_labels) or ``ignore_index``) and transform the pair.

    A bad row raises a ``HeteroAKDError`` naming the split and row, or, with ``skip_bad_samples``, is
    counted in ``skipped`` (per process: each DataLoader worker counts its own) and logged.
    ``label_transform`` must be picklable (a module-level function) for DataLoader workers.
    """

    def __init__(
        self,
        split: Split,
        transform: PairTransform,
        num_labels: int,
        ignore_index: int = IGNORE_INDEX,
        split_name: str = "train",
        label_transform: LabelTransform | None = None,
        skip_bad_samples: bool = False,
    ) -> None:
        self.split = split
        self.transform = transform
        self.num_labels = num_labels
        self.ignore_index = ignore_index
        self.split_name = split_name
        self.label_transform = label_transform
        self.skip_bad_samples = skip_bad_samples
        self.skipped = 0

    def _read_or_skip(self, load_row: Callable[[], dict[str, Any]], row: int | str) -> dict[str, torch.Tensor] | None:
        """The transformed sample of ``load_row()``; None for a bad one when ``skip_bad_samples``."""
        try:
            return self._read(load_row, row)
        except HeteroAKDError as err:
            if not self.skip_bad_samples:
                raise
            self.skipped += 1
            logger.warning("Skipping bad sample %s (%d skipped in this process so far): %s", row, self.skipped, err)
            return None

    def _read(self, load_row: Callable[[], dict[str, Any]], row: int | str) -> dict[str, torch.Tensor]:
        try:
            decoded = load_row()
        except (OSError, ValueError) as err:  # PIL cannot decode the stored bytes
            raise HeteroAKDError(
                f"Split {self.split_name!r}, row {row}: the image or mask cannot be decoded ({err}); "
                "fix or remove the row, or pass --skip_bad_samples to skip such rows"
            ) from None
        image, mask = decoded["image"], decoded["label"]
        if image.size != mask.size:
            raise HeteroAKDError(
                f"Split {self.split_name!r}, row {row}: the image is {image.size[0]}x{image.size[1]} but its mask is "
                f"{mask.size[0]}x{mask.size[1]} (width x height). Masks must match their images pixel for pixel; "
                "check that --image_column_name and --label_column_name name matching columns."
            )
        labels = _labels_of(mask, self.label_transform)
        _check_mask(labels, self.num_labels, self.ignore_index, self.split_name, row)
        if self.label_transform is not None:
            mask = _as_mask_image(labels)  # the pair transform takes PIL masks
        pixel_values, labels = self.transform(image, mask)
        return {"pixel_values": pixel_values, "labels": labels}


class SegmentationDataset(_SampleReader, torch.utils.data.Dataset):
    """A split of ``SegmentationData`` as ``{"pixel_values": (3, H, W) float32, "labels": (H, W) int64,
    "index": int}``, ``index`` being the row (the teacher-logits cache looks samples up by it).

    Each sample is decoded, its mask converted by ``label_transform`` (if any), checked (same size,
    labels in [0, num_labels) or ``ignore_index``) and transformed when it is read, so the work
    happens in DataLoader workers. ``label_transform`` must be picklable (a module-level function).
    """

    def __len__(self) -> int:
        return len(self.split)

    # The dataset protocol the trainer calls (a stream has the same three methods, see below).
    def with_seed(self, seed: int) -> PerSampleSeed:
        """This split with augmentation seeded per (seed, epoch, sample); ``set_epoch`` on the result."""
        return PerSampleSeed(self, seed)

    def for_process(self, rank: int, world_size: int) -> torch.utils.data.Subset:
        """Process ``rank``'s share for evaluation: every ``world_size``-th sample, none repeated."""
        return torch.utils.data.Subset(self, range(rank, len(self), world_size))

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor] | None:
        """The transformed sample; None for a bad one when ``skip_bad_samples`` (the collate drops it)."""
        sample = self._read_or_skip(partial(self.split.__getitem__, idx), idx)
        if sample is not None:
            sample["index"] = int(idx)
        return sample


class StreamingSegmentationDataset(_SampleReader, torch.utils.data.IterableDataset):
    """A streamed split (``datasets.IterableDataset``) read like ``SegmentationDataset``, one row at a time.

    Rows are decoded here rather than by the stream, so that a bad image is reported (or skipped)
    instead of ending the stream. A bad row is named by its position in the stream this process
    (and DataLoader worker) reads, the split's row index when one reader reads it unshuffled.
    ``HeteroAKDTrainer`` calls ``with_seed`` on a training stream: it is then shuffled through a
    buffer of ``shuffle_buffer`` rows, reshuffled each epoch, and each sample is augmented under
    its own RNG seeded by (seed, epoch, position in the stream of all readers).
    ``for_process`` gives each process its share; DataLoader workers share it by the stream's
    shards, as ``datasets`` does for any ``IterableDataset`` (workers beyond the shard count idle).
    """

    def __init__(
        self,
        split: datasets.IterableDataset,
        transform: PairTransform,
        num_labels: int,
        ignore_index: int = IGNORE_INDEX,
        split_name: str = "train",
        label_transform: LabelTransform | None = None,
        skip_bad_samples: bool = False,
        shuffle_buffer: int = 1000,
    ) -> None:
        super().__init__(split, transform, num_labels, ignore_index, split_name, label_transform, skip_bad_samples)
        self.shuffle_buffer = shuffle_buffer
        self.seed: int | None = None  # unseeded: read in stored order, augmentation from the global RNG
        self.epoch = 0
        self.rank, self.world_size = 0, 1

    def with_seed(self, seed: int) -> StreamingSegmentationDataset:
        """A copy that is shuffled and augmented as a function of ``seed`` (and the epoch) alone."""
        seeded = copy.copy(self)
        seeded.seed = seed
        return seeded

    def for_process(self, rank: int, world_size: int) -> StreamingSegmentationDataset:
        """This process's share of the stream (``datasets.distributed.split_dataset_by_node``): every
        sample goes to exactly one process, as whole shards when their count divides ``world_size``."""
        if world_size == 1:
            return self
        shard = copy.copy(self)
        shard.split = split_dataset_by_node(self.split, rank=rank, world_size=world_size)
        shard.rank, shard.world_size = rank, world_size
        return shard

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        worker = torch.utils.data.get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        readers, reader = self.world_size * workers, self.rank * workers + worker_id
        stream = self.split
        if self.seed is not None:
            stream = stream.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
        stream = stream.decode(False)  # {"bytes", "path"} per image, decoded by _read
        stream.set_epoch(self.epoch)  # the shuffle's epoch; copies of a stream start at 0
        for position, raw in enumerate(stream):
            row = f"{position}" + (f" ({raw['image']['path']})" if raw["image"].get("path") else "")
            if readers > 1:
                row += f" as read by process {self.rank}, DataLoader worker {worker_id}"
            rng = (
                nullcontext() if self.seed is None else sample_rng(self.seed, self.epoch, position * readers + reader)
            )
            with rng:
                sample = self._read_or_skip(partial(self.split.features.decode_example, raw), row)
            if sample is not None:  # a skipped row is left out: batches stay full
                yield sample


def first_rows(split: Split, n: int) -> Split:
    """The first ``n`` rows of a split; a stream is not read until iterated."""
    if isinstance(split, datasets.IterableDataset):
        return split.take(n)
    return split.select(range(min(n, len(split))))


def first_image_size(split: Split) -> tuple[int, int] | None:
    """(H, W) of the split's first image (None if it is empty), read without its mask."""
    for row in first_rows(split.select_columns(["image"]), 1):
        return row["image"].height, row["image"].width
    return None


def check_label_range(
    split: Split,
    num_labels: int,
    ignore_index: int = IGNORE_INDEX,
    split_name: str = "train",
    max_samples: int = 32,
    label_transform: LabelTransform | None = None,
) -> None:
    """Fail fast, before training, if any of the first ``max_samples`` masks, after
    ``label_transform``, holds a label value outside [0, num_labels) that is not ``ignore_index``."""
    masks = first_rows(split.select_columns(["label"]), max_samples)  # don't decode the images
    for idx, row in enumerate(masks):
        _check_mask(_labels_of(row["label"], label_transform), num_labels, ignore_index, split_name, idx)


def _labels_of(mask: PIL.Image.Image, label_transform: LabelTransform | None) -> np.ndarray:
    """The mask's class indices: its pixel values, converted by ``label_transform`` if given."""
    labels = np.asarray(mask)
    return labels if label_transform is None else np.asarray(label_transform(labels))


def _as_mask_image(labels: np.ndarray) -> PIL.Image.Image:
    """A checked (H, W) class-index array as a PIL mask: mode L when it fits in a byte, else 32-bit I."""
    if labels.min() >= 0 and labels.max() <= 255:
        return PIL.Image.fromarray(labels.astype(np.uint8))
    return PIL.Image.fromarray(labels.astype(np.int32))


def _check_mask(mask: np.ndarray, num_labels: int, ignore_index: int, split_name: str, row: int | str) -> None:
    """Raise a HeteroAKDError naming the sample if ``mask`` (H, W) is not a valid class-index mask."""
    if mask.ndim != 2:
        raise HeteroAKDError(
            f"Split {split_name!r}, row {row}: the mask has shape {mask.shape}, but masks must be single-channel "
            "images whose pixel values are class indices (PIL mode L, P or I). Point --label_column_name at the "
            "class-index masks, or convert colour-coded masks to class indices first."
        )
    bad = (mask < 0) | ((mask >= num_labels) & (mask != ignore_index))
    if bad.any():
        values = np.unique(mask[bad]).tolist()
        shown = ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")
        raise HeteroAKDError(
            f"Split {split_name!r}, row {row}: label values [{shown}] are outside [0, {num_labels}) and are not the "
            f"ignore index {ignore_index}. Fix: make num_labels match the dataset's classes (id2label), set "
            "--ignore_index to the value that marks unlabeled pixels, or, if the masks use 0 for 'unlabeled' and "
            "1..C for the classes, pass --reduce_labels (0 -> 255, c -> c - 1)."
        )


def collate_segmentation(batch: list[dict[str, torch.Tensor]], ignore_index: int = IGNORE_INDEX) -> dict[str, Any]:
    """Stack samples into ``pixel_values`` (B, 3, H, W), ``labels`` (B, H, W), ``image_sizes`` (each
    sample's (H, W), a list of B tuples) and, when every sample has one, ``index``, the B row indices.

    None entries (bad samples a dataset skipped) are dropped. Samples of different sizes
    (full-resolution evaluation) are padded at the bottom and right to the largest H and W: images
    with 0, labels with ``ignore_index`` so the padding is never scored; evaluation crops each sample
    back to its ``image_sizes`` entry (see :func:`same_size_groups`), so padding never reaches a model.
    Use ``functools.partial(collate_segmentation, ignore_index=...)`` as a DataLoader's collate_fn.
    """
    batch = [sample for sample in batch if sample is not None]  # bad samples skipped by the dataset
    if not batch:
        raise HeteroAKDError(
            "every sample of a batch was bad and skipped by --skip_bad_samples (the warnings above name each one): "
            "the split may hold no usable row; fix its rows, or check --image_column_name / --label_column_name"
        )
    sizes = [tuple(sample["labels"].shape[-2:]) for sample in batch]
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)

    def pad(tensor: torch.Tensor, value: float) -> torch.Tensor:
        return nnf.pad(tensor, (0, width - tensor.shape[-1], 0, height - tensor.shape[-2]), value=value)

    # Lists, not tensors: the Trainer leaves them on the host, so reading them never syncs with a GPU.
    stacked = {
        "pixel_values": torch.stack([pad(sample["pixel_values"], 0.0) for sample in batch]),
        "labels": torch.stack([pad(sample["labels"], ignore_index) for sample in batch]),
        "image_sizes": sizes,
    }
    if all("index" in sample for sample in batch):
        stacked["index"] = [sample["index"] for sample in batch]
    return stacked


def same_size_groups(sizes: Sequence[tuple[int, int]]) -> list[list[int]]:
    """The positions of ``sizes`` grouped by size, in order of first appearance: ``[(4, 6), (5, 6), (4, 6)]``
    gives ``[[0, 2], [1]]``. A group stacks unpadded, so a model's output for an image never depends
    on the other images of its batch."""
    groups: dict[tuple[int, int], list[int]] = {}
    for position, size in enumerate(sizes):
        groups.setdefault(tuple(size), []).append(position)
    return list(groups.values())
