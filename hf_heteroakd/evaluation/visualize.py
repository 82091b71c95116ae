"""Class palettes, colour masks, overlays and prediction panels: pure functions on numpy arrays.

* :func:`palette_for` gives a ``(num_labels, 3)`` uint8 palette: the usual one of a preset
  (``cityscapes``, ``voc``, ``ade20k``) or, for any other dataset, the PASCAL VOC colour map
  extended to ``num_labels`` entries (deterministic, and no two classes share a colour).
* :func:`color_mask` and :func:`overlay` draw a ``(H, W)`` mask of class indices.
* :func:`prediction_panel` puts image | ground truth | teacher | student side by side, titled, with
  a legend of the classes present; :func:`stack_panels` stacks panels into one figure.

Ignored pixels (``ignore_index``) and values outside ``[0, num_labels)`` are always drawn in
:data:`IGNORE_COLOR`, a grey that is in none of the palettes, in masks and overlays alike.
"""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

IGNORE_COLOR: tuple[int, int, int] = (100, 100, 100)  # in no preset palette (checked by the tests)
BACKGROUND: tuple[int, int, int] = (255, 255, 255)
TEXT_COLOR: tuple[int, int, int] = (0, 0, 0)

# Panel geometry, in pixels (see prediction_panel for the resulting size).
SEPARATOR = 4  # blank gap between columns, and between stacked panels
TITLE_HEIGHT = 16  # band above the columns holding their titles
LEGEND_ROW_HEIGHT = 16
LEGEND_CELL_WIDTH = 160  # one legend entry: swatch + name
SWATCH_SIZE = 12

# Colours of the 19 Cityscapes train ids, in train-id order, as given by the `color` of each Label in
# the official label table (cityscapesscripts, helpers/labels.py).
# fmt: off
CITYSCAPES_PALETTE = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156),  # road, sidewalk, building, wall
        (190, 153, 153), (153, 153, 153), (250, 170, 30), (220, 220, 0),  # fence, pole, traffic light, sign
        (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),  # vegetation, terrain, sky, person
        (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),  # rider, car, truck, bus
        (0, 80, 100), (0, 0, 230), (119, 11, 32),  # train, motorcycle, bicycle
    ],
    dtype=np.uint8,
)
# fmt: on

# The ADE20K (SceneParse150) palette of the CSAIL scene-parsing code and mmsegmentation
# (mmseg/datasets/ade.py), classes 0..149 after reduce_labels, one RRGGBB per class. It has one
# repeated colour (floor and skyscraper are both 8c8c8c), as in the original.
_ADE20K_HEX = """
    787878 b47878 06e6e6 503232 04c803 787850 8c8c8c cc05ff e6e6e6 04fa07 e005ff ebff07
    96053d 787846 08ff33 ff0652 8fff8c ccff04 ff3307 cc4603 0066c8 3de6fa ff0633 0b66ff
    ff0747 ff09e0 0907e6 dcdcdc ff095c 7009ff 08ffd6 07ffe0 ffb806 0aff47 ff290a 07ffff
    e0ff08 6608ff ff3d06 ffc207 ff7a08 00ff14 ff0829 ff0599 0633ff eb0cff a09614 00a3ff
    8c8c8c fa0a0f 14ff00 1fff00 ff1f00 ffe000 99ff00 0000ff ff4700 00ebff 00adff 1f00ff
    0bc8c8 ff5200 00fff5 003dff 00ff70 00ff85 ff0000 ffa300 ff6600 c2ff00 008fff 33ff00
    0052ff 00ff29 00ffad 0a00ff adff00 00ff99 ff5c00 ff00ff ff00f5 ff0066 ffad00 ff0014
    ffb8b8 001fff 00ff3d 0047ff ff00cc 00ffc2 00ff52 000aff 0070ff 3300ff 00c2ff 007aff
    00ffa3 ff9900 00ff0a ff7000 8fff00 5200ff a3ff00 ffeb00 08b8aa 8500ff 00ff5c b800ff
    ff001f 00b8ff 00d6ff ff0070 5cff00 00e0ff 70e0ff 46b8a0 a300ff 9900ff 47ff00 ff00a3
    ffcc00 ff008f 00ffeb 85ff00 ff00eb f500ff ff007a fff500 0abed4 d6ff00 00ccff 1400ff
    ffff00 0099ff 0029ff 00ffcc 2900ff 29ff00 ad00ff 00f5ff 4700ff 7a00ff 00ffb8 005cff
    b8ff00 0085ff ffd600 19c2c2 66ff00 5c00ff
"""
ADE20K_PALETTE = np.frombuffer(bytes.fromhex(_ADE20K_HEX), dtype=np.uint8).reshape(-1, 3)


