"""The teacher's outputs on a fixed training set, computed once and read back by sample index.

With the cache, training never runs the teacher: each batch's teacher logits (and, for HeteroAKD,
its maps of the distilled stages) are read from disk by the samples' ``index``. That is only
right when a sample's pixels are the same every epoch, so the training set must be un-augmented.

A cache directory holds::

    shard-00000.safetensors   samples 0 … SHARD_SIZE-1: "<index>.logits" (C, h, w) at the teacher's
    shard-00001.safetensors   output resolution and "<index>.feature<k>" (C_k, h_k, w_k), k-th distilled stage
    cache_info.json           the key (what the outputs were computed from), written last: no
                              cache_info.json means no complete cache

The key names each thing the outputs depend on (teacher config and weights, dataset fingerprint,
number of samples, transforms, stored dtype, stages); a cache whose key differs is refused, naming
the parts that changed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import datasets
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from ..core.errors import HeteroAKDError
from ..core.file_checks import file_problem, read_json
from ..data.samples import SegmentationDataset, same_size_groups
from ..data.seeding import PerSampleSeed
from ..methods.outputs import TeacherOutputs
from ..networks.teachers import DTYPES

INFO_NAME = "cache_info.json"
SHARD_SIZE = 256
FORMAT = 1


def cache_key(
    teacher: nn.Module,
    dataset: PerSampleSeed | SegmentationDataset,
    teacher_input_transform: Callable[[torch.Tensor], torch.Tensor] | None,
    dtype: str,
    stages: list[int] | None,
    mixed_precision: str,
) -> dict[str, Any]:
    """What the teacher's outputs on ``dataset`` depend on, one named part each.

    ``dtype`` is the stored dtype (a key of ``DTYPES``); ``stages`` the cached stage indices
    (None: logits only). Transforms are identified by their ``repr``, hashes shortened to 64 bits.
    """
    source = dataset.dataset if isinstance(dataset, PerSampleSeed) else dataset
    if not isinstance(source, SegmentationDataset) or not isinstance(source.split, datasets.Dataset):
        raise HeteroAKDError(
            "--teacher_logits_cache identifies the training inputs by their datasets split and transform: "
            f"train on a hf_heteroakd.data.SegmentationDataset, not a {type(source).__name__}"
        )
    config = json.loads(teacher.config.to_json_string(use_diff=False))
    for where_it_came_from in ("_name_or_path", "_commit_hash", "transformers_version"):
        config.pop(where_it_came_from, None)  # the same checkpoint from another path is the same teacher
    return {
        "cache format": FORMAT,
        "teacher config": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16],
        "teacher weights": _weights_sha256(teacher)[:16],
        "teacher input transform": _one_line(repr(teacher_input_transform)),
        "dataset fingerprint": source.split._fingerprint,
        "number of samples": len(source),
        "training transform": _one_line(repr(source.transform)),
        "stored dtype": dtype,
        "stages": None if stages is None else list(stages),
        "mixed precision": mixed_precision,
    }


def _weights_sha256(model: nn.Module) -> str:
    """A hash of every tensor of ``model``'s state dict: names, dtypes, shapes and values."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # raw bytes: numpy has no bfloat16
    return digest.hexdigest()


