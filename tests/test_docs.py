"""The documentation's commands and links still work as written.

Guards README.md, docs/*.md, benchmarks/README.md and experiments/README.md (globbed when the tests are
collected, so a new page is covered) against drift from the code:

- in every shell code block (```, ```bash, ```sh, ```shell, ```console), each ``python script.py``,
  ``accelerate launch ... script.py``, ``python -m hf_heteroakd.<module>`` and ``make <target>`` names a
  script, module or Makefile target that exists; each ``--flag`` it passes appears in that script's
  ``--help``; a lone ``.yaml`` / ``.json`` argument and accelerate's ``--config_file`` exist;
- every relative link and image resolves to a path inside the repository, and an ``#anchor`` into a
  markdown page names one of its headings (GitHub's slugs).

The ``--help`` texts come from one subprocess that runs each script in turn with ``runpy``, so torch and
transformers are imported once: a subprocess per script costs about 7 s each on 2 CPU cores.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[1]
DOC_PATTERNS = ("README.md", "docs/*.md", "benchmarks/README.md", "experiments/README.md")
SHELL_LANGUAGES = {"", "bash", "sh", "shell", "console"}
CONFIG_SUFFIXES = (".yaml", ".yml", ".json")
HELP_TIMEOUT_S = 120

FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})\s*([^`\s{]*)")
COMMAND_START = re.compile(r"^(?:[A-Za-z_]\w*=\S*\s+)*[\w./~$-]+(?:\s|$)")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")
PYTHON = re.compile(r"(?:\S*/)?python(?:3(?:\.\d+)?)?")
FLAG = re.compile(r"--\w[\w-]*")
SEPARATORS = {"&&", "||", ";", "|"}

INLINE_CODE = re.compile(r"(`+).*?\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+[\"'(][^)]*)?\)")
REFERENCE = re.compile(r"^ {0,3}\[[^\]^][^\]]*\]:\s*<?([^\s>]+)>?")
HTML_LINK = re.compile(r"<(?:a|img)\b[^>]*?\b(?:href|src)=[\"']([^\"']+)[\"']", re.IGNORECASE)
HTML_ANCHOR = re.compile(r"<a\b[^>]*?\b(?:name|id)=[\"']([^\"']+)[\"']", re.IGNORECASE)
EXTERNAL = re.compile(r"(?i)^(?:https?://|mailto:)")
ATX = re.compile(r"^ {0,3}#{1,6}(?:\s+(.*?))?(?:\s+#+)?\s*$")
SETEXT = re.compile(r"^ {0,3}(?:=+|-+)\s*$")
EMPHASIS_UNDERSCORE = re.compile(r"(?<!\w)_+(?=\S)|(?<=\S)_+(?!\w)")

# Runs each (kind, target) of argv[1] with --help in this one interpreter; prints a JSON line of
# {target: [exit code or error, output]}. Scripts see sys.path[0] = their folder, as `python script.py` does.
HELP_DRIVER = r"""
import contextlib, importlib.util, io, json, os, runpy, sys
sys.path = [p for p in sys.path if p not in ("", os.getcwd())]
results = {}
for kind, target in json.loads(sys.argv[1]):
    out, argv, path = io.StringIO(), sys.argv[:], sys.path[:]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            sys.argv = [target, "--help"]
            if kind == "module" and importlib.util.find_spec(target) is None:
                raise ModuleNotFoundError(f"no module named {target}")
            if kind == "module":
                runpy.run_module(target, run_name="__main__", alter_sys=True)
            else:
                sys.path.insert(0, os.path.dirname(os.path.abspath(target)))
                runpy.run_path(target, run_name="__main__")
        code = 0
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) or exit.code is None else 1
    except BaseException as err:
        code = f"{type(err).__name__}: {err}"
    finally:
        sys.argv, sys.path = argv, path
    results[target] = [code or 0, out.getvalue()]
