"""The distilled student's model card, rendered from ``model_cards/student_card.md``.

A run saves ``heteroakd_run.json`` (models, data, loss weights, training setup, hardware) next to
the student; the card is rendered from that file and the Trainer's own result files
(``eval_results.json`` / ``all_results.json``, ``trainer_state.json``, ``config.json``), so

    python -m hf_heteroakd.reporting.card <output_dir>

re-renders ``README.md`` from a finished run's folder alone, optionally adding the teacher's and
the undistilled baseline's results for comparison.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..core.errors import HeteroAKDError
from ..evaluation.tables import HEADLINE, headline, per_class_iou, per_class_rows, score_cell, table_cell
from .card_figures import FIGURES, write_figures

TEMPLATE_NAME = "student_card.md"
RUN_SUMMARY_NAME = "heteroakd_run.json"


def template_path() -> Path:
    """The card template: in the source tree, or where ``pip install`` put the data files."""
    for folder in (
        Path(__file__).resolve().parents[2] / "model_cards",
        Path(sys.prefix) / "share/hf_heteroakd/model_cards",
    ):
        if (folder / TEMPLATE_NAME).is_file():
            return folder / TEMPLATE_NAME
    raise HeteroAKDError(f"the model card template {TEMPLATE_NAME} is missing; reinstall hf-heteroakd")


def write_model_card(output_dir: str, summary: dict[str, Any]) -> ModelCard:
    """Saves ``summary`` (a :func:`~hf_heteroakd.reporting.run_summary.run_summary`) as ``heteroakd_run.json`` and
    renders ``README.md`` and its figures into the finished run's ``output_dir``.

    Call it after the Trainer saved its results there.
    """
    Path(output_dir, RUN_SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    write_figures(output_dir, summary["comparison"].get("teacher_per_class"))
    card = render_card(output_dir)
    card.save(os.path.join(output_dir, "README.md"))
    return card


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


def _read_run(folder: Path) -> dict[str, Any]:
    """The run summary of a finished run's ``folder``."""
    run = _read_json(folder / RUN_SUMMARY_NAME)
    if not run:
        raise HeteroAKDError(
            f"{folder} has no {RUN_SUMMARY_NAME}: pass the output folder of a finished hf_heteroakd run "
            "(trained with --do_train by this version)"
        )
    return run


def _results_file(path: str) -> Path:
    """A run folder's results file (eval_results.json, else all_results.json), or ``path`` itself."""
    source = Path(path)
    if source.is_dir():
        return next(
            (source / n for n in ("eval_results.json", "all_results.json") if (source / n).is_file()),
            source / "eval_results.json",
        )
    return source


def read_results(path: str) -> dict[str, float]:
    """The headline metrics of a run's folder (its eval results) or of a JSON file of metrics."""
    source = _results_file(path)
    if not source.is_file():
        raise HeteroAKDError(
            f'{path} holds no results: pass a run\'s output folder or a JSON file like {{"mean_iou": 0.71}}'
        )
    found = headline(_read_json(source))
    if found is None:
        raise HeteroAKDError(
            f"{source} has none of {', '.join(HEADLINE)} (with or without the eval_ prefix); "
            "pass the results of an evaluated run"
        )
    return found


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _named(summary: dict[str, Any] | None, kind: str) -> str:
    """Markdown naming a model or dataset: a Hub link, or a local folder's name."""
    if summary is None:
        return "—"
    name, repo = summary.get("name") or summary.get("dataset"), summary.get("hub_id")
    if repo:
        return f"[`{repo}`](https://huggingface.co/{'datasets/' if kind == 'dataset' else ''}{repo})"
    return f"`{Path(name).name}` (a local {'dataset' if kind == 'dataset' else 'checkpoint'})"


def _method_rows(distill: dict[str, Any], setting_help: dict[str, str]) -> list[tuple[str, str]]:
    """(setting, value) rows of the card: each config field of the method, named by its help text."""

    def shown(value: Any) -> str:
        if isinstance(value, bool):
            return "on" if value else "off"
        if isinstance(value, list):
            return ", ".join(map(str, value))
        return "unset" if value is None else str(value)

    return [
        (f"{table_cell(setting_help.get(name, name))} (`{name}`)", table_cell(shown(value)))
        for name, value in distill.items()
        if name != "method"
    ]


