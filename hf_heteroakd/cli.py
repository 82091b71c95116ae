"""Command-line entry points of ``recipes/``: parse the flags, run, report an input error in one line."""

from __future__ import annotations

import dataclasses
import difflib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .core.errors import HeteroAKDError
from .core.file_checks import read_recipe
from .evaluation.arguments import EvaluationArguments
from .evaluation.evaluate_model import run_evaluation
from .evaluation.predict import PredictArguments, run_prediction
from .pipeline import run_distillation
from .training.argument_checks import ArgumentParser
from .training.arguments import DataArguments, ModelArguments
from .training.config import HeteroAKDConfig

# Flags that transformers removed, and what replaced them.
REMOVED_FLAGS = {
    "logging_dir": "transformers 5 removed it: set TensorBoard's folder with the TENSORBOARD_LOGGING_DIR "
    "environment variable",
}


def parse_args(argv: list[str] | None = None, dataclass_types: tuple[type, ...] | None = None) -> tuple[Any, ...]:
    """Flags, or one ``.yaml`` / ``.json`` file holding them, into ``dataclass_types`` (default: the
    distillation recipe's ``ModelArguments``, ``DataArguments``, ``HeteroAKDConfig``). A flag or key that
    none of them has is a :class:`HeteroAKDError` naming the closest flag."""
    dataclass_types = dataclass_types or (ModelArguments, DataArguments, HeteroAKDConfig)
    parser = ArgumentParser(dataclass_types)
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and Path(argv[0]).suffix in (".yaml", ".yml", ".json"):
        path = Path(argv[0])
        if path.is_file():  # read once: its keys are checked, then parsed (a missing file is the parser's error)
            values = read_recipe(path)
            if not isinstance(values, dict):
                raise HeteroAKDError(
                    f"the recipe {path} holds a {type(values).__name__}, not flag names with their values: write "
                    "one `flag_name: value` per line"
                )
            known = {field.name for cls in dataclass_types for field in dataclasses.fields(cls) if field.init}
            if unknown := [key for key in values if key not in known]:
                raise unknown_flag_error(f"--{unknown[0]}", parser, f" (a key of {path})")
            return parser.parse_dict(values)
        if path.suffix == ".json":
            return parser.parse_json_file(path)
        return parser.parse_yaml_file(path)
    *parsed, remaining = parser.parse_args_into_dataclasses(args=argv, return_remaining_strings=True)
    if remaining:
        flag = next((arg for arg in remaining if arg.startswith("-")), remaining[0])
        raise unknown_flag_error(flag.split("=", 1)[0], parser)
    return tuple(parsed)


def unknown_flag_error(flag: str, parser: ArgumentParser, where: str = "") -> HeteroAKDError:
    """``unknown flag --x; did you mean --y?``, or what replaced a flag that transformers removed."""
    name = flag.lstrip("-")
    if name in REMOVED_FLAGS:
        return HeteroAKDError(f"unknown flag {flag}{where}: {REMOVED_FLAGS[name]}")
    if not flag.startswith("-"):
        return HeteroAKDError(f"unexpected argument {flag!r}: every value follows its --flag (see --help)")
    options = [option for action in parser._actions for option in action.option_strings if option.startswith("--")]
    close = difflib.get_close_matches(f"--{name}", options, n=1)
    hint = f"; did you mean {close[0]}?" if close else "; --help lists the flags"
    if name in training_flags():  # given to evaluate or predict, which read only their own flags
        hint = f" (a flag of recipes/run_distill.py, which trains; this command does not read it){hint}"
    return HeteroAKDError(f"unknown flag {flag}{where}{hint}")


def training_flags() -> set[str]:
    """The flags of ``recipes/run_distill.py``, by name."""
    return {f.name for cls in (ModelArguments, DataArguments, HeteroAKDConfig) for f in dataclasses.fields(cls)}


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
    return run_command(run_evaluation, (EvaluationArguments,), argv)


def predict_main(argv: list[str] | None = None) -> int:
    """``recipes/predict.py``: predict masks, colour masks and overlays of one's own images."""
    return run_command(run_prediction, (PredictArguments,), argv)
