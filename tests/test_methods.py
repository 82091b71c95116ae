"""Distillation methods as registered classes: a method added from outside the package trains, logs and is
described by the model card; the dataset a teacher alias resolves for is recognised, never guessed."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch

from hf_heteroakd import HeteroAKDConfig, HeteroAKDError
from hf_heteroakd.core.losses import resize_logits
from hf_heteroakd.data.presets import ADE20K_CLASSES
from hf_heteroakd.methods import METHODS, DistillationMethod, LossTerms, method_class, register_method
from hf_heteroakd.networks.teachers import resolve_teacher
from hf_heteroakd.pipeline import DataArguments, ModelArguments, run_distillation
from hf_heteroakd.training.argument_checks import NON_NEGATIVE


@dataclass
class LogitL2Config(HeteroAKDConfig):
    lambda_l2: float = field(
        default=0.5,
        metadata={
            "methods": ("logit_l2",),
            "bound": NON_NEGATIVE,
            "help": "Weight of the mean squared difference of the logits. Any value ≥ 0.",
        },
    )


class LogitL2(DistillationMethod):
    """The student's logits pulled towards the teacher's (resized to the student's grid) in squared distance."""

    name = "logit_l2"

    def loss_terms(self, out, teacher, labels) -> LossTerms:
        target = resize_logits(teacher.logits.float(), out.logits.shape[-2:])
        return LossTerms({"l2": (self.args.lambda_l2, (out.logits.float() - target).pow(2).mean())})


@pytest.fixture
def logit_l2():
    register_method(LogitL2)
    yield LogitL2
    del METHODS[LogitL2.name]


def test_a_method_registered_from_outside_trains_logs_and_is_on_the_card(
    logit_l2, tmp_path, tiny_segformer_dir, synthetic_dataset
):
    out = tmp_path / "run"
    run_distillation(
        ModelArguments(teacher=str(tiny_segformer_dir), student="resnet18", student_pretrained_backbone=False),
        DataArguments(dataset=str(synthetic_dataset), crop_size=[32]),
        LogitL2Config(
            output_dir=str(out),
            distill_method="logit_l2",
            lambda_l2=0.25,
            max_steps=2,
            logging_steps=1,
            per_device_train_batch_size=2,
            do_train=True,
            report_to="none",
            save_strategy="no",
            disable_tqdm=True,
        ),
    )
    logged = [
        entry for entry in json.loads((out / "trainer_state.json").read_text())["log_history"] if "loss" in entry
    ]
    assert len(logged) == 2 and all(entry["loss_l2"] > 0 and "loss_task" in entry for entry in logged)
    card = (out / "README.md").read_text()
    assert "| Weight of the mean squared difference of the logits (`lambda_l2`) | 0.25 |" in card
    assert "`lambda_hakd`" not in card and "`logit_l2` method" in card
    summary = json.loads((out / "heteroakd_run.json").read_text())
    assert summary["tags"] == ["knowledge-distillation", "semantic-segmentation"]


def test_the_built_in_methods_are_registered_and_an_unknown_name_lists_them():
    assert {"none", "kd", "cwd", "heteroakd"} <= set(METHODS)
    assert not method_class("none").uses_teacher and method_class("heteroakd").uses_stage_features
    with pytest.raises(HeteroAKDError, match="unknown --distill_method 'hakd'; the registered methods are none, kd"):
        HeteroAKDConfig(output_dir="out", distill_method="hakd")


def test_heteroakd_terms_are_l_kd_l_hakd_and_l_proj_with_their_weights():
    args = HeteroAKDConfig(output_dir="out", lambda_kd=0.3, lambda_hakd=0.7, lambda_proj=0.2, report_to="none")
    method = method_class("heteroakd")(args)
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (2, 16, 16))
    out = type(
        "Out",
        (),
        {
            "logits": torch.randn(2, 3, 8, 8),
            "student_projected": [torch.randn(2, 3, 4, 4)],
            "teacher_projected": [torch.randn(2, 3, 4, 4)],
        },
    )()
    teacher = type("Teacher", (), {"logits": torch.randn(2, 3, 4, 4)})()
    terms = method.loss_terms(out, teacher, labels)
    assert {name: weight for name, (weight, _) in terms.weighted.items()} == {"kd": 0.3, "hakd": 0.7, "proj": 0.2}
    assert set(terms.diagnostics) >= {"hakd_s_t", "hakd_w_max"}


@pytest.mark.parametrize("folder", ["outputs/shaded_roads", "data/cascade", "/tmp/ade_like_but_mine"])
def test_a_folder_whose_name_contains_ade_is_not_taken_for_ade20k(folder):
    with pytest.raises(HeteroAKDError, match="no fine-tuned checkpoint"):
        resolve_teacher("nvidia/segformer-b0", folder)


def test_a_local_copy_with_ade20ks_classes_resolves_to_the_ade20k_teacher():
    classes = dict(enumerate(ADE20K_CLASSES))
    assert (
        resolve_teacher("nvidia/segformer-b0", "/data/my_copy", classes) == "nvidia/segformer-b0-finetuned-ade-512-512"
    )
