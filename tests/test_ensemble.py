"""grmu.ensemble: M small_cnn nets packed into one module are exactly M independent models, and
``fit_ensemble`` trains member k as ``fit`` trains that net alone with seed k.

The training comparisons run mostly in float64 (nets and prepared inputs; ``to_input`` passes
non-uint8 inputs through): in float32 the grouped convolutions round differently from
``Conv2d`` (~1e-7), and now and then a ReLU input that close to 0 flips sign, sending one
step's gradient another way and the two runs apart by ~1e-3 (1 member run in 24 here, at the
tests' settings; longer runs part further, see grmu.ensemble). In float64 that does not happen
at these sizes (the runs agree to ~1e-13), so the tolerance can be tight and any real
difference shows; one short float32 run (1 epoch, seeds checked free of such a flip on this
machine) covers the precision the pipeline uses."""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import pytest
import torch

from grmu import GrmuError
from grmu.ensemble import check_arch, fit_ensemble, member_accuracies, pack, unpack
from grmu.inference import model_accuracy
from grmu.models import build_model
from grmu.prepared import load_prepared
from grmu.robust import reweight_weights
from grmu.stages.prepare import run as prepare
from grmu.train import Pass, ce_loss, fit
from tests.conftest import small_params

SEEDS = [3, 4, 5]  # training seeds (init: 1000 + seed); [0, 1, 2] met a float32 ReLU flip
CFG = {
    "epochs": 2,
    "batch_size": 64,
    "lr": 0.05,
    "momentum": 0.9,
    "weight_decay": 0.002,
    "warmup_epochs": 1,
    "schedule": "cosine",
    "augment": True,
    "optimizer": "sgd",
    "sam": {"mode": "none", "rho": 0.1, "lamb": 1.0, "adaptive": False},
}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """colored_mnist at 7 px, with a random 384-sample training subset and 300 validation
    samples (the prepared samples are ordered by digit, so the first ones are all one class)."""
    d = tmp_path_factory.mktemp("prepared7")
    prepare(small_params(datasets={"colored_mnist": {"image_size": 7}}), d)
    prep = load_prepared(d)
    rng = np.random.default_rng(0)
    tr = np.sort(rng.choice(prep.indices("train"), 384, replace=False))
    va = np.sort(rng.choice(prep.indices("val"), 300, replace=False))
    return prep, tr, va


@pytest.fixture(scope="module")
def tiny64(tiny):
    """``tiny`` with float64 inputs (the values ``to_input`` gives, in double)."""
    prep, tr, va = tiny
    return dataclasses.replace(prep, inputs=prep.inputs.double().div(127.5).sub(1.0)), tr, va


def _nets(seeds, shape=(3, 7, 7), width=4, classes=2, dtype=torch.float32):
    nets = []
    for s in seeds:
        torch.manual_seed(1000 + s)
        nets.append(build_model({"arch": "small_cnn", "width": width}, classes, shape).to(dtype))
    return nets


def _with_distinct_stats(nets, shape=(3, 7, 7)):
    """Each net's BatchNorm running statistics (and batch count) moved by train-mode forwards on
    inputs of its own, net k k+1 times: no two members share a buffer value."""
    gen = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for k, net in enumerate(nets):
            net.train()
            for _ in range(k + 1):
                net(torch.randn(8, *shape, generator=gen) * (k + 1) + k)
    return nets


def _assert_same_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert sa[key].dtype == sb[key].dtype and torch.equal(sa[key], sb[key]), key


def test_pack_unpack_round_trip_is_bit_identical():
    nets = _with_distinct_stats(_nets(SEEDS))
    nets[0].body[1].running_var[0] = 7.25  # a buffer value no forward would give
    assert not torch.equal(nets[0].body[0].weight, nets[1].body[0].weight)
    assert [int(n.body[1].num_batches_tracked) for n in nets] == [1, 2, 3]
    for net in nets:
        net.precision = "bf16"  # carried through as well
    rng_before = torch.random.get_rng_state()
    ens = pack(nets)
    assert ens.precision == "bf16"
    back = unpack(ens)
    assert torch.equal(rng_before, torch.random.get_rng_state())  # no RNG drawn to build the nets
    assert len(back) == len(nets)
    for net, copy_ in zip(nets, back):
        _assert_same_state(net, copy_)
        assert copy_ is not net and copy_.precision == "bf16"
    into = _nets([7, 8, 9])  # other weights, overwritten
    assert unpack(ens, into=into) == into
    for net, copy_ in zip(nets, into):
        _assert_same_state(net, copy_)
    again = pack(back).state_dict()
    for key, value in ens.state_dict().items():
        assert torch.equal(value, again[key]), key


