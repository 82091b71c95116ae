"""HeteroAKDTrainer: what trains, what is logged, what is saved."""

from __future__ import annotations

import json
import shutil
from functools import partial

import pytest
import safetensors.torch
import torch
from transformers import AutoModelForSemanticSegmentation

import hf_heteroakd  # noqa: F401  (registers the student classes with the Auto* factories)
from hf_heteroakd import HeteroAKDConfig, HeteroAKDError, HeteroAKDTrainer, build_student, losses
from hf_heteroakd.data import SegmentationDataset, collate_segmentation, load_segmentation_data, train_transforms
from hf_heteroakd.data.normalization import Renormalize, renormalizer
from hf_heteroakd.training.run_data import resolve_id2label
from hf_heteroakd.training.trainer import PROJECTORS_NAME

from .conftest import ID2LABEL, NUM_LABELS, tiny_segformer, tiny_upernet_convnext


@pytest.fixture
def train_set(synthetic_dataset):
    split = load_segmentation_data(str(synthetic_dataset)).splits["train"]
    return SegmentationDataset(split, train_transforms((32, 32)), NUM_LABELS)


def make_trainer(
    tmp_path, train_set, method="heteroakd", teacher_factory=tiny_segformer, **overrides
) -> HeteroAKDTrainer:
    torch.manual_seed(0)
    options = dict(
        output_dir=str(tmp_path / "run"),
        distill_method=method,
        max_steps=2,
        per_device_train_batch_size=2,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )
    args = HeteroAKDConfig(**{**options, **overrides})
    return HeteroAKDTrainer(
        model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
        teacher_model=teacher_factory() if method != "none" else None,
        args=args,
        train_dataset=train_set,
        eval_dataset=train_set,
        data_collator=partial(collate_segmentation),
    )


def batch_of(train_set, n=2):
    return collate_segmentation([train_set[i] for i in range(n)])


@pytest.mark.parametrize("student_projector,teacher_projector", [("none", "none"), ("mlp", "none"), ("mlp", "mlp")])
@pytest.mark.parametrize("teacher_factory", [tiny_segformer, tiny_upernet_convnext])
def test_gradients_reach_student_and_projectors_never_teacher(
    tmp_path, train_set, teacher_factory, student_projector, teacher_projector
):
    trainer = make_trainer(
        tmp_path,
        train_set,
        teacher_factory=teacher_factory,
        student_projector=student_projector,
        teacher_projector=teacher_projector,
    )
    trainer.model.train()
    trainer.compute_loss(trainer.model, batch_of(train_set)).backward()
    student_grads = [p.grad for p in trainer.student.parameters()]
    assert all(g is not None for g in student_grads) and sum(g.abs().sum() for g in student_grads) > 0
    assert (trainer.projectors.student is None) == (student_projector == "none")
    assert (trainer.projectors.teacher is None) == (teacher_projector == "none")
    sides = [side for side in (trainer.projectors.student, trainer.projectors.teacher) if side is not None]
    for side in sides:
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in side.parameters())
    assert all(p.grad is None and not p.requires_grad for p in trainer.teacher.parameters())
    assert not trainer.teacher.training


def test_teacher_is_not_in_the_optimizer(tmp_path, train_set):
    trainer = make_trainer(tmp_path, train_set)
    trainer.create_optimizer()
    optimized = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert optimized == {id(p) for p in trainer.model.parameters()}
    assert not optimized & {id(p) for p in trainer.teacher.parameters()}
    assert {id(p) for p in trainer.projectors.parameters()} <= optimized


@pytest.mark.parametrize(
    "method, terms",
    [
        ("heteroakd", {"task", "kd", "hakd", "proj"}),
        ("kd", {"task", "kd"}),
        ("cwd", {"task", "cwd"}),
        ("none", {"task"}),
    ],
)
def test_each_loss_term_is_logged(tmp_path, train_set, method, terms):
    trainer = make_trainer(tmp_path, train_set, method)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2
    for entry in logged:
        assert {k[len("loss_") :] for k in entry if k.startswith("loss_")} == terms
        args = trainer.args
        weights = {"task": 1.0, "kd": args.lambda_kd, "cwd": args.lambda_cwd, "hakd": args.lambda_hakd}
        weights["proj"] = args.lambda_proj
        total = sum(weights[t] * entry[f"loss_{t}"] for t in terms)
        assert entry["loss"] == pytest.approx(total, rel=1e-3)


def test_evaluation_reports_mean_iou(tmp_path, train_set):
    metrics = make_trainer(tmp_path, train_set).evaluate()
    assert 0.0 <= metrics["eval_mean_iou"] <= 1.0
    assert {"eval_mean_accuracy", "eval_overall_accuracy", "eval_iou_circle", "eval_loss"} <= set(metrics)


