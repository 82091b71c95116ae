"""Teacher aliases and loading."""

from __future__ import annotations

import pytest
import torch

from hf_heteroakd import HeteroAKDError, load_teacher
from hf_heteroakd.networks.teachers import TEACHER_ALIASES, resolve_teacher


def test_aliases_resolve_to_the_checkpoint_fine_tuned_on_the_dataset():
    assert resolve_teacher("nvidia/segformer-b5", "cityscapes") == "nvidia/segformer-b5-finetuned-cityscapes-1024-1024"
    assert resolve_teacher("nvidia/segformer-b5", "ade20k") == "nvidia/segformer-b5-finetuned-ade-640-640"
    assert resolve_teacher("nvidia/segformer-b0", "scene_parse_150") == "nvidia/segformer-b0-finetuned-ade-512-512"
    assert resolve_teacher("org/my-teacher", "cityscapes") == "org/my-teacher"


def test_alias_without_a_checkpoint_for_the_dataset_says_which_exist():
    with pytest.raises(HeteroAKDError, match="segformer-b2-finetuned-cityscapes-1024-1024"):
        resolve_teacher("nvidia/segformer-b2", "my-org/potholes")


def test_teacher_is_frozen_in_eval_mode_and_dtype(tiny_segformer_dir):
    teacher = load_teacher(str(tiny_segformer_dir), torch.bfloat16)
    assert not teacher.training
    assert all(not p.requires_grad and p.dtype == torch.bfloat16 for p in teacher.parameters())


def test_missing_teacher_is_a_clear_error(tmp_path):
    with pytest.raises(HeteroAKDError, match="could not load the teacher"):
        load_teacher(str(tmp_path / "nothing-here"))


@pytest.mark.hub
@pytest.mark.parametrize("repo_id", sorted({r for targets in TEACHER_ALIASES.values() for r in targets.values()}))
def test_alias_targets_exist_on_the_hub(repo_id):
    from huggingface_hub import model_info

    assert model_info(repo_id).id == repo_id
