"""model.precision: bf16 autocast in training, unlearning and evaluation (the official ResNet
runs), its losses in bf16 as the MIA sees them, deterministic for a seed; fp32 otherwise."""

import json

import numpy as np
import torch
import torch.nn.functional as F

from grmu.inference import predictions, to_input
from grmu.models import load_checkpoint, new_model, run_precision
from grmu.runtime import device
from grmu.stages import evaluate as evaluate_stage
from grmu.stages import pretrain, retrain
from grmu.stages.forget_set import run as forget_set
from grmu.train import Pass, fit
from tests.conftest import small_params


def bf16_exact(a: np.ndarray) -> bool:
    t = torch.as_tensor(a)
    return bool(torch.equal(t.to(torch.bfloat16).float(), t))


def test_auto_is_bf16_on_cuda_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert (run_precision("auto", cuda), run_precision("auto", cpu)) == ("bf16", "fp32")
    assert (run_precision("bf16", cpu), run_precision("fp32", cuda)) == ("bf16", "fp32")
    assert new_model(small_params()["model"], _Prep(), seed=0).precision == "fp32"


class _Prep:  # the little new_model needs
    n_classes = 2
    meta = {"input_shape": [3, 8, 8]}


def test_bf16_losses_are_what_predictions_give(prep):
    p = small_params(model={"precision": "bf16"})
    model = new_model(p["model"], prep, seed=0)
    idx = prep.indices("test")[:64]
    pred, loss = predictions(model, prep, {"test": idx})
    dev = device()  # the suite's device: the CPU here, CUDA on a GPU machine (bench/gpu.sh)
    with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16):
        logits = model.eval()(to_input(prep.inputs[torch.as_tensor(idx)], dev))
    assert logits.dtype == torch.bfloat16
    y = torch.as_tensor(prep.y[idx], device=dev)
    want = F.cross_entropy(logits, y, reduction="none").float().cpu().numpy()
    np.testing.assert_array_equal(loss[idx], want)
    assert bf16_exact(loss[idx]) and (pred[idx] == logits.float().argmax(1).cpu().numpy()).all()
    model.precision = "fp32"
    _, loss32 = predictions(model, prep, {"test": idx})
    assert not bf16_exact(loss32[idx]) and np.abs(loss32[idx] - loss[idx]).max() > 0


def test_training_runs_its_forward_passes_under_autocast_and_repeats_exactly(prep):
    p = small_params(model={"precision": "bf16"})
    cfg = {**p["train"], "epochs": 1, "batch_size": 64}
    idx = prep.indices("train")[:256]
    seen = []

    def loss(model, x, y, g):
        seen.append(torch.is_autocast_enabled(device().type))
        return F.cross_entropy(model(x), y)

    def run(precision):
        model = new_model({**p["model"], "precision": precision}, prep, seed=3)
        hook = []
        fit(
            model,
            prep,
            lambda e: [Pass("train", idx, loss, 64)],
            cfg,
            seed=3,
            on_epoch_start=lambda e: hook.append(torch.is_autocast_enabled(device().type)),
        )
        return {k: v.clone() for k, v in model.state_dict().items()}, hook

    a, hook_a = run("bf16")
    assert seen and all(seen) and hook_a == [True]
    b, _ = run("bf16")
    assert all(torch.equal(a[k], b[k]) for k in a)  # same seed, same device: the same model
    seen.clear()
    c, hook_c = run("fp32")
    assert not any(seen) and hook_c == [False]
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_the_mia_sees_bf16_losses_and_two_runs_give_the_same_metrics(prep, prepared_dir, tmp_path, monkeypatch):
    p = small_params(model={"precision": "bf16"}, train={"epochs": 1})
    forget_set(p, prepared_dir, 0.5, 0, tmp_path / "f.json")
    pretrain.run(p, prepared_dir, 0, tmp_path / "pre.pt")
    seen = []
    real = evaluate_stage.split_metrics
    monkeypatch.setattr(
        evaluate_stage,
        "split_metrics",
        lambda pred, loss, *a, **k: (seen.append(loss.copy()), real(pred, loss, *a, **k))[1],
    )
    for k in (1, 2):
        evaluate_stage.run(
            p, prepared_dir, tmp_path / "pre.npz", tmp_path / "f.json", "pretrain", tmp_path / f"{k}.json"
        )
    first, second = (json.loads((tmp_path / f"{k}.json").read_text()) for k in (1, 2))
    assert first["metrics"] == second["metrics"] and first["trained"]["model"]["precision"] == "bf16"
    assert bf16_exact(seen[0][~np.isnan(seen[0])])
    fp32 = small_params(train={"epochs": 1})
    fp32_ckpt_eval = []
    monkeypatch.setattr(
        evaluate_stage,
        "split_metrics",
        lambda pred, loss, *a, **k: (fp32_ckpt_eval.append(loss), real(pred, loss, *a, **k))[1],
    )
    pretrain.run(fp32, prepared_dir, 0, tmp_path / "pre32.pt")
    # evaluated in the precision it trained in (its stage saved its outputs), whatever params say now
    evaluate_stage.run(p, prepared_dir, tmp_path / "pre32.npz", tmp_path / "f.json", "pretrain", tmp_path / "3.json")
    assert not bf16_exact(fp32_ckpt_eval[0][~np.isnan(fp32_ckpt_eval[0])])


def test_a_retrain_variant_can_train_in_its_own_precision(prep, prepared_dir, tmp_path):
    p = small_params(model={"precision": "bf16"}, train={"epochs": 1}, retrain={"gdro": {"precision": "fp32"}})
    forget_set(p, prepared_dir, 0.5, 0, tmp_path / "f.json")
    retrain.run(p, prepared_dir, "gdro", tmp_path / "f.json", 0, tmp_path / "gdro.pt")
    retrain.run(p, prepared_dir, "erm", tmp_path / "f.json", 0, tmp_path / "erm.pt")
    model = new_model(p["model"], prep, load_weights=False)
    assert load_checkpoint(tmp_path / "gdro.pt", model)["model"]["precision"] == "fp32"
    assert load_checkpoint(tmp_path / "erm.pt", model)["model"]["precision"] == "bf16"
