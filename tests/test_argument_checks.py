"""The argument checks alone (no loading, no training): every bounded flag, values drawn inside and
outside its range (hypothesis), and the flags that combine."""

from __future__ import annotations

import copy
import dataclasses
from typing import get_type_hints

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import TrainingArguments

from hf_heteroakd import HeteroAKDConfig
from hf_heteroakd.cli import parse_args, run_command
from hf_heteroakd.core.errors import HeteroAKDError
from hf_heteroakd.evaluation.arguments import EvaluationArguments
from hf_heteroakd.pipeline import DataArguments, ModelArguments
from hf_heteroakd.training.argument_checks import Bound, bound_of, check_fields

BASE = {
    ModelArguments: ModelArguments(),
    DataArguments: DataArguments(dataset="data"),
    HeteroAKDConfig: HeteroAKDConfig(output_dir="out", report_to="none"),
    EvaluationArguments: EvaluationArguments(model="model"),
}
BOUNDED = [(cls, field) for cls in BASE for field in dataclasses.fields(cls) if bound_of(field) is not None]


# Indices (checked against the models' stages once they load), not quantities.
UNRANGED = {"hakd_stages"}


def test_every_numeric_flag_of_our_dataclasses_has_a_range():
    numeric = {int, float, int | None, float | None, list[int], list[float], list[int] | None}
    inherited = {field.name for field in dataclasses.fields(TrainingArguments)}
    unbounded = [
        f"{cls.__name__}.{field.name}"
        for cls in BASE
        for field in dataclasses.fields(cls)
        if field.name not in inherited | UNRANGED
        and get_type_hints(cls)[field.name] in numeric
        and bound_of(field) is None
    ]
    assert unbounded == []
    assert len(BOUNDED) >= 30


def values(bound: Bound, inside: bool) -> st.SearchStrategy:
    """Numbers inside ``bound`` (``inside``) or outside it."""
    if bound.choices is not None:
        return (
            st.sampled_from(bound.choices) if inside else st.integers(-64, 64).filter(lambda v: v not in bound.choices)
        )
    low = -1e6 if bound.low is None else bound.low
    high = 1e6 if bound.high is None else bound.high
    if inside:
        floats = st.floats(low, high, exclude_min=bound.low_open, allow_nan=False)
        ints = st.integers(int(low) + (1 if bound.low_open and float(low).is_integer() else 0), int(high))
        return st.one_of(ints.filter(lambda v: v in bound), floats)
    below = [] if bound.low is None else [st.floats(-1e6, low, exclude_max=not bound.low_open), st.just(float("nan"))]
    above = [] if bound.high is None else [st.floats(high, 1e6, exclude_min=True)]
    return st.one_of(*below, *above)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_a_value_outside_a_range_is_an_error_naming_the_flag_and_one_inside_is_not(data):
    cls, field = data.draw(st.sampled_from(BOUNDED), label="flag")
    bound = bound_of(field)
    if bound.low is None and bound.high is None and bound.choices is None:
        return
    inside = data.draw(st.booleans(), label="inside")
    if not inside and bound.low is None and bound.high is None:
        return
    value = data.draw(values(bound, inside), label="value")
    if get_type_hints(cls)[field.name] in (list[int], list[float], list[int] | None):
        value = [value, value]
    arguments = copy.copy(BASE[cls])
    setattr(arguments, field.name, value)
    if inside:
        check_fields(arguments)
    else:
        with pytest.raises(HeteroAKDError, match=f"--{field.name} .* is out of range: it must be "):
            check_fields(arguments)


def test_help_shows_the_ranges(capsys):
    with pytest.raises(SystemExit):
        parse_args(["--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert "Range: ≥ 0." in shown and "Range: > 0." in shown and "Range: one of 8, 16, 32." in shown


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--crop_size", "0", "0"], "--crop_size 0 0 is out of range: it must be ≥ 1"),
        (["--crop_size", "1", "2", "3"], "--crop_size 1 2 3 has 3 values"),
        (["--scale_range", "2", "1"], "--scale_range 2.0 1.0: the minimum is larger than the maximum"),
        (["--scale_range", "0", "1"], "--scale_range 0.0 1.0 is out of range: it must be > 0"),
        (["--lambda_hakd", "-1"], "--lambda_hakd -1.0 is out of range: it must be ≥ 0"),
        (["--temperature", "0"], "--temperature 0.0 is out of range: it must be > 0"),
        (["--kmm_eps", "0"], "--kmm_eps 0.0 is out of range"),
        (["--eval_stride", "8"], "--eval_stride sets the step of sliding windows: add --eval_crop_size"),
        (["--eval_crop_size", "8", "--eval_stride", "9"], "--eval_stride 9 9 is larger than --eval_crop_size 8 8"),
        (["--learning_rate", "-0.1"], "--learning_rate -0.1 is out of range"),
        (["--per_device_train_batch_size", "0"], "--per_device_train_batch_size 0 is out of range: it must be ≥ 1"),
        (["--student_output_stride", "12"], "--student_output_stride 12 is out of range: it must be one of 8, 16, 32"),
    ],
)
def test_parsing_checks_each_flag(flags, message):
    with pytest.raises(HeteroAKDError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_args(["--dataset", "d", "--output_dir", "o", *flags])


def test_any_other_failure_is_one_line_that_says_it_is_a_bug(capsys):
    def broken(*arguments):
        return 1 / 0

    assert run_command(broken, (DataArguments,), ["--dataset", "d"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "ZeroDivisionError" in errors[0] and "bug of hf-heteroakd" in errors[0]
