"""MeanIoU(cpu_kernel="compiled"): the C++ kernel counts exactly what the torch path counts.

The first test to run builds the kernel (about 20 s, once per machine: torch caches it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from hf_heteroakd.metrics import MeanIoU, MeanIoUForTrainer
from hf_heteroakd.pair_counts import pair_counts
from tests.test_metrics import assert_same, reference_mean_iou

HAS_COMPILER = shutil.which(os.environ.get("CXX", "c++")) is not None  # what torch's cpp_extension builds with
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="no C++ compiler (c++, or $CXX) to build the kernel")

INT64 = torch.iinfo(torch.int64)


def bincount_of_clamped_pairs(refs, preds, ref_low, ref_high, pred_high):
    """What pair_counts documents, in torch ops on int64."""
    refs, preds = refs.to(torch.int64).reshape(-1), preds.to(torch.int64).reshape(-1)
    width, bins = pred_high + 2, (ref_high - ref_low + 1) * (pred_high + 2)
    index = (refs.clamp(ref_low, ref_high) - ref_low) * width + preds.clamp(-1, pred_high) + 1
    return torch.bincount(index, minlength=bins)


@needs_compiler
@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
def test_kernel_equals_bincount_of_clamped_pairs(dtype, threads):
    # 2 x 300 x 301 values: more than one chunk (65,536 values each) at 2 threads; every dtype's extremes.
    generator = torch.Generator().manual_seed(int(torch.iinfo(dtype).bits) if dtype != torch.bool else 1)
    info = torch.iinfo(dtype) if dtype != torch.bool else torch.iinfo(torch.uint8)
    shape = (2, 300, 301)
    values = torch.randint(-110, 270, shape, generator=generator)
    edges = torch.tensor([info.min, info.max, -1, 0, 19, 20, -102, -103, 257, 258]).clamp(info.min, info.max)
    values.view(-1)[: len(edges)] = edges
    refs = values.clamp(info.min, info.max).to(dtype)
    preds = torch.randint(-5, 25, shape, generator=generator).clamp(info.min, info.max).to(dtype)
    preds = preds.transpose(1, 2)  # strided: the kernel reads any layout
    refs = refs.transpose(1, 2)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for bounds in [(-102, 257, 19), (0, 0, 0), (-3, 40, 30)]:
            counts = pair_counts(refs, preds, *bounds)
            assert counts.dtype == torch.int64 and int(counts.sum()) == refs.numel()
            assert torch.equal(counts, bincount_of_clamped_pairs(refs, preds, *bounds)), bounds
    finally:
        torch.set_num_threads(previous)


@needs_compiler
def test_kernel_reads_int64_extremes_and_empty_maps():
    refs = torch.tensor([INT64.min, INT64.max, -100, 255, 3])
    preds = torch.tensor([INT64.max, INT64.min, 2, 19, 20])
    assert torch.equal(pair_counts(refs, preds, -102, 257, 19), bincount_of_clamped_pairs(refs, preds, -102, 257, 19))
    empty = torch.empty(0, dtype=torch.int64)
    assert torch.equal(pair_counts(empty, empty, -1, 1, 2), torch.zeros(3 * 4, dtype=torch.int64))


@needs_compiler
@pytest.mark.parametrize("label_map", [None, {1000: 2, 2: 1000}, {65_539: 1}])  # the last: int32 bins
@pytest.mark.parametrize("reduce_labels", [False, True])
@pytest.mark.parametrize("ignore_index", [255, -1])
def test_compiled_meaniou_equals_torch_path_and_reference(reduce_labels, ignore_index, label_map):
    rng = np.random.default_rng(7)
    n = 6
    values = [-(10**9), -103, -100, -2, -1, 0, 1, 2, 3, 5, 6, 254, 255, 256, 300, 1000, 65_539, 10**9]
    batches = [(rng.choice(values + list(range(n)) * 4, size=(2, 30, 40)),
                rng.choice(values + [ignore_index] + list(range(n)) * 4, size=(2, 30, 40))) for _ in range(3)]
    batches.append((batches[0][0].astype(np.int16), batches[0][1].astype(np.int32)))  # mixed dtypes, wrapped values
    batches.append((torch.from_numpy(batches[1][0]) % n == 0, torch.from_numpy(batches[1][1])))  # bool predictions
    options = dict(ignore_index=ignore_index, reduce_labels=reduce_labels, label_map=label_map)
    compiled, torch_ops = MeanIoU(n, cpu_kernel="compiled", **options), MeanIoU(n, **options)
    for preds, refs in batches:
        compiled.update(preds, refs)
        torch_ops.update(preds, refs)
    assert torch.equal(compiled.confusion_matrix, torch_ops.confusion_matrix)
    preds = [np.asarray(p, dtype=np.int64) for p, _ in batches]
    refs = [np.asarray(r, dtype=np.int64) for _, r in batches]
    assert_same(compiled.compute(), reference_mean_iou(preds, refs, n, ignore_index, reduce_labels, label_map))


def test_unknown_cpu_kernel_is_refused():
    with pytest.raises(ValueError, match="cpu_kernel must be 'torch' or 'compiled'"):
        MeanIoU(3, cpu_kernel="numba")


def test_a_failed_build_names_the_fix(tmp_path):
    # A compiler that does not exist, and an empty extensions folder so that nothing built earlier is reused.
    env = dict(os.environ, CXX=str(tmp_path / "no-such-c++"), TORCH_EXTENSIONS_DIR=str(tmp_path / "extensions"))
    code = (
        "import torch\n"
        "from hf_heteroakd.errors import HeteroAKDError\n"
        "from hf_heteroakd.metrics import MeanIoU\n"
        "try:\n"
        "    MeanIoU(3, cpu_kernel='compiled').update(torch.zeros(4, dtype=torch.long), torch.zeros(4, dtype=torch.long))\n"
        "except HeteroAKDError as error:\n"
        "    print(error)\n"
    )
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    message = run.stdout.strip()
    assert message.startswith("MeanIoU(cpu_kernel='compiled') could not build its C++ kernel"), message
    assert "no-such-c++: not found" in message, message  # the cause
    assert "C++ compiler" in message and "pip install ninja" in message and "cpu_kernel='torch'" in message


@needs_compiler
def test_trainer_adapter_takes_the_compiled_kernel():
    rng = np.random.default_rng(3)
    preds, labels = rng.integers(0, 5, size=(2, 20, 20)), rng.choice([0, 1, 2, 3, 4, 255], size=(2, 20, 20))
    compiled = MeanIoUForTrainer(5, cpu_kernel="compiled")
    assert compiled.metric.cpu_kernel == "compiled"
    np.testing.assert_equal(compiled((preds, labels)), MeanIoUForTrainer(5)((preds, labels)))