def voc_colormap(num_labels: int) -> np.ndarray:
    """The PASCAL VOC colour map, ``(num_labels, 3)`` uint8.

    Bit ``3j + c`` of the class index becomes bit ``7 - j`` of channel ``c`` (R, G, B): index 1 is
    (128, 0, 0), 15 (person) is (192, 128, 128). Distinct for up to 2**24 classes.
    """
    index = np.arange(num_labels, dtype=np.int64)
    cmap = np.zeros((num_labels, 3), dtype=np.int64)
    for j in range(8):
        for c in range(3):
            cmap[:, c] |= ((index >> (3 * j + c)) & 1) << (7 - j)
    return cmap.astype(np.uint8)


_PRESET_PALETTES = {"cityscapes": CITYSCAPES_PALETTE, "voc": voc_colormap(21), "ade20k": ADE20K_PALETTE}


def palette_for(name: str | None, num_labels: int) -> np.ndarray:
    """The palette of dataset ``name`` for ``num_labels`` classes, ``(num_labels, 3)`` uint8.

    A preset name (case-insensitive) whose class count matches gets its own palette; anything else
    (another dataset, ``None``, or a preset with a different number of classes) gets
    ``voc_colormap(num_labels)``. Always a fresh copy.
    """
    if num_labels < 0:
        raise ValueError(f"num_labels must be >= 0, got {num_labels}")
    preset = _PRESET_PALETTES.get((name or "").lower())
    if preset is not None and len(preset) == num_labels:
        return preset.copy()
    return voc_colormap(num_labels)


