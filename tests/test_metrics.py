"""Tests for hf_heteroakd.core.metrics: MeanIoU must equal evaluate's ``mean_iou`` definition."""

from __future__ import annotations

import json
import math
import warnings
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from hf_heteroakd.core.metrics import MeanIoU, MeanIoUForTrainer


# --------------------------------------------------------------------------- reference
def _ref_intersect_and_union(pred_label, label, num_labels, ignore_index, label_map=None, reduce_labels=False):
    """One image's per-class (intersection, union, predicted, labelled) areas by evaluate's ``mean_iou``
    definition, written here from it: ``label_map`` (every mapping reads the original ids), then
    ``reduce_labels``, then the ignored pixels dropped, then ``np.histogram`` over ``[0, num_labels - 1]``
    with ``num_labels`` bins, as evaluate counts (values outside that range fall out of every histogram)."""
    pred, original = np.asarray(pred_label), np.asarray(label)
    label = original.copy()
    for old_id, new_id in (label_map or {}).items():
        label[original == old_id] = new_id
    if reduce_labels:
        label = np.where(label == 0, 255, label - 1)
        label = np.where(label == 254, 255, label)
    kept = label != ignore_index
    pred, label = pred[kept], label[kept]

    def areas(values):
        return np.histogram(values, bins=num_labels, range=(0, num_labels - 1))[0]

    intersect, predicted, labelled = areas(pred[pred == label]), areas(pred), areas(label)
    return intersect, predicted + labelled - intersect, predicted, labelled


def reference_mean_iou(images_pred, images_label, num_labels, ignore_index, reduce_labels=False, label_map=None):
    """evaluate's ``mean_iou`` computed image by image, plus the Trainer's -100 padding rule.

    ``-100`` reference pixels are dropped (set to ``ignore_index``) before anything else,
    which is what MeanIoU documents; a -100-free input is exactly evaluate's computation.
    """
    total = [np.zeros((num_labels,), dtype=np.float64) for _ in range(4)]
    for pred, label in zip(images_pred, images_label):
        pred, label = np.asarray(pred), np.asarray(label)
        pad = label == -100
        if pad.any():
            keep = ~pad
            pred, label = pred[keep], label[keep]
        parts = _ref_intersect_and_union(pred, label, num_labels, ignore_index, label_map, reduce_labels)
        for acc, part in zip(total, parts):
            acc += part
    t_inter, t_union, _, t_label = total
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of all-NaN
        iou = t_inter / t_union
        acc = t_inter / t_label
        return {
            "mean_iou": np.nanmean(iou),
            "mean_accuracy": np.nanmean(acc),
            "overall_accuracy": t_inter.sum() / t_label.sum(),
            "per_category_iou": iou,
            "per_category_accuracy": acc,
        }


def assert_same(result, expected):
    assert set(result) == {
        "mean_iou",
        "mean_accuracy",
        "overall_accuracy",
        "per_category_iou",
        "per_category_accuracy",
    }
    for key in ("mean_iou", "mean_accuracy", "overall_accuracy"):
        assert isinstance(result[key], float), key
        np.testing.assert_allclose(result[key], expected[key], rtol=1e-12, equal_nan=True, err_msg=key)
    for key in ("per_category_iou", "per_category_accuracy"):
        assert isinstance(result[key], np.ndarray) and result[key].dtype == np.float64, key
        assert result[key].shape == expected[key].shape, key
        np.testing.assert_allclose(result[key], expected[key], rtol=1e-12, equal_nan=True, err_msg=key)


# --------------------------------------------------------------------------- data
def make_batches(
    rng,
    num_labels,
    n_batches=3,
    shape=(4, 9, 11),
    p_ignore=0.1,
    p_pad=0.0,
    p_pred_oob=0.0,
    p_label_oob=0.0,
    absent=(),
    label_values=None,
    ignore_index=255,
):
    """Random (pred, label) batches; classes in ``absent`` appear in neither."""
    present = np.array([c for c in range(num_labels) if c not in absent])
    batches = []
    for _ in range(n_batches):
        pred = rng.choice(present, size=shape)
        label = rng.choice(present if label_values is None else np.asarray(label_values), size=shape)
        # make predictions partly right so IoUs are not all tiny
        right = rng.random(shape) < 0.4
        pred = np.where(right, label, pred)
        if label_values is not None:  # labels may be out of [0, n): keep preds in range
            pred = np.where((pred >= 0) & (pred < num_labels), pred, rng.choice(present, size=shape))
        label = np.where(rng.random(shape) < p_ignore, ignore_index, label)
        label = np.where(rng.random(shape) < p_pad, -100, label)
        pred = np.where(
            rng.random(shape) < p_pred_oob, rng.choice([-1, num_labels, num_labels + 7, 255], size=shape), pred
        )
        label = np.where(
            rng.random(shape) < p_label_oob, rng.choice([-3, num_labels, num_labels + 2], size=shape), label
        )
        batches.append((pred.astype(np.int64), label.astype(np.int64)))
    return batches