class TeacherLogitsCache:
    """A complete cache directory (see the module docstring), read by sample index."""

    def __init__(self, directory: str | os.PathLike, info: dict[str, Any]) -> None:
        """``info``: the directory's ``cache_info.json``, already read."""
        self.directory = Path(directory)
        self.info = info
        self.key: dict[str, Any] = self.info["key"]
        # Distinct (H, W) of the inputs: batches of several sizes are padded, which the cache cannot mirror.
        self.input_sizes = [tuple(size) for size in self.info["input_sizes"]]
        self._names = ["logits"] + [f"feature{k}" for k in range(len(self.key["stages"] or []))]
        self._shards: dict[int, Any] = {}  # shard number -> open safetensors file (memory-mapped)

    @classmethod
    def open_or_build(
        cls,
        directory: str | os.PathLike,
        key: dict[str, Any],
        dataset: PerSampleSeed,
        compute: Callable[[torch.Tensor], TeacherOutputs],
        batch_size: int = 8,
        num_workers: int = 0,
        may_build: bool = True,
        progress: bool = True,
    ) -> TeacherLogitsCache:
        """The cache in ``directory`` if its key is ``key``; computed first if there is none.

        Args:
            dataset: the training set; each sample a dict with "pixel_values" (3, H, W) and "index".
            compute: (B, 3, H, W) pixel values on the CPU -> the teacher's outputs for them.
            may_build: False on processes that must find the cache already built (by the main one).

        Raises:
            HeteroAKDError: ``directory`` holds a cache with another key, or inputs change between epochs.
        """
        directory = Path(directory)
        if not (directory / INFO_NAME).is_file():
            if not may_build:
                raise HeteroAKDError(
                    f"--teacher_logits_cache {directory}: the main process built no cache this process can see; "
                    "with several machines the directory must be on a shared filesystem"
                )
            _check_fixed_inputs(dataset)
            _build(directory, key, dataset, compute, batch_size, num_workers, progress)
        info = _read_info(directory)
        stored = info["key"]
        changed = [part for part in key if stored.get(part) != key[part]]
        if changed:
            details = "; ".join(f"{part}: {_short(stored.get(part))} -> {_short(key[part])}" for part in changed)
            raise HeteroAKDError(
                f"--teacher_logits_cache {directory} holds teacher outputs computed with another "
                f"{', '.join(changed)} ({details}): pass another directory, or delete {directory} to recompute them"
            )
        return cls(directory, info)

    def get(self, indices: Sequence[int], device: torch.device | str) -> TeacherOutputs:
        """The stored outputs of samples ``indices`` (B row indices), stacked and as float32 on ``device``."""
        device = torch.device(device)
        columns = []
        for name in self._names:
            stacked = torch.stack([self._read(index, name) for index in indices])
            if device.type == "cuda":  # a copy from pageable memory would wait for the GPU's queued work
                stacked = stacked.pin_memory()
            columns.append(stacked.to(device, non_blocking=True).float())
        return TeacherOutputs(logits=columns[0], features=columns[1:] or None)

    def _read(self, index: int, name: str) -> torch.Tensor:
        shard = index // self.info["shard_size"]
        if shard not in self._shards:
            path = self.directory / _shard_name(shard)
            if not path.is_file():
                raise HeteroAKDError(f"{path} is missing: delete {self.directory} to recompute the cache")
            self._shards[shard] = safe_open(str(path), framework="pt", device="cpu")
        try:
            return self._shards[shard].get_tensor(f"{index}.{name}")
        except SafetensorError as err:  # no such tensor in the shard
            raise HeteroAKDError(
                f"sample {index} is not in --teacher_logits_cache {self.directory}; delete it to recompute the cache"
            ) from err


def _read_info(directory: Path) -> dict[str, Any]:
    """``cache_info.json`` of a complete cache, once it and every shard are checked to be readable: a cache
    cut short (a full disk, a copy interrupted) is refused before training, naming the damaged file."""
    problem = file_problem(directory / INFO_NAME)
    info = read_json(directory / INFO_NAME) if problem is None else None
    if problem is None and not (isinstance(info, dict) and {"key", "input_sizes", "shard_size"} <= info.keys()):
        problem = "lacks the cache's key, input sizes or shard size"
    damaged = [(directory / INFO_NAME, problem)] if problem is not None else []
    damaged += [(shard, file_problem(shard)) for shard in sorted(directory.glob("shard-*.safetensors"))]
    damaged = [(path, problem) for path, problem in damaged if problem is not None]
    if damaged:
        path, problem = damaged[0]
        raise HeteroAKDError(
            f"--teacher_logits_cache {directory} is damaged: {path} {problem}; delete {directory} to recompute the "
            "cache (the next run computes it again before its first step)"
        )
    return info


