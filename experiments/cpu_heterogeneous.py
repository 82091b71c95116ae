#!/usr/bin/env python
"""Does HeteroAKD beat the student alone, KD and CWD? A paired experiment at CPU scale.

    python experiments/cpu_heterogeneous.py [--quick] [--ablations] [--output_dir outputs/cpu_heterogeneous]

1. writes the synthetic shapes dataset (``hf_heteroakd.data.synthetic``) with three splits: train,
   validation (the development split, on which the settings were chosen) and test (held out: the
   table is measured on it and nothing was chosen by looking at it);
2. trains a Segformer teacher (a Transformer whose last stage is finer than the student's) once,
   then caches its outputs on the training images, so that no student step runs the teacher;
3. trains a DeepLabV3-ResNet-18 student (a CNN, output stride 8: an 8×8 distilled grid) from scratch
   in each arm, with every seed: within a seed all arms start from the same weights and see the same
   batches (paired seeds);
4. a go/no-go check after the first seed: the teacher leads the student alone by at least
   ``MIN_TEACHER_LEAD`` on the development split, and at step 100 the teacher's projected map is
   more accurate than the student's. If either fails, ``results.md`` says "inconclusive" instead
   of a table;
5. writes ``results.md`` (the table of held-out mIoU with paired differences, mean ± standard
   error over seeds), ``results.json`` (every run, its curve and its diagnostics) and
   ``miou_vs_steps.png`` to the output folder.

Each arm uses the defaults of ``HeteroAKDConfig`` and changes only what its name says. Every run
goes through ``hf_heteroakd.pipeline.run_distillation``, the code path of ``recipes/run_distill.py``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import logging
import math
import statistics
import time
from pathlib import Path
from typing import Any

from transformers import SegformerForSemanticSegmentation, SegformerImageProcessor

from hf_heteroakd.data.synthetic import CLASS_NAMES, make_synthetic_dataset
from hf_heteroakd.demo import tiny_segformer
from hf_heteroakd.evaluation.evaluate_model import evaluate_saved_student
from hf_heteroakd.pipeline import DataArguments, ModelArguments, run_distillation
from hf_heteroakd.training.config import HeteroAKDConfig

logger = logging.getLogger(__name__)

# Arm → the run_distill.py flags that differ from the defaults.
MAIN_ARMS: dict[str, dict[str, Any]] = {
    "none": {"distill_method": "none"},
    "kd": {"distill_method": "kd"},
    "cwd": {"distill_method": "cwd"},
    "heteroakd": {"distill_method": "heteroakd"},
    "heteroakd_lambda_hakd_0": {"distill_method": "heteroakd", "lambda_hakd": 0.0},  # without L_hakd itself
}
ABLATION_ARMS: dict[str, dict[str, Any]] = {  # with --ablations
    "heteroakd_no_kmm": {"distill_method": "heteroakd", "kmm": False},
    "heteroakd_no_kem": {"distill_method": "heteroakd", "kem": False},
    # Z^S the student's own logits: L_hakd trains the layers that predict (compared on their 8×8 grid, or 64×64).
    "heteroakd_logits": {"distill_method": "heteroakd", "student_projector": "none"},
    "heteroakd_logits_label_grid": {"distill_method": "heteroakd", "student_projector": "none", "hakd_stride": 1},
}
ARMS = MAIN_ARMS | ABLATION_ARMS
BASELINES = ("none", "kd", "cwd")
MIN_TEACHER_LEAD = 0.15
PLATEAU_GAIN = 0.005  # the student alone has plateaued when it gains less than this over its last quarter of steps
CHECK_STEP = 100
DIAGNOSTICS = (
    "hakd_s_t",
    "hakd_h_gap",
    "hakd_w_max",
    "hakd_acc_teacher",
    "hakd_acc_student",
    "hakd_grad_norm_ratio",
    "hakd_grad_cosine",
)
# --quick: for development; the settings of the table are the defaults of run_experiment.
QUICK = {"seeds": [0, 1], "student_steps": 150, "eval_steps": 50, "eval_split": "validation"}


def teacher_init(num_labels: int) -> SegformerForSemanticSegmentation:
    """The demo's tiny Segformer, randomly initialised, with patch embeddings that stride 2, 2, 2, 1: on
    64-pixel images its stages are 32, 16, 8 and 8 pixels wide, the last finer than the student's 4×4 grid."""
    return tiny_segformer(num_labels, patch_sizes=[3, 3, 3, 3], strides=[2, 2, 2, 1])