def images_of(batches):
    preds, labels = [], []
    for p, l in batches:
        if p.ndim == 2:
            p, l = p[None], l[None]
        preds.extend(list(p))
        labels.extend(list(l))
    return preds, labels


def run_metric(metric, batches, as_torch=False, device="cpu"):
    for p, l in batches:
        if as_torch:
            p, l = torch.from_numpy(p).to(device), torch.from_numpy(l).to(device)
        metric.update(p, l)
    return metric.compute()


# --------------------------------------------------------------------------- tests
@pytest.mark.parametrize("as_torch", [False, True])
@pytest.mark.parametrize("shape", [(13, 17), (3, 8, 10)])
def test_matches_evaluate_basic(as_torch, shape):
    rng = np.random.default_rng(0)
    batches = make_batches(rng, 6, n_batches=4, shape=shape)
    result = run_metric(MeanIoU(6), batches, as_torch=as_torch)
    assert_same(result, reference_mean_iou(*images_of(batches), 6, 255))


@pytest.mark.parametrize("seed", range(5))
def test_matches_evaluate_all_edge_cases(seed):
    rng = np.random.default_rng(100 + seed)
    n = 7
    batches = make_batches(
        rng,
        n,
        n_batches=3,
        shape=(2, 12, 9),
        p_ignore=0.15,
        p_pad=0.1,
        p_pred_oob=0.1,
        p_label_oob=0.05,
        absent=(2, 5),
    )
    result = run_metric(MeanIoU(n), batches, as_torch=bool(seed % 2))
    expected = reference_mean_iou(*images_of(batches), n, 255)
    assert_same(result, expected)
    assert np.isnan(result["per_category_iou"][[2, 5]]).all()
    assert np.isnan(result["per_category_accuracy"][[2, 5]]).all()


def test_absent_class_nan_iou_vs_nan_accuracy():
    # class 1 only predicted (never in labels): IoU = 0, accuracy NaN; class 2 absent: both NaN
    pred = np.array([[0, 1], [0, 0]])
    label = np.array([[0, 0], [0, 0]])
    result = run_metric(MeanIoU(3), [(pred, label)])
    np.testing.assert_equal(result["per_category_iou"], [0.75, 0.0, np.nan])
    np.testing.assert_equal(result["per_category_accuracy"], [0.75, np.nan, np.nan])
    assert result["mean_iou"] == pytest.approx(0.375)
    assert result["mean_accuracy"] == pytest.approx(0.75)
    assert result["overall_accuracy"] == pytest.approx(0.75)
    assert_same(result, reference_mean_iou([pred], [label], 3, 255))


@pytest.mark.parametrize("as_torch", [False, True])
def test_reduce_labels(as_torch):
    rng = np.random.default_rng(1)
    n = 5
    # raw labels: 0 = background (-> ignored), 1..n -> 0..n-1, 255 ignored, 254 -> 253 (out of range)
    batches = make_batches(
        rng, n, n_batches=3, shape=(3, 10, 10), label_values=[0, 1, 2, 3, 4, 5, 254], p_ignore=0.1, p_pad=0.05
    )
    result = run_metric(MeanIoU(n, reduce_labels=True), batches, as_torch=as_torch)
    assert_same(result, reference_mean_iou(*images_of(batches), n, 255, reduce_labels=True))
    # reduce_labels changes the answer
    plain = reference_mean_iou(*images_of(batches), n, 255)
    assert not np.allclose(result["per_category_iou"], plain["per_category_iou"], equal_nan=True)


def test_padding_is_ignored_before_reduce_labels():
    # with reduce_labels, an un-masked -100 would become -101 (a counted out-of-range label)
    pred = np.array([[0, 1, 2, 3]])
    label = np.array([[1, 2, -100, -100]])
    result = run_metric(MeanIoU(4, reduce_labels=True), [(pred, label)])
    np.testing.assert_equal(result["per_category_iou"], [1.0, 1.0, np.nan, np.nan])
    assert result["overall_accuracy"] == 1.0


