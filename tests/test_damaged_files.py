"""A file of the user's that cannot be read (a checkpoint, a model's weights, a recipe, the teacher-logits
cache) is an input error: exit code 2 and one `error:` line naming the file, what is wrong and what to do;
`--resume_from_checkpoint true` passes over damaged checkpoints to the newest intact one."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from hf_heteroakd import HeteroAKDConfig
from hf_heteroakd.cli import evaluate_main, main, predict_main
from hf_heteroakd.training.checkpoints import resolve_checkpoint, resume_setting
from hf_heteroakd.training.trainer_saving import StudentSavingMixin

REPO = Path(__file__).resolve().parents[1]


def distill_flags(synthetic_dataset, teacher, output_dir, *flags: str) -> list[str]:
    """A HeteroAKD run of a few steps on the tiny dataset, a checkpoint after each step; ``flags`` last."""
    return [
        "--teacher",
        str(teacher),
        "--student",
        "resnet18",
        "--student_pretrained_backbone",
        "false",
        "--dataset",
        str(synthetic_dataset),
        "--crop_size",
        "32",
        "--output_dir",
        str(output_dir),
        "--do_train",
        "--max_steps",
        "2",
        "--per_device_train_batch_size",
        "2",
        "--save_steps",
        "1",
        "--num_visualized_images",
        "0",
        "--report_to",
        "none",
        "--disable_tqdm",
        "true",
        *flags,
    ]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synthetic_dataset, tiny_segformer_dir) -> Path:
    """A run's output folder with checkpoint-1 and checkpoint-2 (student, projectors, optimizer, ...)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert main(distill_flags(synthetic_dataset, tiny_segformer_dir, out)) == 0
    assert {p.name for p in out.glob("checkpoint-*")} == {"checkpoint-1", "checkpoint-2"}
    return out


