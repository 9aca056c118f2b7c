"""The sharp-unlearn family's methods: NegGrad, NegGrad+, random labels, influence (WoodFisher)
and Sharp MinMax, on the tiny model and split of tests/test_methods.py."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from grmu import GrmuError
from grmu.methods import get_method
from grmu.methods import influence as iu
from grmu.methods import neggrad_plus as ngp
from grmu.methods.salun import forget_gradients, saliency_mask
from grmu.train import Pass, fit, update
from tests.test_methods import inputs, make_ctx, pretrained, spy_fit, split, state, unlearn_cfg  # noqa: F401

SAM_MINMAX = {"mode": "none", "rho": 0.05, "lamb": 1.0, "adaptive": False}


def forget_ce(model, prep, idx):
    x, y, _ = inputs(prep, idx)
    with torch.no_grad():
        return float(F.cross_entropy(model.eval()(x), y))


# --------------------------------------------------------------------------- NegGrad


def test_neggrad_raises_the_forget_loss_and_reads_only_the_forget_set(prep, split, pretrained):
    forget, remaining = split
    ctx = make_ctx(prep, split, pretrained, "neggrad", cfg=unlearn_cfg(lr=0.01, momentum=0.0, epochs=1))
    calls = spy_fit(ctx, train=True)
    out = get_method("neggrad").run(ctx)
    (p,) = calls[0][0](0)
    assert np.array_equal(np.sort(p.idx), forget)
    assert forget_ce(out, prep, forget) > forget_ce(pretrained, prep, forget) + 0.05


# --------------------------------------------------------------------------- NegGrad+


def test_neggrad_plus_loss_is_alpha_weighted_descent_minus_ascent(prep, split, pretrained):
    forget, remaining = split
    xr, yr, gr = inputs(prep, remaining[:16])
    xf, yf, gf = inputs(prep, forget[:8])
    model = pretrained
    got = ngp.combined_loss(0.7)(model, xr, yr, gr, (xf, yf, gf))
    want = 0.7 * F.cross_entropy(model(xr), yr) - 0.3 * F.cross_entropy(model(xf), yf)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-6)


def test_neggrad_plus_pairs_each_remaining_batch_with_a_cycled_forget_batch(prep, split, pretrained):
    forget, remaining = split  # 40 forget (2 batches of 32: 32 + 8), 200 remaining (7 batches)
    rows = {bytes(inputs(prep, [i])[0].numpy().tobytes()): int(i) for i in forget}
    seen = []

    def recorder(model, x, y, g, partner):
        seen.append([rows[bytes(r.unsqueeze(0).numpy().tobytes())] for r in partner[0]])
        return ngp.combined_loss(0.9)(model, x, y, g, partner)

    p = Pass("remaining", remaining, recorder, 32, partner=forget)
    fit(copy.deepcopy(pretrained), prep, lambda e: [p], unlearn_cfg(epochs=2), seed=0)
    assert len(seen) == 14
    for epoch in (seen[:7], seen[7:]):
        assert sorted(epoch[0] + epoch[1]) == sorted(forget.tolist())  # one shuffled pass over forget
        assert [len(b) for b in epoch] == [32, 8, 32, 8, 32, 8, 32]
        assert all(epoch[k] == epoch[k % 2] for k in range(7))  # then cycled
    assert seen[0] != seen[7]  # reshuffled each epoch


def test_neggrad_plus_alpha_is_checked(prep, split, pretrained):
    with pytest.raises(GrmuError, match=r"methods.neggrad_plus.alpha must be a finite number >= 0 and <= 1, got 1.5"):
        get_method("neggrad_plus").run(make_ctx(prep, split, pretrained, "neggrad_plus", alpha=1.5))


def test_neggrad_plus_with_alpha_1_is_finetuning(prep, split, pretrained):
    a = get_method("neggrad_plus").run(make_ctx(prep, split, pretrained, "neggrad_plus", alpha=1.0))
    b = get_method("finetune").run(make_ctx(prep, split, pretrained, "finetune"))
    # same remaining batches and steps; only the forget batches' extra forward differs (no gradient)
    sa, sb = state(a), state(b)
    assert all(
        torch.allclose(sa[k].float(), sb[k].float(), atol=1e-6)
        for k in sa
        if "num_batches" not in k and "running" not in k
    )


# --------------------------------------------------------------------------- random labels


def test_random_label_trains_one_mixed_pass_with_forget_labels_redrawn(prep, split, pretrained):
    forget, remaining = split
    for reweight in (False, True):
        ctx = make_ctx(prep, split, pretrained, "random_label", reweight=reweight)
        calls = spy_fit(ctx)
        get_method("random_label").run(ctx)
        (p,) = calls[0][0](0)
        assert sorted(p.idx.tolist()) == sorted(forget.tolist() + remaining.tolist())
        assert (p.weights is not None) == reweight
        if reweight:
            w = dict(zip(p.idx.tolist(), p.weights.tolist()))
            assert all(w[i] == 1.0 for i in forget)
            assert w[remaining[prep.g[remaining] == 2][0]] > 3  # the depleted group is drawn more often
        b = torch.as_tensor(np.concatenate([forget[:50], remaining[:50]]))
        y = torch.as_tensor(prep.y)[b]
        new = p.relabel(b, y)
        assert torch.equal(new[len(forget[:50]) :], y[len(forget[:50]) :])  # remaining labels kept
        assert not torch.equal(new[:40], y[:40])  # forget labels redrawn


# --------------------------------------------------------------------------- influence


def test_woodbury_equals_the_direct_inverse_fisher_vector_product():
    torch.manual_seed(0)
    grads = [torch.randn(6, dtype=torch.float64) for _ in range(4)]
    v = torch.randn(6, dtype=torch.float64)
    n = 3
    fisher = torch.eye(6, dtype=torch.float64) + sum(torch.outer(g, g) for g in grads) / n
    want = torch.linalg.solve(fisher, v)
    assert torch.allclose(iu.woodbury_product(grads, v, n), want)


def test_upstream_recursion_by_hand_and_its_relation_to_the_exact_product():
    g1, g2 = torch.tensor([1.0, 2.0], dtype=torch.float64), torch.tensor([0.5, -1.0], dtype=torch.float64)
    v, n = torch.tensor([3.0, 1.0], dtype=torch.float64), 10
    # first sample only seeds o; the second: k -= (k.g2 / (n + o.g2)) o
    og = float(g1 @ g2)
    want = v - (float(v @ g2) / (n + og)) * g1
    assert torch.allclose(iu.woodfisher_product([g1, g2], v, n), want)
    # with parallel gradients the recursion is exact for the samples after the first
    g = torch.tensor([0.3, -0.8, 0.5], dtype=torch.float64)
    v3 = torch.tensor([1.0, 2.0, -1.0], dtype=torch.float64)
    grads = [g * 1.0 for _ in range(5)]
    assert torch.allclose(iu.woodfisher_product(grads, v3, 4), iu.woodbury_product(grads[1:], v3, 4))
    # in general it is not (documented in the method's docstring)
    torch.manual_seed(1)
    rand = [torch.randn(3, dtype=torch.float64) for _ in range(5)]
    assert not torch.allclose(iu.woodfisher_product(rand, v3, 4), iu.woodbury_product(rand[1:], v3, 4), atol=1e-3)


def test_influence_step_is_alpha_times_the_fisher_product_of_the_gradient_difference(
    prep, split, pretrained, monkeypatch
):
    forget, remaining = split
    monkeypatch.setitem(iu.FISHER, "upstream", lambda grads, v, n: v)  # F^-1 = I isolates v
    base = state(pretrained)
    out = get_method("influence").run(make_ctx(prep, split, pretrained, "influence", alpha=2.0))
    net = copy.deepcopy(pretrained).eval()
    params = list(net.parameters())

    def per_sample_sum(idx):
        total = [torch.zeros_like(p) for p in params]
        for i in idx:
            x, y, _ = inputs(prep, [i])
            for t, gr in zip(total, torch.autograd.grad(F.cross_entropy(net(x), y), params)):
                t += gr
        return total

    nf, nr = len(forget), len(remaining)
    gf, gr = per_sample_sum(forget), per_sample_sum(remaining)
    names = [n for n, _ in pretrained.named_parameters()]
    moved = state(out)
    for name, a, b in zip(names, gf, gr):
        v = a / (nf + nr) - b * nf / ((nf + nr) * nr)
        assert torch.allclose(moved[name] - base[name], 2.0 * v, atol=1e-6), name


def test_influence_uses_the_first_samples_of_the_remaining_set(prep, split, pretrained, monkeypatch):
    seen = {}

    def spy(grads, v, n):
        seen["count"], seen["n"] = len(list(grads)), n
        return v

    monkeypatch.setitem(iu.FISHER, "upstream", spy)
    get_method("influence").run(make_ctx(prep, split, pretrained, "influence", fisher_samples=50))
    assert seen == {"count": 52, "n": 50}  # upstream: samples 0..N+1


def test_influence_alpha_zero_changes_nothing(prep, split, pretrained):
    out = get_method("influence").run(make_ctx(prep, split, pretrained, "influence", alpha=0.0))
    assert all(torch.equal(v, state(pretrained)[k]) for k, v in state(out).items())


def test_influence_with_reweight_weights_the_remaining_gradient(prep, split, pretrained):
    a = state(get_method("influence").run(make_ctx(prep, split, pretrained, "influence", fisher_samples=20)))
    b = state(
        get_method("influence").run(make_ctx(prep, split, pretrained, "influence", fisher_samples=20, reweight=True))
    )
    assert any(not torch.allclose(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------- Sharp MinMax


def test_saliency_mask_smallest_is_the_complement_order():
    g = {"w": torch.tensor([5.0, -1.0, 3.0, 0.5])}
    assert saliency_mask(g, 0.5)["w"].tolist() == [1, 0, 1, 0]
    assert saliency_mask(g, 0.5, largest=False)["w"].tolist() == [0, 1, 0, 1]


def minmax_steps(prep, split, pretrained, **opts):
    cfg = unlearn_cfg(optimizer="adamw", weight_decay=0.0, sam=dict(SAM_MINMAX))
    ctx = make_ctx(prep, split, pretrained, "sharp_minmax", cfg=cfg, **opts)
    calls = spy_fit(ctx)
    get_method("sharp_minmax").run(ctx)
    (p,) = calls[0][0](0)
    return ctx, p


@pytest.mark.parametrize("leak", [False, True])
def test_sharp_minmax_moves_unmasked_weights_on_remaining_and_masked_on_forget(prep, split, pretrained, leak):
    forget, remaining = split
    ctx, p = minmax_steps(prep, split, pretrained, mask_leak=leak)
    assert p.name == "remaining" and np.array_equal(p.partner, forget) and len(p.steps) == 2
    r_step, f_step = p.steps
    assert r_step.optimizer is not f_step.optimizer
    assert r_step.sam["mode"] == "min" and f_step.sam["mode"] == "max"
    # the salient weights, computed here from the original model's forget gradients
    salient = saliency_mask(forget_gradients(ctx), 0.5)
    model = ctx.model
    args = list(inputs(prep, remaining[:32])) + [inputs(prep, forget[:32])]
    before = {n: w.detach().clone() for n, w in model.named_parameters()}
    update(model.train(), r_step, args, r_step.optimizer, None)
    mid = {n: w.detach().clone() for n, w in model.named_parameters()}
    for n in before:
        assert not (mid[n] != before[n])[salient[n] == 1].any(), n  # the remaining step leaves salient weights
    assert any((mid[n] != before[n])[salient[n] == 0].any() for n in before)
    update(model, f_step, args, f_step.optimizer, None)
    leaked = False
    for n, w in model.named_parameters():
        moved = w.detach() != mid[n]
        leaked |= bool(moved[salient[n] == 0].any())
    assert any((w.detach() != mid[n])[salient[n] == 1].any() for n, w in model.named_parameters())
    assert leaked == leak  # upstream's leak: SAM-max still moves weights outside the mask


def test_sharp_minmax_refuses_a_sam_mode_in_unlearn_sam(prep, split, pretrained):
    cfg = unlearn_cfg(sam={**SAM_MINMAX, "mode": "min"})
    with pytest.raises(GrmuError, match="unlearn.sam.mode 'min' is not used by sharp_minmax"):
        get_method("sharp_minmax").run(make_ctx(prep, split, pretrained, "sharp_minmax", cfg=cfg))


def test_sharp_minmax_mask_order_smallest_inverts_the_mask(prep, split, pretrained):
    _, p1 = minmax_steps(prep, split, pretrained)
    _, p2 = minmax_steps(prep, split, pretrained, mask_order="smallest")
    m1, m2 = p1.steps[1].after_backward.mask, p2.steps[1].after_backward.mask
    overlap = sum(float((m1[n] * m2[n]).sum()) for n in m1)
    assert overlap < 0.02 * sum(float(m1[n].sum()) for n in m1)


@pytest.mark.parametrize(
    "method,opts,fragment",
    [
        (
            "sharp_minmax",
            {"retain_sam": "up"},
            "methods.sharp_minmax.retain_sam 'up' is unknown; valid: none, min, max",
        ),
        (
            "sharp_minmax",
            {"threshold": 1.0},
            "methods.sharp_minmax.threshold must be a finite number > 0 and < 1, got 1.0",
        ),
        ("sharp_minmax", {"mask_leak": 1}, "methods.sharp_minmax.mask_leak must be true or false, got 1"),
        ("influence", {"fisher": "kfac"}, "methods.influence.fisher 'kfac' is unknown; valid: upstream, woodbury"),
        ("influence", {"fisher_samples": 1}, "methods.influence.fisher_samples must be an integer >= 2, got 1"),
    ],
)
def test_bad_options_of_the_new_methods(prep, split, pretrained, method, opts, fragment):
    with pytest.raises(GrmuError) as err:
        get_method(method).run(make_ctx(prep, split, pretrained, method, **opts))
    assert fragment in str(err.value)
