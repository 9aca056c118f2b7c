"""Same params and seed, same bytes, on this device: the paper's recipes trained twice.

For each recipe, trains a fresh model (initialised from seed 0) for one epoch over
``--samples`` random stand-in samples of the dataset's stored shape (``epoch_cost.stand_in``),
with the recipe's model, batch size, augmentation and precision (``epoch_cost.recipe``: bf16
autocast on a GPU for the ResNet-18 datasets, fp32 for BERT and the CIFAR ResNet), three times:
twice with training seed 0 and once with seed 1. Prints whether the two seed-0 runs gave
bitwise-identical weights (the pipeline's promise: a rerun writes the same checkpoint bytes,
so DVC reruns nothing downstream) and the largest weight difference of the seed-1 run (which
must differ: the seed reaches the data order and the augmentation). The audit's ensemble trainer
(``grmu.ensemble.fit_ensemble``, 4 small CNNs of the embedded default's shape) is checked the
same way. grmu asks torch for deterministic kernels (``grmu.runtime.seed_everything``); on CUDA
that is cuDNN's deterministic algorithms and cuBLAS's fixed workspace.

    python bench/determinism.py [--recipes celeba cifar10 multinli ensemble] [--samples 256]

Exit status 1 when a recipe's two seed-0 runs differ.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch
from epoch_cost import FP32, recipe, stand_in

from grmu.ensemble import fit_ensemble
from grmu.models import build_model, new_model, run_precision
from grmu.prepared import Prepared
from grmu.runtime import device, seed_everything
from grmu.train import Pass, fit

RECIPES = ("celeba", "cifar10", "multinli", "ensemble")


def weights(nets) -> list[torch.Tensor]:
    return [t.detach().cpu().clone() for net in nets for t in net.state_dict().values()]


def largest_difference(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    return max((x.double() - y.double()).abs().max().item() for x, y in zip(a, b))


def identical(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b))


def train_recipe(name: str, n: int, seed: int) -> tuple[str, list[torch.Tensor]]:
    prep = stand_in(name, n)
    model_cfg, cfg = recipe(name)
    seed_everything(0)
    model = build_model(model_cfg, prep.n_classes, prep.meta["input_shape"], vocab_size=prep.meta.get("vocab_size"))
    model.to(device())
    model.precision = run_precision("fp32" if name in FP32 else "auto", device())
    p = Pass("train", np.arange(n), batch_size=cfg["batch_size"])
    fit(model, prep, lambda e: [p], {**cfg, "epochs": 1}, seed=seed, desc=f"{name} seed {seed}")
    return f"{model_cfg['arch']}, {model.precision}", weights([model])


def train_ensemble(n: int, seed: int) -> tuple[str, list[torch.Tensor]]:
    """4 small CNNs (the embedded default's model: 3 x 14 x 14, width 16) trained together."""
    gen = torch.Generator().manual_seed(0)
    y = np.arange(n) % 2
    prep = Prepared(
        split=np.full(n, "train"),
        y=y,
        a=(np.arange(n) // 2) % 2,
        g=y * 2 + (np.arange(n) // 2) % 2,
        inputs=torch.randint(0, 256, (n, 3, 14, 14), generator=gen, dtype=torch.uint8),
        meta={"augment": "shift", "n_classes": 2, "n_attrs": 2, "input_shape": [3, 14, 14]},
    )
    model_cfg = {"arch": "small_cnn", "width": 16, "pretrained": "none", "precision": "auto"}
    nets = [new_model(model_cfg, prep, k) for k in range(4)]
    cfg = {"optimizer": "sgd", "lr": 0.02, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 64}
    cfg.update(epochs=1, warmup_epochs=0, schedule="const", augment=True)
    fit_ensemble(nets, prep, np.arange(n), cfg, [seed + k for k in range(4)], select_best=False)
    return f"4 x small_cnn, {nets[0].precision}", weights(nets)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    ap.add_argument("--samples", type=int, default=256, help="stand-in samples of the one epoch (default 256)")
    args = ap.parse_args()
    dev = device()
    where = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"device: {where}, torch {torch.__version__}, one epoch over {args.samples} stand-in samples")
    print(f"{'recipe':10s} {'model, precision':28s} {'seed 0 twice':>13s} {'seed 1 vs seed 0':>17s}")
    failed = []
    for name in args.recipes:
        run = (
            (lambda s: train_ensemble(args.samples, s))
            if name == "ensemble"
            else (lambda s: train_recipe(name, args.samples, s))
        )
        what, a = run(0)
        _, b = run(0)
        _, c = run(1)
        same = identical(a, b)
        if not same:
            failed.append(name)
        verdict = "identical" if same else f"{largest_difference(a, b):.1e}"
        print(f"{name:10s} {what:28s} {verdict:>13s} {largest_difference(a, c):17.1e}", flush=True)
    if failed:
        print(f"not reproducible here: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
