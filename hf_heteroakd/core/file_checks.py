"""Whether a file of the user's can be read, checked before anything reads it for real.

A truncated or corrupt weights file, checkpoint, recipe or cache would otherwise fail deep inside
safetensors, torch or PyYAML with a message that names neither the file nor the fix. Each
``*_problem`` function says what is wrong with a file (or None when it reads): cheap checks that
read the parts a loader would trip on, never the whole of a large file unless it carries checksums.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import yaml
from safetensors import SafetensorError, safe_open

from .errors import HeteroAKDError

# Files a saved model or a checkpoint may hold that are read whole by their loaders, by suffix.
CHECKED_SUFFIXES = (".safetensors", ".json", ".pt", ".pth", ".bin")
_PICKLE_PROTOCOL_2_PLUS = b"\x80"  # torch's legacy (non-zip) format starts with a pickle


def safetensors_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with the safetensors file ``path``: its header must parse and describe exactly the bytes
    that follow it (safetensors checks both on opening), so a file cut short is found without reading it."""
    try:
        with safe_open(str(path), framework="pt", device="cpu"):
            return None
    except SafetensorError as err:
        detail = str(err).removeprefix("Error while deserializing header: ")
        return f"is truncated or corrupt ({Path(path).stat().st_size} bytes; safetensors: {detail})"


def torch_file_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with a file written by ``torch.save`` (optimizer, scheduler, RNG states): a zip archive
    whose members all match their CRC-32 checksums; a legacy (pickle) file is only checked to start as one."""
    with open(path, "rb") as file:
        start = file.read(1)
    if not zipfile.is_zipfile(path):
        if start == _PICKLE_PROTOCOL_2_PLUS and Path(path).stat().st_size > 2:
            return None
        return f"is truncated or corrupt ({Path(path).stat().st_size} bytes; not a complete torch archive)"
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, ValueError) as err:
        return f"is truncated or corrupt ({err})"
    return None if bad is None else f"is corrupt (its part {bad} fails its checksum)"


def json_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with the JSON file ``path``: it must decode as UTF-8 JSON."""
    try:
        read_json(path)
    except ValueError as err:
        return f"is not valid JSON ({err})"
    return None


def file_problem(path: str | os.PathLike) -> str | None:
    """What is wrong with ``path``, checked by its suffix (:data:`CHECKED_SUFFIXES`); None when it reads or
    when its kind is not checked."""
    path = Path(path)
    if not path.is_file():
        return "is missing"
    if path.stat().st_size == 0:
        return "is empty (0 bytes)"
    if path.suffix == ".safetensors":
        return safetensors_problem(path)
    if path.suffix == ".json":
        return json_problem(path)
    if path.suffix in (".pt", ".pth", ".bin"):
        return torch_file_problem(path)
    return None


def folder_problems(folder: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, str]:
    """The files of ``folder`` (not its subfolders) that cannot be read, by name, with what is wrong: every
    file with a checked suffix, and each name in ``required``, which must exist."""
    folder = Path(folder)
    names = sorted({p.name for p in folder.iterdir() if p.suffix in CHECKED_SUFFIXES and p.is_file()} | set(required))
    problems = {name: file_problem(folder / name) for name in names}
    return {name: problem for name, problem in problems.items() if problem is not None}


def check_model_folder(path: str | os.PathLike, role: str) -> None:
    """Raises when a local model folder (a ``save_pretrained`` folder or a checkpoint) holds a file that cannot
    be read; ``role`` names the model in the message. A Hub id (not a folder) is left to the loader."""
    if not os.path.isdir(path):
        return
    problems = folder_problems(path)
    if problems:
        name, problem = next(iter(problems.items()))
        raise HeteroAKDError(
            f"the {role} {str(path)!r} cannot be loaded: {Path(path) / name} {problem}; the file was not completely "
            "written or copied: save or copy the model again (a run's checkpoint-N folders hold earlier copies)"
        )


def read_json(path: str | os.PathLike) -> Any:
    """The JSON value of ``path``; a ``ValueError`` (``json.JSONDecodeError`` or ``UnicodeDecodeError``) says
    where it stops parsing."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def read_recipe(path: str | os.PathLike) -> Any:
    """The value of a ``.yaml``/``.yml``/``.json`` recipe file; one that does not parse is a
    :class:`HeteroAKDError` naming the file, where it stops parsing, and the fix."""
    path = Path(path)
    kind = "JSON" if path.suffix == ".json" else "YAML"
    try:
        if kind == "JSON":
            return read_json(path)
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (ValueError, yaml.YAMLError) as err:
        detail = " ".join(str(err).split())
        raise HeteroAKDError(
            f"the recipe {path} is not valid {kind} ({detail}): fix the file (each line `flag_name: value`), "
            "or pass the flags on the command line"
        ) from None
