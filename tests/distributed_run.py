"""Run by tests/test_distributed.py under `accelerate launch`: the recipe's run, plus a dump of
each process's projector weights at the end of training, to compare the ranks."""

import sys
from pathlib import Path

import safetensors.torch
from transformers import TrainerCallback

from hf_heteroakd.cli import parse_args
from hf_heteroakd.pipeline import run_distillation


class DumpProjectors(TrainerCallback):
    def on_train_end(self, args, state, control, model=None, **kwargs):
        # Parameters, which DDP keeps in sync; BatchNorm running statistics stay per process.
        weights = {k: v.detach().cpu().contiguous() for k, v in model.projectors.named_parameters()}
        safetensors.torch.save_file(
            weights, Path(args.output_dir) / f"projectors_rank{args.process_index}.safetensors"
        )


if __name__ == "__main__":
    run_distillation(*parse_args(sys.argv[1:]), callbacks=[DumpProjectors()])
