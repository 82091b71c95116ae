"""Segmentation data: load a dataset in the Hub's layout, augment (image, mask) pairs, batch them.

A dataset is whatever ``datasets.load_dataset`` understands: a Hub dataset id or a local folder in
the Hub's layout (``data/<split>-*.parquet`` shards, or an imagefolder). Images and masks stay PIL
images in the Arrow table; ``SegmentationDataset`` decodes, checks and augments one sample at a
time, inside the DataLoader workers. Masks that are not class indices yet (Cityscapes label ids,
classes counted from 1) are converted there too, by a ``label_transform``; ``hf_heteroakd.presets``
pairs public Hub datasets with theirs. With ``streaming=True`` the splits are ``datasets.IterableDataset``
streams, read by ``StreamingSegmentationDataset`` with the same per-sample logic.
"""

from __future__ import annotations

import copy
import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import datasets
import huggingface_hub
import numpy as np
import PIL.Image
import torch
import torch.nn.functional as nnf
from datasets.distributed import split_dataset_by_node
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub.errors import EntryNotFoundError, HFValidationError
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from hf_heteroakd.errors import HeteroAKDError
from hf_heteroakd.losses import IGNORE_INDEX
from hf_heteroakd.seeding import sample_rng

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

logger = logging.getLogger(__name__)


# Column names tried, in order, when the user names none.
IMAGE_COLUMN_CANDIDATES = ("image", "pixel_values", "img")
LABEL_COLUMN_CANDIDATES = ("label", "semantic_segmentation", "annotation", "mask", "segmentation", "gtFine")

# (PIL image, PIL mask) -> (pixel_values (3, H, W) float32, labels (H, W) int64)
PairTransform = Callable[[PIL.Image.Image, PIL.Image.Image], tuple[torch.Tensor, torch.Tensor]]
# raw mask (H, W) as stored in the dataset -> class-index mask (H, W); applied per sample, when it is read
LabelTransform = Callable[[np.ndarray], np.ndarray]
# a split as datasets loads it: map-style, or a stream (load_dataset(..., streaming=True))
Split = datasets.Dataset | datasets.IterableDataset


# --------------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------------


@dataclass
class SegmentationData:
    """A dataset's splits, each with exactly the columns "image" and "label" (PIL-decoded), its class
    names (given, or from the dataset's ``id2label.json``), and the conversion, if any, that turns a
    stored mask into class indices (pass it to ``SegmentationDataset`` and ``check_label_range``).
    Streamed data has ``datasets.IterableDataset`` splits."""

    splits: datasets.DatasetDict | datasets.IterableDatasetDict
    id2label: dict[int, str] | None
    label_transform: LabelTransform | None = None


def load_segmentation_data(
    dataset: str,
    dataset_config: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    cache_dir: str | None = None,
    revision: str | None = None,
    data_dir: str | None = None,
    id2label: dict[int, str] | None = None,
    label_transform: LabelTransform | None = None,
    streaming: bool = False,
) -> SegmentationData:
    """Load every split of ``dataset`` (Hub id or local folder), keeping only the image and mask.

    Columns are renamed to "image" and "label"; when not given they are detected from
    ``IMAGE_COLUMN_CANDIDATES`` / ``LABEL_COLUMN_CANDIDATES``. ``data_dir`` selects a sub-folder of
    the repository. ``label_transform`` is stored, not applied: the masks stay as they are in the
    dataset and are converted one at a time when read. ``id2label`` names the classes after that
    conversion; when given, the dataset's own ``id2label.json`` is not read. ``streaming`` gives
    ``datasets.IterableDataset`` splits that are read as they are iterated, never downloaded first.
    """
    try:
        splits = datasets.load_dataset(
            dataset, dataset_config, data_dir=data_dir, cache_dir=cache_dir, revision=revision, streaming=streaming
        )
    except (DatasetNotFoundError, FileNotFoundError) as err:
        raise HeteroAKDError(
            f"Dataset {dataset!r} was not found ({err}). Pass an existing Hub dataset id ('org/name'; "
            "private or gated ones need `hf auth login`) or a local folder in the Hub's layout "
            "(data/<split>-*.parquet files, or an imagefolder)."
        ) from err
    except ConnectionError as err:
        raise HeteroAKDError(
            f"Could not reach the Hugging Face Hub to load dataset {dataset!r} ({err}). "
            "Check the network connection, or pass a local copy of the dataset folder."
        ) from err
    except ValueError as err:
        # datasets signals an empty split and a missing or unknown config only through a ValueError's message.
        if "corresponds to no data" in str(err):
            raise HeteroAKDError(
                f"Dataset {dataset!r} has a split without rows ({err}); every split needs at least one image: "
                "add rows to it, or remove its files"
            ) from err
        if "config" not in str(err).lower():
            raise
        raise HeteroAKDError(
            f"Dataset {dataset!r} cannot be loaded with config {dataset_config!r}: {' '.join(str(err).split())} "
            "Pick one of its configs with --dataset_config_name."
        ) from err

    untyped = [name for name, split in splits.items() if split.column_names is None]  # streams of unknown features
    if untyped:
        raise HeteroAKDError(
            f"The streamed splits {untyped} of {dataset!r} declare no columns (features), so the image and label "
            "columns cannot be found; load the dataset without --streaming, or declare its features in its card."
        )
    # Columns are detected on "train" (or the first split); a split without them, typically an
    # unlabelled "test" split, is left out rather than blocking training.
    reference = splits["train"] if "train" in splits else next(iter(splits.values()))
    image_column = _pick_column(reference.column_names, image_column, IMAGE_COLUMN_CANDIDATES, "image")
    label_column = _pick_column(reference.column_names, label_column, LABEL_COLUMN_CANDIDATES, "label")
    if image_column == label_column:
        raise HeteroAKDError(
            f"The image and label columns are both {image_column!r}; "
            "set --image_column_name and --label_column_name to two different columns."
        )

    selected = {}
    for split_name, split in splits.items():
        if image_column not in split.column_names or label_column not in split.column_names:
            logger.warning(
                "Leaving out split %r of %r: it lacks column %r or %r (it has %s).",
                split_name, dataset, image_column, label_column, split.column_names,
            )
            continue
        split = split.select_columns([image_column, label_column])
        split = _as_decoded_image(split, image_column, "image")
        split = _as_decoded_image(split, label_column, "label")
        renames = {old: new for old, new in ((image_column, "image"), (label_column, "label")) if old != new}
        selected[split_name] = split.rename_columns(renames) if renames else split  # a stream rejects a no-op rename
    if id2label is None:
        id2label = load_id2label(dataset, revision)
    return SegmentationData(type(splits)(selected), id2label, label_transform)


