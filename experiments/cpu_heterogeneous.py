#!/usr/bin/env python
"""Does distillation work? A CPU-scale answer: a Transformer teacher, a CNN student, every method, 3 seeds.

    python experiments/cpu_heterogeneous.py [--output_dir outputs/cpu_heterogeneous]

1. writes the synthetic shapes dataset (``hf_heteroakd.synthetic``): a train split and a held-out
   validation split;
2. trains a Segformer teacher on it (``--distill_method none``), once, with seed 0;
3. trains a DeepLabV3-ResNet-18 student from scratch with each method, for the same steps and with
   the same seeds, evaluating it on the held-out split every ``--eval_steps``;
4. prints a table of the final mIoU (mean ± std over seeds) and writes ``results.json``,
   ``results.md`` and ``miou_vs_steps.png`` to the output folder.

Every run goes through ``hf_heteroakd.pipeline.run_distillation``, the code path of
``recipes/run_distill.py``. The defaults took 23 minutes on 2 CPU cores (the README has the results).
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time
from pathlib import Path
from typing import Any

from transformers import SegformerForSemanticSegmentation, SegformerImageProcessor

from hf_heteroakd.config import HeteroAKDConfig
from hf_heteroakd.demo import tiny_segformer
from hf_heteroakd.pipeline import DataArguments, ModelArguments, run_distillation
from hf_heteroakd.synthetic import CLASS_NAMES, make_synthetic_dataset

# Name → the run_distill.py flags that select it.
METHODS: dict[str, dict[str, Any]] = {
    "none": {"distill_method": "none"},
    "kd": {"distill_method": "kd"},
    "cwd": {"distill_method": "cwd"},
    "heteroakd": {"distill_method": "heteroakd"},
    "heteroakd_no_kmm": {"distill_method": "heteroakd", "kmm": False},
    "heteroakd_no_kem": {"distill_method": "heteroakd", "kem": False},
    # Not run by default: the weights the spec leaves open (λ1 = 0.1, λ2 = 1 or 10 by pair).
    "kd_lambda1": {"distill_method": "kd", "lambda_kd": 1.0},
    "heteroakd_lambda10": {"distill_method": "heteroakd", "lambda_hakd": 10.0},
}
DEFAULT_METHODS = ["none", "kd", "cwd", "heteroakd", "heteroakd_no_kmm", "heteroakd_no_kem"]


def teacher_init(num_labels: int) -> SegformerForSemanticSegmentation:
    """The demo's tiny Segformer, randomly initialised, with patch embeddings that stride 2 instead of 4
    then 2: 64-pixel images keep a 32×32 first stage, and the decoder sees finer detail."""
    return tiny_segformer(num_labels, patch_sizes=[3, 3, 3, 3], strides=[2, 2, 2, 2])


def training_args(output_dir: Path, steps: int, learning_rate: float, seed: int, eval_steps: int,
                  batch_size: int, **distillation: Any) -> HeteroAKDConfig:
    return HeteroAKDConfig(
        output_dir=str(output_dir), max_steps=steps, learning_rate=learning_rate, seed=seed,
        per_device_train_batch_size=batch_size, per_device_eval_batch_size=32, lr_scheduler_type="polynomial",
        warmup_steps=0.05, logging_steps=eval_steps, eval_strategy="steps", eval_steps=eval_steps,
        save_strategy="no", report_to="none", do_train=True, do_eval=True, dataloader_num_workers=0,
        overwrite_output_dir=True, disable_tqdm=True, **distillation,
    )


def eval_curve(run_dir: Path) -> list[tuple[int, float]]:
    """(step, mIoU) of every evaluation the run logged."""
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    return [(entry["step"], entry["eval_mean_iou"]) for entry in history if "eval_mean_iou" in entry]


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Mean and sample std over seeds of each method's final mIoU."""
    summary = {}
    for method, seeds in runs.items():
        finals = [run["mean_iou"] for run in seeds]
        std = statistics.stdev(finals) if len(finals) > 1 else 0.0
        summary[method] = {"mean": statistics.mean(finals), "std": std, "n": len(finals)}
    return summary


def markdown_table(summary: dict[str, dict[str, float]], teacher_miou: float) -> str:
    base = summary.get("none")
    lines = ["| method | mIoU (mean ± std) | Δ vs none |", "|---|---|---|"]
    for method, s in summary.items():
        delta = f"{s['mean'] - base['mean']:+.4f}" if base and method != "none" else "—"
        lines.append(f"| {method} | {s['mean']:.4f} ± {s['std']:.4f} | {delta} |")
    lines.append(f"| *teacher (Segformer)* | {teacher_miou:.4f} | |")
    return "\n".join(lines)


