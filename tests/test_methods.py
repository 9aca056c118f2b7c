"""The unlearning methods (L1-sparse, SalUn, SCRUB, MIU) on a tiny model and small subsets of
the prepared colored_mnist: registry runs, determinism, loss-term signs, REWEIGHT, options."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grmu import GrmuError
from grmu.methods import UnlearnContext, get_method, list_methods
from grmu.methods import l1_sparse as l1_mod
from grmu.methods import miu as miu_mod
from grmu.methods import salun as salun_mod
from grmu.methods import scrub as scrub_mod
from grmu.models import build_model
from grmu.inference import autocast, to_input
from grmu.prepared import Prepared
from grmu.train import Pass, fit

# every registered method, so that a new method's file is picked up by the generic tests below
NEW_METHODS = [m.name for m in list_methods()]
# options that keep the tests fast; everything else at its default
FAST = {"miu": {"tune_steps_first": 20, "tune_steps": 5, "mine_hidden": 64}, "scrub": {"retain_batch_size": 64}}
FORGET_GROUP = 2  # (y=1, a=0), the dataset's default forget group


def unlearn_cfg(**over):
    cfg = {
        "epochs": 2,
        "batch_size": 32,
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "warmup_epochs": 0,
        "schedule": "cosine",
        "augment": False,
        "optimizer": "sgd",
        "sam": {"mode": "none", "rho": 0.1, "lamb": 1.0, "adaptive": False},
    }
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def split(prep):
    """40 forget samples of the forget group; 200 remaining samples with only 6 of that group
    left, so REWEIGHT has something to restore."""
    tr = prep.indices("train")
    rng = np.random.default_rng(0)
    pool = tr[prep.g[tr] == FORGET_GROUP]
    forget = np.sort(rng.choice(pool, 40, replace=False))
    left = np.setdiff1d(pool, forget)
    others = tr[prep.g[tr] != FORGET_GROUP]
    remaining = np.sort(np.concatenate([rng.choice(others, 194, replace=False), rng.choice(left, 6, replace=False)]))
    return forget, remaining


@pytest.fixture(scope="module")
def pretrained(prep):
    """A tiny model trained one epoch on the full train set (a stand-in for PRETRAIN)."""
    torch.manual_seed(0)
    model = build_model({"arch": "small_cnn", "width": 8}, prep.n_classes, prep.meta["input_shape"])
    fit(
        model,
        prep,
        lambda e: [Pass("train", prep.indices("train"), batch_size=64)],
        unlearn_cfg(epochs=1, lr=0.05, weight_decay=0.0),
        seed=0,
    )
    return model.eval()


def make_ctx(prep, split, model, method, *, reweight=False, seed=0, cfg=None, **opts):
    spec = get_method(method)
    forget, remaining = split
    return UnlearnContext(
        model=copy.deepcopy(model),
        prep=prep,
        forget_idx=forget,
        remaining_idx=remaining,
        cfg=cfg or unlearn_cfg(),
        options={**spec.options, **FAST.get(method, {}), **opts},
        reweight=reweight,
        seed=seed,
        subsets=dict(zip(("high", "mid", "low"), np.array_split(forget, 3))),
    )  # thirds, for RUM


def spy_fit(ctx, *, train=False):
    """Replace ``ctx.fit`` by a recorder of its arguments (optionally still training)."""
    calls = []
    real = ctx.fit

    def recorder(passes, **kw):
        calls.append((passes, kw))
        return real(passes, **kw) if train else ctx.model

    ctx.fit = recorder
    return calls


def state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def inputs(prep, idx):
    idx = torch.as_tensor(idx, dtype=torch.long)
    return to_input(prep.inputs[idx], "cpu"), torch.as_tensor(prep.y)[idx], torch.as_tensor(prep.g)[idx]


# --------------------------------------------------------------------------- every method


def test_methods_are_registered_with_a_summary_line():
    names = {m.name for m in list_methods()}
    assert set(NEW_METHODS) <= names
    for name in NEW_METHODS:
        doc = get_method(name).doc
        assert doc and len(doc.splitlines()[0]) < 110


@pytest.mark.parametrize("method", NEW_METHODS)
def test_runs_through_registry_changes_weights_and_is_deterministic(prep, split, pretrained, method):
    spec = get_method(method)
    before = state(pretrained)
    outs = [state(spec.run(make_ctx(prep, split, pretrained, method, reweight=True, seed=3))) for _ in range(2)]
    assert all(torch.equal(outs[0][k], outs[1][k]) for k in outs[0])
    assert any(not torch.equal(outs[0][k], before[k]) for k in before)
    assert all(torch.equal(before[k], v) for k, v in state(pretrained).items())  # input untouched


# methods without a pass named "remaining", and why (each has its own REWEIGHT test elsewhere)
NO_REMAINING_PASS = {
    "neggrad": "never reads the remaining set: reweight changes nothing",
    "influence": "one-shot update without passes (tests/test_sharp_methods.py)",
    "random_label": "one mixed pass over forget and remaining (tests/test_sharp_methods.py)",
    "rum": "a meta-method: each step's own context gets reweight (tests/test_memorization.py)",
}


@pytest.mark.parametrize("method", [m for m in NEW_METHODS if m not in NO_REMAINING_PASS])
def test_reweight_changes_the_sampled_group_mix_of_the_remaining_pass(prep, split, pretrained, method):
    _, remaining = split
    shares = {}
    for reweight in (False, True):
        ctx = make_ctx(prep, split, pretrained, method, reweight=reweight)
        calls = spy_fit(ctx)
        get_method(method).run(ctx)
        passes = calls[0][0](0)
        (rem,) = [p for p in passes if p.name == "remaining"]
        assert np.array_equal(np.sort(rem.idx), remaining)
        assert (rem.weights is not None) == reweight
        gen = torch.Generator().manual_seed(0)
        drawn = np.concatenate([rem.order(gen).numpy() for _ in range(50)])
        shares[reweight] = (prep.g[drawn] == FORGET_GROUP).mean()
    assert shares[False] == pytest.approx(6 / 200)
    train_share = (prep.g[prep.indices("train")] == FORGET_GROUP).mean()
    assert abs(shares[True] - train_share) < 0.02  # back to the original train mix
    assert shares[True] > 2 * shares[False]


BAD_OPTIONS = [
    ("l1_sparse", {"gamma": -1.0}, ["gamma", "-1.0", ">= 0"]),
    ("l1_sparse", {"gamma": "big"}, ["gamma", "'big'"]),
    ("salun", {"threshold": 0.0}, ["threshold", "0.0", "(0, 1]"]),
    ("salun", {"threshold": 1.5}, ["threshold", "1.5", "(0, 1]"]),
    ("scrub", {"temperature": 0}, ["temperature", "0", "> 0"]),
    ("scrub", {"forgetting_epochs": 2.5}, ["forgetting_epochs", "2.5", "integer"]),
    ("scrub", {"retain_batch_size": 0}, ["retain_batch_size", "0", ">= 1"]),
    ("miu", {"marginal": "foo"}, ["marginal", "foo", "shuffle", "uniform"]),
    ("miu", {"original_features": "both"}, ["original_features", "both", "original", "unlearned"]),
    ("miu", {"tune_mode": "test"}, ["tune_mode", "test", "eval", "train"]),
    ("miu", {"ema_alpha": 0.0}, ["ema_alpha", "0.0", "(0, 1]"]),
    ("miu", {"mine_lr": -0.1}, ["mine_lr", "-0.1", "> 0"]),
    ("miu", {"tune_steps": -1}, ["tune_steps", "-1", ">= 0"]),
    ("miu", {"ablate_retain": "yes"}, ["ablate_retain", "'yes'", "true or false"]),
    ("miu", {"ablate_unlearn": True, "ablate_alignment": True, "ablate_retain": True}, ["nothing would train"]),
]


@pytest.mark.parametrize("method,opts,fragments", BAD_OPTIONS)
def test_bad_option_values_are_refused_in_one_line(prep, split, pretrained, method, opts, fragments):
    ctx = make_ctx(prep, split, pretrained, method, **opts)
    calls = spy_fit(ctx)
    with pytest.raises(GrmuError) as err:
        get_method(method).run(ctx)
    msg = str(err.value)
    assert "\n" not in msg and not calls
    for frag in fragments:
        assert frag in msg


# --------------------------------------------------------------------------- L1-sparse


def test_l1_penalty_weight_decays_per_epoch():
    assert l1_mod.penalty_weight(5e-4, 0, 10) == 5e-4
    assert l1_mod.penalty_weight(5e-4, 9, 10) == pytest.approx(5e-5)  # never reaches 0


def test_l1_loss_is_ce_plus_the_epochs_penalty_on_all_parameters(prep, split, pretrained):
    ctx = make_ctx(prep, split, pretrained, "l1_sparse", gamma=0.01)
    calls = spy_fit(ctx)
    get_method("l1_sparse").run(ctx)
    x, y, g = inputs(prep, split[1][:16])
    model = ctx.model.eval()
    with torch.no_grad():
        norm = float(sum(p.abs().sum() for p in model.parameters()))
        ce = float(F.cross_entropy(model(x), y))
        for epoch, factor in ((0, 1.0), (1, 0.5)):  # E = 2
            (rem,) = calls[0][0](epoch)
            assert float(rem.loss(model, x, y, g)) - ce == pytest.approx(0.01 * factor * norm, rel=1e-4)


def test_l1_penalty_shrinks_the_l1_norm_compared_with_finetuning(prep, split, pretrained):
    def l1(model):
        with torch.no_grad():
            return float(l1_mod.l1_norm(model))

    ft = get_method("finetune").run(make_ctx(prep, split, pretrained, "finetune"))
    sparse = get_method("l1_sparse").run(make_ctx(prep, split, pretrained, "l1_sparse", gamma=0.01))
    zero = get_method("l1_sparse").run(make_ctx(prep, split, pretrained, "l1_sparse", gamma=0.0))
    assert l1(sparse) < l1(ft) - 1.0
    sf, sz = state(ft), state(zero)
    assert all(torch.equal(sf[k], sz[k]) for k in sf)  # gamma = 0 is plain fine-tuning


# --------------------------------------------------------------------------- SalUn


def test_saliency_mask_keeps_the_global_top_fraction():
    grads = {"a": torch.tensor([0.1, -5.0, 2.0]), "b": torch.tensor([[3.0, -0.5]])}
    mask = salun_mod.saliency_mask(grads, 0.4)  # int(0.4 * 5) = 2 entries: |-5| and |3|
    assert mask["a"].tolist() == [0.0, 1.0, 0.0] and mask["b"].tolist() == [[1.0, 0.0]]
    assert all(m.sum() == m.numel() for m in salun_mod.saliency_mask(grads, 1.0).values())


def test_saliency_mask_from_forget_gradients_of_the_original(prep, split, pretrained):
    ctx = make_ctx(prep, split, pretrained, "salun")
    grads = salun_mod.forget_gradients(ctx)
    assert set(grads) == {n for n, _ in pretrained.named_parameters()}
    mask = salun_mod.saliency_mask(grads, 0.3)
    flat_g = torch.cat([grads[n].abs().flatten() for n in grads])
    flat_m = torch.cat([mask[n].flatten() for n in grads])
    assert int(flat_m.sum()) == int(0.3 * flat_g.numel())
    assert flat_g[flat_m == 1].min() >= flat_g[flat_m == 0].max()
    assert all(p.grad is None and not p.requires_grad for p in ctx.original.parameters())


@pytest.mark.parametrize("weight_decay", [0.0, 5e-3])
def test_salun_zeroes_the_gradients_of_masked_weights(prep, split, pretrained, weight_decay):
    ctx = make_ctx(
        prep,
        split,
        pretrained,
        "salun",
        threshold=0.3,
        cfg=unlearn_cfg(epochs=1, momentum=0.0, weight_decay=weight_decay),
    )
    checked = []
    real_fit = ctx.fit

    def fit_with_check(passes, **kw):
        hook = kw["after_backward"]

        def checked_hook(model):
            hook(model)
            for name, p in model.named_parameters():
                assert torch.all(p.grad[hook.mask[name] == 0] == 0)
            checked.append(any(bool((p.grad != 0).any()) for p in model.parameters()))

        kw["after_backward"] = checked_hook
        return real_fit(passes, **kw)

    ctx.fit = fit_with_check
    before = dict(pretrained.named_parameters())
    model = get_method("salun").run(ctx)
    assert len(checked) == 2 + 7 and all(checked)  # 40/32 forget + 200/32 remaining batches
    mask = salun_mod.saliency_mask(salun_mod.forget_gradients(ctx), 0.3)
    moved_masked = any(bool((p != before[n])[mask[n] == 0].any()) for n, p in model.named_parameters())
    # paper's code: only gradients are masked, so SGD weight decay still moves masked weights
    assert moved_masked == (weight_decay > 0)


def test_salun_random_labels_are_uniform_and_fresh_every_batch():
    relabel = salun_mod.random_labels(2, torch.Generator().manual_seed(0))
    replay = torch.Generator().manual_seed(0)
    true_labels = torch.ones(500, dtype=torch.long)
    b = torch.arange(500)
    draws = []
    for _ in range(3):
        got = relabel(b, true_labels)
        assert torch.equal(got, torch.randint(0, 2, (500,), generator=replay))
        draws.append(got)
    assert all(0.4 < float((d == 0).float().mean()) < 0.6 for d in draws)  # uniform, true label ignored
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])  # fresh every batch


def test_random_labels_replace_only_the_marked_samples():
    replace = np.zeros(10, dtype=bool)
    replace[[2, 5, 7]] = True
    relabel = salun_mod.random_labels(1000, torch.Generator().manual_seed(0), replace=replace)
    y = torch.full((4,), 3, dtype=torch.long)
    got = relabel(torch.tensor([1, 2, 7, 9]), y)
    assert got[0] == 3 and got[3] == 3  # unmarked keep their labels
    assert got[1] != 3 and got[2] != 3  # marked ones are redrawn (1000 classes: 3 again is unlikely)


# --------------------------------------------------------------------------- SCRUB


def test_scrub_kl_matches_definition():
    s, t = torch.randn(5, 3), torch.randn(5, 3)
    T = 4.0
    p, q = F.softmax(t / T, 1), F.softmax(s / T, 1)
    want = (p * (p.log() - q.log())).sum() * T * T / 5
    assert float(scrub_mod.kl_to_teacher(s, t, T)) == pytest.approx(float(want), rel=1e-5)
    assert float(scrub_mod.kl_to_teacher(t, t, T)) == pytest.approx(0.0, abs=1e-6)


def test_scrub_passes_per_epoch(prep, split, pretrained):
    ctx = make_ctx(prep, split, pretrained, "scrub", forgetting_epochs=1, retain_batch_size=50)
    calls = spy_fit(ctx)
    get_method("scrub").run(ctx)
    first, second = calls[0][0](0), calls[0][0](1)
    assert [p.name for p in first] == ["forget", "remaining"] and [p.name for p in second] == ["remaining"]
    assert first[0].batch_size == 32 and first[1].batch_size == 50


def test_scrub_max_steps_raise_and_min_steps_lower_the_kl_on_forget_data(prep, split, pretrained):
    forget, remaining = split
    teacher = copy.deepcopy(pretrained).eval()
    x, _, _ = inputs(prep, forget)
    cfg = unlearn_cfg(epochs=2, lr=0.02, momentum=0.0, weight_decay=0.0, schedule="const")

    def kl(model):
        model.eval()
        with torch.no_grad():
            return float(scrub_mod.kl_to_teacher(model(x), teacher(x), 4.0))

    student = copy.deepcopy(pretrained)  # a student that already differs from the teacher
    fit(student, prep, lambda e: [Pass("r", remaining, batch_size=32)], unlearn_cfg(epochs=1, lr=0.05), seed=1)
    start = kl(student)
    assert start > 0
    up = copy.deepcopy(student)
    fit(up, prep, lambda e: [Pass("f", forget, scrub_mod.forget_loss(teacher, 4.0), 32)], cfg, seed=0)
    down = copy.deepcopy(student)
    fit(down, prep, lambda e: [Pass("f", forget, scrub_mod.retain_loss(teacher, 4.0, 1.0, 0.0), 32)], cfg, seed=0)
    assert kl(up) > start > kl(down)


# --------------------------------------------------------------------------- MIU


def test_mine_scores_are_the_mlp_on_features_and_one_hot_groups():
    torch.manual_seed(0)
    est = miu_mod.MINE(5, 3, hidden=8)
    z, g, g_bar = torch.randn(7, 5), torch.tensor([0, 1, 2, 2, 1, 0, 0]), torch.tensor([2, 2, 0, 1, 0, 1, 2])
    want = [est.net(torch.cat([z, F.one_hot(h, 3).float()], dim=1)).squeeze(1) for h in (g, g_bar)]
    joint, marginal = est.scores(z, g, g_bar)
    assert torch.allclose(joint, want[0], atol=1e-6) and torch.allclose(marginal, want[1], atol=1e-6)
    assert torch.allclose(est.scores(z, g), want[0], atol=1e-6)
    assert est.estimate(z, g, g_bar).item() == pytest.approx(
        (want[0].mean() - (torch.logsumexp(want[1], 0) - math.log(7))).item(), rel=1e-5
    )


def test_mine_value_and_ema_corrected_gradient():
    torch.manual_seed(0)
    est = miu_mod.MINE(6, 4, hidden=16, ema_alpha=0.1)
    g = torch.tensor([0, 1, 2, 3, 1, 2])
    g_bar = torch.tensor([3, 3, 0, 1, 2, 0])
    z1 = torch.randn(6, 6, requires_grad=True)
    m1 = est(z1, g, g_bar)
    assert m1.item() == pytest.approx(est.estimate(z1, g, g_bar).item(), rel=1e-6)
    (gz1,) = torch.autograd.grad(m1, z1)
    (plain1,) = torch.autograd.grad(est.estimate(z1, g, g_bar), z1)
    assert torch.allclose(gz1, plain1, atol=1e-6)  # the EMA starts at the first batch's value
    mexp1 = est.scores(z1, g_bar).exp().mean().item()

    z2 = torch.randn(6, 6, requires_grad=True)
    m2 = est(z2, g, g_bar)
    t2 = est.scores(z2, g_bar)
    ema = 0.1 * t2.exp().mean().item() + 0.9 * mexp1
    assert float(est.log_ema.exp()) == pytest.approx(ema, rel=1e-5)
    (gz2,) = torch.autograd.grad(m2, z2)
    surrogate = est.scores(z2, g).mean() - (t2.exp().detach() * t2).sum() / (6 * ema)
    (want,) = torch.autograd.grad(surrogate, z2)
    assert torch.allclose(gz2, want, atol=1e-6)
    assert m2.item() == pytest.approx(est.estimate(z2, g, g_bar).item(), rel=1e-6)


def test_miu_marginals(prep, split, pretrained):
    g = torch.tensor([0] * 20 + [3] * 12)
    shuffled = miu_mod.MIU(make_ctx(prep, split, pretrained, "miu", marginal="shuffle")).marginal(g)
    assert torch.equal(torch.sort(shuffled).values, g) and not torch.equal(shuffled, g)
    uniform_state = miu_mod.MIU(make_ctx(prep, split, pretrained, "miu", marginal="uniform"))
    uniform = uniform_state.marginal(torch.zeros(400, dtype=torch.long))
    assert set(uniform.tolist()) == {0, 1, 2, 3}


def spy_tuning(st):
    """Record each estimator update and each batch MIU's original model computes features of."""
    steps, orig_calls = [], []
    for opt in st.optimizers:
        real_step = opt.step
        opt.step = lambda *a, _s=real_step, **k: (steps.append(1), _s(*a, **k))[1]
    real_features = st.original.features
    st.original.features = lambda x: (orig_calls.append(len(x)), real_features(x))[1]
    return steps, orig_calls


