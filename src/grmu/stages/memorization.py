"""Stage `memorization@{seed}`: per-sample memorization scores of the train split
(``memorization.score``; formulas and selection rules in ``grmu.memorization``).

``heldout`` trains ``memorization.models`` models from scratch with the ``train`` settings
(``memorization.epochs`` epochs, null = ``train.epochs``), each on the samples the held-out
design gives it, the last epoch of each; the proxies record every iteration of one training
run that is PRETRAIN's (same seed and settings, so the same trajectory when the epochs match);
``ho_ret`` fine-tunes the PRETRAIN checkpoint of the seed on the test split (constant-lr
SGD, no augmentation; it stops after 4 epochs without a lower sample-weighted mean training loss,
where upstream compares sums of batch means) and compares its eval-mode outputs on train
with the checkpoint's; ``file`` reads precomputed scores under ``data_dir``. ``none`` (what ``auto`` means for group
and random forget sets) computes nothing and writes a file that says so. Also writes the
scores' histogram for ``dvc plots``.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from grmu import GrmuError
from grmu.memorization import (
    ESTIMATES,
    PROXIES,
    heldout_design,
    heldout_scores,
    proxy_scores,
    read_scores_file,
    resolve_score,
    save_scores,
    should_stop,
    symmetric_kl,
)
from grmu.prepared import Prepared, load_prepared
from grmu.runtime import run_info, write_text

HIST_BINS = 20


def model_seed(seed: int, k: int) -> int:
    """The seed of the k-th held-out model of experiment seed ``seed``."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def train_cfg(params: dict) -> dict:
    cfg = dict(params["train"])
    cfg["epochs"] = params["memorization"]["epochs"] or cfg["epochs"]
    return cfg


def heldout(params: dict, prep: Prepared, train: np.ndarray, seed: int) -> np.ndarray:
    from tqdm.auto import tqdm

    from grmu.inference import predict
    from grmu.models import new_model
    from grmu.train import Pass, fit

    mem, cfg = params["memorization"], train_cfg(params)
    member = heldout_design(len(train), mem["models"], mem["fraction"], np.random.default_rng(seed))
    correct = np.zeros(member.shape, dtype=bool)
    for k in tqdm(range(mem["models"]), desc=f"memorization s{seed}", unit="model", leave=False):
        s = model_seed(seed, k)
        model = new_model(params["model"], prep, s)
        p = Pass("train", train[member[k]], batch_size=cfg["batch_size"])
        model, _ = fit(model, prep, lambda e: [p], cfg, seed=s, desc=f"model {k + 1}/{mem['models']}")
        logits = predict(model, prep, train, params["eval"]["batch_size"])
        correct[k] = logits.argmax(1).numpy() == prep.y[train]
    return heldout_scores(correct, member)


class ProxyRecorder:
    """Per-sample sums of the proxy records (confidence, max_conf, Σ p log p, correctness) of
    each batch's first forward pass (a SAM step's second pass is not a new iteration)."""

    def __init__(self, n: int):
        import torch

        self.sums = torch.zeros(len(PROXIES), n, dtype=torch.float64)
        self.counts = torch.zeros(n, dtype=torch.float64)
        self.batch = None

    def start(self, b) -> None:
        self.batch = b

    def loss(self, model, x, y, g):
        import torch
        import torch.nn.functional as F

        logits = model(x)
        if self.batch is not None:
            with torch.no_grad():
                p = logits.detach().double().softmax(1)
                rows = torch.stack(
                    [
                        p.gather(1, y[:, None]).squeeze(1),
                        p.max(1).values,
                        torch.special.xlogy(p, p).sum(1),
                        (p.argmax(1) == y).double(),
                    ]
                )
                b = self.batch.to(self.counts.device)
                self.sums[:, b] += rows.cpu()
                self.counts[b] += 1
            self.batch = None
        return F.cross_entropy(logits, y)