def color_mask(mask: np.ndarray, palette: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """``(H, W)`` integer class indices -> ``(H, W, 3)`` uint8 colours from ``palette`` ``(K, 3)``.

    Pixels equal to ``ignore_index`` or outside ``[0, K)`` get :data:`IGNORE_COLOR`.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == bool):
        raise ValueError(f"mask must be a 2-D array of class indices, got shape {mask.shape} and dtype {mask.dtype}")
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    k = len(palette)
    lut = np.vstack([palette, np.array(IGNORE_COLOR, dtype=np.uint8)])  # row k: the neutral colour
    index = mask.astype(np.int64)
    index = np.where((index >= 0) & (index < k) & (index != ignore_index), index, k)
    return lut[index]


def overlay(
    image: np.ndarray, mask: np.ndarray, palette: np.ndarray, alpha: float = 0.5, ignore_index: int = 255
) -> np.ndarray:
    """``(H, W, 3)`` uint8 image blended with the colours of its ``(H, W)`` mask -> ``(H, W, 3)`` uint8.

    ``alpha`` is the weight of the mask colour. Ignored pixels are blended with :data:`IGNORE_COLOR`
    like any other, so they look the same (grey-tinted) in every overlay.
    """
    image = _as_rgb(image)
    colours = color_mask(mask, palette, ignore_index)
    _check_shape(colours.shape[:2], image.shape[:2], "mask")
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colours.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def prediction_panel(
    image: np.ndarray,
    masks: Mapping[str, np.ndarray | None],
    palette: np.ndarray,
    id2label: Mapping[int, str] | None = None,
    ignore_index: int = 255,
    alpha: float | None = None,
) -> Image.Image:
    """One image and its masks side by side: image | e.g. ground truth | teacher | student.

    ``image`` is ``(H, W, 3)`` uint8 (or ``(H, W)`` grey); ``masks`` maps a column title to an
    ``(H, W)`` mask, in column order; ``None`` masks are skipped. Masks are drawn as colour masks,
    or as overlays on the image when ``alpha`` is given. Below the columns, a legend has one entry
    (swatch + ``id2label`` name) per class present in any mask, in class order, then "ignored" if
    any pixel is ignored or out of range.

    Size, with ``n = 1 + (number of masks that are not None)``,
    ``per_row = max(1, width // LEGEND_CELL_WIDTH)`` and ``entries`` the number of legend entries:
    ``width = n * W + (n - 1) * SEPARATOR``,
    ``height = TITLE_HEIGHT + H + ceil(entries / per_row) * LEGEND_ROW_HEIGHT``.
    Column ``i`` (the image is column 0) starts at ``x = i * (W + SEPARATOR)``, ``y = TITLE_HEIGHT``.
    """
    image = _as_rgb(image)
    palette = np.asarray(palette, dtype=np.uint8).reshape(-1, 3)
    height, width = image.shape[:2]
    id2label = id2label or {}
    columns: list[tuple[str, np.ndarray]] = [("image", image)]
    present: set[int] = set()
    any_ignored = False
    for title, mask in masks.items():
        if mask is None:
            continue
        mask = np.asarray(mask)
        _check_shape(mask.shape, (height, width), f"mask {title!r}")
        if alpha is None:
            columns.append((title, color_mask(mask, palette, ignore_index)))
        else:
            columns.append((title, overlay(image, mask, palette, alpha, ignore_index)))
        values = np.unique(mask).astype(np.int64)
        valid = (values >= 0) & (values < len(palette)) & (values != ignore_index)
        present.update(values[valid].tolist())
        any_ignored |= not valid.all()

    legend = [(tuple(palette[c].tolist()), str(id2label.get(c, c))) for c in sorted(present)]
    if any_ignored:
        legend.append((IGNORE_COLOR, "ignored"))

    n = len(columns)
    panel_width = n * width + (n - 1) * SEPARATOR
    per_row = max(1, panel_width // LEGEND_CELL_WIDTH)
    rows = math.ceil(len(legend) / per_row)
    panel = Image.new("RGB", (panel_width, TITLE_HEIGHT + height + rows * LEGEND_ROW_HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(panel)
    font = ImageFont.load_default()

    for i, (title, pixels) in enumerate(columns):
        x = i * (width + SEPARATOR)
        panel.paste(Image.fromarray(pixels), (x, TITLE_HEIGHT))
        draw.text((x + 2, 2), _fit(draw, title, font, width - 4), fill=TEXT_COLOR, font=font)

    for k, (colour, name) in enumerate(legend):
        x = (k % per_row) * LEGEND_CELL_WIDTH + 2
        y = TITLE_HEIGHT + height + (k // per_row) * LEGEND_ROW_HEIGHT + 2
        draw.rectangle([x, y, x + SWATCH_SIZE - 1, y + SWATCH_SIZE - 1], fill=colour)
        text_x = x + SWATCH_SIZE + 4
        name = _fit(draw, name, font, LEGEND_CELL_WIDTH - (text_x - x) - 4)
        draw.text((text_x, y), name, fill=TEXT_COLOR, font=font)
    return panel


def stack_panels(panels: Sequence[Image.Image], gap: int = SEPARATOR) -> Image.Image:
    """Panels one above the other, left-aligned, ``gap`` pixels apart, on a white background.

    Size: ``(max of the widths, sum of the heights + (len(panels) - 1) * gap)``.
    """
    if not panels:
        raise ValueError("stack_panels needs at least one panel")
    width = max(p.width for p in panels)
    figure = Image.new("RGB", (width, sum(p.height for p in panels) + gap * (len(panels) - 1)), BACKGROUND)
    y = 0
    for p in panels:
        figure.paste(p.convert("RGB"), (0, y))
        y += p.height + gap
    return figure


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)`` uint8 (or a PIL image) -> ``(H, W, 3)`` uint8."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return image[:, :, :3]
    raise ValueError(f"image must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")


def _check_shape(got: tuple[int, ...], want: tuple[int, ...], what: str) -> None:
    if tuple(got) != tuple(want):
        raise ValueError(f"{what} has shape {tuple(got)}, the image is {tuple(want)}: resize it to the image first")


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, max_width: int) -> str:
    """``text``, cut and ended with "..." where it is wider than ``max_width`` pixels."""
    if draw.textlength(text, font=font) <= max_width:
        return text
    while text and draw.textlength(text + "...", font=font) > max_width:
        text = text[:-1]
    return text + "..."