def _check_fixed_inputs(dataset: PerSampleSeed, num_samples: int = 4) -> None:
    """Refuse training inputs that change between epochs: the first samples, read at two epochs."""
    epoch = dataset.epoch
    try:
        for index in range(min(num_samples, len(dataset))):
            dataset.set_epoch(0)
            first = dataset[index]
            dataset.set_epoch(1)
            second = dataset[index]
            if (
                first is not None
                and second is not None
                and not torch.equal(first["pixel_values"], second["pixel_values"])
            ):
                raise HeteroAKDError(
                    f"--teacher_logits_cache stores one teacher output per training image, but training sample "
                    f"{index} changes between epochs (random scale, crop, flip, colour): train without augmentation "
                    "(--no_augmentation; in Python, a SegmentationDataset with data.eval_transforms)"
                )
    finally:
        dataset.set_epoch(epoch)


def _build(
    directory: Path,
    key: dict[str, Any],
    dataset: PerSampleSeed,
    compute: Callable[[torch.Tensor], TeacherOutputs],
    batch_size: int,
    num_workers: int,
    progress: bool,
) -> None:
    """One pass over ``dataset``: the teacher's outputs of every sample, in shards, then the key."""
    directory.mkdir(parents=True, exist_ok=True)
    dtype = DTYPES[key["stored dtype"]]
    shard, tensors, sizes = 0, {}, set()
    # The loader draws its seed from the global RNG: fork it, so the run's shuffling is that of a run
    # without the cache.
    with torch.random.fork_rng(devices=[]):
        loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=list)
        for samples in tqdm(loader, desc=f"teacher outputs -> {directory}", disable=not progress):
            rows = []
            samples = [s for s in samples if s is not None]  # None: a skipped bad sample
            for positions in same_size_groups([tuple(s["pixel_values"].shape[-2:]) for s in samples]):
                group = [samples[i] for i in positions]
                outputs = compute(torch.stack([s["pixel_values"] for s in group]))
                for row, sample in enumerate(group):
                    stored = [outputs.logits[row]] + [features[row] for features in outputs.features or []]
                    rows.append((sample["index"], stored))
                sizes.add(tuple(group[0]["pixel_values"].shape[-2:]))
            # Batches come in index order; sorting within one keeps each shard's samples together.
            for index, stored in sorted(rows, key=lambda r: r[0]):
                if index // SHARD_SIZE != shard:
                    save_file(tensors, directory / _shard_name(shard))
                    shard, tensors = index // SHARD_SIZE, {}
                tensors[f"{index}.logits"] = _to_stored(stored[0], dtype)
                for k, features in enumerate(stored[1:]):
                    tensors[f"{index}.feature{k}"] = _to_stored(features, dtype)
        save_file(tensors, directory / _shard_name(shard))
    info = {"key": key, "input_sizes": sorted(sizes), "shard_size": SHARD_SIZE}
    partial = directory / (INFO_NAME + ".partial")
    partial.write_text(json.dumps(info, indent=2))
    os.replace(partial, directory / INFO_NAME)  # the cache is complete once this file exists


def _to_stored(tensor: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A contiguous CPU copy in ``dtype`` (its own storage, as safetensors wants); refuses float16 overflow."""
    stored = tensor.detach().to("cpu", dtype, copy=True, memory_format=torch.contiguous_format)
    if torch.isinf(stored).any() and not torch.isinf(tensor).any():
        raise HeteroAKDError(
            f"the teacher's outputs exceed the range of {dtype}: use --teacher_logits_cache_dtype bfloat16"
        )
    return stored


def _shard_name(shard: int) -> str:
    return f"shard-{shard:05d}.safetensors"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short(value: Any, width: int = 120) -> str:
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"
