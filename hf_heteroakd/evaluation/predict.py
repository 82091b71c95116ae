"""Run a saved or Hub segmentation model on one's own images: ``recipes/predict.py``.

For each image, :func:`run_prediction` writes to ``--output_dir``:

- ``<name>_mask.png``: the class index of each pixel (lossless; 8-bit, or 16-bit past 256 classes),
- ``<name>_color.png``: the mask in the classes' colours,
- ``<name>_overlay.png``: the colours blended over the image,
- with ``--teacher``, ``<name>_panel.png``: image | teacher | student, with a legend of the classes.

Any ``AutoModelForSemanticSegmentation`` checkpoint works; images are predicted at full resolution, or
in sliding windows (``--eval_crop_size``, ``--eval_stride``) and averaged with their mirror image
(``--eval_flip``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import PIL.Image
import torch
from torchvision.transforms.v2 import functional as F
from tqdm.auto import tqdm
from transformers import PreTrainedModel

from ..core.errors import HeteroAKDError
from ..core.inference import predict_classes
from ..core.labels import id2label_of
from ..data.normalization import model_normalization
from ..data.presets import PRESETS, preset_with_classes
from ..networks.teachers import allow_pickle_weights_field, load_segmentation_model, trust_remote_code_field
from ..training.argument_checks import Bound, check_fields, eval_window
from ..training.arguments import eval_crop_size_field, eval_flip_field, eval_stride_field
from .visualize import color_mask, overlay, palette_for, prediction_panel


@dataclass
class PredictArguments:
    model: str = field(
        default=None, metadata={"help": "Path or Hub id of the AutoModelForSemanticSegmentation checkpoint to run."}
    )
    images: list[str] = field(
        default=None,
        metadata={"help": "Image files, or folders whose image files (PNG, JPEG, ...) are all predicted."},
    )
    output_dir: str = field(default=None, metadata={"help": "Folder the masks, colour masks and overlays go to."})
    teacher: str | None = field(
        default=None,
        metadata={
            "help": "Path or Hub id of a second model with the same classes; adds <name>_panel.png: "
            "image | teacher | student."
        },
    )
    eval_crop_size: list[int] | None = eval_crop_size_field()
    eval_stride: list[int] | None = eval_stride_field()
    eval_flip: bool = eval_flip_field()
    palette: str | None = field(
        default=None,
        metadata={
            "help": f"Class colours: one of {', '.join(PRESETS)}; default: the dataset's whose classes the model "
            "has, else distinct fixed colours."
        },
    )
    alpha: float = field(
        default=0.5, metadata={"bound": Bound(0, 1), "help": "Weight of the class colours in the overlay."}
    )
    device: str | None = field(
        default=None, metadata={"help": "Where the model runs; default: cuda when available, else cpu."}
    )
    trust_remote_code: bool = trust_remote_code_field()
    allow_pickle_weights: bool = allow_pickle_weights_field()

    def __post_init__(self) -> None:
        for name in ("model", "images", "output_dir"):
            if not getattr(self, name):
                raise HeteroAKDError(f"--{name} is required; `python recipes/predict.py --help` lists the flags")
        check_fields(self)
        self.eval_crop_size, self.eval_stride = eval_window(self.eval_crop_size, self.eval_stride)
        if self.palette is not None and self.palette.lower() not in PRESETS:
            raise HeteroAKDError(
                f"--palette {self.palette} is not known: use one of {', '.join(PRESETS)}, or leave it "
                "unset for the model's dataset's colours"
            )


def image_files(paths: list[str]) -> list[Path]:
    """The image files named by ``paths`` (files, or folders searched one level deep), in order."""
    extensions = {ext for ext, fmt in PIL.Image.registered_extensions().items() if fmt in PIL.Image.OPEN}
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in extensions)
            if not found:
                raise HeteroAKDError(f"--images {path} holds no image files: pass image files or a folder of them")
            files += found
        elif path.is_file():
            files.append(path)
        else:
            raise HeteroAKDError(f"--images {path} does not exist: pass image files or a folder of them")
    stems = [p.stem for p in files]
    clash = next((stem for stem in stems if stems.count(stem) > 1), None)
    if clash is not None:
        raise HeteroAKDError(
            f"two images are named {clash!r}, so their outputs would overwrite each other: rename "
            "one, or predict them into different --output_dir folders"
        )
    return files


def save_mask(mask: np.ndarray, path: Path) -> None:
    """(H, W) class indices as a lossless PNG: 8-bit below 256 classes, else 16-bit."""
    if mask.max(initial=0) < 256:
        PIL.Image.fromarray(mask.astype(np.uint8)).save(path)
    else:
        PIL.Image.fromarray(mask.astype(np.uint16)).save(path)


class Predictor:
    """A model in eval mode, with its input normalisation and the sliding-window and flip options."""

    def __init__(self, name: str, role: str, args: PredictArguments, device: torch.device) -> None:
        self.name, self.role = name, role
        self.model: PreTrainedModel = load_segmentation_model(
            name, role, torch.float32, args.trust_remote_code, args.allow_pickle_weights
        ).to(device)
        self.mean, self.std = model_normalization(self.model, name)
        self.window = args.eval_crop_size, args.eval_stride, args.eval_flip

    @property
    def id2label(self) -> dict[int, str]:
        return id2label_of(self.model.config)

    def __call__(self, image: PIL.Image.Image, path: Path) -> np.ndarray:
        """The (H, W) class indices of the RGB ``image`` read from ``path``."""
        pixels = F.normalize(F.to_dtype(F.to_image(image), torch.float32, scale=True), self.mean, self.std)
        try:
            return predict_classes(self.model, pixels, *self.window).numpy()
        except RuntimeError as err:
            if "size" not in str(err):
                raise
            raise HeteroAKDError(
                f"the {self.role} {self.name!r} cannot predict {path} ({image.height}x{image.width} pixels): its "
                f"layers need a larger input ({str(err).splitlines()[0]}); pass larger images"
            ) from None


def run_prediction(args: PredictArguments) -> list[Path]:
    """Predicts every image of ``args.images``; returns the files written (see the module's docstring)."""
    files = image_files(args.images)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    student = Predictor(args.model, "model", args, device)
    teacher = Predictor(args.teacher, "teacher", args, device) if args.teacher else None
    if teacher is not None and teacher.id2label != student.id2label:
        raise HeteroAKDError(
            f"the teacher {args.teacher!r} and the model {args.model!r} have different classes, so "
            "their masks cannot share colours: pass a teacher trained on the model's dataset"
        )
    palette = palette_for(args.palette or preset_with_classes(student.id2label), len(student.id2label))
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for path in tqdm(files, desc="predicting", unit="image"):
        try:
            image = PIL.Image.open(path).convert("RGB")
        except (OSError, PIL.Image.DecompressionBombError) as err:
            raise HeteroAKDError(f"{path} cannot be read as an image ({err}): remove it from --images") from None
        mask = student(image, path)
        pictures = {
            "color": color_mask(mask, palette),
            "overlay": overlay(np.asarray(image), mask, palette, args.alpha),
        }
        if teacher is not None:
            columns = {"teacher": teacher(image, path), "student": mask}
            pictures["panel"] = prediction_panel(np.asarray(image), columns, palette, student.id2label)
        written.append(output_dir / f"{path.stem}_mask.png")
        save_mask(mask, written[-1])
        for kind, picture in pictures.items():
            written.append(output_dir / f"{path.stem}_{kind}.png")
            (picture if isinstance(picture, PIL.Image.Image) else PIL.Image.fromarray(picture)).save(written[-1])
    return written
