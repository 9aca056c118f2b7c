"""Training many small models at once: M ``small_cnn`` nets of one config packed into one module.

Why a loop of its own: ``grmu.train.fit`` trains one model on one data stream (one seeded
generator: one batch order, one sequence of augmentation draws). Shadow models for an audit are
many small models that each need their own stream; on a CPU or a GPU a ``small_cnn`` batch is
far too small to keep the hardware busy, so training them one after another pays the per-step
overhead M times. ``fit_ensemble`` runs M streams at once: each step it draws every member's
batch from that member's own generator and takes one step of an ``Ensemble`` (grouped
convolutions, per-member BatchNorm, batched matmuls), which is exactly M independent models.
fit's partners, multi-step passes, hooks, SAM and DDP have no per-member meaning here, so they
are refused rather than grown into fit; the pieces that do apply are fit's own
(``Pass.order``, ``lr_factor``, ``make_optimizer``, ``pass_loss``, the prepared dataset's
augmentation, ``grmu.inference.predict``).

What it guarantees: member k of ``fit_ensemble(nets, prep, idx, cfg, seeds, weights=w,
val_idx=v, select_best=s)`` is trained as ``fit(nets[k], prep, lambda e: [Pass("train", idx,
ce_loss, cfg["batch_size"], w)], cfg, seed=seeds[k], val_idx=v, select_best=s)`` trains it: the
same batches, augmentation draws, lr per step and optimizer rule (SGD with momentum and weight
decay, and AdamW, are elementwise, so one optimizer over the packed parameters is M optimizers),
its own gradient (the loss is the sum of the members' mean losses), its own BatchNorm statistics,
its own best-validation epoch and its own history. The same up to float rounding (grouped
convolutions and batched matmuls sum in another order than ``Conv2d`` and ``Linear``), not bit
for bit: in float64 the two agree to ~1e-13 after two epochs of the default protocol; in float32
the ~1e-7 differences of a step grow as any float32 training's do, so after an epoch or two the
members are other draws of the same training, not ``fit``'s exact numbers (two epochs of the
default protocol: weights up to ~0.6 apart, validation accuracy ~1-2 points, about the spread
that moving one initial weight by one ulp gives ``fit`` itself). ``pack`` and ``unpack`` copy
every parameter and buffer exactly.
"""

from __future__ import annotations

import copy
import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from grmu import GrmuError, distributed
from grmu.augment import train_augmentation
from grmu.inference import autocast, predict, to_input
from grmu.models import Net, _small_cnn
from grmu.prepared import Prepared
from grmu.sam import active as sam_active
from grmu.train import Pass, ce_loss, lr_factor, make_optimizer, pass_loss

ARCHS = ("small_cnn",)  # the model.arch values an Ensemble can pack
# small_cnn's body, layer by layer (grmu.models._small_cnn)
_LAYOUT = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool2d,
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.MaxPool2d,
    nn.Flatten,
    nn.Linear,
    nn.ReLU,
)
_CONVS, _BNS, _DENSE = (0, 4), (1, 5), 9  # positions in the body


def check_arch(arch: str) -> None:
    """Refuse a ``model.arch`` that cannot be trained as an ensemble."""
    if arch not in ARCHS:
        raise GrmuError(f"model.arch {arch} cannot be trained as an ensemble; valid: {', '.join(ARCHS)}")


def _is_small_cnn(net: nn.Module) -> bool:
    body = getattr(net, "body", None)
    if not isinstance(net, Net) or not isinstance(body, nn.Sequential):
        return False
    if tuple(type(layer) for layer in body) != _LAYOUT:
        return False
    convs_plain = all(body[i].groups == 1 and body[i].bias is None for i in _CONVS)
    bns_plain = all(body[i].affine and body[i].track_running_stats and body[i].momentum is not None for i in _BNS)
    return convs_plain and bns_plain and body[8].start_dim == 1 and body[8].end_dim == -1


def _signature(net: Net) -> list[tuple[str, object]]:
    """What must agree between the members: every tensor's shape, dtype and device, every
    layer's settings (kernel, padding, eps, momentum, pooling) and the precision."""
    sig: list[tuple[str, object]] = [
        (f"{k} shape", (tuple(v.shape), str(v.dtype), str(v.device))) for k, v in net.state_dict().items()
    ]
    sig += [(f"body.{i}", repr(layer)) for i, layer in enumerate(net.body)]
    return sig + [("precision", net.precision)]


