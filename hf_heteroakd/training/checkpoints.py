"""The checkpoint a run resumes from: the one ``--resume_from_checkpoint`` names, or the newest intact one.

A checkpoint (``output_dir/checkpoint-N``) is intact when every file the resume reads can be read
(:mod:`~hf_heteroakd.core.file_checks`): the student's weights, the projectors, the optimizer, scheduler
and RNG states, the trainer state. A run killed while saving, or a copy cut short, leaves one damaged;
resuming from it would fail deep inside safetensors or torch.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from ..core.errors import HeteroAKDError
from ..core.file_checks import folder_problems

logger = logging.getLogger(__name__)

# What the Trainer writes into every checkpoint, whatever the run (the projectors only with HeteroAKD).
REQUIRED_FILES = ("model.safetensors", "trainer_state.json")
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
_TRUE, _FALSE = ("true", "yes"), ("false", "no", "")


def resume_setting(value: str | bool | None) -> str | bool | None:
    """``--resume_from_checkpoint`` as ``Trainer.train`` takes it: True (the newest intact checkpoint of
    ``output_dir``), None (start afresh) or a path. The flag is a string, so ``true``/``yes`` and
    ``false``/``no`` (any case) are read as the booleans they spell, never as paths."""
    if isinstance(value, bool) or value is None:
        return value or None
    if value.strip().lower() in _TRUE:
        return True
    if value.strip().lower() in _FALSE:
        return None
    return value


def checkpoints_newest_first(output_dir: str | os.PathLike) -> list[Path]:
    """The ``checkpoint-N`` folders of ``output_dir``, highest N first."""
    folder = Path(output_dir)
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name)) and p.is_dir()]
    return [path for _, path in sorted(found, reverse=True)]


def checkpoint_problem(checkpoint: str | os.PathLike) -> str | None:
    """What is wrong with ``checkpoint``: the first file that cannot be read (its path) and why; or None."""
    problems = folder_problems(checkpoint, REQUIRED_FILES)
    if not problems:
        return None
    name, problem = next(iter(problems.items()))
    more = f" (and {len(problems) - 1} more damaged file(s))" if len(problems) > 1 else ""
    return f"{Path(checkpoint) / name} {problem}{more}"


def newest_intact_checkpoint(output_dir: str | os.PathLike, warn: bool = True) -> Path | None:
    """The newest checkpoint of ``output_dir`` that can be read; each damaged one passed over is named in a
    warning (``warn``)."""
    for checkpoint in checkpoints_newest_first(output_dir):
        problem = checkpoint_problem(checkpoint)
        if problem is None:
            return checkpoint
        if warn:
            logger.warning("skipping the damaged checkpoint %s: %s", checkpoint.name, problem)
    return None


def resolve_checkpoint(value: str | bool | None, output_dir: str | os.PathLike) -> str | None:
    """The checkpoint to resume from for ``--resume_from_checkpoint value`` (see :func:`resume_setting`),
    checked to be intact; None to start afresh.

    Raises:
        HeteroAKDError: the named checkpoint does not exist or is damaged (the message names the file, what is
            wrong, and the newest intact checkpoint to resume from instead), or ``true`` finds no intact one.
    """
    setting = resume_setting(value)
    if setting is None:
        return None
    if setting is True:
        found = newest_intact_checkpoint(output_dir)
        if found is not None:
            return str(found)
        damaged = checkpoints_newest_first(output_dir)
        what = (
            f"only damaged checkpoints ({', '.join(p.name for p in damaged)})" if damaged else "no checkpoint-N folder"
        )
        raise HeteroAKDError(
            f"--resume_from_checkpoint true resumes from the newest intact checkpoint of --output_dir {output_dir}, "
            f"which holds {what}: train from the start (drop --resume_from_checkpoint; --overwrite_output_dir "
            "writes over that folder) or pass the folder of a checkpoint"
        )
    checkpoint = Path(setting)
    if not checkpoint.is_dir():
        raise HeteroAKDError(
            f"--resume_from_checkpoint {checkpoint} is not a folder: pass a checkpoint-N folder of a run, or true "
            "for the newest intact one in --output_dir"
        )
    problem = checkpoint_problem(checkpoint)
    if problem is None:
        return str(checkpoint)
    intact = newest_intact_checkpoint(checkpoint.parent, warn=False)
    instead = (
        f"resume from {intact}, the newest intact checkpoint"
        if intact is not None
        else f"{checkpoint.parent} holds no intact checkpoint: train from the start"
    )
    raise HeteroAKDError(
        f"the checkpoint {checkpoint} is damaged: {problem}; {instead} "
        "(--resume_from_checkpoint true picks the newest intact one by itself, skipping damaged ones with a warning)"
    )
