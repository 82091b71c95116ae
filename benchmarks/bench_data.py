"""Training-transform throughput at Cityscapes size, in one process (= one DataLoader worker).

    python benchmarks/bench_data.py [--images 8] [--height 1024] [--width 2048] [--crop 512 1024]

Each image goes through exactly what a DataLoader worker runs for a training sample:
``SegmentationDataset.__getitem__`` (decode from the Arrow table, label check) with the paper's
augmentation (random scale 0.5-2.0, crop, flip, normalise). The last line is the headline.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import datasets
import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hf_heteroakd.data import SegmentationDataset, train_transforms  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--height", type=int, default=1024)
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--crop", type=int, nargs=2, default=[512, 1024])
    parser.add_argument("--passes", type=int, default=3)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    rows = {
        "image": [
            Image.fromarray(rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8))
            for _ in range(args.images)
        ],
        "label": [
            Image.fromarray(rng.integers(0, 19, (args.height, args.width), dtype=np.uint8)) for _ in range(args.images)
        ],
    }
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Image()})
    split = datasets.Dataset.from_dict(rows, features=features)
    dataset = SegmentationDataset(split, train_transforms(tuple(args.crop)), num_labels=19)

    dataset[0]  # warm-up
    start = time.perf_counter()
    for _ in range(args.passes):
        for i in range(len(dataset)):
            dataset[i]
    seconds = time.perf_counter() - start
    count = args.passes * len(dataset)
    print(f"{count} samples of {args.height}x{args.width} (PNG in Arrow) -> crop {args.crop[0]}x{args.crop[1]}")
    print(f"training transform: {count / seconds:.2f} images/s per worker ({1000 * seconds / count:.0f} ms each)")


if __name__ == "__main__":
    main()
