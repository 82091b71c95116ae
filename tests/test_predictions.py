"""Pictures of what the student predicts: at each evaluation (PNG files, TensorBoard), in the model card
and its upload, and from the predict command."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator
from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

from hf_heteroakd.cli import predict_main
from hf_heteroakd.evaluation.visualize import SEPARATOR, TITLE_HEIGHT, palette_for
from hf_heteroakd.reporting.card import update_card
from hf_heteroakd.reporting.card_figures import FIGURES
from hf_heteroakd.reporting.prediction_panels import MIN_COLUMN_WIDTH

from .conftest import ID2LABEL
from .test_card_and_push import REPO_ID, FakeHub, run_tiny

IMAGE_SIZE = 32  # the synthetic dataset's images
DRAWN = IMAGE_SIZE * -(-MIN_COLUMN_WIDTH // IMAGE_SIZE)  # enlarged by a whole factor, to be legible
SHOWN = 2  # --num_visualized_images


@pytest.fixture(scope="module")
def pushed_run(tmp_path_factory, synthetic_dataset, tiny_segformer_dir) -> tuple[Path, FakeHub]:
    """4 steps, evaluated every 2, reporting to TensorBoard, pushed to a stand-in Hub."""
    out = tmp_path_factory.mktemp("pictures") / "student"
    with pytest.MonkeyPatch.context() as monkeypatch:
        hub = FakeHub().install(monkeypatch)
        run_tiny(
            out,
            tiny_segformer_dir,
            synthetic_dataset,
            max_steps=4,
            eval_strategy="steps",
            eval_steps=2,
            logging_steps=1,
            report_to="tensorboard",
            num_visualized_images=SHOWN,
            push_to_hub=True,
            hub_model_id=REPO_ID,
            hub_token="hf_stand-in",
        )
    return out, hub


def test_each_evaluation_writes_panels_of_the_same_images(pushed_run):
    out, _ = pushed_run
    steps = sorted(p.name for p in (out / "predictions").iterdir())
    assert steps == ["step-2", "step-4"]
    # image | ground truth | teacher | student, titles above; the legend rows below depend on the classes present
    width = 4 * DRAWN + 3 * SEPARATOR
    for step in steps:
        panels = [Image.open(out / "predictions" / step / f"panel-{k}.png") for k in range(SHOWN)]
        assert all(p.width == width and p.height > TITLE_HEIGHT + DRAWN for p in panels)
        stacked = Image.open(out / "predictions" / step / "panels.png")
        assert stacked.size == (width, sum(p.height for p in panels) + (SHOWN - 1) * SEPARATOR)
    # The same images: their first column (the image) is identical at both evaluations.
    first = [np.asarray(Image.open(out / "predictions" / s / "panel-0.png"))[:, :DRAWN] for s in steps]
    np.testing.assert_array_equal(*first)


def test_tensorboard_event_file_holds_the_panels_of_each_evaluation(pushed_run):
    out, _ = pushed_run
    (log_dir,) = {p.parent for p in (out / "runs").rglob("events.out.tfevents.*")}
    events = EventAccumulator(str(log_dir), size_guidance={IMAGES: 0}).Reload()
    assert "predictions" in events.Tags()[IMAGES]
    images = events.Images("predictions")
    # steps 2 and 4, then the evaluation after training (step 4 again, in the writer it reopens)
    assert [image.step for image in images] == [2, 4, 4]
    panels = Image.open(out / "predictions" / "step-4" / "panels.png")
    assert (images[-1].width, images[-1].height) == panels.size


def test_card_shows_figures_that_are_uploaded_with_the_student(pushed_run):
    out, hub = pushed_run
    card = (out / "README.md").read_text()
    referenced = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", card)
    assert set(referenced) == {"predictions.png", "training_curves.png"}  # no teacher results: no per-class chart
    (upload,) = hub.uploads
    assert set(referenced) <= set(upload["files"])
    assert set(referenced) <= set(FIGURES)
    # The card's panel figure is the last evaluation's.
    assert (out / "predictions.png").read_bytes() == (out / "predictions" / "step-4" / "panels.png").read_bytes()
    assert Image.open(out / "training_curves.png").size[0] > 0


def test_teacher_results_add_a_per_class_chart_to_the_card(pushed_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(pushed_run[0], out)
    teacher = tmp_path / "teacher.json"
    teacher.write_text('{"eval_mean_iou": 0.5, ' + ", ".join(f'"eval_iou_{n}": 0.5' for n in ID2LABEL.values()) + "}")
    update_card(str(out), teacher_results=str(teacher))
    assert (out / "per_class_iou.png").is_file()
    assert "(per_class_iou.png)" in (out / "README.md").read_text()


def write_images(folder: Path, sizes: list[tuple[int, int]]) -> None:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for k, (height, width) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(folder / f"photo{k}.png")
    (folder / "notes.txt").write_text("not an image")  # skipped: not an image file


def test_predict_writes_mask_colour_and_overlay_per_image_and_masks_are_the_argmax(
    pushed_run, tiny_segformer_dir, tmp_path
):
    student, _ = pushed_run
    images, out = tmp_path / "images", tmp_path / "out"
    sizes = [(32, 32), (40, 48), (56, 36)]
    write_images(images, sizes)

    argv = [
        "--model",
        str(student),
        "--images",
        str(images),
        "--output_dir",
        str(out),
        "--teacher",
        str(tiny_segformer_dir),
    ]
    assert predict_main(argv) == 0

    expected = {f"photo{k}_{kind}.png" for k in range(3) for kind in ("mask", "color", "overlay", "panel")}
    assert {p.name for p in out.iterdir()} == expected
    model = AutoModelForSemanticSegmentation.from_pretrained(student).eval()
    processor = AutoImageProcessor.from_pretrained(student)
    palette = palette_for(None, len(ID2LABEL))
    for k, size in enumerate(sizes):
        image = Image.open(images / f"photo{k}.png")
        with torch.no_grad():
            outputs = model(**processor(image, return_tensors="pt"))
        (argmax,) = processor.post_process_semantic_segmentation(outputs, target_sizes=[size])
        mask = np.asarray(Image.open(out / f"photo{k}_mask.png"))
        np.testing.assert_array_equal(mask, argmax.numpy())
        colour = np.asarray(Image.open(out / f"photo{k}_color.png"))
        np.testing.assert_array_equal(colour, palette[mask])
        assert (
            Image.open(out / f"photo{k}_panel.png").width == 3 * size[1] + 2 * SEPARATOR
        )  # image | teacher | student


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--images", "{missing}"], "does not exist"),
        (["--images", "{empty}"], "holds no image files"),
        (["--images", "{broken}"], "cannot be read as an image"),
        (["--images", "{images}", "--palette", "mars"], "--palette mars is not known"),
        (["--images", "{images}", "--alpha", "2"], "--alpha 2.0 is out of range"),
        (["--images", "{images}", "--teacher", "{teacher}"], "cannot predict"),  # 16x16: too small for Segformer
    ],
)
def test_bad_predict_input_is_one_error_line(pushed_run, tiny_segformer_dir, tmp_path, capsys, argv, message):
    student, _ = pushed_run
    write_images(tmp_path / "images", [(16, 16)])
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.png").write_text("not a png")
    paths = {
        "missing": tmp_path / "missing",
        "empty": tmp_path / "empty",
        "broken": tmp_path / "broken.png",
        "images": tmp_path / "images",
        "teacher": tiny_segformer_dir,
    }
    argv = [a.format(**paths) for a in argv] + ["--model", str(student), "--output_dir", str(tmp_path / "out")]
    assert predict_main(argv) == 2
    err = capsys.readouterr().err
    # The last line (after any progress bar) is the only one naming an error, and no traceback.
    assert err.strip().splitlines()[-1].startswith("error: ") and message in err.strip().splitlines()[-1], err
    assert err.count("error") == 1 and "Traceback" not in err, err


def test_the_readme_shows_the_panels_make_demo_draws():
    repo = Path(__file__).resolve().parents[1]
    figure = repo / "docs" / "images" / "demo_predictions.png"
    assert figure.stat().st_size < 200_000
    assert "](docs/images/demo_predictions.png)" in (repo / "README.md").read_text()
    # make demo's images are 64 pixels wide: 4 columns (image | ground truth | teacher | student), enlarged
    drawn = 64 * -(-MIN_COLUMN_WIDTH // 64)
    assert Image.open(figure).width == 4 * drawn + 3 * SEPARATOR
