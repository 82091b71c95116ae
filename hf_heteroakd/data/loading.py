"""Load a segmentation dataset in the Hub's layout: a Hub dataset id or a local folder.

A dataset is whatever ``datasets.load_dataset`` understands: a Hub dataset id or a local folder in
the Hub's layout (``data/<split>-*.parquet`` shards, or an imagefolder). Only the image and mask
columns are kept, as PIL images decoded when a row is read; masks that are not class indices yet
(Cityscapes label ids, classes counted from 1) are converted per sample by a ``label_transform``,
which ``hf_heteroakd.data.presets`` pairs with public Hub datasets. With ``streaming=True`` the splits are
``datasets.IterableDataset`` streams.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import datasets
import huggingface_hub
import numpy as np
from datasets.exceptions import DatasetNotFoundError
from huggingface_hub.errors import EntryNotFoundError, HFValidationError

from hf_heteroakd.core.errors import HeteroAKDError
from hf_heteroakd.core.labels import IGNORE_INDEX

logger = logging.getLogger(__name__)


# Column names tried, in order, when the user names none.
IMAGE_COLUMN_CANDIDATES = ("image", "pixel_values", "img")
LABEL_COLUMN_CANDIDATES = ("label", "semantic_segmentation", "annotation", "mask", "segmentation", "gtFine")

# raw mask (H, W) as stored in the dataset -> class-index mask (H, W); applied per sample, when it is read
LabelTransform = Callable[[np.ndarray], np.ndarray]
# a split as datasets loads it: map-style, or a stream (load_dataset(..., streaming=True))
Split = datasets.Dataset | datasets.IterableDataset


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
    splits = _load_splits(dataset, dataset_config, data_dir, cache_dir, revision, streaming)

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
                split_name,
                dataset,
                image_column,
                label_column,
                split.column_names,
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


def _load_splits(
    dataset: str,
    dataset_config: str | None,
    data_dir: str | None,
    cache_dir: str | None,
    revision: str | None,
    streaming: bool,
) -> datasets.DatasetDict | datasets.IterableDatasetDict:
    """``datasets.load_dataset``, its errors about the input turned into one-line ``HeteroAKDError``s."""
    try:
        return datasets.load_dataset(
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
