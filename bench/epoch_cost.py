"""Cost of one PRETRAIN / RETRAIN epoch of the paper's recipes (fact sheet §4.2) on this machine,
grmu's training loop side by side with an official-style one.

For each real dataset, times grmu's own training loop (``grmu.train.fit``: batch gather,
transfer, the crop + flip augmentation of image batches on the device, forward, backward,
optimizer step; losses stay on the device until the end of the pass) and the evaluation pass on
random stand-in data of the dataset's stored shape, with the paper's model, batch size and
precision (``auto``: bf16 autocast on a GPU, as the official code; fp32 on a CPU):

* celeba / waterbirds / fairface: ResNet-18 at 224 px, SGD, batch 32, crop + flip;
* multinli: BERT-base (12 layers, 768 wide), AdamW, batch 32, 128 tokens per pair;
* cifar10: the CIFAR ResNet-18 at 32 px, SGD lr 0.1, batch 256, RandomCrop(32, padding 4) + flip
  (sharp-unlearn's recipe, fp32 as its code; CIFAR-100 costs the same but for the head).

The **official-style** loop (``--official``, on by default) trains the same model the way the
paper's code does (fact sheet: DataLoader with 8 workers and pinned memory, bf16 autocast on a
GPU, the loss read back every step): images are JPEG files (``--samples`` of them, 178 x 218 as
CelebA's, written once to a temporary folder) decoded with PIL and transformed by torchvision's
``RandomResizedCrop(224)``, ``RandomHorizontalFlip``, ``ToTensor`` and ``Normalize`` in the
workers; token rows come from a ``TensorDataset`` (the official BERT runs read cached features,
in fp32); CIFAR images are in-memory uint8 arrays made PIL images and transformed by
``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip``, ``ToTensor``, ``Normalize`` in the workers,
in fp32 (sharp-unlearn's loader). The ratio column is grmu's samples/s over the official-style loop's, same device.

Weights are random (the cost does not depend on them). The first epoch over ``--samples``
samples warms up (allocator, kernel selection, worker start-up); the second is timed. Prints
samples/s and the projected seconds per epoch over the dataset's real training split
(FairFace's depends on the ``service_test`` filter of the user's copy, so it is given per
10,000 images).

    python bench/epoch_cost.py [--datasets celeba multinli] [--samples 2048] [--no-official]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from grmu.inference import predict
from grmu.models import build_model, run_precision
from grmu.prepared import Prepared
from grmu.runtime import device, seed_everything
from grmu.train import Pass, fit

# real training-split sizes (fact sheet §1.2); None: depends on the user's filtered copy
TRAIN_SIZE = {"celeba": 162_770, "waterbirds": 4_795, "fairface": None, "multinli": 206_175, "cifar10": 45_000}
CLASSES = {"celeba": 2, "waterbirds": 2, "fairface": 9, "multinli": 3, "cifar10": 10}
FP32 = ("multinli", "cifar10")  # the official BERT and CIFAR runs train in fp32; the ResNet ones in bf16


def stand_in(name: str, n: int) -> Prepared:
    gen = torch.Generator().manual_seed(0)
    if name == "multinli":
        ids = torch.randint(1000, 30522, (n, 1, 128), generator=gen)
        inputs = torch.cat([ids, torch.ones_like(ids), (torch.arange(128) >= 64).long().expand(n, 1, 128)], 1).short()
        meta = {"augment": "shift", "vocab_size": 30522}
    elif name == "cifar10":
        inputs = torch.randint(0, 256, (n, 3, 32, 32), generator=gen, dtype=torch.uint8)
        meta = {"augment": "crop_pad_flip"}
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
    elif name == "cifar10":
        model = {"arch": "resnet18_cifar", "width": 16, "pretrained": "none"}
        cfg = {"optimizer": "sgd", "lr": 0.1, "weight_decay": 5e-4, "augment": True, "batch_size": 256}
        return model, {"warmup_epochs": 0, "schedule": "const", "momentum": 0.9, **cfg}
    else:
        model = {"arch": "resnet18", "width": 16, "pretrained": "none"}
        cfg = {"optimizer": "sgd", "lr": 1e-2, "momentum": 0.9, "weight_decay": 1e-4, "augment": True}
    return model, {**cfg, "batch_size": 32, "warmup_epochs": 0, "schedule": "const", "momentum": 0.9}


def sync():
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class JpegFolder(torch.utils.data.Dataset):
    """The official image pipeline: one JPEG file per sample, decoded and transformed in a worker."""

    def __init__(self, files: list[Path], labels: np.ndarray):
        from torchvision import transforms

        self.files, self.labels = files, labels
        self.transform = transforms.Compose(
            [
                transforms.RandomResizedCrop(224),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize([0.5] * 3, [0.5] * 3),
            ]
        )

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        from PIL import Image

        with Image.open(self.files[i]) as im:
            return self.transform(im.convert("RGB")), int(self.labels[i])


class ArrayImages(torch.utils.data.Dataset):
    """sharp-unlearn's CIFAR pipeline: images held in memory as uint8 arrays (torchvision's CIFAR10),
    made PIL images and transformed in a worker."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray):
        from torchvision import transforms

        self.images, self.labels = images.permute(0, 2, 3, 1).numpy(), labels
        self.transform = transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize([0.5] * 3, [0.5] * 3),
            ]
        )

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


