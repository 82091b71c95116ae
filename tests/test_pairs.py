"""Every student family distills from every teacher family: the paper's heterogeneous pairs."""

from __future__ import annotations

import pytest
import torch

from hf_heteroakd import HeteroAKDConfig, HeteroAKDTrainer, build_student, task_loss
from hf_heteroakd.data import SegmentationDataset, collate_segmentation, load_segmentation_data, train_transforms

from .conftest import ID2LABEL, NUM_LABELS, tiny_segformer, tiny_upernet_convnext

STUDENTS = {
    "deeplabv3-resnet18": dict(name="resnet18"),
    "deeplabv3-mobilenetv2_100": dict(name="mobilenetv2_100"),
    "pspnet-resnet18": dict(name="resnet18", head="pspnet"),
    "mit-b0": dict(name="mit-b0"),
    "upernet-resnet18": dict(name="upernet-resnet18"),
}
TEACHERS = {
    "segformer": tiny_segformer,
    "upernet-convnext": tiny_upernet_convnext,
    "deeplabv3-resnet18": lambda: build_student("resnet18", ID2LABEL, pretrained_backbone=False),
}


def make_student(key: str):
    spec = dict(STUDENTS[key])
    return build_student(spec.pop("name"), ID2LABEL, pretrained_backbone=False, **spec)


@pytest.fixture(scope="module")
def batch(synthetic_dataset):
    split = load_segmentation_data(str(synthetic_dataset)).splits["train"]
    # Upscaled to 64×64, so a stride-32 stage (MiT's last) is a 2×2 grid, not a single pixel.
    data = SegmentationDataset(split, train_transforms((64, 64), scale_range=(2.0, 2.0)), NUM_LABELS)
    torch.manual_seed(0)
    return collate_segmentation([data[i] for i in range(2)])


def fit(model, batch, steps: int = 30):
    """A teacher that has learned the batch, as a fine-tuned teacher has learned its dataset."""
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(steps):
        task_loss(model(pixel_values=batch["pixel_values"]).logits, batch["labels"]).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


def make_trainer(tmp_path, student, teacher) -> HeteroAKDTrainer:
    args = HeteroAKDConfig(output_dir=str(tmp_path), report_to="none", save_strategy="no", disable_tqdm=True)
    return HeteroAKDTrainer(model=student, teacher_model=teacher.eval(), args=args)


@pytest.mark.parametrize("teacher_key", TEACHERS)
@pytest.mark.parametrize("student_key", STUDENTS)
def test_two_heteroakd_steps_are_finite(tmp_path, batch, student_key, teacher_key):
    torch.manual_seed(0)
    trainer = make_trainer(tmp_path, make_student(student_key), TEACHERS[teacher_key]())
    optimizer = torch.optim.SGD(trainer.model.parameters(), lr=1e-3)
    trainer.model.train()
    for _ in range(2):
        loss = trainer.compute_loss(trainer.model, batch)
        assert torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(torch.isfinite(torch.stack(v)).all() for v in trainer._loss_terms.values())
    assert set(trainer._loss_terms) == {"task", "kd", "hakd", "proj"}


@pytest.mark.parametrize(
    "student_key, teacher_key",
    [("deeplabv3-resnet18", "segformer"), ("mit-b0", "deeplabv3-resnet18")],  # CNN←Transformer, Transformer←CNN
)
def test_heteroakd_loss_decreases_on_a_fixed_batch(tmp_path, batch, student_key, teacher_key):
    torch.manual_seed(0)
    teacher = fit(TEACHERS[teacher_key](), batch)
    trainer = make_trainer(tmp_path, make_student(student_key), teacher)
    optimizer = torch.optim.Adam(trainer.model.parameters(), lr=1e-3)
    trainer.model.train()
    for _ in range(20):
        trainer.compute_loss(trainer.model, batch).backward()
        optimizer.step()
        optimizer.zero_grad()
    terms = {name: torch.stack(values) for name, values in trainer._loss_terms.items()}
    # L_hakd alone starts near 0, where the two untrained projectors agree, and then tracks the
    # projectors' growing logits; what HeteroAKD adds (L_hakd + L_proj) and the total must fall.
    added = terms["hakd"] + terms["proj"]
    total = terms["task"] + 0.1 * terms["kd"] + added
    for name, values in (("hakd + proj", added), ("total", total)):
        assert torch.isfinite(values).all(), name
        assert values[-3:].mean() < 0.7 * values[:3].mean(), (name, values.tolist())