def load_id2label(dataset: str, revision: str | None = None) -> dict[int, str] | None:
    """Class names from the dataset's ``id2label.json`` (``{"0": "background", ...}``), or None.

    A local folder is read directly; for a Hub id the file is downloaded. A dataset without the
    file, or a Hub that cannot be reached, gives None: class names are optional metadata.
    """
    local_dir = Path(dataset)
    if local_dir.is_dir():
        path = local_dir / "id2label.json"
        if not path.is_file():
            return None
    else:
        try:
            path = Path(
                huggingface_hub.hf_hub_download(dataset, "id2label.json", repo_type="dataset", revision=revision)
            )
        # HfHubHTTPError and LocalEntryNotFoundError (offline, not cached) are OSErrors.
        except (EntryNotFoundError, OSError, HFValidationError):
            return None

    try:
        return {int(key): str(name) for key, name in json.loads(path.read_text()).items()}
    except (ValueError, AttributeError) as err:
        raise HeteroAKDError(
            f"{path} is not a valid id2label file ({err}); it must be a JSON object mapping class indices "
            'written as strings to class names, e.g. {"0": "background", "1": "person"}.'
        ) from err


def _pick_column(available: list[str], requested: str | None, candidates: Sequence[str], role: str) -> str:
    flag = f"--{role}_column_name"
    if requested is not None:
        if requested not in available:
            raise HeteroAKDError(
                f"The {role} column {requested!r} is not in the dataset; its columns are {available}. "
                f"Set {flag} to one of them."
            )
        return requested
    for name in candidates:
        if name in available:
            return name
    raise HeteroAKDError(
        f"Found no {role} column: the dataset's columns are {available} and none is one of {list(candidates)}. "
        f"Name the {role} column with {flag}."
    )


def reduce_labels(mask: np.ndarray) -> np.ndarray:
    """Masks that use 0 for "unlabeled" and 1..C for the classes: 0 -> 255 (ignored), c -> c - 1.

    255 stays 255, as in ``transformers``' image processors' ``do_reduce_labels``.
    """
    mask = np.asarray(mask)
    reduced = mask.astype(np.int64) - 1
    reduced[(mask == 0) | (mask == IGNORE_INDEX)] = IGNORE_INDEX
    return reduced


def _as_decoded_image(split: Split, column: str, role: str) -> Split:
    """Make ``column`` a ``datasets.Image`` feature that decodes to PIL images."""
    feature = split.features[column]
    if isinstance(feature, datasets.Image) and feature.decode:
        return split
    try:
        # Paths, {"bytes", "path"} structs and undecoded Image features cast to Image() in place.
        cast = split.cast_column(column, datasets.Image())
        if isinstance(cast, datasets.IterableDataset):  # a stream casts lazily: cast its first row now
            next(iter(cast.decode(False).select_columns([column]).take(1)), None)
    except (ValueError, TypeError, NotImplementedError) as err:  # pyarrow's cast errors derive from these
        raise HeteroAKDError(
            f"Column {column!r} holds {feature}, not images, so it cannot be the {role} column. "
            f"Choose the right column with --{role}_column_name."
        ) from err
    if isinstance(cast, datasets.Dataset) and len(cast) > 0:
        try:  # text casts to Image as file paths: open the first one now, not when training starts
            cast.select_columns([column])[0]
        except (OSError, ValueError) as err:
            raise HeteroAKDError(
                f"Column {column!r} holds text that is not the path of an image file (first row: "
                f"{split[0][column]!r}: {type(err).__name__}), so it cannot be the {role} column. "
                f"Choose the right column with --{role}_column_name."
            ) from None
    return cast