def training_args(
    output_dir: Path, steps: int, learning_rate: float, seed: int, eval_steps: int, batch_size: int, **options: Any
) -> HeteroAKDConfig:
    return HeteroAKDConfig(
        output_dir=str(output_dir),
        max_steps=steps,
        learning_rate=learning_rate,
        seed=seed,
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=32,
        lr_scheduler_type="polynomial",
        warmup_steps=0.05,
        logging_steps=min(eval_steps, CHECK_STEP),
        eval_strategy="steps",
        eval_steps=eval_steps,
        save_strategy="no",
        report_to="none",
        do_train=True,
        do_eval=True,
        dataloader_num_workers=0,
        overwrite_output_dir=True,
        disable_tqdm=True,
        **options,
    )


def arm_flags(arm: str, options: dict[str, Any], teacher_cache: Path) -> dict[str, Any]:
    """The flags of one arm's run: ``options`` (``--set``) in every distilling arm, under the arm's own
    flags, so that an arm keeps what its name says (λ2 = 0 under ``--set lambda_hakd=1``)."""
    flags = dict(ARMS[arm])
    if flags["distill_method"] == "none":
        return flags
    cache = "heteroakd" if flags["distill_method"] == "heteroakd" else "logits"
    return {**options, **flags, "teacher_logits_cache": str(teacher_cache / cache)}