def check_nets(nets: Sequence[nn.Module], where: str = "ensemble") -> None:
    """Refuse (one line) anything but one or more ``small_cnn`` nets of one config."""
    if len(nets) < 1:
        raise GrmuError(f"{where}: no models to train together (0 nets); give at least 1")
    for k, net in enumerate(nets):
        if not _is_small_cnn(net):
            body = type(getattr(net, "body", net)).__name__
            raise GrmuError(
                f"{where}: model {k} is not a small_cnn (its body is a {body}); "
                f"model.arch valid for an ensemble: {', '.join(ARCHS)}"
            )
    first = _signature(nets[0])
    for k, net in enumerate(nets[1:], 1):
        for (name, mine), (_, theirs) in zip(_signature(net), first):
            if mine != theirs:
                raise GrmuError(
                    f"{where}: model {k}'s {name} is {mine}, model 0's {theirs}; an ensemble packs models of "
                    "one config (the same model.width, precision, input shape, classes and device)"
                )


class _MemberBatchNorm(nn.Module):
    """``BatchNorm2d`` over the members' channel blocks side by side (M*C channels): every
    channel's batch statistics and running statistics are its own member's, so this is M
    BatchNorms; ``num_batches_tracked`` is kept per member."""

    def __init__(self, bns: Sequence[nn.BatchNorm2d]):
        super().__init__()
        self.eps, self.momentum = bns[0].eps, bns[0].momentum
        self.weight = nn.Parameter(torch.cat([b.weight.detach() for b in bns]))
        self.bias = nn.Parameter(torch.cat([b.bias.detach() for b in bns]))
        self.register_buffer("running_mean", torch.cat([b.running_mean for b in bns]))
        self.register_buffer("running_var", torch.cat([b.running_var for b in bns]))
        self.register_buffer("num_batches_tracked", torch.stack([b.num_batches_tracked for b in bns]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            x, self.running_mean, self.running_var, self.weight, self.bias, self.training, self.momentum, self.eps
        )


class Ensemble(nn.Module):
    """M ``small_cnn`` nets of one config as one module; build it with ``pack``.

    Convolutions are grouped (``groups=M``, channel blocks member-major: member m owns channels
    ``m*C .. (m+1)*C - 1``), BatchNorm runs over the M*C channels (per member, running stats
    included), the dense layer and the head are batched matmuls with weights ``(M, out, in)``.
    ``forward``: ``(M, B, C, H, W)`` inputs (member m's batch at ``x[m]``) -> ``(M, B, classes)``."""

    def __init__(self, nets: Sequence[Net]):
        super().__init__()
        check_nets(nets)
        bodies = [net.body for net in nets]
        conv, dense = bodies[0][0], bodies[0][_DENSE]
        self.members = len(nets)
        self.in_ch, self.width = conv.in_channels, conv.out_channels
        self.side = math.isqrt(dense.in_features // (2 * self.width))
        self.feat_dim, self.n_classes = dense.out_features, nets[0].head.out_features
        self.precision = nets[0].precision
        self.conv_args = [(bodies[0][i].stride, bodies[0][i].padding, bodies[0][i].dilation) for i in _CONVS]
        self.pools = nn.ModuleList([copy.deepcopy(bodies[0][i]) for i in (3, 7)])  # stateless, net 0's settings
        self.conv1 = nn.Parameter(torch.cat([b[_CONVS[0]].weight.detach() for b in bodies]))
        self.bn1 = _MemberBatchNorm([b[_BNS[0]] for b in bodies])
        self.conv2 = nn.Parameter(torch.cat([b[_CONVS[1]].weight.detach() for b in bodies]))
        self.bn2 = _MemberBatchNorm([b[_BNS[1]] for b in bodies])
        self.dense_w = nn.Parameter(torch.stack([b[_DENSE].weight.detach() for b in bodies]))
        self.dense_b = nn.Parameter(torch.stack([b[_DENSE].bias.detach() for b in bodies]))
        self.head_w = nn.Parameter(torch.stack([net.head.weight.detach() for net in nets]))
        self.head_b = nn.Parameter(torch.stack([net.head.bias.detach() for net in nets]))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(M, B, C, H, W)`` -> each member's feature z, ``(M, B, feat_dim)``."""
        m, b, c, height, width = x.shape
        if m != self.members:
            raise ValueError(f"an ensemble of {self.members} models got inputs for {m}")
        # B x M*C x H x W in channels-last memory (one copy): grouped convolutions run faster in it on
        # CPUs (oneDNN) as on GPUs (cuDNN); the values are the same
        h = x.permute(1, 3, 4, 0, 2).reshape(b, height, width, m * c).permute(0, 3, 1, 2)
        for weight, bn, pool, (stride, padding, dilation) in zip(
            (self.conv1, self.conv2), (self.bn1, self.bn2), self.pools, self.conv_args
        ):
            h = pool(F.relu(bn(F.conv2d(h, weight, None, stride, padding, dilation, m)), inplace=True))
        h = h.reshape(b, m, -1).transpose(0, 1)  # each member's channels, flattened as nn.Flatten does
        return F.relu(torch.baddbmm(self.dense_b.unsqueeze(1), h, self.dense_w.transpose(1, 2)), inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.head_b.unsqueeze(1), self.features(x), self.head_w.transpose(1, 2))

    def member_state(self, k: int) -> dict[str, torch.Tensor]:
        """Member ``k``'s parameters and buffers under a ``Net``'s state-dict keys (copies)."""
        c1, c2 = self.width, 2 * self.width
        state = {f"body.{_CONVS[0]}.weight": self.conv1[k * c1 : (k + 1) * c1]}
        for i, bn, c in ((_BNS[0], self.bn1, c1), (_BNS[1], self.bn2, c2)):
            for name in ("weight", "bias", "running_mean", "running_var"):
                state[f"body.{i}.{name}"] = getattr(bn, name)[k * c : (k + 1) * c]
            state[f"body.{i}.num_batches_tracked"] = bn.num_batches_tracked[k]
        state[f"body.{_CONVS[1]}.weight"] = self.conv2[k * c2 : (k + 1) * c2]
        state.update(
            {
                f"body.{_DENSE}.weight": self.dense_w[k],
                f"body.{_DENSE}.bias": self.dense_b[k],
                "head.weight": self.head_w[k],
                "head.bias": self.head_b[k],
            }
        )
        return {key: v.detach().clone() for key, v in state.items()}

    def new_net(self) -> Net:
        """A ``Net`` of the members' config, device and dtype, its weights uninitialised (no RNG drawn)."""
        with torch.device("meta"):
            body, dim = _small_cnn(self.in_ch, self.width, 4 * self.side)
            net = Net(body, dim, self.n_classes)
        net.precision = self.precision
        return net.to_empty(device=self.conv1.device).to(self.conv1.dtype)


def pack(nets: Sequence[Net]) -> Ensemble:
    """The ``small_cnn`` nets ``nets`` (one config) as one ``Ensemble``; exact copies of every
    parameter and buffer (the nets are left as they are)."""
    return Ensemble(nets)


def unpack(ens: Ensemble, into: Sequence[Net] | None = None) -> list[Net]:
    """The ensemble's members as ``Net``s, exact copies (``pack(nets)`` then ``unpack`` gives
    back the same tensors bit for bit): copied into ``into`` (nets of the same config) when
    given, else into new nets on the ensemble's device. Each net gets the ensemble's mode."""
    nets = list(into) if into is not None else [ens.new_net() for _ in range(ens.members)]
    if len(nets) != ens.members:
        raise GrmuError(f"ensemble: cannot unpack {ens.members} models into {len(nets)} nets")
    for k, net in enumerate(nets):
        net.load_state_dict(ens.member_state(k))
        net.precision = ens.precision
        net.train(ens.training)
    return nets


class _SharedInput(nn.Module):
    """Every member on the same batch, ``(B, C, H, W)`` -> ``(B, M, classes)``: the shape in
    which ``grmu.inference.predict`` batches and concatenates."""

    def __init__(self, ens: Ensemble):
        super().__init__()
        self.ens = ens
        self.precision = ens.precision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ens(x.expand(self.ens.members, *x.shape)).transpose(0, 1)


def member_accuracies(ens: Ensemble, prep: Prepared, idx: np.ndarray, batch_size: int = 512) -> list[float]:
    """Each member's top-1 accuracy (x100) on samples ``idx``, as ``grmu.inference.model_accuracy``
    gives it for that member alone (eval mode, NaN on an empty set); the ensemble's mode is kept."""
    if len(idx) == 0:
        return [float("nan")] * ens.members
    pred = predict(_SharedInput(ens).train(ens.training), prep, idx, batch_size).argmax(-1).numpy()
    return [float((pred[:, k] == prep.y[idx]).mean() * 100) for k in range(ens.members)]


def _refuse(nets: Sequence[Net], cfg: dict, seeds: Sequence[int], desc: str) -> None:
    if len(nets) < 1:
        raise GrmuError(f"{desc}: no models to train together (0 nets); give at least 1")
    if len(seeds) != len(nets):
        raise GrmuError(f"{desc}: {len(seeds)} seeds for {len(nets)} models; give one seed per model")
    sam = cfg.get("sam")
    if sam_active(sam):
        raise GrmuError(
            f"{desc}: sam.mode {sam['mode']} cannot train models together; valid: none (or train each with fit)"
        )
    if distributed.active():
        raise GrmuError(
            f"{desc}: distributed training is active ({distributed.world_size()} processes); models trained "
            "together run in one process: valid distributed.processes: 1"
        )
    check_nets(nets, desc)


def fit_ensemble(
    nets: Sequence[Net],
    prep: Prepared,
    idx: np.ndarray,
    cfg: dict,
    seeds: Sequence[int],
    *,
    weights: np.ndarray | None = None,
    val_idx: np.ndarray | None = None,
    select_best: bool = True,
    desc: str = "ensemble",
) -> list[tuple[Net, list[dict]]]:
    """Train the ``small_cnn`` nets ``nets`` together for ``cfg['epochs']`` epochs of one pass
    over ``idx`` (drawn with ``weights`` when given), member k with seed ``seeds[k]``, each as
    ``grmu.train.fit`` would train it alone (the module docstring says what is guaranteed).

    The nets are trained in place, as ``fit`` trains its model; returns ``(net, history)`` per
    member, the history with fit's keys (epoch, loss_train, lr, val_acc, best). With
    ``select_best`` each member keeps its own best-validation epoch (strict ``>``)."""
    _refuse(nets, cfg, seeds, desc)
    ens, m = pack(nets), len(nets)
    dev = ens.conv1.device
    gens = [torch.Generator().manual_seed(int(seed)) for seed in seeds]
    opt = make_optimizer(ens.parameters(), cfg)
    base_lr = opt.param_groups[0]["lr"]
    p = Pass("train", idx, ce_loss, cfg["batch_size"], weights)
    steps = p.n_batches()
    augment = train_augmentation(prep) if cfg.get("augment") else None
    inputs, y_all = prep.inputs, torch.as_tensor(prep.y)
    if dev.type == "cuda" and isinstance(inputs, torch.Tensor) and inputs.nbytes < torch.cuda.mem_get_info(dev)[0] // 4:
        inputs, y_all = inputs.to(dev), y_all.to(dev)  # as fit: the dataset on the GPU, no host gather

    def member_batch(b: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        b = b.to(y_all.device)
        x = to_input(inputs[b], dev)
        return (x if augment is None else augment(x, gen)), y_all[b].to(dev)

    histories: list[list[dict]] = [[] for _ in range(m)]
    best_acc, best_state = [-1.0] * m, [None] * m
    bar = tqdm(range(cfg["epochs"]), desc=desc, unit="epoch", leave=False, dynamic_ncols=True)
    for epoch in bar:
        ens.train()
        orders = [p.order(gen) for gen in gens]  # each member's batch order, from its own stream
        losses, sizes = [], []
        for step, start in enumerate(range(0, len(idx), p.batch_size)):
            for grp in opt.param_groups:
                grp["lr"] = base_lr * lr_factor(cfg, epoch, step, steps)
            batches = [member_batch(order[start : start + p.batch_size], gen) for order, gen in zip(orders, gens)]
            x, y = torch.stack([bx for bx, _ in batches]), torch.stack([by for _, by in batches])
            with autocast(ens):
                logits = ens(x)
                member_losses = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(m, -1)
                member_losses = member_losses.mean(1)
            opt.zero_grad(set_to_none=True)
            member_losses.sum().backward()  # each member's gradient is that of its own mean loss
            opt.step()
            losses.append(member_losses.detach().double())
            sizes.append((len(y[0]), 1))
        columns = torch.stack(losses).cpu().unbind(1) if losses else [()] * m
        rows = []
        for k, column in enumerate(columns):

            def where(i: int, v: float, k: int = k) -> str:
                return (
                    f"{desc}: model {k} (seed {seeds[k]}): the loss became {v} in epoch {epoch}, pass 'train', "
                    f"step {i} at lr {base_lr * lr_factor(cfg, epoch, i, steps):g}"
                )

            rows.append({"epoch": epoch, "loss_train": pass_loss(list(column), sizes, where)})
        lr = base_lr * lr_factor(cfg, epoch, max(steps - 1, 0), max(steps, 1))
        accs = member_accuracies(ens, prep, val_idx) if val_idx is not None else None
        for k, row in enumerate(rows):
            row["lr"] = lr
            if accs is not None:
                row["val_acc"] = accs[k]
            histories[k].append(row)
            if select_best and accs is not None and accs[k] > best_acc[k]:
                best_acc[k], best_state[k] = accs[k], ens.member_state(k)
                row["best"] = True
        shown = {"loss_train": float(np.mean([r["loss_train"] for r in rows]))}
        if accs is not None:
            shown["val_acc"] = float(np.mean(accs))
        bar.set_postfix({k: f"{v:.3g}" for k, v in shown.items()})
    bar.close()
    unpack(ens, into=nets)
    for net, state in zip(nets, best_state):
        if state is not None:
            net.load_state_dict(state)
    return list(zip(nets, histories))
