"""The model card of a finished run and its push to the Hub, offline: the Hub's endpoints are replaced."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import HfApi, ModelCard, constants
from huggingface_hub.hf_api import RepoUrl
from huggingface_hub.repocard import metadata_load
from huggingface_hub.utils import filter_repo_objects

from hf_heteroakd.cli import main as cli_main
from hf_heteroakd.core.errors import HeteroAKDError
from hf_heteroakd.pipeline import DataArguments, ModelArguments, run_distillation
from hf_heteroakd.reporting.card import main as card_main
from hf_heteroakd.training.config import HeteroAKDConfig
from hf_heteroakd.training.hub import push_student, student_files

from .conftest import ID2LABEL

REPO_ID = "me/tiny-student"
SECRET = "hf_secretTokenThatMustNeverBeWritten"
HEADLINE = ("mean_iou", "mean_accuracy", "overall_accuracy")
# What a user of the student needs, and nothing else: weights, config, image processor config,
# the custom student's modeling code (trust_remote_code) and the card.
STUDENT_FILES = [
    "config.json",
    "configuration_timm_segmentation.py",
    "model.safetensors",
    "modeling_timm_segmentation.py",
    "preprocessor_config.json",
]
# A finished run adds its card and the card's figures (no per-class chart: the teacher is not evaluated).
PUSHED = sorted(STUDENT_FILES + ["README.md", "predictions.png", "training_curves.png"])


def tiny_run_args(output_dir: Path, **overrides) -> HeteroAKDConfig:
    settings = dict(
        max_steps=2,
        per_device_train_batch_size=2,
        do_train=True,
        do_eval=True,
        report_to="none",
        save_strategy="no",
        disable_tqdm=True,
    )
    return HeteroAKDConfig(output_dir=str(output_dir), **{**settings, **overrides})


def run_tiny(output_dir: Path, teacher: Path, dataset: Path, **overrides) -> dict[str, float]:
    return run_distillation(
        ModelArguments(teacher=str(teacher), student="resnet18", student_pretrained_backbone=False),
        DataArguments(dataset=str(dataset), crop_size=[32]),
        tiny_run_args(output_dir, **overrides),
    )


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synthetic_dataset, tiny_segformer_dir) -> Path:
    out = tmp_path_factory.mktemp("finished") / "tiny-student"
    run_tiny(out, tiny_segformer_dir, synthetic_dataset)
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def usage_snippet(card_text: str) -> str:
    match = re.search(r"## How to use\n\n```python\n(.*?)```", card_text, re.DOTALL)
    assert match, "the card has no python usage snippet"
    return match.group(1)


class FakeHub:
    """Stands in for the Hub's create-repo and upload endpoints; records what an upload would send."""

    def __init__(self, fail_upload: Exception | None = None) -> None:
        self.fail_upload = fail_upload
        self.created: list[dict] = []
        self.uploads: list[dict] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> FakeHub:
        hub = self

        def create_repo(self, repo_id, **kwargs):
            hub.created.append({"repo_id": repo_id, **kwargs})
            return RepoUrl(f"https://huggingface.co/{repo_id}")

        def upload_folder(self, *, repo_id, folder_path, allow_patterns=None, ignore_patterns=None, **kwargs):
            folder = Path(folder_path)
            files = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
            hub.uploads.append(
                {
                    "repo_id": repo_id,
                    "folder": folder,
                    "kwargs": kwargs,
                    "before": snapshot(folder),
                    # The same selection upload_folder makes from the folder's files, subfolders included.
                    "files": sorted(
                        filter_repo_objects(files, allow_patterns=allow_patterns, ignore_patterns=ignore_patterns)
                    ),
                }
            )
            if hub.fail_upload is not None:
                raise hub.fail_upload

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # `make test` sets it; nothing here goes out
        return self


