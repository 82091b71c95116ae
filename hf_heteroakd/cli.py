"""Command-line entry points of ``recipes/``: parse the flags, run, report an input error in one line."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .argument_checks import ArgumentParser
from .arguments import DataArguments, ModelArguments
from .config import HeteroAKDConfig
from .errors import HeteroAKDError
from .evaluation import EvaluationArguments, run_evaluation
from .pipeline import run_distillation
from .predict import PredictArguments, run_prediction


def parse_args(argv: list[str] | None = None, dataclass_types: tuple[type, ...] | None = None) -> tuple[Any, ...]:
    """Flags, or one ``.yaml`` / ``.json`` file holding them, into ``dataclass_types`` (default: the
    distillation recipe's ``ModelArguments``, ``DataArguments``, ``HeteroAKDConfig``)."""
    parser = ArgumentParser(dataclass_types or (ModelArguments, DataArguments, HeteroAKDConfig))
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and Path(argv[0]).suffix in (".yaml", ".yml"):
        return parser.parse_yaml_file(argv[0])
    if len(argv) == 1 and Path(argv[0]).suffix == ".json":
        return parser.parse_json_file(argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def run_command(run: Callable[..., Any], dataclass_types: tuple[type, ...], argv: list[str] | None = None) -> int:
    """``run(*parsed arguments)``, never ending in a traceback unless ``HETEROAKD_DEBUG=1`` asks for it.

    A problem with the input (:class:`HeteroAKDError`) is one ``error:`` line naming it and its fix, exit
    code 2; any other exception is a bug of this tool, said so in one line, exit code 1.
    """
    debug = os.environ.get("HETEROAKD_DEBUG") == "1"
    try:
        run(*parse_args(argv, dataclass_types))
    except HeteroAKDError as err:
        if debug:
            raise
        # On a line of its own, even after an unfinished progress bar.
        print(f"\nerror: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug:
            raise
        print("\ninterrupted", file=sys.stderr)
        return 130
    # The one place that turns any other failure into a line.
    except Exception as err:  # noqa: BLE001
        if debug:
            raise
        first_line = (str(err).splitlines() or [""])[0]
        print(
            f"\nerror: hf-heteroakd failed with {type(err).__name__}: {first_line}. This is a bug of hf-heteroakd, "
            "not of your input: please report it with the command you ran; HETEROAKD_DEBUG=1 shows the traceback",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """``recipes/run_distill.py``: distill (or train, or evaluate) a student."""
    return run_command(run_distillation, (ModelArguments, DataArguments, HeteroAKDConfig), argv)


def evaluate_main(argv: list[str] | None = None) -> int:
    """``recipes/evaluate_model.py``: evaluate a saved or Hub model on a dataset, without training."""
    return run_command(run_evaluation, (EvaluationArguments, DataArguments, HeteroAKDConfig), argv)


def predict_main(argv: list[str] | None = None) -> int:
    """``recipes/predict.py``: predict masks, colour masks and overlays of one's own images."""
    return run_command(run_prediction, (PredictArguments,), argv)