def plot(runs: dict[str, list[dict[str, Any]]], teacher_miou: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, seeds in runs.items():
        steps = [step for step, _ in seeds[0]["curve"]]
        values = [[miou for _, miou in run["curve"]] for run in seeds]
        mean = [statistics.mean(v) for v in zip(*values)]
        spread = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in zip(*values)]
        line = ax.plot(steps, mean, marker="o", markersize=3, label=method)[0]
        ax.fill_between(steps, [m - s for m, s in zip(mean, spread)], [m + s for m, s in zip(mean, spread)],
                        color=line.get_color(), alpha=0.15)
    ax.axhline(teacher_miou, color="black", linestyle="--", linewidth=1, label="teacher")
    ax.set_xlabel("student training step")
    ax.set_ylabel("held-out mIoU (mean ± std over seeds)")
    ax.set_title("Segformer teacher → DeepLabV3-ResNet-18 student, synthetic shapes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_experiment(
    output_dir: str = "outputs/cpu_heterogeneous",
    methods: list[str] | None = None,
    seeds: list[int] | None = None,
    teacher_steps: int = 3000,
    student_steps: int = 250,
    eval_steps: int = 50,
    num_train: int = 2048,
    num_validation: int = 128,
    batch_size: int = 8,
) -> dict[str, Any]:
    methods = DEFAULT_METHODS if methods is None else methods
    seeds = [0, 1, 2] if seeds is None else seeds
    out = Path(output_dir)
    start = time.perf_counter()
    data_dir = make_synthetic_dataset(out / "data", num_train=num_train, num_validation=num_validation)
    data_args = DataArguments(dataset=str(data_dir), crop_size=[64], scale_range=[0.75, 1.5])

    teacher_dir = out / "teacher"
    teacher_settings = {"teacher_steps": teacher_steps, "num_train": num_train, "batch_size": batch_size}
    record = teacher_dir / "experiment_teacher.json"
    if record.is_file() and json.loads(record.read_text())["settings"] == teacher_settings:
        # The same seeded teacher run again: reuse it, and count the time it took when it was trained.
        teacher_seconds = json.loads(record.read_text())["seconds"]
        teacher_metrics = json.loads((teacher_dir / "eval_results.json").read_text())
    else:
        init = out / "teacher_init"
        teacher_init(len(CLASS_NAMES)).save_pretrained(init)
        SegformerImageProcessor(do_resize=False).save_pretrained(init)
        teacher_metrics = run_distillation(
            ModelArguments(student=str(init)), data_args,
            training_args(teacher_dir, teacher_steps, 1e-3, 0, max(teacher_steps // 4, 1), batch_size,
                          distill_method="none"),
        )
        teacher_seconds = time.perf_counter() - start
        record.write_text(json.dumps({"settings": teacher_settings, "seconds": teacher_seconds}))

    students_start = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {}
    for method in methods:
        for seed in seeds:
            run_dir = out / "students" / method / f"seed{seed}"
            metrics = run_distillation(
                ModelArguments(teacher=str(teacher_dir), student="resnet18", student_pretrained_backbone=False),
                data_args,
                training_args(run_dir, student_steps, 1e-3, seed, eval_steps, batch_size, **METHODS[method]),
            )
            runs.setdefault(method, []).append(
                {"seed": seed, "mean_iou": metrics["eval_mean_iou"], "curve": eval_curve(run_dir)}
            )
            logging.getLogger(__name__).warning("%s seed %d: mIoU %.4f", method, seed, metrics["eval_mean_iou"])

    summary = summarize(runs)
    table = markdown_table(summary, teacher_metrics["eval_mean_iou"])
    results = {
        "teacher_mean_iou": teacher_metrics["eval_mean_iou"],
        "summary": summary,
        "runs": runs,
        "settings": {"teacher_steps": teacher_steps, "student_steps": student_steps, "seeds": seeds,
                     "num_train": num_train, "num_validation": num_validation, "batch_size": batch_size},
        "seconds": {"teacher": teacher_seconds, "students": time.perf_counter() - students_start},
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    (out / "results.md").write_text(table + "\n")
    plot(runs, teacher_metrics["eval_mean_iou"], out / "miou_vs_steps.png")
    print(table)
    seconds = results["seconds"]
    print(f"teacher {seconds['teacher'] / 60:.1f} min + students {seconds['students'] / 60:.1f} min; "
          f"table, results.json and miou_vs_steps.png in {out}")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default="outputs/cpu_heterogeneous")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=None, metavar="METHOD",
                        help=f"Methods to compare, of {', '.join(METHODS)} (default: {' '.join(DEFAULT_METHODS)}).")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="Student seeds (default: 0 1 2).")
    parser.add_argument("--teacher_steps", type=int, default=3000)
    parser.add_argument("--student_steps", type=int, default=250)
    parser.add_argument("--eval_steps", type=int, default=50)
    parser.add_argument("--num_train", type=int, default=2048)
    parser.add_argument("--num_validation", type=int, default=128)
    parser.add_argument("--batch_size", type=int, default=8)
    run_experiment(**vars(parser.parse_args()))


if __name__ == "__main__":
    main()