def test_gradient_accumulation_divides_the_loss_once(tmp_path, train_set):
    trainer = make_trainer(tmp_path, train_set, gradient_accumulation_steps=2)
    trainer.current_gradient_accumulation_steps = 2
    batch = batch_of(train_set)
    torch.manual_seed(0)
    step_loss = trainer.training_step(trainer.model, batch)
    trainer.model.zero_grad()
    torch.manual_seed(0)
    full = trainer.compute_loss(trainer.model, batch).detach()
    torch.testing.assert_close(step_loss, full / 2)


def test_saved_student_has_no_projectors_and_loads_with_auto_class(tmp_path, train_set):
    trainer = make_trainer(tmp_path, train_set, save_strategy="steps", save_steps=1)
    trainer.train()
    trainer.save_model()
    out = tmp_path / "run"
    keys = safetensors.torch.load_file(out / "model.safetensors").keys()
    assert not any("projector" in k for k in keys)
    assert (out / "checkpoint-1" / PROJECTORS_NAME).is_file()  # checkpoints keep them, for resuming

    loaded = AutoModelForSemanticSegmentation.from_pretrained(out).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, trainer.student.eval()(x).logits)


def test_channels_last_trains_checkpoints_and_saves_a_student_that_loads(tmp_path, train_set):
    trainer = make_trainer(tmp_path, train_set, channels_last=True, save_strategy="steps", save_steps=1)
    conv_weights = [p for p in trainer.model.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)
    trainer.train()  # checkpoints (student and projectors as safetensors) need contiguous tensors
    trainer.save_model()
    loaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "run").eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x).logits, trainer.student.eval()(x).logits)


def test_heteroakd_needs_a_teacher(tmp_path, train_set):
    with pytest.raises(HeteroAKDError, match="needs a teacher"):
        HeteroAKDTrainer(
            model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
            args=HeteroAKDConfig(output_dir=str(tmp_path), report_to="none"),
        )


def test_teacher_and_dataset_label_sets_must_match():
    teacher = tiny_segformer(id2label={**ID2LABEL, 3: "pyramid"})
    with pytest.raises(HeteroAKDError, match="3: dataset 'triangle' vs teacher 'pyramid'"):
        resolve_id2label(ID2LABEL, teacher)
    assert resolve_id2label(None, teacher)[3] == "pyramid"
    assert resolve_id2label(ID2LABEL, tiny_segformer()) == ID2LABEL


def test_renormalize_maps_between_normalisations():
    image = torch.rand(2, 3, 4, 4)
    mean_a, std_a, mean_b, std_b = [0.5, 0.4, 0.3], [0.2, 0.3, 0.4], [0.0, 0.1, 0.2], [1.0, 0.5, 0.25]
    col = lambda v: torch.tensor(v).view(1, 3, 1, 1)  # noqa: E731
    from_a = (image - col(mean_a)) / col(std_a)
    torch.testing.assert_close(Renormalize(mean_a, std_a, mean_b, std_b)(from_a), (image - col(mean_b)) / col(std_b))
    assert renormalizer((mean_a, std_a), (mean_a, std_a)) is None


def test_normalization_is_read_from_each_model(tmp_path):
    from transformers import SegformerImageProcessor

    from hf_heteroakd.data.normalization import IMAGENET_DEFAULT_MEAN, model_normalization

    student = build_student("resnet18", ID2LABEL, pretrained_backbone=False)
    assert model_normalization(student) == (IMAGENET_DEFAULT_MEAN, tuple(student.backbone.pretrained_cfg["std"]))
    teacher_dir = tmp_path / "teacher"
    tiny_segformer().save_pretrained(teacher_dir)
    SegformerImageProcessor(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5]).save_pretrained(teacher_dir)
    teacher_norm = model_normalization(tiny_segformer(), str(teacher_dir))
    assert teacher_norm == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert renormalizer(model_normalization(student), teacher_norm) is not None


@pytest.mark.parametrize("teacher_projector", ["none", "mlp"])
def test_bfloat16_teacher_with_float32_student(tmp_path, train_set, teacher_projector):
    trainer = make_trainer(
        tmp_path,
        train_set,
        teacher_factory=lambda: tiny_segformer().to(torch.bfloat16),
        teacher_projector=teacher_projector,
    )
    trainer.model.train()
    loss = trainer.compute_loss(trainer.model, batch_of(train_set))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in trainer.projectors.parameters())


