"""How fast are the real-dataset inputs, against the model's own step?

Generates a CelebA-shaped fixture (178 x 218 JPEGs, tests/fixtures_real.py) in a temporary
folder and prints images/s of

* ``prepare``'s decoding (JPEG decode + evaluation transform into the uint8 cache), once with
  CelebA's squash-resize and once with Waterbirds/FairFace's resize + centre crop;
* the training-time batch augmentation (uint8 -> [-1, 1] + random resized crop + flip), the
  per-batch work the training loop adds on top of the model;
* one SGD step (forward + backward + update) of resnet18 and small_cnn on such a batch,

all on this machine's CPU (or GPU if present, for the last two). Usage:

    python bench/loader_speed.py [--images 256] [--size 224] [--batch 32] [--steps 3]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests.fixtures_real

from grmu.augment import random_resized_crop_flip  # noqa: E402
from grmu.data.images import decode_images  # noqa: E402
from grmu.inference import to_input  # noqa: E402
from grmu.models import build_model  # noqa: E402
from grmu.runtime import device  # noqa: E402
from tests.fixtures_real import make_celeba  # noqa: E402


def rate(n_items: int, fn, repeats: int = 1) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n_items * repeats / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=256, help="fixture images to decode")
    ap.add_argument("--size", type=int, default=224, help="stored image side (the paper: 224)")
    ap.add_argument("--batch", type=int, default=32, help="training batch size (the paper: 32)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps per model")
    args = ap.parse_args()
    dev = device()
    torch.manual_seed(0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        per_part = -(-args.images // 4)
        counts = {(0, y, a): per_part for y in (0, 1) for a in (0, 1)}
        base = make_celeba(Path(tmp), counts=counts, image_size=(178, 218))
        paths = sorted((base / "img_align_celeba").glob("*.jpg"))
        for transform in ("squash", "resize_crop"):
            with contextlib.redirect_stdout(io.StringIO()):  # decode_images prints a summary line
                r = rate(len(paths), lambda: decode_images(paths, args.size, transform, listed_in=base, desc=transform))
            rows.append((f"prepare: decode + {transform} to {args.size}px", r))
    batch = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    gen = torch.Generator().manual_seed(0)
    aug = rate(args.batch, lambda: random_resized_crop_flip(to_input(batch, dev), gen), repeats=args.steps * 3)
    rows.append((f"train: uint8 -> [-1,1] + crop_flip, batch {args.batch}", aug))
    for arch in ("small_cnn", "resnet18"):
        model = build_model({"arch": arch, "width": 16, "pretrained": "none"}, 2, (3, args.size, args.size)).to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = to_input(batch, dev)
        y = torch.randint(0, 2, (args.batch,), device=dev)

        def step():
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            if dev.type == "cuda":
                torch.cuda.synchronize()

        rows.append((f"train: {arch} SGD step, batch {args.batch}", rate(args.batch, step, repeats=args.steps)))
    print(f"device: {dev}, torch threads: {torch.get_num_threads()}")
    width = max(len(name) for name, _ in rows)
    for name, r in rows:
        print(f"{name:<{width}}  {r:10.1f} images/s")
    step = {name: r for name, r in rows}
    for arch in ("small_cnn", "resnet18"):
        model_rate = step[f"train: {arch} SGD step, batch {args.batch}"]
        print(f"augmentation cost relative to a {arch} step: {100 * model_rate / aug:.1f}%")


if __name__ == "__main__":
    main()