def _training_rows(run: dict[str, Any], state: dict[str, Any], results: dict[str, Any]) -> list[tuple[str, Any]]:
    train, data = run["training"], run["data"]
    per_device, devices, accumulation = (
        train["per_device_train_batch_size"],
        train["world_size"],
        train["gradient_accumulation_steps"],
    )
    height, width = data["crop_size"]
    scale_low, scale_high = data["scale_range"]
    rows = [
        (
            "optimizer steps",
            f"{state.get('global_step', train['max_steps'])}"
            + (f" ({state['epoch']:.2f} epochs)" if state.get("epoch") else ""),
        ),
        (
            "batch size",
            f"{per_device} per device × {devices} device(s) × {accumulation} accumulation step(s) "
            f"= {per_device * devices * accumulation}",
        ),
        *(
            [
                (
                    "BatchNorm statistics",
                    "over all devices (SyncBatchNorm)" if train.get("sync_batchnorm") else "per device",
                )
            ]
            if devices > 1
            else []
        ),
        (
            "augmentation",
            "none (whole images)"
            if data.get("no_augmentation")
            else f"random scale {scale_low}–{scale_high}, {height}×{width} crop, horizontal flip"
            + (", photometric distortion" if data.get("photometric_distortion") else ""),
        ),
        (
            "learning rate",
            f"{train['learning_rate']} ({train['lr_scheduler_type']} schedule, warmup {train['warmup_steps']})",
        ),
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
            task_type="image-segmentation",
            task_name="Semantic segmentation",
            dataset_type=dataset_label,
            dataset_name=dataset_label,
            dataset_config=data["config_name"],
            dataset_split=data["eval_split"],
            metric_type=name,
            metric_name=HEADLINE[name],
            metric_value=value,
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
        rows.append(
            ("the same student trained without distillation", student["architecture"], run["comparison"]["baseline"])
        )
    return rows


def render_card(output_dir: str) -> ModelCard:
    """The card of the finished run in ``output_dir``, from its files alone (nothing is written)."""
    folder = Path(output_dir)
    run = _read_run(folder)
    config = _read_json(folder / "config.json")
    results = {**_read_json(folder / "all_results.json"), **_read_json(folder / "eval_results.json")}
    state = _read_json(folder / "trainer_state.json")
    student, teacher, data, distill = run["student"], run["teacher"], run["data"], run["distillation"]
    model_name = (run["hub_model_id"] or folder.resolve().name).split("/")[-1]
    dataset_label = data["hub_id"] or Path(data["dataset"]).name

    scores = headline(results) or {}
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
        comparison=[(who, arch, [score_cell(values.get(n)) for n in HEADLINE]) for who, arch, values in comparison],
        per_class=per_class,
        figures=[(caption, name) for name, caption in FIGURES.items() if (folder / name).is_file()],
        repo=run["hub_model_id"] or str(folder.resolve()),
        remote_code="AutoModelForSemanticSegmentation" in config.get("auto_map", {}),
    )
    return card


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hf_heteroakd.reporting.card",
        description="Re-render README.md (the model card) of a finished hf_heteroakd run from its output folder.",
    )
    parser.add_argument("output_dir", help="the run's --output_dir (holds heteroakd_run.json and the saved student)")
    parser.add_argument(
        "--teacher_results",
        help="the teacher's results on the same split, shown next to the "
        "student's: a run's output folder or a JSON file such as {\"mean_iou\": 0.71}",
    )
    parser.add_argument(
        "--baseline_results",
        help="the same student trained without distillation "
        "(--distill_method none), on the same split: an output folder or a JSON file",
    )
    parser.add_argument(
        "--hub_model_id",
        help="the Hub repo the card's usage snippet loads from (default: as "
        "recorded by the run, else the local folder)",
    )
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
    re-renders and saves ``output_dir/README.md`` and its figures."""
    run = _read_run(Path(output_dir))
    if teacher_results:
        run["comparison"]["teacher"] = read_results(teacher_results)
        run["comparison"]["teacher_per_class"] = per_class_iou(_read_json(_results_file(teacher_results)))
    if baseline_results:
        run["comparison"]["baseline"] = read_results(baseline_results)
    run["hub_model_id"] = hub_model_id or run["hub_model_id"]
    run["license"] = license or run["license"]
    return write_model_card(output_dir, run)


if __name__ == "__main__":
    sys.exit(main())