def test_bf16_mixed_precision_trains_with_float32_losses(tmp_path, train_set):
    trainer = make_trainer(tmp_path, train_set, bf16=True, use_cpu=True)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert logged and all(
        torch.isfinite(torch.tensor(entry[f"loss_{t}"])) for entry in logged for t in ("task", "kd", "hakd", "proj")
    )
    assert all(p.dtype == torch.float32 for p in trainer.student.parameters())  # autocast, not a cast


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None,
    reason="torch.compile's default backend, inductor, builds C++ for the CPU: no C++ compiler here",
)
def test_torch_compile_compiles_student_and_teacher(tmp_path, train_set):
    trainer = make_trainer(tmp_path, train_set, torch_compile=True, use_cpu=True)
    assert trainer.teacher._compiled_call_impl is not None  # compiled in place: same class, same state-dict keys
    assert type(trainer.teacher).__name__ == "SegformerForSemanticSegmentation"
    trainer.train()
    assert trainer.state.global_step == 2
    assert getattr(trainer.model_wrapped, "_orig_mod", None) is trainer.model  # the Trainer compiled the student
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 2 and all(torch.isfinite(torch.tensor(entry["loss_hakd"])) for entry in logged)


class _HostSyncs(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the ops that read a tensor's value back on the host: on a GPU each one waits for the device."""

    SYNCING = {
        torch.ops.aten._local_scalar_dense.default,
        torch.ops.aten.nonzero.default,
        torch.ops.aten.masked_select.default,
    }

    def __init__(self):
        super().__init__()
        self.seen = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func in self.SYNCING:
            self.seen.append(str(func))
        return func(*args, **(kwargs or {}))


@pytest.mark.parametrize("method", ["heteroakd", "kd", "cwd", "none"])
def test_compute_loss_reads_nothing_back_on_the_host(tmp_path, train_set, method):
    # .item(), bool(tensor), boolean-mask indexing and the like would stall the GPU in every step's loss,
    # teacher forward included. (training_step then reads one flag, whether the loss is finite, as the
    # Trainer's own logging_nan_inf_filter does.)
    trainer = make_trainer(tmp_path, train_set, method=method)
    batch = trainer._prepare_inputs(batch_of(train_set))
    with _HostSyncs() as syncs:
        trainer.compute_loss(trainer.model, batch).backward()
    assert syncs.seen == []
    with _HostSyncs() as syncs:
        float(torch.ones(2).sum())
    assert syncs.seen == ["aten._local_scalar_dense.default"]  # the detector sees a read-back


def test_sync_batchnorm_is_a_no_op_with_one_process_and_a_synced_student_saves_as_batchnorm(tmp_path, train_set):
    trainer = make_trainer(tmp_path, train_set, sync_batchnorm=True)
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in trainer.model.modules())
    # What --sync_batchnorm does with several GPUs: the converted student keeps its state-dict keys and
    # saves as the plain BatchNorm model that from_pretrained rebuilds.
    student = build_student("resnet18", ID2LABEL, pretrained_backbone=False)
    synced = torch.nn.SyncBatchNorm.convert_sync_batchnorm(student)
    assert synced is student and any(isinstance(m, torch.nn.SyncBatchNorm) for m in student.modules())
    student.save_pretrained(tmp_path / "synced")
    reloaded = AutoModelForSemanticSegmentation.from_pretrained(tmp_path / "synced")
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in reloaded.modules())
    expected = student.state_dict()
    assert reloaded.state_dict().keys() == expected.keys()
    for key, value in reloaded.state_dict().items():
        assert torch.equal(value, expected[key]), key


@pytest.mark.parametrize("method", ["heteroakd", "kd", "cwd", "none"])
def test_a_batch_without_labelled_pixels_trains_on_the_teacher_alone(tmp_path, train_set, method):
    # e.g. random crops of wholly unlabelled regions: a finite loss (not a skipped, NaN step), task term 0.
    trainer = make_trainer(tmp_path, train_set, method=method)
    batch = batch_of(train_set)
    batch["labels"][:] = 255
    loss = trainer.compute_loss(trainer.model, batch)
    assert torch.isfinite(loss)
    assert trainer._loss_terms["task"][-1] == 0.0
    loss.backward()
    grads = [p.grad for p in trainer.model.student.parameters() if p.grad is not None]
    assert all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads) == (method != "none")


