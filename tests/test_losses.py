"""The method's checks every implementation must pass (docs/method.md: the equations they test)."""

import pytest
import torch
import torch.nn.functional as F

from hf_heteroakd.core import losses
from hf_heteroakd.core.projectors import HeteroAKDProjectors

N, C, H, W = 2, 5, 8, 8


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def random_labels(n=N, h=H, w=W, ignore_fraction=0.2):
    labels = torch.randint(0, C, (n, h, w))
    labels[torch.rand(n, h, w) < ignore_fraction] = 255
    return labels


def test_pixel_kd_is_zero_for_identical_logits():
    z = torch.randn(N, C, H, W)
    assert losses.pixel_kd_loss(z, z.clone(), temperature=4.0).abs().item() < 1e-6


def test_pixel_kd_matches_float64_hand_computation():
    z_s, z_t, tau = torch.randn(N, C, H, W), torch.randn(N, C, H, W), 2.5
    p_t = torch.softmax(z_t.double() / tau, 1)
    p_s = torch.softmax(z_s.double() / tau, 1)
    expected = (p_t * (p_t.log() - p_s.log())).sum(1).mean() * tau**2
    torch.testing.assert_close(losses.pixel_kd_loss(z_s, z_t, tau).double(), expected, rtol=1e-5, atol=1e-6)


def test_pixel_kd_resizes_teacher_to_student_grid():
    z_s, z_t = torch.randn(N, C, H, W), torch.randn(N, C, 2 * H, 2 * W)
    resized = F.interpolate(z_t, size=(H, W), mode="bilinear", align_corners=False)
    torch.testing.assert_close(losses.pixel_kd_loss(z_s, z_t, 1.0), losses.pixel_kd_loss(z_s, resized, 1.0))


def test_cwd_matches_float64_hand_computation_and_is_zero_for_identical_logits():
    z_s, z_t, tau = torch.randn(N, C, H, W), torch.randn(N, C, H, W), 4.0
    p_t = torch.softmax(z_t.double().flatten(2) / tau, 2)  # each class map a distribution over pixels
    p_s = torch.softmax(z_s.double().flatten(2) / tau, 2)
    expected = (p_t * (p_t.log() - p_s.log())).sum(2).mean() * tau**2
    torch.testing.assert_close(losses.channel_wise_kd_loss(z_s, z_t, tau).double(), expected, rtol=1e-5, atol=1e-6)
    assert losses.channel_wise_kd_loss(z_t, z_t.clone(), tau).abs().item() < 1e-6
    # Unlike the pixel KD, a shift of one class map by a constant changes nothing.
    shifted = z_t + torch.arange(C, dtype=torch.float32)[None, :, None, None]
    assert losses.channel_wise_kd_loss(shifted, z_t, tau).abs().item() < 1e-5


def test_task_loss_upsamples_and_ignores():
    logits, labels = torch.randn(N, C, H, W), random_labels(h=2 * H, w=2 * W)
    up = F.interpolate(logits, size=(2 * H, 2 * W), mode="bilinear", align_corners=False)
    torch.testing.assert_close(losses.task_loss(logits, labels), F.cross_entropy(up, labels, ignore_index=255))


def test_one_hot_targets_mark_each_valid_label_and_nothing_else():
    labels = torch.tensor([[[0, 2, 255], [-100, C, C - 1]]])  # (1, 2, 3): classes, ignored, out of range
    onehot, valid = losses.one_hot_targets(labels, C)
    assert onehot.shape == (1, C, 2, 3) and onehot.dtype == torch.float32
    assert valid.tolist() == [[[True, True, False], [False, False, True]]]
    expected = torch.zeros(1, C, 2, 3)
    expected[0, 0, 0, 0] = expected[0, 2, 0, 1] = expected[0, C - 1, 1, 2] = 1.0
    assert torch.equal(onehot, expected)


