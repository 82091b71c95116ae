"""The loss terms of HeteroAKD as pure functions on tensors.

Shapes: N batch, C classes, (h, w) a logits or feature grid, (H, W) the label grid.
Every function computes in float32 whatever the input dtype, so the terms stay finite
under bf16/fp16 autocast. Symbols follow ``docs/method.md``:

    L_total = L_task + λ1·L_kd + λ2·L_hakd + λ_proj·L_proj
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F

from .labels import IGNORE_INDEX

KemAxis = Literal["class", "spatial"]
HakdActivation = Literal["softmax", "sigmoid"]
ProjLoss = Literal["ce", "bce"]


def resize_logits(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of (N, C, h, w) logits to ``size``; a no-op when the grid already matches."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode="bilinear", align_corners=False)


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest resize of (N, H, W) integer labels to ``size``, keeping ignore values intact.

    "nearest-exact" reads each cell's centre, where :func:`resize_logits` (bilinear, align_corners=False)
    and a strided feature map sit; "nearest" would read its top-left pixel, half a cell away (16 pixels on
    a stride-32 grid).
    """
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels
    return F.interpolate(labels[:, None].float(), size=size, mode="nearest-exact")[:, 0].long()


def task_loss_sum(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum, count): the cross-entropy of (N, C, h, w) logits upsampled to the (N, H, W) labels, summed
    over the pixels not equal to ``ignore_index``, and their number; two scalars, for means over batches."""
    logits = resize_logits(logits.float(), labels.shape[-2:])
    total = F.cross_entropy(logits, labels.long(), ignore_index=ignore_index, reduction="sum")
    return total, (labels != ignore_index).sum()


def task_loss_per_image(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """(sums, counts), each (N,): per image, :func:`task_loss_sum`'s sum in float64 and its pixel count.

    Summed per image and in float64, an evaluation set's total does not depend on how its images were
    batched (beyond the batched kernels' own rounding of the logits)."""
    logits = resize_logits(logits.float(), labels.shape[-2:])
    pixels = F.cross_entropy(logits, labels.long(), ignore_index=ignore_index, reduction="none")  # 0 where ignored
    return pixels.double().flatten(1).sum(1), (labels != ignore_index).flatten(1).sum(1)


def task_loss(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """L_task: the mean of :func:`task_loss_sum` over the labelled pixels; scalar.

    Pixels equal to ``ignore_index`` do not count, as in transformers' segmentation models; a batch
    without any other pixel gives 0 (not the NaN of a mean over nothing), so its distillation terms still train.
    """
    total, count = task_loss_sum(logits, labels, ignore_index)
    return total / count.clamp_min(1)


def pixel_kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """L_kd (Eq. 1): τ² · mean over pixels of KL(σ(z_T/τ) ‖ σ(z_S/τ)); scalar.

    Args:
        student_logits: (N, C, h, w).
        teacher_logits: (N, C, h', w'), resized bilinearly to (h, w) when the grids differ.
        temperature: τ.
    """
    teacher_logits = resize_logits(teacher_logits.float(), student_logits.shape[-2:])
    log_p_s = F.log_softmax(student_logits.float() / temperature, dim=1)
    log_p_t = F.log_softmax(teacher_logits / temperature, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)  # (N, h, w)
    return kl.mean() * temperature**2


def channel_wise_kd_loss(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0
) -> torch.Tensor:
    """L_cwd, channel-wise distillation (Shu et al., 2021): each class map of the teacher, as a
    softmax over its pixels, taught to the student's; τ² · mean over (N, C) of the spatial KL; scalar.

    Args:
        student_logits: (N, C, h, w).
        teacher_logits: (N, C, h', w'), resized bilinearly to (h, w) when the grids differ.
        temperature: τ.
    """
    teacher_logits = resize_logits(teacher_logits.float(), student_logits.shape[-2:])
    log_p_s = F.log_softmax(student_logits.float().flatten(2) / temperature, dim=2)
    log_p_t = F.log_softmax(teacher_logits.flatten(2) / temperature, dim=2)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=2)  # (N, C)
    return kl.mean() * temperature**2


def one_hot_targets(
    labels: torch.Tensor, num_classes: int, ignore_index: int = IGNORE_INDEX
) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot (N, C, h, w) float targets and the (N, h, w) bool mask of valid pixels.

    A pixel is valid when its label is a class in [0, C); ignored pixels get an all-zero target.
    """
    valid = (labels >= 0) & (labels < num_classes) & (labels != ignore_index)
    safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
    # scatter_, not F.one_hot: one_hot reads the labels' min and max back on the host, a GPU sync every step.
    onehot = torch.zeros(labels.shape[0], num_classes, *labels.shape[1:], device=labels.device)
    onehot.scatter_(1, safe[:, None], valid[:, None].float())
    return onehot, valid


def reliability(logits: torch.Tensor, onehot: torch.Tensor) -> torch.Tensor:
    """H(Z): elementwise sigmoid BCE of (N, C, h, w) logits against one-hot labels, (N, C, h, w).

    Low H means the map is reliable for that class at that pixel (a loss w.r.t. the labels).
    """
    return F.binary_cross_entropy_with_logits(logits.float(), onehot, reduction="none")


@torch.no_grad()
def knowledge_mixing(
    z_s: torch.Tensor, z_t: torch.Tensor, h_s: torch.Tensor, h_t: torch.Tensor, eps: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """KMM (Eq. 5–7): the reliability-weighted mix of teacher and student logits.

    Args:
        z_s, z_t: (N, C, h, w) projected student / teacher logits on the same grid.
        h_s, h_t: (N, C, h, w) their reliabilities H(Z^S), H(Z^T).

    Returns:
        ``(z_mix, s_t)``, both (N, C, h, w) and without gradient:
        S_T = H_S / (H_T + H_S + ε) and Z^mix = S_T ⊙ Z^T + (1 − S_T) ⊙ Z^S.
    """
    s_t = h_s / (h_t + h_s + eps)
    z_mix = s_t * z_t.float() + (1.0 - s_t) * z_s.float()
    return z_mix, s_t


@torch.no_grad()
def knowledge_evaluation(
    h_s: torch.Tensor, h_mix: torch.Tensor, valid: torch.Tensor, axis: KemAxis = "class"
) -> torch.Tensor:
    """KEM (Eq. 8–9): per-class, per-pixel weights W from how far the student is behind the mix.

    D = max(0, H_S − H_mix); W = softmax(H_S + D) over ``axis``: the classes at each pixel
    ("class"), or the valid pixels of each image and class ("spatial").

    Args:
        h_s, h_mix: (N, C, h, w) reliabilities of the student and of the mixed logits.
        valid: (N, h, w) bool mask of valid pixels.

    Returns:
        W, (N, C, h, w) without gradient; zero at invalid pixels.
    """
    score = h_s + (h_s - h_mix).clamp_min(0.0)
    if axis == "class":
        weights = score.softmax(dim=1)
    elif axis == "spatial":
        score = score.masked_fill(~valid[:, None], float("-inf")).flatten(2)
        weights = score.softmax(dim=2).nan_to_num(0.0).view_as(h_s)  # images with no valid pixel give NaN
    else:
        raise ValueError(f"kem_axis must be 'class' or 'spatial', got {axis!r}")
    return weights * valid[:, None]


def uniform_weights(valid: torch.Tensor, num_classes: int, axis: KemAxis = "class") -> torch.Tensor:
    """The weights KEM is replaced with when switched off: uniform over ``axis``, (N, C, h, w)."""
    weights = valid[:, None].float().expand(-1, num_classes, -1, -1)
    if axis == "class":
        return weights / num_classes
    return weights / valid.flatten(1).sum(1).clamp_min(1)[:, None, None, None]


def soft_target_terms(
    student: torch.Tensor, target: torch.Tensor, temperature: float, activation: HakdActivation = "sigmoid"
) -> torch.Tensor:
    """Per-class soft-target terms between (N, C, h, w) logits, (N, C, h, w); each term ≥ 0.

    "softmax": the cross-entropy terms −σ(target/τ)_c · log σ(student/τ)_c, σ the softmax over
    classes. The classes are coupled: weighting the terms moves the optimum to
    σ(student/τ) ∝ W ⊙ σ(target/τ).
    "sigmoid": one-vs-rest, the KL between Bernoulli(sigmoid(target_c/τ)) and
    Bernoulli(sigmoid(student_c/τ)) per class: zero at student_c = target_c whatever its weight,
    as the reliability H is per class.
    """
    student, target = student.float() / temperature, target.float() / temperature
    if activation == "softmax":
        return -target.softmax(dim=1) * student.log_softmax(dim=1)
    if activation == "sigmoid":
        p = target.sigmoid()
        bce = lambda logits: F.binary_cross_entropy_with_logits(logits, p, reduction="none")  # noqa: E731
        return bce(student) - bce(target)  # cross-entropy minus the target's entropy
    raise ValueError(f"activation must be 'softmax' or 'sigmoid', got {activation!r}")


def projection_loss(
    z: torch.Tensor, labels: torch.Tensor, onehot: torch.Tensor, valid: torch.Tensor, kind: ProjLoss = "ce"
) -> torch.Tensor:
    """L_proj of one projected map: its label supervision, averaged over the valid pixels; scalar.

    Args:
        z: (N, C, h, w) projected logits.
        labels: (N, h, w) class indices on z's grid; onehot: (N, C, h, w) and valid: (N, h, w) from
            :func:`one_hot_targets` of them.
        kind: "ce", the softmax cross-entropy of a segmentation head; "bce", the class mean of the
            reliability H(Z) (one-vs-rest sigmoid BCE), which lets a map predict background
            everywhere once the background pixels dominate the mean.
    """
    num_valid = valid.sum().clamp_min(1)
    if kind == "ce":
        safe = torch.where(valid, labels, torch.zeros_like(labels)).long()
        ce = F.cross_entropy(z.float(), safe, reduction="none")  # (N, h, w)
        return (ce * valid).sum() / num_valid
    if kind == "bce":
        return (reliability(z, onehot).mean(dim=1) * valid).sum() / num_valid
    raise ValueError(f"kind must be 'ce' or 'bce', got {kind!r}")


def teacher_projection_loss(
    z_t: torch.Tensor,
    labels: torch.Tensor,
    grid: tuple[int, int] | None = None,
    kind: ProjLoss = "ce",
    ignore_index: int = IGNORE_INDEX,
) -> torch.Tensor:
    """L_proj of the teacher's projected map alone, as in :func:`heteroakd_loss`, to fit its projector
    before distillation; scalar. z_t (N, C, h, w) is resized to ``grid`` (None: its own), the (N, H, W)
    labels with nearest."""
    grid = tuple(z_t.shape[-2:]) if grid is None else tuple(grid)
    grid_labels = resize_labels(labels, grid)
    onehot, valid = one_hot_targets(grid_labels, z_t.shape[1], ignore_index)
    return projection_loss(resize_logits(z_t.float(), grid), grid_labels, onehot, valid, kind)


@torch.no_grad()
def mixing_diagnostics(
    z_s: torch.Tensor,
    z_t: torch.Tensor,
    h_s: torch.Tensor,
    h_t: torch.Tensor,
    s_t: torch.Tensor | None,
    weights: torch.Tensor,
    labels: torch.Tensor,
    valid: torch.Tensor,
) -> dict[str, torch.Tensor]:
    """What KMM and KEM did on a batch, as scalars over the valid pixels (N, h, w).

    S_T and H are read in each pixel's labelled class, and averaged per class first, then over the classes
    present: in the other classes both maps are near-certain, and on the dominant class (background, road)
    both are right, so a plain mean would sit near 0.5 whatever the teacher knows.

    - ``s_t``: S_T of the labelled class (1: the mix is the teacher's map; 0.5: a midpoint);
    - ``h_gap``: H(Z^T) − H(Z^S) of the labelled class (negative: the teacher's map is more reliable);
    - ``w_max``: KEM's largest class weight, mean over pixels (1/C for uniform weights);
    - ``acc_teacher``, ``acc_student``: the pixel accuracy of the argmax of Z^T and Z^S against the labels.

    Shapes as in :func:`heteroakd_loss` after the resizes; ``s_t`` None means no mixing (S_T = 1).
    """
    count = valid.sum().clamp_min(1)
    labelled = torch.where(valid, labels, torch.zeros_like(labels)).long()[:, None]  # (N, 1, h, w)
    in_class = torch.zeros_like(s_t if s_t is not None else h_s).scatter_(1, labelled, valid[:, None].float())
    class_pixels = in_class.sum(dim=(0, 2, 3))  # (C,)
    present = (class_pixels > 0).sum().clamp_min(1)

    def mean(per_pixel: torch.Tensor) -> torch.Tensor:
        return (per_pixel.float() * valid).sum() / count

    def class_balanced(per_class: torch.Tensor) -> torch.Tensor:
        """The labelled class's value, averaged over each class's pixels, then over the classes present."""
        per_label = (per_class * in_class).sum(dim=(0, 2, 3)) / class_pixels.clamp_min(1)
        return per_label.sum() / present

    return {
        "s_t": class_balanced(s_t) if s_t is not None else valid.new_ones((), dtype=torch.float32),
        "h_gap": class_balanced(h_t - h_s),
        "w_max": mean(weights.amax(dim=1)),
        "acc_teacher": mean(z_t.argmax(dim=1) == labels),
        "acc_student": mean(z_s.argmax(dim=1) == labels),
    }


class HeteroAKDLosses(NamedTuple):
    hakd: torch.Tensor
    """L_hakd (Eq. 10), scalar."""
    proj: torch.Tensor
    """L_proj, the projectors' label supervision, scalar."""
    diagnostics: dict[str, torch.Tensor]
    """:func:`mixing_diagnostics` of the batch, scalars without gradient."""


def heteroakd_loss(
    z_s: torch.Tensor,
    z_t: torch.Tensor,
    labels: torch.Tensor,
    temperature: float = 4.0,
    kmm: bool = True,
    kem: bool = True,
    kem_axis: KemAxis = "class",
    ignore_index: int = IGNORE_INDEX,
    eps: float = 1e-6,
    activation: HakdActivation = "sigmoid",
    grid: tuple[int, int] | None = None,
    proj_loss: ProjLoss = "bce",
    proj_student: bool = True,
    proj_teacher: bool = True,
) -> HeteroAKDLosses:
    """L_hakd and L_proj for one stage, sharing the resizes and reliabilities they both need.

    L_hakd = τ² · mean_valid Σ_c  K·W_c · ℓ_c(Z^S, Z^mix), ℓ_c the per-class soft-target term of
    ``activation`` (:func:`soft_target_terms`) and K rescaling W so that its mean over the
    softmax axis is 1 (K = C for the class axis): with ``kmm=False, kem=False`` this is exactly the
    plain soft-target loss from Z^T (softmax cross-entropy, or per-class binary KL).
    L_proj = :func:`projection_loss` of Z^T (with ``proj_teacher``) plus that of Z^S (with ``proj_student``).

    Args:
        z_s: (N, C, h, w) the student's projected logits Z^S; gradient flows only through it
            (and, for L_proj, through z_t).
        z_t: (N, C, h', w') the teacher's projected logits Z^T.
        labels: (N, H, W) class indices.
        temperature: τ, for the soft targets and the τ² factor.
        kmm: mix teacher and student by reliability; off, Z^mix = Z^T.
        kem: weight classes by KEM; off, W is uniform.
        kem_axis: "class" or "spatial", the softmax axis of KEM.
        activation: the per-class soft-target terms, see :func:`soft_target_terms`.
        grid: the (h, w) grid on which the maps are compared: both are resized bilinearly to it, the
            labels with nearest. None: the student's grid (h, w).
        proj_loss: the form of L_proj, see :func:`projection_loss`.
        proj_student: supervise Z^S with the labels too; off, only L_hakd pulls it (and no label loss lets a
            student projector learn the classes without the student's features carrying them).
        proj_teacher: supervise Z^T with the labels; off when Z^T is the frozen teacher's own logits, which
            no label loss can train.
    """
    num_classes = z_s.shape[1]
    grid = tuple(z_s.shape[-2:]) if grid is None else tuple(grid)
    z_s = resize_logits(z_s.float(), grid)
    z_t = resize_logits(z_t.float(), grid)
    grid_labels = resize_labels(labels, grid)
    onehot, valid = one_hot_targets(grid_labels, num_classes, ignore_index)
    num_valid = valid.sum().clamp_min(1)

    h_s = reliability(z_s, onehot)
    h_t = reliability(z_t, onehot)
    proj = z_s.new_zeros(())
    if proj_teacher:
        proj = proj + projection_loss(z_t, grid_labels, onehot, valid, proj_loss)
    if proj_student:
        proj = proj + projection_loss(z_s, grid_labels, onehot, valid, proj_loss)

    s_t = None
    if kmm:
        z_mix, s_t = knowledge_mixing(z_s, z_t, h_s, h_t, eps)
    else:
        z_mix = z_t.detach()
    if kem:
        weights = knowledge_evaluation(h_s.detach(), reliability(z_mix, onehot), valid, kem_axis)
    else:
        weights = uniform_weights(valid, num_classes, kem_axis)
    # Scale so the mean weight over the softmax axis is 1 (uniform weights give the plain soft CE).
    scale = num_classes if kem_axis == "class" else valid.flatten(1).sum(1)[:, None, None, None]
    per_pixel = (scale * weights * soft_target_terms(z_s, z_mix, temperature, activation)).sum(dim=1)
    hakd = (per_pixel * valid).sum() / num_valid * temperature**2
    diagnostics = mixing_diagnostics(z_s, z_t, h_s, h_t, s_t, weights, grid_labels, valid)
    return HeteroAKDLosses(hakd=hakd, proj=proj, diagnostics=diagnostics)


def gradient_alignment(
    loss: torch.Tensor, reference: torch.Tensor, features: list[torch.Tensor]
) -> dict[str, torch.Tensor]:
    """How ``loss`` pulls on ``features`` beside ``reference`` does: the norm ratio ‖∇loss‖ / ‖∇reference‖
    and the cosine of the two gradients, each taken w.r.t. the feature maps (all of them flattened into one
    vector); scalars without gradient. The graph is kept for the step's backward.

    Args:
        loss, reference: scalars, e.g. L_hakd and L_task.
        features: (N, C_k, h_k, w_k) maps both losses were computed from, e.g. the distilled backbone stages.
    """
    grads = [
        torch.cat(
            [
                (g if g is not None else torch.zeros_like(f)).float().flatten()
                for g, f in zip(torch.autograd.grad(value, features, retain_graph=True, allow_unused=True), features)
            ]
        )
        for value in (loss, reference)
    ]
    norms = [g.norm() for g in grads]
    return {
        "grad_norm_ratio": norms[0] / norms[1].clamp_min(1e-12),
        "grad_cosine": (grads[0] @ grads[1]) / (norms[0] * norms[1]).clamp_min(1e-12),
    }
