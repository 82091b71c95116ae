#!/usr/bin/env python
"""Predict the masks of one's own images with a saved student, a teacher or any Hub segmentation model.

    python recipes/predict.py --model outputs/run --images photos/ --output_dir outputs/predictions

Writes, per image, <name>_mask.png (class indices, lossless), <name>_color.png and <name>_overlay.png;
--teacher <path or Hub id> adds <name>_panel.png (image | teacher | student). --eval_crop_size,
--eval_stride and --eval_flip select sliding-window and flip prediction; `--help` lists every flag.
"""

import sys

from hf_heteroakd.cli import predict_main

if __name__ == "__main__":
    sys.exit(predict_main())