def test_reliability_is_bce_with_logits_on_one_hot():
    z, labels = torch.randn(N, C, H, W), random_labels()
    onehot, valid = losses.one_hot_targets(labels, C)
    assert torch.equal(valid, labels != 255)
    assert torch.equal(onehot.sum(1), valid.float())
    expected = F.binary_cross_entropy_with_logits(z, onehot, reduction="none")
    torch.testing.assert_close(losses.reliability(z, onehot), expected)


def test_kmm_weights_follow_reliability():
    z_s, z_t = torch.randn(N, C, H, W), torch.randn(N, C, H, W)
    h = torch.rand(N, C, H, W) + 0.1
    _, s_t = losses.knowledge_mixing(z_s, z_t, h, h.clone())
    torch.testing.assert_close(s_t, torch.full_like(s_t, 0.5), atol=1e-5, rtol=0)

    h_good, h_bad = torch.full((N, C, H, W), 1e-9), torch.full((N, C, H, W), 10.0)
    z_mix, s_t = losses.knowledge_mixing(z_s, z_t, h_s=h_bad, h_t=h_good)  # reliable teacher
    assert s_t.min() > 0.999
    torch.testing.assert_close(z_mix, z_t, atol=1e-3, rtol=0)
    _, s_t = losses.knowledge_mixing(z_s, z_t, h_s=h_good, h_t=h_bad)  # reliable student
    assert s_t.max() < 1e-3


def test_kmm_mix_is_exactly_teacher_where_s_t_is_one():
    z_s, z_t = torch.randn(N, C, H, W), torch.randn(N, C, H, W)
    z_mix, s_t = losses.knowledge_mixing(z_s, z_t, h_s=torch.ones(N, C, H, W), h_t=torch.zeros(N, C, H, W), eps=0.0)
    assert torch.equal(s_t, torch.ones_like(s_t))
    assert torch.equal(z_mix, z_t)


def test_kem_weights_sum_to_one_over_classes_and_vanish_on_ignored_pixels():
    labels = random_labels()
    _, valid = losses.one_hot_targets(labels, C)
    weights = losses.knowledge_evaluation(torch.rand(N, C, H, W), torch.rand(N, C, H, W), valid)
    torch.testing.assert_close(weights.sum(1), valid.float())


def test_kem_spatial_weights_sum_to_one_over_valid_pixels():
    labels = random_labels()
    _, valid = losses.one_hot_targets(labels, C)
    weights = losses.knowledge_evaluation(torch.rand(N, C, H, W), torch.rand(N, C, H, W), valid, axis="spatial")
    torch.testing.assert_close(weights.flatten(2).sum(2), torch.ones(N, C))
    assert weights[~valid[:, None].expand_as(weights)].abs().max() == 0


def test_kem_discrepancy_is_zero_where_student_is_at_least_as_good():
    # With H_S <= H_mix everywhere, D = 0 and W is the plain softmax of H_S.
    h_s = torch.rand(N, C, H, W)
    valid = torch.ones(N, H, W, dtype=torch.bool)
    weights = losses.knowledge_evaluation(h_s, h_s + torch.rand(N, C, H, W), valid)
    torch.testing.assert_close(weights, h_s.softmax(1))
    # Where the student is behind the mix by δ > 0, the class's score grows by δ.
    delta = torch.rand(N, C, H, W)
    behind = losses.knowledge_evaluation(h_s, h_s - delta, valid)
    torch.testing.assert_close(behind, (h_s + delta).softmax(1))


def test_ignored_pixels_contribute_nothing():
    z_s, z_t, labels = torch.randn(N, C, H, W), torch.randn(N, C, H, W), random_labels()
    base = losses.heteroakd_loss(z_s, z_t, labels)
    ignored = labels == 255
    z_s2, z_t2 = z_s.clone(), z_t.clone()
    z_s2[ignored[:, None].expand_as(z_s)] = 100.0
    z_t2[ignored[:, None].expand_as(z_t)] = -100.0
    changed = losses.heteroakd_loss(z_s2, z_t2, labels)
    torch.testing.assert_close(changed.hakd, base.hakd)
    torch.testing.assert_close(changed.proj, base.proj)


