"""Memorization scores (held-out estimator, proxies, file), memorization forget sets and the
stages that make and read them."""

import json
import os

import numpy as np
import pytest
import torch

from grmu import GrmuError
from grmu.config import validate
from grmu.memorization import (
    centre,
    heldout_design,
    heldout_scores,
    level_sets,
    load_scores,
    proxy_scores,
    read_scores_file,
    resolve_score,
    save_scores,
    select,
    should_stop,
    symmetric_kl,
)
from grmu.metrics import subset_accuracies
from grmu.prepared import Prepared
from grmu.splits import load_forget
from grmu.stages import evaluate, forget_set
from grmu.stages import memorization as mem_stage
from tests.conftest import small_params, train_reference

# ---------------------------------------------------------------------------- the held-out estimator


def test_heldout_design_holds_each_sample_out_of_the_same_number_of_models():
    member = heldout_design(500, 10, 0.7, np.random.default_rng(0))
    assert member.shape == (10, 500)
    assert ((~member).sum(0) == 3).all()  # round(0.3 * 10) models without each sample
    assert 0.6 < member.mean() < 0.8 and len({r.tobytes() for r in member}) == 10
    assert not np.array_equal(member, heldout_design(500, 10, 0.7, np.random.default_rng(1)))
    with pytest.raises(GrmuError, match="held out of at least one"):
        heldout_design(5, 2, 0.9, np.random.default_rng(0))  # round(0.2) = 0 models hold a sample out


def test_heldout_scores_are_in_minus_out_correctness():
    member = np.array([[1, 1, 0], [1, 0, 1], [0, 1, 1], [1, 0, 0]], dtype=bool)
    correct = np.array([[1, 1, 1], [1, 0, 0], [0, 1, 1], [1, 1, 0]], dtype=bool)
    # sample 0: in {0,1,3} all right, out {2} wrong -> 1; sample 1: in {0,2} right, out {1,3} 1 of 2 -> 0.5;
    # sample 2: in {1,2}: 1 of 2, out {0,3}: 1 of 2 -> 0
    assert np.allclose(heldout_scores(correct, member), [1.0, 0.5, 0.0])
    with pytest.raises(GrmuError, match="held out"):
        heldout_scores(correct[:1], member[:1])


def synthetic_prep(n_train=160, n_flip=6, seed=0):
    """Two classes told apart by the brightness of a 1x4x4 image, plus per-sample noise; the
    first ``n_flip`` training samples carry the wrong label (only memorization fits them)."""
    rng = np.random.default_rng(seed)
    n = n_train + 40
    y = rng.integers(0, 2, n)
    base = np.where(y == 1, 190, 60)[:, None, None, None]
    images = np.clip(base + rng.normal(0, 40, (n, 1, 4, 4)), 0, 255).astype(np.uint8)
    labels = y.copy()
    labels[:n_flip] = 1 - labels[:n_flip]
    split = np.array(["train"] * n_train + ["val"] * 20 + ["test"] * 20)
    meta = {"n_classes": 2, "n_attrs": 1, "input_shape": [1, 4, 4], "augmentation": "none", "dataset": "synthetic"}
    zeros = np.zeros(n, dtype=np.int64)
    return Prepared(
        split=split,
        y=labels.astype(np.int64),
        a=zeros,
        g=labels.astype(np.int64),
        inputs=torch.from_numpy(images),
        meta=meta,
    )


def test_heldout_ranks_the_mislabelled_samples_highest():
    prep = synthetic_prep()
    params = small_params(
        model={"width": 16},
        memorization={"models": 8, "fraction": 0.5, "epochs": 60},
        train={"batch_size": 32, "lr": 0.05, "augment": False, "weight_decay": 0.0},
    )
    train = prep.indices("train")
    scores = mem_stage.heldout(params, prep, train, seed=0)
    top = set(np.argsort(-scores, kind="stable")[:6])
    assert len(top & set(range(6))) >= 5, (scores[:6], np.sort(scores)[-8:])
    assert scores[6:].mean() < 0.2 < scores[:6].mean()