def write_jpegs(folder: Path, n: int) -> list[Path]:
    """``n`` smooth random 178 x 218 JPEGs (CelebA's size; smooth so that they compress and
    decode like photographs rather than like noise)."""
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    files = []
    for i in range(n):
        low = torch.randint(0, 256, (3, 28, 23), generator=gen, dtype=torch.uint8)[None].float()
        img = torch.nn.functional.interpolate(low, size=(218, 178), mode="bilinear")[0].byte().permute(1, 2, 0)
        files.append(folder / f"{i:06d}.jpg")
        Image.fromarray(img.numpy()).save(files[-1], quality=95)
    return files


def official_epochs(
    name: str, model, cfg: dict, prep: Prepared, jpegs: list[Path] | None, workers: int, dev, bf16: bool
) -> float:
    """Samples/s of the second of two epochs of an official-style loop over the same samples."""
    if name == "cifar10":
        data = ArrayImages(prep.inputs, prep.y)
    elif jpegs is not None:
        data = JpegFolder(jpegs, prep.y)
    else:
        data = torch.utils.data.TensorDataset(prep.inputs.long(), torch.as_tensor(prep.y))
    loader = torch.utils.data.DataLoader(
        data,
        batch_size=cfg["batch_size"],
        shuffle=True,
        num_workers=workers,
        pin_memory=dev.type == "cuda",
        drop_last=False,
        persistent_workers=workers > 0,
    )
    if cfg["optimizer"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    else:
        opt = torch.optim.SGD(
            model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"]
        )
    model.train()
    rate = 0.0
    for epoch in range(2):
        sync()
        t0, seen, total = time.perf_counter(), 0, 0.0
        for x, y in loader:
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x.to(torch.bfloat16) if bf16 and x.is_floating_point() else x)
            loss = torch.nn.functional.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item()  # the official loop logs every step's loss
            seen += len(y)
        sync()
        rate = seen / (time.perf_counter() - t0)
    return rate


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", nargs="+", default=list(TRAIN_SIZE), choices=list(TRAIN_SIZE))
    ap.add_argument("--samples", type=int, default=2048, help="stand-in samples per timed epoch")
    ap.add_argument(
        "--official",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the official-style loop and print the ratio",
    )
    ap.add_argument("--workers", type=int, default=8, help="official-style DataLoader workers (the paper's: 8)")
    args = ap.parse_args()
    dev = device()
    name_of_dev = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {name_of_dev}, torch {torch.__version__}, {args.samples} samples per timed epoch")
    print(
        f"{'dataset':11s} {'model':14s} {'precision':9s} {'train samples/s':>15s} {'eval samples/s':>15s} "
        f"{'s / epoch':>10s} {'official/s':>10s} {'ratio':>6s}  train split"
    )
    with tempfile.TemporaryDirectory(prefix="grmu-jpegs-") as tmp:
        jpegs = write_jpegs(Path(tmp), args.samples) if args.official and set(args.datasets) - set(FP32) else None
        for name in args.datasets:
            seed_everything(0)
            prep = stand_in(name, args.samples)
            model_cfg, cfg = recipe(name)
            model = build_model(
                model_cfg, prep.n_classes, prep.meta["input_shape"], vocab_size=prep.meta.get("vocab_size")
            )
            model.to(dev)
            # the protocols' precision: auto (bf16 on a GPU) for ResNet; the official BERT and CIFAR runs are fp32
            model.precision = run_precision("fp32" if name in FP32 else "auto", dev)
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
            official, ratio = "", ""
            if args.official:
                rate = official_epochs(
                    name,
                    model,
                    cfg,
                    prep,
                    None if name in FP32 else jpegs,
                    min(args.workers, os.cpu_count() or 1),
                    dev,
                    model.precision == "bf16",
                )
                official, ratio = f"{rate:10.0f}", f"{train_rate / rate:6.2f}"
            size = TRAIN_SIZE[name]
            seconds, split = (size / train_rate, f"{size:,}") if size else (10_000 / train_rate, "per 10,000")
            print(
                f"{name:11s} {model_cfg['arch']:14s} {model.precision:9s} {train_rate:15.0f} {eval_rate:15.0f} "
                f"{seconds:10.0f} {official:>10s} {ratio:>6s}  {split}",
                flush=True,
            )
            del model
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
