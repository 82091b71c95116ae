"""The benchmark scripts run end to end at tiny sizes and print their headline line.

Their figures are measured, never asserted: these tests only keep the scripts from rotting.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_benchmark(script: str, *args: str, tmp_path: Path) -> list[str]:
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout.strip().splitlines()


def test_bench_metric_checks_equality_and_prints_ratios(tmp_path):
    lines = run_benchmark(
        "bench_metric.py",
        "--images",
        "3",
        "--batch",
        "2",
        "--height",
        "24",
        "--width",
        "40",
        "--classes",
        "5",
        "--repeats",
        "1",
        tmp_path=tmp_path,
    )
    assert lines[0].startswith("3 predictions of 24x40 (int64), 5 classes")
    ratios = r"[\d.]+x as fast as .+ \([\d.]+x at 1 thread\)"
    assert re.fullmatch(rf"identical results; streaming is {ratios}", lines[-1]), lines[-1]


@pytest.mark.parametrize("extra", [[], ["--teacher", "b1", "--student", "mobilenetv2_100", "--channels_last"]])
def test_bench_step_prints_every_variant_and_the_ratios(tmp_path, extra):
    lines = run_benchmark(
        "bench_step.py",
        "--batch",
        "2",
        "--height",
        "32",
        "--width",
        "64",
        "--repeats",
        "1",
        "--warmup",
        "1",
        *extra,
        tmp_path=tmp_path,
    )
    teacher, student = (extra[1], extra[3]) if extra else ("b0", "resnet18")
    assert f"Segformer-{teacher}-sized teacher -> {student} student" in lines[0]
    for variant in ("(a) student alone", "(b) + teacher forward", "(c) + L_kd (vanilla KD)", "(d) + HeteroAKD"):
        assert any(line.startswith(variant) for line in lines), variant
    assert ("(d) channels_last / (d) + HeteroAKD" in "\n".join(lines)) == bool(extra)
    assert re.fullmatch(r"HeteroAKD step / vanilla-KD step \(d/c\) = [\d.]+; .+ \(d/b\) = [\d.]+", lines[-1])


def test_bench_data_prints_throughput(tmp_path):
    lines = run_benchmark(
        "bench_data.py",
        "--images",
        "2",
        "--height",
        "64",
        "--width",
        "128",
        "--crop",
        "32",
        "64",
        "--passes",
        "1",
        tmp_path=tmp_path,
    )
    assert re.search(r"[\d.]+ images/s", lines[-1]), lines[-1]


def test_bench_eval_prints_both_splits_and_the_ratios(tmp_path):
    lines = run_benchmark(
        "bench_eval.py",
        "--images",
        "3",
        "--height",
        "32",
        "--width",
        "64",
        "--batch",
        "2",
        "--panels",
        "2",
        tmp_path=tmp_path,
    )
    for split, line in zip(("equal sizes", "three sizes"), lines[-3:-1]):
        assert re.fullmatch(rf"{split}: batch 2 / batch 1 = [\d.]+x images/s, mean IoU changed by [\d.e+-]+", line)
    drawing = re.fullmatch(
        r"drawing 2 panels: ([\d.]+) s per evaluation = the time of ([\d.]+) evaluated images", lines[-1]
    )
    assert drawing and float(drawing[1]) > 0, lines[-1]