def test_miu_tuning_steps_features_and_model_mode(prep, split, pretrained):
    """grmu's reading of the paper: mi_original tuned on the original's features, eval mode."""
    grmu = {"original_features": "original", "tune_mode": "eval", "original_mode": "eval"}
    ctx = make_ctx(prep, split, pretrained, "miu", tune_steps_first=7, tune_steps=3, **grmu)
    st = miu_mod.MIU(ctx)
    steps, orig_calls = spy_tuning(st)
    bn_before = state(ctx.model)
    m0 = [p.detach().clone() for p in st.mi_unlearning.parameters()]
    st.tune(0)
    assert len(steps) == 2 * 7 and not orig_calls  # epoch 0: the model is the original, features shared
    st.tune(1)
    assert len(steps) == 2 * (7 + 3) and len(orig_calls) == 3  # mi_original tuned on ORIGINAL features
    assert any(not torch.equal(a, b) for a, b in zip(m0, st.mi_unlearning.parameters()))
    assert all(torch.equal(v, bn_before[k]) for k, v in state(ctx.model).items())  # eval mode: model untouched
    assert all(not p.requires_grad and p.grad is None for e in st.estimators for p in e.parameters())

    # the epoch-0 shortcut (the model's features for both estimators) changes nothing: tuning
    # the same steps with the original model's own forward passes gives the same estimators
    short = miu_mod.MIU(make_ctx(prep, split, pretrained, "miu", tune_steps_first=4, **grmu))
    long = miu_mod.MIU(make_ctx(prep, split, pretrained, "miu", tune_steps=4, **grmu))
    short.tune(0)
    long.tune(1)
    for a, b in zip(short.estimators, long.estimators):
        assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))

    code = miu_mod.MIU(make_ctx(prep, split, pretrained, "miu", tune_steps_first=3))  # the defaults: the code's
    orig_calls.clear()
    code.original.features = st.original.features  # the recorder
    before = state(code.ctx.model)
    code.tune(0)
    assert not orig_calls  # the official code tunes both estimators on the unlearned features
    changed = [k for k, v in state(code.ctx.model).items() if not torch.equal(v, before[k])]
    assert changed and all("running" in k or "num_batches" in k for k in changed)  # BN stats only


