"""The distilled student's model card, rendered from ``model_cards/student_card.md``.

A run saves ``heteroakd_run.json`` (models, data, loss weights, training setup, hardware) next to
the student; the card is rendered from that file and the Trainer's own result files
(``eval_results.json`` / ``all_results.json``, ``trainer_state.json``, ``config.json``), so

    python -m hf_heteroakd.card <output_dir>

re-renders ``README.md`` from a finished run's folder alone, optionally adding the teacher's and
the undistilled baseline's results for comparison.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import EvalResult, ModelCard, ModelCardData
from transformers import PreTrainedModel

from .errors import HeteroAKDError
from .methods import method_class

TEMPLATE_NAME = "student_card.md"
RUN_SUMMARY_NAME = "heteroakd_run.json"
HEADLINE = {"mean_iou": "Mean IoU", "mean_accuracy": "Mean accuracy", "overall_accuracy": "Overall accuracy"}
HEADS = {"deeplabv3": "DeepLabV3", "pspnet": "PSPNet"}

def template_path() -> Path:
    """The card template: in the source tree, or where ``pip install`` put the data files."""
    for folder in (Path(__file__).resolve().parents[1] / "model_cards", Path(sys.prefix) / "share/hf_heteroakd/model_cards"):
        if (folder / TEMPLATE_NAME).is_file():
            return folder / TEMPLATE_NAME
    raise HeteroAKDError(f"the model card template {TEMPLATE_NAME} is missing; reinstall hf-heteroakd")


def describe(model: PreTrainedModel) -> str:
    """A short architecture name: "DeepLabV3 on resnet18", "Segformer", "UperNet on convnext", …"""
    config = model.config
    if config.model_type == "timm_segmentation":
        return f"{HEADS.get(config.decode_head, config.decode_head)} on {config.backbone}"
    name = type(model).__name__.removesuffix("ForSemanticSegmentation")
    backbone_config = getattr(config, "backbone_config", None)
    backbone = getattr(config, "backbone", None) or getattr(backbone_config, "model_type", None)
    return f"{name} on {backbone}" if backbone else name


def hub_id(name: str | None) -> str | None:
    """``name`` if it can be a Hub repo id; local folders are not named in the card's metadata."""
    return None if name is None or os.path.exists(name) else name


def hardware(training_args) -> str:
    """What the run trained on, e.g. "1 × NVIDIA H100 80GB HBM3" or "CPU, 16 cores"."""
    device = training_args.device
    if device.type == "cuda":
        return f"{training_args.world_size} × {torch.cuda.get_device_name(device)}"
    if device.type == "mps":
        return "Apple MPS"
    # The cores this process may use, which can be fewer than the machine has.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpu = f"CPU, {cores} cores"
    return f"{training_args.world_size} × {cpu}" if training_args.world_size > 1 else cpu


def _model_summary(model: PreTrainedModel, name: str | None) -> dict[str, Any]:
    return {
        "name": name,
        "architecture": describe(model),
        "parameters": model.num_parameters(),
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
    }


def _headline(results: dict[str, float] | None) -> dict[str, float] | None:
    """The three headline metrics of ``results`` (keys with or without the ``eval_`` prefix)."""
    found = {}
    for name in HEADLINE:
        value = (results or {}).get(f"eval_{name}", (results or {}).get(name))
        if value is not None:
            found[name] = float(value)
    return found or None