def test_without_kmm_and_kem_hakd_is_plain_soft_target_ce():
    z_s, z_t, labels, tau = torch.randn(N, C, H, W), torch.randn(N, C, H, W), random_labels(), 4.0
    out = losses.heteroakd_loss(z_s, z_t, labels, temperature=tau, kmm=False, kem=False, activation="softmax")
    valid = labels != 255
    ce = -(torch.softmax(z_t / tau, 1) * torch.log_softmax(z_s / tau, 1)).sum(1)
    torch.testing.assert_close(out.hakd, ce[valid].mean() * tau**2)


def test_projector_loss_is_mean_reliability_of_both_maps():
    z_s, z_t, labels = torch.randn(N, C, H, W), torch.randn(N, C, H, W), random_labels()
    onehot, valid = losses.one_hot_targets(labels, C)
    h = F.binary_cross_entropy_with_logits(z_s, onehot, reduction="none") + F.binary_cross_entropy_with_logits(
        z_t, onehot, reduction="none"
    )
    torch.testing.assert_close(losses.heteroakd_loss(z_s, z_t, labels).proj, h.mean(1)[valid].mean())


@pytest.mark.parametrize("kem_axis", ["class", "spatial"])
def test_losses_finite_under_bf16_autocast(kem_axis):
    z_s = (torch.randn(N, C, H, W) * 30).bfloat16()
    z_t = (torch.randn(N, C, 2 * H, 2 * W) * 30).bfloat16()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = losses.heteroakd_loss(z_s, z_t, random_labels(h=4 * H, w=4 * W), kem_axis=kem_axis)
        kd = losses.pixel_kd_loss(z_s, z_t, 4.0)
        task = losses.task_loss(z_s, random_labels())
    for value in (out.hakd, out.proj, kd, task):
        assert value.dtype == torch.float32 and torch.isfinite(value)


def test_gradients_reach_student_and_both_projectors_never_teacher():
    teacher_backbone = torch.nn.Conv2d(3, 16, 3, padding=1)
    student_backbone = torch.nn.Conv2d(3, 8, 3, padding=1)
    projectors = HeteroAKDProjectors([8], [16], num_labels=C, hidden_channels=32, student_projector="mlp")
    x = torch.randn(N, 3, H, W)
    with torch.no_grad():
        f_t = teacher_backbone(x)
    z_s, z_t = projectors([student_backbone(x)], [f_t])
    out = losses.heteroakd_loss(z_s[0], z_t[0], random_labels())
    (out.hakd + out.proj).backward()
    assert student_backbone.weight.grad.abs().sum() > 0
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in projectors.parameters())
    assert teacher_backbone.weight.grad is None


def test_hakd_gradient_flows_only_through_student_map():
    z_s = torch.randn(N, C, H, W, requires_grad=True)
    z_t = torch.randn(N, C, H, W, requires_grad=True)
    losses.heteroakd_loss(z_s, z_t, random_labels()).hakd.backward()
    assert z_s.grad.abs().sum() > 0
    assert z_t.grad is None or z_t.grad.abs().sum() == 0


@pytest.mark.parametrize("kem_axis", ["class", "spatial"])
def test_sigmoid_terms_keep_the_target_optimal_under_kem_weights(kem_axis):
    # Student equal to the target (kmm=False: Z^mix = Z^T): the sigmoid form has zero gradient whatever
    # KEM's weights; the softmax form is pulled away from the target towards the heavily weighted classes.
    z_t, labels = torch.randn(N, C, H, W), random_labels()
    grads = {}
    for activation in ("sigmoid", "softmax"):
        z_s = z_t.clone().requires_grad_(True)
        losses.heteroakd_loss(z_s, z_t, labels, kmm=False, kem_axis=kem_axis, activation=activation).hakd.backward()
        grads[activation] = z_s.grad.abs().max().item()
    assert grads["sigmoid"] < 1e-6
    assert grads["softmax"] > 1e-3