# --------------------------------------------------------------------------------------------------
# Transforms
# --------------------------------------------------------------------------------------------------


class RandomScale(v2.Transform):
    """Resize by a factor drawn uniformly from ``scale_range``, relative to the input's own size.

    Images use bilinear interpolation; masks use nearest-exact, which keeps class indices valid and,
    unlike legacy "nearest", samples at pixel centres, so the mask stays aligned with the image.
    """

    def __init__(self, scale_range: tuple[float, float]) -> None:
        super().__init__()
        self.scale_range = scale_range

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = v2.query_size(flat_inputs)
        low, high = self.scale_range
        scale = low + (high - low) * torch.rand(()).item()
        return {"size": [max(1, round(height * scale)), max(1, round(width * scale))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        is_mask = isinstance(inpt, tv_tensors.Mask)
        interpolation = v2.InterpolationMode.NEAREST_EXACT if is_mask else v2.InterpolationMode.BILINEAR
        return self._call_kernel(F.resize, inpt, size=params["size"], interpolation=interpolation, antialias=True)


class SegmentationTransform:
    """Runs a v2 pipeline on a (PIL image, PIL mask) pair.

    Returns ``pixel_values`` (3, H, W) float32 and ``labels`` (H, W) int64 as plain tensors. The mask
    must be single-channel (mode L, P, I, ...) with class indices as pixel values.
    """

    def __init__(self, pipeline: v2.Transform) -> None:
        self.pipeline = pipeline

    def __call__(self, image: PIL.Image.Image, mask: PIL.Image.Image) -> tuple[torch.Tensor, torch.Tensor]:
        image = F.to_image(image.convert("RGB"))  # (3, H, W) uint8
        mask = tv_tensors.Mask(torch.from_numpy(np.array(mask, dtype=np.int64)))  # (H, W), indices kept as is
        image, mask = self.pipeline(image, mask)
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pipeline})"


# The ranges of mmsegmentation's PhotoMetricDistortion, the segmentation codebases' default: brightness
# ±32 of 255 (here a factor, ColorJitter's brightness is multiplicative), contrast and saturation
# ×0.5..1.5, hue ±18 of OpenCV's 180 steps, i.e. ±0.1 of the hue circle.
PHOTOMETRIC_DISTORTION: dict[str, Any] = {
    "brightness": 32 / 255, "contrast": (0.5, 1.5), "saturation": (0.5, 1.5), "hue": 18 / 180,
}


def train_transforms(
    crop_size: tuple[int, int],
    scale_range: tuple[float, float] = (0.5, 2.0),
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN,
    std: Sequence[float] = IMAGENET_DEFAULT_STD,
    ignore_index: int = IGNORE_INDEX,
    photometric_distortion: bool = False,
) -> SegmentationTransform:
    """Random scale, random ``crop_size`` (H, W) crop, random horizontal flip, then normalize.

    Images smaller than the crop are padded with 0 (before normalization) and their masks with
    ``ignore_index``, so padding never counts as a class. ``photometric_distortion`` adds random
    brightness, contrast, saturation and hue changes to the image (``PHOTOMETRIC_DISTORTION``).
    """
    steps: list[v2.Transform] = [
        RandomScale(scale_range),
        v2.RandomCrop(crop_size, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: ignore_index}),
        v2.RandomHorizontalFlip(),
    ]
    if photometric_distortion:
        steps.append(v2.ColorJitter(**PHOTOMETRIC_DISTORTION))  # changes images only; masks pass through
    steps += [
        v2.ToDtype(torch.float32, scale=True),  # a plain dtype converts images only; masks stay int64
        v2.Normalize(mean, std),
    ]
    return SegmentationTransform(v2.Compose(steps))


def eval_transforms(
    mean: Sequence[float] = IMAGENET_DEFAULT_MEAN, std: Sequence[float] = IMAGENET_DEFAULT_STD
) -> SegmentationTransform:
    """Full resolution: only scale to [0, 1] and normalize; labels are returned unchanged."""
    return SegmentationTransform(v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)]))


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
            rng = nullcontext() if self.seed is None else sample_rng(self.seed, self.epoch, position * readers + reader)
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


def collate_segmentation(
    batch: list[dict[str, torch.Tensor]], ignore_index: int = IGNORE_INDEX
) -> dict[str, Any]:
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
