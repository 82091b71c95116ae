"""Command-line entry point shared by ``recipes/run_distill.py``: parse, run, report errors in one line."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from transformers import HfArgumentParser

from .config import HeteroAKDConfig
from .errors import HeteroAKDError
from .pipeline import DataArguments, ModelArguments, run_distillation


def parse_args(argv: list[str] | None = None) -> tuple[ModelArguments, DataArguments, HeteroAKDConfig]:
    """Flags, or one ``.yaml`` / ``.json`` file holding them."""
    parser = HfArgumentParser((ModelArguments, DataArguments, HeteroAKDConfig))
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and Path(argv[0]).suffix in (".yaml", ".yml"):
        return parser.parse_yaml_file(argv[0])
    if len(argv) == 1 and Path(argv[0]).suffix == ".json":
        return parser.parse_json_file(argv[0])
    return parser.parse_args_into_dataclasses(args=argv)


def main(argv: list[str] | None = None) -> int:
    """Runs the recipe; a problem with the input is one ``error:`` line and exit code 2
    (with HETEROAKD_DEBUG=1 it is raised instead, with its traceback)."""
    try:
        run_distillation(*parse_args(argv))
    except HeteroAKDError as err:
        if os.environ.get("HETEROAKD_DEBUG") == "1":
            raise
        # On a line of its own, even after an unfinished progress bar.
        print(f"\nerror: {err}", file=sys.stderr)
        return 2
    return 0
