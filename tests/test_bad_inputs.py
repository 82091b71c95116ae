"""Bad input through the CLI entry point (`recipes/run_distill.py` calls `hf_heteroakd.cli.main`):
each stops with exit code 2 and one `error:` line that names the problem, never a traceback."""

from __future__ import annotations

import json

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image
from transformers import BertConfig, BertForMaskedLM, ResNetConfig, ResNetForImageClassification

from hf_heteroakd import build_student
from hf_heteroakd.cli import main

from .conftest import ID2LABEL, tiny_segformer


def write_dataset(folder, labels: list[np.ndarray], image_size=(16, 16), train_rows: int | None = None):
    """A local dataset in the Hub's layout whose validation split holds ``labels``, and its train split too
    (or only their first ``train_rows``)."""
    rows = {
        "image": [Image.new("RGB", image_size) for _ in labels],
        "label": [Image.fromarray(label.astype(np.uint8)) for label in labels],
    }
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Image()})
    train = {name: values[:train_rows] for name, values in rows.items()}
    return write_splits(folder, {"train": train, "validation": rows}, features)


def write_columns(folder, values: list, feature):
    """A dataset whose image and label columns both hold ``values`` of type ``feature``."""
    features = datasets.Features({"image": feature, "label": feature})
    rows = {"image": values, "label": values}
    return write_splits(folder, {"train": rows, "validation": rows}, features)


def write_splits(folder, splits: dict[str, dict[str, list]], features):
    (folder / "data").mkdir(parents=True)
    for split, rows in splits.items():
        datasets.Dataset.from_dict(rows, features=features).to_parquet(
            folder / "data" / f"{split}-00000-of-00001.parquet"
        )
    (folder / "id2label.json").write_text(json.dumps({str(k): v for k, v in ID2LABEL.items()}))
    return folder


def run(tmp_path, *flags: str) -> None:
    """The CLI with a tiny offline setup; ``flags`` come last, so they override the defaults."""
    return main(
        [
            "--student",
            "resnet18",
            "--student_pretrained_backbone",
            "false",
            "--output_dir",
            str(tmp_path / "out"),
            "--do_train",
            "--max_steps",
            "1",
            "--crop_size",
            "16",
            "--per_device_train_batch_size",
            "2",
            "--report_to",
            "none",
            *flags,
        ]
    )


CASES = {
    "dataset that does not exist": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", str(t / "nowhere")],
        "was not found",
    ),
    "unknown student name": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--student", "resnet-nineteen"],
        "unknown student 'resnet-nineteen'",
    ),
    "teacher that does not exist": (
        lambda t, d, s: ["--dataset", d, "--teacher", str(t / "no-teacher")],
        "could not load the teacher",
    ),
    "distillation without a teacher": (lambda t, d, s: ["--dataset", d], "needs --teacher"),
    "teacher with other classes": (
        lambda t, d, s: ["--dataset", d, "--teacher", s["other_classes"]],
        "2: dataset 'square' vs teacher 'box'",
    ),
    "teacher alias without a checkpoint for the data": (
        lambda t, d, s: ["--dataset", d, "--teacher", "nvidia/segformer-b2"],
        "no fine-tuned checkpoint",
    ),
    "label values out of range": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", s["out_of_range"]],
        "row 0",
    ),
    "image and mask of different sizes": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", s["size_mismatch"]],
        "but its mask is",
    ),
    "label column that does not exist": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--label_column_name", "segmentation_map"],
        "segmentation_map",
    ),
    "split that does not exist": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--do_eval", "--eval_split", "test"],
        "has no split 'test'",
    ),
    "output folder of another run": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--output_dir", s["used_output"]],
        "--overwrite_output_dir",
    ),
    "distilled stage out of range": (
        lambda t, d, s: ["--dataset", d, "--teacher", s["teacher"], "--hakd_stages", "7"],
        "out of range",
    ),
    "temperature that is not positive": (
        lambda t, d, s: ["--dataset", d, "--temperature", "0"],
        "--temperature 0.0 is out of range: it must be > 0",
    ),
    "image classifier as the teacher": (
        lambda t, d, s: ["--dataset", d, "--teacher", s["classifier"]],
        "is an image classifier (ResNetForImageClassification), not a semantic-",
    ),
    "text model as the teacher": (
        lambda t, d, s: ["--dataset", d, "--teacher", s["text_model"]],
        "is a text model (BertForMaskedLM)",
    ),
    "image classifier as the student": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--student", s["classifier"]],
        "is an image classifier",
    ),
    "folder without config.json as the teacher": (
        lambda t, d, s: ["--dataset", d, "--teacher", s["no_config"]],
        "is a folder without config.json",
    ),
    "crop size 0": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--crop_size", "0", "0"],
        "--crop_size 0 0 is out of range: it must be ≥ 1",
    ),
    "negative distillation weight": (
        lambda t, d, s: ["--dataset", d, "--lambda_hakd", "-1"],
        "--lambda_hakd -1.0 is out of range: it must be ≥ 0",
    ),
    "scale range upside down": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--scale_range", "2", "0.5"],
        "the minimum is larger than the maximum",
    ),
    "evaluation stride larger than the window": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--eval_crop_size", "8", "--eval_stride", "16"],
        "--eval_stride 16 16 is larger than --eval_crop_size 8 8",
    ),
    "training split without rows": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", s["empty_train"]],
        "has a split without rows",
    ),
    "every row bad, with --skip_bad_samples": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", s["size_mismatch"], "--skip_bad_samples"],
        "every sample of a batch was bad",
    ),
    "image column of text": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", s["text_columns"]],
        "holds text that is not the path of an image file",
    ),
    "image column of numbers": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", s["number_columns"]],
        "holds Value('int64'), not images",
    ),
    "push without credentials": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--push_to_hub", "--hub_model_id", "me/student"],
        "hf auth login",
    ),
    "teacher with its own code, without consent": (
        lambda t, d, s: ["--dataset", d, "--teacher", s["remote_code"]],
        "--trust_remote_code",
    ),
    "teacher with pickle weights only": (
        lambda t, d, s: ["--dataset", d, "--teacher", s["pickle_teacher"]],
        "--allow_pickle_weights",
    ),
    "one sample per device for a pooling BatchNorm": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--per_device_train_batch_size", "1"],
        "--per_device_train_batch_size 2 or more",
    ),
    "training split smaller than one batch": (
        lambda t, d, s: [
            "--distill_method",
            "none",
            "--dataset",
            s["three_samples"],
            "--per_device_train_batch_size",
            "4",
        ],
        "fewer than one batch of 4",
    ),
    "push while offline": (
        lambda t, d, s: ["--distill_method", "none", "--dataset", d, "--push_to_hub", "--hub_model_id", "me/student"],
        "HF_HUB_OFFLINE=1 is set",
    ),
}


