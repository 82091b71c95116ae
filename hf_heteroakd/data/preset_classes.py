"""The classes of the dataset presets, in the order of their class indices, and Cityscapes' conversion
from label ids to those indices (train ids)."""

from __future__ import annotations

import numpy as np

from hf_heteroakd.core.errors import HeteroAKDError
from hf_heteroakd.core.labels import IGNORE_INDEX

# ---------------------------------------------------------------------------------------------- Cityscapes

# Label id -> train id of the 19 evaluated classes; every other id (void, and the classes that are
# ignored in evaluation: parking, rail track, guard rail, bridge, tunnel, polegroup, caravan,
# trailer, license plate = -1) -> 255. Generated once from the official `cityscapesscripts` package
# (2.3.0, `cityscapesscripts.helpers.labels.labels`: `id` and `trainId` of each Label) instead of
# importing it: the package pulls in matplotlib and more. tests/test_presets.py checks this table
# against the package whenever it is installed.
CITYSCAPES_ID_TO_TRAIN_ID: dict[int, int] = {
    7: 0,
    8: 1,
    11: 2,
    12: 3,
    13: 4,
    17: 5,
    19: 6,
    20: 7,
    21: 8,
    22: 9,
    23: 10,
    24: 11,
    25: 12,
    26: 13,
    27: 14,
    28: 15,
    31: 16,
    32: 17,
    33: 18,
}
CITYSCAPES_MAX_ID = 33  # ids are -1..33

# The 19 train-id names of `cityscapesscripts`, which are also the id2label of nvidia's Segformer
# Cityscapes checkpoints, so those teachers' classes match.
CITYSCAPES_CLASSES = (
    "road",
    "sidewalk",
    "building",
    "wall",
    "fence",
    "pole",
    "traffic light",
    "traffic sign",
    "vegetation",
    "terrain",
    "sky",
    "person",
    "rider",
    "car",
    "truck",
    "bus",
    "train",
    "motorcycle",
    "bicycle",
)

_CITYSCAPES_LUT = np.full(CITYSCAPES_MAX_ID + 1, IGNORE_INDEX, dtype=np.uint8)
_CITYSCAPES_LUT[list(CITYSCAPES_ID_TO_TRAIN_ID)] = list(CITYSCAPES_ID_TO_TRAIN_ID.values())


def cityscapes_to_train_ids(mask: np.ndarray) -> np.ndarray:
    """Cityscapes label ids (``*_gtFine_labelIds.png``: -1..33) -> train ids 0..18, others 255.

    255 is kept as 255 (already "ignore"); any other value is not a Cityscapes label id and raises.
    """
    mask = np.asarray(mask)
    known = (mask >= 0) & (mask <= CITYSCAPES_MAX_ID)
    unknown = ~known & (mask != -1) & (mask != IGNORE_INDEX)
    if unknown.any():
        values = np.unique(mask[unknown]).tolist()[:10]
        raise HeteroAKDError(
            f"The mask holds values {values}, which are not Cityscapes label ids (-1..33): the cityscapes preset "
            "expects the *_gtFine_labelIds masks. For masks that are already train ids (0..18, 255), pass the "
            "dataset by its Hub id or path instead of the preset name."
        )
    train_ids = np.full(mask.shape, IGNORE_INDEX, dtype=np.uint8)
    train_ids[known] = _CITYSCAPES_LUT[mask[known]]
    return train_ids


# ------------------------------------------------------------------------------------------ Pascal VOC

VOC_CLASSES = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)

# --------------------------------------------------------------------------------------------- ADE20K

# SceneParse150's classes after reduce_labels, as named in the id2label of nvidia's Segformer ADE20K
# checkpoints (trailing space of "bed " included), so those teachers' classes match.
ADE20K_CLASSES = (
    "wall",
    "building",
    "sky",
    "floor",
    "tree",
    "ceiling",
    "road",
    "bed ",
    "windowpane",
    "grass",
    "cabinet",
    "sidewalk",
    "person",
    "earth",
    "door",
    "table",
    "mountain",
    "plant",
    "curtain",
    "chair",
    "car",
    "water",
    "painting",
    "sofa",
    "shelf",
    "house",
    "sea",
    "mirror",
    "rug",
    "field",
    "armchair",
    "seat",
    "fence",
    "desk",
    "rock",
    "wardrobe",
    "lamp",
    "bathtub",
    "railing",
    "cushion",
    "base",
    "box",
    "column",
    "signboard",
    "chest of drawers",
    "counter",
    "sand",
    "sink",
    "skyscraper",
    "fireplace",
    "refrigerator",
    "grandstand",
    "path",
    "stairs",
    "runway",
    "case",
    "pool table",
    "pillow",
    "screen door",
    "stairway",
    "river",
    "bridge",
    "bookcase",
    "blind",
    "coffee table",
    "toilet",
    "flower",
    "book",
    "hill",
    "bench",
    "countertop",
    "stove",
    "palm",
    "kitchen island",
    "computer",
    "swivel chair",
    "boat",
    "bar",
    "arcade machine",
    "hovel",
    "bus",
    "towel",
    "light",
    "truck",
    "tower",
    "chandelier",
    "awning",
    "streetlight",
    "booth",
    "television receiver",
    "airplane",
    "dirt track",
    "apparel",
    "pole",
    "land",
    "bannister",
    "escalator",
    "ottoman",
    "bottle",
    "buffet",
    "poster",
    "stage",
    "van",
    "ship",
    "fountain",
    "conveyer belt",
    "canopy",
    "washer",
    "plaything",
    "swimming pool",
    "stool",
    "barrel",
    "basket",
    "waterfall",
    "tent",
    "bag",
    "minibike",
    "cradle",
    "oven",
    "ball",
    "food",
    "step",
    "tank",
    "trade name",
    "microwave",
    "pot",
    "animal",
    "bicycle",
    "lake",
    "dishwasher",
    "screen",
    "blanket",
    "sculpture",
    "hood",
    "sconce",
    "vase",
    "traffic light",
    "tray",
    "ashcan",
    "fan",
    "pier",
    "crt screen",
    "plate",
    "monitor",
    "bulletin board",
    "shower",
    "radiator",
    "glass",
    "clock",
    "flag",
)
