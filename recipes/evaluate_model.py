#!/usr/bin/env python
"""Evaluate a saved student, a teacher or any Hub segmentation model on a dataset, without training.

    python recipes/evaluate_model.py --model outputs/run --dataset <preset, hub id or folder> --output_dir outputs/eval

(Not "evaluate.py": in this folder, a file of that name would shadow the `evaluate` library for every
recipe.) Writes eval_results.json, mean_iou.json (the keys of evaluate's mean_iou, with versions and time) and
per_class_iou.md to --output_dir. Works under `accelerate launch`; --eval_crop_size, --eval_stride and
--eval_flip select sliding-window and flip evaluation; `--help` lists every flag.
"""

import sys

from hf_heteroakd.cli import evaluate_main

if __name__ == "__main__":
    sys.exit(evaluate_main())
