"""Publishing a distilled student: one upload of the student's own files and its card to a Hub model repo.

Only what a user of the student needs goes up: weights, ``config.json``, ``preprocessor_config.json``,
the modeling code of custom students (for ``trust_remote_code``), ``README.md`` and the images it shows
(the card's figures). Projectors, checkpoints, optimizer state, ``training_args.bin`` and result files
stay local.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from pathlib import Path

from huggingface_hub import HfApi, constants, get_token
from huggingface_hub.utils import filter_repo_objects

from ..core.errors import HeteroAKDError

logger = logging.getLogger(__name__)

# Matched against the names of the output folder's top-level files only: never a checkpoint's.
STUDENT_FILE_PATTERNS = (
    "model.safetensors",
    "model-*-of-*.safetensors",  # shards of a large student, with their index
    "model.safetensors.index.json",
    "config.json",
    "preprocessor_config.json",
    "*.py",  # save_pretrained copies a custom student's modeling code here (auto_map)
    "README.md",
)
# An image in Markdown, ``![caption](name)``: the card's figures are the files beside it that it shows.
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)>?")


def check_credentials(token: str | None) -> None:
    """Fails before any work if a push cannot work: offline mode, or no token to push with."""
    if constants.HF_HUB_OFFLINE:
        raise HeteroAKDError(
            "--push_to_hub needs the Hub but HF_HUB_OFFLINE=1 is set: unset it, or drop --push_to_hub"
        )
    if token is None and get_token() is None:
        raise HeteroAKDError(
            "--push_to_hub needs a Hugging Face token with write access and none was found: "
            "log in with `hf auth login`, set HF_TOKEN, or pass --hub_token"
        )


def resolve_repo_id(hub_model_id: str | None, output_dir: str, token: str | None = None) -> str:
    """The full ``namespace/name`` repo id, as ``TrainingArguments`` names it (default: the output folder's name).

    Without a namespace the repo goes to the token's user, which only the Hub can tell.
    """
    check_credentials(token)
    name = hub_model_id or Path(output_dir).absolute().name
    if "/" in name:
        return name
    try:
        user = HfApi().whoami(token=token)["name"]
    except Exception as err:  # any failure here means the same thing to the user: no namespace
        raise HeteroAKDError(
            f"could not ask the Hub which user the token belongs to ({type(err).__name__}); "
            f"pass the full repo id, e.g. --hub_model_id <your-namespace>/{name}"
        ) from err
    return f"{user}/{name}"


def card_images(output_dir: str) -> list[str]:
    """The files of ``output_dir`` that its ``README.md`` shows as images (its figures), in the card's order."""
    card = Path(output_dir) / "README.md"
    if not card.is_file():
        return []
    linked = dict.fromkeys(IMAGE_LINK.findall(card.read_text(encoding="utf-8")))
    return [name for name in linked if Path(name).name == name and (Path(output_dir) / name).is_file()]


def student_files(output_dir: str) -> list[str]:
    """The files of ``output_dir`` that a push uploads, sorted: the student's own and its card with the images
    the card shows."""
    names = sorted(path.name for path in Path(output_dir).iterdir() if path.is_file())
    return sorted({*filter_repo_objects(names, allow_patterns=list(STUDENT_FILE_PATTERNS)), *card_images(output_dir)})


def upload_command(
    repo_id: str, output_dir: str, files: list[str], private: bool | None = None, revision: str | None = None
) -> str:
    """The ``hf upload`` command that uploads exactly ``files`` of ``output_dir``, to retry by hand."""
    command = ["hf", "upload", repo_id, os.path.abspath(output_dir), "."]
    for name in files:
        command += ["--include", name]
    if private:
        command.append("--private")
    if revision:
        command += ["--revision", revision]
    return shlex.join(command)


def push_student(
    output_dir: str,
    repo_id: str,
    token: str | None = None,
    private: bool | None = None,
    revision: str | None = None,
    commit_message: str | None = None,
) -> str:
    """Creates ``repo_id`` if needed and uploads the student saved in ``output_dir``; returns the repo's URL.

    ``token``: a write token, else the one of ``hf auth login`` / ``HF_TOKEN``. ``private`` applies
    when the repo is created. A failed upload leaves ``output_dir`` untouched and raises a
    :class:`HeteroAKDError` that holds the ``hf upload`` command to retry with.
    """
    check_credentials(token)
    files = student_files(output_dir)
    missing = [name for name in ("config.json", "preprocessor_config.json") if name not in files]
    if missing or not any(name.endswith(".safetensors") for name in files):
        raise HeteroAKDError(
            f"{output_dir} holds no saved student ({', '.join(missing) or 'model.safetensors'} missing): "
            "push the --output_dir of a finished run with --do_train"
        )
    if "README.md" not in files:
        logger.warning("%s has no README.md: the repo %s gets no model card", output_dir, repo_id)

    api = HfApi()
    try:
        url = api.create_repo(repo_id, token=token, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=url.repo_id,
            folder_path=output_dir,
            allow_patterns=files,
            token=token,
            revision=revision,
            commit_message=commit_message or "Upload distilled student (hf-heteroakd)",
        )
    except Exception as err:  # network, auth, quota, …: each is fixed and retried the same way
        reason = " ".join(f"{type(err).__name__}: {err}".split())[:300]
        if token:
            reason = reason.replace(token, "<HUB_TOKEN>")
        # The command can't carry the token: --hub_token users export it for `hf` to read.
        token_hint = " after `export HF_TOKEN=<the token you passed as --hub_token>`" if token else ""
        raise HeteroAKDError(
            f"uploading the student to the Hub repo {repo_id} failed ({reason}); {output_dir} is complete "
            f"and unchanged: retry with `{upload_command(repo_id, output_dir, files, private, revision)}`{token_hint}"
        ) from err
    logger.info("pushed the student in %s to %s (%s)", output_dir, url, ", ".join(files))
    return str(url)
