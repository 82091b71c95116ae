"""Cost of distillation: one optimizer step of the student alone, then with each part added.

    python benchmarks/bench_step.py [--batch 2] [--height 256] [--width 512] [--repeats 5] [--channels_last]
                                    [--torch_compile] [--teacher b0] [--student resnet18] [--bf16]

(a) the student alone (task loss), (b) + the teacher's forward, (c) + L_kd (vanilla KD),
(d) + the full HeteroAKD loss (projectors, KMM, KEM, L_hakd, L_proj). Teacher: a Segformer of
MiT-``--teacher``'s size (b0 … b5; random weights, as fast as trained ones); student: any ``--student`` name
of the CLI (DeepLabV3-ResNet-18, output stride 8, by default), also random.

``--channels_last`` adds (a) and (d) with ``HeteroAKDConfig(channels_last=True)``: the student and the
projectors in channels_last (the teacher stays as it is: the Segformer's forward is slower in channels_last
on the CPU, see docs/performance.md). ``--torch_compile`` adds (d) with ``HeteroAKDConfig(torch_compile=True)``,
with which the trainer compiles the teacher, and the student wrapper compiled as the Trainer's accelerator does.

The variants are timed side by side in this one process, interleaved (warm-up, then each repeat runs every
variant once; the median), on CUDA when there is a GPU, else on the CPU. Peak memory is per step: CUDA's
max allocated, or on the CPU the process's peak RSS during the step (reset before each step through
/proc/self/clear_refs; it includes every model the script loads). The last line is the headline: d/c and d/b.
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
from hf_heteroakd.networks.students import MIT_SIZES  # noqa: E402

CLASSES = 19


def reset_peak_memory(device: torch.device) -> bool:
    """Starts a new peak; False where the CPU's peak RSS cannot be reset (it is then the process's peak so far)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return True
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets VmHWM, the peak RSS
        return True
    except OSError:
        return False


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return int(next(line for line in status.splitlines() if line.startswith("VmHWM")).split()[1]) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB; the process's peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="autocast the step in bfloat16 (GPU)")
    parser.add_argument("--channels_last", action="store_true", help="also time (a) and (d) in channels_last")
    parser.add_argument("--torch_compile", action="store_true", help="also time (d) compiled (inductor)")
    parser.add_argument("--teacher", choices=sorted(MIT_SIZES), default="b0", help="the Segformer teacher's size")
    parser.add_argument("--student", default="resnet18", help="a student name of the CLI's --student")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    id2label = {i: f"class_{i}" for i in range(CLASSES)}
    pixels = torch.randn(args.batch, 3, args.height, args.width, device=device)
    labels = torch.randint(0, CLASSES, (args.batch, args.height, args.width), device=device)
    batch = {"pixel_values": pixels, "labels": labels}

    def teacher():  # in bfloat16 under --bf16, as the CLI's --teacher_dtype auto loads it on a GPU
        model = build_student(f"mit-{args.teacher}", id2label, pretrained_backbone=False)
        return model.to(torch.bfloat16 if args.bf16 else torch.float32)

    def make_trainer(method: str, channels_last: bool = False, compile: bool = False) -> HeteroAKDTrainer:
        config = HeteroAKDConfig(
            output_dir="/tmp/bench_step",
            distill_method=method,
            report_to="none",
            use_cpu=device.type == "cpu",
            bf16=args.bf16,
            channels_last=channels_last,
            torch_compile=compile,
        )
        trainer = HeteroAKDTrainer(
            model=build_student(args.student, id2label, pretrained_backbone=False).to(device),
            teacher_model=teacher() if method != "none" else None,
            args=config,
        )
        if compile:  # what accelerator.prepare does with the Trainer's dynamo plugin
            trainer.model.compile(backend=config.torch_compile_backend, mode=config.torch_compile_mode)
        return trainer

    trainers = {method: make_trainer(method) for method in ("none", "kd", "heteroakd")}
    if args.channels_last:
        trainers["none, channels_last"] = make_trainer("none", channels_last=True)
        trainers["heteroakd, channels_last"] = make_trainer("heteroakd", channels_last=True)
    if args.torch_compile:
        trainers["heteroakd, compiled"] = make_trainer("heteroakd", compile=True)

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
    if args.channels_last:
        variants["(a) channels_last"] = step("none, channels_last")
        variants["(d) channels_last"] = step("heteroakd, channels_last")
    if args.torch_compile:
        variants["(d) torch_compile"] = step("heteroakd, compiled")
    for run in variants.values():
        for _ in range(args.warmup):
            run()
    times = {name: [] for name in variants}
    peaks = {name: 0.0 for name in variants}
    per_step = True
    for _ in range(args.repeats):  # interleaved: a slow spell of a shared machine hits every variant alike
        for name, run in variants.items():
            per_step &= reset_peak_memory(device)
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
            peaks[name] = max(peaks[name], peak_memory_mb(device))
    results = {name: (statistics.median(times[name]), peaks[name]) for name in variants}

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    precision = "bf16 autocast" if args.bf16 else "fp32"
    print(
        f"{name}; batch {args.batch}x3x{args.height}x{args.width}, {precision}; "
        f"Segformer-{args.teacher}-sized teacher -> {args.student} student"
    )
    if device.type == "cuda":
        memory = "peak memory per step (MiB, CUDA max allocated)"
    else:
        memory = "peak RSS per step (MiB)" if per_step else "peak RSS of the process so far (MiB)"
    print(f"{'variant':<26}{'step (s)':>10}{'images/s':>10}  {memory}")
    for name, (seconds, mb) in results.items():
        print(f"{name:<26}{seconds:>10.4f}{args.batch / seconds:>10.2f}  {mb:>8.0f}")
    baselines = {
        "(a) channels_last": "(a) student alone",
        "(d) channels_last": "(d) + HeteroAKD",
        "(d) torch_compile": "(d) + HeteroAKD",
    }
    for name, baseline in baselines.items():
        if name in results:
            print(f"{name} / {baseline} = {results[name][0] / results[baseline][0]:.3f}")
    b, c, d = (results[k][0] for k in ("(b) + teacher forward", "(c) + L_kd (vanilla KD)", "(d) + HeteroAKD"))
    print(f"HeteroAKD step / vanilla-KD step (d/c) = {d / c:.3f}; / student + teacher forward (d/b) = {d / b:.3f}")


if __name__ == "__main__":
    main()