print("HELP-JSON " + json.dumps(results))
"""


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix() if path.is_relative_to(REPO) else str(path)


def doc_files() -> list[Path]:
    return sorted({path for pattern in DOC_PATTERNS for path in REPO.glob(pattern) if path.is_file()})


def read_lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def fenced_blocks(lines: list[str]) -> Iterator[tuple[str, list[tuple[int, str]]]]:
    """(language, [(line number, line)]) of each fenced code block; an unclosed one runs to the end."""
    fence, language, body = "", "", []
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if not fence and match:
            fence, language, body = match.group(1), match.group(2).lower(), []
        elif fence and match and match.group(1).startswith(fence) and not match.group(2):
            yield language, body
            fence = ""
        elif fence:
            body.append((number, line))
    if fence:
        yield language, body


def code_line_numbers(lines: list[str]) -> set[int]:
    return {number for _, body in fenced_blocks(lines) for number, _ in body}


# ---------------------------------------------------------------- commands


@dataclass(frozen=True)
class Snippet:
    """A command of a shell code block, or a link, at its line of a documentation page."""

    doc: Path
    line: int
    text: str

    @property
    def where(self) -> str:
        return f"{rel(self.doc)}:{self.line}"


@dataclass(frozen=True)
class Invocation:
    """One program run of a command: ``make`` a target, or a python ``script`` or ``module`` with args."""

    kind: str
    target: str
    args: tuple[str, ...] = ()
    config_file: str | None = None  # accelerate's --config_file


def block_commands(body: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """(first line, command) of a shell block: ``\\``-continued lines joined, ``$ `` prompts and
    ``# comments`` stripped; when some line has a prompt, only prompted lines start a command."""
    prompted = any(line.strip().startswith("$ ") for _, line in body)
    commands: list[tuple[int, str]] = []
    start, parts = 0, []
    for number, line in body:
        text = re.sub(r"(?:^|\s)#.*$", "", line).strip()
        if not parts:
            if prompted and not text.startswith("$ "):
                continue
            text = text.removeprefix("$ ").strip()
            if not COMMAND_START.match(text):
                continue
            start = number
        parts.append(text.removesuffix("\\").strip())
        if not text.endswith("\\"):
            commands.append((start, " ".join(parts)))
            parts = []
    if parts:
        commands.append((start, " ".join(parts)))
    return commands


def doc_commands() -> list[Snippet]:
    found = []
    for doc in doc_files():
        for language, body in fenced_blocks(read_lines(doc)):
            if language in SHELL_LANGUAGES:
                found += [Snippet(doc, number, text) for number, text in block_commands(body)]
    return found


def words(text: str) -> list[str]:
    try:
        return shlex.split(text)
    except ValueError:  # an unbalanced quote: split on whitespace
        return text.split()


def invocations(text: str) -> list[Invocation]:
    """The make / python runs of a command line, its ``&&``, ``;`` and ``|`` parts each."""
    found: list[Invocation] = []
    segment: list[str] = []
    for word in [*words(text), ";"]:
        if word in SEPARATORS:
            found += invocation(segment)
            segment = []
        else:
            segment.append(word)
    return found


def invocation(segment: list[str]) -> list[Invocation]:
    while segment and (ENV_ASSIGNMENT.match(segment[0]) or segment[0] == "env"):
        segment = segment[1:]
    program, args = (segment[0], segment[1:]) if segment else ("", [])
    if program == "make":
        return [Invocation("make", word) for word in args if not word.startswith("-") and "=" not in word]
    if program == "accelerate" and args[:1] == ["launch"]:
        return [accelerate_invocation(args[1:])]
    if PYTHON.fullmatch(program) and len(args) >= 2 and args[0] == "-m":
        return [Invocation("module", args[1], tuple(args[2:]))]
    if PYTHON.fullmatch(program) and args and args[0].endswith(".py"):
        return [Invocation("script", args[0], tuple(args[1:]))]
    return []


def accelerate_invocation(args: list[str]) -> Invocation:
    """``accelerate launch [options] script.py args``: the script is the first argument ending in .py."""
    script = next((i for i, word in enumerate(args) if word.endswith(".py")), None)
    if script is None:
        return Invocation("script", "", tuple(args))
    options = args[:script]
    config = next((value for option, value in zip(options, options[1:]) if option == "--config_file"), None)
    config = config or next((o.split("=", 1)[1] for o in options if o.startswith("--config_file=")), None)
    return Invocation("script", args[script], tuple(args[script + 1 :]), config)


def flags(args: Iterable[str]) -> list[str]:
    """The ``--flags`` among ``args``: values, ``...`` and ``<placeholders>`` left out, ``[optional]``
    brackets stripped, ``--flag=value`` cut at ``=``."""
    found = []
    for word in args:
        word = word.strip("[]").split("=", 1)[0]
        if FLAG.fullmatch(word):
            found.append(word)
    return found


@functools.cache
def make_targets() -> frozenset[str]:
    makefile = REPO / "Makefile"
    text = makefile.read_text(encoding="utf-8") if makefile.is_file() else ""
    rules = re.finditer(r"^([^\s:#=][^:=#]*?)\s*::?(?!=)", text, re.MULTILINE)
    return frozenset(target for rule in rules for target in rule.group(1).split())


