"""A positive control of HeteroAKD's wiring: an oracle teacher whose stage features encode the labels.

Paired with a teacher whose features are noise (same student, seed and batches), the oracle must be
trusted by knowledge mixing (S_T high, its map the more reliable and right everywhere), its knowledge
must reach the student's map, and the noise teacher must not help. If not, the teacher's knowledge does
not reach the student: the wiring is at fault, whatever the method's merits on real teachers.
``student_projector="none"`` (Z^S the student's own logits) is run beside the default projector: only
there is L_hakd's gradient at the distilled stage aligned with the task's, i.e. it trains the layers
that predict.

An oracle of the labels the student already trains on did not lift the student's mIoU by 0.05 in a
short run with any method or wiring measured: KD and CWD from the same oracle land within ±0.01 of the
student alone (docs/experiments.md, "The oracle control"). That bar stays an expected failure, strictly,
so that it reports the day it passes.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from hf_heteroakd import HeteroAKDTrainer

STEPS = 40
ARMS = {  # arm -> (teacher, config fields)
    "oracle": ("oracle", {}),
    "noise": ("noise", {}),
    "none": ("none", {}),
    "oracle_logits": ("oracle", {"student_projector": "none"}),
}


def load_control():
    path = Path(__file__).resolve().parents[1] / "experiments" / "oracle_control.py"
    spec = importlib.util.spec_from_file_location("oracle_control", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, HeteroAKDTrainer]:
    control, root = load_control(), tmp_path_factory.mktemp("control")
    data = control.control_data(root / "data")
    return {
        name: control.train_arm(teacher, root / name, data, STEPS, **options)
        for name, (teacher, options) in ARMS.items()
    }


def last_diagnostics(trainer: HeteroAKDTrainer) -> dict[str, float]:
    return [entry for entry in trainer.state.log_history if "hakd_s_t" in entry][-1]


@pytest.mark.slow
def test_knowledge_mixing_trusts_an_oracle_teacher_and_not_a_noise_teacher(runs):
    oracle, noise = last_diagnostics(runs["oracle"]), last_diagnostics(runs["noise"])
    assert oracle["hakd_acc_teacher"] > 0.99, oracle  # the oracle's projected map is right everywhere
    assert oracle["hakd_s_t"] > 0.7 and oracle["hakd_h_gap"] < -0.3, oracle  # and the mix follows it
    assert noise["hakd_s_t"] < 0.55 and noise["hakd_h_gap"] > 0, noise  # a teacher that knows nothing is not


@pytest.mark.slow
def test_the_oracles_knowledge_reaches_the_students_map(runs):
    oracle, noise = last_diagnostics(runs["oracle"]), last_diagnostics(runs["noise"])
    assert oracle["hakd_acc_student"] > noise["hakd_acc_student"] + 0.01, (oracle, noise)


@pytest.mark.slow
def test_without_a_student_projector_l_hakd_pulls_the_layers_that_predict_with_the_task(runs):
    # The cosine of L_hakd's and L_task's gradients at the student's last backbone stage: 0.6-0.8 with
    # student_projector="none", about 0.07 with the default projector, which takes the target beside the head.
    logits, default = last_diagnostics(runs["oracle_logits"]), last_diagnostics(runs["oracle"])
    assert logits["hakd_grad_cosine"] > 0.3, logits
    assert logits["hakd_grad_cosine"] > default["hakd_grad_cosine"] + 0.3, (logits, default)


@pytest.mark.slow
def test_a_noise_teacher_does_not_help(runs):
    noise, alone = (runs[name].evaluate()["eval_mean_iou"] for name in ("noise", "none"))
    assert noise <= alone + 0.01, (noise, alone)


@pytest.mark.slow
@pytest.mark.xfail(strict=True, reason="an oracle of the student's own labels lifts no method's student by 0.05")
def test_an_oracle_teacher_lifts_the_students_miou_clearly(runs):
    distilled, alone = (runs[name].evaluate()["eval_mean_iou"] for name in ("oracle", "none"))
    assert distilled > alone + 0.05, (distilled, alone)
