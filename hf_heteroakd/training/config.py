"""``HeteroAKDConfig``: the trainer's options, a ``TrainingArguments`` subclass."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from transformers import TrainingArguments

from ..core.errors import HeteroAKDError
from ..core.labels import IGNORE_INDEX
from ..methods.registry import method_class
from .argument_checks import COUNT, NON_NEGATIVE, POSITIVE, check_fields, eval_window
from .arguments import eval_crop_size_field, eval_flip_field, eval_stride_field
from .checkpoints import resume_setting


@dataclass
class HeteroAKDConfig(TrainingArguments):
    """TrainingArguments plus the distillation options.

    The total loss is ``L_task + lambda_kd·L_kd + lambda_hakd·L_hakd + lambda_proj·L_proj``;
    docs/method.md says which defaults are the paper's, which are public readings and which are ours.
    """

    distill_method: str = field(
        default="heteroakd",
        metadata={
            "help": "heteroakd: task + KD + HeteroAKD losses; kd: task + pixel KD (Eq. 1); cwd: task + "
            "channel-wise distillation of the logits (Shu et al., 2021), the usual baseline; none: task loss "
            "only; or a method registered with hf_heteroakd.methods.register_method."
        },
    )
    lambda_kd: float = field(
        default=0.1,
        metadata={
            "methods": ("kd", "heteroakd"),
            "bound": NON_NEGATIVE,
            "help": "λ1, weight of the pixel KD loss L_kd.",
        },
    )
    lambda_cwd: float = field(
        default=3.0,
        metadata={"methods": ("cwd",), "bound": NON_NEGATIVE, "help": "Weight of L_cwd with --distill_method cwd."},
    )
    lambda_hakd: float = field(
        default=0.3,
        metadata={
            "methods": ("heteroakd",),
            "bound": NON_NEGATIVE,
            "help": "λ2, weight of the HeteroAKD loss L_hakd (Eq. 10).",
        },
    )
    lambda_proj: float = field(
        default=1.0,
        metadata={
            "methods": ("heteroakd",),
            "bound": NON_NEGATIVE,
            "help": "Weight of L_proj, the projectors' label supervision (a decision, D).",
        },
    )
    temperature: float = field(
        default=4.0,
        metadata={"methods": ("kd", "cwd", "heteroakd"), "bound": POSITIVE, "help": "τ of both L_kd and L_hakd."},
    )
    hakd_stages: list[int] = field(
        default_factory=lambda: [-1],
        metadata={
            "methods": ("heteroakd",),
            "help": "Backbone stages distilled by L_hakd (Python indices; -1 is the last stage). Summed.",
        },
    )
    hakd_stride: int | None = field(
        default=None,
        metadata={
            "methods": ("heteroakd",),
            "bound": COUNT,
            "help": "Compare the projected maps on the label grid divided by this stride (1: the label grid), "
            "both resized bilinearly; unset: on the student's stage grid.",
        },
    )
    proj_loss: Literal["ce", "bce"] = field(
        default="bce",
        metadata={
            "methods": ("heteroakd",),
            "help": "Label supervision of the projected maps (L_proj): softmax cross-entropy (ce), or the "
            "class mean of the one-vs-rest reliability H (bce).",
        },
    )
    teacher_projector_fit_steps: int = field(
        default=0,
        metadata={
            "methods": ("heteroakd",),
            "bound": NON_NEGATIVE,
            "help": "Steps that fit the teacher's projectors to the labels on the frozen teacher (L_proj of "
            "Z^T alone) before the student's first step, so that knowledge mixing starts from a map that has "
            "read the teacher; 0: both projectors start random together.",
        },
    )
    teacher_projector_fit_lr: float = field(
        default=1e-3,
        metadata={
            "methods": ("heteroakd",),
            "bound": POSITIVE,
            "help": "AdamW learning rate of --teacher_projector_fit_steps.",
        },
    )
    kmm: bool = field(
        default=True,
        metadata={"methods": ("heteroakd",), "help": "Teacher-student knowledge mixing; off: Z^mix = Z^T."},
    )
    kem: bool = field(
        default=True,
        metadata={"methods": ("heteroakd",), "help": "Teacher-student knowledge evaluation; off: uniform weights."},
    )
    kem_axis: Literal["class", "spatial"] = field(
        default="class",
        metadata={
            "methods": ("heteroakd",),
            "help": "Softmax axis of KEM's weights: over classes, or over valid pixels.",
        },
    )
    hakd_activation: Literal["sigmoid", "softmax"] = field(
        default="sigmoid",
        metadata={
            "methods": ("heteroakd",),
            "help": "Per-class soft targets of L_hakd: one-vs-rest sigmoid (default), whose class terms "
            "KEM's weights cannot pull away from the target, or softmax over classes (the spec's literal "
            "reading, which KEM's weights destabilise; see docs/method.md).",
        },
    )
    kmm_eps: float = field(
        default=1e-6,
        metadata={"methods": ("heteroakd",), "bound": POSITIVE, "help": "ε in S_T = H_S / (H_T + H_S + ε)."},
    )
    projector_channels: int = field(
        default=256,
        metadata={"methods": ("heteroakd",), "bound": COUNT, "help": "Hidden channels of the stage projectors."},
    )
    student_projector: Literal["mlp", "linear", "none"] = field(
        default="mlp",
        metadata={
            "methods": ("heteroakd",),
            "help": "The student's side of the aligned logits space: mlp, a projector 1x1 conv -> BN -> ReLU -> "
            "1x1 conv on its stage features (a public reading); linear, 1x1 conv -> BN; none, no projector: Z^S "
            "is the student's own logits, so L_hakd trains the layers that predict.",
        },
    )
    teacher_projector: Literal["mlp", "none"] = field(
        default="none",
        metadata={
            "methods": ("heteroakd",),
            "help": "The teacher's side of the aligned logits space: mlp, a projector on its stage features, "
            "supervised by L_proj (a public reading); none, no projector: Z^T is the teacher's own logits, "
            "resized to the compared grid (the other public reading).",
        },
    )
    proj_loss_student: bool = field(
        default=True,
        metadata={
            "methods": ("heteroakd",),
            "help": "Supervise the student's projected map with the labels (L_proj of Z^S); off, L_hakd alone "
            "pulls it. No effect with --student_projector none (the logits have L_task).",
        },
    )
    channels_last: bool = field(
        default=False,
        metadata={
            "help": "Keep the student and the projectors in channels_last memory format (often faster for CNN "
            "students; benchmarks/bench_step.py --channels_last measures your pair)."
        },
    )
    ignore_index: int = field(
        default=IGNORE_INDEX,
        metadata={"bound": NON_NEGATIVE, "help": "Label value ignored by the losses and the metric."},
    )
    eval_crop_size: list[int] | None = eval_crop_size_field()
    eval_stride: list[int] | None = eval_stride_field()
    eval_flip: bool = eval_flip_field()
    num_visualized_images: int = field(
        default=4,
        metadata={
            "bound": NON_NEGATIVE,
            "help": "Validation images (chosen once by seed) whose predictions are drawn "
            "at each evaluation: PNGs in output_dir/predictions/, TensorBoard and W&B images, the card's figure. "
            "0: none.",
        },
    )
    max_nonfinite_steps: int = field(
        default=10,
        metadata={
            "bound": NON_NEGATIVE,
            "help": "Steps with a non-finite loss are skipped; after this many, save a checkpoint and stop.",
        },
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Train into an --output_dir that already holds files of another run."}
    )
    teacher_logits_cache: str | None = field(
        default=None,
        metadata={
            "help": "Directory of precomputed teacher outputs (logits; for heteroakd also the --hakd_stages "
            "maps): computed in one pass before the first training step if absent, then reused by later "
            "runs with the same teacher, data and transforms (else refused), so training never runs the "
            "teacher. Needs un-augmented training inputs (--no_augmentation)."
        },
    )
    teacher_logits_cache_dtype: Literal["float16", "bfloat16", "float32"] = field(
        default="float16", metadata={"help": "Precision of the values stored by --teacher_logits_cache."}
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep the pixel_values/labels columns."})
    sync_batchnorm: bool = field(
        default=False,
        metadata={
            "help": "With several GPUs, compute the student's and projectors' BatchNorm statistics over the "
            "whole batch of all processes (torch's SyncBatchNorm, as CIRKD trains); needs CUDA. "
            "No effect with one process."
        },
    )
    dataloader_drop_last: bool = field(
        default=True,
        metadata={
            "help": "Drop the last incomplete training batch of each epoch (as CIRKD and mmseg do): a "
            "batch of one sample cannot train the BatchNorm after a global pooling (DeepLabV3's image "
            "pooling, PSPNet's and UperNet's 1x1 bin). Evaluation always covers every sample."
        },
    )

    def __post_init__(self) -> None:
        check_fields(self)  # first: TrainingArguments' own checks would raise other errors
        method_class(self.distill_method)  # a registered method
        super().__post_init__()
        self.resume_from_checkpoint = resume_setting(self.resume_from_checkpoint)  # "false" is not a path
        self.eval_crop_size, self.eval_stride = eval_window(self.eval_crop_size, self.eval_stride)
        if not self.hakd_stages:
            raise HeteroAKDError("--hakd_stages needs at least one stage index, e.g. --hakd_stages -1")
        if self.teacher_projector == "none" and self.teacher_projector_fit_steps > 0:
            raise HeteroAKDError(
                "--teacher_projector_fit_steps fits the teacher's projectors, but --teacher_projector none has "
                "none: drop one of the two flags"
            )
        if self.teacher_logits_cache is not None and not method_class(self.distill_method).uses_teacher:
            raise HeteroAKDError(
                f"--teacher_logits_cache caches a teacher's outputs; --distill_method "
                f"{self.distill_method} uses no teacher: drop the flag or pick a distillation method"
            )
