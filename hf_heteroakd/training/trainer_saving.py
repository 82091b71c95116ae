"""Saving and publishing: the student alone is the model; checkpoints also hold the projectors."""

from __future__ import annotations

import copy
import os
import tempfile
from typing import Any

import safetensors.torch
import torch
from torch import nn
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .hub import push_student, resolve_repo_id

PROJECTORS_NAME = "heteroakd_projectors.safetensors"


class StudentSavingMixin:
    """Saving, checkpoints and the Hub for :class:`~hf_heteroakd.training.trainer.HeteroAKDTrainer`.

    The student goes up to the Hub once, with its card, through :func:`~hf_heteroakd.training.hub.push_student`
    (``run_distillation`` calls it at the end); the Trainer's own pushes, of the whole output folder and of
    checkpoints, are off.
    """

    def _save(self, output_dir: str | None = None, state_dict: dict | None = None) -> None:
        """Saves the student alone (never the projectors), its processor and the arguments."""
        output_dir = output_dir if output_dir is not None else self.args.output_dir
        if not self.args.should_save:
            return
        os.makedirs(output_dir, exist_ok=True)
        if state_dict is not None:  # gathered by the Trainer from FSDP / DeepSpeed shards
            state_dict = {k[len("student.") :]: v for k, v in state_dict.items() if k.startswith("student.")}
        # Written beside its destination, then moved in file by file: a save interrupted while
        # writing leaves the previous student whole.
        with tempfile.TemporaryDirectory(dir=output_dir, prefix=".saving-") as staging:
            self.student.save_pretrained(staging, state_dict=state_dict)
            if self.processing_class is not None:
                self.processing_class.save_pretrained(staging)
            # training_args.bin stays on disk and may be shared: never with the Hub token in it.
            args = copy.copy(self.args)
            args.hub_token = None
            torch.save(args, os.path.join(staging, "training_args.bin"))
            for name in sorted(os.listdir(staging), key=lambda n: n.endswith(".safetensors")):  # weights last
                os.replace(os.path.join(staging, name), os.path.join(output_dir, name))

    def init_hf_repo(self, token: str | None = None, private: bool | None = None) -> None:
        """Checks the credentials and resolves the repo id before training; creates nothing yet."""
        if self.is_world_process_zero():
            token = token if token is not None else self.args.hub_token
            self.hub_model_id = resolve_repo_id(self.args.hub_model_id, self.args.output_dir, token)
        self.push_in_progress = None

    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        # Saving never pushes (the Trainer would, with --push_to_hub, before the card exists).
        super().save_model(output_dir, _internal_call=True)

    def _push_from_checkpoint(self, checkpoint_folder: str) -> None:
        """Checkpoints (projectors, optimizer state) are never pushed."""

    def push_to_hub(
        self,
        commit_message: str | None = None,
        blocking: bool = True,
        token: str | None = None,
        revision: str | None = None,
        private: bool | None = None,
        **kwargs: Any,
    ) -> str | None:
        """Saves the student and uploads it with :func:`hf_heteroakd.training.hub.push_student`: the student's files
        and the README.md already in ``output_dir`` (no Trainer-written card; ``blocking`` and ``kwargs``
        are ignored). Returns the repo's URL on the main process."""
        self.save_model()
        if not self.is_world_process_zero():
            return None
        token = token if token is not None else self.args.hub_token
        if self.hub_model_id is None:
            self.init_hf_repo(token=token)
        private = private if private is not None else self.args.hub_private_repo
        return push_student(
            self.args.output_dir, self.hub_model_id, token, private, revision or self.args.hub_revision, commit_message
        )

    def _save_checkpoint(self, model: nn.Module, trial: Any) -> None:
        # A checkpoint also holds the projectors, so a resumed run continues them.
        super()._save_checkpoint(model, trial)
        if self.projectors is not None and self.args.should_save:
            folder = os.path.join(self._get_output_dir(trial), f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
            safetensors.torch.save_file(self.projectors.state_dict(), os.path.join(folder, PROJECTORS_NAME))

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: nn.Module | None = None) -> None:
        wrapper = self.accelerator.unwrap_model(model if model is not None else self.model)
        student_weights = safetensors.torch.load_file(os.path.join(resume_from_checkpoint, "model.safetensors"))
        wrapper.student.load_state_dict(student_weights)
        if wrapper.projectors is not None:
            path = os.path.join(resume_from_checkpoint, PROJECTORS_NAME)
            wrapper.projectors.load_state_dict(safetensors.torch.load_file(path))