def test_custom_ignore_index_and_padding():
    rng = np.random.default_rng(2)
    batches = make_batches(rng, 4, n_batches=2, shape=(2, 6, 7), ignore_index=0, p_ignore=0.2, p_pad=0.2)
    result = run_metric(MeanIoU(4, ignore_index=0), batches)
    assert_same(result, reference_mean_iou(*images_of(batches), 4, 0))
    assert np.isnan(result["per_category_accuracy"][0])  # every label 0 is ignored


def test_label_map():
    rng = np.random.default_rng(3)
    batches = make_batches(rng, 5, n_batches=2, shape=(2, 8, 8))
    label_map = {1: 3, 3: 4, 4: 1}  # a cycle: mappings must read the original ids, not chain
    result = run_metric(MeanIoU(5, label_map=label_map), batches)
    assert_same(result, reference_mean_iou(*images_of(batches), 5, 255, label_map=label_map))
    # two labels only, swapped: 0 <-> 1
    pred, label = np.array([[0, 0, 1]]), np.array([[1, 1, 0]])
    result = run_metric(MeanIoU(2, label_map={0: 1, 1: 0}), [(pred, label)])
    np.testing.assert_allclose(result["per_category_iou"], [1.0, 1.0])


def test_out_of_range_predictions_count_in_area_label():
    pred = np.array([[0, 9, -1, 1]])
    label = np.array([[0, 0, 1, 1]])
    result = run_metric(MeanIoU(2), [(pred, label)])
    # class 0: inter 1, area_label 2, area_pred 1 -> iou 1/2; class 1: inter 1, label 2, pred 1 -> 1/2
    np.testing.assert_allclose(result["per_category_iou"], [0.5, 0.5])
    np.testing.assert_allclose(result["per_category_accuracy"], [0.5, 0.5])
    assert result["overall_accuracy"] == 0.5


def test_out_of_range_references_count_in_area_pred():
    pred = np.array([[0, 0, 1]])
    label = np.array([[0, 7, 1]])
    result = run_metric(MeanIoU(2), [(pred, label)])
    np.testing.assert_allclose(result["per_category_iou"], [0.5, 1.0])
    np.testing.assert_allclose(result["per_category_accuracy"], [1.0, 1.0])
    assert_same(result, reference_mean_iou([pred], [label], 2, 255))


@pytest.mark.parametrize("label_map", [None, {1000: 2, 2: 1000}])
@pytest.mark.parametrize("reduce_labels", [False, True])
@pytest.mark.parametrize("ignore_index", [255, 300, -1])
def test_values_far_out_of_range(reduce_labels, ignore_index, label_map):
    # MeanIoU clips values to a span around the special ones: values beyond it, and its bounds, must
    # follow the same rules as any other out-of-range value (with reduce_labels, 256 -> 255, 301 -> 300).
    rng = np.random.default_rng(9)
    n = 5
    far = [-(10**9), -103, -102, -101, -100, -2, -1, 0, 1, 4, 5, 254, 255, 256, 257, 258, 259, 300, 301, 302, 303]
    far.append(10**9)
    label = rng.choice(far + [ignore_index], size=(3, 20, 20))
    pred = rng.choice(far, size=(3, 20, 20))
    for as_torch in (False, True):
        metric = MeanIoU(n, ignore_index=ignore_index, reduce_labels=reduce_labels, label_map=label_map)
        result = run_metric(metric, [(pred, label)], as_torch=as_torch)
        expected = reference_mean_iou(list(pred), list(label), n, ignore_index, reduce_labels, label_map)
        assert_same(result, expected)


def test_mixed_numpy_and_torch_and_dtypes():
    rng = np.random.default_rng(4)
    batches = make_batches(rng, 6, n_batches=4, shape=(2, 7, 7), p_pad=0.05)
    metric = MeanIoU(6)
    for i, (p, l) in enumerate(batches):
        if i == 0:
            metric.update(torch.from_numpy(p).to(torch.int32), torch.from_numpy(l))
        elif i == 1:
            metric.update(p.astype(np.uint8), l.astype(np.int16))
        elif i == 2:
            metric.update(torch.from_numpy(p), l)  # mixed
        else:
            metric.update(p, torch.from_numpy(l))
    assert_same(metric.compute(), reference_mean_iou(*images_of(batches), 6, 255))


