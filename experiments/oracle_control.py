#!/usr/bin/env python
"""The positive control of distillation's wiring: teachers that know exactly the labels, or nothing.

    python experiments/oracle_control.py [--arms oracle noise none] [--steps 200] [--image_size 32]
                                         [--labelled_every 64] [--distill_method heteroakd]
                                         [--set NAME=VALUE ...]

An *oracle* teacher reads its outputs off the batch's labels: confident one-hot logits (8 for the labelled
class, 0 elsewhere), and last-stage features that are a fixed random embedding of the one-hot labels. A
*noise* teacher has the same shapes and knows nothing: logits (as large as the oracle's) and features of
random noise. Each arm trains a DeepLabV3-ResNet-18 student from the same weights on the same batches of
the synthetic shapes (``--image_size`` pixels), with ``--distill_method`` and the ``--set`` config fields
(``none``: no teacher), and prints its validation mIoU and the difference with the student alone.
``tests/test_positive_control.py`` runs these arms.

The student is told the labels of one training image in ``--labelled_every`` (by row index; the others
are all ``ignore_index`` for it; 64, the default, leaves it one image of the 64), while the oracle knows
every image's labels: an oracle of exactly the labels the student trains on knows nothing they do not
say, so it cannot show that a teacher's knowledge reaches the student (``--labelled_every 1`` is that
setting, in which the control checks knowledge mixing instead).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import torch

from hf_heteroakd import HeteroAKDConfig, HeteroAKDTrainer, build_student, losses
from hf_heteroakd.core.features import stage_channels
from hf_heteroakd.data import SegmentationDataset, collate_segmentation, load_segmentation_data, train_transforms
from hf_heteroakd.data.synthetic import CLASS_NAMES, make_synthetic_dataset
from hf_heteroakd.demo import tiny_segformer
from hf_heteroakd.training.teacher_cache import TeacherOutputs

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cpu_heterogeneous import parse_option  # noqa: E402

NUM_LABELS = len(CLASS_NAMES)
ID2LABEL = dict(enumerate(CLASS_NAMES))


class SparseLabelTrainer(HeteroAKDTrainer):
    """The student is told the labels of the training images whose row index is a multiple of
    ``labelled_every``; the batch keeps all of them as ``dense_labels`` for an oracle teacher."""

    labelled_every = 1

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if model.training and self.labelled_every > 1:
            labels = inputs["labels"]
            told = torch.tensor([i % self.labelled_every == 0 for i in inputs["index"]], device=labels.device)
            hidden = torch.full_like(labels, self.args.ignore_index)
            inputs = {**inputs, "dense_labels": labels, "labels": torch.where(told[:, None, None], labels, hidden)}
        return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)


class OracleTrainer(SparseLabelTrainer):
    """Teacher outputs read off every image's labels: confident one-hot logits, and last-stage features
    that are a fixed random embedding of the one-hot labels (zero where ignored)."""

    confidence = 8.0  # the labelled class's logit; the others are 0

    def teacher_outputs(self, inputs: dict[str, torch.Tensor]) -> TeacherOutputs:
        labels = inputs.get("dense_labels", inputs["labels"])
        onehot, _ = losses.one_hot_targets(labels, NUM_LABELS, self.args.ignore_index)
        generator = torch.Generator().manual_seed(0)
        embedding = torch.randn(NUM_LABELS, stage_channels(self.teacher)[-1], generator=generator)
        features = torch.einsum("nchw,cd->ndhw", onehot, embedding.to(onehot.device))
        return TeacherOutputs(logits=self.confidence * onehot, features=[features])


class NoiseTrainer(OracleTrainer):
    """The same shapes, knowing nothing: logits and features of random noise, the logits as large as the
    oracle's (N(0, confidence²)), so that whichever of them a method reads is noise. Flat logits would not
    do: a map of zeros is as reliable as a student's early map in the labelled class (H = log 2), and
    knowledge mixing rightly gives it half the weight."""

    def teacher_outputs(self, inputs: dict[str, torch.Tensor]) -> TeacherOutputs:
        oracle = super().teacher_outputs(inputs)

        def noise(shape: torch.Size, seed: int) -> torch.Tensor:
            return torch.randn(shape, generator=torch.Generator().manual_seed(seed))

        features = [noise(f.shape, 1) for f in oracle.features]
        return TeacherOutputs(logits=self.confidence * noise(oracle.logits.shape, 2), features=features)


TEACHERS = {"oracle": OracleTrainer, "noise": NoiseTrainer, "none": SparseLabelTrainer}


def control_teacher() -> torch.nn.Module:
    """The model the oracle stands in for: only its stage channels are read."""
    return tiny_segformer(
        NUM_LABELS, hidden_sizes=[8, 16, 24, 32], num_attention_heads=[1, 1, 2, 2], decoder_hidden_size=16
    )


def control_data(root: Path, image_size: int = 32) -> tuple[SegmentationDataset, SegmentationDataset]:
    """64 training and 32 validation images of the synthetic shapes, un-augmented."""
    splits = load_segmentation_data(str(make_synthetic_dataset(root, 64, 32, image_size=image_size))).splits
    transform = train_transforms((image_size, image_size), (1.0, 1.0))
    return tuple(SegmentationDataset(splits[s], transform, NUM_LABELS) for s in ("train", "validation"))


def train_arm(
    teacher: str,
    output_dir: Path,
    data: tuple[SegmentationDataset, SegmentationDataset],
    steps: int = 200,
    labelled_every: int = 64,
    **options: Any,
) -> HeteroAKDTrainer:
    """Trains the student of one arm: ``teacher`` is oracle, noise or none (no teacher, task loss only),
    the student told the labels of one training image in ``labelled_every``; ``options`` are config fields
    (``distill_method`` defaults to heteroakd)."""
    torch.manual_seed(0)
    method = {"distill_method": "none"} if teacher == "none" else {"distill_method": "heteroakd", **options}
    args = HeteroAKDConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        learning_rate=1e-3,
        per_device_train_batch_size=8,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
        seed=0,
        **method,
    )
    trainer = TEACHERS[teacher](
        model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
        teacher_model=None if teacher == "none" else control_teacher(),
        args=args,
        train_dataset=data[0],
        eval_dataset=data[1],
        data_collator=partial(collate_segmentation),
    )
    trainer.labelled_every = labelled_every
    trainer.train()
    return trainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arms", nargs="+", choices=list(TEACHERS), default=list(TEACHERS))
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--image_size", type=int, default=32)
    parser.add_argument("--labelled_every", type=int, default=64)
    parser.add_argument("--distill_method", default="heteroakd")
    parser.add_argument("--set", dest="options", nargs="+", type=parse_option, default=[], metavar="NAME=VALUE")
    args = parser.parse_args()
    options = {"distill_method": args.distill_method, **dict(args.options)}
    with tempfile.TemporaryDirectory() as root:
        data = control_data(Path(root) / "data", args.image_size)
        trainers = {
            arm: train_arm(arm, Path(root) / arm, data, args.steps, args.labelled_every, **options)
            for arm in args.arms
        }
        miou = {arm: trainer.evaluate()["eval_mean_iou"] for arm, trainer in trainers.items()}
    print(f"{options} steps={args.steps} image_size={args.image_size} labelled_every={args.labelled_every}")
    for arm, value in miou.items():
        versus = f" ({value - miou['none']:+.4f} vs none)" if "none" in miou and arm != "none" else ""
        print(f"{arm:>8}: validation mIoU {value:.4f}{versus}")


if __name__ == "__main__":
    main()
