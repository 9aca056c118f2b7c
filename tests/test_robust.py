import numpy as np
import pytest
import torch

from grmu.robust import GroupDRO, group_balanced_weights, reweight_weights
from grmu.train import Pass


def test_reweight_weight_is_train_over_remaining_count():
    g_train = np.array([0] * 60 + [1] * 30 + [2] * 10)
    g_rem = np.array([0] * 60 + [1] * 30 + [2] * 2)  # 8 of group 2 forgotten
    w = reweight_weights(g_train, g_rem, 3)
    assert np.allclose(w[:90], 1.0) and np.allclose(w[90:], 5.0)
    assert w.sum() == len(g_train)  # expected epoch mix = the original train mix


def test_reweight_changes_the_sampled_group_mix():
    g_train = np.array([0] * 600 + [1] * 300 + [2] * 100)
    g_rem = np.array([0] * 600 + [1] * 300 + [2] * 10)
    idx = np.arange(len(g_rem))
    gen = torch.Generator().manual_seed(0)
    plain = Pass("r", idx).order(gen).numpy()
    rw = Pass("r", idx, weights=reweight_weights(g_train, g_rem, 3)).order(gen).numpy()

    def share(order):
        return (g_rem[order] == 2).mean()

    assert share(plain) == 10 / 910
    assert abs(share(rw) - 0.1) < 0.03  # back to the original 10%


def test_group_balanced_weights_equalise_groups():
    g = np.array([0] * 90 + [1] * 10)
    w = group_balanced_weights(g, 2)
    assert np.isclose(w[g == 0].sum(), w[g == 1].sum())


def test_group_dro_upweights_the_worst_group():
    dro = GroupDRO(2, eta=1.0)
    logits = torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.0, 0.0]])
    y = torch.tensor([0, 0, 1])
    g = torch.tensor([0, 0, 1])  # group 1 has the higher loss
    for _ in range(5):
        loss = dro(logits, y, g)
    assert dro.q[1] > 0.9 and torch.isclose(dro.q.sum(), torch.tensor(1.0))
    per_group = torch.stack(
        [torch.nn.functional.cross_entropy(logits[:2], y[:2]), torch.nn.functional.cross_entropy(logits[2:], y[2:])]
    )
    assert torch.isclose(loss, (dro.q * per_group).sum())


def test_group_dro_q_update_is_exponentiated_gradient():
    """One step from uniform q: q_g ∝ exp(eta · L_g), exactly (not eta · L_g, not L_g alone)."""
    import math

    dro = GroupDRO(3, eta=0.5)
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0], [0.0, 3.0], [1.0, 0.0]])
    y = torch.tensor([0, 0, 0, 1])
    g = torch.tensor([0, 0, 2, 2])  # group 1 absent: its loss counts 0
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    losses = [float(ce[:2].mean()), 0.0, float(ce[2:].mean())]
    raw = [math.exp(0.5 * v) / 3 for v in losses]
    want = [r / sum(raw) for r in raw]
    loss = dro(logits, y, g)
    assert dro.q.tolist() == pytest.approx(want, rel=1e-6)
    assert float(loss) == pytest.approx(sum(q * v for q, v in zip(want, losses)), rel=1e-6)
    with pytest.raises(Exception, match="eta must be > 0"):
        GroupDRO(2, eta=0.0)