def test_miu_defaults_run_as_the_official_code(prep, split, pretrained, monkeypatch):
    """Fact sheet §5.5 / §8.4: 101 then 11 estimator updates, both estimators tuned on the
    unlearned model's features in train mode (its BN running stats absorb the tuning batches),
    the tuning batches always augmented, z_o from the original model in the code's mode for the
    architecture (auto: train for image models, eval for BERT)."""
    spec = get_method("miu")
    assert {
        k: spec.options[k]
        for k in (
            "tune_steps_first",
            "tune_steps",
            "original_features",
            "tune_mode",
            "tune_augment",
            "original_mode",
            "marginal",
        )
    } == {
        "tune_steps_first": 101,
        "tune_steps": 11,
        "original_features": "unlearned",
        "tune_mode": "train",
        "tune_augment": "always",
        "original_mode": "auto",
        "marginal": "uniform",
    }
    augmented = []
    real_aug = miu_mod.train_augmentation

    def recording_augmentation(prep_):
        aug = real_aug(prep_)
        return lambda x, gen: (augmented.append(len(x)), aug(x, gen))[1]

    monkeypatch.setattr(miu_mod, "train_augmentation", recording_augmentation)
    ctx = make_ctx(
        prep,
        split,
        pretrained,
        "miu",
        **{k: spec.options[k] for k in ("tune_steps_first", "tune_steps")},
        mine_hidden=16,
        cfg=unlearn_cfg(augment=False, batch_size=8),
    )
    st = miu_mod.MIU(ctx)
    steps, orig_calls = spy_tuning(st)
    before = state(ctx.model)
    st.tune(0)
    assert len(steps) == 2 * 101 and len(augmented) == 101 and not orig_calls
    changed = [k for k, v in state(ctx.model).items() if not torch.equal(v, before[k])]
    assert changed and all("running" in k or "num_batches" in k for k in changed)
    st.tune(1)
    assert len(steps) == 2 * 112 and len(augmented) == 112 and not orig_calls  # unlearned features only
    not_always = miu_mod.MIU(
        make_ctx(
            prep, split, pretrained, "miu", tune_steps_first=3, tune_augment="unlearn", cfg=unlearn_cfg(augment=False)
        )
    )
    augmented.clear()
    not_always.tune(0)
    assert not augmented


