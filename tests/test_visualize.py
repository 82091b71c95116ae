"""Palettes, colour masks, overlays and prediction panels (hf_heteroakd.evaluation.visualize)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hf_heteroakd.evaluation import visualize as vis
from hf_heteroakd.evaluation.visualize import (
    IGNORE_COLOR,
    LEGEND_CELL_WIDTH,
    LEGEND_ROW_HEIGHT,
    SEPARATOR,
    SWATCH_SIZE,
    TITLE_HEIGHT,
    color_mask,
    overlay,
    palette_for,
    prediction_panel,
    stack_panels,
)

H, W = 24, 100  # wide enough for 2 legend entries a row on a 4-column panel
ID2LABEL = {i: f"class {i}" for i in range(6)}


def _rows(palette: np.ndarray) -> set[tuple[int, int, int]]:
    return {tuple(row) for row in palette.tolist()}


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)


def _mask(*classes: int) -> np.ndarray:
    """An (H, W) mask of horizontal stripes, one per class."""
    return np.repeat(np.array(classes, dtype=np.uint8), math.ceil(H / len(classes)))[:H, None].repeat(W, axis=1)


def _panel_height(n_columns: int, n_entries: int) -> int:
    per_row = max(1, (n_columns * W + (n_columns - 1) * SEPARATOR) // LEGEND_CELL_WIDTH)
    return TITLE_HEIGHT + H + math.ceil(n_entries / per_row) * LEGEND_ROW_HEIGHT


# ------------------------------------------------------------------------------------------ palettes


def test_preset_palettes_known_colours():
    cityscapes = palette_for("cityscapes", 19)
    assert cityscapes.shape == (19, 3) and cityscapes.dtype == np.uint8
    assert tuple(cityscapes[0]) == (128, 64, 128)  # road
    assert tuple(cityscapes[11]) == (220, 20, 60)  # person
    assert tuple(cityscapes[18]) == (119, 11, 32)  # bicycle

    voc = palette_for("VOC", 21)  # names are case-insensitive
    assert tuple(voc[0]) == (0, 0, 0)
    assert tuple(voc[1]) == (128, 0, 0)  # aeroplane
    assert tuple(voc[15]) == (192, 128, 128)  # person
    assert tuple(voc[20]) == (0, 64, 128)  # tvmonitor

    ade = palette_for("ade20k", 150)
    assert ade.shape == (150, 3)
    assert tuple(ade[0]) == (120, 120, 120) and tuple(ade[1]) == (180, 120, 120)  # wall, building
    assert tuple(ade[12]) == (150, 5, 61)  # person
    assert tuple(ade[149]) == (92, 0, 255)  # flag


def test_fallback_palette_is_deterministic_and_distinct():
    for name in (None, "my/dataset", "cityscapes"):  # cityscapes with 30 classes is not the preset
        assert np.array_equal(palette_for(name, 30), palette_for(None, 30))
    big = palette_for("some/hub-id", 1024)
    assert big.shape == (1024, 3) and big.dtype == np.uint8
    assert len(_rows(big)) == 1024
    assert np.array_equal(palette_for(None, 21), palette_for("voc", 21))  # the fallback extends VOC's map


def test_palette_is_a_copy():
    palette_for("cityscapes", 19)[0] = 0
    assert tuple(palette_for("cityscapes", 19)[0]) == (128, 64, 128)


def test_ignore_color_is_in_no_palette():
    for palette in (
        palette_for("cityscapes", 19),
        palette_for("voc", 21),
        palette_for("ade20k", 150),
        palette_for(None, 4096),
    ):
        assert IGNORE_COLOR not in _rows(palette)
    assert IGNORE_COLOR != vis.BACKGROUND


# -------------------------------------------------------------------------------------- masks, overlay


def test_color_mask_colours_and_ignore():
    palette = palette_for(None, 6)
    mask = np.zeros((H, W), dtype=np.int64)
    mask[0, 0] = 3
    mask[1, 1] = 255  # ignored
    mask[2, 2] = 6  # out of range
    mask[3, 3] = -1  # out of range
    colours = color_mask(mask, palette)
    assert colours.shape == (H, W, 3) and colours.dtype == np.uint8
    assert tuple(colours[0, 0]) == tuple(palette[3])
    assert tuple(colours[5, 5]) == tuple(palette[0])
    for yx in ((1, 1), (2, 2), (3, 3)):
        assert tuple(colours[yx]) == IGNORE_COLOR


def test_color_mask_rejects_non_index_masks():
    with pytest.raises(ValueError):
        color_mask(np.zeros((H, W), dtype=np.float32), palette_for(None, 6))
    with pytest.raises(ValueError):
        color_mask(np.zeros((H, W, 3), dtype=np.uint8), palette_for(None, 6))


def test_overlay_blends_and_ignored_pixels_use_the_neutral_colour():
    palette = palette_for(None, 6)
    image = np.full((H, W, 3), 200, dtype=np.uint8)
    mask = _mask(2, 255)
    out = overlay(image, mask, palette, alpha=0.25)
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    expected = np.rint(0.75 * 200 + 0.25 * palette[2].astype(float))
    assert np.array_equal(out[0, 0], expected)
    assert np.array_equal(out[H - 1, 0], np.rint(0.75 * 200 + 0.25 * np.array(IGNORE_COLOR)))
    assert np.array_equal(overlay(image, mask, palette, alpha=0.0), image)
    assert np.array_equal(overlay(image, mask, palette, alpha=1.0), color_mask(mask, palette))
    with pytest.raises(ValueError):
        overlay(image, np.zeros((H, W + 1), dtype=np.uint8), palette)


# ------------------------------------------------------------------------------------------- panels


def test_panel_size_and_colours_at_known_pixels():
    palette = palette_for(None, 6)
    image = _image()
    gt = _mask(1, 2)
    teacher = np.full((H, W), 2, dtype=np.uint8)
    teacher[0, 0] = 3
    student = np.full((H, W), 255, dtype=np.uint8)
    masks = {"ground truth": gt, "teacher": teacher, "student": student}
    panel = prediction_panel(image, masks, palette, ID2LABEL)

    # 4 columns, legend: classes 1, 2, 3 and "ignored"
    assert panel.size == (4 * W + 3 * SEPARATOR, _panel_height(4, 4))
    pixels = np.asarray(panel)
    x0 = lambda i: i * (W + SEPARATOR)  # noqa: E731
    assert np.array_equal(pixels[TITLE_HEIGHT : TITLE_HEIGHT + H, 0:W], image)
    assert np.array_equal(pixels[TITLE_HEIGHT : TITLE_HEIGHT + H, x0(1) : x0(1) + W], color_mask(gt, palette))
    assert tuple(pixels[TITLE_HEIGHT, x0(2)]) == tuple(palette[3])
    assert tuple(pixels[TITLE_HEIGHT + 1, x0(2)]) == tuple(palette[2])
    assert tuple(pixels[TITLE_HEIGHT + 5, x0(3) + 5]) == IGNORE_COLOR
    assert tuple(pixels[TITLE_HEIGHT + 5, W + 1]) == vis.BACKGROUND  # separator

    # legend swatches, in class order, then the neutral colour
    swatch_y = TITLE_HEIGHT + H + 2 + SWATCH_SIZE // 2
    per_row = panel.width // LEGEND_CELL_WIDTH
    colours = [tuple(palette[c]) for c in (1, 2, 3)] + [IGNORE_COLOR]
    for k, colour in enumerate(colours):
        y = swatch_y + (k // per_row) * LEGEND_ROW_HEIGHT
        x = (k % per_row) * LEGEND_CELL_WIDTH + 2 + SWATCH_SIZE // 2
        assert tuple(pixels[y, x]) == colour


def test_panel_skips_none_columns_and_legend_lists_only_present_classes():
    palette = palette_for(None, 6)
    image = _image(1)
    one_class = prediction_panel(image, {"ground truth": _mask(4), "teacher": None, "student": _mask(4)}, palette)
    assert one_class.size == (3 * W + 2 * SEPARATOR, _panel_height(3, 1))
    five_classes = prediction_panel(image, {"ground truth": _mask(0, 1, 2), "student": _mask(3, 4)}, palette)
    assert five_classes.size == (3 * W + 2 * SEPARATOR, _panel_height(3, 5))
    assert five_classes.height - one_class.height == 4 * LEGEND_ROW_HEIGHT  # one entry a row at this width
    assert prediction_panel(image, {}, palette).size == (W, TITLE_HEIGHT + H)  # image only, no legend


def test_panel_overlay_mode_and_grey_image():
    palette = palette_for(None, 6)
    grey = _image(2)[:, :, 0]
    mask = _mask(5)
    panel = np.asarray(prediction_panel(grey, {"gt": mask}, palette, alpha=0.5))
    rgb = np.repeat(grey[:, :, None], 3, axis=2)
    column = panel[TITLE_HEIGHT : TITLE_HEIGHT + H, W + SEPARATOR : 2 * W + SEPARATOR]
    assert np.array_equal(column, overlay(rgb, mask, palette, alpha=0.5))
    with pytest.raises(ValueError):
        prediction_panel(grey, {"gt": np.zeros((H // 2, W), dtype=np.uint8)}, palette)


def test_stack_panels():
    palette = palette_for(None, 6)
    a = prediction_panel(_image(3), {"gt": _mask(1)}, palette)
    b = prediction_panel(_image(4), {"gt": _mask(1), "student": _mask(2)}, palette)
    figure = stack_panels([a, b])
    assert figure.size == (max(a.width, b.width), a.height + b.height + SEPARATOR)
    assert np.array_equal(np.asarray(figure)[a.height + SEPARATOR :, : b.width], np.asarray(b))
    with pytest.raises(ValueError):
        stack_panels([])