@pytest.mark.parametrize("label_map", [None, {65_539: 1}])  # bins fit int16; a far key needs int32 bins
def test_every_input_dtype_and_inputs_left_untouched(label_map):
    # update() narrows and clamps copies of the maps: any integer dtype gives the same counts, the caller's
    # arrays are never written to, and read-only arrays (e.g. memory-mapped) are accepted.
    rng = np.random.default_rng(12)
    pred = rng.integers(-2, 8, size=(2, 9, 9))
    label = rng.choice([0, 1, 2, 3, 4, 5, 255, -100, 65_539], size=(2, 9, 9))  # 65_539 wraps to 3 in int16
    for pred_dtype, label_dtype in [
        (np.int8, np.int32),
        (np.int16, np.int64),
        (np.uint16, np.int64),
        (np.int64, np.uint32),
        (np.uint8, np.int64),
    ]:
        p = (np.clip(pred, 0, None) if np.dtype(pred_dtype).kind == "u" else pred).astype(pred_dtype)
        l = label if np.dtype(label_dtype).kind != "u" else np.where(label < 0, 255, label)
        l = l.astype(label_dtype)
        want = reference_mean_iou(list(p.astype(np.int64)), list(l.astype(np.int64)), 6, 255, label_map=label_map)
        for as_torch in (False, True):
            p_in, l_in = p.copy(), l.copy()
            l_in.setflags(write=False)
            p_in = torch.from_numpy(p_in) if as_torch else p_in
            metric = MeanIoU(6, label_map=label_map)
            metric.update(p_in, l_in)
            assert_same(metric.compute(), want)
            np.testing.assert_array_equal(p_in.numpy() if as_torch else p_in, p)
            np.testing.assert_array_equal(l_in, l)
    # Maps already in the type the pairs are built in (int16), with nothing to clamp: still untouched.
    p, l = (torch.from_numpy(rng.integers(0, 6, size=(2, 9, 9))).to(torch.int16) for _ in range(2))
    p_in, l_in = p.clone(), l.clone()
    metric = MeanIoU(6)
    metric.update(p_in, l_in)
    assert_same(metric.compute(), reference_mean_iou(list(p.numpy()), list(l.numpy()), 6, 255))
    assert torch.equal(p_in, p) and torch.equal(l_in, l)
    metric = MeanIoU(2)
    metric.update(np.array([[True, False]]), np.array([[True, True]]))  # bool maps are 0/1 labels
    assert metric.confusion_matrix.tolist() == [[0, 0, 0], [1, 1, 0], [0, 0, 0]]


def test_confusion_matrix_and_reset():
    rng = np.random.default_rng(5)
    first = make_batches(rng, 4, n_batches=2, shape=(2, 5, 5))
    second = make_batches(rng, 4, n_batches=2, shape=(2, 5, 5))
    metric = MeanIoU(4)
    run_metric(metric, first)
    cm = metric.confusion_matrix
    assert isinstance(cm, torch.Tensor) and cm.dtype == torch.int64 and cm.shape == (5, 5)
    valid = sum(int((l != 255).sum()) for _, l in first)
    assert int(cm.sum()) == valid
    metric.reset()
    assert int(metric.confusion_matrix.sum()) == 0
    assert_same(run_metric(metric, second), reference_mean_iou(*images_of(second), 4, 255))
    # a summed (all-reduced) matrix equals accumulating both shards in one metric
    a, b = MeanIoU(4), MeanIoU(4)
    run_metric(a, first)
    run_metric(b, second)
    a.confusion_matrix += b.confusion_matrix
    assert_same(a.compute(), reference_mean_iou(*images_of(first + second), 4, 255))


def test_empty_and_fully_ignored():
    metric = MeanIoU(3)
    result = metric.compute()
    assert all(math.isnan(result[k]) for k in ("mean_iou", "mean_accuracy", "overall_accuracy"))
    metric.update(np.zeros((2, 3), dtype=np.int64), np.full((2, 3), 255))
    assert int(metric.confusion_matrix.sum()) == 0
    assert np.isnan(metric.compute()["per_category_iou"]).all()