def test_sigmoid_form_without_kmm_and_kem_is_plain_per_class_binary_kl():
    z_s, z_t, labels, tau = torch.randn(N, C, H, W), torch.randn(N, C, H, W), random_labels(), 2.0
    out = losses.heteroakd_loss(z_s, z_t, labels, temperature=tau, kmm=False, kem=False, activation="sigmoid")
    p, q = torch.sigmoid(z_t.double() / tau), torch.sigmoid(z_s.double() / tau)
    kl = (p * (p / q).log() + (1 - p) * ((1 - p) / (1 - q)).log()).sum(1)
    torch.testing.assert_close(out.hakd.double(), kl[labels != 255].mean() * tau**2, rtol=1e-5, atol=1e-6)
    assert losses.heteroakd_loss(z_t, z_t, labels, kmm=False, kem=False).hakd.abs() < 1e-5


def test_projection_loss_ce_is_cross_entropy_over_valid_pixels():
    z, labels = torch.randn(N, C, H, W), random_labels()
    onehot, valid = losses.one_hot_targets(labels, C)
    expected = F.cross_entropy(z, labels, ignore_index=255)
    torch.testing.assert_close(losses.projection_loss(z, labels, onehot, valid, "ce"), expected)
    with pytest.raises(ValueError, match="'ce' or 'bce'"):
        losses.projection_loss(z, labels, onehot, valid, "dice")


