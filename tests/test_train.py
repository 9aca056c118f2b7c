import pytest
import torch

from grmu.inference import model_accuracy, predict, to_input
from grmu.metrics import accuracy
from grmu.models import build_model
from grmu.stages.evaluate import run as evaluate
from grmu.stages.forget_set import run as forget_set
from tests.conftest import train_reference
from grmu.train import Pass, fit, lr_factor


def test_lr_schedule_warmup_then_cosine():
    cfg = {"epochs": 4, "warmup_epochs": 1, "schedule": "cosine"}
    assert lr_factor(cfg, 0, 0, 10) == 0.0  # the very first iteration runs at lr 0
    assert lr_factor(cfg, 0, 5, 10) == 0.5
    assert lr_factor(cfg, 1, 3, 10) == 1.0  # cosine steps per epoch, starts at 1
    assert lr_factor(cfg, 2, 0, 10) == pytest.approx(0.75)
    assert lr_factor({**cfg, "schedule": "const"}, 3, 0, 10) == 1.0


def _flipped_after_first_epoch(tr):
    """Epoch 0 learns; later epochs learn flipped labels, so validation accuracy falls: the best
    epoch is the first one, never the last."""
    import torch.nn.functional as F

    def passes(epoch):
        if epoch == 0:
            return [Pass("train", tr, batch_size=128)]
        return [Pass("train", tr, lambda m, x, y, g: F.cross_entropy(m(x), 1 - y), batch_size=128)]

    return passes


CFG = {
    "epochs": 3,
    "batch_size": 128,
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "warmup_epochs": 0,
    "schedule": "const",
}


@pytest.mark.parametrize("select_best", [True, False])
def test_fit_keeps_the_best_epoch_or_the_last(prep, select_best):
    torch.manual_seed(0)
    model = build_model({"arch": "small_cnn", "width": 8}, 2, prep.meta["input_shape"])
    tr, va = prep.indices("train"), prep.indices("val")
    model, hist = fit(model, prep, _flipped_after_first_epoch(tr), CFG, seed=0, val_idx=va, select_best=select_best)
    accs = [h["val_acc"] for h in hist]
    assert accs[0] > accs[-1] + 10 and accs[0] == max(accs)  # the fixture: best first, worst last
    kept = model_accuracy(model, prep, va)
    assert kept == pytest.approx(accs[0] if select_best else accs[-1])
    assert hist[0].get("best") is (True if select_best else None)


def test_fit_stops_after_the_epoch_its_stop_hook_ends(prep):
    torch.manual_seed(0)
    model = build_model({"arch": "small_cnn", "width": 8}, 2, prep.meta["input_shape"])
    tr = prep.indices("train")
    seen = []

    def stop(history):
        seen.append(len(history))
        return len(history) == 2

    _, hist = fit(
        model, prep, lambda e: [Pass("train", tr[:256], batch_size=128)], {**CFG, "epochs": 5}, seed=0, stop=stop
    )
    assert [h["epoch"] for h in hist] == [0, 1] and seen == [1, 2]


def test_pass_loss_weights_batches_and_names_the_first_bad_step():
    """A pass's loss: per batch the sum of its updates' losses, weighted by the batch size; the
    first non-finite one stops the run with its batch number."""
    from grmu import GrmuError
    from grmu.train import pass_loss

    t = [torch.tensor(v, dtype=torch.float64) for v in (1.0, 3.0, 0.5, 0.25)]
    assert pass_loss(t[:2], [(2, 1), (6, 1)], None) == pytest.approx((1 * 2 + 3 * 6) / 8)
    assert pass_loss(t, [(4, 2), (1, 2)], None) == pytest.approx((4 * 4 + 0.75 * 1) / 5)  # 2 updates per batch
    assert pass_loss([], [], None) == 0.0
    bad = [torch.tensor(v, dtype=torch.float64) for v in (1.0, 2.0, float("inf"), float("nan"))]
    with pytest.raises(GrmuError, match=r"^batch 2 got inf; the run diverged and nothing was saved"):
        pass_loss(bad, [(3, 1)] * 4, lambda k, v: f"batch {k} got {v}")
    with pytest.raises(GrmuError, match=r"^batch 1 got nan"):  # the second update of batch 1
        pass_loss(bad[:2] + bad[3:], [(3, 1), (3, 2)], lambda k, v: f"batch {k} got {v}")