# ---------------------------------------------------------------------------- the proxies


class FixedLogits(torch.nn.Module):
    def __init__(self, logits):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(()))
        self.logits = logits

    def forward(self, x):
        return self.logits + 0 * self.w


def test_the_proxy_recorder_keeps_one_record_per_batch_and_the_right_statistics():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    p = logits.softmax(1)
    rec = mem_stage.ProxyRecorder(5)
    model, y = FixedLogits(logits), torch.tensor([0, 0])
    rec.start(torch.tensor([3, 1]))
    rec.loss(model, None, y, None)
    rec.loss(model, None, y, None)  # a SAM step's second pass: no new record
    assert rec.counts.tolist() == [0, 1, 0, 1, 0]
    expected = {
        3: (p[0, 0], p[0, 0], (p[0] * p[0].log()).sum(), 1.0),
        1: (p[1, 0], p[1, 1], (p[1] * p[1].log()).sum(), 0.0),
    }
    for i, row in expected.items():
        assert torch.allclose(rec.sums[:, i], torch.tensor(row, dtype=torch.float64), atol=1e-6)


def test_proxy_scores_are_negated_means_so_larger_is_more_memorized():
    sums = np.array([[1.8, 0.4], [1.8, 1.2], [-0.2, -1.0], [2.0, 0.0]])  # 2 records each
    counts = np.array([2.0, 2.0])
    assert np.allclose(proxy_scores(sums, counts, "confidence"), [-0.9, -0.2])
    assert np.allclose(proxy_scores(sums, counts, "max_conf"), [-0.9, -0.6])
    assert np.allclose(proxy_scores(sums, counts, "entropy"), [0.1, 0.5])  # entropy itself
    assert np.allclose(proxy_scores(sums, counts, "bi_acc"), [-1.0, 0.0])
    with pytest.raises(GrmuError, match="never seen"):
        proxy_scores(sums, np.array([2.0, 0.0]), "confidence")


def test_proxy_stage_records_every_iteration_of_every_epoch(prep):
    params = small_params(memorization={"score": "bi_acc", "epochs": 3})
    train = prep.indices("train")
    seen = []
    real = mem_stage.ProxyRecorder.start
    try:
        mem_stage.ProxyRecorder.start = lambda self, b: (seen.append(len(b)), real(self, b))
        scores = mem_stage.proxies(params, prep, train, 0, "bi_acc")
    finally:
        mem_stage.ProxyRecorder.start = real
    assert sum(seen) == 3 * len(train)
    assert len(scores) == len(train) and set(np.round(scores * 3).astype(int)) <= {-3, -2, -1, 0}


# ---------------------------------------------------------------------------- held-out retraining (ho_ret)


def test_symmetric_kl_averages_both_directions_and_clamps_zeros():
    p = np.array([[0.9, 0.1], [0.5, 0.5], [1.0, 0.0]])
    q = np.array([[0.6, 0.4], [0.5, 0.5], [0.25, 0.75]])
    kl_pq = 0.9 * np.log(0.9 / 0.6) + 0.1 * np.log(0.1 / 0.4)
    kl_qp = 0.6 * np.log(0.6 / 0.9) + 0.4 * np.log(0.4 / 0.1)
    e = 1e-10
    kl3 = (np.log(1 / 0.25) + e * np.log(e / 0.75) + 0.25 * np.log(0.25) + 0.75 * np.log(0.75 / e)) / 2
    assert np.allclose(symmetric_kl(p, q), [(kl_pq + kl_qp) / 2, 0.0, kl3])
    assert np.allclose(symmetric_kl(q, p), symmetric_kl(p, q))