def test_rejects_bad_inputs():
    metric = MeanIoU(3)
    with pytest.raises(ValueError):
        metric.update(np.zeros((2, 3), dtype=np.int64), np.zeros((3, 2), dtype=np.int64))
    with pytest.raises(TypeError):
        metric.update(np.zeros((2, 3), dtype=np.float32), np.zeros((2, 3), dtype=np.int64))
    with pytest.raises(TypeError):
        metric.update(torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.long))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_inputs():
    rng = np.random.default_rng(6)
    batches = make_batches(rng, 6, n_batches=3, shape=(2, 16, 16), p_pad=0.1, p_pred_oob=0.05, p_label_oob=0.05)
    metric = MeanIoU(6)
    result = run_metric(metric, batches, as_torch=True, device="cuda")
    assert metric.confusion_matrix.device.type == "cuda"
    assert_same(result, reference_mean_iou(*images_of(batches), 6, 255))


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64])
@pytest.mark.parametrize("bounds", [(-1, 19), (-102, 257)])  # a prediction's and a reference's in update()
def test_clamping_equals_numpy_clip_on_every_integer_type(dtype, bounds):
    # update() narrows each map to the type its pairs are built in, after a range check on the CPU: values that
    # span each input type, bounds it may not hold (-1 in uint8, 257 in int8), values beyond int16.
    from hf_heteroakd.core.metrics import _clamped_as

    low, high = bounds
    if dtype == torch.bool:
        values = torch.tensor([True, False, True])
    else:
        info = torch.iinfo(dtype)
        values = torch.tensor([info.min, info.min + 1, -103, -2, -1, 0, 5, 19, 20, 257, 258, info.max - 1, info.max])
        values = values.clamp(info.min, info.max).to(dtype)
    expected = np.clip(values.numpy().astype(np.int64), low, high)
    for out_dtype in (torch.int16, torch.int32):
        clamped = _clamped_as(values.reshape(1, -1), low, high, out_dtype)
        assert clamped.dtype == out_dtype
        np.testing.assert_array_equal(clamped.numpy(), expected)


# --------------------------------------------------------------------------- trainer adapter
def test_trainer_adapter_batches_flattens_and_resets():
    rng = np.random.default_rng(7)
    n = 4
    id2label = {0: "road", 1: "car", 2: "sky", 3: "tree"}
    fn = MeanIoUForTrainer(n, id2label=id2label)
    for _ in range(2):  # two evaluations: the second must not see the first's batches
        batches = make_batches(rng, n, n_batches=3, shape=(2, 6, 6), p_pad=0.1, absent=(3,))
        for i, (p, l) in enumerate(batches):
            is_last = i == len(batches) - 1
            preds = torch.from_numpy(p) if i % 2 else p
            out = fn(SimpleNamespace(predictions=preds, label_ids=l), compute_result=is_last)
            if not is_last:
                assert out == {}
        expected = reference_mean_iou(*images_of(batches), n, 255)
        assert list(out)[:3] == ["mean_iou", "mean_accuracy", "overall_accuracy"]
        assert set(out) == {"mean_iou", "mean_accuracy", "overall_accuracy"} | {
            f"{kind}_{name}" for kind in ("iou", "accuracy") for name in id2label.values()
        }
        assert all(type(v) is float for v in out.values())
        np.testing.assert_allclose(out["mean_iou"], expected["mean_iou"], rtol=1e-12)
        np.testing.assert_allclose(out["overall_accuracy"], expected["overall_accuracy"], rtol=1e-12)
        for c, name in id2label.items():
            np.testing.assert_allclose(out[f"iou_{name}"], expected["per_category_iou"][c], rtol=1e-12, equal_nan=True)
            np.testing.assert_allclose(
                out[f"accuracy_{name}"], expected["per_category_accuracy"][c], rtol=1e-12, equal_nan=True
            )
        assert math.isnan(out["iou_tree"]) and math.isnan(out["accuracy_tree"])
        json.dumps(out)  # NaN is JSON-able (as NaN)
        assert int(fn.metric.confusion_matrix.sum()) == 0


def test_trainer_adapter_without_id2label_and_single_call():
    rng = np.random.default_rng(8)
    batches = make_batches(rng, 3, n_batches=1, shape=(2, 5, 5))
    fn = MeanIoUForTrainer(3, reduce_labels=False)
    p, l = batches[0]
    out = fn(SimpleNamespace(predictions=(p,), label_ids=l))  # non-batched Trainer: no compute_result
    assert set(out) == {"mean_iou", "mean_accuracy", "overall_accuracy", "iou_0", "iou_1", "iou_2"} | {
        "accuracy_0",
        "accuracy_1",
        "accuracy_2",
    }
    np.testing.assert_allclose(out["mean_iou"], reference_mean_iou([*p], [*l], 3, 255)["mean_iou"], rtol=1e-12)
    # str keys, as in a config loaded from JSON
    fn = MeanIoUForTrainer(3, id2label={"0": "a", "1": "b", "2": "c"})
    out = fn((p, l), compute_result=True)
    assert {"iou_a", "iou_b", "iou_c", "accuracy_c"} <= set(out)


def test_trainer_adapter_signature_has_compute_result():
    import inspect

    assert "compute_result" in inspect.signature(MeanIoUForTrainer(2)).parameters