def proxies(params: dict, prep: Prepared, train: np.ndarray, seed: int, score: str) -> np.ndarray:
    from grmu.models import new_model
    from grmu.train import Pass, fit

    cfg = train_cfg(params)
    rec = ProxyRecorder(len(prep.y))
    model = new_model(params["model"], prep, seed)
    p = Pass("train", train, rec.loss, cfg["batch_size"], on_batch=rec.start)
    fit(model, prep, lambda e: [p], cfg, seed=seed, desc=f"memorization proxies s{seed}")
    return proxy_scores(rec.sums.numpy()[:, train], rec.counts.numpy()[train], score)


def ho_ret(params: dict, prep: Prepared, train: np.ndarray, seed: int, original) -> np.ndarray:
    from grmu.inference import predict
    from grmu.models import load_checkpoint, new_model
    from grmu.train import Pass, fit

    if original is None:
        raise GrmuError("memorization.score ho_ret fine-tunes the PRETRAIN model: pass its checkpoint (--original)")
    mem, bs = params["memorization"], params["eval"]["batch_size"]
    model = new_model(params["model"], prep, seed, load_weights=False)
    load_checkpoint(original, model)
    before = predict(model, prep, train, bs).double().softmax(1).numpy()
    cfg = {
        **params["train"],
        "lr": mem["ft_lr"],
        "epochs": mem["ft_epochs"],
        "schedule": "const",
        "warmup_epochs": 0,
        "augment": False,
        "optimizer": "sgd",
        "sam": None,
    }
    p = Pass("test", prep.indices("test"), batch_size=cfg["batch_size"])
    fit(
        model,
        prep,
        lambda e: [p],
        cfg,
        seed=seed,
        desc=f"ho_ret s{seed}",
        stop=lambda history: should_stop([row["loss_test"] for row in history]),
    )
    after = predict(model, prep, train, bs).double().softmax(1).numpy()
    return symmetric_kl(before, after)


def histogram_csv(scores: np.ndarray, score: str) -> str:
    if len(scores) == 0:
        return "score,count\n"
    span = (-1.0, 1.0) if score in ESTIMATES else (float(scores.min()), float(scores.max()))
    counts, edges = np.histogram(scores, bins=HIST_BINS, range=span)
    centres = (edges[:-1] + edges[1:]) / 2
    return "score,count\n" + "".join(f"{c:.4g},{n}\n" for c, n in zip(centres, counts))


def run(params: dict, prepared, seed: int, out, hist_out, original=None) -> dict:
    """``original``: the PRETRAIN checkpoint of ``seed`` (read by ``ho_ret`` only)."""
    mem = params["memorization"]
    score = resolve_score(mem["score"], params["forget"]["kind"])
    prep = load_prepared(prepared, inputs=score not in ("none", "file"))  # the others train or run models
    train = prep.indices("train")
    t0 = time.time()
    if score == "none":
        scores = np.zeros(0)
    elif score == "heldout":
        scores = heldout(params, prep, train, seed)
    elif score == "file":
        if not mem["file"]:
            raise GrmuError("memorization.score file needs memorization.file (a .npz path under data_dir)")
        n_fit = int((prep.split != "test").sum())  # the samples of the official training files (CIFAR)
        scores = read_scores_file(Path(params["data_dir"]) / mem["file"], len(prep.y), train, mem["key"], n_fit)
    elif score == "ho_ret":
        scores = ho_ret(params, prep, train, seed, original)
    else:
        scores = proxies(params, prep, train, seed, score)
    if not np.isfinite(scores).all():
        raise GrmuError(f"memorization scores ({score}) are not finite; nothing was saved")
    save_scores(out, train if len(scores) else np.zeros(0, dtype=np.int64), scores, score, run_info(seed))
    write_text(hist_out, histogram_csv(scores, score))
    if len(scores):
        print(
            f"memorization seed={seed}: {score} scores of {len(scores)} training samples in {time.time() - t0:.1f}s, "
            f"mean {scores.mean():.3f}, range [{scores.min():.3f}, {scores.max():.3f}]"
        )
    else:
        print(f"memorization seed={seed}: none (forget.kind '{params['forget']['kind']}' needs no scores)")
    return {"score": score, "scores": scores}