def test_a_diverged_step_is_named_by_its_place_in_the_epoch(prep):
    """The message names the epoch, the pass and the step counted over the epoch's passes, with
    that step's lr (here the 2nd batch of the 2nd pass of epoch 2: step 3, lr 0.05 * 0.5)."""
    from grmu import GrmuError
    import torch.nn.functional as F

    torch.manual_seed(0)
    model = build_model({"arch": "small_cnn", "width": 8}, 2, prep.meta["input_shape"])
    tr = prep.indices("train")[:256]
    calls = []

    def loss(m, x, y, g):
        calls.append(1)
        out = F.cross_entropy(m(x), y)
        return out * float("nan") if len(calls) == 6 else out

    passes = lambda e: [Pass("a", tr, batch_size=128), Pass("b", tr, loss, batch_size=128)]  # noqa: E731
    cfg = {**CFG, "epochs": 3, "schedule": "cosine", "warmup_epochs": 1}
    with pytest.raises(GrmuError, match=r"train: the loss became nan in epoch 2, pass 'b', step 3 at lr 0\.025;"):
        fit(model, prep, passes, cfg, seed=0)


def test_unlearning_keeps_the_last_epoch(prep):
    """UnlearnContext.fit does no model selection: the model after the last epoch is returned."""
    from grmu.methods import UnlearnContext

    class Recorder:
        def __init__(self):
            self.rows = []

        def log_metric(self, k, v):
            if k == "val_acc":
                self.rows.append(v)

        def next_step(self):
            pass

    torch.manual_seed(0)
    model = build_model({"arch": "small_cnn", "width": 8}, 2, prep.meta["input_shape"])
    live = Recorder()
    tr = prep.indices("train")
    ctx = UnlearnContext(
        model=model,
        prep=prep,
        forget_idx=tr[:50],
        remaining_idx=tr[50:],
        cfg={**CFG, "augment": False},
        options={},
        reweight=False,
        seed=0,
        live=live,
    )
    out = ctx.fit(_flipped_after_first_epoch(tr))
    assert live.rows[0] > live.rows[-1] + 10
    assert model_accuracy(out, prep, prep.indices("val")) == pytest.approx(live.rows[-1])


def test_predict_runs_in_eval_mode_and_restores_the_mode(prep):
    """BatchNorm must use its running statistics in evaluation, whatever mode the model was in."""
    torch.manual_seed(0)
    model = build_model({"arch": "small_cnn", "width": 8}, 2, prep.meta["input_shape"])
    idx = prep.indices("val")[:64]
    with torch.no_grad():  # give BN running stats that differ from a batch's own statistics
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.fill_(0.3)
                m.running_var.fill_(2.0)
    model.train()
    logits = predict(model, prep, idx, batch_size=16)
    assert model.training
    model.eval()
    with torch.no_grad():
        expected = model(to_input(prep.inputs[torch.as_tensor(idx)], "cpu"))
        model.train()
        batch_stats = model(to_input(prep.inputs[torch.as_tensor(idx)], "cpu"))
    assert torch.allclose(logits, expected, atol=1e-5)
    assert not torch.allclose(logits, batch_stats, atol=1e-3)
    pred = logits.argmax(1).numpy()
    assert model_accuracy(model, prep, idx) == pytest.approx(accuracy(pred, prep.y[idx]))


def test_same_params_and_seed_give_identical_weights_and_metrics(prepared_dir, tmp_path):
    from tests.conftest import small_params

    p = small_params(train={**small_params()["train"], "augment": True})
    forget_set(p, prepared_dir, 0.5, 3, tmp_path / "f.json")
    metrics = []
    for name in ("a", "b"):
        train_reference(
            p, prepared_dir, 3, tmp_path / f"{name}.pt", variant="reweight", forget_path=tmp_path / "f.json"
        )
        metrics.append(
            evaluate(p, prepared_dir, tmp_path / f"{name}.npz", tmp_path / "f.json", name, tmp_path / f"{name}.json")[
                "metrics"
            ]
        )
    sa = torch.load(tmp_path / "a.pt", weights_only=True)["state_dict"]
    sb = torch.load(tmp_path / "b.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # byte-identical files too, so a rerun does not make DVC rerun the evaluations downstream
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()
    assert (tmp_path / "a.npz").read_bytes() == (tmp_path / "b.npz").read_bytes()
    assert metrics[0] == metrics[1]
    info = torch.load(tmp_path / "a.pt", weights_only=True)["info"]
    assert info["run"]["seed"] == 3 and "torch" in info["run"] and "device" in info["run"]


def test_seeding_asks_torch_for_deterministic_kernels_without_loading_the_compiler():
    """Each training stage seeds every RNG and turns on torch's deterministic algorithms (warn
    only), without their NaN fill of every new tensor (hundreds of kernel launches per GPU step);
    it need not import torch's compiler config for that (seconds per stage)."""
    import subprocess
    import sys

    code = (
        "import sys, torch, random, numpy as np\n"
        "from grmu.runtime import seed_everything\n"
        "seed_everything(3)\n"
        "a = (random.random(), float(np.random.rand()), float(torch.rand(1)))\n"
        "seed_everything(3)\n"
        "assert a == (random.random(), float(np.random.rand()), float(torch.rand(1)))\n"
        "print(torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled(),\n"
        "      torch.utils.deterministic.fill_uninitialized_memory, 'torch._inductor.config' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["True", "True", "False", "False"]
