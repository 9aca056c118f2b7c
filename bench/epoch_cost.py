"""Cost of one PRETRAIN / RETRAIN epoch of the paper's recipes (fact sheet §4.2) on this machine.

For each real dataset, times grmu's own training loop (``grmu.train.fit``: batch gather,
transfer, the crop + flip augmentation of image batches, forward, backward, optimizer step)
and the evaluation pass on random stand-in data of the dataset's stored shape, with the paper's
model and batch size:

* celeba / waterbirds / fairface: ResNet-18 at 224 px, SGD, batch 32, crop + flip;
* multinli: BERT-base (12 layers, 768 wide), AdamW, batch 32, 128 tokens per pair.

Weights are random (the cost does not depend on them). The first epoch over ``--samples``
samples warms up (allocator, kernel selection); the second is timed. Prints samples/s and the
projected seconds per epoch over the dataset's real training split (FairFace's depends on the
``service_test`` filter of the user's copy, so it is given per 10,000 images).

    python bench/epoch_cost.py [--datasets celeba multinli] [--samples 2048]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from grmu.inference import predict
from grmu.models import build_model
from grmu.prepared import Prepared
from grmu.runtime import device, seed_everything
from grmu.train import Pass, fit

# real training-split sizes (fact sheet §1.2); None: depends on the user's filtered copy
TRAIN_SIZE = {"celeba": 162_770, "waterbirds": 4_795, "fairface": None, "multinli": 206_175}
CLASSES = {"celeba": 2, "waterbirds": 2, "fairface": 9, "multinli": 3}


def stand_in(name: str, n: int) -> Prepared:
    gen = torch.Generator().manual_seed(0)
    if name == "multinli":
        ids = torch.randint(1000, 30522, (n, 1, 128), generator=gen)
        inputs = torch.cat([ids, torch.ones_like(ids), (torch.arange(128) >= 64).long().expand(n, 1, 128)], 1).short()
        meta = {"augment": "shift", "vocab_size": 30522}
    else:
        inputs = torch.randint(0, 256, (n, 3, 224, 224), generator=gen, dtype=torch.uint8)
        meta = {"augment": "crop_flip"}
    y = np.arange(n) % CLASSES[name]
    meta.update(n_classes=CLASSES[name], n_attrs=2, input_shape=list(inputs.shape[1:]))
    return Prepared(split=np.full(n, "train"), y=y, a=y % 2, g=y * 2 + y % 2, inputs=inputs, meta=meta)


def recipe(name: str) -> tuple[dict, dict]:
    if name == "multinli":
        model = {"arch": "bert", "width": 768, "pretrained": "none"}
        cfg = {"optimizer": "adamw", "lr": 1e-5, "weight_decay": 0.0, "augment": False}
    else:
        model = {"arch": "resnet18", "width": 16, "pretrained": "none"}
        cfg = {"optimizer": "sgd", "lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-4, "augment": True}
    return model, {**cfg, "batch_size": 32, "warmup_epochs": 0, "schedule": "const", "momentum": 0.9}


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(TRAIN_SIZE), choices=list(TRAIN_SIZE))
    ap.add_argument("--samples", type=int, default=2048, help="stand-in samples per timed epoch")
    args = ap.parse_args()
    dev = device()
    name_of_dev = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name_of_dev}, torch {torch.__version__}, fp32, {args.samples} samples per timed epoch")
    print(f"{'dataset':11s} {'model':9s} {'train samples/s':>15s} {'eval samples/s':>15s} {'s / epoch':>10s}  train split")
    for name in args.datasets:
        seed_everything(0)
        prep = stand_in(name, args.samples)
        model_cfg, cfg = recipe(name)
        model = build_model(model_cfg, prep.n_classes, prep.meta["input_shape"], vocab_size=prep.meta.get("vocab_size"))
        model.to(dev)
        idx = np.arange(args.samples)
        p = Pass("train", idx, batch_size=cfg["batch_size"])
        fit(model, prep, lambda e: [p], {**cfg, "epochs": 1}, seed=0, desc=f"{name} warm-up")
        sync()
        t0 = time.perf_counter()
        fit(model, prep, lambda e: [p], {**cfg, "epochs": 1}, seed=1, desc=f"{name} timed")
        sync()
        train_rate = args.samples / (time.perf_counter() - t0)
        predict(model, prep, idx[:512])
        sync()
        t0 = time.perf_counter()
        predict(model, prep, idx)
        sync()
        eval_rate = args.samples / (time.perf_counter() - t0)
        size = TRAIN_SIZE[name]
        epoch = f"{size / train_rate:10.0f}  {size:,}" if size else f"{10_000 / train_rate:10.0f}  per 10,000"
        print(f"{name:11s} {model_cfg['arch']:9s} {train_rate:15.0f} {eval_rate:15.0f} {epoch}", flush=True)
        del model
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