@pytest.fixture(scope="module")
def setups(tmp_path_factory, synthetic_dataset):
    root = tmp_path_factory.mktemp("bad_inputs")
    tiny_segformer(id2label={**ID2LABEL, 2: "box"}).save_pretrained(root / "other_classes")
    tiny_segformer().save_pretrained(root / "teacher")
    # A checkpoint whose architecture only its own code defines: our student, renamed to a type transformers lacks.
    build_student("resnet18", ID2LABEL, pretrained_backbone=False).save_pretrained(root / "remote_code")
    for name in ("config.json", "configuration_timm_segmentation.py"):
        path = root / "remote_code" / name
        path.write_text(path.read_text().replace('timm_segmentation"', 'someone_elses_segmenter"'))
    pickle_teacher = tiny_segformer()
    pickle_teacher.config.save_pretrained(root / "pickle_teacher")
    torch.save(pickle_teacher.state_dict(), root / "pickle_teacher" / "pytorch_model.bin")
    (root / "used_output").mkdir()
    (root / "used_output" / "all_results.json").write_text("{}")
    zeros = np.zeros((16, 16))
    ResNetForImageClassification(ResNetConfig(embedding_size=8, hidden_sizes=[8] * 4, depths=[1] * 4)).save_pretrained(
        root / "classifier"
    )
    BertForMaskedLM(
        BertConfig(hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8, vocab_size=32)
    ).save_pretrained(root / "text_model")
    (root / "no_config").mkdir()
    (root / "no_config" / "model.safetensors").write_bytes(b"")
    return {
        "classifier": str(root / "classifier"),
        "text_model": str(root / "text_model"),
        "no_config": str(root / "no_config"),
        "empty_train": str(write_dataset(root / "empty_train", [zeros], train_rows=0)),
        "text_columns": str(write_columns(root / "text_columns", ["a.png", "b.png"], datasets.Value("string"))),
        "number_columns": str(write_columns(root / "number_columns", [1, 2], datasets.Value("int64"))),
        "other_classes": str(root / "other_classes"),
        "teacher": str(root / "teacher"),
        "out_of_range": str(write_dataset(root / "out_of_range", [zeros + 9, zeros])),
        "size_mismatch": str(write_dataset(root / "size_mismatch", [zeros, zeros], image_size=(16, 12))),
        "used_output": str(root / "used_output"),
        "remote_code": str(root / "remote_code"),
        "pickle_teacher": str(root / "pickle_teacher"),
        "three_samples": str(write_dataset(root / "three_samples", [zeros, zeros + 1, zeros])),
    }


@pytest.mark.parametrize("case", CASES)
def test_bad_input_is_one_clear_line(case, tmp_path, synthetic_dataset, setups, capsys, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    # huggingface_hub reads HF_HUB_OFFLINE once, at import: set the mode each case needs directly.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", case != "push without credentials")
    flags, phrase = CASES[case]
    assert run(tmp_path, *flags(tmp_path, str(synthetic_dataset), setups)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and phrase in errors[0], err[-2000:]


def test_pickle_weights_load_only_when_allowed(tmp_path, synthetic_dataset, setups):
    flags = [
        "--dataset",
        str(synthetic_dataset),
        "--teacher",
        setups["pickle_teacher"],
        "--allow_pickle_weights",
        "--crop_size",
        "64",
    ]
    assert run(tmp_path, *flags) == 0


def test_debug_mode_raises_with_the_traceback(tmp_path, monkeypatch):
    from hf_heteroakd import HeteroAKDError

    monkeypatch.setenv("HETEROAKD_DEBUG", "1")
    with pytest.raises(HeteroAKDError, match="was not found"):
        run(tmp_path, "--distill_method", "none", "--dataset", str(tmp_path / "nowhere"))


def test_an_incomplete_last_batch_is_dropped(tmp_path, setups):
    # 3 samples in batches of 2: the last batch would hold one sample, which DeepLabV3's image-pooling
    # BatchNorm cannot train on; it is dropped, so each epoch is one step.
    flags = [
        "--distill_method",
        "none",
        "--dataset",
        setups["three_samples"],
        "--max_steps",
        "-1",
        "--num_train_epochs",
        "3",
        "--save_strategy",
        "no",
    ]
    assert run(tmp_path, *flags) == 0
    assert json.loads((tmp_path / "out" / "trainer_state.json").read_text())["global_step"] == 3