@pytest.mark.parametrize(
    "losses,stops",
    [
        ([5, 4, 3, 2], False),  # fewer epochs than the patience
        ([5, 4, 3, 2, 1, 0.5], False),  # improving
        ([5, 4, 4, 4, 4], False),  # the 4 is the best: only 3 epochs without a lower loss
        ([5, 4, 4, 4.5, 4.2, 4.0], True),  # equal is no improvement (strict <, as upstream)
        ([5, 4, 6, 7, 8, 3.9], False),  # the last epoch improved
        ([5, 6, 7, 8, 9], True),
    ],
)
def test_ho_ret_fine_tuning_stops_after_4_epochs_without_a_lower_loss(losses, stops):
    assert should_stop(losses) is stops


def _pretrain_checkpoint(prepared_dir, tmp_path, params):
    path = tmp_path / "pretrain.pt"
    train_reference(params, prepared_dir, 0, path)
    return path


def test_ho_ret_compares_the_checkpoint_with_its_copy_fine_tuned_on_test(prepared_dir, prep, tmp_path, monkeypatch):
    """before = the PRETRAIN checkpoint, after = what the fine-tuning on the test split returns,
    both in eval mode on the train split; the fine-tuning has upstream's settings."""
    import grmu.train
    from grmu.inference import predict
    from grmu.models import load_checkpoint, new_model

    params = small_params(memorization={"score": "ho_ret", "ft_lr": 0.05, "ft_epochs": 7})
    ckpt = _pretrain_checkpoint(prepared_dir, tmp_path, params)
    other = new_model(params["model"], prep, 123)  # what the "fine-tuning" will turn the model into
    calls = []

    def fake_fit(model, prep_, passes, cfg, *, seed, stop, **kw):
        calls.append((passes(0), cfg, stop))
        model.load_state_dict(other.state_dict())
        model.train()  # the scores must still come from eval mode
        return model, []

    monkeypatch.setattr(grmu.train, "fit", fake_fit)
    train = prep.indices("train")
    scores = mem_stage.ho_ret(params, prep, train, 0, ckpt)
    ((passes, cfg, stop),) = calls
    assert [p.name for p in passes] == ["test"] and (passes[0].idx == prep.indices("test")).all()
    assert (cfg["lr"], cfg["epochs"], cfg["schedule"], cfg["warmup_epochs"], cfg["augment"], cfg["optimizer"]) == (
        0.05,
        7,
        "const",
        0,
        False,
        "sgd",
    )
    assert cfg["momentum"] == params["train"]["momentum"] and not cfg["sam"]
    assert stop([{"loss_test": v} for v in (5, 6, 7, 8, 9)]) and not stop([{"loss_test": v} for v in (5, 4)])
    orig = new_model(params["model"], prep, 0, load_weights=False)
    load_checkpoint(ckpt, orig)
    p = predict(orig, prep, train).double().softmax(1).numpy()
    q = predict(other, prep, train).double().softmax(1).numpy()
    assert np.allclose(scores, symmetric_kl(p, q)) and scores.std() > 0


def test_ho_ret_stage_writes_nonnegative_scores_centred_on_the_median(prepared_dir, prep, tmp_path):
    params = small_params(memorization={"score": "ho_ret", "ft_epochs": 2})
    ckpt = _pretrain_checkpoint(prepared_dir, tmp_path, params)
    out = mem_stage.run(params, prepared_dir, 0, tmp_path / "m.npz", tmp_path / "h.csv", ckpt)
    name, scores = load_scores(tmp_path / "m.npz", prep.indices("train"))
    assert name == "ho_ret" and np.array_equal(scores, out["scores"]) and scores.min() >= 0 and scores.max() > 0
    assert centre("ho_ret", scores) == np.median(scores)
    edges = [float(r.split(",")[0]) for r in (tmp_path / "h.csv").read_text().splitlines()[1:]]
    assert edges[0] >= scores.min() and edges[-1] <= scores.max()  # the histogram spans the scores, not [-1, 1]
    with pytest.raises(GrmuError, match="pass its checkpoint"):
        mem_stage.run(params, prepared_dir, 0, tmp_path / "n.npz", tmp_path / "n.csv")
    assert not (tmp_path / "n.npz").exists()


# ---------------------------------------------------------------------------- selection rules

SCORES = np.array([0.9, 0.1, 0.5, 0.9, 0.0, 0.5, 0.45, 0.2, 0.0])


