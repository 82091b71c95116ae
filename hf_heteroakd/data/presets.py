"""Dataset presets: ``--dataset cityscapes | voc | ade20k`` names a Hub dataset and how to read it.

A preset is loaded through ``load_segmentation_data``, the code path of any Hub id, with the
preset's repo id, columns and, where the stored masks are not yet class indices, a conversion that
is applied to each mask when it is read (the dataset itself is never rewritten). Every other
``--dataset`` value is a Hub id or a local folder, as before.

What is known of each repository is recorded next to its preset, with how sure it is and where it
comes from; the tests read copies in each repository's layout, so check the first batch of a real run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hf_heteroakd.core.errors import HeteroAKDError
from hf_heteroakd.data.loading import LabelTransform, SegmentationData, load_segmentation_data
from hf_heteroakd.data.loading import reduce_labels as _reduce_labels  # the name is load_data's flag
from hf_heteroakd.data.preset_classes import ADE20K_CLASSES, CITYSCAPES_CLASSES, VOC_CLASSES, cityscapes_to_train_ids

__all__ = [
    "ADE20K_CLASSES",
    "CITYSCAPES_CLASSES",
    "PRESETS",
    "VOC_CLASSES",
    "DatasetPreset",
    "DatasetSource",
    "cityscapes_to_train_ids",
    "find_preset",
    "load_data",
    "load_preset",
    "preset_with_classes",
    "resolve_dataset",
]


@dataclass(frozen=True)
class DatasetPreset:
    """Where a dataset lives on the Hub and how its masks become class indices."""

    name: str
    repo_id: str
    train_split: str
    eval_split: str
    image_column: str
    label_column: str
    id2label: dict[int, str]  # class names in the order of the converted labels (train ids)
    crop_size: tuple[int, int]  # training crop, (H, W)
    label_transform: LabelTransform | None = None  # stored mask -> class indices (255: not scored), per sample
    revision: str | None = None
    data_dir: str | None = None  # sub-folder of the repository that holds this dataset's splits


# ---------------------------------------------------------------------------------------------- presets

PRESETS: dict[str, DatasetPreset] = {
    # Chris1/cityscapes: parquet (data/<split>-*.parquet), splits train / validation / test.
    # Columns image / semantic_segmentation, both Image features: sure (the repo's dataset_infos.json).
    # Masks single-channel Cityscapes label ids 0..33: fairly sure, not seen here; public code that
    # reads this repo (mobilint/mblt-model-zoo) checks its masks are <= 33 and maps them to train ids.
    "cityscapes": DatasetPreset(
        name="cityscapes",
        repo_id="Chris1/cityscapes",
        train_split="train",
        eval_split="validation",
        image_column="image",
        label_column="semantic_segmentation",
        id2label=dict(enumerate(CITYSCAPES_CLASSES)),
        crop_size=(512, 1024),
        label_transform=cityscapes_to_train_ids,
    ),
    # jxie/pascal-voc-2012: parquet, splits train / val (its card: 10.6k / 1.45k rows, 12,031 in all,
    # i.e. the SBD-augmented VOC 2012 train set of 10,582 and VOC 2012 val of 1,449). Columns image /
    # mask, Image features: sure (the card's viewer). Masks single-channel 0..20 with 255 on object
    # boundaries: fairly sure, not seen here; public code that reads this repo says so. 255 is the
    # ignore index as is, so there is no conversion.
    "voc": DatasetPreset(
        name="voc",
        repo_id="jxie/pascal-voc-2012",
        train_split="train",
        eval_split="val",
        image_column="image",
        label_column="mask",
        id2label=dict(enumerate(VOC_CLASSES)),
        crop_size=(512, 512),
    ),
    # zhoubolei/scene_parse_150 (SceneParse150, "ADE20K" in papers) is a loading script, which
    # datasets >= 4 rejects; its parquet export (branch refs/convert/parquet, written by the Hub's
    # converter) loads like any parquet repo. The export holds two configs as folders
    # (<config>/<split>/NNNN.parquet), so data_dir picks scene_parsing. Columns image / annotation
    # (Image) and scene_category (ClassLabel): sure (the repo's card, dataset_info of scene_parsing).
    # Masks 0..150, 0 = "other objects" not scored: sure (card). The export's layout: fairly sure
    # (the branch's history on the Hub lists instance_segmentation/train); its files not seen.
    "ade20k": DatasetPreset(
        name="ade20k",
        repo_id="zhoubolei/scene_parse_150",
        revision="refs/convert/parquet",
        data_dir="scene_parsing",
        train_split="train",
        eval_split="validation",
        image_column="image",
        label_column="annotation",
        id2label=dict(enumerate(ADE20K_CLASSES)),
        crop_size=(512, 512),
        label_transform=_reduce_labels,
    ),
}


@dataclass(frozen=True)
class DatasetSource:
    """What ``--dataset`` names, resolved once (:func:`resolve_dataset`) and read by loading, teacher-alias
    resolution and the model card: a preset, or a Hub id or local folder (``preset`` None)."""

    name: str
    preset: DatasetPreset | None

    @property
    def hub_id(self) -> str | None:
        """The dataset's Hub repository: the preset's, else ``name`` unless it is a local folder."""
        if self.preset is not None:
            return self.preset.repo_id
        return None if Path(self.name).exists() else self.name

    def family(self, id2label: dict[int, str] | None = None) -> str | None:
        """The preset whose data this is: the named preset, a preset's Hub id (with or without its owner), or,
        for any other name or folder, the preset whose classes equal ``id2label``; else None."""
        if self.preset is not None:
            return self.preset.name
        name = self.name.lower()
        for preset in PRESETS.values():
            repo = preset.repo_id.lower()
            if name in (repo, repo.split("/")[-1]):
                return preset.name
        return preset_with_classes(id2label)


def preset_with_classes(id2label: dict[int, str] | None) -> str | None:
    """The name of the preset whose classes are exactly ``id2label``, or None."""
    if id2label is None:
        return None
    return next((preset.name for preset in PRESETS.values() if preset.id2label == id2label), None)


def resolve_dataset(dataset: str | DatasetSource) -> DatasetSource:
    """``dataset`` as a :class:`DatasetSource` (one already resolved is returned as it is)."""
    return dataset if isinstance(dataset, DatasetSource) else DatasetSource(dataset, find_preset(dataset))


def find_preset(dataset: str) -> DatasetPreset | None:
    """The preset ``dataset`` names (case-insensitive), or None for a Hub id or a path.

    A preset name wins over a local folder of the same name: write ``./voc`` for the folder.
    """
    return PRESETS.get(dataset.lower())


def load_preset(
    preset: DatasetPreset | str,
    cache_dir: str | None = None,
    repo_id: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    streaming: bool = False,
) -> SegmentationData:
    """Load a preset's dataset with its columns, class names and mask conversion.

    ``repo_id`` replaces the preset's repository (a mirror, or a local folder in the same layout);
    nothing else changes (a local folder ignores ``revision``). ``image_column`` / ``label_column``
    override the preset's columns. ``streaming``: see ``load_segmentation_data``.
    """
    if isinstance(preset, str):
        name = preset
        preset = find_preset(name)
        if preset is None:
            raise HeteroAKDError(f"There is no dataset preset {name!r}; the presets are {sorted(PRESETS)}.")
    return load_segmentation_data(
        repo_id or preset.repo_id,
        image_column=image_column or preset.image_column,
        label_column=label_column or preset.label_column,
        cache_dir=cache_dir,
        revision=preset.revision,
        data_dir=preset.data_dir,
        id2label=preset.id2label,
        label_transform=preset.label_transform,
        streaming=streaming,
    )


def load_data(
    dataset: str | DatasetSource,
    dataset_config: str | None = None,
    image_column: str | None = None,
    label_column: str | None = None,
    reduce_labels: bool = False,
    cache_dir: str | None = None,
    streaming: bool = False,
) -> SegmentationData:
    """What ``--dataset`` names: a preset, or a Hub id / local folder, whose masks ``reduce_labels``
    converts with ``hf_heteroakd.data.reduce_labels`` (0 -> 255, c -> c - 1). ``streaming`` gives
    ``datasets.IterableDataset`` splits (see ``load_segmentation_data``)."""
    source = resolve_dataset(dataset)
    preset, dataset = source.preset, source.name
    if preset is None:
        label_transform = _reduce_labels if reduce_labels else None
        return load_segmentation_data(
            dataset,
            dataset_config,
            image_column,
            label_column,
            cache_dir,
            label_transform=label_transform,
            streaming=streaming,
        )
    if reduce_labels or dataset_config is not None:
        raise HeteroAKDError(
            f"--dataset {dataset} is a preset, which fixes how its masks are read and has no configs: drop "
            "--reduce_labels and --dataset_config_name, or pass the dataset by its Hub id "
            f"({preset.repo_id}) to choose them yourself."
        )
    return load_preset(preset, cache_dir, image_column=image_column, label_column=label_column, streaming=streaming)
