"""A positive control of HeteroAKD's wiring: an oracle teacher whose stage features encode the labels.

Paired with a teacher whose features are noise (same student, seed and batches), the oracle must be
trusted by knowledge mixing (S_T high, its map the more reliable and right everywhere) and its
knowledge must reach the student's projected map. If not, the teacher's knowledge does not reach the
student: the wiring is at fault, whatever the method's merits on real teachers.

The student's own mIoU is the bar the method aims for, and the oracle does not yet clear it: in a short
run the labels already carry all the oracle knows (HeteroAKD's terms are gated by the labels), and the
student's head learns no faster. That test is marked as an expected failure, strictly, so that it
reports the day it passes.
"""

from __future__ import annotations

from functools import partial

import pytest
import torch

from hf_heteroakd import HeteroAKDConfig, HeteroAKDTrainer, build_student, losses
from hf_heteroakd.data import SegmentationDataset, collate_segmentation, load_segmentation_data, train_transforms
from hf_heteroakd.features import stage_channels
from hf_heteroakd.synthetic import make_synthetic_dataset
from hf_heteroakd.teacher_cache import TeacherOutputs

from .conftest import ID2LABEL, NUM_LABELS, tiny_segformer

STEPS = 40


class OracleTrainer(HeteroAKDTrainer):
    """Teacher outputs read off the batch's labels: confident one-hot logits, and last-stage features
    that are a fixed random embedding of the one-hot labels (zero where ignored)."""

    def teacher_outputs(self, inputs: dict[str, torch.Tensor]) -> TeacherOutputs:
        onehot, _ = losses.one_hot_targets(inputs["labels"], NUM_LABELS, self.args.ignore_index)
        generator = torch.Generator().manual_seed(0)
        embedding = torch.randn(NUM_LABELS, stage_channels(self.teacher)[-1], generator=generator)
        features = torch.einsum("nchw,cd->ndhw", onehot, embedding.to(onehot.device))
        return TeacherOutputs(logits=8.0 * onehot, features=[features])


class NoiseTrainer(OracleTrainer):
    """The same shapes, knowing nothing: flat logits and features of random noise."""

    def teacher_outputs(self, inputs: dict[str, torch.Tensor]) -> TeacherOutputs:
        oracle = super().teacher_outputs(inputs)
        features = [torch.randn(f.shape, generator=torch.Generator().manual_seed(1)) for f in oracle.features]
        return TeacherOutputs(logits=torch.zeros_like(oracle.logits), features=features)


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, HeteroAKDTrainer]:
    root = tmp_path_factory.mktemp("control")
    data = load_segmentation_data(str(make_synthetic_dataset(root / "data", 64, 32, image_size=32))).splits
    transform = train_transforms((32, 32), (1.0, 1.0))
    train_set, eval_set = (SegmentationDataset(data[s], transform, NUM_LABELS) for s in ("train", "validation"))
    trainers = {}
    for name, trainer_class in (("oracle", OracleTrainer), ("noise", NoiseTrainer), ("none", HeteroAKDTrainer)):
        torch.manual_seed(0)
        args = HeteroAKDConfig(
            output_dir=str(root / name),
            distill_method="none" if name == "none" else "heteroakd",
            max_steps=STEPS,
            learning_rate=1e-3,
            per_device_train_batch_size=8,
            logging_steps=10,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            dataloader_pin_memory=False,
            seed=0,
        )
        trainers[name] = trainer_class(
            model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
            teacher_model=None if name == "none" else tiny_segformer(),
            args=args,
            train_dataset=train_set,
            eval_dataset=eval_set,
            data_collator=partial(collate_segmentation),
        )
        trainers[name].train()
    return trainers


def last_diagnostics(trainer: HeteroAKDTrainer) -> dict[str, float]:
    return [entry for entry in trainer.state.log_history if "hakd_s_t" in entry][-1]


@pytest.mark.slow
def test_knowledge_mixing_trusts_an_oracle_teacher_and_not_a_noise_teacher(runs):
    oracle, noise = last_diagnostics(runs["oracle"]), last_diagnostics(runs["noise"])
    assert oracle["hakd_acc_teacher"] > 0.99, oracle  # the oracle's projected map is right everywhere
    assert oracle["hakd_s_t"] > 0.7 and oracle["hakd_h_gap"] < -0.3, oracle  # and the mix follows it
    assert noise["hakd_s_t"] < 0.55 and noise["hakd_h_gap"] > 0, noise  # a teacher that knows nothing is not


@pytest.mark.slow
def test_the_oracles_knowledge_reaches_the_students_projected_map(runs):
    oracle, noise = last_diagnostics(runs["oracle"]), last_diagnostics(runs["noise"])
    assert oracle["hakd_acc_student"] > noise["hakd_acc_student"] + 0.01, (oracle, noise)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="the oracle's knowledge does not yet raise the student's mIoU in a short run")
def test_an_oracle_teacher_lifts_the_students_miou_clearly(runs):
    distilled, alone = (runs[name].evaluate()["eval_mean_iou"] for name in ("oracle", "none"))
    assert distilled > alone + 0.05, (distilled, alone)