def help_targets() -> list[tuple[str, str]]:
    """What needs a ``--help``: every ``hf_heteroakd`` module (its existence is checked there), and every
    existing script passed ``--flags``."""
    targets = set()
    for snippet in COMMANDS:
        for run in invocations(snippet.text):
            if run.kind == "module" and run.target.startswith("hf_heteroakd"):
                targets.add(("module", run.target))
            elif run.kind == "script" and flags(run.args) and run.target and (REPO / run.target).is_file():
                targets.add(("script", run.target))
    return sorted(targets)


@functools.cache
def help_texts() -> dict[str, tuple[int | str, str]]:
    """{script or module: (exit code or error, its --help output)}, from one offline subprocess."""
    targets = help_targets()
    command = [sys.executable, "-c", HELP_DRIVER, json.dumps(targets)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    try:
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=HELP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return {target: (f"--help timed out after {HELP_TIMEOUT_S} s", "") for _, target in targets}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith("HELP-JSON "):
            return {target: (code, output) for target, (code, output) in json.loads(line[10:]).items()}
    failure = f"the --help subprocess failed (exit {done.returncode}): {done.stderr[-1500:]}"
    return {target: (failure, "") for _, target in targets}


def accepts(help_output: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", help_output) is not None


def help_problems(run: Invocation) -> list[str]:
    """The flags of ``run`` that its ``--help`` does not list, or why that help could not be read."""
    wanted = flags(run.args)
    if run.kind == "script" and not wanted:
        return []
    code, output = help_texts().get(run.target, ("not among the collected commands", ""))
    if run.kind == "module" and str(code).startswith("ModuleNotFoundError"):
        return [f"the module {run.target} does not exist"]
    if code != 0:
        return [f"`{run.target} --help` failed: {code}: {output.strip()[-500:]}"]
    missing = [flag for flag in wanted if not accepts(output, flag)]
    return [f"{run.target} does not accept {', '.join(missing)} (not in its --help)"] if missing else []


def problems(run: Invocation) -> list[str]:
    """Why ``run`` would not work as documented; empty when it would (or when it is not checked)."""
    if run.kind == "make":
        return [] if run.target in make_targets() else [f"the Makefile has no target `{run.target}`"]
    if run.kind == "module" and not run.target.startswith("hf_heteroakd"):
        return []
    if run.kind == "script" and not run.target:
        return ["`accelerate launch` names no .py script"]
    if run.kind == "script" and not (REPO / run.target).is_file():
        return [f"the script {run.target} does not exist"]
    found = []
    if run.config_file and not (REPO / run.config_file).is_file():
        found.append(f"the accelerate config {run.config_file} does not exist")
    if run.args and run.args[0].endswith(CONFIG_SUFFIXES) and not (REPO / run.args[0]).is_file():
        found.append(f"the arguments file {run.args[0]} does not exist")
    return found + help_problems(run)


# ---------------------------------------------------------------- links


def doc_links() -> list[Snippet]:
    """Each link and image target outside code, with its page and line."""
    found = []
    for doc in doc_files():
        lines = read_lines(doc)
        code = code_line_numbers(lines)
        for number, line in enumerate(lines, start=1):
            if number in code:
                continue
            prose = INLINE_CODE.sub(lambda match: " " * len(match.group()), line)
            targets = [match.group(1) for pattern in (LINK, HTML_LINK) for match in pattern.finditer(prose)]
            reference = REFERENCE.match(prose)
            targets += [reference.group(1)] if reference else []
            found += [Snippet(doc, number, target) for target in targets]
    return found


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text lowercased, punctuation but ``-`` and ``_`` removed,
    each space a ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = re.sub(r"<[^>]+>", "", text)
    parts = re.split(r"(`[^`]*`)", text)  # emphasis underscores go, those in code stay
    text = "".join(part if part.startswith("`") else EMPHASIS_UNDERSCORE.sub("", part) for part in parts)
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def headings(lines: list[str]) -> list[str]:
    code = code_line_numbers(lines)
    found = []
    for number, line in enumerate(lines, start=1):
        following = lines[number] if number < len(lines) else ""
        if number in code:
            continue
        if atx := ATX.match(line):
            found.append(atx.group(1) or "")
        elif line.strip() and not re.match(r"^\s*(?:[-*+>|]|\d+[.)])", line) and SETEXT.match(following):
            found.append(line.strip())
    return found


@functools.cache
def anchors(path: Path) -> frozenset[str]:
    """The anchors of a markdown page: its headings' slugs (a repeated one gets -1, -2, ...) and any
    ``<a name=...>`` / ``id=...``."""
    lines = read_lines(path)
    seen: dict[str, int] = {}
    found = {match.group(1).lower() for line in lines for match in HTML_ANCHOR.finditer(line)}
    for heading in headings(lines):
        slug = github_slug(heading)
        found.add(f"{slug}-{seen[slug]}" if slug in seen else slug)
        seen[slug] = seen.get(slug, 0) + 1
    return frozenset(found)


def link_problem(link: Snippet) -> str | None:
    """Why a link target does not resolve inside the repository, or None."""
    if EXTERNAL.match(link.text):
        return None
    path, _, anchor = link.text.partition("#")
    path = unquote(path)
    base = REPO if path.startswith("/") else link.doc.parent
    destination = (base / path.lstrip("/")).resolve() if path else link.doc
    if not destination.is_relative_to(REPO):
        return f"{destination} is outside the repository"
    if not destination.exists():
        return f"{rel(destination)} does not exist"
    if anchor and destination.is_file() and destination.suffix.lower() == ".md":
        if unquote(anchor).lower() not in anchors(destination):
            return f"no heading of {rel(destination)} has the anchor #{anchor}"
    return None


def unique_ids(snippets: list[Snippet]) -> list[str]:
    """``page:line`` ids, a second item on one line getting ``page:line[2]``."""
    ids, seen = [], {}
    for snippet in snippets:
        seen[snippet.where] = seen.get(snippet.where, 0) + 1
        ids.append(snippet.where if seen[snippet.where] == 1 else f"{snippet.where}[{seen[snippet.where]}]")
    return ids


COMMANDS = doc_commands()
LINKS = doc_links()


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("command", COMMANDS, ids=unique_ids(COMMANDS))
def test_documented_command_works_as_written(command: Snippet) -> None:
    found = [problem for run in invocations(command.text) for problem in problems(run)]
    assert not found, f"{command.where}: `{command.text}`: " + "; ".join(found)


@pytest.mark.parametrize("link", LINKS, ids=unique_ids(LINKS))
def test_documented_link_resolves(link: Snippet) -> None:
    problem = link_problem(link)
    assert problem is None, f"{link.where}: link ({link.text}): {problem}"


def test_the_pages_are_found_and_parsed() -> None:
    assert REPO / "README.md" in doc_files()
    readme = [command for command in COMMANDS if command.doc == REPO / "README.md"]
    assert any(invocations(command.text) for command in readme), "no command found in README.md's code blocks"
    assert LINKS, "no relative link found in the documentation"


def test_block_commands_join_continuations_and_drop_prompts_comments_and_output() -> None:
    body = list(enumerate(["# set up", "make demo   # offline", "A=1 python x.py --a 1 \\", "    --b 2"], 1))
    assert block_commands(body) == [(2, "make demo"), (3, "A=1 python x.py --a 1 --b 2")]
    console = list(enumerate(["$ python -m hf_heteroakd.demo --help", "usage: demo.py [-h]", "$ make test"], 1))
    assert block_commands(console) == [(1, "python -m hf_heteroakd.demo --help"), (3, "make test")]


def test_invocations_find_the_program_after_env_and_accelerate() -> None:
    text = "X=1 accelerate launch --config_file c.yaml --num_processes 2 r/run.py --a … [--b true] <id>"
    assert invocations(text) == [Invocation("script", "r/run.py", ("--a", "…", "[--b", "true]", "<id>"), "c.yaml")]
    assert flags(invocations(text)[0].args) == ["--a", "--b"]
    assert invocations("make demo && python -m pytest -q | tee log") == [
        Invocation("make", "demo"),
        Invocation("module", "pytest", ("-q",)),
    ]
    assert invocations("pip install -e .") == [] and invocations("hf auth login") == []


def test_problems_catch_a_missing_target_script_and_file() -> None:
    assert problems(Invocation("make", "no-such-target"))
    assert problems(Invocation("script", "recipes/no_such_script.py"))
    assert problems(Invocation("script", "recipes/run_distill.py", ("recipes/no_such_recipe.yaml",)))
    assert accepts("[--lambda_kd LAMBDA_KD]", "--lambda_kd") and not accepts("[--lambda_kd X]", "--lambda")


def test_github_slug() -> None:
    assert github_slug("Evaluate a saved or Hub model") == "evaluate-a-saved-or-hub-model"
    assert github_slug("Results (held-out test split)") == "results-held-out-test-split"
    assert github_slug("`--dataset` presets: `lambda_kd` & λ") == "--dataset-presets-lambda_kd--λ"
    assert github_slug("[Links](x.md) and _emphasis_ and **bold**") == "links-and-emphasis-and-bold"
