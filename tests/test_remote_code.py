"""A saved student carries its modeling code and loads where hf_heteroakd is not installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import torch

from hf_heteroakd import build_student

from .conftest import ID2LABEL

# Run in a fresh interpreter in which `import hf_heteroakd` fails, as on a machine with only
# transformers and timm installed.
LOADER = textwrap.dedent(
    """
    import sys, importlib.abc

    class NoHeteroAKD(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "hf_heteroakd" or name.startswith("hf_heteroakd."):
                raise ImportError("hf_heteroakd is not installed here")

    sys.meta_path.insert(0, NoHeteroAKD())
    try:
        import hf_heteroakd
    except ImportError:
        pass
    else:
        raise SystemExit("hf_heteroakd should not be importable in this test")

    import torch
    from transformers import AutoModelForSemanticSegmentation

    model = AutoModelForSemanticSegmentation.from_pretrained(sys.argv[1], trust_remote_code=True).eval()
    assert not any(m.startswith("hf_heteroakd") for m in sys.modules), "hf_heteroakd was imported"
    with torch.no_grad():
        logits = model(torch.load(sys.argv[2])).logits
    torch.save(logits, sys.argv[3])
    print(type(model).__module__)
    """
)


def test_saved_student_loads_with_remote_code_without_hf_heteroakd(tmp_path):
    torch.manual_seed(0)
    student = build_student("resnet18", ID2LABEL, pretrained_backbone=False).eval()
    student.save_pretrained(tmp_path / "student")
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSemanticSegmentation"].endswith(
        "modeling_timm_segmentation.TimmSegmentationForSemanticSegmentation"
    )
    for code in ("modeling_timm_segmentation.py", "configuration_timm_segmentation.py"):
        assert (tmp_path / "student" / code).is_file()

    pixels = torch.randn(1, 3, 64, 64)
    torch.save(pixels, tmp_path / "pixels.pt")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf_home"), "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            LOADER,
            str(tmp_path / "student"),
            str(tmp_path / "pixels.pt"),
            str(tmp_path / "out.pt"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "transformers_modules" in result.stdout  # the class came from the checkpoint's own code
    with torch.no_grad():
        torch.testing.assert_close(torch.load(tmp_path / "out.pt"), student(pixels).logits)