def test_heteroakd_diagnostics_are_logged_to_trainer_state_and_tensorboard(tmp_path, train_set, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    monkeypatch.setenv("TENSORBOARD_LOGGING_DIR", str(tmp_path / "tb"))
    trainer = make_trainer(tmp_path, train_set, report_to=["tensorboard"])
    trainer.train()
    trainer.save_state()
    keys = {"hakd_s_t", "hakd_h_gap", "hakd_w_max", "hakd_acc_teacher", "hakd_acc_student"}
    keys |= {"hakd_grad_norm_ratio", "hakd_grad_cosine"}
    history = json.loads((tmp_path / "run" / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "loss" in entry]
    assert len(logged) == 2 and all(keys <= set(entry) for entry in logged)
    for entry in logged:
        assert 0 <= entry["hakd_s_t"] <= 1 and 0 <= entry["hakd_acc_teacher"] <= 1
        assert 1 / NUM_LABELS - 1e-6 <= entry["hakd_w_max"] <= 1
    (events,) = list((tmp_path / "tb").rglob("events.out.tfevents.*"))
    scalars = EventAccumulator(str(events)).Reload().Tags()["scalars"]
    assert {f"train/{key}" for key in keys} <= set(scalars)


def test_teacher_projectors_are_fitted_before_the_first_step_and_nothing_else_moves(tmp_path, train_set):
    trainer = make_trainer(
        tmp_path, train_set, teacher_projector_fit_steps=20, student_projector="mlp", teacher_projector="mlp"
    )
    batch = batch_of(train_set, 4)

    def teacher_projection_loss() -> float:
        trainer.projectors.teacher.eval()
        with torch.no_grad():
            (features,) = trainer.teacher_outputs(batch).features
            z_t = trainer.projectors.teacher[0](features)
        return losses.teacher_projection_loss(z_t, batch["labels"], kind="bce").item()

    student = {k: v.clone() for k, v in trainer.student.state_dict().items()}
    student_projector = {k: v.clone() for k, v in trainer.projectors.student.state_dict().items()}
    rng = torch.random.get_rng_state()
    before = teacher_projection_loss()
    trainer.fit_teacher_projectors()
    assert teacher_projection_loss() < 0.8 * before
    assert torch.equal(torch.random.get_rng_state(), rng)  # the run's data order is not disturbed
    for name, value in trainer.student.state_dict().items():
        assert torch.equal(value, student[name]), name
    for name, value in trainer.projectors.student.state_dict().items():
        assert torch.equal(value, student_projector[name]), name
    assert all(p.grad is None for p in trainer.projectors.parameters())


@pytest.mark.parametrize("student_projector", ["none", "mlp"])
def test_l_hakd_reaches_the_decode_head_only_without_a_student_projector(tmp_path, train_set, student_projector):
    trainer = make_trainer(tmp_path, train_set, student_projector=student_projector)
    batch = trainer.prepare_batch(batch_of(train_set))
    teacher = trainer.teacher_outputs(batch)
    out = trainer.model.train()(
        batch["pixel_values"], teacher_features=teacher.features, teacher_logits=teacher.logits
    )
    trainer.method.loss_terms(out, teacher, batch["labels"]).weighted["hakd"][1].backward()
    head = [p.grad for p in trainer.student.decode_head.parameters()]
    if student_projector == "none":  # the layers that predict are trained by L_hakd
        assert all(g is not None and g.abs().sum() > 0 for g in head)
    else:  # the projector beside them takes it all
        assert all(g is None for g in head)
    assert trainer.student.backbone.conv1.weight.grad.abs().sum() > 0


def test_without_a_teacher_projector_z_t_is_the_teacher_logits_and_l_proj_the_students_alone(tmp_path, train_set):
    trainer = make_trainer(tmp_path, train_set, teacher_projector="none")
    assert trainer.projectors.teacher is None
    batch = trainer.prepare_batch(batch_of(train_set))
    teacher = trainer.teacher_outputs(batch)
    assert teacher.features is None  # nothing reads the teacher's stage maps
    model = trainer.model.train()
    out = model(batch["pixel_values"], teacher_features=teacher.features, teacher_logits=teacher.logits)
    assert all(torch.equal(z_t, teacher.logits.float()) for z_t in out.teacher_projected)
    terms = trainer.method.loss_terms(out, teacher, batch["labels"])
    students_alone = losses.heteroakd_loss(
        out.student_projected[0], teacher.logits, batch["labels"], proj_loss=trainer.args.proj_loss, proj_teacher=False
    )
    assert torch.allclose(terms.weighted["proj"][1], students_alone.proj)
    (terms.weighted["hakd"][1] + terms.weighted["proj"][1]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in trainer.projectors.student.parameters())


def test_teacher_projector_fit_needs_a_teacher_projector(tmp_path):
    with pytest.raises(HeteroAKDError, match="--teacher_projector none has none"):
        HeteroAKDConfig(output_dir=str(tmp_path), teacher_projector="none", teacher_projector_fit_steps=5)


def test_gradient_diagnostics_are_computed_on_logged_steps_only(tmp_path, train_set, monkeypatch):
    calls = []
    gradient_alignment = losses.gradient_alignment
    monkeypatch.setattr(losses, "gradient_alignment", lambda *a: calls.append(1) or gradient_alignment(*a))
    trainer = make_trainer(tmp_path, train_set, max_steps=4, logging_steps=2)
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "loss" in entry]
    assert len(calls) == len(logged) == 2
    assert all(-1 <= entry["hakd_grad_cosine"] <= 1 and entry["hakd_grad_norm_ratio"] > 0 for entry in logged)
