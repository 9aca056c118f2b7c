"""SAM / ASAM (grmu.sam) inside the training loop: hand-computed steps on a 2-parameter model,
BatchNorm statistics, Group-DRO state, the settings in params and recipes."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from grmu import GrmuError
from grmu.config import check_sam, validate
from grmu.methods import get_method
from grmu.recipes import resolve
from grmu.robust import GroupDRO
from grmu.sam import sam_gradient
from grmu.train import Pass, Step, fit, update

from tests.conftest import repo_params, small_params


class Two(torch.nn.Module):
    def __init__(self, a, b):
        super().__init__()
        self.w = torch.nn.Parameter(torch.tensor([a, b], dtype=torch.float64))


def two_loss(model, x, y, g):
    a, b = model.w[0], model.w[1]
    return a * a * b + torch.sin(b) + 0.5 * a


def two_grad(a, b):
    return [2 * a * b + 0.5, a * a + math.cos(b)]


def hand_step(a, b, mode, rho, lamb, adaptive, lr):
    """One SGD step (no momentum, no weight decay) with the SAM gradient, in plain floats."""
    g = two_grad(a, b)
    s = [abs(a), abs(b)] if adaptive else [1.0, 1.0]
    norm = math.sqrt(sum((si * gi) ** 2 for si, gi in zip(s, g)))
    eps = [rho * si * si * gi / (norm + 1e-12) for si, gi in zip(s, g)]
    adv = two_grad(a + eps[0], b + eps[1])
    sigma = 1.0 if mode == "min" else -1.0
    grad = [gi + sigma * lamb * (ai - gi) for gi, ai in zip(g, adv)]
    return [a - lr * grad[0], b - lr * grad[1]]


def sam(mode="min", rho=0.1, lamb=1.0, adaptive=False):
    return {"mode": mode, "rho": rho, "lamb": lamb, "adaptive": adaptive}


DUMMY = [torch.zeros(1), torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long)]


@pytest.mark.parametrize(
    "mode,rho,lamb,adaptive",
    [
        ("min", 0.3, 1.0, False),
        ("max", 0.3, 1.0, False),
        ("min", 0.5, 0.4, False),
        ("max", 0.2, 2.5, False),
        ("min", 0.7, 1.0, True),
        ("max", 0.4, 0.6, True),
    ],
)
def test_a_sam_step_equals_the_hand_computed_step(mode, rho, lamb, adaptive):
    a, b, lr = 1.3, -0.7, 0.05
    model = Two(a, b)
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    update(model, Step(two_loss), DUMMY, opt, sam(mode, rho, lamb, adaptive))
    want = hand_step(a, b, mode, rho, lamb, adaptive, lr)
    assert model.w.detach().tolist() == pytest.approx(want, rel=1e-12, abs=1e-12)
    plain = Two(a, b)
    update(plain, Step(two_loss), DUMMY, torch.optim.SGD(plain.parameters(), lr=lr), sam("none"))
    assert plain.w.detach().tolist() == pytest.approx([w - lr * gi for w, gi in zip((a, b), two_grad(a, b))], rel=1e-12)
    assert abs(model.w[0].item() - plain.w[0].item()) > 1e-4  # SAM moved it elsewhere


def test_max_with_lamb_1_is_two_g_minus_g_adv_and_weights_are_restored():
    model = Two(0.9, 0.4)
    F0 = two_loss(model, *DUMMY)
    F0.backward()
    g = model.w.grad.clone()
    adv_holder = {}

    def closure():
        loss = two_loss(model, *DUMMY)
        adv_holder["w"] = model.w.detach().clone()
        return loss

    sam_gradient(model, closure, sam("max", 0.2))
    eps = adv_holder["w"] - torch.tensor([0.9, 0.4], dtype=torch.float64)
    assert eps.norm().item() == pytest.approx(0.2)  # ||eps|| = rho
    g_adv = torch.tensor(two_grad(*adv_holder["w"].tolist()), dtype=torch.float64)
    assert torch.allclose(model.w.grad, 2 * g - g_adv)
    assert model.w.detach().tolist() == [0.9, 0.4]  # exactly restored


def test_the_norm_is_global_over_all_parameters():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Linear(2, 1))
    x = torch.randn(5, 3)
    before = [p.detach().clone() for p in net.parameters()]
    net(x).pow(2).mean().backward()
    g = [p.grad.clone() for p in net.parameters()]
    seen = {}

    def closure():
        seen["eps"] = [p.detach() - w for p, w in zip(net.parameters(), before)]
        return net(x).pow(2).mean()

    sam_gradient(net, closure, sam("min", 0.5))
    norm = torch.sqrt(sum((gi**2).sum() for gi in g))
    for e, gi in zip(seen["eps"], g):
        assert torch.allclose(e, 0.5 * gi / norm, atol=1e-7)


def test_batchnorm_statistics_come_from_the_first_pass_only():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3), torch.nn.Linear(3, 2))
    ref = copy.deepcopy(net)
    x, y = torch.randn(16, 4), torch.randint(0, 2, (16,))

    def loss(model, x, y, g):
        return F.cross_entropy(model(x), y)

    update(net.train(), Step(loss), [x, y, y], torch.optim.SGD(net.parameters(), lr=0.1), sam("min", 0.5))
    ref.train()(x)  # one forward at the unperturbed weights
    assert torch.allclose(net[1].running_mean, ref[1].running_mean)
    assert torch.allclose(net[1].running_var, ref[1].running_var)
    assert int(net[1].num_batches_tracked) == 1
    assert net[1].momentum == ref[1].momentum  # restored


def test_group_dro_weights_move_once_per_batch_under_sam():
    torch.manual_seed(0)
    net = torch.nn.Linear(4, 2)
    x, y, g = torch.randn(12, 4), torch.randint(0, 2, (12,)), torch.arange(12) % 3
    dro, once = GroupDRO(3, 0.5), GroupDRO(3, 0.5)
    once(net(x), y, g)  # the q after exactly one update at the unperturbed weights
    update(
        net,
        Step(lambda m, x, y, g: dro(m(x), y, g)),
        [x, y, g],
        torch.optim.SGD(net.parameters(), lr=0.1),
        sam("min", 0.5),
    )
    assert torch.allclose(dro.q, once.q)


def test_sam_in_fit_costs_two_passes_and_none_is_plain_training(prep):
    calls = {"n": 0}

    def counting_loss(model, x, y, g):
        calls["n"] += 1
        return F.cross_entropy(model(x), y)

    from grmu.models import build_model

    def run(sam_cfg):
        torch.manual_seed(0)
        model = build_model({"arch": "small_cnn", "width": 4}, prep.n_classes, prep.meta["input_shape"])
        cfg = {
            "epochs": 1,
            "batch_size": 64,
            "lr": 0.05,
            "momentum": 0.9,
            "weight_decay": 5e-4,
            "warmup_epochs": 0,
            "schedule": "cosine",
            "augment": True,
        }
        if sam_cfg is not None:
            cfg["sam"] = sam_cfg
        calls["n"] = 0
        p = Pass("train", prep.indices("train")[:256], counting_loss, 64)
        fit(model, prep, lambda e: [p], cfg, seed=1)
        return model.state_dict(), calls["n"]

    plain, n_plain = run(None)
    none, n_none = run(sam("none"))
    sharp, n_sharp = run(sam("min", 0.05))
    assert n_plain == n_none == 4 and n_sharp == 8
    assert all(torch.equal(plain[k], none[k]) for k in plain)
    assert any(not torch.equal(plain[k], sharp[k]) for k in plain)


BAD_SAM = [
    ({"mode": "mid"}, ["train.sam.mode", "'mid'", "none, min, max"]),
    ({"rho": 0}, ["train.sam.rho", "> 0", "0"]),
    ({"rho": float("nan")}, ["train.sam.rho", "nan"]),
    ({"lamb": -1}, ["train.sam.lamb", ">= 0"]),
    ({"adaptive": "yes"}, ["train.sam.adaptive", "true or false", "'yes'"]),
    ({"radius": 1}, ["unknown key", "train.sam.radius"]),
]


@pytest.mark.parametrize("over,fragments", BAD_SAM)
def test_bad_sam_settings_are_refused_in_one_line(over, fragments):
    p = repo_params()
    p["train"]["sam"].update(over)
    with pytest.raises(GrmuError) as err:
        validate(p)
    msg = str(err.value)
    assert "\n" not in msg
    for frag in fragments:
        assert frag in msg, msg


def test_check_sam_needs_every_key():
    with pytest.raises(GrmuError, match="lacks the key 'lamb'"):
        check_sam("train.sam", {"mode": "min", "rho": 0.1, "adaptive": False})
    with pytest.raises(GrmuError, match="must be a mapping"):
        check_sam("train.sam", "min")


def test_unlearn_sam_resolves_key_by_key_over_recipe_and_defaults():
    p = small_params(recipe="none", unlearn={"sam": {"mode": "max", "rho": None, "lamb": 0.5, "adaptive": None}})
    r = resolve(p, get_method("finetune").options, 0.5)
    assert r["unlearn"]["sam"] == {"mode": "max", "rho": 0.1, "lamb": 0.5, "adaptive": False}
    assert r["source"]["unlearn.sam.mode"] == "params" and r["source"]["unlearn.sam.rho"] == "default"
    p["unlearn"]["sam"]["rho"] = -2.0
    with pytest.raises(GrmuError, match="unlearn.sam.rho"):
        resolve(p, get_method("finetune").options, 0.5)


def test_repo_params_train_without_sam():
    assert repo_params()["train"]["sam"]["mode"] == "none"
