"""The markdown reference of the recipes' flags, ``docs/cli.md``, generated from the argument dataclasses.

Every row comes from ``dataclasses.fields`` and the field metadata (``help``, ``bound``, ``methods``), so
the page cannot drift from the parser: ``python -m hf_heteroakd.cli_reference`` rewrites it, and
``--check`` (run by the tests) exits 1 when a flag was added or changed without regenerating.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import sys
import types
import typing
from pathlib import Path
from typing import Any, Literal

from transformers import TrainingArguments

from .evaluation.arguments import EvaluationArguments
from .evaluation.predict import PredictArguments
from .training.argument_checks import bound_of
from .training.arguments import DataArguments, ModelArguments
from .training.config import HeteroAKDConfig

REPO = Path(__file__).resolve().parents[1]
DOC_PATH = REPO / "docs" / "cli.md"
REGENERATE = "python -m hf_heteroakd.cli_reference"
TRAINING_ARGUMENTS_URL = "https://huggingface.co/docs/transformers/main_classes/trainer#transformers.TrainingArguments"

# The dataclasses each recipe parses, in order (as hf_heteroakd/cli.py passes them; a test checks they agree).
RECIPES: dict[str, tuple[type, ...]] = {
    "recipes/run_distill.py": (ModelArguments, DataArguments, HeteroAKDConfig),
    "recipes/evaluate_model.py": (EvaluationArguments,),
    "recipes/predict.py": (PredictArguments,),
}

NONE = "—"
HEADER = "| flag | type | default | range | description |\n|---|---|---|---|---|"

INTRO = (
    "Flags of the recipes in `recipes/`, generated from the argument dataclasses by `{regenerate}`: do not "
    "edit by hand (`{regenerate} --check` tells whether this page is current). `run_distill.py` also accepts "
    "every [`transformers.TrainingArguments`]({training_arguments_url}) flag "
    "(`--output_dir`, `--learning_rate`, `--num_train_epochs`, …), of which only the ones whose default this "
    "project changes are listed below. Each flag may also be written with dashes (`--lambda-kd`); a `bool` flag alone "
    "means true (`--eval_flip`) or takes a value (`--kmm false`), and one whose default is true also has a "
    "`--no_` form. Instead of flags, a recipe takes one `.yaml` or `.json` file whose keys are the flag names "
    "(`python recipes/run_distill.py recipes/voc_segformer-b5_to_deeplabv3-resnet18.yaml`). A value outside its "
    "range stops the run before any work, with one line naming the flag."
)


def documented_classes() -> list[type]:
    """Each recipe's dataclasses, once each, in order of first use."""
    return list(dict.fromkeys(cls for classes in RECIPES.values() for cls in classes))


def inherited_fields(cls: type) -> dict[str, dataclasses.Field]:
    """The ``TrainingArguments`` fields, by name, when ``cls`` derives from it; else none."""
    return {f.name: f for f in dataclasses.fields(TrainingArguments)} if issubclass(cls, TrainingArguments) else {}


def documented_fields(cls: type) -> list[dataclasses.Field]:
    """The flags ``cls`` declares: all its fields, less the ``TrainingArguments`` fields it inherits unchanged
    (a redeclared field is a new ``Field`` object); new flags first, then the redeclared ones."""
    inherited = inherited_fields(cls)
    declared = [f for f in dataclasses.fields(cls) if f.init and f is not inherited.get(f.name)]
    return sorted(declared, key=lambda f: f.name in inherited)


def type_name(hint: Any) -> str:
    """``hint`` as a reader writes it: ``int``, ``list[int]``, ``{ce, bce}`` (a choice); ``X | None`` is ``X``
    (None only means unset, which no flag can spell)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        return " or ".join(type_name(a) for a in kept)
    if origin is Literal:
        return "{" + ", ".join(map(str, args)) + "}"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return "{" + ", ".join(str(member.value) for member in hint) + "}"
    if origin is not None:
        return f"{origin.__name__}[{', '.join(type_name(a) for a in args)}]"
    return hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")


def default_value(field: dataclasses.Field) -> Any:
    """The field's default (``default_factory`` called), or None when it has none."""
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None if field.default is dataclasses.MISSING else field.default


