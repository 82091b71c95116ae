"""A student saved by the flat package (before its modules moved into layers) still loads, with and without
``trust_remote_code``, and predicts what it predicted when saved.

The package of that release is read from the git history into a temporary folder; a fresh interpreter
saves a student with it, another loads the student with this checkout's package. Without the history
(no git, a shallow clone), the test is skipped.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The last commit of the flat layout (hf_heteroakd/*.py, models/ already a subpackage).
FLAT_RELEASE = "4967ffac031d2131c8b73642a278d0db94a3de7f"

# argv: the folder hf_heteroakd must come from, the student's folder, the file of inputs and logits.
SAVE = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch

    import hf_heteroakd

    assert Path(hf_heteroakd.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), hf_heteroakd.__file__
    torch.manual_seed(0)
    student = hf_heteroakd.build_student("resnet18", {0: "background", 1: "shape"}, pretrained_backbone=False)
    student.eval().save_pretrained(sys.argv[2])
    pixels = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.save({"pixels": pixels, "logits": student(pixels).logits}, sys.argv[3])
    """
)
LOAD = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    import torch
    from transformers import AutoModelForSemanticSegmentation

    import hf_heteroakd

    assert Path(hf_heteroakd.__file__).resolve().is_relative_to(Path(sys.argv[1]).resolve()), hf_heteroakd.__file__
    saved = torch.load(sys.argv[3])
    for trust_remote_code in (False, True):
        model = AutoModelForSemanticSegmentation.from_pretrained(sys.argv[2], trust_remote_code=trust_remote_code)
        with torch.no_grad():
            logits = model.eval()(saved["pixels"]).logits
        torch.testing.assert_close(logits, saved["logits"])
        print(f"trust_remote_code={trust_remote_code}: {type(model).__module__}")
    """
)
# The same with trust_remote_code where hf_heteroakd cannot be imported: the student's own code files.
LOAD_WITHOUT_PACKAGE = textwrap.dedent(
    """
    import importlib.abc
    import sys

    class NoHeteroAKD(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_heteroakd" or name.startswith("hf_heteroakd."):
                raise ImportError("hf_heteroakd is not installed here")

    sys.meta_path.insert(0, NoHeteroAKD())

    import torch
    from transformers import AutoModelForSemanticSegmentation

    saved = torch.load(sys.argv[3])
    model = AutoModelForSemanticSegmentation.from_pretrained(sys.argv[2], trust_remote_code=True)
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(saved["pixels"]).logits, saved["logits"])
    assert not any(name.startswith("hf_heteroakd") for name in sys.modules)
    print(f"trust_remote_code=True: {type(model).__module__}")
    """
)


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, timeout=120)


def flat_release_package(destination: Path) -> Path:
    """Writes the flat release's hf_heteroakd/ below ``destination``; skips the test without the history."""
    if shutil.which("git") is None or git("rev-parse", "--git-dir").returncode != 0:
        pytest.skip("not a git checkout: the flat release's code is read from the history")
    if git("cat-file", "-e", f"{FLAT_RELEASE}^{{commit}}").returncode != 0:
        pytest.skip(f"commit {FLAT_RELEASE[:7]} is not in this clone's history (a shallow clone?)")
    archive = git("archive", "--format=tar", FLAT_RELEASE, "hf_heteroakd")
    assert archive.returncode == 0, archive.stderr.decode()
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12, 3.11.4
        tar.extractall(destination, **safe)
    return destination


def run(script: str, code_root: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """``script`` in a fresh interpreter that imports hf_heteroakd from ``code_root`` alone."""
    env = {
        **os.environ,
        "PYTHONPATH": str(code_root),
        "HF_HOME": str(tmp_path / "hf_home"),  # remote code is copied into its modules cache
        "HF_HUB_OFFLINE": "1",
    }
    argv = [str(code_root), str(tmp_path / "student"), str(tmp_path / "saved.pt")]
    result = subprocess.run(
        [sys.executable, "-c", script, *argv], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_a_student_saved_by_the_flat_release_loads_and_predicts_the_same(tmp_path):
    old = flat_release_package(tmp_path / "flat_release")
    assert (old / "hf_heteroakd" / "trainer.py").is_file() and not (old / "hf_heteroakd" / "training").exists()

    run(SAVE, old, tmp_path)
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["model_type"] == "timm_segmentation"
    assert config["auto_map"] == {
        "AutoConfig": "configuration_timm_segmentation.TimmSegmentationConfig",
        "AutoModelForSemanticSegmentation": "modeling_timm_segmentation.TimmSegmentationForSemanticSegmentation",
    }

    # With the package imported, its registered class serves both (transformers prefers a class registered
    # outside transformers to the checkpoint's code); without it, the checkpoint's own code.
    assert run(LOAD, REPO, tmp_path).stdout.splitlines() == [
        "trust_remote_code=False: hf_heteroakd.models.modeling_timm_segmentation",
        "trust_remote_code=True: hf_heteroakd.models.modeling_timm_segmentation",
    ]
    remote = run(LOAD_WITHOUT_PACKAGE, REPO, tmp_path).stdout.strip()
    assert remote.startswith("trust_remote_code=True: transformers_modules.")
