"""Every ``recipes/*.yaml`` is made of real flags, holds the settings its header states, and runs.

Each recipe is parsed as ``run_distill.py recipes/<file>.yaml`` parses it, then run for 2 steps offline
with stand-ins for what needs the Hub: a tiny teacher of the recipe's family, the student's backbone
from random init, and a tiny copy of the preset's dataset in its Hub layout. Everything else (optimizer,
scheduler, loss weights, output stride, teacher precision) is the recipe's own.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
import transformers.training_args
import yaml
from transformers import SegformerImageProcessor, TrainerCallback

from hf_heteroakd.cli import parse_args
from hf_heteroakd.data.presets import PRESETS, find_preset
from hf_heteroakd.networks.teachers import TEACHER_ALIASES, resolve_teacher
from hf_heteroakd.pipeline import run_distillation

from .conftest import tiny_segformer, tiny_upernet_convnext

RECIPES = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
GLOBAL_BATCH, NUM_GPUS = 16, 2  # as every header says: 2 GPUs x 8 images

# Full Hub ids a recipe may name as its teacher besides the aliases (fine-tuned on ADE20K).
HUB_TEACHERS = {"openmmlab/upernet-convnext-small": "ade20k"}
# A stand-in for each teacher family, matched by name; a recipe with a new family fails until it has one.
TINY_TEACHERS = {"segformer": tiny_segformer, "upernet-convnext": tiny_upernet_convnext}
# The CIRKD codebase's SGD settings for CNN students: (learning rate, weight decay).
CIRKD_SGD = {"cityscapes": (0.02, 1e-4), "voc": (0.01, 5e-4), "ade20k": (0.02, 1e-4)}

ids = [recipe.stem for recipe in RECIPES]


def parse_recipe(path: Path, monkeypatch: pytest.MonkeyPatch):
    # The recipes set bf16 for GPUs; TrainingArguments refuses it on a machine without one.
    monkeypatch.setattr(transformers.training_args, "is_torch_bf16_gpu_available", lambda: True)
    return parse_args([str(path)])


def recipe_outputs() -> dict[str, Path]:
    """output_dir -> recipe: a recipe's teacher may be another recipe's output (VOC's teacher)."""
    return {yaml.safe_load(r.read_text())["output_dir"]: r for r in RECIPES}


def test_there_are_recipes_for_every_preset() -> None:
    assert {yaml.safe_load(r.read_text())["dataset"] for r in RECIPES} == set(PRESETS)


@pytest.mark.parametrize("recipe", RECIPES, ids=ids)
def test_recipe_parses_to_the_settings_it_states(recipe: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model_args, data_args, args = parse_recipe(recipe, monkeypatch)
    header = recipe.read_text().split("\n\n")[0]

    preset = find_preset(data_args.dataset)
    assert preset is not None and recipe.stem.startswith(preset.name + "_")
    assert data_args.crop_size == list(preset.crop_size)
    assert "--config_file recipes/accelerate_configs/multi_gpu.yaml --num_processes 2" in header
    assert f"recipes/run_distill.py recipes/{recipe.name}" in header
    assert "Expected GPU time" in header and "ESTIMATE, not" in header
    assert args.per_device_train_batch_size * NUM_GPUS * args.gradient_accumulation_steps == GLOBAL_BATCH
    assert args.max_steps == 40000 and args.warmup_steps == 0
    assert args.lr_scheduler_type == "polynomial" and args.lr_scheduler_kwargs == {"power": 0.9, "lr_end": 0.0}
    assert args.bf16 and args.do_train and args.do_eval and args.save_steps > 0 and args.dataloader_drop_last
    assert model_args.student_pretrained_backbone
    assert args.output_dir == f"outputs/{recipe.stem}"
    if args.optim == "sgd":
        assert (args.learning_rate, args.weight_decay) == CIRKD_SGD[preset.name]
        assert args.optim_args == "momentum=0.9"
    else:  # CIRKD's settings for MiT models
        assert model_args.student.startswith("mit-") and args.optim == "adamw_torch"
        assert (args.learning_rate, args.weight_decay) == (2e-4, 1e-4)
    if not model_args.student.startswith(("mit-", "upernet-")):
        assert model_args.student_head == "deeplabv3" and model_args.student_output_stride == 8
        assert args.sync_batchnorm  # CIRKD's SyncBatchNorm

    if args.distill_method == "none":  # a teacher-training recipe
        assert model_args.teacher is None
        return
    assert args.distill_method == "heteroakd" and model_args.teacher_dtype == "bfloat16"
    assert (args.lambda_kd, args.lambda_hakd, args.lambda_proj, args.temperature) == (0.1, 1.0, 1.0, 4.0)
    assert args.hakd_stages == [-1]
    teacher = model_args.teacher
    if teacher in TEACHER_ALIASES:
        resolve_teacher(teacher, data_args.dataset)  # raises if the alias has no checkpoint for the dataset
    elif teacher in HUB_TEACHERS:
        assert HUB_TEACHERS[teacher] == preset.name
    else:  # trained by another recipe on the same dataset
        producer = recipe_outputs()[teacher]
        assert yaml.safe_load(producer.read_text())["dataset"] == preset.name
        assert producer.name in header


class RecordOptimizer(TrainerCallback):
    """The optimizer's class and settings, and the learning rate after each step."""

    def __init__(self) -> None:
        self.optimizer, self.lrs = None, []

    def on_step_end(self, args, state, control, optimizer=None, lr_scheduler=None, **kwargs):
        self.optimizer = getattr(optimizer, "optimizer", optimizer)  # unwrapped from accelerate's
        self.lrs.append(lr_scheduler.get_last_lr()[0])


@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=ids)
def test_recipe_runs_two_steps_offline(
    recipe: Path, request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = yaml.safe_load(recipe.read_text())
    preset = PRESETS[config["dataset"]]
    root, _ = request.getfixturevalue(f"{preset.name}_copy")
    monkeypatch.setitem(PRESETS, preset.name, dataclasses.replace(preset, repo_id=str(root)))
    monkeypatch.setattr("datasets.config.HF_DATASETS_CACHE", str(tmp_path / "datasets_cache"))
    if config.get("distill_method") != "none":
        family = [name for name in TINY_TEACHERS if name in config["teacher"]]
        assert len(family) == 1, f"no tiny stand-in for the teacher {config['teacher']!r}: add one to TINY_TEACHERS"
        torch.manual_seed(0)
        teacher = TINY_TEACHERS[family[0]](len(preset.id2label), preset.id2label)
        teacher.save_pretrained(tmp_path / "teacher")
        SegformerImageProcessor(do_resize=False).save_pretrained(tmp_path / "teacher")
        config["teacher"] = str(tmp_path / "teacher")
    if config["student"].startswith("mit-"):  # the same family, smallest size: mit-b5 takes ~50 s on 2 CPU cores
        config["student"] = "mit-b0"
    config.update(
        student_pretrained_backbone=False,
        crop_size=[64, 64],
        max_steps=2,
        per_device_train_batch_size=2,
        per_device_eval_batch_size=2,
        bf16=False,
        output_dir=str(tmp_path / "run"),
        dataloader_num_workers=0,
    )
    (tmp_path / recipe.name).write_text(yaml.safe_dump(config))
    recorder = RecordOptimizer()

    metrics = run_distillation(*parse_args([str(tmp_path / recipe.name)]), callbacks=[recorder])

    assert 0.0 <= metrics["eval_mean_iou"] <= 1.0 and len(recorder.lrs) == 2
    assert (tmp_path / "run" / "model.safetensors").is_file()
    optimizer = recorder.optimizer
    assert optimizer.param_groups[0]["weight_decay"] == config["weight_decay"]
    if config["optim"] == "sgd":
        assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    else:
        assert isinstance(optimizer, torch.optim.AdamW)
    lr = config["learning_rate"]  # poly 0.9 over 2 steps: lr·(1 − 1/2)^0.9, then 0
    assert recorder.lrs == pytest.approx([lr * 0.5**0.9, 0.0])


@pytest.mark.hub
@pytest.mark.parametrize("recipe", RECIPES, ids=ids)
def test_recipe_models_exist_on_the_hub_with_the_datasets_classes(recipe: Path, monkeypatch) -> None:
    from huggingface_hub import model_info
    from transformers import AutoConfig

    model_args, data_args, _ = parse_recipe(recipe, monkeypatch)
    if model_args.teacher is not None and model_args.teacher not in recipe_outputs():
        config = AutoConfig.from_pretrained(resolve_teacher(model_args.teacher, data_args.dataset))
        assert {int(k): v for k, v in config.id2label.items()} == find_preset(data_args.dataset).id2label
    if model_args.student.startswith("mit-"):
        model_info(f"nvidia/{model_args.student}")