def test_levels_follow_upstreams_stable_sorts():
    sets = level_sets(SCORES, 3, 0.5)
    assert sets["high"].tolist() == [0, 3, 2]  # ties keep index order
    assert sets["low"].tolist() == [1, 4, 8]  # the last 3 of the descending order
    assert sets["mid"].tolist() == [2, 5, 6]  # closest to 0.5, ties in descending order
    assert level_sets(SCORES, 3, float(np.median(SCORES)))["mid"].tolist() == [6, 2, 5]  # median 0.45


def test_ties_keep_index_order_in_long_score_vectors():
    scores = np.random.default_rng(0).choice([0.0, 0.5, 1.0], 300)
    sets = level_sets(scores, 40, 0.5)
    assert sets["high"].tolist() == np.flatnonzero(scores == 1.0)[:40].tolist()
    assert sets["mid"].tolist() == np.flatnonzero(scores == 0.5)[:40].tolist()
    assert sets["low"].tolist() == np.flatnonzero(scores == 0.0)[-40:].tolist()


def test_mix_takes_a_third_of_each_and_the_subsets_are_its_parts():
    forget, subsets = select(SCORES, 7, "mix", 0.5)  # 7 // 3 = 2 of each
    assert forget.tolist() == [0, 3, 2, 5, 4, 8]
    assert {k: v.tolist() for k, v in subsets.items()} == {"high": [0, 3], "mid": [2, 5], "low": [4, 8]}
    forget, subsets = select(SCORES, 3, "low", 0.5)
    assert forget.tolist() == [1, 4, 8] and subsets["low"].tolist() == [8] and subsets["high"].tolist() == [0]


@pytest.mark.parametrize(
    "scores,n,level,fragment",
    [
        (SCORES, 2, "high", "at least 3"),
        (SCORES, 9, "high", "between 1 and 8"),
        (SCORES, 3, "top", "forget.level 'top' is unknown; valid: high, mid, low, mix"),
    ],
)
def test_bad_selections_are_refused(scores, n, level, fragment):
    with pytest.raises(GrmuError, match=fragment):
        select(scores, n, level, 0.5)


def test_the_mid_third_never_repeats_a_high_or_low_sample():
    # most scores 0 and a few high ones: the 3 closest to 0.5 are the 3 highest
    scores = np.array([0.9, 0.0, 0.6, 0.0, 0.55, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0, 0.3])
    assert level_sets(scores, 3, 0.5)["mid"].tolist() == [7, 4, 2]  # the mid level itself: upstream's rule
    forget, subsets = select(scores, 9, "mix", 0.5)  # thirds of 3
    assert subsets["high"].tolist() == [0, 2, 4] and subsets["low"].tolist() == [8, 9, 10]
    assert subsets["mid"].tolist() == [7, 11, 1]  # 0.5, then 0.3, then the first 0 not in low
    assert len(np.unique(forget)) == 9
    _, subsets = select(scores, 9, "high", 0.5)
    assert subsets["mid"].tolist() == [7, 11, 1]  # the same subsets for every level


def test_the_mid_centre_is_the_median_for_proxies_only():
    s = np.array([-0.9, -0.8, -0.1])
    assert centre("confidence", s) == -0.8 and centre("heldout", s) == 0.5 and centre("file", s) == 0.5
    assert centre("ho_ret", s) == -0.8


def test_auto_means_heldout_only_for_memorization_forget_sets():
    assert resolve_score("auto", "memorization") == "heldout"
    assert resolve_score("auto", "group") == "none" and resolve_score("entropy", "random") == "entropy"


# ---------------------------------------------------------------------------- files


class Payload:
    def __reduce__(self):
        return (os.system, ("touch PWNED_MEM",))