def test_maps_are_compared_on_the_requested_grid():
    # grid=(2H, 2W) on 2H x 2W labels: the same as resizing both maps bilinearly first, labels untouched.
    z_s, z_t, labels = torch.randn(N, C, H, W), torch.randn(N, C, H // 2, W // 2), random_labels(h=2 * H, w=2 * W)
    up = lambda z: F.interpolate(z, size=(2 * H, 2 * W), mode="bilinear", align_corners=False)  # noqa: E731
    for proj_loss in ("ce", "bce"):
        on_grid = losses.heteroakd_loss(z_s, z_t, labels, grid=(2 * H, 2 * W), proj_loss=proj_loss)
        resized = losses.heteroakd_loss(up(z_s), up(z_t), labels, proj_loss=proj_loss)
        torch.testing.assert_close(on_grid.hakd, resized.hakd)
        torch.testing.assert_close(on_grid.proj, resized.proj)
    # The default grid is the student's: labels are resized with nearest to (H, W).
    coarse = losses.heteroakd_loss(z_s, z_t, labels)
    torch.testing.assert_close(coarse.hakd, losses.heteroakd_loss(z_s, z_t, labels, grid=(H, W)).hakd)


def test_teacher_projection_loss_is_the_teacher_half_of_proj():
    z_s, z_t, labels = torch.randn(N, C, H, W), torch.randn(N, C, H, W), random_labels()
    onehot, valid = losses.one_hot_targets(labels, C)
    for kind in ("ce", "bce"):
        both = losses.heteroakd_loss(z_s, z_t, labels, proj_loss=kind).proj
        student = losses.projection_loss(z_s, labels, onehot, valid, kind)
        torch.testing.assert_close(losses.teacher_projection_loss(z_t, labels, kind=kind), both - student)


def test_diagnostics_read_the_labelled_class():
    labels = random_labels()
    onehot, valid = losses.one_hot_targets(labels, C)
    truth = 20.0 * onehot - 10.0  # certain and right everywhere
    z_s = torch.randn(N, C, H, W)
    out = losses.heteroakd_loss(z_s, truth, labels)
    d = out.diagnostics
    assert d["acc_teacher"] == 1.0
    expected_acc = (z_s.argmax(1) == labels)[valid].float().mean()
    torch.testing.assert_close(d["acc_student"], expected_acc)
    assert d["s_t"] > 0.99  # the teacher is certain and right: the mix is the teacher's map
    assert d["h_gap"] < 0
    assert 1 / C <= d["w_max"] <= 1
    assert all(not v.requires_grad and v.ndim == 0 for v in d.values())
    swapped = losses.heteroakd_loss(truth, z_s, labels).diagnostics
    assert swapped["s_t"] < 0.01 and swapped["acc_student"] == 1.0
    assert losses.heteroakd_loss(z_s, truth, labels, kmm=False).diagnostics["s_t"] == 1.0


def test_gradient_alignment_compares_two_losses_gradients_at_the_features():
    features = [torch.randn(N, 4, H, W, requires_grad=True), torch.randn(N, 2, H // 2, W // 2, requires_grad=True)]
    weights = [torch.randn_like(f) for f in features]
    reference = sum((f * w).sum() for f, w in zip(features, weights))
    double = losses.gradient_alignment(2 * reference, reference, features)
    torch.testing.assert_close(double["grad_norm_ratio"], torch.tensor(2.0))
    torch.testing.assert_close(double["grad_cosine"], torch.tensor(1.0))
    assert losses.gradient_alignment(-reference, reference, features)["grad_cosine"] == pytest.approx(-1.0)
    # A loss of the first map alone, orthogonal to the reference's gradient there: cosine 0.
    flat = weights[0].flatten()
    other = torch.randn_like(flat)
    other = (other - (other @ flat) / (flat @ flat) * flat).view_as(weights[0])
    orthogonal = losses.gradient_alignment((features[0] * other).sum(), reference, features)
    assert orthogonal["grad_cosine"].abs() < 1e-5
    assert all(f.grad is None for f in features)  # nothing accumulated, and the graph is still there:
    reference.backward()
    assert all(torch.equal(f.grad, w) for f, w in zip(features, weights))


def test_proj_student_off_leaves_only_the_teachers_label_loss():
    z_s, z_t, labels = torch.randn(N, C, H, W), torch.randn(N, C, H, W), random_labels()
    onehot, valid = losses.one_hot_targets(labels, C)
    for kind in ("ce", "bce"):
        out = losses.heteroakd_loss(z_s, z_t, labels, proj_loss=kind, proj_student=False)
        torch.testing.assert_close(out.proj, losses.projection_loss(z_t, labels, onehot, valid, kind))
        both = losses.heteroakd_loss(z_s, z_t, labels, proj_loss=kind).proj
        torch.testing.assert_close(both, out.proj + losses.projection_loss(z_s, labels, onehot, valid, kind))


@pytest.mark.parametrize("student_projector", ["mlp", "linear", "none"])
def test_student_projector_kinds(student_projector):
    projectors = HeteroAKDProjectors([8], [16], C, hidden_channels=32, student_projector=student_projector)
    features, logits = torch.randn(N, 8, H, W), torch.randn(N, C, 2 * H, 2 * W)
    (z_s,), (z_t,) = projectors([features], [torch.randn(N, 16, H, W)], logits)
    assert z_t.shape == (N, C, H, W)
    if student_projector == "none":  # the student's own logits, and no student module to absorb the target
        assert z_s is logits and projectors.student is None
    else:
        assert z_s.shape == (N, C, H, W) and len(projectors.student) == 1
    if student_projector == "linear":
        assert [type(m) for m in projectors.student[0]] == [torch.nn.Conv2d, torch.nn.BatchNorm2d]


def test_without_a_student_projector_the_logits_are_required_and_the_kind_is_checked():
    projectors = HeteroAKDProjectors([8], [16], C, student_projector="none")
    with pytest.raises(ValueError, match="pass student_logits"):
        projectors([torch.randn(N, 8, H, W)], [torch.randn(N, 16, H, W)])
    with pytest.raises(ValueError, match="mlp, linear, none"):
        HeteroAKDProjectors([8], [16], C, student_projector="deep")