@pytest.mark.parametrize("option", ["auto", "train", "eval"])
def test_miu_original_mode_sets_how_z_o_is_computed(prep, split, pretrained, option):
    ctx = make_ctx(prep, split, pretrained, "miu", tune_steps_first=0, original_mode=option)
    st = miu_mod.MIU(ctx)
    mode = "train" if option == "auto" else option  # auto on an image arch: the code's train mode
    kept = state(ctx.original)
    _, remaining = split
    x, y, g = inputs(prep, remaining[:32])
    with torch.no_grad():
        batch_stats = copy.deepcopy(ctx.original).train().features(x)
        running_stats = ctx.original.eval().features(x)
    seen = []
    real = st.mi_original.forward
    st.mi_original.forward = lambda z, *a: (seen.append(z.clone()), real(z, *a))[1]
    copy_before = state(st.original)
    st.retain_loss(ctx.model.train(), x, y, g)
    want = batch_stats if mode == "train" else running_stats
    assert torch.allclose(seen[0], want, atol=1e-5) and not torch.allclose(batch_stats, running_stats, atol=1e-3)
    assert st.original.training == (mode == "train") and all(not p.requires_grad for p in st.original.parameters())
    assert (st.original is ctx.original) == (mode == "eval")
    assert all(torch.equal(v, kept[k]) for k, v in state(ctx.original).items())  # the context's original untouched
    drifted = any(not torch.equal(v, copy_before[k]) for k, v in state(st.original).items())
    assert drifted == (mode == "train")  # the code's original model: BN running stats drift