def run_log(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """(step, value) series of the run's evaluations (``eval_mean_iou``) and training diagnostics."""
    history = json.loads((run_dir / "trainer_state.json").read_text())["log_history"]
    keys = ("eval_mean_iou", *DIAGNOSTICS)
    return {key: [(entry["step"], entry[key]) for entry in history if key in entry] for key in keys}


def paired_difference(a: list[float], b: list[float]) -> dict[str, float]:
    """Mean and standard error of the per-seed differences a − b (seeds in the same order)."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    se = statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) > 1 else float("nan")
    return {"mean": statistics.mean(diffs), "se": se, "n": len(diffs)}


def summarize(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Per arm: the mean and standard error of the final mIoU, and its paired differences with each baseline."""
    summary = {}
    for arm, seeds in runs.items():
        finals = [run["mean_iou"] for run in seeds]
        se = statistics.stdev(finals) / math.sqrt(len(finals)) if len(finals) > 1 else float("nan")
        summary[arm] = {
            "mean": statistics.mean(finals),
            "se": se,
            "n": len(finals),
            "vs": {
                base: paired_difference(finals, [run["mean_iou"] for run in runs[base]])
                for base in BASELINES
                if base in runs and base != arm
            },
        }
    return summary


def _difference_cell(diff: dict[str, float] | None) -> str:
    if diff is None:
        return "—"
    mark = " **" if diff["mean"] > 2 * diff["se"] else ""
    return f"{diff['mean']:+.4f} ± {diff['se']:.4f}{mark}"


def markdown_table(summary: dict[str, dict[str, Any]], teacher_miou: float, split: str = "test") -> str:
    """Mean ± SE of each arm and its paired differences with the baselines; ** marks a mean > 2 SE."""
    bases = [base for base in BASELINES if base in summary]

    def row(cells: list[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    lines = [
        row(["arm", f"{split} mIoU (mean ± SE)", *(f"Δ vs {base}" for base in bases)]),
        row(["---"] * (2 + len(bases))),
    ]
    for arm, s in summary.items():
        cells = [_difference_cell(s["vs"].get(base)) for base in bases]
        lines.append(row([arm, f"{s['mean']:.4f} ± {s['se']:.4f}", *cells]))
    lines.append(row(["*teacher (Segformer)*", f"{teacher_miou:.4f}", *([""] * len(bases))]))
    return "\n".join(lines)


def verdict(summary: dict[str, dict[str, Any]]) -> list[str]:
    """The experiment's bar, line by line: HeteroAKD above none and kd by 2 SE of the paired differences,
    and not below CWD."""
    if "heteroakd" not in summary:
        return []
    h = summary["heteroakd"]
    lines = []
    for base in ("none", "kd"):
        if base in h["vs"]:
            d = h["vs"][base]
            met = "met" if d["mean"] > 2 * d["se"] else "not met"
            lines.append(f"- heteroakd − {base}: {d['mean']:+.4f} ± {d['se']:.4f} (bar: > 2 SE, {met})")
    if "cwd" in h["vs"]:
        d = h["vs"]["cwd"]
        lines.append(
            f"- heteroakd − cwd: {d['mean']:+.4f} ± {d['se']:.4f} (bar: ≥ 0, {'met' if d['mean'] >= 0 else 'not met'})"
        )
    return lines


def plot(runs: dict[str, list[dict[str, Any]]], teacher_miou: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def mean_curve(seeds: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
        curves = [run["log"][key] for run in seeds if run["log"].get(key)]
        if not curves:
            return [], []
        return [step for step, _ in curves[0]], [statistics.mean(v for _, v in points) for points in zip(*curves)]

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for arm, seeds in runs.items():
        steps, mean = mean_curve(seeds, "eval_mean_iou")
        left.plot(steps, mean, marker="o", markersize=3, label=arm)
    left.axhline(teacher_miou, color="black", linestyle="--", linewidth=1, label="teacher")
    left.set(
        xlabel="student training step",
        ylabel="held-out mIoU (mean over seeds)",
        title="Segformer teacher → DeepLabV3-ResNet-18 student",
    )
    left.grid(alpha=0.3)
    left.legend(fontsize=7)
    for key, style in (("hakd_acc_teacher", "-"), ("hakd_acc_student", "--"), ("hakd_s_t", ":")):
        steps, mean = mean_curve(runs.get("heteroakd", []), key)
        if steps:
            right.plot(steps, mean, style, label=key.removeprefix("hakd_"))
    right.set(
        xlabel="student training step",
        ylabel="mean over labelled pixels and seeds",
        title="heteroakd: projected-map accuracy and KMM's S_T",
    )
    right.grid(alpha=0.3)
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plateau_gain(seeds: list[dict[str, Any]]) -> float | None:
    """The mean over seeds of what a run's held-out mIoU gained over its last quarter of steps; None when its
    curve has no evaluation at or before three quarters of its steps."""
    gains = []
    for run in seeds:
        curve = run["log"]["eval_mean_iou"]
        last_step = curve[-1][0]
        earlier = [value for step, value in curve if step <= 0.75 * last_step]
        if not earlier:
            return None
        gains.append(curve[-1][1] - earlier[-1])
    return statistics.mean(gains)


def plateau_line(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Whether the student alone had plateaued: the criterion and what it measured."""
    gain = plateau_gain(runs["none"]) if "none" in runs else None
    if gain is None:
        return "- plateau: not measured (no `none` arm, or no evaluation at three quarters of the steps)"
    met = "met" if gain < PLATEAU_GAIN else "not met"
    return (
        f"- plateau: `none` gains {gain:+.4f} mIoU over its last quarter of steps (criterion < {PLATEAU_GAIN}: {met})"
    )


def go_no_go(
    teacher_dev: float, alone_dev: float, heteroakd_log: dict[str, list[tuple[int, float]]] | None
) -> list[str]:
    """The reasons the experiment cannot show a transfer of knowledge; empty when it can."""
    failures = []
    if teacher_dev - alone_dev < MIN_TEACHER_LEAD:
        failures.append(
            f"the teacher leads the student alone by {teacher_dev - alone_dev:.4f} mIoU on the "
            f"development split, less than {MIN_TEACHER_LEAD}"
        )
    if heteroakd_log is not None:
        at = {key: dict(heteroakd_log[key]).get(CHECK_STEP) for key in ("hakd_acc_teacher", "hakd_acc_student")}
        if None in at.values() or at["hakd_acc_teacher"] <= at["hakd_acc_student"]:
            failures.append(
                f"at step {CHECK_STEP} the teacher's projected map is not more accurate than the "
                f"student's ({at['hakd_acc_teacher']} vs {at['hakd_acc_student']})"
            )
    return failures


def make_data(data_dir: Path, num_train: int, num_validation: int, num_test: int) -> Path:
    """The synthetic dataset, written once: a folder written again would get a new fingerprint, and the
    teacher's cached outputs would no longer match it."""
    sizes = {"num_train": num_train, "num_validation": num_validation, "num_test": num_test}
    record = data_dir / "experiment_data.json"
    if not record.is_file() or json.loads(record.read_text()) != sizes:
        make_synthetic_dataset(data_dir, **sizes)
        record.write_text(json.dumps(sizes))
    return data_dir


def train_teacher(out: Path, data_args: DataArguments, steps: int, batch_size: int) -> tuple[Path, float]:
    """The teacher, trained once with seed 0 and reused while its settings are unchanged; (folder, seconds)."""
    teacher_dir = out / "teacher"
    settings = json.loads(
        json.dumps(
            {  # as read back from the record: JSON keys are strings
                "teacher_steps": steps,
                "dataset": data_args.dataset,
                "batch_size": batch_size,
                "config": teacher_init(len(CLASS_NAMES)).config.to_diff_dict(),
            }
        )
    )
    record = teacher_dir / "experiment_teacher.json"
    if record.is_file() and json.loads(record.read_text())["settings"] == settings:
        return teacher_dir, json.loads(record.read_text())["seconds"]
    start = time.perf_counter()
    init = out / "teacher_init"
    teacher_init(len(CLASS_NAMES)).save_pretrained(init)
    SegformerImageProcessor(do_resize=False).save_pretrained(init)
    run_distillation(
        ModelArguments(student=str(init)),
        data_args,
        training_args(teacher_dir, steps, 1e-3, 0, max(steps // 4, 1), batch_size, distill_method="none"),
    )
    seconds = time.perf_counter() - start
    record.write_text(json.dumps({"settings": settings, "seconds": seconds}))
    return teacher_dir, seconds


def run_experiment(
    output_dir: str = "outputs/cpu_heterogeneous",
    arms: list[str] | None = None,
    seeds: list[int] | None = None,
    eval_split: str = "test",
    teacher_steps: int = 6000,
    student_steps: int = 600,
    eval_steps: int = 150,
    num_train: int = 2048,
    num_validation: int = 128,
    num_test: int = 256,
    batch_size: int = 8,
    student_output_stride: int = 8,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Runs the experiment; ``eval_split="validation"`` measures on the development split instead of the
    test split (to choose settings), ``options`` sets config fields in every distilling arm."""
    arms = list(MAIN_ARMS) if arms is None else arms
    seeds = [0, 1, 2, 3] if seeds is None else seeds
    options = options or {}
    out = Path(output_dir)
    start = time.perf_counter()
    data_dir = make_data(out / "data", num_train, num_validation, num_test)
    teacher_data = DataArguments(dataset=str(data_dir), crop_size=[64], scale_range=[0.75, 1.5])
    teacher_dir, teacher_seconds = train_teacher(out, teacher_data, teacher_steps, batch_size)
    teacher = {
        split: evaluate_saved_student(str(teacher_dir), str(data_dir), split)["mean_iou"]
        for split in ("validation", eval_split)
    }

    # Students train on the images as they are, so the teacher's outputs are computed once and cached.
    student_data = DataArguments(dataset=str(data_dir), eval_split=eval_split, no_augmentation=True)
    students_start = time.perf_counter()
    runs: dict[str, list[dict[str, Any]]] = {}
    failures: list[str] = []
    for seed in seeds:  # seed-major: the go/no-go check needs only the first seed
        for arm in arms:
            flags = arm_flags(arm, options, out / "teacher_cache")
            run_dir = out / "students" / arm / f"seed{seed}"
            metrics = run_distillation(
                ModelArguments(
                    teacher=str(teacher_dir),
                    student="resnet18",
                    student_pretrained_backbone=False,
                    student_output_stride=student_output_stride,
                ),
                student_data,
                training_args(run_dir, student_steps, 1e-3, seed, eval_steps, batch_size, **flags),
            )
            runs.setdefault(arm, []).append(
                {"seed": seed, "mean_iou": metrics["eval_mean_iou"], "log": run_log(run_dir)}
            )
            logger.warning("%s seed %d: %s mIoU %.4f", arm, seed, eval_split, metrics["eval_mean_iou"])
        if seed == seeds[0] and "none" in runs:
            alone_dev = evaluate_saved_student(
                str(out / "students" / "none" / f"seed{seed}"), str(data_dir), "validation"
            )["mean_iou"]
            failures = go_no_go(
                teacher["validation"], alone_dev, runs["heteroakd"][0]["log"] if "heteroakd" in runs else None
            )
            if failures:
                break

    summary = summarize(runs)
    results = {
        "teacher_mean_iou": teacher,
        "go_no_go_failures": failures,
        "summary": summary,
        "runs": runs,
        "settings": {
            "eval_split": eval_split,
            "teacher_steps": teacher_steps,
            "student_steps": student_steps,
            "seeds": seeds,
            "num_train": num_train,
            "num_validation": num_validation,
            "num_test": num_test,
            "batch_size": batch_size,
            "student_output_stride": student_output_stride,
            "options": options,
        },
        "seconds": {
            "teacher": teacher_seconds,
            "students": time.perf_counter() - students_start,
            "total": time.perf_counter() - start,
        },
    }
    (out / "results.json").write_text(json.dumps(results, indent=2))
    report = write_report(results, out)
    print(report)
    seconds = results["seconds"]
    print(
        f"teacher {seconds['teacher'] / 60:.1f} min + students {seconds['students'] / 60:.1f} min; "
        f"results.md, results.json and miou_vs_steps.png in {out}"
    )
    return results


def diagnostics_table(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Each HeteroAKD arm's diagnostics at its first and last logging step, mean over seeds."""
    lines = [
        "| arm | step | " + " | ".join(key.removeprefix("hakd_") for key in DIAGNOSTICS) + " |",
        "|---" * (2 + len(DIAGNOSTICS)) + "|",
    ]
    for arm, seeds in runs.items():
        if not seeds[0]["log"].get(DIAGNOSTICS[0]):
            continue
        for position in (0, -1):
            step = seeds[0]["log"][DIAGNOSTICS[0]][position][0]
            cells = [statistics.mean(run["log"][key][position][1] for run in seeds) for key in DIAGNOSTICS]
            lines.append(f"| {arm} | {step} | " + " | ".join(f"{value:.3f}" for value in cells) + " |")
    return "\n".join(lines)


def write_report(results: dict[str, Any], out: Path) -> str:
    """Writes results.md (the table, the bar and the diagnostics, or why it is inconclusive) and the plot."""
    split, teacher = results["settings"]["eval_split"], results["teacher_mean_iou"]
    if results["go_no_go_failures"]:
        report = "**Inconclusive**: the experiment cannot show a transfer of knowledge, because\n" + "\n".join(
            f"- {reason}" for reason in results["go_no_go_failures"]
        )
    else:
        report = "\n".join(
            [
                markdown_table(results["summary"], teacher[split], split),
                "",
                *verdict(results["summary"]),
                plateau_line(results["runs"]),
            ]
        )
    report += "\n\nDiagnostics of the HeteroAKD arms (training batches, mean over seeds):\n\n"
    report += diagnostics_table(results["runs"]) + "\n"
    (out / "results.md").write_text(report)
    plot(results["runs"], teacher[split], out / "miou_vs_steps.png")
    return report


def parse_option(text: str) -> tuple[str, Any]:
    """``name=value`` with value read as JSON when it parses (numbers, true/false), else as a string."""
    name, _, value = text.partition("=")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _shown(value: Any) -> str:
    """A flag's value as typed on the command line."""
    return " ".join(map(str, value)) if isinstance(value, list) else str(value)


def main() -> None:
    defaults = {name: parameter.default for name, parameter in inspect.signature(run_experiment).parameters.items()}
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS
    )  # a flag left out takes run_experiment's default
    parser.add_argument("--output_dir", help="Default: outputs/cpu_heterogeneous (the teacher is cached there).")
    parser.add_argument(
        "--arms",
        nargs="+",
        choices=list(ARMS),
        metavar="ARM",
        help=f"Arms to compare, of {', '.join(ARMS)} (default: {', '.join(MAIN_ARMS)}).",
    )
    parser.add_argument(
        "--ablations", action="store_true", default=False, help=f"Add the arms {', '.join(ABLATION_ARMS)}."
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        default=False,
        help="For development: " + ", ".join(f"--{name} {_shown(value)}" for name, value in QUICK.items()) + ".",
    )
    parser.add_argument("--seeds", nargs="+", type=int, help="Student seeds (default: 0 1 2 3).")
    parser.add_argument(
        "--eval_split",
        choices=["test", "validation"],
        help="test (default): the held-out report; validation: the development split, to choose settings.",
    )
    parser.add_argument(
        "--set",
        dest="options",
        nargs="+",
        type=parse_option,
        metavar="NAME=VALUE",
        help="HeteroAKDConfig fields set in every distilling arm, except a field the arm is named for "
        "(for choosing settings).",
    )
    for name in (
        "teacher_steps",
        "student_steps",
        "eval_steps",
        "num_train",
        "num_validation",
        "num_test",
        "batch_size",
        "student_output_stride",
    ):
        parser.add_argument(f"--{name}", type=int, help=f"Default: {defaults[name]}.")
    parser.add_argument(
        "--report_only",
        action="store_true",
        default=False,
        help="Rewrite results.md and the plot from the output folder's results.json; train nothing.",
    )
    args = vars(parser.parse_args())
    if "options" in args:
        args["options"] = dict(args["options"])
    if args.pop("quick"):
        args = {**QUICK, **args}
    if args.pop("ablations"):
        args.setdefault("arms", list(ARMS))
    if args.pop("report_only"):
        out = Path(args.get("output_dir", defaults["output_dir"]))
        print(write_report(json.loads((out / "results.json").read_text()), out))
        return
    run_experiment(**args)


if __name__ == "__main__":
    main()