def test_card_of_a_finished_run_states_its_results_runs_its_snippet_and_regenerates(finished_run, tmp_path):
    readme = finished_run / "README.md"
    card = ModelCard.load(readme)
    assert card.data.library_name == "transformers"
    assert card.data.pipeline_tag == "image-segmentation"
    assert set(card.data.tags) == {"knowledge-distillation", "heteroakd", "semantic-segmentation"}
    assert card.data.base_model is None and card.data.datasets is None  # local teacher and data: no Hub ids

    evaluated = json.loads((finished_run / "eval_results.json").read_text())
    (result,) = metadata_load(readme)["model-index"][0]["results"]
    assert result["dataset"]["split"] == "validation"
    assert {m["type"]: m["value"] for m in result["metrics"]} == {k: evaluated[f"eval_{k}"] for k in HEADLINE}

    text = readme.read_text()
    for phrase in (
        "DeepLabV3 on resnet18",
        "Segformer",
        "0.1·L_kd + 0.3·L_hakd + 1.0·L_proj",
        "`lambda_kd`",
        "`lambda_hakd`",
        "`lambda_proj`",
        "`temperature`",
        "| optimizer steps | 2",
        "| hardware |",
        "| training time |",
        "arXiv",
        "2504.07691",
        "AAAI",
        "Huang, Yanglin",
    ):
        assert phrase in text, phrase
    for name in ID2LABEL.values():
        assert re.search(rf"^\| {name} \| [0-9.]+ \| [0-9.]+ \|$", text, re.MULTILINE), name
    assert "| teacher |" not in text and "without distillation |" not in text  # unknown: no rows, no numbers

    # The snippet, as a user copies it, against the saved folder, where hf_heteroakd's import is not needed.
    snippet = usage_snippet(text)
    assert f'repo = "{finished_run.resolve()}"' in snippet
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf_home")}
    ran = subprocess.run(
        [sys.executable, "-c", snippet], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert ran.returncode == 0, ran.stderr[-3000:]
    assert "torch.Size([512, 512])" in ran.stdout

    # From the folder alone: the run's own card, byte for byte.
    written = readme.read_bytes()
    readme.unlink()
    regenerated = subprocess.run(
        [sys.executable, "-m", "hf_heteroakd.reporting.card", str(finished_run)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert regenerated.returncode == 0, regenerated.stderr[-3000:]
    assert readme.read_bytes() == written


def test_card_shows_teacher_and_baseline_rows_only_when_their_results_are_given(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("*.safetensors"))
    (tmp_path / "teacher.json").write_text(json.dumps({"mean_iou": 0.7123}))  # a published number, say
    (tmp_path / "baseline").mkdir()
    (tmp_path / "baseline" / "eval_results.json").write_text(
        json.dumps({"eval_mean_iou": 0.25, "eval_mean_accuracy": 0.5, "eval_overall_accuracy": 0.75})
    )

    assert card_main([str(run), "--teacher_results", str(tmp_path / "teacher.json")]) == 0
    text = (run / "README.md").read_text()
    assert "| teacher | Segformer | 0.7123 | — | — |" in text
    assert "without distillation |" not in text

    assert card_main([str(run), "--baseline_results", str(tmp_path / "baseline")]) == 0
    text = (run / "README.md").read_text()
    assert "| teacher | Segformer | 0.7123 | — | — |" in text  # kept in heteroakd_run.json
    assert (
        "| the same student trained without distillation | DeepLabV3 on resnet18 | 0.2500 | 0.5000 | 0.7500 |" in text
    )

    assert card_main([str(tmp_path / "baseline")]) == 2  # not a run's output folder: one error line


def test_a_folder_that_is_not_a_run_gets_no_card_and_no_figures(finished_run, tmp_path):
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    shutil.copy(finished_run / "trainer_state.json", folder)  # enough for a training plot, but no run summary
    assert card_main([str(folder)]) == 2
    assert [p.name for p in folder.iterdir()] == ["trainer_state.json"]


def test_push_uploads_only_the_student_and_its_card_once(tmp_path, monkeypatch, synthetic_dataset, tiny_segformer_dir):
    hub = FakeHub().install(monkeypatch)
    out = tmp_path / "pushed"
    # Checkpoints every step, so projectors and optimizer state lie in the output folder too.
    run_tiny(
        out,
        tiny_segformer_dir,
        synthetic_dataset,
        save_strategy="steps",
        save_steps=1,
        push_to_hub=True,
        hub_model_id=REPO_ID,
        hub_token=SECRET,
        hub_private_repo=True,
    )

    assert [c["repo_id"] for c in hub.created] == [REPO_ID]
    assert (
        hub.created[0]["private"] is True and hub.created[0]["exist_ok"] is True and hub.created[0]["token"] == SECRET
    )
    (upload,) = hub.uploads  # once, at the end: no pushes at saves or checkpoints
    assert upload["repo_id"] == REPO_ID and upload["folder"] == out
    assert upload["files"] == PUSHED
    assert (out / "checkpoint-2" / "heteroakd_projectors.safetensors").is_file()  # there, and left out

    assert f'repo = "{REPO_ID}"' in usage_snippet((out / "README.md").read_text())
    assert json.loads((out / "heteroakd_run.json").read_text())["hub_model_id"] == REPO_ID
    for name, content in snapshot(out).items():
        assert SECRET.encode() not in content, f"the Hub token was written to {name}"


def test_failed_upload_keeps_the_output_and_exits_with_the_retry_command(
    tmp_path, monkeypatch, capsys, synthetic_dataset, tiny_segformer_dir
):
    hub = FakeHub(fail_upload=ConnectionError("connection reset by peer")).install(monkeypatch)
    out = tmp_path / "run"
    code = cli_main(
        [
            "--teacher",
            str(tiny_segformer_dir),
            "--student",
            "resnet18",
            "--student_pretrained_backbone",
            "false",
            "--dataset",
            str(synthetic_dataset),
            "--crop_size",
            "32",
            "--output_dir",
            str(out),
            "--max_steps",
            "2",
            "--per_device_train_batch_size",
            "2",
            "--do_train",
            "--do_eval",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            "--disable_tqdm",
            "true",
            "--push_to_hub",
            "--hub_model_id",
            REPO_ID,
            "--hub_token",
            SECRET,
        ]
    )
    captured = capsys.readouterr()
    assert code == 2
    last = captured.err.strip().splitlines()[-1]
    retry = shlex.join(
        ["hf", "upload", REPO_ID, str(out.resolve()), "."] + [arg for name in PUSHED for arg in ("--include", name)]
    )
    assert last.startswith("error: uploading the student to the Hub repo me/tiny-student failed (ConnectionError")
    assert f"retry with `{retry}`" in last
    assert SECRET not in captured.err + captured.out

    (upload,) = hub.uploads
    assert snapshot(out) == upload["before"]  # every file, byte for byte, as when the upload began
    assert set(PUSHED) <= set(upload["before"])

    # The command is valid for the installed `hf` CLI: it gets as far as asking the Hub for the repo.
    hf = Path(sys.executable).parent / "hf"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_placeholder", "NO_COLOR": "1"}
    retried = subprocess.run([str(hf), *shlex.split(retry)[1:]], env=env, capture_output=True, text=True, timeout=120)
    assert retried.returncode != 0 and "offline mode" in retried.stderr, retried.stderr[-2000:]


def test_push_without_credentials_stops_before_training(
    tmp_path, monkeypatch, capsys, synthetic_dataset, tiny_segformer_dir
):
    hub = FakeHub().install(monkeypatch)
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no_token"))
    out = tmp_path / "run"
    code = cli_main(
        [
            "--teacher",
            str(tiny_segformer_dir),
            "--student",
            "resnet18",
            "--student_pretrained_backbone",
            "false",
            "--dataset",
            str(synthetic_dataset),
            "--crop_size",
            "32",
            "--output_dir",
            str(out),
            "--max_steps",
            "2",
            "--do_train",
            "--report_to",
            "none",
            "--push_to_hub",
            "--hub_model_id",
            REPO_ID,
        ]
    )
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "hf auth login" in last and "--hub_token" in last
    assert not (out / "model.safetensors").exists() and hub.created == [] and hub.uploads == []


def test_push_student_refuses_a_folder_without_a_saved_student(tmp_path, monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    with pytest.raises(HeteroAKDError, match="no saved student"):
        push_student(str(tmp_path), REPO_ID, token=SECRET)


def test_a_push_takes_the_images_the_card_shows_and_no_other(tmp_path):
    # The upload knows the card's figures only through the card: the images its README.md shows.
    for name in (*STUDENT_FILES, "predictions.png", "unshown.png", "training_args.bin"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.png").write_bytes(b"x")
    assert student_files(str(tmp_path)) == STUDENT_FILES  # no card: no images
    (tmp_path / "README.md").write_text(
        "![The panels](predictions.png)\n![missing](absent.png) ![nested](sub/nested.png) "
        "![remote](https://example.com/a.png) [a link, not an image](unshown.png)\n"
    )
    assert student_files(str(tmp_path)) == sorted([*STUDENT_FILES, "README.md", "predictions.png"])


def test_trainer_push_to_hub_goes_through_the_same_upload(tmp_path, monkeypatch):
    from transformers import SegformerImageProcessor

    from hf_heteroakd import HeteroAKDTrainer, build_student

    hub = FakeHub().install(monkeypatch)
    args = HeteroAKDConfig(
        output_dir=str(tmp_path / "api"),
        distill_method="none",
        report_to="none",
        push_to_hub=True,
        hub_model_id=REPO_ID,
        hub_token=SECRET,
    )
    trainer = HeteroAKDTrainer(
        model=build_student("resnet18", ID2LABEL, pretrained_backbone=False),
        args=args,
        processing_class=SegformerImageProcessor(do_resize=False),
    )
    assert hub.created == []  # the Trainer would create the repo here; ours waits for the upload
    assert trainer.push_to_hub() == f"https://huggingface.co/{REPO_ID}"
    (upload,) = hub.uploads
    assert upload["files"] == STUDENT_FILES  # no card and no figures: none is made up


def test_card_states_how_batchnorm_statistics_were_computed_on_several_devices(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("*.safetensors"))
    assert "BatchNorm statistics" not in (run / "README.md").read_text()  # one device: nothing to say
    summary = json.loads((run / "heteroakd_run.json").read_text())
    for synced, expected in ((False, "per device"), (True, "over all devices (SyncBatchNorm)")):
        summary["training"].update(world_size=2, sync_batchnorm=synced)
        (run / "heteroakd_run.json").write_text(json.dumps(summary))
        assert card_main([str(run)]) == 0
        text = (run / "README.md").read_text()
        assert f"| BatchNorm statistics | {expected} |" in text
        assert "| batch size | 2 per device × 2 device(s)" in text
