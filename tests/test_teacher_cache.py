"""--teacher_logits_cache: trains as the teacher would, is reused without it, and is refused when stale."""

from __future__ import annotations

import re

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hf_heteroakd import HeteroAKDConfig, HeteroAKDError, HeteroAKDTrainer, build_student
from hf_heteroakd.data import (
    SegmentationDataset,
    collate_segmentation,
    eval_transforms,
    load_segmentation_data,
    train_transforms,
)
from hf_heteroakd.pipeline import DataArguments, ModelArguments, run_distillation
from hf_heteroakd.training.teacher_cache import INFO_NAME

from .conftest import ID2LABEL, NUM_LABELS, tiny_segformer


@pytest.fixture
def split(synthetic_dataset) -> datasets.Dataset:
    return load_segmentation_data(str(synthetic_dataset)).splits["train"]


def train(tmp_path, train_set, method="kd", cache=None, teacher_seed=0, **overrides) -> HeteroAKDTrainer:
    """A 3-step run (12 images, batches of 4); its teacher's forward calls are counted in ``teacher_calls``."""
    torch.manual_seed(teacher_seed)
    teacher = tiny_segformer()
    torch.manual_seed(0)
    options = dict(
        output_dir=str(tmp_path / "run"),
        distill_method=method,
        teacher_logits_cache=cache and str(cache),
        max_steps=3,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    args = HeteroAKDConfig(**{**options, **overrides})
    trainer = HeteroAKDTrainer(
        model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
        teacher_model=teacher,
        args=args,
        train_dataset=train_set,
        data_collator=collate_segmentation,
    )
    trainer.teacher_calls = 0

    def count(*_):
        trainer.teacher_calls += 1

    trainer.teacher.register_forward_hook(count)
    trainer.train()
    return trainer


def loss_terms(trainer: HeteroAKDTrainer) -> list[dict[str, float]]:
    return [
        {k: v for k, v in entry.items() if k.startswith("loss")}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]


def assert_same_training(a: HeteroAKDTrainer, b: HeteroAKDTrainer, rel: float, weights: bool = True) -> None:
    """The same loss terms at every step (to ``rel``) and, if ``weights``, the same student (to 1e-5)."""
    terms_a, terms_b = loss_terms(a), loss_terms(b)
    assert len(terms_a) == 3 and [t.keys() for t in terms_a] == [t.keys() for t in terms_b]
    for step_a, step_b in zip(terms_a, terms_b):
        assert step_b == pytest.approx(step_a, rel=rel, abs=2e-6)  # terms are logged to 6 decimals
    for (name, weight_a), weight_b in zip(a.student.state_dict().items(), b.student.state_dict().values()):
        if weights and weight_a.is_floating_point():
            torch.testing.assert_close(weight_b, weight_a, rtol=1e-5, atol=1e-5, msg=name)


# Adam moves a weight by about the learning rate whatever the size of its gradient, so float16 rounding
# of the teacher's outputs can move weights whose gradient is near zero by that much: with float16,
# the loss terms are compared, not the weights.
@pytest.mark.parametrize(
    "method, dtype, rel, teacher_projector",
    [
        ("kd", "float32", 1e-5, "none"),
        ("heteroakd", "float32", 1e-5, "none"),
        ("heteroakd", "float32", 1e-5, "mlp"),
        ("heteroakd", "float16", 1e-3, "mlp"),
    ],
)
def test_training_from_the_cache_equals_training_with_the_teacher(
    tmp_path, split, method, dtype, rel, teacher_projector
):
    fixed = SegmentationDataset(split, eval_transforms(), NUM_LABELS)
    with_teacher = train(tmp_path, fixed, method, teacher_projector=teacher_projector)
    cached = train(
        tmp_path,
        fixed,
        method,
        cache=tmp_path / "cache",
        teacher_logits_cache_dtype=dtype,
        teacher_projector=teacher_projector,
    )
    assert cached.teacher_calls == 2  # the one pass that fills the cache: 12 images in batches of 8, no more
    assert_same_training(with_teacher, cached, rel, weights=dtype == "float32")
    stored = cached.teacher_cache.get([0], "cpu")  # the teacher's stage maps only where a projector reads them
    assert (stored.features is not None) == (teacher_projector == "mlp")


def test_a_second_run_reuses_the_cache_without_the_teacher(tmp_path, split):
    fixed = SegmentationDataset(split, eval_transforms(), NUM_LABELS)
    first = train(tmp_path, fixed, "heteroakd", cache=tmp_path / "cache")
    second = train(tmp_path, fixed, "heteroakd", cache=tmp_path / "cache")
    assert first.teacher_calls == 2 and second.teacher_calls == 0
    assert_same_training(first, second, 1e-6)


@pytest.mark.parametrize(
    "change, parts",
    [
        ("teacher", "teacher weights ("),
        ("dataset", "dataset fingerprint, number of samples ("),
        ("transform", "training transform ("),
    ],
)
def test_a_cache_of_another_teacher_or_dataset_is_refused(tmp_path, split, change, parts):
    fixed = SegmentationDataset(split, eval_transforms(), NUM_LABELS)
    train(tmp_path, fixed, cache=tmp_path / "cache", max_steps=1)
    changed = {
        "teacher": dict(train_set=fixed, teacher_seed=1),  # same config, other weights
        "dataset": dict(train_set=SegmentationDataset(split.select(range(10)), eval_transforms(), NUM_LABELS)),
        "transform": dict(train_set=SegmentationDataset(split, eval_transforms((0.5,) * 3, (0.5,) * 3), NUM_LABELS)),
    }[change]
    expected = f"computed with another {re.escape(parts)}.*delete {re.escape(str(tmp_path / 'cache'))}"
    with pytest.raises(HeteroAKDError, match=expected) as err:
        train(tmp_path, cache=tmp_path / "cache", **changed)
    assert err.value.args[0].count("->") == parts.count(",") + 1  # only the parts that changed are named


def test_augmented_training_inputs_are_refused(tmp_path, split, synthetic_dataset):
    augmented = SegmentationDataset(split, train_transforms((32, 32)), NUM_LABELS)
    with pytest.raises(HeteroAKDError, match="changes between epochs.*--no_augmentation"):
        train(tmp_path, augmented, cache=tmp_path / "cache")
    assert not (tmp_path / "cache" / INFO_NAME).exists()

    args = HeteroAKDConfig(
        output_dir=str(tmp_path / "cli"), teacher_logits_cache=str(tmp_path / "cache"), do_train=True, report_to="none"
    )
    with pytest.raises(HeteroAKDError, match="add --no_augmentation"):  # before anything is loaded
        run_distillation(ModelArguments(teacher="nowhere"), DataArguments(dataset=str(synthetic_dataset)), args)
    with pytest.raises(HeteroAKDError, match="--photometric_distortion is an augmentation"):
        DataArguments(dataset=str(synthetic_dataset), no_augmentation=True, photometric_distortion=True)


def test_images_of_several_sizes_need_batches_of_one(tmp_path):
    images = [Image.new("RGB", (w, 32)) for w in (32, 32, 48, 48)]
    masks = [Image.fromarray(np.zeros((32, w), np.uint8)) for w in (32, 32, 48, 48)]
    mixed = datasets.Dataset.from_dict(
        {"image": images, "label": masks},
        features=datasets.Features({"image": datasets.Image(), "label": datasets.Image()}),
    )
    dataset = SegmentationDataset(mixed, eval_transforms(), NUM_LABELS)
    with pytest.raises(HeteroAKDError, match=r"2 sizes \(32x32, 32x48\): batches of them are padded"):
        train(tmp_path, dataset, cache=tmp_path / "cache")
    assert (tmp_path / "cache" / INFO_NAME).is_file()  # kept, for a run with batches of one image


def test_the_recipe_trains_from_the_cache(tmp_path, synthetic_dataset, tiny_segformer_dir):
    def run(output_dir):
        args = HeteroAKDConfig(
            output_dir=str(tmp_path / output_dir),
            teacher_logits_cache=str(tmp_path / "cache"),
            do_train=True,
            max_steps=1,
            per_device_train_batch_size=2,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
        )
        model_args = ModelArguments(teacher=str(tiny_segformer_dir), student_pretrained_backbone=False)
        return run_distillation(model_args, DataArguments(dataset=str(synthetic_dataset), no_augmentation=True), args)

    assert run("a")["train_loss"] > 0 and (tmp_path / "cache" / INFO_NAME).is_file()
    assert run("b")["train_loss"] > 0  # reused: same teacher, data and transforms
    assert "none (whole images)" in (tmp_path / "a" / "README.md").read_text()
