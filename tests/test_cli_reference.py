"""docs/cli.md is the generated flag reference: current, sensitive to a new flag, and true to the parsers."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest
from transformers import HfArgumentParser, TrainingArguments

from hf_heteroakd import cli, cli_reference
from hf_heteroakd.pipeline import DataArguments
from hf_heteroakd.training.argument_checks import COUNT, ArgumentParser

STALE = "docs/cli.md is out of date: run `python -m hf_heteroakd.cli_reference` and commit the result"


@dataclass
class DataArgumentsWithNewFlag(DataArguments):
    """A flag added to a recipe's dataclass, as a contributor would add one."""

    new_flag: int | None = field(default=None, metadata={"bound": COUNT, "help": "A new flag | with a pipe."})


def committed() -> str:
    return cli_reference.DOC_PATH.read_text(encoding="utf-8")


def documented_flags() -> dict[str, list[tuple[str, str]]]:
    """Each recipe's documented flags in docs/cli.md, each with its range cell."""
    flags: dict[str, list[tuple[str, str]]] = {recipe: [] for recipe in cli_reference.RECIPES}
    for section in committed().split("\n## ")[1:]:
        heading, *lines = section.splitlines()
        rows = [line.split(" | ") for line in lines if line.startswith("| `--")]
        for recipe in re.findall(r"`(recipes/[\w.]+)`", heading):
            flags[recipe] += [(flag, cells[3]) for cells in rows for flag in re.findall(r"`(--\w+)`", cells[0])]
    return flags


def test_committed_reference_is_current():
    assert committed() == cli_reference.cli_reference(), STALE
    assert cli_reference.main(["--check"]) == 0


def test_output_is_deterministic():
    assert cli_reference.cli_reference() == cli_reference.cli_reference()


def test_a_new_flag_changes_the_reference_so_the_check_fails(monkeypatch, capsys):
    recipes = {**cli_reference.RECIPES, "recipes/run_distill.py": (DataArgumentsWithNewFlag,)}
    monkeypatch.setattr(cli_reference, "RECIPES", recipes)
    text = cli_reference.cli_reference()
    assert "| `--new_flag` | int | — | ≥ 1 | A new flag \\| with a pipe. |" in text
    assert text != committed()  # so test_committed_reference_is_current would fail
    assert cli_reference.main(["--check"]) == 1
    message = capsys.readouterr().err.strip()
    assert len(message.splitlines()) == 1 and "python -m hf_heteroakd.cli_reference" in message


def test_main_writes_the_reference_then_check_passes(monkeypatch, tmp_path):
    monkeypatch.setattr(cli_reference, "DOC_PATH", tmp_path / "docs" / "cli.md")
    assert cli_reference.main(["--check"]) == 1  # absent
    assert cli_reference.main([]) == 0
    assert (tmp_path / "docs" / "cli.md").read_text(encoding="utf-8") == cli_reference.cli_reference()
    assert cli_reference.main(["--check"]) == 0


def test_recipes_parse_the_documented_dataclasses(monkeypatch):
    parsed: list[tuple[type, ...]] = []
    monkeypatch.setattr(cli, "run_command", lambda run, dataclass_types, argv=None: parsed.append(dataclass_types))
    cli.main([]), cli.evaluate_main([]), cli.predict_main([])
    assert parsed == list(cli_reference.RECIPES.values())


@pytest.mark.parametrize("recipe", sorted(cli_reference.RECIPES))
def test_every_documented_flag_is_accepted_with_its_range(recipe):
    actions = ArgumentParser(cli_reference.RECIPES[recipe])._option_string_actions
    flags = documented_flags()[recipe]
    assert flags
    for flag, bound in flags:
        assert flag in actions, f"{recipe} does not accept {flag}"
        if bound.strip() and not flag.startswith("--no_"):
            assert actions[flag].help.endswith(f"Range: {bound.strip()}."), flag


@pytest.mark.parametrize("recipe", sorted(cli_reference.RECIPES))
def test_every_flag_of_this_project_is_documented(recipe):
    """The reverse: each flag a recipe accepts beyond TrainingArguments' own is in the reference."""
    own = set(ArgumentParser(cli_reference.RECIPES[recipe])._option_string_actions)
    if TrainingArguments in {base for cls in cli_reference.RECIPES[recipe] for base in cls.__mro__}:
        own -= set(HfArgumentParser(TrainingArguments)._option_string_actions)
    # Not -h/--help, nor the dashed aliases (--lambda-kd) that the reference mentions once.
    own = {flag for flag in own if flag.startswith("--") and "-" not in flag[2:]} - {"--help"}
    assert own - {flag for flag, _ in documented_flags()[recipe]} == set()