def run_summary(
    student: PreTrainedModel, teacher: PreTrainedModel | None, model_args, data_args, training_args,
    hub_model_id: str | None = None, teacher_results: dict[str, float] | None = None,
    baseline_results: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Everything the card needs that the Trainer's own files do not hold. Never holds the Hub token."""
    args = training_args
    return {
        "hub_model_id": hub_model_id,
        "license": "apache-2.0",
        "student": {
            **_model_summary(student, model_args.student), "pretrained_backbone": model_args.student_pretrained_backbone
        },
        "teacher": None if teacher is None else {
            **_model_summary(teacher, model_args.teacher), "hub_id": hub_id(model_args.teacher)
        },
        "data": {
            "dataset": data_args.dataset,
            "hub_id": data_args.source.hub_id,
            "config_name": data_args.dataset_config_name,
            "train_split": data_args.train_split,
            "eval_split": data_args.eval_split,
            "crop_size": list(data_args.crop_size),
            "scale_range": list(data_args.scale_range),
            "photometric_distortion": data_args.photometric_distortion,
            "no_augmentation": data_args.no_augmentation,
            "max_train_samples": data_args.max_train_samples,
        },
        "tags": [*method_class(args.distill_method).tags, "semantic-segmentation"],
        "distillation": {"method": args.distill_method, **method_settings(args)},
        "setting_help": {name: help for name, help in _method_fields(args)},
        "training": {
            "max_steps": args.max_steps,
            "per_device_train_batch_size": args.per_device_train_batch_size,
            "gradient_accumulation_steps": args.gradient_accumulation_steps,
            "world_size": args.world_size,
            "sync_batchnorm": args.sync_batchnorm and args.world_size > 1,
            "learning_rate": args.learning_rate,
            "lr_scheduler_type": str(getattr(args.lr_scheduler_type, "value", args.lr_scheduler_type)),
            "warmup_steps": args.warmup_steps,
            "optim": str(getattr(args.optim, "value", args.optim)),
            "weight_decay": args.weight_decay,
            "precision": "bf16 mixed" if args.bf16 else "fp16 mixed" if args.fp16 else "fp32",
            "seed": args.seed,
            "hardware": hardware(args),
        },
        "comparison": {"teacher": _headline(teacher_results), "baseline": _headline(baseline_results)},
    }


def write_model_card(
    output_dir: str, student: PreTrainedModel, teacher: PreTrainedModel | None, model_args, data_args,
    training_args, hub_model_id: str | None = None, teacher_results: dict[str, float] | None = None,
    baseline_results: dict[str, float] | None = None,
) -> ModelCard:
    """Saves ``heteroakd_run.json`` and renders ``README.md`` into the finished run's ``output_dir``.

    Call it after the Trainer saved its results there. ``hub_model_id``: the repo the student will
    be pushed to (its usage snippet loads from it; the local folder otherwise).
    ``teacher_results`` / ``baseline_results``: the teacher's and the undistilled student's
    metrics on the same split (``{"mean_iou": …}``, ``eval_`` prefixes allowed), shown when given.
    """
    summary = run_summary(student, teacher, model_args, data_args, training_args, hub_model_id,
                          teacher_results, baseline_results)
    Path(output_dir, RUN_SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    card = render_card(output_dir)
    card.save(os.path.join(output_dir, "README.md"))
    return card


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def read_results(path: str) -> dict[str, float]:
    """The headline metrics of a run's folder (its eval results) or of a JSON file of metrics."""
    source = Path(path)
    if source.is_dir():
        source = next((source / n for n in ("eval_results.json", "all_results.json") if (source / n).is_file()),
                      source / "eval_results.json")
    if not source.is_file():
        raise HeteroAKDError(f"{path} holds no results: pass a run's output folder or a JSON file like "
                             '{"mean_iou": 0.71}')
    found = _headline(_read_json(source))
    if found is None:
        raise HeteroAKDError(f"{source} has none of {', '.join(HEADLINE)} (with or without the eval_ prefix); "
                             "pass the results of an evaluated run")
    return found


def _fmt(value: float | None) -> str:
    return "—" if value is None else "n/a" if math.isnan(value) else f"{value:.4f}"


def per_class_rows(results: dict[str, float], id2label: dict[int | str, str]) -> list[tuple[str, str, str]]:
    """(class, IoU, accuracy) cells, in class order, of the classes ``results`` (``eval_iou_<name>`` …) holds."""
    return [
        (_cell(name), _fmt(results.get(f"eval_iou_{name}")), _fmt(results.get(f"eval_accuracy_{name}")))
        for _, name in sorted(id2label.items(), key=lambda item: int(item[0]))
        if f"eval_iou_{name}" in results
    ]


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|")


def _named(summary: dict[str, Any] | None, kind: str) -> str:
    """Markdown naming a model or dataset: a Hub link, or a local folder's name."""
    if summary is None:
        return "—"
    name, repo = summary.get("name") or summary.get("dataset"), summary.get("hub_id")
    if repo:
        return f"[`{repo}`](https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{repo})"
    return f"`{Path(name).name}` (a local {'dataset' if kind == 'dataset' else 'checkpoint'})"


def _method_fields(args) -> list[tuple[str, str]]:
    """(name, first sentence of its help) of each config field of the run's method (``metadata["methods"]``)."""
    return [
        (f.name, f.metadata.get("help", f.name).split(". ")[0].rstrip("."))
        for f in dataclasses.fields(args) if args.distill_method in f.metadata.get("methods", ())
    ]


def method_settings(args) -> dict[str, Any]:
    """The values of the config fields of the run's method, by name (lists as lists)."""
    return {name: _plain(getattr(args, name)) for name, _ in _method_fields(args)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _method_rows(distill: dict[str, Any], setting_help: dict[str, str]) -> list[tuple[str, str]]:
    """(setting, value) rows of the card: each config field of the method, named by its help text."""
    def shown(value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, list):
            return ", ".join(map(str, value))
        return "unset" if value is None else str(value)

    return [(f"{_cell(setting_help.get(name, name))} (`{name}`)", _cell(shown(value)))
            for name, value in distill.items() if name != "method"]


def _training_rows(run: dict[str, Any], state: dict[str, Any], results: dict[str, Any]) -> list[tuple[str, Any]]:
    train, data = run["training"], run["data"]
    per_device, devices, accumulation = (
        train["per_device_train_batch_size"], train["world_size"], train["gradient_accumulation_steps"]
    )
    height, width = data["crop_size"]
    scale_low, scale_high = data["scale_range"]
    rows = [
        ("optimizer steps", f"{state.get('global_step', train['max_steps'])}"
                            + (f" ({state['epoch']:.2f} epochs)" if state.get("epoch") else "")),
        ("batch size", f"{per_device} per device × {devices} device(s) × {accumulation} accumulation step(s) "
                       f"= {per_device * devices * accumulation}"),
        *([("BatchNorm statistics", "over all devices (SyncBatchNorm)" if train.get("sync_batchnorm")
            else "per device")] if devices > 1 else []),
        ("augmentation", "none (whole images)" if data.get("no_augmentation") else
                         f"random scale {scale_low}–{scale_high}, {height}×{width} crop, horizontal flip"
                         + (", photometric distortion" if data.get("photometric_distortion") else "")),
        ("learning rate",
         f"{train['learning_rate']} ({train['lr_scheduler_type']} schedule, warmup {train['warmup_steps']})"),
        ("optimizer", f"{train['optim']}, weight decay {train['weight_decay']}"),
        ("precision", train["precision"]),
        ("seed", train["seed"]),
        ("hardware", train["hardware"]),
    ]
    if data.get("max_train_samples"):
        rows.append(("training images", f"the first {data['max_train_samples']}"))
    if "train_runtime" in results:
        rows.append(("training time", _duration(results["train_runtime"])))
    return rows


def _card_data(run: dict[str, Any], scores: dict[str, float], model_name: str, dataset_label: str) -> ModelCardData:
    """The card's metadata: tags, dataset, base model, and the headline metrics as model-index results."""
    data, teacher = run["data"], run["teacher"]
    eval_results = [
        EvalResult(
            task_type="image-segmentation", task_name="Semantic segmentation",
            dataset_type=dataset_label, dataset_name=dataset_label, dataset_config=data["config_name"],
            dataset_split=data["eval_split"], metric_type=name, metric_name=HEADLINE[name], metric_value=value,
        )
        for name, value in scores.items()
    ]
    return ModelCardData(
        library_name="transformers",
        pipeline_tag="image-segmentation",
        tags=run["tags"],
        datasets=[data["hub_id"]] if data["hub_id"] else None,
        base_model=teacher["hub_id"] if teacher else None,
        license=run["license"],
        model_name=model_name,
        eval_results=eval_results or None,
    )


def _comparison(run: dict[str, Any], scores: dict[str, float]) -> list[tuple[str, str, dict[str, float]]]:
    """(who, architecture, headline metrics) rows: this student, then the teacher and the baseline when known."""
    student, teacher = run["student"], run["teacher"]
    rows = [("this student", student["architecture"], scores)] if scores else []
    if run["comparison"]["teacher"]:
        rows.append(("teacher", teacher["architecture"] if teacher else "—", run["comparison"]["teacher"]))
    if run["comparison"]["baseline"]:
        rows.append(("the same student trained without distillation", student["architecture"],
                     run["comparison"]["baseline"]))
    return rows


def render_card(output_dir: str) -> ModelCard:
    """The card of the finished run in ``output_dir``, from its files alone (nothing is written)."""
    folder = Path(output_dir)
    run = _read_json(folder / RUN_SUMMARY_NAME)
    if not run:
        raise HeteroAKDError(
            f"{folder} has no {RUN_SUMMARY_NAME}: pass the output folder of a finished hf_heteroakd run "
            "(trained with --do_train by this version)"
        )
    config = _read_json(folder / "config.json")
    results = {**_read_json(folder / "all_results.json"), **_read_json(folder / "eval_results.json")}
    state = _read_json(folder / "trainer_state.json")
    student, teacher, data, distill = run["student"], run["teacher"], run["data"], run["distillation"]
    model_name = (run["hub_model_id"] or folder.resolve().name).split("/")[-1]
    dataset_label = data["hub_id"] or Path(data["dataset"]).name

    scores = _headline(results) or {}
    card_data = _card_data(run, scores, model_name, dataset_label)
    comparison = _comparison(run, scores)
    id2label = config.get("id2label", {})
    per_class = per_class_rows(results, id2label)
    card = ModelCard.from_template(
        card_data,
        template_path=str(template_path()),
        model_name=model_name,
        student=student,
        student_parameters=f"{student['parameters'] / 1e6:.1f}M",
        teacher=teacher,
        teacher_named=_named(teacher, "model"),
        teacher_parameters=f"{teacher['parameters'] / 1e6:.1f}M" if teacher else None,
        method=distill["method"],
        distill=distill,
        dataset_named=_named(data, "dataset"),
        eval_split=data["eval_split"],
        seed=run["training"]["seed"],
        train_split=data["train_split"],
        num_labels=len(id2label),
        method_rows=_method_rows(distill, run.get("setting_help", {})),
        training_rows=_training_rows(run, state, results),
        headline=list(HEADLINE.values()),
        comparison=[(who, arch, [_fmt(values.get(name)) for name in HEADLINE]) for who, arch, values in comparison],
        per_class=per_class,
        repo=run["hub_model_id"] or str(folder.resolve()),
        remote_code="AutoModelForSemanticSegmentation" in config.get("auto_map", {}),
    )
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hf_heteroakd.card",
        description="Re-render README.md (the model card) of a finished hf_heteroakd run from its output folder.",
    )
    parser.add_argument("output_dir", help="the run's --output_dir (holds heteroakd_run.json and the saved student)")
    parser.add_argument("--teacher_results", help="the teacher's results on the same split, shown next to the "
                        "student's: a run's output folder or a JSON file such as {\"mean_iou\": 0.71}")
    parser.add_argument("--baseline_results", help="the same student trained without distillation "
                        "(--distill_method none), on the same split: an output folder or a JSON file")
    parser.add_argument("--hub_model_id", help="the Hub repo the card's usage snippet loads from (default: as "
                        "recorded by the run, else the local folder)")
    parser.add_argument("--license", help="the license in the card's metadata (default: as recorded, apache-2.0)")
    args = parser.parse_args(argv)
    try:
        update_card(args.output_dir, args.teacher_results, args.baseline_results, args.hub_model_id, args.license)
    except HeteroAKDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {os.path.join(args.output_dir, 'README.md')}")
    return 0


def update_card(
    output_dir: str,
    teacher_results: str | None = None,
    baseline_results: str | None = None,
    hub_model_id: str | None = None,
    license: str | None = None,
) -> ModelCard:
    """Records what is given (results: a run's folder or a JSON file) in the run's summary, then
    re-renders and saves ``output_dir/README.md``."""
    summary_path = Path(output_dir, RUN_SUMMARY_NAME)
    run = _read_json(summary_path)
    updates = {
        "teacher": read_results(teacher_results) if teacher_results else None,
        "baseline": read_results(baseline_results) if baseline_results else None,
    }
    if run and (any(updates.values()) or hub_model_id or license):
        run["comparison"].update({who: values for who, values in updates.items() if values})
        run["hub_model_id"] = hub_model_id or run["hub_model_id"]
        run["license"] = license or run["license"]
        summary_path.write_text(json.dumps(run, indent=2) + "\n")
    card = render_card(output_dir)
    card.save(os.path.join(output_dir, "README.md"))
    return card


if __name__ == "__main__":
    sys.exit(main())