def text_prep(n=24, length=6, vocab=50):
    """A tiny prepared text dataset (token rows N x 3 x L, 2 classes x 2 attributes)."""
    rng = np.random.default_rng(0)
    y, a = np.arange(n) % 2, (np.arange(n) // 2) % 2
    ids = torch.as_tensor(rng.integers(1, vocab, (n, 1, length)))
    inputs = torch.cat([ids, torch.ones_like(ids), torch.zeros_like(ids)], 1).to(torch.int16)
    meta = {"n_classes": 2, "n_attrs": 2, "input_shape": [3, length], "vocab_size": vocab}
    return Prepared(np.array(["train"] * n), y, a, a + 2 * y, inputs, meta)


def test_miu_auto_original_mode_is_eval_for_bert(prep, pretrained):
    """The official BERT comes from ``from_pretrained`` (eval mode) and is never switched back:
    its z_o has no dropout; the official ResNet stays in train mode."""
    tp = text_prep()
    model = build_model({"arch": "tiny_bert", "width": 16, "pretrained": "none"}, 2, [3, 6], vocab_size=50)
    ctx = make_ctx(tp, (np.arange(4), np.arange(4, 24)), model.eval(), "miu", tune_steps_first=0)
    st = miu_mod.MIU(ctx)
    assert st.original_mode == "eval" and st.original is ctx.original and not st.original.training
    x, y, g = to_input(tp.inputs[:8], "cpu"), torch.as_tensor(tp.y[:8]), torch.as_tensor(tp.g[:8])
    seen = []
    real = st.mi_original.forward
    st.mi_original.forward = lambda z, *a: (seen.append(z.clone()), real(z, *a))[1]
    torch.manual_seed(1)
    st.retain_loss(ctx.model.train(), x, y, g)
    with torch.no_grad():
        no_dropout = ctx.original.eval().features(x)
    assert torch.allclose(seen[0], no_dropout, atol=1e-6)
    image = miu_mod.MIU(make_ctx(prep, (np.arange(4), np.arange(4, 40)), pretrained, "miu", tune_steps_first=0))
    assert image.original_mode == "train" and image.original.training


def test_miu_estimators_run_in_fp32_under_a_bf16_models_autocast(prep, split, pretrained, monkeypatch):
    """A bf16 model's features are bf16 under its autocast; MIU's MINE runs on ``z.float()``
    outside autocast (the official code) in the tuning, the forget and the retain pass."""
    model = copy.deepcopy(pretrained)
    model.precision = "bf16"
    forget, remaining = split
    x, _, _ = inputs(prep, remaining[:8])
    with autocast(model):
        assert model.features(x).dtype == torch.bfloat16  # autocast is on for this model
    seen = []
    real = miu_mod.MINE.scores

    def spy(self, z, *groups):
        out = real(self, z, *groups)
        seen.extend(t.dtype for t in (out if isinstance(out, tuple) else (out,)))
        return out

    monkeypatch.setattr(miu_mod.MINE, "scores", spy)
    cfg = unlearn_cfg(epochs=1, batch_size=32)
    ctx = make_ctx(prep, split, model, "miu", cfg=cfg, tune_steps_first=2, forgetting_epochs=1)
    assert ctx.model.precision == "bf16"
    get_method("miu").run(ctx)
    batches = math.ceil(len(forget) / 32) + 2 * math.ceil(len(remaining) / 32)  # retain: both estimators
    assert len(seen) == 2 * (2 * 2 + batches)  # joint and marginal scores; tuning: 2 steps x 2 estimators
    assert set(seen) == {torch.float32}


@pytest.mark.parametrize("marginal", ["shuffle", "uniform"])
def test_miu_forget_pass_lowers_the_mi_estimate_on_forget_data(prep, split, pretrained, marginal):
    forget, _ = split
    ctx = make_ctx(prep, split, pretrained, "miu", tune_steps_first=150, mine_hidden=64, marginal=marginal)
    st = miu_mod.MIU(ctx)
    st.tune(0)
    x, _, g = inputs(prep, forget)
    st.gen.manual_seed(0)
    g_bar = st.marginal(g)

    def mi():
        ctx.model.eval()
        with torch.no_grad():
            return float(st.mi_unlearning.estimate(ctx.model.features(x), g, g_bar))

    frozen = [p.detach().clone() for p in st.mi_unlearning.parameters()]
    before = mi()
    cfg = unlearn_cfg(epochs=3, lr=0.01, momentum=0.0, weight_decay=0.0, schedule="const")
    fit(ctx.model, prep, lambda e: [st.forget], cfg, seed=0)
    assert mi() < before
    assert all(torch.equal(a, b) for a, b in zip(frozen, st.mi_unlearning.parameters()))


@pytest.mark.parametrize("opts", [{}, {"ablate_retain": True}, {"ablate_alignment": True}])
def test_miu_losses_send_gradients_to_the_model_only(prep, split, pretrained, opts):
    ctx = make_ctx(prep, split, pretrained, "miu", tune_steps_first=5, **opts)
    st = miu_mod.MIU(ctx)
    st.tune(0)
    model = ctx.model.train()
    forget, remaining = split
    body = [p for n, p in model.named_parameters() if n.startswith("body.")]
    orig_calls = []
    real_features = st.original.features  # MIU's own copy of the original (original_mode: train)
    st.original.features = lambda x: (orig_calls.append(len(x)), real_features(x))[1]
    for loss_fn, idx in ((st.forget_loss, forget), (st.retain_loss, remaining)):
        model.zero_grad(set_to_none=True)
        x, y, g = inputs(prep, idx[:32])
        loss_fn(model, x, y, g).backward()
        assert all(p.grad is not None and bool((p.grad != 0).any()) for p in body)
        assert all(p.grad is None for e in st.estimators for p in e.parameters())
    # z_o for the calibration term comes from the original model, and only there
    assert orig_calls == ([] if opts.get("ablate_alignment") else [32])
    if opts.get("ablate_retain"):
        assert all(p.grad is None for p in model.head.parameters())  # no CE term


def test_miu_ablations_choose_the_passes(prep, split, pretrained):
    def names(epoch, **opts):
        st = miu_mod.MIU(make_ctx(prep, split, pretrained, "miu", forgetting_epochs=1, **opts))
        return [p.name for p in st.passes(epoch)]

    assert names(0) == ["forget", "remaining"] and names(1) == ["remaining"]
    assert names(0, ablate_unlearn=True) == ["remaining"]
    assert names(0, ablate_retain=True, ablate_alignment=True) == ["forget"]
