"""Cost of distillation: one optimizer step of the student alone, then with each part added.

    python benchmarks/bench_step.py [--batch 2] [--height 256] [--width 512] [--repeats 5]

(a) the student alone (task loss), (b) + the teacher's forward, (c) + L_kd (vanilla KD),
(d) + the full HeteroAKD loss (projectors, KMM, KEM, L_hakd, L_proj). Teacher: a Segformer of
MiT-b0's size (random weights); student: DeepLabV3-ResNet-18, output stride 8. Each variant is
timed side by side in this one process (warm-up, then the median of the repeats), on CUDA when
there is a GPU, else on the CPU. The last line is the headline: d/c and d/b.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_heteroakd import HeteroAKDConfig, HeteroAKDTrainer, build_student  # noqa: E402
from transformers import SegformerConfig, SegformerForSemanticSegmentation  # noqa: E402

CLASSES = 19


def segformer_b0() -> SegformerForSemanticSegmentation:
    return SegformerForSemanticSegmentation(SegformerConfig(num_labels=CLASSES))  # MiT-b0 is the default config


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; the process's peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="autocast the step in bfloat16 (GPU)")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    id2label = {i: f"class_{i}" for i in range(CLASSES)}
    pixels = torch.randn(args.batch, 3, args.height, args.width, device=device)
    labels = torch.randint(0, CLASSES, (args.batch, args.height, args.width), device=device)
    batch = {"pixel_values": pixels, "labels": labels}

    trainers = {}
    for method in ("none", "kd", "heteroakd"):
        config = HeteroAKDConfig(output_dir="/tmp/bench_step", distill_method=method, report_to="none",
                                 use_cpu=device.type == "cpu", bf16=args.bf16)
        trainers[method] = HeteroAKDTrainer(
            model=build_student("resnet18", id2label, pretrained_backbone=False).to(device),
            teacher_model=segformer_b0() if method != "none" else None,
            args=config,
        )

    def step(method: str, with_teacher: bool = False):
        trainer = trainers[method]
        model = trainer.model.train()
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

        def run():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16):
                if with_teacher:  # (b): the teacher's forward, its output unused by the loss
                    trainers["kd"].teacher_forward(pixels)
                loss = trainer.compute_loss(model, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
        return run

    variants = {
        "(a) student alone": step("none"),
        "(b) + teacher forward": step("none", with_teacher=True),
        "(c) + L_kd (vanilla KD)": step("kd"),
        "(d) + HeteroAKD": step("heteroakd"),
    }
    results = {}
    for name, run in variants.items():
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        for _ in range(args.warmup):
            run()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        results[name] = (statistics.median(times), peak_memory_mb(device))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}; batch {args.batch}x3x{args.height}x{args.width}; Segformer-b0-sized teacher -> DeepLabV3-ResNet-18")
    memory = "peak memory (MiB, CUDA max allocated)" if device.type == "cuda" else "peak RSS so far (MiB)"
    print(f"{'variant':<26}{'step (s)':>10}{'images/s':>10}  {memory}")
    for name, (seconds, mb) in results.items():
        print(f"{name:<26}{seconds:>10.4f}{args.batch / seconds:>10.2f}  {mb:>8.0f}")
    b, c, d = (results[k][0] for k in list(results)[1:])
    print(f"HeteroAKD step / vanilla-KD step (d/c) = {d / c:.3f}; / student + teacher forward (d/b) = {d / b:.3f}")


if __name__ == "__main__":
    main()
