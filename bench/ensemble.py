"""Cost of training M small models one at a time (``grmu.train.fit``) against all together
(``grmu.ensemble.fit_ensemble``), in one run, at the embedded default's protocol.

colored_mnist is prepared by the project's own prepare stage from params.yaml (14 px); the
model (small_cnn, width 16) and the training settings (batch 64, lr 0.02, one warm-up epoch then
cosine, shift augmentation, SGD with momentum) are params.yaml's ``model`` and ``train``, and
every model trains on all of train with the validation pass after each epoch, as PRETRAIN
trains it. Only ``--epochs`` epochs are timed (the protocol's 10 would cost 5x as much for the
same per-epoch figure); the M models get seeds 0..M-1.

A short warm-up run of each way comes first (allocator, kernel selection), then ``--repeat``
rounds of the two ways in turn, the fastest round of each counting (on a shared machine other
work only ever adds time). Prints the seconds per epoch per model of both ways, their ratio,
the models per second (and per hour) each would give at the protocol's epoch count, and the
kept models' mean validation accuracy and largest weight difference between the two ways (the
same models in exact arithmetic; in float32 the two ways round differently and the
trajectories part within an epoch or two, as they do for ``fit`` alone when one initial weight
moves by one ulp).

    .venv/bin/python bench/ensemble.py [--models 8] [--epochs 2] [--repeat 3] [--threads N] [--no-mkldnn]
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import tempfile
import time
from pathlib import Path

import torch

from grmu.config import load_params
from grmu.ensemble import fit_ensemble
from grmu.inference import model_accuracy
from grmu.models import new_model
from grmu.prepared import load_prepared
from grmu.stages.prepare import run as prepare
from grmu.train import Pass, ce_loss, fit

ROOT = Path(__file__).resolve().parents[1]


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=int, default=8, help="M, the number of models (default 8)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs timed per model (default 2)")
    ap.add_argument("--repeat", type=int, default=3, help="alternating rounds; the fastest counts (default 3)")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--no-mkldnn", action="store_true", help="torch.backends.mkldnn.enabled = False")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.no_mkldnn:
        torch.backends.mkldnn.enabled = False

    params = load_params(ROOT / "params.yaml")
    if params["dataset"] != "colored_mnist" or params["model"]["arch"] != "small_cnn":
        raise SystemExit("bench/ensemble.py times the embedded default: params.yaml's colored_mnist and small_cnn")
    with tempfile.TemporaryDirectory() as d:
        prepare(params, d)
        prep = load_prepared(d)
    train, val = prep.indices("train"), prep.indices("val")
    cfg = dict(params["train"])
    protocol_epochs = cfg["epochs"]
    cfg["epochs"] = args.epochs
    m = args.models
    nets = [new_model(params["model"], prep, seed) for seed in range(m)]
    dev = next(nets[0].parameters()).device
    where = cpu_name() if dev.type == "cpu" else torch.cuda.get_device_name(dev)
    print(
        f"{m} models: small_cnn width {params['model']['width']}, colored_mnist "
        f"{params['datasets']['colored_mnist']['image_size']} px, {len(train)} train / {len(val)} val samples, "
        f"batch {cfg['batch_size']}, augment {cfg['augment']}, {args.epochs} epochs timed "
        f"(protocol: {protocol_epochs}); device {dev} ({where}), "
        f"{torch.get_num_threads()} threads, mkldnn {'on' if torch.backends.mkldnn.enabled else 'off'}, "
        f"{os.cpu_count()} CPUs"
    )

    def one_at_a_time(models, idx, epochs):
        c = {**cfg, "epochs": epochs}
        out = []
        for seed, net in enumerate(models):
            p = Pass("train", idx, ce_loss, c["batch_size"])
            out.append(fit(net, prep, lambda e: [p], c, seed=seed, val_idx=val, select_best=True)[0])
        return out

    def together(models, idx, epochs):
        c = {**cfg, "epochs": epochs}
        return [net for net, _ in fit_ensemble(models, prep, idx, c, list(range(len(models))), val_idx=val)]

    warm = train[:: max(1, len(train) // 256)]
    one_at_a_time(copy.deepcopy(nets[:1]), warm, 1)
    together(copy.deepcopy(nets), warm, 1)

    # the two ways alternate, --repeat rounds; the fastest round of each counts (the machine's other
    # work only ever adds time)
    times: dict[str, tuple[float, list]] = {}
    for _ in range(args.repeat):
        for name, run in (("one at a time (fit)", one_at_a_time), ("together (fit_ensemble)", together)):
            models = copy.deepcopy(nets)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
            trained = run(models, train, args.epochs)
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            seconds = time.perf_counter() - t0
            times[name] = (min(seconds, times.get(name, (seconds,))[0]), trained)

    print(f"best of {args.repeat} alternating rounds")
    print(f"{'way':<26}{'s total':>10}{'s/epoch/model':>15}{'models/s':>11}{'models/h':>10}")
    per = {}
    for name, (seconds, _) in times.items():
        per[name] = seconds / (m * args.epochs)
        rate = 1 / (per[name] * protocol_epochs)
        print(f"{name:<26}{seconds:>10.2f}{per[name]:>15.3f}{rate:>11.4f}{rate * 3600:>10.0f}")
    loop, ens = per.values()
    print(f"(models/s and models/h: whole models of the protocol's {protocol_epochs} epochs)")
    print(f"ratio: fit_ensemble is {loop / ens:.2f}x the models/second of fit one at a time")
    (_, a), (_, b) = times.values()
    diff = max(
        (x - y).abs().max().item()
        for p, q in zip(a, b)
        for x, y in zip(p.state_dict().values(), q.state_dict().values())
        if x.is_floating_point()
    )
    acc = [sum(model_accuracy(net, prep, val) for net in trained) / m for _, trained in times.values()]
    print(
        f"kept models' mean val acc: {acc[0]:.2f} (fit), {acc[1]:.2f} (fit_ensemble); largest weight difference "
        f"{diff:.2e} (float32 training is chaotic: the two ways round differently and part, as fit parts from "
        "itself when one initial weight moves by one ulp; in float64 they agree to ~1e-13, tests/test_ensemble.py)"
    )


if __name__ == "__main__":
    main()