def test_a_scores_file_with_a_pickled_object_is_refused_without_running(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.savez(tmp_path / "mem.npz", tr_mem=np.array([Payload()], dtype=object))
    with pytest.raises(GrmuError, match="cannot read memorization scores"):
        read_scores_file(tmp_path / "mem.npz", 10, np.arange(5))
    assert not (tmp_path / "PWNED_MEM").exists()


def test_a_scores_file_is_gathered_by_prepared_index_and_checked(tmp_path):
    raw = np.linspace(-1, 1, 10)
    np.savez(tmp_path / "m.npz", memorization=raw, other=raw[::-1])
    train = np.array([7, 2, 5])
    assert np.allclose(read_scores_file(tmp_path / "m.npz", 12, train, n_fit=10), raw[train])
    assert np.allclose(read_scores_file(tmp_path / "m.npz", 10, train, key="other"), raw[::-1][train])
    with pytest.raises(GrmuError, match="holds 10 scores, but the training samples go up to index 11"):
        read_scores_file(tmp_path / "m.npz", 12, np.array([1, 11]))
    np.savez(tmp_path / "bad.npz", tr_mem=raw * 3)
    with pytest.raises(GrmuError, match=r"in \[-1, 1\]"):
        read_scores_file(tmp_path / "bad.npz", 10, train)
    with pytest.raises(GrmuError, match="no array tr_mem or memorization; it holds: other"):
        np.savez(tmp_path / "nokey.npz", other=raw)
        read_scores_file(tmp_path / "nokey.npz", 12, train)
    with pytest.raises(GrmuError, match="not found"):
        read_scores_file(tmp_path / "absent.npz", 12, train)


def test_saved_scores_round_trip_and_a_none_file_is_refused(tmp_path):
    train = np.array([0, 3, 4])
    save_scores(tmp_path / "s.npz", train, np.array([0.2, -0.1, 0.7]), "heldout", {"seed": 1})
    name, scores = load_scores(tmp_path / "s.npz", train)
    assert name == "heldout" and scores.tolist() == [0.2, -0.1, 0.7]
    with pytest.raises(GrmuError, match="not those of this train split"):
        load_scores(tmp_path / "s.npz", np.array([0, 3, 5]))
    save_scores(tmp_path / "n.npz", np.zeros(0, dtype=np.int64), np.zeros(0), "none", {})
    with pytest.raises(GrmuError, match="holds no scores"):
        load_scores(tmp_path / "n.npz", train)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left


# ---------------------------------------------------------------------------- params


@pytest.mark.parametrize(
    "over,fragment",
    [
        ({"forget": {"kind": "memorization"}, "memorization": {"score": "none"}}, "needs memorization scores"),
        ({"forget": {"level": "top"}}, "forget.level 'top' is unknown; valid: high, mid, low, mix"),
        ({"memorization": {"score": "loss"}}, "memorization.score 'loss' is unknown; valid: auto, none, heldout"),
        ({"memorization": {"models": 1}}, "memorization.models must be an integer >= 2, got 1"),
        ({"memorization": {"fraction": 1.0}}, "memorization.fraction must be a finite number > 0 and < 1, got 1.0"),
        ({"memorization": {"score": "file"}}, "memorization.score file needs memorization.file"),
        ({"memorization": {"ft_lr": 0}}, "memorization.ft_lr must be a finite number > 0, got 0"),
        ({"memorization": {"ft_epochs": 0}}, "memorization.ft_epochs must be a positive integer, got 0"),
        ({"forget": {"count": 5}}, "with forget.kind 'group'"),
    ],
)
def test_bad_memorization_params_are_refused(over, fragment):
    with pytest.raises(GrmuError, match=fragment):
        validate(small_params(**over))


def test_memorization_forget_sets_may_set_their_size():
    validate(small_params(forget={"kind": "memorization", "count": 30}, ratios=[0.1]))


# ---------------------------------------------------------------------------- the stages


def test_memorization_forget_set_and_its_subset_accuracies_through_the_stages(prepared_dir, prep, tmp_path):
    params = small_params(
        forget={"kind": "memorization", "level": "high", "count": 30},
        memorization={"score": "file", "file": "scores.npz"},
        data_dir=str(tmp_path),
        ratios=[0.1],
    )
    rng = np.random.default_rng(3)
    raw = rng.uniform(-1, 1, len(prep.y))
    np.savez(tmp_path / "scores.npz", tr_mem=raw)
    out = mem_stage.run(params, prepared_dir, 0, tmp_path / "mem.npz", tmp_path / "hist.csv")
    train = prep.indices("train")
    assert np.array_equal(out["scores"], raw[train])
    hist = (tmp_path / "hist.csv").read_text().splitlines()
    assert hist[0] == "score,count" and sum(int(line.split(",")[1]) for line in hist[1:]) == len(train)
    forget_set.run(params, prepared_dir, 0.1, 0, tmp_path / "f.json", tmp_path / "mem.npz")
    fs = load_forget(tmp_path / "f.json", prep)
    top = train[np.argsort(-raw[train], kind="stable")[:30]]
    assert np.array_equal(fs["forget"], np.sort(top)) and fs["level"] == "high" and fs["score"] == "file"
    bottom = train[np.argsort(-raw[train], kind="stable")[-10:]]
    assert np.array_equal(fs["subsets"]["low"], np.sort(bottom)) and len(fs["subsets"]["mid"]) == 10
    assert json.loads((tmp_path / "f.json").read_text())["kind"] == "memorization"
    # evaluation reports the accuracy of each subset
    train_reference(params, prepared_dir, 0, tmp_path / "m.pt")
    res = evaluate.run(params, prepared_dir, tmp_path / "m.npz", tmp_path / "f.json", "pretrain", tmp_path / "e.json")
    from grmu.inference import predict
    from grmu.models import load_checkpoint, new_model

    model = new_model(params["model"], prep, seed=None, load_weights=False)
    load_checkpoint(tmp_path / "m.pt", model)
    for name in ("high", "mid", "low"):
        idx = fs["subsets"][name]
        want = float((predict(model, prep, idx).argmax(1).numpy() == prep.y[idx]).mean() * 100)
        assert res["metrics"][f"acc_{name}"] == pytest.approx(want)


def test_subset_accuracies_read_each_subset():
    pred, y = np.array([0, 1, 1, 0, 1]), np.array([0, 1, 0, 0, 0])
    out = subset_accuracies(pred, y, {"high": np.array([0, 1]), "low": np.array([2, 4]), "mid": np.array([3, 2, 1])})
    assert out == {"acc_high": 100.0, "acc_low": 0.0, "acc_mid": pytest.approx(200 / 3)}


def test_none_writes_an_empty_record_and_a_memorization_forget_set_then_refuses_it(prepared_dir, tmp_path):
    params = small_params()
    out = mem_stage.run(params, prepared_dir, 0, tmp_path / "mem.npz", tmp_path / "hist.csv")
    assert out["score"] == "none" and (tmp_path / "hist.csv").read_text() == "score,count\n"
    mem_params = small_params(forget={"kind": "memorization", "count": 30}, ratios=[0.1])
    with pytest.raises(GrmuError, match="holds no scores"):
        forget_set.run(mem_params, prepared_dir, 0.1, 0, tmp_path / "f.json", tmp_path / "mem.npz")
    assert not (tmp_path / "f.json").exists()


# ---------------------------------------------------------------------------- RUM


def rum_ctx(prep, model, steps, *, forget=None, reweight=False, cfg=None):
    from grmu.methods import UnlearnContext
    from tests.test_methods import unlearn_cfg

    train = prep.indices("train")
    forget = train[[3, 9, 14, 20, 31, 40]] if forget is None else forget
    subsets = {"high": forget[:2], "mid": forget[2:4], "low": forget[4:]}
    return UnlearnContext(
        model=model,
        prep=prep,
        forget_idx=forget,
        remaining_idx=np.setdiff1d(train, forget),
        cfg=cfg or unlearn_cfg(epochs=1),
        options={"steps": steps},
        reweight=reweight,
        seed=0,
        subsets=subsets,
    )


def spy_methods(monkeypatch):
    """Replace the methods RUM looks up by recorders; each returns a fresh copy of its model
    with one weight moved, so that chaining the models can be checked."""
    import copy as copy_

    from grmu.methods import MethodSpec
    from grmu.methods import rum as rum_module

    calls = []

    def fake(name):
        def run(ctx):
            out = copy_.deepcopy(ctx.model)
            with torch.no_grad():
                next(out.parameters()).view(-1)[0] += 1.0
            calls.append(
                {
                    "name": name,
                    "forget": ctx.forget_idx.copy(),
                    "remaining": ctx.remaining_idx.copy(),
                    "cfg": ctx.cfg,
                    "options": ctx.options,
                    "model": ctx.model,
                    "original": ctx.original,
                    "reweight": ctx.reweight,
                    "out": out,
                }
            )
            return out

        return MethodSpec(name, run, {"k": 1, "j": 0})

    monkeypatch.setattr(rum_module, "get_method", fake)
    return calls


def first_weight(model) -> float:
    return float(next(model.parameters()).detach().view(-1)[0])


def test_rum_steps_exclude_every_processed_subset_from_the_remaining_set(prep, monkeypatch):
    from grmu.methods import rum as rum_module

    calls = spy_methods(monkeypatch)
    model = torch.nn.Linear(2, 2)
    steps = [
        {"subset": "high", "method": "a", "unlearn": {"lr": 0.5}, "options": {"k": 2}},
        {"subset": "low", "method": "none"},
        {"subset": "mid", "method": "b"},
    ]
    ctx = rum_ctx(prep, model, steps, reweight=True)
    out = rum_module.rum(ctx)
    train, s = prep.indices("train"), ctx.subsets
    assert [c["name"] for c in calls] == ["a", "b"]
    a, b = calls
    assert np.array_equal(a["forget"], s["high"]) and np.array_equal(a["remaining"], np.setdiff1d(train, s["high"]))
    done = np.concatenate([s["high"], s["low"], s["mid"]])
    assert np.array_equal(b["forget"], s["mid"]) and np.array_equal(b["remaining"], np.setdiff1d(train, done))
    assert a["cfg"]["lr"] == 0.5 and b["cfg"]["lr"] == ctx.cfg["lr"] != 0.5
    assert a["options"] == {"k": 2, "j": 0} and b["options"] == {"k": 1, "j": 0}
    assert a["reweight"] and b["reweight"]
    # each step starts from the previous step's model, which is also its "original"
    assert b["model"] is a["out"] and first_weight(b["original"]) == first_weight(a["out"])
    assert out is b["out"] and first_weight(out) == pytest.approx(first_weight(model) + 2)


@pytest.mark.parametrize(
    "steps,fragment",
    [
        ([{"subset": "top", "method": "finetune"}], "steps[0].subset 'top' is unknown; valid: high, mid, low"),
        ([{"subset": "low", "method": "finetune"}, {"subset": "low", "method": "salun"}], "unlearned twice"),
        ([{"subset": "low", "method": "rum"}], "other than rum"),
        (
            [{"subset": "low", "method": "finetune"}, {"subset": "high", "method": "none"}],
            "must list each of high, mid, low once (method none skips one); missing: mid",
        ),
        ([{"subset": "low", "method": "finetun"}], "unknown method 'finetun'"),
        ([{"subset": "low", "method": "finetune", "lr": 0.1}], "unknown key 'methods.rum.steps[0].lr'"),
        (
            [{"subset": "low", "method": "finetune", "unlearn": {"rate": 0.1}}],
            "unknown key 'methods.rum.steps[0].unlearn.rate'",
        ),
        ([{"subset": "low", "method": "finetune", "unlearn": {"lr": -1}}], "methods.rum.steps[0].unlearn.lr must be"),
        (
            [{"subset": "low", "method": "salun", "options": {"thresh": 0.5}}],
            "unknown key 'methods.rum.steps[0].options.thresh'",
        ),
        ([], "non-empty list"),
    ],
)
def test_bad_rum_steps_are_refused_in_one_line(prep, steps, fragment):
    import re

    from grmu.methods import rum as rum_module

    if steps and "missing" not in fragment:  # complete the steps, so that only the planted fault is left
        listed = {st.get("subset") for st in steps}
        steps = steps + [{"subset": s, "method": "none"} for s in ("low", "mid", "high") if s not in listed]
    with pytest.raises(GrmuError, match=re.escape(fragment)):
        rum_module.rum(rum_ctx(prep, torch.nn.Linear(2, 2), steps))


def test_rum_needs_a_mix_forget_set(prep):
    from grmu.methods import rum as rum_module

    ctx = rum_ctx(prep, torch.nn.Linear(2, 2), [{"subset": s, "method": "none"} for s in ("low", "mid", "high")])
    ctx.subsets["low"] = ctx.subsets["low"][:1]  # the thirds no longer make up the forget set
    with pytest.raises(GrmuError, match="forget.level mix"):
        rum_module.rum(ctx)
    ctx.subsets = None
    with pytest.raises(GrmuError, match="forget.kind memorization"):
        rum_module.rum(ctx)


def test_rum_default_steps_change_the_model_only_in_the_mid_and_high_steps(prep, monkeypatch):
    from grmu.methods import rum as rum_module

    calls = spy_methods(monkeypatch)
    rum_module.rum(rum_ctx(prep, torch.nn.Linear(2, 2), rum_module.DEFAULT_STEPS))
    assert [(c["name"], len(c["forget"])) for c in calls] == [("finetune", 2), ("salun", 2)]


@pytest.mark.parametrize(
    "over,fragment",
    [
        ({}, "forget.kind is 'group' and forget.level 'high': use forget.kind memorization with forget.level mix"),
        (
            {
                "forget": {"kind": "memorization", "level": "mix", "count": 30},
                "ratios": [0.1],
                "methods": {
                    "rum": {
                        "steps": [
                            {"subset": "low", "method": "salun", "options": {"thresh": 1}},
                            {"subset": "mid", "method": "none"},
                            {"subset": "high", "method": "none"},
                        ]
                    }
                },
            },
            "unknown key 'methods.rum.steps[0].options.thresh'",
        ),
        (
            {
                "forget": {"kind": "memorization", "level": "mix", "count": 30},
                "ratios": [0.1],
                "methods": {
                    "rum": {
                        "steps": [
                            {"subset": "low", "method": "finetune", "unlearn": {"epochs": 0}},
                            {"subset": "mid", "method": "none"},
                            {"subset": "high", "method": "none"},
                        ]
                    }
                },
            },
            "methods.rum.steps[0].unlearn.epochs must be a positive integer, got 0",
        ),
    ],
)
def test_check_params_refuses_a_bad_rum_setting_before_any_stage_runs(tmp_path, over, fragment):
    from grmu.stages import check_params

    params = validate(small_params(method="rum", **over))
    with pytest.raises(GrmuError, match=fragment.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        check_params.run(params, tmp_path / "ok")
    assert not (tmp_path / "ok").exists()


def test_check_params_accepts_rum_on_a_mix_forget_set(tmp_path):
    from grmu.stages import check_params

    params = validate(
        small_params(method="rum", forget={"kind": "memorization", "level": "mix", "count": 30}, ratios=[0.1])
    )
    check_params.run(params, tmp_path / "ok")
    assert (tmp_path / "ok").read_text() == "ok\n"


def test_the_memorization_stage_reads_and_depends_on_the_seeds_pretrain_checkpoint():
    """ho_ret fine-tunes PRETRAIN: dvc.yaml must pass that seed's checkpoint and list it as a
    dependency (else DVC would run the stage before pretrain, or keep stale scores)."""
    import yaml

    from tests.conftest import ROOT

    stage = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["memorization"]
    assert "--original 'models/pretrain/${item.seed}.pt'" in stage["cmd"]
    assert "models/pretrain/${item.seed}.pt" in stage["deps"]
    assert (
        yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["pretrain"]["outs"][0]
        == "models/pretrain/${item.seed}.pt"
    )
