import numpy as np
import pytest
import torch

from grmu.models import build_model
from grmu.pipeline import evaluate, forget_set, train_reference
from grmu.train import Pass, fit, lr_factor


def test_lr_schedule_warmup_then_cosine():
    cfg = {"epochs": 4, "warmup_epochs": 1, "schedule": "cosine"}
    assert lr_factor(cfg, 0, 0, 10) == 0.0  # the very first iteration runs at lr 0
    assert lr_factor(cfg, 0, 5, 10) == 0.5
    assert lr_factor(cfg, 1, 3, 10) == 1.0  # cosine steps per epoch, starts at 1
    assert lr_factor(cfg, 2, 0, 10) == pytest.approx(0.75)
    assert lr_factor({**cfg, "schedule": "const"}, 3, 0, 10) == 1.0


def test_fit_learns_and_keeps_best_validation_epoch(prep):
    torch.manual_seed(0)
    model = build_model({"arch": "small_cnn", "width": 8}, 2, prep.meta["input_shape"])
    cfg = {"epochs": 3, "batch_size": 128, "lr": 0.05, "momentum": 0.9, "weight_decay": 0.0,
           "warmup_epochs": 0, "schedule": "const"}
    tr = prep.indices("train")
    model, hist = fit(model, prep, lambda e: [Pass("train", tr, batch_size=128)], cfg, seed=0,
                      val_idx=prep.indices("val"), select_best=True)
    assert hist[-1]["loss_train"] < hist[0]["loss_train"]
    best = max(h["val_acc"] for h in hist)
    from grmu.train import accuracy
    assert accuracy(model, prep, prep.indices("val")) == pytest.approx(best)


def test_same_params_and_seed_give_identical_weights_and_metrics(prepared_dir, tmp_path):
    from tests.conftest import small_params

    p = small_params(train={**small_params()["train"], "augment": True})
    forget_set(p, prepared_dir, 0.5, 3, tmp_path / "f.json")
    metrics = []
    for name in ("a", "b"):
        train_reference(p, prepared_dir, 3, tmp_path / f"{name}.pt", variant="reweight", forget_path=tmp_path / "f.json")
        metrics.append(evaluate(p, prepared_dir, tmp_path / f"{name}.pt", tmp_path / "f.json", name,
                                tmp_path / f"{name}.json")["metrics"])
    sa = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # byte-identical files too, so a rerun does not make DVC rerun the evaluations downstream
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert metrics[0] == metrics[1]
    info = torch.load(tmp_path / "a.pt", weights_only=True)["info"]
    assert info["run"]["seed"] == 3 and "torch" in info["run"] and "device" in info["run"]