@pytest.fixture
def run_copy(finished_run, tmp_path) -> Path:
    """A copy of the finished run, free to damage."""
    return Path(shutil.copytree(finished_run, tmp_path / "run"))


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cuts ``path`` short, as a copy or a save that was interrupted leaves it."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def flip_a_byte(path: Path) -> None:
    """Changes one byte in the middle of ``path``, as a failing disk would."""
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def the_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "bug of hf-heteroakd" not in err, err[-3000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, err[-3000:]
    return errors[0]


@pytest.mark.parametrize(
    "damage, name, phrase",
    [
        (truncate, "model.safetensors", "is truncated or corrupt"),
        (truncate, "heteroakd_projectors.safetensors", "is truncated or corrupt"),
        (truncate, "optimizer.pt", "is truncated or corrupt"),
        (flip_a_byte, "optimizer.pt", "is corrupt (its part"),
        (truncate, "scheduler.pt", "is truncated or corrupt"),
        (truncate, "rng_state.pth", "is truncated or corrupt"),
        (truncate, "trainer_state.json", "is not valid JSON"),
    ],
)
def test_resuming_from_a_damaged_checkpoint_names_the_file_and_the_intact_one(
    run_copy, synthetic_dataset, tiny_segformer_dir, capsys, damage, name, phrase
):
    damage(run_copy / "checkpoint-2" / name)
    flags = ["--resume_from_checkpoint", str(run_copy / "checkpoint-2"), "--max_steps", "3"]
    assert main(distill_flags(synthetic_dataset, tiny_segformer_dir, run_copy, *flags)) == 2
    line = the_error_line(capsys)
    assert f"{run_copy / 'checkpoint-2' / name} {phrase}" in line, line
    assert f"resume from {run_copy / 'checkpoint-1'}, the newest intact checkpoint" in line, line
    assert "--resume_from_checkpoint true picks the newest intact one by itself" in line


def test_the_recipe_resuming_from_truncated_weights_exits_2_without_a_traceback(
    run_copy, synthetic_dataset, tiny_segformer_dir
):
    """The command of the report, as a user runs it: a subprocess of recipes/run_distill.py."""
    truncate(run_copy / "checkpoint-2" / "model.safetensors", keep=0.9)
    flags = ["--resume_from_checkpoint", str(run_copy / "checkpoint-2"), "--max_steps", "3"]
    result = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "run_distill.py")]
        + distill_flags(synthetic_dataset, tiny_segformer_dir, run_copy, *flags),
        env={**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the checkpoint ") and "model.safetensors is truncated or corrupt" in last, last


def test_resume_true_skips_a_damaged_newest_checkpoint_with_a_warning(
    run_copy, synthetic_dataset, tiny_segformer_dir, caplog, monkeypatch
):
    truncate(run_copy / "checkpoint-2" / "model.safetensors")
    loaded: list[str] = []
    load = StudentSavingMixin._load_from_checkpoint

    def record(self, resume_from_checkpoint, model=None):
        loaded.append(resume_from_checkpoint)
        return load(self, resume_from_checkpoint, model)

    monkeypatch.setattr(StudentSavingMixin, "_load_from_checkpoint", record)
    flags = ["--resume_from_checkpoint", "true", "--max_steps", "3"]
    assert main(distill_flags(synthetic_dataset, tiny_segformer_dir, run_copy, *flags)) == 0
    assert loaded == [str(run_copy / "checkpoint-1")]
    warnings = [r.getMessage() for r in caplog.records if r.name == "hf_heteroakd.training.checkpoints"]
    assert len(warnings) == 1 and warnings[0].startswith("skipping the damaged checkpoint checkpoint-2: "), warnings
    assert f"{run_copy / 'checkpoint-2' / 'model.safetensors'} is truncated or corrupt" in warnings[0]
    assert (run_copy / "checkpoint-3").is_dir()  # it trained on from step 1 to step 3


def test_resume_true_with_only_damaged_checkpoints_is_one_error_line(
    run_copy, synthetic_dataset, tiny_segformer_dir, capsys
):
    for checkpoint in ("checkpoint-1", "checkpoint-2"):
        truncate(run_copy / checkpoint / "model.safetensors")
    flags = ["--resume_from_checkpoint", "TRUE", "--max_steps", "3"]
    assert main(distill_flags(synthetic_dataset, tiny_segformer_dir, run_copy, *flags)) == 2
    line = the_error_line(capsys)
    assert "holds only damaged checkpoints (checkpoint-2, checkpoint-1): train from the start" in line, line


def test_resume_false_is_not_a_resume(run_copy, synthetic_dataset, tiny_segformer_dir, capsys, tmp_path):
    # "false" is a value, not a path, and not "set": the output folder of a finished run is still protected.
    flags = ["--resume_from_checkpoint", "false"]
    assert main(distill_flags(synthetic_dataset, tiny_segformer_dir, run_copy, *flags)) == 2
    assert "already holds files" in the_error_line(capsys)
    fresh = tmp_path / "fresh"
    assert main(distill_flags(synthetic_dataset, tiny_segformer_dir, fresh, *flags, "--max_steps", "1")) == 0
    for value, setting in (("false", None), ("False", None), ("no", None), ("true", True), ("Yes", True)):
        assert resume_setting(value) is setting
        assert (
            HeteroAKDConfig(output_dir=str(tmp_path), resume_from_checkpoint=value).resume_from_checkpoint is setting
        )
    assert resume_setting("outputs/run/checkpoint-2") == "outputs/run/checkpoint-2"
    assert resolve_checkpoint(False, tmp_path) is None and resolve_checkpoint(None, tmp_path) is None


def test_resuming_from_a_folder_that_does_not_exist_is_one_error_line(
    run_copy, synthetic_dataset, tiny_segformer_dir, capsys
):
    flags = ["--resume_from_checkpoint", str(run_copy / "checkpoint-9")]
    assert main(distill_flags(synthetic_dataset, tiny_segformer_dir, run_copy, *flags)) == 2
    assert f"--resume_from_checkpoint {run_copy / 'checkpoint-9'} is not a folder" in the_error_line(capsys)


@pytest.mark.parametrize("command", ["evaluate --model", "predict --model", "distill --teacher", "distill --student"])
def test_a_model_with_truncated_weights_is_one_error_line(
    finished_run, tmp_path, synthetic_dataset, tiny_segformer_dir, capsys, command
):
    model = Path(shutil.copytree(finished_run / "checkpoint-2", tmp_path / "model"))
    truncate(model / "model.safetensors")
    image = tmp_path / "photo.png"
    Image.new("RGB", (32, 32)).save(image)
    out = str(tmp_path / "out")
    run = {
        "evaluate --model": lambda: evaluate_main(
            ["--model", str(model), "--dataset", str(synthetic_dataset), "--output_dir", out]
        ),
        "predict --model": lambda: predict_main(["--model", str(model), "--images", str(image), "--output_dir", out]),
        "distill --teacher": lambda: main(distill_flags(synthetic_dataset, model, out)),
        "distill --student": lambda: main(
            distill_flags(synthetic_dataset, tiny_segformer_dir, out, "--student", str(model))
        ),
    }[command]
    assert run() == 2
    line = the_error_line(capsys)
    assert f"{model / 'model.safetensors'} is truncated or corrupt" in line, line
    assert "save or copy the model again" in line


@pytest.mark.parametrize(
    "name, content, phrase",
    [
        ("recipe.yaml", "dataset: d\noutput_dir: [o\n", "is not valid YAML (while parsing a flow sequence"),
        ("recipe.yaml", "- dataset\n- d\n", "holds a list, not flag names with their values"),
        ("recipe.yml", b"dataset: \xff\xfe\n", "is not valid YAML ('utf-8' codec can't decode"),
        ("recipe.json", '{"dataset": "d", "output_dir": ', "is not valid JSON (Expecting value"),
    ],
)
def test_a_recipe_file_that_does_not_parse_is_one_error_line(tmp_path, capsys, name, content, phrase):
    recipe = tmp_path / name
    recipe.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main([str(recipe)]) == 2
    line = the_error_line(capsys)
    assert f"the recipe {recipe}" in line and phrase in line, line
    assert "fix the file" in line or "one `flag_name: value` per line" in line


@pytest.fixture(scope="module")
def teacher_cache(tmp_path_factory, synthetic_dataset, tiny_segformer_dir) -> Path:
    """A complete --teacher_logits_cache of the tiny dataset and teacher."""
    root = tmp_path_factory.mktemp("teacher_cache")
    cache = root / "cache"
    flags = ["--no_augmentation", "--teacher_logits_cache", str(cache), "--max_steps", "1", "--save_strategy", "no"]
    assert main(distill_flags(synthetic_dataset, tiny_segformer_dir, root / "run", *flags)) == 0
    assert (cache / "cache_info.json").is_file() and (cache / "shard-00000.safetensors").is_file()
    return cache


@pytest.mark.parametrize(
    "damage, name, phrase",
    [
        (truncate, "shard-00000.safetensors", "is truncated or corrupt"),
        (truncate, "cache_info.json", "is not valid JSON"),
        (lambda path: path.write_text("[]"), "cache_info.json", "lacks the cache's key"),
    ],
)
def test_a_damaged_teacher_logits_cache_is_one_error_line(
    teacher_cache, tmp_path, synthetic_dataset, tiny_segformer_dir, capsys, damage, name, phrase
):
    cache = Path(shutil.copytree(teacher_cache, tmp_path / "cache"))
    damage(cache / name)
    flags = ["--no_augmentation", "--teacher_logits_cache", str(cache), "--max_steps", "1", "--save_strategy", "no"]
    assert main(distill_flags(synthetic_dataset, tiny_segformer_dir, tmp_path / "run", *flags)) == 2
    line = the_error_line(capsys)
    assert f"--teacher_logits_cache {cache} is damaged: {cache / name} {phrase}" in line, line
    assert f"delete {cache} to recompute the cache" in line