@pytest.mark.parametrize("train", [True, False])
def test_ensemble_forward_is_each_nets_forward(train):
    """Train mode: each member normalises with its own batch's statistics and moves its own
    running statistics; eval mode: each with its own running statistics."""
    shape = (3, 14, 14)
    nets = _with_distinct_stats(_nets(SEEDS, shape), shape)
    ens = pack(nets).train(train)
    gen = torch.Generator().manual_seed(1)
    x = torch.stack([torch.randn(16, *shape, generator=gen) * (k + 1) - k for k in range(len(nets))])
    out = ens(x)
    assert out.shape == (len(nets), 16, 2)
    z = ens.features(x)
    for k, net in enumerate(nets):
        net.train(train)
        torch.testing.assert_close(out[k], net(x[k]), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(z[k], net.features(x[k]), atol=1e-5, rtol=1e-5)
    for net, member in zip(nets, unpack(ens)):  # the running statistics after the forwards
        for key, value in net.state_dict().items():
            torch.testing.assert_close(member.state_dict()[key], value, atol=1e-6, rtol=1e-6)
    assert not torch.allclose(out[0], out[1], atol=1e-2)  # the members are not the same model


def _reference(nets, prep, idx, cfg, seeds, weights, va, select_best=True):
    """Each net trained alone by ``fit``, as ``grmu.stages.pretrain.train_and_save`` trains it."""
    out = []
    for net, seed in zip(nets, seeds):
        p = Pass("train", idx, ce_loss, cfg["batch_size"], weights)
        out.append(fit(copy.deepcopy(net), prep, lambda e: [p], cfg, seed=seed, val_idx=va, select_best=select_best))
    return out


def _assert_members_match(ours, ref, atol):
    assert len(ours) == len(ref)
    for k, ((net, hist), (ref_net, ref_hist)) in enumerate(zip(ours, ref)):
        assert [sorted(row) for row in hist] == [sorted(row) for row in ref_hist], k
        for row, ref_row in zip(hist, ref_hist):
            assert row["epoch"] == ref_row["epoch"] and row["lr"] == ref_row["lr"]
            assert row.get("val_acc") == ref_row.get("val_acc") and row.get("best") == ref_row.get("best"), (k, row)
            assert row["loss_train"] == pytest.approx(ref_row["loss_train"], rel=1e3 * atol, abs=atol)
        state, ref_state = net.state_dict(), ref_net.state_dict()
        for key, value in ref_state.items():
            if value.is_floating_point():
                torch.testing.assert_close(state[key], value, atol=atol, rtol=0, msg=f"model {k} {key}")
            else:
                assert torch.equal(state[key], value), (k, key)


def _weights(prep, tr):
    """REWEIGHT's sampler weights for ``tr`` less half of its forget group (y=1, a=0)."""
    forget = tr[prep.g[tr] == 2]
    remaining = np.setdiff1d(tr, forget[: len(forget) // 2])
    weights = reweight_weights(prep.g[prep.indices("train")], prep.g[remaining], prep.n_groups)
    assert weights.max() > 1.5  # the survivors of the forget group are drawn more often
    return remaining, weights


@pytest.mark.parametrize("case", ["augment", "reweight", "adamw_plain", "float32"])
def test_fit_ensemble_member_k_is_fit_with_seed_k(tiny, tiny64, case):
    prep, tr, va = tiny if case == "float32" else tiny64
    cfg, weights, dtype, atol = dict(CFG), None, torch.float64, 1e-10
    if case == "reweight":
        tr, weights = _weights(prep, tr)
    if case == "adamw_plain":
        cfg.update(optimizer="adamw", lr=0.01, augment=False, warmup_epochs=0, schedule="const")
    if case == "float32":
        cfg, dtype, atol = {**cfg, "epochs": 1}, torch.float32, 1e-4
    nets = _nets(SEEDS, dtype=dtype)
    ref = _reference(nets, prep, tr, cfg, SEEDS, weights, va)
    ours = fit_ensemble(nets, prep, tr, cfg, SEEDS, weights=weights, val_idx=va)
    assert [net for net, _ in ours] == nets  # trained in place, as fit trains its model
    _assert_members_match(ours, ref, atol)
    diff = (ours[0][0].head.weight - ours[1][0].head.weight).abs().max()
    assert diff > 1e-2  # the fixture is asymmetric: different seeds, different models


def test_fit_ensemble_keeps_each_members_own_best_epoch(tiny64):
    """A high constant lr makes the validation accuracy jump about: the members' best epochs
    differ, and some member's best epoch is not its last."""
    prep, tr, va = tiny64
    cfg = {**CFG, "epochs": 3, "lr": 0.2, "warmup_epochs": 0, "schedule": "const"}
    seeds = [0, 1, 2, 3]
    nets = _nets(seeds, dtype=torch.float64)
    ref = _reference(nets, prep, tr, cfg, seeds, None, va)
    best = [max(i for i, row in enumerate(hist) if row.get("best")) for _, hist in ref]
    assert len(set(best)) > 1 and min(best) < cfg["epochs"] - 1  # the fixture does what it is for
    ours = fit_ensemble(nets, prep, tr, cfg, seeds, val_idx=va)
    _assert_members_match(ours, ref, 1e-10)
    for (net, hist), b in zip(ours, best):
        assert model_accuracy(net, prep, va) == hist[b]["val_acc"]


def test_fit_ensemble_without_select_best_keeps_the_last_epoch(tiny64):
    prep, tr, va = tiny64
    cfg = {**CFG, "epochs": 3, "lr": 0.2, "warmup_epochs": 0, "schedule": "const"}
    nets = _nets(SEEDS, dtype=torch.float64)
    ref = _reference(nets, prep, tr, cfg, SEEDS, None, va, select_best=False)
    ours = fit_ensemble(nets, prep, tr, cfg, SEEDS, val_idx=va, select_best=False)
    _assert_members_match(ours, ref, 1e-10)
    assert all("best" not in row for _, hist in ours for row in hist)


def test_member_accuracies_are_each_members_model_accuracy(tiny):
    prep, tr, va = tiny
    nets = _with_distinct_stats(_nets(SEEDS))
    ens = pack(nets).train()
    accs = member_accuracies(ens, prep, va)
    assert ens.training  # the mode is kept
    assert accs == [model_accuracy(net, prep, va) for net in nets]
    assert len(set(accs)) > 1
    assert all(np.isnan(a) for a in member_accuracies(ens, prep, va[:0]))


def test_fit_ensemble_names_the_diverged_member(tiny):
    prep, tr, va = tiny
    cfg = {**CFG, "epochs": 1, "lr": 1e30, "warmup_epochs": 0, "schedule": "const", "augment": False}
    with pytest.raises(GrmuError, match=r"ensemble: model 0 \(seed 3\): the loss became nan in epoch 0") as e:
        fit_ensemble(_nets(SEEDS), prep, tr, cfg, SEEDS, val_idx=va)
    assert "lower the learning rate" in str(e.value) and "\n" not in str(e.value)


def _refused(match, call):
    with pytest.raises(GrmuError, match=match) as e:
        call()
    assert "\n" not in str(e.value)


def test_refusals(tiny, monkeypatch):
    prep, tr, va = tiny
    nets = _nets(SEEDS)
    sam = {**CFG, "sam": {**CFG["sam"], "mode": "min"}}
    _refused(r"sam\.mode min .*valid: none", lambda: fit_ensemble(nets, prep, tr, sam, SEEDS))
    _refused(r"2 seeds for 3 models", lambda: fit_ensemble(nets, prep, tr, CFG, SEEDS[:2]))
    _refused(r"no models to train together \(0 nets\)", lambda: fit_ensemble([], prep, tr, CFG, []))
    _refused(r"no models to train together", lambda: pack([]))
    resnet = build_model({"arch": "resnet18_cifar"}, 2, (3, 7, 7))
    other = r"model 1 is not a small_cnn \(its body is a ResNet\); model\.arch valid for an ensemble: small_cnn"
    _refused(other, lambda: fit_ensemble([nets[0], resnet], prep, tr, CFG, SEEDS[:2]))
    _refused(other, lambda: pack([nets[0], resnet]))
    wide = _nets([3], width=8)[0]
    _refused(
        r"model 2's body\.0\.weight shape is \(\(8, 3, 3, 3\).*model 0's \(\(4, 3, 3, 3\)",
        lambda: pack([*nets[:2], wide]),
    )
    bf16 = copy.deepcopy(nets[1])
    bf16.precision = "bf16"
    _refused(r"model 1's precision is bf16, model 0's fp32", lambda: pack([nets[0], bf16]))
    _refused(r"model\.arch resnet18 cannot be trained as an ensemble; valid: small_cnn", lambda: check_arch("resnet18"))
    check_arch("small_cnn")
    monkeypatch.setattr("grmu.distributed.active", lambda: True)
    monkeypatch.setattr("grmu.distributed.world_size", lambda: 2)
    _refused(
        r"distributed training is active \(2 processes\).*distributed\.processes: 1",
        lambda: fit_ensemble(nets, prep, tr, CFG, SEEDS),
    )
