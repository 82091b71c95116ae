"""The recipe's command line, run as a user runs it: a subprocess, offline."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hf_heteroakd.cli import parse_args

REPO = Path(__file__).resolve().parents[1]


def run_distill(*args: str, hub_cache: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    if hub_cache is not None:
        env["HF_HUB_CACHE"] = str(hub_cache)
    return subprocess.run(
        [sys.executable, str(REPO / "recipes" / "run_distill.py"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.mark.slow
def test_issue_command_trains_evaluates_and_saves_offline(
    tmp_path, tiny_segformer_dir, synthetic_dataset, timm_hub_cache
):
    out = tmp_path / "out"
    result = run_distill(
        "--teacher",
        str(tiny_segformer_dir),
        "--student",
        "resnet18",
        "--dataset",
        str(synthetic_dataset),
        "--output_dir",
        str(out),
        "--max_steps",
        "4",
        "--do_train",
        "--do_eval",
        hub_cache=timm_hub_cache,  # timm's resnet18 weights, laid out as a download would leave them
    )
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((out / "all_results.json").read_text())
    assert 0.0 <= results["eval_mean_iou"] <= 1.0
    for name in ("config.json", "model.safetensors", "preprocessor_config.json", "README.md"):
        assert (out / name).is_file(), name


def test_help_documents_every_flag():
    result = subprocess.run(
        [sys.executable, str(REPO / "recipes" / "run_distill.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0
    for flag in (
        "--teacher",
        "--student",
        "--dataset",
        "--distill_method",
        "--lambda_kd",
        "--lambda_hakd",
        "--temperature",
        "--hakd_stages",
        "--learning_rate",
        "--max_steps",
        "--output_dir",
        "--push_to_hub",
    ):
        assert flag in result.stdout, flag


@pytest.mark.parametrize("recipe", ["evaluate_model.py", "predict.py"])
def test_help_of_evaluate_and_predict_lists_only_their_flags(recipe):
    result = subprocess.run(
        [sys.executable, str(REPO / "recipes" / recipe), "--help"], capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stderr[-2000:]
    flags = {flag for flag in re.findall(r"--[\w-]+", result.stdout) if "-" not in flag[2:]}  # not --dashed-aliases
    assert {"--model", "--eval_crop_size", "--eval_stride", "--eval_flip", "--output_dir"} <= flags
    assert not flags & {"--learning_rate", "--num_train_epochs", "--lambda_hakd", "--teacher_logits_cache", "--seed"}
    assert len(flags) < 30, sorted(flags)  # not TrainingArguments' ~150
    if recipe == "evaluate_model.py":
        assert {"--dataset", "--eval_split", "--per_device_eval_batch_size", "--bf16", "--report_to"} <= flags


def test_ablation_and_baseline_flags_parse():
    _, _, args = parse_args(["--dataset", "d", "--output_dir", "o", "--no_kmm", "--no_kem"])
    assert (args.distill_method, args.kmm, args.kem) == ("heteroakd", False, False)
    _, _, args = parse_args(["--dataset", "d", "--output_dir", "o", "--distill_method", "cwd"])
    assert (args.distill_method, args.lambda_cwd, args.kmm, args.kem) == ("cwd", 3.0, True, True)


def test_missing_dataset_is_one_clear_line(tmp_path):
    result = run_distill(
        "--dataset",
        str(tmp_path / "nowhere"),
        "--output_dir",
        str(tmp_path / "o"),
        "--distill_method",
        "none",
        "--do_train",
    )
    assert_one_clear_line(result, "nowhere")


def test_pretrained_backbone_offline_without_cache_says_how_to_proceed(tmp_path, synthetic_dataset):
    result = run_distill(
        "--dataset",
        str(synthetic_dataset),
        "--output_dir",
        str(tmp_path / "o"),
        "--distill_method",
        "none",
        "--do_train",
        "--max_steps",
        "1",
        hub_cache=tmp_path / "empty",
    )
    assert_one_clear_line(result, "--student_pretrained_backbone false")


def assert_one_clear_line(result: subprocess.CompletedProcess, *phrases: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ")
    for phrase in phrases:
        assert phrase in last, (phrase, last)


def test_teacher_with_other_classes_is_one_clear_line(tmp_path, synthetic_dataset):
    from .conftest import ID2LABEL, tiny_segformer

    tiny_segformer(id2label={**ID2LABEL, 2: "box", 4: "donut"}).save_pretrained(tmp_path / "teacher")
    result = run_distill(
        "--teacher",
        str(tmp_path / "teacher"),
        "--student",
        "resnet18",
        "--student_pretrained_backbone",
        "false",
        "--dataset",
        str(synthetic_dataset),
        "--output_dir",
        str(tmp_path / "o"),
        "--do_train",
        "--max_steps",
        "1",
    )
    assert_one_clear_line(result, "2: dataset 'square' vs teacher 'box'", "4: dataset 'ring' vs teacher 'donut'")


def test_unknown_student_is_one_clear_line(tmp_path, synthetic_dataset):
    result = run_distill(
        "--student",
        "resnet-nineteen",
        "--distill_method",
        "none",
        "--dataset",
        str(synthetic_dataset),
        "--output_dir",
        str(tmp_path / "o"),
        "--do_train",
    )
    assert_one_clear_line(result, "unknown student 'resnet-nineteen'")


@pytest.mark.parametrize(
    "command, argv, message",
    [
        ("main", ["--dataset", "d", "--lamda_hakd", "2"], "unknown flag --lamda_hakd; did you mean --lambda_hakd?"),
        ("main", ["--dataset", "d", "--logging_dir", "tb"], "TENSORBOARD_LOGGING_DIR environment variable"),
        ("evaluate_main", ["--model", "m", "--dataset", "d", "--eval_fip"], "did you mean --eval_flip?"),
        ("evaluate_main", ["--model", "m", "--dataset", "d", "--logging_dir=tb"], "unknown flag --logging_dir:"),
        (
            "evaluate_main",
            ["--model", "m", "--dataset", "d", "--learning_rate", "1e-3"],
            "--learning_rate (a flag of recipes/run_distill.py, which trains; this command does not read it)",
        ),
        (
            "evaluate_main",
            ["--model", "m", "--dataset", "d", "--per_device_train_batch_size", "2"],
            "did you mean --per_device_eval_batch_size?",
        ),
        ("predict_main", ["--model", "m", "--images", "i", "--dataset", "d"], "a flag of recipes/run_distill.py"),
        ("predict_main", ["--model", "m", "--images", "i", "--alpah", "0.5"], "did you mean --alpha?"),
    ],
)
def test_an_unknown_flag_is_an_input_error_naming_the_closest_flag(capsys, tmp_path, command, argv, message):
    from hf_heteroakd import cli

    assert getattr(cli, command)([*argv, "--output_dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown flag") and message in err and "bug" not in err, err


def test_an_unknown_key_of_a_yaml_recipe_is_an_input_error(capsys, tmp_path):
    from hf_heteroakd import cli

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("dataset: d\noutput_dir: o\nlamda_hakd: 2\n")
    assert cli.main([str(recipe)]) == 2
    assert f"unknown flag --lamda_hakd (a key of {recipe}); did you mean --lambda_hakd?" in capsys.readouterr().err
