#!/usr/bin/env python
"""Distill a Hugging Face segmentation teacher into a student with HeteroAKD.

    accelerate launch recipes/run_distill.py --teacher nvidia/segformer-b5-finetuned-cityscapes-1024-1024 \
        --student resnet18 --dataset <hub id or folder> --output_dir outputs/run --do_train --do_eval

Every TrainingArguments flag works; `--help` lists them all. One .yaml/.json file of flags also works.
"""

import sys

from hf_heteroakd.cli import main

if __name__ == "__main__":
    sys.exit(main())