def shown(value: Any) -> str:
    """A value as it is typed on the command line: lists space-separated, enums by value, ``—`` for unset."""
    if value is None:
        return NONE
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, (list, tuple)):
        return f"`{' '.join(map(str, value))}`" if value else "(empty)"
    return f"`{value}`" if str(value) else '`""`'


def cell(text: str) -> str:
    """Text safe in one table cell: one line, ``|`` escaped, and ``<`` escaped so ``<name>`` is not read as an
    HTML tag and hidden."""
    return " ".join(text.split()).replace("|", "\\|").replace("<", "\\<")


def flag_names(field: dataclasses.Field, hint: Any) -> list[str]:
    """The flags of ``field``: ``--name``, and ``--no_name`` for a bool that defaults to true (as
    ``HfArgumentParser`` adds it)."""
    boolean = hint is bool or hint == (bool | None)
    return [f"--{field.name}"] + ([f"--no_{field.name}"] if boolean and field.default is True else [])


def description(field: dataclasses.Field, inherited_default: Any) -> str:
    """The field's help, plus the methods it configures and, for a redeclared ``TrainingArguments`` field,
    the default it replaces."""
    parts = [field.metadata.get("help", "").strip()]
    if methods := field.metadata.get("methods"):
        parts.append(f"Used by `--distill_method` {', '.join(methods)}.")
    if inherited_default is not dataclasses.MISSING and inherited_default != default_value(field):
        parts.append(f"(`TrainingArguments` default: {shown(inherited_default)}.)")
    return cell(" ".join(p for p in parts if p))


def row(field: dataclasses.Field, hint: Any, inherited_default: Any) -> str:
    """One table row: flags, type, default, range, description."""
    bound = bound_of(field)
    flags = " / ".join(f"`{name}`" for name in flag_names(field, hint))
    columns = [
        flags,
        cell(type_name(hint)),
        shown(default_value(field)),
        cell(str(bound or "")),
        description(field, inherited_default),
    ]
    return "| " + " | ".join(columns) + " |"


def section(cls: type) -> str:
    """``cls``'s heading (the class, its module, the recipes that take it) and its table of flags."""
    hints = typing.get_type_hints(cls)
    # The defaults a redeclared TrainingArguments field replaces, to say so in its row.
    base = {name: default_value(f) for name, f in inherited_fields(cls).items()}
    recipes = ", ".join(f"`{path}`" for path, classes in RECIPES.items() if cls in classes)
    source = cls.__module__.replace(".", "/") + ".py"
    rows = [row(f, hints[f.name], base.get(f.name, dataclasses.MISSING)) for f in documented_fields(cls)]
    return "\n".join([f"## `{cls.__name__}` — {recipes}", "", f"Declared in `{source}`.", "", HEADER, *rows])


def cli_reference() -> str:
    """The whole of ``docs/cli.md``: title, introduction, one section per argument dataclass."""
    parts = [
        "# Command-line flags",
        INTRO.format(regenerate=REGENERATE, training_arguments_url=TRAINING_ARGUMENTS_URL),
    ]
    parts += [section(cls) for cls in documented_classes()]
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Writes ``docs/cli.md``; with ``--check``, only compares and returns 1 when it is out of date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if docs/cli.md differs from the generated text")
    args = parser.parse_args(argv)
    text, name = cli_reference(), DOC_PATH.relative_to(REPO) if DOC_PATH.is_relative_to(REPO) else DOC_PATH
    if args.check:
        current = DOC_PATH.read_text(encoding="utf-8") if DOC_PATH.is_file() else None
        if current != text:
            print(f"{name} is out of date with the argument dataclasses: run `{REGENERATE}`", file=sys.stderr)
            return 1
        return 0
    DOC_PATH.parent.mkdir(parents=True, exist_ok=True)
    DOC_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
